use super::Recorded;
use crate::domain::event::Event;
use crate::ports::{EventPublisher, StoreError};
use async_trait::async_trait;

/// Keeps every published event, in order, for a test to read.
pub type RecordedEvents = Recorded<Event>;

#[async_trait]
impl EventPublisher for RecordedEvents {
    async fn publish(&self, events: &[Event]) -> Result<(), StoreError> {
        self.record(events.iter().cloned());
        Ok(())
    }
}
