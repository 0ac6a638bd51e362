//! Adapters from the ports to AWS services.

pub mod dynamodb;
pub mod kms;
pub mod sns;
pub mod sqs;
