//! Events publisher Lambda: the stock table's stream -> events derived from
//! the committed changes -> the status topic and the webhook dispatcher's
//! ordered queue. The stream is the outbox: no handler publishes directly.

mod handler;

use lambda_runtime::{Error, service_fn};
use std::sync::Arc;
use stockroom_app::config;
use stockroom_app::items::LevelStores;
use stockroom_app::outbox::EventsOutbox;
use stockroom_app::reservations::ReservationsService;
use stockroom_aws::dynamodb::{DynamoItemStore, DynamoWebhookStore, WriteLayout};
use stockroom_aws::sns::SnsEventPublisher;
use stockroom_aws::sqs::SqsWebhookEventQueue;
use stockroom_aws::{runtime, sdk};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init();
    let metrics = runtime::metrics("events-publisher")?;
    let cfg = config::EventsPublisherConfig::from_env()?;
    let sdk = sdk::aws_sdk_config().await;
    let layout = WriteLayout::sharded_if(config::sharded_writes()?);
    let app = handler::App {
        outbox: EventsOutbox {
            topic: Arc::new(SnsEventPublisher::from_sdk_config(
                &sdk,
                cfg.events_topic_arn,
            )),
            webhooks: Arc::new(SqsWebhookEventQueue::from_sdk_config(
                &sdk,
                cfg.webhook_events_queue_url,
            )),
            subscriptions: Arc::new(DynamoWebhookStore::from_sdk_config(
                &sdk,
                cfg.stock_table.clone(),
            )),
        },
        holds: {
            let store = Arc::new(
                DynamoItemStore::from_sdk_config(&sdk, cfg.stock_table).with_write_layout(layout),
            );
            let stores = LevelStores {
                locations: store.clone(),
                levels: store.clone(),
                holds: store.clone(),
            };
            ReservationsService::new(store, stores)
        },
        function: config::function_name("events-publisher"),
    };
    let app: &'static handler::App = Box::leak(Box::new(app));
    runtime::emf::lambda::service::run(
        metrics,
        service_fn(move |event| handler::handle(event, app)),
    )
    .await
}
