use reqwest::Method;
use serde_json::{Value, json};
use stockroom_tests::{Tenant, expect_problem, unique_sku};

#[tokio::test]
async fn create_returns_201_with_location_etag_and_the_item() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("mug");
    let resp = t
        .post_json(
            "/v1/items",
            &json!({"sku": sku, "name": "Blue mug", "description": "350 ml", "quantity": 12,
                    "low_stock_threshold": 3, "attributes": {"colour": "blue"}}),
        )
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers()["location"],
        format!("/v1/items/{sku}").as_str()
    );
    let etag = resp.headers()["etag"].to_str()?.to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    let item: Value = resp.json().await?;
    assert_eq!(item["sku"], sku.as_str());
    assert_eq!(item["quantity"], 12);
    assert_eq!(item["attributes"]["colour"], "blue");
    assert_eq!(item["version"], 1);

    let resp = t.get(&format!("/v1/items/{sku}")).send().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"].to_str()?, etag);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.json::<Value>().await?, item);
    Ok(())
}

#[tokio::test]
async fn quantity_defaults_to_zero() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("zero");
    let resp = t
        .post_json("/v1/items", &json!({"sku": sku, "name": "x"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.json::<Value>().await?["quantity"], 0);
    Ok(())
}

#[tokio::test]
async fn duplicate_sku_is_409_and_leaves_the_original_alone() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("dup");
    t.create_item(&sku, 4).await?;
    let resp = t
        .post_json(
            "/v1/items",
            &json!({"sku": sku, "name": "other", "quantity": 99}),
        )
        .send()
        .await?;
    expect_problem(resp, 409, "sku_exists").await?;
    let item: Value = t
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(item["quantity"], 4);
    Ok(())
}

#[tokio::test]
async fn malformed_json_is_400_and_wrong_content_type_415() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    for body in ["{\"sku\": ", "", "not json", "{\"a\":1}}"] {
        let resp = t
            .request(Method::POST, "/v1/items")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        expect_problem(resp, 400, "malformed_json").await?;
    }
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    let resp = t
        .request(Method::POST, "/v1/items")
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await?;
    let body = expect_problem(resp, 400, "malformed_json").await?;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("nested deeper")
    );
    let resp = t
        .request(Method::POST, "/v1/items")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await?;
    expect_problem(resp, 415, "unsupported_media_type").await?;
    Ok(())
}

#[tokio::test]
async fn invalid_fields_are_422_listing_every_field() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let resp = t
        .post_json(
            "/v1/items",
            &json!({"sku": "bad sku!", "name": "", "quantity": -1, "low_stock_threshold": "3",
                    "attributes": {"k": 5}, "colour": "red"}),
        )
        .send()
        .await?;
    let body = expect_problem(resp, 422, "validation_failed").await?;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap_or_default())
        .collect();
    for f in [
        "sku",
        "name",
        "quantity",
        "low_stock_threshold",
        "attributes.k",
        "colour",
    ] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    let resp = t.post_json("/v1/items", &json!([1, 2])).send().await?;
    expect_problem(resp, 422, "validation_failed").await?;
    let resp = t
        .post_json("/v1/items", &json!({"sku": "a", "name": "n".repeat(201)}))
        .send()
        .await?;
    expect_problem(resp, 422, "validation_failed").await?;
    Ok(())
}

#[tokio::test]
async fn bodies_over_256_kib_are_413_and_nothing_is_written() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("big");
    let body = json!({"sku": sku, "name": "big", "description": "x".repeat(300 * 1024)});
    let resp = t.post_json("/v1/items", &body).send().await?;
    let problem = expect_problem(resp, 413, "payload_too_large").await?;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("262144")
    );
    let resp = t.get(&format!("/v1/items/{sku}")).send().await?;
    expect_problem(resp, 404, "item_not_found").await?;
    Ok(())
}

