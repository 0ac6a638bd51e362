//! SQS event source mappings (`AWS::Lambda::EventSourceMapping` on a queue),
//! run the way the Lambda service runs them: long-poll the queue, gather a
//! batch (batch size / batching window), invoke the function synchronously
//! with the `aws:sqs` event, then delete what succeeded:
//!
//! * success without `ReportBatchItemFailures` -> delete the whole batch;
//! * success with `ReportBatchItemFailures` -> delete all but the
//!   `batchItemFailures[].itemIdentifier`s; a malformed response (bad JSON,
//!   empty/unknown identifier, wrong key) fails the whole batch;
//! * function error / timeout / crash -> delete nothing: the messages come
//!   back after the queue's visibility timeout, and the queue's redrive policy
//!   (moto's job, at receive time) moves them to the DLQ after
//!   `maxReceiveCount` receives.
//!
//! SQS is spoken over HTTP with the JSON protocol (`X-Amz-Target:
//! AmazonSQS.*`, `application/x-amz-json-1.0`), which moto 5.2 serves; the
//! request carries a dummy SigV4 `Authorization` header only because moto
//! picks the service and region from its credential scope.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::emulator::{self, AwsCalls, CallError, Caller};
use crate::lambda::{InvokeError, InvokeRequest, Lambda, Outcome};
use crate::spec::{EventSourceSpec, Stack};

/// Lambda's default MaximumConcurrency is "as many pollers as it scales to";
/// locally a handful is plenty.
const DEFAULT_CONCURRENCY: usize = 5;
/// ReceiveMessage returns at most 10 messages.
const MAX_RECEIVE: usize = 10;
/// Long-poll duration of an idle poller. Lambda uses the SQS maximum (20 s);
/// locally it is short because a long poll cannot be called off: after a
/// shutdown moto would still hand arriving messages to the dead request, hiding
/// them for the queue's visibility timeout (180 s for the batch queue) from the
/// next `stockroom-local`. On shutdown the poll in flight is awaited instead
/// and whatever it took is handed back (ChangeMessageVisibility 0).
pub const LONG_POLL_SECONDS: u64 = 2;
/// The SQS maximum, for the batching window's receives.
const MAX_WAIT_SECONDS: u64 = 20;
/// Stop gathering once the batch nears the 6 MB invocation payload limit
/// (a message can be up to 1 MiB).
const GATHER_BYTES_LIMIT: usize = 5 * 1024 * 1024;
/// Poll retries back off exponentially up to this (short: a restarted moto
/// should be picked up quickly).
const MAX_BACKOFF: Duration = Duration::from_secs(10);

// --------------------------------------------------------------------- SQS

/// The few SQS calls an event source mapping makes, over the JSON protocol.
#[derive(Clone)]
pub struct Sqs {
    http: reqwest::Client,
    pub(crate) endpoint: String,
    pub(crate) region: String,
    pub(crate) calls: Arc<AwsCalls>,
    /// Lambda's poller calls SQS with the function's execution role: the
    /// emulator authorises these calls against it.
    access_key: String,
}

/// One received message, as ReceiveMessage (JSON protocol) returns it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SqsMessage {
    pub message_id: String,
    pub receipt_handle: String,
    #[serde(default)]
    pub body: String,
    #[serde(rename = "MD5OfBody", default)]
    pub md5_of_body: String,
    #[serde(rename = "MD5OfMessageAttributes", default)]
    pub md5_of_message_attributes: Option<String>,
    #[serde(default)]
    pub attributes: serde_json::Map<String, Value>,
    #[serde(default)]
    pub message_attributes: serde_json::Map<String, Value>,
}

impl Sqs {
    pub fn new(endpoint: &str, region: &str, calls: Arc<AwsCalls>) -> Self {
        Sqs {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .build()
                .expect("reqwest client"),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            calls,
            access_key: crate::spec::OPERATOR_ACCESS_KEY.to_string(),
        }
    }

    /// The same client, calling as the function whose role has `access_key`.
    pub fn acting_as(&self, access_key: &str) -> Self {
        Sqs {
            access_key: access_key.to_string(),
            ..self.clone()
        }
    }

    async fn call(&self, op: &str, body: Value, timeout: Duration) -> Result<Value, CallError> {
        self.calls.count(
            Caller::EventSourceMappings,
            &emulator::sqs_queue_service(body["QueueUrl"].as_str()),
            op,
        );
        emulator::JsonCall {
            http: &self.http,
            endpoint: &self.endpoint,
            region: &self.region,
            service: "sqs",
            target: "AmazonSQS",
            access_key: &self.access_key,
        }
        .send(op, &body, timeout)
        .await
    }

