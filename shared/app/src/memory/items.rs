use super::{lock, page};
use crate::domain::change::{ChangeCause, CommittedChange, Deletion};
use crate::domain::level::Level;
use crate::domain::location::{Location, LocationId};
use crate::domain::reservation::{ReservationId, ReservationStatus};
use crate::domain::{Fields, Item, Movement, Sku, TenantId};
use crate::ports::{
    ActiveHold, ChangeLog, HoldWrite, IdempotencyRecord, ItemStore, LevelStore, LevelWrite,
    LocationStore, Page, PageKey, ReservationStore, SplitChange, StoreError, StoredLevel,
    StoredReservation,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub(super) struct Tenant {
    /// By sku, so listings come in sku order.
    pub(super) items: BTreeMap<String, Item>,
    /// Per sku, oldest first (a deleted item keeps its ledger).
    movements: HashMap<String, Vec<Movement>>,
    idempotency: HashMap<String, IdempotencyRecord>,
    /// By id, so listings come in id order.
    locations: BTreeMap<String, Location>,
    /// Levels at locations other than the default, by (sku, location), with
    /// their versions.
    levels: BTreeMap<(String, String), HeldLevel>,
    /// Holds at the default location, whose on hand is the item's quantity.
    default_holds: HashMap<String, HeldLevel>,
    /// A split sku's open stock buckets, by (sku, bucket).
    buckets: BTreeMap<(String, u16), HeldLevel>,
    /// By id (ids sort by creation time within a sku).
    reservations: BTreeMap<String, StoredReservation>,
    /// Per location, how many of its levels hold stock.
    stocked: HashMap<String, u64>,
    /// What the call under way committed (moved to the store's log).
    committed: Vec<Logged>,
}

/// A level as stored, with its version and when its first hold expires.
#[derive(Clone, Debug, Default)]
struct HeldLevel {
    level: Level,
    version: u64,
    holds_check_at: Option<u64>,
}

impl HeldLevel {
    fn stored(&self, location: LocationId) -> StoredLevel {
        StoredLevel {
            location,
            bucket: None,
            split: None,
            level: self.level.clone(),
            version: self.version,
            holds_version: self.version,
            holds_check_at: self.holds_check_at,
        }
    }
}

impl HoldWrite {
    fn sku(&self) -> Option<String> {
        match self {
            HoldWrite::Create(r) => Some(r.id.sku().to_string()),
            HoldWrite::End { id, .. } => Some(id.sku().to_string()),
        }
    }
}

/// A committed change, before the tenant's name is attached.
#[derive(Debug)]
pub(super) enum Logged {
    Item {
        before: Option<Item>,
        after: Item,
        cause: ChangeCause,
    },
    Deleted(Deletion),
    Movement(Movement),
}

impl Logged {
    fn into_change(self, tenant: &str) -> CommittedChange {
        let tenant = tenant.to_owned();
        match self {
            Logged::Item {
                before,
                after,
                cause,
            } => CommittedChange::ItemWritten {
                tenant,
                before,
                after,
                cause,
            },
            Logged::Deleted(deletion) => CommittedChange::ItemDeleted { tenant, deletion },
            Logged::Movement(movement) => CommittedChange::MovementAdded { tenant, movement },
        }
    }
}

/// [`ItemStore`] in memory. Every committed write is also logged as the
/// change the table's stream would report (`take_changes`), so tests derive
/// events the way the events publisher does. Reads return whole records even when `fields`
/// asks for fewer, as a store may.
#[derive(Debug, Default)]
pub struct MemoryItemStore {
    tenants: Mutex<HashMap<String, Tenant>>,
    changes: Mutex<Vec<CommittedChange>>,
}

impl MemoryItemStore {
    /// Runs `f` on the tenant's data, under the one lock (so each call is
    /// atomic, as the DynamoDB conditions and transactions are).
    pub(super) fn with_tenant<R>(&self, tenant: &TenantId, f: impl FnOnce(&mut Tenant) -> R) -> R {
        let mut all = lock(&self.tenants);
        let t = all.entry(tenant.as_str().to_owned()).or_default();
        let out = f(t);
        // Under the same lock: the log is in commit order, as a stream is per key.
        let committed = std::mem::take(&mut t.committed);
        if !committed.is_empty() {
            let name = tenant.as_str();
            lock(&self.changes).extend(committed.into_iter().map(|c| c.into_change(name)));
        }
        out
    }

    /// Logs a change committed by another record kind (a batch header).
    pub(super) fn log_change(&self, change: CommittedChange) {
        lock(&self.changes).push(change);
    }

    /// The changes committed since the last call, in commit order (what the
    /// table's stream reports).
    pub fn take_changes(&self) -> Vec<CommittedChange> {
        std::mem::take(&mut *lock(&self.changes))
    }

    /// The items of these skus that exist, by sku.
    pub(super) fn items_of(&self, tenant: &TenantId, skus: &[&str]) -> HashMap<String, Item> {
        self.with_tenant(tenant, |t| {
            skus.iter()
                .filter_map(|sku| t.items.get(*sku).map(|i| (i.sku.clone(), i.clone())))
                .collect()
        })
    }

    /// Units held at the default location of these skus at `now_ms`, by
    /// sku (none: absent).
    pub(super) fn held_of(
        &self,
        tenant: &TenantId,
        skus: &[&str],
        now_ms: u64,
    ) -> HashMap<String, i64> {
        self.with_tenant(tenant, |t| {
            let mut held: HashMap<String, i64> = HashMap::new();
            for r in t.reservations.values() {
                let sku = r.id.sku().as_str();
                if r.location.is_default()
                    && skus.contains(&sku)
                    && r.status.holds(r.expires_at_ms, now_ms)
                {
                    *held.entry(sku.to_owned()).or_default() += r.quantity;
                }
            }
            held
        })
    }

    /// Takes an idempotency key, unless a record of it has not expired.
    pub(super) fn take_idempotency_key(
        &self,
        tenant: &TenantId,
        record: &IdempotencyRecord,
    ) -> Result<(), StoreError> {
        self.with_tenant(tenant, |t| t.take_key(record))
    }

    pub(super) fn idempotency(&self, tenant: &TenantId, key: &str) -> Option<IdempotencyRecord> {
        self.with_tenant(tenant, |t| t.idempotency.get(key).cloned())
    }

    /// Items held, across tenants.
    pub fn item_count(&self) -> usize {
        let all = lock(&self.tenants);
        all.values().map(|t| t.items.len()).sum()
    }

    /// Every movement of a sku, oldest first (the ledger a test sums).
    pub fn ledger(&self, tenant: &TenantId, sku: &str) -> Vec<Movement> {
        self.with_tenant(tenant, |t| {
            t.movements.get(sku).cloned().unwrap_or_default()
        })
    }
}

impl Tenant {
    /// Writes an item, logging the change.
    /// A sku's level at a location: the default one's on hand is the
    /// item's quantity, and its version the item's.
    fn level(&self, sku: &str, location: &LocationId) -> StoredLevel {
        if location.is_default() {
            let Some(item) = self.items.get(sku) else {
                // As in the table: a deleted item's holds record stays.
                let mut level = StoredLevel::empty(location.clone());
                level.holds_version = self.default_holds.get(sku).map_or(0, |h| h.version);
                return level;
            };
            let held = self.default_holds.get(sku).cloned().unwrap_or_default();
            return StoredLevel {
                location: location.clone(),
                bucket: None,
                split: item.stock_buckets,
                level: Level {
                    on_hand: item.quantity,
                    ..held.level
                },
                version: item.version,
                holds_version: held.version,
                // Holds written before a later item write still apply.
                holds_check_at: held.holds_check_at,
            };
        }
        self.levels
            .get(&(sku.to_owned(), location.as_str().to_owned()))
            .map_or_else(
                || StoredLevel::empty(location.clone()),
                |h| h.stored(location.clone()),
            )
    }

    /// A split sku's bucket (empty, version 0, when not open).
    fn bucket(&self, sku: &str, bucket: u16) -> StoredLevel {
        self.buckets.get(&(sku.to_owned(), bucket)).map_or_else(
            || StoredLevel::empty_bucket(bucket),
            |h| StoredLevel {
                bucket: Some(bucket),
                ..h.stored(LocationId::default_location())
            },
        )
    }

    /// The level a write is of, as it is now.
    fn level_of(&self, sku: &str, stored: &StoredLevel) -> StoredLevel {
        match stored.bucket {
            Some(b) => self.bucket(sku, b),
            None => self.level(sku, &stored.location),
        }
    }

    pub(super) fn put_item(&mut self, item: &Item, cause: &ChangeCause) {
        let before = self.items.insert(item.sku.clone(), item.clone());
        self.committed.push(Logged::Item {
            before,
            after: item.clone(),
            cause: cause.clone(),
        });
    }

    /// Removes an item with its deletion marker, logging the change.
    pub(super) fn remove_item(&mut self, sku: &str, deletion: Option<&Deletion>) {
        if self.items.remove(sku).is_some()
            && let Some(d) = deletion
        {
            self.committed.push(Logged::Deleted(d.clone()));
        }
    }

    /// The condition every versioned write has: the item is there, at `expected`.
    fn check_version(&self, sku: &str, expected: u64) -> Result<(), StoreError> {
        match self.items.get(sku) {
            Some(item) if item.version == expected => Ok(()),
            _ => Err(StoreError::ConditionFailed),
        }
    }

    /// The idempotency key's condition: free, or its record expired.
    fn take_key(&mut self, record: &IdempotencyRecord) -> Result<(), StoreError> {
        let now = crate::clock::now().unix_timestamp();
        if self
            .idempotency
            .get(&record.key)
            .is_some_and(|held| held.expires_at >= now)
        {
            return Err(StoreError::IdempotencyKeyTaken);
        }
        self.idempotency.insert(record.key.clone(), record.clone());
        Ok(())
    }

    pub(super) fn append(&mut self, movement: Option<&Movement>) {
        if let Some(m) = movement {
            self.committed.push(Logged::Movement(m.clone()));
            self.movements
                .entry(m.sku.clone())
                .or_default()
                .push(m.clone());
        }
    }
}

#[async_trait]
impl ItemStore for MemoryItemStore {
    async fn get_item(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        _fields: Option<&Fields<Item>>,
    ) -> Result<Option<Item>, StoreError> {
        Ok(self.with_tenant(tenant, |t| t.items.get(sku.as_str()).cloned()))
    }

    async fn create_item(
        &self,
        tenant: &TenantId,
        item: &Item,
        opening: Option<&Movement>,
        cause: &ChangeCause,
    ) -> Result<(), StoreError> {
        self.with_tenant(tenant, |t| {
            if t.items.contains_key(&item.sku) {
                return Err(StoreError::AlreadyExists);
            }
            t.put_item(item, cause);
            t.append(opening);
            Ok(())
        })
    }

    async fn replace_item(
        &self,
        tenant: &TenantId,
        item: &Item,
        expected_version: u64,
        cause: &ChangeCause,
    ) -> Result<(), StoreError> {
        self.with_tenant(tenant, |t| {
            t.check_version(&item.sku, expected_version)?;
            t.put_item(item, cause);
            Ok(())
        })
    }

    async fn delete_item(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        expected_version: u64,
        closing: Option<&Movement>,
        deletion: &Deletion,
    ) -> Result<(), StoreError> {
        self.with_tenant(tenant, |t| {
            t.check_version(sku.as_str(), expected_version)?;
            t.remove_item(sku.as_str(), Some(deletion));
            t.append(closing);
            Ok(())
        })
    }

    async fn list_items(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        _fields: Option<&Fields<Item>>,
    ) -> Result<Page<Item>, StoreError> {
        let items: Vec<Item> = self.with_tenant(tenant, |t| t.items.values().cloned().collect());
        Ok(page(&items, limit, start.as_ref(), "sku", |i| &i.sku))
    }

    /// All or nothing, as the DynamoDB transaction: the version condition,
    /// then the idempotency key, then the three writes.
    async fn record_adjustment(
        &self,
        tenant: &TenantId,
        item: &Item,
        expected_version: u64,
        movement: &Movement,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        self.with_tenant(tenant, |t| {
            t.check_version(&item.sku, expected_version)?;
            if let Some(record) = idempotency {
                t.take_key(record)?;
            }
            t.put_item(item, &ChangeCause::request(&movement.request_id));
            t.append(Some(movement));
            Ok(())
        })
    }

    async fn list_movements(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        _partitions: u16,
        limit: u32,
        start: Option<PageKey>,
        _fields: Option<&Fields<Movement>>,
    ) -> Result<Page<Movement>, StoreError> {
        let mut newest_first = self.with_tenant(tenant, |t| {
            t.movements.get(sku.as_str()).cloned().unwrap_or_default()
        });
        newest_first.reverse();
        Ok(page(
            &newest_first,
            limit,
            start.as_ref(),
            "movement_id",
            |m| &m.movement_id,
        ))
    }

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self.idempotency(tenant, key))
    }

    async fn record_idempotency(
        &self,
        tenant: &TenantId,
        record: &IdempotencyRecord,
    ) -> Result<(), StoreError> {
        self.take_idempotency_key(tenant, record)
    }
}

