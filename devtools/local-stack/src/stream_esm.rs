//! DynamoDB stream event source mappings (`AWS::Lambda::EventSourceMapping`
//! on a table's `StreamArn`, SAM `Type: DynamoDB` events), run the way the
//! Lambda service runs them:
//!
//! * DescribeStream, then one reader per shard: GetShardIterator at the
//!   mapping's `StartingPosition` (TRIM_HORIZON / LATEST), GetRecords four
//!   times a second until `BatchSize` records, the
//!   `MaximumBatchingWindowInSeconds` window or ~5 MB are gathered;
//! * one batch in flight per shard, records in stream order; the next batch
//!   is read only once this one is done (checkpointed or discarded);
//! * the `aws:dynamodb` event, records as Lambda writes them
//!   (`eventSourceARN`, `eventVersion` 1.1, creation time in whole seconds,
//!   `userIdentity` for TTL deletions);
//! * success -> checkpoint after the batch. With `ReportBatchItemFailures`,
//!   `batchItemFailures[].itemIdentifier` are sequence numbers: checkpoint
//!   before the lowest one and retry from it; an empty/absent list is
//!   success; a malformed response or an identifier that is not a sequence
//!   number of the batch fails the whole batch;
//! * function error / timeout / crash -> the whole batch failed: with
//!   `BisectBatchOnFunctionError` it is split in halves (splitting does not
//!   use the retry quota), otherwise retried; after `MaximumRetryAttempts`
//!   retries, or once a record is older than `MaximumRecordAgeInSeconds`
//!   (default: the 24 h retention), the (sub)batch is discarded: its
//!   metadata goes to the `OnFailure` queue (`DDBStreamBatchInfo`), and
//!   reading goes on after it.
//!
//! The stream is spoken over HTTP with the JSON protocol
//! (`DynamoDBStreams_20120810.*`), as the function's execution role.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::emulator::{self, AwsCalls, CallError, Caller};
use crate::esm::{Ordered, Sqs};
use crate::lambda::{InvokeError, InvokeRequest, Lambda, Outcome};
use crate::spec::{EventSourceSpec, Stack};

/// Lambda polls each shard about four times a second.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// GetRecords returns at most 1,000 records.
const MAX_GET_RECORDS: usize = 1000;
/// Stop gathering near the 6 MB invocation payload limit.
const GATHER_BYTES_LIMIT: usize = 5 * 1024 * 1024;
/// DynamoDB Streams keeps records 24 hours: the record age limit when the
/// mapping sets none (-1).
const RETENTION_SECONDS: i64 = 24 * 3600;
/// Pause between two tries of a failed batch.
const RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

// --------------------------------------------------------------------- client

/// The DynamoDB Streams calls a mapping makes, over the JSON protocol.
#[derive(Clone)]
pub struct Streams {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    calls: Arc<AwsCalls>,
    access_key: String,
}

impl Streams {
    pub fn new(endpoint: &str, region: &str, calls: Arc<AwsCalls>, access_key: &str) -> Self {
        Streams {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .build()
                .expect("reqwest client"),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            calls,
            access_key: access_key.to_string(),
        }
    }

    async fn call(&self, op: &str, body: Value) -> Result<Value, CallError> {
        self.calls
            .count(Caller::EventSourceMappings, "dynamodbstreams", op);
        emulator::JsonCall {
            http: &self.http,
            endpoint: &self.endpoint,
            region: &self.region,
            service: "dynamodb",
            target: "DynamoDBStreams_20120810",
            access_key: &self.access_key,
        }
        .send(op, &body, Duration::from_secs(15))
        .await
    }

