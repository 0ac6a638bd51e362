//! Keys API Lambda: API Gateway REST proxy events -> the keys router.

use lambda_http::Error;
use std::sync::Arc;
use stockroom_app::config;
use stockroom_app::cursor::CursorCodec;
use stockroom_app::keys::KeysService;
use stockroom_aws::dynamodb::DynamoApiKeyStore;
use stockroom_aws::{runtime, sdk};
use stockroom_http::{KeysState, keys_router};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init();
    let metrics = runtime::metrics("keys-api")?;
    let cfg = config::KeysApiConfig::from_env()?;
    let sdk = sdk::aws_sdk_config().await;
    let store = DynamoApiKeyStore::from_sdk_config(&sdk, cfg.api_keys_table);
    let state = KeysState {
        keys: KeysService::new(Arc::new(store), config::environment()),
        cursors: CursorCodec::new(cfg.cursor_signing_key),
    };
    runtime::emf::lambda::service::run_http(
        metrics,
        keys_router(state, config::function_name("keys-api")),
    )
    .await
}
