//! Transfers: units of one sku move from one location to another in one
//! transaction (both levels and both movements), or not at all.

use crate::clock;
use crate::domain::level::{LevelError, transfer};
use crate::domain::transfer::{NewTransfer, TRANSFER_REASON};
use crate::domain::{Movement, MovementContext, TenantId};
use crate::error::ApiError;
use crate::items::{IdempotencyRequest, LevelStores, backoff, stored_response};
use crate::levels::LevelNow;
use crate::ports::{ItemStore, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const MAX_ATTEMPTS: u32 = 12;

/// One side of a transfer after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransferSide {
    #[schema(example = "paris-1")]
    pub location: String,
    /// On hand at the location after the transfer.
    #[schema(minimum = 0)]
    pub on_hand: i64,
    /// The ledger movement at this location.
    pub movement_id: String,
}

/// Result of `POST /v1/transfers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransferResult {
    #[schema(example = "tr_01JD8X3B6Q5W3Z2Y1X0V9T8S7R")]
    pub transfer_id: String,
    pub sku: String,
    #[schema(minimum = 1)]
    pub quantity: i64,
    pub from: TransferSide,
    pub to: TransferSide,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    Applied(TransferResult),
    /// The same `Idempotency-Key` and request were seen before: the stored response.
    Replayed {
        status: u16,
        body: String,
    },
}

#[derive(Clone)]
pub struct TransfersService {
    items: Arc<dyn ItemStore>,
    stores: LevelStores,
}

impl TransfersService {
    pub fn new(items: Arc<dyn ItemStore>, stores: LevelStores) -> Self {
        Self { items, stores }
    }

