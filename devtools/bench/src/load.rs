//! `stockroom-bench load`: a bounded loopback load on the local gateway and
//! the items API (issue 8, target 6). 16 clients, each sending its next
//! request as soon as the last one is answered, for `LOAD_SECONDS` (60):
//! 80 % `GET /v1/items/{sku}`, 20 % `POST .../adjustments` (+1/-1, so stock
//! stays put), each client on an item of its own (one hot item would measure
//! version conflicts, which tests/reliability covers). Prints requests/s, p50/p90/p99/max and every non-2xx answer.
//! Then 20 s of the functions that load leaves idle: `GET /v1/keys`,
//! `GET /v1/webhooks` and adjustments that cross a low-stock threshold, each
//! an `item.low_stock` event the webhook dispatcher delivers to a receiver
//! here (so every function's peak memory is measured under load).
//! Reference, measured in the same run for 15 s: the same clients on
//! `GET /v1/health` (gateway + Lambda emulation, no DynamoDB), so the ratio
//! shows what the store path costs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::tenants::tenant_with_keys;
use anyhow::{Context, Result, bail};
use serde_json::json;

const CLIENTS: usize = 16;

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
}

struct Figures {
    requests: u64,
    per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: BTreeMap<String, u64>,
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// What each client sends, request after request.
#[derive(Clone, Copy)]
enum Workload<'a> {
    /// `GET /v1/health`: the gateway and Lambda emulation alone.
    Health,
    /// 80 % `GET /v1/items/{sku}`, 20 % adjustments (+1/-1) of the client's item.
    Items(&'a [String]),
    /// The other functions: `GET /v1/keys`, `GET /v1/webhooks` and -1/+1
    /// adjustments of an item whose every -1 crosses its low-stock threshold,
    /// so each is an `item.low_stock` event the dispatcher delivers.
    Admin(&'a [String]),
}

/// Client `c` authenticates with `keys[c % keys.len()]`.
async fn drive(
    base: &str,
    keys: &[String],
    workload: Workload<'_>,
    seconds: u64,
) -> Result<Figures> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(30))
        .build()?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (http, tally) = (http.clone(), tally.clone());
        let (base, key) = (base.to_owned(), keys[c % keys.len()].clone());
        let sku = match workload {
            Workload::Health => None,
            Workload::Items(skus) | Workload::Admin(skus) => Some(skus[c % skus.len()].clone()),
        };
        let admin = matches!(workload, Workload::Admin(_));
        clients.spawn(async move {
            let mut n: u64 = 0;
            while Instant::now() < stop {
                n += 1;
                let adjust = |sku: &str, delta: i64| {
                    http.post(format!("{base}/v1/items/{sku}/adjustments"))
                        .json(&json!({"delta": delta, "reason": "correction"}))
                };
                let req = match &sku {
                    None => http.get(format!("{base}/v1/health")),
                    Some(sku) if admin => match n % 3 {
                        0 => http.get(format!("{base}/v1/keys")),
                        1 => http.get(format!("{base}/v1/webhooks")),
                        // -1 first: from the threshold + 1 down to it, then back.
                        _ if (n / 3).is_multiple_of(2) => adjust(sku, -1),
                        _ => adjust(sku, 1),
                    },
                    // Every fifth request of a client writes: +1 then -1.
                    Some(sku) if n.is_multiple_of(5) => adjust(
                        sku,
                        if (n / 5 + c as u64).is_multiple_of(2) {
                            1
                        } else {
                            -1
                        },
                    ),
                    Some(sku) => http.get(format!("{base}/v1/items/{sku}")),
                };
                let t = Instant::now();
                let result = req.bearer_auth(&key).send().await;
                let us = t.elapsed().as_micros() as u64;
                let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(resp) => {
                        *tally.statuses.entry(resp.status().as_u16()).or_default() += 1;
                        tally.latencies_us.push(us);
                    }
                    Err(_) => tally.transport_errors += 1,
                }
            }
        });
    }
    while clients.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let mut tally = Arc::try_unwrap(tally)
        .map_err(|_| anyhow::anyhow!("clients still running"))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    tally.latencies_us.sort_unstable();
    let requests = tally.latencies_us.len() as u64;
    let mut errors: BTreeMap<String, u64> = tally
        .statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    if tally.transport_errors > 0 {
        errors.insert("transport".into(), tally.transport_errors);
    }
    Ok(Figures {
        requests,
        per_second: requests as f64 / elapsed,
        p50_ms: pct(&tally.latencies_us, 50.0),
        p90_ms: pct(&tally.latencies_us, 90.0),
        p99_ms: pct(&tally.latencies_us, 99.0),
        max_ms: pct(&tally.latencies_us, 100.0),
        errors,
    })
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<28} {:>7} requests  {:>7.1} req/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  errors {}",
        f.requests,
        f.per_second,
        f.p50_ms,
        f.p90_ms,
        f.p99_ms,
        f.max_ms,
        if f.errors.is_empty() {
            "0".to_owned()
        } else {
            format!("{:?}", f.errors)
        }
    );
}

