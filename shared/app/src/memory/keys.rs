use super::{lock, page};
use crate::domain::key::{ApiKeyRecord, ApiKeyView};
use crate::domain::{Fields, TenantId};
use crate::ports::{ApiKeyLookup, ApiKeyStore, Page, PageKey, StoreError};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Both key ports in memory, by key hash as the DynamoDB table is.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    by_hash: Mutex<BTreeMap<String, ApiKeyRecord>>,
}

impl MemoryKeyStore {
    fn keys(&self) -> MutexGuard<'_, BTreeMap<String, ApiKeyRecord>> {
        lock(&self.by_hash)
    }
}

#[async_trait]
impl ApiKeyLookup for MemoryKeyStore {
    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.keys().get(key_hash).cloned())
    }

    async fn touch_key(&self, key_hash: &str, now: &str) -> Result<(), StoreError> {
        if let Some(record) = self.keys().get_mut(key_hash) {
            record.last_used_at = Some(now.to_owned());
        }
        Ok(())
    }
}

#[async_trait]
impl ApiKeyStore for MemoryKeyStore {
    async fn put_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut keys = self.keys();
        if keys.contains_key(&record.key_hash) {
            return Err(StoreError::AlreadyExists);
        }
        keys.insert(record.key_hash.clone(), record.clone());
        Ok(())
    }

    /// Oldest first: key ids are ULIDs, so in id order.
    async fn list_keys(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        _fields: Option<&Fields<ApiKeyView>>,
    ) -> Result<Page<ApiKeyRecord>, StoreError> {
        let mut mine: Vec<ApiKeyRecord> = self
            .keys()
            .values()
            .filter(|k| k.tenant_id == tenant.as_str())
            .cloned()
            .collect();
        mine.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        Ok(page(&mine, limit, start.as_ref(), "key_id", |k| &k.key_id))
    }

    async fn find_key_by_id(
        &self,
        tenant: &TenantId,
        key_id: &str,
        _fields: Option<&Fields<ApiKeyView>>,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self
            .keys()
            .values()
            .find(|k| k.tenant_id == tenant.as_str() && k.key_id == key_id)
            .cloned())
    }

    async fn revoke_key(&self, key_hash: &str, now: &str) -> Result<(), StoreError> {
        if let Some(record) = self.keys().get_mut(key_hash)
            && record.revoked_at.is_none()
        {
            record.revoked_at = Some(now.to_owned());
        }
        Ok(())
    }
}
