//! The change feed, `GET /v1/changes`: every movement of the tenant exactly
//! once, in commit order, across pages, batches and a restart of the
//! functions. The test stack runs with `ChangeFeedSettleSeconds=2`.

use anyhow::Context;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use stockroom_domain::key::ITEMS_WRITE;
use stockroom_tests::{Tenant, all_pages, expect_problem, stack_pids, unique_sku, wait_for_batch};

/// One page of the feed (`query` without `cursor`).
async fn page(t: &Tenant, query: &str, cursor: Option<&str>) -> anyhow::Result<Value> {
    let mut path = format!("/v1/changes?{query}");
    if let Some(c) = cursor {
        path.push_str(&format!("&cursor={c}"));
    }
    let resp = t.get(&path).send().await?;
    anyhow::ensure!(resp.status() == 200, "GET {path}: {}", resp.status());
    Ok(resp.json().await?)
}

/// Pages from `cursor` until caught up: the movements read and the cursor
/// to poll from.
async fn drain(
    t: &Tenant,
    query: &str,
    mut cursor: Option<String>,
) -> anyhow::Result<(Vec<Value>, String)> {
    let mut read = Vec::new();
    loop {
        let p = page(t, query, cursor.as_deref()).await?;
        read.extend(
            p["movements"]
                .as_array()
                .context("movements")?
                .iter()
                .cloned(),
        );
        cursor = Some(p["next_cursor"].as_str().context("next_cursor")?.to_owned());
        if p["has_more"] == false {
            return Ok((read, cursor.unwrap_or_default()));
        }
    }
}

