use reqwest::Method;
use stockroom_domain::key::ITEMS_READ;
use stockroom_tests::{Tenant, anonymous, expect_problem, unique_sku};

#[tokio::test]
async fn missing_malformed_and_unknown_keys_are_401() -> anyhow::Result<()> {
    let resp = anonymous(Method::GET, "/v1/items").send().await?;
    let body = expect_problem(resp, 401, "unauthorized").await?;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Bearer")
    );

    for header in [
        "Bearer sk_test_doesnotexist000000000000000000",
        "Basic abc",
        "Bearer",
    ] {
        let resp = anonymous(Method::GET, "/v1/items")
            .header("authorization", header)
            .send()
            .await?;
        expect_problem(resp, 401, "unauthorized").await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_items() -> anyhow::Result<()> {
    let a = Tenant::new().await?;
    let b = Tenant::new().await?;
    let sku = unique_sku("iso");
    a.create_item(&sku, 5).await?;

    let resp = b.get(&format!("/v1/items/{sku}")).send().await?;
    expect_problem(resp, 404, "item_not_found").await?;
    let resp = b.get(&format!("/v1/items/{sku}/movements")).send().await?;
    expect_problem(resp, 404, "item_not_found").await?;
    let resp = b
        .post_json(
            &format!("/v1/items/{sku}/adjustments"),
            &serde_json::json!({"delta": -1, "reason": "theft"}),
        )
        .send()
        .await?;
    expect_problem(resp, 404, "item_not_found").await?;
    let listed: serde_json::Value = b.get("/v1/items").send().await?.json().await?;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));

    // B may create the same sku: it is a different item.
    b.create_item(&sku, 1).await?;
    let mine: serde_json::Value = a
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(mine["quantity"], 5);
    Ok(())
}

#[tokio::test]
async fn a_key_without_the_write_scope_gets_403_naming_the_scope() -> anyhow::Result<()> {
    let owner = Tenant::new().await?;
    let reader = owner.another_key(&[ITEMS_READ]).await?;
    let sku = unique_sku("scope");
    owner.create_item(&sku, 1).await?;
    assert_eq!(
        reader
            .get(&format!("/v1/items/{sku}"))
            .send()
            .await?
            .status(),
        200
    );
    let resp = reader
        .post_json(
            "/v1/items",
            &serde_json::json!({"sku": unique_sku("x"), "name": "x"}),
        )
        .send()
        .await?;
    let body = expect_problem(resp, 403, "insufficient_scope").await?;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("items:write")
    );
    Ok(())
}
