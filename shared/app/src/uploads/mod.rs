//! Batches submitted as a file: splitting an uploaded file into chunks.
//!
//! The splitter reads the file twice, streaming both times. The first pass
//! validates every row, records the invalid ones and counts the chunks; a
//! file that is unusable as a whole (wrong size, unusable header, too many
//! rows, an atomic batch with a bad row, no valid row) fails the batch
//! before anything is applied. The totals are then set on the header in one
//! conditional write, and the second pass enqueues the same chunks (same
//! numbering: the chunking is deterministic), so the workers' counts can
//! finish the batch. A crash in either pass is retried by SQS: the first
//! pass only writes idempotent failure entries, the totals are set once,
//! and chunks re-sent by a second run are applied exactly once by the
//! workers (per-record outcome markers, per-chunk count markers).

pub mod reader;
#[cfg(test)]
mod use_case_tests;

use crate::batches::{CHUNK_MAX_RECORDS, CHUNK_TARGET_BYTES, announce, chunk_envelope};
use crate::domain::TenantId;
use crate::domain::batch::{
    Batch, BatchError, BatchMode, BatchRecord, BatchStatus, Chunker, MAX_ATOMIC_RECORDS,
    RecordFailure, atomic_chunk,
};
use crate::domain::upload::MAX_UPLOAD_ROWS;
use crate::ports::{ChunkEnvelope, ChunkQueue, SplitTotals, StoreError, UploadSplits, UploadStore};
use reader::{ReadError, RowReader};
use std::sync::Arc;

pub use crate::domain::upload::{parse_upload_key, upload_key};

/// Failure entries are written in groups of this many (DynamoDB batch writes).
const FAILURE_FLUSH: usize = 100;
/// Chunk messages sent per queue call group.
const SEND_GROUP: usize = 40;
/// Progress is written to the header every this many rows.
const PROGRESS_EVERY_ROWS: u64 = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// Reading the file or writing the store failed; the message is retried.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] std::io::Error),
}

/// What a split did.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitOutcome {
    /// Every valid record is enqueued.
    Enqueued {
        total: u64,
        invalid: u64,
        chunks: u64,
    },
    /// The batch failed as a whole (reason in the batch's `error`).
    Failed(BatchError),
    /// Nothing to do: the object belongs to no waiting batch, or the batch
    /// already ended (say, its upload expired).
    Ignored(&'static str),
}

#[derive(Clone)]
pub struct UploadSplitter {
    store: Arc<dyn UploadSplits>,
    uploads: Arc<dyn UploadStore>,
    queue: Arc<dyn ChunkQueue>,
}

/// What the first pass found.
struct Survey {
    total: u64,
    invalid: u64,
    valid: u64,
    chunks: u64,
    /// Atomic mode: the valid records, kept to report them if the batch is rejected.
    atomic_valid: Vec<BatchRecord>,
    atomic_invalid: Vec<RecordFailure>,
}

impl UploadSplitter {
    pub fn new(
        store: Arc<dyn UploadSplits>,
        uploads: Arc<dyn UploadStore>,
        queue: Arc<dyn ChunkQueue>,
    ) -> Self {
        Self {
            store,
            uploads,
            queue,
        }
    }

    /// Splits the object at `key` (an S3 notification named it).
    pub async fn split(&self, key: &str) -> Result<SplitOutcome, SplitError> {
        let Some((tenant, batch_id)) = parse_upload_key(key) else {
            return Ok(SplitOutcome::Ignored("the key is not a batch upload"));
        };
        let Some(batch) = self.store.get_batch(&tenant, &batch_id, None).await? else {
            return Ok(SplitOutcome::Ignored("no such batch"));
        };
        tracing::Span::current().record("request_id", batch.request_id.as_str());
        let Some(upload) = batch.upload.clone() else {
            return Ok(SplitOutcome::Ignored(
                "the batch was not submitted by upload",
            ));
        };
        if batch.status.is_terminal() {
            return Ok(SplitOutcome::Ignored("the batch has ended"));
        }
        let already_split = batch.status != BatchStatus::AwaitingUpload && batch.chunks_total > 0;
        if !already_split {
            self.store.begin_split(&tenant, &batch_id).await?;
            let size = self.uploads.size(key).await?;
            if size != Some(upload.size_bytes) {
                let got = size.map_or("no".to_owned(), |s| s.to_string());
                return self
                    .fail(
                        &tenant,
                        &batch_id,
                        BatchError::new(
                            "upload_size_mismatch",
                            format!(
                                "the uploaded file has {got} bytes but {} were declared: it may be truncated; submit a new batch",
                                upload.size_bytes
                            ),
                        ),
                        0,
                    )
                    .await;
            }
            let survey = match self.survey(&tenant, &batch, key).await? {
                Ok(survey) => survey,
                Err(error) => return self.fail(&tenant, &batch_id, error, 0).await,
            };
            if let Some((error, failed)) = self.refuse(&tenant, &batch, &survey).await? {
                return self.fail(&tenant, &batch_id, error, failed).await;
            }
            let totals = SplitTotals {
                total: survey.total,
                invalid: survey.invalid,
                chunks: survey.chunks,
            };
            self.store
                .complete_split(&tenant, &batch_id, &totals)
                .await?;
        }
        self.enqueue(&tenant, &batch_id, key).await
    }

