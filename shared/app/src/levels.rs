//! A level as it stands now: the stored level less the holds that expired
//! and were not yet swept (they stop counting at their expiry, when read;
//! DynamoDB's TTL deletes late, by hours). Every write of a level sweeps
//! such holds for good, a few at a time, in its own transaction.

use crate::domain::level::Level;
use crate::domain::location::LocationId;
use crate::domain::reservation::{EXPIRE_REASON, ReservationId, ReservationStatus};
use crate::domain::{Fields, Movement, MovementContext, Sku, TenantId};
use crate::error::ApiError;
use crate::ports::{
    HoldWrite, IdempotencyRecord, ItemStore, LevelStore, LevelWrite, LocationStore,
    ReservationStore, StoreError, StoredLevel,
};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

/// Expired holds one write ends for good: each is three actions (its
/// reservation, its active-hold record, its movement), and a transfer's
/// transaction sweeps at both its levels (100 actions at most).
pub const SWEEP_PER_WRITE: usize = 12;

/// A level read at `now_ms`.
#[derive(Clone, Debug)]
pub struct LevelNow {
    sku: Sku,
    pub stored: StoredLevel,
    /// What counts now: expired holds no longer reserve anything.
    pub level: Level,
    /// Expired holds stored as active: (id, units), oldest first.
    expired: Vec<(crate::domain::reservation::ReservationId, i64)>,
    /// Expiry of the first hold that still counts.
    next_expiry: Option<u64>,
}

/// What a write of the level stores besides the level itself.
pub struct SweptWrite {
    /// The level to store: `after` plus the expired units not swept yet.
    pub stored: Level,
    pub holds_check_at: Option<u64>,
    pub ended: Vec<HoldWrite>,
    /// A `reservation_expired` movement per hold ended.
    pub movements: Vec<Movement>,
}

impl LevelNow {
    pub async fn read(
        levels: &dyn LevelStore,
        holds: &dyn ReservationStore,
        tenant: &TenantId,
        sku: &Sku,
        location: &LocationId,
        now_ms: u64,
    ) -> Result<Self, StoreError> {
        let stored = levels.level(tenant, sku, location).await?;
        Self::of(stored, holds, tenant, sku, now_ms).await
    }

    /// A split sku's bucket that is not open yet: empty, nothing held.
    pub fn empty_bucket(sku: &Sku, bucket: u16) -> Self {
        Self {
            sku: sku.clone(),
            stored: StoredLevel::empty_bucket(bucket),
            level: Level::default(),
            expired: Vec::new(),
            next_expiry: None,
        }
    }

    /// The level a hold is in: its bucket's, or its location's.
    pub async fn of_hold(
        levels: &dyn LevelStore,
        holds: &dyn ReservationStore,
        tenant: &TenantId,
        id: &ReservationId,
        location: &LocationId,
        now_ms: u64,
    ) -> Result<Self, StoreError> {
        let stored = match id.bucket() {
            Some(b) => levels.bucket_level(tenant, id.sku(), b).await?,
            None => levels.level(tenant, id.sku(), location).await?,
        };
        Self::of(stored, holds, tenant, id.sku(), now_ms).await
    }

    /// A level already read (`stored`) as it stands at `now_ms`: its
    /// holds are read only when one of them may have expired.
    pub async fn of(
        stored: StoredLevel,
        holds: &dyn ReservationStore,
        tenant: &TenantId,
        sku: &Sku,
        now_ms: u64,
    ) -> Result<Self, StoreError> {
        let location = &stored.location;
        let due = stored.holds_check_at.is_some_and(|at| at <= now_ms);
        if !due {
            return Ok(Self {
                sku: sku.clone(),
                level: stored.level.clone(),
                next_expiry: stored.holds_check_at,
                stored,
                expired: Vec::new(),
            });
        }
        let mut active = holds
            .active_holds(tenant, sku, stored.bucket, Some(location))
            .await?;
        active.sort_by(|a, b| a.id.cmp(&b.id));
        let (expired, live): (Vec<_>, Vec<_>) = active
            .into_iter()
            .partition(|r| !ReservationStatus::Active.holds(r.expires_at_ms, now_ms));
        // What counts is what the live holds hold: a hold whose record
        // DynamoDB's TTL removed before any sweep is not left counting.
        let live_units: i64 = live.iter().map(|r| r.quantity).sum();
        Ok(Self {
            sku: sku.clone(),
            level: Level {
                reserved: live_units,
                ..stored.level.clone()
            },
            next_expiry: live.iter().map(|r| r.expires_at_ms).min(),
            expired: expired.into_iter().map(|r| (r.id, r.quantity)).collect(),
            stored,
        })
    }

