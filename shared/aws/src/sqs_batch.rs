//! SQS event sources with `ReportBatchItemFailures`: each message is handled
//! by its own task; only the failed ones are reported, so SQS redelivers
//! those and deletes the rest.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use tokio::task::JoinSet;

/// A string message attribute set by the sender.
pub fn attribute(msg: &SqsMessage, name: &str) -> Option<String> {
    msg.message_attributes
        .get(name)
        .and_then(|a| a.string_value.clone())
}

/// How many times SQS has delivered this message (1 on the first delivery).
pub fn receive_count(msg: &SqsMessage) -> u32 {
    msg.attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The sender's X-Ray trace header, as SQS passes it on (empty if none).
pub fn trace_header(msg: &SqsMessage) -> &str {
    msg.attributes
        .get("AWSTraceHeader")
        .map(String::as_str)
        .unwrap_or_default()
}

/// Handles every message in a task of its own, concurrently, and answers
/// the partial failures (`Err(message_id)` = redeliver).
pub async fn each_message<F, Fut>(records: Vec<SqsMessage>, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for msg in records {
        tasks.spawn(handle(msg));
    }
    partial_failures(tasks).await
}

/// Waits for every task (`Err(message_id)` = redeliver) and builds the response.
pub async fn partial_failures(mut tasks: JoinSet<Result<(), String>>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    while let Some(joined) = tasks.join_next().await {
        // A task that panicked (debug builds; release aborts) has no message
        // id: an identifier that names no message makes Lambda retry the
        // whole batch, the safe answer when we do not know what happened.
        if let Ok(Err(message_id)) | Err(message_id) = joined.map_err(|e| e.to_string()) {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}
