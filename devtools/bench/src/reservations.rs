//! `stockroom-bench reservations [units]`: reservation throughput and
//! latency on ONE sku under contention ("`make bench` reports reservation
//! throughput and p99 on one sku under contention").
//!
//! A tenant of its own creates one item with `units` (2,000) on hand. First
//! a reference: one client makes [`BASELINE`] holds on it, one after the
//! other. Then [`CLIENTS`] clients make `units` holds between them, each in a
//! loop: hold 1 unit (`expires_in` 300 s), then commit it or release it, in
//! turn. Every hold and every ending writes the sku's one level row, so the
//! clients race for it: the service retries its conditional write (up to 24
//! attempts) before answering 409 `concurrent_update`. An ending that fails
//! (`concurrent_update`, 5xx, transport) is retried by the client, up to
//! [`END_ATTEMPTS`] calls, as a shop would (ending again answers the same).
//! Per call kind: calls, calls/s over the phase's wall time, p50, p99 (every
//! answered call, errors included: a client waits for them too), 409
//! `insufficient_available`, other errors by status and code. Conflicts:
//! the DynamoDB `TransactWriteItems` the functions sent per successful
//! write (1.00 = no write lost a race), from the local stack's counts.
//!
//! Checked (exit non-zero if not): the sku's level afterwards matches the
//! answers (on hand = units - committed, nothing reserved, no active hold
//! listed); and the oversell check: a second sku with [`OVERSELL_UNITS`]
//! (50) on hand gets 4 x as many 1-unit holds at once: exactly that many are
//! held, the rest answered `insufficient_available`, and its level says so.
//! No timed assertion.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::pipeline::{aws_calls, log_offsets, print_calls, print_reports, reports_since};

/// Clients racing for the one sku.
const CLIENTS: usize = 32;
/// Holds of the one-client reference, made before the contended phase.
const BASELINE: usize = 20;
/// How long each hold lasts if nothing ends it (seconds).
const EXPIRES_IN: i64 = 300;
/// Calls a client makes to end one hold before giving up on it.
const END_ATTEMPTS: u32 = 4;
/// Units of the oversell check's sku; it gets 4 x as many holds at once.
const OVERSELL_UNITS: usize = 50;
/// Calls per hold of the oversell check while the answer is
/// `concurrent_update` (nothing was held: a client tries again).
const OVERSELL_ATTEMPTS: u32 = 5;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Hold,
    Commit,
    Release,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Hold => "hold",
            Kind::Commit => "commit",
            Kind::Release => "release",
        }
    }
}

/// What one call answered.
enum Answer {
    /// 2xx, with the body's `id` (a hold's reservation id).
    Ok(Option<String>),
    /// 409 `insufficient_available`: nothing held.
    Insufficient,
    /// Anything else: "409 concurrent_update", "503 ...", "transport".
    Error(String),
}

impl Answer {
    /// Whether a call with this answer may have changed something: the
    /// client cannot tell (5xx, no answer).
    fn ambiguous(&self) -> bool {
        matches!(self, Answer::Error(e) if e.starts_with('5') || e == "transport")
    }
    /// Whether the same call may be sent again: nothing was done, or the
    /// call is one that answers the same when repeated.
    fn retryable(&self) -> bool {
        matches!(self, Answer::Error(e) if e == "409 concurrent_update") || self.ambiguous()
    }
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    insufficient: u64,
    errors: BTreeMap<String, u64>,
}

/// Every call of a phase, and what the holds became.
#[derive(Default)]
struct Tally {
    calls: BTreeMap<Kind, Stats>,
    held: u64,
    committed: u64,
    released: u64,
    /// Holds whose ending never succeeded (their level effect is unknown).
    unresolved: u64,
    /// Holds answered 5xx or not at all: held or not, unknown.
    ambiguous_holds: u64,
    /// Ending calls sent again after a failed one.
    end_retries: u64,
}

