//! SQS adapter: sends batch chunks with `SendMessageBatch`, and webhook
//! delivery jobs.

use super::{calls_of, send_in_calls};
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use std::collections::HashMap;
use std::time::Duration;
use stockroom_app::ports::{
    ChunkEnvelope, ChunkQueue, DeliveryJob, DeliveryQueue, StoreError, WebhookEventQueue,
};
use stockroom_domain::event::{Event, deduplication_id, message_group_id};

/// SendMessageBatch limits: 10 entries and 256 KiB of payload per call.
const MAX_ENTRIES: usize = 10;
const MAX_CALL_BYTES: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct SqsChunkQueue {
    client: Client,
    queue_url: String,
}

impl SqsChunkQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), queue_url)
    }
}

fn string_attr(v: &str) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| StoreError::Backend(Box::new(e)))
}

fn number_attr(v: impl ToString) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(v.to_string())
        .build()
        .map_err(|e| StoreError::Backend(Box::new(e)))
}

/// Payload size SQS counts for a message: body plus attribute names, types and values.
fn message_bytes(c: &ChunkEnvelope) -> usize {
    c.body.len() + c.tenant_id.len() + c.batch_id.len() + c.request_id.len() + 160
}

/// Groups envelopes into SendMessageBatch calls within both limits.
pub(crate) fn plan_calls(chunks: &[ChunkEnvelope]) -> Vec<Vec<usize>> {
    let mut calls = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (i, c) in chunks.iter().enumerate() {
        let len = message_bytes(c);
        if !current.is_empty() && (current.len() == MAX_ENTRIES || bytes + len > MAX_CALL_BYTES) {
            calls.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += len;
        current.push(i);
    }
    if !current.is_empty() {
        calls.push(current);
    }
    calls
}

fn chunk_entry(i: usize, c: &ChunkEnvelope) -> Result<SendMessageBatchRequestEntry, StoreError> {
    SendMessageBatchRequestEntry::builder()
        .id(i.to_string())
        .message_body(&c.body)
        .message_attributes("tenant_id", string_attr(&c.tenant_id)?)
        .message_attributes("batch_id", string_attr(&c.batch_id)?)
        .message_attributes("request_id", string_attr(&c.request_id)?)
        .message_attributes("chunk", number_attr(c.chunk)?)
        .message_attributes("record_count", number_attr(c.record_count)?)
        .build()
        .map_err(|e| StoreError::Backend(Box::new(e)))
}

/// One SendMessageBatch call; returns the ids (indexes) SQS asks to resend.
async fn send_entries(
    client: &Client,
    queue_url: &str,
    entries: Vec<SendMessageBatchRequestEntry>,
) -> Result<Vec<usize>, StoreError> {
    let out = client
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    let failed = out.failed();
    if let Some(f) = failed.iter().find(|f| f.sender_fault()) {
        return Err(StoreError::Backend(
            format!(
                "SQS refused a message: {} {}",
                f.code(),
                f.message().unwrap_or_default()
            )
            .into(),
        ));
    }
    Ok(failed.iter().filter_map(|f| f.id().parse().ok()).collect())
}

#[async_trait]
impl ChunkQueue for SqsChunkQueue {
    async fn send_chunks(&self, chunks: &[ChunkEnvelope]) -> Result<(), StoreError> {
        send_in_calls(
            plan_calls(chunks),
            "SQS (batch chunks)",
            |pending| async move {
                let entries = pending
                    .iter()
                    .map(|&i| chunk_entry(i, &chunks[i]))
                    .collect::<Result<Vec<_>, _>>()?;
                send_entries(&self.client, &self.queue_url, entries).await
            },
        )
        .await
    }
}

/// Delays the next delivery of a failed message: exponential backoff by
/// receive count (1, 2, 4, ... s, capped), instead of waiting out the whole
/// visibility timeout, so a poison message reaches the DLQ in seconds.
pub fn retry_delay_seconds(receive_count: u32) -> i32 {
    1i32 << receive_count.saturating_sub(1).min(7)
}

impl SqsChunkQueue {
    pub async fn delay_retry(
        &self,
        receipt_handle: &str,
        receive_count: u32,
    ) -> Result<(), StoreError> {
        change_visibility(
            &self.client,
            &self.queue_url,
            receipt_handle,
            retry_delay_seconds(receive_count),
        )
        .await
    }
}

async fn change_visibility(
    client: &Client,
    queue_url: &str,
    receipt_handle: &str,
    seconds: i32,
) -> Result<(), StoreError> {
    client
        .change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(receipt_handle)
        .visibility_timeout(seconds)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| StoreError::Unavailable(Box::new(e)))
}

