//! Stock per location: adjustments name a location, `GET
//! /v1/items/{sku}/levels` shows on hand / reserved / available per
//! location, and a location holding stock cannot be deleted.

use serde_json::{Value, json};
use stockroom_tests::{Tenant, all_pages, expect_problem, unique_sku};

async fn location(t: &Tenant) -> anyhow::Result<String> {
    let id = unique_sku("loc");
    let resp = t
        .post_json(
            "/v1/locations",
            &json!({"id": id, "name": "Depot", "kind": "warehouse"}),
        )
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 201, "location: {}", resp.status());
    Ok(id)
}

async fn adjust(
    t: &Tenant,
    sku: &str,
    delta: i64,
    at: Option<&str>,
) -> anyhow::Result<reqwest::Response> {
    let mut body = json!({"delta": delta, "reason": "count"});
    if let Some(at) = at {
        body["location"] = json!(at);
    }
    Ok(t.post_json(&format!("/v1/items/{sku}/adjustments"), &body)
        .send()
        .await?)
}

#[tokio::test]
async fn stock_at_a_location_is_its_own_level_and_pins_the_location() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("lv");
    t.create_item(&sku, 3).await?;
    let depot = location(&t).await?;

    let resp = adjust(&t, &sku, 5, Some(&depot)).await?;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await?;
    assert_eq!(
        (body["location"].as_str(), body["quantity"].as_i64()),
        (Some(depot.as_str()), Some(5))
    );

    let levels: Value = t
        .get(&format!("/v1/items/{sku}/levels"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        levels["levels"],
        json!([
            {"location": "default", "on_hand": 3, "reserved": 0, "available": 3},
            {"location": depot, "on_hand": 5, "reserved": 0, "available": 5},
        ])
    );
    // The default location's stock is the item's quantity, untouched.
    let item: Value = t
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(item["quantity"], 3);

    let short = adjust(&t, &sku, -6, Some(&depot)).await?;
    expect_problem(short, 409, "insufficient_stock").await?;
    let nowhere = adjust(&t, &sku, 1, Some("no-such-place")).await?;
    expect_problem(nowhere, 404, "location_not_found").await?;
    let no_item = adjust(&t, &unique_sku("none"), 1, Some(&depot)).await?;
    expect_problem(no_item, 404, "item_not_found").await?;

    // Holding stock, the location stays; emptied, it can go, and then
    // nothing can be put there.
    let refused = t.delete(&format!("/v1/locations/{depot}")).send().await?;
    expect_problem(refused, 409, "location_holds_stock").await?;
    assert_eq!(adjust(&t, &sku, -5, Some(&depot)).await?.status(), 200);
    let gone = t.delete(&format!("/v1/locations/{depot}")).send().await?;
    assert_eq!(gone.status(), 204);
    let late = adjust(&t, &sku, 1, Some(&depot)).await?;
    expect_problem(late, 404, "location_not_found").await?;

    // The ledger says where each movement happened.
    let ledger = all_pages(
        &t,
        &format!("/v1/items/{sku}/movements?limit=100"),
        "movements",
    )
    .await?;
    let places: Vec<Option<&str>> = ledger.iter().map(|m| m["location"].as_str()).collect();
    assert_eq!(
        places,
        [Some(depot.as_str()), Some(depot.as_str()), None],
        "{ledger:?}"
    );
    Ok(())
}

