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
    pub events_topic_arn: String,
}

impl ItemsApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut r = Reader { missing: vec![] };
        let stock_table = r.get("STOCK_TABLE");
        let key = r.get("CURSOR_SIGNING_KEY");
        let events_topic_arn = r.get("EVENTS_TOPIC_ARN");
        r.finish(Self {
            stock_table,
            cursor_signing_key: key.into_bytes(),
            events_topic_arn,
        })
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
    pub events_topic_arn: String,
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
        let events_topic_arn = r.get("EVENTS_TOPIC_ARN");
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
            events_topic_arn,
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
    pub events_topic_arn: String,
    pub uploads_bucket: String,
    pub upload_url_ttl: std::time::Duration,
    pub upload_grace: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchesApiConfigError {
    #[error(transparent)]
    Missing(#[from] ConfigError),
    #[error("{0} must be a whole number of seconds, got {1:?}")]
    Seconds(&'static str, String),
}

fn seconds(name: &'static str, raw: &str) -> Result<std::time::Duration, BatchesApiConfigError> {
    raw.trim()
        .parse::<u64>()
        .map(std::time::Duration::from_secs)
        .map_err(|_| BatchesApiConfigError::Seconds(name, raw.to_owned()))
}

impl BatchesApiConfig {
    pub fn from_env() -> Result<Self, BatchesApiConfigError> {
        let mut r = Reader { missing: vec![] };
        let stock_table = r.get("STOCK_TABLE");
        let batch_queue_url = r.get("BATCH_QUEUE_URL");
        let key = r.get("CURSOR_SIGNING_KEY");
        let events_topic_arn = r.get("EVENTS_TOPIC_ARN");
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
            events_topic_arn,
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
    pub events_topic_arn: String,
}

impl BatchSplitterConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut r = Reader { missing: vec![] };
        let stock_table = r.get("STOCK_TABLE");
        let batch_queue_url = r.get("BATCH_QUEUE_URL");
        let uploads_bucket = r.get("UPLOADS_BUCKET");
        let uploads_dlq_arn = r.get("UPLOADS_DLQ_ARN");
        let events_topic_arn = r.get("EVENTS_TOPIC_ARN");
        r.finish(Self {
            stock_table,
            batch_queue_url,
            uploads_bucket,
            uploads_dlq_arn,
            events_topic_arn,
        })
    }
}

#[derive(Clone, Debug)]
pub struct BatchWorkerConfig {
    pub stock_table: String,
    pub batch_queue_url: String,
    /// Messages from this queue are chunks that exhausted their deliveries.
    pub batch_dlq_arn: String,
    pub events_topic_arn: String,
}

impl BatchWorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut r = Reader { missing: vec![] };
        let stock_table = r.get("STOCK_TABLE");
        let batch_queue_url = r.get("BATCH_QUEUE_URL");
        let batch_dlq_arn = r.get("BATCH_DLQ_ARN");
        let events_topic_arn = r.get("EVENTS_TOPIC_ARN");
        r.finish(Self {
            stock_table,
            batch_queue_url,
            batch_dlq_arn,
            events_topic_arn,
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

#[cfg(feature = "aws")]
/// The shared AWS SDK configuration. Makes no network call: region and
/// credentials come from the Lambda environment, and `AWS_ENDPOINT_URL`
/// (the standard variable) points the clients at the local emulator.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(sdk_http_client(SdkTlsRoots::from_env()));
    // Lambda hands a function its role's credentials in the environment, the
    // default chain's first source. Left to itself the chain also builds its
    // other sources at init, the web-identity one with its own STS client
    // (1.0 M instructions, a fifth to a third of a function's init in release),
    // which a function that has environment credentials never reaches.
    let loader = if has_environment_credentials(|name| env::var(name).ok()) {
        loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        )
    } else {
        loader
    };
    let sdk = loader.load().await;
    if warm_connections(|name| env::var(name).ok()) {
        spawn_connection_warm_up(&sdk);
    }
    sdk
}

/// Whether to open the SDK's first connection (TCP and TLS) on a task during
/// init instead of on the first event's first call:
/// `STOCKROOM_WARM_CONNECTIONS` `true` or `false`, and unset, only where
/// Lambda runs the init ahead of any request (provisioned concurrency). For
/// an on-demand start the event is waiting when init ends, so the warm-up
/// races the first call rather than saving it (docs/performance.md).
#[cfg(feature = "aws")]
fn warm_connections(var: impl Fn(&str) -> Option<String>) -> bool {
    match var("STOCKROOM_WARM_CONNECTIONS").as_deref().map(str::trim) {
        Some("true") => true,
        Some("false") => false,
        _ => var("AWS_LAMBDA_INITIALIZATION_TYPE")
            .is_some_and(|kind| kind == "provisioned-concurrency"),
    }
}

/// Longer than a handshake takes anywhere; the warm-up is let go after it.
#[cfg(feature = "aws")]
const WARM_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One DynamoDB `DescribeEndpoints` call on a task of its own: every client
/// built from `sdk` shares its HTTP client's connection pool, and every
/// function's first event calls DynamoDB first, so the first event finds a
/// connection open (on AWS, DynamoDB's; locally, the emulator's, which every
/// service shares). The client is built on the task too, so its endpoint
/// tables are parsed beside the rest of init rather than in it.
/// DescribeEndpoints reads no table and needs only its own IAM permission.
#[cfg(feature = "aws")]
fn spawn_connection_warm_up(sdk: &aws_config::SdkConfig) {
    let sdk = sdk.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let call = client
            .describe_endpoints()
            .customize()
            .config_override(
                aws_sdk_dynamodb::Config::builder()
                    .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()),
            )
            .send();
        let outcome = match tokio::time::timeout(WARM_UP_TIMEOUT, call).await {
            Ok(Ok(_)) => "open",
            Ok(Err(_)) => "failed",
            Err(_) => "timed out",
        };
        tracing::debug!(
            outcome,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "connection warm-up"
        );
    });
}

