//! Gives entries written before an index existed the keys a new entry is
//! written with, so the index lists them:
//!
//! - the change feed (`gsi2`, `stockroom-admin backfill-feed`): movements
//!   written before the feed, so `GET /v1/changes` returns a tenant's whole
//!   ledger;
//! - the item listing (`gsi3`, `stockroom-admin backfill-listing`): items
//!   written before it was sharded, which the listing still reads from
//!   `gsi1` until they move, and whose quantity changes rewrite that
//!   all-attributes entry. Moving takes them out of `gsi1`.
//!
//! An operator step, not a Lambda's: a parallel Scan for entries without the
//! index's keys, then one conditional UpdateItem each that sets them. It is
//! safe to stop and run again: the condition skips what is done, and an
//! entry written meanwhile already has its keys. The stream sees each update
//! as a MODIFY that publishes nothing (a ledger entry's rewrite, or an
//! item's with the same quantity: `stream.rs`), so no event is sent twice.

use super::error::{applied, classify};
use super::records::{
    FEED_DEFAULT_WRITE_SHARDS, ITEM_SK, LISTING_SHARDS, MOVEMENT_PREFIX, feed_pk, feed_shard,
    item_pk, listing_pk,
};
use super::sharded::shard_of;
use super::{Attrs, s};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use stockroom_app::ports::StoreError;
use stockroom_domain::TenantId;

/// The index a backfill fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackfilledIndex {
    /// Movements into the change feed.
    ChangeFeed,
    /// Items into the sharded listing.
    Listing,
}

impl BackfilledIndex {
    /// What the scan keeps: entries of the kind, without the index's keys.
    fn filter(self) -> (&'static str, &'static str) {
        match self {
            Self::ChangeFeed => (
                "begins_with(sk, :kind) AND attribute_not_exists(gsi2pk)",
                MOVEMENT_PREFIX,
            ),
            Self::Listing => ("sk = :kind AND attribute_not_exists(gsi3pk)", ITEM_SK),
        }
    }

    fn projection(self) -> &'static str {
        match self {
            Self::ChangeFeed => "pk, sk, tenant_id, sku, movement_id",
            Self::Listing => "pk, sk, tenant_id, sku",
        }
    }

    /// The update that indexes an entry, and the index key it must lack.
    fn update(self) -> (&'static str, &'static str) {
        match self {
            Self::ChangeFeed => ("SET gsi2pk = :pk, gsi2sk = :sk", "gsi2pk"),
            Self::Listing => (
                "SET gsi3pk = :pk, gsi3sk = :sk REMOVE gsi1pk, gsi1sk",
                "gsi3pk",
            ),
        }
    }
}

/// What a backfill run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackfillReport {
    /// Movements the scan found without feed keys.
    pub found: u64,
    /// Of those, the ones this run indexed.
    pub indexed: u64,
    /// Found, but indexed by someone else (another run) before the update.
    pub already_indexed: u64,
    /// Found, but not readable as a movement: left as they are. Their
    /// primary keys (`pk sk`), for the operator to look at.
    pub unreadable: Vec<String>,
}

impl std::ops::AddAssign for BackfillReport {
    fn add_assign(&mut self, other: Self) {
        self.found += other.found;
        self.indexed += other.indexed;
        self.already_indexed += other.already_indexed;
        self.unreadable.extend(other.unreadable);
    }
}

/// One index's backfill on one stock table.
#[derive(Clone, Debug)]
pub struct IndexBackfill {
    client: Client,
    table: String,
    index: BackfilledIndex,
}

impl IndexBackfill {
    pub fn from_sdk_config(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        index: BackfilledIndex,
    ) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.into(),
            index,
        }
    }

    /// Scans the table in `segments` parallel segments (1–64) and indexes
    /// every entry of the kind that lacks the index's keys.
    pub async fn run(&self, segments: u32) -> Result<BackfillReport, StoreError> {
        let segments = segments.clamp(1, 64);
        let mut runs = tokio::task::JoinSet::new();
        for segment in 0..segments {
            let this = self.clone();
            runs.spawn(async move { this.segment(segment, segments).await });
        }
        let mut total = BackfillReport::default();
        while let Some(done) = runs.join_next().await {
            let report = done.map_err(|e| StoreError::Backend(Box::new(e)))??;
            total += report;
        }
        Ok(total)
    }

    async fn segment(&self, segment: u32, segments: u32) -> Result<BackfillReport, StoreError> {
        let mut report = BackfillReport::default();
        let (filter, kind) = self.index.filter();
        let mut start: Option<Attrs> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .segment(segment as i32)
                .total_segments(segments as i32)
                .filter_expression(filter)
                .projection_expression(self.index.projection())
                .expression_attribute_values(":kind", s(kind))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            for entry in page.items() {
                report.found += 1;
                let Some(keys) = IndexKeys::of(self.index, entry) else {
                    let key = format!("{} {}", text(entry, "pk"), text(entry, "sk"));
                    report.unreadable.push(key);
                    continue;
                };
                if self.index(entry, &keys).await? {
                    report.indexed += 1;
                } else {
                    report.already_indexed += 1;
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(report),
            }
        }
    }

    /// Sets the index's keys unless they are set (or the entry is gone).
    async fn index(&self, entry: &Attrs, keys: &IndexKeys) -> Result<bool, StoreError> {
        let key = [("pk", entry.get("pk")), ("sk", entry.get("sk"))]
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value?.clone())))
            .collect::<Attrs>();
        let (expression, index_key) = self.index.update();
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(expression)
            .condition_expression(format!(
                "attribute_exists(pk) AND attribute_not_exists({index_key})"
            ))
            .expression_attribute_values(":pk", s(&keys.pk))
            .expression_attribute_values(":sk", s(&keys.sk));
        applied(update.send().await)
    }
}

