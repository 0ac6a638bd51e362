//! `?fields=` on every read (issue 26 §5): only the named fields come back,
//! with the values of the whole representation; unknown or empty names are
//! 400 problems; pages still chain; and DynamoDB itself returns only the
//! projected attributes.

use anyhow::{Context, Result, ensure};
use reqwest::Method;
use serde_json::{Map, Value, json};
use stockroom_app::ports::{DeliveryTracking, ItemStore};
use stockroom_aws::dynamodb::{DynamoItemStore, DynamoWebhookStore};
use stockroom_domain::webhook::Webhook;
use stockroom_domain::{Fields, Item, Sku, TenantId};
use stockroom_tests::{DynamoWire, Tenant, all_pages, expect_problem, unique_sku, wait_for_batch};

/// What one tenant has on every read route: items with a ledger, a batch
/// with a failure, a webhook with a delivery, and its key.
struct World {
    tenant: Tenant,
    sku: String,
    batch_id: String,
    webhook_id: String,
    delivery_id: String,
}

impl World {
    async fn new() -> Result<Self> {
        let tenant = Tenant::new().await?;
        let sku = unique_sku("fields");
        tenant.create_item(&sku, 5).await?;
        tenant.create_item(&unique_sku("fields"), 1).await?;
        let resp = tenant
            .post_json(
                &format!("/v1/items/{sku}/adjustments"),
                &json!({"delta": -2, "reason": "sale", "reference": "order-1"}),
            )
            .send()
            .await?;
        ensure!(resp.status() == 200, "adjust: {}", resp.status());
        let resp = tenant
            .post_json(
                "/v1/batches",
                &json!({"mode": "isolated", "records": [
                    {"id": "ok", "op": "adjust", "sku": sku, "delta": 1, "reason": "receipt"},
                    {"id": "bad", "op": "adjust", "sku": unique_sku("none"), "delta": 1, "reason": "receipt"}]}),
            )
            .send()
            .await?;
        ensure!(resp.status() == 202, "batch: {}", resp.status());
        let batch_id = resp.json::<Value>().await?["batch_id"]
            .as_str()
            .context("batch_id")?
            .to_owned();
        wait_for_batch(&tenant, &batch_id, std::time::Duration::from_secs(60)).await?;
        // Port 9: nothing listens; the ping's delivery just fails.
        let resp = tenant
            .post_json(
                "/v1/webhooks",
                &json!({"url": "http://127.0.0.1:9/fields", "events": ["batch.completed"],
                        "description": "fields test"}),
            )
            .send()
            .await?;
        ensure!(resp.status() == 201, "webhook: {}", resp.status());
        let webhook_id = resp.json::<Value>().await?["id"]
            .as_str()
            .context("id")?
            .to_owned();
        let ping: Value = tenant
            .request(Method::POST, &format!("/v1/webhooks/{webhook_id}/test"))
            .send()
            .await?
            .json()
            .await?;
        let delivery_id = ping["id"].as_str().context("delivery id")?.to_owned();
        Ok(Self {
            tenant,
            sku,
            batch_id,
            webhook_id,
            delivery_id,
        })
    }

