//! `stockroom-bench pipeline [records]` (issue 8, targets 3 and 4): a nightly
//! count of `records` (100,000) upserts through the whole local pipeline —
//! `POST /v1/batches` (upload) -> presigned PUT -> S3 notification -> splitter
//! -> SQS -> workers -> DynamoDB — timed from the POST to the terminal
//! status. Reference in the same run (the pipeline's ceiling): the same file
//! split by the same splitter code and its chunks applied by the same store
//! code straight to the same emulator, in a tight loop with as many chunks
//! at once as the stack's workers apply — the identical DynamoDB writes without the API,
//! S3, SQS and Lambda in between.
//!
//! Calls per record come from the local stack's counts (`GET
//! /_local/aws-calls`): the functions' calls as the fault proxy forwards them
//! (`make bench` turns it on, with no faults) and the SQS calls of the event
//! source pollers, which the Lambda service makes (and bills) on AWS.
//! Function time per record is the sum of the `REPORT` durations the
//! functions logged during the run (docs/cost.md turns both into money).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use stockroom_app::ports::{
    BatchHeaders, BatchSubmissions, ChunkDisposition, ChunkEnvelope, ChunkQueue, StoreError,
};
use stockroom_aws::dynamodb::{DynamoBatchStore, WriteLayout};
use stockroom_domain::TenantId;
use stockroom_domain::batch::ChunkMessage;
use tokio::sync::Mutex;

use crate::{GeneratedUploads, line, upload_header};

/// Chunks applied at once by the direct loop: what the stack applies at once
/// in `make bench` (`BatchWorkerMaxConcurrency` 2 x the worker's 3 parallel
/// chunks per invocation).
const DIRECT_TASKS: usize = 6;

/// Collects the chunks the splitter sends, for the direct loop to apply.
#[derive(Default)]
struct CollectingQueue {
    chunks: Mutex<Vec<ChunkEnvelope>>,
}

#[async_trait::async_trait]
impl ChunkQueue for CollectingQueue {
    async fn send_chunks(&self, chunks: &[ChunkEnvelope]) -> Result<(), StoreError> {
        self.chunks.lock().await.extend_from_slice(chunks);
        Ok(())
    }
}

/// caller/service/operation -> calls, flattened.
pub(crate) type Calls = BTreeMap<String, u64>;

