//! Narrow async ports the use cases depend on; adapters implement them.
//!
//! Reads that take `fields` (`?fields=`) read only what those fields need:
//! in what they return, the fields outside the selection may hold
//! placeholders (the DynamoDB stores do not fetch them). Callers that read a
//! field themselves add it to the selection (`Fields::and`), and the API
//! renders such records through `Fields::select` with the client's own
//! selection. `None` reads whole records.

use crate::domain::change::{ChangeCause, Deletion};
use crate::domain::key::{ApiKeyRecord, ApiKeyView};
use crate::domain::level::Level;
use crate::domain::location::{Location, LocationId};
use crate::domain::reservation::{ReservationId, ReservationStatus};
use crate::domain::{Fields, Item, Movement, Sku, TenantId};
use async_trait::async_trait;
use std::collections::BTreeMap;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the record already exists")]
    AlreadyExists,
    /// A conditional write lost: the item changed or disappeared meanwhile.
    #[error("conditional write failed: the record changed or is gone")]
    ConditionFailed,
    #[error("the idempotency key is already recorded")]
    IdempotencyKeyTaken,
    /// A location cannot be deleted while a level at it holds stock.
    #[error("the location holds stock")]
    LocationHoldsStock,
    /// Throttled, timed out or unreachable after the SDK's retries.
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("the store failed")]
    Backend(#[source] BoxError),
    #[error("a stored record could not be read: {0}")]
    Corrupt(String),
}

/// Opaque position in a paginated query (the store's last evaluated key).
pub type PageKey = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageKey>,
}

/// A stored response for an `Idempotency-Key`, replayed on retries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    /// SHA-256 of method, path and body: the same key with another request is refused.
    pub request_hash: String,
    pub status: u16,
    pub body: String,
    pub created_at: String,
    /// Unix seconds; the store's TTL removes the record after it.
    pub expires_at: i64,
}

/// A tenant's locations. The default location is not stored: the use case
/// adds it.
#[async_trait]
pub trait LocationStore: Send + Sync {
    /// `AlreadyExists` when the id is taken.
    async fn create_location(
        &self,
        tenant: &TenantId,
        location: &Location,
    ) -> Result<(), StoreError>;

    async fn get_location(
        &self,
        tenant: &TenantId,
        id: &LocationId,
        fields: Option<&Fields<Location>>,
    ) -> Result<Option<Location>, StoreError>;

    /// In id order.
    async fn list_locations(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Location>>,
    ) -> Result<Page<Location>, StoreError>;

    /// Whether there was one to delete. `LocationHoldsStock` when some
    /// level at it holds stock (nothing is deleted then).
    async fn delete_location(&self, tenant: &TenantId, id: &LocationId)
    -> Result<bool, StoreError>;
}

/// One (sku, location) level as stored, with the version its next write is
/// conditioned on (0: none stored, an empty level).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLevel {
    pub location: LocationId,
    /// One of a split sku's stock buckets (at the default location), a
    /// level of its own partition; None: the sku's own level.
    pub bucket: Option<u16>,
    /// Read with the sku's own default-location level: into how many
    /// buckets the sku's stock is split (its `level` is then the item's
    /// part only; clients see the sum).
    pub split: Option<u16>,
    pub level: Level,
    pub version: u64,
    /// The version of the record holding the level's holds: at the default
    /// location a record of its own (the item holds on hand), elsewhere the
    /// level's (`version`).
    pub holds_version: u64,
    /// Unix ms at or before which the first active hold expires (`None`:
    /// no active hold). Until then `level.reserved` is exact; from then on
    /// the holds are read to tell which stopped counting.
    pub holds_check_at: Option<u64>,
}

impl StoredLevel {
    /// An empty bucket `bucket` (none stored yet).
    pub fn empty_bucket(bucket: u16) -> Self {
        Self {
            bucket: Some(bucket),
            ..Self::empty(LocationId::default_location())
        }
    }

    /// Whether the item's record holds this level's on hand (the sku's
    /// own level at the default location).
    pub fn on_hand_in_item(&self) -> bool {
        self.location.is_default() && self.bucket.is_none()
    }

