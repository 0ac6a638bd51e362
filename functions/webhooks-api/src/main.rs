//! Webhooks API Lambda: API Gateway REST proxy events -> the webhooks router.

use lambda_http::Error;
use std::sync::Arc;
use stockroom::adapters::dynamodb::DynamoWebhookStore;
use stockroom::adapters::kms::KmsSecretCipher;
use stockroom::adapters::sqs::SqsDeliveryQueue;
use stockroom::cursor::CursorCodec;
use stockroom::http::{WebhooksState, webhooks_router};
use stockroom::webhooks::WebhooksService;
use stockroom::webhooks::target::TargetPolicy;
use stockroom::{config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let metrics = telemetry::metrics("webhooks-api")?;
    let cfg = config::WebhooksApiConfig::from_env()?;
    let sdk = config::aws_sdk_config().await;
    let state = WebhooksState {
        webhooks: WebhooksService::new(
            Arc::new(DynamoWebhookStore::from_sdk_config(&sdk, cfg.stock_table)),
            Arc::new(KmsSecretCipher::from_sdk_config(&sdk, cfg.secrets_key_id)),
            Arc::new(SqsDeliveryQueue::from_sdk_config(
                &sdk,
                cfg.delivery_queue_url,
                None,
            )),
            TargetPolicy {
                allow_loopback_http: config::allow_loopback_webhooks(),
            },
        ),
        cursors: CursorCodec::new(cfg.cursor_signing_key),
    };
    telemetry::emf::lambda::service::run_http(
        metrics,
        webhooks_router(state, config::function_name("webhooks-api")),
    )
    .await
}