pub(crate) async fn aws_calls(http: &reqwest::Client, base: &str) -> Result<Calls> {
    let snapshot: Value = http
        .get(format!("{base}/_local/aws-calls"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut flat = Calls::new();
    for (caller, services) in snapshot.as_object().into_iter().flatten() {
        for (service, ops) in services.as_object().into_iter().flatten() {
            for (op, n) in ops.as_object().into_iter().flatten() {
                flat.insert(format!("{caller}/{service}/{op}"), n.as_u64().unwrap_or(0));
            }
        }
    }
    Ok(flat)
}

fn log_dir() -> std::path::PathBuf {
    std::env::var("STOCKROOM_LOG_DIR")
        .unwrap_or_else(|_| ".local/logs".into())
        .into()
}

/// Sizes of the functions' log files now, to read only what a run adds.
pub(crate) fn log_offsets(functions: &[&str]) -> BTreeMap<String, u64> {
    functions
        .iter()
        .map(|f| {
            let len = std::fs::metadata(log_dir().join(format!("{f}.log")))
                .map(|m| m.len())
                .unwrap_or(0);
            (f.to_string(), len)
        })
        .collect()
}

/// The bytes of `path` after `offset`, as text.
fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok(String::from_utf8_lossy(&tail).into_owned())
}

/// What `function`'s log gained since `offset` (empty if unreadable).
pub(crate) fn read_log_since(function: &str, offset: u64) -> String {
    read_from(&log_dir().join(format!("{function}.log")), offset).unwrap_or_default()
}

/// (invocations, billed ms, peak "Max Memory Used" MB) per function since
/// `offsets`, from the REPORT lines.
pub(crate) fn reports_since(
    offsets: &BTreeMap<String, u64>,
) -> Result<BTreeMap<String, (u64, f64, u64)>> {
    let mut out = BTreeMap::new();
    for (f, from) in offsets {
        // The logs grow by tens of MB per run: read only what was appended.
        let tail = read_from(&log_dir().join(format!("{f}.log")), *from).unwrap_or_default();
        let (mut n, mut ms, mut peak) = (0u64, 0.0f64, 0u64);
        for line in tail.lines().filter(|l| l.starts_with("REPORT RequestId:")) {
            n += 1;
            for field in line.split('\t') {
                if let Some(v) = field.strip_prefix("Billed Duration: ") {
                    ms += v.trim_end_matches(" ms").parse::<f64>().unwrap_or(0.0);
                }
                if let Some(v) = field.strip_prefix("Max Memory Used: ") {
                    peak = peak.max(v.trim_end_matches(" MB").parse().unwrap_or(0));
                }
            }
        }
        out.insert(f.clone(), (n, ms, peak));
    }
    Ok(out)
}

/// The pipeline end to end; returns seconds.
pub(crate) async fn through_the_pipeline(
    http: &reqwest::Client,
    base: &str,
    records: u64,
) -> Result<f64> {
    let (_, key) = crate::tenants::tenant().await?;
    let file: Vec<u8> = (1..=records).flat_map(|r| line(r).into_bytes()).collect();
    let started = Instant::now();
    let accepted: Value = http
        .post(format!("{base}/v1/batches"))
        .bearer_auth(&key)
        .json(&json!({"mode": "isolated", "format": "ndjson", "upload": true, "size_bytes": file.len()}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let batch_id = accepted["batch_id"]
        .as_str()
        .context("batch_id")?
        .to_owned();
    let target = &accepted["upload"];
    let mut put = http.put(target["url"].as_str().context("upload url")?);
    for (name, value) in target["headers"].as_object().into_iter().flatten() {
        if name != "content-length" {
            put = put.header(name, value.as_str().unwrap_or_default());
        }
    }
    put.body(file).send().await?.error_for_status()?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let resp = http
            .get(format!("{base}/v1/batches/{batch_id}"))
            .bearer_auth(&key)
            .send()
            .await?;
        if resp.status() != 200 {
            continue; // 429/5xx while the emulator is saturated: ask again
        }
        let batch: Value = resp.json().await?;
        match batch["status"].as_str().unwrap_or_default() {
            "completed" if batch["succeeded"] == records => break,
            "completed" | "completed_with_errors" | "failed" => bail!("pipeline batch: {batch}"),
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("pipeline batch not done in an hour: {batch}");
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The same split and chunk writes without API, S3, SQS or Lambda; returns seconds.
async fn straight_to_the_store(records: u64) -> Result<f64> {
    let table = std::env::var("STOCK_TABLE").context("STOCK_TABLE (source .local/env)")?;
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    // Written as the stack's functions write (its `StoreWriteLayout`).
    let layout = WriteLayout::sharded_if(stockroom_app::config::sharded_writes()?);
    let store =
        Arc::new(DynamoBatchStore::from_sdk_config(&sdk, table.clone()).with_write_layout(layout));
    let levels = stockroom_app::batch_levels::LevelRecords::on(Arc::new(
        stockroom_aws::dynamodb::DynamoItemStore::from_sdk_config(&sdk, table)
            .with_write_layout(layout),
    ));
    let tenant_id = format!(
        "bench-{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    let tenant = TenantId::parse(&tenant_id).map_err(anyhow::Error::msg)?;
    let uploads = GeneratedUploads { rows: records };
    let batch_id = format!("b_direct{records}x{}", std::process::id());
    let started = Instant::now();
    store
        .create_batch(&tenant, &upload_header(&batch_id, &uploads), None)
        .await?;
    let queue = Arc::new(CollectingQueue::default());
    let splitter = stockroom_app::uploads::UploadSplitter::new(
        store.clone(),
        Arc::new(uploads),
        queue.clone(),
    );
    splitter
        .split(&stockroom_app::uploads::upload_key(&tenant, &batch_id))
        .await?;
    let chunks = Arc::new(std::mem::take(&mut *queue.chunks.lock().await));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..DIRECT_TASKS {
        let (store, levels, chunks, next) =
            (store.clone(), levels.clone(), chunks.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(envelope) = chunks.get(i) else {
                    return anyhow::Ok(());
                };
                let chunk: ChunkMessage = serde_json::from_str(&envelope.body)?;
                stockroom_app::chunks::apply_chunk(
                    &*store,
                    &levels,
                    &chunk,
                    ChunkDisposition::Apply,
                )
                .await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let batch = store
        .finalize(&tenant, &batch_id)
        .await?
        .context("the direct batch did not reach a terminal status")?;
    anyhow::ensure!(
        batch.succeeded == records,
        "direct batch: {} of {records} succeeded",
        batch.succeeded
    );
    Ok(started.elapsed().as_secs_f64())
}

/// Prints invocations, billed time per `unit` and peak memory per function.
pub(crate) fn print_reports(reports: &BTreeMap<String, (u64, f64, u64)>, units: u64, unit: &str) {
    println!("function time and memory during the run (REPORT lines; Max Memory Used = peak RSS):");
    for (f, (n, ms, peak)) in reports {
        println!(
            "  {f:<18} {n:>7} invocations  {ms:>10.0} ms billed  {:.3} ms per {unit}  peak {peak} MB",
            ms / units.max(1) as f64
        );
    }
}

/// Prints the calls made between two snapshots, per `unit`; returns them.
pub(crate) fn print_calls(before: &Calls, after: &Calls, units: u64, unit: &str) -> Calls {
    let calls: Calls = after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    if !calls.keys().any(|k| k.starts_with("functions/")) {
        println!(
            "note: the functions' calls are not counted: start the stack with STOCKROOM_FAULT_PROXY_PORT set (make bench does)"
        );
    }
    println!("AWS calls (caller/service/operation: calls, per {unit}):");
    for (k, n) in &calls {
        println!("  {k:<58} {n:>8}  {:.5}", *n as f64 / units.max(1) as f64);
    }
    calls
}

pub async fn run(records: u64) -> Result<()> {
    let base =
        std::env::var("STOCKROOM_API_URL").context("STOCKROOM_API_URL (source .local/env)")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let functions = ["batches-api", "batch-splitter", "batch-worker"];
    println!("pipeline: {records} upserts (one nightly count), isolated mode");

    let before = aws_calls(&http, &base).await?;
    let offsets = log_offsets(&functions);
    let pipeline = through_the_pipeline(&http, &base, records).await?;
    let after = aws_calls(&http, &base).await?;
    let reports = reports_since(&offsets)?;
    let direct = straight_to_the_store(records).await?;

    let per_s = |secs: f64| records as f64 / secs;
    println!(
        "{:<44} {:>8.1} s  {:>8.0} records/s",
        "API -> S3 -> splitter -> SQS -> workers",
        pipeline,
        per_s(pipeline)
    );
    println!(
        "{:<44} {:>8.1} s  {:>8.0} records/s",
        "same split + chunk writes, straight (reference)",
        direct,
        per_s(direct)
    );
    println!(
        "throughput ratio pipeline / straight: {:.2}",
        direct / pipeline
    );

    let calls = print_calls(&before, &after, records, "record");
    let sum = |pred: &dyn Fn(&str) -> bool| -> f64 {
        calls
            .iter()
            .filter(|(k, _)| pred(k))
            .map(|(_, n)| *n as f64)
            .sum::<f64>()
            / records as f64
    };
    const WRITES: &[&str] = &[
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "TransactWriteItems",
        "BatchWriteItem",
    ];
    // The pipeline's queue; the local pollers also long-poll every other
    // queue every 2 s while idle (AWS: 20 s), a cost per queue, not per record.
    println!(
        "SQS requests per record, chunk queue: {:.5} (target <= 0.011); all queues incl. idle polling: {:.5}",
        sum(&|k| k.contains("/sqs/") && k.contains("BatchChunksQueue/")),
        sum(&|k| k.contains("/sqs/"))
    );
    println!(
        "DynamoDB write calls per record: {:.5} (target <= 0.05)",
        sum(&|k| k.contains("/dynamodb/") && WRITES.iter().any(|w| k.ends_with(&format!("/{w}"))))
    );
    println!(
        "DynamoDB read calls per record: {:.5}",
        sum(&|k| {
            k.contains("/dynamodb/")
                && !k.ends_with(".items")
                && !WRITES.iter().any(|w| k.ends_with(&format!("/{w}")))
        })
    );
    // Items of at most 1 KB: 1 write unit each, 2 inside a transaction.
    let transactional = sum(&|k| k.ends_with("/dynamodb/TransactWriteItems.items"));
    let plain = sum(&|k| k.contains("/dynamodb/") && k.ends_with(".items")) - transactional;
    println!(
        "DynamoDB items written per record: {:.3} in transactions + {:.3} plain = ~{:.2} write units (items <= 1 KB)",
        transactional,
        plain,
        2.0 * transactional + plain
    );
    print_reports(&reports, records, "record");
    Ok(())
}
