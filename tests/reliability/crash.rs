//! Crash safety: the batch worker is killed with SIGKILL at random moments of
//! a large import of adjustments over 2,000 items (30,000 records in `make
//! test`, 100,000 in `make soak`). SQS hands the killed invocations' chunks
//! out again after the queue's visibility timeout, and every record ends
//! applied exactly once or reported failed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use stockroom_tests::{
    Tenant, all_failures, all_pages, get_retrying, import_rows, seed, stack_pids, upload,
    wait_for_batch,
};

const ITEMS: u32 = 2_000;
const KILLS: usize = 4;

fn sku(item: u32) -> String {
    format!("crash-{item:04}")
}

/// Distinct deltas per row, so a lost record and a doubled one cannot cancel
/// out in the final quantity.
fn delta(row: u32) -> i64 {
    1 + i64::from(row % 7)
}

/// xorshift64: reproducible kill moments from a printed seed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test]
#[ignore = "large import: run last by make test (-- --ignored)"]
async fn the_worker_killed_at_random_moments_of_a_large_batch_loses_and_doubles_nothing()
-> Result<()> {
    let rows = import_rows(30_000, 100_000);
    let t = Tenant::new().await?;
    let skus: Vec<String> = (0..ITEMS).map(sku).collect();
    seed(&t, &skus, 0).await?;

    // Row r adjusts item r % ITEMS: a chunk's consecutive rows name distinct
    // items, and the chunks in flight at once (2 workers x 3) distinct items
    // too, as in a count sorted by location (chunks racing for the same items
    // are tested in tests/pipeline). Two kinds of bad rows.
    // Items 250, 750, 1250 and 1750 get only bad rows: they stay at 0.
    let mut expected: BTreeMap<String, i64> = skus.iter().map(|s| (s.clone(), 0)).collect();
    let mut applied_rows: BTreeMap<String, BTreeSet<String>> =
        skus.iter().map(|s| (s.clone(), BTreeSet::new())).collect();
    let mut bad = Vec::new();
    let mut file = Vec::with_capacity(rows as usize * 70);
    for row in 1..=rows {
        let item = sku(row % ITEMS);
        let line = match row % 1000 {
            250 => {
                bad.push((row.to_string(), "invalid_record".to_owned()));
                json!({"op": "adjust", "sku": item, "delta": 0, "reason": "count"}).to_string()
            }
            750 => {
                bad.push((row.to_string(), "invalid_record".to_owned()));
                format!("{{\"op\": \"adjust\", \"sku\": \"{item}\", \"delta\":")
            }
            _ => {
                *expected.entry(item.clone()).or_default() += delta(row);
                applied_rows
                    .entry(item.clone())
                    .or_default()
                    .insert(row.to_string());
                json!({"op": "adjust", "sku": item, "delta": delta(row), "reason": "count"})
                    .to_string()
            }
        };
        file.extend_from_slice(line.as_bytes());
        file.push(b'\n');
    }

    let seed_value = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
    eprintln!("kill schedule seed: {seed_value:#x}");
    let mut dice = Dice(seed_value);
    let started = Instant::now();
    let (batch_id, _) = upload(&t, "isolated", "ndjson", &file).await?;

    // Kill one running worker every few seconds while less than 60 % is
    // done, so the chunks it held come back (after the 180 s visibility
    // timeout) while the rest is still being applied. Every 10-40 s for the
    // soak size; every 4-12 s for CI's, which a quiet machine applies in
    // about a minute (10-40 s could leave room for one kill only).
    let (pause_min, pause_span) = if rows >= 100_000 { (10, 31) } else { (4, 9) };
    let mut kills = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1800);
    while kills.len() < KILLS {
        tokio::time::sleep(Duration::from_secs(pause_min + dice.below(pause_span))).await;
        let batch = get_retrying(&t, &format!("/v1/batches/{batch_id}"), deadline).await?;
        let done = batch["succeeded"].as_u64().unwrap_or(0) + batch["failed"].as_u64().unwrap_or(0);
        if done * 10 >= u64::from(rows) * 6 {
            break;
        }
        let pids = stack_pids("batch-worker")?;
        let Some(&pid) = pids.get(dice.below(pids.len().max(1) as u64) as usize) else {
            continue; // between invocations: no worker running right now
        };
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -KILL {pid}");
        eprintln!(
            "killed batch-worker {pid} at {:.0} s, {done} records done ({} workers running)",
            started.elapsed().as_secs_f64(),
            pids.len()
        );
        kills.push(pid);
    }
    anyhow::ensure!(
        kills.len() >= 2,
        "the batch went too fast to kill the worker more than {} time(s)",
        kills.len()
    );

    let batch = wait_for_batch(&t, &batch_id, Duration::from_secs(1800)).await?;
    eprintln!(
        "{rows} records with {} worker kills: {:.0} s end to end",
        kills.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(batch["status"], "completed_with_errors", "{batch}");
    assert_eq!(batch["total"], rows);
    assert_eq!(batch["failed"], bad.len());
    assert_eq!(batch["succeeded"], u64::from(rows) - bad.len() as u64);
    assert_eq!(
        all_failures(&t, &batch_id).await?,
        bad,
        "the failure report"
    );

    // Every item's quantity is the sum of its good rows: nothing lost, nothing
    // applied twice.
    let items = all_pages(&t, "/v1/items?limit=100", "items").await?;
    let actual: BTreeMap<String, i64> = items
        .iter()
        .map(|i| {
            (
                i["sku"].as_str().unwrap_or_default().to_owned(),
                i["quantity"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(actual, expected, "final quantities");

    // The ledger of a sample of items: exactly one movement per good row.
    for item in (0..ITEMS).step_by(97).map(sku) {
        let movements = all_pages(
            &t,
            &format!("/v1/items/{item}/movements?limit=100"),
            "movements",
        )
        .await?;
        let rows: Vec<String> = movements
            .iter()
            .map(|m| m["record_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        let distinct: BTreeSet<String> = rows.iter().cloned().collect();
        assert_eq!(
            rows.len(),
            distinct.len(),
            "{item}: a row moved stock twice"
        );
        assert_eq!(
            Some(&distinct),
            applied_rows.get(&item),
            "{item}: ledger rows"
        );
    }
    Ok(())
}
