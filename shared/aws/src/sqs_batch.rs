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

/// For a FIFO source: the messages of one `MessageGroupId` are handled one
/// after the other, in the order received, and the first failure stops its
/// group (it and every later message of the group are reported, so none
/// overtakes it); groups run concurrently. A standard queue's messages have
/// no group: each is its own.
/// Returns the response and the messages held back behind a failure
/// (never handled): the caller may make them visible again at once, since
/// SQS keeps the group blocked until the failed one is received again.
pub async fn each_group_in_order<F, Fut>(
    records: Vec<SqsMessage>,
    handle: F,
) -> (SqsBatchResponse, Vec<SqsMessage>)
where
    F: Fn(SqsMessage) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let mut groups: Vec<(String, Vec<SqsMessage>)> = Vec::new();
    for (i, msg) in records.into_iter().enumerate() {
        let group = msg
            .attributes
            .get("MessageGroupId")
            .cloned()
            .unwrap_or_else(|| format!("\u{0}{i}"));
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, msgs)) => msgs.push(msg),
            None => groups.push((group, vec![msg])),
        }
    }
    let mut tasks: JoinSet<(Vec<String>, Vec<SqsMessage>)> = JoinSet::new();
    for (_, msgs) in groups {
        let handle = handle.clone();
        tasks.spawn(async move {
            let mut failed = Vec::new();
            let mut held_back = Vec::new();
            for msg in msgs {
                if !failed.is_empty() {
                    failed.push(msg.message_id.clone().unwrap_or_default());
                    held_back.push(msg);
                    continue;
                }
                if let Err(id) = handle(msg).await {
                    failed.push(id);
                }
            }
            (failed, held_back)
        });
    }
    let mut response = SqsBatchResponse::default();
    let mut held_back = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (ids, held) = joined.unwrap_or_else(|e| (vec![e.to_string()], Vec::new()));
        held_back.extend(held);
        for id in ids {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    (response, held_back)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn msg(id: &str, group: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.attributes.insert("MessageGroupId".into(), group.into());
        m
    }

    /// A failed message holds back the rest of its group (reported, not
    /// handled); other groups go on.
    #[tokio::test]
    async fn a_failure_stops_its_group_and_only_its_group() {
        let handled = Arc::new(Mutex::new(Vec::new()));
        let seen = handled.clone();
        let (response, held_back) = each_group_in_order(
            vec![
                msg("a1", "A"),
                msg("b1", "B"),
                msg("a2", "A"),
                msg("b2", "B"),
                msg("a3", "A"),
            ],
            move |m: SqsMessage| {
                let seen = seen.clone();
                async move {
                    let id = m.message_id.unwrap_or_default();
                    seen.lock().unwrap().push(id.clone());
                    if id == "a2" { Err(id) } else { Ok(()) }
                }
            },
        )
        .await;
        let mut failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        failed.sort();
        assert_eq!(failed, ["a2", "a3"]);
        let held: Vec<Option<String>> = held_back.into_iter().map(|m| m.message_id).collect();
        assert_eq!(held, [Some("a3".to_owned())]);
        let handled = handled.lock().unwrap().clone();
        assert!(!handled.contains(&"a3".to_owned()));
        let a: Vec<&String> = handled.iter().filter(|id| id.starts_with('a')).collect();
        assert_eq!(a, ["a1", "a2"]);
        assert!(handled.contains(&"b1".to_owned()) && handled.contains(&"b2".to_owned()));
    }
}
