//! Webhooks API Lambda: API Gateway REST proxy events -> the webhooks router.

use lambda_http::Error;
use std::sync::Arc;
use stockroom_app::config;
use stockroom_app::cursor::CursorCodec;
use stockroom_app::webhooks::WebhooksService;
use stockroom_app::webhooks::target::TargetPolicy;
use stockroom_aws::dynamodb::DynamoWebhookStore;
use stockroom_aws::kms::KmsSecretCipher;
use stockroom_aws::sqs::SqsDeliveryQueue;
use stockroom_aws::{runtime, sdk};
use stockroom_http::{WebhooksState, webhooks_router};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init();
    let metrics = runtime::metrics("webhooks-api")?;
    let cfg = config::WebhooksApiConfig::from_env()?;
    let sdk = sdk::aws_sdk_config().await;
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
    runtime::emf::lambda::service::run_http(
        metrics,
        webhooks_router(state, config::function_name("webhooks-api")),
    )
    .await
}