    pub async fn receive(
        &self,
        queue_url: &str,
        max: usize,
        wait_seconds: u64,
    ) -> Result<Vec<SqsMessage>, CallError> {
        let v = self
            .call(
                "ReceiveMessage",
                json!({
                    "QueueUrl": queue_url,
                    "MaxNumberOfMessages": max.clamp(1, MAX_RECEIVE),
                    "WaitTimeSeconds": wait_seconds.min(MAX_WAIT_SECONDS),
                    "AttributeNames": ["All"],
                    "MessageSystemAttributeNames": ["All"],
                    "MessageAttributeNames": ["All"],
                }),
                Duration::from_secs(wait_seconds + 15),
            )
            .await?;
        match v.get("Messages") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(m) => serde_json::from_value(m.clone())
                .map_err(|e| CallError(format!("ReceiveMessage: unexpected answer: {e}"))),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// SendMessage (an event source mapping's OnFailure destination).
    pub async fn send(&self, queue_url: &str, body: &str) -> Result<(), CallError> {
        self.call(
            "SendMessage",
            json!({"QueueUrl": queue_url, "MessageBody": body}),
            Duration::from_secs(15),
        )
        .await
        .map(|_| ())
    }

    /// Make received messages visible again at once (ChangeMessageVisibilityBatch 0).
    pub async fn release(
        &self,
        queue_url: &str,
        receipt_handles: &[&str],
    ) -> Result<(), CallError> {
        for chunk in receipt_handles.chunks(MAX_RECEIVE) {
            let entries: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| json!({"Id": i.to_string(), "ReceiptHandle": h, "VisibilityTimeout": 0}))
                .collect();
            self.call(
                "ChangeMessageVisibilityBatch",
                json!({"QueueUrl": queue_url, "Entries": entries}),
                Duration::from_secs(5),
            )
            .await?;
        }
        Ok(())
    }

    /// DeleteMessageBatch in chunks of 10; returns (deleted, failures).
    pub async fn delete(
        &self,
        queue_url: &str,
        receipt_handles: &[&str],
    ) -> Result<(usize, Vec<String>), CallError> {
        let mut deleted = 0;
        let mut failed = Vec::new();
        for chunk in receipt_handles.chunks(MAX_RECEIVE) {
            let entries: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| json!({"Id": i.to_string(), "ReceiptHandle": h}))
                .collect();
            let v = self
                .call(
                    "DeleteMessageBatch",
                    json!({"QueueUrl": queue_url, "Entries": entries}),
                    Duration::from_secs(15),
                )
                .await?;
            deleted += v["Successful"].as_array().map_or(0, Vec::len);
            for f in v["Failed"].as_array().into_iter().flatten() {
                failed.push(format!(
                    "{}: {}",
                    f["Code"].as_str().unwrap_or("?"),
                    f["Message"].as_str().unwrap_or("")
                ));
            }
        }
        Ok((deleted, failed))
    }
}

// --------------------------------------------------------------------- event

/// A JSON object whose keys keep the order given (AWS's field order), without
/// serde_json's `preserve_order` feature.
pub(crate) struct Ordered(pub(crate) Vec<(String, Value)>);

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    message_id: &'a str,
    receipt_handle: &'a str,
    body: &'a str,
    attributes: Ordered,
    message_attributes: Ordered,
    md5_of_body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    md5_of_message_attributes: Option<&'a str>,
    event_source: &'static str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'a str,
    aws_region: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Event<'a> {
    records: Vec<Record<'a>>,
}

/// The order Lambda writes the system attributes in.
const ATTRIBUTE_ORDER: [&str; 8] = [
    "ApproximateReceiveCount",
    "AWSTraceHeader",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
];