    /// Takes the hold `id` out of the expired ones to sweep (its caller
    /// ends it itself); whether it was one.
    pub fn forget_expired(&mut self, id: &crate::domain::reservation::ReservationId) -> bool {
        let before = self.expired.len();
        self.expired.retain(|(e, _)| e != id);
        self.expired.len() != before
    }

    /// The level write of `after` with its own movements and holds (`own`),
    /// sweeping expired holds along (see [`LevelNow::write`]).
    pub fn level_write<'a>(
        &'a self,
        after: &Level,
        new_expiry: Option<u64>,
        (movements, holds): (Vec<Movement>, Vec<HoldWrite>),
        idempotency: Option<&'a IdempotencyRecord>,
        ctx: &'a MovementContext,
        at: &'a str,
    ) -> LevelWrite<'a> {
        let swept = self.write(after, new_expiry, ctx, at);
        LevelWrite {
            before: &self.stored,
            after: swept.stored,
            holds_check_at: swept.holds_check_at,
            movements: [movements, swept.movements].concat(),
            holds: [holds, swept.ended].concat(),
            idempotency,
            request_id: &ctx.request_id,
            at,
        }
    }

    /// The level to store for `after` without sweeping (an atomic batch's
    /// one transaction has no room for it): the expired units still count
    /// as stored, and the level is due for a sweep at its next write.
    pub fn unswept(&self, after: &Level, new_expiry: Option<u64>) -> (Level, Option<u64>) {
        let expired: i64 = self.expired.iter().map(|(_, q)| q).sum();
        let due = (!self.expired.is_empty()).then_some(0);
        let holds_check_at = [self.next_expiry, new_expiry, due]
            .into_iter()
            .flatten()
            .min();
        (
            Level {
                reserved: after.reserved + expired,
                ..after.clone()
            },
            holds_check_at,
        )
    }

    /// The write of `after` (derived from [`LevelNow::level`]), sweeping up
    /// to [`SWEEP_PER_WRITE`] expired holds, each with its movement; made
    /// by `ctx` at `ended_at`; `new_expiry` is that of a hold the write adds.
    pub fn write(
        &self,
        after: &Level,
        new_expiry: Option<u64>,
        ctx: &MovementContext,
        ended_at: &str,
    ) -> SweptWrite {
        let (swept, kept) = self
            .expired
            .split_at(self.expired.len().min(SWEEP_PER_WRITE));
        let unswept: i64 = kept.iter().map(|(_, q)| q).sum();
        // A kept expired hold is due for a sweep at once: it checks again.
        let kept_due = (!kept.is_empty()).then_some(0);
        let holds_check_at = [self.next_expiry, new_expiry, kept_due]
            .into_iter()
            .flatten()
            .min();
        SweptWrite {
            stored: Level {
                reserved: after.reserved + unswept,
                ..after.clone()
            },
            holds_check_at,
            ended: swept
                .iter()
                .map(|(id, _)| HoldWrite::End {
                    id: id.clone(),
                    status: ReservationStatus::Expired,
                    ended_at: ended_at.to_owned(),
                })
                .collect(),
            movements: swept
                .iter()
                .map(|(id, units)| {
                    hold_movement(
                        &self.sku,
                        &self.stored.location,
                        (0, after.on_hand),
                        (-units, after.reserved),
                        (EXPIRE_REASON, id),
                        ctx,
                        ended_at,
                    )
                    .in_bucket(self.stored.bucket)
                })
                .collect(),
        }
    }
}

