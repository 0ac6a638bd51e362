//! `stockroom-bench heat [records]`: partition heat (issue 30). The local
//! DynamoDB records what each call it serves would consume on AWS, per
//! partition key of the table and of each GSI (devtools/heat.py: KB rounded
//! up, 2x in a transaction). Three loads run in turn, each with the
//! recorder cleared before it:
//!
//! 1. an isolated import of `records` (100,000) upserts, uploaded, through
//!    the whole pipeline;
//! 2. a mixed items load: [`MIXED_CLIENTS`] clients, 80 % `GET` and 20 %
//!    adjustments, each on items of its own;
//! 3. a flash sale on ONE sku: [`SALE_CLIENTS`] clients, half selling one
//!    unit at a time (adjustment -1), half holding one unit and committing
//!    it, until [`SALE_UNITS`] units are gone; then the oversell check. It
//!    runs twice: on the sku as it is, then on a sku whose stock is split
//!    into [`SALE_BUCKETS`] buckets (`stockroom-admin split-stock`), with
//!    [`SPLIT_SALE_UNITS`] units so most orders find units in their bucket.
//!
//! For each key the units per operation (record, request, order) are scaled
//! to a target rate: 5,000 records/s for the import, 1,000 requests/s for
//! the mixed load, 2,000 orders/s for the sale (the targets), and
//! printed as a fraction of one partition's 1,000 WCU/s and 3,000 RCU/s:
//! per key pattern (`T#<tenant>#I#<sku>`), its hottest key and how many keys
//! it has, hottest first.
//! No assertion on the figures: docs/scaling.md reads them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::tenants::tenant;

const PARTITION_WCU: f64 = 1000.0;
const PARTITION_RCU: f64 = 3000.0;
const IMPORT_TARGET: f64 = 5000.0;
const MIXED_TARGET: f64 = 1000.0;
const SALE_TARGET: f64 = 2000.0;
const MIXED_CLIENTS: usize = 8;
const MIXED_REQUESTS: usize = 2000;
const SALE_CLIENTS: usize = 16;
const SALE_UNITS: i64 = 400;
const SALE_BUCKETS: u16 = 64;
const SPLIT_SALE_UNITS: i64 = 1280;
/// Keys printed per load.
const SHOWN: usize = 8;

/// A key pattern's hottest key (fraction, WCU/s, RCU/s) and its number of keys.
type PatternHeat = (f64, f64, f64, usize);

/// Units recorded for one key.
struct KeyHeat {
    table: String,
    index: String,
    pk: String,
    wcu: f64,
    rcu: f64,
}

pub async fn run(records: u64) -> Result<()> {
    let base =
        std::env::var("STOCKROOM_API_URL").context("STOCKROOM_API_URL (source .local/env)")?;
    let store =
        std::env::var("AWS_ENDPOINT_URL").context("AWS_ENDPOINT_URL (source .local/env)")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    println!(
        "heat: units per partition key at the target rate, as a fraction of one partition's \
         {PARTITION_WCU} WCU/s and {PARTITION_RCU} RCU/s"
    );

    recorder(&http, &store, "start").await?;
    crate::pipeline::through_the_pipeline(&http, &base, records).await?;
    let import = recorder(&http, &store, "stop").await?;
    print_model(
        &format!("isolated import of {records} records"),
        &import,
        records as f64,
        ("records/s", IMPORT_TARGET),
    );

    let (tenant_id, key) = tenant().await?;
    let skus: Vec<String> = (0..MIXED_CLIENTS * 4)
        .map(|i| format!("HEAT-{i}"))
        .collect();
    for sku in &skus {
        crate::reservations::create_item(&http, &base, &key, sku, 1000).await?;
    }
    recorder(&http, &store, "start").await?;
    let requests = mixed(&http, &base, &key, &skus).await?;
    let mixed_heat = recorder(&http, &store, "stop").await?;
    print_model(
        "mixed items load (80 % reads, 20 % adjustments)",
        &mixed_heat,
        requests as f64,
        ("requests/s", MIXED_TARGET),
    );

    let sale = Sale {
        http: &http,
        base: &base,
        store: &store,
        key: &key,
    };
    sale.run(SALE_UNITS, None).await?;
    sale.run(SPLIT_SALE_UNITS, Some((&tenant_id, SALE_BUCKETS)))
        .await?;
    Ok(())
}

