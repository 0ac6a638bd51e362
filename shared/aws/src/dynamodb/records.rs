//! Stored shapes of the domain records and their conversions.

use super::projection::Unread;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use stockroom_app::ports::IdempotencyRecord;
use stockroom_domain::change::{ChangeCause, Deletion};
use stockroom_domain::{Item, Movement, TenantId};

pub(crate) const ITEM_SK: &str = "ITEM";
pub(crate) const IDEM_SK: &str = "IDEM";
pub(crate) const MOVEMENT_PREFIX: &str = "M#";

fn is_zero(n: &u16) -> bool {
    *n == 0
}

pub(crate) fn item_pk(tenant: &TenantId, sku: &str) -> String {
    format!("T#{tenant}#I#{sku}")
}

/// A split sku's stock bucket: a collection of its own (the bucket's level
/// `L#default`, its holds and its movements), in a partition of its own so
/// a flash sale's orders spread over the buckets (`stock_split`). A sku
/// never holds `#`, so no item's key is a bucket's.
pub(crate) fn bucket_pk(tenant: &TenantId, sku: &str, bucket: u16) -> String {
    format!("T#{tenant}#I#{sku}#S#{bucket}")
}

/// Where a level's records live: the item's collection, or its bucket's.
pub(crate) fn collection_pk(tenant: &TenantId, sku: &str, bucket: Option<u16>) -> String {
    match bucket {
        Some(b) => bucket_pk(tenant, sku, b),
        None => item_pk(tenant, sku),
    }
}

/// The listing index (`gsi3`, keys only) spreads a tenant's items over this
/// many partitions: a first import creates thousands of items a second, one
/// index write each, more than one partition takes (docs/scaling.md). Only
/// a create, a replace or a delete writes the index: a quantity change
/// touches neither its keys nor what it projects.
pub(crate) const LISTING_SHARDS: u32 = 16;

pub(crate) fn listing_pk(tenant: &TenantId, shard: u32) -> String {
    format!("T#{tenant}#L#{shard}")
}

/// Where the release before lists items (`gsi1`, all attributes): items
/// written before the listing was sharded, until written again in the
/// sharded layout or backfilled (`stockroom-admin backfill-listing`), and
/// every item written in the compatible layout (also in `gsi3`).
pub(crate) fn legacy_listing_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}")
}

/// Shards of a tenant's change feed index (`gsi2`): a busy tenant's
/// movements spread over this many index partitions (ids grow, so one
/// partition would take every write at its end and never split for heat).
/// To raise it: readers must query the new count before any writer uses
/// it (entries stay in the shard they were written to, and shards `0..n`
/// of a larger count include those of a smaller one), so deploy
/// `FEED_READ_SHARDS` first, then the writers' count ([`WriteLayout`]).
/// Lowering it means rewriting `gsi2pk` on every movement
/// (docs/guarantees.md#change-feed).
pub(crate) const FEED_COMPATIBLE_WRITE_SHARDS: u32 = 8;
/// What the feed queries: the most shards a writer may use (at 5,000
/// movements/s, 8 write shards take 0.63 of a partition each, 16 take 0.31:
/// docs/scaling.md).
pub(crate) const FEED_READ_SHARDS: u32 = 16;

/// Where the stores put what sharding moved (docs/scaling.md). This release
/// reads both layouts; what it writes is the stack's `StoreWriteLayout`, so
/// that a function of the release before, still serving during a gradual
/// deploy or again after a rollback, finds everything this one writes
/// (docs/operations.md#store-write-layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteLayout {
    /// What the release before reads: movements in 8 feed shards, items
    /// also under the tenant's `gsi1` key, a new batch's markers and
    /// failures under its own keys.
    #[default]
    Compatible,
    /// 16 feed shards, items in `gsi3` only, markers and failures in 32
    /// shards.
    Sharded,
}

