//! The outbox: events derived from committed changes (the stock table's
//! stream), published to the status topic (AWS-native subscribers: every
//! event at least once, unordered) and queued for the webhook dispatcher
//! (in order per key, deduplicated by event id).

use crate::domain::change::CommittedChange;
use crate::domain::event::Event;
use crate::domain::webhook::Webhook;
use crate::domain::{Fields, TenantId};
use crate::ports::{DeliveryTracking, EventPublisher, StoreError, WebhookEventQueue};
use std::collections::HashMap;
use std::sync::Arc;

/// What the outbox reads of a webhook: its subscriptions (never its secrets).
fn subscriptions_only() -> Fields<Webhook> {
    Fields::identifier().and(&["events"])
}

#[derive(Clone)]
pub struct EventsOutbox {
    pub topic: Arc<dyn EventPublisher>,
    pub webhooks: Arc<dyn WebhookEventQueue>,
    /// Which webhooks exist: only the events some webhook of the tenant
    /// wants are queued for the dispatcher (a 1,000,000-row import of a
    /// tenant without webhooks costs no fan-out), one read per tenant per
    /// stream batch.
    pub subscriptions: Arc<dyn DeliveryTracking>,
}

impl EventsOutbox {
    /// The events of these changes, in the changes' order.
    pub fn events_of(changes: &[CommittedChange]) -> Vec<Event> {
        changes.iter().flat_map(CommittedChange::events).collect()
    }

    /// The events some webhook of their tenant subscribes to, in order.
    async fn wanted_by_webhooks(&self, events: &[Event]) -> Result<Vec<Event>, StoreError> {
        let mut kinds_by_tenant: HashMap<&str, Vec<crate::domain::event::EventType>> =
            HashMap::new();
        for e in events {
            if kinds_by_tenant.contains_key(e.tenant_id.as_str()) {
                continue;
            }
            let kinds = match TenantId::parse(&e.tenant_id) {
                Ok(tenant) => self
                    .subscriptions
                    .list_webhooks(&tenant, Some(&subscriptions_only()))
                    .await?
                    .into_iter()
                    .flat_map(|h| h.webhook.events)
                    .collect(),
                // Not a tenant of ours: no webhook can want it.
                Err(_) => Vec::new(),
            };
            kinds_by_tenant.insert(e.tenant_id.as_str(), kinds);
        }
        Ok(events
            .iter()
            .filter(|e| {
                kinds_by_tenant
                    .get(e.tenant_id.as_str())
                    .is_some_and(|kinds| kinds.contains(&e.kind))
            })
            .cloned()
            .collect())
    }

