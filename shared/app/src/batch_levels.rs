//! Counts, transfers and holds carried by a batch (isolated mode). Each is
//! applied by its own use case, as its route applies it, in its own
//! transaction (levels, tallies, holds, ledger), under an idempotency key
//! named after the record (`batch:<batch>:<index>`). The record's outcome
//! marker commits afterwards, with the other records of its group.
//!
//! Exactly once: a redelivery that finds no marker runs the record again
//! under the same key and gets the first answer back (replayed). A refusal
//! (no such location, not enough available, ...) takes the key too, before
//! its marker is written, so a concurrent delivery that would now succeed
//! gets the refusal replayed instead of applying the record a second time.
//! The keys of batch records outlive the queue's retention, so a chunk
//! redriven from the dead-letter queue days later still finds them.

use crate::clock;
use crate::counts::{CountOutcome, CountsService};
use crate::domain::batch::{BatchRecord, ChunkMessage, LevelRequest};
use crate::domain::chunk_plan::{self, ChunkDisposition, RecordPlan, plan_level_record};
use crate::domain::{MovementContext, TenantId};
use crate::error::ApiError;
use crate::items::{IdempotencyRequest, LevelStores};
use crate::ports::{IdempotencyRecord, ItemStore, StoreError};
use crate::reservations::{ReservationOutcome, ReservationsService};
use crate::transfers::{TransferOutcome, TransfersService};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How long the key of a batch record is kept: past SQS's longest
/// retention (14 days), with a day to spare.
const RECORD_KEY_TTL_SECONDS: i64 = 15 * 24 * 3600;

/// The use cases a batch's count, transfer and reserve records run.
#[derive(Clone)]
pub struct LevelRecords {
    pub(crate) items: Arc<dyn ItemStore>,
    pub(crate) stores: LevelStores,
    counts: CountsService,
    transfers: TransfersService,
    reservations: ReservationsService,
}