    pub fn empty(location: LocationId) -> Self {
        Self {
            location,
            bucket: None,
            split: None,
            level: Level::default(),
            version: 0,
            holds_version: 0,
            holds_check_at: None,
        }
    }
}

/// A reservation as stored: units of one (sku, location) held until
/// `expires_at_ms`, then committed, released or expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredReservation {
    pub id: ReservationId,
    pub location: LocationId,
    pub quantity: i64,
    pub status: ReservationStatus,
    pub expires_at_ms: u64,
    pub reference: Option<String>,
    pub created_at: String,
    /// When it was committed, released or swept as expired.
    pub ended_at: Option<String>,
    pub request_id: String,
}

/// What the level reads of a hold stored as active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveHold {
    pub id: ReservationId,
    pub location: LocationId,
    pub quantity: i64,
    pub expires_at_ms: u64,
}

/// The holds a level change writes with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldWrite {
    /// A new hold (its id is not taken).
    Create(StoredReservation),
    /// An active hold ends (it is still active when written).
    End {
        id: ReservationId,
        status: ReservationStatus,
        ended_at: String,
    },
}

/// One write of a level, all or nothing: the level goes from `before` to
/// `after` (conditioned on `before.version` and the item existing), with
/// its movements, holds and idempotency record.
#[derive(Clone, Debug)]
pub struct LevelWrite<'a> {
    pub before: &'a StoredLevel,
    pub after: Level,
    pub holds_check_at: Option<u64>,
    pub movements: Vec<Movement>,
    pub holds: Vec<HoldWrite>,
    pub idempotency: Option<&'a IdempotencyRecord>,
    pub request_id: &'a str,
    pub at: &'a str,
}

impl LevelWrite<'_> {
    /// Whether the write raises the item's version even where it leaves
    /// the item's quantity alone: a hold placed at the default location
    /// (batch writes of the item, conditioned on its version alone, must
    /// see it), or a level elsewhere that starts holding anything (a delete
    /// of the item, conditioned on its version, must see it).
    pub fn raises_item_version(&self) -> bool {
        let before = &self.before.level;
        // A bucket's writes leave the item alone: that is their point (a
        // split sku's item is not deleted, nor written by batches).
        if self.before.bucket.is_some() {
            return false;
        }
        if self.before.location.is_default() {
            self.holds.iter().any(|h| matches!(h, HoldWrite::Create(_)))
        } else {
            before.on_hand == 0
                && before.reserved == 0
                && (self.after.on_hand > 0 || self.after.reserved > 0)
        }
    }
}

/// How a stock move changes a sku's split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitChange {
    /// Split into `buckets`; the item's `bucket_partitions` becomes
    /// `partitions` (the most it was ever split into, so its listings read
    /// every bucket that holds its history).
    Open { buckets: u16, partitions: u16 },
    /// No longer split; `versions`, the sum of the closed buckets'
    /// versions, is added to the item's (so the version clients see, the
    /// item's plus its buckets', never goes back).
    Close { versions: u64 },
}

/// Stock levels of a sku per location. The default location's level is the
/// item's own record (its `quantity` is on hand there).
#[async_trait]
pub trait LevelStore: Send + Sync {
    /// The stored levels of a sku at locations other than the default one,
    /// in location id order.
    async fn other_levels(
        &self,
        tenant: &TenantId,
        sku: &Sku,
    ) -> Result<Vec<StoredLevel>, StoreError>;

    /// One level, read strongly consistent; empty (version 0) when none is
    /// stored (for the default location: when the item does not exist).
    async fn level(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        location: &LocationId,
    ) -> Result<StoredLevel, StoreError>;

    /// Writes a level change, all or nothing, on the conditions that the
    /// level is still at `before.version` and the item exists. A level that
    /// starts holding stock counts in its location's tally, which needs the
    /// location to exist (so stock never lands on a deleted location); one
    /// that stops is taken off it. `ConditionFailed`: something changed,
    /// read again.
    async fn record_level_change(
        &self,
        tenant: &TenantId,
        write: &LevelWrite<'_>,
    ) -> Result<(), StoreError>;

