//! Locations: the default location always exists; others are created,
//! listed after it in id order, read with `fields`, and deleted.

use serde_json::{Value, json};
use stockroom_domain::key::ITEMS_READ;
use stockroom_tests::{Tenant, all_pages, expect_problem, unique_sku};

async fn create(t: &Tenant, id: &str, kind: &str) -> anyhow::Result<Value> {
    let resp = t
        .post_json(
            "/v1/locations",
            &json!({"id": id, "name": format!("{id} name"), "kind": kind}),
        )
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 201, "create {id}: {}", resp.status());
    let at = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(at == format!("/v1/locations/{id}"), "Location: {at}");
    Ok(resp.json().await?)
}

#[tokio::test]
async fn the_default_location_is_always_there_and_stays() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let default: Value = t.get("/v1/locations/default").send().await?.json().await?;
    assert_eq!(default["id"], "default");
    assert_eq!(default["default"], true);
    assert!(default.get("created_at").is_none(), "{default}");
    let list: Value = t.get("/v1/locations").send().await?.json().await?;
    assert_eq!(list["locations"], json!([default]));
    assert_eq!(list["next_cursor"], Value::Null);

    let refused = t.delete("/v1/locations/default").send().await?;
    expect_problem(refused, 409, "default_location").await?;
    let taken = t
        .post_json(
            "/v1/locations",
            &json!({"id": "default", "name": "mine", "kind": "store"}),
        )
        .send()
        .await?;
    let problem = expect_problem(taken, 422, "validation_failed").await?;
    assert_eq!(problem["errors"][0]["field"], "id", "{problem}");
    Ok(())
}

#[tokio::test]
async fn locations_are_created_once_listed_in_id_order_and_deleted() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let ids: Vec<String> = ["c", "a", "b"]
        .iter()
        .map(|p| unique_sku(&format!("loc-{p}")))
        .collect();
    let made = create(&t, &ids[0], "store").await?;
    assert_eq!(made["kind"], "store");
    assert_eq!(made["default"], false);
    assert!(made["created_at"].is_string(), "{made}");
    create(&t, &ids[1], "warehouse").await?;
    create(&t, &ids[2], "transit").await?;

    let again = t
        .post_json(
            "/v1/locations",
            &json!({"id": ids[0], "name": "again", "kind": "store"}),
        )
        .send()
        .await?;
    expect_problem(again, 409, "location_exists").await?;
    let got: Value = t
        .get(&format!("/v1/locations/{}", ids[0]))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(got, made, "read back as created");

    // One per page: the default first, then in id order; with fields.
    let listed = all_pages(&t, "/v1/locations?limit=1&fields=id,kind", "locations").await?;
    let mut sorted = ids.clone();
    sorted.sort();
    let expected: Vec<Value> = std::iter::once(json!({"id": "default", "kind": "other"}))
        .chain(sorted.iter().map(|id| {
            let kind = if *id == ids[0] {
                "store"
            } else if *id == ids[1] {
                "warehouse"
            } else {
                "transit"
            };
            json!({"id": id, "kind": kind})
        }))
        .collect();
    assert_eq!(listed, expected);

    let gone = t
        .delete(&format!("/v1/locations/{}", ids[1]))
        .send()
        .await?;
    assert_eq!(gone.status(), 204);
    for (method, resp) in [
        (
            "GET",
            t.get(&format!("/v1/locations/{}", ids[1])).send().await?,
        ),
        (
            "DELETE",
            t.delete(&format!("/v1/locations/{}", ids[1]))
                .send()
                .await?,
        ),
        ("GET bad id", t.get("/v1/locations/no%20such").send().await?),
    ] {
        expect_problem(resp, 404, "location_not_found")
            .await
            .map_err(|e| e.context(method))?;
    }
    let left = all_pages(&t, "/v1/locations?limit=100", "locations").await?;
    assert_eq!(left.len(), 3, "{left:?}");
    Ok(())
}

#[tokio::test]
async fn bad_locations_get_every_error_at_once_and_need_items_write() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let bad = t
        .post_json(
            "/v1/locations",
            &json!({"id": "a/b", "kind": "shed", "colour": "red"}),
        )
        .send()
        .await?;
    let problem = expect_problem(bad, 422, "validation_failed").await?;
    let mut fields: Vec<String> = problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
        .collect();
    fields.sort();
    assert_eq!(fields, ["colour", "id", "kind", "name"], "{problem}");

    let reader = t.another_key(&[ITEMS_READ]).await?;
    let refused = reader
        .post_json(
            "/v1/locations",
            &json!({"id": unique_sku("r"), "name": "n", "kind": "store"}),
        )
        .send()
        .await?;
    expect_problem(refused, 403, "insufficient_scope").await?;
    let refused = reader.delete("/v1/locations/default").send().await?;
    expect_problem(refused, 403, "insufficient_scope").await?;
    assert_eq!(reader.get("/v1/locations").send().await?.status(), 200);
    Ok(())
}
