//! `make bench` entry point, one subcommand per figure of
//! docs/performance.md: `cold-start` (cold.rs), `sizes` (artifact.rs),
//! `pipeline` (pipeline.rs), `load` (load.rs), `events-latency`
//! (events_latency.rs), `lean-reads` (lean_reads.rs), `reservations`
//! (reservations.rs), `heat` (heat.rs, partition heat for docs/scaling.md),
//! `handler-summary` (criterion's medians of benches/handler.rs) and
//! `split-memory`, here:
//!
//! `stockroom-bench split-memory` runs one child process per file size; each
//! child splits a generated NDJSON file (produced row by row as it is read,
//! never held in memory) with the real splitter code and the real DynamoDB
//! store (the local stack's emulator), and a queue that only counts what it
//! is sent, then reports its own peak resident size (`VmHWM`).

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use stockroom_app::ports::{
    BatchSubmissions, ChunkEnvelope, ChunkQueue, PresignedUpload, StoreError, UploadBody,
    UploadStore,
};
use stockroom_app::uploads::{SplitOutcome, UploadSplitter, upload_key};
use stockroom_aws::dynamodb::{DynamoBatchStore, WriteLayout};
use stockroom_domain::TenantId;
use stockroom_domain::batch::{Batch, BatchMode, BatchStatus, UploadFormat, UploadInfo};
use tokio::io::{AsyncRead, ReadBuf};

mod artifact;
mod cold;
mod events_latency;
mod heat;
mod lean_reads;
mod load;
mod pipeline;
mod reservations;
mod tenants;
mod tls_front;

const SIZES: &[u64] = &[10_000, 100_000, 1_000_000];

fn line(row: u64) -> String {
    format!("{{\"op\":\"upsert\",\"sku\":\"m-{row:08}\",\"name\":\"Bench\",\"quantity\":42}}\n")
}

/// An NDJSON file of `rows` fixed-width rows, generated as it is read.
struct GeneratedFile {
    rows: u64,
    next: u64,
    pending: Vec<u8>,
    at: usize,
}

impl AsyncRead for GeneratedFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while buf.remaining() > 0 {
            if self.at == self.pending.len() {
                if self.next == self.rows {
                    break;
                }
                self.next += 1;
                let row = self.next;
                self.pending = line(row).into_bytes();
                self.at = 0;
            }
            let n = buf.remaining().min(self.pending.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.pending[at..at + n]);
            self.at += n;
        }
        Poll::Ready(Ok(()))
    }
}

struct GeneratedUploads {
    rows: u64,
}

impl GeneratedUploads {
    /// Every row has the same length (`m-{row:08}`, up to 99,999,999
    /// rows), so the size is one row's length times the rows: asked three
    /// times per split, it must not format the whole file each time.
    fn file_size(&self) -> u64 {
        debug_assert!(self.rows < 100_000_000);
        self.rows * line(1).len() as u64
    }
}

/// The header of an upload batch whose file (`uploads`) has arrived.
fn upload_header(batch_id: &str, uploads: &GeneratedUploads) -> Batch {
    let now = stockroom_app::clock::now_rfc3339();
    Batch {
        batch_id: batch_id.to_owned(),
        mode: BatchMode::Isolated,
        status: BatchStatus::AwaitingUpload,
        total: 0,
        succeeded: 0,
        failed: 0,
        created_at: now.clone(),
        updated_at: now.clone(),
        completed_at: None,
        request_id: "bench".into(),
        chunks_total: 0,
        chunks_done: 0,
        records_read: 0,
        records_enqueued: 0,
        upload: Some(UploadInfo {
            format: UploadFormat::Ndjson,
            size_bytes: uploads.file_size(),
            url_expires_at: now.clone(),
            expires_at: now,
        }),
        error: None,
    }
}

#[async_trait]
impl UploadStore for GeneratedUploads {
    async fn presign_put(
        &self,
        _: &str,
        _: u64,
        _: Duration,
    ) -> Result<PresignedUpload, StoreError> {
        Err(StoreError::Backend("not used by the benchmark".into()))
    }
    async fn size(&self, _: &str) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.file_size()))
    }
    async fn open(&self, _: &str) -> Result<UploadBody, StoreError> {
        Ok(Box::new(GeneratedFile {
            rows: self.rows,
            next: 0,
            pending: Vec::new(),
            at: 0,
        }))
    }
}

/// Counts chunks instead of sending them: no worker runs.
#[derive(Default)]
struct CountingQueue {
    chunks: AtomicU64,
    records: AtomicU64,
}