    /// Many levels at once (`POST /v1/levels/batch-retrieve`), strongly
    /// consistent, in the order asked; `None` where the item or the location
    /// does not exist.
    async fn levels_of(
        &self,
        tenant: &TenantId,
        pairs: &[(Sku, LocationId)],
    ) -> Result<Vec<Option<StoredLevel>>, StoreError>;

    /// Two levels of one sku change together (a transfer), all or nothing,
    /// each on the conditions of [`LevelStore::record_level_change`]. The
    /// idempotency record is `from`'s.
    async fn record_transfer(
        &self,
        tenant: &TenantId,
        from: &LevelWrite<'_>,
        to: &LevelWrite<'_>,
    ) -> Result<(), StoreError>;

    /// One stock bucket of a split sku, read strongly consistent (empty,
    /// version 0, when none is stored).
    async fn bucket_level(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        bucket: u16,
    ) -> Result<StoredLevel, StoreError>;

    /// Buckets `0..count` of a sku, strongly consistent, in bucket order.
    async fn bucket_levels(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        count: u16,
    ) -> Result<Vec<StoredLevel>, StoreError>;

    /// Moves units between a sku's own default-location level and its
    /// buckets, or between buckets, all or nothing: each level on the
    /// conditions of [`LevelStore::record_level_change`] (the sku's own
    /// level also on the item's version), without movements, since the
    /// sku's stock does not change. `split`: the item's split changes in
    /// the same transaction (closing it deletes the buckets' records).
    async fn move_stock(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        writes: &[LevelWrite<'_>],
        split: Option<SplitChange>,
    ) -> Result<(), StoreError>;
}

/// Reservations, read strongly consistent (they live with their item).
#[async_trait]
pub trait ReservationStore: Send + Sync {
    async fn get_reservation(
        &self,
        tenant: &TenantId,
        id: &ReservationId,
    ) -> Result<Option<StoredReservation>, StoreError>;

    /// A sku's reservations in id (creation) order, from after `start`,
    /// from the item's collection and its first `partitions` buckets'.
    async fn list_reservations(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        partitions: u16,
        status: Option<ReservationStatus>,
        limit: u32,
        start: Option<PageKey>,
    ) -> Result<Page<StoredReservation>, StoreError>;

    /// The holds of a sku stored as active (some may have expired), in its
    /// own collection or one bucket's, at one location or all. Only active
    /// holds are read, however long the sku's history of ended ones.
    async fn active_holds(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        bucket: Option<u16>,
        location: Option<&LocationId>,
    ) -> Result<Vec<ActiveHold>, StoreError>;
}

/// Stock and description of a tenant's items, plus their ledger.
#[async_trait]
pub trait ItemStore: Send + Sync {
    async fn get_item(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        fields: Option<&Fields<Item>>,
    ) -> Result<Option<Item>, StoreError>;

    /// [`ItemStore::get_item`] read eventually consistent (half the read
    /// units): a hint, never a condition (a split sku's orders are routed
    /// by it, and every write they make is conditioned on what it reads).
    async fn get_item_hint(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        fields: Option<&Fields<Item>>,
    ) -> Result<Option<Item>, StoreError> {
        self.get_item(tenant, sku, fields).await
    }

    /// Creates the item (and its opening movement) unless the sku exists.
    async fn create_item(
        &self,
        tenant: &TenantId,
        item: &Item,
        opening: Option<&Movement>,
        cause: &ChangeCause,
    ) -> Result<(), StoreError>;

    /// Writes `item` if the stored version is still `expected_version`.
    async fn replace_item(
        &self,
        tenant: &TenantId,
        item: &Item,
        expected_version: u64,
        cause: &ChangeCause,
    ) -> Result<(), StoreError>;

    /// Deletes the item at `expected_version`, recording the closing
    /// movement and the deletion's marker (what its event derives from).
    async fn delete_item(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        expected_version: u64,
        closing: Option<&Movement>,
        deletion: &Deletion,
    ) -> Result<(), StoreError>;

