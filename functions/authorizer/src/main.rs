//! API Gateway REQUEST authorizer: `Authorization: Bearer <key>` -> Allow with
//! `{tenant_id, key_id, scopes}` context, or "Unauthorized" (HTTP 401).

mod handler;

use lambda_runtime::{Error, service_fn};
use stockroom_app::config;
use stockroom_aws::dynamodb::DynamoApiKeyStore;
use stockroom_aws::{runtime, sdk};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init();
    let metrics = runtime::metrics("authorizer")?;
    let cfg = config::AuthorizerConfig::from_env()?;
    let sdk = sdk::aws_sdk_config().await;
    let store = DynamoApiKeyStore::from_sdk_config(&sdk, cfg.api_keys_table);
    let function = config::function_name("authorizer");
    let store = &store;
    let function = function.as_str();
    runtime::emf::lambda::service::run(
        metrics,
        service_fn(move |event| handler::handle(event, store, function)),
    )
    .await
}
