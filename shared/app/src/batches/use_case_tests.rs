//! The batch use cases on the in-memory adapters: submission, both modes,
//! redelivery and concurrent delivery, dead-lettering, idempotency.

use super::*;
use crate::domain::event::EventType;
use crate::domain::{Item, Sku};
use crate::memory::{MemoryBatchStore, MemoryChunkQueue, MemoryItemStore};
use crate::test_support::{batch_endings, chunk_attributes};
use serde_json::json;

struct World {
    items: Arc<MemoryItemStore>,
    store: Arc<MemoryBatchStore>,
    queue: Arc<MemoryChunkQueue>,
    batches: BatchesService,
    worker: BatchWorker,
    tenant: TenantId,
}

fn world() -> World {
    let items = Arc::new(MemoryItemStore::default());
    let store = Arc::new(MemoryBatchStore::new(items.clone()));
    let queue = Arc::new(MemoryChunkQueue::default());
    World {
        batches: BatchesService::new(store.clone(), queue.clone()),
        worker: BatchWorker::new(
            store.clone(),
            crate::batch_levels::LevelRecords::on(items.clone()),
        ),
        items,
        store,
        queue,
        tenant: TenantId::parse("acme").unwrap(),
    }
}

impl World {
    async fn submit(&self, body: serde_json::Value) -> BatchAccepted {
        self.submit_keyed(body, None).await.unwrap()
    }

    async fn submit_keyed(
        &self,
        body: serde_json::Value,
        key: Option<&IdempotencyRequest>,
    ) -> Result<BatchAccepted, ApiError> {
        match self
            .batches
            .submit(&self.tenant, &body, "req-1", key)
            .await?
        {
            SubmitOutcome::Accepted(accepted) => Ok(accepted),
            SubmitOutcome::Replayed { body, .. } => Ok(serde_json::from_str(&body).unwrap()),
        }
    }

    /// Delivers every queued chunk `times` times, as SQS may.
    async fn deliver_all(&self, times: usize) -> Vec<Option<Batch>> {
        let mut finished = Vec::new();
        for envelope in self.queue.take() {
            for _ in 0..times {
                finished.push(self.deliver(&envelope, ChunkDisposition::Apply).await);
            }
        }
        finished
    }

    async fn deliver(
        &self,
        envelope: &ChunkEnvelope,
        disposition: ChunkDisposition,
    ) -> Option<Batch> {
        self.worker
            .handle(&envelope.body, &chunk_attributes(envelope), disposition)
            .await
            .unwrap()
    }

    async fn batch(&self, id: &str) -> Batch {
        self.store
            .get_batch(&self.tenant, id, None)
            .await
            .unwrap()
            .unwrap()
    }

    async fn item(&self, sku: &str) -> Option<Item> {
        use crate::ports::ItemStore;
        self.items
            .get_item(&self.tenant, &Sku::parse(sku).unwrap(), None)
            .await
            .unwrap()
    }

    async fn failures(&self, id: &str) -> Vec<RecordFailure> {
        self.store
            .list_failures(&self.tenant, id, 100, None, None)
            .await
            .unwrap()
            .items
    }

    fn finished_events(&self) -> Vec<EventType> {
        batch_endings(crate::outbox::EventsOutbox::events_of(
            &self.items.take_changes(),
        ))
    }
}

fn mixed_records() -> serde_json::Value {
    json!([
        {"id": "r1", "sku": "MUG-1", "op": "upsert", "name": "Mug", "quantity": 10},
        {"id": "r2", "sku": "MUG-1", "op": "adjust", "delta": -3, "reason": "sale"},
        {"id": "r3", "sku": "CUP-1", "op": "adjust", "delta": -1, "reason": "sale"},
        {"id": "r4", "sku": "MUG-1", "op": "adjust", "delta": -100, "reason": "sale"},
        {"id": "r5", "sku": "TEA-1", "op": "upsert", "name": "Tea", "quantity": 4},
    ])
}