#[tokio::test]
async fn get_missing_item_is_404_and_bad_sku_400() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let resp = t
        .get(&format!("/v1/items/{}", unique_sku("none")))
        .send()
        .await?;
    expect_problem(resp, 404, "item_not_found").await?;
    let resp = t
        .get(&format!("/v1/items/{}", "x".repeat(65)))
        .send()
        .await?;
    expect_problem(resp, 400, "invalid_parameter").await?;
    Ok(())
}

#[tokio::test]
async fn if_none_match_gives_304_and_fields_selects() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("cond");
    t.create_item(&sku, 7).await?;
    let resp = t.get(&format!("/v1/items/{sku}")).send().await?;
    let etag = resp.headers()["etag"].to_str()?.to_owned();

    let resp = t
        .get(&format!("/v1/items/{sku}"))
        .header("if-none-match", &etag)
        .send()
        .await?;
    assert_eq!(resp.status(), 304);
    assert_eq!(resp.headers()["etag"].to_str()?, etag);
    assert!(resp.bytes().await?.is_empty());

    let resp = t
        .get(&format!("/v1/items/{sku}"))
        .header("if-none-match", "\"other\"")
        .send()
        .await?;
    assert_eq!(resp.status(), 200);

    let item: Value = t
        .get(&format!("/v1/items/{sku}?fields=sku,quantity"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(item, json!({"sku": sku, "quantity": 7}));
    let resp = t
        .get(&format!("/v1/items/{sku}?fields=sku,secret"))
        .send()
        .await?;
    expect_problem(resp, 400, "invalid_parameter").await?;
    let resp = t.get(&format!("/v1/items/{sku}?feilds=sku")).send().await?;
    expect_problem(resp, 400, "invalid_parameter").await?;
    Ok(())
}

#[tokio::test]
async fn the_sharded_listing_reads_every_item_once_in_order_across_layouts() -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    use stockroom_app::ports::{ItemStore, PageKey};
    use stockroom_aws::dynamodb::backfill::{BackfilledIndex, IndexBackfill};
    let t = Tenant::new().await?;
    let mut skus: Vec<String> = (0..40).map(|i| format!("shard-{i:02}")).collect();
    for sku in &skus {
        t.create_item(sku, 1).await?;
    }
    skus.sort();
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let table = stockroom_tests::function_env("ItemsApiFunction", "STOCK_TABLE")?;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let key = |sku: &str| {
        [
            ("pk".to_owned(), S(format!("T#{}#I#{sku}", t.tenant_id))),
            ("sk".to_owned(), S("ITEM".into())),
        ]
    };
    // The item's record as stored, index keys included.
    let stored = async |sku: &str| -> anyhow::Result<_> {
        let out = ddb
            .get_item()
            .table_name(&table)
            .set_key(Some(key(sku).into()))
            .send()
            .await?;
        Ok(out.item.unwrap_or_default())
    };
    let mut partitions = std::collections::BTreeSet::new();
    for sku in &skus {
        let item = stored(sku).await?;
        partitions.insert(item.get("gsi3pk").and_then(|v| v.as_s().ok()).cloned());
    }
    assert!(!partitions.contains(&None));
    assert!(partitions.len() >= 12, "{partitions:?}");

    // Items written in the compatible layout are in both indexes.
    let tenant = stockroom_domain::TenantId::parse(&t.tenant_id).map_err(anyhow::Error::msg)?;
    let compatible = stockroom_aws::dynamodb::DynamoItemStore::from_sdk_config(&sdk, &table)
        .with_write_layout(stockroom_aws::dynamodb::WriteLayout::Compatible);
    let mut both: Vec<String> = Vec::new();
    for i in 0..4 {
        let sku = format!("shard-compat-{i}");
        let now = stockroom_app::clock::now_rfc3339();
        let item = stockroom_domain::Item {
            bucket_partitions: 0,
            stock_buckets: None,
            sku: sku.clone(),
            name: sku.clone(),
            description: None,
            quantity: 1,
            low_stock_threshold: None,
            attributes: Default::default(),
            version: 1,
            created_at: now.clone(),
            updated_at: now,
        };
        let cause = stockroom_domain::change::ChangeCause::request("compatible");
        compatible.create_item(&tenant, &item, None, &cause).await?;
        let record = stored(&sku).await?;
        assert!(
            record.contains_key("gsi1pk") && record.contains_key("gsi3pk"),
            "{record:?}"
        );
        both.push(sku);
    }
    skus.extend(both.iter().cloned());
    skus.sort();

    // Every fourth item as written before the listing was sharded.
    let legacy: Vec<&String> = skus
        .iter()
        .filter(|s| !both.contains(s))
        .step_by(4)
        .collect();
    for sku in &legacy {
        ddb.update_item()
            .table_name(&table)
            .set_key(Some(key(sku).into()))
            .update_expression("SET gsi1pk = :t, gsi1sk = :s REMOVE gsi3pk, gsi3sk")
            .expression_attribute_values(":t", S(format!("T#{}", t.tenant_id)))
            .expression_attribute_values(":s", S((*sku).clone()))
            .send()
            .await?;
    }
    let listed = |limit: u32| {
        let t = &t;
        async move {
            let items =
                stockroom_tests::all_pages(t, &format!("/v1/items?limit={limit}"), "items").await?;
            anyhow::Ok(
                items
                    .iter()
                    .map(|i| i["sku"].as_str().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>(),
            )
        }
    };
    for limit in [1, 3, 7, 40, 100] {
        assert_eq!(listed(limit).await?, skus, "limit {limit}");
    }

    // A cursor given before: `gsi1`'s key of the item it stopped at.
    let store = stockroom_aws::dynamodb::DynamoItemStore::from_sdk_config(&sdk, &table);
    let old_cursor = PageKey::from([
        ("gsi1pk".to_owned(), format!("T#{}", t.tenant_id)),
        ("gsi1sk".to_owned(), skus[4].clone()),
        ("pk".to_owned(), format!("T#{}#I#{}", t.tenant_id, skus[4])),
        ("sk".to_owned(), "ITEM".to_owned()),
    ]);
    let page = store
        .list_items(&tenant, 3, Some(old_cursor.clone()), None)
        .await?;
    let resumed: Vec<&str> = page.items.iter().map(|i| i.sku.as_str()).collect();
    assert_eq!(resumed, [&skus[5], &skus[6], &skus[7]]);
    // And the cursors it gives have that shape, which the release before reads.
    let first = store.list_items(&tenant, 5, None, None).await?;
    assert_eq!(first.next, Some(old_cursor));

    // A deleted item leaves the listing, whichever index lists it.
    for sku in [legacy[1], &skus[1]] {
        assert_eq!(
            t.delete(&format!("/v1/items/{sku}")).send().await?.status(),
            204
        );
    }
    let remaining: Vec<String> = skus
        .iter()
        .filter(|s| *s != legacy[1] && *s != &skus[1])
        .cloned()
        .collect();
    assert_eq!(listed(5).await?, remaining);

    // The backfill moves the old items into the sharded index, once.
    let backfill = IndexBackfill::from_sdk_config(&sdk, &table, BackfilledIndex::Listing);
    let first = backfill.run(4).await?;
    assert!(first.unreadable.is_empty(), "{first:?}");
    assert!(first.indexed >= legacy.len() as u64 - 1, "{first:?}");
    assert!(
        first.left_legacy_index >= legacy.len() as u64 - 1 + both.len() as u64,
        "{first:?}"
    );
    let moved: Vec<&String> = legacy
        .iter()
        .copied()
        .filter(|s| *s != legacy[1])
        .chain(both.iter())
        .collect();
    for sku in moved {
        let item = stored(sku).await?;
        assert!(
            item.contains_key("gsi3pk") && !item.contains_key("gsi1pk"),
            "{item:?}"
        );
    }
    assert_eq!(listed(6).await?, remaining);
    let second = backfill.run(2).await?;
    assert_eq!(
        (second.found, second.indexed, second.left_legacy_index),
        (0, 0, 0),
        "{second:?}"
    );
    Ok(())
}

#[tokio::test]
async fn forged_garbled_and_foreign_cursors_are_400() -> anyhow::Result<()> {
    let a = Tenant::new().await?;
    let b = Tenant::new().await?;
    for i in 0..3 {
        a.create_item(&format!("c-{i}"), 1).await?;
    }
    let page: Value = a.get("/v1/items?limit=1").send().await?.json().await?;
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_owned();
    let mut tampered = cursor.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered)?;
    for (who, c) in [
        (&a, "garbage"),
        (&a, "%00%01"),
        (&a, tampered.as_str()),
        (&b, cursor.as_str()),
    ] {
        let resp = who.get(&format!("/v1/items?cursor={c}")).send().await?;
        expect_problem(resp, 400, "invalid_cursor").await?;
    }
    for limit in ["0", "101", "ten"] {
        let resp = a.get(&format!("/v1/items?limit={limit}")).send().await?;
        expect_problem(resp, 400, "invalid_parameter").await?;
    }
    Ok(())
}