/// The ledgers merged in id order, as the DynamoDB index gives them.
#[async_trait]
impl ChangeLog for MemoryItemStore {
    async fn changes(
        &self,
        tenant: &TenantId,
        sku: Option<&Sku>,
        after: Option<&str>,
        before: &str,
        limit: u32,
        _fields: Option<&Fields<Movement>>,
    ) -> Result<Vec<Movement>, StoreError> {
        let mut found: Vec<Movement> = self.with_tenant(tenant, |t| {
            t.movements
                .iter()
                .filter(|(s, _)| sku.is_none_or(|wanted| wanted.as_str() == s.as_str()))
                .flat_map(|(_, ledger)| ledger.iter())
                .filter(|m| {
                    after.is_none_or(|a| m.movement_id.as_str() > a)
                        && m.movement_id.as_str() < before
                })
                .cloned()
                .collect()
        });
        found.sort_by(|a, b| a.movement_id.cmp(&b.movement_id));
        found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(found)
    }
}

/// Locations live with the items, as in the table.
#[async_trait]
impl LocationStore for MemoryItemStore {
    async fn create_location(
        &self,
        tenant: &TenantId,
        location: &Location,
    ) -> Result<(), StoreError> {
        let mut tenants = lock(&self.tenants);
        let locations = &mut tenants.entry(tenant.to_string()).or_default().locations;
        if locations.contains_key(&location.id) {
            return Err(StoreError::AlreadyExists);
        }
        locations.insert(location.id.clone(), location.clone());
        Ok(())
    }