fn record_attributes(m: &SqsMessage) -> Ordered {
    let mut out: Vec<(String, Value)> = ATTRIBUTE_ORDER
        .iter()
        .filter_map(|k| m.attributes.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    for (k, v) in &m.attributes {
        if !ATTRIBUTE_ORDER.contains(&k.as_str()) {
            out.push((k.clone(), v.clone()));
        }
    }
    Ordered(out)
}

/// `{StringValue|BinaryValue, StringListValues, BinaryListValues, DataType}`
/// -> `{stringValue|binaryValue, stringListValues, binaryListValues, dataType}`
/// (binary values stay base64, as in the Lambda event).
fn record_message_attributes(m: &SqsMessage) -> Ordered {
    let mut out = Vec::new();
    for (name, a) in &m.message_attributes {
        let mut fields = Vec::new();
        if let Some(s) = a.get("StringValue").filter(|v| !v.is_null()) {
            fields.push(("stringValue".to_string(), s.clone()));
        }
        if let Some(b) = a.get("BinaryValue").filter(|v| !v.is_null()) {
            fields.push(("binaryValue".to_string(), b.clone()));
        }
        let list = |k: &str| {
            a.get(k)
                .filter(|v| v.is_array())
                .cloned()
                .unwrap_or_else(|| json!([]))
        };
        fields.push(("stringListValues".to_string(), list("StringListValues")));
        fields.push(("binaryListValues".to_string(), list("BinaryListValues")));
        fields.push((
            "dataType".to_string(),
            a.get("DataType").cloned().unwrap_or(Value::Null),
        ));
        out.push((name.clone(), serde_json::to_value(Ordered(fields)).unwrap()));
    }
    Ordered(out)
}

fn record<'a>(m: &'a SqsMessage, source_arn: &'a str, region: &'a str) -> Record<'a> {
    Record {
        message_id: &m.message_id,
        receipt_handle: &m.receipt_handle,
        body: &m.body,
        attributes: record_attributes(m),
        message_attributes: record_message_attributes(m),
        md5_of_body: &m.md5_of_body,
        md5_of_message_attributes: m.md5_of_message_attributes.as_deref(),
        event_source: "aws:sqs",
        event_source_arn: source_arn,
        aws_region: region,
    }
}

/// The `aws:sqs` event Lambda sends for a batch.
pub fn build_event(messages: &[SqsMessage], source_arn: &str, region: &str) -> Vec<u8> {
    let records = messages
        .iter()
        .map(|m| record(m, source_arn, region))
        .collect();
    serde_json::to_vec(&Event { records }).expect("serialisable")
}

/// Split a batch by the mapping's FilterCriteria: (to invoke with, filtered out).
pub fn apply_filters(
    messages: Vec<SqsMessage>,
    patterns: &[Value],
    source_arn: &str,
    region: &str,
) -> (Vec<SqsMessage>, Vec<SqsMessage>) {
    if patterns.is_empty() {
        return (messages, Vec::new());
    }
    messages.into_iter().partition(|m| {
        let v = serde_json::to_value(record(m, source_arn, region)).expect("serialisable");
        crate::filter::matches_any(patterns, &v)
    })
}

// --------------------------------------------------------------------- outcome

/// What the mapping does with a batch after the invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Delete every message.
    DeleteAll,
    /// Delete every message except these message ids (reported failures).
    DeleteExcept(BTreeSet<String>),
    /// Delete nothing: the whole batch failed (reason for the log).
    KeepAll(String),
}

/// Parse a `ReportBatchItemFailures` response the way Lambda does.
///
/// Complete success: empty/`null` response, `{}`, missing/`null`/empty
/// `batchItemFailures`. Complete failure: invalid JSON, a response that is not
/// an object, `batchItemFailures` not a list, an entry without
/// `itemIdentifier` (bad key name), a `null`/empty identifier, or an
/// identifier that is not a message id of the batch.
pub fn batch_item_failures(payload: &[u8], message_ids: &[&str]) -> Disposition {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Disposition::DeleteAll;
    }
    let v: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return Disposition::KeepAll(format!("invalid JSON response: {e}")),
    };
    let obj = match &v {
        Value::Null => return Disposition::DeleteAll,
        Value::Object(o) => o,
        _ => {
            return Disposition::KeepAll(
                "invalid response: not a batch item failures object".into(),
            );
        }
    };
    let items = match obj.get("batchItemFailures") {
        None | Some(Value::Null) => return Disposition::DeleteAll,
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Disposition::KeepAll(
                "invalid response: batchItemFailures is not a list".into(),
            );
        }
    };
    let mut failed = BTreeSet::new();
    for item in items {
        let id = match item.get("itemIdentifier") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::String(_)) | Some(Value::Null) => {
                return Disposition::KeepAll("empty or null itemIdentifier".into());
            }
            Some(_) => return Disposition::KeepAll("itemIdentifier is not a string".into()),
            None => {
                return Disposition::KeepAll(
                    "batch item failure without an itemIdentifier key".into(),
                );
            }
        };
        if !message_ids.contains(&id.as_str()) {
            return Disposition::KeepAll(format!(
                "itemIdentifier {id:?} is not a message id of the batch"
            ));
        }
        failed.insert(id.clone());
    }
    if failed.is_empty() {
        Disposition::DeleteAll
    } else {
        Disposition::DeleteExcept(failed)
    }
}

