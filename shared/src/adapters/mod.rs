//! Adapters from the ports to AWS services.

pub mod dynamodb;
pub mod sqs;