    /// Publishes the events of these changes; an error means none may be
    /// taken as published (the caller retries them all: ids make the
    /// retry harmless downstream).
    pub async fn publish(&self, changes: &[CommittedChange]) -> Result<Vec<Event>, StoreError> {
        let events = Self::events_of(changes);
        if events.is_empty() {
            return Ok(events);
        }
        // The ordered queue first: a failure there retries before anything
        // reaches the topic twice.
        let wanted = self.wanted_by_webhooks(&events).await?;
        self.webhooks.enqueue_events(&wanted).await?;
        self.topic.publish(&events).await?;
        for e in &events {
            crate::telemetry::event_published(e.kind.as_str());
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::change::{ChangeCause, CommittedChange};
    use crate::domain::event::EventType;
    use crate::domain::{Adjustment, MovementContext, NewItem, Sku, TenantId};
    use crate::items::ItemsService;
    use crate::memory::{MemoryItemStore, MemoryWebhookStore, RecordedEvents};
    use async_trait::async_trait;

    #[derive(Default)]
    struct OrderedQueue(crate::memory::Recorded<Event>);

    #[async_trait]
    impl WebhookEventQueue for OrderedQueue {
        async fn enqueue_events(&self, events: &[Event]) -> Result<(), StoreError> {
            self.0.record(events.iter().cloned());
            Ok(())
        }
    }

    fn ctx(request: &str) -> MovementContext {
        MovementContext {
            request_id: request.into(),
            key_id: None,
            batch_record: None,
        }
    }

    /// Every committed write of the items use case reaches both outputs
    /// once, derived from the change log, in commit order per sku.
    #[tokio::test]
    async fn the_items_use_case_commits_and_the_outbox_announces() {
        let store = Arc::new(MemoryItemStore::default());
        let items = ItemsService::new(store.clone());
        let tenant = TenantId::parse("acme").unwrap();
        let new = NewItem::from_json(&serde_json::json!({
            "sku": "SKU-1", "name": "Widget", "quantity": 10, "low_stock_threshold": 5
        }))
        .unwrap();
        items
            .create(&tenant, new, &ctx("req-create"))
            .await
            .unwrap();
        let sku = Sku::parse("SKU-1").unwrap();
        for (i, delta) in [-3, -4, 2].into_iter().enumerate() {
            let adj = Adjustment {
                delta,
                reason: "sale".into(),
                reference: None,
                location: crate::domain::location::LocationId::default_location(),
                occurred_at: None,
            };
            items
                .adjust(&tenant, &sku, &adj, &ctx(&format!("req-{i}")), None)
                .await
                .unwrap();
        }
        items
            .delete(&tenant, &sku, None, &ctx("req-delete"))
            .await
            .unwrap();

        let topic = Arc::new(RecordedEvents::default());
        let queue = Arc::new(OrderedQueue::default());
        let hooks = Arc::new(MemoryWebhookStore::default());
        subscribe(
            &hooks,
            &tenant,
            &["stock.changed", "item.low_stock", "item.deleted"],
        )
        .await;
        let outbox = EventsOutbox {
            topic: topic.clone(),
            webhooks: queue.clone(),
            subscriptions: hooks,
        };
        let changes = store.take_changes();
        outbox.publish(&changes).await.unwrap();
        let queued = queue.0.take();
        let kinds: Vec<(EventType, Option<i64>)> = queued
            .iter()
            .map(|e| (e.kind, e.data["quantity"].as_i64()))
            .collect();
        assert_eq!(
            kinds,
            [
                (EventType::StockChanged, Some(10)),
                (EventType::StockChanged, Some(7)),
                // 7 -> 3 crosses the threshold of 5: the item's write says so.
                (EventType::ItemLowStock, Some(3)),
                (EventType::StockChanged, Some(3)),
                (EventType::StockChanged, Some(5)),
                (EventType::ItemDeleted, None),
                (EventType::StockChanged, Some(0)),
            ]
        );
        assert_eq!(queued[2].request_id, "req-1");
        assert_eq!(queued[5].request_id, "req-delete");
        assert_eq!(topic.take(), queued);

        // The same changes again (a stream batch retried): the same ids.
        outbox.publish(&changes).await.unwrap();
        let again: Vec<String> = queue.0.take().into_iter().map(|e| e.id).collect();
        let first: Vec<String> = queued.into_iter().map(|e| e.id).collect();
        assert_eq!(again, first);
        let distinct: std::collections::HashSet<&String> = first.iter().collect();
        assert_eq!(distinct.len(), first.len());
    }

    async fn subscribe(hooks: &MemoryWebhookStore, tenant: &TenantId, events: &[&str]) {
        use crate::ports::WebhookStore;
        let hook = crate::domain::webhook::Webhook {
            id: format!("wh_{}", ulid::Ulid::new().to_string().to_ascii_lowercase()),
            url: "https://hooks.example.com/x".into(),
            events: events.iter().filter_map(|e| EventType::parse(e)).collect(),
            description: None,
            status: crate::domain::webhook::WebhookStatus::Enabled,
            disabled_reason: None,
            failing_since: None,
            created_at: "t".into(),
            updated_at: "t".into(),
        };
        hooks
            .create_webhook(
                tenant,
                &crate::ports::WebhookRecord {
                    webhook: hook,
                    secrets: Vec::new(),
                },
            )
            .await
            .unwrap();
    }

    /// The topic gets every event; the dispatcher only those a webhook of
    /// the tenant subscribes to.
    #[tokio::test]
    async fn only_events_a_webhook_wants_are_queued_for_the_dispatcher() {
        let store = Arc::new(MemoryItemStore::default());
        let items = ItemsService::new(store.clone());
        let (acme, other) = (
            TenantId::parse("acme").unwrap(),
            TenantId::parse("other").unwrap(),
        );
        for tenant in [&acme, &other] {
            let new =
                NewItem::from_json(&serde_json::json!({"sku": "S", "name": "n", "quantity": 3}))
                    .unwrap();
            items.create(tenant, new, &ctx("req")).await.unwrap();
        }
        let hooks = Arc::new(MemoryWebhookStore::default());
        subscribe(&hooks, &acme, &["item.deleted"]).await;
        subscribe(&hooks, &acme, &["stock.changed"]).await;
        let topic = Arc::new(RecordedEvents::default());
        let queue = Arc::new(OrderedQueue::default());
        let outbox = EventsOutbox {
            topic: topic.clone(),
            webhooks: queue.clone(),
            subscriptions: hooks,
        };
        outbox.publish(&store.take_changes()).await.unwrap();
        assert_eq!(topic.take().len(), 2);
        let queued: Vec<(String, EventType)> = queue
            .0
            .take()
            .into_iter()
            .map(|e| (e.tenant_id, e.kind))
            .collect();
        assert_eq!(queued, [("acme".to_owned(), EventType::StockChanged)]);
    }

    #[test]
    fn a_write_that_crosses_nothing_causes_no_event() {
        let change = CommittedChange::ItemWritten {
            tenant: "acme".into(),
            before: None,
            after: crate::domain::Item {
                bucket_partitions: 0,
                stock_buckets: None,
                sku: "S".into(),
                name: "n".into(),
                description: None,
                quantity: 1,
                low_stock_threshold: None,
                attributes: Default::default(),
                version: 1,
                created_at: "t".into(),
                updated_at: "t".into(),
            },
            cause: ChangeCause::request("r"),
        };
        assert!(EventsOutbox::events_of(&[change]).is_empty());
    }
}