/// The disposition for an invocation outcome.
pub fn disposition(
    outcome: &Result<Outcome, InvokeError>,
    report_batch_item_failures: bool,
    message_ids: &[&str],
) -> Disposition {
    match outcome {
        Ok(Outcome::Success(payload)) if report_batch_item_failures => {
            batch_item_failures(payload, message_ids)
        }
        Ok(Outcome::Success(_)) => Disposition::DeleteAll,
        Ok(Outcome::FunctionError(body)) => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            Disposition::KeepAll(format!(
                "function error {}",
                v["errorType"].as_str().unwrap_or("Unhandled")
            ))
        }
        Err(InvokeError::NotFound(n)) => Disposition::KeepAll(format!("function {n} not found")),
        Err(InvokeError::TooLarge(n)) => Disposition::KeepAll(format!(
            "event of {n} bytes over the invocation payload limit"
        )),
    }
}

// --------------------------------------------------------------------- pollers

#[derive(Default)]
struct Counters {
    batches_delivered: AtomicU64,
    messages_received: AtomicU64,
    messages_deleted: AtomicU64,
    failures_reported: AtomicU64,
    messages_filtered: AtomicU64,
    batches_failed: AtomicU64,
    delete_errors: AtomicU64,
    poll_errors: AtomicU64,
    in_flight: AtomicUsize,
}

pub struct Mapping {
    spec: EventSourceSpec,
    /// Logical id of the function, when the stack has it.
    function_id: Option<String>,
    /// The function's access key: the poller receives and deletes with the
    /// function's role, as Lambda's does.
    access_key: String,
    concurrency: usize,
    runnable: Result<(), String>,
    counters: Counters,
    last_error: Mutex<Option<String>>,
}

impl Mapping {
    fn report_failures(&self) -> bool {
        self.spec
            .function_response_types
            .iter()
            .any(|t| t == "ReportBatchItemFailures")
    }

    fn queue_name(&self) -> &str {
        self.spec.source_arn.rsplit(':').next().unwrap_or("?")
    }

    fn batch_size(&self) -> usize {
        // Lambda's default for SQS is 10.
        self.spec.batch_size.unwrap_or(10).max(1) as usize
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.spec.maximum_batching_window_seconds.unwrap_or(0))
    }

    fn set_error(&self, e: &CallError) {
        let now = time::OffsetDateTime::now_utc();
        *self.last_error.lock().unwrap() = Some(format!(
            "{:02}:{:02}:{:02}Z {e}",
            now.hour(),
            now.minute(),
            now.second()
        ));
    }

    fn status(&self) -> Value {
        let c = &self.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "logical_id": self.spec.logical_id,
            "function": self.spec.function,
            "event_source_arn": self.spec.source_arn,
            "queue_url": self.spec.queue_url,
            "state": match (&self.runnable, self.spec.enabled) {
                (_, false) => "Disabled".to_string(),
                (Err(e), _) => format!("NotRunning: {e}"),
                (Ok(()), true) => "Enabled".to_string(),
            },
            "batch_size": self.batch_size(),
            "maximum_batching_window_seconds": self.window().as_secs(),
            "maximum_concurrency": self.concurrency,
            "function_response_types": self.spec.function_response_types,
            "filter_criteria": self.spec.filter_criteria,
            "counters": {
                "batches_delivered": ld(&c.batches_delivered),
                "messages_received": ld(&c.messages_received),
                "messages_deleted": ld(&c.messages_deleted),
                "failures_reported": ld(&c.failures_reported),
                "messages_filtered": ld(&c.messages_filtered),
                "batches_failed": ld(&c.batches_failed),
                "delete_errors": ld(&c.delete_errors),
                "poll_errors": ld(&c.poll_errors),
                "invocations_in_flight": c.in_flight.load(Ordering::Relaxed),
            },
            "last_error": *self.last_error.lock().unwrap(),
        })
    }
}

