//! Scatter-gather reads of write-sharded listings: the same kind of entry
//! spread over several partition keys (of the table or of an index), read
//! back as one list in sort-key order.
//!
//! Each range gives its first `want` entries after the cursor (reading on
//! past pages that DynamoDB's 1 MB limit cut short), so the first `want` of
//! their union are the listing's first `want`: a range that was cut off
//! gave `want` entries no later than its last, so the union has `want`
//! entries before anything that range held back.

use super::error::classify;
use super::projection::{Projection, project_query};
use super::{Attrs, s};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use stockroom_app::ports::StoreError;

/// One partition key's entries of a listing.
#[derive(Clone, Debug)]
pub(crate) struct KeyRange {
    /// The index, or the table itself.
    pub index: Option<&'static str>,
    pub pk_name: &'static str,
    pub pk: String,
    pub sk_name: &'static str,
}

/// A page of a sharded listing: entries in sort-key order (one per sort key,
/// a key found in two ranges counting once), each with its sort key.
#[derive(Debug, Default)]
pub(crate) struct Gathered {
    pub entries: Vec<(String, Attrs)>,
    /// Whether anything may follow the last entry (a range held some back).
    pub more: bool,
}

/// Up to `want` entries with a sort key above `after` (above `floor` when
/// there is no cursor), from every range, in sort-key order. `projection`:
/// what to read of each entry, its sort key always included (none: all).
pub(crate) async fn gather(
    client: &Client,
    table: &str,
    ranges: Vec<KeyRange>,
    after: Option<&str>,
    floor: Option<&str>,
    want: usize,
    projection: Option<Projection>,
) -> Result<Gathered, StoreError> {
    let low = after.or(floor).map(str::to_owned);
    let mut reads = tokio::task::JoinSet::new();
    for range in ranges {
        reads.spawn(read_range(
            client.clone(),
            table.to_owned(),
            range,
            low.clone(),
            want,
            projection.clone(),
        ));
    }
    let mut gathered = Gathered::default();
    while let Some(read) = reads.join_next().await {
        let (entries, more) = read.map_err(|e| StoreError::Backend(Box::new(e)))??;
        gathered.entries.extend(entries);
        gathered.more |= more;
    }
    gathered.entries.sort_by(|a, b| a.0.cmp(&b.0));
    gathered.entries.dedup_by(|a, b| a.0 == b.0);
    if gathered.entries.len() > want {
        gathered.entries.truncate(want);
        gathered.more = true;
    }
    Ok(gathered)
}

/// One range's first `want` entries above `low`, and whether it has more.
async fn read_range(
    client: Client,
    table: String,
    range: KeyRange,
    low: Option<String>,
    want: usize,
    projection: Option<Projection>,
) -> Result<(Vec<(String, Attrs)>, bool), StoreError> {
    let projection = projection.map(|p| p.including(range.sk_name));
    if want == 0 {
        return Ok((Vec::new(), true));
    }
    let mut found = Vec::new();
    let mut start = None;
    loop {
        let mut query = client
            .query()
            .table_name(&table)
            .set_index_name(range.index.map(str::to_owned))
            .expression_attribute_names("#pk", range.pk_name)
            .expression_attribute_values(":pk", s(&range.pk))
            .limit(i32::try_from(want - found.len()).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start);
        query = match &low {
            Some(low) => query
                .key_condition_expression("#pk = :pk AND #sk > :low")
                .expression_attribute_names("#sk", range.sk_name)
                .expression_attribute_values(":low", s(low)),
            None => query.key_condition_expression("#pk = :pk"),
        };
        let out = project_query(query, projection.clone())
            .send()
            .await
            .map_err(classify)?;
        start = out.last_evaluated_key.filter(|k| !k.is_empty());
        for attrs in out.items.unwrap_or_default() {
            let Some(AttributeValue::S(sort)) = attrs.get(range.sk_name) else {
                return Err(StoreError::Corrupt(format!(
                    "an entry of {} has no {}",
                    range.pk, range.sk_name
                )));
            };
            found.push((sort.clone(), attrs));
        }
        if found.len() >= want || start.is_none() {
            return Ok((found, start.is_some()));
        }
    }
}

/// The shard (0..`shards`) of a key: FNV-1a of its bytes, stable across
/// builds and platforms.
pub(crate) fn shard_of(key: &str, shards: u32) -> u32 {
    let hash = key.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_lands_in_the_same_shard_and_keys_spread() {
        assert_eq!(shard_of("SKU-1", 16), shard_of("SKU-1", 16));
        let used: std::collections::BTreeSet<u32> = (0..200)
            .map(|i| shard_of(&format!("SKU-{i}"), 16))
            .collect();
        assert_eq!(used.len(), 16);
    }
}
