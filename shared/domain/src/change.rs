//! Committed changes and the events they cause. The table's change stream
//! is the outbox: every event is derived here from what a write committed
//! (the record as it was and as it is), never from what a handler meant to
//! write, so a handler that dies after its commit loses no event and two
//! paths never announce the same change.

use super::batch::{Batch, BatchStatus};
use super::event::{Event, crosses_low_stock};
use super::webhook::{Webhook, WebhookStatus};
use super::{Item, Movement};
use serde::{Deserialize, Serialize};

/// Who caused a write: the request and, for a batch record, the batch.
/// Stored with the item so the events of its change can name them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCause {
    pub request_id: String,
    pub batch_id: Option<String>,
}

impl ChangeCause {
    pub fn request(request_id: &str) -> Self {
        Self {
            request_id: request_id.to_owned(),
            batch_id: None,
        }
    }
}

/// The marker a deletion commits with the item's removal: it says who
/// deleted the item (a removal carries only the item as it was).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    /// `del_<ULID>`, minted per committed deletion.
    pub id: String,
    pub sku: String,
    pub cause: ChangeCause,
    pub deleted_at: String,
}

impl Deletion {
    pub fn new(sku: &str, cause: ChangeCause, now: &str) -> Self {
        Self {
            id: format!("del_{}", ulid::Ulid::new()),
            sku: sku.to_owned(),
            cause,
            deleted_at: now.to_owned(),
        }
    }
}

/// One committed write, as the change stream reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum CommittedChange {
    /// A ledger entry was inserted.
    MovementAdded { tenant: String, movement: Movement },
    /// An item was created or replaced (`before` is None for a creation).
    ItemWritten {
        tenant: String,
        before: Option<Item>,
        after: Item,
        cause: ChangeCause,
    },
    /// An item was deleted (its deletion marker was inserted).
    ItemDeleted { tenant: String, deletion: Deletion },
    /// A batch header was written.
    BatchWritten {
        tenant: String,
        before: Option<BatchStatus>,
        after: Batch,
    },
    /// A hold expired and DynamoDB's TTL removed its active-hold record
    /// before any write of its level swept it: it is to be ended for good.
    /// No event of its own (its `reservation_expired` movement is one).
    HoldLapsed {
        tenant: String,
        reservation_id: String,
    },
    /// A webhook was written (`request_id`: what disabled it, if known).
    WebhookWritten {
        tenant: String,
        before: Option<WebhookStatus>,
        after: Webhook,
        request_id: String,
    },
}