/// The template's SQS event source mappings (`sources.rs` holds them with
/// the DynamoDB stream ones).
pub struct SqsSources {
    mappings: Vec<Arc<Mapping>>,
}

impl SqsSources {
    /// The SQS mappings of the stack (validated by the caller).
    pub fn new(stack: &Stack) -> Self {
        let mappings = stack
            .event_sources
            .iter()
            .filter(|spec| !spec.is_dynamodb_stream())
            .map(|spec| {
                let function_id = stack.find_function(&spec.function).map(str::to_string);
                let runnable = if !spec.is_sqs() {
                    Err(format!(
                        "only SQS queues and DynamoDB streams are emulated ({})",
                        spec.source_arn
                    ))
                } else if spec.queue_url.is_none() {
                    Err("no queue URL in stack.json (re-run stack.py render)".into())
                } else if function_id.is_none() {
                    Err(format!("function {} is not in the stack", spec.function))
                } else {
                    Ok(())
                };
                Arc::new(Mapping {
                    concurrency: spec
                        .maximum_concurrency
                        .map_or(DEFAULT_CONCURRENCY, |n| n.max(1) as usize),
                    spec: spec.clone(),
                    access_key: function_id
                        .as_ref()
                        .and_then(|id| stack.functions.get(id))
                        .map_or(crate::spec::OPERATOR_ACCESS_KEY, |f| f.access_key())
                        .to_string(),
                    function_id,
                    runnable,
                    counters: Counters::default(),
                    last_error: Mutex::new(None),
                })
            })
            .collect();
        SqsSources { mappings }
    }

    pub fn statuses(&self) -> Vec<Value> {
        self.mappings.iter().map(|m| m.status()).collect()
    }

    /// Start one poller per enabled, runnable mapping; they stop when `stop`
    /// turns true. Returns their handles.
    pub fn start(
        &self,
        lambda: Arc<Lambda>,
        sqs: Sqs,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        for m in &self.mappings {
            match (&m.runnable, m.spec.enabled) {
                (_, false) => tracing::info!("event source {}: disabled", m.spec.logical_id),
                (Err(e), true) => {
                    tracing::warn!("event source {}: not polling: {e}", m.spec.logical_id)
                }
                (Ok(()), true) => {
                    tracing::info!(
                        "event source {}: {} -> {} (batch {}, window {}s, concurrency {}{})",
                        m.spec.logical_id,
                        m.queue_name(),
                        m.spec.function,
                        m.batch_size(),
                        m.window().as_secs(),
                        m.concurrency,
                        if m.report_failures() {
                            ", ReportBatchItemFailures"
                        } else {
                            ""
                        }
                    );
                    handles.push(tokio::spawn(poll(
                        m.clone(),
                        lambda.clone(),
                        sqs.acting_as(&m.access_key),
                        stop.clone(),
                    )));
                }
            }
        }
        handles
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

async fn poll(m: Arc<Mapping>, lambda: Arc<Lambda>, sqs: Sqs, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(m.concurrency));
    let mut backoff = Duration::ZERO;
    loop {
        // Receive only when an invocation slot is free, so no message sits
        // received-but-undelivered while its visibility timeout runs.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore open"),
            _ = stopped(&mut stop) => break,
        };
        let gathering = gather(&m, &sqs, stop.clone());
        tokio::pin!(gathering);
        let gathered = tokio::select! {
            r = &mut gathering => r,
            _ = stopped(&mut stop) => {
                // Let the receive in flight finish (it stops extending the
                // batch once stopping) and hand its messages back.
                let limit = Duration::from_secs(LONG_POLL_SECONDS + 3);
                if let Ok(Ok(batch)) = tokio::time::timeout(limit, gathering).await
                    && !batch.is_empty()
                {
                    let url = m.spec.queue_url.as_deref().expect("checked in new");
                    let handles: Vec<&str> =
                        batch.iter().map(|b| b.receipt_handle.as_str()).collect();
                    match sqs.release(url, &handles).await {
                        Ok(()) => tracing::info!(
                            "event source {}: shutting down: {} received message(s) made visible again",
                            m.spec.logical_id,
                            batch.len()
                        ),
                        Err(e) => tracing::warn!(
                            "event source {}: shutting down: {} received message(s) stay invisible until their visibility timeout: {e}",
                            m.spec.logical_id,
                            batch.len()
                        ),
                    }
                }
                break;
            }
        };
        let batch = match gathered {
            Ok(b) => b,
            Err(e) => {
                m.counters.poll_errors.fetch_add(1, Ordering::Relaxed);
                backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                tracing::warn!(
                    "event source {}: polling {} failed, retrying in {}s: {e}",
                    m.spec.logical_id,
                    m.queue_name(),
                    backoff.as_secs()
                );
                m.set_error(&e);
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => continue,
                    _ = stopped(&mut stop) => break,
                }
            }
        };
        if !backoff.is_zero() {
            tracing::info!(
                "event source {}: polling {} again",
                m.spec.logical_id,
                m.queue_name()
            );
            backoff = Duration::ZERO;
        }
        if batch.is_empty() {
            continue;
        }
        let (m, lambda, sqs) = (m.clone(), lambda.clone(), sqs.clone());
        tokio::spawn(async move {
            deliver(&m, &lambda, &sqs, batch).await;
            drop(permit);
        });
    }
    tracing::debug!("event source {}: poller stopped", m.spec.logical_id);
}

