//! The AWS SDK's shared configuration: its HTTPS client and trust store,
//! credentials from the environment, and the optional connection warm-up.
//! Built once at init; every adapter's client is made from it.

use aws_sdk_dynamodb::config::{HttpClient, RuntimeComponents, SharedHttpClient};
use aws_smithy_runtime_api::client::http::{HttpConnectorSettings, SharedHttpConnector};
use std::env;

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
fn warm_connections(var: impl Fn(&str) -> Option<String>) -> bool {
    match var("STOCKROOM_WARM_CONNECTIONS").as_deref().map(str::trim) {
        Some("true") => true,
        Some("false") => false,
        _ => var("AWS_LAMBDA_INITIALIZATION_TYPE")
            .is_some_and(|kind| kind == "provisioned-concurrency"),
    }
}

/// Longer than a handshake takes anywhere; the warm-up is let go after it.
const WARM_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One DynamoDB `DescribeEndpoints` call on a task of its own: every client
/// built from `sdk` shares its HTTP client's connection pool, and every
/// function's first event calls DynamoDB first, so the first event finds a
/// connection open (on AWS, DynamoDB's; locally, the emulator's, which every
/// service shares). The client is built on the task too, so its endpoint
/// tables are parsed beside the rest of init rather than in it.
/// DescribeEndpoints reads no table and needs only its own IAM permission.
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
fn has_environment_credentials(var: impl Fn(&str) -> Option<String>) -> bool {
    let present = |name: &str| var(name).is_some_and(|value| !value.trim().is_empty());
    present("AWS_ACCESS_KEY_ID")
        && (present("AWS_SECRET_ACCESS_KEY") || present("SECRET_ACCESS_KEY"))
}

/// The root certificates the AWS SDK clients trust, from
/// `STOCKROOM_SDK_TLS_ROOTS`.
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
const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// The SDK's default HTTPS client (hyper, rustls with aws-lc, proxy settings
/// from the environment), with `roots` as its trust store, building its TLS
/// connector on first use ([`ConnectorOnFirstUse`]).
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

/// An SDK HTTP client that builds its connector when a request first needs
/// it, not also once per SDK client at init. The SDK's hyper client builds a
/// whole TLS connector (trust store decoded, rustls configured) in
/// `validate_base_client_config`, which every `Client::from_conf` calls, and
/// drops it; the first request builds the one it keeps anyway. A function
/// with four SDK clients built four connectors at init for nothing: ~0.26 M
/// instructions each, a quarter of its init (docs/performance.md).
#[derive(Debug)]
struct ConnectorOnFirstUse(SharedHttpClient);

impl ConnectorOnFirstUse {
    fn share(inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(Self(inner))
    }
}

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

#[cfg(test)]
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
