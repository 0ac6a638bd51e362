//! The table's stream is the outbox: a write whose caller never hears back
//! (its answer lost after the commit, as when the function is killed between
//! its commit and its return) is still announced, once.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use stockroom_tests::receiver::Receiver;
use stockroom_tests::{Tenant, unique_sku};

use crate::faults::Faults;

#[tokio::test]
async fn a_write_whose_caller_never_hears_back_is_still_announced_once() -> Result<()> {
    let t = Tenant::new().await?;
    let rx = Receiver::start(vec![]).await?;
    t.create_webhook(&rx.url, &["stock.changed", "item.low_stock"])
        .await?;
    let sku = unique_sku("lost");
    let resp = t
        .post_json(
            "/v1/items",
            &json!({"sku": sku, "name": "n", "quantity": 10, "low_stock_threshold": 5}),
        )
        .send()
        .await?;
    assert_eq!(resp.status(), 201);

    // Only the adjustment's transaction carries this reason: it is applied,
    // and every answer to it (the SDK's retries too) is cut off.
    let reason = format!(
        "lost-answer-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // The needle is the movement's attribute as DynamoDB's JSON protocol
    // writes it: the dispatcher's delivery record carries the reason too
    // (inside its payload), and must not be cut off while the rule stands.
    let needle = format!(r#""reason":{{"S":"{reason}"}}"#);
    let faults = Faults::inject(&needle, 1.0, &["drop_after"], &["dynamodb"]).await?;
    let resp = t
        .post_json(
            &format!("/v1/items/{sku}/adjustments"),
            &json!({"delta": -6, "reason": reason}),
        )
        .send()
        .await?;
    let status = resp.status();
    faults.clear().await?;
    assert!(
        status.is_server_error(),
        "the caller must not hear of the commit: {status}"
    );

    // It committed, once.
    let item: Value = t
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(item["quantity"], 4);
    let ledger: Value = t
        .get(&format!("/v1/items/{sku}/movements"))
        .send()
        .await?
        .json()
        .await?;
    let movements = ledger["movements"].as_array().context("movements")?;
    assert_eq!(movements.len(), 2, "{ledger}");
    let lost = movements
        .iter()
        .find(|m| m["reason"] == reason.as_str())
        .context("the lost answer's movement")?;

    // And it is announced, once: its stock.changed and the crossing.
    rx.wait_for(3, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got: Vec<Value> = rx.received().iter().map(|r| r.json()).collect();
    assert_eq!(got.len(), 3, "{got:#?}");
    let changed: Vec<&Value> = got
        .iter()
        .filter(|e| e["type"] == "stock.changed")
        .collect();
    assert_eq!(changed.len(), 2);
    assert!(
        changed
            .iter()
            .any(|e| e["data"]["movement_id"] == lost["movement_id"] && e["data"]["quantity"] == 4)
    );
    let low: Vec<&Value> = got
        .iter()
        .filter(|e| e["type"] == "item.low_stock")
        .collect();
    assert_eq!(low.len(), 1);
    assert_eq!(low[0]["data"]["quantity"], 4);
    let ids: std::collections::HashSet<&str> =
        got.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), 3, "distinct event ids");
    Ok(())
}
