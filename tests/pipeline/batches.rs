use serde_json::{Value, json};
use std::time::Duration;
use stockroom_tests::{Tenant, all_failures, expect_problem, unique_sku, wait_for_batch};

const WAIT: Duration = Duration::from_secs(120);

async fn submit(t: &Tenant, body: &Value) -> anyhow::Result<String> {
    let resp = t.post_json("/v1/batches", body).send().await?;
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let location = resp.headers()["location"].to_str()?.to_owned();
    let accepted: Value = resp.json().await?;
    let id = accepted["batch_id"].as_str().expect("batch_id").to_owned();
    assert_eq!(location, format!("/v1/batches/{id}"));
    assert_eq!(accepted["status"], "accepted");
    Ok(id)
}

async fn quantity(t: &Tenant, sku: &str) -> anyhow::Result<Option<i64>> {
    let resp = t.get(&format!("/v1/items/{sku}")).send().await?;
    if resp.status() == 404 {
        return Ok(None);
    }
    Ok(resp.json::<Value>().await?["quantity"].as_i64())
}

#[tokio::test]
async fn an_isolated_batch_applies_good_records_and_reports_bad_ones() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let (a, b, c, gone) = (
        unique_sku("a"),
        unique_sku("b"),
        unique_sku("c"),
        unique_sku("gone"),
    );
    t.create_item(&a, 10).await?;
    t.create_item(&b, 1).await?;
    t.create_item(&gone, 4).await?;
    let id = submit(
        &t,
        &json!({"mode": "isolated", "records": [
            {"id": "r1", "op": "adjust", "sku": a, "delta": -3, "reason": "sale", "reference": "order-9"},
            {"id": "r2", "op": "adjust", "sku": b, "delta": -5, "reason": "sale"},
            {"id": "r3", "op": "upsert", "sku": c, "name": "Counted", "quantity": 7},
            {"id": "r4", "op": "upsert", "sku": a, "name": "Recount", "quantity": 20},
            {"id": "r5", "op": "delete", "sku": gone},
            {"id": "r6", "op": "adjust", "sku": unique_sku("nope"), "delta": 1, "reason": "x"},
            {"id": "r7", "op": "adjust", "sku": "bad sku", "delta": 1, "reason": "x"},
            {"id": "r8", "op": "adjust", "sku": a, "delta": 2, "reason": "return"},
        ]}),
    )
    .await?;
    let batch = wait_for_batch(&t, &id, WAIT).await?;
    assert_eq!(batch["status"], "completed_with_errors", "{batch}");
    assert_eq!(
        (
            batch["total"].as_u64(),
            batch["succeeded"].as_u64(),
            batch["failed"].as_u64()
        ),
        (Some(8), Some(5), Some(3))
    );
    assert_eq!(batch["mode"], "isolated");
    assert!(batch["completed_at"].is_string());
    let failures = all_failures(&t, &id).await?;
    assert_eq!(
        failures,
        vec![
            ("r2".to_owned(), "insufficient_stock".to_owned()),
            ("r6".to_owned(), "item_not_found".to_owned()),
            ("r7".to_owned(), "invalid_record".to_owned()),
        ]
    );
    // Records of one sku apply in order: 10 - 3, then counted 20, then + 2.
    assert_eq!(quantity(&t, &a).await?, Some(22));
    assert_eq!(quantity(&t, &b).await?, Some(1));
    assert_eq!(quantity(&t, &c).await?, Some(7));
    assert_eq!(quantity(&t, &gone).await?, None);
    let ledger: Value = t
        .get(&format!("/v1/items/{a}/movements"))
        .send()
        .await?
        .json()
        .await?;
    let moves = ledger["movements"].as_array().expect("movements");
    assert_eq!(moves.len(), 4, "{ledger}");
    assert_eq!(
        (moves[0]["delta"].as_i64(), moves[0]["record_id"].as_str()),
        (Some(2), Some("r8"))
    );
    assert_eq!(
        (moves[1]["delta"].as_i64(), moves[1]["reason"].as_str()),
        (Some(13), Some("stock_count"))
    );
    assert_eq!(moves[2]["reference"], "order-9");
    assert_eq!(moves[2]["batch_id"], id.as_str());
    Ok(())
}