    async fn shards(&self, stream_arn: &str) -> Result<Vec<String>, CallError> {
        let v = self
            .call("DescribeStream", json!({"StreamArn": stream_arn}))
            .await?;
        Ok(v["StreamDescription"]["Shards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["ShardId"].as_str().map(str::to_string))
            .collect())
    }

    async fn iterator(
        &self,
        stream_arn: &str,
        shard: &str,
        kind: &str,
        sequence_number: Option<&str>,
    ) -> Result<String, CallError> {
        let mut body =
            json!({"StreamArn": stream_arn, "ShardId": shard, "ShardIteratorType": kind});
        if let Some(s) = sequence_number {
            body["SequenceNumber"] = json!(s);
        }
        let v = self.call("GetShardIterator", body).await?;
        v["ShardIterator"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CallError("GetShardIterator: no ShardIterator".into()))
    }

    /// (records, next iterator; None once the shard is closed).
    async fn records(
        &self,
        iterator: &str,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>), CallError> {
        let v = self
            .call(
                "GetRecords",
                json!({"ShardIterator": iterator, "Limit": limit.clamp(1, MAX_GET_RECORDS)}),
            )
            .await?;
        let records = v["Records"].as_array().cloned().unwrap_or_default();
        Ok((records, v["NextShardIterator"].as_str().map(str::to_string)))
    }
}

// --------------------------------------------------------------------- event

fn seq(r: &Value) -> &str {
    r["dynamodb"]["SequenceNumber"].as_str().unwrap_or("")
}

/// Seconds since the epoch of a record's ApproximateCreationDateTime.
fn created(r: &Value) -> i64 {
    r["dynamodb"]["ApproximateCreationDateTime"]
        .as_f64()
        .map_or(0, |f| f.floor() as i64)
}

/// One GetRecords record as Lambda puts it in the event (AWS's field order).
pub fn lambda_record(r: &Value, stream_arn: &str, region: &str) -> Value {
    let d = &r["dynamodb"];
    let mut change = vec![("ApproximateCreationDateTime".to_string(), json!(created(r)))];
    for k in [
        "Keys",
        "NewImage",
        "OldImage",
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    ] {
        if let Some(v) = d.get(k).filter(|v| !v.is_null()) {
            change.push((k.to_string(), v.clone()));
        }
    }
    let mut out = vec![
        ("eventID".to_string(), r["eventID"].clone()),
        ("eventName".to_string(), r["eventName"].clone()),
        ("eventVersion".to_string(), json!("1.1")),
        ("eventSource".to_string(), json!("aws:dynamodb")),
        (
            "awsRegion".to_string(),
            r.get("awsRegion").cloned().unwrap_or_else(|| json!(region)),
        ),
        (
            "dynamodb".to_string(),
            serde_json::to_value(Ordered(change)).expect("serialisable"),
        ),
    ];
    if let Some(u) = r.get("userIdentity").filter(|u| u.is_object()) {
        // GetRecords says Type/PrincipalId, the Lambda event type/principalId.
        let pick = |a: &str, b: &str| u.get(a).or(u.get(b)).cloned().unwrap_or(Value::Null);
        out.push((
            "userIdentity".to_string(),
            serde_json::to_value(Ordered(vec![
                ("type".to_string(), pick("type", "Type")),
                (
                    "principalId".to_string(),
                    pick("principalId", "PrincipalId"),
                ),
            ]))
            .expect("serialisable"),
        ));
    }
    out.push(("eventSourceARN".to_string(), json!(stream_arn)));
    serde_json::to_value(Ordered(out)).expect("serialisable")
}

/// The `aws:dynamodb` event Lambda sends for a batch.
pub fn build_event(records: &[Value], stream_arn: &str, region: &str) -> Vec<u8> {
    let records: Vec<Value> = records
        .iter()
        .map(|r| lambda_record(r, stream_arn, region))
        .collect();
    serde_json::to_vec(&json!({"Records": records})).expect("serialisable")
}

// --------------------------------------------------------------------- outcome

/// What an invocation did to a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Records before this index succeeded; retry from it.
    FailedFrom(usize, String),
    /// The whole batch failed (reason for the log).
    Failed(String),
}

/// A `ReportBatchItemFailures` response, the way Lambda reads it for
/// streams: the lowest reported sequence number is the checkpoint.
pub fn batch_item_failures(payload: &[u8], sequence_numbers: &[&str]) -> Verdict {
    use crate::esm::Disposition;
    match crate::esm::batch_item_failures(payload, sequence_numbers) {
        Disposition::DeleteAll => Verdict::Success,
        Disposition::KeepAll(why) => Verdict::Failed(why.replace("message id", "sequence number")),
        Disposition::DeleteExcept(failed) => {
            let first = sequence_numbers
                .iter()
                .position(|s| failed.contains(*s))
                .expect("identifiers checked against the batch");
            Verdict::FailedFrom(
                first,
                format!("item failure at {}", sequence_numbers[first]),
            )
        }
    }
}

pub fn verdict(
    outcome: &Result<Outcome, InvokeError>,
    report_batch_item_failures: bool,
    sequence_numbers: &[&str],
) -> Verdict {
    match outcome {
        Ok(Outcome::Success(payload)) if report_batch_item_failures => {
            batch_item_failures(payload, sequence_numbers)
        }
        Ok(Outcome::Success(_)) => Verdict::Success,
        Ok(Outcome::FunctionError(body)) => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            Verdict::Failed(format!(
                "function error {}",
                v["errorType"].as_str().unwrap_or("Unhandled")
            ))
        }
        Err(e) => Verdict::Failed(format!("invocation failed: {e:?}")),
    }
}

/// The retry policy of a mapping.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub bisect: bool,
    /// None: retry until the records are too old.
    pub max_retries: Option<u64>,
    pub max_record_age_seconds: i64,
}

impl Policy {
    fn of(spec: &EventSourceSpec) -> Self {
        Policy {
            bisect: spec.bisect_batch_on_function_error,
            max_retries: spec
                .maximum_retry_attempts
                .filter(|n| *n >= 0)
                .map(|n| n as u64),
            max_record_age_seconds: spec
                .maximum_record_age_seconds
                .filter(|n| *n >= 0)
                .unwrap_or(RETENTION_SECONDS),
        }
    }
}

