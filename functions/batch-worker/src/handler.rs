use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stockroom_app::batches::{BatchWorker, ChunkAttributes};
use stockroom_app::ports::ChunkDisposition;
use stockroom_app::telemetry::error_chain;
use stockroom_aws::sqs::SqsChunkQueue;
use stockroom_aws::sqs_batch::{attribute, receive_count, trace_header};
use tokio::task::JoinSet;
use tracing::Instrument;

/// Time kept back before the invocation deadline to report unfinished
/// messages as failures (their partial work is safe: records are applied
/// exactly once, so a retry finishes them).
const DEADLINE_MARGIN: Duration = Duration::from_secs(3);
/// Chunks applied at once by one invocation: enough to overlap DynamoDB
/// round trips without one 128 MB instance flooding the table.
const PARALLEL_CHUNKS: usize = 3;

pub struct App {
    pub worker: BatchWorker,
    pub queue: SqsChunkQueue,
    pub dlq_arn: String,
    pub function: String,
}

fn attributes(msg: &SqsMessage) -> ChunkAttributes {
    ChunkAttributes {
        tenant_id: attribute(msg, "tenant_id"),
        batch_id: attribute(msg, "batch_id"),
        chunk: attribute(msg, "chunk").and_then(|v| v.parse().ok()),
        record_count: attribute(msg, "record_count").and_then(|v| v.parse().ok()),
    }
}

fn time_left(deadline_ms: u64) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(DEADLINE_MARGIN)
}

/// Processes one message; `Err(message_id)` when it must be retried.
async fn process(
    app: &'static App,
    msg: SqsMessage,
    budget: Duration,
    cold_start: bool,
) -> Result<(), String> {
    let message_id = msg.message_id.clone().unwrap_or_default();
    let attrs = attributes(&msg);
    let disposition = if msg.event_source_arn.as_deref() == Some(app.dlq_arn.as_str()) {
        ChunkDisposition::DeadLettered
    } else {
        ChunkDisposition::Apply
    };
    let receive_count = receive_count(&msg);
    let span = tracing::info_span!(
        "chunk",
        request_id = %attribute(&msg, "request_id").unwrap_or_default(),
        tenant = %attrs.tenant_id.clone().unwrap_or_default(),
        function = %app.function,
        batch_id = %attrs.batch_id.clone().unwrap_or_default(),
        chunk = attrs.chunk.unwrap_or_default(),
        message_id = %message_id,
        receive_count,
        cold_start,
        trace_header = trace_header(&msg),
        dead_lettered = disposition == ChunkDisposition::DeadLettered,
    );
    async move {
        let body = msg.body.as_deref().unwrap_or_default();
        let outcome = tokio::time::timeout(budget, app.worker.handle(body, &attrs, disposition)).await;
        let error = match outcome {
            Ok(Ok(Some(batch))) => {
                tracing::info!(batch_id = %batch.batch_id, status = batch.status.as_str(), "chunk applied; batch finished and announced");
                return Ok(());
            }
            Ok(Ok(None)) => {
                tracing::info!("chunk applied");
                return Ok(());
            }
            Ok(Err(e)) => error_chain(&e),
            Err(_) => "the invocation ran out of time".to_owned(),
        };
        tracing::error!(error = %error, "chunk failed; it will be retried");
        if disposition == ChunkDisposition::Apply
            && let Some(handle) = msg.receipt_handle.as_deref()
            && let Err(e) = app.queue.delay_retry(handle, receive_count).await
        {
            tracing::warn!(error = %error_chain(&e), "could not delay the retry");
        }
        Err(message_id)
    }
    .instrument(span)
    .await
}

/// Applies the messages concurrently; failed ones are reported individually
/// so SQS redelivers only those (after a backoff delay) and deletes the rest.
pub async fn handle(
    event: LambdaEvent<SqsEvent>,
    app: &'static App,
) -> Result<SqsBatchResponse, Error> {
    let cold_start = stockroom_app::telemetry::cold_start();
    let budget = time_left(event.context.deadline);
    let started = tokio::time::Instant::now();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(PARALLEL_CHUNKS));
    let mut tasks = JoinSet::new();
    for msg in event.payload.records {
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
            process(
                app,
                msg,
                budget.saturating_sub(started.elapsed()),
                cold_start,
            )
            .await
        });
    }
    Ok(stockroom_aws::sqs_batch::partial_failures(tasks).await)
}