/// The index keys an entry is written with today (`MovementRecord::new`,
/// `ItemRecord::new`).
struct IndexKeys {
    pk: String,
    sk: String,
}

impl IndexKeys {
    fn of(index: BackfilledIndex, entry: &Attrs) -> Option<Self> {
        let tenant = TenantId::parse(text(entry, "tenant_id")).ok()?;
        let sku = text(entry, "sku");
        if sku.is_empty() {
            return None;
        }
        match index {
            BackfilledIndex::ChangeFeed => {
                let movement_id = text(entry, "movement_id");
                let expected_sk = format!("{MOVEMENT_PREFIX}{movement_id}");
                if movement_id.is_empty() || text(entry, "sk") != expected_sk {
                    return None;
                }
                Some(Self {
                    pk: feed_pk(&tenant, feed_shard(sku, FEED_DEFAULT_WRITE_SHARDS)),
                    sk: movement_id.to_owned(),
                })
            }
            BackfilledIndex::Listing => {
                if text(entry, "pk") != item_pk(&tenant, sku) || text(entry, "sk") != ITEM_SK {
                    return None;
                }
                Some(Self {
                    pk: listing_pk(&tenant, shard_of(sku, LISTING_SHARDS)),
                    sk: sku.to_owned(),
                })
            }
        }
    }
}

fn text<'a>(entry: &'a Attrs, name: &str) -> &'a str {
    match entry.get(name) {
        Some(AttributeValue::S(value)) => value,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> Attrs {
        pairs.iter().map(|(k, v)| (k.to_string(), s(*v))).collect()
    }

    #[test]
    fn a_movement_gets_the_keys_a_new_one_is_written_with() {
        let tenant = TenantId::parse("acme").unwrap();
        let keys = IndexKeys::of(
            BackfilledIndex::ChangeFeed,
            &entry(&[
                ("pk", "T#acme#I#SKU-1"),
                ("sk", "M#01HZX"),
                ("tenant_id", "acme"),
                ("sku", "SKU-1"),
                ("movement_id", "01HZX"),
            ]),
        )
        .unwrap();
        assert_eq!(
            keys.pk,
            feed_pk(&tenant, feed_shard("SKU-1", FEED_DEFAULT_WRITE_SHARDS))
        );
        assert_eq!(keys.sk, "01HZX");
    }

    #[test]
    fn an_item_gets_the_listing_keys_a_new_one_is_written_with_and_others_are_left() {
        let tenant = TenantId::parse("acme").unwrap();
        let item = [
            ("pk", "T#acme#I#SKU-1"),
            ("sk", "ITEM"),
            ("tenant_id", "acme"),
            ("sku", "SKU-1"),
        ];
        let keys = IndexKeys::of(BackfilledIndex::Listing, &entry(&item)).unwrap();
        assert_eq!(
            keys.pk,
            listing_pk(&tenant, shard_of("SKU-1", LISTING_SHARDS))
        );
        assert_eq!(keys.sk, "SKU-1");
        let mut other_sku = item;
        other_sku[0] = ("pk", "T#acme#I#SKU-2");
        let mut not_an_item = item;
        not_an_item[1] = ("sk", "L#depot");
        for broken in [other_sku, not_an_item] {
            assert!(IndexKeys::of(BackfilledIndex::Listing, &entry(&broken)).is_none());
        }
    }

    #[test]
    fn an_entry_that_does_not_read_as_a_movement_is_left_alone() {
        for broken in [
            entry(&[("sk", "M#01HZX"), ("tenant_id", "acme"), ("sku", "S")]),
            entry(&[
                ("sk", "M#01HZX"),
                ("tenant_id", "NOT A TENANT!"),
                ("sku", "S"),
                ("movement_id", "01HZX"),
            ]),
            entry(&[
                ("sk", "M#other"),
                ("tenant_id", "acme"),
                ("sku", "S"),
                ("movement_id", "01HZX"),
            ]),
        ] {
            assert!(IndexKeys::of(BackfilledIndex::ChangeFeed, &broken).is_none());
        }
    }
}
