//! The batch pipeline end to end on the local stack: the batches API, SQS,
//! the worker's event source and DynamoDB. A test binary of its own so its
//! load does not compete with the latency-sensitive API tests.

mod batches;
mod chunks;
