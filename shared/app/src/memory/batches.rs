use super::items::MemoryItemStore;
use super::{lock, page};
use crate::clock;
use crate::domain::batch::{
    Batch, BatchError, BatchStatus, ChunkMessage, RecordEffect, RecordFailure,
};
use crate::domain::change::{ChangeCause, CommittedChange};
use crate::domain::chunk_plan::{self as chunk_plan, AtomicPlan, unreadable_chunk_failure};
use crate::domain::{Fields, TenantId};
use crate::ports::{
    AtomicCommit, AtomicCommitted, BatchHeaders, BatchSubmissions, ChunkApplication, GroupCommit,
    IdempotencyRecord, ItemsRead, Page, PageKey, PlannedRecord, SplitTotals, StoreError,
    UploadSplits,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// A batch header and what the DynamoDB adapter keeps under its key.
#[derive(Debug, Clone)]
struct Header {
    batch: Batch,
    /// An upload batch whose file is not read whole yet.
    splitting: bool,
    /// Terminal, its status event not yet published.
    notify_pending: bool,
}

#[derive(Debug, Default)]
struct Batches {
    headers: BTreeMap<(String, String), Header>,
    /// (tenant, batch) -> record index -> applied?
    outcomes: HashMap<(String, String), HashMap<u32, bool>>,
    /// (tenant, batch) -> record index -> failure.
    failures: HashMap<(String, String), BTreeMap<u32, RecordFailure>>,
    /// (tenant, batch) -> chunks counted.
    counted: HashMap<(String, String), HashSet<u32>>,
}

/// [`BatchStore`] in memory, applying records to a [`MemoryItemStore`]
/// (shared with the items service, as the DynamoDB table is). Every call
/// holds the store's lock, so it is atomic as the DynamoDB conditions and
/// transactions are; the item store's lock is taken inside it.
#[derive(Debug)]
pub struct MemoryBatchStore {
    items: Arc<MemoryItemStore>,
    batches: Mutex<Batches>,
}

/// A store call is a network round trip: other deliveries run meanwhile, so
/// concurrent deliveries of a chunk interleave as they do on DynamoDB.
async fn round_trip() {
    tokio::task::yield_now().await;
}

impl Batches {
    /// A record's outcome marker, and its failure entry when it failed.
    fn record_outcome(
        &mut self,
        k: &(String, String),
        index: u32,
        applied: bool,
        failure: Option<&RecordFailure>,
    ) {
        self.outcomes
            .entry(k.clone())
            .or_default()
            .insert(index, applied);
        if let Some(f) = failure {
            self.failures
                .entry(k.clone())
                .or_default()
                .insert(f.index, f.clone());
        }
    }

    fn record_failures(&mut self, k: &(String, String), failures: &[RecordFailure]) {
        for f in failures {
            self.record_outcome(k, f.index, false, Some(f));
        }
    }
}

impl Header {
    /// Out of `accepted` (a no-op in any other status); a terminal status
    /// also ends the batch and offers its event.
    fn leave_accepted(&mut self, to: BatchStatus, now: &str) {
        if self.batch.status == BatchStatus::Accepted {
            self.batch.status = to;
            self.batch.updated_at = now.to_owned();
            if to.is_terminal() {
                self.batch.completed_at = Some(now.to_owned());
                self.notify_pending = true;
            }
        }
    }
}

fn key(tenant: &TenantId, batch_id: &str) -> (String, String) {
    (tenant.as_str().to_owned(), batch_id.to_owned())
}

fn no_header(batch_id: &str) -> StoreError {
    StoreError::Corrupt(format!("batch {batch_id} has no header"))
}

impl MemoryBatchStore {
    pub fn new(items: Arc<MemoryItemStore>) -> Self {
        Self {
            items,
            batches: Mutex::new(Batches::default()),
        }
    }

    /// Runs `f` under the lock; a header it takes to a terminal status is
    /// logged as the stream would report it (the batch's event derives
    /// from that write).
    fn with<R>(&self, f: impl FnOnce(&mut Batches) -> R) -> R {
        let mut b = lock(&self.batches);
        let before: HashMap<(String, String), BatchStatus> = b
            .headers
            .iter()
            .map(|(k, h)| (k.clone(), h.batch.status))
            .collect();
        let out = f(&mut b);
        for ((tenant, id), h) in &b.headers {
            let was = before.get(&(tenant.clone(), id.clone())).copied();
            if was != Some(h.batch.status) {
                self.items.log_change(CommittedChange::BatchWritten {
                    tenant: tenant.clone(),
                    before: was,
                    after: h.batch.clone(),
                });
            }
        }
        out
    }

    /// Runs `f` on the batch's header, or fails as the DynamoDB update's
    /// `attribute_exists(pk)` condition does.
    fn update<R>(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        f: impl FnOnce(&mut Header) -> R,
    ) -> Result<R, StoreError> {
        self.with(|b| {
            b.headers
                .get_mut(&key(tenant, batch_id))
                .map(f)
                .ok_or_else(|| no_header(batch_id))
        })
    }

    fn leave_accepted(&self, tenant: &TenantId, batch_id: &str, to: BatchStatus) {
        let now = clock::now_rfc3339();
        let _ = self.update(tenant, batch_id, |h| h.leave_accepted(to, &now));
    }
}

#[async_trait]
impl BatchHeaders for MemoryBatchStore {
    async fn get_batch(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        _fields: Option<&Fields<Batch>>,
    ) -> Result<Option<Batch>, StoreError> {
        Ok(self.with(|b| {
            b.headers
                .get(&key(tenant, batch_id))
                .map(|h| h.batch.clone())
        }))
    }

    async fn record_failures(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        failures: &[RecordFailure],
    ) -> Result<(), StoreError> {
        self.with(|b| b.record_failures(&key(tenant, batch_id), failures));
        Ok(())
    }

    async fn finalize(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> Result<Option<Batch>, StoreError> {
        let now = clock::now_rfc3339();
        self.update(tenant, batch_id, |h| {
            if h.batch.status.is_terminal() {
                return h.notify_pending.then(|| h.batch.clone());
            }
            if h.splitting || h.batch.chunks_done < h.batch.chunks_total {
                return None;
            }
            h.batch.status = BatchStatus::from_counts(h.batch.succeeded, h.batch.failed);
            h.batch.completed_at = Some(now.clone());
            h.batch.updated_at = now;
            h.notify_pending = true;
            Some(h.batch.clone())
        })
    }

    async fn mark_notified(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError> {
        self.update(tenant, batch_id, |h| h.notify_pending = false)
    }

    async fn fail_upload(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        error: &BatchError,
        failed_records: u64,
    ) -> Result<bool, StoreError> {
        let now = clock::now_rfc3339();
        Ok(self
            .update(tenant, batch_id, |h| {
                let open = matches!(
                    h.batch.status,
                    BatchStatus::AwaitingUpload | BatchStatus::Accepted
                );
                if !(open && h.splitting) {
                    return false;
                }
                h.batch.status = BatchStatus::Failed;
                h.batch.error = Some(error.clone());
                h.batch.total = failed_records;
                h.batch.failed = failed_records;
                h.batch.updated_at = now.clone();
                h.batch.completed_at = Some(now);
                h.notify_pending = true;
                h.splitting = false;
                true
            })
            .unwrap_or(false))
    }
}

#[async_trait]
impl BatchSubmissions for MemoryBatchStore {
    async fn create_batch(
        &self,
        tenant: &TenantId,
        batch: &Batch,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        self.with(|b| {
            let k = key(tenant, &batch.batch_id);
            if b.headers.contains_key(&k) {
                return Err(StoreError::AlreadyExists);
            }
            if let Some(record) = idempotency {
                self.items.take_idempotency_key(tenant, record)?;
            }
            b.headers.insert(
                k,
                Header {
                    batch: batch.clone(),
                    splitting: batch.upload.is_some(),
                    notify_pending: false,
                },
            );
            Ok(())
        })
    }

    async fn abort_batch(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError> {
        self.leave_accepted(tenant, batch_id, BatchStatus::Failed);
        Ok(())
    }

    /// Newest first, as the DynamoDB index (batch ids are ULIDs).
    async fn list_batches(
        &self,
        tenant: &TenantId,
        status: Option<BatchStatus>,
        limit: u32,
        start: Option<PageKey>,
        _fields: Option<&Fields<Batch>>,
    ) -> Result<Page<Batch>, StoreError> {
        let batches: Vec<Batch> = self.with(|b| {
            b.headers
                .iter()
                .rev()
                .filter(|((t, _), h)| {
                    t == tenant.as_str() && status.is_none_or(|s| h.batch.status == s)
                })
                .map(|(_, h)| h.batch.clone())
                .collect()
        });
        Ok(page(&batches, limit, start.as_ref(), "batch_id", |b| {
            &b.batch_id
        }))
    }

    async fn list_failures(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        limit: u32,
        start: Option<PageKey>,
        _fields: Option<&Fields<RecordFailure>>,
    ) -> Result<Page<RecordFailure>, StoreError> {
        let failures: Vec<(String, RecordFailure)> = self.with(|b| {
            b.failures
                .get(&key(tenant, batch_id))
                .map(|f| {
                    f.iter()
                        .map(|(i, f)| (format!("{i:010}"), f.clone()))
                        .collect()
                })
                .unwrap_or_default()
        });
        let page = page(&failures, limit, start.as_ref(), "index", |(i, _)| i);
        Ok(Page {
            items: page.items.into_iter().map(|(_, f)| f).collect(),
            next: page.next,
        })
    }

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self.items.idempotency(tenant, key))
    }
}

#[async_trait]
impl ChunkApplication for MemoryBatchStore {
    async fn chunk_counted(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        chunk: u32,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|b| {
            b.counted
                .get(&key(tenant, batch_id))
                .is_some_and(|c| c.contains(&chunk))
        }))
    }

    async fn mark_processing(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError> {
        self.leave_accepted(tenant, batch_id, BatchStatus::Processing);
        Ok(())
    }

    async fn read_outcomes(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        indexes: &[u32],
    ) -> Result<HashMap<u32, bool>, StoreError> {
        round_trip().await;
        Ok(self.with(|b| {
            let all = b.outcomes.get(&key(tenant, batch_id));
            indexes
                .iter()
                .filter_map(|i| all.and_then(|a| a.get(i)).map(|applied| (*i, *applied)))
                .collect()
        }))
    }

    async fn read_items(&self, tenant: &TenantId, skus: &[&str]) -> Result<ItemsRead, StoreError> {
        round_trip().await;
        Ok(ItemsRead {
            items: self.items.items_of(tenant, skus),
            held: self
                .items
                .held_of(tenant, skus, clock::unix_ms(clock::now())),
        })
    }

    /// All or nothing: every item condition and outcome marker is checked
    /// before anything is written.
    async fn commit_group(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        cause: &ChangeCause,
        group: &[PlannedRecord<'_>],
    ) -> Result<GroupCommit, StoreError> {
        round_trip().await;
        let k = key(tenant, batch_id);
        self.with(|b| {
            let done = b.outcomes.get(&k);
            let settled: HashSet<usize> = group
                .iter()
                .enumerate()
                .filter(|(_, p)| done.is_some_and(|d| d.contains_key(&p.record.index)))
                .map(|(i, _)| i)
                .collect();
            if !settled.is_empty() {
                return Ok(GroupCommit::retry_unsettled(group.len(), &settled));
            }
            let committed = self.items.with_tenant(tenant, |t| {
                let fresh = group.iter().all(|p| match &p.plan.effect {
                    RecordEffect::Put { created: true, .. } => !t.items.contains_key(&p.record.sku),
                    RecordEffect::Put { .. } | RecordEffect::Delete { .. } => {
                        t.items.get(&p.record.sku).map(|i| i.version) == p.read_version
                    }
                    RecordEffect::Fail { .. } | RecordEffect::Recorded => true,
                });
                if !fresh {
                    return false;
                }
                for p in group {
                    match &p.plan.effect {
                        RecordEffect::Put { item, .. } => t.put_item(item, cause),
                        RecordEffect::Delete { .. } => {
                            t.remove_item(&p.record.sku, p.plan.deletion.as_ref());
                        }
                        RecordEffect::Fail { .. } | RecordEffect::Recorded => {}
                    }
                    t.append(p.plan.movement.as_ref());
                }
                true
            });
            if !committed {
                return Ok(GroupCommit::Retry((0..group.len()).collect()));
            }
            for p in group {
                b.record_outcome(
                    &k,
                    p.record.index,
                    p.plan.applied(),
                    p.plan.failure.as_ref(),
                );
            }
            Ok(GroupCommit::Committed)
        })
    }

    async fn count_chunk(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        chunk: u32,
        applied: u64,
        failed: u64,
    ) -> Result<(), StoreError> {
        let k = key(tenant, batch_id);
        let now = clock::now_rfc3339();
        self.with(|b| {
            let Some(h) = b.headers.get_mut(&k) else {
                return Err(no_header(batch_id));
            };
            if b.counted.entry(k).or_default().insert(chunk) {
                h.batch.succeeded += applied;
                h.batch.failed += failed;
                h.batch.chunks_done += 1;
                h.batch.updated_at = now;
            }
            Ok(())
        })
    }

    /// The whole commit under one lock: the claim, then either every item
    /// and level write (each on its version as read) and movement, or
    /// every failure.
    async fn commit_atomic_chunk(
        &self,
        chunk: &ChunkMessage,
        commit: &AtomicCommit,
    ) -> Result<AtomicCommitted, StoreError> {
        let tenant = TenantId::parse(&chunk.tenant_id).map_err(StoreError::Corrupt)?;
        let k = key(&tenant, &chunk.batch_id);
        let now = clock::now_rfc3339();
        self.with(|b| {
            let Some(h) = b.headers.get(&k) else {
                return Err(no_header(&chunk.batch_id));
            };
            if h.batch.chunks_done > 0 {
                return Ok(AtomicCommitted::Decided);
            }
            let total = chunk.records.len() as u64;
            let (succeeded, failed) = match &commit.plan {
                AtomicPlan::Reject(failures) => {
                    b.record_failures(&k, failures);
                    (0, total)
                }
                AtomicPlan::Apply {
                    items,
                    movements,
                    deletions,
                } => {
                    let cause = chunk_plan::cause(chunk);
                    let writes: Vec<_> = commit
                        .levels
                        .iter()
                        .map(|w| (w.sku.as_str(), w.level_write(&chunk.request_id, &now)))
                        .collect();
                    let committed = self.items.with_tenant(&tenant, |t| {
                        let items_as_read = items.iter().all(|(sku, (before, _))| {
                            t.items.get(sku).map(|i| i.version)
                                == before.as_ref().map(|i| i.version)
                        });
                        if !items_as_read
                            || writes
                                .iter()
                                .any(|(sku, w)| t.check_level_of(sku, w, false).is_err())
                        {
                            return false;
                        }
                        for (sku, (_, after)) in items {
                            match after {
                                Some(item) => t.put_item(item, &cause),
                                None => {
                                    t.remove_item(sku, deletions.iter().find(|d| &d.sku == sku))
                                }
                            };
                        }
                        for (sku, w) in &writes {
                            t.apply_level(w, sku, false);
                        }
                        for m in movements {
                            t.append(Some(m));
                        }
                        true
                    });
                    if !committed {
                        return Ok(AtomicCommitted::Retry);
                    }
                    (total, 0)
                }
            };
            let h = b
                .headers
                .get_mut(&k)
                .ok_or_else(|| no_header(&chunk.batch_id))?;
            h.leave_accepted(BatchStatus::Processing, &now);
            h.batch.succeeded += succeeded;
            h.batch.failed += failed;
            h.batch.chunks_done = 1;
            h.batch.updated_at = now.clone();
            b.counted.entry(k.clone()).or_default().insert(chunk.chunk);
            Ok(AtomicCommitted::Committed)
        })
    }

    /// Everything was written with the claim.
    async fn finish_atomic_chunk(&self, _: &TenantId, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn fail_unreadable_chunk(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        chunk: u32,
        record_count: u64,
    ) -> Result<(), StoreError> {
        let failure = unreadable_chunk_failure(chunk, record_count);
        self.with(|b| {
            b.failures
                .entry(key(tenant, batch_id))
                .or_default()
                .insert(failure.index, failure);
        });
        self.count_chunk(tenant, batch_id, chunk, 0, record_count)
            .await
    }
}

#[async_trait]
impl UploadSplits for MemoryBatchStore {
    async fn begin_split(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError> {
        let now = clock::now_rfc3339();
        let _ = self.update(tenant, batch_id, |h| {
            if h.batch.status == BatchStatus::AwaitingUpload {
                h.batch.status = BatchStatus::Accepted;
                h.batch.updated_at = now;
            }
        });
        Ok(())
    }

    async fn record_split_progress(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        records_read: u64,
        records_enqueued: u64,
    ) -> Result<(), StoreError> {
        let now = clock::now_rfc3339();
        let _ = self.update(tenant, batch_id, |h| {
            h.batch.records_read = records_read;
            h.batch.records_enqueued = records_enqueued;
            h.batch.updated_at = now;
        });
        Ok(())
    }

    async fn complete_split(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        totals: &SplitTotals,
    ) -> Result<bool, StoreError> {
        let now = clock::now_rfc3339();
        Ok(self
            .update(tenant, batch_id, |h| {
                if !(h.batch.status == BatchStatus::Accepted && h.splitting) {
                    return false;
                }
                h.batch.total = totals.total;
                h.batch.failed = totals.invalid;
                h.batch.chunks_total = totals.chunks;
                h.batch.records_read = totals.total;
                h.batch.updated_at = now;
                h.splitting = false;
                true
            })
            .unwrap_or(false))
    }
}
