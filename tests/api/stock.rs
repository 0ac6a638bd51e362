use serde_json::{Value, json};
use stockroom_tests::{Tenant, expect_problem, unique_sku};

fn adjust_path(sku: &str) -> String {
    format!("/v1/items/{sku}/adjustments")
}

#[tokio::test]
async fn adjustments_move_stock_and_record_the_ledger() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("adj");
    t.create_item(&sku, 10).await?;
    let resp = t
        .post_json(
            &adjust_path(&sku),
            &json!({"delta": -3, "reason": "sale", "reference": "order-1"}),
        )
        .header("x-request-id", "req-adjust-1")
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await?;
    assert_eq!(out["sku"], sku.as_str());
    assert_eq!(out["quantity"], 7);
    let movement_id = out["movement_id"].as_str().expect("movement_id").to_owned();

    let out: Value = t
        .post_json(
            &adjust_path(&sku),
            &json!({"delta": 5, "reason": "receipt"}),
        )
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(out["quantity"], 12);

    let ledger: Value = t
        .get(&format!("/v1/items/{sku}/movements"))
        .send()
        .await?
        .json()
        .await?;
    let moves = ledger["movements"].as_array().expect("movements");
    assert_eq!(moves.len(), 3);
    // Newest first: receipt, sale, opening stock.
    assert_eq!(moves[0]["delta"], 5);
    assert_eq!(moves[0]["quantity_after"], 12);
    assert_eq!(moves[1]["movement_id"], movement_id.as_str());
    assert_eq!(moves[1]["reason"], "sale");
    assert_eq!(moves[1]["reference"], "order-1");
    assert_eq!(moves[1]["request_id"], "req-adjust-1");
    assert_eq!(moves[1]["key_id"], t.key_id.as_str());
    assert_eq!(moves[2]["reason"], "initial_stock");
    assert_eq!(moves[2]["quantity_after"], 10);
    let item: Value = t
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(item["quantity"], 12);
    Ok(())
}

#[tokio::test]
async fn overdrawing_is_409_and_changes_nothing() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("over");
    t.create_item(&sku, 2).await?;
    let resp = t
        .post_json(&adjust_path(&sku), &json!({"delta": -3, "reason": "sale"}))
        .send()
        .await?;
    let body = expect_problem(resp, 409, "insufficient_stock").await?;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("2 available")
    );
    let item: Value = t
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(item["quantity"], 2);
    let ledger: Value = t
        .get(&format!("/v1/items/{sku}/movements"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ledger["movements"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn invalid_adjustments_are_422_and_missing_items_404() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("inv");
    t.create_item(&sku, 2).await?;
    for body in [
        json!({"delta": 0, "reason": "x"}),
        json!({"delta": 1}),
        json!({"delta": 1.5, "reason": "x"}),
        json!({"delta": 1, "reason": "x", "extra": 1}),
    ] {
        let resp = t.post_json(&adjust_path(&sku), &body).send().await?;
        expect_problem(resp, 422, "validation_failed").await?;
    }
    let resp = t
        .post_json(
            &adjust_path(&sku),
            &json!({"delta": 1_000_000_000_000_i64, "reason": "x"}),
        )
        .send()
        .await?;
    expect_problem(resp, 422, "quantity_overflow").await?;
    let resp = t
        .post_json(
            &adjust_path(&unique_sku("ghost")),
            &json!({"delta": 1, "reason": "x"}),
        )
        .send()
        .await?;
    expect_problem(resp, 404, "item_not_found").await?;
    Ok(())
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response_once_applied() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("idem");
    t.create_item(&sku, 10).await?;
    let body = json!({"delta": -4, "reason": "sale"});
    let key = uuid::Uuid::new_v4().to_string();
    let first = t
        .post_json(&adjust_path(&sku), &body)
        .header("idempotency-key", &key)
        .send()
        .await?;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await?;

    let again = t
        .post_json(&adjust_path(&sku), &body)
        .header("idempotency-key", &key)
        .send()
        .await?;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await?, first);

    let item: Value = t
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(item["quantity"], 6, "the retry must not apply twice");

    let other = t
        .post_json(&adjust_path(&sku), &json!({"delta": -1, "reason": "sale"}))
        .header("idempotency-key", &key)
        .send()
        .await?;
    expect_problem(other, 422, "idempotency_key_reused").await?;

    // Keys are per tenant: another tenant's identical key is unrelated.
    let u = Tenant::new().await?;
    u.create_item(&sku, 10).await?;
    let theirs: Value = u
        .post_json(&adjust_path(&sku), &body)
        .header("idempotency-key", &key)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(theirs["quantity"], 6);
    assert_ne!(theirs["movement_id"], first["movement_id"]);
    Ok(())
}

#[tokio::test]
async fn concurrent_adjustments_never_overdraw() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("race");
    t.create_item(&sku, 5).await?;
    let calls = (0..10).map(|_| {
        t.post_json(&adjust_path(&sku), &json!({"delta": -1, "reason": "sale"}))
            .send()
    });
    let results = futures_join_all(calls).await;
    let mut ok = 0;
    for r in results {
        let resp = r?;
        match resp.status().as_u16() {
            200 => ok += 1,
            409 => {
                let body: Value = resp.json().await?;
                assert!(
                    ["insufficient_stock", "concurrent_update"]
                        .contains(&body["code"].as_str().unwrap_or_default()),
                    "{body}"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let item: Value = t
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(item["quantity"].as_i64(), Some(5 - ok));
    assert!(item["quantity"].as_i64() >= Some(0));
    let ledger: Value = t
        .get(&format!("/v1/items/{sku}/movements?limit=100"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        ledger["movements"].as_array().map(Vec::len),
        Some(1 + ok as usize)
    );
    Ok(())
}

async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn movements_paginate_newest_first() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("ledger");
    t.create_item(&sku, 1).await?;
    for i in 1..=4 {
        let resp = t
            .post_json(
                &adjust_path(&sku),
                &json!({"delta": i, "reason": "receipt"}),
            )
            .send()
            .await?;
        assert_eq!(resp.status(), 200);
    }
    let first: Value = t
        .get(&format!("/v1/items/{sku}/movements?limit=3"))
        .send()
        .await?
        .json()
        .await?;
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let second: Value = t
        .get(&format!(
            "/v1/items/{sku}/movements?limit=3&cursor={cursor}"
        ))
        .send()
        .await?
        .json()
        .await?;
    let all: Vec<i64> = first["movements"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["movements"].as_array().unwrap())
        .map(|m| m["quantity_after"].as_i64().unwrap())
        .collect();
    assert_eq!(all, vec![11, 7, 4, 2, 1]);
    assert!(second["next_cursor"].is_null());
    // A cursor of one item's ledger is refused for another's.
    let other = unique_sku("ledger2");
    t.create_item(&other, 1).await?;
    let resp = t
        .get(&format!("/v1/items/{other}/movements?cursor={cursor}"))
        .send()
        .await?;
    expect_problem(resp, 400, "invalid_cursor").await?;
    Ok(())
}
