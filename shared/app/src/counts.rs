//! Physical counts (Square's rule): a count sets a level's on hand as of its
//! `occurred_at`. Changes that occurred after it and were applied before it
//! arrived stay applied on top of it; a change that occurred before it and
//! arrives after it is recorded and moves nothing (the count includes it).

use crate::clock;
use crate::domain::count::{COUNT_REASON, NewCount};
use crate::domain::level::{CLOCK_SKEW_MS, Counted, LevelError, OccurredAt};
use crate::domain::{Movement, MovementContext, MovementId, TenantId};
use crate::error::ApiError;
use crate::items::{IdempotencyRequest, LevelStores, backoff, stored_response};
use crate::levels::LevelNow;
use crate::ports::{ItemStore, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const MAX_ATTEMPTS: u32 = 12;

/// Result of `POST /v1/counts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CountResult {
    pub sku: String,
    #[schema(example = "default")]
    pub location: String,
    /// On hand at the location after the count.
    #[schema(minimum = 0)]
    pub on_hand: i64,
    /// `occurred_at` of the count that now sets the level (this one, or a later
    /// one already recorded).
    pub counted_at: String,
    /// False when a later count was already recorded: this one is in the
    /// ledger and moved nothing.
    pub applied: bool,
    /// How far on hand moved.
    pub delta: i64,
    pub movement_id: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CountOutcome {
    Recorded(CountResult),
    /// The same `Idempotency-Key` and request were seen before: the stored response.
    Replayed {
        status: u16,
        body: String,
    },
}

#[derive(Clone)]
pub struct CountsService {
    items: Arc<dyn ItemStore>,
    stores: LevelStores,
}

impl CountsService {
    pub fn new(items: Arc<dyn ItemStore>, stores: LevelStores) -> Self {
        Self { items, stores }
    }

    pub async fn record(
        &self,
        tenant: &TenantId,
        count: &NewCount,
        ctx: &MovementContext,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<CountOutcome, ApiError> {
        if let Some(outcome) = self.replay(tenant, idempotency).await? {
            return Ok(outcome);
        }
        for attempt in 0..MAX_ATTEMPTS {
            self.stores
                .item_and_location(self.items.as_ref(), tenant, &count.sku, &[&count.location])
                .await?;
            let now = clock::now();
            let (now_s, now_ms) = (clock::format(now), clock::unix_ms(now));
            let before = LevelNow::read(
                self.stores.levels.as_ref(),
                self.stores.holds.as_ref(),
                tenant,
                &count.sku,
                &count.location,
                now_ms,
            )
            .await?;
            // Units of a split sku are in its buckets, which are not
            // counted: a count sets the sku once merged back.
            if let Some(buckets) = before.stored.split {
                return Err(ApiError::StockSplit { buckets });
            }
            let applied_after = applied_after(self.items.as_ref(), tenant, count).await?;
            let (after, delta, applied) =
                match before
                    .level
                    .count(count.on_hand, &count.occurred_at, applied_after)
                {
                    Ok(Counted::Set { level, delta }) => (level, delta, true),
                    Ok(Counted::Superseded { .. }) => (before.level.clone(), 0, false),
                    Err(LevelError::CountBelowReserved { reserved }) => {
                        return Err(ApiError::CountBelowReserved { reserved });
                    }
                    Err(LevelError::Overflow | LevelError::InsufficientAvailable { .. }) => {
                        return Err(ApiError::QuantityOverflow);
                    }
                };
            let movement = count_movement(count, (delta, after.on_hand, applied), ctx, &now_s);
            let result = CountResult {
                sku: count.sku.to_string(),
                location: count.location.as_str().to_owned(),
                on_hand: after.on_hand,
                counted_at: after
                    .counted_at
                    .as_ref()
                    .map_or_else(|| count.occurred_at.to_string(), ToString::to_string),
                applied,
                delta,
                movement_id: movement.movement_id.clone(),
            };
            let record = idempotency.map(|i| i.response(200, &result, now));
            let write = before.level_write(
                &after,
                None,
                (vec![movement], Vec::new()),
                record.as_ref(),
                ctx,
                &now_s,
            );
            match self.stores.levels.record_level_change(tenant, &write).await {
                Ok(()) => return Ok(CountOutcome::Recorded(result)),
                Err(StoreError::ConditionFailed) => {}
                Err(StoreError::IdempotencyKeyTaken) => {
                    if let Some(outcome) = self.replay(tenant, idempotency).await? {
                        return Ok(outcome);
                    }
                }
                Err(e) => return Err(e.into()),
            }
            backoff(attempt).await;
        }
        Err(ApiError::ConcurrentUpdate)
    }

    async fn replay(
        &self,
        tenant: &TenantId,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<Option<CountOutcome>, ApiError> {
        Ok(stored_response(self.items.as_ref(), tenant, idempotency)
            .await?
            .map(|(status, body)| CountOutcome::Replayed { status, body }))
    }
}

/// A count's movement: (delta, on hand after, whether it set the level;
/// a superseded count is recorded and moves nothing).
pub(crate) fn count_movement(
    count: &NewCount,
    (delta, on_hand, applies): (i64, i64, bool),
    ctx: &MovementContext,
    at: &str,
) -> Movement {
    let mut movement = Movement::record(
        count.sku.as_str(),
        delta,
        on_hand,
        COUNT_REASON,
        count.reference.clone(),
        ctx,
        at,
    )
    .at(&count.location)
    .occurred(Some(&count.occurred_at));
    movement.applies = applies;
    movement
}

/// The deltas applied to the count's level that occurred after it, read
/// from the ledger, newest first. A change is recorded at most
/// [`CLOCK_SKEW_MS`] before it says it occurred, so the read stops at
/// movements minted that long before the count's time.
pub(crate) async fn applied_after(
    items: &dyn ItemStore,
    tenant: &TenantId,
    count: &NewCount,
) -> Result<i64, ApiError> {
    let horizon = count
        .occurred_at
        .unix_ms()
        .saturating_sub(u64::try_from(CLOCK_SKEW_MS).unwrap_or(0));
    let location = (!count.location.is_default()).then(|| count.location.as_str());
    // A sku once split keeps its buckets' movements in their partitions.
    let partitions = items
        .get_item(tenant, &count.sku, None)
        .await?
        .map_or(0, |item| item.bucket_partitions);
    let mut sum = 0i64;
    let mut start = None;
    loop {
        let page = items
            .list_movements(tenant, &count.sku, partitions, 100, start, None)
            .await?;
        for m in &page.items {
            let minted = MovementId::minted_ms(&m.movement_id).unwrap_or(0);
            if minted < horizon {
                return Ok(sum);
            }
            let occurred = m
                .occurred_at
                .clone()
                .map_or_else(|| OccurredAt::from_unix_ms(minted), OccurredAt::from_stored);
            if m.applies && m.location.as_deref() == location && occurred > count.occurred_at {
                sum = sum.saturating_add(m.delta);
            }
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(sum),
        }
    }
}