#[tokio::test]
async fn an_isolated_batch_applies_each_record_once_and_reports_the_rest() {
    let w = world();
    let accepted = w
        .submit(json!({"mode": "isolated", "records": mixed_records()}))
        .await;
    assert_eq!(
        (accepted.status, accepted.total),
        (BatchStatus::Accepted, 5)
    );
    let finished: Vec<Batch> = w.deliver_all(1).await.into_iter().flatten().collect();
    assert_eq!(finished.len(), 1, "the last chunk finishes the batch");
    let batch = w.batch(&accepted.batch_id).await;
    assert_eq!(batch.status, BatchStatus::CompletedWithErrors);
    assert_eq!((batch.succeeded, batch.failed), (3, 2));
    assert_eq!(w.item("MUG-1").await.map(|i| i.quantity), Some(7));
    assert_eq!(w.item("TEA-1").await.map(|i| i.quantity), Some(4));
    assert_eq!(w.item("CUP-1").await, None);
    let failures = w.failures(&accepted.batch_id).await;
    let failed: Vec<(&str, &str)> = failures
        .iter()
        .map(|f| (f.record_id.as_str(), f.code.as_str()))
        .collect();
    assert_eq!(
        failed,
        [("r3", "item_not_found"), ("r4", "insufficient_stock")]
    );
    let ledger = w.items.ledger(&w.tenant, "MUG-1");
    assert_eq!(ledger.iter().map(|m| m.delta).sum::<i64>(), 7);
    assert_eq!(w.finished_events(), [EventType::BatchCompletedWithErrors]);
}

/// Paused time: the losers' backoff sleeps take no wall-clock time.
#[tokio::test(start_paused = true)]
async fn redelivered_and_concurrent_chunks_change_nothing_twice() {
    let w = world();
    let records: Vec<serde_json::Value> = (0..500)
        .map(|i| json!({"id": format!("r{i}"), "sku": format!("SKU-{}", i % 7), "op": "upsert", "name": "x", "quantity": i}))
        .chain((0..200).map(|i| json!({"id": format!("a{i}"), "sku": format!("SKU-{}", i % 7), "op": "adjust", "delta": 1, "reason": "count"})))
        .collect();
    let accepted = w
        .submit(json!({"mode": "isolated", "records": records}))
        .await;
    let envelopes = w.queue.take();
    assert!(envelopes.len() > 1, "several chunks: {}", envelopes.len());
    for envelope in &envelopes {
        let (a, b, c) = tokio::join!(
            w.deliver(envelope, ChunkDisposition::Apply),
            w.deliver(envelope, ChunkDisposition::Apply),
            w.deliver(envelope, ChunkDisposition::Apply),
        );
        let _ = (a, b, c);
        // And once more after it was counted.
        w.deliver(envelope, ChunkDisposition::Apply).await;
    }
    let batch = w.batch(&accepted.batch_id).await;
    assert_eq!(batch.status, BatchStatus::Completed);
    assert_eq!((batch.succeeded, batch.failed, batch.total), (700, 0, 700));
    for sku in 0..7 {
        let sku = format!("SKU-{sku}");
        let item = w.item(&sku).await.unwrap();
        let ledger = w.items.ledger(&w.tenant, &sku);
        assert_eq!(ledger.last().map(|m| m.quantity_after), Some(item.quantity));
    }
    let adjusted: i64 = (0..7)
        .map(|s| {
            w.items
                .ledger(&w.tenant, &format!("SKU-{s}"))
                .iter()
                .filter(|m| m.delta == 1 && m.reason == "count")
                .count() as i64
        })
        .sum();
    assert_eq!(adjusted, 200, "every adjustment applied once");
    assert_eq!(
        w.finished_events(),
        [EventType::BatchCompleted],
        "one event"
    );
}

#[tokio::test]
async fn an_atomic_batch_applies_all_or_nothing() {
    let w = world();
    let good = w
        .submit(json!({"mode": "atomic", "records": [
            {"id": "r1", "sku": "MUG-1", "op": "upsert", "name": "Mug", "quantity": 5},
            {"id": "r2", "sku": "MUG-1", "op": "adjust", "delta": -2, "reason": "sale"},
        ]}))
        .await;
    w.deliver_all(2).await;
    let batch = w.batch(&good.batch_id).await;
    assert_eq!((batch.status, batch.succeeded), (BatchStatus::Completed, 2));
    assert_eq!(w.item("MUG-1").await.map(|i| i.quantity), Some(3));

    let bad = w
        .submit(json!({"mode": "atomic", "records": [
            {"id": "s1", "sku": "MUG-1", "op": "adjust", "delta": 1, "reason": "count"},
            {"id": "s2", "sku": "MUG-1", "op": "adjust", "delta": -50, "reason": "sale"},
        ]}))
        .await;
    w.deliver_all(1).await;
    let batch = w.batch(&bad.batch_id).await;
    assert_eq!((batch.status, batch.failed), (BatchStatus::Failed, 2));
    assert_eq!(
        w.item("MUG-1").await.map(|i| i.quantity),
        Some(3),
        "nothing applied"
    );
    let codes: Vec<String> = w
        .failures(&bad.batch_id)
        .await
        .into_iter()
        .map(|f| f.code)
        .collect();
    assert_eq!(codes, ["atomic_batch_aborted", "insufficient_stock"]);
    assert_eq!(
        w.finished_events(),
        [EventType::BatchCompleted, EventType::BatchFailed]
    );
}

