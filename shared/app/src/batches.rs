//! Batch use cases: accepting a batch (validate, store, enqueue chunks) and
//! applying a delivered chunk.

use crate::clock;
use crate::domain::batch::{
    Batch, BatchError, BatchMode, BatchRecord, BatchRejection, BatchStatus, ChunkMessage,
    RecordFailure, UploadInfo, atomic_chunk, chunk_records, parse_batch,
};
use crate::domain::upload::{is_upload_request, parse_upload_request};
use crate::domain::{FieldError, FieldErrors, Fields, TenantId};
use crate::error::ApiError;
use crate::items::{IDEMPOTENCY_TTL_SECONDS, IdempotencyRequest};
use crate::ports::{
    BatchHeaders, BatchSubmissions, ChunkApplication, ChunkDisposition, ChunkEnvelope, ChunkQueue,
    IdempotencyRecord, Page, PageKey, PresignedUpload, StoreError, UploadStore,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest `POST /v1/batches` body (API Gateway allows 10 MB, a synchronous
/// Lambda invocation 6 MB including the event envelope).
pub const MAX_BATCH_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Target size of one chunk message: SQS bills every 64 KiB of payload as one
/// request, so a chunk just under 64 KiB (with its attributes) costs one
/// request to send, receive and delete, and four such chunks fill one
/// 256 KiB SendMessageBatch call. See the README for the arithmetic.
pub const CHUNK_TARGET_BYTES: usize = 60 * 1024;
/// Upper bound of records per chunk, whatever their size: keeps one chunk's
/// work (about 8 transactions) far inside the worker's timeout, so a chunk
/// is never retried for lack of time.
pub const CHUNK_MAX_RECORDS: usize = 250;

/// The fields of a batch its upload-expiry check reads: every read of a
/// batch for the API makes that check, whatever fields the client selected.
const EXPIRY_FIELDS: &[&str] = &["batch_id", "status", "upload"];

/// The 202 body of `POST /v1/batches`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BatchAccepted {
    pub batch_id: String,
    pub status: BatchStatus,
    pub total: u64,
    /// Upload batches: where and how to send the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadTarget>,
}

/// How to upload a batch's file: one request, exactly as described.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UploadTarget {
    /// Presigned URL (no API key: the URL is the credential; keep it private).
    pub url: String,
    #[schema(example = "PUT")]
    pub method: String,
    /// Headers to send exactly as given (they are signed), e.g. the declared
    /// `content-length`.
    pub headers: BTreeMap<String, String>,
    /// The URL stops working at this time.
    pub expires_at: String,
}

/// Where upload batches put their files, and for how long.
#[derive(Clone)]
pub struct UploadSettings {
    pub store: Arc<dyn UploadStore>,
    /// How long a presigned upload URL works.
    pub url_ttl: Duration,
    /// After the URL expired, how long a batch waits for its file before failing.
    pub grace: Duration,
}

pub enum SubmitOutcome {
    Accepted(BatchAccepted),
    Replayed { status: u16, body: String },
}

#[derive(Clone)]
pub struct BatchesService {
    store: Arc<dyn BatchSubmissions>,
    queue: Arc<dyn ChunkQueue>,
    uploads: Option<UploadSettings>,
}

/// One chunk message, with the attributes that travel with it.
pub(crate) fn chunk_envelope(
    tenant: &TenantId,
    batch_id: &str,
    mode: BatchMode,
    chunk: u32,
    request_id: &str,
    records: Vec<BatchRecord>,
) -> ChunkEnvelope {
    let record_count = records.len();
    let message = ChunkMessage {
        v: 1,
        tenant_id: tenant.to_string(),
        batch_id: batch_id.to_owned(),
        mode,
        chunk,
        request_id: request_id.to_owned(),
        records,
    };
    ChunkEnvelope {
        body: serde_json::to_string(&message).unwrap_or_default(),
        tenant_id: tenant.to_string(),
        batch_id: batch_id.to_owned(),
        request_id: request_id.to_owned(),
        chunk,
        record_count,
    }
}

/// Clears a terminal batch's pending flag: its end is reported (metrics)
/// once. A failure leaves the flag set, so whoever finalizes the batch next
/// (a redelivered chunk) reports it. Its status event is derived from the
/// header's change on the table's stream, not published here.
pub(crate) async fn settle_finished(
    store: &dyn BatchHeaders,
    tenant: &TenantId,
    batch: &Batch,
) -> Result<(), StoreError> {
    store.mark_notified(tenant, &batch.batch_id).await
}

