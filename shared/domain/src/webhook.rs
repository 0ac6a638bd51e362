//! Webhooks: a tenant's endpoints, their deliveries and the retry schedule.

use super::event::EventType;
use super::validation::{FieldErrors, ObjectReader};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

pub const MAX_URL: usize = 2048;
pub const MAX_WEBHOOK_DESCRIPTION: usize = 256;
/// Endpoints per tenant: deliveries fan out to each, so the number is bounded.
pub const MAX_WEBHOOKS_PER_TENANT: usize = 20;
/// Attempts kept on a delivery record (replays append to it).
pub const MAX_ATTEMPTS_KEPT: usize = 30;

/// A validated `POST /v1/webhooks` body. The URL is checked for syntax here;
/// where it may point is the target policy's business (it resolves names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
}

impl NewWebhook {
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(body)?;
        r.deny_unknown(&["url", "events", "description"]);
        let url = r.string("url", true, MAX_URL);
        let description = r.string("description", false, MAX_WEBHOOK_DESCRIPTION);
        let mut events = Vec::new();
        match body.get("events").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => {
                for (i, v) in list.iter().enumerate() {
                    match v
                        .as_str()
                        .and_then(EventType::parse)
                        .filter(|t| *t != EventType::WebhookPing)
                    {
                        Some(t) if !events.contains(&t) => events.push(t),
                        Some(_) => {}
                        None => r.errors.push(
                            format!("events[{i}]"),
                            format!(
                                "unknown event type; one of: {}",
                                EventType::SUBSCRIBABLE.map(|t| t.as_str()).join(", ")
                            ),
                        ),
                    }
                }
            }
            _ => r
                .errors
                .push("events", "is required: a non-empty array of event types"),
        }
        let errors = r.errors;
        match url {
            Some(url) => errors.into_result(NewWebhook {
                url,
                events,
                description,
            }),
            None => Err(errors),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    Enabled,
    /// No more deliveries: the endpoint answered 410, or failed for too long.
    Disabled,
}

/// Names of the fields a webhook representation has (for `?fields=`).
pub const WEBHOOK_FIELDS: &[&str] = &[
    "id",
    "url",
    "events",
    "description",
    "status",
    "disabled_reason",
    "failing_since",
    "created_at",
    "updated_at",
];

impl super::Selectable for Webhook {
    const FIELDS: &'static [&'static str] = WEBHOOK_FIELDS;
}

/// A webhook as the API shows it (never with its secrets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Webhook {
    #[schema(example = "wh_01jd8x3b6q5w3z2y1x0v9t8s7r")]
    pub id: String,
    #[schema(example = "https://erp.example.com/hooks/stockroom")]
    pub url: String,
    #[schema(value_type = Vec<crate::event::SubscribableEventType>)]
    pub events: Vec<EventType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub status: WebhookStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Set while deliveries fail; cleared by the next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Webhook {
    pub fn wants(&self, kind: EventType) -> bool {
        self.status == WebhookStatus::Enabled
            && (kind == EventType::WebhookPing || self.events.contains(&kind))
    }
}

