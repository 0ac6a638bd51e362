//! Narrow async ports the use cases depend on; adapters implement them.

use crate::auth::ApiKeyRecord;
use crate::domain::{Item, Movement, Sku, TenantId};
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

/// Stock and description of a tenant's items, plus their ledger.
#[async_trait]
pub trait ItemStore: Send + Sync {
    async fn get_item(&self, tenant: &TenantId, sku: &Sku) -> Result<Option<Item>, StoreError>;

    /// Creates the item (and its opening movement) unless the sku exists.
    async fn create_item(
        &self,
        tenant: &TenantId,
        item: &Item,
        opening: Option<&Movement>,
    ) -> Result<(), StoreError>;

    /// Writes `item` if the stored version is still `expected_version`.
    async fn replace_item(
        &self,
        tenant: &TenantId,
        item: &Item,
        expected_version: u64,
    ) -> Result<(), StoreError>;

    /// Deletes the item at `expected_version`, recording the closing movement.
    async fn delete_item(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        expected_version: u64,
        closing: Option<&Movement>,
    ) -> Result<(), StoreError>;

    async fn list_items(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
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

    /// Newest first.
    async fn list_movements(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        limit: u32,
        start: Option<PageKey>,
    ) -> Result<Page<Movement>, StoreError>;

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
}

/// Hashed API keys.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// `AlreadyExists` if a key with this hash exists.
    async fn put_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;
    /// A tenant's keys, oldest first.
    async fn list_keys(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
    ) -> Result<Page<ApiKeyRecord>, StoreError>;
    async fn find_key_by_id(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Sets `revoked_at` unless already set.
    async fn revoke_key(&self, key_hash: &str, now: &str) -> Result<(), StoreError>;
    /// Records `last_used_at`.
    async fn touch_key(&self, key_hash: &str, now: &str) -> Result<(), StoreError>;
}

use crate::domain::batch::{Batch, BatchStatus, ChunkMessage, RecordFailure};

/// How a chunk is being processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkDisposition {
    /// Apply the records.
    Apply,
    /// The chunk exhausted its deliveries (dead-letter queue): report every
    /// record without an outcome as failed so the batch still ends.
    DeadLettered,
}

/// Batch headers, per-record outcomes and chunk application.
#[async_trait]
pub trait BatchStore: Send + Sync {
    /// Stores the header and, atomically with it, the idempotent response.
    async fn create_batch(
        &self,
        tenant: &TenantId,
        batch: &Batch,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError>;

    /// Records outcomes decided at submission (records that failed validation).
    async fn record_failures(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        failures: &[RecordFailure],
    ) -> Result<(), StoreError>;

    /// Marks a batch failed before any chunk ran (e.g. it could not be enqueued).
    async fn abort_batch(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError>;

    async fn get_batch(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> Result<Option<Batch>, StoreError>;

    /// Newest first, optionally only those with `status`.
    async fn list_batches(
        &self,
        tenant: &TenantId,
        status: Option<BatchStatus>,
        limit: u32,
        start: Option<PageKey>,
    ) -> Result<Page<Batch>, StoreError>;

    /// Failed records in record order.
    async fn list_failures(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        limit: u32,
        start: Option<PageKey>,
    ) -> Result<Page<RecordFailure>, StoreError>;

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Applies (or reports as dead-lettered) one chunk exactly once, however
    /// often it is delivered, and counts it into the batch header.
    async fn process_chunk(
        &self,
        chunk: &ChunkMessage,
        disposition: ChunkDisposition,
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

    /// Moves the batch to its terminal status once every chunk is counted.
    /// Returns the status when this call made the transition (exactly once).
    async fn finalize(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> Result<Option<BatchStatus>, StoreError>;
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
