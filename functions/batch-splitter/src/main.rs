//! Batch splitter Lambda: S3 upload notifications (through SQS) -> the
//! uploaded file streamed, validated and enqueued as chunks, with partial
//! batch failures (`ReportBatchItemFailures`).

mod handler;

use lambda_runtime::{Error, service_fn};
use std::sync::Arc;
use stockroom_app::config;
use stockroom_app::uploads::UploadSplitter;
use stockroom_aws::dynamodb::{DynamoBatchStore, WriteLayout};
use stockroom_aws::s3::S3UploadStore;
use stockroom_aws::sqs::SqsChunkQueue;
use stockroom_aws::{runtime, sdk};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init();
    let metrics = runtime::metrics("batch-splitter")?;
    let cfg = config::BatchSplitterConfig::from_env()?;
    let sdk = sdk::aws_sdk_config().await;
    let app = handler::App {
        splitter: UploadSplitter::new(
            Arc::new(
                DynamoBatchStore::from_sdk_config(&sdk, cfg.stock_table)
                    .with_write_layout(WriteLayout::sharded_if(config::sharded_writes()?)),
            ),
            Arc::new(S3UploadStore::from_sdk_config(&sdk, cfg.uploads_bucket)),
            Arc::new(SqsChunkQueue::from_sdk_config(&sdk, cfg.batch_queue_url)),
        ),
        dlq_arn: cfg.uploads_dlq_arn,
        function: config::function_name("batch-splitter"),
    };
    // Lives as long as the process; spawned per-message tasks borrow it.
    let app: &'static handler::App = Box::leak(Box::new(app));
    runtime::emf::lambda::service::run(
        metrics,
        service_fn(move |event| handler::handle(event, app)),
    )
    .await
}