/// The movement of a hold `id` at `location`: on hand (delta, after),
/// held (delta, after), why.
pub fn hold_movement(
    sku: &Sku,
    location: &LocationId,
    (delta, on_hand): (i64, i64),
    (reserved_delta, reserved): (i64, i64),
    (reason, id): (&str, &ReservationId),
    ctx: &MovementContext,
    at: &str,
) -> Movement {
    Movement::record(
        sku.as_str(),
        delta,
        on_hand,
        reason,
        Some(id.as_str().to_owned()),
        ctx,
        at,
    )
    .at(location)
    .holding(reserved_delta, reserved)
}

/// The stores of levels per location and of the reservations holding them.
#[derive(Clone)]
pub struct LevelStores {
    pub locations: Arc<dyn LocationStore>,
    pub levels: Arc<dyn LevelStore>,
    pub holds: Arc<dyn ReservationStore>,
}

impl LevelStores {
    /// 404 `item_not_found` or `location_not_found` unless both exist.
    pub(crate) async fn item_and_location(
        &self,
        items: &dyn ItemStore,
        tenant: &TenantId,
        sku: &Sku,
        locations: &[&LocationId],
    ) -> Result<(), ApiError> {
        items
            .get_item(tenant, sku, Some(&Fields::identifier()))
            .await?
            .ok_or(ApiError::ItemNotFound)?;
        for location in locations.iter().filter(|l| !l.is_default()) {
            self.locations
                .get_location(tenant, location, Some(&Fields::identifier()))
                .await?
                .ok_or(ApiError::LocationNotFound)?;
        }
        Ok(())
    }
}

/// Jittered exponential backoff between optimistic-concurrency attempts.
pub(crate) async fn backoff(attempt: u32) {
    let cap_ms = (4u64 << attempt.min(5)).min(100);
    let ms = rand::rng().random_range(1..=cap_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reservation::ReservationId;

    fn expired(n: usize) -> Vec<(ReservationId, i64)> {
        let sku = crate::domain::Sku::parse("S").unwrap();
        (0..n).map(|_| (ReservationId::generate(&sku), 2)).collect()
    }

    fn now(reserved: i64, expired: Vec<(ReservationId, i64)>, next: Option<u64>) -> LevelNow {
        let units: i64 = expired.iter().map(|(_, q)| q).sum();
        let stored = StoredLevel {
            level: Level {
                on_hand: 100,
                reserved,
                counted_at: None,
            },
            ..StoredLevel::empty(LocationId::default_location())
        };
        LevelNow {
            sku: crate::domain::Sku::parse("S").unwrap(),
            level: stored.level.as_of(units),
            stored,
            expired,
            next_expiry: next,
        }
    }

    #[test]
    fn a_write_sweeps_a_few_expired_holds_and_keeps_counting_the_rest_as_stored() {
        // 30 expired holds of 2 units and 10 live units.
        let level = now(70, expired(30), Some(9_000));
        assert_eq!(level.level.reserved, 10);
        let after = level.level.reserve(5).unwrap();
        let write = level.write(&after, Some(5_000), &MovementContext::default(), "t");
        assert_eq!(write.ended.len(), SWEEP_PER_WRITE);
        // Each hold ended has its movement: held units down, on hand alike.
        assert_eq!(write.movements.len(), SWEEP_PER_WRITE);
        assert!(write.movements.iter().all(|m| (
            m.delta,
            m.reserved_delta,
            m.reserved_after,
            m.reason.as_str()
        ) == (0, -2, Some(15), EXPIRE_REASON)));
        // Stored: what counts plus the expired holds not swept yet, which
        // are due again at once.
        assert_eq!(
            write.stored.reserved,
            15 + (30 - SWEEP_PER_WRITE as i64) * 2
        );
        assert_eq!(write.holds_check_at, Some(0));
        // Few enough: all swept, and the next check is the first live expiry.
        let level = now(14, expired(2), Some(9_000));
        let write = level.write(
            &level.level.clone(),
            Some(12_000),
            &MovementContext::default(),
            "t",
        );
        assert_eq!((write.ended.len(), write.stored.reserved), (2, 10));
        assert_eq!(write.holds_check_at, Some(9_000));
        let idle = now(0, vec![], None);
        assert_eq!(
            idle.write(&idle.level.clone(), None, &MovementContext::default(), "t")
                .holds_check_at,
            None
        );
    }
}