    /// Moves `quantity` available units (not held ones) from `from` to `to`.
    pub async fn transfer(
        &self,
        tenant: &TenantId,
        new: &NewTransfer,
        ctx: &MovementContext,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<TransferOutcome, ApiError> {
        if let Some(outcome) = self.replay(tenant, idempotency).await? {
            return Ok(outcome);
        }
        for attempt in 0..MAX_ATTEMPTS {
            self.stores
                .item_and_location(self.items.as_ref(), tenant, &new.sku, &[&new.from, &new.to])
                .await?;
            let now = clock::now();
            let (now_s, now_ms) = (clock::format(now), clock::unix_ms(now));
            let read = |location| {
                LevelNow::read(
                    self.stores.levels.as_ref(),
                    self.stores.holds.as_ref(),
                    tenant,
                    &new.sku,
                    location,
                    now_ms,
                )
            };
            let (from, to) = tokio::try_join!(read(&new.from), read(&new.to))?;
            // A split sku's default-location units are in its buckets.
            if let Some(buckets) = from.stored.split.or(to.stored.split) {
                return Err(ApiError::StockSplit { buckets });
            }
            let (from_after, to_after) = match transfer(&from.level, &to.level, new.quantity) {
                Ok(levels) => levels,
                Err(LevelError::InsufficientAvailable { available }) => {
                    return Err(ApiError::InsufficientStock {
                        available,
                        delta: -new.quantity,
                    });
                }
                Err(LevelError::Overflow | LevelError::CountBelowReserved { .. }) => {
                    return Err(ApiError::QuantityOverflow);
                }
            };
            let (transfer_id, out, into) =
                transfer_movements(new, (&from_after, &to_after), ctx, &now_s);
            let result = TransferResult {
                transfer_id,
                sku: new.sku.to_string(),
                quantity: new.quantity,
                from: TransferSide {
                    location: new.from.as_str().to_owned(),
                    on_hand: from_after.on_hand,
                    movement_id: out.movement_id.clone(),
                },
                to: TransferSide {
                    location: new.to.as_str().to_owned(),
                    on_hand: to_after.on_hand,
                    movement_id: into.movement_id.clone(),
                },
            };
            let record = idempotency.map(|i| i.response(200, &result, now));
            // The idempotency record goes with one side.
            let from_write = from.level_write(
                &from_after,
                None,
                (vec![out], Vec::new()),
                record.as_ref(),
                ctx,
                &now_s,
            );
            let to_write =
                to.level_write(&to_after, None, (vec![into], Vec::new()), None, ctx, &now_s);
            match self
                .stores
                .levels
                .record_transfer(tenant, &from_write, &to_write)
                .await
            {
                Ok(()) => return Ok(TransferOutcome::Applied(result)),
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
    ) -> Result<Option<TransferOutcome>, ApiError> {
        Ok(stored_response(self.items.as_ref(), tenant, idempotency)
            .await?
            .map(|(status, body)| TransferOutcome::Replayed { status, body }))
    }
}

/// A transfer's id and its two movements (out of `from`, into `to`), each
/// with the level's on hand after it; the reference is the client's, else
/// the transfer's id.
pub(crate) fn transfer_movements(
    new: &NewTransfer,
    (from_after, to_after): (&crate::domain::level::Level, &crate::domain::level::Level),
    ctx: &MovementContext,
    at: &str,
) -> (String, Movement, Movement) {
    let transfer_id = format!("tr_{}", ulid::Ulid::new());
    let reference = new.reference.clone().or_else(|| Some(transfer_id.clone()));
    let movement = |delta: i64, after: i64, location| {
        Movement::record(
            new.sku.as_str(),
            delta,
            after,
            TRANSFER_REASON,
            reference.clone(),
            ctx,
            at,
        )
        .at(location)
    };
    let out = movement(-new.quantity, from_after.on_hand, &new.from);
    let into = movement(new.quantity, to_after.on_hand, &new.to);
    (transfer_id, out, into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Adjustment, NewItem, Sku};
    use crate::items::ItemsService;
    use crate::locations::LocationsService;
    use crate::memory::MemoryItemStore;
    use serde_json::json;

    #[tokio::test]
    async fn a_transfer_moves_available_units_between_two_levels_with_two_movements() {
        let store = Arc::new(MemoryItemStore::default());
        let stores = LevelStores {
            locations: store.clone(),
            levels: store.clone(),
            holds: store.clone(),
        };
        let items = ItemsService::new(store.clone()).with_locations(stores.clone());
        let transfers = TransfersService::new(store.clone(), stores);
        let tenant = TenantId::parse("acme").unwrap();
        let ctx = MovementContext::default();
        LocationsService::new(store.clone())
            .create(
                &tenant,
                crate::domain::location::NewLocation::from_json(
                    &json!({"id": "paris-1", "name": "Paris", "kind": "store"}),
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let new = NewItem::from_json(&json!({"sku": "S", "name": "n", "quantity": 10})).unwrap();
        items.create(&tenant, new, &ctx).await.unwrap();
        let move_ = |q: i64, from: &str, to: &str| {
            NewTransfer::from_json(&json!({"sku": "S", "from": from, "to": to, "quantity": q}))
                .unwrap()
        };
        let TransferOutcome::Applied(done) = transfers
            .transfer(&tenant, &move_(4, "default", "paris-1"), &ctx, None)
            .await
            .unwrap()
        else {
            panic!("applied")
        };
        assert_eq!((done.from.on_hand, done.to.on_hand), (6, 4));
        let refused = transfers
            .transfer(&tenant, &move_(5, "paris-1", "default"), &ctx, None)
            .await;
        assert!(
            matches!(
                refused,
                Err(ApiError::InsufficientStock { available: 4, .. })
            ),
            "{refused:?}"
        );
        let levels = items
            .levels(&tenant, &Sku::parse("S").unwrap())
            .await
            .unwrap();
        let on_hand: Vec<i64> = levels.levels.iter().map(|l| l.on_hand).collect();
        assert_eq!(on_hand, [6, 4]);
        let sold =
            Adjustment::from_json(&json!({"delta": -4, "reason": "sale", "location": "paris-1"}))
                .unwrap();
        items
            .adjust(&tenant, &Sku::parse("S").unwrap(), &sold, &ctx, None)
            .await
            .unwrap();
        let movements = items
            .movements(&tenant, &Sku::parse("S").unwrap(), 100, None, None)
            .await
            .unwrap()
            .items;
        let transferred: Vec<(Option<&str>, i64)> = movements
            .iter()
            .filter(|m| m.reason == TRANSFER_REASON)
            .map(|m| (m.location.as_deref(), m.delta))
            .collect();
        assert_eq!(transferred.len(), 2);
        assert!(transferred.contains(&(None, -4)) && transferred.contains(&(Some("paris-1"), 4)));
    }
}
