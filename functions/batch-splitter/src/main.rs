//! Batch splitter Lambda: S3 upload notifications (through SQS) -> the
//! uploaded file streamed, validated and enqueued as chunks, with partial
//! batch failures (`ReportBatchItemFailures`).

mod handler;

use lambda_runtime::{Error, service_fn};
use std::sync::Arc;
use stockroom::adapters::dynamodb::DynamoBatchStore;
use stockroom::adapters::s3::S3UploadStore;
use stockroom::adapters::sns::SnsEventPublisher;
use stockroom::adapters::sqs::SqsChunkQueue;
use stockroom::uploads::UploadSplitter;
use stockroom::{config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let metrics = telemetry::metrics("batch-splitter")?;
    let cfg = config::BatchSplitterConfig::from_env()?;
    let sdk = config::aws_sdk_config().await;
    let app = handler::App {
        splitter: UploadSplitter::new(
            Arc::new(DynamoBatchStore::from_sdk_config(&sdk, cfg.stock_table)),
            Arc::new(S3UploadStore::from_sdk_config(&sdk, cfg.uploads_bucket)),
            Arc::new(SqsChunkQueue::from_sdk_config(&sdk, cfg.batch_queue_url)),
            Arc::new(SnsEventPublisher::from_sdk_config(
                &sdk,
                cfg.events_topic_arn,
            )),
        ),
        dlq_arn: cfg.uploads_dlq_arn,
        function: config::function_name("batch-splitter"),
    };
    // Lives as long as the process; spawned per-message tasks borrow it.
    let app: &'static handler::App = Box::leak(Box::new(app));
    telemetry::emf::lambda::service::run(
        metrics,
        service_fn(move |event| handler::handle(event, app)),
    )
    .await
}