/// Webhook delivery jobs: small messages, one per (event, webhook). Retries
/// are scheduled by hiding the received message (visibility timeout, up to
/// 12 h); exhausted jobs are moved to the dead-letter queue explicitly.
#[derive(Clone, Debug)]
pub struct SqsDeliveryQueue {
    client: Client,
    queue_url: String,
    dlq_url: Option<String>,
}

impl SqsDeliveryQueue {
    /// The queue's name (the last part of its URL and of its ARN).
    pub fn queue_name(&self) -> &str {
        self.queue_url.rsplit('/').next().unwrap_or_default()
    }

    pub fn from_sdk_config(
        sdk: &aws_config::SdkConfig,
        queue_url: impl Into<String>,
        dlq_url: Option<String>,
    ) -> Self {
        Self {
            client: Client::new(sdk),
            queue_url: queue_url.into(),
            dlq_url,
        }
    }

    /// The attributes every job message carries (for tracing and redrive triage).
    fn job_attributes(
        job: &DeliveryJob,
    ) -> Result<HashMap<String, MessageAttributeValue>, StoreError> {
        Ok(HashMap::from([
            ("tenant_id".to_owned(), string_attr(&job.tenant_id)?),
            ("request_id".to_owned(), string_attr(&job.request_id)?),
            ("webhook_id".to_owned(), string_attr(&job.webhook_id)?),
        ]))
    }

    fn job_body(job: &DeliveryJob) -> Result<String, StoreError> {
        serde_json::to_string(job).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The deliveries queue is FIFO: a job waits behind the jobs of its
    /// webhook and event key (its group), and the same job queued twice
    /// within five minutes (a redelivered event) is dropped by SQS.
    fn entry(i: usize, job: &DeliveryJob) -> Result<SendMessageBatchRequestEntry, StoreError> {
        SendMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .message_body(Self::job_body(job)?)
            .set_message_attributes(Some(Self::job_attributes(job)?))
            .message_group_id(message_group_id(&job.ordering_group()))
            .message_deduplication_id(deduplication_id(&[&job.delivery_id, &job.request_id]))
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))
    }

    /// The dead-letter queue of FIFO queues is FIFO too: each message is its
    /// own group (nothing waits behind a dead letter).
    async fn send_to_dlq(
        &self,
        body: &str,
        attributes: HashMap<String, MessageAttributeValue>,
    ) -> Result<(), StoreError> {
        let unique = ulid::Ulid::new().to_string();
        let Some(dlq) = &self.dlq_url else {
            return Err(StoreError::Backend(
                "no dead-letter queue configured".into(),
            ));
        };
        self.client
            .send_message()
            .queue_url(dlq)
            .message_body(body)
            .set_message_attributes(Some(attributes))
            .message_group_id(&unique)
            .message_deduplication_id(&unique)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(Box::new(e)))
    }
}

#[async_trait]
impl DeliveryQueue for SqsDeliveryQueue {
    async fn enqueue(&self, jobs: &[DeliveryJob]) -> Result<(), StoreError> {
        send_in_calls(
            calls_of(jobs.len(), MAX_ENTRIES),
            "SQS (delivery jobs)",
            |pending| async move {
                let entries = pending
                    .iter()
                    .map(|&i| Self::entry(i, &jobs[i]))
                    .collect::<Result<Vec<_>, _>>()?;
                send_entries(&self.client, &self.queue_url, entries).await
            },
        )
        .await
    }

