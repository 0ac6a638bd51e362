//! A split sku (a flash sale) through the real functions and the DynamoDB
//! emulator: its orders spread over the buckets' partitions, every unit is
//! sold once and never more, reads, the ledger, the holds and the change
//! feed take in every bucket, and the writers a split keeps away are told
//! so.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use stockroom_app::items::LevelStores;
use stockroom_app::stock_split::StockSplitService;
use stockroom_aws::dynamodb::DynamoItemStore;
use stockroom_domain::{MovementContext, Sku, TenantId};
use stockroom_tests::{Tenant, all_pages, expect_problem, unique_sku};

/// What `stockroom-admin split-stock` and `merge-stock` run.
async fn splits() -> Result<StockSplitService> {
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let table = stockroom_tests::function_env("ItemsApiFunction", "STOCK_TABLE")?;
    let store = std::sync::Arc::new(DynamoItemStore::from_sdk_config(&sdk, table));
    Ok(StockSplitService::new(
        store.clone(),
        LevelStores {
            locations: store.clone(),
            levels: store.clone(),
            holds: store,
        },
    ))
}

fn admin() -> MovementContext {
    MovementContext {
        request_id: "admin-test".into(),
        key_id: None,
        batch_record: None,
    }
}

async fn hold(t: &Tenant, sku: &str, quantity: i64) -> Result<reqwest::Response> {
    Ok(t.post_json(
        "/v1/reservations",
        &json!({"sku": sku, "quantity": quantity, "expires_in": 600}),
    )
    .send()
    .await?)
}

/// One unit sold (a sale, or a hold then its commit): true; sold out: false.
async fn order(t: &Tenant, sku: &str, by_hold: bool) -> Result<bool> {
    let resp = if by_hold {
        hold(t, sku, 1).await?
    } else {
        t.post_json(
            &format!("/v1/items/{sku}/adjustments"),
            &json!({"delta": -1, "reason": "sale"}),
        )
        .send()
        .await?
    };
    let status = resp.status();
    let body: Value = resp.json().await?;
    if status == 409 {
        let code = body["code"].as_str().unwrap_or_default();
        ensure!(
            code == "insufficient_stock" || code == "insufficient_available",
            "{body}"
        );
        ensure!(body["detail"].as_str().is_some(), "{body}");
        return Ok(false);
    }
    ensure!(status.is_success(), "{status}: {body}");
    if by_hold {
        let id = body["id"].as_str().context("a hold without id")?;
        let commit = t
            .request(
                reqwest::Method::POST,
                &format!("/v1/reservations/{id}/commit"),
            )
            .send()
            .await?;
        ensure!(commit.status() == 200, "commit {id}: {}", commit.status());
    } else {
        ensure!(body["stock_bucket"].as_u64().is_some(), "{body}");
    }
    Ok(true)
}

/// A GET that must answer 200: its body.
async fn read(t: &Tenant, path: &str) -> Result<Value> {
    Ok(t.get(path).send().await?.error_for_status()?.json().await?)
}

async fn item(t: &Tenant, sku: &str) -> Result<Value> {
    read(t, &format!("/v1/items/{sku}")).await
}

async fn default_level(t: &Tenant, sku: &str) -> Result<(i64, i64, i64)> {
    let levels: Value = read(t, &format!("/v1/items/{sku}/levels")).await?;
    let l = &levels["levels"][0];
    Ok((
        l["on_hand"].as_i64().context("on_hand")?,
        l["reserved"].as_i64().context("reserved")?,
        l["available"].as_i64().context("available")?,
    ))
}