#[tokio::test]
async fn put_replaces_fields_200_or_204_when_nothing_changes() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("put");
    t.create_item(&sku, 3).await?;
    let path = format!("/v1/items/{sku}");
    let body = json!({"name": "Renamed", "description": "new", "attributes": {"size": "L"}});
    let resp = t.put_json(&path, &body).send().await?;
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str()?.to_owned();
    let item: Value = resp.json().await?;
    assert_eq!(
        (
            item["name"].as_str(),
            item["quantity"].as_i64(),
            item["version"].as_i64()
        ),
        (Some("Renamed"), Some(3), Some(2))
    );

    let resp = t.put_json(&path, &body).send().await?;
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["etag"].to_str()?, etag);
    let again: Value = t.get(&path).send().await?.json().await?;
    assert_eq!(again["version"], 2);
    Ok(())
}

#[tokio::test]
async fn put_with_a_stale_if_match_is_412_and_changes_nothing() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("ifm");
    t.create_item(&sku, 3).await?;
    let path = format!("/v1/items/{sku}");
    let old_etag = t.get(&path).send().await?.headers()["etag"]
        .to_str()?
        .to_owned();
    let resp = t
        .put_json(&path, &json!({"name": "v2"}))
        .header("if-match", &old_etag)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let resp = t
        .put_json(&path, &json!({"name": "v3"}))
        .header("if-match", &old_etag)
        .send()
        .await?;
    expect_problem(resp, 412, "precondition_failed").await?;
    let item: Value = t.get(&path).send().await?.json().await?;
    assert_eq!(item["name"], "v2");
    let resp = t.delete(&path).header("if-match", &old_etag).send().await?;
    expect_problem(resp, 412, "precondition_failed").await?;
    Ok(())
}