#[tokio::test]
async fn dead_lettered_chunks_fail_their_records_and_finish_the_batch() {
    let w = world();
    let accepted = w
        .submit(json!({"mode": "isolated", "records": mixed_records()}))
        .await;
    let envelopes = w.queue.take();
    for envelope in &envelopes {
        w.deliver(envelope, ChunkDisposition::DeadLettered).await;
    }
    let batch = w.batch(&accepted.batch_id).await;
    assert_eq!((batch.status, batch.failed), (BatchStatus::Failed, 5));
    assert_eq!(w.item("MUG-1").await, None);

    // A dead-lettered body that cannot be read is attributed by its
    // message attributes: one synthetic failure for its records.
    let accepted = w
        .submit(json!({"mode": "isolated", "records": mixed_records()}))
        .await;
    let envelope = w.queue.take().remove(0);
    let finished = w
        .worker
        .handle(
            "{not json",
            &chunk_attributes(&envelope),
            ChunkDisposition::DeadLettered,
        )
        .await
        .unwrap();
    assert_eq!(finished.map(|b| b.failed), Some(5));
    let codes: Vec<String> = w
        .failures(&accepted.batch_id)
        .await
        .into_iter()
        .map(|f| f.code)
        .collect();
    assert_eq!(codes, ["chunk_dead_lettered"]);
    // Without attributes it cannot be attributed: an error, nothing counted.
    let unattributed = w
        .worker
        .handle(
            "{not json",
            &ChunkAttributes::default(),
            ChunkDisposition::DeadLettered,
        )
        .await;
    assert!(matches!(unattributed, Err(ChunkError::Unreadable(_))));
}