    async fn get_location(
        &self,
        tenant: &TenantId,
        id: &LocationId,
        _fields: Option<&Fields<Location>>,
    ) -> Result<Option<Location>, StoreError> {
        Ok(lock(&self.tenants)
            .get(tenant.as_str())
            .and_then(|t| t.locations.get(id.as_str()))
            .cloned())
    }

    async fn list_locations(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        _fields: Option<&Fields<Location>>,
    ) -> Result<Page<Location>, StoreError> {
        let all: Vec<Location> = lock(&self.tenants)
            .get(tenant.as_str())
            .map(|t| t.locations.values().cloned().collect())
            .unwrap_or_default();
        Ok(page(&all, limit, start.as_ref(), "id", |l| l.id.as_str()))
    }

    async fn delete_location(
        &self,
        tenant: &TenantId,
        id: &LocationId,
    ) -> Result<bool, StoreError> {
        let mut tenants = lock(&self.tenants);
        let Some(t) = tenants.get_mut(tenant.as_str()) else {
            return Ok(false);
        };
        if !t.locations.contains_key(id.as_str()) {
            return Ok(false);
        }
        if t.stocked.get(id.as_str()).copied().unwrap_or(0) > 0 {
            return Err(StoreError::LocationHoldsStock);
        }
        t.locations.remove(id.as_str());
        Ok(true)
    }
}

