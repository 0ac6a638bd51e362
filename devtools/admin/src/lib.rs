//! Operator-side tenant provisioning, shared by the `stockroom-admin` CLI and
//! the integration tests (which create their tenants the way operators do).
//!
//! A tenant's requests are metered by an API Gateway usage plan: the tenant
//! gets one API Gateway API key (named `<stack>.<tenant>`), attached to one of
//! the stack's plans (`<stack>-standard`, `<stack>-trial`, see template.yaml).
//! The key's value is copied into the tenant's Stockroom API key records and
//! returned by the authorizer as `usageIdentifierKey`.

use anyhow::{Context, bail};
use aws_sdk_apigateway::Client;

pub use aws_sdk_apigateway;

mod target;
pub use target::StackTarget;

/// Plans the template defines (`UsagePlanName: <stack>-<plan>`).
pub const PLANS: &[&str] = &["standard", "trial"];

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanLimits {
    pub rate: Option<f64>,
    pub burst: Option<i32>,
    pub quota: Option<i32>,
}

/// The stack's usage plans in API Gateway.
#[derive(Clone, Debug)]
pub struct UsagePlans {
    client: Client,
    stack: String,
}

impl UsagePlans {
    pub fn new(sdk: &aws_config::SdkConfig, stack: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            stack: stack.into(),
        }
    }

    /// From `STOCKROOM_STACK_NAME` (the local stack's `.local/env` sets it).
    pub fn from_env(sdk: &aws_config::SdkConfig) -> anyhow::Result<Self> {
        let stack = std::env::var("STOCKROOM_STACK_NAME")
            .context("STOCKROOM_STACK_NAME is not set (the stack whose usage plans to use)")?;
        Ok(Self::new(sdk, stack))
    }

    fn plan_name(&self, plan: &str) -> String {
        format!("{}-{plan}", self.stack)
    }

    fn key_name(&self, tenant_id: &str) -> String {
        format!("{}.{tenant_id}", self.stack)
    }

    /// Every usage plan of the account as (id, name).
    async fn all_plans(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut plans = Vec::new();
        let mut position = None;
        loop {
            let page = self
                .client
                .get_usage_plans()
                .set_position(position)
                .limit(500)
                .send()
                .await
                .context("listing usage plans")?;
            for p in page.items() {
                if let (Some(id), Some(name)) = (p.id(), p.name()) {
                    plans.push((id.to_owned(), name.to_owned()));
                }
            }
            match page.position() {
                Some(next) if !next.is_empty() => position = Some(next.to_owned()),
                _ => return Ok(plans),
            }
        }
    }

    /// The id of the stack's plan `plan` (`standard`, `trial`).
    pub async fn plan_id(&self, plan: &str) -> anyhow::Result<String> {
        if !PLANS.contains(&plan) {
            bail!("unknown plan {plan}; known: {}", PLANS.join(", "));
        }
        let name = self.plan_name(plan);
        self.all_plans()
            .await?
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| id)
            .with_context(|| format!("no usage plan named {name}: is the stack deployed?"))
    }

    /// The plan's limits as API Gateway holds them: (rate, burst, quota per period).
    pub async fn limits(&self, plan: &str) -> anyhow::Result<PlanLimits> {
        let id = self.plan_id(plan).await?;
        let p = self
            .client
            .get_usage_plan()
            .usage_plan_id(id)
            .send()
            .await
            .context("reading the usage plan")?;
        Ok(PlanLimits {
            rate: p.throttle().map(|t| t.rate_limit()),
            burst: p.throttle().map(|t| t.burst_limit()),
            quota: p.quota().map(|q| q.limit()),
        })
    }

    /// The tenant's API Gateway key as (id, value), if it has one.
    async fn find_key(&self, tenant_id: &str) -> anyhow::Result<Option<(String, String)>> {
        let name = self.key_name(tenant_id);
        let mut position = None;
        loop {
            let page = self
                .client
                .get_api_keys()
                .name_query(&name)
                .include_values(true)
                .set_position(position)
                .limit(500)
                .send()
                .await
                .context("listing API Gateway keys")?;
            // nameQuery matches prefixes: keep the exact name only.
            if let Some(k) = page.items().iter().find(|k| k.name() == Some(&name))
                && let (Some(id), Some(value)) = (k.id(), k.value())
            {
                return Ok(Some((id.to_owned(), value.to_owned())));
            }
            match page.position() {
                Some(next) if !next.is_empty() => position = Some(next.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    /// Gives the tenant an API Gateway key on `plan` (creating the key if it
    /// has none, moving it if it is on another plan of this stack) and
    /// returns the key's value: the tenant's usage identifier. Idempotent.
    pub async fn assign(&self, tenant_id: &str, plan: &str) -> anyhow::Result<String> {
        let plan_id = self.plan_id(plan).await?;
        let (key_id, value) = match self.find_key(tenant_id).await? {
            Some(k) => k,
            None => {
                let created = self
                    .client
                    .create_api_key()
                    .name(self.key_name(tenant_id))
                    .description(format!(
                        "Usage plan key of tenant {tenant_id} (returned by the authorizer; never given to clients)"
                    ))
                    .enabled(true)
                    .send()
                    .await
                    .context("creating the tenant's API Gateway key")?;
                match (created.id(), created.value()) {
                    (Some(id), Some(value)) => (id.to_owned(), value.to_owned()),
                    _ => bail!("API Gateway returned a key without id or value"),
                }
            }
        };
        // A key may be on one plan per API stage: leave the stack's others.
        let ours: Vec<String> = PLANS.iter().map(|p| self.plan_name(p)).collect();
        let on = self
            .client
            .get_usage_plans()
            .key_id(&key_id)
            .limit(500)
            .send()
            .await
            .context("listing the key's usage plans")?;
        let mut on_target = false;
        for p in on.items() {
            let (Some(id), Some(name)) = (p.id(), p.name()) else {
                continue;
            };
            if id == plan_id {
                on_target = true;
            } else if ours.iter().any(|n| n == name) {
                self.client
                    .delete_usage_plan_key()
                    .usage_plan_id(id)
                    .key_id(&key_id)
                    .send()
                    .await
                    .with_context(|| format!("leaving plan {name}"))?;
            }
        }
        if !on_target {
            self.client
                .create_usage_plan_key()
                .usage_plan_id(&plan_id)
                .key_id(&key_id)
                .key_type("API_KEY")
                .send()
                .await
                .context("adding the key to the plan")?;
        }
        Ok(value)
    }
}

/// The stored record of a new API key `api_key` of `tenant_id` (its SHA-256,
/// never the key): how the CLI, the tests and the benchmarks make keys.
/// `usage_key` is the tenant's usage-plan key ([`UsagePlans::assign`]).
pub fn key_record(
    api_key: &str,
    tenant_id: &str,
    name: &str,
    scopes: &[impl AsRef<str>],
    usage_key: Option<String>,
) -> stockroom_domain::key::ApiKeyRecord {
    stockroom_domain::key::ApiKeyRecord {
        key_hash: stockroom_app::auth::hash_api_key(api_key),
        key_id: format!("key_{}", ulid::Ulid::new().to_string().to_ascii_lowercase()),
        tenant_id: tenant_id.to_owned(),
        name: name.to_owned(),
        scopes: scopes.iter().map(|s| s.as_ref().to_owned()).collect(),
        created_at: stockroom_app::clock::now_rfc3339(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        usage_key,
    }
}
