//! Status events: what is pushed to the topic and, from there, to webhooks.
//! An event's id is unique and stays the same across retries of its
//! publication and of its deliveries (it is the `webhook-id` receivers dedupe on).

use super::Item;
use super::batch::Batch;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "batch.completed")]
    BatchCompleted,
    #[serde(rename = "batch.completed_with_errors")]
    BatchCompletedWithErrors,
    #[serde(rename = "batch.failed")]
    BatchFailed,
    #[serde(rename = "item.low_stock")]
    ItemLowStock,
    #[serde(rename = "item.deleted")]
    ItemDeleted,
    /// A webhook was disabled (410 Gone, or failing for too long).
    #[serde(rename = "webhook.disabled")]
    WebhookDisabled,
    /// Sent by `POST /v1/webhooks/{id}/test` to that webhook only.
    #[serde(rename = "webhook.ping")]
    WebhookPing,
}

/// The schema of the event types a webhook can subscribe to (every
/// `EventType` but `webhook.ping`), built from `EventType::SUBSCRIBABLE` so
/// the document and the server's check are the same list.
pub struct SubscribableEventType;

impl utoipa::PartialSchema for SubscribableEventType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(EventType::SUBSCRIBABLE.iter().map(|t| t.as_str())))
            .description(Some(
                "An event type a webhook can subscribe to (`webhook.ping` is sent by the test \
                 route only).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for SubscribableEventType {}

impl EventType {
    pub const SUBSCRIBABLE: [EventType; 6] = [
        EventType::BatchCompleted,
        EventType::BatchCompletedWithErrors,
        EventType::BatchFailed,
        EventType::ItemLowStock,
        EventType::ItemDeleted,
        EventType::WebhookDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::BatchCompleted => "batch.completed",
            EventType::BatchCompletedWithErrors => "batch.completed_with_errors",
            EventType::BatchFailed => "batch.failed",
            EventType::ItemLowStock => "item.low_stock",
            EventType::ItemDeleted => "item.deleted",
            EventType::WebhookDisabled => "webhook.disabled",
            EventType::WebhookPing => "webhook.ping",
        }
    }

    /// What the event tells, and its `data` (the OpenAPI document's
    /// `webhooks` section).
    pub fn description(self) -> &'static str {
        match self {
            EventType::BatchCompleted => {
                "A batch finished with every record applied. `data`: `batch_id`, `mode`, `status`, \
                 `total`, `succeeded`, `failed`, `status_url`, `failures_url`."
            }
            EventType::BatchCompletedWithErrors => {
                "A batch finished with some records failed (isolated mode). `data`: `batch_id`, \
                 `mode`, `status`, `total`, `succeeded`, `failed`, `status_url`, `failures_url`."
            }
            EventType::BatchFailed => {
                "A batch failed as a whole (atomic mode, or an upload that could not be read). \
                 `data`: `batch_id`, `mode`, `status`, `total`, `succeeded`, `failed`, \
                 `status_url`, `failures_url` and, when the batch failed as a whole, `error`."
            }
            EventType::ItemLowStock => {
                "An item's stock fell to or below its `low_stock_threshold`. `data`: `sku`, \
                 `quantity`, `low_stock_threshold`, `version` and, from a batch, `batch_id`."
            }
            EventType::ItemDeleted => {
                "An item was deleted. `data`: `sku` and, from a batch, `batch_id`."
            }
            EventType::WebhookDisabled => {
                "One of the tenant's webhooks was disabled (410 Gone, or failing for too long); \
                 the disabled one itself does not receive it. `data`: `webhook_id`, `reason`."
            }
            EventType::WebhookPing => {
                "Sent by `POST /v1/webhooks/{webhook_id}/test` to that webhook only; cannot be \
                 subscribed to. `data`: `webhook_id`."
            }
        }
    }

    /// Every type that can be delivered: the subscribable ones and the ping.
    pub const DELIVERABLE: [EventType; 7] = [
        EventType::BatchCompleted,
        EventType::BatchCompletedWithErrors,
        EventType::BatchFailed,
        EventType::ItemLowStock,
        EventType::ItemDeleted,
        EventType::WebhookDisabled,
        EventType::WebhookPing,
    ];

    pub fn parse(raw: &str) -> Option<EventType> {
        Self::DELIVERABLE.into_iter().find(|t| t.as_str() == raw)
    }
}

