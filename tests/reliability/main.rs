//! Reliability under concurrency on the local stack: many clients at once on
//! one item, and one request retried concurrently with one Idempotency-Key.

use anyhow::Result;
use serde_json::{Value, json};
use std::collections::HashSet;
use stockroom_tests::{Tenant, unique_sku};

mod crash;
mod faults;
mod outbox;

fn adjust_path(sku: &str) -> String {
    format!("/v1/items/{sku}/adjustments")
}

async fn quantity(t: &Tenant, sku: &str) -> Result<i64> {
    let item: Value = t
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    item["quantity"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no quantity: {item}"))
}

#[tokio::test]
async fn fifty_concurrent_adjustments_that_would_overdraw_end_exact_and_never_negative()
-> Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("fifty");
    t.create_item(&sku, 30).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let req = t.post_json(
            &adjust_path(&sku),
            &json!({"delta": -1, "reason": "sale", "reference": format!("o-{i}")}),
        );
        tasks.spawn(async move {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let body: Value = resp.json().await?;
            anyhow::Ok((status, body))
        });
    }
    let (mut applied, mut refused) = (0i64, 0);
    let mut after = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        let (status, body) = joined??;
        match status {
            200 => {
                applied += 1;
                // Each success saw a distinct resulting quantity: no lost update.
                assert!(
                    after.insert(body["quantity"].as_i64().unwrap_or(-1)),
                    "{body}"
                );
            }
            409 => {
                refused += 1;
                let code = body["code"].as_str().unwrap_or_default();
                assert!(
                    ["insufficient_stock", "concurrent_update"].contains(&code),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(applied + refused, 50);
    assert!(applied <= 30, "never more sold than in stock: {applied}");
    let q = quantity(&t, &sku).await?;
    assert_eq!(q, 30 - applied, "exact final quantity");
    assert!(q >= 0);
    let ledger: Value = t
        .get(&format!("/v1/items/{sku}/movements?limit=100"))
        .send()
        .await?
        .json()
        .await?;
    let sales = ledger["movements"]
        .as_array()
        .map(|m| m.iter().filter(|x| x["delta"] == -1).count())
        .unwrap_or_default();
    assert_eq!(
        sales as i64, applied,
        "one ledger entry per applied adjustment"
    );
    Ok(())
}

#[tokio::test]
async fn one_idempotency_key_sent_twenty_times_at_once_has_one_effect_and_one_answer() -> Result<()>
{
    let t = Tenant::new().await?;
    let sku = unique_sku("idem20");
    t.create_item(&sku, 100).await?;
    let key = uuid::Uuid::new_v4().to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let req = t
            .post_json(&adjust_path(&sku), &json!({"delta": -7, "reason": "sale"}))
            .header("idempotency-key", &key);
        tasks.spawn(async move {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let body: Value = resp.json().await?;
            anyhow::Ok((status, body))
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined??);
    }
    let first = answers[0].clone();
    for a in &answers {
        assert_eq!(a, &first, "every retry gets the same answer");
    }
    assert_eq!(first.0, 200, "{first:?}");
    assert_eq!(first.1["quantity"], 93);
    assert_eq!(quantity(&t, &sku).await?, 93, "applied exactly once");
    Ok(())
}