/// Whether the default credentials chain would stop at its first source, the
/// environment: an access key id and a secret key, neither blank.
#[cfg(feature = "aws")]
fn has_environment_credentials(var: impl Fn(&str) -> Option<String>) -> bool {
    let present = |name: &str| var(name).is_some_and(|value| !value.trim().is_empty());
    present("AWS_ACCESS_KEY_ID")
        && (present("AWS_SECRET_ACCESS_KEY") || present("SECRET_ACCESS_KEY"))
}

/// The root certificates the AWS SDK clients trust, from
/// `STOCKROOM_SDK_TLS_ROOTS`.
#[cfg(feature = "aws")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdkTlsRoots {
    /// `amazon` (the default): the Amazon Trust Services roots AWS service
    /// endpoints chain to (`shared/certs/`). The SDK's default loads and
    /// parses every certificate of the system store at init instead — 87 % of
    /// a function's init instructions (docs/performance.md).
    AmazonTrustServices,
    /// `system`: the system store, for an `AWS_ENDPOINT_URL` or HTTPS proxy
    /// whose certificate another CA issued.
    System,
}

#[cfg(feature = "aws")]
impl SdkTlsRoots {
    pub const VARIABLE: &'static str = "STOCKROOM_SDK_TLS_ROOTS";

    /// Unknown values take the system store (connections keep working) and
    /// say so in the log.
    pub fn from_env() -> Self {
        match env::var(Self::VARIABLE).as_deref().map(str::trim) {
            Err(_) | Ok("") | Ok("amazon") => Self::AmazonTrustServices,
            Ok("system") => Self::System,
            Ok(other) => {
                tracing::warn!(
                    value = other,
                    "{} must be amazon or system: using the system store",
                    Self::VARIABLE
                );
                Self::System
            }
        }
    }
}

/// Amazon Root CA 1-4 and Starfield Services Root G2, PEM.
#[cfg(feature = "aws")]
const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// The SDK's default HTTPS client (hyper, rustls with aws-lc, proxy settings
/// from the environment), with `roots` as its trust store, building its TLS
/// connector on first use ([`ConnectorOnFirstUse`]).
#[cfg(feature = "aws")]
fn sdk_http_client(roots: SdkTlsRoots) -> SharedHttpClient {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig};
    let store = match roots {
        SdkTlsRoots::AmazonTrustServices => {
            TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES)
        }
        SdkTlsRoots::System => TrustStore::default(),
    };
    // `build` cannot fail (1.5); were it to, the default is the system store.
    let context = TlsContext::builder()
        .with_trust_store(store)
        .build()
        .unwrap_or_default();
    ConnectorOnFirstUse::share(Builder::new().build_with_connector_fn(
        move |settings, components| {
            let mut connector = ConnectorBuilder::default()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(context.clone());
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector.set_proxy_config(Some(ProxyConfig::from_env()));
            connector.build()
        },
    ))
}

#[cfg(feature = "aws")]
use aws_sdk_dynamodb::config::{HttpClient, RuntimeComponents, SharedHttpClient};
#[cfg(feature = "aws")]
use aws_smithy_runtime_api::client::http::{HttpConnectorSettings, SharedHttpConnector};

/// An SDK HTTP client that builds its connector when a request first needs
/// it, not also once per SDK client at init. The SDK's hyper client builds a
/// whole TLS connector (trust store decoded, rustls configured) in
/// `validate_base_client_config`, which every `Client::from_conf` calls, and
/// drops it; the first request builds the one it keeps anyway. A function
/// with four SDK clients built four connectors at init for nothing: ~0.26 M
/// instructions each, a quarter of its init (docs/performance.md).
#[cfg(feature = "aws")]
#[derive(Debug)]
struct ConnectorOnFirstUse(SharedHttpClient);