/// A (sub)batch given up on.
#[derive(Debug, Clone)]
pub struct Discarded {
    pub records: Vec<Value>,
    /// RetryAttemptsExhausted | RecordAgeExceeded
    pub condition: &'static str,
    pub invocations: u64,
    /// The last invocation's failure, for the destination record.
    pub function_error: Option<String>,
}

/// One attempt's result, as the caller saw it.
pub struct Attempt {
    pub verdict: Verdict,
    pub function_error: Option<String>,
}

/// Run a batch to completion under the policy: every record ends up
/// processed or discarded. `invoke` runs one (sub)batch, `now` is the clock
/// (epoch seconds), `pause` waits between tries.
pub async fn process<I, IF, P, PF>(
    batch: Vec<Value>,
    policy: Policy,
    now: impl Fn() -> i64,
    mut invoke: I,
    mut pause: P,
) -> Vec<Discarded>
where
    I: FnMut(Vec<Value>) -> IF,
    IF: Future<Output = Attempt>,
    P: FnMut() -> PF,
    PF: Future<Output = ()>,
{
    // (records, retries used, invocations so far)
    let mut queue: VecDeque<(Vec<Value>, u64, u64, Option<String>)> = VecDeque::new();
    queue.push_back((batch, 0, 0, None));
    let mut discarded = Vec::new();
    while let Some((records, retries, invocations, last_error)) = queue.pop_front() {
        if records.is_empty() {
            continue;
        }
        let oldest = records.iter().map(created).min().unwrap_or(0);
        if now() - oldest > policy.max_record_age_seconds {
            discarded.push(Discarded {
                records,
                condition: "RecordAgeExceeded",
                invocations,
                function_error: last_error,
            });
            continue;
        }
        let attempt = invoke(records.clone()).await;
        let invocations = invocations + 1;
        let (failed, first_failed) = match attempt.verdict {
            Verdict::Success => continue,
            Verdict::FailedFrom(i, _) => (records[i..].to_vec(), true),
            Verdict::Failed(_) => (records, false),
        };
        let error = attempt.function_error.or(last_error);
        if policy.bisect && !first_failed && failed.len() > 1 {
            // Splitting does not use the retry quota.
            let second = failed[failed.len() / 2..].to_vec();
            let first = failed[..failed.len() / 2].to_vec();
            queue.push_front((second, retries, invocations, error.clone()));
            queue.push_front((first, retries, invocations, error));
            continue;
        }
        if policy.max_retries.is_some_and(|m| retries >= m) {
            discarded.push(Discarded {
                records: failed,
                condition: "RetryAttemptsExhausted",
                invocations,
                function_error: error,
            });
            continue;
        }
        pause().await;
        queue.push_front((failed, retries + 1, invocations, error));
    }
    discarded
}