impl CommittedChange {
    /// The events this change causes (none for most writes).
    pub fn events(&self) -> Vec<Event> {
        match self {
            CommittedChange::MovementAdded { tenant, movement } => {
                vec![Event::stock_changed(tenant, movement)]
            }
            CommittedChange::ItemWritten {
                tenant,
                before,
                after,
                cause,
            } => crosses_low_stock(before.as_ref(), after)
                .then(|| {
                    Event::low_stock(tenant, after, &cause.request_id, cause.batch_id.as_deref())
                })
                .into_iter()
                .collect(),
            CommittedChange::ItemDeleted { tenant, deletion } => vec![Event::item_deleted(
                tenant,
                &deletion.sku,
                &deletion.id,
                &deletion.deleted_at,
                &deletion.cause.request_id,
                deletion.cause.batch_id.as_deref(),
            )],
            CommittedChange::HoldLapsed { .. } => Vec::new(),
            CommittedChange::BatchWritten {
                tenant,
                before,
                after,
            } => {
                // Only the write that ends the batch announces it.
                if before.is_some_and(BatchStatus::is_terminal) {
                    return Vec::new();
                }
                Event::batch_finished(tenant, after, &after.updated_at)
                    .into_iter()
                    .collect()
            }
            CommittedChange::WebhookWritten {
                tenant,
                before,
                after,
                request_id,
            } => {
                let disabled_now = after.status == WebhookStatus::Disabled
                    && *before != Some(WebhookStatus::Disabled);
                if !disabled_now {
                    return Vec::new();
                }
                vec![Event::webhook_disabled(
                    tenant,
                    &after.id,
                    after.disabled_reason.as_deref().unwrap_or("disabled"),
                    &after.updated_at,
                    request_id,
                )]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MovementContext;
    use crate::batch::BatchMode;
    use crate::event::EventType;

    fn item(quantity: i64, version: u64) -> Item {
        Item {
            bucket_partitions: 0,
            stock_buckets: None,
            sku: "SKU-1".into(),
            name: "n".into(),
            description: None,
            quantity,
            low_stock_threshold: Some(5),
            attributes: Default::default(),
            version,
            created_at: "t0".into(),
            updated_at: format!("t{version}"),
        }
    }

    fn batch(status: BatchStatus) -> Batch {
        Batch {
            batch_id: "b_01abc".into(),
            mode: BatchMode::Isolated,
            status,
            total: 1,
            succeeded: 1,
            failed: 0,
            created_at: "t0".into(),
            updated_at: "t1".into(),
            completed_at: Some("t1".into()),
            request_id: "req-b".into(),
            records_read: 1,
            records_enqueued: 1,
            upload: None,
            error: None,
            chunks_total: 1,
            chunks_done: 1,
        }
    }

    #[test]
    fn a_movement_is_one_stock_changed_event_whose_id_is_the_movement() {
        let ctx = MovementContext {
            request_id: "req-1".into(),
            key_id: None,
            batch_record: None,
        };
        let m = Movement::record("SKU-1", -2, 8, "sale", Some("o-1".into()), &ctx, "t1");
        let change = CommittedChange::MovementAdded {
            tenant: "acme".into(),
            movement: m.clone(),
        };
        let events = change.events();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, EventType::StockChanged);
        let ulid = m
            .movement_id
            .strip_prefix("mv_")
            .unwrap()
            .to_ascii_lowercase();
        assert_eq!(e.id, format!("evt_{ulid}"));
        assert_eq!(e.data["quantity"], 8);
        assert_eq!(e.data["delta"], -2);
        assert_eq!(e.data["reference"], "o-1");
        assert_eq!(e.data["request_id"], "req-1");
        assert_eq!(e.ordering_key(), "acme#I#SKU-1");
        // Derived again (a stream record delivered twice): the same event.
        assert_eq!(change.events(), events);
    }

    #[test]
    fn low_stock_is_announced_by_the_write_that_crosses_with_a_stable_id() {
        let crossing = CommittedChange::ItemWritten {
            tenant: "acme".into(),
            before: Some(item(6, 3)),
            after: item(5, 4),
            cause: ChangeCause {
                request_id: "req-2".into(),
                batch_id: Some("b_1".into()),
            },
        };
        let events = crossing.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventType::ItemLowStock);
        assert_eq!(events[0].request_id, "req-2");
        assert_eq!(events[0].data["batch_id"], "b_1");
        assert_eq!(crossing.events()[0].id, events[0].id);
        let still_low = CommittedChange::ItemWritten {
            tenant: "acme".into(),
            before: Some(item(5, 4)),
            after: item(4, 5),
            cause: ChangeCause::request("req-3"),
        };
        assert!(still_low.events().is_empty());
        let created = CommittedChange::ItemWritten {
            tenant: "acme".into(),
            before: None,
            after: item(1, 1),
            cause: ChangeCause::request("req-4"),
        };
        assert!(created.events().is_empty());
    }

    #[test]
    fn a_deletion_is_announced_once_with_its_cause() {
        let d = Deletion::new("SKU-1", ChangeCause::request("req-5"), "t9");
        let change = CommittedChange::ItemDeleted {
            tenant: "acme".into(),
            deletion: d.clone(),
        };
        let events = change.events();
        assert_eq!(events[0].kind, EventType::ItemDeleted);
        assert_eq!(events[0].request_id, "req-5");
        assert_eq!(events[0].occurred_at, "t9");
        assert_eq!(change.events()[0].id, events[0].id);
        assert_eq!(events[0].ordering_key(), "acme#I#SKU-1");
    }

    #[test]
    fn only_the_write_that_ends_a_batch_announces_it() {
        let ending = CommittedChange::BatchWritten {
            tenant: "acme".into(),
            before: Some(BatchStatus::Processing),
            after: batch(BatchStatus::Completed),
        };
        let events = ending.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventType::BatchCompleted);
        assert_eq!(events[0].ordering_key(), "acme#B#b_01abc");
        let after_end = CommittedChange::BatchWritten {
            tenant: "acme".into(),
            before: Some(BatchStatus::Completed),
            after: batch(BatchStatus::Completed),
        };
        assert!(after_end.events().is_empty());
        let progress = CommittedChange::BatchWritten {
            tenant: "acme".into(),
            before: Some(BatchStatus::Accepted),
            after: batch(BatchStatus::Processing),
        };
        assert!(progress.events().is_empty());
    }
}