#[async_trait]
impl ChunkQueue for CountingQueue {
    async fn send_chunks(&self, chunks: &[ChunkEnvelope]) -> Result<(), StoreError> {
        self.chunks
            .fetch_add(chunks.len() as u64, Ordering::Relaxed);
        let records: usize = chunks.iter().map(|c| c.record_count).sum();
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn peak_rss_kb() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

/// One split of a generated file of `rows` rows; prints a JSON line.
async fn split_once(rows: u64) -> Result<()> {
    let table = std::env::var("STOCK_TABLE").context("STOCK_TABLE (source .local/env)")?;
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let layout = WriteLayout::sharded_if(stockroom_app::config::sharded_writes()?);
    let store = Arc::new(DynamoBatchStore::from_sdk_config(&sdk, table).with_write_layout(layout));
    let tenant = TenantId::parse("bench").map_err(anyhow::Error::msg)?;
    let batch_id = format!("b_bench{rows}x{}", std::process::id());
    let uploads = GeneratedUploads { rows };
    let size = uploads.file_size();
    store
        .create_batch(&tenant, &upload_header(&batch_id, &uploads), None)
        .await?;
    let queue = Arc::new(CountingQueue::default());
    let splitter = UploadSplitter::new(store, Arc::new(uploads), queue.clone());
    let started = Instant::now();
    let outcome = splitter.split(&upload_key(&tenant, &batch_id)).await?;
    let secs = started.elapsed().as_secs_f64();
    let SplitOutcome::Enqueued { total, .. } = outcome else {
        bail!("unexpected outcome {outcome:?}");
    };
    anyhow::ensure!(total == rows && queue.records.load(Ordering::Relaxed) == rows);
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "file_bytes": size,
            "chunks": queue.chunks.load(Ordering::Relaxed),
            "seconds": secs,
            "peak_rss_kb": peak_rss_kb()?,
        })
    );
    Ok(())
}

fn split_memory() -> Result<()> {
    println!(
        "batch-splitter memory as the upload grows (two streaming passes, real store, counted queue)"
    );
    println!(
        "{:>10} {:>10} {:>8} {:>9} {:>12}",
        "rows", "file MB", "chunks", "seconds", "peak RSS MB"
    );
    let mut peaks = Vec::new();
    for rows in SIZES {
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["split-once", &rows.to_string()])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "split of {rows} rows failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let peak = r["peak_rss_kb"].as_u64().unwrap_or(0) as f64 / 1024.0;
        println!(
            "{:>10} {:>10.1} {:>8} {:>9.1} {:>12.1}",
            rows,
            r["file_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            r["chunks"],
            r["seconds"].as_f64().unwrap_or(0.0),
            peak
        );
        peaks.push(peak);
    }
    if let (Some(first), Some(last)) = (peaks.first(), peaks.last()) {
        println!(
            "peak RSS ratio, {} rows / {} rows: {:.2} (flat = 1.0; file grew {}x)",
            SIZES[SIZES.len() - 1],
            SIZES[0],
            last / first,
            SIZES[SIZES.len() - 1] / SIZES[0]
        );
    }
    Ok(())
}

/// Reads the medians criterion stored for the handler benchmark
/// (`<target>/criterion/<group>/<case>/new/estimates.json`) and prints them
/// against the 50 µs target.
fn handler_summary() -> Result<()> {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let group = std::path::Path::new(&target)
        .join("criterion")
        .join("items-api warm invocation, store in-process");
    let mut cases: Vec<_> = std::fs::read_dir(&group)
        .with_context(|| format!("{}: run the handler benchmark first", group.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("new/estimates.json").is_file())
        .collect();
    cases.sort_by_key(|e| e.file_name());
    println!(
        "warm items-api invocation, store in-process (criterion median = p50; target <= 50 µs)"
    );
    for case in cases {
        let estimates: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.path().join("new/estimates.json"))?)?;
        let benchmark: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.path().join("new/benchmark.json"))?)?;
        let median_us = estimates["median"]["point_estimate"]
            .as_f64()
            .unwrap_or(0.0)
            / 1000.0;
        println!(
            "  {:<40} p50 {median_us:>7.1} µs  {:>5.2} of the target",
            benchmark["function_id"].as_str().unwrap_or_default(),
            median_us / 50.0
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["split-memory"] | [] => split_memory(),
        ["split-once", rows] => split_once(rows.parse()?).await,
        ["load"] => load::run().await,
        ["events-latency"] => events_latency::run(500).await,
        ["events-latency", adjustments] => events_latency::run(adjustments.parse()?).await,
        ["lean-reads"] => lean_reads::run().await,
        ["reservations"] => reservations::run(2000).await,
        ["reservations", units] => reservations::run(units.parse()?).await,
        ["handler-summary"] => handler_summary(),
        ["sizes", bin_dir] => artifact::run(std::path::Path::new(bin_dir)),
        ["cold-start", bin_dir] => cold::run(bin_dir.into(), 9, cold::Modes::default()).await,
        ["cold-start", bin_dir, rounds, modes @ ..] => {
            cold::run(bin_dir.into(), rounds.parse()?, cold::Modes::parse(modes)?).await
        }
        ["heat"] => heat::run(100_000).await,
        ["heat", records] => heat::run(records.parse()?).await,
        ["pipeline"] => pipeline::run(100_000).await,
        ["pipeline", records] => pipeline::run(records.parse()?).await,
        _ => bail!(
            "usage: stockroom-bench [split-memory | load | events-latency [adjustments] | lean-reads | reservations [units] | pipeline [records] | heat [records] | cold-start <bin-dir> [rounds [tls] [warm] [ahead]] | sizes <bin-dir> | handler-summary]"
        ),
    }
}