    async fn list_items(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Item>>,
    ) -> Result<Page<Item>, StoreError>;

    /// Atomically sets the new quantity (if the version is unchanged), appends
    /// the movement and stores the idempotent response when given.
    async fn record_adjustment(
        &self,
        tenant: &TenantId,
        item: &Item,
        expected_version: u64,
        movement: &Movement,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError>;

    /// Newest first, read strongly consistent (a count sums what applied
    /// after it from here), from the item's collection and its first
    /// `partitions` buckets' (`Item::bucket_partitions`).
    async fn list_movements(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        partitions: u16,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Movement>>,
    ) -> Result<Page<Movement>, StoreError>;

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Takes an `Idempotency-Key` for a response that changed nothing (a
    /// refusal that must stay the answer); `IdempotencyKeyTaken` if a
    /// record of it has not expired.
    async fn record_idempotency(
        &self,
        tenant: &TenantId,
        record: &IdempotencyRecord,
    ) -> Result<(), StoreError>;
}

/// A tenant's stock movements in movement id order: what the change feed
/// (`GET /v1/changes`) reads.
#[async_trait]
pub trait ChangeLog: Send + Sync {
    /// Up to `limit` movements with `after < movement_id < before`, in
    /// ascending id order; only those of `sku` when given. `fields` must
    /// include `movement_id` (the order is by it).
    async fn changes(
        &self,
        tenant: &TenantId,
        sku: Option<&Sku>,
        after: Option<&str>,
        before: &str,
        limit: u32,
        fields: Option<&Fields<Movement>>,
    ) -> Result<Vec<Movement>, StoreError>;
}

/// What the authorizer needs of the hashed API keys: find one, note its use.
#[async_trait]
pub trait ApiKeyLookup: Send + Sync {
    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Records `last_used_at`.
    async fn touch_key(&self, key_hash: &str, now: &str) -> Result<(), StoreError>;
}

/// A tenant's management of its hashed API keys (keys API, admin CLI).
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// `AlreadyExists` if a key with this hash exists.
    async fn put_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;
    /// A tenant's keys, oldest first.
    async fn list_keys(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<ApiKeyView>>,
    ) -> Result<Page<ApiKeyRecord>, StoreError>;
    /// With `fields`, the record's other attributes (`key_hash`,
    /// `usage_key`...) are not read.
    async fn find_key_by_id(
        &self,
        tenant: &TenantId,
        key_id: &str,
        fields: Option<&Fields<ApiKeyView>>,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Sets `revoked_at` unless already set.
    async fn revoke_key(&self, key_hash: &str, now: &str) -> Result<(), StoreError>;
}

use crate::domain::batch::{Batch, BatchError, BatchStatus, ChunkMessage, RecordFailure};

pub use crate::domain::chunk_plan::ChunkDisposition;

/// A batch's header as every batch use case reads and finishes it.
#[async_trait]
pub trait BatchHeaders: Send + Sync {
    async fn get_batch(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        fields: Option<&Fields<Batch>>,
    ) -> Result<Option<Batch>, StoreError>;

    /// Records outcomes decided at submission (records that failed validation).
    async fn record_failures(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        failures: &[RecordFailure],
    ) -> Result<(), StoreError>;

    /// Moves the batch to its terminal status once every chunk is counted.
    /// Returns the terminal batch while its status event is still to be
    /// published (from the call that made the transition, and again from
    /// later calls until `mark_notified`).
    async fn finalize(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> Result<Option<Batch>, StoreError>;

    /// The batch's terminal event was published: stop offering it.
    async fn mark_notified(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError>;

    /// Fails an upload batch whose file is missing or unusable, before any
    /// of its records was enqueued (a no-op otherwise); returns whether
    /// this call failed it.
    async fn fail_upload(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        error: &BatchError,
        failed_records: u64,
    ) -> Result<bool, StoreError>;
}

/// What the batches API does: submit, abort, list and read batches.
#[async_trait]
pub trait BatchSubmissions: BatchHeaders {
    /// Stores the header and, atomically with it, the idempotent response.
    async fn create_batch(
        &self,
        tenant: &TenantId,
        batch: &Batch,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError>;

    /// Marks a batch failed before any chunk ran (e.g. it could not be enqueued).
    async fn abort_batch(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError>;

    /// Newest first, optionally only those with `status`.
    async fn list_batches(
        &self,
        tenant: &TenantId,
        status: Option<BatchStatus>,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Batch>>,
    ) -> Result<Page<Batch>, StoreError>;

    /// Failed records in record order.
    async fn list_failures(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<RecordFailure>>,
    ) -> Result<Page<RecordFailure>, StoreError>;

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
}

/// One record of a group, planned against the item read just before.
pub struct PlannedRecord<'a> {
    pub record: &'a crate::domain::batch::BatchRecord,
    pub plan: crate::domain::chunk_plan::RecordPlan,
    /// The version of the item the plan was made against (None: no item);
    /// the commit is conditioned on it.
    pub read_version: Option<u64>,
}

/// What a chunk's planning reads of its skus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemsRead {
    pub items: std::collections::HashMap<String, Item>,
    /// Units held now by reservations at the default location (holds that
    /// expired no longer count), by sku; absent: none. A hold placed there
    /// raises the item's version, so a write conditioned on the version
    /// read with it cannot miss one.
    pub held: std::collections::HashMap<String, i64>,
}

/// What an atomic chunk commits: the domain's plan, and the levels its
/// counts, transfers and holds change (none for a rejected plan).
#[derive(Clone, Debug)]
pub struct AtomicCommit {
    pub plan: crate::domain::chunk_plan::AtomicPlan,
    pub levels: Vec<AtomicLevelWrite>,
}

/// A level an atomic chunk changes, conditioned on its versions as read.
/// Its movements are in the plan's ledger; the item's part of the level
/// (on hand at the default location, its version) is in the plan's items.
#[derive(Clone, Debug)]
pub struct AtomicLevelWrite {
    pub sku: Sku,
    pub before: StoredLevel,
    /// As stored: expired holds not swept yet still count here.
    pub after: Level,
    pub holds_check_at: Option<u64>,
    /// The holds placed.
    pub holds: Vec<HoldWrite>,
}

impl AtomicLevelWrite {
    /// As a level write (no movement, no key: the batch's claim is its).
    pub fn level_write<'a>(&'a self, request_id: &'a str, at: &'a str) -> LevelWrite<'a> {
        LevelWrite {
            before: &self.before,
            after: self.after.clone(),
            holds_check_at: self.holds_check_at,
            movements: Vec::new(),
            holds: self.holds.clone(),
            idempotency: None,
            request_id,
            at,
        }
    }
}

/// How an atomic chunk's commit ended.
#[derive(Debug, PartialEq, Eq)]
pub enum AtomicCommitted {
    Committed,
    /// Another delivery's claim committed first: its outcome stands.
    Decided,
    /// Something read changed: nothing committed; read and plan again.
    Retry,
}

/// How a group's commit ended.
#[derive(Debug, PartialEq, Eq)]
pub enum GroupCommit {
    /// Every record's effect, ledger entry, failure entry and outcome marker
    /// committed together.
    Committed,
    /// Nothing committed: a concurrent write changed an item, or another
    /// delivery recorded some outcomes first. These positions in the group
    /// are still to do (re-read and planned again).
    Retry(Vec<usize>),
}

impl GroupCommit {
    /// A lost race in which the records at `settled` (positions in a group
    /// of `len`) were done by another delivery: the rest are still to do.
    pub fn retry_unsettled(len: usize, settled: &std::collections::HashSet<usize>) -> Self {
        Self::Retry((0..len).filter(|i| !settled.contains(i)).collect())
    }
}

/// The primitives the batch worker applies chunks with
/// (the batch worker's loop, `apply_chunk`, runs over them).
#[async_trait]
pub trait ChunkApplication: BatchHeaders {
    /// The header of a batch whose chunk is delivered: it is written before
    /// any chunk is enqueued, so none means the message or the table is wrong.
    async fn delivered_header(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> Result<Batch, StoreError> {
        self.get_batch(tenant, batch_id, None)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("batch {batch_id} has no header")))
    }

    /// Whether the chunk was counted into the header already (done).
    async fn chunk_counted(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        chunk: u32,
    ) -> Result<bool, StoreError>;

    /// `accepted` -> `processing` when the first chunk starts.
    async fn mark_processing(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError>;

    /// The outcome markers of these records (strongly consistent):
    /// index -> applied?
    async fn read_outcomes(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        indexes: &[u32],
    ) -> Result<std::collections::HashMap<u32, bool>, StoreError>;

    /// The current items of these skus and the units held at their
    /// default location (strongly consistent), by sku.
    async fn read_items(&self, tenant: &TenantId, skus: &[&str]) -> Result<ItemsRead, StoreError>;

    /// Commits one group in one transaction: each record's effect
    /// (conditioned on the version read), ledger movement, failure entry and
    /// outcome marker (conditioned on not existing).
    /// `cause` is stored with each item written (its events name it).
    async fn commit_group(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        cause: &ChangeCause,
        group: &[PlannedRecord<'_>],
    ) -> Result<GroupCommit, StoreError>;

    /// Adds a chunk's outcome counts to the header exactly once.
    async fn count_chunk(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        chunk: u32,
        applied: u64,
        failed: u64,
    ) -> Result<(), StoreError>;

    /// Atomic mode (one chunk, at most 99 records): commits the plan in one
    /// transaction with the header's claim (`chunks_done` 0 -> 1): every
    /// item and level write conditioned on its version as read, or, for a
    /// rejected plan, nothing but the claim and its failure report.
    async fn commit_atomic_chunk(
        &self,
        chunk: &ChunkMessage,
        commit: &AtomicCommit,
    ) -> Result<AtomicCommitted, StoreError>;

    /// Once an atomic chunk's claim committed: writes what follows from it
    /// (ledger movements, deletion markers, failure entries), idempotently.
    async fn finish_atomic_chunk(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> Result<(), StoreError>;

    /// A dead-lettered chunk whose body cannot be read: count its records as
    /// failed under one synthetic failure entry.
    async fn fail_unreadable_chunk(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        chunk: u32,
        record_count: u64,
    ) -> Result<(), StoreError>;
}

/// What the upload splitter records of its progress through a file.
#[async_trait]
pub trait UploadSplits: BatchHeaders {
    /// An upload batch's file arrived: `awaiting_upload` -> `accepted`
    /// (a no-op in any other status).
    async fn begin_split(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError>;

    /// Records how far the splitter got (shown as the batch's progress).
    async fn record_split_progress(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        records_read: u64,
        records_enqueued: u64,
    ) -> Result<(), StoreError>;

    /// The file was read whole: sets the totals, after which the workers'
    /// counts can finish the batch. Only the first call applies them;
    /// returns whether this call did.
    async fn complete_split(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        totals: &SplitTotals,
    ) -> Result<bool, StoreError>;
}

/// Every batch port: what one adapter implements, and what code holding a
/// single store (tests, the benchmark) uses. Each use case takes only its
/// own port.
pub trait BatchStore: BatchSubmissions + ChunkApplication + UploadSplits {}

impl<T: BatchSubmissions + ChunkApplication + UploadSplits + ?Sized> BatchStore for T {}

/// What the first read of an uploaded file found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitTotals {
    pub total: u64,
    /// Rows that failed validation (already recorded as failures).
    pub invalid: u64,
    pub chunks: u64,
}

/// A presigned upload: what the client sends, where, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresignedUpload {
    pub url: String,
    pub method: String,
    /// Headers the client must send exactly (they are part of the signature).
    pub headers: BTreeMap<String, String>,
}

/// A readable stream of an uploaded file.
pub type UploadBody = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Uploaded batch files (S3 when deployed).
#[async_trait]
pub trait UploadStore: Send + Sync {
    /// A URL that accepts one PUT of exactly `size_bytes` at `key`.
    async fn presign_put(
        &self,
        key: &str,
        size_bytes: u64,
        ttl: std::time::Duration,
    ) -> Result<PresignedUpload, StoreError>;
    /// The stored object's size, or None when nothing was uploaded.
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError>;
    /// Streams the object (never loaded whole).
    async fn open(&self, key: &str) -> Result<UploadBody, StoreError>;
}

/// A chunk ready to send: its body and the attributes that travel with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkEnvelope {
    pub body: String,
    pub tenant_id: String,
    pub batch_id: String,
    pub request_id: String,
    pub chunk: u32,
    pub record_count: usize,
}

#[async_trait]
pub trait ChunkQueue: Send + Sync {
    /// Sends every chunk (batched, with retries of the entries SQS refused).
    async fn send_chunks(&self, chunks: &[ChunkEnvelope]) -> Result<(), StoreError>;
}

// ---------------------------------------------------------------- events

use crate::domain::event::Event;

/// Publishes status events (to the SNS topic when deployed).
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes every event (batched, retrying the entries refused).
    async fn publish(&self, events: &[Event]) -> Result<(), StoreError>;

    /// Publishes events whose cause is already committed: nothing can undo
    /// or redo it, so a failure is logged with the event ids, not returned.
    async fn publish_or_log(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.publish(events).await {
            let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
            tracing::error!(event_ids = %ids.join(","), error = %crate::telemetry::error_chain(&e), "publishing events failed; they are lost");
        }
    }
}

/// Publishes nowhere: for functions and tests that do not emit events.
pub struct NoEvents;

#[async_trait]
impl EventPublisher for NoEvents {
    async fn publish(&self, _events: &[Event]) -> Result<(), StoreError> {
        Ok(())
    }
}

// ---------------------------------------------------------------- webhooks

use crate::domain::webhook::{Attempt, Delivery, DeliveryStatus, StoredSecret, Webhook};

/// A webhook with its encrypted signing secrets, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRecord {
    pub webhook: Webhook,
    /// Newest first; older ones carry the end of their 24 h overlap.
    pub secrets: Vec<StoredSecret>,
}

/// A delivery with the exact bytes every attempt sends.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    pub delivery: Delivery,
    pub payload: String,
    pub request_id: String,
}

