//! A split sku's stock (`domain::stock_split`): splitting it, merging it
//! back, where an order takes its units, and the sku's level as the sum of
//! its parts. Every move of units between the parts is one transaction
//! that leaves the sum alone; every order is a write of one part,
//! conditioned on its version, so no part, and so not the sum, goes below
//! zero.

use crate::domain::level::Level;
use crate::domain::location::LocationId;
use crate::domain::stock_split::{self, MAX_BUCKETS};
use crate::domain::{Item, MovementContext, Sku, TenantId};
use crate::error::ApiError;
use crate::levels::{LevelNow, LevelStores, backoff};
use crate::ports::{ItemStore, LevelWrite, SplitChange, StoreError, StoredLevel};
use std::sync::Arc;

const MAX_ATTEMPTS: u32 = 12;
/// Stands for the sku's own level among the buckets in a gather plan.
const OWN: u16 = MAX_BUCKETS;

/// Where an order takes its units.
pub(crate) enum OrderSource {
    /// The sku's own level: it is not split (any more), or the units are
    /// there.
    Own,
    /// One bucket, as read now.
    Bucket(Box<LevelNow>),
    /// Units were gathered into one part for the order: read again.
    Moved,
}

/// An order on a sku split into `buckets`: of `need` units (0: it adds
/// units); `delta`, its change of on hand (what a refusal names).
pub(crate) struct Order<'a> {
    pub tenant: &'a TenantId,
    pub sku: &'a Sku,
    pub buckets: u16,
    pub need: i64,
    pub delta: i64,
}

/// The part an order takes its units from. A first attempt reads one
/// bucket drawn at random; a later one (after a lost race), or a bucket
/// short of units, reads them all and picks one that has them, at random.
/// When no part has `need` units alone but all of them have, the units are
/// gathered into the fullest (its own transaction) and the caller reads
/// again. Fewer units in all of them than `need`: `InsufficientStock` with
/// what they have.
pub(crate) async fn order_source(
    stores: &LevelStores,
    order: &Order<'_>,
    attempt: u32,
    ctx: &MovementContext,
    (at, now_ms): (&str, u64),
) -> Result<OrderSource, ApiError> {
    let Order {
        tenant,
        sku,
        buckets,
        need,
        delta,
    } = *order;
    let levels = stores.levels.as_ref();
    let holds = stores.holds.as_ref();
    if attempt == 0 {
        let drawn = stock_split::first_choice(rand::random(), buckets);
        let stored = levels.bucket_level(tenant, sku, drawn).await?;
        if !is_open(&stored) {
            return Ok(OrderSource::Own);
        }
        let now = LevelNow::of(stored, holds, tenant, sku, now_ms).await?;
        if now.level.available() >= need {
            return Ok(OrderSource::Bucket(Box::new(now)));
        }
    }
    let open: Vec<StoredLevel> = levels
        .bucket_levels(tenant, sku, buckets)
        .await?
        .into_iter()
        .filter(is_open)
        .collect();
    if open.is_empty() {
        return Ok(OrderSource::Own);
    }
    // As stored, an expired hold still counts: a bucket has at least this.
    let mut available: Vec<(u16, i64)> = open
        .iter()
        .map(|l| (bucket_of(l), l.level.available()))
        .collect();
    if need == 0 {
        // Units added: to a bucket at random, as orders take them.
        let drawn = usize::from(stock_split::first_choice(rand::random(), buckets));
        let stored = open[drawn % open.len()].clone();
        let now = LevelNow::of(stored, holds, tenant, sku, now_ms).await?;
        return Ok(OrderSource::Bucket(Box::new(now)));
    }
    if let Some(picked) = stock_split::pick(&available, need, rand::random())
        && let Some(stored) = open.iter().find(|l| bucket_of(l) == picked)
    {
        let now = LevelNow::of(stored.clone(), holds, tenant, sku, now_ms).await?;
        return Ok(OrderSource::Bucket(Box::new(now)));
    }
    // No bucket has it alone: with the sku's own level, do they together?
    let own = LevelNow::read(
        levels,
        holds,
        tenant,
        sku,
        &LocationId::default_location(),
        now_ms,
    )
    .await?;
    available.push((OWN, own.level.available()));
    let Some((target, sources)) = stock_split::gather_plan(&available, need) else {
        let total = available.iter().map(|(_, units)| units.max(&0)).sum();
        return Err(ApiError::InsufficientStock {
            available: total,
            delta,
        });
    };
    if sources.is_empty() {
        // The own level has enough alone.
        return Ok(OrderSource::Own);
    }
    let mut parts = Vec::with_capacity(sources.len() + 1);
    let mut moved_in = 0;
    for (part, units) in sources.iter().copied() {
        parts.push((part, -units));
        moved_in += units;
    }
    parts.push((target, moved_in));
    let mut nows = Vec::with_capacity(parts.len());
    for (part, delta) in parts {
        let now = if part == OWN {
            own.clone()
        } else {
            let stored = open
                .iter()
                .find(|l| bucket_of(l) == part)
                .cloned()
                .ok_or_else(|| ApiError::Internal("a planned bucket was not read".into()))?;
            LevelNow::of(stored, holds, tenant, sku, now_ms).await?
        };
        nows.push((now, delta));
    }
    let writes: Vec<LevelWrite<'_>> = nows
        .iter()
        .map(|(now, delta)| moved(now, *delta, ctx, at))
        .collect();
    match levels.move_stock(tenant, sku, &writes, None).await {
        // Lost a race: the caller reads again.
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(OrderSource::Moved),
        Err(e) => Err(e.into()),
    }
}

