//! Gives entries written before an index existed the keys a new entry is
//! written with, so the index lists them:
//!
//! - the change feed (`gsi2`, `stockroom-admin backfill-feed`): movements
//!   written before the feed, so `GET /v1/changes` returns a tenant's whole
//!   ledger;
//! - the item listing (`gsi3`, `stockroom-admin backfill-listing`): items
//!   written before it was sharded or in the compatible layout, which the
//!   listing still reads from `gsi1`, and whose quantity changes rewrite
//!   that all-attributes entry. A second pass, once every item is in
//!   `gsi3`, takes them out of `gsi1`: an item is never in neither index,
//!   so no listing skips it. Only for a stack that writes the sharded
//!   layout: a reader of the release before lists `gsi1` alone.
//!
//! An operator step, not a Lambda's: a parallel Scan for entries without the
//! index's keys, then one conditional UpdateItem each that sets them. It is
//! safe to stop and run again: the condition skips what is done, and an
//! entry written meanwhile already has its keys. The stream sees each update
//! as a MODIFY that publishes nothing (a ledger entry's rewrite, or an
//! item's with the same quantity: `stream.rs`), so no event is sent twice.

use super::error::{applied, classify};
use super::records::{
    FEED_COMPATIBLE_WRITE_SHARDS, ITEM_SK, LISTING_SHARDS, MOVEMENT_PREFIX, feed_pk, feed_shard,
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

/// One scan of the table and the update of each entry it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Movements without feed keys get them.
    Feed,
    /// Items without `gsi3` keys get them.
    Listing,
    /// Items in `gsi3` leave `gsi1`.
    LeaveLegacyListing,
}

impl Pass {
    /// What the scan keeps (`:kind` the sort key or its prefix).
    fn filter(self) -> (&'static str, &'static str) {
        match self {
            Self::Feed => (
                "begins_with(sk, :kind) AND attribute_not_exists(gsi2pk)",
                MOVEMENT_PREFIX,
            ),
            Self::Listing => ("sk = :kind AND attribute_not_exists(gsi3pk)", ITEM_SK),
            Self::LeaveLegacyListing => (
                "sk = :kind AND attribute_exists(gsi3pk) AND attribute_exists(gsi1pk)",
                ITEM_SK,
            ),
        }
    }

    fn projection(self) -> &'static str {
        match self {
            Self::Feed => "pk, sk, tenant_id, sku, movement_id",
            Self::Listing | Self::LeaveLegacyListing => "pk, sk, tenant_id, sku",
        }
    }

    /// The update, and its condition (beyond the entry still existing).
    fn update(self) -> (&'static str, &'static str) {
        match self {
            Self::Feed => (
                "SET gsi2pk = :pk, gsi2sk = :sk",
                "attribute_not_exists(gsi2pk)",
            ),
            Self::Listing => (
                "SET gsi3pk = :pk, gsi3sk = :sk",
                "attribute_not_exists(gsi3pk)",
            ),
            Self::LeaveLegacyListing => (
                "REMOVE gsi1pk, gsi1sk",
                "attribute_exists(gsi3pk) AND attribute_exists(gsi1pk)",
            ),
        }
    }
}

/// What a backfill run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackfillReport {
    /// Entries the scan found without the index's keys.
    pub found: u64,
    /// Of those, the ones this run indexed.
    pub indexed: u64,
    /// Found, but indexed by someone else (another run) before the update.
    pub already_indexed: u64,
    /// Found, but not readable as an entry of the kind: left as they are.
    /// Their primary keys (`pk sk`), for the operator to look at.
    pub unreadable: Vec<String>,
    /// The listing's: items taken out of `gsi1` (they are in `gsi3`).
    pub left_legacy_index: u64,
}

impl std::ops::AddAssign for BackfillReport {
    fn add_assign(&mut self, other: Self) {
        self.found += other.found;
        self.indexed += other.indexed;
        self.already_indexed += other.already_indexed;
        self.unreadable.extend(other.unreadable);
        self.left_legacy_index += other.left_legacy_index;
    }
}

