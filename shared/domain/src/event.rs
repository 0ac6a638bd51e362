//! Status events: what is pushed to the topic and, from there, to webhooks.
//! An event's id is unique and stays the same across retries of its
//! publication and of its deliveries (it is the `webhook-id` receivers dedupe on).

use super::batch::Batch;
use super::{Item, Movement};
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
    /// A movement of stock was committed (one per ledger entry).
    #[serde(rename = "stock.changed")]
    StockChanged,
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
    pub const SUBSCRIBABLE: [EventType; 7] = [
        EventType::BatchCompleted,
        EventType::BatchCompletedWithErrors,
        EventType::BatchFailed,
        EventType::ItemLowStock,
        EventType::ItemDeleted,
        EventType::StockChanged,
        EventType::WebhookDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::BatchCompleted => "batch.completed",
            EventType::BatchCompletedWithErrors => "batch.completed_with_errors",
            EventType::BatchFailed => "batch.failed",
            EventType::ItemLowStock => "item.low_stock",
            EventType::ItemDeleted => "item.deleted",
            EventType::StockChanged => "stock.changed",
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
            EventType::StockChanged => {
                "A stock movement was committed: one event per ledger entry, in commit order \
                 per sku. `data`: `sku`, `location` (`default`: the default location), \
                 `delta`, `quantity` (on hand there after the movement), `reason`, \
                 `reference`, `movement_id`, `request_id`, `occurred_at` (as the client \
                 stated it, else when recorded), `applies: false` when the movement occurred \
                 before the level's last physical count and moved nothing (do not apply its \
                 `delta`) and, from a batch, `batch_id` and `record_id`. The event id derives \
                 from the movement id."
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
    pub const DELIVERABLE: [EventType; 8] = [
        EventType::BatchCompleted,
        EventType::BatchCompletedWithErrors,
        EventType::BatchFailed,
        EventType::ItemLowStock,
        EventType::ItemDeleted,
        EventType::StockChanged,
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

/// An id derived from what identifies the event, so deriving it again from
/// the same committed change (a stream record delivered twice) gives the
/// same id: 26 lowercase hex digits of a SHA-256, like a ULID's length.
fn derived_id(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    let hex = hex::encode(h.finalize());
    format!("evt_{}", &hex[..26])
}

/// The id of an event caused by a ULID-identified record (`mv_<ULID>`,
/// `del_<ULID>`): the ULID, lowercased.
fn id_from_ulid(prefixed: &str) -> String {
    let ulid = prefixed.rsplit('_').next().unwrap_or(prefixed);
    format!("evt_{}", ulid.to_ascii_lowercase())
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

    /// Its id derives from the item's version that crossed, so one crossing
    /// is one event however often it is derived.
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
            id: derived_id(&[
                "item.low_stock",
                tenant,
                &item.sku,
                &item.version.to_string(),
                &item.updated_at,
            ]),
            kind: EventType::ItemLowStock,
            tenant_id: tenant.to_owned(),
            occurred_at: item.updated_at.clone(),
            request_id: request_id.to_owned(),
            data,
        }
    }

    /// `deletion_id` identifies the committed deletion (its marker's id),
    /// and the event id derives from it.
    pub fn item_deleted(
        tenant: &str,
        sku: &str,
        deletion_id: &str,
        occurred_at: &str,
        request_id: &str,
        batch_id: Option<&str>,
    ) -> Event {
        let mut data = json!({ "sku": sku });
        if let Some(b) = batch_id {
            data["batch_id"] = json!(b);
        }
        Event {
            id: id_from_ulid(deletion_id),
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
            id: derived_id(&["webhook.disabled", tenant, webhook_id, occurred_at]),
            kind: EventType::WebhookDisabled,
            tenant_id: tenant.to_owned(),
            occurred_at: occurred_at.to_owned(),
            request_id: request_id.to_owned(),
            data: json!({ "webhook_id": webhook_id, "reason": reason }),
        }
    }

    /// One per committed movement; its id is the movement's ULID.
    pub fn stock_changed(tenant: &str, m: &Movement) -> Event {
        let mut data = json!({
            "sku": m.sku,
            // Where the stock moved; `quantity` is on hand there.
            "location": m.location.as_deref().unwrap_or(super::location::DEFAULT_LOCATION),
            "delta": m.delta,
            "quantity": m.quantity_after,
            "reason": m.reason,
            "reference": m.reference,
            "movement_id": m.movement_id,
            "request_id": m.request_id,
            // When the change happened: as the client stated it, else when
            // it was recorded.
            "occurred_at": m.occurrence(),
        });
        // It occurred before the level's last count: recorded, moved nothing
        // (`quantity` is the level as it stayed; a mirror must not apply `delta`).
        if !m.applies {
            data["applies"] = json!(false);
        }
        // In one of a split sku's buckets: `quantity` (and `reserved`) are
        // the bucket's; a mirror applies `delta` to the sku.
        if let Some(bucket) = m.stock_bucket {
            data["stock_bucket"] = json!(bucket);
        }
        // A hold placed, committed, released or expired: what reservations
        // hold there now (`available` = `quantity` − `reserved`).
        if let Some(after) = m.reserved_after {
            data["reserved_delta"] = json!(m.reserved_delta);
            data["reserved"] = json!(after);
        }
        if let Some(b) = &m.batch_id {
            data["batch_id"] = json!(b);
        }
        if let Some(r) = &m.record_id {
            data["record_id"] = json!(r);
        }
        Event {
            id: id_from_ulid(&m.movement_id),
            kind: EventType::StockChanged,
            tenant_id: tenant.to_owned(),
            occurred_at: m.created_at.clone(),
            request_id: m.request_id.clone(),
            data,
        }
    }

    /// What the event must stay in order with: a receiver sees the events
    /// of one key in the order they were committed. Item events are ordered
    /// per sku (a split sku's movements per bucket: each bucket commits in
    /// its own partition, and a sale's events flow over all of them at
    /// once), batch events per batch, webhook events per webhook.
    pub fn ordering_key(&self) -> String {
        let field = |name: &str| self.data.get(name).and_then(|v| v.as_str()).unwrap_or("");
        match self.kind {
            EventType::StockChanged | EventType::ItemLowStock | EventType::ItemDeleted => {
                match self.data.get("stock_bucket").and_then(|b| b.as_u64()) {
                    Some(bucket) => format!("{}#I#{}#S#{bucket}", self.tenant_id, field("sku")),
                    None => format!("{}#I#{}", self.tenant_id, field("sku")),
                }
            }
            EventType::BatchCompleted
            | EventType::BatchCompletedWithErrors
            | EventType::BatchFailed => format!("{}#B#{}", self.tenant_id, field("batch_id")),
            EventType::WebhookDisabled | EventType::WebhookPing => {
                format!("{}#W#{}", self.tenant_id, field("webhook_id"))
            }
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

/// An SQS FIFO `MessageGroupId` for an ordering key: the key itself when
/// SQS accepts it (at most 128 printable ASCII characters), otherwise a
/// digest of it, which keeps one key in one group.
pub fn message_group_id(key: &str) -> String {
    if !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_graphic()) {
        return key.to_owned();
    }
    use sha2::{Digest, Sha256};
    format!("h#{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// An SQS FIFO `MessageDeduplicationId` from the parts that make a message
/// the same one (at most 128 characters: a digest).
pub fn deduplication_id(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(h.finalize())
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
            bucket_partitions: 0,
            stock_buckets: None,
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
    fn a_movement_that_moved_nothing_says_so_in_its_event() {
        use crate::level::OccurredAt;
        let ctx = crate::MovementContext::default();
        let m = Movement::record("S", -3, 38, "sale", None, &ctx, "2026-12-04T09:40:00Z");
        let applied = Event::stock_changed("acme", &m);
        assert_eq!(applied.data["occurred_at"], "2026-12-04T09:40:00Z");
        assert!(applied.data.get("applies").is_none());
        let mut late = m.occurred(Some(&OccurredAt::from_unix_ms(0)));
        late.applies = false;
        let event = Event::stock_changed("acme", &late);
        assert_eq!(event.data["applies"], false);
        assert_eq!(event.data["occurred_at"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_split_skus_movements_are_ordered_per_bucket_and_say_which() {
        let ctx = crate::MovementContext::default();
        let own = Movement::record("S", -1, 4, "sale", None, &ctx, "t");
        let bucketed = own.clone().in_bucket(Some(7));
        let (own, bucketed) = (
            Event::stock_changed("acme", &own),
            Event::stock_changed("acme", &bucketed),
        );
        assert_eq!(own.ordering_key(), "acme#I#S");
        assert!(own.data.get("stock_bucket").is_none());
        assert_eq!(bucketed.ordering_key(), "acme#I#S#S#7");
        assert_eq!(bucketed.data["stock_bucket"], 7);
    }

    #[test]
    fn group_ids_are_the_key_when_sqs_takes_it_and_a_digest_otherwise() {
        assert_eq!(message_group_id("acme#I#SKU-1"), "acme#I#SKU-1");
        let spaced = message_group_id("acme#I#SKU 1");
        assert!(spaced.starts_with("h#") && spaced.len() == 66);
        assert_eq!(spaced, message_group_id("acme#I#SKU 1"));
        assert_ne!(spaced, message_group_id("acme#I#SKU 2"));
        let long = "x".repeat(129);
        assert!(message_group_id(&long).starts_with("h#"));
        assert_eq!(deduplication_id(&["a", "b"]).len(), 64);
        assert_ne!(deduplication_id(&["ab", ""]), deduplication_id(&["a", "b"]));
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
