//! In-memory adapters of the ports, with the semantics the DynamoDB ones
//! have (conditional writes on a version, all-or-nothing adjustments,
//! idempotency keys taken once). They make the fast test tier: use cases
//! tested without the local stack, in milliseconds. Compiled for this
//! crate's tests and behind the `memory` feature (the handler benchmark);
//! never in a Lambda.

mod batches;
mod events;
mod items;
mod keys;
mod queues;
mod uploads;
mod webhooks;

pub use batches::MemoryBatchStore;
pub use events::RecordedEvents;
pub use items::MemoryItemStore;
pub use keys::MemoryKeyStore;
pub use queues::MemoryChunkQueue;
pub use uploads::MemoryUploadStore;
pub use webhooks::{
    MemoryCipher, MemoryDeliveryQueue, MemoryWebhookStore, QueueCall, ScriptedTransport,
    SentRequest,
};

use crate::ports::PageKey;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The adapters' one lock: a test that panicked while holding it leaves the
/// data as it was, which the next test of the same store may still read.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps what a port was handed, in order, for a test to read: the events
/// published, the chunks sent, the delivery queue's calls.
#[derive(Debug)]
pub struct Recorded<T>(Mutex<Vec<T>>);

impl<T> Default for Recorded<T> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<T> Recorded<T> {
    /// What was recorded since the last `take`.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *lock(&self.0))
    }

    pub(crate) fn record(&self, items: impl IntoIterator<Item = T>) {
        lock(&self.0).extend(items);
    }
}

/// The page key of a listing ordered by one string: the last one returned.
fn page_key(name: &str, last: &str) -> PageKey {
    PageKey::from([(name.to_owned(), last.to_owned())])
}

/// A page of `items` (already in order) after `start`, at most `limit` long.
fn page<T: Clone>(
    items: &[T],
    limit: u32,
    start: Option<&PageKey>,
    name: &str,
    key: impl Fn(&T) -> &str,
) -> crate::ports::Page<T> {
    let after = start.and_then(|s| s.get(name)).map(String::as_str);
    let rest: Vec<&T> = items
        .iter()
        .skip_while(|t| after.is_some_and(|a| key(t) != a))
        .skip(usize::from(after.is_some()))
        .collect();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let taken: Vec<T> = rest.iter().take(limit).map(|t| (*t).clone()).collect();
    let next = (rest.len() > limit)
        .then(|| taken.last().map(|t| page_key(name, key(t))))
        .flatten();
    crate::ports::Page { items: taken, next }
}