/// Polls the feed from `cursor` until it has returned `want` movements
/// (they settle after 2 s here), then once more to see nothing follows.
async fn read_until(
    t: &Tenant,
    query: &str,
    cursor: Option<String>,
    want: usize,
) -> anyhow::Result<(Vec<Value>, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut read, mut cursor) = drain(t, query, cursor).await?;
    while read.len() < want {
        anyhow::ensure!(Instant::now() < deadline, "{} of {want} read", read.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (more, next) = drain(t, query, Some(cursor)).await?;
        read.extend(more);
        cursor = next;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (extra, cursor) = drain(t, query, Some(cursor)).await?;
    read.extend(extra);
    Ok((read, cursor))
}

fn ids(movements: &[Value]) -> Vec<String> {
    movements
        .iter()
        .map(|m| m["movement_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every movement of these skus, from their ledgers.
async fn ledgers(t: &Tenant, skus: &[String]) -> anyhow::Result<HashSet<String>> {
    let mut all = HashSet::new();
    for sku in skus {
        let ledger = all_pages(
            t,
            &format!("/v1/items/{sku}/movements?limit=100"),
            "movements",
        )
        .await?;
        all.extend(ids(&ledger));
    }
    Ok(all)
}

/// Exactly once, in id order, each sku's quantities following on.
fn assert_once_in_order(read: &[Value], expected: &HashSet<String>) {
    let read_ids = ids(read);
    let unique: HashSet<&String> = read_ids.iter().collect();
    assert_eq!(unique.len(), read_ids.len(), "a movement came twice");
    assert_eq!(
        read_ids.iter().cloned().collect::<HashSet<_>>(),
        *expected,
        "the feed and the ledgers differ"
    );
    let mut sorted = read_ids.clone();
    sorted.sort();
    assert_eq!(read_ids, sorted, "commit (id) order");
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for m in read {
        let sku = m["sku"].as_str().unwrap_or_default();
        let after = m["quantity_after"].as_i64().unwrap_or_default();
        let delta = m["delta"].as_i64().unwrap_or_default();
        if let Some(before) = last.insert(sku, after) {
            assert_eq!(before + delta, after, "{sku}: a gap or a swap in {m}");
        }
    }
}

async fn adjust(t: &Tenant, sku: &str, delta: i64) -> anyhow::Result<()> {
    let resp = t
        .post_json(
            &format!("/v1/items/{sku}/adjustments"),
            &json!({"delta": delta, "reason": "sale"}),
        )
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "adjust {sku}: {}", resp.status());
    Ok(())
}

async fn batch(t: &Tenant, mode: &str, records: Value) -> anyhow::Result<()> {
    let resp = t
        .post_json("/v1/batches", &json!({"mode": mode, "records": records}))
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 202, "batch: {}", resp.status());
    let id = resp.json::<Value>().await?["batch_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let done = wait_for_batch(t, &id, Duration::from_secs(120)).await?;
    anyhow::ensure!(done["status"] == "completed", "{done}");
    Ok(())
}

#[tokio::test]
async fn every_movement_comes_once_in_commit_order_across_pages_and_batches() -> anyhow::Result<()>
{
    let t = Tenant::new().await?;
    let skus: Vec<String> = (0..4).map(|i| unique_sku(&format!("feed{i}"))).collect();
    for sku in &skus {
        t.create_item(sku, 100).await?;
    }
    // A reader pages with a small limit while four writers adjust at once.
    let reader = {
        let t = clone_tenant(&t);
        tokio::spawn(async move {
            let mut read = Vec::new();
            let mut cursor = None;
            for _ in 0..20 {
                let (more, next) = drain(&t, "limit=3", cursor).await?;
                read.extend(more);
                cursor = Some(next);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            anyhow::Ok((read, cursor))
        })
    };
    let writers: Vec<_> = skus
        .iter()
        .map(|sku| {
            let (t, sku) = (clone_tenant(&t), sku.clone());
            tokio::spawn(async move {
                for _ in 0..6 {
                    adjust(&t, &sku, -1).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    // Movements written by batches are in the feed too.
    let records = |mode: &str| {
        json!([
            {"id": format!("{mode}-1"), "op": "adjust", "sku": skus[0], "delta": 5, "reason": "count"},
            {"id": format!("{mode}-2"), "op": "adjust", "sku": skus[1], "delta": -2, "reason": "count"},
        ])
    };
    batch(&t, "isolated", records("isolated")).await?;
    batch(&t, "atomic", records("atomic")).await?;

    let (mut read, cursor) = reader.await??;
    let expected = ledgers(&t, &skus).await?;
    assert_eq!(expected.len(), 4 + 4 * 6 + 4);
    let want = expected.len() - read.len();
    let (rest, _) = read_until(&t, "limit=3", cursor, want).await?;
    read.extend(rest);
    assert_once_in_order(&read, &expected);
    let batched = read.iter().filter(|m| m["batch_id"].is_string()).count();
    assert_eq!(batched, 4, "both batches' movements");

    // From the beginning, another reader gets the same sequence.
    let (again, _) = drain(&t, "limit=100", None).await?;
    assert_eq!(ids(&again), ids(&read));
    Ok(())
}

fn clone_tenant(t: &Tenant) -> Tenant {
    Tenant {
        tenant_id: t.tenant_id.clone(),
        api_key: t.api_key.clone(),
        key_id: t.key_id.clone(),
        usage_key: t.usage_key.clone(),
        client: t.client.clone(),
    }
}

#[tokio::test]
async fn a_sku_filter_reads_one_ledger_oldest_first_with_its_own_cursors() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let (a, b) = (unique_sku("fa"), unique_sku("fb"));
    t.create_item(&a, 10).await?;
    t.create_item(&b, 10).await?;
    for delta in [-1, -2, 3] {
        adjust(&t, &a, delta).await?;
        adjust(&t, &b, delta).await?;
    }
    let (read, cursor) = read_until(&t, &format!("sku={a}&limit=2"), None, 4).await?;
    let mut ledger = all_pages(&t, &format!("/v1/items/{a}/movements"), "movements").await?;
    ledger.reverse();
    assert_eq!(ids(&read), ids(&ledger), "the ledger, oldest first");
    // A filtered cursor is bound to its filter.
    let other = t
        .get(&format!("/v1/changes?cursor={cursor}"))
        .send()
        .await?;
    expect_problem(other, 400, "invalid_cursor").await?;
    let (_, unfiltered) = drain(&t, "limit=1", None).await?;
    let refiltered = t
        .get(&format!("/v1/changes?sku={b}&cursor={unfiltered}"))
        .send()
        .await?;
    expect_problem(refiltered, 400, "invalid_cursor").await?;
    let bad_sku = t.get("/v1/changes?sku=a%20b").send().await?;
    expect_problem(bad_sku, 400, "invalid_parameter").await?;
    Ok(())
}

#[tokio::test]
async fn fields_select_what_each_movement_shows() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("ff");
    t.create_item(&sku, 4).await?;
    adjust(&t, &sku, -1).await?;
    let (read, _) = read_until(&t, "fields=sku,delta", None, 2).await?;
    assert_eq!(read.len(), 2);
    for m in &read {
        let keys: Vec<&String> = m.as_object().context("object")?.keys().collect();
        assert_eq!(keys, ["delta", "sku"], "{m}");
        assert_eq!(m["sku"], sku.as_str());
    }
    let unknown = t.get("/v1/changes?fields=sku,nope").send().await?;
    expect_problem(unknown, 400, "invalid_parameter").await?;
    let unknown = t.get("/v1/changes?since=1").send().await?;
    expect_problem(unknown, 400, "invalid_parameter").await?;
    Ok(())
}

#[tokio::test]
async fn the_feed_needs_items_read_and_shows_only_the_tenants_movements() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("fs");
    t.create_item(&sku, 4).await?;
    let (mine, _) = read_until(&t, "", None, 1).await?;
    assert_eq!(mine.len(), 1);

    let writer = t.another_key(&[ITEMS_WRITE]).await?;
    let refused = writer.get("/v1/changes").send().await?;
    expect_problem(refused, 403, "insufficient_scope").await?;

    let stranger = Tenant::new().await?;
    let (theirs, stranger_cursor) = drain(&stranger, "limit=100", None).await?;
    assert!(theirs.is_empty(), "{theirs:?}");
    // Cursors are bound to their tenant, and tamper-evident.
    let (_, my_cursor) = drain(&t, "", None).await?;
    for cursor in [
        stranger_cursor.clone(),
        tampered(&my_cursor),
        "not-a-cursor".to_owned(),
    ] {
        let resp = t
            .get(&format!("/v1/changes?cursor={cursor}"))
            .send()
            .await?;
        expect_problem(resp, 400, "invalid_cursor").await?;
    }
    let foreign = stranger
        .get(&format!("/v1/changes?cursor={my_cursor}"))
        .send()
        .await?;
    expect_problem(foreign, 400, "invalid_cursor").await?;
    Ok(())
}

/// `cursor` with one character in its middle changed (the last one may
/// carry only padding bits, which a decoder can ignore).
fn tampered(cursor: &str) -> String {
    let mut chars: Vec<char> = cursor.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn the_feed_resumes_from_its_cursor_after_the_functions_restart() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let skus: Vec<String> = (0..3).map(|i| unique_sku(&format!("fr{i}"))).collect();
    for sku in &skus {
        t.create_item(sku, 10).await?;
        adjust(&t, sku, -1).await?;
    }
    let (first, cursor) = read_until(&t, "limit=2", None, 6).await?;
    for sku in &skus {
        adjust(&t, sku, -2).await?;
    }
    // Every items-api instance is killed: whatever serves the cursor next
    // starts cold, with nothing but the cursor and the table.
    let pids = stack_pids("items-api")?;
    anyhow::ensure!(!pids.is_empty(), "no items-api instance running");
    for pid in &pids {
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -KILL {pid}");
    }
    let gone = Instant::now() + Duration::from_secs(10);
    while stack_pids("items-api")?.iter().any(|p| pids.contains(p)) {
        anyhow::ensure!(Instant::now() < gone, "killed instances still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rest, _) = read_until(&t, "limit=2", Some(cursor), 3).await?;
    let fresh = stack_pids("items-api")?;
    assert!(
        fresh.iter().all(|p| !pids.contains(p)),
        "served by new instances"
    );
    let mut read = first;
    read.extend(rest);
    assert_once_in_order(&read, &ledgers(&t, &skus).await?);
    Ok(())
}

/// Movements written before the feed existed have no feed keys: the feed
/// misses them until `stockroom-admin backfill-feed` indexes them, once,
/// where a new movement of the same sku goes; a second run finds nothing.
#[tokio::test]
async fn the_backfill_puts_movements_from_before_the_feed_into_it() -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    use stockroom_aws::dynamodb::backfill::{BackfilledIndex, IndexBackfill};
    let t = Tenant::new().await?;
    let (old, new) = (unique_sku("pre-feed"), unique_sku("post-feed"));
    for sku in [&old, &new] {
        t.create_item(sku, 10).await?;
        adjust(&t, sku, -1).await?;
        adjust(&t, sku, -2).await?;
    }
    let skus = [old.clone(), new.clone()];
    let everything = ledgers(&t, &skus).await?;
    let (read, _) = read_until(&t, "limit=2", None, everything.len()).await?;
    assert_once_in_order(&read, &everything);

    // Take `old`'s movements out of the index, as they were before the feed.
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let table = stockroom_tests::function_env("ItemsApiFunction", "STOCK_TABLE")?;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let before_feed = ledgers(&t, std::slice::from_ref(&old)).await?;
    for id in &before_feed {
        dynamo
            .update_item()
            .table_name(&table)
            .key("pk", S(format!("T#{}#I#{old}", t.tenant_id)))
            .key("sk", S(format!("M#{id}")))
            .update_expression("REMOVE gsi2pk, gsi2sk")
            .send()
            .await?;
    }
    let (read, _) = drain(&t, "limit=100", None).await?;
    let missing: HashSet<String> = everything.difference(&before_feed).cloned().collect();
    assert_eq!(ids(&read).into_iter().collect::<HashSet<_>>(), missing);
    // `sku=` reads the sku's ledger itself, so it never missed them.
    let (one_sku, _) = drain(&t, &format!("sku={old}"), None).await?;
    assert_eq!(
        ids(&one_sku).into_iter().collect::<HashSet<_>>(),
        before_feed
    );

    let backfill = IndexBackfill::from_sdk_config(&sdk, &table, BackfilledIndex::ChangeFeed);
    let first = backfill.run(4).await?;
    assert!(first.unreadable.is_empty(), "{first:?}");
    assert!(
        first.indexed >= before_feed.len() as u64,
        "{first:?} for {} movements",
        before_feed.len()
    );
    let (read, _) = drain(&t, "limit=2", None).await?;
    assert_once_in_order(&read, &everything);

    let second = backfill.run(2).await?;
    assert_eq!((second.found, second.indexed), (0, 0), "{second:?}");
    Ok(())
}

/// The test stack writes the sharded layout (`StoreWriteLayout=sharded`):
/// movements land in all 16 feed shards the readers query, 8-15 included,
/// and the feed reads every one once, in order. A movement written to 8
/// shards (the compatible layout, and the release before) is read alongside.
#[tokio::test]
async fn the_feed_reads_every_shard_writers_may_use() -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    let t = Tenant::new().await?;
    let skus: Vec<String> = (0..32).map(|i| format!("feed-shard-{i:02}")).collect();
    for sku in &skus {
        t.create_item(sku, 5).await?;
    }
    let everything = ledgers(&t, &skus).await?;
    assert_eq!(everything.len(), skus.len());
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let table = stockroom_tests::function_env("ItemsApiFunction", "STOCK_TABLE")?;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let mut shards = std::collections::BTreeSet::new();
    for shard in 0..16 {
        let out = dynamo
            .query()
            .table_name(&table)
            .index_name("gsi2")
            .key_condition_expression("gsi2pk = :pk")
            .expression_attribute_values(":pk", S(format!("T#{}#CH#{shard}", t.tenant_id)))
            .send()
            .await?;
        if out.count > 0 {
            shards.insert(shard);
        }
    }
    assert!(shards.len() >= 12, "{shards:?}");
    assert!(shards.iter().any(|s| *s >= 8), "{shards:?}");
    // One sku's movement as a writer at 8 shards put it.
    let moved = &skus[0];
    let ledger = ledgers(&t, std::slice::from_ref(moved)).await?;
    let id = ledger.iter().next().context("a movement")?;
    let fnv = moved.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    dynamo
        .update_item()
        .table_name(&table)
        .key("pk", S(format!("T#{}#I#{moved}", t.tenant_id)))
        .key("sk", S(format!("M#{id}")))
        .update_expression("SET gsi2pk = :pk")
        .expression_attribute_values(":pk", S(format!("T#{}#CH#{}", t.tenant_id, fnv % 8)))
        .send()
        .await?;
    for query in ["limit=3", "limit=100"] {
        let (read, _) = read_until(&t, query, None, everything.len()).await?;
        assert_once_in_order(&read, &everything);
    }
    Ok(())
}
