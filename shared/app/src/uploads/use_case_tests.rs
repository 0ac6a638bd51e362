//! The upload splitter on the in-memory adapters: a file read in two
//! passes, invalid rows reported, a repeated notification applying nothing
//! twice, a truncated or unusable file failing the batch as a whole.

use super::*;
use crate::batches::{BatchAccepted, BatchWorker, BatchesService, SubmitOutcome, UploadSettings};
use crate::domain::TenantId;
use crate::domain::event::EventType;
use crate::memory::{MemoryBatchStore, MemoryChunkQueue, MemoryItemStore, MemoryUploadStore};
use crate::ports::{BatchHeaders, BatchSubmissions, ChunkDisposition, ItemStore};
use crate::test_support::{batch_endings, chunk_attributes};
use serde_json::json;
use std::time::Duration;

struct World {
    items: Arc<MemoryItemStore>,
    store: Arc<MemoryBatchStore>,
    uploads: Arc<MemoryUploadStore>,
    queue: Arc<MemoryChunkQueue>,
    batches: BatchesService,
    splitter: UploadSplitter,
    worker: BatchWorker,
    tenant: TenantId,
}

fn world() -> World {
    let items = Arc::new(MemoryItemStore::default());
    let store = Arc::new(MemoryBatchStore::new(items.clone()));
    let uploads = Arc::new(MemoryUploadStore::default());
    let queue = Arc::new(MemoryChunkQueue::default());
    World {
        batches: BatchesService::new(store.clone(), queue.clone()).with_uploads(UploadSettings {
            store: uploads.clone(),
            url_ttl: Duration::from_secs(900),
            grace: Duration::from_secs(600),
        }),
        splitter: UploadSplitter::new(store.clone(), uploads.clone(), queue.clone()),
        worker: BatchWorker::new(
            store.clone(),
            crate::batch_levels::LevelRecords::on(items.clone()),
        ),
        items,
        store,
        uploads,
        queue,
        tenant: TenantId::parse("acme").unwrap(),
    }
}

impl World {
    /// Submits an upload batch for `file` and returns it with its key.
    async fn submit(&self, mode: &str, format: &str, size_bytes: usize) -> (BatchAccepted, String) {
        let body =
            json!({"mode": mode, "upload": true, "format": format, "size_bytes": size_bytes});
        let SubmitOutcome::Accepted(accepted) = self
            .batches
            .submit(&self.tenant, &body, "req-1", None)
            .await
            .unwrap()
        else {
            panic!("a fresh submission is accepted");
        };
        assert_eq!(accepted.status, BatchStatus::AwaitingUpload);
        let key = upload_key(&self.tenant, &accepted.batch_id);
        (accepted, key)
    }

    async fn apply_queued(&self) {
        for envelope in self.queue.take() {
            self.worker
                .handle(
                    &envelope.body,
                    &chunk_attributes(&envelope),
                    ChunkDisposition::Apply,
                )
                .await
                .unwrap();
        }
    }

    async fn batch(&self, id: &str) -> crate::domain::batch::Batch {
        self.store
            .get_batch(&self.tenant, id, None)
            .await
            .unwrap()
            .unwrap()
    }

    async fn quantity(&self, sku: &str) -> Option<i64> {
        self.items
            .get_item(&self.tenant, &crate::domain::Sku::parse(sku).unwrap(), None)
            .await
            .unwrap()
            .map(|i| i.quantity)
    }

    fn terminal_events(&self) -> Vec<EventType> {
        batch_endings(crate::outbox::EventsOutbox::events_of(
            &self.items.take_changes(),
        ))
    }
}

/// `rows` NDJSON lines: an upsert per sku, then an adjustment of each.
fn ndjson(rows: usize) -> String {
    let mut out = String::new();
    for i in 0..rows {
        out.push_str(&format!(
            "{{\"sku\":\"SKU-{i}\",\"op\":\"upsert\",\"name\":\"Row {i}\",\"quantity\":10}}\n"
        ));
    }
    for i in 0..rows {
        out.push_str(&format!(
            "{{\"sku\":\"SKU-{i}\",\"op\":\"adjust\",\"delta\":-4,\"reason\":\"sale\"}}\n"
        ));
    }
    out
}