/// A record's answer: applied, or refused with a business code.
type Answer = Option<(&'static str, String)>;

impl LevelRecords {
    /// The use cases on one store that keeps items, locations, levels and
    /// holds (the stock table).
    pub fn on<S>(store: Arc<S>) -> Self
    where
        S: ItemStore
            + crate::ports::LocationStore
            + crate::ports::LevelStore
            + crate::ports::ReservationStore
            + 'static,
    {
        Self::new(
            store.clone(),
            LevelStores {
                locations: store.clone(),
                levels: store.clone(),
                holds: store,
            },
        )
    }

    pub fn new(items: Arc<dyn ItemStore>, stores: LevelStores) -> Self {
        Self {
            counts: CountsService::new(items.clone(), stores.clone()),
            transfers: TransfersService::new(items.clone(), stores.clone()),
            reservations: ReservationsService::new(items.clone(), stores.clone()),
            items,
            stores,
        }
    }

    /// Applies the record (or, dead-lettered, refuses it) exactly once and
    /// returns the plan of its outcome. `Err`: a transient failure; the
    /// chunk is delivered again.
    pub async fn settle(
        &self,
        tenant: &TenantId,
        chunk: &ChunkMessage,
        rec: &BatchRecord,
        disposition: ChunkDisposition,
    ) -> Result<RecordPlan, StoreError> {
        let key = IdempotencyRequest {
            key: format!("batch:{}:{}", chunk.batch_id, rec.index),
            request_hash: hex::encode(Sha256::digest(
                serde_json::to_vec(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )),
            ttl_seconds: RECORD_KEY_TTL_SECONDS,
        };
        let answer = match disposition {
            ChunkDisposition::Apply => self.apply(tenant, chunk, rec, &key).await?,
            ChunkDisposition::DeadLettered => Err((
                "chunk_dead_lettered",
                format!(
                    "record {} was not applied: its chunk failed repeatedly and was dead-lettered",
                    rec.id
                ),
            )),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(refusal) => self.refuse(tenant, &key, refusal).await?,
        };
        Ok(plan_level_record(rec, answer))
    }

    /// Runs the record's use case. `Ok(answer)`: what it did, or the
    /// refusal replayed from its key; `Err(refusal)`: refused now, the key
    /// not taken yet.
    async fn apply(
        &self,
        tenant: &TenantId,
        chunk: &ChunkMessage,
        rec: &BatchRecord,
        key: &IdempotencyRequest,
    ) -> Result<Result<Answer, (&'static str, String)>, StoreError> {
        let ctx = MovementContext {
            batch_record: Some((chunk.batch_id.clone(), rec.id.clone())),
            ..chunk_plan::context(chunk)
        };
        let request = match rec.level_request(clock::unix_ms(clock::now())) {
            Ok(Some(request)) => request,
            Ok(None) => {
                return Err(StoreError::Corrupt(format!(
                    "record {} is not a count, transfer or hold",
                    rec.id
                )));
            }
            Err(errors) => return Ok(Err(("invalid_record", errors.summary()))),
        };
        let replayed = match request {
            LevelRequest::Count(count) => {
                match self.counts.record(tenant, &count, &ctx, Some(key)).await {
                    Ok(CountOutcome::Recorded(_)) => return Ok(Ok(None)),
                    Ok(CountOutcome::Replayed { status, body }) => Ok((status, body)),
                    Err(e) => Err(e),
                }
            }
            LevelRequest::Transfer(transfer) => {
                match self
                    .transfers
                    .transfer(tenant, &transfer, &ctx, Some(key))
                    .await
                {
                    Ok(TransferOutcome::Applied(_)) => return Ok(Ok(None)),
                    Ok(TransferOutcome::Replayed { status, body }) => Ok((status, body)),
                    Err(e) => Err(e),
                }
            }
            LevelRequest::Reserve(hold) => {
                match self
                    .reservations
                    .reserve(tenant, &hold, &ctx, Some(key))
                    .await
                {
                    Ok(ReservationOutcome::Done(_)) => return Ok(Ok(None)),
                    Ok(ReservationOutcome::Replayed { status, body }) => Ok((status, body)),
                    Err(e) => Err(e),
                }
            }
        };
        match replayed {
            Ok((status, _)) if (200..300).contains(&status) => Ok(Ok(None)),
            Ok((_, body)) => Ok(Ok(Some(stored_refusal(&body)))),
            Err(e) => refusal(e).map(Err),
        }
    }

    /// Takes the record's key with the refusal, so it stays the answer; if
    /// another delivery took the key first, its answer is the one.
    async fn refuse(
        &self,
        tenant: &TenantId,
        key: &IdempotencyRequest,
        (code, message): (&'static str, String),
    ) -> Result<Answer, StoreError> {
        let now = clock::now();
        let record = IdempotencyRecord {
            key: key.key.clone(),
            request_hash: key.request_hash.clone(),
            status: 409,
            body: serde_json::json!({"code": code, "message": message}).to_string(),
            created_at: clock::format(now),
            expires_at: now.unix_timestamp() + RECORD_KEY_TTL_SECONDS,
        };
        match self.items.record_idempotency(tenant, &record).await {
            Ok(()) => Ok(Some((code, message))),
            Err(StoreError::IdempotencyKeyTaken) => {
                match self.items.get_idempotency(tenant, &key.key).await? {
                    Some(stored) if (200..300).contains(&stored.status) => Ok(None),
                    Some(stored) => Ok(Some(stored_refusal(&stored.body))),
                    None => Err(StoreError::Unavailable(
                        "a batch record's key was taken and is gone".into(),
                    )),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// The code and message of a refusal stored under a record's key (a
/// problem document or the batch worker's own `{code, message}`).
fn stored_refusal(body: &str) -> (&'static str, String) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let code = v["code"].as_str().unwrap_or("record_refused");
    let message = v["message"]
        .as_str()
        .or_else(|| v["detail"].as_str())
        .unwrap_or("the record was refused")
        .to_owned();
    (
        RECORD_CODES
            .iter()
            .find(|c| **c == code)
            .copied()
            .unwrap_or("record_refused"),
        message,
    )
}

/// The codes a count, transfer or hold record may fail with.
const RECORD_CODES: &[&str] = &[
    "invalid_record",
    "item_not_found",
    "location_not_found",
    "insufficient_available",
    "count_below_reserved",
    "quantity_overflow",
    "chunk_dead_lettered",
];

/// A refusal of the record (its code, as the route's problem would name
/// it), or the transient failure that makes the chunk go round again.
fn refusal(e: ApiError) -> Result<(&'static str, String), StoreError> {
    Ok(match e {
        ApiError::Validation(errors) | ApiError::InvalidParameters(errors) => {
            ("invalid_record", errors.summary())
        }
        ApiError::ItemNotFound => ("item_not_found", "no item with this sku".into()),
        ApiError::LocationNotFound => (
            "location_not_found",
            "a location the record names does not exist".into(),
        ),
        ApiError::InsufficientAvailable {
            available,
            requested,
        } => (
            "insufficient_available",
            format!("{requested} units asked, {available} available"),
        ),
        // A transfer asks for more than is available where it takes from.
        ApiError::InsufficientStock { available, delta } => (
            "insufficient_available",
            format!(
                "{} units asked, {available} available",
                delta.unsigned_abs()
            ),
        ),
        ApiError::CountBelowReserved { reserved } => (
            "count_below_reserved",
            format!("the count is below the {reserved} units held by reservations"),
        ),
        ApiError::QuantityOverflow => (
            "quantity_overflow",
            format!("the quantity would exceed {}", crate::domain::MAX_QUANTITY),
        ),
        ApiError::StockSplit { buckets } => crate::domain::batch::stock_split_refusal(buckets),
        other => {
            return Err(StoreError::Unavailable(
                format!("a batch record could not be applied now: {other}").into(),
            ));
        }
    })
}
