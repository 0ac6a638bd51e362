//! `stockroom-bench lean-reads`: what `?fields=` saves on one list page
//! (issue 26 §5). For each item shape — **bare** (sku, name, quantity: what
//! the load benchmark creates) and **catalogue** (plus a 200-character
//! description, a low-stock threshold and 6 attributes) — a tenant of its
//! own gets 100 items, then one page of 100 is read `ROUNDS` times each way,
//! whole and with `fields=sku,quantity`:
//!
//! - **HTTP**: `GET /v1/items?limit=100` through the local gateway, the
//!   body's bytes and the median time;
//! - **DynamoDB**: the store adapter's `Query` (the one the function makes),
//!   the response body's bytes as they came over the wire (recorded by an SDK
//!   interceptor) and the median time of the call, decoding included;
//! - the size DynamoDB bills the read by: the items' size (estimated by
//!   DynamoDB's rules from the whole items), the same with or without a
//!   projection, so the read capacity does not change.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use stockroom_app::ports::ItemStore;
use stockroom_aws::dynamodb::DynamoItemStore;
use stockroom_domain::{Fields, Item, TenantId};
use stockroom_tests::DynamoWire;

const ITEMS: usize = 100;
const ROUNDS: usize = 25;
const FIELDS: &str = "sku,quantity";

#[derive(Clone, Copy)]
enum Shape {
    Bare,
    Catalogue,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Bare => "bare",
            Shape::Catalogue => "catalogue",
        }
    }

    fn item(self, sku: &str, i: usize) -> Value {
        let mut item =
            json!({"sku": sku, "name": format!("Stoneware mug {i}"), "quantity": 40 + i});
        if let Shape::Catalogue = self {
            item["description"] = json!(
                "Hand-glazed stoneware mug, 350 ml, dishwasher and microwave safe. \
                 Packed in recycled cardboard; ships from the central warehouse within \
                 two working days. Colour varies slightly from batch to batch."
            );
            item["low_stock_threshold"] = json!(10);
            item["attributes"] = json!({
                "colour": "midnight blue", "capacity_ml": "350", "material": "stoneware",
                "supplier": "Keramik Werk GmbH", "hs_code": "6912.00", "bin": format!("A-{:02}-{}", i % 40, i % 7),
            });
        }
        item
    }
}

pub async fn run() -> Result<()> {
    let base =
        std::env::var("STOCKROOM_API_URL").context("STOCKROOM_API_URL (source .local/env)")?;
    let table = std::env::var("STOCK_TABLE").context("STOCK_TABLE (source .local/env)")?;
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let wire = DynamoWire::default();
    let store = DynamoItemStore::new(wire.client(&sdk), table);
    let fields = Fields::<Item>::parse(FIELDS).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!(
        "lean reads: one page of {ITEMS} items, whole and with fields={FIELDS}, {ROUNDS} rounds"
    );
    for shape in [Shape::Bare, Shape::Catalogue] {
        let (tenant_id, key) = crate::tenants::tenant().await?;
        create_items(&base, &key, shape).await?;
        let tenant = TenantId::parse(&tenant_id).map_err(anyhow::Error::msg)?;
        let http = reqwest::Client::new();
        let whole_url = format!("{base}/v1/items?limit={ITEMS}");
        let sparse_url = format!("{whole_url}&fields={FIELDS}");
        let (mut http_whole, mut http_sparse) = (Vec::new(), Vec::new());
        let (mut db_whole, mut db_sparse) = (Vec::new(), Vec::new());
        let (mut bytes, mut items_size) = (Sizes::default(), 0);
        // Interleaved, so the machine's drift touches both sides alike.
        for _ in 0..ROUNDS {
            let (t, n) = timed_get(&http, &whole_url, &key).await?;
            http_whole.push(t);
            bytes.http_whole = n;
            let (t, n) = timed_get(&http, &sparse_url, &key).await?;
            http_sparse.push(t);
            bytes.http_sparse = n;

            let started = Instant::now();
            let page = store.list_items(&tenant, ITEMS as u32, None, None).await?;
            db_whole.push(started.elapsed());
            let body = wire.take().pop().context("no Query recorded")?;
            (bytes.db_whole, items_size) = (body.len(), billed_size(&body)?);
            let started = Instant::now();
            let sparse = store
                .list_items(&tenant, ITEMS as u32, None, Some(&fields))
                .await?;
            db_sparse.push(started.elapsed());
            bytes.db_sparse = wire.take().pop().context("no Query recorded")?.len();
            if page.items.len() != ITEMS || sparse.items.len() != ITEMS {
                bail!(
                    "a page of {} and {} items",
                    page.items.len(),
                    sparse.items.len()
                );
            }
        }
        let rcu = items_size.div_ceil(4096) as f64 * 0.5;
        println!(
            "{:>9}: HTTP body {} -> {} bytes ({:.1} % less), median {:.2} -> {:.2} ms",
            shape.name(),
            bytes.http_whole,
            bytes.http_sparse,
            saved(bytes.http_whole, bytes.http_sparse),
            median_ms(&mut http_whole),
            median_ms(&mut http_sparse),
        );
        println!(
            "{:>9}  DynamoDB Query response {} -> {} bytes ({:.1} % less), adapter call median {:.2} -> {:.2} ms",
            "",
            bytes.db_whole,
            bytes.db_sparse,
            saved(bytes.db_whole, bytes.db_sparse),
            median_ms(&mut db_whole),
            median_ms(&mut db_sparse),
        );
        println!(
            "{:>9}  items read: {items_size} bytes by DynamoDB's rules = {rcu} RCU (eventually consistent) with or without the projection",
            ""
        );
    }
    Ok(())
}

