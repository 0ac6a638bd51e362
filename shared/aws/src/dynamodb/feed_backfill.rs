//! Puts movements written before the change feed existed into its index
//! (`gsi2`), so `GET /v1/changes` returns a tenant's whole ledger.
//!
//! An operator step (`stockroom-admin backfill-feed`), not a Lambda's: a
//! parallel Scan for movements without `gsi2pk`, then one conditional
//! UpdateItem each that sets the keys a new movement is written with. It is
//! safe to stop and run again: the condition skips what is done, and a
//! movement written meanwhile already has its keys. The stream sees each
//! update as a MODIFY of a ledger entry, which publishes nothing
//! (`stream.rs`), so no event is sent twice.

use super::error::{applied, classify};
use super::records::{FEED_WRITE_SHARDS, MOVEMENT_PREFIX, feed_pk, feed_shard};
use super::{Attrs, s};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use stockroom_app::ports::StoreError;
use stockroom_domain::TenantId;

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

/// The change feed's backfill on one stock table.
#[derive(Clone, Debug)]
pub struct ChangeFeedBackfill {
    client: Client,
    table: String,
}

impl ChangeFeedBackfill {
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.into(),
        }
    }

    /// Scans the table in `segments` parallel segments (1–64) and indexes
    /// every movement that lacks feed keys.
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
        let mut start: Option<Attrs> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .segment(segment as i32)
                .total_segments(segments as i32)
                .filter_expression("begins_with(sk, :movement) AND attribute_not_exists(gsi2pk)")
                .projection_expression("pk, sk, tenant_id, sku, movement_id")
                .expression_attribute_values(":movement", s(MOVEMENT_PREFIX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            for entry in page.items() {
                report.found += 1;
                let Some(keys) = FeedKeys::of(entry) else {
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

    /// Sets the feed keys unless they are set (or the movement is gone).
    async fn index(&self, entry: &Attrs, keys: &FeedKeys) -> Result<bool, StoreError> {
        let key = [("pk", entry.get("pk")), ("sk", entry.get("sk"))]
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value?.clone())))
            .collect::<Attrs>();
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression("SET gsi2pk = :pk, gsi2sk = :sk")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(gsi2pk)")
            .expression_attribute_values(":pk", s(&keys.pk))
            .expression_attribute_values(":sk", s(&keys.sk));
        applied(update.send().await)
    }
}

/// The feed keys a movement is written with today (`MovementRecord::new`).
struct FeedKeys {
    pk: String,
    sk: String,
}

impl FeedKeys {
    fn of(entry: &Attrs) -> Option<Self> {
        let tenant = TenantId::parse(text(entry, "tenant_id")).ok()?;
        let sku = text(entry, "sku");
        let movement_id = text(entry, "movement_id");
        let expected_sk = format!("{MOVEMENT_PREFIX}{movement_id}");
        if sku.is_empty() || movement_id.is_empty() || text(entry, "sk") != expected_sk {
            return None;
        }
        Some(Self {
            pk: feed_pk(&tenant, feed_shard(sku, FEED_WRITE_SHARDS)),
            sk: movement_id.to_owned(),
        })
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
        let keys = FeedKeys::of(&entry(&[
            ("pk", "T#acme#I#SKU-1"),
            ("sk", "M#01HZX"),
            ("tenant_id", "acme"),
            ("sku", "SKU-1"),
            ("movement_id", "01HZX"),
        ]))
        .unwrap();
        assert_eq!(
            keys.pk,
            feed_pk(&tenant, feed_shard("SKU-1", FEED_WRITE_SHARDS))
        );
        assert_eq!(keys.sk, "01HZX");
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
            assert!(FeedKeys::of(&broken).is_none());
        }
    }
}
