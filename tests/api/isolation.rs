//! Tenant isolation on every authenticated route the template declares:
//! tenant B, holding every scope, probes tenant A's ids and never gets A's
//! data, never changes it, and never causes a 5xx.

use reqwest::Method;
use serde_json::{Value, json};
use stockroom_tests::{Tenant, stack_routes, unique_sku};

fn body_for(method: &str, path: &str, sku: &str) -> Option<Value> {
    match (method, path) {
        ("POST", "/v1/items") => Some(json!({"sku": unique_sku("b"), "name": "B's"})),
        ("PUT", "/v1/items/{sku}") => Some(json!({"name": "hijacked"})),
        ("POST", "/v1/items/{sku}/adjustments") => Some(json!({"delta": -1, "reason": "theft"})),
        ("PUT", "/v1/items/{sku}/stock-split") => Some(json!({"buckets": 2})),
        ("POST", "/v1/batches") => Some(json!({"mode": "isolated", "records": [
            {"id": "1", "op": "adjust", "sku": sku, "delta": -1, "reason": "theft"}]})),
        ("POST", "/v1/keys") => Some(json!({"name": "b", "scopes": ["items:read"]})),
        ("POST", "/v1/locations") => {
            Some(json!({"id": unique_sku("b-loc"), "name": "B's", "kind": "store"}))
        }
        ("POST", "/v1/levels/batch-retrieve") => {
            Some(json!({"pairs": [{"sku": sku}, {"sku": sku, "location": "default"}]}))
        }
        ("POST", "/v1/counts") => {
            Some(json!({"sku": sku, "on_hand": 0, "occurred_at": "2026-01-01T00:00:00Z"}))
        }
        ("POST", "/v1/transfers") => {
            Some(json!({"sku": sku, "from": "default", "to": "nowhere", "quantity": 1}))
        }
        ("POST", "/v1/reservations") => Some(json!({"sku": sku, "quantity": 1, "expires_in": 600})),
        ("POST", "/v1/webhooks") => {
            Some(json!({"url": "http://127.0.0.1:9/b", "events": ["batch.completed"]}))
        }
        _ => None,
    }
}

#[tokio::test]
async fn tenant_b_never_reaches_tenant_a_on_any_route() -> anyhow::Result<()> {
    let a = Tenant::new().await?;
    let b = Tenant::new().await?;
    let sku = unique_sku("secret");
    let item = a.create_item(&sku, 7).await?;
    let batch: Value = a
        .post_json(
            "/v1/batches",
            &json!({"mode": "isolated", "records": [
            {"id": "1", "op": "adjust", "sku": sku, "delta": 1, "reason": "receipt"}]}),
        )
        .send()
        .await?
        .json()
        .await?;
    let batch_id = batch["batch_id"].as_str().expect("batch id").to_owned();
    // A webhook (port 9: nothing listens, the ping just fails) and a delivery.
    let hook: Value = a
        .post_json(
            "/v1/webhooks",
            &json!({"url": "http://127.0.0.1:9/a", "events": ["batch.completed"]}),
        )
        .send()
        .await?
        .json()
        .await?;
    let webhook_id = hook["id"].as_str().expect("webhook id").to_owned();
    let ping: Value = a
        .request(Method::POST, &format!("/v1/webhooks/{webhook_id}/test"))
        .send()
        .await?
        .json()
        .await?;
    let delivery_id = ping["id"].as_str().expect("delivery id").to_owned();
    let location_id = unique_sku("a-loc");
    let made = a
        .post_json(
            "/v1/locations",
            &json!({"id": location_id, "name": "A's depot", "kind": "warehouse"}),
        )
        .send()
        .await?;
    assert_eq!(made.status(), 201);
    let held: Value = a
        .post_json(
            "/v1/reservations",
            &json!({"sku": sku, "quantity": 1, "expires_in": 600}),
        )
        .send()
        .await?
        .json()
        .await?;
    let reservation_id = held["id"].as_str().expect("reservation id").to_owned();
    let secrets = [
        reservation_id.as_str(),
        location_id.as_str(),
        webhook_id.as_str(),
        delivery_id.as_str(),
        sku.as_str(),
        batch_id.as_str(),
        a.key_id.as_str(),
        a.tenant_id.as_str(),
    ];

    let mut probed = 0;
    for route in stack_routes()? {
        if route["authorizer"].is_null() {
            continue;
        }
        let method = route["method"].as_str().unwrap_or_default();
        let template = route["path"].as_str().unwrap_or_default();
        let path = template
            .replace("{sku}", &sku)
            .replace("{batch_id}", &batch_id)
            .replace("{key_id}", &a.key_id)
            .replace("{webhook_id}", &webhook_id)
            .replace("{delivery_id}", &delivery_id)
            .replace("{location_id}", &location_id)
            .replace("{reservation_id}", &reservation_id);
        let mut req = b.request(Method::from_bytes(method.as_bytes())?, &path);
        if let Some(body) = body_for(method, template, &sku) {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        assert!(status < 500, "{method} {template}: {status} {text}");
        let has_params = template.contains('{');
        if has_params {
            assert_eq!(
                status, 404,
                "{method} {template} with A's id must be 404: {text}"
            );
        }
        // The batch read names back the pairs B asked for: B's own input.
        // What must hold is that none of A's levels is among them.
        let echoed = template == "/v1/levels/batch-retrieve";
        if echoed {
            let body: Value = serde_json::from_str(&text)?;
            assert_eq!(body["levels"], json!([]), "{method} {template}: {text}");
            assert_eq!(body["missing"].as_array().map(Vec::len), Some(1), "{text}");
        }
        for secret in secrets {
            if echoed && secret == sku.as_str() {
                continue;
            }
            assert!(
                !text.contains(secret),
                "{method} {template} leaked {secret}: {text}"
            );
        }
        probed += 1;
    }
    assert!(probed >= 36, "only {probed} routes probed");

    // A's data is untouched.
    let now: Value = a
        .get(&format!("/v1/items/{sku}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(now["name"], item["name"]);
    assert!(now["quantity"] == 7 || now["quantity"] == 8, "{now}");
    assert_eq!(a.get("/v1/keys").send().await?.status(), 200);
    let still = a
        .get(&format!("/v1/locations/{location_id}"))
        .send()
        .await?;
    assert_eq!(still.status(), 200, "B deleted A's location");
    let hold: Value = a
        .get(&format!("/v1/reservations/{reservation_id}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(hold["status"], "active", "B ended A's hold: {hold}");
    Ok(())
}