/// Levels live with the items, and each location keeps a tally of its
/// stocked levels, as in the table.
#[async_trait]
impl LevelStore for MemoryItemStore {
    async fn other_levels(
        &self,
        tenant: &TenantId,
        sku: &Sku,
    ) -> Result<Vec<StoredLevel>, StoreError> {
        Ok(self.with_tenant(tenant, |t| {
            t.levels
                .iter()
                .filter(|((s, _), _)| s == sku.as_str())
                .filter_map(|((_, location), held)| {
                    Some(held.stored(LocationId::parse(location).ok()?))
                })
                .collect()
        }))
    }

    async fn level(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        location: &LocationId,
    ) -> Result<StoredLevel, StoreError> {
        Ok(self.with_tenant(tenant, |t| t.level(sku.as_str(), location)))
    }

    async fn record_level_change(
        &self,
        tenant: &TenantId,
        write: &LevelWrite<'_>,
    ) -> Result<(), StoreError> {
        self.with_tenant(tenant, |t| {
            let sku = t.check_level_write(write)?;
            if let Some(record) = write.idempotency {
                t.take_key(record)?;
            }
            t.apply_level_write(write, &sku);
            Ok(())
        })
    }

    async fn levels_of(
        &self,
        tenant: &TenantId,
        pairs: &[(Sku, LocationId)],
    ) -> Result<Vec<Option<StoredLevel>>, StoreError> {
        Ok(self.with_tenant(tenant, |t| {
            pairs
                .iter()
                .map(|(sku, location)| {
                    let known = t.items.contains_key(sku.as_str())
                        && (location.is_default() || t.locations.contains_key(location.as_str()));
                    known.then(|| t.level(sku.as_str(), location))
                })
                .collect()
        }))
    }

