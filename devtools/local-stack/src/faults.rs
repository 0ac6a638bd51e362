//! Fault-injecting proxy between the functions and the AWS emulator (issue 9:
//! reliability). With `--fault-proxy-addr`, functions get this proxy as their
//! `AWS_ENDPOINT_URL`; it forwards every call to the emulator unchanged unless
//! a rule matches. Rules are set at run time over HTTP, so one test can
//! inject faults into its own tenant's traffic while other tests run:
//!
//! ```text
//! POST   /_faults  {"match": "<substring of the request body>", "rate": 0.2,
//!                   "kinds": ["throttle", "error", "slow", "drop", "drop_after", "partial"],
//!                   "services": ["dynamodb", "sqs", "sns"]}   -> {"id": "..."}
//! GET    /_faults  -> rules with how many faults each injected
//! DELETE /_faults/<id>
//! ```
//!
//! Kinds: `throttle` (400 ThrottlingException, which the SDK retries with
//! backoff), `error` (500 InternalServerError), `slow` (1.5 s delay, then the
//! call), `drop` (connection closed before forwarding: nothing applied),
//! `drop_after` (forwarded, then the connection closed: applied but the
//! caller sees a transport error and retries), `partial` (BatchWriteItem /
//! BatchGetItem: half the items answered as UnprocessedItems/Keys).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::emulator::{self, AwsCalls, Caller};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Rule {
    #[serde(default)]
    pub id: String,
    /// Only requests whose body contains this string (e.g. a tenant id).
    #[serde(rename = "match")]
    pub needle: String,
    /// Share of matching requests that get a fault, 0..=1.
    pub rate: f64,
    pub kinds: Vec<Kind>,
    /// Empty = every service.
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub injected: BTreeMap<String, u64>,
    #[serde(default)]
    pub matched: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Throttle,
    Error,
    Slow,
    Drop,
    DropAfter,
    Partial,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Throttle => "throttle",
            Kind::Error => "error",
            Kind::Slow => "slow",
            Kind::Drop => "drop",
            Kind::DropAfter => "drop_after",
            Kind::Partial => "partial",
        }
    }
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    rules: Mutex<Vec<Rule>>,
    calls: Arc<AwsCalls>,
}

/// Why a request gets no answer: hyper closes the connection.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injected: connection dropped")
    }
}

impl std::error::Error for Dropped {}

type Answer = Result<Response<Full<Bytes>>, Dropped>;

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    r
}

fn aws_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let mut r = json_response(status, json!({"__type": code, "message": message}));
    if let Ok(v) = hyper::header::HeaderValue::from_str(code) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

impl Proxy {
    /// The fault to inject into this call, if a rule matches and fires.
    fn pick(&self, service: &str, target: &str, body: &[u8]) -> Option<Kind> {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(body);
        let mut rng = rand::rng();
        for rule in rules.iter_mut() {
            if !(rule.services.is_empty() || rule.services.iter().any(|s| s == service))
                || !text.contains(&rule.needle)
            {
                continue;
            }
            rule.matched += 1;
            if rng.random::<f64>() >= rule.rate {
                return None;
            }
            let batch = target.ends_with(".BatchWriteItem") || target.ends_with(".BatchGetItem");
            let kinds: Vec<Kind> = rule
                .kinds
                .iter()
                .copied()
                .filter(|k| *k != Kind::Partial || batch)
                .collect();
            if kinds.is_empty() {
                return None;
            }
            let kind = kinds[rng.random_range(0..kinds.len())];
            *rule.injected.entry(kind.name().into()).or_default() += 1;
            return Some(kind);
        }
        None
    }