fn rfc3339(epoch_seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch_seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The record Lambda sends to the OnFailure destination of a stream mapping.
pub fn failure_record(
    d: &Discarded,
    shard_id: &str,
    stream_arn: &str,
    function_arn: &str,
    now_millis: i128,
) -> Value {
    let first = d.records.first().cloned().unwrap_or(Value::Null);
    let last = d.records.last().cloned().unwrap_or(Value::Null);
    let ts = time::OffsetDateTime::from_unix_timestamp_nanos(now_millis * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let timestamp = format!(
        "{}.{:03}Z",
        rfc3339(ts.unix_timestamp()).trim_end_matches('Z'),
        ts.millisecond()
    );
    let mut response = vec![
        ("statusCode".to_string(), json!(200)),
        ("executedVersion".to_string(), json!("$LATEST")),
    ];
    if let Some(e) = &d.function_error {
        response.push(("functionError".to_string(), json!(e)));
    }
    serde_json::to_value(Ordered(vec![
        (
            "requestContext".to_string(),
            serde_json::to_value(Ordered(vec![
                (
                    "requestId".to_string(),
                    json!(uuid::Uuid::new_v4().to_string()),
                ),
                ("functionArn".to_string(), json!(function_arn)),
                ("condition".to_string(), json!(d.condition)),
                ("approximateInvokeCount".to_string(), json!(d.invocations)),
            ]))
            .expect("serialisable"),
        ),
        (
            "responseContext".to_string(),
            serde_json::to_value(Ordered(response)).expect("serialisable"),
        ),
        ("version".to_string(), json!("1.0")),
        ("timestamp".to_string(), json!(timestamp)),
        (
            "DDBStreamBatchInfo".to_string(),
            serde_json::to_value(Ordered(vec![
                ("shardId".to_string(), json!(shard_id)),
                ("startSequenceNumber".to_string(), json!(seq(&first))),
                ("endSequenceNumber".to_string(), json!(seq(&last))),
                (
                    "approximateArrivalOfFirstRecord".to_string(),
                    json!(rfc3339(created(&first))),
                ),
                (
                    "approximateArrivalOfLastRecord".to_string(),
                    json!(rfc3339(created(&last))),
                ),
                ("batchSize".to_string(), json!(d.records.len())),
                ("streamArn".to_string(), json!(stream_arn)),
            ]))
            .expect("serialisable"),
        ),
    ]))
    .expect("serialisable")
}

// --------------------------------------------------------------------- mappings

#[derive(Default)]
struct Counters {
    batches_delivered: AtomicU64,
    batches_failed: AtomicU64,
    records_read: AtomicU64,
    records_filtered: AtomicU64,
    records_discarded: AtomicU64,
    destination_errors: AtomicU64,
    poll_errors: AtomicU64,
    in_flight: AtomicUsize,
}

pub struct StreamMapping {
    spec: EventSourceSpec,
    function_id: Option<String>,
    function_arn: String,
    access_key: String,
    runnable: Result<(), String>,
    counters: Counters,
    last_error: Mutex<Option<String>>,
    /// shard id -> last sequence number checkpointed.
    checkpoints: Mutex<std::collections::BTreeMap<String, String>>,
}

impl StreamMapping {
    pub fn new(spec: &EventSourceSpec, stack: &Stack) -> Self {
        let function_id = stack.find_function(&spec.function).map(str::to_string);
        let f = function_id.as_ref().and_then(|id| stack.functions.get(id));
        let runnable = if function_id.is_none() {
            Err(format!("function {} is not in the stack", spec.function))
        } else if spec.tumbling_window_seconds.is_some_and(|n| n > 0) {
            Err("TumblingWindowInSeconds is not emulated".into())
        } else if spec
            .on_failure_destination
            .as_deref()
            .is_some_and(|d| !d.starts_with("arn:aws:sqs:"))
        {
            Err("only SQS OnFailure destinations are emulated".into())
        } else {
            Ok(())
        };
        StreamMapping {
            spec: spec.clone(),
            function_arn: f.map(|f| f.arn.clone()).unwrap_or_default(),
            access_key: f
                .map_or(crate::spec::OPERATOR_ACCESS_KEY, |f| f.access_key())
                .to_string(),
            function_id,
            runnable,
            counters: Counters::default(),
            last_error: Mutex::new(None),
            checkpoints: Mutex::new(Default::default()),
        }
    }

    fn batch_size(&self) -> usize {
        self.spec.batch_size.unwrap_or(100).max(1) as usize
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.spec.maximum_batching_window_seconds.unwrap_or(0))
    }

    fn report_failures(&self) -> bool {
        self.spec
            .function_response_types
            .iter()
            .any(|t| t == "ReportBatchItemFailures")
    }

    fn set_error(&self, e: &str) {
        let now = time::OffsetDateTime::now_utc();
        *self.last_error.lock().unwrap() = Some(format!(
            "{:02}:{:02}:{:02}Z {e}",
            now.hour(),
            now.minute(),
            now.second()
        ));
    }

    pub fn status(&self) -> Value {
        let c = &self.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "logical_id": self.spec.logical_id,
            "function": self.spec.function,
            "event_source_arn": self.spec.source_arn,
            "state": match (&self.runnable, self.spec.enabled) {
                (_, false) => "Disabled".to_string(),
                (Err(e), _) => format!("NotRunning: {e}"),
                (Ok(()), true) => "Enabled".to_string(),
            },
            "starting_position": self.spec.starting_position,
            "batch_size": self.batch_size(),
            "maximum_batching_window_seconds": self.window().as_secs(),
            "bisect_batch_on_function_error": self.spec.bisect_batch_on_function_error,
            "maximum_retry_attempts": self.spec.maximum_retry_attempts.unwrap_or(-1),
            "maximum_record_age_seconds": self.spec.maximum_record_age_seconds.unwrap_or(-1),
            "function_response_types": self.spec.function_response_types,
            "on_failure_destination": self.spec.on_failure_destination,
            "filter_criteria": self.spec.filter_criteria,
            "checkpoints": *self.checkpoints.lock().unwrap(),
            "counters": {
                "batches_delivered": ld(&c.batches_delivered),
                "batches_failed": ld(&c.batches_failed),
                "records_read": ld(&c.records_read),
                "records_filtered": ld(&c.records_filtered),
                "records_discarded": ld(&c.records_discarded),
                "destination_errors": ld(&c.destination_errors),
                "poll_errors": ld(&c.poll_errors),
                "invocations_in_flight": c.in_flight.load(Ordering::Relaxed),
            },
            "last_error": *self.last_error.lock().unwrap(),
        })
    }

    /// Start the mapping's readers (one per shard); they stop with `stop`.
    pub fn start(
        self: &Arc<Self>,
        lambda: Arc<Lambda>,
        endpoint: &str,
        region: &str,
        calls: Arc<AwsCalls>,
        sqs: &Sqs,
        stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match (&self.runnable, self.spec.enabled) {
            (_, false) => {
                tracing::info!("event source {}: disabled", self.spec.logical_id);
                None
            }
            (Err(e), true) => {
                tracing::warn!("event source {}: not polling: {e}", self.spec.logical_id);
                None
            }
            (Ok(()), true) => {
                tracing::info!(
                    "event source {}: {} -> {} ({}, batch {}, window {}s, retries {}, bisect {}{})",
                    self.spec.logical_id,
                    self.spec.source_arn,
                    self.spec.function,
                    self.spec.starting_position.as_deref().unwrap_or("?"),
                    self.batch_size(),
                    self.window().as_secs(),
                    self.spec.maximum_retry_attempts.unwrap_or(-1),
                    self.spec.bisect_batch_on_function_error,
                    if self.report_failures() {
                        ", ReportBatchItemFailures"
                    } else {
                        ""
                    }
                );
                let streams = Streams::new(endpoint, region, calls, &self.access_key);
                let sqs = sqs.acting_as(&self.access_key);
                Some(tokio::spawn(run(self.clone(), lambda, streams, sqs, stop)))
            }
        }
    }
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|v| *v) => true,
    }
}