    async fn record_transfer(
        &self,
        tenant: &TenantId,
        from: &LevelWrite<'_>,
        to: &LevelWrite<'_>,
    ) -> Result<(), StoreError> {
        self.with_tenant(tenant, |t| {
            let sku = t.check_level_write(from)?;
            t.check_level_write(to)?;
            if let Some(record) = from.idempotency {
                t.take_key(record)?;
            }
            t.apply_level_write(from, &sku);
            t.apply_level_write(to, &sku);
            Ok(())
        })
    }

    async fn bucket_level(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        bucket: u16,
    ) -> Result<StoredLevel, StoreError> {
        Ok(self.with_tenant(tenant, |t| t.bucket(sku.as_str(), bucket)))
    }

    async fn bucket_levels(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        count: u16,
    ) -> Result<Vec<StoredLevel>, StoreError> {
        Ok(self.with_tenant(tenant, |t| {
            (0..count).map(|b| t.bucket(sku.as_str(), b)).collect()
        }))
    }

    async fn move_stock(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        writes: &[LevelWrite<'_>],
        split: Option<SplitChange>,
    ) -> Result<(), StoreError> {
        self.with_tenant(tenant, |t| {
            let sku = sku.as_str();
            for write in writes {
                t.check_level_of(sku, write, true)?;
                if write.before.bucket.is_some()
                    && matches!(split, Some(SplitChange::Close { .. }))
                    && (write.after.on_hand, write.after.reserved) != (0, 0)
                {
                    return Err(StoreError::Corrupt(
                        "closing a bucket that holds stock".into(),
                    ));
                }
            }
            for write in writes {
                match write.before.bucket {
                    Some(b) if matches!(split, Some(SplitChange::Close { .. })) => {
                        t.buckets.remove(&(sku.to_owned(), b));
                    }
                    Some(_) => t.apply_level(write, sku, false),
                    None => {
                        let Some(mut item) = t.items.get(sku).cloned() else {
                            return Err(StoreError::ConditionFailed);
                        };
                        item.quantity = write.after.on_hand;
                        item.version += 1;
                        item.updated_at = write.at.to_owned();
                        if let Some(SplitChange::Close { versions }) = split {
                            item.version += versions;
                        }
                        match split {
                            Some(SplitChange::Open {
                                buckets,
                                partitions,
                            }) => {
                                item.stock_buckets = Some(buckets);
                                item.bucket_partitions = partitions;
                            }
                            Some(SplitChange::Close { .. }) => item.stock_buckets = None,
                            None => {}
                        }
                        t.put_item(&item, &ChangeCause::request(write.request_id));
                        t.apply_level(write, sku, false);
                    }
                }
            }
            Ok(())
        })
    }
}

impl Tenant {
    /// A level write's conditions, as the DynamoDB transaction's: the
    /// level's versions, the item, the location's tally, the holds.
    fn check_level_write(&self, write: &LevelWrite<'_>) -> Result<String, StoreError> {
        let Some(sku) = write
            .movements
            .first()
            .map(|m| m.sku.clone())
            .or_else(|| write.holds.iter().find_map(HoldWrite::sku))
        else {
            return Err(StoreError::Corrupt("a level write names no sku".into()));
        };
        self.check_level_of(&sku, write, true)?;
        Ok(sku)
    }

