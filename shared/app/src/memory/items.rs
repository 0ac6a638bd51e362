use super::{lock, page};
use crate::domain::change::{ChangeCause, CommittedChange, Deletion};
use crate::domain::{Fields, Item, Movement, Sku, TenantId};
use crate::ports::{ChangeLog, IdempotencyRecord, ItemStore, Page, PageKey, StoreError};
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
    /// What the call under way committed (moved to the store's log).
    committed: Vec<Logged>,
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