/// A bucket is open while its level is stored (the split writes them all,
/// the merge deletes them).
fn is_open(level: &StoredLevel) -> bool {
    level.bucket.is_some() && level.holds_version > 0
}

fn bucket_of(level: &StoredLevel) -> u16 {
    level.bucket.unwrap_or(OWN)
}

/// The write of `delta` units moved into (out of) a part, without sweeping
/// its expired holds (a move of 64 buckets has no room for it; the part's
/// next write sweeps them).
fn moved<'a>(
    now: &'a LevelNow,
    delta: i64,
    ctx: &'a MovementContext,
    at: &'a str,
) -> LevelWrite<'a> {
    let after = Level {
        on_hand: now.level.on_hand + delta,
        ..now.level.clone()
    };
    let (after, holds_check_at) = now.unswept(&after, None);
    LevelWrite {
        before: &now.stored,
        after,
        holds_check_at,
        movements: Vec::new(),
        holds: Vec::new(),
        idempotency: None,
        request_id: &ctx.request_id,
        at,
    }
}

/// Splits and merges a sku's stock (an operator's call, before and after a
/// flash sale).
#[derive(Clone)]
pub struct StockSplitService {
    items: Arc<dyn ItemStore>,
    stores: LevelStores,
}

impl StockSplitService {
    pub fn new(items: Arc<dyn ItemStore>, stores: LevelStores) -> Self {
        Self { items, stores }
    }