    /// The conditions of a write of `sku`'s level; with `item_part` false,
    /// but for the item's (an atomic batch conditions it itself).
    pub(super) fn check_level_of(
        &self,
        sku: &str,
        write: &LevelWrite<'_>,
        item_part: bool,
    ) -> Result<(), StoreError> {
        let before = write.before;
        let sku = sku.to_owned();
        let now = self.level_of(&sku, before);
        let moved = if before.bucket.is_some() {
            now.holds_version != before.holds_version
        } else if item_part {
            (now.version, now.holds_version) != (before.version, before.holds_version)
                || !self.items.contains_key(&sku)
        } else {
            now.holds_version != before.holds_version
        };
        if moved {
            return Err(StoreError::ConditionFailed);
        }
        let (was, is) = (before.level.on_hand > 0, write.after.on_hand > 0);
        if !before.location.is_default()
            && !was
            && is
            && !self.locations.contains_key(before.location.as_str())
        {
            return Err(StoreError::ConditionFailed);
        }
        for hold in &write.holds {
            let taken = match hold {
                HoldWrite::Create(r) => self.reservations.contains_key(r.id.as_str()),
                HoldWrite::End { id, .. } => self
                    .reservations
                    .get(id.as_str())
                    .is_none_or(|r| r.status != ReservationStatus::Active),
            };
            if taken {
                return Err(StoreError::ConditionFailed);
            }
        }
        Ok(())
    }

    fn apply_level_write(&mut self, write: &LevelWrite<'_>, sku: &str) {
        self.apply_level(write, sku, true);
    }

