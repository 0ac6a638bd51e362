//! Batches API Lambda: API Gateway REST proxy events -> the batches router.

use lambda_http::Error;
use std::sync::Arc;
use stockroom_app::batches::{BatchesService, UploadSettings};
use stockroom_app::config;
use stockroom_app::cursor::CursorCodec;
use stockroom_aws::dynamodb::{DynamoBatchStore, WriteLayout};
use stockroom_aws::s3::S3UploadStore;
use stockroom_aws::sqs::SqsChunkQueue;
use stockroom_aws::{runtime, sdk};
use stockroom_http::{BatchesState, batches_router};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init();
    let metrics = runtime::metrics("batches-api")?;
    let cfg = config::BatchesApiConfig::from_env()?;
    let sdk = sdk::aws_sdk_config().await;
    let store = DynamoBatchStore::from_sdk_config(&sdk, cfg.stock_table)
        .with_write_layout(WriteLayout::sharded_if(config::sharded_writes()?));
    let queue = SqsChunkQueue::from_sdk_config(&sdk, cfg.batch_queue_url);
    let state = BatchesState {
        batches: BatchesService::new(Arc::new(store), Arc::new(queue)).with_uploads(
            UploadSettings {
                store: Arc::new(S3UploadStore::from_sdk_config(&sdk, cfg.uploads_bucket)),
                url_ttl: cfg.upload_url_ttl,
                grace: cfg.upload_grace,
            },
        ),
        cursors: CursorCodec::new(cfg.cursor_signing_key),
    };
    runtime::emf::lambda::service::run_http(
        metrics,
        batches_router(state, config::function_name("batches-api")),
    )
    .await
}