/// A flash sale on one new sku, recorded and checked for oversell.
struct Sale<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    store: &'a str,
    key: &'a str,
}

impl Sale<'_> {
    /// `split`: the tenant, and the buckets the sku's stock is split into
    /// first (as `stockroom-admin split-stock` does).
    async fn run(&self, units: i64, split: Option<(&str, u16)>) -> Result<()> {
        let (http, base, key) = (self.http, self.base, self.key);
        let sku = format!("SALE-{}", ulid::Ulid::new());
        crate::reservations::create_item(http, base, key, &sku, units as usize).await?;
        let label = match split {
            Some((tenant, buckets)) => {
                split_stock(tenant, &sku, buckets).await?;
                format!("split into {buckets} buckets")
            }
            None => "not split".to_owned(),
        };
        recorder(http, self.store, "start").await?;
        let orders = flash_sale(http, base, key, &sku).await?;
        let sale_heat = recorder(http, self.store, "stop").await?;
        print_model(
            &format!("flash sale on one sku, {label} ({orders} orders: sales and committed holds)"),
            &sale_heat,
            orders as f64,
            ("orders/s", SALE_TARGET),
        );
        let level = on_hand(http, base, key, &sku).await?;
        println!(
            "oversell check: {units} units, {orders} orders, {level} left on hand: {}",
            if level == units - orders as i64 && level >= 0 {
                "consistent"
            } else {
                "INCONSISTENT"
            }
        );
        if level != units - orders as i64 || level < 0 {
            bail!("the flash sale's level does not match its orders");
        }
        Ok(())
    }
}

/// What `stockroom-admin split-stock` runs, on the local stack's table.
async fn split_stock(tenant: &str, sku: &str, buckets: u16) -> Result<()> {
    use stockroom_app::items::LevelStores;
    use stockroom_app::stock_split::StockSplitService;
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let table = stockroom_tests::function_env("ItemsApiFunction", "STOCK_TABLE")?;
    let store = Arc::new(stockroom_aws::dynamodb::DynamoItemStore::from_sdk_config(
        &sdk, table,
    ));
    let splits = StockSplitService::new(
        store.clone(),
        LevelStores {
            locations: store.clone(),
            levels: store.clone(),
            holds: store,
        },
    );
    let ctx = stockroom_domain::MovementContext {
        request_id: "bench-split".into(),
        key_id: None,
        batch_record: None,
    };
    let tenant = stockroom_domain::TenantId::parse(tenant).map_err(anyhow::Error::msg)?;
    let sku = stockroom_domain::Sku::parse(sku).map_err(anyhow::Error::msg)?;
    splits
        .split(&tenant, &sku, buckets, &ctx)
        .await
        .map_err(|e| anyhow::anyhow!("splitting {sku}: {e}"))?;
    Ok(())
}

/// Starts (clearing) or stops the local store's recorder; the figures.
async fn recorder(http: &reqwest::Client, store: &str, verb: &str) -> Result<Vec<KeyHeat>> {
    let report: Value = http
        .post(format!("{store}/_stockroom/heat/{verb}"))
        .send()
        .await?
        .error_for_status()
        .context("the local store has no heat recorder (devtools/heat.py)")?
        .json()
        .await?;
    let keys = report["keys"].as_array().cloned().unwrap_or_default();
    Ok(keys
        .iter()
        .map(|k| KeyHeat {
            table: k["table"].as_str().unwrap_or_default().to_owned(),
            index: k["index"].as_str().unwrap_or_default().to_owned(),
            pk: k["pk"].as_str().unwrap_or_default().to_owned(),
            wcu: k["wcu"].as_f64().unwrap_or(0.0),
            rcu: k["rcu"].as_f64().unwrap_or(0.0),
        })
        .collect())
}

