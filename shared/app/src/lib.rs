//! Stockroom's use cases and the narrow ports they need. Adapters
//! (`stockroom-aws`) implement the ports; the HTTP surface (`stockroom-http`)
//! and the Lambda functions call the use cases. Nothing here knows AWS,
//! axum or the Lambda runtime, so the `memory` feature's in-memory adapters
//! can run every use case in a unit test.

pub mod atomic_batches;
pub mod auth;
pub mod batch_levels;
pub mod batches;
pub mod changes;
pub mod chunks;
pub mod clock;
pub mod config;
pub mod counts;
pub mod cursor;
pub mod error;
pub mod items;
pub mod keys;
pub mod levels;
pub mod locations;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod outbox;
pub mod ports;
pub mod reservations;
pub mod stock_split;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod transfers;
pub mod uploads;
pub mod webhooks;

/// The pure rules and types, re-exported so a use case's callers need one
/// dependency for both.
pub use stockroom_domain as domain;
