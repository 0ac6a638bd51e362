//! `stockroom-bench events-latency [adjustments]` (issue 28): how long a
//! committed stock movement takes to reach a webhook, through the outbox —
//! the stock table's stream -> `events-publisher` -> FIFO `WebhookEventsQueue`
//! -> `webhook-dispatcher` (fan-out) -> FIFO `WebhookDeliveriesQueue` ->
//! `webhook-dispatcher` (signed POST) -> a receiver here, on loopback.
//!
//! A tenant of its own registers one webhook for `stock.changed`, creates
//! [`SKUS`] items and waits for their opening-stock events (so the pipeline
//! is warm), then fires a burst of `adjustments` (500) -1 adjustments from
//! [`CLIENTS`] clients (concurrent across skus, sequential within one: no
//! version conflicts). Each delivery is matched to its adjustment by
//! `data.movement_id`; latency = receipt minus the adjustment's response
//! (and minus its request's start). Checked: every movement delivered exactly once,
//! each sku's deliveries in commit order (each quantity follows from the
//! one before and its delta). Per stage, from the functions' logs: the
//! publisher's `events published` line (its timestamp and event ids, an
//! event's id being its movement's ULID) splits each latency into
//! response -> published and published -> received; its `StreamToPublishMs`
//! metric (commit -> published per stream batch, from the record's creation
//! time, which the stream gives in whole seconds) is printed beside it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::pipeline::{log_offsets, print_reports, read_log_since, reports_since};

/// Items the burst spreads over.
const SKUS: usize = 10;
/// Clients sending at once; each owns the skus `i % CLIENTS == c` and
/// adjusts them in turn, one request after the other, so no two requests
/// race for one item (no version conflicts).
const CLIENTS: usize = 5;
const OPENING_QUANTITY: i64 = 100_000;
/// Give up waiting once no delivery has arrived for this long: longer than
/// the queues' visibility timeout (180 s), after which a batch of a timed-out
/// dispatcher invocation is received again.
const QUIET: Duration = Duration::from_secs(200);
/// The opening stock's deliveries (the warm-up) are awaited this long.
const WARM_UP: Duration = Duration::from_secs(30);

/// Milliseconds since the epoch: the benchmark, the receiver and the
/// functions' log lines share the machine's clock.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

struct Adjustment {
    started_ms: f64,
    answered_ms: f64,
}

struct Delivery {
    received_ms: f64,
    webhook_id: String,
    body: Bytes,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn row(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name:<34} {:>5}  p50 {:>7.0} ms  p90 {:>7.0} ms  p99 {:>7.0} ms  max {:>7.0} ms",
        ms.len(),
        pct(&ms, 50.0),
        pct(&ms, 90.0),
        pct(&ms, 99.0),
        pct(&ms, 100.0),
    );
}

/// Posts `body` to `path` with the key; the answer's JSON.
async fn post(
    http: &reqwest::Client,
    url: String,
    key: &str,
    body: &Value,
) -> Result<(u16, Value)> {
    let resp = http.post(url).bearer_auth(key).json(body).send().await?;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// The events publisher's `events published` lines since `offset`: event id
/// -> when it was published (ms since the epoch).
fn published_at(log: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in log.lines().filter(|l| l.contains("\"events published\"")) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(at) = v["timestamp"].as_str().and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        }) else {
            continue;
        };
        let ms = at.unix_timestamp_nanos() as f64 / 1e6;
        for id in v["event_ids"].as_str().unwrap_or_default().split(',') {
            if !id.is_empty() {
                out.insert(id.to_owned(), ms);
            }
        }
    }
    out
}

/// The publisher's `StreamToPublishMs` samples (one per stream batch) in a log tail.
fn stream_to_publish(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("\"StreamToPublishMs\""))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| {
            v["StreamToPublishMs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|x| x.as_f64())
                .collect::<Vec<_>>()
        })
        .collect()
}

