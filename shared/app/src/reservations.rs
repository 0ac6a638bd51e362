//! Reservations: hold units of a (sku, location) while a cart checks out,
//! then commit (on hand goes down), release, or let them expire. A hold and
//! its level change in one conditional write, so concurrent holds never
//! take more than is available (`Level::reserve`).

use crate::clock;
use crate::domain::location::LocationId;
use crate::domain::reservation::{
    EXPIRE_REASON, Ending, EndingRefused, NewReservation, PLACE_REASON, RELEASE_REASON,
    ReservationId, ReservationStatus, may_end,
};
use crate::domain::{Fields, MovementContext, Sku, TenantId};
use crate::error::ApiError;
use crate::items::{IdempotencyRequest, LevelStores, backoff, stored_response};
use crate::levels::{LevelNow, hold_movement};
use crate::ports::{
    HoldWrite, ItemStore, LevelWrite, Page, PageKey, StoreError, StoredReservation,
};
use crate::stock_split::{self, OrderSource};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Optimistic-concurrency attempts before answering 409 `concurrent_update`.
/// Holds on one hot sku all write its level, so they retry more than
/// adjustments spread over many.
const MAX_ATTEMPTS: u32 = 24;

pub use crate::domain::reservation::COMMIT_REASON;

/// A reservation as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reservation {
    #[schema(example = "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R_SKU-1001")]
    pub id: String,
    pub sku: String,
    #[schema(example = "default")]
    pub location: String,
    #[schema(minimum = 1)]
    pub quantity: i64,
    /// `active` until `expires_at`, then `expired` (even before anything
    /// sweeps it), unless committed or released first.
    pub status: ReservationStatus,
    /// RFC 3339 UTC timestamp: when the hold stops counting.
    pub expires_at: String,
    pub reference: Option<String>,
    pub created_at: String,
    /// When it was committed, released or swept as expired.
    pub ended_at: Option<String>,
}

impl Reservation {
    fn of(r: &StoredReservation, now_ms: u64) -> Self {
        Self {
            id: r.id.as_str().to_owned(),
            sku: r.id.sku().to_string(),
            location: r.location.as_str().to_owned(),
            quantity: r.quantity,
            status: shown_status(r, now_ms),
            expires_at: crate::domain::level::OccurredAt::from_unix_ms(r.expires_at_ms).to_string(),
            reference: r.reference.clone(),
            created_at: r.created_at.clone(),
            ended_at: r.ended_at.clone(),
        }
    }
}

/// An active hold past its expiry shows as expired: it holds nothing.
fn shown_status(r: &StoredReservation, now_ms: u64) -> ReservationStatus {
    match r.status {
        ReservationStatus::Active if !r.status.holds(r.expires_at_ms, now_ms) => {
            ReservationStatus::Expired
        }
        status => status,
    }
}

/// What a reservation call answers.
#[derive(Debug, PartialEq, Eq)]
pub enum ReservationOutcome {
    Done(Reservation),
    /// The same `Idempotency-Key` and request were seen before: the stored response.
    Replayed {
        status: u16,
        body: String,
    },
}

#[derive(Clone)]
pub struct ReservationsService {
    items: Arc<dyn ItemStore>,
    stores: LevelStores,
}

impl ReservationsService {
    pub fn new(items: Arc<dyn ItemStore>, stores: LevelStores) -> Self {
        Self { items, stores }
    }