    /// Applies a level write; with `item_part` false, the item is left to
    /// the caller (an atomic batch writes it once, from its plan).
    pub(super) fn apply_level(&mut self, write: &LevelWrite<'_>, sku: &str, item_part: bool) {
        let before = write.before;
        let location = before.location.as_str().to_owned();
        if let Some(bucket) = before.bucket {
            // As in the table: a bucket's write leaves the item alone.
            self.buckets.insert(
                (sku.to_owned(), bucket),
                HeldLevel {
                    level: write.after.clone(),
                    version: before.holds_version + 1,
                    holds_check_at: write.holds_check_at,
                },
            );
        } else if before.location.is_default() {
            let holds_placed = write.raises_item_version();
            if item_part && let Some(mut item) = self.items.get(sku).cloned() {
                let moved = item.quantity != write.after.on_hand;
                // As in the table: a hold placed here raises the item's
                // version, which every writer of the item is conditioned on.
                if moved || holds_placed {
                    if moved {
                        item.quantity = write.after.on_hand;
                        item.updated_at = write.at.to_owned();
                    }
                    item.version += 1;
                    self.put_item(&item, &ChangeCause::request(write.request_id));
                }
            }
            // As in the table: the holds record is written only when they change.
            let holds_change = write.after.reserved != before.level.reserved
                || write.after.counted_at != before.level.counted_at
                || write.holds_check_at != before.holds_check_at
                || !write.holds.is_empty();
            if holds_change {
                self.default_holds.insert(
                    sku.to_owned(),
                    HeldLevel {
                        level: write.after.clone(),
                        version: before.holds_version + 1,
                        holds_check_at: write.holds_check_at,
                    },
                );
            }
        } else {
            // As in the table: a level that starts holding anything raises
            // the item's version.
            if item_part
                && write.raises_item_version()
                && let Some(mut item) = self.items.get(sku).cloned()
            {
                item.version += 1;
                self.put_item(&item, &ChangeCause::request(write.request_id));
            }
            let (was, is) = (before.level.on_hand > 0, write.after.on_hand > 0);
            let tally = self.stocked.entry(location.clone()).or_default();
            match (was, is) {
                (false, true) => *tally += 1,
                (true, false) => *tally = tally.saturating_sub(1),
                _ => {}
            }
            self.levels.insert(
                (sku.to_owned(), location),
                HeldLevel {
                    level: write.after.clone(),
                    version: before.version + 1,
                    holds_check_at: write.holds_check_at,
                },
            );
        }
        for hold in &write.holds {
            match hold {
                HoldWrite::Create(r) => {
                    self.reservations
                        .insert(r.id.as_str().to_owned(), r.clone());
                }
                HoldWrite::End {
                    id,
                    status,
                    ended_at,
                } => {
                    if let Some(r) = self.reservations.get_mut(id.as_str()) {
                        r.status = *status;
                        r.ended_at = Some(ended_at.clone());
                    }
                }
            }
        }
        for movement in &write.movements {
            self.append(Some(movement));
        }
    }
}

#[async_trait]
impl ReservationStore for MemoryItemStore {
    async fn get_reservation(
        &self,
        tenant: &TenantId,
        id: &ReservationId,
    ) -> Result<Option<StoredReservation>, StoreError> {
        Ok(self.with_tenant(tenant, |t| t.reservations.get(id.as_str()).cloned()))
    }

    async fn list_reservations(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        _partitions: u16,
        status: Option<ReservationStatus>,
        limit: u32,
        start: Option<PageKey>,
    ) -> Result<Page<StoredReservation>, StoreError> {
        let found: Vec<StoredReservation> = self.with_tenant(tenant, |t| {
            t.reservations
                .values()
                .filter(|r| r.id.sku() == sku)
                .filter(|r| status.is_none_or(|s| r.status == s))
                .cloned()
                .collect()
        });
        let ids: Vec<String> = found.iter().map(|r| r.id.ulid().to_owned()).collect();
        let page_of_ids = page(&ids, limit, start.as_ref(), "id", |id| id);
        let items = found
            .into_iter()
            .filter(|r| page_of_ids.items.iter().any(|id| id == r.id.ulid()))
            .collect();
        Ok(Page {
            items,
            next: page_of_ids.next,
        })
    }

    async fn active_holds(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        bucket: Option<u16>,
        location: Option<&LocationId>,
    ) -> Result<Vec<ActiveHold>, StoreError> {
        Ok(self.with_tenant(tenant, |t| {
            t.reservations
                .values()
                .filter(|r| r.id.sku() == sku && r.id.bucket() == bucket)
                .filter(|r| location.is_none_or(|l| &r.location == l))
                .filter(|r| r.status == ReservationStatus::Active)
                .map(|r| ActiveHold {
                    id: r.id.clone(),
                    location: r.location.clone(),
                    quantity: r.quantity,
                    expires_at_ms: r.expires_at_ms,
                })
                .collect()
        }))
    }
}
