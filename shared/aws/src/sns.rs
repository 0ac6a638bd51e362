//! SNS adapter: publishes status events with the attributes subscribers
//! filter on (`event_type`, `tenant_id`) plus the `request_id` that traces them.

use super::{calls_of, send_in_calls};
use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use stockroom_app::ports::{EventPublisher, StoreError};
use stockroom_domain::event::Event;

/// PublishBatch takes at most 10 entries.
const MAX_ENTRIES: usize = 10;

#[derive(Clone, Debug)]
pub struct SnsEventPublisher {
    client: Client,
    topic_arn: String,
}

impl SnsEventPublisher {
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, topic_arn: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            topic_arn: topic_arn.into(),
        }
    }
}

fn attr(v: &str) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| StoreError::Backend(Box::new(e)))
}

fn entry(i: usize, e: &Event) -> Result<PublishBatchRequestEntry, StoreError> {
    let body = serde_json::to_string(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut b = PublishBatchRequestEntry::builder()
        .id(i.to_string())
        .message(body)
        .message_attributes("event_type", attr(e.kind.as_str())?)
        .message_attributes("tenant_id", attr(&e.tenant_id)?);
    if !e.request_id.is_empty() {
        b = b.message_attributes("request_id", attr(&e.request_id)?);
    }
    b.build().map_err(|e| StoreError::Backend(Box::new(e)))
}

#[async_trait]
impl EventPublisher for SnsEventPublisher {
    async fn publish(&self, events: &[Event]) -> Result<(), StoreError> {
        send_in_calls(
            calls_of(events.len(), MAX_ENTRIES),
            "SNS (events)",
            |pending| async move {
                let entries = pending
                    .iter()
                    .map(|&i| entry(i, &events[i]))
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .client
                    .publish_batch()
                    .topic_arn(&self.topic_arn)
                    .set_publish_batch_request_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
                let failed = out.failed.unwrap_or_default();
                if let Some(f) = failed.iter().find(|f| f.sender_fault) {
                    return Err(StoreError::Backend(
                        format!(
                            "SNS refused an event: {} {}",
                            f.code,
                            f.message.as_deref().unwrap_or_default()
                        )
                        .into(),
                    ));
                }
                Ok(failed.iter().filter_map(|f| f.id.parse().ok()).collect())
            },
        )
        .await
    }
}
