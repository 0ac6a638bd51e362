use crate::domain::event::Event;
use crate::ports::{EventPublisher, StoreError};
use async_trait::async_trait;
use std::sync::Mutex;

/// Keeps every published event, in order, for a test to read.
#[derive(Debug, Default)]
pub struct RecordedEvents(Mutex<Vec<Event>>);

impl RecordedEvents {
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait]
impl EventPublisher for RecordedEvents {
    async fn publish(&self, events: &[Event]) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(events);
        Ok(())
    }
}
