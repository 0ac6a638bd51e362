//! Atomic batches: every record, item writes and counts, transfers and
//! holds alike, commits in one transaction with the header's claim, or none
//! of it does and every record is reported failed.
//!
//! The records apply in order to the state the earlier ones left: an item,
//! and each level the records name as read at the start (expired holds no
//! longer count). The order, the abort and the item rules are the domain's
//! (`domain::chunk_plan::plan_atomic`); the level rules are the routes' own
//! (`domain::level`), applied here to levels held in memory. The store
//! commits each item and level once, conditioned on its version as read;
//! a lost race reads and plans again. Submission bounds the writes a batch
//! may need to one transaction's (`domain::batch::atomic_actions`).
//!
//! Expired holds are not swept here (the transaction has no room for
//! them): they keep counting as stored, and the level's next write sweeps
//! them.

use crate::batch_levels::LevelRecords;
use crate::clock;
use crate::counts::applied_after;
use crate::domain::batch::{BatchRecord, ChunkMessage, LevelRequest};
use crate::domain::chunk_plan::{
    AtomicPlan, ChunkDisposition, LevelSteps, distinct_skus, plan_atomic,
};
use crate::domain::level::{Counted, Level, LevelError, transfer};
use crate::domain::location::{DEFAULT_LOCATION, LocationId};
use crate::domain::{Item, MAX_QUANTITY, Movement, MovementContext, Sku, TenantId};
use crate::levels::LevelNow;
use crate::ports::{
    AtomicCommit, AtomicCommitted, AtomicLevelWrite, ChunkApplication, HoldWrite, StoreError,
    StoredLevel,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// Rounds of lost races before the delivery gives up (SQS delivers again).
const MAX_ROUNDS: u32 = 40;

/// Applies (or, dead-lettered, fails) an atomic chunk exactly once,
/// however often it is delivered.
pub async fn apply_atomic(
    store: &dyn ChunkApplication,
    levels: &LevelRecords,
    chunk: &ChunkMessage,
    disposition: ChunkDisposition,
) -> Result<(), StoreError> {
    let tenant = TenantId::parse(&chunk.tenant_id).map_err(StoreError::Corrupt)?;
    let batch_id = chunk.batch_id.as_str();
    for round in 0..MAX_ROUNDS {
        let header = store.delivered_header(&tenant, batch_id).await?;
        if header.chunks_done > 0 {
            return store.finish_atomic_chunk(&tenant, batch_id).await;
        }
        store.mark_processing(&tenant, batch_id).await?;
        let commit = plan(store, levels, &tenant, chunk, disposition).await?;
        match store.commit_atomic_chunk(chunk, &commit).await? {
            AtomicCommitted::Committed => {
                if let AtomicPlan::Reject(failures) = &commit.plan {
                    crate::telemetry::log_failures(failures);
                }
                return store.finish_atomic_chunk(&tenant, batch_id).await;
            }
            AtomicCommitted::Decided => return store.finish_atomic_chunk(&tenant, batch_id).await,
            AtomicCommitted::Retry => {
                let ms = (5u64 << (round + 1).min(6)).min(500);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
    }
    Err(StoreError::Unavailable(
        "gave up applying an atomic batch under contention".into(),
    ))
}

/// Reads what the chunk's records apply to, then plans them in order.
pub(crate) async fn plan(
    store: &dyn ChunkApplication,
    records: &LevelRecords,
    tenant: &TenantId,
    chunk: &ChunkMessage,
    disposition: ChunkDisposition,
) -> Result<AtomicCommit, StoreError> {
    let now = clock::now();
    let (now_s, now_ms) = (clock::format(now), clock::unix_ms(now));
    let mut levels = AtomicLevels::new(chunk, now_s.clone(), now_ms);
    if disposition == ChunkDisposition::DeadLettered {
        let plan = plan_atomic(chunk, &HashMap::new(), &mut levels, disposition, &now_s);
        return Ok(AtomicCommit {
            plan,
            levels: Vec::new(),
        });
    }
    let skus = distinct_skus(&chunk.records);
    let items = store.read_items(tenant, &skus).await?.items;
    // Every sku's default level (what item writes may not take), and each
    // level a count, transfer or hold names.
    let mut pairs: BTreeSet<(String, String)> = skus
        .iter()
        .map(|sku| ((*sku).to_owned(), DEFAULT_LOCATION.to_owned()))
        .collect();
    for rec in chunk.records.iter().filter(|r| r.op.is_level()) {
        let request = rec.level_request(now_ms).map_err(|e| e.summary());
        if let Ok(Some(request)) = &request {
            for location in request_locations(request) {
                pairs.insert((rec.sku.clone(), location.as_str().to_owned()));
            }
            if let LevelRequest::Count(count) = request {
                let after = applied_after(records.items.as_ref(), tenant, count)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string().into()))?;
                levels.applied_after.insert(rec.index, after);
            }
        }
        levels.requests.insert(rec.index, request);
    }
    let stores = &records.stores;
    for (_, location) in pairs.iter().filter(|(_, l)| l != DEFAULT_LOCATION) {
        let id = LocationId::parse(location).map_err(StoreError::Corrupt)?;
        if !levels.locations.contains(location)
            && stores
                .locations
                .get_location(tenant, &id, None)
                .await?
                .is_some()
        {
            levels.locations.insert(location.clone());
        }
    }
    let keys = pairs
        .iter()
        .map(|(sku, location)| {
            Ok((
                Sku::parse(sku).map_err(StoreError::Corrupt)?,
                LocationId::parse(location).map_err(StoreError::Corrupt)?,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let stored = stores.levels.levels_of(tenant, &keys).await?;
    for ((sku, location), stored) in keys.into_iter().zip(stored) {
        // None: the item or the location does not exist (yet: an earlier
        // record may create the item); the level as stored, if any.
        let stored = match stored {
            Some(level) => level,
            None if levels.exists(&location) => {
                stores.levels.level(tenant, &sku, &location).await?
            }
            None => StoredLevel::empty(location.clone()),
        };
        let now = LevelNow::of(stored, stores.holds.as_ref(), tenant, &sku, now_ms).await?;
        levels.read(sku, location, now);
    }
    let plan = plan_atomic(chunk, &items, &mut levels, disposition, &now_s);
    let levels = match &plan {
        AtomicPlan::Apply { items, .. } => levels.into_writes(items),
        AtomicPlan::Reject(_) => Vec::new(),
    };
    Ok(AtomicCommit { plan, levels })
}

fn request_locations(request: &LevelRequest) -> Vec<&LocationId> {
    match request {
        LevelRequest::Count(c) => vec![&c.location],
        LevelRequest::Transfer(t) => vec![&t.from, &t.to],
        LevelRequest::Reserve(r) => vec![&r.location],
    }
}

/// A level as the batch's earlier records left it.
struct LevelState {
    sku: Sku,
    read: LevelNow,
    /// What the rules see (at the default location, on hand is the item's).
    level: Level,
    changed: bool,
    holds: Vec<HoldWrite>,
    new_expiry: Option<u64>,
    /// This batch's changes of on hand here: (occurred, Unix ms; delta).
    applied: Vec<(u64, i64)>,
}

/// The levels an atomic chunk's records apply to ([`LevelSteps`]).
struct AtomicLevels {
    levels: HashMap<(String, String), LevelState>,
    /// Locations other than the default one that exist.
    locations: HashSet<String>,
    /// Each count, transfer or hold, as its route's request (or why not).
    requests: HashMap<u32, Result<Option<LevelRequest>, String>>,
    /// Per count: the deltas in the ledger that occurred after it.
    applied_after: HashMap<u32, i64>,
    batch_id: String,
    request_id: String,
    now: String,
    now_ms: u64,
}

type Refusal = (&'static str, String);

impl AtomicLevels {
    fn new(chunk: &ChunkMessage, now: String, now_ms: u64) -> Self {
        Self {
            levels: HashMap::new(),
            locations: HashSet::new(),
            requests: HashMap::new(),
            applied_after: HashMap::new(),
            batch_id: chunk.batch_id.clone(),
            request_id: chunk.request_id.clone(),
            now,
            now_ms,
        }
    }

    fn exists(&self, location: &LocationId) -> bool {
        location.is_default() || self.locations.contains(location.as_str())
    }

    fn read(&mut self, sku: Sku, location: LocationId, read: LevelNow) {
        let key = (sku.as_str().to_owned(), location.as_str().to_owned());
        self.levels.insert(
            key,
            LevelState {
                sku,
                level: read.level.clone(),
                read,
                changed: false,
                holds: Vec::new(),
                new_expiry: None,
                applied: Vec::new(),
            },
        );
    }

    fn state(&mut self, sku: &Sku, location: &LocationId) -> Result<&mut LevelState, Refusal> {
        if !self.exists(location) {
            return Err((
                "location_not_found",
                "a location the record names does not exist".into(),
            ));
        }
        self.levels
            .get_mut(&(sku.as_str().to_owned(), location.as_str().to_owned()))
            .ok_or_else(|| {
                (
                    "invalid_record",
                    format!("the level of {sku} at {location} was not read"),
                )
            })
    }

    /// The level now: at the default location on hand is the item's.
    fn current(&mut self, sku: &Sku, location: &LocationId, item: &Item) -> Result<Level, Refusal> {
        let state = self.state(sku, location)?;
        let mut level = state.level.clone();
        if location.is_default() {
            level.on_hand = item.quantity;
        }
        Ok(level)
    }

    /// The level becomes `after`; at the default location, so does the
    /// item's quantity.
    fn set(
        &mut self,
        (sku, location): (&Sku, &LocationId),
        item: &mut Item,
        after: Level,
        delta: (u64, i64),
    ) -> Result<(), Refusal> {
        let state = self.state(sku, location)?;
        if location.is_default() {
            item.quantity = after.on_hand;
        }
        state.level = after;
        state.changed = true;
        if delta.1 != 0 {
            state.applied.push(delta);
        }
        Ok(())
    }

    fn context(&self, rec: &BatchRecord) -> MovementContext {
        MovementContext {
            request_id: self.request_id.clone(),
            key_id: None,
            batch_record: Some((self.batch_id.clone(), rec.id.clone())),
        }
    }

    fn count(
        &mut self,
        rec: &BatchRecord,
        item: &mut Item,
        count: &crate::domain::count::NewCount,
    ) -> Result<Vec<Movement>, Refusal> {
        let before = self.current(&count.sku, &count.location, item)?;
        let occurred_ms = count.occurred_at.unix_ms();
        let in_batch: i64 = self
            .state(&count.sku, &count.location)?
            .applied
            .iter()
            .filter(|(at, _)| *at > occurred_ms)
            .map(|(_, d)| d)
            .sum();
        let after_read = self.applied_after.get(&rec.index).copied().unwrap_or(0);
        let (after, delta, applies) = match before.count(
            count.on_hand,
            &count.occurred_at,
            after_read.saturating_add(in_batch),
        ) {
            Ok(Counted::Set { level, delta }) => (level, delta, true),
            Ok(Counted::Superseded { .. }) => (before, 0, false),
            Err(LevelError::CountBelowReserved { reserved }) => {
                return Err((
                    "count_below_reserved",
                    format!("the count is below the {reserved} units held by reservations"),
                ));
            }
            Err(LevelError::Overflow | LevelError::InsufficientAvailable { .. }) => {
                return Err(overflow());
            }
        };
        let movement = crate::counts::count_movement(
            count,
            (delta, after.on_hand, applies),
            &self.context(rec),
            &self.now,
        );
        if applies {
            self.set(
                (&count.sku, &count.location),
                item,
                after,
                (occurred_ms, delta),
            )?;
        }
        Ok(vec![movement])
    }

    fn transfer(
        &mut self,
        rec: &BatchRecord,
        item: &mut Item,
        new: &crate::domain::transfer::NewTransfer,
    ) -> Result<Vec<Movement>, Refusal> {
        let from = self.current(&new.sku, &new.from, item)?;
        let to = self.current(&new.sku, &new.to, item)?;
        let (from_after, to_after) = match transfer(&from, &to, new.quantity) {
            Ok(levels) => levels,
            Err(LevelError::InsufficientAvailable { available }) => {
                return Err((
                    "insufficient_available",
                    format!("{} units asked, {available} available", new.quantity),
                ));
            }
            Err(LevelError::Overflow | LevelError::CountBelowReserved { .. }) => {
                return Err(overflow());
            }
        };
        let (_, out, into) = crate::transfers::transfer_movements(
            new,
            (&from_after, &to_after),
            &self.context(rec),
            &self.now,
        );
        let now_ms = self.now_ms;
        self.set(
            (&new.sku, &new.from),
            item,
            from_after,
            (now_ms, -new.quantity),
        )?;
        self.set((&new.sku, &new.to), item, to_after, (now_ms, new.quantity))?;
        Ok(vec![out, into])
    }

    fn reserve(
        &mut self,
        rec: &BatchRecord,
        item: &mut Item,
        new: &crate::domain::reservation::NewReservation,
    ) -> Result<Vec<Movement>, Refusal> {
        let before = self.current(&new.sku, &new.location, item)?;
        let after = before.reserve(new.quantity).map_err(|_| {
            (
                "insufficient_available",
                format!(
                    "{} units asked, {} available",
                    new.quantity,
                    before.available().max(0)
                ),
            )
        })?;
        let (hold, placed) = crate::reservations::place_hold(
            new,
            &after,
            (&self.now, self.now_ms),
            &self.context(rec),
            None,
        );
        let expires_at_ms = hold.expires_at_ms;
        self.set((&new.sku, &new.location), item, after, (self.now_ms, 0))?;
        let state = self.state(&new.sku, &new.location)?;
        state.new_expiry = Some(
            state
                .new_expiry
                .map_or(expires_at_ms, |e| e.min(expires_at_ms)),
        );
        state.holds.push(HoldWrite::Create(hold));
        Ok(vec![placed])
    }

    /// The levels to write once the plan applies: at the default location
    /// on hand is the item's final quantity.
    fn into_writes(
        self,
        items: &BTreeMap<String, (Option<Item>, Option<Item>)>,
    ) -> Vec<AtomicLevelWrite> {
        let mut writes: Vec<AtomicLevelWrite> = self
            .levels
            .into_values()
            .filter(|s| s.changed)
            .map(|s| {
                let (mut after, holds_check_at) = s.read.unswept(&s.level, s.new_expiry);
                if s.read.stored.location.is_default()
                    && let Some((_, Some(item))) = items.get(s.sku.as_str())
                {
                    after.on_hand = item.quantity;
                }
                AtomicLevelWrite {
                    sku: s.sku,
                    before: s.read.stored,
                    after,
                    holds_check_at,
                    holds: s.holds,
                }
            })
            .collect();
        writes.sort_by(|a, b| {
            (a.sku.as_str(), a.before.location.as_str())
                .cmp(&(b.sku.as_str(), b.before.location.as_str()))
        });
        writes
    }
}

fn overflow() -> Refusal {
    (
        "quantity_overflow",
        format!("the quantity would exceed {MAX_QUANTITY}"),
    )
}

impl LevelSteps for AtomicLevels {
    fn held(&self, sku: &str) -> i64 {
        self.levels
            .get(&(sku.to_owned(), DEFAULT_LOCATION.to_owned()))
            .map_or(0, |s| s.level.reserved)
    }

    fn item_written(&mut self, sku: &str, delta: i64) {
        if let Some(state) = self
            .levels
            .get_mut(&(sku.to_owned(), DEFAULT_LOCATION.to_owned()))
            && delta != 0
        {
            state.applied.push((self.now_ms, delta));
        }
    }

    fn apply(
        &mut self,
        rec: &BatchRecord,
        item: &mut Option<Item>,
    ) -> Result<Vec<Movement>, Refusal> {
        let request = match self.requests.remove(&rec.index) {
            Some(Ok(Some(request))) => request,
            Some(Err(summary)) => return Err(("invalid_record", summary)),
            Some(Ok(None)) | None => {
                return Err((
                    "invalid_record",
                    format!("record {} is not a count, transfer or hold", rec.id),
                ));
            }
        };
        let Some(current) = item.as_mut() else {
            return Err(("item_not_found", format!("no item with sku {}", rec.sku)));
        };
        // A split sku's default-location units are in its buckets, which an
        // atomic batch's one transaction does not take from.
        if let Some(buckets) = current.stock_buckets {
            let touches_default = match &request {
                LevelRequest::Count(c) => c.location.is_default(),
                LevelRequest::Transfer(t) => t.from.is_default() || t.to.is_default(),
                LevelRequest::Reserve(r) => r.location.is_default(),
            };
            if touches_default {
                return Err(crate::domain::batch::stock_split_refusal(buckets));
            }
        }
        let mut changed = current.clone();
        let made = match &request {
            LevelRequest::Count(count) => self.count(rec, &mut changed, count)?,
            LevelRequest::Transfer(t) => self.transfer(rec, &mut changed, t)?,
            LevelRequest::Reserve(r) => self.reserve(rec, &mut changed, r)?,
        };
        // A level that changed raises the item's version, which every
        // writer of the item is conditioned on (`LevelWrite::raises_item_version`).
        if made.iter().any(|m| m.applies) {
            changed.version += 1;
            changed.updated_at = self.now.clone();
            *current = changed;
        }
        Ok(made)
    }
}
