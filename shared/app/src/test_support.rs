//! Helpers the use-case tests share.

use crate::batches::ChunkAttributes;
use crate::domain::event::{Event, EventType};
use crate::ports::ChunkEnvelope;

/// The attributes the worker receives with a chunk the queue sent: the
/// ones the envelope carries beside its body.
pub(crate) fn chunk_attributes(envelope: &ChunkEnvelope) -> ChunkAttributes {
    ChunkAttributes {
        tenant_id: Some(envelope.tenant_id.clone()),
        batch_id: Some(envelope.batch_id.clone()),
        chunk: Some(envelope.chunk),
        record_count: Some(envelope.record_count as u64),
    }
}

/// The batches' terminal events among `events`, in order, by type.
pub(crate) fn batch_endings(events: Vec<Event>) -> Vec<EventType> {
    events
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| {
            matches!(
                k,
                EventType::BatchCompleted
                    | EventType::BatchCompletedWithErrors
                    | EventType::BatchFailed
            )
        })
        .collect()
}
