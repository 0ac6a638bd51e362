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

/// How a gather reads each of its ranges.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reading {
    /// Entries past this sort key, in the reading's order (exclusive).
    pub after: Option<String>,
    /// Only sort keys that begin with this (a kind of record among others
    /// in its partition).
    pub prefix: Option<&'static str>,
    /// Newest (highest sort key) first.
    pub descending: bool,
    /// Strongly consistent (the table's own ranges only).
    pub consistent: bool,
    /// Only entries whose attribute (name) has this string value.
    pub only: Option<(&'static str, String)>,
    /// What to read of each entry, its sort key always included (none: all).
    pub projection: Option<Projection>,
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
    let reading = Reading {
        after: after.or(floor).map(str::to_owned),
        projection,
        ..Reading::default()
    };
    gather_with(client, table, ranges, want, reading).await
}

/// Up to `want` entries of every range, as `reading` says, in its order.
pub(crate) async fn gather_with(
    client: &Client,
    table: &str,
    ranges: Vec<KeyRange>,
    want: usize,
    reading: Reading,
) -> Result<Gathered, StoreError> {
    let mut reads = tokio::task::JoinSet::new();
    for range in ranges {
        reads.spawn(read_range(
            client.clone(),
            table.to_owned(),
            range,
            reading.clone(),
            want,
        ));
    }
    let mut gathered = Gathered::default();
    while let Some(read) = reads.join_next().await {
        let (entries, more) = read.map_err(|e| StoreError::Backend(Box::new(e)))??;
        gathered.entries.extend(entries);
        gathered.more |= more;
    }
    gathered.entries.sort_by(|a, b| a.0.cmp(&b.0));
    if reading.descending {
        gathered.entries.reverse();
    }
    gathered.entries.dedup_by(|a, b| a.0 == b.0);
    if gathered.entries.len() > want {
        gathered.entries.truncate(want);
        gathered.more = true;
    }
    Ok(gathered)
}

/// Above every sort key that begins with `prefix`.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}{}", char::MAX)
}

/// One range's first `want` entries past `reading.after`, and whether it
/// has more.
async fn read_range(
    client: Client,
    table: String,
    range: KeyRange,
    reading: Reading,
    want: usize,
) -> Result<(Vec<(String, Attrs)>, bool), StoreError> {
    let projection = reading.projection.map(|p| p.including(range.sk_name));
    if want == 0 {
        return Ok((Vec::new(), true));
    }
    let after = reading.after.as_deref();
    let mut found = Vec::new();
    let mut start = None;
    loop {
        let mut query = client
            .query()
            .table_name(&table)
            .set_index_name(range.index.map(str::to_owned))
            .expression_attribute_names("#pk", range.pk_name)
            .expression_attribute_values(":pk", s(&range.pk))
            .scan_index_forward(!reading.descending)
            .set_consistent_read(reading.consistent.then_some(true))
            .limit(i32::try_from(want - found.len()).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start);
        // BETWEEN is inclusive: the entry at `after` itself is dropped below.
        query = match (after, reading.prefix, reading.descending) {
            (None, None, _) => query.key_condition_expression("#pk = :pk"),
            (None, Some(prefix), _) => query
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :p)")
                .expression_attribute_values(":p", s(prefix)),
            (Some(after), None, false) => query
                .key_condition_expression("#pk = :pk AND #sk > :a")
                .expression_attribute_values(":a", s(after)),
            (Some(after), None, true) => query
                .key_condition_expression("#pk = :pk AND #sk < :a")
                .expression_attribute_values(":a", s(after)),
            (Some(after), Some(prefix), false) => query
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :a AND :z")
                .expression_attribute_values(":a", s(after))
                .expression_attribute_values(":z", s(prefix_end(prefix))),
            (Some(after), Some(prefix), true) => query
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :p AND :a")
                .expression_attribute_values(":p", s(prefix))
                .expression_attribute_values(":a", s(after)),
        };
        if after.is_some() || reading.prefix.is_some() {
            query = query.expression_attribute_names("#sk", range.sk_name);
        }
        if let Some((name, value)) = &reading.only {
            query = query
                .filter_expression("#only = :only")
                .expression_attribute_names("#only", *name)
                .expression_attribute_values(":only", s(value));
        }
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
            if Some(sort.as_str()) == after {
                continue;
            }
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
