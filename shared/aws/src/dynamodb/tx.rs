//! Transactions and batch reads/writes with the retries DynamoDB asks for.

use super::Attrs;
use super::error::classify;
use super::projection::Projection;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{KeysAndAttributes, TransactWriteItem, WriteRequest};
use std::collections::HashMap;
use std::time::Duration;
use stockroom_app::ports::StoreError;

/// Which action of a transaction failed its condition (by position).
pub(crate) enum TransactFailure {
    Condition(Vec<bool>),
    /// Another transaction touched the same items concurrently: retryable.
    Conflict,
    Store(StoreError),
}

impl TransactFailure {
    fn from_sdk<R>(err: SdkError<TransactWriteItemsError, R>) -> Self
    where
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        if let SdkError::ServiceError(se) = &err
            && let TransactWriteItemsError::TransactionCanceledException(tc) = se.err()
        {
            let codes: Vec<&str> = tc
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None"))
                .collect();
            if codes.contains(&"ConditionalCheckFailed") {
                return Self::Condition(
                    codes
                        .iter()
                        .map(|c| *c == "ConditionalCheckFailed")
                        .collect(),
                );
            }
            if codes.contains(&"TransactionConflict") {
                return Self::Conflict;
            }
        }
        Self::Store(classify(err))
    }

    pub(crate) fn failed(flags: &[bool], index: usize) -> bool {
        flags.get(index).copied().unwrap_or(false)
    }
}

pub(crate) async fn transact(
    client: &Client,
    items: Vec<TransactWriteItem>,
) -> Result<(), TransactFailure> {
    client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await
        .map(|_| ())
        .map_err(TransactFailure::from_sdk)
}

const MAX_ROUNDS: u32 = 12;

async fn pause(round: u32) {
    tokio::time::sleep(Duration::from_millis((10u64 << round.min(6)).min(1000))).await;
}

/// Strongly consistent BatchGetItem of up to any number of keys (100 per
/// call), retrying `UnprocessedKeys` with backoff.
pub(crate) async fn batch_get(
    client: &Client,
    table: &str,
    keys: Vec<Attrs>,
) -> Result<Vec<Attrs>, StoreError> {
    batch_get_projected(client, table, keys, None).await
}

/// [`batch_get`] reading only what `projection` names.
pub(crate) async fn batch_get_projected(
    client: &Client,
    table: &str,
    keys: Vec<Attrs>,
    projection: Option<Projection>,
) -> Result<Vec<Attrs>, StoreError> {
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(chunk.to_vec()))
            .consistent_read(true);
        if let Some(p) = &projection {
            request = request.projection_expression(&p.expression);
            for (placeholder, attribute) in &p.names {
                request = request.expression_attribute_names(placeholder, attribute);
            }
        }
        let mut pending = Some(request.build().map_err(super::error::build_error)?);
        let mut round = 0;
        while let Some(request) = pending.take() {
            let out = client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(classify)?;
            if let Some(mut responses) = out.responses
                && let Some(items) = responses.remove(table)
            {
                found.extend(items);
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys().is_empty());
            if pending.is_some() {
                round += 1;
                if round > MAX_ROUNDS {
                    return Err(StoreError::Unavailable(
                        "BatchGetItem kept returning UnprocessedKeys".into(),
                    ));
                }
                pause(round).await;
            }
        }
    }
    Ok(found)
}

/// BatchWriteItem of any number of requests (25 per call), retrying
/// `UnprocessedItems` with backoff. Not atomic and unconditional: only for
/// writes that are idempotent on their own.
pub(crate) async fn batch_write(
    client: &Client,
    table: &str,
    requests: Vec<WriteRequest>,
) -> Result<(), StoreError> {
    for chunk in requests.chunks(25) {
        let mut pending: Vec<WriteRequest> = chunk.to_vec();
        let mut round = 0;
        while !pending.is_empty() {
            let out = client
                .batch_write_item()
                .set_request_items(Some(HashMap::from([(table.to_owned(), pending)])))
                .send()
                .await
                .map_err(classify)?;
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(table))
                .unwrap_or_default();
            if !pending.is_empty() {
                round += 1;
                if round > MAX_ROUNDS {
                    return Err(StoreError::Unavailable(
                        "BatchWriteItem kept returning UnprocessedItems".into(),
                    ));
                }
                pause(round).await;
            }
        }
    }
    Ok(())
}