fn new_batch_id() -> String {
    format!("b_{}", ulid::Ulid::new().to_string().to_ascii_lowercase())
}

fn idempotency_record(idem: &IdempotencyRequest, accepted: &BatchAccepted) -> IdempotencyRecord {
    let now = clock::now();
    IdempotencyRecord {
        key: idem.key.clone(),
        request_hash: idem.request_hash.clone(),
        status: 202,
        body: serde_json::to_string(accepted).unwrap_or_default(),
        created_at: clock::format(now),
        expires_at: now.unix_timestamp() + IDEMPOTENCY_TTL_SECONDS,
    }
}

/// The one mapping of a refused batch request to its API error.
pub fn rejection(r: BatchRejection, mode_atomic: bool) -> ApiError {
    match r {
        BatchRejection::Malformed(e) => ApiError::MalformedBatch(e),
        BatchRejection::Invalid(e) => ApiError::Validation(e),
        BatchRejection::TooManyRecords { limit } => ApiError::TooManyRecords {
            limit,
            atomic: mode_atomic,
        },
        BatchRejection::UploadTooLarge { limit } => ApiError::UploadTooLarge { limit },
        BatchRejection::InvalidRecords(failures) => ApiError::InvalidRecords(FieldErrors(
            failures
                .into_iter()
                .map(|f| FieldError {
                    field: format!("records[{}]", f.index),
                    message: f.message,
                    record_id: Some(f.record_id),
                })
                .collect(),
        )),
    }
}

impl BatchesService {
    pub fn new(store: Arc<dyn BatchSubmissions>, queue: Arc<dyn ChunkQueue>) -> Self {
        Self {
            store,
            queue,
            uploads: None,
        }
    }

    /// Enables batches submitted by upload.
    pub fn with_uploads(mut self, uploads: UploadSettings) -> Self {
        self.uploads = Some(uploads);
        self
    }

    /// Publishes the event of a batch that ended outside the workers; the
    /// batch stands either way (the event is logged as lost if SNS fails).
    async fn announce(&self, tenant: &TenantId, batch: &Batch) {
        announce(&*self.store, tenant, batch).await;
    }