impl Tally {
    fn record(&mut self, kind: Kind, us: u64, answer: &Answer) {
        let stats = self.calls.entry(kind).or_default();
        match answer {
            Answer::Error(e) if e == "transport" => {}
            _ => stats.latencies_us.push(us),
        }
        match answer {
            Answer::Ok(_) => {}
            Answer::Insufficient => stats.insufficient += 1,
            Answer::Error(e) => *stats.errors.entry(e.clone()).or_default() += 1,
        }
    }

    fn errors(&self) -> u64 {
        self.calls
            .values()
            .flat_map(|s| s.errors.values())
            .sum::<u64>()
    }

    fn count(&self, what: &str) -> u64 {
        self.calls
            .values()
            .filter_map(|s| s.errors.get(what))
            .sum::<u64>()
    }

    fn calls(&self) -> u64 {
        self.calls
            .values()
            .map(|s| s.latencies_us.len() as u64 + s.errors.get("transport").unwrap_or(&0))
            .sum()
    }
}

/// One phase's figures, per call kind and in all.
struct Phase {
    name: String,
    seconds: f64,
    tally: Tally,
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// (calls, calls/s, p50 ms, p99 ms) of `stats`.
fn figures(stats: &Stats, seconds: f64) -> (u64, f64, f64, f64) {
    let mut us = stats.latencies_us.clone();
    us.sort_unstable();
    let calls = us.len() as u64 + stats.errors.get("transport").unwrap_or(&0);
    (
        calls,
        calls as f64 / seconds.max(1e-9),
        pct(&us, 50.0),
        pct(&us, 99.0),
    )
}

fn errors_text(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "0".to_owned();
    }
    errors
        .iter()
        .map(|(e, n)| format!("{n} {e}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn header() {
    println!(
        "{:<28} {:>6} {:>8} {:>9} {:>9} {:>7} {:>12}  errors",
        "call", "calls", "calls/s", "p50 ms", "p99 ms", "p99/p50", "insufficient"
    );
}

fn print_phase(phase: &Phase) {
    let mut all = Stats::default();
    for (kind, stats) in &phase.tally.calls {
        let (calls, per_s, p50, p99) = figures(stats, phase.seconds);
        println!(
            "{:<28} {calls:>6} {per_s:>8.1} {p50:>9.1} {p99:>9.1} {:>7.2} {:>12}  {}",
            format!("{} ({})", kind.name(), phase.name),
            p99 / p50,
            stats.insufficient,
            errors_text(&stats.errors)
        );
        all.latencies_us.extend(&stats.latencies_us);
        all.insufficient += stats.insufficient;
        for (e, n) in &stats.errors {
            *all.errors.entry(e.clone()).or_default() += n;
        }
    }
    let (calls, per_s, p50, p99) = figures(&all, phase.seconds);
    println!(
        "{:<28} {calls:>6} {per_s:>8.1} {p50:>9.1} {p99:>9.1} {:>7.2} {:>12}  {}",
        format!("all ({})", phase.name),
        p99 / p50,
        all.insufficient,
        errors_text(&all.errors)
    );
}

/// Sends `req` and reads its answer; the time includes the body.
async fn call(req: reqwest::RequestBuilder) -> (u64, Answer) {
    let t = Instant::now();
    let answer = match req.send().await {
        Err(_) => Answer::Error("transport".into()),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let code = body["code"].as_str().unwrap_or("-");
            match status {
                200..=299 => Answer::Ok(body["id"].as_str().map(str::to_owned)),
                409 if code == "insufficient_available" => Answer::Insufficient,
                _ => Answer::Error(format!("{status} {code}")),
            }
        }
    };
    (t.elapsed().as_micros() as u64, answer)
}

fn hold(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    sku: &str,
    n: usize,
) -> reqwest::RequestBuilder {
    http.post(format!("{base}/v1/reservations"))
        .bearer_auth(key)
        .json(&json!({
            "sku": sku,
            "quantity": 1,
            "expires_in": EXPIRES_IN,
            "reference": format!("bench-cart-{n}"),
        }))
}

/// `clients` clients make `holds` holds of 1 unit of `sku` between them,
/// each ending every hold it got, commit and release in turn.
async fn contend(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    sku: &str,
    clients: usize,
    holds: usize,
    name: &str,
) -> Phase {
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (http, base, key, sku) = (
            http.clone(),
            base.to_owned(),
            key.to_owned(),
            sku.to_owned(),
        );
        let (next, tally) = (next.clone(), tally.clone());
        tasks.spawn(async move {
            let lock = || tally.lock().unwrap_or_else(|e| e.into_inner());
            for turn in 0.. {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= holds {
                    return;
                }
                let (us, answer) = call(hold(&http, &base, &key, &sku, n)).await;
                lock().record(Kind::Hold, us, &answer);
                let id = match answer {
                    Answer::Ok(Some(id)) => id,
                    Answer::Ok(None) => {
                        *lock()
                            .calls
                            .entry(Kind::Hold)
                            .or_default()
                            .errors
                            .entry("201 without an id".into())
                            .or_default() += 1;
                        continue;
                    }
                    ref a if a.ambiguous() => {
                        lock().ambiguous_holds += 1;
                        continue;
                    }
                    _ => continue,
                };
                lock().held += 1;
                let kind = if (turn + c) % 2 == 0 {
                    Kind::Commit
                } else {
                    Kind::Release
                };
                let url = format!("{base}/v1/reservations/{id}/{}", kind.name());
                let mut ended = false;
                for attempt in 0..END_ATTEMPTS {
                    let (us, answer) = call(http.post(&url).bearer_auth(&key)).await;
                    let mut t = lock();
                    t.record(kind, us, &answer);
                    if attempt > 0 {
                        t.end_retries += 1;
                    }
                    if matches!(answer, Answer::Ok(_)) {
                        match kind {
                            Kind::Commit => t.committed += 1,
                            _ => t.released += 1,
                        }
                        ended = true;
                        break;
                    }
                    if !answer.retryable() {
                        break;
                    }
                }
                if !ended {
                    lock().unresolved += 1;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let seconds = started.elapsed().as_secs_f64();
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    Phase {
        name: name.to_owned(),
        seconds,
        tally,
    }
}

/// The sku's default-location level: (on hand, reserved, available).
async fn level(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    sku: &str,
) -> Result<(i64, i64, i64)> {
    let body: Value = http
        .get(format!("{base}/v1/items/{sku}/levels"))
        .bearer_auth(key)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let level = body["levels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["location"] == "default")
        .with_context(|| format!("no default level in {body}"))?;
    let field = |f: &str| {
        level[f]
            .as_i64()
            .with_context(|| format!("no {f} in {level}"))
    };
    Ok((field("on_hand")?, field("reserved")?, field("available")?))
}

/// Units held by the sku's active reservations, as listed.
async fn active_units(http: &reqwest::Client, base: &str, key: &str, sku: &str) -> Result<i64> {
    let mut units = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![("sku", sku), ("status", "active"), ("limit", "100")];
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let url = reqwest::Url::parse_with_params(&format!("{base}/v1/reservations"), &params)?;
        let page: Value = http
            .get(url)
            .bearer_auth(key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        units += page["reservations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["quantity"].as_i64())
            .sum::<i64>();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(units),
        }
    }
}

pub(crate) async fn create_item(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    sku: &str,
    units: usize,
) -> Result<()> {
    let resp = http
        .post(format!("{base}/v1/items"))
        .bearer_auth(key)
        .json(&json!({"sku": sku, "name": "Contended mug", "quantity": units}))
        .send()
        .await?;
    if resp.status() != 201 {
        bail!(
            "creating {sku}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// 4 x `OVERSELL_UNITS` holds of 1 unit at once on a sku with
/// `OVERSELL_UNITS` on hand; whether exactly that many were held.
async fn oversell_check(http: &reqwest::Client, base: &str, key: &str, sku: &str) -> Result<bool> {
    create_item(http, base, key, sku, OVERSELL_UNITS).await?;
    let holds = 4 * OVERSELL_UNITS;
    let barrier = Arc::new(tokio::sync::Barrier::new(holds));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for n in 0..holds {
        let (http, base, key, sku) = (
            http.clone(),
            base.to_owned(),
            key.to_owned(),
            sku.to_owned(),
        );
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let mut calls = Vec::new();
            for _ in 0..OVERSELL_ATTEMPTS {
                let (us, answer) = call(hold(&http, &base, &key, &sku, n)).await;
                let again = matches!(&answer, Answer::Error(e) if e == "409 concurrent_update");
                calls.push((us, answer));
                if !again {
                    break;
                }
            }
            calls
        });
    }
    let mut tally = Tally::default();
    let (mut retried, mut last_insufficient) = (0u64, 0u64);
    while let Some(calls) = tasks.join_next().await {
        let calls = calls?;
        retried += (calls.len() - 1) as u64;
        for (us, answer) in &calls {
            tally.record(Kind::Hold, *us, answer);
        }
        match calls.last().map(|(_, a)| a) {
            Some(Answer::Ok(_)) => tally.held += 1,
            Some(Answer::Insufficient) => last_insufficient += 1,
            Some(a) if a.ambiguous() => tally.ambiguous_holds += 1,
            _ => {}
        }
    }
    let phase = Phase {
        name: format!("{holds} at once"),
        seconds: started.elapsed().as_secs_f64(),
        tally,
    };
    print_phase(&phase);
    let (on_hand, reserved, available) = level(http, base, key, sku).await?;
    let listed = active_units(http, base, key, sku).await?;
    let held = phase.tally.held;
    let ok = held == OVERSELL_UNITS as u64
        && phase.tally.ambiguous_holds == 0
        && on_hand == OVERSELL_UNITS as i64
        && reserved == held as i64
        && available == on_hand - reserved
        && listed == reserved;
    println!(
        "oversell check: {OVERSELL_UNITS} on hand, {holds} holds of 1 at once: {held} held (expected {OVERSELL_UNITS}), {last_insufficient} insufficient_available, {} unknown (5xx/transport), {retried} calls again after concurrent_update; level on_hand {on_hand}, reserved {reserved}, available {available}; active holds listed {listed}: {}",
        phase.tally.ambiguous_holds,
        if ok { "OK" } else { "FAILED" }
    );
    Ok(ok)
}

/// The functions' `TransactWriteItems` between two snapshots.
fn transact_writes(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> u64 {
    let key = "functions/dynamodb/TransactWriteItems";
    after.get(key).copied().unwrap_or(0) - before.get(key).copied().unwrap_or(0)
}

pub async fn run(units: usize) -> Result<()> {
    let base =
        std::env::var("STOCKROOM_API_URL").context("STOCKROOM_API_URL (source .local/env)")?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4 * OVERSELL_UNITS)
        .timeout(Duration::from_secs(60))
        .build()?;
    let (_, key) = crate::tenants::tenant().await?;
    let run = ulid::Ulid::new();
    let sku = format!("RSV-{run}");
    create_item(&http, &base, &key, &sku, units).await?;
    println!(
        "reservations on one sku: {units} on hand; {CLIENTS} clients make {units} holds of 1 unit (expires_in {EXPIRES_IN} s), each client committing and releasing its holds in turn; reference: 1 client, {BASELINE} holds first"
    );

    let start = aws_calls(&http, &base).await?;
    let baseline = contend(&http, &base, &key, &sku, 1, BASELINE, "1 client").await;
    let offsets = log_offsets(&["authorizer", "items-api"]);
    let before = aws_calls(&http, &base).await?;
    let contended = contend(
        &http,
        &base,
        &key,
        &sku,
        CLIENTS,
        units,
        &format!("{CLIENTS} clients"),
    )
    .await;
    let after = aws_calls(&http, &base).await?;

    header();
    print_phase(&baseline);
    print_phase(&contended);
    let t = &contended.tally;
    let answered_ok = t.held + t.committed + t.released;
    let cycles_per_s =
        |p: &Phase| (p.tally.committed + p.tally.released) as f64 / p.seconds.max(1e-9);
    let hold_figures = |p: &Phase| {
        p.tally
            .calls
            .get(&Kind::Hold)
            .map(|s| figures(s, p.seconds))
            .unwrap_or((0, f64::NAN, f64::NAN, f64::NAN))
    };
    let (_, _, b50, b99) = hold_figures(&baseline);
    let (_, _, c50, c99) = hold_figures(&contended);
    println!(
        "holds ended per second: {:.1} with {CLIENTS} clients, {:.1} with 1 ({:.2}x); hold p50 {:.2}x, p99 {:.2}x the 1-client figures ({:.1} s for {} calls)",
        cycles_per_s(&contended),
        cycles_per_s(&baseline),
        cycles_per_s(&contended) / cycles_per_s(&baseline),
        c50 / b50,
        c99 / b99,
        contended.seconds,
        t.calls()
    );
    let writes = transact_writes(&before, &after);
    let b = &baseline.tally;
    let baseline_writes =
        transact_writes(&start, &before) as f64 / (b.held + b.committed + b.released).max(1) as f64;
    let concurrent = t.count("409 concurrent_update");
    println!(
        "contention: {concurrent} answers 409 concurrent_update ({:.1} per 1,000 calls), {} ending calls sent again; TransactWriteItems {writes} for {answered_ok} successful writes: {:.2} per write (1 client: {baseline_writes:.2}; 1.00 = no write lost a race)",
        concurrent as f64 * 1000.0 / t.calls().max(1) as f64,
        t.end_retries,
        writes as f64 / answered_ok.max(1) as f64
    );
    print_calls(&before, &after, answered_ok, "successful call");
    print_reports(&reports_since(&offsets)?, t.calls(), "call");

    // The level against what the answers said, both phases together.
    let committed = baseline.tally.committed + t.committed;
    let unknown = baseline.tally.unresolved
        + t.unresolved
        + baseline.tally.ambiguous_holds
        + t.ambiguous_holds;
    let (on_hand, reserved, available) = level(&http, &base, &key, &sku).await?;
    let listed = active_units(&http, &base, &key, &sku).await?;
    let expected_on_hand = units as i64 - committed as i64;
    let consistent = available == on_hand - reserved
        && listed == reserved
        && if unknown == 0 {
            on_hand == expected_on_hand && reserved == 0
        } else {
            // Each unknown outcome may have held or taken one unit.
            (expected_on_hand - unknown as i64..=expected_on_hand).contains(&on_hand)
                && (0..=unknown as i64).contains(&reserved)
        };
    println!(
        "levels after: on_hand {on_hand} (expected {expected_on_hand}: {units} - {committed} committed), reserved {reserved} (expected 0), available {available}; active holds listed {listed}; holds {} ({} committed, {} released), outcome unknown {unknown}: {}",
        baseline.tally.held + t.held,
        committed,
        baseline.tally.released + t.released,
        if consistent {
            "consistent"
        } else {
            "INCONSISTENT"
        }
    );
    if baseline.tally.errors() + t.errors() > 0 {
        println!(
            "  errors above are reported, not failed on: only the level checks decide the exit status"
        );
    }

    header();
    let oversell_ok = oversell_check(&http, &base, &key, &format!("RSV-{run}-K")).await?;
    if !consistent || !oversell_ok {
        bail!(
            "reservations: level consistent {consistent}, oversell check {}",
            if oversell_ok { "passed" } else { "failed" }
        );
    }
    Ok(())
}
