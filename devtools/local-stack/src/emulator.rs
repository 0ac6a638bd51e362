//! Speaking to the AWS emulator, and counting what is said to it.
//!
//! moto picks the service of a request from the SigV4 credential scope and
//! does not check signatures, so the local stack's own calls (the event-source
//! pollers' SQS calls, the gateway's usage-plan reads) carry a dummy
//! `Authorization` header with the right scope; the fault proxy reads the
//! same scope back from the functions' real SDK signatures.
//!
//! [`AwsCalls`] counts every call by who made it (`functions`, through the
//! fault proxy; `event-source-mappings`, the pollers standing in for the
//! Lambda service), service and operation: the benchmark's calls per record
//! and the cost model (docs/cost.md) come from these counts.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

/// A failed call to the emulator: the operation, then what went wrong
/// (AWS's error code and message, or the transport error).
#[derive(Debug)]
pub struct CallError(pub String);

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where and as whom the local stack's own JSON-protocol calls go.
pub struct JsonCall<'a> {
    pub http: &'a reqwest::Client,
    pub endpoint: &'a str,
    pub region: &'a str,
    /// The SigV4 scope's service (`sqs`, `dynamodb`): moto routes by it.
    pub service: &'a str,
    /// The `X-Amz-Target` prefix (`AmazonSQS`, `DynamoDBStreams_20120810`).
    pub target: &'a str,
    /// The caller's access key (the emulator authorises it against a role).
    pub access_key: &'a str,
}

impl JsonCall<'_> {
    /// `op` with `body`: the answer, or AWS's error as `op: Code: message`.
    pub async fn send(
        &self,
        op: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let resp = self
            .http
            .post(format!("{}/", self.endpoint))
            .timeout(timeout)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("{}.{op}", self.target))
            .header("x-amz-date", amz_date())
            .header(
                "authorization",
                authorization(
                    self.service,
                    self.region,
                    "content-type;host;x-amz-date;x-amz-target",
                    self.access_key,
                ),
            )
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| CallError(format!("{op}: {}: {}", self.endpoint, chain(&e))))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| CallError(format!("{op}: reading the response: {}", chain(&e))))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let kind = v["__type"]
                .as_str()
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
                .unwrap_or_else(|| status.to_string());
            let msg = v["message"]
                .as_str()
                .or(v["Message"].as_str())
                .unwrap_or("");
            return Err(CallError(format!("{op}: {kind}: {msg}")));
        }
        if v.is_null() {
            return Err(CallError(format!(
                "{op}: not a JSON answer (is {} the AWS emulator?)",
                self.endpoint
            )));
        }
        Ok(v)
    }
}

/// An error and its causes, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// A SigV4-shaped `Authorization` header for `service` that moto accepts,
/// made with `access_key` (the emulator authorises a function's key against
/// the function's role).
pub fn authorization(
    service: &str,
    region: &str,
    signed_headers: &str,
    access_key: &str,
) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{}/{region}/{service}/aws4_request, SignedHeaders={signed_headers}, Signature=0",
        sigv4_day(time::OffsetDateTime::now_utc())
    )
}

/// `x-amz-date` for a request sent now.
pub fn amz_date() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{}T{:02}{:02}{:02}Z",
        sigv4_day(now),
        now.hour(),
        now.minute(),
        now.second()
    )
}