/// One batch: a long poll for the first messages, then more until the batch
/// size, the batching window or the payload limit is reached.
async fn gather(
    m: &Mapping,
    sqs: &Sqs,
    stop: watch::Receiver<bool>,
) -> Result<Vec<SqsMessage>, CallError> {
    let url = m.spec.queue_url.as_deref().expect("checked in new");
    let size = m.batch_size();
    let mut batch = sqs
        .receive(url, size.min(MAX_RECEIVE), LONG_POLL_SECONDS)
        .await?;
    if batch.is_empty() {
        return Ok(batch);
    }
    let deadline = Instant::now() + m.window();
    let bytes = |b: &[SqsMessage]| b.iter().map(|m| m.body.len()).sum::<usize>();
    while batch.len() < size && bytes(&batch) < GATHER_BYTES_LIMIT && !*stop.borrow() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let want = (size - batch.len()).min(MAX_RECEIVE);
        // WaitTimeSeconds is whole seconds: long-poll the whole seconds left
        // (at most LONG_POLL_SECONDS, so a shutdown is not held up),
        // then one last immediate receive at the window's end. A request
        // once sent is never abandoned (moto would mark the messages it
        // returns as received).
        let more = if left >= Duration::from_secs(1) {
            sqs.receive(url, want, left.as_secs().min(LONG_POLL_SECONDS))
                .await
        } else {
            tokio::time::sleep(left).await;
            sqs.receive(url, want, 0).await
        };
        match more {
            Ok(more) => batch.extend(more),
            // Deliver what we have; the next poll reports the error.
            Err(_) => break,
        }
    }
    Ok(batch)
}

