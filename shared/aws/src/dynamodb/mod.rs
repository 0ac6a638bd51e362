//! DynamoDB adapter. Key layout (single table, every key namespaced by tenant):
//!
//! | record      | pk                       | sk          | gsi1pk   | gsi1sk |
//! |-------------|--------------------------|-------------|----------|--------|
//! | item (listed by `gsi3`, keys only: `gsi3pk` `T#<tenant>#L#<FNV-1a(sku) mod 16>`, `gsi3sk` sku) | `T#<tenant>#I#<sku>` | `ITEM` | `T#<tenant>` on items written before `gsi3` or in the compatible layout (`records::WriteLayout`), until moved | sku (the same) |
//! | movement    | `T#<tenant>#I#<sku>`     | `M#<mv_ulid>` | –      | –      |
//! | deletion marker | `T#<tenant>#I#<sku>` | `X#<del_ulid>` | –      | –      |
//! | idempotency (a batch's count, transfer or hold: key `batch:<batch>:<index>`, 15 days) | `T#<tenant>#K#<key>` | `IDEM` | – | – |
//! | location    | `T#<tenant>#LOC`         | `LOC#<id>`  | –        | –      |
//! | level at a location (at `default`: its holds only; on hand is the item's `quantity`) | `T#<tenant>#I#<sku>` | `L#<location>` | – | – |
//! | reservation | `T#<tenant>#I#<sku>` | `RSV#<ulid>` | – | – |
//! | active hold (while the reservation is active) | `T#<tenant>#I#<sku>` | `H#<ulid>` | – | – |
//! | location's stocked-levels tally (16 shards) | `T#<tenant>#LOC#<location>` | `N#<shard>` | – | – |
//! | batch header | `T#<tenant>#B#<batch>` | `BATCH` | `T#<tenant>#BATCHES` | created#batch |
//! | batch chunk counted | `T#<tenant>#B#<batch>` | `C#<chunk>` | – | – |
//! | record outcome marker (32 shards by index; under the batch's key for batches whose header lacks `markers_sharded`) | `T#<tenant>#B#<batch>#R#<index mod 32>` | `R#<index>` | – | – |
//! | batch failure entry (32 shards by index; `…#F` alone for batches whose header lacks `markers_sharded`) | `T#<tenant>#B#<batch>#F#<index mod 32>` | `F#<index>` | – | – |
//!
//! Movements also carry `gsi2pk`/`gsi2sk` (the change feed, `records.rs`).
//! Sharded listings are read back whole and in order by `sharded.rs`.
//! The table's stream is the events outbox: `stream.rs` reads its records
//! as committed changes.
//! API keys live in their own table keyed by `key_hash`.

pub mod backfill;
mod batch_table;
mod batches;
mod chunks;
mod error;
mod items;
mod keys;
mod levels;
mod locations;
mod projection;
mod records;
mod sharded;
pub mod stream;
mod tx;
mod webhooks;

pub use batches::DynamoBatchStore;
pub use items::DynamoItemStore;
pub use keys::DynamoApiKeyStore;
pub use records::WriteLayout;
pub use webhooks::DynamoWebhookStore;

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use stockroom_app::ports::StoreError;

pub(crate) type Attrs = HashMap<String, AttributeValue>;

pub(crate) fn to_attrs<T: serde::Serialize>(value: &T) -> Result<Attrs, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn from_attrs<T: serde::de::DeserializeOwned>(attrs: Attrs) -> Result<T, StoreError> {
    serde_dynamo::from_item(attrs).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A query's items converted through their stored shape `R`, plus the next page key.
pub(crate) fn query_page<R, T>(
    out: aws_sdk_dynamodb::operation::query::QueryOutput,
    decoder: &projection::Decoder<R>,
) -> Result<stockroom_app::ports::Page<T>, StoreError>
where
    R: serde::de::DeserializeOwned + projection::Unread,
    T: From<R>,
{
    let items = out
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|a| decoder.decode(a).map(T::from))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(stockroom_app::ports::Page {
        items,
        next: items::page_key(out.last_evaluated_key.as_ref()),
    })
}