#[cfg(feature = "aws")]
impl ConnectorOnFirstUse {
    fn share(inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(Self(inner))
    }
}

#[cfg(feature = "aws")]
impl HttpClient for ConnectorOnFirstUse {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    // `validate_base_client_config` is the trait's default: nothing to check.

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0.validate_final_config(components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// An environment of `pairs`, for the functions that take a lookup.
    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn environment_credentials_need_a_key_id_and_a_secret() {
        assert!(has_environment_credentials(env(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ])));
        // The chain's environment source also takes SECRET_ACCESS_KEY.
        assert!(has_environment_credentials(env(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("SECRET_ACCESS_KEY", "secret"),
        ])));
        assert!(!has_environment_credentials(env(&[(
            "AWS_ACCESS_KEY_ID",
            "AKIA"
        )])));
        assert!(!has_environment_credentials(env(&[
            ("AWS_ACCESS_KEY_ID", " "),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ])));
        assert!(!has_environment_credentials(env(&[])));
    }

    #[test]
    fn connections_are_warmed_when_asked_or_when_init_runs_ahead() {
        const KIND: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";
        const SWITCH: &str = "STOCKROOM_WARM_CONNECTIONS";
        assert!(!warm_connections(env(&[])));
        assert!(!warm_connections(env(&[(KIND, "on-demand")])));
        assert!(warm_connections(env(&[(KIND, "provisioned-concurrency")])));
        assert!(warm_connections(env(&[
            (SWITCH, "true"),
            (KIND, "on-demand")
        ])));
        assert!(!warm_connections(env(&[
            (SWITCH, "false"),
            (KIND, "provisioned-concurrency")
        ])));
        // Anything else leaves the decision to the initialization type.
        assert!(!warm_connections(env(&[
            (SWITCH, "yes"),
            (KIND, "on-demand")
        ])));
    }

    /// Building SDK clients builds no connector; the first request builds
    /// the one it uses. Without the wrapper every client built one (the
    /// control), which is what made it worth writing.
    #[tokio::test]
    async fn sdk_clients_build_their_connector_on_first_use() {
        use aws_smithy_http_client::{Builder, ConnectorBuilder};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let counting_client = |builds: Arc<AtomicUsize>| {
            Builder::new().build_with_connector_fn(move |settings, components| {
                builds.fetch_add(1, Ordering::SeqCst);
                let mut connector = ConnectorBuilder::default();
                connector.set_connector_settings(settings.cloned());
                if let Some(components) = components {
                    connector.set_sleep_impl(components.sleep_impl());
                }
                connector.build_http()
            })
        };
        let dynamodb = |http_client: SharedHttpClient| {
            let config = aws_sdk_dynamodb::Config::builder()
                .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "AKIDEXAMPLE",
                    "secret",
                    None,
                    None,
                    "test",
                ))
                // Nothing listens on port 1: the request fails at connect.
                .endpoint_url("http://127.0.0.1:1")
                .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
                .http_client(http_client)
                .build();
            aws_sdk_dynamodb::Client::from_conf(config)
        };

        let control = Arc::new(AtomicUsize::new(0));
        let _built = dynamodb(counting_client(control.clone()));
        let _built_again = dynamodb(counting_client(control.clone()));
        assert_eq!(control.load(Ordering::SeqCst), 2, "one per client built");

        let builds = Arc::new(AtomicUsize::new(0));
        let shared = ConnectorOnFirstUse::share(counting_client(builds.clone()));
        let first = dynamodb(shared.clone());
        let second = dynamodb(shared);
        assert_eq!(builds.load(Ordering::SeqCst), 0, "none at client build");
        for client in [&first, &second, &first] {
            let refused = client.list_tables().send().await;
            assert!(refused.is_err(), "nothing listens on 127.0.0.1:1");
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1, "one, cached, for all");
    }

    /// The compiled-in trust store: five certificates, each well-formed DER
    /// (a bad one would make the SDK panic when it builds its first
    /// connector; the integration tests build it on every run).
    #[test]
    fn amazon_trust_services_roots_are_five_der_certificates() {
        let pem = std::str::from_utf8(AMAZON_TRUST_SERVICES).expect("utf-8");
        let certs: Vec<Vec<u8>> = pem
            .split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|block| {
                let body = block
                    .split("-----END CERTIFICATE-----")
                    .next()
                    .unwrap_or_default()
                    .replace(['\n', '\r'], "");
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .expect("base64")
            })
            .collect();
        assert_eq!(certs.len(), 5);
        for der in certs {
            // SEQUENCE with a two-byte long-form length, as every X.509 root here.
            assert_eq!(der[..2], [0x30, 0x82]);
            assert_eq!(
                usize::from(der[2]) << 8 | usize::from(der[3]),
                der.len() - 4
            );
        }
    }
}