/// The payload published to SNS and delivered to webhooks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    #[schema(example = "evt_01jd8x3b6q5w3z2y1x0v9t8s7r")]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub tenant_id: String,
    pub occurred_at: String,
    /// The request that caused the event (the batch's POST, the adjustment...).
    pub request_id: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

fn new_id() -> String {
    format!("evt_{}", ulid::Ulid::new().to_string().to_ascii_lowercase())
}

impl Event {
    /// The batch's terminal event; its id derives from the batch id, so
    /// publishing it again (after a crash) yields the same event.
    pub fn batch_finished(tenant: &str, batch: &Batch, occurred_at: &str) -> Option<Event> {
        use super::batch::BatchStatus;
        let kind = match batch.status {
            BatchStatus::Completed => EventType::BatchCompleted,
            BatchStatus::CompletedWithErrors => EventType::BatchCompletedWithErrors,
            BatchStatus::Failed => EventType::BatchFailed,
            BatchStatus::AwaitingUpload | BatchStatus::Accepted | BatchStatus::Processing => {
                return None;
            }
        };
        let suffix = batch.batch_id.strip_prefix("b_").unwrap_or(&batch.batch_id);
        let mut data = json!({
            "batch_id": batch.batch_id,
            "mode": batch.mode,
            "status": batch.status,
            "total": batch.total,
            "succeeded": batch.succeeded,
            "failed": batch.failed,
            "status_url": format!("/v1/batches/{}", batch.batch_id),
            "failures_url": format!("/v1/batches/{}/failures", batch.batch_id),
        });
        if let Some(error) = &batch.error {
            data["error"] = json!(error);
        }
        Some(Event {
            id: format!("evt_{suffix}"),
            kind,
            tenant_id: tenant.to_owned(),
            occurred_at: batch
                .completed_at
                .clone()
                .unwrap_or_else(|| occurred_at.to_owned()),
            request_id: batch.request_id.clone(),
            data,
        })
    }

    pub fn low_stock(tenant: &str, item: &Item, request_id: &str, batch_id: Option<&str>) -> Event {
        let mut data = json!({
            "sku": item.sku,
            "quantity": item.quantity,
            "low_stock_threshold": item.low_stock_threshold,
            "version": item.version,
        });
        if let Some(b) = batch_id {
            data["batch_id"] = json!(b);
        }
        Event {
            id: new_id(),
            kind: EventType::ItemLowStock,
            tenant_id: tenant.to_owned(),
            occurred_at: item.updated_at.clone(),
            request_id: request_id.to_owned(),
            data,
        }
    }

    pub fn item_deleted(
        tenant: &str,
        sku: &str,
        occurred_at: &str,
        request_id: &str,
        batch_id: Option<&str>,
    ) -> Event {
        let mut data = json!({ "sku": sku });
        if let Some(b) = batch_id {
            data["batch_id"] = json!(b);
        }
        Event {
            id: new_id(),
            kind: EventType::ItemDeleted,
            tenant_id: tenant.to_owned(),
            occurred_at: occurred_at.to_owned(),
            request_id: request_id.to_owned(),
            data,
        }
    }

    pub fn webhook_disabled(
        tenant: &str,
        webhook_id: &str,
        reason: &str,
        occurred_at: &str,
        request_id: &str,
    ) -> Event {
        Event {
            id: new_id(),
            kind: EventType::WebhookDisabled,
            tenant_id: tenant.to_owned(),
            occurred_at: occurred_at.to_owned(),
            request_id: request_id.to_owned(),
            data: json!({ "webhook_id": webhook_id, "reason": reason }),
        }
    }