#[tokio::test]
async fn invalid_records_fail_at_submission_and_the_rest_are_applied() {
    let w = world();
    let accepted = w
        .submit(json!({"mode": "isolated", "records": [
            {"id": "r1", "sku": "MUG-1", "op": "upsert", "name": "Mug", "quantity": 5},
            {"id": "r2", "sku": "MUG-1", "op": "adjust", "delta": 0, "reason": "sale"},
            {"id": "r3", "sku": "bad sku!", "op": "adjust", "delta": 1},
        ]}))
        .await;
    assert_eq!(accepted.total, 3);
    w.deliver_all(1).await;
    let batch = w.batch(&accepted.batch_id).await;
    assert_eq!((batch.succeeded, batch.failed), (1, 2));
    let ids: Vec<String> = w
        .failures(&accepted.batch_id)
        .await
        .into_iter()
        .map(|f| f.record_id)
        .collect();
    assert_eq!(ids, ["r2", "r3"]);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_batch_and_refuses_another_body() {
    let w = world();
    let key = IdempotencyRequest {
        key: "nightly-2026-12-03".into(),
        request_hash: "hash-a".into(),
        ttl_seconds: crate::items::IDEMPOTENCY_TTL_SECONDS,
    };
    let body = json!({"mode": "isolated", "records": mixed_records()});
    let first = w.submit_keyed(body.clone(), Some(&key)).await.unwrap();
    let again = w.submit_keyed(body, Some(&key)).await.unwrap();
    assert_eq!(first.batch_id, again.batch_id);
    assert_eq!(w.queue.take().len(), 1, "the replay queued nothing");
    let other = IdempotencyRequest {
        request_hash: "hash-b".into(),
        ..key
    };
    let refused = w
        .submit_keyed(
            json!({"mode": "isolated", "records": mixed_records()}),
            Some(&other),
        )
        .await;
    assert!(
        matches!(refused, Err(ApiError::IdempotencyKeyReused)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_whole() {
    let w = world();
    let records: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"id": format!("r{i}"), "sku": "MUG-1", "op": "adjust", "delta": 1}))
        .collect();
    let refused = w
        .submit_keyed(json!({"mode": "atomic", "records": records}), None)
        .await;
    assert!(
        matches!(refused, Err(ApiError::TooManyRecords { atomic: true, .. })),
        "{refused:?}"
    );
    assert!(w.queue.take().is_empty());
}

/// (location, on hand, reserved) of each level of `sku`.
async fn levels_of(w: &World, sku: &str) -> Vec<(String, i64, i64)> {
    let stores = crate::items::LevelStores {
        locations: w.items.clone(),
        levels: w.items.clone(),
        holds: w.items.clone(),
    };
    crate::items::ItemsService::new(w.items.clone())
        .with_locations(stores)
        .levels(&w.tenant, &Sku::parse(sku).unwrap())
        .await
        .unwrap()
        .levels
        .into_iter()
        .map(|l| (l.location, l.on_hand, l.reserved))
        .collect()
}

async fn with_paris(w: &World) {
    use crate::ports::LocationStore;
    w.items
        .create_location(
            &w.tenant,
            &crate::domain::location::Location {
                id: "paris-1".into(),
                name: "Paris".into(),
                kind: crate::domain::location::LocationKind::Store,
                default: false,
                created_at: Some("2026-12-04T00:00:00Z".into()),
            },
        )
        .await
        .unwrap();
}

/// (record, reason, delta, reserved delta) of a sku's movements, in record order.
async fn ledger_of(w: &World, sku: &str) -> Vec<(String, String, i64, i64)> {
    use crate::ports::ItemStore;
    let mut ledger: Vec<(String, String, i64, i64)> = w
        .items
        .list_movements(&w.tenant, &Sku::parse(sku).unwrap(), 0, 100, None, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| {
            (
                m.record_id.unwrap_or_default(),
                m.reason,
                m.delta,
                m.reserved_delta,
            )
        })
        .collect();
    // Ids minted in one millisecond do not sort by time: by record.
    ledger.sort_by_key(|(record, _, delta, _)| (record[1..].parse::<u32>().unwrap_or(0), *delta));
    ledger
}

#[tokio::test]
async fn an_atomic_batch_applies_counts_transfers_and_holds_with_its_items_all_or_nothing() {
    let w = world();
    with_paris(&w).await;
    let earlier = crate::clock::format(crate::clock::now() - time::Duration::minutes(5));
    let accepted = w
        .submit(json!({"mode": "atomic", "records": [
            {"id": "r1", "sku": "MUG-1", "op": "upsert", "name": "Mug", "quantity": 10},
            {"id": "r2", "sku": "MUG-1", "op": "transfer", "from": "default", "to": "paris-1", "quantity": 4},
            {"id": "r3", "sku": "MUG-1", "op": "count", "location": "paris-1", "on_hand": 5, "occurred_at": earlier},
            {"id": "r4", "sku": "MUG-1", "op": "reserve", "quantity": 5, "expires_in": 600, "reference": "cart-1"},
            {"id": "r5", "sku": "MUG-1", "op": "adjust", "delta": -1, "reason": "sale"},
            {"id": "r6", "sku": "TEA-1", "op": "upsert", "name": "Tea", "quantity": 2},
            {"id": "r7", "sku": "TEA-1", "op": "reserve", "location": "paris-1", "quantity": 1, "expires_in": 600},
        ]}))
        .await;
    // Delivered twice concurrently, then again: applied once.
    let envelopes = w.queue.take();
    assert_eq!(envelopes.len(), 1);
    let (a, b) = tokio::join!(
        w.deliver(&envelopes[0], ChunkDisposition::Apply),
        w.deliver(&envelopes[0], ChunkDisposition::Apply)
    );
    let _ = (a, b);
    w.deliver(&envelopes[0], ChunkDisposition::Apply).await;
    let batch = w.batch(&accepted.batch_id).await;
    assert_eq!((batch.succeeded, batch.failed), (0, 7), "{batch:?}");
    // The hold on Tea at Paris found nothing there: the batch is all or nothing.
    let failures = w.failures(&accepted.batch_id).await;
    let failed: Vec<(&str, &str)> = failures
        .iter()
        .map(|f| (f.record_id.as_str(), f.code.as_str()))
        .collect();
    assert_eq!(failed.len(), 7, "{failed:?}");
    assert_eq!(failed[6], ("r7", "insufficient_available"));
    assert!(
        failed[..6]
            .iter()
            .all(|(_, code)| *code == "atomic_batch_aborted")
    );
    assert!(w.item("MUG-1").await.is_none() && w.item("TEA-1").await.is_none());

    // Without the hold that could not be placed: all of it, once.
    let accepted = w
        .submit(json!({"mode": "atomic", "records": [
            {"id": "r1", "sku": "MUG-1", "op": "upsert", "name": "Mug", "quantity": 10},
            {"id": "r2", "sku": "MUG-1", "op": "transfer", "from": "default", "to": "paris-1", "quantity": 4},
            {"id": "r3", "sku": "MUG-1", "op": "count", "location": "paris-1", "on_hand": 5, "occurred_at": earlier},
            {"id": "r4", "sku": "MUG-1", "op": "reserve", "quantity": 5, "expires_in": 600, "reference": "cart-1"},
            {"id": "r5", "sku": "MUG-1", "op": "adjust", "delta": -1, "reason": "sale"},
            {"id": "r6", "sku": "TEA-1", "op": "upsert", "name": "Tea", "quantity": 2},
        ]}))
        .await;
    let envelopes = w.queue.take();
    let (a, b) = tokio::join!(
        w.deliver(&envelopes[0], ChunkDisposition::Apply),
        w.deliver(&envelopes[0], ChunkDisposition::Apply)
    );
    let _ = (a, b);
    w.deliver(&envelopes[0], ChunkDisposition::Apply).await;
    let batch = w.batch(&accepted.batch_id).await;
    assert_eq!((batch.succeeded, batch.failed), (6, 0), "{batch:?}");
    // 10 - 4 moved - 1 sold at the default location, 5 of it held; Paris
    // counted at 5 before the 4 arrived, which stay on top (Square's rule).
    assert_eq!(
        levels_of(&w, "MUG-1").await,
        [("default".into(), 5, 5), ("paris-1".into(), 9, 0)]
    );
    assert_eq!(w.item("MUG-1").await.unwrap().quantity, 5);
    assert_eq!(
        ledger_of(&w, "MUG-1").await,
        [
            ("r1".into(), "stock_count".into(), 10, 0),
            ("r2".into(), "transfer".into(), -4, 0),
            ("r2".into(), "transfer".into(), 4, 0),
            ("r3".into(), "count".into(), 5, 0),
            ("r4".into(), "reservation_placed".into(), 0, 5),
            ("r5".into(), "sale".into(), -1, 0),
        ]
    );
    let holds = {
        use crate::ports::ReservationStore;
        w.items
            .active_holds(&w.tenant, &Sku::parse("MUG-1").unwrap(), None, None)
            .await
            .unwrap()
    };
    assert_eq!(holds.len(), 1);

    // A later atomic batch may not take what the hold keeps: a sale of the
    // held units fails it, and nothing of it applies.
    let accepted = w
        .submit(json!({"mode": "atomic", "records": [
            {"id": "c1", "sku": "MUG-1", "op": "count", "location": "paris-1", "on_hand": 2, "occurred_at": crate::clock::now_rfc3339()},
            {"id": "c2", "sku": "MUG-1", "op": "adjust", "delta": -1, "reason": "sale"},
        ]}))
        .await;
    w.deliver_all(1).await;
    let batch = w.batch(&accepted.batch_id).await;
    assert_eq!((batch.succeeded, batch.failed), (0, 2), "{batch:?}");
    let failures = w.failures(&accepted.batch_id).await;
    assert_eq!(
        failures.iter().map(|f| f.code.as_str()).collect::<Vec<_>>(),
        ["atomic_batch_aborted", "insufficient_available"]
    );
    assert_eq!(
        levels_of(&w, "MUG-1").await,
        [("default".into(), 5, 5), ("paris-1".into(), 9, 0)]
    );
}

#[tokio::test]
async fn counts_transfers_and_holds_in_a_batch_apply_once_with_their_routes_rules() {
    let w = world();
    with_paris(&w).await;
    let earlier = crate::clock::format(crate::clock::now() - time::Duration::minutes(5));
    let accepted = w
        .submit(json!({"mode": "isolated", "records": [
            {"id": "r1", "sku": "MUG-1", "op": "upsert", "name": "Mug", "quantity": 10},
            {"id": "r2", "sku": "MUG-1", "op": "transfer", "from": "default", "to": "paris-1", "quantity": 4},
            {"id": "r3", "sku": "MUG-1", "op": "count", "location": "paris-1", "on_hand": 5, "occurred_at": earlier},
            {"id": "r4", "sku": "MUG-1", "op": "reserve", "quantity": 5, "expires_in": 600, "reference": "cart-1"},
            // 6 on hand at the default location, 5 of them held: a sale of 3 breaks the hold.
            {"id": "r5", "sku": "MUG-1", "op": "adjust", "delta": -3, "reason": "sale"},
            {"id": "r6", "sku": "MUG-1", "op": "reserve", "quantity": 2, "expires_in": 600},
            {"id": "r7", "sku": "MUG-1", "op": "transfer", "from": "default", "to": "lyon-9", "quantity": 1},
            {"id": "r8", "sku": "MUG-1", "op": "count", "on_hand": 1, "occurred_at": "2999-01-01T00:00:00Z"},
            {"id": "r9", "sku": "MUG-1", "op": "delete"},
            {"id": "r10", "sku": "MUG-1", "op": "upsert", "name": "Mug", "quantity": 4},
            {"id": "r11", "sku": "MUG-1", "op": "adjust", "delta": -1, "reason": "sale"},
        ]}))
        .await;
    // Delivered twice, concurrently too: each record still applies once.
    let envelopes = w.queue.take();
    for envelope in &envelopes {
        let (a, b) = tokio::join!(
            w.deliver(envelope, ChunkDisposition::Apply),
            w.deliver(envelope, ChunkDisposition::Apply)
        );
        let _ = (a, b);
        w.deliver(envelope, ChunkDisposition::Apply).await;
    }
    let batch = w.batch(&accepted.batch_id).await;
    assert_eq!((batch.succeeded, batch.failed), (5, 6), "{batch:?}");
    let failures = w.failures(&accepted.batch_id).await;
    let failed: Vec<(&str, &str)> = failures
        .iter()
        .map(|f| (f.record_id.as_str(), f.code.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            ("r5", "insufficient_available"),
            ("r6", "insufficient_available"),
            ("r7", "location_not_found"),
            ("r8", "invalid_record"),
            ("r9", "item_reserved"),
            ("r10", "count_below_reserved"),
        ]
    );
    assert!(
        failures[3].message.contains("occurred_at"),
        "{:?}",
        failures[3]
    );
    // 10 - 4 moved to Paris, counted there at 5 before they arrived; 5
    // held at the default location, which the last sale leaves.
    assert_eq!(
        levels_of(&w, "MUG-1").await,
        [("default".into(), 5, 5), ("paris-1".into(), 9, 0)]
    );
    // The movements name their batch record.
    let ledger = {
        use crate::ports::ItemStore;
        w.items
            .list_movements(&w.tenant, &Sku::parse("MUG-1").unwrap(), 0, 100, None, None)
            .await
            .unwrap()
            .items
    };
    // Ids minted in one millisecond do not sort by time: by record.
    let mut ledger: Vec<(String, String, i64)> = ledger
        .into_iter()
        .map(|m| (m.record_id.unwrap_or_default(), m.reason, m.delta))
        .collect();
    ledger.sort_by_key(|(record, _, delta)| (record[1..].parse::<u32>().unwrap_or(0), *delta));
    assert_eq!(
        ledger,
        [
            ("r1".into(), "stock_count".into(), 10),
            ("r2".into(), "transfer".into(), -4),
            ("r2".into(), "transfer".into(), 4),
            // Square's rule: the count is dated before the transfer in,
            // which stays on top of it (5 + 4).
            ("r3".into(), "count".into(), 5),
            // The hold moves no stock: it holds 5 (`reserved_delta`).
            ("r4".into(), "reservation_placed".into(), 0),
            ("r11".into(), "sale".into(), -1),
        ]
    );
}