    /// After an abort: the stored batch says whether it did end (another
    /// writer may have moved it first).
    async fn announce_aborted(&self, tenant: &TenantId, batch_id: &str) {
        match self.store.get_batch(tenant, batch_id, None).await {
            Ok(Some(batch)) if batch.status.is_terminal() => self.announce(tenant, &batch).await,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(batch_id = %batch_id, error = %crate::telemetry::error_chain(&e), "publishing the batch's status event failed");
            }
        }
    }

    pub async fn submit(
        &self,
        tenant: &TenantId,
        body: &serde_json::Value,
        request_id: &str,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<SubmitOutcome, ApiError> {
        self.submit_with_id(tenant, body, request_id, idempotency, new_batch_id())
            .await
    }

    /// `submit` under a batch id chosen by the caller. The API always takes
    /// a fresh one; the local stack seeds the batches its sample events name
    /// (stockroom-admin seed-samples) through this same path.
    pub async fn submit_with_id(
        &self,
        tenant: &TenantId,
        body: &serde_json::Value,
        request_id: &str,
        idempotency: Option<&IdempotencyRequest>,
        batch_id: String,
    ) -> Result<SubmitOutcome, ApiError> {
        if let Some(idem) = idempotency
            && let Some(outcome) = self.replay(tenant, idem).await?
        {
            return Ok(outcome);
        }
        let atomic = body.get("mode").and_then(|m| m.as_str()) == Some("atomic");
        if is_upload_request(body) {
            return self
                .submit_upload(tenant, body, request_id, idempotency, atomic, batch_id)
                .await;
        }
        let request = parse_batch(body).map_err(|r| rejection(r, atomic))?;
        let chunks = match request.mode {
            // Applied from one message, in one transaction.
            BatchMode::Atomic => vec![atomic_chunk(request.valid).map_err(ApiError::Validation)?],
            BatchMode::Isolated => {
                chunk_records(request.valid, CHUNK_TARGET_BYTES, CHUNK_MAX_RECORDS)
            }
        };
        let enqueued: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        let now = clock::now();
        let now_s = clock::format(now);
        let failed = request.invalid.len() as u64;
        // Nothing valid to apply: the batch ends at once.
        let status = if chunks.is_empty() {
            BatchStatus::from_counts(0, failed)
        } else {
            BatchStatus::Accepted
        };
        let batch = Batch {
            batch_id: batch_id.clone(),
            mode: request.mode,
            status,
            total: request.total as u64,
            succeeded: 0,
            failed,
            created_at: now_s.clone(),
            updated_at: now_s.clone(),
            completed_at: status.is_terminal().then(|| now_s.clone()),
            request_id: request_id.to_owned(),
            chunks_total: chunks.len() as u64,
            chunks_done: 0,
            records_read: request.total as u64,
            records_enqueued: enqueued,
            upload: None,
            error: None,
        };
        let accepted = BatchAccepted {
            batch_id: batch_id.clone(),
            status,
            total: batch.total,
            upload: None,
        };
        let idem_record = idempotency.map(|idem| idempotency_record(idem, &accepted));
        // Submission-time failures first: orphans at worst, never a header
        // whose counts are missing their report.
        if !request.invalid.is_empty() {
            self.store
                .record_failures(tenant, &batch_id, &request.invalid)
                .await?;
        }
        if let Some(replayed) = self
            .create(tenant, &batch, idem_record.as_ref(), idempotency)
            .await?
        {
            return Ok(replayed);
        }
        if status.is_terminal() {
            self.announce(tenant, &batch).await;
        }
        let envelopes: Vec<ChunkEnvelope> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, records)| {
                chunk_envelope(
                    tenant,
                    &batch_id,
                    request.mode,
                    i as u32,
                    request_id,
                    records,
                )
            })
            .collect();
        if let Err(e) = self.queue.send_chunks(&envelopes).await {
            tracing::error!(batch_id = %batch_id, error = %crate::telemetry::error_chain(&e), "enqueueing the batch failed; aborting it");
            match self.store.abort_batch(tenant, &batch_id).await {
                Ok(()) => self.announce_aborted(tenant, &batch_id).await,
                Err(abort) => {
                    tracing::error!(batch_id = %batch_id, error = %crate::telemetry::error_chain(&abort), "aborting the batch failed");
                }
            }
            return Err(ApiError::Unavailable(e));
        }
        tracing::info!(batch_id = %batch_id, total = batch.total, invalid = failed, chunks = envelopes.len(), mode = ?request.mode, "batch accepted");
        Ok(SubmitOutcome::Accepted(accepted))
    }

    /// Stores the header (with the idempotent response); on a lost race
    /// for the idempotency key, the winner's response.
    async fn create(
        &self,
        tenant: &TenantId,
        batch: &Batch,
        idem_record: Option<&IdempotencyRecord>,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<Option<SubmitOutcome>, ApiError> {
        match self.store.create_batch(tenant, batch, idem_record).await {
            Ok(()) => Ok(None),
            Err(StoreError::IdempotencyKeyTaken) => {
                if let Some(idem) = idempotency
                    && let Some(outcome) = self.replay(tenant, idem).await?
                {
                    return Ok(Some(outcome));
                }
                Err(ApiError::ConcurrentUpdate)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `upload: true`: a header awaiting its file, and a presigned URL for it.
    async fn submit_upload(
        &self,
        tenant: &TenantId,
        body: &serde_json::Value,
        request_id: &str,
        idempotency: Option<&IdempotencyRequest>,
        atomic: bool,
        batch_id: String,
    ) -> Result<SubmitOutcome, ApiError> {
        let request = parse_upload_request(body).map_err(|r| rejection(r, atomic))?;
        let Some(uploads) = &self.uploads else {
            return Err(ApiError::Internal("uploads are not configured".into()));
        };
        let now = clock::now();
        let now_s = clock::format(now);
        let url_expires = now + uploads.url_ttl;
        let key = crate::domain::upload::upload_key(tenant, &batch_id);
        let PresignedUpload {
            url,
            method,
            headers,
        } = uploads
            .store
            .presign_put(&key, request.size_bytes, uploads.url_ttl)
            .await?;
        let batch = Batch {
            batch_id: batch_id.clone(),
            mode: request.mode,
            status: BatchStatus::AwaitingUpload,
            total: 0,
            succeeded: 0,
            failed: 0,
            created_at: now_s.clone(),
            updated_at: now_s.clone(),
            completed_at: None,
            request_id: request_id.to_owned(),
            chunks_total: 0,
            chunks_done: 0,
            records_read: 0,
            records_enqueued: 0,
            upload: Some(UploadInfo {
                format: request.format,
                size_bytes: request.size_bytes,
                url_expires_at: clock::format(url_expires),
                expires_at: clock::format(url_expires + uploads.grace),
            }),
            error: None,
        };
        let accepted = BatchAccepted {
            batch_id: batch_id.clone(),
            status: batch.status,
            total: 0,
            upload: Some(UploadTarget {
                url,
                method,
                headers,
                expires_at: clock::format(url_expires),
            }),
        };
        let idem_record = idempotency.map(|idem| idempotency_record(idem, &accepted));
        if let Some(replayed) = self
            .create(tenant, &batch, idem_record.as_ref(), idempotency)
            .await?
        {
            return Ok(replayed);
        }
        tracing::info!(batch_id = %batch_id, mode = ?request.mode, format = request.format.as_str(), size_bytes = request.size_bytes, "upload batch created; awaiting its file");
        Ok(SubmitOutcome::Accepted(accepted))
    }

    /// An upload batch past its deadline with no file fails (`upload_expired`).
    /// Returns the batch as it now stands (read whole when it expired here).
    /// Reads only [`EXPIRY_FIELDS`] of `batch`.
    async fn expire_if_due(&self, tenant: &TenantId, batch: Batch) -> Result<Batch, ApiError> {
        let (Some(upload), Some(uploads)) = (&batch.upload, &self.uploads) else {
            return Ok(batch);
        };
        let due = batch.status == BatchStatus::AwaitingUpload
            && clock::parse(&upload.expires_at).is_some_and(|t| t < clock::now());
        if !due {
            return Ok(batch);
        }
        // A file that did arrive is the splitter's, however late its notification.
        let key = crate::domain::upload::upload_key(tenant, &batch.batch_id);
        if uploads.store.size(&key).await?.is_some() {
            return Ok(batch);
        }
        let error = BatchError::new(
            "upload_expired",
            format!(
                "no file was uploaded before {}; submit a new batch",
                upload.expires_at
            ),
        );
        if self
            .store
            .fail_upload(tenant, &batch.batch_id, &error, 0)
            .await?
        {
            tracing::info!(batch_id = %batch.batch_id, "upload batch expired without its file");
        }
        let current = self
            .store
            .get_batch(tenant, &batch.batch_id, None)
            .await?
            .ok_or(ApiError::BatchNotFound)?;
        if current.status.is_terminal() {
            self.announce(tenant, &current).await;
        }
        Ok(current)
    }

    async fn replay(
        &self,
        tenant: &TenantId,
        idem: &IdempotencyRequest,
    ) -> Result<Option<SubmitOutcome>, ApiError> {
        match self.store.get_idempotency(tenant, &idem.key).await? {
            None => Ok(None),
            Some(r) if r.request_hash == idem.request_hash => Ok(Some(SubmitOutcome::Replayed {
                status: r.status,
                body: r.body,
            })),
            Some(_) => Err(ApiError::IdempotencyKeyReused),
        }
    }

    /// The batch, whole or with `fields`.
    pub async fn get(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        fields: Option<&Fields<Batch>>,
    ) -> Result<Batch, ApiError> {
        let read = fields.map(|f| f.and(EXPIRY_FIELDS));
        let batch = self
            .store
            .get_batch(tenant, batch_id, read.as_ref())
            .await?
            .ok_or(ApiError::BatchNotFound)?;
        self.expire_if_due(tenant, batch).await
    }

    pub async fn list(
        &self,
        tenant: &TenantId,
        status: Option<BatchStatus>,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Batch>>,
    ) -> Result<Page<Batch>, ApiError> {
        let read = fields.map(|f| f.and(EXPIRY_FIELDS));
        let mut page = self
            .store
            .list_batches(tenant, status, limit, start, read.as_ref())
            .await?;
        let mut items = Vec::with_capacity(page.items.len());
        for batch in page.items {
            items.push(self.expire_if_due(tenant, batch).await?);
        }
        page.items = items;
        Ok(page)
    }

    pub async fn failures(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<RecordFailure>>,
    ) -> Result<Page<RecordFailure>, ApiError> {
        // 404 for a batch of another tenant or none at all.
        self.get(tenant, batch_id, Some(&Fields::identifier()))
            .await?;
        Ok(self
            .store
            .list_failures(tenant, batch_id, limit, start, fields)
            .await?)
    }
}

/// Why a delivered chunk could not be processed (the message is retried).
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("unreadable chunk message: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Attributes a chunk message carries besides its body.
#[derive(Clone, Debug, Default)]
pub struct ChunkAttributes {
    pub tenant_id: Option<String>,
    pub batch_id: Option<String>,
    pub chunk: Option<u32>,
    pub record_count: Option<u64>,
}

/// Applies delivered chunks; used by the batch worker.
#[derive(Clone)]
pub struct BatchWorker {
    store: Arc<dyn ChunkApplication>,
    levels: crate::batch_levels::LevelRecords,
}

impl BatchWorker {
    pub fn new(
        store: Arc<dyn ChunkApplication>,
        levels: crate::batch_levels::LevelRecords,
    ) -> Self {
        Self { store, levels }
    }

    /// Processes one message; returns the batch when this message finished
    /// it (its status event is then published).
    pub async fn handle(
        &self,
        body: &str,
        attributes: &ChunkAttributes,
        disposition: ChunkDisposition,
    ) -> Result<Option<Batch>, ChunkError> {
        let message: ChunkMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) if disposition == ChunkDisposition::DeadLettered => {
                return self.fail_unreadable(attributes, &e.to_string()).await;
            }
            Err(e) => return Err(ChunkError::Unreadable(e.to_string())),
        };
        if message.v != 1 {
            return Err(ChunkError::Unreadable(format!(
                "unknown message version {}",
                message.v
            )));
        }
        let tenant = TenantId::parse(&message.tenant_id).map_err(ChunkError::Unreadable)?;
        crate::chunks::apply_chunk(&*self.store, &self.levels, &message, disposition).await?;
        // Which records this chunk held: with the "record failed" lines,
        // a record's fate can be found in the logs by its id.
        let ids: Vec<&str> = message.records.iter().map(|r| r.id.as_str()).collect();
        tracing::info!(records = ids.len(), record_ids = %ids.join(","), "chunk processed");
        self.finish(&tenant, &message.batch_id).await
    }

    async fn finish(&self, tenant: &TenantId, batch_id: &str) -> Result<Option<Batch>, ChunkError> {
        let Some(batch) = self.store.finalize(tenant, batch_id).await? else {
            return Ok(None);
        };
        settle_finished(&*self.store, tenant, &batch).await?;
        crate::telemetry::batch_finished(&batch);
        Ok(Some(batch))
    }

    async fn fail_unreadable(
        &self,
        a: &ChunkAttributes,
        why: &str,
    ) -> Result<Option<Batch>, ChunkError> {
        let (Some(tenant), Some(batch_id), Some(chunk), Some(count)) =
            (&a.tenant_id, &a.batch_id, a.chunk, a.record_count)
        else {
            // Nothing says which batch this was: it cannot be attributed.
            return Err(ChunkError::Unreadable(format!(
                "dead-lettered message without batch attributes: {why}"
            )));
        };
        let tenant = TenantId::parse(tenant).map_err(ChunkError::Unreadable)?;
        self.store
            .fail_unreadable_chunk(&tenant, batch_id, chunk, count)
            .await?;
        self.finish(&tenant, batch_id).await
    }
}

/// Reports a batch that just ended; the batch stands either way (a failure
/// leaves it pending, and is logged).
pub(crate) async fn announce(store: &dyn BatchHeaders, tenant: &TenantId, batch: &Batch) {
    if let Err(e) = settle_finished(store, tenant, batch).await {
        tracing::error!(batch_id = %batch.batch_id, error = %crate::telemetry::error_chain(&e), "settling the batch's end failed");
    }
}

#[cfg(test)]
mod use_case_tests;

#[cfg(test)]
mod tests {
    use crate::domain::batch::BATCH_FIELDS;

    #[test]
    fn the_expiry_check_reads_fields_a_batch_has() {
        assert!(
            super::EXPIRY_FIELDS
                .iter()
                .all(|f| BATCH_FIELDS.contains(f))
        );
    }
}