    /// Every read route, with the list key of the lists (None: one object)
    /// and fields that do not change while the test runs (deliveries gain
    /// attempts, keys their last use).
    fn reads(&self) -> Vec<(String, Option<&'static str>, &'static [&'static str])> {
        let (sku, batch, hook, delivery) = (
            &self.sku,
            &self.batch_id,
            &self.webhook_id,
            &self.delivery_id,
        );
        let key = &self.tenant.key_id;
        vec![
            ("/v1/items".into(), Some("items"), &["sku", "quantity"]),
            (
                format!("/v1/items/{sku}"),
                None,
                &["quantity", "description"],
            ),
            (
                format!("/v1/items/{sku}/movements"),
                Some("movements"),
                &["delta", "quantity_after", "reference"],
            ),
            (
                "/v1/batches".into(),
                Some("batches"),
                &["batch_id", "status"],
            ),
            (
                format!("/v1/batches/{batch}"),
                None,
                &["status", "total", "failed"],
            ),
            (
                format!("/v1/batches/{batch}/failures"),
                Some("failures"),
                &["record_id", "code"],
            ),
            ("/v1/webhooks".into(), Some("webhooks"), &["id", "url"]),
            (
                format!("/v1/webhooks/{hook}"),
                None,
                &["events", "description"],
            ),
            (
                format!("/v1/webhooks/{hook}/deliveries"),
                Some("deliveries"),
                &["id", "event_type"],
            ),
            (
                format!("/v1/webhooks/{hook}/deliveries/{delivery}"),
                None,
                &["webhook_id", "created_at"],
            ),
            ("/v1/keys".into(), Some("keys"), &["key_id", "scopes"]),
            (format!("/v1/keys/{key}"), None, &["name", "created_at"]),
        ]
    }
}

async fn get_json(t: &Tenant, path: &str) -> Result<Value> {
    let resp = t.get(path).send().await?;
    ensure!(resp.status() == 200, "GET {path}: {}", resp.status());
    Ok(resp.json().await?)
}

fn only(whole: &Value, fields: &[&str]) -> Value {
    let kept: Map<String, Value> = whole
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| fields.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(kept)
}

#[tokio::test]
async fn every_read_returns_only_the_selected_fields() -> Result<()> {
    let w = World::new().await?;
    for (path, list, fields) in w.reads() {
        let whole = get_json(&w.tenant, &path).await?;
        let sparse = get_json(&w.tenant, &format!("{path}?fields={}", fields.join(","))).await?;
        match list {
            None => {
                ensure!(
                    sparse == only(&whole, fields),
                    "{path}: {sparse} from {whole}"
                );
                ensure!(sparse != whole, "{path}: nothing was left out");
            }
            Some(key) => {
                let (whole, sparse) = (&whole[key], &sparse[key]);
                let (whole, sparse) = (
                    whole.as_array().context("whole list")?,
                    sparse.as_array().context("sparse list")?,
                );
                ensure!(!whole.is_empty(), "{path}: an empty list proves nothing");
                ensure!(whole.len() == sparse.len(), "{path}: {sparse:?}");
                for (w, s) in whole.iter().zip(sparse) {
                    ensure!(*s == only(w, fields), "{path}: {s} from {w}");
                }
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_sparse_item_keeps_the_whole_items_tag_and_its_304() -> Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("tag");
    t.create_item(&sku, 3).await?;
    let path = format!("/v1/items/{sku}");
    let whole = t.get(&path).send().await?;
    let tag = whole.headers()["etag"].to_str()?.to_owned();
    let sparse = t.get(&format!("{path}?fields=quantity")).send().await?;
    assert_eq!(sparse.headers()["etag"].to_str()?, tag);
    assert_eq!(sparse.json::<Value>().await?, json!({"quantity": 3}));
    let resp = t
        .get(&format!("{path}?fields=quantity,quantity"))
        .header("if-none-match", &tag)
        .send()
        .await?;
    assert_eq!(resp.status(), 304);
    // The tag from a sparse read guards a write like the whole item's.
    let resp = t
        .put_json(&path, &json!({"name": "Renamed"}))
        .header("if-match", &tag)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let resp = t
        .get(&format!("{path}?fields=sku"))
        .header("if-none-match", &tag)
        .send()
        .await?;
    assert_eq!(resp.status(), 200, "the item changed: no 304");
    Ok(())
}

#[tokio::test]
async fn unknown_or_empty_fields_are_400_on_every_read() -> Result<()> {
    let w = World::new().await?;
    for (path, _, _) in w.reads() {
        let resp = w.tenant.get(&format!("{path}?fields=nope")).send().await?;
        let problem = expect_problem(resp, 400, "invalid_parameter").await?;
        let error = &problem["errors"][0];
        ensure!(error["field"] == "fields", "{path}: {problem}");
        let message = error["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains("\"nope\"") && message.contains("known: "),
            "{path}: {message}"
        );
        for empty in ["", ","] {
            let resp = w
                .tenant
                .get(&format!("{path}?fields={empty}"))
                .send()
                .await?;
            expect_problem(resp, 400, "invalid_parameter")
                .await
                .with_context(|| format!("{path}?fields={empty}"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn pages_with_fields_chain_to_the_end() -> Result<()> {
    let t = Tenant::new().await?;
    let mut skus: Vec<String> = (0..5).map(|i| format!("page-{i}")).collect();
    for sku in &skus {
        t.create_item(sku, 1).await?;
    }
    for delta in [1, 2, 3, 4] {
        let resp = t
            .post_json(
                &format!("/v1/items/{}/adjustments", skus[0]),
                &json!({"delta": delta, "reason": "receipt"}),
            )
            .send()
            .await?;
        ensure!(resp.status() == 200);
    }
    t.another_key(&["items:read"]).await?;
    t.another_key(&["items:read"]).await?;

    let items = all_pages(&t, "/v1/items?limit=2&fields=sku", "items").await?;
    skus.sort();
    assert_eq!(
        items,
        skus.iter().map(|s| json!({"sku": s})).collect::<Vec<_>>()
    );

    let path = format!("/v1/items/{}/movements?limit=2&fields=delta", skus[0]);
    let movements = all_pages(&t, &path, "movements").await?;
    let newest_first = [4, 3, 2, 1, 1].map(|d| json!({"delta": d}));
    assert_eq!(movements, newest_first);

    let keys = all_pages(&t, "/v1/keys?limit=1&fields=key_id", "keys").await?;
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter()
            .all(|k| k.as_object().is_some_and(|o| o.len() == 1))
    );
    Ok(())
}

/// The body of the last DynamoDB call the client made (SDK housekeeping
/// calls, if any, come before).
fn last_body(wire: &DynamoWire) -> Result<Vec<u8>> {
    wire.take().pop().context("no DynamoDB call was recorded")
}

/// Attribute names of the items in a raw DynamoDB response body (`Items`
/// of a Query, `Item` of a GetItem, `Responses` of a BatchGetItem).
fn raw_attribute_names(body: &[u8]) -> Result<Vec<Vec<String>>> {
    let body: Value = serde_json::from_slice(body)?;
    let items = match (&body["Items"], &body["Item"], &body["Responses"]) {
        (Value::Array(items), _, _) => items.clone(),
        (_, Value::Object(_), _) => vec![body["Item"].clone()],
        (_, _, Value::Object(tables)) => tables
            .values()
            .filter_map(Value::as_array)
            .flatten()
            .cloned()
            .collect(),
        _ => anyhow::bail!("no item in {body}"),
    };
    Ok(items
        .iter()
        .map(|item| {
            let mut names: Vec<String> = item
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect();
            names.sort();
            names
        })
        .collect())
}

#[tokio::test]
async fn dynamodb_returns_only_the_projected_attributes() -> Result<()> {
    let t = Tenant::new().await?;
    for i in 0..3 {
        t.create_item(&format!("wire-{i}"), i).await?;
    }
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let table = std::env::var("STOCK_TABLE").context("STOCK_TABLE (source .local/env)")?;
    let wire = DynamoWire::default();
    let items = DynamoItemStore::new(wire.client(&sdk), &table);
    let tenant = TenantId::parse(&t.tenant_id).map_err(anyhow::Error::msg)?;

    let fields = Fields::<Item>::parse("sku,quantity").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let page = items.list_items(&tenant, 10, None, Some(&fields)).await?;
    let projected = last_body(&wire)?;
    let whole_page = items.list_items(&tenant, 10, None, None).await?;
    let whole = last_body(&wire)?;
    let names = raw_attribute_names(&projected)?;
    assert_eq!(names.len(), 3);
    assert!(names.iter().all(|n| n == &["quantity", "sku"]), "{names:?}");
    assert!(
        raw_attribute_names(&whole)?
            .iter()
            .all(|n| n.contains(&"name".to_owned()) && n.contains(&"pk".to_owned()))
    );
    assert!(
        projected.len() * 2 < whole.len(),
        "{} vs {}",
        projected.len(),
        whole.len()
    );
    // What was read is exact (the listing reads its page by key, so the
    // cursor does not come from the items read).
    for (sparse, full) in page.items.iter().zip(&whole_page.items) {
        assert_eq!((&sparse.sku, sparse.quantity), (&full.sku, full.quantity));
    }
    let first = items
        .list_items(&tenant, 2, None, Some(&fields))
        .await?
        .next
        .context("a next page")?;
    let rest = items
        .list_items(&tenant, 2, Some(first), Some(&fields))
        .await?;
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].sku, "wire-2");

    let sku = Sku::parse("wire-1").map_err(anyhow::Error::msg)?;
    let one = items.get_item(&tenant, &sku, Some(&fields)).await?;
    assert_eq!(one.map(|i| i.quantity), Some(1));
    let get = last_body(&wire)?;
    assert_eq!(raw_attribute_names(&get)?, [["quantity", "sku"]]);

    // A webhook read for its URL leaves its encrypted secrets in the table.
    let resp = t
        .post_json(
            "/v1/webhooks",
            &json!({"url": "http://127.0.0.1:9/wire", "events": ["batch.completed"]}),
        )
        .send()
        .await?;
    let hook_id = resp.json::<Value>().await?["id"]
        .as_str()
        .context("id")?
        .to_owned();
    let hooks = DynamoWebhookStore::new(wire.client(&sdk), &table);
    let url = Fields::<Webhook>::parse("url").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let hook = hooks
        .get_webhook(&tenant, &hook_id, Some(&url))
        .await?
        .context("the webhook")?;
    assert_eq!(hook.webhook.url, "http://127.0.0.1:9/wire");
    assert!(hook.secrets.is_empty());
    let get = last_body(&wire)?;
    assert_eq!(raw_attribute_names(&get)?, [["url"]]);
    Ok(())
}