    pub fn ping(tenant: &str, webhook_id: &str, occurred_at: &str, request_id: &str) -> Event {
        Event {
            id: new_id(),
            kind: EventType::WebhookPing,
            tenant_id: tenant.to_owned(),
            occurred_at: occurred_at.to_owned(),
            request_id: request_id.to_owned(),
            data: json!({ "webhook_id": webhook_id }),
        }
    }
}

/// True when this write takes the item's stock down to or below its
/// threshold from above it: once per crossing, however many writes follow
/// while it stays low. `before` is the item as it was read under the write's
/// condition, so of two racing writes only the one that commits crosses.
pub fn crosses_low_stock(before: Option<&Item>, after: &Item) -> bool {
    let Some(threshold) = after.low_stock_threshold else {
        return false;
    };
    let Some(before) = before else {
        return false;
    };
    before.quantity > threshold && after.quantity <= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(quantity: i64, threshold: Option<i64>) -> Item {
        Item {
            sku: "S".into(),
            name: "n".into(),
            description: None,
            quantity,
            low_stock_threshold: threshold,
            attributes: Default::default(),
            version: 1,
            created_at: "t".into(),
            updated_at: "t".into(),
        }
    }

    #[test]
    fn crossing_fires_once_when_going_to_or_below_the_threshold() {
        assert!(crosses_low_stock(
            Some(&item(6, Some(5))),
            &item(5, Some(5))
        ));
        assert!(crosses_low_stock(
            Some(&item(100, Some(5))),
            &item(0, Some(5))
        ));
        // Already low: no new crossing.
        assert!(!crosses_low_stock(
            Some(&item(5, Some(5))),
            &item(3, Some(5))
        ));
        // Going up, no threshold, or a new item: no crossing.
        assert!(!crosses_low_stock(
            Some(&item(3, Some(5))),
            &item(9, Some(5))
        ));
        assert!(!crosses_low_stock(Some(&item(9, None)), &item(1, None)));
        assert!(!crosses_low_stock(None, &item(1, Some(5))));
    }

    #[test]
    fn event_types_round_trip_through_their_names() {
        for t in EventType::SUBSCRIBABLE {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::json!(t.as_str())
            );
        }
        assert_eq!(EventType::parse("batch.exploded"), None);
    }

    /// Every type that can be delivered is listed (the document's webhooks):
    /// the subscribable ones and the ping.
    #[test]
    fn deliverable_types_are_the_subscribable_ones_and_the_ping() {
        let mut want = EventType::SUBSCRIBABLE.to_vec();
        want.push(EventType::WebhookPing);
        assert_eq!(EventType::DELIVERABLE.to_vec(), want);
        for t in EventType::DELIVERABLE {
            assert!(!t.description().is_empty());
        }
    }

    #[test]
    fn batch_events_have_ids_derived_from_the_batch() {
        use crate::batch::{BatchMode, BatchStatus};
        let mut b = Batch {
            batch_id: "b_01abc".into(),
            mode: BatchMode::Isolated,
            status: BatchStatus::Processing,
            total: 3,
            succeeded: 3,
            failed: 0,
            created_at: "t0".into(),
            updated_at: "t1".into(),
            completed_at: None,
            request_id: "req-1".into(),
            records_read: 3,
            records_enqueued: 3,
            upload: None,
            error: None,
            chunks_total: 1,
            chunks_done: 1,
        };
        assert!(Event::batch_finished("acme", &b, "t2").is_none());
        b.status = BatchStatus::Completed;
        b.completed_at = Some("t2".into());
        let e = Event::batch_finished("acme", &b, "t9").unwrap();
        assert_eq!(e.id, "evt_01abc");
        assert_eq!(e.kind, EventType::BatchCompleted);
        assert_eq!(e.request_id, "req-1");
        assert_eq!(e.occurred_at, "t2");
        assert_eq!(e.data["succeeded"], 3);
        let again = Event::batch_finished("acme", &b, "t10").unwrap();
        assert_eq!(again, e);
    }
}