/// Many clients take from one location's level at once: exactly as many
/// succeed as there are units, the level never goes below zero, and the
/// ledger balances.
#[tokio::test]
async fn concurrent_takes_at_a_location_never_oversell() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("rush");
    t.create_item(&sku, 0).await?;
    let depot = location(&t).await?;
    assert_eq!(adjust(&t, &sku, 7, Some(&depot)).await?.status(), 200);
    // Each client retries a `concurrent_update` (nothing was applied), as
    // a client should; `insufficient_stock` is final.
    let mut takes = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let request = t.post_json(
            &format!("/v1/items/{sku}/adjustments"),
            &json!({"delta": -1, "reason": "sale", "location": depot}),
        );
        takes.spawn(async move {
            loop {
                let resp = request
                    .try_clone()
                    .expect("a JSON body clones")
                    .send()
                    .await?;
                let status = resp.status().as_u16();
                let body: Value = resp.json().await?;
                if body["code"] != "concurrent_update" {
                    return anyhow::Ok((status, body["code"].as_str().map(str::to_owned)));
                }
            }
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = takes.join_next().await {
        outcomes.push(done??);
    }
    let ok = outcomes.iter().filter(|(s, _)| *s == 200).count();
    let short = outcomes
        .iter()
        .filter(|(s, code)| *s == 409 && code.as_deref() == Some("insufficient_stock"))
        .count();
    assert_eq!((ok, short), (7, 5), "{outcomes:?}");
    let levels: Value = t
        .get(&format!("/v1/items/{sku}/levels"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(levels["levels"][1]["on_hand"], 0, "{levels}");
    let ledger = all_pages(
        &t,
        &format!("/v1/items/{sku}/movements?limit=100"),
        "movements",
    )
    .await?;
    let at_depot: i64 = ledger
        .iter()
        .filter(|m| m["location"] == json!(depot))
        .map(|m| m["delta"].as_i64().unwrap_or_default())
        .sum();
    assert_eq!(at_depot, 0, "{ledger:?}");
    Ok(())
}

/// A transfer moves available units between two levels in one
/// transaction: both change or neither, with a movement at each.
#[tokio::test]
async fn a_transfer_moves_available_units_and_refuses_what_is_held() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("tr");
    t.create_item(&sku, 10).await?;
    let depot = location(&t).await?;
    let transfer = |body: Value| {
        let t = t.clone();
        async move { t.post_json("/v1/transfers", &body).send().await }
    };
    let resp = transfer(
        json!({"sku": sku, "from": "default", "to": depot, "quantity": 6, "reference": "TO-1"}),
    )
    .await?;
    assert_eq!(resp.status(), 200);
    let done: Value = resp.json().await?;
    assert_eq!(
        (
            done["from"]["on_hand"].as_i64(),
            done["to"]["on_hand"].as_i64(),
            done["to"]["location"].as_str()
        ),
        (Some(4), Some(6), Some(depot.as_str()))
    );
    // Hold 4 at the depot: only 2 of its 6 may move.
    let held = t
        .post_json(
            "/v1/reservations",
            &json!({"sku": sku, "location": depot, "quantity": 4, "expires_in": 600}),
        )
        .send()
        .await?;
    assert_eq!(held.status(), 201);
    expect_problem(
        transfer(json!({"sku": sku, "from": depot, "to": "default", "quantity": 3})).await?,
        409,
        "insufficient_stock",
    )
    .await?;
    let back = transfer(json!({"sku": sku, "from": depot, "to": "default", "quantity": 2})).await?;
    assert_eq!(back.status(), 200);
    let levels: Value = t
        .get(&format!("/v1/items/{sku}/levels"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        levels["levels"],
        json!([
            {"location": "default", "on_hand": 6, "reserved": 0, "available": 6},
            {"location": depot, "on_hand": 4, "reserved": 4, "available": 0},
        ])
    );
    let item: Value = t
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        item["quantity"], 6,
        "the default location is the item's quantity"
    );
    let movements = all_pages(&t, &format!("/v1/items/{sku}/movements"), "movements").await?;
    let moved: Vec<(Option<&str>, i64, Option<&str>)> = movements
        .iter()
        .filter(|m| m["reason"] == "transfer")
        .map(|m| {
            (
                m["location"].as_str(),
                m["delta"].as_i64().unwrap_or(0),
                m["reference"].as_str(),
            )
        })
        .collect();
    assert_eq!(moved.len(), 4, "{movements:?}");
    assert!(
        moved.contains(&(None, -6, Some("TO-1")))
            && moved.contains(&(Some(depot.as_str()), 6, Some("TO-1")))
    );

    for (body, status, code) in [
        (
            json!({"sku": sku, "from": depot, "to": depot, "quantity": 1}),
            422,
            "validation_failed",
        ),
        (
            json!({"sku": sku, "from": "default", "to": "nowhere", "quantity": 1}),
            404,
            "location_not_found",
        ),
        (
            json!({"sku": unique_sku("none"), "from": "default", "to": depot, "quantity": 1}),
            404,
            "item_not_found",
        ),
    ] {
        expect_problem(transfer(body).await?, status, code).await?;
    }
    Ok(())
}

/// Up to 1,000 (sku, location) pairs in one call, in the order asked, with
/// the ones that do not exist listed apart.
#[tokio::test]
async fn many_levels_are_read_in_one_call_and_missing_pairs_are_named() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let (a, b) = (unique_sku("bl-a"), unique_sku("bl-b"));
    t.create_item(&a, 10).await?;
    t.create_item(&b, 3).await?;
    let depot = location(&t).await?;
    assert_eq!(adjust(&t, &a, 4, Some(&depot)).await?.status(), 200);
    let held = t
        .post_json(
            "/v1/reservations",
            &json!({"sku": a, "quantity": 2, "expires_in": 600}),
        )
        .send()
        .await?;
    assert_eq!(held.status(), 201);
    let ghost = unique_sku("bl-none");
    let resp = t
        .post_json(
            "/v1/levels/batch-retrieve",
            &json!({"pairs": [
                {"sku": a}, {"sku": a, "location": depot}, {"sku": b},
                {"sku": ghost}, {"sku": a, "location": "nowhere"}, {"sku": a, "location": "default"}
            ]}),
        )
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await?;
    assert_eq!(
        body,
        json!({
            "levels": [
                {"sku": a, "location": "default", "on_hand": 10, "reserved": 2, "available": 8},
                {"sku": a, "location": depot, "on_hand": 4, "reserved": 0, "available": 4},
                {"sku": b, "location": "default", "on_hand": 3, "reserved": 0, "available": 3},
            ],
            "missing": [
                {"sku": ghost, "location": "default"},
                {"sku": a, "location": "nowhere"},
            ]
        })
    );
    // A thousand pairs is one call (BatchGetItem pages of 100 behind it).
    let many: Vec<Value> = (0..1_000)
        .map(|i| {
            if i % 2 == 0 {
                json!({"sku": a, "location": format!("l{i}")})
            } else {
                json!({"sku": format!("{b}-{i}")})
            }
        })
        .collect();
    let resp = t
        .post_json("/v1/levels/batch-retrieve", &json!({"pairs": many}))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await?;
    assert_eq!(body["missing"].as_array().map(Vec::len), Some(1_000));
    let too_many: Vec<Value> = (0..1_001)
        .map(|i| json!({"sku": format!("S{i}")}))
        .collect();
    expect_problem(
        t.post_json("/v1/levels/batch-retrieve", &json!({"pairs": too_many}))
            .send()
            .await?,
        422,
        "validation_failed",
    )
    .await?;
    let bad = expect_problem(
        t.post_json(
            "/v1/levels/batch-retrieve",
            &json!({"pairs": [{"sku": "a b"}, {"sku": a, "location": 7}]}),
        )
        .send()
        .await?,
        422,
        "validation_failed",
    )
    .await?;
    let fields: Vec<&str> = bad["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["pairs[0].sku", "pairs[1].location"], "{bad}");
    Ok(())
}

/// An item whose stock is kept at another location is not deleted (its
/// level would outlive it); emptied there, it is. Stock arriving at a new
/// location raises the item's version, so a delete planned before it
/// (here: with the ETag read before) cannot go through.
#[tokio::test]
async fn an_item_stocked_at_another_location_is_not_deleted_until_emptied_there()
-> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let depot = location(&t).await?;
    let sku = unique_sku("del-elsewhere");
    t.create_item(&sku, 3).await?;
    let before = t.get(&format!("/v1/items/{sku}")).send().await?;
    let etag = before
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(adjust(&t, &sku, 5, Some(&depot)).await?.status(), 200);
    let stale = t
        .delete(&format!("/v1/items/{sku}"))
        .header("if-match", &etag)
        .send()
        .await?;
    expect_problem(stale, 412, "precondition_failed").await?;
    let refused = t.delete(&format!("/v1/items/{sku}")).send().await?;
    let problem = expect_problem(refused, 409, "item_stocked_elsewhere").await?;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&depot),
        "{problem}"
    );
    assert_eq!(adjust(&t, &sku, -5, Some(&depot)).await?.status(), 200);
    let gone = t.delete(&format!("/v1/items/{sku}")).send().await?;
    assert_eq!(gone.status(), 204);
    Ok(())
}