/// How long the second pass of the listing waits for `gsi3` to have caught
/// up with the first (an index follows its table within about a second).
const INDEX_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(3);

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
    /// every entry of the kind that lacks the index's keys (for the listing,
    /// then takes every item in `gsi3` out of `gsi1`).
    pub async fn run(&self, segments: u32) -> Result<BackfillReport, StoreError> {
        match self.index {
            BackfilledIndex::ChangeFeed => self.pass(Pass::Feed, segments).await,
            BackfilledIndex::Listing => {
                let mut report = self.pass(Pass::Listing, segments).await?;
                tokio::time::sleep(INDEX_CATCH_UP).await;
                let second = self.pass(Pass::LeaveLegacyListing, segments).await?;
                report.left_legacy_index = second.indexed;
                report.unreadable.extend(second.unreadable);
                Ok(report)
            }
        }
    }

    async fn pass(&self, pass: Pass, segments: u32) -> Result<BackfillReport, StoreError> {
        let segments = segments.clamp(1, 64);
        let mut runs = tokio::task::JoinSet::new();
        for segment in 0..segments {
            let this = self.clone();
            runs.spawn(async move { this.segment(pass, segment, segments).await });
        }
        let mut total = BackfillReport::default();
        while let Some(done) = runs.join_next().await {
            let report = done.map_err(|e| StoreError::Backend(Box::new(e)))??;
            total += report;
        }
        Ok(total)
    }

    async fn segment(
        &self,
        pass: Pass,
        segment: u32,
        segments: u32,
    ) -> Result<BackfillReport, StoreError> {
        let mut report = BackfillReport::default();
        let (filter, kind) = pass.filter();
        let mut start: Option<Attrs> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .segment(segment as i32)
                .total_segments(segments as i32)
                .filter_expression(filter)
                .projection_expression(pass.projection())
                .expression_attribute_values(":kind", s(kind))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            for entry in page.items() {
                report.found += 1;
                let Some(keys) = IndexKeys::of(pass, entry) else {
                    let key = format!("{} {}", text(entry, "pk"), text(entry, "sk"));
                    report.unreadable.push(key);
                    continue;
                };
                if self.update(pass, entry, &keys).await? {
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

    /// The pass's update unless done already (or the entry is gone).
    async fn update(
        &self,
        pass: Pass,
        entry: &Attrs,
        keys: &IndexKeys,
    ) -> Result<bool, StoreError> {
        let key = [("pk", entry.get("pk")), ("sk", entry.get("sk"))]
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value?.clone())))
            .collect::<Attrs>();
        let (expression, condition) = pass.update();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(expression)
            .condition_expression(format!("attribute_exists(pk) AND {condition}"));
        // DynamoDB refuses values an expression does not use.
        if pass != Pass::LeaveLegacyListing {
            update = update
                .expression_attribute_values(":pk", s(&keys.pk))
                .expression_attribute_values(":sk", s(&keys.sk));
        }
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
    fn of(pass: Pass, entry: &Attrs) -> Option<Self> {
        let tenant = TenantId::parse(text(entry, "tenant_id")).ok()?;
        let sku = text(entry, "sku");
        if sku.is_empty() {
            return None;
        }
        match pass {
            Pass::Feed => {
                let movement_id = text(entry, "movement_id");
                let expected_sk = format!("{MOVEMENT_PREFIX}{movement_id}");
                if movement_id.is_empty() || text(entry, "sk") != expected_sk {
                    return None;
                }
                Some(Self {
                    pk: feed_pk(&tenant, feed_shard(sku, FEED_COMPATIBLE_WRITE_SHARDS)),
                    sk: movement_id.to_owned(),
                })
            }
            Pass::Listing | Pass::LeaveLegacyListing => {
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
            Pass::Feed,
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
            feed_pk(&tenant, feed_shard("SKU-1", FEED_COMPATIBLE_WRITE_SHARDS))
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
        let keys = IndexKeys::of(Pass::Listing, &entry(&item)).unwrap();
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
            assert!(IndexKeys::of(Pass::Listing, &entry(&broken)).is_none());
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
            assert!(IndexKeys::of(Pass::Feed, &broken).is_none());
        }
    }
}