/// A signing secret as stored: encrypted, with the end of its validity
/// when it was replaced by a rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// KMS ciphertext, base64.
    pub ciphertext: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl StoredSecret {
    pub fn valid_at(&self, now: &str) -> bool {
        // RFC 3339 UTC timestamps in one format compare as strings.
        self.expires_at.as_deref().is_none_or(|e| e > now)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt or for a retry.
    Pending,
    Delivered,
    /// Retries exhausted (dead-lettered), the endpoint is gone or disabled.
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    Failed,
    /// 410 Gone: the endpoint is disabled.
    Gone,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub attempt: u32,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Names of the fields a delivery representation has (for `?fields=`).
pub const DELIVERY_FIELDS: &[&str] = &[
    "id",
    "webhook_id",
    "event_id",
    "event_type",
    "status",
    "attempts",
    "next_retry_at",
    "created_at",
    "updated_at",
];

impl super::Selectable for Delivery {
    const FIELDS: &'static [&'static str] = DELIVERY_FIELDS;
}

/// One event's delivery to one webhook, with every attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    #[schema(example = "dlv_01jd8x3b6q5w3z2y1x0v9t8s7r")]
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Deliveries of one event to one webhook share an id derived from both,
/// so a duplicated event notification cannot create a second delivery.
pub fn delivery_id(event_id: &str) -> String {
    format!("dlv_{}", event_id.strip_prefix("evt_").unwrap_or(event_id))
}

/// Delays between attempts: the n-th entry is waited after the n-th failed
/// attempt; when they run out the delivery is dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

/// SQS cannot hide a message for longer (visibility timeout limit).
const MAX_DELAY: Duration = Duration::from_secs(12 * 3600);

impl RetrySchedule {
    /// Comma-separated seconds, e.g. `5,300,1800,7200,18000,36000,36000`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let delays = raw
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<u64>()
                    .map(|n| Duration::from_secs(n).min(MAX_DELAY))
                    .map_err(|_| format!("invalid retry delay {s:?} in {raw:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() || delays.len() > 20 {
            return Err(format!("a retry schedule has 1 to 20 delays, got {raw:?}"));
        }
        Ok(Self(delays))
    }

    /// Attempts in all: the first plus one per delay.
    pub fn max_attempts(&self) -> u32 {
        self.0.len() as u32 + 1
    }

    /// The delay after failed attempt `attempt` (1-based), with up to ±10 %
    /// jitter from `unit` in [0, 1) so retries of many deliveries spread out;
    /// at least `retry_after` when the endpoint asked for it. `None` when the
    /// attempts are exhausted.
    pub fn delay_after(
        &self,
        attempt: u32,
        unit: f64,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let base = *self.0.get(attempt.checked_sub(1)? as usize)?;
        let factor = 0.9 + 0.2 * unit.clamp(0.0, 1.0);
        let jittered = base.mul_f64(factor).max(Duration::from_secs(1));
        Some(jittered.max(retry_after.unwrap_or_default()).min(MAX_DELAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn webhook_and_delivery_fields_name_every_field_of_their_representations() {
        crate::fields::assert_names_every_field(&Webhook {
            id: "wh_1".into(),
            url: "https://example.com/hook".into(),
            events: vec![EventType::ItemLowStock],
            description: Some("erp".into()),
            status: WebhookStatus::Disabled,
            disabled_reason: Some("gone".into()),
            failing_since: Some("t".into()),
            created_at: "t".into(),
            updated_at: "t".into(),
        });
        crate::fields::assert_names_every_field(&Delivery {
            id: "dlv_1".into(),
            webhook_id: "wh_1".into(),
            event_id: "evt_1".into(),
            event_type: EventType::ItemLowStock,
            status: DeliveryStatus::Pending,
            attempts: vec![],
            next_retry_at: Some("t".into()),
            created_at: "t".into(),
            updated_at: "t".into(),
        });
    }

    #[test]
    fn new_webhooks_are_validated_with_every_error() {
        let ok = NewWebhook::from_json(&json!({
            "url": "https://example.com/h",
            "events": ["batch.completed", "item.low_stock", "batch.completed"],
        }))
        .unwrap();
        assert_eq!(
            ok.events,
            vec![EventType::BatchCompleted, EventType::ItemLowStock]
        );
        let err = NewWebhook::from_json(&json!({
            "events": ["batch.exploded", "webhook.ping"], "extra": 1
        }))
        .unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["extra", "url", "events[0]", "events[1]"]);
        assert!(NewWebhook::from_json(&json!({"url": "https://x", "events": []})).is_err());
        assert!(
            NewWebhook::from_json(&json!({"url": "x".repeat(3000), "events": ["batch.failed"]}))
                .is_err()
        );
    }

    #[test]
    fn schedule_parses_jitters_and_runs_out() {
        let s = RetrySchedule::parse("5, 300,1800").unwrap();
        assert_eq!(s.max_attempts(), 4);
        assert_eq!(s.delay_after(1, 0.5, None), Some(Duration::from_secs(5)));
        let low = s.delay_after(2, 0.0, None).unwrap();
        let high = s.delay_after(2, 0.999, None).unwrap();
        assert!(low >= Duration::from_secs(270) && high <= Duration::from_secs(330));
        assert_eq!(
            s.delay_after(1, 0.5, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(s.delay_after(4, 0.5, None), None);
        assert_eq!(s.delay_after(0, 0.5, None), None);
        assert!(RetrySchedule::parse("").is_err());
        assert!(RetrySchedule::parse("5,soon").is_err());
        assert_eq!(
            RetrySchedule::parse("999999")
                .unwrap()
                .delay_after(1, 1.0, None),
            Some(MAX_DELAY)
        );
    }

    #[test]
    fn secrets_expire_and_deliveries_derive_from_events() {
        let s = StoredSecret {
            ciphertext: "c".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            expires_at: Some("2026-01-02T00:00:00.000Z".into()),
        };
        assert!(s.valid_at("2026-01-01T12:00:00.000Z"));
        assert!(!s.valid_at("2026-01-02T00:00:00.001Z"));
        assert_eq!(delivery_id("evt_01abc"), "dlv_01abc");
    }
}
