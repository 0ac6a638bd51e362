//! Stockroom's shared library: the domain, its ports and AWS adapters, the
//! HTTP mapping, configuration and telemetry. Lambda binaries stay thin.

#[cfg(feature = "aws")]
pub mod adapters;
pub mod auth;
pub mod batches;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod error;
pub mod http;
pub mod keys;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod ports;
pub mod service;
pub mod sqs_batch;
pub mod telemetry;
pub mod uploads;
pub mod webhooks;

/// The pure domain lives in its own crate, so nothing here can make it
/// depend on AWS, HTTP or the async runtime.
pub use stockroom_domain as domain;
