//! API Gateway usage plans: per-key rate (token bucket), burst and quota.
//!
//! The limits are the template's (`usage_plans` in stack.json); which plan a
//! key is on is read from the emulator's API Gateway, where `stockroom-admin`
//! attaches tenants' keys (`GET /usageplans`, `GET /usageplans/{id}/keys`),
//! as API Gateway itself would know it. Counters live in this process: a
//! restart of the local stack starts every key's day afresh.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::spec::UsagePlanSpec;

/// How long a key's plan membership is trusted before it is read again
/// (`stockroom-admin set-plan` takes effect within this).
const MEMBERSHIP_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// The key is on no plan of this stage (or there is no key).
    InvalidKey,
    Throttled,
    QuotaExceeded,
}

pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The quota period a moment falls in (UTC), as a comparable label.
fn period_label(period: &str, now: time::OffsetDateTime) -> String {
    match period {
        "WEEK" => format!("{}-W{}", now.year(), now.iso_week()),
        "MONTH" => format!("{}-{:02}", now.year(), u8::from(now.month())),
        _ => format!("{}-{:03}", now.year(), now.ordinal()),
    }
}

struct KeyState {
    /// The plan whose bucket `bucket` is; `None` until the key's first request.
    plan: Option<String>,
    bucket: Option<TokenBucket>,
    period: String,
    used: u64,
}

#[derive(Default)]
struct Membership {
    /// key value -> plan name
    plans: HashMap<String, String>,
    read_at: Option<Instant>,
}

pub struct UsagePlans {
    specs: Vec<UsagePlanSpec>,
    http: reqwest::Client,
    endpoint: String,
    region: String,
    membership: tokio::sync::Mutex<Membership>,
    keys: std::sync::Mutex<HashMap<String, KeyState>>,
}

impl UsagePlans {
    pub fn new(specs: Vec<UsagePlanSpec>, endpoint: &str, region: &str) -> Self {
        UsagePlans {
            specs,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            membership: tokio::sync::Mutex::new(Membership::default()),
            keys: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Meters one request made with API key `key`.
    pub async fn admit(&self, key: Option<&str>) -> Verdict {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Verdict::InvalidKey;
        };
        let Some(plan) = self.plan_of(key).await else {
            return Verdict::InvalidKey;
        };
        let Some(spec) = self.specs.iter().find(|s| s.name == plan) else {
            return Verdict::InvalidKey;
        };
        let now = time::OffsetDateTime::now_utc();
        let period = period_label(spec.quota_period.as_deref().unwrap_or("DAY"), now);
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let state = keys.entry(key.to_string()).or_insert_with(|| KeyState {
            plan: None,
            bucket: None,
            period: period.clone(),
            used: 0,
        });
        if state.plan.as_ref() != Some(&plan) {
            // New key, or moved to another plan: that plan's bucket, full.
            state.plan = Some(plan.clone());
            state.bucket = match (spec.rate_limit, spec.burst_limit) {
                (Some(rate), Some(burst)) if rate > 0.0 && burst > 0.0 => {
                    Some(TokenBucket::new(rate, burst))
                }
                _ => None,
            };
        }
        if state.period != period {
            state.period = period;
            state.used = 0;
        }
        if let Some(b) = &mut state.bucket
            && !b.take()
        {
            return Verdict::Throttled;
        }
        if let Some(limit) = spec.quota_limit
            && state.used >= limit
        {
            return Verdict::QuotaExceeded;
        }
        state.used += 1;
        Verdict::Allowed
    }

    async fn plan_of(&self, key: &str) -> Option<String> {
        let asked = Instant::now();
        let mut m = self.membership.lock().await;
        let fresh = m.read_at.is_some_and(|t| t.elapsed() < MEMBERSHIP_TTL);
        if fresh && let Some(p) = m.plans.get(key) {
            return Some(p.clone());
        }
        // Unknown (e.g. a tenant created a moment ago) or stale: read again,
        // unless another request did while this one waited for the lock.
        if m.read_at.is_none_or(|t| t <= asked) {
            match self.read_membership().await {
                Ok(plans) => {
                    m.plans = plans;
                    m.read_at = Some(Instant::now());
                }
                Err(e) => tracing::warn!("reading usage plan keys from the emulator: {e}"),
            }
        }
        m.plans.get(key).cloned()
    }

    async fn read_membership(&self) -> anyhow::Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        let plans = self.get("/usageplans?limit=500").await?;
        for plan in plans["item"].as_array().into_iter().flatten() {
            let (Some(id), Some(name)) = (plan["id"].as_str(), plan["name"].as_str()) else {
                continue;
            };
            if !self.specs.iter().any(|s| s.name == name) {
                continue;
            }
            let keys = self
                .get(&format!("/usageplans/{id}/keys?limit=500"))
                .await?;
            for k in keys["item"].as_array().into_iter().flatten() {
                if let Some(v) = k["value"].as_str() {
                    out.insert(v.to_string(), name.to_string());
                }
            }
        }
        Ok(out)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.endpoint))
            // moto picks the service from the credential scope; it does not
            // check the signature.
            .header(
                "authorization",
                crate::emulator::authorization(
                    "apigateway",
                    &self.region,
                    "host",
                    crate::spec::OPERATOR_ACCESS_KEY,
                ),
            )
            .send()
            .await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status}");
        Ok(serde_json::from_slice(&body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_the_burst_then_the_rate() {
        let mut b = TokenBucket::new(1.0, 3.0);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
        b.last -= Duration::from_millis(1100);
        assert!(b.take());
        assert!(!b.take());
    }

    #[test]
    fn quota_periods_are_utc_calendar_periods() {
        let t = time::macros::datetime!(2026-11-27 23:59:59 UTC);
        let next = t + Duration::from_secs(1);
        assert_ne!(period_label("DAY", t), period_label("DAY", next));
        assert_eq!(period_label("MONTH", t), period_label("MONTH", next));
        assert_eq!(period_label("WEEK", t), period_label("WEEK", next));
    }
}