#[tokio::test]
async fn an_atomic_batch_with_one_bad_record_applies_nothing() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let (a, b) = (unique_sku("atom-a"), unique_sku("atom-b"));
    t.create_item(&a, 5).await?;
    t.create_item(&b, 5).await?;
    let id = submit(
        &t,
        &json!({"mode": "atomic", "records": [
            {"id": "1", "op": "adjust", "sku": a, "delta": -2, "reason": "sale"},
            {"id": "2", "op": "upsert", "sku": unique_sku("atom-new"), "name": "n", "quantity": 3},
            {"id": "3", "op": "adjust", "sku": b, "delta": -6, "reason": "sale"},
        ]}),
    )
    .await?;
    let batch = wait_for_batch(&t, &id, WAIT).await?;
    assert_eq!(batch["status"], "failed", "{batch}");
    assert_eq!(
        (batch["succeeded"].as_u64(), batch["failed"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(
        all_failures(&t, &id).await?,
        vec![
            ("1".to_owned(), "atomic_batch_aborted".to_owned()),
            ("2".to_owned(), "atomic_batch_aborted".to_owned()),
            ("3".to_owned(), "insufficient_stock".to_owned()),
        ]
    );
    assert_eq!(quantity(&t, &a).await?, Some(5));
    assert_eq!(quantity(&t, &b).await?, Some(5));
    let ledger: Value = t
        .get(&format!("/v1/items/{a}/movements"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ledger["movements"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn an_atomic_batch_applies_every_record_with_its_ledger() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let (a, n) = (unique_sku("atom-ok"), unique_sku("atom-created"));
    t.create_item(&a, 5).await?;
    let id = submit(
        &t,
        &json!({"mode": "atomic", "records": [
            {"id": "1", "op": "adjust", "sku": a, "delta": -2, "reason": "sale"},
            {"id": "2", "op": "upsert", "sku": n, "name": "n", "quantity": 3},
            {"id": "3", "op": "adjust", "sku": a, "delta": -3, "reason": "sale"},
            {"id": "4", "op": "adjust", "sku": n, "delta": 4, "reason": "receipt"},
        ]}),
    )
    .await?;
    let batch = wait_for_batch(&t, &id, WAIT).await?;
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(
        (batch["succeeded"].as_u64(), batch["failed"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(quantity(&t, &a).await?, Some(0));
    assert_eq!(quantity(&t, &n).await?, Some(7));
    // The ledger is written right after the commit; give it a moment.
    let mut moves = 0;
    for _ in 0..40 {
        let ledger: Value = t
            .get(&format!("/v1/items/{a}/movements"))
            .send()
            .await?
            .json()
            .await?;
        moves = ledger["movements"].as_array().map(Vec::len).unwrap_or(0);
        if moves == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(moves, 3);
    Ok(())
}

#[tokio::test]
async fn atomic_batches_with_invalid_records_are_rejected_at_once() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let resp = t
        .post_json(
            "/v1/batches",
            &json!({"mode": "atomic", "records": [
                {"id": "ok", "op": "delete", "sku": "A"},
                {"id": "zero", "op": "adjust", "sku": "A", "delta": 0, "reason": "x"},
                {"id": "sku", "op": "delete", "sku": "not ok"},
            ]}),
        )
        .send()
        .await?;
    let body = expect_problem(resp, 422, "invalid_records").await?;
    let ids: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["record_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, vec!["zero", "sku"]);

    let records: Vec<Value> = (0..100)
        .map(|i| json!({"id": i.to_string(), "op": "delete", "sku": "A"}))
        .collect();
    let resp = t
        .post_json(
            "/v1/batches",
            &json!({"mode": "atomic", "records": records}),
        )
        .send()
        .await?;
    let body = expect_problem(resp, 413, "too_many_records").await?;
    assert!(body["detail"].as_str().unwrap_or_default().contains("99"));
    Ok(())
}

#[tokio::test]
async fn malformed_batches_are_refused_and_create_nothing() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let cases = [
        (
            json!({"mode": "isolated", "records": [{"id": "1", "op": "explode", "sku": "A"}]}),
            400,
            "malformed_batch",
        ),
        (
            json!({"mode": "isolated", "records": "nope"}),
            400,
            "malformed_batch",
        ),
        (
            json!({"mode": "isolated", "records": [5]}),
            400,
            "malformed_batch",
        ),
        (
            json!({"mode": "isolated", "records": []}),
            422,
            "validation_failed",
        ),
        (
            json!({"mode": "sometimes", "records": [{"id": "1", "op": "delete", "sku": "A"}]}),
            422,
            "validation_failed",
        ),
        (
            json!({"mode": "isolated", "records": [{"id": "1", "op": "delete", "sku": "A"}, {"id": "1", "op": "delete", "sku": "B"}]}),
            422,
            "validation_failed",
        ),
    ];
    for (body, status, code) in cases {
        let resp = t.post_json("/v1/batches", &body).send().await?;
        expect_problem(resp, status, code).await?;
    }
    let resp = t
        .request(reqwest::Method::POST, "/v1/batches")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await?;
    expect_problem(resp, 400, "malformed_json").await?;
    let big = "x".repeat(5 * 1024 * 1024 + 1);
    let resp = t
        .request(reqwest::Method::POST, "/v1/batches")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await?;
    let body = expect_problem(resp, 413, "payload_too_large").await?;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("5242880")
    );
    let listed: Value = t.get("/v1/batches").send().await?.json().await?;
    assert_eq!(listed["batches"].as_array().map(Vec::len), Some(0));
    Ok(())
}

#[tokio::test]
async fn a_batch_of_one_and_listing_and_isolation() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("one");
    let id = submit(&t, &json!({"mode": "isolated", "records": [{"id": "only", "op": "upsert", "sku": sku, "name": "One", "quantity": 1}]})).await?;
    let batch = wait_for_batch(&t, &id, WAIT).await?;
    assert_eq!(batch["status"], "completed");
    assert_eq!(quantity(&t, &sku).await?, Some(1));
    assert_eq!(all_failures(&t, &id).await?, vec![]);

    let listed: Value = t
        .get("/v1/batches?status=completed")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(listed["batches"][0]["batch_id"], id.as_str());
    let listed: Value = t
        .get("/v1/batches?status=failed")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(listed["batches"].as_array().map(Vec::len), Some(0));
    let resp = t.get("/v1/batches?status=done").send().await?;
    expect_problem(resp, 400, "invalid_parameter").await?;

    let other = Tenant::new().await?;
    expect_problem(
        other.get(&format!("/v1/batches/{id}")).send().await?,
        404,
        "batch_not_found",
    )
    .await?;
    expect_problem(
        other
            .get(&format!("/v1/batches/{id}/failures"))
            .send()
            .await?,
        404,
        "batch_not_found",
    )
    .await?;
    expect_problem(
        t.get("/v1/batches/b_nothere").send().await?,
        404,
        "batch_not_found",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_retried_post_with_the_same_idempotency_key_creates_one_batch() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("idem");
    t.create_item(&sku, 0).await?;
    let body = json!({"mode": "isolated", "records": [{"id": "1", "op": "adjust", "sku": sku, "delta": 5, "reason": "receipt"}]});
    let key = uuid::Uuid::new_v4().to_string();
    let first = t
        .post_json("/v1/batches", &body)
        .header("idempotency-key", &key)
        .send()
        .await?;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await?;
    let again = t
        .post_json("/v1/batches", &body)
        .header("idempotency-key", &key)
        .send()
        .await?;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await?["batch_id"], first["batch_id"]);
    wait_for_batch(&t, first["batch_id"].as_str().expect("id"), WAIT).await?;
    assert_eq!(quantity(&t, &sku).await?, Some(5));
    let listed: Value = t.get("/v1/batches").send().await?.json().await?;
    assert_eq!(listed["batches"].as_array().map(Vec::len), Some(1));
    let other = json!({"mode": "isolated", "records": [{"id": "1", "op": "adjust", "sku": sku, "delta": 6, "reason": "receipt"}]});
    let resp = t
        .post_json("/v1/batches", &other)
        .header("idempotency-key", &key)
        .send()
        .await?;
    expect_problem(resp, 422, "idempotency_key_reused").await?;
    Ok(())
}

/// An atomic batch travels in one message whatever its size: 60 records
/// with long descriptions (about 130 KiB, more than one isolated chunk)
/// apply whole; past 200 KiB the batch is refused up front.
#[tokio::test]
async fn a_large_atomic_batch_is_one_message_or_refused() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let description = "d".repeat(2000);
    let records = |n: usize, prefix: &str| -> Vec<Value> {
        (0..n)
            .map(|i| {
                json!({"id": format!("r{i}"), "op": "upsert", "sku": format!("{prefix}-{i}"),
                       "name": "Big", "description": description, "quantity": 1})
            })
            .collect()
    };
    let prefix = unique_sku("big-atomic");
    let id = submit(
        &t,
        &json!({"mode": "atomic", "records": records(60, &prefix)}),
    )
    .await?;
    let batch = wait_for_batch(&t, &id, WAIT).await?;
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(batch["succeeded"], 60);
    assert_eq!(quantity(&t, &format!("{prefix}-59")).await?, Some(1));

    let resp = t
        .post_json(
            "/v1/batches",
            &json!({"mode": "atomic", "records": records(99, "too-big")}),
        )
        .send()
        .await?;
    let problem = expect_problem(resp, 422, "validation_failed").await?;
    assert!(problem.to_string().contains("200 KiB"), "{problem}");
    Ok(())
}
