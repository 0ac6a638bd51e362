//! Keys API Lambda: API Gateway REST proxy events -> the keys router.

use lambda_http::Error;
use std::sync::Arc;
use stockroom::adapters::dynamodb::DynamoApiKeyStore;
use stockroom::cursor::CursorCodec;
use stockroom::http::{KeysState, keys_router};
use stockroom::keys::KeysService;
use stockroom::{config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let metrics = telemetry::metrics("keys-api")?;
    let cfg = config::KeysApiConfig::from_env()?;
    let sdk = config::aws_sdk_config().await;
    let store = DynamoApiKeyStore::from_sdk_config(&sdk, cfg.api_keys_table);
    let state = KeysState {
        keys: KeysService::new(Arc::new(store), config::environment()),
        cursors: CursorCodec::new(cfg.cursor_signing_key),
    };
    telemetry::emf::lambda::service::run_http(
        metrics,
        keys_router(state, config::function_name("keys-api")),
    )
    .await
}