    /// A notification that exhausted its deliveries: one last attempt, then
    /// the batch fails if its file was never split (if it was, its chunks
    /// are in the workers' hands and the batch ends through them).
    pub async fn dead_lettered(&self, key: &str) -> Result<SplitOutcome, SplitError> {
        match self.split(key).await {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                tracing::error!(error = %crate::telemetry::error_chain(&e), "last attempt at a dead-lettered upload failed");
                let Some((tenant, batch_id)) = parse_upload_key(key) else {
                    return Ok(SplitOutcome::Ignored("the key is not a batch upload"));
                };
                self.fail(
                    &tenant,
                    &batch_id,
                    BatchError::new(
                        "upload_unprocessable",
                        "the uploaded file could not be processed after repeated attempts; submit a new batch",
                    ),
                    0,
                )
                .await
            }
        }
    }

    async fn fail(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        error: BatchError,
        failed: u64,
    ) -> Result<SplitOutcome, SplitError> {
        tracing::warn!(batch_id, code = %error.code, reason = %error.message, "upload batch failed");
        if self
            .store
            .fail_upload(tenant, batch_id, &error, failed)
            .await?
            && let Some(batch) = self.store.get_batch(tenant, batch_id, None).await?
        {
            announce(&*self.store, tenant, &batch).await;
        }
        Ok(SplitOutcome::Failed(error))
    }

    /// First pass: validates every row, records the invalid ones, counts
    /// the chunks. `Ok(Err(_))` when the file is unusable as a whole.
    async fn survey(
        &self,
        tenant: &TenantId,
        batch: &Batch,
        key: &str,
    ) -> Result<Result<Survey, BatchError>, SplitError> {
        let Some(upload) = &batch.upload else {
            return Ok(Err(BatchError::new(
                "invalid_upload",
                "not an upload batch",
            )));
        };
        let atomic = batch.mode == BatchMode::Atomic;
        let mut rows = RowReader::new(self.uploads.open(key).await?, upload.format);
        let mut chunker = Chunker::new(CHUNK_TARGET_BYTES, CHUNK_MAX_RECORDS);
        let mut s = Survey {
            total: 0,
            invalid: 0,
            valid: 0,
            chunks: 0,
            atomic_valid: Vec::new(),
            atomic_invalid: Vec::new(),
        };
        let mut failures = Vec::new();
        loop {
            let row = match rows.next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(ReadError::Unusable(why)) => {
                    return Ok(Err(BatchError::new("invalid_upload", why)));
                }
                Err(ReadError::Io(e)) => return Err(e.into()),
            };
            s.total += 1;
            if s.total > MAX_UPLOAD_ROWS || (atomic && s.total > MAX_ATOMIC_RECORDS as u64) {
                let limit = if atomic {
                    MAX_ATOMIC_RECORDS as u64
                } else {
                    MAX_UPLOAD_ROWS
                };
                return Ok(Err(BatchError::new(
                    "too_many_records",
                    format!(
                        "the file holds more than {limit} records, the most {} batch may hold; split it",
                        if atomic { "an atomic" } else { "one uploaded" }
                    ),
                )));
            }
            match row {
                Ok(record) if atomic => s.atomic_valid.push(record),
                Ok(record) => {
                    s.valid += 1;
                    if chunker.push(record).is_some() {
                        s.chunks += 1;
                    }
                }
                Err(failure) if atomic => s.atomic_invalid.push(failure),
                Err(failure) => {
                    s.invalid += 1;
                    failures.push(failure);
                    if failures.len() >= FAILURE_FLUSH {
                        self.store
                            .record_failures(tenant, &batch.batch_id, &failures)
                            .await?;
                        failures.clear();
                    }
                }
            }
            if s.total.is_multiple_of(PROGRESS_EVERY_ROWS) {
                self.store
                    .record_split_progress(tenant, &batch.batch_id, s.total, 0)
                    .await?;
            }
        }
        if !failures.is_empty() {
            self.store
                .record_failures(tenant, &batch.batch_id, &failures)
                .await?;
        }
        if chunker.finish().is_some() {
            s.chunks += 1;
        }
        if atomic {
            s.valid = s.atomic_valid.len() as u64;
            s.invalid = s.atomic_invalid.len() as u64;
            s.chunks = u64::from(!s.atomic_valid.is_empty());
        }
        Ok(Ok(s))
    }

    /// Batch-level verdicts once the file is read: the error and how many
    /// records it fails (their failure entries are written here).
    async fn refuse(
        &self,
        tenant: &TenantId,
        batch: &Batch,
        s: &Survey,
    ) -> Result<Option<(BatchError, u64)>, SplitError> {
        if s.total == 0 {
            return Ok(Some((
                BatchError::new("invalid_upload", "the file holds no records"),
                0,
            )));
        }
        if !s.atomic_invalid.is_empty() {
            let culprits: Vec<&str> = s
                .atomic_invalid
                .iter()
                .map(|f| f.record_id.as_str())
                .collect();
            let mut report = s.atomic_invalid.clone();
            report.extend(s.atomic_valid.iter().map(|r| {
                RecordFailure::new(
                    r.index,
                    &r.id,
                    Some(&r.sku),
                    "atomic_batch_aborted",
                    format!(
                        "not applied: the atomic batch was rejected because of row(s) {}",
                        culprits.join(", ")
                    ),
                )
            }));
            self.store
                .record_failures(tenant, &batch.batch_id, &report)
                .await?;
            return Ok(Some((
                BatchError::new(
                    "invalid_records",
                    format!(
                        "{} row(s) are invalid, so nothing was applied; see the failures",
                        culprits.len()
                    ),
                ),
                s.total,
            )));
        }
        if batch.mode == BatchMode::Atomic
            && let Err(e) = atomic_chunk(s.atomic_valid.clone())
        {
            let why = e.0.first().map(|f| f.message.clone()).unwrap_or_default();
            return Ok(Some((BatchError::new("invalid_upload", why), 0)));
        }
        if s.valid == 0 {
            return Ok(Some((
                BatchError::new(
                    "no_valid_records",
                    format!(
                        "none of the file's {} rows is a valid record; see the failures",
                        s.total
                    ),
                ),
                s.invalid,
            )));
        }
        Ok(None)
    }

    /// Second pass: sends every chunk (again, after a crash: the workers
    /// apply each record once).
    async fn enqueue(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        key: &str,
    ) -> Result<SplitOutcome, SplitError> {
        let Some(batch) = self.store.get_batch(tenant, batch_id, None).await? else {
            return Ok(SplitOutcome::Ignored("no such batch"));
        };
        let Some(upload) = &batch.upload else {
            return Ok(SplitOutcome::Ignored(
                "the batch was not submitted by upload",
            ));
        };
        let mut rows = RowReader::new(self.uploads.open(key).await?, upload.format);
        let (max_bytes, max_records) = match batch.mode {
            BatchMode::Atomic => (usize::MAX, MAX_ATOMIC_RECORDS),
            BatchMode::Isolated => (CHUNK_TARGET_BYTES, CHUNK_MAX_RECORDS),
        };
        let mut chunker = Chunker::new(max_bytes, max_records);
        let mut pending: Vec<ChunkEnvelope> = Vec::new();
        let (mut chunks, mut enqueued, mut sent) = (0u64, 0u64, 0u64);
        let envelope = |records: Vec<BatchRecord>, chunks: &mut u64| {
            let e = chunk_envelope(
                tenant,
                batch_id,
                batch.mode,
                *chunks as u32,
                &batch.request_id,
                records,
            );
            *chunks += 1;
            e
        };
        loop {
            let row = match rows.next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                // The first pass read this file whole: it has changed.
                Err(ReadError::Unusable(why)) => {
                    return Err(StoreError::Corrupt(format!(
                        "the upload of batch {batch_id} changed after it was validated: {why}"
                    ))
                    .into());
                }
                Err(ReadError::Io(e)) => return Err(e.into()),
            };
            let Ok(record) = row else { continue };
            enqueued += 1;
            if let Some(full) = chunker.push(record) {
                pending.push(envelope(full, &mut chunks));
                if pending.len() >= SEND_GROUP {
                    sent += pending.iter().map(|e| e.record_count as u64).sum::<u64>();
                    self.queue.send_chunks(&pending).await?;
                    pending.clear();
                    self.store
                        .record_split_progress(tenant, batch_id, batch.total, sent)
                        .await?;
                }
            }
        }
        if let Some(last) = chunker.finish() {
            pending.push(envelope(last, &mut chunks));
        }
        if chunks != batch.chunks_total {
            return Err(StoreError::Corrupt(format!(
                "the upload of batch {batch_id} changed after it was validated: {chunks} chunks now, {} before",
                batch.chunks_total
            ))
            .into());
        }
        self.queue.send_chunks(&pending).await?;
        self.store
            .record_split_progress(tenant, batch_id, batch.total, enqueued)
            .await?;
        tracing::info!(
            batch_id,
            total = batch.total,
            enqueued,
            chunks,
            "upload split and enqueued"
        );
        Ok(SplitOutcome::Enqueued {
            total: batch.total,
            invalid: batch.total - enqueued,
            chunks,
        })
    }
}
