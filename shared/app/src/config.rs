//! Configuration from the environment variables `template.yaml` sets, read and
//! checked once at cold start: a missing variable fails the init with a clear
//! message instead of failing requests later.

use std::env;

#[derive(Debug, thiserror::Error)]
#[error("missing or empty environment variable(s): {}", .0.join(", "))]
pub struct ConfigError(pub Vec<&'static str>);

struct Reader {
    missing: Vec<&'static str>,
}

impl Reader {
    fn get(&mut self, name: &'static str) -> String {
        match env::var(name) {
            Ok(v) if !v.trim().is_empty() => v,
            _ => {
                self.missing.push(name);
                String::new()
            }
        }
    }
    fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.missing.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError(self.missing))
        }
    }
}

/// `aws` when deployed, anything else (`local`) on a developer machine.
pub fn environment() -> String {
    env::var("STOCKROOM_ENV").unwrap_or_else(|_| "local".into())
}

pub fn function_name(default: &str) -> String {
    env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| default.to_owned())
}

#[derive(Clone)]
pub struct ItemsApiConfig {
    pub stock_table: String,
    pub cursor_signing_key: Vec<u8>,
    /// `CHANGES_SETTLE_SECONDS` (default `changes::DEFAULT_SETTLE`): how
    /// old a movement is before the change feed returns it.
    pub changes_settle: std::time::Duration,
}

impl ItemsApiConfig {
    pub fn from_env() -> Result<Self, SettingsError> {
        let mut r = Reader { missing: vec![] };
        let stock_table = r.get("STOCK_TABLE");
        let key = r.get("CURSOR_SIGNING_KEY");
        let changes_settle = match env::var("CHANGES_SETTLE_SECONDS") {
            Ok(raw) if !raw.trim().is_empty() => seconds("CHANGES_SETTLE_SECONDS", &raw)?,
            _ => crate::changes::DEFAULT_SETTLE,
        };
        Ok(r.finish(Self {
            stock_table,
            cursor_signing_key: key.into_bytes(),
            changes_settle,
        })?)
    }
}

/// Local development only: lets webhooks target `http://127.0.0.1` (the
/// template never sets it, and a deployed stack ignores it).
pub fn allow_loopback_webhooks() -> bool {
    environment() != "aws"
        && env::var("STOCKROOM_WEBHOOK_ALLOW_LOOPBACK").is_ok_and(|v| v == "true")
}

#[derive(Clone)]
pub struct WebhooksApiConfig {
    pub stock_table: String,
    pub cursor_signing_key: Vec<u8>,
    pub secrets_key_id: String,
    pub delivery_queue_url: String,
}

impl WebhooksApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut r = Reader { missing: vec![] };
        let stock_table = r.get("STOCK_TABLE");
        let key = r.get("CURSOR_SIGNING_KEY");
        let secrets_key_id = r.get("SECRETS_KEY_ID");
        let delivery_queue_url = r.get("WEBHOOK_DELIVERY_QUEUE_URL");
        r.finish(Self {
            stock_table,
            cursor_signing_key: key.into_bytes(),
            secrets_key_id,
            delivery_queue_url,
        })
    }
}

