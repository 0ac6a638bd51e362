//! The checks, one module per part of the API; each is a `Suite` method
//! returning its row's detail, or an error that makes the row FAIL.

mod batches;
mod items;
mod keys;
mod webhooks;
