use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use stockroom::adapters::sqs::SqsChunkQueue;
use stockroom::batches::{BatchWorker, ChunkAttributes};
use stockroom::error::error_chain;
use stockroom::ports::ChunkDisposition;
use tracing::Instrument;

pub struct App {
    pub worker: BatchWorker,
    pub queue: SqsChunkQueue,
    pub dlq_arn: String,
    pub function: String,
}

fn attr(msg: &SqsMessage, name: &str) -> Option<String> {
    msg.message_attributes
        .get(name)
        .and_then(|a| a.string_value.clone())
}

fn attributes(msg: &SqsMessage) -> ChunkAttributes {
    ChunkAttributes {
        tenant_id: attr(msg, "tenant_id"),
        batch_id: attr(msg, "batch_id"),
        chunk: attr(msg, "chunk").and_then(|v| v.parse().ok()),
        record_count: attr(msg, "record_count").and_then(|v| v.parse().ok()),
    }
}

/// Applies each message; failed ones are reported individually so SQS
/// redelivers only those (after a backoff delay), and the rest are deleted.
pub async fn handle(event: LambdaEvent<SqsEvent>, app: &App) -> Result<SqsBatchResponse, Error> {
    let mut failures = Vec::new();
    for msg in &event.payload.records {
        let message_id = msg.message_id.clone().unwrap_or_default();
        let attrs = attributes(msg);
        let disposition = if msg.event_source_arn.as_deref() == Some(app.dlq_arn.as_str()) {
            ChunkDisposition::DeadLettered
        } else {
            ChunkDisposition::Apply
        };
        let receive_count: u32 = msg
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let span = tracing::info_span!(
            "chunk",
            request_id = %attr(msg, "request_id").unwrap_or_default(),
            tenant = %attrs.tenant_id.clone().unwrap_or_default(),
            function = %app.function,
            batch_id = %attrs.batch_id.clone().unwrap_or_default(),
            chunk = attrs.chunk.unwrap_or_default(),
            message_id = %message_id,
            receive_count,
            dead_lettered = disposition == ChunkDisposition::DeadLettered,
        );
        let body = msg.body.as_deref().unwrap_or_default();
        let result = app
            .worker
            .handle(body, &attrs, disposition)
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        match result {
            Ok(Some((batch_id, status))) => {
                tracing::info!(batch_id = %batch_id, status = status.as_str(), "chunk applied; batch finished")
            }
            Ok(None) => tracing::info!("chunk applied"),
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "chunk failed; it will be retried");
                failures.push(message_id.clone());
                if disposition == ChunkDisposition::Apply
                    && let Some(handle) = msg.receipt_handle.as_deref()
                    && let Err(e) = app.queue.delay_retry(handle, receive_count).await
                {
                    tracing::warn!(error = %error_chain(&e), "could not delay the retry");
                }
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    Ok(response)
}