pub async fn run(adjustments: usize) -> Result<()> {
    let base =
        std::env::var("STOCKROOM_API_URL").context("STOCKROOM_API_URL (source .local/env)")?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(30))
        .build()?;
    let (_, key) = crate::tenants::tenant().await?;

    // The receiver: every delivery, as it arrives.
    let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks/stock", listener.local_addr()?);
    let sink = deliveries.clone();
    let app = axum::Router::new().route(
        "/hooks/stock",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
            let received_ms = now_ms();
            let webhook_id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Delivery {
                    received_ms,
                    webhook_id,
                    body,
                });
            axum::http::StatusCode::NO_CONTENT
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let received = || deliveries.lock().unwrap_or_else(|e| e.into_inner()).len();

    let (status, body) = post(
        &http,
        format!("{base}/v1/webhooks"),
        &key,
        &json!({"url": url, "events": ["stock.changed"]}),
    )
    .await?;
    if status != 201 {
        bail!("creating the webhook: {status} {body}");
    }
    let run = ulid::Ulid::new();
    let skus: Vec<String> = (0..SKUS).map(|i| format!("EVT-{run}-{i}")).collect();
    for sku in &skus {
        let (status, body) = post(
            &http,
            format!("{base}/v1/items"),
            &key,
            &json!({"sku": sku, "name": "Latency mug", "quantity": OPENING_QUANTITY}),
        )
        .await?;
        if status != 201 {
            bail!("creating {sku}: {status} {body}");
        }
    }
    // The opening stock's events: the whole path runs (and is warm) before
    // the burst.
    let warm_from = now_ms();
    let deadline = tokio::time::Instant::now() + WARM_UP;
    while received() < SKUS && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "events latency: {adjustments} adjustments over {SKUS} skus, {CLIENTS} clients (each sku adjusted by one), one webhook for stock.changed on loopback"
    );
    println!(
        "  warm-up: {} of {SKUS} opening-stock deliveries within {:.1} s of the items' creation",
        received(),
        (now_ms() - warm_from) / 1000.0
    );

    let functions = ["items-api", "events-publisher", "webhook-dispatcher"];
    let offsets = log_offsets(&functions);
    let before = received();

    // The burst: client c adjusts its skus in turn, one request after the other.
    let next = Arc::new(AtomicUsize::new(0));
    let made: Arc<Mutex<HashMap<String, Adjustment>>> = Arc::default();
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let burst_from = now_ms();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let own: Vec<String> = skus.iter().skip(c).step_by(CLIENTS).cloned().collect();
        let (http, key, base) = (http.clone(), key.clone(), base.clone());
        let (next, made, errors) = (next.clone(), made.clone(), errors.clone());
        clients.spawn(async move {
            for turn in 0.. {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= adjustments {
                    return;
                }
                let sku = &own[turn % own.len()];
                let started_ms = now_ms();
                let answer = post(
                    &http,
                    format!("{base}/v1/items/{sku}/adjustments"),
                    &key,
                    &json!({"delta": -1, "reason": "sale", "reference": format!("bench-{n}")}),
                )
                .await;
                let answered_ms = now_ms();
                let movement = match &answer {
                    Ok((200, body)) => body["movement_id"].as_str().map(str::to_owned),
                    _ => None,
                };
                match movement {
                    Some(id) => {
                        made.lock().unwrap_or_else(|e| e.into_inner()).insert(
                            id,
                            Adjustment {
                                started_ms,
                                answered_ms,
                            },
                        );
                    }
                    None => {
                        let what = match answer {
                            Ok((status, _)) => status.to_string(),
                            Err(_) => "transport".to_owned(),
                        };
                        *errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(what)
                            .or_default() += 1;
                    }
                }
            }
        });
    }
    while clients.join_next().await.is_some() {}
    let burst_ms = now_ms() - burst_from;
    let made = std::mem::take(&mut *made.lock().unwrap_or_else(|e| e.into_inner()));
    let errors = std::mem::take(&mut *errors.lock().unwrap_or_else(|e| e.into_inner()));

    // Wait for every movement's delivery, then a little for any repeat.
    let mut last = (received(), tokio::time::Instant::now());
    while received() < before + made.len() && last.1.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if received() != last.0 {
            last = (received(), tokio::time::Instant::now());
        }
    }
    let drained_ms = now_ms() - burst_from;
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.abort();
    let got = std::mem::take(&mut *deliveries.lock().unwrap_or_else(|e| e.into_inner()));

    // Match, count, check order.
    let (mut from_answer, mut from_start) = (Vec::new(), Vec::new());
    let mut times: HashMap<String, f64> = HashMap::new();
    let mut per_movement: HashMap<String, usize> = HashMap::new();
    let mut webhook_ids = HashSet::new();
    let mut per_sku: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    let (mut unmatched, mut stock_changed) = (0usize, 0usize);
    for d in &got {
        let e: Value = serde_json::from_slice(&d.body).unwrap_or(Value::Null);
        if e["type"] != "stock.changed" {
            unmatched += 1;
            continue;
        }
        stock_changed += 1;
        webhook_ids.insert(d.webhook_id.clone());
        let data = &e["data"];
        let sku = data["sku"].as_str().unwrap_or_default().to_owned();
        per_sku.entry(sku).or_default().push((
            data["quantity"].as_i64().unwrap_or(i64::MIN),
            data["delta"].as_i64().unwrap_or(0),
        ));
        let movement = data["movement_id"].as_str().unwrap_or_default();
        match made.get(movement) {
            Some(a) => {
                let count = per_movement.entry(movement.to_owned()).or_default();
                *count += 1;
                if *count == 1 {
                    from_answer.push(d.received_ms - a.answered_ms);
                    from_start.push(d.received_ms - a.started_ms);
                    times.insert(movement.to_owned(), d.received_ms);
                }
            }
            None => unmatched += 1,
        }
    }
    let missing = made.len() - per_movement.len();
    let repeated: usize = per_movement.values().map(|n| n - 1).sum();
    let mut out_of_order = 0usize;
    for seen in per_sku.values() {
        out_of_order += seen
            .windows(2)
            .filter(|w| w[1].0 != w[0].0 + w[1].1)
            .count();
    }
    let adjust_ms: Vec<f64> = made
        .values()
        .map(|a| a.answered_ms - a.started_ms)
        .collect();

    // Per stage, from the publisher's log.
    let publisher_log = read_log_since("events-publisher", offsets["events-publisher"]);
    let published = published_at(&publisher_log);
    let (mut to_published, mut to_received) = (Vec::new(), Vec::new());
    for (movement, received_ms) in &times {
        let ulid = movement.rsplit('_').next().unwrap_or(movement);
        let id = format!("evt_{}", ulid.to_ascii_lowercase());
        if let (Some(at), Some(a)) = (published.get(&id), made.get(movement)) {
            to_published.push(at - a.answered_ms);
            to_received.push(received_ms - at);
        }
    }

    println!(
        "  local emulator figures: the stream poller (GetRecords every 250 ms, then the mapping's 1 s batching window) dominates; on AWS the same window and ~4 polls/s of the shard remain, the SQS hops are faster (long polls answer at once, no moto) and the webhook is across the internet"
    );
    println!(
        "{:<34} {:>5}  (burst {:.1} s, {:.0} adjustments/s; errors {})",
        "adjustments (request -> answer)",
        made.len(),
        burst_ms / 1000.0,
        made.len() as f64 * 1000.0 / burst_ms.max(1.0),
        if errors.is_empty() {
            "0".to_owned()
        } else {
            format!("{errors:?}")
        }
    );
    row("  answer time", adjust_ms);
    row("stream-to-webhook: answer -> receipt", from_answer.clone());
    row("  request start -> receipt", from_start);
    println!("per stage (publisher's `events published` log line: its timestamp, its event ids):");
    row("  answer -> published", to_published.clone());
    row("  published -> received", to_received.clone());
    let mut stp = stream_to_publish(&publisher_log);
    stp.sort_by(f64::total_cmp);
    println!(
        "  StreamToPublishMs (EMF, commit -> published per stream batch; commit time in whole seconds, so up to 1 s high): {} batches, p50 {:.0} ms, max {:.0} ms",
        stp.len(),
        pct(&stp, 50.0),
        pct(&stp, 100.0)
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        pct(&v, 50.0)
    };
    let whole = median(from_answer);
    println!(
        "  share of the median latency before publication: {:.2}; after (queues, fan-out, delivery): {:.2}",
        median(to_published) / whole,
        median(to_received) / whole
    );
    println!(
        "delivered {} of {} movements; missing {missing}, repeated {repeated}, other deliveries {unmatched} (opening stock); webhook-ids distinct: {}; out of order per sku: {out_of_order}; all delivered {:.1} s after the burst began",
        per_movement.len(),
        made.len(),
        webhook_ids.len() == stock_changed,
        drained_ms / 1000.0
    );
    let timeouts: Vec<String> = functions
        .iter()
        .map(|f| {
            let n = read_log_since(f, offsets[*f])
                .matches("Task timed out")
                .count();
            format!("{f} {n}")
        })
        .collect();
    println!(
        "invocations timed out (their messages wait out the 180 s visibility timeout): {}",
        timeouts.join(", ")
    );
    print_reports(&reports_since(&offsets)?, made.len() as u64, "adjustment");
    if missing > 0 || repeated > 0 || out_of_order > 0 {
        bail!(
            "stock.changed deliveries: {missing} missing, {repeated} repeated, {out_of_order} out of order"
        );
    }
    Ok(())
}