impl WriteLayout {
    /// `Sharded` when `sharded`, else `Compatible`.
    pub fn sharded_if(sharded: bool) -> Self {
        if sharded {
            Self::Sharded
        } else {
            Self::Compatible
        }
    }

    pub(crate) fn feed_shards(self) -> u32 {
        match self {
            Self::Compatible => FEED_COMPATIBLE_WRITE_SHARDS,
            Self::Sharded => FEED_READ_SHARDS,
        }
    }

    pub(crate) fn sharded(self) -> bool {
        self == Self::Sharded
    }
}

/// The feed shard of a sku (one sku is always in one shard, so its order is
/// exact).
pub(crate) fn feed_shard(sku: &str, shards: u32) -> u32 {
    super::sharded::shard_of(sku, shards)
}

pub(crate) fn feed_pk(tenant: &TenantId, shard: u32) -> String {
    format!("T#{tenant}#CH#{shard}")
}

pub(crate) fn idempotency_pk(tenant: &TenantId, key: &str) -> String {
    format!("T#{tenant}#K#{key}")
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ItemRecord {
    pub pk: String,
    pub sk: String,
    /// The listing of the release before (`legacy_listing_pk`, the sku):
    /// written in the compatible layout only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1sk: Option<String>,
    /// Listing index keys (`listing_pk`, the sku).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gsi3pk: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gsi3sk: String,
    pub tenant_id: String,
    pub sku: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub quantity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_stock_threshold: Option<i64>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// While the sku's stock is split: into how many buckets
    /// (`bucket_pk`); `quantity` is then the item's own part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_buckets: Option<u16>,
    /// The most buckets it was ever split into: where its movements and
    /// holds are, kept once the split ends.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bucket_partitions: u16,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    /// The request (and batch) of the last write: the events that the
    /// write causes, derived from the table's stream, name them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub changed_by_request: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by_batch: Option<String>,
}

impl ItemRecord {
    pub fn new(tenant: &TenantId, item: &Item, cause: &ChangeCause, layout: WriteLayout) -> Self {
        let compatible = !layout.sharded();
        Self {
            pk: item_pk(tenant, &item.sku),
            sk: ITEM_SK.into(),
            gsi1pk: compatible.then(|| legacy_listing_pk(tenant)),
            gsi1sk: compatible.then(|| item.sku.clone()),
            gsi3pk: listing_pk(tenant, super::sharded::shard_of(&item.sku, LISTING_SHARDS)),
            gsi3sk: item.sku.clone(),
            tenant_id: tenant.to_string(),
            sku: item.sku.clone(),
            name: item.name.clone(),
            description: item.description.clone(),
            quantity: item.quantity,
            low_stock_threshold: item.low_stock_threshold,
            attributes: item.attributes.clone(),
            stock_buckets: item.stock_buckets,
            bucket_partitions: item.bucket_partitions,
            version: item.version,
            created_at: item.created_at.clone(),
            updated_at: item.updated_at.clone(),
            changed_by_request: cause.request_id.clone(),
            changed_by_batch: cause.batch_id.clone(),
        }
    }

    pub fn cause(&self) -> ChangeCause {
        ChangeCause {
            request_id: self.changed_by_request.clone(),
            batch_id: self.changed_by_batch.clone(),
        }
    }
}

impl Unread for ItemRecord {
    fn unread() -> Self {
        Self {
            pk: String::new(),
            sk: String::new(),
            gsi1pk: None,
            gsi1sk: None,
            gsi3pk: String::new(),
            gsi3sk: String::new(),
            tenant_id: String::new(),
            sku: String::new(),
            name: String::new(),
            description: None,
            quantity: 0,
            low_stock_threshold: None,
            attributes: BTreeMap::new(),
            stock_buckets: None,
            bucket_partitions: 0,
            version: 0,
            created_at: String::new(),
            updated_at: String::new(),
            changed_by_request: String::new(),
            changed_by_batch: None,
        }
    }
}

impl From<ItemRecord> for Item {
    fn from(r: ItemRecord) -> Self {
        Item {
            sku: r.sku,
            name: r.name,
            description: r.description,
            quantity: r.quantity,
            low_stock_threshold: r.low_stock_threshold,
            attributes: r.attributes,
            stock_buckets: r.stock_buckets,
            bucket_partitions: r.bucket_partitions,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct MovementRecord {
    pub pk: String,
    pub sk: String,
    /// Change feed index keys (`feed_pk`, the movement id); absent on
    /// movements written before the feed existed until backfilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2sk: Option<String>,
    pub tenant_id: String,
    pub movement_id: String,
    pub sku: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_bucket: Option<u16>,
    pub delta: i64,
    pub quantity_after: i64,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// Stored only when false (a change before its level's last count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applies: Option<bool>,
    /// Stored only on movements of holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_delta: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_after: Option<i64>,
    pub created_at: String,
}

impl MovementRecord {
    pub fn new(tenant: &TenantId, m: &Movement, layout: WriteLayout) -> Self {
        // A bucket's movements spread over the feed's shards too: a split
        // sku's orders would otherwise all write one feed shard.
        let feed_key = match m.stock_bucket {
            Some(b) => format!("{}#S#{b}", m.sku),
            None => m.sku.clone(),
        };
        Self {
            pk: collection_pk(tenant, &m.sku, m.stock_bucket),
            sk: format!("{MOVEMENT_PREFIX}{}", m.movement_id),
            gsi2pk: Some(feed_pk(tenant, feed_shard(&feed_key, layout.feed_shards()))),
            gsi2sk: Some(m.movement_id.clone()),
            tenant_id: tenant.to_string(),
            movement_id: m.movement_id.clone(),
            sku: m.sku.clone(),
            location: m.location.clone(),
            stock_bucket: m.stock_bucket,
            delta: m.delta,
            quantity_after: m.quantity_after,
            reason: m.reason.clone(),
            reference: m.reference.clone(),
            request_id: m.request_id.clone(),
            key_id: m.key_id.clone(),
            batch_id: m.batch_id.clone(),
            record_id: m.record_id.clone(),
            occurred_at: m.occurred_at.clone(),
            applies: (!m.applies).then_some(false),
            reserved_delta: (m.reserved_delta != 0).then_some(m.reserved_delta),
            reserved_after: m.reserved_after,
            created_at: m.created_at.clone(),
        }
    }
}

impl Unread for MovementRecord {
    fn unread() -> Self {
        Self {
            pk: String::new(),
            sk: String::new(),
            gsi2pk: None,
            gsi2sk: None,
            tenant_id: String::new(),
            movement_id: String::new(),
            sku: String::new(),
            location: None,
            stock_bucket: None,
            delta: 0,
            quantity_after: 0,
            reason: String::new(),
            reference: None,
            request_id: String::new(),
            key_id: None,
            batch_id: None,
            record_id: None,
            occurred_at: None,
            applies: None,
            reserved_delta: None,
            reserved_after: None,
            created_at: String::new(),
        }
    }
}

impl From<MovementRecord> for Movement {
    fn from(r: MovementRecord) -> Self {
        Movement {
            movement_id: r.movement_id,
            sku: r.sku,
            location: r.location,
            stock_bucket: r.stock_bucket,
            delta: r.delta,
            quantity_after: r.quantity_after,
            reason: r.reason,
            reference: r.reference,
            request_id: r.request_id,
            key_id: r.key_id,
            batch_id: r.batch_id,
            record_id: r.record_id,
            occurred_at: r.occurred_at,
            applies: r.applies.unwrap_or(true),
            reserved_delta: r.reserved_delta.unwrap_or(0),
            reserved_after: r.reserved_after,
            created_at: r.created_at,
        }
    }
}

/// Deletion markers: `pk = T#<tenant>#I#<sku>, sk = X#<del_ulid>`, written
/// in the deletion's transaction so its event can name who deleted the item
/// (the stream's removal carries only the item as it was). Kept a day.
pub(crate) const DELETION_PREFIX: &str = "X#";
const DELETION_KEPT_SECONDS: i64 = 86_400;

#[derive(Serialize, Deserialize)]
pub(crate) struct DeletionStored {
    pub pk: String,
    pub sk: String,
    pub tenant_id: String,
    pub deletion_id: String,
    pub sku: String,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    pub deleted_at: String,
    pub expires_at: i64,
}

impl DeletionStored {
    pub fn new(tenant: &TenantId, d: &Deletion) -> Self {
        Self {
            pk: item_pk(tenant, &d.sku),
            sk: format!("{DELETION_PREFIX}{}", d.id),
            tenant_id: tenant.to_string(),
            deletion_id: d.id.clone(),
            sku: d.sku.clone(),
            request_id: d.cause.request_id.clone(),
            batch_id: d.cause.batch_id.clone(),
            deleted_at: d.deleted_at.clone(),
            expires_at: stockroom_app::clock::now().unix_timestamp() + DELETION_KEPT_SECONDS,
        }
    }
}

impl From<DeletionStored> for Deletion {
    fn from(r: DeletionStored) -> Self {
        Deletion {
            id: r.deletion_id,
            sku: r.sku,
            cause: ChangeCause {
                request_id: r.request_id,
                batch_id: r.batch_id,
            },
            deleted_at: r.deleted_at,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct IdempotencyStored {
    pub pk: String,
    pub sk: String,
    pub key: String,
    pub request_hash: String,
    pub status: u16,
    pub body: String,
    pub created_at: String,
    /// TTL attribute of the table (Unix seconds).
    pub expires_at: i64,
}

impl IdempotencyStored {
    /// The transaction action that takes an `Idempotency-Key`: free, or
    /// held by an expired record (TTL removes those late, so one may
    /// linger and is overwritten). Its failed condition means the key is
    /// taken.
    pub fn put(
        table: &str,
        tenant: &TenantId,
        record: &IdempotencyRecord,
    ) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, stockroom_app::ports::StoreError> {
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(table)
            .set_item(Some(super::to_attrs(&Self::new(tenant, record))?))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(
                ":now",
                super::n(stockroom_app::clock::now().unix_timestamp()),
            )
            .build()
            .map_err(super::error::build_error)?;
        Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
            .put(put)
            .build())
    }

    pub fn new(tenant: &TenantId, r: &IdempotencyRecord) -> Self {
        Self {
            pk: idempotency_pk(tenant, &r.key),
            sk: IDEM_SK.into(),
            key: r.key.clone(),
            request_hash: r.request_hash.clone(),
            status: r.status,
            body: r.body.clone(),
            created_at: r.created_at.clone(),
            expires_at: r.expires_at,
        }
    }
}

impl From<IdempotencyStored> for IdempotencyRecord {
    fn from(r: IdempotencyStored) -> Self {
        IdempotencyRecord {
            key: r.key,
            request_hash: r.request_hash,
            status: r.status,
            body: r.body,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

pub(crate) const BATCH_SK: &str = "BATCH";
/// Per-record outcome marker: exactly one per record, written with the
/// record's effect in one transaction (the exactly-once guard).
pub(crate) const OUTCOME_PREFIX: &str = "R#";
/// Failure report entries (what `GET /v1/batches/{id}/failures` lists).
pub(crate) const FAILURE_PREFIX: &str = "F#";
/// Chunk-counted marker: the chunk's outcomes are in the header's counters.
pub(crate) const CHUNK_PREFIX: &str = "C#";

pub(crate) fn batch_pk(tenant: &TenantId, batch_id: &str) -> String {
    format!("T#{tenant}#B#{batch_id}")
}

/// A batch's failure report lives in partitions of its own (listing it
/// never reads through the batch's per-record markers), spread over
/// [`MARKER_SHARDS`] by record index as the markers are: when every record
/// of an import fails, each failure is one more write.
pub(crate) fn failure_pk(tenant: &TenantId, batch_id: &str, index: u32, sharded: bool) -> String {
    if sharded {
        failure_shard_pk(tenant, batch_id, index % MARKER_SHARDS)
    } else {
        legacy_failures_pk(tenant, batch_id)
    }
}

pub(crate) fn failure_shard_pk(tenant: &TenantId, batch_id: &str, shard: u32) -> String {
    format!("T#{tenant}#B#{batch_id}#F#{shard}")
}

/// Where failures were written before they were sharded, and still are for
/// batches in the compatible layout: listings read it too.
pub(crate) fn legacy_failures_pk(tenant: &TenantId, batch_id: &str) -> String {
    format!("T#{tenant}#B#{batch_id}#F")
}

pub(crate) fn tenant_batches_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#BATCHES")
}

pub(crate) fn outcome_sk(index: u32) -> String {
    format!("{OUTCOME_PREFIX}{index:07}")
}

/// Partitions a batch's outcome markers are spread over: every record of an
/// import writes one (2 WCU, in its transaction), far more than one
/// partition key takes at thousands of records per second
/// (docs/scaling.md). Markers are only ever read by key, so no read gathers
/// across them.
pub(crate) const MARKER_SHARDS: u32 = 32;

/// The partition of record `index`'s outcome marker: its batch's own key for
/// batches submitted before markers were sharded (`sharded` false: their
/// header says so), else one of [`MARKER_SHARDS`] by index.
pub(crate) fn outcome_pk(tenant: &TenantId, batch_id: &str, index: u32, sharded: bool) -> String {
    if sharded {
        format!("T#{tenant}#B#{batch_id}#R#{}", index % MARKER_SHARDS)
    } else {
        batch_pk(tenant, batch_id)
    }
}

pub(crate) fn failure_sk(index: u32) -> String {
    format!("{FAILURE_PREFIX}{index:07}")
}

pub(crate) fn chunk_sk(chunk: u32) -> String {
    format!("{CHUNK_PREFIX}{chunk:06}")
}

#[derive(Serialize, Deserialize)]
pub(crate) struct BatchStored {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub tenant_id: String,
    pub batch_id: String,
    pub mode: stockroom_domain::batch::BatchMode,
    pub status: stockroom_domain::batch::BatchStatus,
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub chunks_total: u64,
    pub chunks_done: u64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub request_id: String,
    /// Atomic batches: the movements to write once the transaction committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atomic_plan: Option<String>,
    /// Atomic batches that could not be applied: their failure report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atomic_failures: Option<String>,
    #[serde(default)]
    pub ledger_written: bool,
    /// Terminal, and its status event not yet published: whoever sees this
    /// (publisher or a redelivered chunk) publishes it, under the same id.
    #[serde(default)]
    pub notify_pending: bool,
    #[serde(default)]
    pub records_read: u64,
    #[serde(default)]
    pub records_enqueued: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<stockroom_domain::batch::UploadInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<stockroom_domain::batch::BatchError>,
    /// An upload batch whose file is not read whole yet: its totals are
    /// unknown, so it cannot be finalized.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub splitting: bool,
    /// Its outcome markers and failure entries are spread over
    /// [`MARKER_SHARDS`] partitions (false, or absent on batches submitted
    /// before: theirs stay under the batch's keys).
    #[serde(default)]
    pub markers_sharded: bool,
}

impl BatchStored {
    pub fn new(tenant: &TenantId, b: &stockroom_domain::batch::Batch, layout: WriteLayout) -> Self {
        Self {
            pk: batch_pk(tenant, &b.batch_id),
            sk: BATCH_SK.into(),
            gsi1pk: tenant_batches_pk(tenant),
            gsi1sk: format!("{}#{}", b.created_at, b.batch_id),
            tenant_id: tenant.to_string(),
            batch_id: b.batch_id.clone(),
            mode: b.mode,
            status: b.status,
            total: b.total,
            succeeded: b.succeeded,
            failed: b.failed,
            chunks_total: b.chunks_total,
            chunks_done: b.chunks_done,
            created_at: b.created_at.clone(),
            updated_at: b.updated_at.clone(),
            completed_at: b.completed_at.clone(),
            request_id: b.request_id.clone(),
            atomic_plan: None,
            atomic_failures: None,
            ledger_written: false,
            notify_pending: b.status.is_terminal(),
            records_read: b.records_read,
            records_enqueued: b.records_enqueued,
            upload: b.upload.clone(),
            error: b.error.clone(),
            splitting: b.upload.is_some(),
            markers_sharded: layout.sharded(),
        }
    }
}

impl Unread for BatchStored {
    fn unread() -> Self {
        Self {
            pk: String::new(),
            sk: String::new(),
            gsi1pk: String::new(),
            gsi1sk: String::new(),
            tenant_id: String::new(),
            batch_id: String::new(),
            mode: stockroom_domain::batch::BatchMode::Isolated,
            status: stockroom_domain::batch::BatchStatus::Accepted,
            total: 0,
            succeeded: 0,
            failed: 0,
            chunks_total: 0,
            chunks_done: 0,
            created_at: String::new(),
            updated_at: String::new(),
            completed_at: None,
            request_id: String::new(),
            atomic_plan: None,
            atomic_failures: None,
            ledger_written: false,
            notify_pending: false,
            records_read: 0,
            records_enqueued: 0,
            upload: None,
            error: None,
            splitting: false,
            markers_sharded: false,
        }
    }
}

impl From<BatchStored> for stockroom_domain::batch::Batch {
    fn from(r: BatchStored) -> Self {
        Self {
            batch_id: r.batch_id,
            mode: r.mode,
            status: r.status,
            total: r.total,
            succeeded: r.succeeded,
            failed: r.failed,
            created_at: r.created_at,
            updated_at: r.updated_at,
            completed_at: r.completed_at,
            request_id: r.request_id,
            chunks_total: r.chunks_total,
            chunks_done: r.chunks_done,
            records_read: r.records_read,
            records_enqueued: r.records_enqueued,
            upload: r.upload,
            error: r.error,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct OutcomeStored {
    pub pk: String,
    pub sk: String,
    /// `applied` or `failed`.
    pub outcome: String,
    pub record_id: String,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct FailureStored {
    pub pk: String,
    pub sk: String,
    pub record_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    pub code: String,
    pub message: String,
    pub index: u32,
}

impl FailureStored {
    /// `sharded`: the batch's layout (its header's `markers_sharded`).
    pub fn new(
        tenant: &TenantId,
        batch_id: &str,
        f: &stockroom_domain::batch::RecordFailure,
        sharded: bool,
    ) -> Self {
        Self {
            pk: failure_pk(tenant, batch_id, f.index, sharded),
            sk: failure_sk(f.index),
            record_id: f.record_id.clone(),
            sku: f.sku.clone(),
            code: f.code.clone(),
            message: f.message.clone(),
            index: f.index,
        }
    }
}

impl Unread for FailureStored {
    fn unread() -> Self {
        Self {
            pk: String::new(),
            sk: String::new(),
            record_id: String::new(),
            sku: None,
            code: String::new(),
            message: String::new(),
            index: 0,
        }
    }
}

impl From<FailureStored> for stockroom_domain::batch::RecordFailure {
    fn from(r: FailureStored) -> Self {
        Self {
            index: r.index,
            record_id: r.record_id,
            sku: r.sku,
            code: r.code,
            message: r.message,
        }
    }
}
