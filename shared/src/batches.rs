//! Batch use cases: accepting a batch (validate, store, enqueue chunks) and
//! applying a delivered chunk.

use crate::clock;
use crate::domain::batch::{
    Batch, BatchRejection, BatchStatus, ChunkMessage, RecordFailure, chunk_records, parse_batch,
};
use crate::domain::event::Event;
use crate::domain::{FieldError, FieldErrors, TenantId};
use crate::error::ApiError;
use crate::ports::{
    BatchStore, ChunkDisposition, ChunkEnvelope, ChunkQueue, EventPublisher, IdempotencyRecord,
    Page, PageKey, StoreError,
};
use crate::service::{IDEMPOTENCY_TTL_SECONDS, IdempotencyRequest};
use serde::Serialize;
use std::sync::Arc;

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

/// The 202 body of `POST /v1/batches`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BatchAccepted {
    pub batch_id: String,
    pub status: BatchStatus,
    pub total: u64,
}

pub enum SubmitOutcome {
    Accepted(BatchAccepted),
    Replayed { status: u16, body: String },
}

#[derive(Clone)]
pub struct BatchesService {
    store: Arc<dyn BatchStore>,
    queue: Arc<dyn ChunkQueue>,
    events: Arc<dyn EventPublisher>,
}

/// Publishes a terminal batch's status event (same id every time) and
/// clears its pending flag. A failure leaves the flag set, so whoever
/// finalizes the batch next (a redelivered chunk) publishes it.
async fn publish_finished(
    store: &dyn BatchStore,
    events: &dyn EventPublisher,
    tenant: &TenantId,
    batch: &Batch,
) -> Result<(), StoreError> {
    if let Some(event) = Event::batch_finished(tenant.as_str(), batch, &clock::now_rfc3339()) {
        events.publish(&[event]).await?;
    }
    store.mark_notified(tenant, &batch.batch_id).await
}