/// `T#bench-01j…#I#SKU-1` -> `T#<tenant>#I#<sku>`: the value after each tag.
pub(crate) fn pattern(pk: &str) -> String {
    let parts: Vec<&str> = pk.split('#').collect();
    if parts.len() < 2 {
        return "<key>".into();
    }
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 0 {
            out.push((*part).to_owned());
            continue;
        }
        let name = match parts[i - 1] {
            "T" => "tenant",
            "I" => "sku",
            "B" => "batch",
            "K" => "key",
            "LOC" => "location",
            "W" => "webhook",
            "R" | "CH" | "L" | "F" => "shard",
            "S" => "bucket",
            "U" => "upload",
            _ => "id",
        };
        out.push(format!("<{name}>"));
    }
    out.join("#")
}

fn print_model(load: &str, keys: &[KeyHeat], ops: f64, (unit, target): (&str, f64)) {
    println!();
    println!("== {load}, at {target} {unit}");
    if ops <= 0.0 || keys.is_empty() {
        println!("   nothing recorded");
        return;
    }
    // Per key pattern (table, index, pattern): the hottest of its keys
    // (fraction, WCU/s, RCU/s) and how many keys it has.
    let mut patterns: std::collections::BTreeMap<(String, String, String), PatternHeat> =
        std::collections::BTreeMap::new();
    let mut total_wcu = 0.0;
    for k in keys {
        let wcu = k.wcu / ops * target;
        let rcu = k.rcu / ops * target;
        total_wcu += wcu;
        let fraction = (wcu / PARTITION_WCU).max(rcu / PARTITION_RCU);
        let table = k.table.rsplit('-').next().unwrap_or(&k.table).to_owned();
        let index = if k.index.is_empty() {
            "-".to_owned()
        } else {
            k.index.clone()
        };
        let entry = patterns
            .entry((table, index, pattern(&k.pk)))
            .or_insert((0.0, 0.0, 0.0, 0));
        if fraction > entry.0 {
            (entry.0, entry.1, entry.2) = (fraction, wcu, rcu);
        }
        entry.3 += 1;
    }
    let mut rows: Vec<_> = patterns.into_iter().collect();
    rows.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    println!(
        "   {:<8} {:>10} {:>10} {:>6}  {:<9} partition key pattern (table)",
        "fraction", "WCU/s", "RCU/s", "keys", "index"
    );
    for ((table, index, pattern), (fraction, wcu, rcu, count)) in rows.iter().take(SHOWN) {
        println!(
            "   {fraction:<8.2} {wcu:>10.0} {rcu:>10.0} {count:>6}  {index:<9} {pattern} ({table})"
        );
    }
    let hottest = rows.first().map_or(0.0, |r| r.1.0);
    println!(
        "   hottest key {hottest:.2} of a partition (target <= 0.50: {}); {:.1} WCU per {}",
        if hottest <= 0.5 { "met" } else { "NOT met" },
        total_wcu / target,
        unit.trim_end_matches("/s").trim_end_matches('s')
    );
}