    async fn forward(
        &self,
        method: hyper::Method,
        uri: &hyper::Uri,
        headers: &hyper::HeaderMap,
        body: Bytes,
    ) -> Result<Response<Full<Bytes>>, reqwest::Error> {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.upstream))
            .body(body);
        for (k, v) in headers {
            if k != hyper::header::HOST && k != hyper::header::CONTENT_LENGTH {
                req = req.header(k, v);
            }
        }
        let resp = req.send().await?;
        let mut out = Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            if k != hyper::header::CONTENT_LENGTH && k != hyper::header::TRANSFER_ENCODING {
                out = out.header(k, v);
            }
        }
        let bytes = resp.bytes().await?;
        Ok(out
            .body(Full::new(bytes))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
    }

    /// BatchWriteItem / BatchGetItem with half of each table's entries held
    /// back and answered as unprocessed, as DynamoDB does under load.
    async fn partial(
        &self,
        target: &str,
        uri: &hyper::Uri,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Answer {
        let Ok(mut req) = serde_json::from_slice::<Value>(body) else {
            return Ok(aws_error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                "bad JSON",
            ));
        };
        let write = target.ends_with(".BatchWriteItem");
        let mut held = serde_json::Map::new();
        if let Some(tables) = req["RequestItems"].as_object_mut() {
            for (table, entries) in tables.iter_mut() {
                if write {
                    if let Some(list) = entries.as_array_mut()
                        && list.len() > 1
                    {
                        let back = list.split_off(list.len() / 2);
                        held.insert(table.clone(), Value::Array(back));
                    }
                } else if let Some(keys) = entries["Keys"].as_array_mut()
                    && keys.len() > 1
                {
                    let back = keys.split_off(keys.len() / 2);
                    let mut rest = entries.clone();
                    rest["Keys"] = Value::Array(back);
                    held.insert(table.clone(), rest);
                }
            }
        }
        let sent = Bytes::from(req.to_string());
        let resp = self
            .forward(hyper::Method::POST, uri, headers, sent)
            .await
            .map_err(|_| Dropped)?;
        if !resp.status().is_success() || held.is_empty() {
            return Ok(resp);
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| Dropped)?
            .to_bytes();
        let mut answer: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({}));
        let field = if write {
            "UnprocessedItems"
        } else {
            "UnprocessedKeys"
        };
        if !answer[field].is_object() {
            answer[field] = json!({});
        }
        for (table, entries) in held {
            let slot = &mut answer[field][&table];
            if write {
                let mut all = slot.as_array().cloned().unwrap_or_default();
                all.extend(entries.as_array().cloned().unwrap_or_default());
                *slot = Value::Array(all);
            } else if slot.is_null() {
                *slot = entries;
            } else if let (Some(all), Some(more)) =
                (slot["Keys"].as_array().cloned(), entries["Keys"].as_array())
            {
                let mut all = all;
                all.extend(more.iter().cloned());
                slot["Keys"] = Value::Array(all);
            }
        }
        Ok(json_response(StatusCode::OK, answer))
    }

    async fn control(
        &self,
        method: &hyper::Method,
        path: &str,
        body: &[u8],
    ) -> Response<Full<Bytes>> {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        match (method.as_str(), path.trim_end_matches('/')) {
            ("GET", "/_faults") => json_response(StatusCode::OK, json!({"rules": *rules})),
            ("POST", "/_faults") => match serde_json::from_slice::<Rule>(body) {
                Ok(mut rule) if !rule.needle.is_empty() && (0.0..=1.0).contains(&rule.rate) => {
                    rule.id = uuid::Uuid::new_v4().simple().to_string();
                    rule.injected.clear();
                    rule.matched = 0;
                    let id = rule.id.clone();
                    rules.push(rule);
                    json_response(StatusCode::CREATED, json!({"id": id}))
                }
                Ok(_) => json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "match must be non-empty and rate within 0..1"}),
                ),
                Err(e) => json_response(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
            },
            ("DELETE", p) if p.starts_with("/_faults/") => {
                let id = &p["/_faults/".len()..];
                match rules.iter().position(|r| r.id == id) {
                    Some(i) => json_response(StatusCode::OK, json!(rules.remove(i))),
                    None => json_response(StatusCode::NOT_FOUND, json!({"error": "no such rule"})),
                }
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "unknown control route"}),
            ),
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Answer {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Err(Dropped),
        };
        if parts.uri.path().starts_with("/_faults") {
            return Ok(self.control(&parts.method, parts.uri.path(), &body).await);
        }
        let service = parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(emulator::service_of)
            .unwrap_or_default();
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let operation = emulator::operation_of(&target, &body);
        self.calls.count(
            Caller::Functions,
            &emulator::counted_service(&service, &body),
            &operation,
        );
        if let Some(items) = emulator::items_written(&operation, &body) {
            self.calls.add(
                Caller::Functions,
                &service,
                &format!("{operation}.items"),
                items,
            );
        }
        let fault = self.pick(&service, &target, &body);
        if let Some(kind) = fault {
            tracing::info!(service, target, fault = kind.name(), "fault injected");
        }
        match fault {
            Some(Kind::Throttle) => Ok(aws_error(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate of requests exceeds the allowed throughput (injected).",
            )),
            Some(Kind::Error) => Ok(aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Internal server error (injected).",
            )),
            Some(Kind::Drop) => Err(Dropped),
            Some(Kind::Partial) => {
                self.partial(&target, &parts.uri, &parts.headers, &body)
                    .await
            }
            other => {
                if other == Some(Kind::Slow) {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                let resp = self
                    .forward(parts.method, &parts.uri, &parts.headers, body)
                    .await;
                match (resp, other) {
                    (Ok(_), Some(Kind::DropAfter)) | (Err(_), _) => Err(Dropped),
                    (Ok(r), _) => Ok(r),
                }
            }
        }
    }
}

/// Serves the proxy on `listener`, forwarding to `upstream` and counting
/// every call in `calls`.
pub async fn serve(
    listener: TcpListener,
    upstream: String,
    calls: Arc<AwsCalls>,
) -> anyhow::Result<()> {
    let proxy = Arc::new(Proxy {
        upstream: upstream.trim_end_matches('/').to_string(),
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(60))
            .build()?,
        rules: Mutex::new(Vec::new()),
        calls,
    });
    loop {
        let (stream, _peer): (_, SocketAddr) = listener.accept().await?;
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| proxy.clone().handle(req));
            // A service error (an injected drop) closes the connection: the
            // caller sees a transport error, as when a connection is reset.
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_only_on_matching_bodies_and_services() {
        let proxy = Proxy {
            upstream: String::new(),
            http: reqwest::Client::new(),
            calls: Arc::default(),
            rules: Mutex::new(vec![Rule {
                id: "r".into(),
                needle: "t-123".into(),
                rate: 1.0,
                kinds: vec![Kind::Partial, Kind::Throttle],
                services: vec!["dynamodb".into()],
                injected: BTreeMap::new(),
                matched: 0,
            }]),
        };
        assert_eq!(
            proxy.pick("dynamodb", "DynamoDB_20120810.GetItem", b"{\"t-999\"}"),
            None
        );
        assert_eq!(proxy.pick("sqs", "AmazonSQS.SendMessage", b"t-123"), None);
        // Partial only applies to batch calls.
        assert_eq!(
            proxy.pick("dynamodb", "DynamoDB_20120810.GetItem", b"x t-123 x"),
            Some(Kind::Throttle)
        );
        let rules = proxy.rules.lock().unwrap();
        assert_eq!(rules[0].matched, 1);
        assert_eq!(rules[0].injected["throttle"], 1);
    }
}
