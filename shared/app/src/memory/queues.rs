use crate::ports::{ChunkEnvelope, ChunkQueue, StoreError};
use async_trait::async_trait;
use std::sync::Mutex;

/// Keeps every chunk sent, in order, for a test to deliver to the worker.
#[derive(Debug, Default)]
pub struct MemoryChunkQueue(Mutex<Vec<ChunkEnvelope>>);

impl MemoryChunkQueue {
    /// The chunks sent since the last call.
    pub fn take(&self) -> Vec<ChunkEnvelope> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait]
impl ChunkQueue for MemoryChunkQueue {
    async fn send_chunks(&self, chunks: &[ChunkEnvelope]) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(chunks);
        Ok(())
    }
}