    /// Hides the received job for `delay` before its next attempt.
    async fn retry_in(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError> {
        let seconds = delay.as_secs().clamp(1, 43_200) as i32;
        change_visibility(&self.client, &self.queue_url, receipt_handle, seconds).await
    }

    async fn dead_letter_unreadable(&self, body: &str, reason: &str) -> Result<(), StoreError> {
        // SQS attribute values are bounded; the reason is a short parser message.
        let reason: String = reason.chars().take(1000).collect();
        let body = if body.is_empty() { "(empty)" } else { body };
        self.send_to_dlq(
            body,
            HashMap::from([("dead_letter_reason".to_owned(), string_attr(&reason)?)]),
        )
        .await
    }

    /// Moves an exhausted job to the dead-letter queue (for redrive).
    async fn dead_letter(&self, job: &DeliveryJob) -> Result<(), StoreError> {
        self.send_to_dlq(&Self::job_body(job)?, Self::job_attributes(job)?)
            .await
    }

    async fn release(&self, receipt_handles: &[String]) -> Result<(), StoreError> {
        for handle in receipt_handles {
            change_visibility(&self.client, &self.queue_url, handle, 0).await?;
        }
        Ok(())
    }
}

/// The dispatcher's events queue (FIFO): one message per event, grouped by
/// the event's ordering key, deduplicated by event id, so the fan-out sees
/// one sku's events in commit order and a republished event once.
#[derive(Clone, Debug)]
pub struct SqsWebhookEventQueue {
    client: Client,
    queue_url: String,
}

impl SqsWebhookEventQueue {
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            queue_url: queue_url.into(),
        }
    }

    fn entry(i: usize, e: &Event) -> Result<SendMessageBatchRequestEntry, StoreError> {
        let body = serde_json::to_string(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut attributes = HashMap::from([
            ("event_type".to_owned(), string_attr(e.kind.as_str())?),
            ("tenant_id".to_owned(), string_attr(&e.tenant_id)?),
        ]);
        if !e.request_id.is_empty() {
            attributes.insert("request_id".to_owned(), string_attr(&e.request_id)?);
        }
        SendMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .message_body(body)
            .set_message_attributes(Some(attributes))
            .message_group_id(message_group_id(&e.ordering_key()))
            .message_deduplication_id(deduplication_id(&[&e.id]))
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))
    }
}

#[async_trait]
impl WebhookEventQueue for SqsWebhookEventQueue {
    /// Entries go out in order, ten per call; a call is sent only after the
    /// one before it succeeded in full, so no event of a group is queued
    /// ahead of an earlier one that SQS refused.
    async fn enqueue_events(&self, events: &[Event]) -> Result<(), StoreError> {
        for (call, slice) in events.chunks(MAX_ENTRIES).enumerate() {
            let entries = slice
                .iter()
                .enumerate()
                .map(|(i, e)| Self::entry(call * MAX_ENTRIES + i, e))
                .collect::<Result<Vec<_>, _>>()?;
            let refused = send_entries(&self.client, &self.queue_url, entries).await?;
            if !refused.is_empty() {
                return Err(StoreError::Unavailable(
                    format!(
                        "SQS (webhook events) refused {} of {} entries",
                        refused.len(),
                        slice.len()
                    )
                    .into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_delays_grow_and_are_capped() {
        let d: Vec<i32> = (1..=10).map(super::retry_delay_seconds).collect();
        assert_eq!(&d[..5], &[1, 2, 4, 8, 16]);
        assert_eq!(d[9], 128);
    }

    use super::*;

    fn env(bytes: usize) -> ChunkEnvelope {
        ChunkEnvelope {
            body: "x".repeat(bytes),
            tenant_id: "t".into(),
            batch_id: "b".into(),
            request_id: "r".into(),
            chunk: 0,
            record_count: 1,
        }
    }

    #[test]
    fn calls_hold_at_most_ten_messages_and_256_kib() {
        let small: Vec<_> = (0..25).map(|_| env(100)).collect();
        let calls = plan_calls(&small);
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        let big: Vec<_> = (0..9).map(|_| env(60_000)).collect();
        let calls = plan_calls(&big);
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 1]
        );
    }
}