/// [`MIXED_REQUESTS`] requests between the clients: answered ones counted.
async fn mixed(http: &reqwest::Client, base: &str, key: &str, skus: &[String]) -> Result<usize> {
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..MIXED_CLIENTS {
        let (http, base, key, done) = (http.clone(), base.to_owned(), key.to_owned(), done.clone());
        let mine: Vec<String> = skus
            .iter()
            .skip(client)
            .step_by(MIXED_CLIENTS)
            .cloned()
            .collect();
        tasks.spawn(async move {
            let mut n = 0usize;
            while done.fetch_add(1, Ordering::Relaxed) < MIXED_REQUESTS {
                let sku = &mine[n % mine.len()];
                let resp = if n % 5 == 4 {
                    let delta = if n % 10 == 4 { 1 } else { -1 };
                    http.post(format!("{base}/v1/items/{sku}/adjustments"))
                        .bearer_auth(&key)
                        .json(&json!({"delta": delta, "reason": "heat"}))
                        .send()
                        .await
                } else {
                    http.get(format!("{base}/v1/items/{sku}"))
                        .bearer_auth(&key)
                        .send()
                        .await
                };
                let resp = resp?;
                if resp.status() == 429 {
                    // The usage plan's rate (make bench raises it): not served.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                resp.error_for_status()?;
                n += 1;
            }
            anyhow::Ok(n)
        });
    }
    let mut answered = 0;
    while let Some(r) = tasks.join_next().await {
        answered += r??;
    }
    Ok(answered)
}

/// Sells the sku's units between the clients: the orders that took one.
async fn flash_sale(http: &reqwest::Client, base: &str, key: &str, sku: &str) -> Result<usize> {
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..SALE_CLIENTS {
        let (http, base, key, sku) = (
            http.clone(),
            base.to_owned(),
            key.to_owned(),
            sku.to_owned(),
        );
        tasks.spawn(async move {
            let mut orders = 0usize;
            loop {
                let sold = if client % 2 == 0 {
                    sell(&http, &base, &key, &sku).await?
                } else {
                    hold_and_commit(&http, &base, &key, &sku).await?
                };
                match sold {
                    Some(true) => orders += 1,
                    Some(false) => {}
                    None => return anyhow::Ok(orders),
                }
            }
        });
    }
    let mut orders = 0;
    while let Some(r) = tasks.join_next().await {
        orders += r??;
    }
    Ok(orders)
}

/// Some(true): sold; Some(false): lost a race, try again; None: sold out.
async fn sell(http: &reqwest::Client, base: &str, key: &str, sku: &str) -> Result<Option<bool>> {
    let resp = http
        .post(format!("{base}/v1/items/{sku}/adjustments"))
        .bearer_auth(key)
        .json(&json!({"delta": -1, "reason": "sale"}))
        .send()
        .await?;
    outcome(resp).await
}

async fn hold_and_commit(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    sku: &str,
) -> Result<Option<bool>> {
    let resp = http
        .post(format!("{base}/v1/reservations"))
        .bearer_auth(key)
        .json(&json!({"sku": sku, "quantity": 1, "expires_in": 300}))
        .send()
        .await?;
    if resp.status() != 201 {
        return outcome(resp).await;
    }
    let hold: Value = resp.json().await?;
    let id = hold["id"].as_str().context("a hold without id")?.to_owned();
    // Ending again answers the same: retry until it is committed.
    for _ in 0..8 {
        let resp = http
            .post(format!("{base}/v1/reservations/{id}/commit"))
            .bearer_auth(key)
            .send()
            .await?;
        if resp.status().is_success() {
            return Ok(Some(true));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("hold {id} could not be committed")
}

async fn outcome(resp: reqwest::Response) -> Result<Option<bool>> {
    let status = resp.status();
    if status.is_success() {
        return Ok(Some(true));
    }
    let body: Value = resp.json().await.unwrap_or_default();
    match body["code"].as_str() {
        Some("insufficient_stock" | "insufficient_available") => Ok(None),
        Some("concurrent_update") => Ok(Some(false)),
        _ if status.is_server_error() || status == 429 => Ok(Some(false)),
        _ => bail!("unexpected answer {status}: {body}"),
    }
}

async fn on_hand(http: &reqwest::Client, base: &str, key: &str, sku: &str) -> Result<i64> {
    let item: Value = http
        .get(format!("{base}/v1/items/{sku}"))
        .bearer_auth(key)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    item["quantity"]
        .as_i64()
        .context("an item without quantity")
}

#[cfg(test)]
mod tests {
    use super::pattern;

    #[test]
    fn a_key_shows_as_its_pattern() {
        assert_eq!(pattern("T#bench-01j#I#SKU-1"), "T#<tenant>#I#<sku>");
        assert_eq!(pattern("T#acme#B#b_01#F"), "T#<tenant>#B#<batch>#F");
        assert_eq!(
            pattern("T#acme#B#b_01#F#3"),
            "T#<tenant>#B#<batch>#F#<shard>"
        );
        assert_eq!(pattern("T#acme#L#15"), "T#<tenant>#L#<shard>");
        assert_eq!(pattern("T#acme"), "T#<tenant>");
        assert_eq!(
            pattern("T#acme#B#b_01#R#7"),
            "T#<tenant>#B#<batch>#R#<shard>"
        );
        assert_eq!(
            pattern("T#acme#I#SKU-1#S#63"),
            "T#<tenant>#I#<sku>#S#<bucket>"
        );
        assert_eq!(pattern("k_abc"), "<key>");
    }
}