/// A tenant of its own on the standard plan, as stockroom-admin makes one,
pub async fn run() -> Result<()> {
    let base =
        std::env::var("STOCKROOM_API_URL").context("STOCKROOM_API_URL (source .local/env)")?;
    let seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // One key per client, as 16 integrations of one tenant would have: the
    // authorizer runs once per key (its decision is cached), so its first
    // invocations fall inside the measured window, under the items load.
    let (_, keys) = tenant_with_keys(CLIENTS).await?;
    let key = keys[0].clone();
    let run = ulid::Ulid::new();
    let skus = create_items(&base, &key, &format!("LOAD-{run}"), None).await?;
    println!("load: {CLIENTS} clients on loopback, {seconds} s (reference 15 s)");
    let reference = drive(&base, &keys, Workload::Health, 15.min(seconds)).await?;
    print("GET /v1/health (reference)", &reference);
    let http = reqwest::Client::new();
    let before = crate::pipeline::aws_calls(&http, &base).await?;
    let offsets = crate::pipeline::log_offsets(&["authorizer", "items-api"]);
    let items = drive(&base, &keys, Workload::Items(&skus), seconds).await?;
    let after = crate::pipeline::aws_calls(&http, &base).await?;
    print("items 80 % GET / 20 % POST", &items);
    crate::pipeline::print_calls(&before, &after, items.requests, "request");
    crate::pipeline::print_reports(
        &crate::pipeline::reports_since(&offsets)?,
        items.requests,
        "request",
    );
    println!(
        "throughput ratio items / reference: {:.2}; p50 ratio: {:.2}",
        items.per_second / reference.per_second,
        items.p50_ms / reference.p50_ms.max(0.001)
    );
    admin_phase(&base, &key, &format!("LOW-{run}"), 20.min(seconds)).await
}

/// One item per client, quantity 1000 and the given low-stock threshold.
async fn create_items(
    base: &str,
    key: &str,
    prefix: &str,
    low_stock_threshold: Option<i64>,
) -> Result<Vec<String>> {
    let http = reqwest::Client::new();
    let mut skus = Vec::new();
    for c in 0..CLIENTS {
        let sku = format!("{prefix}-{c}");
        let mut item = json!({"sku": sku, "name": "Load test mug", "quantity": 1000});
        if let Some(threshold) = low_stock_threshold {
            item["low_stock_threshold"] = json!(threshold);
        }
        let created = http
            .post(format!("{base}/v1/items"))
            .bearer_auth(key)
            .json(&item)
            .send()
            .await?;
        if created.status() != 201 {
            bail!("creating the item: {}", created.status());
        }
        skus.push(sku);
    }
    Ok(skus)
}

/// The functions the items load leaves idle, under the same clients: the
/// keys and webhooks APIs, and the webhook dispatcher delivering each
/// `item.low_stock` event to a receiver on loopback.
async fn admin_phase(base: &str, key: &str, prefix: &str, seconds: u64) -> Result<()> {
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = format!("http://{}/hooks/low-stock", listener.local_addr()?);
    let counter = delivered.clone();
    let app = axum::Router::new().route(
        "/hooks/low-stock",
        axum::routing::post(move || async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            axum::http::StatusCode::NO_CONTENT
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(key)
        .json(&json!({"url": receiver, "events": ["item.low_stock"]}))
        .send()
        .await?;
    if created.status() != 201 {
        bail!("creating the webhook: {}", created.status());
    }
    // 1000 -> 999 crosses the threshold: every other adjustment is an event.
    let skus = create_items(base, key, prefix, Some(999)).await?;
    let functions = [
        "keys-api",
        "webhooks-api",
        "items-api",
        "webhook-dispatcher",
    ];
    let offsets = crate::pipeline::log_offsets(&functions);
    let admin = drive(base, &[key.to_owned()], Workload::Admin(&skus), seconds).await?;
    print("keys, webhooks, low stock", &admin);
    // Each third request adjusts; half of those cross the threshold.
    let expected = admin.requests / 6;
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered.load(std::sync::atomic::Ordering::Relaxed) < expected
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "  low-stock deliveries received: {} (~{expected} threshold crossings)",
        delivered.load(std::sync::atomic::Ordering::Relaxed)
    );
    crate::pipeline::print_reports(
        &crate::pipeline::reports_since(&offsets)?,
        admin.requests,
        "request",
    );
    server.abort();
    Ok(())
}
