//! Use cases of the items API, over the [`ItemStore`] port. HTTP-free so they
//! can be exercised directly (and reused by the batch workers).

use crate::clock;
use crate::domain::event::{Event, crosses_low_stock};
use crate::domain::{
    Adjustment, ETAG_FIELDS, Fields, Item, ItemFields, Movement, MovementContext, NewItem, Sku,
    StockCheck, TenantId, apply_delta,
};
use crate::error::ApiError;
use crate::ports::{EventPublisher, IdempotencyRecord, ItemStore, Page, PageKey, StoreError};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long a stored idempotent response is replayed.
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 3600;
/// Optimistic-concurrency attempts before answering 409 `concurrent_update`.
const MAX_ATTEMPTS: u32 = 12;

/// An `If-Match` precondition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Tags(Vec<String>),
}

impl IfMatch {
    /// Strong comparison, as RFC 9110 requires for If-Match: weak tags never match.
    pub fn matches(&self, etag: &str) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Tags(tags) => tags.iter().any(|t| t == etag),
        }
    }
}

/// Result of `POST /v1/items/{sku}/adjustments`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdjustmentResult {
    pub sku: String,
    /// Quantity after the adjustment.
    pub quantity: i64,
    pub movement_id: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AdjustOutcome {
    Applied(AdjustmentResult),
    /// The same `Idempotency-Key` and request were seen before: the stored response.
    Replayed {
        status: u16,
        body: String,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Replaced {
    Changed(Item),
    Unchanged(Item),
}

/// An `Idempotency-Key` with the digest of the request it came with.
#[derive(Clone, Debug)]
pub struct IdempotencyRequest {
    pub key: String,
    pub request_hash: String,
}

#[derive(Clone)]
pub struct ItemsService {
    store: Arc<dyn ItemStore>,
    events: Arc<dyn EventPublisher>,
}

impl ItemsService {
    pub fn new(store: Arc<dyn ItemStore>, events: Arc<dyn EventPublisher>) -> Self {
        Self { store, events }
    }

    pub async fn create(
        &self,
        tenant: &TenantId,
        new: NewItem,
        ctx: &MovementContext,
    ) -> Result<Item, ApiError> {
        let now = clock::now_rfc3339();
        let item = Item::new(new, &now);
        // Opening stock is a movement too, so the ledger always sums to the quantity.
        let opening = (item.quantity > 0).then(|| {
            Movement::record(
                &item.sku,
                item.quantity,
                item.quantity,
                "initial_stock",
                None,
                ctx,
                &now,
            )
        });
        match self
            .store
            .create_item(tenant, &item, opening.as_ref())
            .await
        {
            Ok(()) => Ok(item),
            Err(StoreError::AlreadyExists) => Err(ApiError::SkuExists),
            Err(e) => Err(e.into()),
        }
    }

    /// The item, whole or with `fields` (and what its entity tag is made
    /// of, so `Item::etag` holds either way).
    pub async fn get(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        fields: Option<&Fields<Item>>,
    ) -> Result<Item, ApiError> {
        let read = fields.map(|f| f.and(ETAG_FIELDS));
        self.store
            .get_item(tenant, sku, read.as_ref())
            .await?
            .ok_or(ApiError::ItemNotFound)
    }

    pub async fn replace(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        fields: ItemFields,
        if_match: Option<&IfMatch>,
    ) -> Result<Replaced, ApiError> {
        for attempt in 0..MAX_ATTEMPTS {
            let current = self.get(tenant, sku, None).await?;
            if let Some(cond) = if_match
                && !cond.matches(&current.etag())
            {
                return Err(ApiError::PreconditionFailed);
            }
            let Some(next) = current.replaced(fields.clone(), &clock::now_rfc3339()) else {
                return Ok(Replaced::Unchanged(current));
            };
            match self
                .store
                .replace_item(tenant, &next, current.version)
                .await
            {
                Ok(()) => return Ok(Replaced::Changed(next)),
                // With an explicit If-Match the client's version is gone: 412.
                Err(StoreError::ConditionFailed) if if_match.is_some() => {
                    return Err(ApiError::PreconditionFailed);
                }
                Err(StoreError::ConditionFailed) => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    pub async fn delete(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        if_match: Option<&IfMatch>,
        ctx: &MovementContext,
    ) -> Result<(), ApiError> {
        for attempt in 0..MAX_ATTEMPTS {
            let current = self.get(tenant, sku, None).await?;
            if let Some(cond) = if_match
                && !cond.matches(&current.etag())
            {
                return Err(ApiError::PreconditionFailed);
            }
            let closing = (current.quantity > 0).then(|| {
                Movement::record(
                    &current.sku,
                    -current.quantity,
                    0,
                    "item_deleted",
                    None,
                    ctx,
                    &clock::now_rfc3339(),
                )
            });
            match self
                .store
                .delete_item(tenant, sku, current.version, closing.as_ref())
                .await
            {
                Ok(()) => {
                    self.events
                        .publish_or_log(&[Event::item_deleted(
                            tenant.as_str(),
                            sku.as_str(),
                            &clock::now_rfc3339(),
                            &ctx.request_id,
                            None,
                        )])
                        .await;
                    return Ok(());
                }
                Err(StoreError::ConditionFailed) if if_match.is_some() => {
                    return Err(ApiError::PreconditionFailed);
                }
                Err(StoreError::ConditionFailed) => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    pub async fn list(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Item>>,
    ) -> Result<Page<Item>, ApiError> {
        Ok(self.store.list_items(tenant, limit, start, fields).await?)
    }

    /// Newest first. A sku with neither ledger nor item is not found (a
    /// deleted item keeps its ledger).
    pub async fn movements(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Movement>>,
    ) -> Result<Page<Movement>, ApiError> {
        let first_page = start.is_none();
        let page = self
            .store
            .list_movements(tenant, sku, limit, start, fields)
            .await?;
        if first_page && page.items.is_empty() {
            self.get(tenant, sku, Some(&Fields::identifier())).await?;
        }
        Ok(page)
    }

    /// Applies a stock adjustment with optimistic concurrency: read, check the
    /// stock rule, write conditioned on the version read (retried on a lost
    /// race). The movement and the idempotent response are written in the
    /// same transaction as the quantity, so none exists without the others.
    pub async fn adjust(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        adjustment: &Adjustment,
        ctx: &MovementContext,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<AdjustOutcome, ApiError> {
        if let Some(idem) = idempotency
            && let Some(outcome) = self.replay(tenant, idem).await?
        {
            return Ok(outcome);
        }
        for attempt in 0..MAX_ATTEMPTS {
            let current = self.get(tenant, sku, None).await?;
            let quantity = match apply_delta(current.quantity, adjustment.delta) {
                StockCheck::Ok(q) => q,
                StockCheck::Insufficient { available } => {
                    return Err(ApiError::InsufficientStock {
                        available,
                        delta: adjustment.delta,
                    });
                }
                StockCheck::Overflow => return Err(ApiError::QuantityOverflow),
            };
            let now = clock::now();
            let now_s = clock::format(now);
            let movement = Movement::record(
                &current.sku,
                adjustment.delta,
                quantity,
                &adjustment.reason,
                adjustment.reference.clone(),
                ctx,
                &now_s,
            );
            let result = AdjustmentResult {
                sku: current.sku.clone(),
                quantity,
                movement_id: movement.movement_id.clone(),
            };
            let record = idempotency.map(|idem| IdempotencyRecord {
                key: idem.key.clone(),
                request_hash: idem.request_hash.clone(),
                status: 200,
                body: serde_json::to_string(&result).unwrap_or_default(),
                created_at: now_s.clone(),
                expires_at: now.unix_timestamp() + IDEMPOTENCY_TTL_SECONDS,
            });
            let next = Item {
                quantity,
                version: current.version + 1,
                updated_at: now_s,
                ..current.clone()
            };
            match self
                .store
                .record_adjustment(tenant, &next, current.version, &movement, record.as_ref())
                .await
            {
                Ok(()) => {
                    // `current` is what the conditional write replaced, so
                    // of racing writes only the one that crossed announces.
                    if crosses_low_stock(Some(&current), &next) {
                        self.events
                            .publish_or_log(&[Event::low_stock(
                                tenant.as_str(),
                                &next,
                                &ctx.request_id,
                                None,
                            )])
                            .await;
                    }
                    return Ok(AdjustOutcome::Applied(result));
                }
                Err(StoreError::ConditionFailed) => backoff(attempt).await,
                // A concurrent request with the same key won the race.
                Err(StoreError::IdempotencyKeyTaken) => {
                    if let Some(idem) = idempotency
                        && let Some(outcome) = self.replay(tenant, idem).await?
                    {
                        return Ok(outcome);
                    }
                    backoff(attempt).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    async fn replay(
        &self,
        tenant: &TenantId,
        idem: &IdempotencyRequest,
    ) -> Result<Option<AdjustOutcome>, ApiError> {
        match self.store.get_idempotency(tenant, &idem.key).await? {
            None => Ok(None),
            Some(rec) if rec.request_hash == idem.request_hash => {
                Ok(Some(AdjustOutcome::Replayed {
                    status: rec.status,
                    body: rec.body,
                }))
            }
            Some(_) => Err(ApiError::IdempotencyKeyReused),
        }
    }
}

/// Jittered exponential backoff between optimistic-concurrency attempts.
async fn backoff(attempt: u32) {
    let cap_ms = (4u64 << attempt.min(5)).min(100);
    let ms = rand::rng().random_range(1..=cap_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
