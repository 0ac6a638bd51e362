//! Items API Lambda: API Gateway REST proxy events -> the shared axum router.

use lambda_http::Error;
use std::sync::Arc;
use stockroom::adapters::dynamodb::DynamoItemStore;
use stockroom::adapters::sns::SnsEventPublisher;
use stockroom::cursor::CursorCodec;
use stockroom::http::{AppState, router};
use stockroom::service::ItemsService;
use stockroom::{config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let metrics = telemetry::metrics("items-api")?;
    let cfg = config::ItemsApiConfig::from_env()?;
    let sdk = config::aws_sdk_config().await;
    let store = DynamoItemStore::from_sdk_config(&sdk, cfg.stock_table);
    let state = AppState {
        items: ItemsService::new(
            Arc::new(store),
            Arc::new(SnsEventPublisher::from_sdk_config(
                &sdk,
                cfg.events_topic_arn,
            )),
        ),
        cursors: CursorCodec::new(cfg.cursor_signing_key),
        function: config::function_name("items-api"),
    };
    telemetry::emf::lambda::service::run_http(metrics, router(state)).await
}