    /// Moves the sku's available units at the default location into
    /// `buckets` buckets, evenly (held units stay with their holds). Split
    /// already into as many: nothing to do; into another count: merge it
    /// first (`StockSplit`).
    pub async fn split(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        buckets: u16,
        ctx: &MovementContext,
    ) -> Result<Item, ApiError> {
        for attempt in 0..MAX_ATTEMPTS {
            let now = crate::clock::now();
            let (at, now_ms) = (crate::clock::format(now), crate::clock::unix_ms(now));
            // The buckets of an earlier split keep its history: the listings
            // go on reading as many as it ever had.
            let earlier = self
                .items
                .get_item(tenant, sku, None)
                .await?
                .ok_or(ApiError::ItemNotFound)?;
            let own = self.own_level(tenant, sku, now_ms).await?;
            if own.stored.version != earlier.version {
                // Changed between the two reads: read again.
                backoff(attempt).await;
                continue;
            }
            match own.stored.split {
                Some(n) if n == buckets => return self.shown(tenant, sku).await,
                Some(n) => return Err(ApiError::StockSplit { buckets: n }),
                None => {}
            }
            let free = own.level.available().max(0);
            let empty: Vec<LevelNow> = (0..buckets)
                .map(|b| LevelNow::empty_bucket(sku, b))
                .collect();
            let mut writes = vec![moved(&own, -free, ctx, &at)];
            for (bucket, units) in empty.iter().zip(stock_split::shares(free, buckets)) {
                writes.push(moved(bucket, units, ctx, &at));
            }
            match self
                .stores
                .levels
                .move_stock(
                    tenant,
                    sku,
                    &writes,
                    Some(SplitChange::Open {
                        buckets,
                        partitions: buckets.max(earlier.bucket_partitions),
                    }),
                )
                .await
            {
                Ok(()) => return self.shown(tenant, sku).await,
                Err(StoreError::ConditionFailed) => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    /// Moves every bucket's units back to the sku's own level and closes
    /// the buckets, once no hold counts in them (`ItemReserved`
    /// otherwise). Not split: nothing to do.
    pub async fn merge(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        ctx: &MovementContext,
    ) -> Result<Item, ApiError> {
        for attempt in 0..MAX_ATTEMPTS {
            let now = crate::clock::now();
            let (at, now_ms) = (crate::clock::format(now), crate::clock::unix_ms(now));
            let own = self.own_level(tenant, sku, now_ms).await?;
            let Some(buckets) = own.stored.split else {
                return self.shown(tenant, sku).await;
            };
            let mut parts = Vec::new();
            for stored in self
                .stores
                .levels
                .bucket_levels(tenant, sku, buckets)
                .await?
                .into_iter()
                .filter(is_open)
            {
                parts.push(
                    LevelNow::of(stored, self.stores.holds.as_ref(), tenant, sku, now_ms).await?,
                );
            }
            let live: i64 = parts.iter().map(|p| p.level.reserved).sum();
            if live > 0 {
                let holds = self.live_holds(tenant, sku, &parts, now_ms).await?;
                return Err(ApiError::ItemReserved { holds });
            }
            // Expired holds a bucket still counts are swept first, by a
            // write of that bucket alone.
            if let Some(unswept) = parts.iter().find(|p| p.stored.level.reserved > 0) {
                let write = unswept.level_write(
                    &unswept.level,
                    None,
                    (Vec::new(), Vec::new()),
                    None,
                    ctx,
                    &at,
                );
                match self.stores.levels.record_level_change(tenant, &write).await {
                    Ok(()) | Err(StoreError::ConditionFailed) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let total: i64 = parts.iter().map(|p| p.level.on_hand).sum();
            let mut writes = vec![moved(&own, total, ctx, &at)];
            writes.extend(parts.iter().map(|p| moved(p, -p.level.on_hand, ctx, &at)));
            match self
                .stores
                .levels
                .move_stock(
                    tenant,
                    sku,
                    &writes,
                    Some(SplitChange::Close {
                        versions: parts.iter().map(|p| p.stored.holds_version).sum(),
                    }),
                )
                .await
            {
                Ok(()) => return self.shown(tenant, sku).await,
                Err(StoreError::ConditionFailed) => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    /// The sku's own level at the default location (404 without the item).
    async fn own_level(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        now_ms: u64,
    ) -> Result<LevelNow, ApiError> {
        let own = LevelNow::read(
            self.stores.levels.as_ref(),
            self.stores.holds.as_ref(),
            tenant,
            sku,
            &LocationId::default_location(),
            now_ms,
        )
        .await?;
        if own.stored.version == 0 {
            return Err(ApiError::ItemNotFound);
        }
        Ok(own)
    }

    async fn live_holds(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        parts: &[LevelNow],
        now_ms: u64,
    ) -> Result<usize, ApiError> {
        let mut holds = 0;
        for part in parts.iter().filter(|p| p.level.reserved > 0) {
            holds += self
                .stores
                .holds
                .active_holds(tenant, sku, part.stored.bucket, None)
                .await?
                .iter()
                .filter(|h| h.expires_at_ms > now_ms)
                .count();
        }
        Ok(holds)
    }

    async fn shown(&self, tenant: &TenantId, sku: &Sku) -> Result<Item, ApiError> {
        let item = self
            .items
            .get_item(tenant, sku, None)
            .await?
            .ok_or(ApiError::ItemNotFound)?;
        shown_item(&self.stores, tenant, item).await
    }
}

/// The item as clients see it: a split sku's quantity is the sum of its
/// own and its buckets' on hand, and its version the sum of theirs (so it
/// still rises by one with every change, an order in a bucket included, and
/// the entity tag with it; the merge adds the buckets' to the item's).
pub(crate) async fn shown_item(
    stores: &LevelStores,
    tenant: &TenantId,
    mut item: Item,
) -> Result<Item, ApiError> {
    if let Some(buckets) = item.stock_buckets {
        let sku = Sku::parse(&item.sku).map_err(|e| ApiError::Internal(e.into()))?;
        let levels = stores.levels.bucket_levels(tenant, &sku, buckets).await?;
        item.quantity += levels.iter().map(|l| l.level.on_hand).sum::<i64>();
        item.version += levels.iter().map(|l| l.holds_version).sum::<u64>();
    }
    Ok(item)
}

/// The sku's default-location level as clients see it: its own level
/// (`own`, as it stands now) plus its buckets', each as it stands now.
pub(crate) async fn shown_level(
    stores: &LevelStores,
    tenant: &TenantId,
    sku: &Sku,
    own: &LevelNow,
    now_ms: u64,
) -> Result<Level, ApiError> {
    let Some(buckets) = own.stored.split else {
        return Ok(own.level.clone());
    };
    let mut parts = Vec::new();
    for stored in stores
        .levels
        .bucket_levels(tenant, sku, buckets)
        .await?
        .into_iter()
        .filter(is_open)
    {
        parts.push(
            LevelNow::of(stored, stores.holds.as_ref(), tenant, sku, now_ms)
                .await?
                .level,
        );
    }
    Ok(stock_split::combined(&own.level, &parts))
}

/// The split's rules on the in-memory stores: every unit sold once across
/// the buckets and never more, holds that end once in their bucket, reads
/// that sum, and the writers a split keeps away.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::CountsService;
    use crate::domain::Adjustment;
    use crate::domain::NewItem;
    use crate::domain::count::NewCount;
    use crate::domain::reservation::{Ending, NewReservation, ReservationId};
    use crate::items::{AdjustOutcome, ItemsService};
    use crate::memory::MemoryItemStore;
    use crate::reservations::{ReservationOutcome, ReservationsService};
    use serde_json::json;

    struct World {
        items: ItemsService,
        holds: ReservationsService,
        splits: StockSplitService,
        counts: CountsService,
        tenant: TenantId,
        sku: Sku,
    }

    fn ctx() -> MovementContext {
        MovementContext {
            request_id: "req-1".into(),
            key_id: None,
            batch_record: None,
        }
    }

    async fn world(quantity: i64) -> World {
        let store = Arc::new(MemoryItemStore::default());
        let stores = LevelStores {
            locations: store.clone(),
            levels: store.clone(),
            holds: store.clone(),
        };
        let w = World {
            items: ItemsService::new(store.clone()).with_locations(stores.clone()),
            holds: ReservationsService::new(store.clone(), stores.clone()),
            splits: StockSplitService::new(store.clone(), stores.clone()),
            counts: CountsService::new(store.clone(), stores),
            tenant: TenantId::parse("acme").unwrap(),
            sku: Sku::parse("HOT-1").unwrap(),
        };
        let new = NewItem::from_json(&json!({"sku": "HOT-1", "name": "n", "quantity": quantity}))
            .unwrap();
        w.items.create(&w.tenant, new, &ctx()).await.unwrap();
        w
    }

    impl World {
        async fn sell(&self, units: i64) -> Result<Option<u16>, ApiError> {
            let adjustment =
                Adjustment::from_json(&json!({"delta": -units, "reason": "sale"})).unwrap();
            match self
                .items
                .adjust(&self.tenant, &self.sku, &adjustment, &ctx(), None)
                .await?
            {
                AdjustOutcome::Applied(r) => Ok(r.stock_bucket),
                other => panic!("{other:?}"),
            }
        }

        async fn hold(&self, units: i64) -> Result<String, ApiError> {
            let new = NewReservation::from_json(
                &json!({"sku": "HOT-1", "quantity": units, "expires_in": 600}),
            )
            .unwrap();
            match self.holds.reserve(&self.tenant, &new, &ctx(), None).await? {
                ReservationOutcome::Done(r) => Ok(r.id),
                other => panic!("{other:?}"),
            }
        }

        async fn end(&self, id: &str, how: Ending) -> Result<(), ApiError> {
            let id = ReservationId::parse(id).unwrap();
            self.holds
                .end(&self.tenant, &id, how, &ctx(), None)
                .await
                .map(|_| ())
        }

        /// (on hand, reserved, available) at the default location, shown.
        async fn level(&self) -> (i64, i64, i64) {
            let levels = self.items.levels(&self.tenant, &self.sku).await.unwrap();
            let l = &levels.levels[0];
            (l.on_hand, l.reserved, l.available)
        }

        /// The shown quantity, checked against the ledger's sum.
        async fn quantity(&self) -> i64 {
            let item = self.items.get(&self.tenant, &self.sku, None).await.unwrap();
            let mut sum = 0;
            let mut start = None;
            loop {
                let page = self
                    .items
                    .movements(&self.tenant, &self.sku, 100, start, None)
                    .await
                    .unwrap();
                sum += page.items.iter().map(|m| m.delta).sum::<i64>();
                match page.next {
                    Some(next) => start = Some(next),
                    None => break,
                }
            }
            assert_eq!(sum, item.quantity, "the ledger sums to the quantity");
            item.quantity
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_split_sku_sells_every_unit_once_and_never_more() {
        let w = Arc::new(world(100).await);
        let held = w.hold(3).await.unwrap();
        let item = w.splits.split(&w.tenant, &w.sku, 8, &ctx()).await.unwrap();
        assert_eq!((item.quantity, item.stock_buckets), (100, Some(8)));
        // The version seen is the sum: an order in a bucket raises it by one.
        let version = item.version;
        w.sell(1).await.unwrap();
        let sold = w.items.get(&w.tenant, &w.sku, None).await.unwrap();
        assert_eq!((sold.quantity, sold.version), (99, version + 1));
        assert_ne!(sold.etag(), item.etag());
        let restock = Adjustment::from_json(&json!({"delta": 1, "reason": "return"})).unwrap();
        w.items
            .adjust(&w.tenant, &w.sku, &restock, &ctx(), None)
            .await
            .unwrap();
        // Held units stay with their hold, on the sku's own level.
        assert_eq!(w.level().await, (100, 3, 97));
        // A second split into as many changes nothing; into another, refused.
        assert_eq!(
            w.splits
                .split(&w.tenant, &w.sku, 8, &ctx())
                .await
                .unwrap()
                .quantity,
            100
        );
        assert!(matches!(
            w.splits.split(&w.tenant, &w.sku, 4, &ctx()).await,
            Err(ApiError::StockSplit { buckets: 8 })
        ));
        // 24 clients sell and hold-and-commit one unit at a time.
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..24 {
            let w = w.clone();
            tasks.spawn(async move {
                let mut sold = 0;
                loop {
                    let taken = if client % 2 == 0 {
                        w.sell(1).await.map(|_| ())
                    } else {
                        match w.hold(1).await {
                            Ok(id) => w.end(&id, Ending::Commit).await,
                            Err(e) => Err(e),
                        }
                    };
                    match taken {
                        Ok(()) => sold += 1,
                        Err(ApiError::InsufficientStock { available: 0, .. })
                        | Err(ApiError::InsufficientAvailable { available: 0, .. }) => {
                            return sold;
                        }
                        Err(ApiError::ConcurrentUpdate) => {}
                        Err(e) => panic!("{e:?}"),
                    }
                }
            });
        }
        let mut sold = 0;
        while let Some(n) = tasks.join_next().await {
            sold += n.unwrap();
        }
        assert_eq!(sold, 97, "every free unit sold once");
        assert_eq!(w.level().await, (3, 3, 0));
        assert_eq!(w.quantity().await, 3);
        // The hold placed before the split ends on the sku's own level, and
        // its units sell from there.
        w.end(&held, Ending::Release).await.unwrap();
        assert_eq!(w.sell(2).await.unwrap(), None);
        assert!(matches!(
            w.sell(2).await,
            Err(ApiError::InsufficientStock { available: 1, .. })
        ));
        assert_eq!(w.quantity().await, 1);
    }

    #[tokio::test]
    async fn an_order_no_bucket_can_serve_alone_gathers_units_from_the_others() {
        let w = world(4).await;
        w.splits.split(&w.tenant, &w.sku, 4, &ctx()).await.unwrap();
        assert!(w.sell(3).await.unwrap().is_some());
        assert_eq!(w.level().await, (1, 0, 1));
        // Units added land in a bucket; the quantity is the sum.
        let restock = Adjustment::from_json(&json!({"delta": 5, "reason": "restock"})).unwrap();
        w.items
            .adjust(&w.tenant, &w.sku, &restock, &ctx(), None)
            .await
            .unwrap();
        let id = w.hold(6).await.unwrap();
        assert!(ReservationId::parse(&id).unwrap().bucket().is_some());
        assert_eq!(w.level().await, (6, 6, 0));
        assert!(matches!(
            w.hold(1).await,
            Err(ApiError::InsufficientAvailable { available: 0, .. })
        ));
        assert_eq!(w.quantity().await, 6);
    }

    #[tokio::test]
    async fn the_merge_waits_for_holds_in_buckets_and_the_split_keeps_counts_and_deletes_away() {
        let w = world(10).await;
        w.splits.split(&w.tenant, &w.sku, 2, &ctx()).await.unwrap();
        let count = NewCount {
            sku: w.sku.clone(),
            location: LocationId::default_location(),
            on_hand: 7,
            occurred_at: crate::domain::level::OccurredAt::from_unix_ms(crate::clock::unix_ms(
                crate::clock::now(),
            )),
            reference: None,
        };
        assert!(matches!(
            w.counts.record(&w.tenant, &count, &ctx(), None).await,
            Err(ApiError::StockSplit { buckets: 2 })
        ));
        assert!(matches!(
            w.items.delete(&w.tenant, &w.sku, None, &ctx()).await,
            Err(ApiError::StockSplit { buckets: 2 })
        ));
        let id = w.hold(2).await.unwrap();
        w.sell(1).await.unwrap();
        assert!(matches!(
            w.splits.merge(&w.tenant, &w.sku, &ctx()).await,
            Err(ApiError::ItemReserved { holds: 1 })
        ));
        w.end(&id, Ending::Commit).await.unwrap();
        let before = w.items.get(&w.tenant, &w.sku, None).await.unwrap().version;
        let merged = w.splits.merge(&w.tenant, &w.sku, &ctx()).await.unwrap();
        assert_eq!((merged.quantity, merged.stock_buckets), (7, None));
        assert_eq!(merged.version, before + 1, "the merge is one more change");
        assert_eq!(w.level().await, (7, 0, 7));
        // Merged, the sku's own level holds it all: orders, counts and the
        // ledger (with its buckets' movements) as before the split.
        assert_eq!(w.sell(1).await.unwrap(), None);
        assert_eq!(w.quantity().await, 6);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let now = NewCount {
            occurred_at: crate::domain::level::OccurredAt::from_unix_ms(crate::clock::unix_ms(
                crate::clock::now(),
            )),
            ..count
        };
        w.counts
            .record(&w.tenant, &now, &ctx(), None)
            .await
            .unwrap();
        assert_eq!(w.quantity().await, 7);
        // Split again: the buckets open anew.
        let again = w.splits.split(&w.tenant, &w.sku, 2, &ctx()).await.unwrap();
        assert_eq!((again.quantity, again.stock_buckets), (7, Some(2)));
        assert!(w.sell(7).await.unwrap().is_some());
        assert_eq!(w.quantity().await, 0);
    }
}