#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    pub stock_table: String,
    pub secrets_key_id: String,
    pub delivery_queue_url: String,
    pub dlq_url: String,
    pub retry_schedule: crate::domain::webhook::RetrySchedule,
    pub disable_after: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatcherConfigError {
    #[error(transparent)]
    Missing(#[from] ConfigError),
    #[error("WEBHOOK_RETRY_SCHEDULE: {0}")]
    Schedule(String),
    #[error("WEBHOOK_DISABLE_AFTER_SECONDS must be a number of seconds, got {0:?}")]
    DisableAfter(String),
}

impl DispatcherConfig {
    pub fn from_env() -> Result<Self, DispatcherConfigError> {
        let mut r = Reader { missing: vec![] };
        let stock_table = r.get("STOCK_TABLE");
        let secrets_key_id = r.get("SECRETS_KEY_ID");
        let delivery_queue_url = r.get("WEBHOOK_DELIVERY_QUEUE_URL");
        let dlq_url = r.get("WEBHOOK_DLQ_URL");
        let schedule = r.get("WEBHOOK_RETRY_SCHEDULE");
        let disable_after = r.get("WEBHOOK_DISABLE_AFTER_SECONDS");
        if !r.missing.is_empty() {
            return Err(ConfigError(r.missing).into());
        }
        Ok(Self {
            stock_table,
            secrets_key_id,
            delivery_queue_url,
            dlq_url,
            retry_schedule: crate::domain::webhook::RetrySchedule::parse(&schedule)
                .map_err(DispatcherConfigError::Schedule)?,
            disable_after: seconds("WEBHOOK_DISABLE_AFTER_SECONDS", &disable_after)
                .map_err(|_| DispatcherConfigError::DisableAfter(disable_after.clone()))?,
        })
    }
}

#[derive(Clone)]
pub struct BatchesApiConfig {
    pub stock_table: String,
    pub batch_queue_url: String,
    pub cursor_signing_key: Vec<u8>,
    pub uploads_bucket: String,
    pub upload_url_ttl: std::time::Duration,
    pub upload_grace: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Missing(#[from] ConfigError),
    #[error("{0} must be a whole number of seconds, got {1:?}")]
    Seconds(&'static str, String),
    #[error("{0} must be one of {1:?}, got {2:?}")]
    OneOf(&'static str, &'static [&'static str], String),
}

/// What `StoreWriteLayout` may be.
pub const STORE_WRITE_LAYOUTS: &[&str] = &["compatible", "sharded"];

/// `STORE_WRITE_LAYOUT` (the stack's `StoreWriteLayout`): whether the stores
/// write the sharded layout, or (`compatible`, also when unset) one the
/// release before reads too (docs/operations.md#store-write-layout).
pub fn sharded_writes() -> Result<bool, SettingsError> {
    match env::var("STORE_WRITE_LAYOUT") {
        Ok(raw) if !raw.trim().is_empty() => {
            one_of("STORE_WRITE_LAYOUT", &raw, STORE_WRITE_LAYOUTS).map(|v| v == "sharded")
        }
        _ => Ok(false),
    }
}

fn one_of(
    name: &'static str,
    raw: &str,
    allowed: &'static [&'static str],
) -> Result<&'static str, SettingsError> {
    allowed
        .iter()
        .find(|v| **v == raw.trim())
        .copied()
        .ok_or_else(|| SettingsError::OneOf(name, allowed, raw.to_owned()))
}

fn seconds(name: &'static str, raw: &str) -> Result<std::time::Duration, SettingsError> {
    raw.trim()
        .parse::<u64>()
        .map(std::time::Duration::from_secs)
        .map_err(|_| SettingsError::Seconds(name, raw.to_owned()))
}

impl BatchesApiConfig {
    pub fn from_env() -> Result<Self, SettingsError> {
        let mut r = Reader { missing: vec![] };
        let stock_table = r.get("STOCK_TABLE");
        let batch_queue_url = r.get("BATCH_QUEUE_URL");
        let key = r.get("CURSOR_SIGNING_KEY");
        let uploads_bucket = r.get("UPLOADS_BUCKET");
        let ttl = r.get("UPLOAD_URL_TTL_SECONDS");
        let grace = r.get("UPLOAD_GRACE_SECONDS");
        if !r.missing.is_empty() {
            return Err(ConfigError(r.missing).into());
        }
        Ok(Self {
            stock_table,
            batch_queue_url,
            cursor_signing_key: key.into_bytes(),
            uploads_bucket,
            upload_url_ttl: seconds("UPLOAD_URL_TTL_SECONDS", &ttl)?,
            upload_grace: seconds("UPLOAD_GRACE_SECONDS", &grace)?,
        })
    }
}

#[derive(Clone, Debug)]
pub struct BatchSplitterConfig {
    pub stock_table: String,
    pub batch_queue_url: String,
    pub uploads_bucket: String,
    /// Messages from this queue are upload notifications that exhausted their deliveries.
    pub uploads_dlq_arn: String,
}

impl BatchSplitterConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut r = Reader { missing: vec![] };
        let stock_table = r.get("STOCK_TABLE");
        let batch_queue_url = r.get("BATCH_QUEUE_URL");
        let uploads_bucket = r.get("UPLOADS_BUCKET");
        let uploads_dlq_arn = r.get("UPLOADS_DLQ_ARN");
        r.finish(Self {
            stock_table,
            batch_queue_url,
            uploads_bucket,
            uploads_dlq_arn,
        })
    }
}

#[derive(Clone, Debug)]
pub struct BatchWorkerConfig {
    pub stock_table: String,
    pub batch_queue_url: String,
    /// Messages from this queue are chunks that exhausted their deliveries.
    pub batch_dlq_arn: String,
}

impl BatchWorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut r = Reader { missing: vec![] };
        let stock_table = r.get("STOCK_TABLE");
        let batch_queue_url = r.get("BATCH_QUEUE_URL");
        let batch_dlq_arn = r.get("BATCH_DLQ_ARN");
        r.finish(Self {
            stock_table,
            batch_queue_url,
            batch_dlq_arn,
        })
    }
}

/// The events publisher: the topic and the dispatcher's ordered queue.
#[derive(Clone, Debug)]
pub struct EventsPublisherConfig {
    pub stock_table: String,
    pub events_topic_arn: String,
    pub webhook_events_queue_url: String,
}

impl EventsPublisherConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut r = Reader { missing: vec![] };
        let stock_table = r.get("STOCK_TABLE");
        let events_topic_arn = r.get("EVENTS_TOPIC_ARN");
        let webhook_events_queue_url = r.get("WEBHOOK_EVENTS_QUEUE_URL");
        if !r.missing.is_empty() {
            return Err(ConfigError(r.missing));
        }
        Ok(Self {
            stock_table,
            events_topic_arn,
            webhook_events_queue_url,
        })
    }
}

#[derive(Clone)]
pub struct KeysApiConfig {
    pub api_keys_table: String,
    pub cursor_signing_key: Vec<u8>,
}

impl KeysApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut r = Reader { missing: vec![] };
        let api_keys_table = r.get("API_KEYS_TABLE");
        let key = r.get("CURSOR_SIGNING_KEY");
        r.finish(Self {
            api_keys_table,
            cursor_signing_key: key.into_bytes(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct AuthorizerConfig {
    pub api_keys_table: String,
}

impl AuthorizerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut r = Reader { missing: vec![] };
        let api_keys_table = r.get("API_KEYS_TABLE");
        r.finish(Self { api_keys_table })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_is_one_of_those_named() {
        assert_eq!(
            one_of("L", " sharded", STORE_WRITE_LAYOUTS).ok(),
            Some("sharded")
        );
        for bad in ["Sharded", "16", "x"] {
            let err = one_of("L", bad, STORE_WRITE_LAYOUTS).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("L must be one of [\"compatible\", \"sharded\"], got {bad:?}")
            );
        }
    }
}