    /// Holds `new.quantity` units, or answers 409 `insufficient_available`.
    pub async fn reserve(
        &self,
        tenant: &TenantId,
        new: &NewReservation,
        ctx: &MovementContext,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<ReservationOutcome, ApiError> {
        if let Some(outcome) = self.replay(tenant, idempotency).await? {
            return Ok(outcome);
        }
        // A split sku's holds go to its buckets.
        if new.location.is_default()
            && let Some(outcome) = self
                .reserve_split(tenant, new, None, ctx, idempotency)
                .await?
        {
            return Ok(outcome);
        }
        let mut tried_buckets = false;
        for attempt in 0..MAX_ATTEMPTS {
            self.stores
                .item_and_location(self.items.as_ref(), tenant, &new.sku, &[&new.location])
                .await?;
            let now = clock::now();
            let now_ms = clock::unix_ms(now);
            let before = self.level(tenant, &new.sku, &new.location, now_ms).await?;
            let Ok(after) = before.level.reserve(new.quantity) else {
                // Split meanwhile (the routing read is a hint): the units
                // may be in the buckets.
                if let Some(buckets) = before.stored.split
                    && new.location.is_default()
                    && !tried_buckets
                {
                    tried_buckets = true;
                    match self
                        .reserve_split(tenant, new, Some(buckets), ctx, idempotency)
                        .await?
                    {
                        Some(outcome) => return Ok(outcome),
                        None => continue,
                    }
                }
                return Err(ApiError::InsufficientAvailable {
                    available: before.level.available().max(0),
                    requested: new.quantity,
                });
            };
            if let Some(outcome) = self
                .write_hold(
                    tenant,
                    new,
                    (&before, &after),
                    ctx,
                    idempotency,
                    (now, attempt),
                )
                .await?
            {
                return Ok(outcome);
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    /// A hold at the default location of a split sku (`split`: into how
    /// many buckets, when known; else read as a hint), placed in one bucket
    /// (its id names it). None: the sku is not split, or its own level is
    /// where the units are.
    async fn reserve_split(
        &self,
        tenant: &TenantId,
        new: &NewReservation,
        split: Option<u16>,
        ctx: &MovementContext,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<Option<ReservationOutcome>, ApiError> {
        let buckets = match split {
            Some(n) => n,
            None => match self
                .items
                .get_item_hint(
                    tenant,
                    &new.sku,
                    Some(&Fields::identifier().and(&["stock_buckets"])),
                )
                .await?
            {
                None => return Err(ApiError::ItemNotFound),
                Some(item) => match item.stock_buckets {
                    Some(n) => n,
                    None => return Ok(None),
                },
            },
        };
        let order = stock_split::Order {
            tenant,
            sku: &new.sku,
            buckets,
            need: new.quantity,
            delta: -new.quantity,
        };
        for attempt in 0..MAX_ATTEMPTS {
            let now = clock::now();
            let (now_s, now_ms) = (clock::format(now), clock::unix_ms(now));
            let source =
                stock_split::order_source(&self.stores, &order, attempt, ctx, (&now_s, now_ms))
                    .await;
            let before = match source {
                Ok(OrderSource::Own) => return Ok(None),
                Ok(OrderSource::Moved) => continue,
                Ok(OrderSource::Bucket(bucket)) => *bucket,
                Err(ApiError::InsufficientStock { available, .. }) => {
                    return Err(ApiError::InsufficientAvailable {
                        available,
                        requested: new.quantity,
                    });
                }
                Err(e) => return Err(e),
            };
            let Ok(after) = before.level.reserve(new.quantity) else {
                // Short of units: lost a race.
                backoff(attempt).await;
                continue;
            };
            if let Some(outcome) = self
                .write_hold(
                    tenant,
                    new,
                    (&before, &after),
                    ctx,
                    idempotency,
                    (now, attempt),
                )
                .await?
            {
                return Ok(Some(outcome));
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    /// Places hold `new` at `before`'s level (in its bucket, if it is one),
    /// which becomes `after`, with its movement and idempotency record, all
    /// or nothing: the outcome, or None to read again.
    async fn write_hold(
        &self,
        tenant: &TenantId,
        new: &NewReservation,
        (before, after): (&LevelNow, &crate::domain::level::Level),
        ctx: &MovementContext,
        idempotency: Option<&IdempotencyRequest>,
        (now, attempt): (time::OffsetDateTime, u32),
    ) -> Result<Option<ReservationOutcome>, ApiError> {
        let (now_s, now_ms) = (clock::format(now), clock::unix_ms(now));
        let (hold, placed) = place_hold(new, after, (&now_s, now_ms), ctx, before.stored.bucket);
        let expires_at_ms = hold.expires_at_ms;
        let view = Reservation::of(&hold, now_ms);
        let record = idempotency.map(|i| i.response(201, &view, now));
        let write = before.level_write(
            after,
            Some(expires_at_ms),
            (vec![placed], vec![HoldWrite::Create(hold)]),
            record.as_ref(),
            ctx,
            &now_s,
        );
        let written = self.stores.levels.record_level_change(tenant, &write).await;
        self.settle(tenant, idempotency, attempt, written, view)
            .await
    }

    /// Commits (the units leave on hand, with a movement in the ledger) or
    /// releases a hold. Ending it again the same way answers the same.
    pub async fn end(
        &self,
        tenant: &TenantId,
        id: &ReservationId,
        ending: Ending,
        ctx: &MovementContext,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<ReservationOutcome, ApiError> {
        if let Some(outcome) = self.replay(tenant, idempotency).await? {
            return Ok(outcome);
        }
        for attempt in 0..MAX_ATTEMPTS {
            let hold = self
                .stores
                .holds
                .get_reservation(tenant, id)
                .await?
                .ok_or(ApiError::ReservationNotFound)?;
            let now = clock::now();
            let (now_s, now_ms) = (clock::format(now), clock::unix_ms(now));
            match may_end(hold.status, hold.expires_at_ms, now_ms, ending) {
                Ok(true) => {}
                Ok(false) => return Ok(ReservationOutcome::Done(Reservation::of(&hold, now_ms))),
                Err(EndingRefused::Expired) => return Err(ApiError::ReservationExpired),
                Err(EndingRefused::Ended(status)) => {
                    return Err(ApiError::ReservationEnded {
                        status: status.as_str(),
                    });
                }
            }
            // The item was deleted (only once no hold counted): the hold
            // can only have expired. (A split sku's item is not deleted:
            // its buckets' holds leave the item's partition alone.)
            if id.bucket().is_none()
                && self
                    .items
                    .get_item(tenant, id.sku(), Some(&Fields::identifier()))
                    .await?
                    .is_none()
            {
                return match ending {
                    Ending::Release => Ok(ReservationOutcome::Done(Reservation::of(&hold, now_ms))),
                    Ending::Commit => Err(ApiError::ItemNotFound),
                };
            }
            let mut before = self.hold_level(tenant, id, &hold.location, now_ms).await?;
            // Releasing a hold that expired unswept ends it as expired: it
            // stopped counting at its expiry, and `before.level` knows that.
            let expired = before.forget_expired(id);
            let (after, status, reason) = match ending {
                Ending::Release if expired => (
                    before.level.clone(),
                    ReservationStatus::Expired,
                    EXPIRE_REASON,
                ),
                Ending::Release => (
                    before.level.release(hold.quantity),
                    ReservationStatus::Released,
                    RELEASE_REASON,
                ),
                Ending::Commit => (
                    before.level.commit(hold.quantity),
                    ReservationStatus::Committed,
                    COMMIT_REASON,
                ),
            };
            // What left on hand (a commit's units, never more than there was).
            let taken = before.level.on_hand - after.on_hand;
            let ended_movement = hold_movement(
                id.sku(),
                &hold.location,
                (-taken, after.on_hand),
                (-hold.quantity, after.reserved),
                (reason, id),
                ctx,
                &now_s,
            )
            .in_bucket(id.bucket());
            let ended = StoredReservation {
                status,
                ended_at: Some(now_s.clone()),
                ..hold.clone()
            };
            let view = Reservation::of(&ended, now_ms);
            let record = idempotency.map(|i| i.response(200, &view, now));
            let write = end_hold_write(
                &before,
                &after,
                (id, status),
                ended_movement,
                record.as_ref(),
                ctx,
                &now_s,
            );
            let written = self.stores.levels.record_level_change(tenant, &write).await;
            if let Some(outcome) = self
                .settle(tenant, idempotency, attempt, written, view)
                .await?
            {
                return Ok(outcome);
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &ReservationId,
    ) -> Result<Reservation, ApiError> {
        let hold = self
            .stores
            .holds
            .get_reservation(tenant, id)
            .await?
            .ok_or(ApiError::ReservationNotFound)?;
        Ok(Reservation::of(&hold, clock::unix_ms(clock::now())))
    }

    /// A sku's reservations in id order (creation order, to the ms); `status` as shown (an active
    /// hold past its expiry is `expired`).
    pub async fn list(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        status: Option<ReservationStatus>,
        limit: u32,
        start: Option<PageKey>,
    ) -> Result<Page<Reservation>, ApiError> {
        let now_ms = clock::unix_ms(clock::now());
        // Stored status differs from shown only for active holds past
        // expiry: those two filters read both and keep what shows.
        let stored_filter = match status {
            Some(ReservationStatus::Active | ReservationStatus::Expired) | None => None,
            other => other,
        };
        let want = usize::try_from(limit).unwrap_or(usize::MAX);
        // A sku once split keeps its buckets' holds in their partitions.
        let partitions = self
            .items
            .get_item(tenant, sku, None)
            .await?
            .map_or(0, |item| item.bucket_partitions);
        let mut items = Vec::new();
        let mut start = start;
        loop {
            // Never more than the page has room for: no match is skipped.
            let room = u32::try_from(want - items.len()).unwrap_or(limit);
            let page = self
                .stores
                .holds
                .list_reservations(tenant, sku, partitions, stored_filter, room, start)
                .await?;
            for r in &page.items {
                let shown = Reservation::of(r, now_ms);
                if status.is_none_or(|s| s == shown.status) {
                    items.push((r.id.ulid().to_owned(), shown));
                }
            }
            match page.next {
                Some(next) if items.len() < want => start = Some(next),
                next => {
                    // Resume after the last one returned, not after the
                    // last one read.
                    let next = next.and_then(|_| {
                        items
                            .last()
                            .map(|(ulid, _)| PageKey::from([("id".to_owned(), ulid.clone())]))
                    });
                    return Ok(Page {
                        items: items.into_iter().map(|(_, r)| r).collect(),
                        next,
                    });
                }
            }
        }
    }

    /// Ends for good a hold whose expiry passed, when DynamoDB's TTL
    /// removed its active-hold record before any write of its level swept
    /// it: the reservation is stored as expired and its movement recorded,
    /// once (a hold already ended is left alone). A hold whose item was
    /// deleted stays stored as active (it shows as expired).
    pub async fn lapse(
        &self,
        tenant: &TenantId,
        id: &ReservationId,
        ctx: &MovementContext,
    ) -> Result<(), ApiError> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some(hold) = self.stores.holds.get_reservation(tenant, id).await? else {
                return Ok(());
            };
            let now = clock::now();
            let (now_s, now_ms) = (clock::format(now), clock::unix_ms(now));
            if hold.status.holds(hold.expires_at_ms, now_ms)
                || hold.status != ReservationStatus::Active
                || (id.bucket().is_none()
                    && self
                        .items
                        .get_item(tenant, id.sku(), Some(&Fields::identifier()))
                        .await?
                        .is_none())
            {
                return Ok(());
            }
            let mut before = self.hold_level(tenant, id, &hold.location, now_ms).await?;
            before.forget_expired(id);
            let after = before.level.clone();
            let lapsed = hold_movement(
                id.sku(),
                &hold.location,
                (0, after.on_hand),
                (-hold.quantity, after.reserved),
                (EXPIRE_REASON, id),
                ctx,
                &now_s,
            )
            .in_bucket(id.bucket());
            let write = end_hold_write(
                &before,
                &after,
                (id, ReservationStatus::Expired),
                lapsed,
                None,
                ctx,
                &now_s,
            );
            match self.stores.levels.record_level_change(tenant, &write).await {
                Ok(()) => return Ok(()),
                Err(StoreError::ConditionFailed) => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    async fn level(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        location: &LocationId,
        now_ms: u64,
    ) -> Result<LevelNow, ApiError> {
        Ok(LevelNow::read(
            self.stores.levels.as_ref(),
            self.stores.holds.as_ref(),
            tenant,
            sku,
            location,
            now_ms,
        )
        .await?)
    }

    /// The level hold `id` is in: its bucket's, or its location's.
    async fn hold_level(
        &self,
        tenant: &TenantId,
        id: &ReservationId,
        location: &LocationId,
        now_ms: u64,
    ) -> Result<LevelNow, ApiError> {
        Ok(LevelNow::of_hold(
            self.stores.levels.as_ref(),
            self.stores.holds.as_ref(),
            tenant,
            id,
            location,
            now_ms,
        )
        .await?)
    }

    async fn settle(
        &self,
        tenant: &TenantId,
        idempotency: Option<&IdempotencyRequest>,
        attempt: u32,
        written: Result<(), StoreError>,
        view: Reservation,
    ) -> Result<Option<ReservationOutcome>, ApiError> {
        match written {
            Ok(()) => return Ok(Some(ReservationOutcome::Done(view))),
            Err(StoreError::ConditionFailed) => {}
            Err(StoreError::IdempotencyKeyTaken) => {
                if let Some(outcome) = self.replay(tenant, idempotency).await? {
                    return Ok(Some(outcome));
                }
            }
            Err(e) => return Err(e.into()),
        }
        backoff(attempt).await;
        Ok(None)
    }

    async fn replay(
        &self,
        tenant: &TenantId,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<Option<ReservationOutcome>, ApiError> {
        Ok(stored_response(self.items.as_ref(), tenant, idempotency)
            .await?
            .map(|(status, body)| ReservationOutcome::Replayed { status, body }))
    }
}

/// The reservation rules on the in-memory stores: no oversell under
/// concurrency, a hold ends once, commit moves on hand with a movement.
/// The write that ends hold `id` as `status`, with its movement, at
/// `before`'s level going to `after` (expired holds swept along).
fn end_hold_write<'a>(
    before: &'a LevelNow,
    after: &crate::domain::level::Level,
    (id, status): (&ReservationId, ReservationStatus),
    movement: crate::domain::Movement,
    idempotency: Option<&'a crate::ports::IdempotencyRecord>,
    ctx: &'a MovementContext,
    at: &'a str,
) -> LevelWrite<'a> {
    let ended = HoldWrite::End {
        id: id.clone(),
        status,
        ended_at: at.to_owned(),
    };
    before.level_write(
        after,
        None,
        (vec![movement], vec![ended]),
        idempotency,
        ctx,
        at,
    )
}

/// A hold placed now (`at`, `now_ms`) that left the level at `after`: its
/// record, active for `expires_in_seconds`, and its `reservation_placed`
/// movement (the route's and an atomic batch's).
pub(crate) fn place_hold(
    new: &NewReservation,
    after: &crate::domain::level::Level,
    (at, now_ms): (&str, u64),
    ctx: &MovementContext,
    bucket: Option<u16>,
) -> (StoredReservation, crate::domain::Movement) {
    let hold = StoredReservation {
        id: ReservationId::generate_in(&new.sku, bucket),
        location: new.location.clone(),
        quantity: new.quantity,
        status: ReservationStatus::Active,
        expires_at_ms: now_ms.saturating_add(new.expires_in_seconds.unsigned_abs() * 1000),
        reference: new.reference.clone(),
        created_at: at.to_owned(),
        ended_at: None,
        request_id: ctx.request_id.clone(),
    };
    let placed = hold_movement(
        &new.sku,
        &new.location,
        (0, after.on_hand),
        (new.quantity, after.reserved),
        (PLACE_REASON, &hold.id),
        ctx,
        at,
    )
    .in_bucket(bucket);
    (hold, placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NewItem, Sku};
    use crate::items::ItemsService;
    use crate::memory::MemoryItemStore;
    use serde_json::json;

    struct World {
        items: ItemsService,
        reservations: ReservationsService,
        store: Arc<MemoryItemStore>,
        tenant: TenantId,
    }

    fn world() -> World {
        let store = Arc::new(MemoryItemStore::default());
        let stores = LevelStores {
            locations: store.clone(),
            levels: store.clone(),
            holds: store.clone(),
        };
        World {
            items: ItemsService::new(store.clone()).with_locations(stores.clone()),
            reservations: ReservationsService::new(store.clone(), stores),
            store,
            tenant: TenantId::parse("acme").unwrap(),
        }
    }

    fn ctx() -> MovementContext {
        MovementContext {
            request_id: "req-1".into(),
            key_id: None,
            batch_record: None,
        }
    }

    impl World {
        async fn item(&self, sku: &str, quantity: i64) {
            let new = NewItem::from_json(&json!({"sku": sku, "name": "n", "quantity": quantity}))
                .unwrap();
            self.items.create(&self.tenant, new, &ctx()).await.unwrap();
        }

        async fn hold(&self, sku: &str, quantity: i64) -> Result<Reservation, ApiError> {
            let new = NewReservation::from_json(
                &json!({"sku": sku, "quantity": quantity, "expires_in": 600}),
            )
            .unwrap();
            match self
                .reservations
                .reserve(&self.tenant, &new, &ctx(), None)
                .await?
            {
                ReservationOutcome::Done(r) => Ok(r),
                other => panic!("{other:?}"),
            }
        }

        async fn end(&self, id: &str, how: Ending) -> Result<Reservation, ApiError> {
            let id = ReservationId::parse(id).unwrap();
            match self
                .reservations
                .end(&self.tenant, &id, how, &ctx(), None)
                .await?
            {
                ReservationOutcome::Done(r) => Ok(r),
                other => panic!("{other:?}"),
            }
        }

        async fn level(&self, sku: &str) -> (i64, i64, i64) {
            let levels = self
                .items
                .levels(&self.tenant, &Sku::parse(sku).unwrap())
                .await
                .unwrap();
            let l = &levels.levels[0];
            (l.on_hand, l.reserved, l.available)
        }
    }

    #[tokio::test]
    async fn concurrent_holds_succeed_exactly_as_many_times_as_there_are_units() {
        let w = Arc::new(world());
        w.item("S", 5).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let w = w.clone();
            tasks.spawn(async move { w.hold("S", 1).await });
        }
        let mut held = 0;
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(_) => held += 1,
                Err(ApiError::InsufficientAvailable { requested: 1, .. }) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(held, 5);
        assert_eq!(w.level("S").await, (5, 5, 0));
        // A sale may not take held units either.
        let sale =
            crate::domain::Adjustment::from_json(&json!({"delta": -1, "reason": "sale"})).unwrap();
        let refused = w
            .items
            .adjust(&w.tenant, &Sku::parse("S").unwrap(), &sale, &ctx(), None)
            .await;
        assert!(
            matches!(
                refused,
                Err(ApiError::InsufficientStock { available: 0, .. })
            ),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_hold_ends_once_and_a_commit_takes_its_units_off_hand() {
        let w = world();
        w.item("S", 10).await;
        let a = w.hold("S", 3).await.unwrap();
        let b = w.hold("S", 4).await.unwrap();
        assert_eq!(w.level("S").await, (10, 7, 3));
        let committed = w.end(&a.id, Ending::Commit).await.unwrap();
        assert_eq!(committed.status, ReservationStatus::Committed);
        assert_eq!(w.level("S").await, (7, 4, 3));
        // Again: the same answer, nothing more taken.
        assert_eq!(
            w.end(&a.id, Ending::Commit).await.unwrap().status,
            ReservationStatus::Committed
        );
        assert_eq!(w.level("S").await, (7, 4, 3));
        assert!(matches!(
            w.end(&a.id, Ending::Release).await,
            Err(ApiError::ReservationEnded {
                status: "committed"
            })
        ));
        w.end(&b.id, Ending::Release).await.unwrap();
        assert_eq!(w.level("S").await, (7, 0, 7));
        assert!(matches!(
            w.end(&b.id, Ending::Commit).await,
            Err(ApiError::ReservationEnded { status: "released" })
        ));
        let movements = w
            .items
            .movements(&w.tenant, &Sku::parse("S").unwrap(), 100, None, None)
            .await
            .unwrap()
            .items;
        let commits: Vec<_> = movements
            .iter()
            .filter(|m| m.reason == COMMIT_REASON)
            .collect();
        assert_eq!(commits.len(), 1);
        assert_eq!(
            (commits[0].delta, commits[0].reference.as_deref()),
            (-3, Some(a.id.as_str()))
        );
        let sum: i64 = movements.iter().map(|m| m.delta).sum();
        assert_eq!(sum, 7, "the ledger balances on hand");
        let _ = &w.store;
    }

    #[tokio::test]
    async fn a_listing_by_status_pages_through_every_match_in_creation_order() {
        let w = world();
        w.item("S", 10).await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(w.hold("S", 1).await.unwrap().id);
        }
        w.end(&ids[1], Ending::Release).await.unwrap();
        w.end(&ids[3], Ending::Commit).await.unwrap();
        let sku = Sku::parse("S").unwrap();
        let mut seen = Vec::new();
        let mut start = None;
        loop {
            let page = w
                .reservations
                .list(&w.tenant, &sku, Some(ReservationStatus::Active), 1, start)
                .await
                .unwrap();
            seen.extend(page.items.into_iter().map(|r| r.id));
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        // In id order: creation order, to the millisecond.
        let mut active = vec![ids[0].clone(), ids[2].clone(), ids[4].clone()];
        active.sort();
        assert_eq!(seen, active);
    }
}