/// What a delivery attempt tells about the endpoint's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointHealth {
    Succeeded,
    Failing {
        now: String,
    },
    /// `request_id`: the request whose delivery disabled it (the event names it).
    Disable {
        reason: String,
        now: String,
        request_id: String,
    },
}

/// What the dispatcher needs of the webhooks: find the endpoints an event
/// goes to, track each delivery, record an endpoint's health.
#[async_trait]
pub trait DeliveryTracking: Send + Sync {
    /// With `fields`, the secrets are not read (empty).
    async fn list_webhooks(
        &self,
        tenant: &TenantId,
        fields: Option<&Fields<Webhook>>,
    ) -> Result<Vec<WebhookRecord>, StoreError>;
    /// With `fields`, the secrets are not read (empty).
    async fn get_webhook(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        fields: Option<&Fields<Webhook>>,
    ) -> Result<Option<WebhookRecord>, StoreError>;
    /// Records the endpoint's health; returns true when this call disabled it.
    async fn set_health(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        health: &EndpointHealth,
    ) -> Result<bool, StoreError>;
    /// Creates the delivery unless it exists; returns whether it was created.
    async fn create_delivery(
        &self,
        tenant: &TenantId,
        rec: &DeliveryRecord,
    ) -> Result<bool, StoreError>;
    /// With `fields`, the payload and request id are not read (empty).
    async fn get_delivery(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        delivery_id: &str,
        fields: Option<&Fields<Delivery>>,
    ) -> Result<Option<DeliveryRecord>, StoreError>;
    async fn record_attempt(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        delivery_id: &str,
        attempt: &Attempt,
        status: DeliveryStatus,
        next_retry_at: Option<&str>,
    ) -> Result<(), StoreError>;
}