async fn deliver(m: &Mapping, lambda: &Lambda, sqs: &Sqs, batch: Vec<SqsMessage>) {
    let c = &m.counters;
    c.messages_received
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let url = m.spec.queue_url.as_deref().expect("checked in new");
    let (batch, dropped) = apply_filters(
        batch,
        &m.spec.filter_criteria,
        &m.spec.source_arn,
        &sqs.region,
    );
    if !dropped.is_empty() {
        // Lambda deletes SQS messages that match no filter.
        c.messages_filtered
            .fetch_add(dropped.len() as u64, Ordering::Relaxed);
        let handles: Vec<&str> = dropped.iter().map(|d| d.receipt_handle.as_str()).collect();
        match sqs.delete(url, &handles).await {
            Ok((n, _)) => {
                c.messages_deleted.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => m.set_error(&e),
        }
        tracing::info!(
            "event source {}: {} message(s) matched no filter, deleted without invoking",
            m.spec.logical_id,
            dropped.len()
        );
    }
    if batch.is_empty() {
        return;
    }
    c.in_flight.fetch_add(1, Ordering::Relaxed);
    let event = build_event(&batch, &m.spec.source_arn, &sqs.region);
    let start = Instant::now();
    let function = m.function_id.as_deref().unwrap_or(&m.spec.function);
    let outcome = lambda
        .invoke(
            function,
            InvokeRequest {
                payload: Bytes::from(event),
                ..Default::default()
            },
        )
        .await;
    let latency = start.elapsed();
    c.in_flight.fetch_sub(1, Ordering::Relaxed);
    c.batches_delivered.fetch_add(1, Ordering::Relaxed);
    let ids: Vec<&str> = batch.iter().map(|m| m.message_id.as_str()).collect();
    let d = disposition(&outcome, m.report_failures(), &ids);
    let (to_delete, result): (Vec<&str>, String) = match &d {
        Disposition::DeleteAll => (
            batch.iter().map(|m| m.receipt_handle.as_str()).collect(),
            "ok".into(),
        ),
        Disposition::DeleteExcept(failed) => {
            c.failures_reported
                .fetch_add(failed.len() as u64, Ordering::Relaxed);
            (
                batch
                    .iter()
                    .filter(|m| !failed.contains(&m.message_id))
                    .map(|m| m.receipt_handle.as_str())
                    .collect(),
                format!("{} item failure(s) reported", failed.len()),
            )
        }
        Disposition::KeepAll(why) => {
            c.batches_failed.fetch_add(1, Ordering::Relaxed);
            (Vec::new(), format!("batch failed ({why})"))
        }
    };
    let mut deleted = 0;
    if !to_delete.is_empty() {
        match sqs.delete(url, &to_delete).await {
            Ok((n, failures)) => {
                deleted = n;
                if !failures.is_empty() {
                    c.delete_errors
                        .fetch_add(failures.len() as u64, Ordering::Relaxed);
                    tracing::warn!(
                        "event source {}: {} message(s) not deleted: {}",
                        m.spec.logical_id,
                        failures.len(),
                        failures.join("; ")
                    );
                }
            }
            Err(e) => {
                c.delete_errors
                    .fetch_add(to_delete.len() as u64, Ordering::Relaxed);
                tracing::warn!("event source {}: delete failed: {e}", m.spec.logical_id);
                m.set_error(&e);
            }
        }
        c.messages_deleted
            .fetch_add(deleted as u64, Ordering::Relaxed);
    }
    tracing::info!(
        "event source {}: {} <- {}: {} message(s), {result}, {deleted} deleted, {:.0} ms",
        m.spec.logical_id,
        m.spec.function,
        m.queue_name(),
        batch.len(),
        latency.as_secs_f64() * 1000.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> SqsMessage {
        serde_json::from_value(json!({
            "MessageId": id,
            "ReceiptHandle": format!("rh-{id}"),
            "MD5OfBody": "5d41402abc4b2a76b9719d911017c592",
            "Body": "hello",
            "Attributes": {
                "SenderId": "AIDAIT2UOQQY3AUEKVGXU",
                "SentTimestamp": "1795713676695",
                "ApproximateReceiveCount": "2",
                "ApproximateFirstReceiveTimestamp": "1795713676729"
            }
        }))
        .unwrap()
    }

    #[test]
    fn event_matches_the_lambda_sqs_event() {
        let mut with_attrs: SqsMessage = serde_json::from_value(json!({
            "MessageId": "m2",
            "ReceiptHandle": "rh-m2",
            "MD5OfBody": "ac7938d40cfc2307e2bf325d28e7884e",
            "Body": "{\"k\":1}",
            "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1", "SenderId": "S",
                           "ApproximateFirstReceiveTimestamp": "2", "MessageGroupId": "g"},
            "MD5OfMessageAttributes": "b81d671ae0e741a0bd283cbf9aaba1ea",
            "MessageAttributes": {
                "s": {"StringValue": "v", "DataType": "String"},
                "b": {"BinaryValue": "AAEC", "DataType": "Binary"},
                "n": {"StringValue": "3", "DataType": "Number.int"}
            }
        }))
        .unwrap();
        with_attrs.body = "{\"k\":1}".into();
        let arn = "arn:aws:sqs:us-east-1:123456789012:q";
        let bytes = build_event(&[msg("m1"), with_attrs], arn, "us-east-1");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let r = &v["Records"];
        assert_eq!(r.as_array().unwrap().len(), 2);
        assert_eq!(
            r[0],
            json!({
                "messageId": "m1",
                "receiptHandle": "rh-m1",
                "body": "hello",
                "attributes": {
                    "ApproximateReceiveCount": "2",
                    "SentTimestamp": "1795713676695",
                    "SenderId": "AIDAIT2UOQQY3AUEKVGXU",
                    "ApproximateFirstReceiveTimestamp": "1795713676729"
                },
                "messageAttributes": {},
                "md5OfBody": "5d41402abc4b2a76b9719d911017c592",
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1"
            })
        );
        assert!(r[0].get("md5OfMessageAttributes").is_none());
        assert_eq!(r[1]["body"], "{\"k\":1}");
        assert_eq!(
            r[1]["md5OfMessageAttributes"],
            "b81d671ae0e741a0bd283cbf9aaba1ea"
        );
        assert_eq!(r[1]["attributes"]["MessageGroupId"], "g");
        assert_eq!(
            r[1]["messageAttributes"],
            json!({
                "s": {"stringValue": "v", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
                "b": {"binaryValue": "AAEC", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
                "n": {"stringValue": "3", "stringListValues": [], "binaryListValues": [], "dataType": "Number.int"}
            })
        );
        // AWS's field order, as the real event prints it.
        let text = String::from_utf8(bytes).unwrap();
        let pos = |k: &str| text.find(k).unwrap();
        assert!(pos("\"messageId\"") < pos("\"receiptHandle\""));
        assert!(pos("\"ApproximateReceiveCount\"") < pos("\"SentTimestamp\""));
        assert!(pos("\"SenderId\"") < pos("\"ApproximateFirstReceiveTimestamp\""));
        assert!(pos("\"md5OfBody\"") < pos("\"eventSource\""));
    }

    #[test]
    fn filters_see_the_event_record() {
        let mut json_body = msg("j");
        json_body.body = r#"{"type":"chunk"}"#.into();
        let patterns =
            [json!({"body": {"type": ["chunk"]}, "attributes": {"SenderId": [{"exists": true}]}})];
        let (keep, drop) = apply_filters(vec![msg("a"), json_body], &patterns, "arn", "us-east-1");
        assert_eq!(
            keep.iter()
                .map(|m| m.message_id.as_str())
                .collect::<Vec<_>>(),
            ["j"]
        );
        assert_eq!(
            drop.iter()
                .map(|m| m.message_id.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        let (keep, drop) = apply_filters(vec![msg("a")], &[], "arn", "us-east-1");
        assert_eq!((keep.len(), drop.len()), (1, 0));
    }

    #[test]
    fn item_failures_success_cases() {
        let ids = ["a", "b", "c"];
        for ok in [
            "",
            " ",
            "null",
            "{}",
            r#"{"batchItemFailures": []}"#,
            r#"{"batchItemFailures": null}"#,
            r#"{"other": 1}"#,
        ] {
            assert_eq!(
                batch_item_failures(ok.as_bytes(), &ids),
                Disposition::DeleteAll,
                "{ok:?}"
            );
        }
    }

    #[test]
    fn item_failures_partial() {
        let ids = ["a", "b", "c"];
        let d = batch_item_failures(
            br#"{"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "c"}, {"itemIdentifier": "b"}]}"#,
            &ids,
        );
        assert_eq!(
            d,
            Disposition::DeleteExcept(["b".to_string(), "c".to_string()].into())
        );
    }

    #[test]
    fn item_failures_complete_failure_cases() {
        let ids = ["a", "b"];
        for bad in [
            "not json",
            r#""ok""#,
            "[]",
            r#"{"batchItemFailures": "a"}"#,
            r#"{"batchItemFailures": [{"itemIdentifier": ""}]}"#,
            r#"{"batchItemFailures": [{"itemIdentifier": null}]}"#,
            r#"{"batchItemFailures": [{"itemIdentifier": 3}]}"#,
            r#"{"batchItemFailures": [{"ItemIdentifier": "a"}]}"#,
            r#"{"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "zzz"}]}"#,
        ] {
            assert!(
                matches!(
                    batch_item_failures(bad.as_bytes(), &ids),
                    Disposition::KeepAll(_)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn disposition_by_outcome() {
        let ids = ["a", "b"];
        let partial = Bytes::from_static(br#"{"batchItemFailures":[{"itemIdentifier":"a"}]}"#);
        // Without ReportBatchItemFailures the response is ignored.
        assert_eq!(
            disposition(&Ok(Outcome::Success(partial.clone())), false, &ids),
            Disposition::DeleteAll
        );
        assert_eq!(
            disposition(&Ok(Outcome::Success(partial)), true, &ids),
            Disposition::DeleteExcept(["a".to_string()].into())
        );
        let err = Bytes::from_static(br#"{"errorType":"Sandbox.Timedout","errorMessage":"x"}"#);
        for report in [true, false] {
            assert_eq!(
                disposition(&Ok(Outcome::FunctionError(err.clone())), report, &ids),
                Disposition::KeepAll("function error Sandbox.Timedout".into())
            );
        }
        assert!(matches!(
            disposition(&Err(InvokeError::TooLarge(7_000_000)), true, &ids),
            Disposition::KeepAll(_)
        ));
    }
}
