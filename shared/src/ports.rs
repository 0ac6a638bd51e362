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

/// Hashed API keys (the authorizer's only dependency).
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn put_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;
}
