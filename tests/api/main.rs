//! End-to-end tests of the items API through the local gateway, the real
//! authorizer and function binaries, and the DynamoDB emulator.

mod auth;
mod batches;
mod chunks;
mod events;
mod items;
mod meta;
mod stock;