#[tokio::test]
async fn a_split_sku_sells_every_unit_once_across_its_buckets_and_reads_whole() -> Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("hot");
    t.create_item(&sku, 40).await?;
    // A hold placed before the split stays with the item's own level.
    let early: Value = hold(&t, &sku, 2).await?.json().await?;
    let early = early["id"].as_str().context("hold id")?.to_owned();
    let path = format!("/v1/items/{sku}/stock-split");
    // Bad input, a key without items:write, a sku that does not exist:
    // refused, nothing split.
    for bad in [
        json!({"buckets": 1}),
        json!({"buckets": 65}),
        json!({"buckets": 8, "x": 1}),
    ] {
        let refused = t.put_json(&path, &bad).send().await?;
        expect_problem(refused, 422, "validation_failed").await?;
    }
    let reader = t.another_key(&["items:read"]).await?;
    let refused = reader
        .put_json(&path, &json!({"buckets": 8}))
        .send()
        .await?;
    expect_problem(refused, 403, "insufficient_scope").await?;
    let nowhere = format!("/v1/items/{}/stock-split", unique_sku("none"));
    let refused = t.put_json(&nowhere, &json!({"buckets": 8})).send().await?;
    expect_problem(refused, 404, "item_not_found").await?;
    assert!(item(&t, &sku).await?.get("stock_buckets").is_none());
    let split: Value = t
        .put_json(&path, &json!({"buckets": 8}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(
        (split["quantity"].as_i64(), split["stock_buckets"].as_i64()),
        (Some(40), Some(8))
    );
    // An order in a bucket changes the item's version and tag: a cached
    // copy is not "not modified", and If-Match names what was shown.
    let item_path = format!("/v1/items/{sku}");
    let tag = |resp: &reqwest::Response| -> Result<String> {
        Ok(resp
            .headers()
            .get("etag")
            .context("etag")?
            .to_str()?
            .to_owned())
    };
    let before = t.get(&item_path).send().await?;
    let old_tag = tag(&before)?;
    let sale = t
        .post_json(
            &format!("/v1/items/{sku}/adjustments"),
            &json!({"delta": -1, "reason": "sale"}),
        )
        .send()
        .await?;
    ensure!(sale.status() == 200, "{}", sale.status());
    let after = t
        .get(&item_path)
        .header("if-none-match", &old_tag)
        .send()
        .await?;
    assert_eq!(after.status(), 200, "not 304: the quantity changed");
    let new_tag = tag(&after)?;
    assert_ne!(new_tag, old_tag);
    let shown: Value = after.json().await?;
    assert_eq!(shown["quantity"].as_i64(), Some(39));
    let stale = t
        .put_json(&item_path, &json!({"name": "Hot mug"}))
        .header("if-match", &old_tag)
        .send()
        .await?;
    expect_problem(stale, 412, "precondition_failed").await?;
    let renamed = t
        .put_json(&item_path, &json!({"name": "Hot mug"}))
        .header("if-match", &new_tag)
        .send()
        .await?;
    assert_eq!(renamed.status(), 200);
    let renamed: Value = renamed.json().await?;
    assert_eq!(
        (
            renamed["quantity"].as_i64(),
            renamed["stock_buckets"].as_i64()
        ),
        (Some(39), Some(8))
    );
    let restock = t
        .post_json(
            &format!("/v1/items/{sku}/adjustments"),
            &json!({"delta": 1, "reason": "return"}),
        )
        .send()
        .await?;
    ensure!(restock.status() == 200, "{}", restock.status());
    // Again into as many: the same; into another count: refused.
    let again = t.put_json(&path, &json!({"buckets": 8})).send().await?;
    ensure!(again.status() == 200, "{}", again.status());
    let other_count = t.put_json(&path, &json!({"buckets": 4})).send().await?;
    expect_problem(other_count, 409, "stock_split").await?;
    let shown = item(&t, &sku).await?;
    assert_eq!(
        (shown["quantity"].as_i64(), shown["stock_buckets"].as_i64()),
        (Some(40), Some(8))
    );
    assert_eq!(default_level(&t, &sku).await?, (40, 2, 38));

    // Exactly once in a bucket too: a retry with the same Idempotency-Key,
    // sent 8 times at once, gets the first answer back and moves nothing.
    let key = uuid::Uuid::new_v4().to_string();
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = t
            .post_json(
                &format!("/v1/items/{sku}/adjustments"),
                &json!({"delta": -3, "reason": "sale"}),
            )
            .header("idempotency-key", &key);
        sends.spawn(async move {
            let resp = request.send().await?;
            ensure!(resp.status() == 200, "{}", resp.status());
            anyhow::Ok(resp.json::<Value>().await?)
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = sends.join_next().await {
        answers.push(answer??);
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert!(
        answers[0]["stock_bucket"].as_u64().is_some(),
        "{}",
        answers[0]
    );
    assert_eq!(default_level(&t, &sku).await?, (37, 2, 35));

    // 12 clients sell, or hold and commit, one unit at a time until none is left.
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..12 {
        let (t, sku) = (
            t.another_key(&["items:read", "items:write"]).await?,
            sku.clone(),
        );
        clients.spawn(async move {
            let mut sold = 0;
            while order(&t, &sku, client % 2 == 1).await? {
                sold += 1;
            }
            anyhow::Ok(sold)
        });
    }
    let mut sold = 0;
    while let Some(n) = clients.join_next().await {
        sold += n??;
    }
    assert_eq!(sold, 35, "every free unit sold once, and no more");
    assert_eq!(default_level(&t, &sku).await?, (2, 2, 0));
    assert_eq!(item(&t, &sku).await?["quantity"].as_i64(), Some(2));
    // The listing sums too.
    let listed = all_pages(&t, "/v1/items?limit=5", "items").await?;
    let listed = listed
        .iter()
        .find(|i| i["sku"] == sku.as_str())
        .context("listed")?;
    assert_eq!(listed["quantity"].as_i64(), Some(2));

    // The ledger reads every bucket's movements, once, newest first, at any
    // page size, and sums to the quantity.
    let mut ledger = Vec::new();
    for limit in [1, 7, 100] {
        let page = all_pages(
            &t,
            &format!("/v1/items/{sku}/movements?limit={limit}"),
            "movements",
        )
        .await?;
        let ids: Vec<&str> = page
            .iter()
            .filter_map(|m| m["movement_id"].as_str())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(ids, sorted, "limit {limit}: newest first, each once");
        ledger = page;
    }
    let sum: i64 = ledger.iter().filter_map(|m| m["delta"].as_i64()).sum();
    assert_eq!(sum, 2, "the ledger sums to the quantity");
    let retried = ledger.iter().filter(|m| m["delta"] == -3).count();
    assert_eq!(retried, 1, "the idempotent sale moved once");
    let buckets: BTreeSet<i64> = ledger
        .iter()
        .filter_map(|m| m["stock_bucket"].as_i64())
        .collect();
    assert!(
        buckets.len() >= 6,
        "orders spread over the buckets: {buckets:?}"
    );
    // One sku's feed holds the same movements, in id order.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let feed: Value = read(&t, &format!("/v1/changes?sku={sku}&limit=100")).await?;
    let fed: Vec<&str> = feed["movements"]
        .as_array()
        .context("movements")?
        .iter()
        .filter_map(|m| m["movement_id"].as_str())
        .collect();
    let mut expected: Vec<&str> = ledger
        .iter()
        .filter_map(|m| m["movement_id"].as_str())
        .collect();
    expected.sort();
    assert_eq!(fed, expected);

    // The holds listing reads every bucket's holds, in id order.
    let holds = all_pages(
        &t,
        &format!("/v1/reservations?sku={sku}&limit=4"),
        "reservations",
    )
    .await?;
    let committed = holds.iter().filter(|h| h["status"] == "committed").count();
    assert_eq!(holds.len(), committed + 1, "{holds:?}");
    assert!(committed > 0);
    let ids: Vec<&str> = holds.iter().filter_map(|h| h["id"].as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| id.get(4..30).unwrap_or_default().to_owned());
    assert_eq!(ids, sorted);

    // Counts, transfers and deletes wait for the merge.
    let count = t
        .post_json(
            "/v1/counts",
            &json!({"sku": sku, "on_hand": 5, "occurred_at": stockroom_app::clock::now_rfc3339()}),
        )
        .send()
        .await?;
    expect_problem(count, 409, "stock_split").await?;
    expect_problem(
        t.delete(&format!("/v1/items/{sku}")).send().await?,
        409,
        "stock_split",
    )
    .await?;
    // A batch's records of the sku fail, each with the reason; the others apply.
    let other = unique_sku("cool");
    t.create_item(&other, 3).await?;
    let records = json!([
        {"id": "adjust", "op": "adjust", "sku": sku, "delta": 5, "reason": "restock"},
        {"id": "upsert", "op": "upsert", "sku": sku, "name": "n", "quantity": 9},
        {"id": "count", "op": "count", "sku": sku, "on_hand": 1, "occurred_at": stockroom_app::clock::now_rfc3339()},
        {"id": "other", "op": "adjust", "sku": other, "delta": 1, "reason": "restock"},
        // A hold goes to the buckets, as its route's does: none has a unit left.
        {"id": "hold", "op": "reserve", "sku": sku, "quantity": 1, "expires_in": 600},
    ]);
    let (batch_id, batch) = stockroom_tests::run_isolated_batch(&t, records).await?;
    assert_eq!(batch["status"], "completed_with_errors", "{batch}");
    let mut failures = stockroom_tests::all_failures(&t, &batch_id).await?;
    failures.sort();
    assert_eq!(
        failures,
        [
            ("adjust".to_owned(), "stock_split".to_owned()),
            ("count".to_owned(), "stock_split".to_owned()),
            ("hold".to_owned(), "insufficient_available".to_owned()),
            ("upsert".to_owned(), "stock_split".to_owned()),
        ]
    );
    assert_eq!(item(&t, &sku).await?["quantity"].as_i64(), Some(2));
    assert_eq!(item(&t, &other).await?["quantity"].as_i64(), Some(4));

    // Merged back once no hold counts in a bucket; the early hold's units
    // then sell from the item's own level.
    let released = t
        .request(
            reqwest::Method::POST,
            &format!("/v1/reservations/{early}/release"),
        )
        .send()
        .await?;
    ensure!(released.status() == 200, "{}", released.status());
    let merged: Value = t
        .delete(&path)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(merged["quantity"].as_i64(), Some(2), "{merged}");
    assert!(merged.get("stock_buckets").is_none(), "{merged}");
    let shown = item(&t, &sku).await?;
    assert_eq!(shown["quantity"].as_i64(), Some(2));
    assert!(shown.get("stock_buckets").is_none(), "{shown}");
    let sale: Value = t
        .post_json(
            &format!("/v1/items/{sku}/adjustments"),
            &json!({"delta": -1, "reason": "sale"}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(sale["quantity"].as_i64(), Some(1), "{sale}");
    assert!(sale.get("stock_bucket").is_none(), "{sale}");
    assert_eq!(default_level(&t, &sku).await?, (1, 0, 1));
    let count = t
        .post_json(
            "/v1/counts",
            &json!({"sku": sku, "on_hand": 5, "occurred_at": stockroom_app::clock::now_rfc3339()}),
        )
        .send()
        .await?;
    ensure!(count.status().is_success(), "{}", count.status());
    // Split again into fewer buckets: the ledger still reads every bucket
    // the first split used.
    let resplit: Value = t
        .put_json(&path, &json!({"buckets": 2}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(resplit["quantity"].as_i64(), Some(5), "{resplit}");
    let ledger = all_pages(
        &t,
        &format!("/v1/items/{sku}/movements?limit=9"),
        "movements",
    )
    .await?;
    let sum: i64 = ledger.iter().filter_map(|m| m["delta"].as_i64()).sum();
    let past: BTreeSet<i64> = ledger
        .iter()
        .filter_map(|m| m["stock_bucket"].as_i64())
        .filter(|b| *b >= 2)
        .collect();
    assert!(
        !past.is_empty(),
        "the first split's buckets 2-7 stay listed"
    );
    assert_eq!(
        sum, 5,
        "the ledger, every bucket's included, sums to the quantity"
    );
    t.delete(&path).send().await?.error_for_status()?;
    Ok(())
}

#[tokio::test]
async fn a_hold_that_expires_in_a_bucket_is_ended_for_good_there() -> Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("hot-lapse");
    t.create_item(&sku, 6).await?;
    let tenant = TenantId::parse(&t.tenant_id).map_err(anyhow::Error::msg)?;
    let parsed = Sku::parse(&sku).map_err(anyhow::Error::msg)?;
    splits().await?.split(&tenant, &parsed, 2, &admin()).await?;
    let resp = t
        .post_json(
            "/v1/reservations",
            &json!({"sku": sku, "quantity": 2, "expires_in": 1}),
        )
        .send()
        .await?;
    ensure!(resp.status() == 201, "hold: {}", resp.status());
    let placed: Value = resp.json().await?;
    let id = placed["id"].as_str().context("id")?.to_owned();
    assert_eq!(default_level(&t, &sku).await?, (6, 2, 4));
    // The merge waits for the hold in its bucket.
    let held = t
        .delete(&format!("/v1/items/{sku}/stock-split"))
        .send()
        .await?;
    expect_problem(held, 409, "item_reserved").await?;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // It stops counting at its expiry, before anything ends it.
    assert_eq!(default_level(&t, &sku).await?, (6, 0, 6));
    // Nobody writes its bucket: TTL removes the hold's record and the
    // stream ends the hold in its bucket, with its movement.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let ledger = all_pages(&t, &format!("/v1/items/{sku}/movements"), "movements").await?;
        if let Some(expired) = ledger.iter().find(|m| m["reason"] == "reservation_expired") {
            assert_eq!(expired["reserved_delta"].as_i64(), Some(-2), "{expired}");
            assert_eq!(expired["reference"].as_str(), Some(id.as_str()));
            assert!(expired["stock_bucket"].as_i64().is_some(), "{expired}");
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the lapsed hold was not ended: {ledger:?}"
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    let shown: Value = read(&t, &format!("/v1/reservations/{id}")).await?;
    assert_eq!(shown["status"], "expired");
    // With nothing held in its buckets, the split merges back whole.
    let merged = splits().await?.merge(&tenant, &parsed, &admin()).await?;
    assert_eq!((merged.quantity, merged.stock_buckets), (6, None));
    Ok(())
}
