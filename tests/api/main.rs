//! End-to-end tests of the items API through the local gateway, the real
//! authorizer and function binaries, and the DynamoDB emulator.

mod auth;
mod changes;
mod events;
mod fields;
mod iam;
mod isolation;
mod items;
mod keys;
mod levels;
mod limits;
mod locations;
mod meta;
mod reservations;
mod stock;
mod stock_split;
mod watch;