#[tokio::test]
async fn an_uploaded_file_is_split_applied_once_and_its_bad_rows_reported() {
    let w = world();
    let mut file = ndjson(400);
    file.push_str("{\"sku\":\"SKU-1\",\"op\":\"adjust\",\"delta\":0}\n");
    file.push_str("not json at all\n");
    let (accepted, key) = w.submit("isolated", "ndjson", file.len()).await;
    w.uploads.put(&key, file.as_bytes());
    let outcome = w.splitter.split(&key).await.unwrap();
    let SplitOutcome::Enqueued {
        total,
        invalid,
        chunks,
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!((total, invalid), (802, 2));
    assert!(chunks > 1, "{chunks} chunks");
    // S3 notifies at least once: a second notification re-sends the chunks,
    // and the workers apply each once.
    assert_eq!(
        w.splitter.split(&key).await.unwrap(),
        SplitOutcome::Enqueued {
            total,
            invalid,
            chunks
        }
    );
    w.apply_queued().await;
    let batch = w.batch(&accepted.batch_id).await;
    assert_eq!(batch.status, BatchStatus::CompletedWithErrors);
    assert_eq!((batch.total, batch.succeeded, batch.failed), (802, 800, 2));
    for sku in ["SKU-0", "SKU-1", "SKU-399"] {
        assert_eq!(w.quantity(sku).await, Some(6), "{sku}");
    }
    let failures = w
        .store
        .list_failures(&w.tenant, &accepted.batch_id, 10, None, None)
        .await
        .unwrap()
        .items;
    let rows: Vec<&str> = failures.iter().map(|f| f.record_id.as_str()).collect();
    assert_eq!(
        rows,
        ["801", "802"],
        "record ids are row numbers: {failures:?}"
    );
    assert_eq!(w.terminal_events(), [EventType::BatchCompletedWithErrors]);
}

#[tokio::test]
async fn a_truncated_file_fails_the_batch_and_applies_nothing() {
    let w = world();
    let file = ndjson(10);
    let (accepted, key) = w.submit("isolated", "ndjson", file.len()).await;
    w.uploads.put(&key, &file.as_bytes()[..file.len() - 7]);
    let outcome = w.splitter.split(&key).await.unwrap();
    assert!(
        matches!(&outcome, SplitOutcome::Failed(e) if e.code == "upload_size_mismatch"),
        "{outcome:?}"
    );
    assert!(w.queue.take().is_empty());
    let batch = w.batch(&accepted.batch_id).await;
    assert_eq!(batch.status, BatchStatus::Failed);
    assert_eq!(w.quantity("SKU-0").await, None);
    assert_eq!(w.terminal_events(), [EventType::BatchFailed]);
    // The failed batch ignores a later notification.
    assert_eq!(
        w.splitter.split(&key).await.unwrap(),
        SplitOutcome::Ignored("the batch has ended")
    );
}

#[tokio::test]
async fn an_atomic_upload_with_a_bad_row_is_refused_whole() {
    let w = world();
    let file = "sku,op,quantity,delta,name,reason\nMUG-1,upsert,5,,Mug,\nMUG-1,adjust,,-9,,sale\n";
    let (accepted, key) = w.submit("atomic", "csv", file.len()).await;
    w.uploads.put(&key, file.as_bytes());
    let outcome = w.splitter.split(&key).await.unwrap();
    // Both rows are valid on their own: the batch fails when applied.
    assert!(
        matches!(outcome, SplitOutcome::Enqueued { total: 2, .. }),
        "{outcome:?}"
    );
    w.apply_queued().await;
    let batch = w.batch(&accepted.batch_id).await;
    assert_eq!((batch.status, batch.failed), (BatchStatus::Failed, 2));
    assert_eq!(w.quantity("MUG-1").await, None);
}

#[tokio::test]
async fn keys_that_name_no_waiting_batch_are_ignored() {
    let w = world();
    assert_eq!(
        w.splitter.split("elsewhere/file.csv").await.unwrap(),
        SplitOutcome::Ignored("the key is not a batch upload")
    );
    let stray = upload_key(&w.tenant, "b_01jd8x3b6q5w3z2y1x0v9t8s7r");
    assert_eq!(
        w.splitter.split(&stray).await.unwrap(),
        SplitOutcome::Ignored("no such batch")
    );
}