async fn run(
    m: Arc<StreamMapping>,
    lambda: Arc<Lambda>,
    streams: Streams,
    sqs: Sqs,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    let shards = loop {
        match streams.shards(&m.spec.source_arn).await {
            Ok(s) => break s,
            Err(e) => {
                m.counters.poll_errors.fetch_add(1, Ordering::Relaxed);
                m.set_error(&e.0);
                tracing::warn!("event source {}: {e}", m.spec.logical_id);
                if sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    let mut readers = Vec::new();
    for shard in shards {
        readers.push(tokio::spawn(read_shard(
            m.clone(),
            lambda.clone(),
            streams.clone(),
            sqs.clone(),
            shard,
            stop.clone(),
        )));
    }
    for r in readers {
        let _ = r.await;
    }
}

async fn read_shard(
    m: Arc<StreamMapping>,
    lambda: Arc<Lambda>,
    streams: Streams,
    sqs: Sqs,
    shard: String,
    mut stop: watch::Receiver<bool>,
) {
    let arn = m.spec.source_arn.clone();
    let start = m
        .spec
        .starting_position
        .clone()
        .unwrap_or_else(|| "TRIM_HORIZON".into());
    // The last sequence number read: a lost iterator resumes after it.
    let mut read_upto: Option<String> = None;
    let mut iterator: Option<String> = None;
    let mut backoff = Duration::ZERO;
    'outer: loop {
        if *stop.borrow() {
            break;
        }
        // (Re)open the iterator.
        let it = match iterator.take() {
            Some(it) => it,
            None => {
                let r = match &read_upto {
                    Some(s) => {
                        streams
                            .iterator(&arn, &shard, "AFTER_SEQUENCE_NUMBER", Some(s))
                            .await
                    }
                    None => streams.iterator(&arn, &shard, &start, None).await,
                };
                match r {
                    Ok(it) => it,
                    Err(e) => {
                        m.counters.poll_errors.fetch_add(1, Ordering::Relaxed);
                        m.set_error(&e.0);
                        backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                        tracing::warn!("event source {}: {e}", m.spec.logical_id);
                        if sleep_or_stop(backoff, &mut stop).await {
                            break;
                        }
                        continue;
                    }
                }
            }
        };
        // Gather a batch.
        let size = m.batch_size();
        let mut batch: Vec<Value> = Vec::new();
        let mut bytes = 0usize;
        let mut deadline: Option<Instant> = None;
        let mut it = Some(it);
        while let Some(cur) = it.take() {
            match streams.records(&cur, size - batch.len()).await {
                Ok((records, next)) => {
                    backoff = Duration::ZERO;
                    if let Some(last) = records.last() {
                        read_upto = Some(seq(last).to_string());
                    }
                    bytes += records.iter().map(|r| r.to_string().len()).sum::<usize>();
                    batch.extend(records);
                    it = next;
                }
                Err(e) => {
                    m.counters.poll_errors.fetch_add(1, Ordering::Relaxed);
                    m.set_error(&e.0);
                    if !e.0.contains("ExpiredIteratorException") {
                        tracing::warn!("event source {}: {e}", m.spec.logical_id);
                        backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                        if sleep_or_stop(backoff, &mut stop).await {
                            break 'outer;
                        }
                    }
                    // Reopen after what was read.
                    break;
                }
            }
            if batch.is_empty() {
                if sleep_or_stop(POLL_INTERVAL, &mut stop).await {
                    break 'outer;
                }
                continue;
            }
            let d = *deadline.get_or_insert_with(|| Instant::now() + m.window());
            let left = d.saturating_duration_since(Instant::now());
            if batch.len() >= size || bytes >= GATHER_BYTES_LIMIT || left.is_zero() {
                break;
            }
            if sleep_or_stop(left.min(POLL_INTERVAL), &mut stop).await {
                break 'outer;
            }
        }
        iterator = it;
        if batch.is_empty() {
            continue;
        }
        m.counters
            .records_read
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        deliver(&m, &lambda, &sqs, &shard, batch, &mut stop).await;
        if iterator.is_none() && !*stop.borrow() {
            // A closed shard (never in moto), or an iterator to reopen.
            continue;
        }
    }
    tracing::debug!(
        "event source {}: shard {shard} reader stopped",
        m.spec.logical_id
    );
}

async fn deliver(
    m: &StreamMapping,
    lambda: &Lambda,
    sqs: &Sqs,
    shard: &str,
    batch: Vec<Value>,
    stop: &mut watch::Receiver<bool>,
) {
    let region = sqs_region(sqs);
    let arn = m.spec.source_arn.as_str();
    let last_seq = batch.last().map(|r| seq(r).to_string());
    let patterns = &m.spec.filter_criteria;
    let (batch, dropped): (Vec<Value>, Vec<Value>) = if patterns.is_empty() {
        (batch, Vec::new())
    } else {
        batch
            .into_iter()
            .partition(|r| crate::filter::matches_any(patterns, &lambda_record(r, arn, &region)))
    };
    m.counters
        .records_filtered
        .fetch_add(dropped.len() as u64, Ordering::Relaxed);
    let function = m.function_id.as_deref().unwrap_or(&m.spec.function);
    let report = m.report_failures();
    let stopping = stop.clone();
    let discarded = process(
        batch,
        Policy::of(&m.spec),
        || time::OffsetDateTime::now_utc().unix_timestamp(),
        |records: Vec<Value>| {
            let region = region.clone();
            async move {
                let c = &m.counters;
                c.in_flight.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let outcome = lambda
                    .invoke(
                        function,
                        InvokeRequest {
                            payload: Bytes::from(build_event(&records, arn, &region)),
                            ..Default::default()
                        },
                    )
                    .await;
                c.in_flight.fetch_sub(1, Ordering::Relaxed);
                c.batches_delivered.fetch_add(1, Ordering::Relaxed);
                let seqs: Vec<&str> = records.iter().map(seq).collect();
                let v = verdict(&outcome, report, &seqs);
                let function_error = match &outcome {
                    Ok(Outcome::FunctionError(_)) | Err(_) => Some("Unhandled".to_string()),
                    _ => None,
                };
                let result = match &v {
                    Verdict::Success => "ok".to_string(),
                    Verdict::FailedFrom(i, why) => {
                        format!("{why}, {} record(s) to retry", records.len() - i)
                    }
                    Verdict::Failed(why) => {
                        c.batches_failed.fetch_add(1, Ordering::Relaxed);
                        m.set_error(why);
                        format!("batch failed ({why})")
                    }
                };
                tracing::info!(
                    "event source {}: {} <- {} {}..{}: {} record(s), {result}, {:.0} ms",
                    m.spec.logical_id,
                    m.spec.function,
                    shard,
                    seqs.first().unwrap_or(&""),
                    seqs.last().unwrap_or(&""),
                    records.len(),
                    started.elapsed().as_secs_f64() * 1000.0
                );
                Attempt {
                    verdict: v,
                    function_error,
                }
            }
        },
        || {
            let mut s = stopping.clone();
            async move {
                let _ = sleep_or_stop(RETRY_DELAY, &mut s).await;
            }
        },
    )
    .await;
    for d in &discarded {
        m.counters
            .records_discarded
            .fetch_add(d.records.len() as u64, Ordering::Relaxed);
        let record = failure_record(
            d,
            shard,
            arn,
            &m.function_arn,
            time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000,
        );
        tracing::warn!(
            "event source {}: {} record(s) discarded ({}, {} invocation(s))",
            m.spec.logical_id,
            d.records.len(),
            d.condition,
            d.invocations
        );
        if let Some(url) = &m.spec.on_failure_queue_url
            && let Err(e) = sqs.send(url, &record.to_string()).await
        {
            m.counters
                .destination_errors
                .fetch_add(1, Ordering::Relaxed);
            m.set_error(&e.0);
            tracing::warn!(
                "event source {}: sending to the OnFailure destination failed: {e}",
                m.spec.logical_id
            );
        }
    }
    if let Some(s) = last_seq {
        m.checkpoints.lock().unwrap().insert(shard.to_string(), s);
    }
}

fn sqs_region(sqs: &Sqs) -> String {
    sqs.region().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64, created: f64) -> Value {
        json!({
            "eventID": format!("e{n}"),
            "eventName": "MODIFY",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": created,
                "Keys": {"pk": {"S": "TENANT#t"}, "sk": {"S": format!("SKU#{n}")}},
                "NewImage": {"pk": {"S": "TENANT#t"}, "sk": {"S": format!("SKU#{n}")}, "q": {"N": "2"}},
                "OldImage": {"pk": {"S": "TENANT#t"}, "sk": {"S": format!("SKU#{n}")}, "q": {"N": "1"}},
                "SequenceNumber": format!("{}", 1_100_000_000_017_454_423_000u128 + n as u128),
                "SizeBytes": 120,
                "StreamViewType": "NEW_AND_OLD_IMAGES"
            }
        })
    }

    const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/stockroom-local-StockTable/stream/2026-01-01T00:00:00.000";

    #[test]
    fn event_deserializes_as_the_lambda_dynamodb_event() {
        let mut ttl = rec(2, 1_796_352_156.0);
        ttl["eventName"] = json!("REMOVE");
        ttl["dynamodb"].as_object_mut().unwrap().remove("NewImage");
        ttl["userIdentity"] = json!({"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"});
        let bytes = build_event(&[rec(1, 1_796_352_156.7), ttl], ARN, "us-east-1");
        let event: aws_lambda_events::event::dynamodb::Event =
            serde_json::from_slice(&bytes).expect("aws_lambda_events reads it");
        assert_eq!(event.records.len(), 2);
        let r = &event.records[0];
        assert_eq!(r.event_name, "MODIFY");
        assert_eq!(r.event_version.as_deref(), Some("1.1"));
        assert_eq!(r.event_source.as_deref(), Some("aws:dynamodb"));
        assert_eq!(r.event_source_arn.as_deref(), Some(ARN));
        assert_eq!(r.aws_region, "us-east-1");
        assert_eq!(
            r.change.sequence_number.as_deref(),
            Some("1100000000017454423001")
        );
        assert_eq!(
            r.change.approximate_creation_date_time.timestamp(),
            1_796_352_156
        );
        assert!(r.change.new_image.get("q").is_some());
        assert!(r.change.old_image.get("q").is_some());
        let u = event.records[1]
            .user_identity
            .as_ref()
            .expect("TTL identity");
        assert_eq!(
            (u.type_.as_str(), u.principal_id.as_str()),
            ("Service", "dynamodb.amazonaws.com")
        );
        // The JSON as Lambda writes it: whole seconds, AWS's field order.
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["Records"][0]["dynamodb"]["ApproximateCreationDateTime"],
            json!(1_796_352_156)
        );
        assert_eq!(
            v["Records"][1]["userIdentity"],
            json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
        );
        let text = String::from_utf8(bytes).unwrap();
        let pos = |k: &str| text.find(k).unwrap();
        assert!(pos("\"eventID\"") < pos("\"eventName\""));
        assert!(pos("\"awsRegion\"") < pos("\"dynamodb\""));
        assert!(pos("\"Keys\"") < pos("\"NewImage\""));
        assert!(pos("\"NewImage\"") < pos("\"OldImage\""));
        assert!(pos("\"StreamViewType\"") < pos("\"eventSourceARN\""));
    }

    #[test]
    fn item_failures_checkpoint_at_the_lowest_sequence_number() {
        let seqs = ["10", "11", "12", "13"];
        assert_eq!(batch_item_failures(b"", &seqs), Verdict::Success);
        assert_eq!(
            batch_item_failures(b"{\"batchItemFailures\":[]}", &seqs),
            Verdict::Success
        );
        assert_eq!(batch_item_failures(b"null", &seqs), Verdict::Success);
        assert!(matches!(
            batch_item_failures(
                br#"{"batchItemFailures":[{"itemIdentifier":"13"},{"itemIdentifier":"11"}]}"#,
                &seqs
            ),
            Verdict::FailedFrom(1, _)
        ));
        for bad in [
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"itemId":"11"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"99"}]}"#,
            "not json",
        ] {
            assert!(
                matches!(
                    batch_item_failures(bad.as_bytes(), &seqs),
                    Verdict::Failed(_)
                ),
                "{bad}"
            );
        }
        // Without ReportBatchItemFailures a response is success.
        let partial = Ok(Outcome::Success(Bytes::from_static(
            br#"{"batchItemFailures":[{"itemIdentifier":"11"}]}"#,
        )));
        assert_eq!(verdict(&partial, false, &seqs), Verdict::Success);
        assert!(matches!(
            verdict(&partial, true, &seqs),
            Verdict::FailedFrom(1, _)
        ));
        let err = Ok(Outcome::FunctionError(Bytes::from_static(
            br#"{"errorType":"Sandbox.Timedout","errorMessage":"x"}"#,
        )));
        assert!(matches!(verdict(&err, true, &seqs), Verdict::Failed(_)));
    }

    /// Run `process` with a scripted function: `fail(records)` decides.
    fn run_process(
        batch: Vec<Value>,
        policy: Policy,
        now: i64,
        fail: impl Fn(&[Value]) -> Verdict,
    ) -> (Vec<Vec<String>>, Vec<Discarded>) {
        let calls = std::cell::RefCell::new(Vec::new());
        let discarded = futures_lite_block_on(process(
            batch,
            policy,
            || now,
            |records: Vec<Value>| {
                calls.borrow_mut().push(
                    records
                        .iter()
                        .map(|r| seq(r).to_string())
                        .collect::<Vec<_>>(),
                );
                let v = fail(&records);
                std::future::ready(Attempt {
                    function_error: matches!(v, Verdict::Failed(_)).then(|| "Unhandled".into()),
                    verdict: v,
                })
            },
            || std::future::ready(()),
        ));
        (calls.into_inner(), discarded)
    }

    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn batch(n: u64) -> Vec<Value> {
        (1..=n).map(|i| rec(i, 1000.0)).collect()
    }

    fn s(n: u64) -> String {
        format!("{}", 1_100_000_000_017_454_423_000u128 + n as u128)
    }

    #[test]
    fn partial_failure_retries_from_the_reported_record() {
        let policy = Policy {
            bisect: false,
            max_retries: Some(10),
            max_record_age_seconds: 86400,
        };
        let tries = std::cell::Cell::new(0);
        let (calls, discarded) = run_process(batch(4), policy, 1000, |records| {
            tries.set(tries.get() + 1);
            if tries.get() == 1 {
                Verdict::FailedFrom(2, "x".into())
            } else {
                assert_eq!(seq(&records[0]), s(3));
                Verdict::Success
            }
        });
        assert_eq!(calls, vec![vec![s(1), s(2), s(3), s(4)], vec![s(3), s(4)]]);
        assert!(discarded.is_empty());
    }

    #[test]
    fn bisect_isolates_a_poison_record_and_retries_are_counted_after_splits() {
        let policy = Policy {
            bisect: true,
            max_retries: Some(2),
            max_record_age_seconds: 86400,
        };
        let poison = s(3);
        let (calls, discarded) = run_process(batch(4), policy, 1000, |records| {
            if records.iter().any(|r| seq(r) == poison) {
                Verdict::Failed("function error".into())
            } else {
                Verdict::Success
            }
        });
        // [1..4] fails -> [1,2] ok, [3,4] fails -> [3] fails x3 (1 + 2 retries), [4] ok.
        assert_eq!(
            calls,
            vec![
                vec![s(1), s(2), s(3), s(4)],
                vec![s(1), s(2)],
                vec![s(3), s(4)],
                vec![s(3)],
                vec![s(3)],
                vec![s(3)],
                vec![s(4)],
            ]
        );
        assert_eq!(discarded.len(), 1);
        assert_eq!(discarded[0].condition, "RetryAttemptsExhausted");
        assert_eq!(discarded[0].invocations, 5);
        assert_eq!(seq(&discarded[0].records[0]), poison);
    }

    #[test]
    fn retries_exhausted_without_bisect_discard_the_whole_batch() {
        let policy = Policy {
            bisect: false,
            max_retries: Some(1),
            max_record_age_seconds: 86400,
        };
        let (calls, discarded) =
            run_process(batch(3), policy, 1000, |_| Verdict::Failed("x".into()));
        assert_eq!(calls.len(), 2);
        assert_eq!(discarded.len(), 1);
        assert_eq!(discarded[0].records.len(), 3);
        let shard = "shardId-00000001541626099285-f35f62ef";
        let fn_arn = "arn:aws:lambda:us-east-1:123456789012:function:stockroom-local-EventsPublisherFunction";
        let r = failure_record(&discarded[0], shard, ARN, fn_arn, 1_796_352_156_123);
        assert_eq!(r["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(r["requestContext"]["functionArn"], fn_arn);
        assert_eq!(r["requestContext"]["approximateInvokeCount"], 2);
        assert_eq!(r["responseContext"]["functionError"], "Unhandled");
        assert_eq!(r["version"], "1.0");
        assert_eq!(r["timestamp"], "2026-12-04T02:42:36.123Z");
        let info = &r["DDBStreamBatchInfo"];
        assert_eq!(info["shardId"], shard);
        assert_eq!(info["startSequenceNumber"], s(1));
        assert_eq!(info["endSequenceNumber"], s(3));
        assert_eq!(
            info["approximateArrivalOfFirstRecord"],
            "1970-01-01T00:16:40Z"
        );
        assert_eq!(info["batchSize"], 3);
        assert_eq!(info["streamArn"], ARN);
    }

    #[test]
    fn old_records_are_discarded_without_an_invocation() {
        let policy = Policy {
            bisect: false,
            max_retries: None,
            max_record_age_seconds: 60,
        };
        let (calls, discarded) = run_process(batch(2), policy, 1000 + 61, |_| Verdict::Success);
        assert!(calls.is_empty());
        assert_eq!(discarded[0].condition, "RecordAgeExceeded");
        // Infinite retries stop once the records are too old.
        let now = std::cell::Cell::new(1000);
        let calls = std::cell::RefCell::new(0);
        let discarded = futures_lite_block_on(process(
            batch(1),
            policy,
            || now.get(),
            |_| {
                *calls.borrow_mut() += 1;
                now.set(now.get() + 20);
                std::future::ready(Attempt {
                    verdict: Verdict::Failed("x".into()),
                    function_error: None,
                })
            },
            || std::future::ready(()),
        ));
        assert_eq!(*calls.borrow(), 4);
        assert_eq!(discarded[0].condition, "RecordAgeExceeded");
    }
}