#[derive(Default)]
struct Sizes {
    http_whole: usize,
    http_sparse: usize,
    db_whole: usize,
    db_sparse: usize,
}

fn saved(whole: usize, sparse: usize) -> f64 {
    100.0 * (whole as f64 - sparse as f64) / whole.max(1) as f64
}

fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort_unstable();
    times
        .get(times.len() / 2)
        .map_or(0.0, |t| t.as_secs_f64() * 1000.0)
}

async fn timed_get(http: &reqwest::Client, url: &str, key: &str) -> Result<(Duration, usize)> {
    let started = Instant::now();
    let resp = http.get(url).bearer_auth(key).send().await?;
    if resp.status() != 200 {
        bail!("GET {url}: {}", resp.status());
    }
    let body = resp.bytes().await?;
    Ok((started.elapsed(), body.len()))
}

async fn create_items(base: &str, key: &str, shape: Shape) -> Result<()> {
    let http = reqwest::Client::new();
    for i in 0..ITEMS {
        let item = shape.item(&format!("MUG-{i:04}"), i);
        loop {
            let resp = http
                .post(format!("{base}/v1/items"))
                .bearer_auth(key)
                .json(&item)
                .send()
                .await?;
            match resp.status().as_u16() {
                201 => break,
                // The stack's plan limits (make test's) may slow the set-up.
                429 => tokio::time::sleep(Duration::from_millis(200)).await,
                status => bail!("creating item {i}: {status}"),
            }
        }
    }
    Ok(())
}

/// The size of the items of a raw Query response as DynamoDB counts it for
/// billing: attribute names plus values (strings in UTF-8 bytes, numbers
/// about one byte per two digits plus one, 3 bytes per list or map plus one
/// per element). An estimate to within a few bytes per item.
fn billed_size(body: &[u8]) -> Result<usize> {
    let body: Value = serde_json::from_slice(body)?;
    let items = body["Items"].as_array().context("no Items")?;
    Ok(items
        .iter()
        .flat_map(|item| item.as_object().into_iter().flatten())
        .map(|(name, value)| name.len() + value_size(value))
        .sum())
}

fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|v| v.iter().next()) else {
        return 0;
    };
    let number = |n: &str| {
        let digits = n
            .trim_start_matches('-')
            .replace('.', "")
            .trim_matches('0')
            .len()
            .max(1);
        digits.div_ceil(2) + 1
    };
    match (kind.as_str(), inner) {
        ("S", Value::String(s)) => s.len(),
        ("N", Value::String(n)) => number(n),
        ("B", Value::String(b)) => b.len() * 3 / 4,
        ("BOOL" | "NULL", _) => 1,
        ("L", Value::Array(list)) => 3 + list.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        ("M", Value::Object(map)) => {
            3 + map
                .iter()
                .map(|(k, v)| k.len() + 1 + value_size(v))
                .sum::<usize>()
        }
        ("SS", Value::Array(set)) => set.iter().filter_map(Value::as_str).map(str::len).sum(),
        ("NS", Value::Array(set)) => set.iter().filter_map(Value::as_str).map(number).sum(),
        _ => 0,
    }
}