/// Everything the webhooks API manages: endpoints, their secrets, the
/// delivery log (and what one adapter implements).
#[async_trait]
pub trait WebhookStore: DeliveryTracking {
    async fn create_webhook(
        &self,
        tenant: &TenantId,
        rec: &WebhookRecord,
    ) -> Result<(), StoreError>;
    /// `ConditionFailed` when there is no such webhook.
    async fn delete_webhook(&self, tenant: &TenantId, webhook_id: &str) -> Result<(), StoreError>;
    /// Replaces the secrets if the webhook still has `expected` (a rotation
    /// racing another gets `ConditionFailed`).
    async fn replace_secrets(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        expected: &[StoredSecret],
        secrets: &[StoredSecret],
        now: &str,
    ) -> Result<(), StoreError>;
    /// Sets a delivery back to pending (for a replay).
    async fn reopen_delivery(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        delivery_id: &str,
        now: &str,
    ) -> Result<(), StoreError>;
    /// Newest first.
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Delivery>>,
    ) -> Result<Page<Delivery>, StoreError>;
}

/// Encrypts signing secrets (KMS), bound to the tenant and webhook they
/// belong to through the encryption context.
#[async_trait]
pub trait SecretCipher: Send + Sync {
    async fn encrypt(
        &self,
        plaintext: &str,
        context: &[(&str, &str)],
    ) -> Result<String, StoreError>;
    async fn decrypt(
        &self,
        ciphertext: &str,
        context: &[(&str, &str)],
    ) -> Result<String, StoreError>;
}

