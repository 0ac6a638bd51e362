use super::lock;
use crate::ports::{PresignedUpload, StoreError, UploadBody, UploadStore};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// [`UploadStore`] in memory: `put` plays the client's upload to the
/// presigned URL (which names the key and the size it was signed for).
#[derive(Debug, Default)]
pub struct MemoryUploadStore(Mutex<HashMap<String, Vec<u8>>>);

impl MemoryUploadStore {
    /// Stores `bytes` at `key`, as the PUT to the presigned URL would.
    pub fn put(&self, key: &str, bytes: impl Into<Vec<u8>>) {
        lock(&self.0).insert(key.to_owned(), bytes.into());
    }
}

#[async_trait]
impl UploadStore for MemoryUploadStore {
    async fn presign_put(
        &self,
        key: &str,
        size_bytes: u64,
        _ttl: Duration,
    ) -> Result<PresignedUpload, StoreError> {
        Ok(PresignedUpload {
            url: format!("memory://uploads/{key}"),
            method: "PUT".into(),
            headers: BTreeMap::from([("content-length".to_owned(), size_bytes.to_string())]),
        })
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.0).get(key).map(|b| b.len() as u64))
    }

    async fn open(&self, key: &str) -> Result<UploadBody, StoreError> {
        let bytes = lock(&self.0)
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::Backend(format!("NoSuchKey: {key}").into()))?;
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }
}