#[tokio::test]
async fn put_refuses_quantity_and_unknown_items() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("putq");
    t.create_item(&sku, 3).await?;
    let resp = t
        .put_json(
            &format!("/v1/items/{sku}"),
            &json!({"name": "x", "quantity": 10}),
        )
        .send()
        .await?;
    let body = expect_problem(resp, 422, "validation_failed").await?;
    assert_eq!(body["errors"][0]["field"], "quantity");
    let resp = t
        .put_json(
            &format!("/v1/items/{}", unique_sku("ghost")),
            &json!({"name": "x"}),
        )
        .send()
        .await?;
    expect_problem(resp, 404, "item_not_found").await?;
    Ok(())
}

#[tokio::test]
async fn delete_is_204_then_404() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("del");
    t.create_item(&sku, 2).await?;
    let path = format!("/v1/items/{sku}");
    let resp = t.delete(&path).send().await?;
    assert_eq!(resp.status(), 204);
    expect_problem(t.get(&path).send().await?, 404, "item_not_found").await?;
    expect_problem(t.delete(&path).send().await?, 404, "item_not_found").await?;
    // The ledger survives the item and still sums to zero.
    let ledger: Value = t
        .get(&format!("{path}/movements"))
        .send()
        .await?
        .json()
        .await?;
    let deltas: i64 = ledger["movements"]
        .as_array()
        .expect("movements")
        .iter()
        .map(|m| m["delta"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(deltas, 0);
    Ok(())
}