fn rejection(r: BatchRejection, mode_atomic: bool) -> ApiError {
    match r {
        BatchRejection::Malformed(e) => ApiError::MalformedBatch(e),
        BatchRejection::Invalid(e) => ApiError::Validation(e),
        BatchRejection::TooManyRecords { limit } => ApiError::TooManyRecords {
            limit,
            atomic: mode_atomic,
        },
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
    pub fn new(
        store: Arc<dyn BatchStore>,
        queue: Arc<dyn ChunkQueue>,
        events: Arc<dyn EventPublisher>,
    ) -> Self {
        Self {
            store,
            queue,
            events,
        }
    }

    /// Publishes the event of a batch that ended at submission; the batch
    /// stands either way (the event is logged as lost if SNS fails).
    async fn announce(&self, tenant: &TenantId, batch: &Batch) {
        if let Err(e) = publish_finished(&*self.store, &*self.events, tenant, batch).await {
            tracing::error!(batch_id = %batch.batch_id, error = %crate::error::error_chain(&e), "publishing the batch's status event failed");
        }
    }

    /// After an abort: the stored batch says whether it did end (another
    /// writer may have moved it first).
    async fn announce_aborted(&self, tenant: &TenantId, batch_id: &str) {
        match self.store.get_batch(tenant, batch_id).await {
            Ok(Some(batch)) if batch.status.is_terminal() => self.announce(tenant, &batch).await,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(batch_id = %batch_id, error = %crate::error::error_chain(&e), "publishing the batch's status event failed");
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
        if let Some(idem) = idempotency
            && let Some(outcome) = self.replay(tenant, idem).await?
        {
            return Ok(outcome);
        }
        let atomic = body.get("mode").and_then(|m| m.as_str()) == Some("atomic");
        let request = parse_batch(body).map_err(|r| rejection(r, atomic))?;
        let batch_id = format!("b_{}", ulid::Ulid::new().to_string().to_ascii_lowercase());
        let chunks = chunk_records(request.valid, CHUNK_TARGET_BYTES, CHUNK_MAX_RECORDS);
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
        };
        let accepted = BatchAccepted {
            batch_id: batch_id.clone(),
            status,
            total: batch.total,
        };
        let idem_record = idempotency.map(|idem| IdempotencyRecord {
            key: idem.key.clone(),
            request_hash: idem.request_hash.clone(),
            status: 202,
            body: serde_json::to_string(&accepted).unwrap_or_default(),
            created_at: now_s.clone(),
            expires_at: now.unix_timestamp() + IDEMPOTENCY_TTL_SECONDS,
        });
        // Submission-time failures first: orphans at worst, never a header
        // whose counts are missing their report.
        if !request.invalid.is_empty() {
            self.store
                .record_failures(tenant, &batch_id, &request.invalid)
                .await?;
        }
        match self
            .store
            .create_batch(tenant, &batch, idem_record.as_ref())
            .await
        {
            Ok(()) => {}
            Err(StoreError::IdempotencyKeyTaken) => {
                if let Some(idem) = idempotency
                    && let Some(outcome) = self.replay(tenant, idem).await?
                {
                    return Ok(outcome);
                }
                return Err(ApiError::ConcurrentUpdate);
            }
            Err(e) => return Err(e.into()),
        }
        if status.is_terminal() {
            self.announce(tenant, &batch).await;
        }
        let envelopes: Vec<ChunkEnvelope> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, records)| {
                let record_count = records.len();
                let message = ChunkMessage {
                    v: 1,
                    tenant_id: tenant.to_string(),
                    batch_id: batch_id.clone(),
                    mode: request.mode,
                    chunk: i as u32,
                    request_id: request_id.to_owned(),
                    records,
                };
                ChunkEnvelope {
                    body: serde_json::to_string(&message).unwrap_or_default(),
                    tenant_id: tenant.to_string(),
                    batch_id: batch_id.clone(),
                    request_id: request_id.to_owned(),
                    chunk: i as u32,
                    record_count,
                }
            })
            .collect();
        if let Err(e) = self.queue.send_chunks(&envelopes).await {
            tracing::error!(batch_id = %batch_id, error = %crate::error::error_chain(&e), "enqueueing the batch failed; aborting it");
            match self.store.abort_batch(tenant, &batch_id).await {
                Ok(()) => self.announce_aborted(tenant, &batch_id).await,
                Err(abort) => {
                    tracing::error!(batch_id = %batch_id, error = %crate::error::error_chain(&abort), "aborting the batch failed");
                }
            }
            return Err(ApiError::Unavailable(e));
        }
        tracing::info!(batch_id = %batch_id, total = batch.total, invalid = failed, chunks = envelopes.len(), mode = ?request.mode, "batch accepted");
        Ok(SubmitOutcome::Accepted(accepted))
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

    pub async fn get(&self, tenant: &TenantId, batch_id: &str) -> Result<Batch, ApiError> {
        self.store
            .get_batch(tenant, batch_id)
            .await?
            .ok_or(ApiError::BatchNotFound)
    }

    pub async fn list(
        &self,
        tenant: &TenantId,
        status: Option<BatchStatus>,
        limit: u32,
        start: Option<PageKey>,
    ) -> Result<Page<Batch>, ApiError> {
        Ok(self
            .store
            .list_batches(tenant, status, limit, start)
            .await?)
    }

    pub async fn failures(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        limit: u32,
        start: Option<PageKey>,
    ) -> Result<Page<RecordFailure>, ApiError> {
        // 404 for a batch of another tenant or none at all.
        self.get(tenant, batch_id).await?;
        Ok(self
            .store
            .list_failures(tenant, batch_id, limit, start)
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
    store: Arc<dyn BatchStore>,
    events: Arc<dyn EventPublisher>,
}

impl BatchWorker {
    pub fn new(store: Arc<dyn BatchStore>, events: Arc<dyn EventPublisher>) -> Self {
        Self { store, events }
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
        let caused = self.store.process_chunk(&message, disposition).await?;
        // Which records this chunk held: with the "record failed" lines,
        // a record's fate can be found in the logs by its id.
        let ids: Vec<&str> = message.records.iter().map(|r| r.id.as_str()).collect();
        tracing::info!(records = ids.len(), record_ids = %ids.join(","), "chunk processed");
        // The writes are committed and marked: retrying the chunk would not
        // bring these events back, so a failure is reported, not retried.
        self.events.publish_or_log(&caused).await;
        self.finish(&tenant, &message.batch_id).await
    }

    async fn finish(&self, tenant: &TenantId, batch_id: &str) -> Result<Option<Batch>, ChunkError> {
        let Some(batch) = self.store.finalize(tenant, batch_id).await? else {
            return Ok(None);
        };
        publish_finished(&*self.store, &*self.events, tenant, &batch).await?;
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