fn sigv4_day(t: time::OffsetDateTime) -> String {
    format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The service a call is for, from the SigV4 credential scope
/// (`Credential=<key>/<date>/<region>/<service>/aws4_request`).
pub fn service_of(authorization: &str) -> String {
    authorization
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or_default()
        .to_string()
}

/// The operation of a call: the JSON protocols (DynamoDB, SQS) name it in
/// `X-Amz-Target` (`DynamoDB_20120810.PutItem`), the query protocol (SNS) in
/// the form body's `Action`.
pub fn operation_of(target: &str, body: &[u8]) -> String {
    if let Some((_, op)) = target.rsplit_once('.') {
        return op.to_string();
    }
    body.split(|b| *b == b'&')
        .find_map(|pair| pair.strip_prefix(b"Action="))
        .map(|op| String::from_utf8_lossy(op).into_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The service a call is counted under: SQS calls per queue
/// (`sqs/<queue name>`, from the JSON protocol's `QueueUrl`), so a benchmark
/// can tell a pipeline's queue from the idle polling of the others.
pub fn counted_service(service: &str, body: &[u8]) -> String {
    if service != "sqs" {
        return service.to_string();
    }
    let request = serde_json::from_slice::<Value>(body).unwrap_or_default();
    sqs_queue_service(request["QueueUrl"].as_str())
}

/// `sqs/<queue name>` for a call on `queue_url` (the URL's last segment).
pub fn sqs_queue_service(queue_url: Option<&str>) -> String {
    let queue = queue_url
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or("unknown");
    format!("sqs/{queue}")
}

/// How many items a DynamoDB write call writes (transaction actions, batch
/// requests; 1 for a single-item write), for the write-unit estimate of the
/// cost model. `None` for other calls.
pub fn items_written(operation: &str, body: &[u8]) -> Option<u64> {
    let count = |v: &Value| v.as_array().map_or(0, |a| a.len() as u64);
    match operation {
        "PutItem" | "UpdateItem" | "DeleteItem" => Some(1),
        "TransactWriteItems" => {
            let v: Value = serde_json::from_slice(body).ok()?;
            // A ConditionCheck writes nothing (it is billed as a read).
            let actions = v["TransactItems"].as_array()?;
            Some(
                actions
                    .iter()
                    .filter(|a| a.get("ConditionCheck").is_none())
                    .count() as u64,
            )
        }
        "BatchWriteItem" => {
            let v: Value = serde_json::from_slice(body).ok()?;
            Some(v["RequestItems"].as_object()?.values().map(count).sum())
        }
        _ => None,
    }
}

/// Who made the calls being counted.
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    /// The functions' SDK calls (seen by the fault proxy).
    Functions,
    /// The SQS pollers that stand in for Lambda's event source mappings.
    EventSourceMappings,
}

impl Caller {
    fn name(self) -> &'static str {
        match self {
            Caller::Functions => "functions",
            Caller::EventSourceMappings => "event-source-mappings",
        }
    }
}

/// service -> operation -> calls.
type CallsByService = BTreeMap<String, BTreeMap<String, u64>>;

/// Calls to the emulator since start, per caller.
#[derive(Default)]
pub struct AwsCalls {
    counts: Mutex<BTreeMap<&'static str, CallsByService>>,
}

impl AwsCalls {
    pub fn count(&self, caller: Caller, service: &str, operation: &str) {
        self.add(caller, service, operation, 1);
    }

    /// Adds `n` to a counter; besides operations, `<Operation>.items` counts
    /// the items DynamoDB write calls wrote ([`items_written`]).
    pub fn add(&self, caller: Caller, service: &str, counter: &str, n: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .entry(caller.name())
            .or_default()
            .entry(service.to_string())
            .or_default()
            .entry(counter.to_string())
            .or_default() += n;
    }

    /// `{"functions": {"dynamodb": {"PutItem": 3}}, ...}` — `GET /_local/aws-calls`.
    pub fn snapshot(&self) -> Value {
        json!(*self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_comes_from_the_credential_scope() {
        assert_eq!(
            service_of(
                "AWS4-HMAC-SHA256 Credential=test/20261127/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x"
            ),
            "dynamodb"
        );
        assert_eq!(
            service_of(&authorization("sqs", "eu-west-1", "host", "test")),
            "sqs"
        );
        assert_eq!(service_of("garbage"), "");
    }

    #[test]
    fn operations_come_from_the_target_or_the_action() {
        assert_eq!(
            operation_of("DynamoDB_20120810.TransactWriteItems", b"{}"),
            "TransactWriteItems"
        );
        assert_eq!(
            operation_of("AmazonSQS.SendMessageBatch", b"{}"),
            "SendMessageBatch"
        );
        assert_eq!(
            operation_of("", b"Action=Publish&TopicArn=arn%3Ax&Version=2010-03-31"),
            "Publish"
        );
        assert_eq!(operation_of("", b"{}"), "unknown");
    }

    #[test]
    fn sqs_calls_are_counted_per_queue() {
        let body = br#"{"QueueUrl": "http://127.0.0.1:5000/123456789012/stack-BatchChunksQueue", "MaxNumberOfMessages": 10}"#;
        assert_eq!(counted_service("sqs", body), "sqs/stack-BatchChunksQueue");
        assert_eq!(counted_service("sqs", b"Action=x"), "sqs/unknown");
        assert_eq!(counted_service("dynamodb", body), "dynamodb");
    }

    #[test]
    fn items_written_per_write_call() {
        let tx = br#"{"TransactItems": [{"Put": {}}, {"Update": {}}, {"ConditionCheck": {}}]}"#;
        assert_eq!(items_written("TransactWriteItems", tx), Some(2));
        let batch = br#"{"RequestItems": {"t": [{"PutRequest": {}}, {"DeleteRequest": {}}], "u": [{"PutRequest": {}}]}}"#;
        assert_eq!(items_written("BatchWriteItem", batch), Some(3));
        assert_eq!(items_written("UpdateItem", b"{}"), Some(1));
        assert_eq!(items_written("GetItem", b"{}"), None);
        assert_eq!(items_written("TransactWriteItems", b"not json"), None);
    }

    #[test]
    fn counts_add_up_per_caller_service_and_operation() {
        let calls = AwsCalls::default();
        calls.count(Caller::Functions, "sqs", "SendMessageBatch");
        calls.count(Caller::Functions, "sqs", "SendMessageBatch");
        calls.count(Caller::EventSourceMappings, "sqs", "ReceiveMessage");
        let s = calls.snapshot();
        assert_eq!(s["functions"]["sqs"]["SendMessageBatch"], 2);
        assert_eq!(s["event-source-mappings"]["sqs"]["ReceiveMessage"], 1);
    }
}