/// One queued delivery attempt series: which delivery to (re)send.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryJob {
    pub v: u8,
    pub tenant_id: String,
    pub webhook_id: String,
    pub delivery_id: String,
    pub request_id: String,
    /// The event's ordering key (`Event::ordering_key`): jobs of one webhook
    /// and one key are delivered one at a time, in the order queued, and a
    /// retry holds back the ones behind it. Empty in jobs queued before
    /// ordering existed.
    #[serde(default)]
    pub ordering_key: String,
}

impl DeliveryJob {
    /// What the job stays in order with: its webhook and its event's key.
    pub fn ordering_group(&self) -> String {
        format!("{}#{}", self.webhook_id, self.ordering_key)
    }
}

/// The dispatcher's ordered feed of events: one message per event, kept in
/// order per `Event::ordering_key`, deduplicated by event id.
#[async_trait]
pub trait WebhookEventQueue: Send + Sync {
    async fn enqueue_events(&self, events: &[Event]) -> Result<(), StoreError>;
}

#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    async fn enqueue(&self, jobs: &[DeliveryJob]) -> Result<(), StoreError>;
    /// Hides a received job for `delay` before its next attempt.
    async fn retry_in(
        &self,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> Result<(), StoreError>;
    /// Moves an exhausted job to the dead-letter queue (for redrive).
    async fn dead_letter(&self, job: &DeliveryJob) -> Result<(), StoreError>;
    /// Makes received jobs visible again at once: jobs held back behind a
    /// failed one of their group, which SQS keeps blocked until the failed
    /// one's retry is due (otherwise they would wait out the visibility
    /// timeout).
    async fn release(&self, receipt_handles: &[String]) -> Result<(), StoreError>;
    /// Moves a message that can never be processed (unreadable) to the
    /// dead-letter queue at once, with the reason, instead of letting it be
    /// received again and again until the redrive count.
    async fn dead_letter_unreadable(&self, body: &str, reason: &str) -> Result<(), StoreError>;
}

// --- Webhook deliveries ---------------------------------------------------

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// Network error, timeout, 3xx, 4xx other than 410, 5xx, or refused target: retry later.
    Failed,
    /// 410: the receiver asked us to stop; disable the endpoint.
    Gone,
}

/// Result of one delivery attempt. `error` is short and safe to show to the endpoint owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub retry_after: Option<std::time::Duration>,
    pub outcome: Outcome,
}

/// Sends one webhook POST. Implementations never fail: a refused target, a
/// network error or a timeout is an `AttemptResult` with `Outcome::Failed`.
#[async_trait]
pub trait WebhookTransport: Send + Sync {
    async fn send(&self, url: &str, headers: &[(String, String)], body: Vec<u8>) -> AttemptResult;
}
