use super::Recorded;
use crate::ports::{ChunkEnvelope, ChunkQueue, StoreError};
use async_trait::async_trait;

/// Keeps every chunk sent, in order, for a test to deliver to the worker.
pub type MemoryChunkQueue = Recorded<ChunkEnvelope>;

#[async_trait]
impl ChunkQueue for MemoryChunkQueue {
    async fn send_chunks(&self, chunks: &[ChunkEnvelope]) -> Result<(), StoreError> {
        self.record(chunks.iter().cloned());
        Ok(())
    }
}
