//! Batch worker Lambda: SQS chunk messages -> exactly-once application, with
//! partial batch failures (`ReportBatchItemFailures`).

mod handler;

use lambda_runtime::{Error, service_fn};
use std::sync::Arc;
use stockroom_app::batch_levels::LevelRecords;
use stockroom_app::batches::BatchWorker;
use stockroom_app::config;
use stockroom_aws::dynamodb::{DynamoBatchStore, DynamoItemStore, WriteLayout};
use stockroom_aws::sqs::SqsChunkQueue;
use stockroom_aws::{runtime, sdk};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init();
    let metrics = runtime::metrics("batch-worker")?;
    let cfg = config::BatchWorkerConfig::from_env()?;
    let sdk = sdk::aws_sdk_config().await;
    // Counts, transfers and holds in a batch run the items API's use cases
    // on the same table.
    let layout = WriteLayout::sharded_if(config::sharded_writes()?);
    let levels = LevelRecords::on(Arc::new(
        DynamoItemStore::from_sdk_config(&sdk, cfg.stock_table.clone()).with_write_layout(layout),
    ));
    let app = handler::App {
        worker: BatchWorker::new(
            Arc::new(
                DynamoBatchStore::from_sdk_config(&sdk, cfg.stock_table).with_write_layout(layout),
            ),
            levels,
        ),
        queue: SqsChunkQueue::from_sdk_config(&sdk, cfg.batch_queue_url),
        dlq_arn: cfg.batch_dlq_arn,
        function: config::function_name("batch-worker"),
    };
    // Lives as long as the process; spawned per-message tasks borrow it.
    let app: &'static handler::App = Box::leak(Box::new(app));
    runtime::emf::lambda::service::run(
        metrics,
        service_fn(move |event| handler::handle(event, app)),
    )
    .await
}
