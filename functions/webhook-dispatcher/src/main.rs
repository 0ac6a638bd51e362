//! Webhook dispatcher Lambda: SQS messages from the events queue (fan-out to
//! the tenant's webhooks) and the deliveries queue (one signed attempt each),
//! with partial batch failures for the attempts to retry.

mod handler;

use lambda_runtime::{Error, service_fn};
use std::sync::Arc;
use stockroom_app::config;
use stockroom_app::webhooks::Dispatcher;
use stockroom_app::webhooks::target::TargetPolicy;
use stockroom_aws::dynamodb::DynamoWebhookStore;
use stockroom_aws::kms::KmsSecretCipher;
use stockroom_aws::sqs::SqsDeliveryQueue;
use stockroom_aws::webhook_sender::WebhookSender;
use stockroom_aws::{runtime, sdk};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init();
    let metrics = runtime::metrics("webhook-dispatcher")?;
    let cfg = config::DispatcherConfig::from_env()?;
    let sdk = sdk::aws_sdk_config().await;
    let policy = TargetPolicy {
        allow_loopback_http: config::allow_loopback_webhooks(),
    };
    let deliveries =
        SqsDeliveryQueue::from_sdk_config(&sdk, cfg.delivery_queue_url, Some(cfg.dlq_url));
    let deliveries_queue = deliveries.queue_name().to_owned();
    let dispatcher = Dispatcher {
        store: Arc::new(DynamoWebhookStore::from_sdk_config(&sdk, cfg.stock_table)),
        cipher: Arc::new(KmsSecretCipher::from_sdk_config(&sdk, cfg.secrets_key_id)),
        queue: Arc::new(deliveries),
        sender: Arc::new(WebhookSender::new(policy)?),
        schedule: cfg.retry_schedule,
        disable_after: cfg.disable_after,
    };
    let app = handler::App {
        dispatcher,
        deliveries_queue,
        function: config::function_name("webhook-dispatcher"),
    };
    // Lives as long as the process; spawned per-message tasks borrow it.
    let app: &'static handler::App = Box::leak(Box::new(app));
    runtime::emf::lambda::service::run(
        metrics,
        service_fn(move |event| handler::handle(event, app)),
    )
    .await
}
