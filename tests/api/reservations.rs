//! Reservations through the stack: holds never oversell under concurrency,
//! expired holds free their units before any sweep, commit and release end
//! a hold once, and every mutation replays under its Idempotency-Key.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockroom_tests::{Tenant, all_pages, expect_problem, unique_sku};

async fn hold(t: &Tenant, body: &Value) -> anyhow::Result<reqwest::Response> {
    Ok(t.post_json("/v1/reservations", body).send().await?)
}

async fn end(t: &Tenant, id: &str, how: &str) -> anyhow::Result<reqwest::Response> {
    Ok(t.request(
        reqwest::Method::POST,
        &format!("/v1/reservations/{id}/{how}"),
    )
    .send()
    .await?)
}

use stockroom_tests::level_at as level;

async fn ledger_sum(t: &Tenant, sku: &str, location: Option<&str>) -> anyhow::Result<i64> {
    let movements = all_pages(t, &format!("/v1/items/{sku}/movements"), "movements").await?;
    Ok(movements
        .iter()
        .filter(|m| m["location"].as_str() == location)
        .map(|m| m["delta"].as_i64().unwrap_or(0))
        .sum())
}

/// Holds and sales race for 6 units: exactly 6 succeed between them,
/// nothing goes negative, and the ledger and the holds account for every
/// unit.
#[tokio::test]
async fn concurrent_holds_and_sales_never_take_more_than_there_is() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("rsv-race");
    t.create_item(&sku, 6).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..18 {
        let (t, sku) = (t.clone(), sku.clone());
        tasks.spawn(async move {
            let resp = if i % 3 == 0 {
                t.post_json(
                    &format!("/v1/items/{sku}/adjustments"),
                    &json!({"delta": -1, "reason": "sale"}),
                )
                .send()
                .await?
            } else {
                hold(&t, &json!({"sku": sku, "quantity": 1, "expires_in": 600})).await?
            };
            let status = resp.status();
            let body: Value = resp.json().await?;
            anyhow::Ok((i % 3 == 0, status, body))
        });
    }
    let (mut sales, mut holds) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (sale, status, body) = joined??;
        match (sale, status) {
            (true, StatusCode::OK) => sales += 1,
            (false, StatusCode::CREATED) => holds += 1,
            (true, StatusCode::CONFLICT) => {
                assert_eq!(body["code"], "insufficient_stock", "{body}")
            }
            (false, StatusCode::CONFLICT) => {
                assert_eq!(body["code"], "insufficient_available", "{body}")
            }
            other => anyhow::bail!("unexpected {other:?}: {body}"),
        }
    }
    assert_eq!(
        sales + holds,
        6,
        "{sales} sales and {holds} holds of 6 units"
    );
    let now = level(&t, &sku, "default").await?;
    assert_eq!(
        now,
        json!({"location": "default", "on_hand": 6 - sales, "reserved": holds, "available": 0})
    );
    assert_eq!(ledger_sum(&t, &sku, None).await?, 6 - sales);
    let active = all_pages(
        &t,
        &format!("/v1/reservations?sku={sku}&status=active&limit=2"),
        "reservations",
    )
    .await?;
    assert_eq!(active.len(), holds as usize, "{active:?}");
    let units: i64 = active
        .iter()
        .map(|r| r["quantity"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(units, holds);
    Ok(())
}

#[tokio::test]
async fn an_expired_hold_frees_its_units_before_any_sweep() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("rsv-exp");
    t.create_item(&sku, 2).await?;
    // 3 s: time enough for the refusal below to arrive before the expiry.
    let first: Value = hold(&t, &json!({"sku": sku, "quantity": 2, "expires_in": 3}))
        .await?
        .json()
        .await?;
    let first_id = first["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(first["status"], "active", "{first}");
    expect_problem(
        hold(&t, &json!({"sku": sku, "quantity": 1, "expires_in": 60})).await?,
        409,
        "insufficient_available",
    )
    .await?;
    tokio::time::sleep(std::time::Duration::from_millis(3_300)).await;

    // Nothing has swept it: it stopped counting at its expiry all the same.
    let shown: Value = t
        .get(&format!("/v1/reservations/{first_id}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (shown["status"].as_str(), shown["ended_at"].is_null()),
        (Some("expired"), true),
        "{shown}"
    );
    assert_eq!(
        level(&t, &sku, "default").await?,
        json!({"location": "default", "on_hand": 2, "reserved": 0, "available": 2})
    );
    let second = hold(&t, &json!({"sku": sku, "quantity": 2, "expires_in": 60})).await?;
    assert_eq!(second.status(), 201);
    // That write swept the expired hold for good.
    let swept: Value = t
        .get(&format!("/v1/reservations/{first_id}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(swept["status"], "expired");
    assert!(swept["ended_at"].is_string(), "{swept}");
    expect_problem(
        end(&t, &first_id, "commit").await?,
        409,
        "reservation_expired",
    )
    .await?;
    let released: Value = end(&t, &first_id, "release").await?.json().await?;
    assert_eq!(released["status"], "expired", "{released}");
    let expired = all_pages(
        &t,
        &format!("/v1/reservations?sku={sku}&status=expired"),
        "reservations",
    )
    .await?;
    assert_eq!(expired.len(), 1);
    assert_eq!(
        level(&t, &sku, "default").await?,
        json!({"location": "default", "on_hand": 2, "reserved": 2, "available": 0})
    );
    Ok(())
}

#[tokio::test]
async fn commit_takes_units_off_hand_and_release_frees_them_once_each() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("rsv-end");
    t.create_item(&sku, 0).await?;
    let depot = unique_sku("rsv-depot");
    let made = t
        .post_json(
            "/v1/locations",
            &json!({"id": depot, "name": "Depot", "kind": "warehouse"}),
        )
        .send()
        .await?;
    assert_eq!(made.status(), 201);
    let stocked = t
        .post_json(
            &format!("/v1/items/{sku}/adjustments"),
            &json!({"delta": 10, "reason": "receipt", "location": depot}),
        )
        .send()
        .await?;
    assert_eq!(stocked.status(), 200);
    // None at the default location: a hold there is refused.
    expect_problem(
        hold(&t, &json!({"sku": sku, "quantity": 1, "expires_in": 60})).await?,
        409,
        "insufficient_available",
    )
    .await?;

    let a = hold(&t, &json!({"sku": sku, "location": depot, "quantity": 3, "expires_in": 600, "reference": "cart-1"})).await?;
    assert_eq!(a.status(), 201);
    let url = a
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let a: Value = a.json().await?;
    let a_id = a["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(url, format!("/v1/reservations/{a_id}"));
    assert_eq!(
        (a["location"].as_str(), a["reference"].as_str()),
        (Some(depot.as_str()), Some("cart-1"))
    );
    let b: Value = hold(
        &t,
        &json!({"sku": sku, "location": depot, "quantity": 2, "expires_in": 600}),
    )
    .await?
    .json()
    .await?;
    let b_id = b["id"].as_str().unwrap_or_default().to_owned();
    // A sale may take only what is not held.
    expect_problem(
        t.post_json(
            &format!("/v1/items/{sku}/adjustments"),
            &json!({"delta": -6, "reason": "sale", "location": depot}),
        )
        .send()
        .await?,
        409,
        "insufficient_stock",
    )
    .await?;

    let committed: Value = end(&t, &a_id, "commit").await?.json().await?;
    assert_eq!(committed["status"], "committed", "{committed}");
    let again = end(&t, &a_id, "commit").await?;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await?["status"], "committed");
    assert_eq!(
        level(&t, &sku, &depot).await?,
        json!({"location": depot, "on_hand": 7, "reserved": 2, "available": 5})
    );
    let movements = all_pages(&t, &format!("/v1/items/{sku}/movements"), "movements").await?;
    let commits: Vec<&Value> = movements
        .iter()
        .filter(|m| m["reason"] == "reservation_committed")
        .collect();
    assert_eq!(commits.len(), 1, "one movement per commit: {movements:?}");
    assert_eq!(
        (
            commits[0]["delta"].as_i64(),
            commits[0]["reference"].as_str(),
            commits[0]["location"].as_str()
        ),
        (Some(-3), Some(a_id.as_str()), Some(depot.as_str()))
    );
    assert_eq!(ledger_sum(&t, &sku, Some(&depot)).await?, 7);

    expect_problem(end(&t, &a_id, "release").await?, 409, "reservation_ended").await?;
    let released: Value = end(&t, &b_id, "release").await?.json().await?;
    assert_eq!(released["status"], "released");
    assert_eq!(end(&t, &b_id, "release").await?.status(), 200);
    expect_problem(end(&t, &b_id, "commit").await?, 409, "reservation_ended").await?;
    assert_eq!(
        level(&t, &sku, &depot).await?,
        json!({"location": depot, "on_hand": 7, "reserved": 0, "available": 7})
    );
    let all = all_pages(
        &t,
        &format!("/v1/reservations?sku={sku}&limit=1"),
        "reservations",
    )
    .await?;
    let ids: Vec<&str> = all.iter().filter_map(|r| r["id"].as_str()).collect();
    let mut expected = [a_id.as_str(), b_id.as_str()];
    expected.sort();
    assert_eq!(
        ids, expected,
        "in id order (creation order, to the millisecond)"
    );
    Ok(())
}

#[tokio::test]
async fn every_reservation_mutation_replays_under_its_idempotency_key() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("rsv-idem");
    t.create_item(&sku, 5).await?;
    let body = json!({"sku": sku, "quantity": 2, "expires_in": 600});
    let key = unique_sku("k");
    let send = |body: Value, key: String| {
        let t = t.clone();
        async move {
            t.post_json("/v1/reservations", &body)
                .header("Idempotency-Key", key)
                .send()
                .await
        }
    };
    let first = send(body.clone(), key.clone()).await?;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await?;
    let retry = send(body.clone(), key.clone()).await?;
    assert_eq!(retry.status(), 201);
    assert_eq!(
        retry
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(retry.json::<Value>().await?["id"], first["id"]);
    assert_eq!(
        level(&t, &sku, "default").await?["reserved"],
        2,
        "held once"
    );
    let other = send(
        json!({"sku": sku, "quantity": 1, "expires_in": 600}),
        key.clone(),
    )
    .await?;
    expect_problem(other, 422, "idempotency_key_reused").await?;

    let id = first["id"].as_str().unwrap_or_default();
    let commit_key = unique_sku("c");
    for _ in 0..2 {
        let resp = t
            .request(
                reqwest::Method::POST,
                &format!("/v1/reservations/{id}/commit"),
            )
            .header("Idempotency-Key", &commit_key)
            .send()
            .await?;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        level(&t, &sku, "default").await?,
        json!({"location": "default", "on_hand": 3, "reserved": 0, "available": 3})
    );
    Ok(())
}

#[tokio::test]
async fn bad_reservations_get_clear_errors_and_hold_nothing() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("rsv-bad");
    t.create_item(&sku, 5).await?;
    let resp = hold(
        &t,
        &json!({"sku": "a b", "quantity": 0, "expires_in": 604_801, "colour": 1}),
    )
    .await?;
    let problem = expect_problem(resp, 422, "validation_failed").await?;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    for field in ["sku", "quantity", "expires_in", "colour"] {
        assert!(fields.contains(&field), "{field} in {problem}");
    }
    expect_problem(
        hold(
            &t,
            &json!({"sku": unique_sku("nope"), "quantity": 1, "expires_in": 60}),
        )
        .await?,
        404,
        "item_not_found",
    )
    .await?;
    expect_problem(
        hold(
            &t,
            &json!({"sku": sku, "location": "nowhere", "quantity": 1, "expires_in": 60}),
        )
        .await?,
        404,
        "location_not_found",
    )
    .await?;
    for id in ["rsv_nope", "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R_SKU-1"] {
        expect_problem(
            t.get(&format!("/v1/reservations/{id}")).send().await?,
            404,
            "reservation_not_found",
        )
        .await?;
        expect_problem(end(&t, id, "commit").await?, 404, "reservation_not_found").await?;
    }
    expect_problem(
        t.get("/v1/reservations").send().await?,
        400,
        "invalid_parameter",
    )
    .await?;
    expect_problem(
        t.get(&format!("/v1/reservations?sku={sku}&status=pending"))
            .send()
            .await?,
        400,
        "invalid_parameter",
    )
    .await?;
    let reader = t.another_key(&["items:read"]).await?;
    expect_problem(
        hold(
            &reader,
            &json!({"sku": sku, "quantity": 1, "expires_in": 60}),
        )
        .await?,
        403,
        "insufficient_scope",
    )
    .await?;
    assert_eq!(
        level(&t, &sku, "default").await?,
        json!({"location": "default", "on_hand": 5, "reserved": 0, "available": 5})
    );
    Ok(())
}

#[tokio::test]
async fn an_item_that_holds_count_on_cannot_be_deleted_until_they_end() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("rsv-del");
    t.create_item(&sku, 5).await?;
    let held: Value = hold(&t, &json!({"sku": sku, "quantity": 2, "expires_in": 600}))
        .await?
        .json()
        .await?;
    let id = held["id"].as_str().unwrap_or_default().to_owned();
    expect_problem(
        t.delete(&format!("/v1/items/{sku}")).send().await?,
        409,
        "item_reserved",
    )
    .await?;
    assert_eq!(end(&t, &id, "release").await?.status(), 200);
    assert_eq!(
        t.delete(&format!("/v1/items/{sku}")).send().await?.status(),
        204
    );
    // Re-created under the same sku, it starts with nothing held.
    t.create_item(&sku, 3).await?;
    assert_eq!(
        level(&t, &sku, "default").await?,
        json!({"location": "default", "on_hand": 3, "reserved": 0, "available": 3})
    );
    Ok(())
}

/// Square's rule: a count sets on hand as of its time; a sale after it
/// that was applied first stays applied; an adjustment dated before it
/// that arrives later moves nothing; an older count changes nothing.
#[tokio::test]
async fn counts_set_the_level_as_of_their_time_and_late_earlier_changes_move_nothing()
-> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("cnt");
    t.create_item(&sku, 50).await?;
    let ago = |minutes: i64| {
        (time::OffsetDateTime::now_utc() - time::Duration::minutes(minutes))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let adjust = |body: Value| {
        let t = t.clone();
        let sku = sku.clone();
        async move {
            t.post_json(&format!("/v1/items/{sku}/adjustments"), &body)
                .send()
                .await
        }
    };
    let count = |body: Value| {
        let t = t.clone();
        async move { t.post_json("/v1/counts", &body).send().await }
    };
    // A count is taken (after the opening stock), a sale happens, and the
    // count arrives after the sale: 40 counted, the later sale of 2 stays.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let taken = ago(0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        adjust(json!({"delta": -2, "reason": "sale"}))
            .await?
            .status(),
        200
    );
    let counted: Value =
        count(json!({"sku": sku, "on_hand": 40, "occurred_at": taken, "reference": "st-1"}))
            .await?
            .json()
            .await?;
    assert_eq!(
        (
            counted["on_hand"].as_i64(),
            counted["delta"].as_i64(),
            counted["applied"].as_bool()
        ),
        (Some(38), Some(-10), Some(true)),
        "{counted}"
    );
    // A sale that happened 5 minutes ago, sent now: the count includes it.
    let late = adjust(json!({"delta": -3, "reason": "sale", "occurred_at": ago(5)})).await?;
    assert_eq!(late.status(), 200);
    let late: Value = late.json().await?;
    assert_eq!(
        (late["quantity"].as_i64(), late["applied"].as_bool()),
        (Some(38), Some(false)),
        "{late}"
    );
    // An older count arriving late changes nothing; a newer one sets the level.
    let older: Value = count(json!({"sku": sku, "on_hand": 99, "occurred_at": ago(10)}))
        .await?
        .json()
        .await?;
    assert_eq!(
        (older["on_hand"].as_i64(), older["applied"].as_bool()),
        (Some(38), Some(false)),
        "{older}"
    );
    let level_now = level(&t, &sku, "default").await?;
    assert_eq!(level_now["on_hand"], 38);
    assert!(level_now["counted_at"].is_string(), "{level_now}");
    let item: Value = t
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        item["quantity"], 38,
        "the default level is the item's quantity"
    );

    // The ledger: applied deltas sum to on hand; the late ones are marked.
    let movements = all_pages(&t, &format!("/v1/items/{sku}/movements"), "movements").await?;
    let applied: i64 = movements
        .iter()
        .filter(|m| m["applies"] != false)
        .map(|m| m["delta"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(applied, 38, "{movements:?}");
    assert_eq!(
        movements.iter().filter(|m| m["applies"] == false).count(),
        2
    );

    // A count below what is held is refused; in the future, invalid.
    let held = hold(&t, &json!({"sku": sku, "quantity": 5, "expires_in": 600})).await?;
    assert_eq!(held.status(), 201);
    expect_problem(
        count(json!({"sku": sku, "on_hand": 3, "occurred_at": ago(0)})).await?,
        409,
        "count_below_reserved",
    )
    .await?;
    let future = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    expect_problem(
        count(json!({"sku": sku, "on_hand": 3, "occurred_at": future})).await?,
        422,
        "validation_failed",
    )
    .await?;
    expect_problem(
        adjust(json!({"delta": 1, "reason": "r", "occurred_at": future})).await?,
        422,
        "validation_failed",
    )
    .await?;
    let recount: Value = count(json!({"sku": sku, "on_hand": 12, "occurred_at": ago(0)}))
        .await?
        .json()
        .await?;
    assert_eq!(recount["on_hand"], 12, "{recount}");
    assert_eq!(level(&t, &sku, "default").await?["available"], 7);
    Ok(())
}

/// A batch carries counts, transfers and holds: each applied once, by its
/// route's rules, with a failure report for those refused; a batch sale at
/// the default location cannot take the units a hold placed there keeps.
#[tokio::test]
async fn a_batch_of_counts_transfers_and_holds_applies_each_once_by_its_routes_rules()
-> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("rsv-batch");
    let depot = unique_sku("loc");
    let resp = t
        .post_json(
            "/v1/locations",
            &json!({"id": depot, "name": "Depot", "kind": "warehouse"}),
        )
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 201, "location: {}", resp.status());
    t.create_item(&sku, 10).await?;
    let earlier = (time::OffsetDateTime::now_utc() - time::Duration::minutes(5))
        .format(&time::format_description::well_known::Rfc3339)?;
    let records = json!([
        {"id": "move", "op": "transfer", "sku": sku, "from": "default", "to": depot, "quantity": 4},
        {"id": "count", "op": "count", "sku": sku, "location": depot, "on_hand": 5, "occurred_at": earlier},
        {"id": "hold", "op": "reserve", "sku": sku, "quantity": 5, "expires_in": 600, "reference": "cart-1"},
        {"id": "oversell", "op": "adjust", "sku": sku, "delta": -3, "reason": "sale"},
        {"id": "too-much", "op": "reserve", "sku": sku, "quantity": 2, "expires_in": 600},
        {"id": "nowhere", "op": "transfer", "sku": sku, "from": "default", "to": "no-such-place", "quantity": 1},
        {"id": "overdraw", "op": "transfer", "sku": sku, "from": depot, "to": "default", "quantity": 100},
        {"id": "future", "op": "count", "sku": sku, "on_hand": 1, "occurred_at": "2999-01-01T00:00:00Z"},
        {"id": "sale", "op": "adjust", "sku": sku, "delta": -1, "reason": "sale"},
    ]);
    let (batch_id, batch) = stockroom_tests::run_isolated_batch(&t, records).await?;
    assert_eq!(
        (batch["succeeded"].as_u64(), batch["failed"].as_u64()),
        (Some(4), Some(5)),
        "{batch}"
    );
    let failures = all_pages(&t, &format!("/v1/batches/{batch_id}/failures"), "failures").await?;
    let mut failed: Vec<(String, String)> = failures
        .iter()
        .map(|f| {
            (
                f["record_id"].as_str().unwrap_or_default().to_owned(),
                f["code"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        [
            ("future".into(), "invalid_record".into()),
            ("nowhere".into(), "location_not_found".into()),
            ("overdraw".into(), "insufficient_available".into()),
            ("oversell".into(), "insufficient_available".into()),
            ("too-much".into(), "insufficient_available".into()),
        ]
    );
    // Default: 10 - 4 moved - 1 sold, 5 of it held. Depot: counted at 5
    // before the 4 arrived, which stay on top of the count.
    let default = level(&t, &sku, "default").await?;
    assert_eq!(
        (
            &default["on_hand"],
            &default["reserved"],
            &default["available"]
        ),
        (&json!(5), &json!(5), &json!(0))
    );
    assert_eq!(level(&t, &sku, &depot).await?["on_hand"], json!(9));
    // The ledger balances with the levels, and its movements name their record.
    assert_eq!(ledger_sum(&t, &sku, None).await?, 5);
    assert_eq!(ledger_sum(&t, &sku, Some(&depot)).await?, 9);
    let movements = all_pages(&t, &format!("/v1/items/{sku}/movements"), "movements").await?;
    let mut by_record: Vec<(&str, &str)> = movements
        .iter()
        .filter(|m| m["batch_id"] == json!(batch_id))
        .map(|m| {
            (
                m["record_id"].as_str().unwrap_or_default(),
                m["reason"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    by_record.sort();
    assert_eq!(
        by_record,
        [
            ("count", "count"),
            ("hold", "reservation_placed"),
            ("move", "transfer"),
            ("move", "transfer"),
            ("sale", "sale")
        ],
        "{movements:?}"
    );
    let holds: Value = t
        .get(&format!("/v1/reservations?sku={sku}&status=active"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        holds["reservations"].as_array().map(Vec::len),
        Some(1),
        "{holds}"
    );
    Ok(())
}

/// An atomic batch carries counts, transfers and holds with its item
/// writes: all of them commit in one transaction, or, when one record is
/// refused, none does and each record says why.
#[tokio::test]
async fn an_atomic_batch_of_counts_transfers_and_holds_applies_whole_or_not_at_all()
-> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let (sku, other) = (unique_sku("atomic-lv"), unique_sku("atomic-lv2"));
    let depot = unique_sku("loc");
    let resp = t
        .post_json(
            "/v1/locations",
            &json!({"id": depot, "name": "Depot", "kind": "warehouse"}),
        )
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 201, "location: {}", resp.status());
    let earlier = (time::OffsetDateTime::now_utc() - time::Duration::minutes(5))
        .format(&time::format_description::well_known::Rfc3339)?;
    let records = |with_refused_hold: bool| {
        let mut records = vec![
            json!({"id": "new", "op": "upsert", "sku": sku, "name": "Mug", "quantity": 10}),
            json!({"id": "move", "op": "transfer", "sku": sku, "from": "default", "to": depot, "quantity": 4}),
            json!({"id": "count", "op": "count", "sku": sku, "location": depot, "on_hand": 5, "occurred_at": earlier}),
            json!({"id": "hold", "op": "reserve", "sku": sku, "quantity": 5, "expires_in": 600, "reference": "cart-1"}),
            json!({"id": "sale", "op": "adjust", "sku": sku, "delta": -1, "reason": "sale"}),
            json!({"id": "other", "op": "upsert", "sku": other, "name": "Tea", "quantity": 2}),
            json!({"id": "other-hold", "op": "reserve", "sku": other, "quantity": 2, "expires_in": 600}),
        ];
        if with_refused_hold {
            // Nothing of `other` is at the depot.
            records.push(json!({"id": "refused", "op": "reserve", "sku": other, "location": depot, "quantity": 1, "expires_in": 600}));
        }
        Value::Array(records)
    };
    // More writes than one transaction takes (25 x item, two levels, a
    // tally; and the claim: 101): refused at once.
    let transfers: Vec<Value> = (0..25)
        .map(|i| json!({"id": format!("t{i}"), "op": "transfer", "sku": format!("{sku}-{i}"), "from": "default", "to": depot, "quantity": 1}))
        .collect();
    let resp = t
        .post_json(
            "/v1/batches",
            &json!({"mode": "atomic", "records": transfers}),
        )
        .send()
        .await?;
    let problem = expect_problem(resp, 422, "validation_failed").await?;
    assert!(
        problem.to_string().contains("at most 100 writes"),
        "{problem}"
    );
    let (batch_id, batch) = stockroom_tests::run_batch(&t, "atomic", records(true)).await?;
    assert_eq!(
        (batch["succeeded"].as_u64(), batch["failed"].as_u64()),
        (Some(0), Some(8)),
        "{batch}"
    );
    let failures = all_pages(&t, &format!("/v1/batches/{batch_id}/failures"), "failures").await?;
    let codes: Vec<(&str, &str)> = failures
        .iter()
        .map(|f| {
            (
                f["record_id"].as_str().unwrap_or_default(),
                f["code"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(codes.len(), 8, "{codes:?}");
    assert!(
        codes.contains(&("refused", "insufficient_available")),
        "{codes:?}"
    );
    assert!(
        codes
            .iter()
            .filter(|(id, _)| *id != "refused")
            .all(|(_, code)| *code == "atomic_batch_aborted"),
        "{codes:?}"
    );
    for s in [&sku, &other] {
        let resp = t.get(&format!("/v1/items/{s}")).send().await?;
        assert_eq!(resp.status(), 404, "{s} was written by a rejected batch");
    }
    let holds: Value = t
        .get(&format!("/v1/reservations?sku={other}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(holds["reservations"], json!([]), "{holds}");

    let (_, batch) = stockroom_tests::run_batch(&t, "atomic", records(false)).await?;
    assert_eq!(
        (batch["succeeded"].as_u64(), batch["failed"].as_u64()),
        (Some(7), Some(0)),
        "{batch}"
    );
    // 10 - 4 moved - 1 sold at the default location, 5 of it held; the
    // depot counted at 5 before the 4 arrived, which stay on top.
    let default = level(&t, &sku, "default").await?;
    assert_eq!(
        (&default["on_hand"], &default["reserved"]),
        (&json!(5), &json!(5)),
        "{default}"
    );
    assert_eq!(level(&t, &sku, &depot).await?["on_hand"], json!(9));
    let other_level = level(&t, &other, "default").await?;
    assert_eq!(other_level["available"], json!(0), "{other_level}");
    // The ledger balances with the levels, once the batch's ledger is written.
    assert_eq!(ledger_sum(&t, &sku, None).await?, 5);
    assert_eq!(ledger_sum(&t, &sku, Some(&depot)).await?, 9);
    let holds: Value = t
        .get(&format!("/v1/reservations?sku={sku}&status=active"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        holds["reservations"].as_array().map(Vec::len),
        Some(1),
        "{holds}"
    );
    // The depot holds stock now: it cannot be deleted (its tally counted
    // the level the batch stocked).
    let resp = t.delete(&format!("/v1/locations/{depot}")).send().await?;
    assert_eq!(resp.status(), 409);
    Ok(())
}

/// Every hold has its movements: placed (+), then expired (−). An expired
/// hold is ended for good by the next write of its level, or, on a level
/// nobody writes again, once DynamoDB's TTL removes its record (the stream
/// ends it then); either way once, with a `reservation_expired` movement.
#[tokio::test]
async fn an_expired_hold_is_ended_for_good_with_its_movement_swept_or_lapsed() -> anyhow::Result<()>
{
    let t = Tenant::new().await?;
    let (touched, untouched) = (unique_sku("rsv-swept"), unique_sku("rsv-lapsed"));
    for sku in [&touched, &untouched] {
        t.create_item(sku, 5).await?;
        let resp = hold(&t, &json!({"sku": sku, "quantity": 2, "expires_in": 1})).await?;
        anyhow::ensure!(resp.status() == 201, "hold: {}", resp.status());
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // A write of the level sweeps the expired hold.
    let sale = t
        .post_json(
            &format!("/v1/items/{touched}/adjustments"),
            &json!({"delta": -1, "reason": "sale"}),
        )
        .send()
        .await?;
    assert_eq!(sale.status(), 200);
    let holds_of = |movements: &[Value]| -> Vec<(String, i64, i64)> {
        let mut held: Vec<(String, i64, i64)> = movements
            .iter()
            .filter(|m| m.get("reserved_delta").is_some())
            .map(|m| {
                (
                    m["reason"].as_str().unwrap_or_default().to_owned(),
                    m["reserved_delta"].as_i64().unwrap_or(0),
                    m["delta"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        held.sort();
        held
    };
    let swept = all_pages(&t, &format!("/v1/items/{touched}/movements"), "movements").await?;
    assert_eq!(
        holds_of(&swept),
        [
            ("reservation_expired".into(), -2, 0),
            ("reservation_placed".into(), 2, 0)
        ]
    );
    // Nobody writes the other level: TTL removes the hold's record (the
    // local stack: 30 s past expiry, swept every 60 s), and the stream
    // ends the hold.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let lapsed =
            all_pages(&t, &format!("/v1/items/{untouched}/movements"), "movements").await?;
        let held = holds_of(&lapsed);
        if held.len() == 2 {
            assert_eq!(
                held,
                [
                    ("reservation_expired".into(), -2, 0),
                    ("reservation_placed".into(), 2, 0)
                ]
            );
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the lapsed hold was not ended: {lapsed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    let level = level(&t, &untouched, "default").await?;
    assert_eq!(
        (&level["on_hand"], &level["reserved"]),
        (&json!(5), &json!(0))
    );
    let listed: Value = t
        .get(&format!("/v1/reservations?sku={untouched}&status=expired"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(listed["reservations"].as_array().map(Vec::len), Some(1));
    Ok(())
}
