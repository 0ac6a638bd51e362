//! API Gateway REST API emulator (Lambda proxy integration, REQUEST/TOKEN
//! Lambda authorizers, gateway responses), driven by the routes of the
//! translated template.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::Digest as _;

use crate::gwresponse::{self, Context as GwContext, ResponseType};
use crate::lambda::{InvokeError, InvokeRequest, Lambda, Outcome};
use crate::policy::{self, Decision};
use crate::routes::Router as RouteTable;
use crate::spec::{ApiKeySource, ApiSpec, AuthorizerSpec};
use crate::usage::{TokenBucket, UsagePlans, Verdict};

/// REST API payload limit.
pub const BODY_LIMIT: usize = 10 * 1024 * 1024;
/// Default REST API integration timeout.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

pub struct Gateway {
    lambda: Arc<Lambda>,
    api: ApiSpec,
    routes: RouteTable,
    account_id: String,
    region: String,
    cache: Mutex<HashMap<String, (Instant, AuthOutput)>>,
    throttle: Option<Mutex<TokenBucket>>,
    usage: UsagePlans,
}

#[derive(Debug, Clone)]
struct AuthOutput {
    principal_id: String,
    policy: Value,
    context: Map<String, Value>,
    /// The API key the request is metered against (API key source AUTHORIZER).
    usage_identifier_key: Option<String>,
}

/// Everything about one incoming request that events and responses need.
struct Req {
    request_id: String,
    extended_request_id: String,
    method: Method,
    /// Path without the stage, percent-decoded.
    path: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    source_ip: String,
    host: String,
    start_epoch_ms: i64,
    request_time: String,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn single_headers(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in &self.headers {
            m.insert(k.clone(), Value::String(v.clone()));
        }
        Value::Object(m)
    }

    fn multi_headers(&self) -> Value {
        multi(&self.headers)
    }

    fn single_query(&self) -> Value {
        if self.query.is_empty() {
            return Value::Null;
        }
        let mut m = Map::new();
        for (k, v) in &self.query {
            m.insert(k.clone(), Value::String(v.clone()));
        }
        Value::Object(m)
    }

    fn multi_query(&self) -> Value {
        if self.query.is_empty() {
            return Value::Null;
        }
        multi(&self.query)
    }
}

fn multi(pairs: &[(String, String)]) -> Value {
    let mut m: Map<String, Value> = Map::new();
    for (k, v) in pairs {
        match m.get_mut(k) {
            Some(Value::Array(a)) => a.push(Value::String(v.clone())),
            _ => {
                m.insert(k.clone(), json!([v]));
            }
        }
    }
    Value::Object(m)
}

fn map_or_null(m: &BTreeMap<String, String>) -> Value {
    if m.is_empty() { Value::Null } else { json!(m) }
}

/// Percent-decoding (`plus_as_space` for query strings).
pub fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn short_id(seed: &str, n: usize) -> String {
    let h = sha2::Sha256::digest(seed.as_bytes());
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    h.iter()
        .take(n)
        .map(|b| A[*b as usize % A.len()] as char)
        .collect()
}

fn media_type_matches(pattern: &str, content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let p = pattern.trim().to_ascii_lowercase();
    if p == "*/*" || p == ct {
        return true;
    }
    match (p.split_once('/'), ct.split_once('/')) {
        (Some((pt, "*")), Some((ctt, _))) => pt == ctt,
        _ => false,
    }
}

/// The access-log metric filter counts 429s on AWS; here an EMF line in the
/// gateway's log lets `make metrics` count them too.
/// Where the local stack's seeded sample webhook delivers (make run).
pub const WEBHOOK_SINK_PATH: &str = "/_local/webhook-sink";

fn log_rate_limited() {
    println!(
        "{}",
        json!({
            "_aws": {"Timestamp": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
                "CloudWatchMetrics": [{"Namespace": "Stockroom",
                    "Dimensions": [["function"]],
                    "Metrics": [{"Name": "RateLimitedRequests", "Unit": "Count"}]}]},
            "function": "api-gateway",
            "RateLimitedRequests": 1,
        })
    );
}

enum Rejection {
    Gateway(ResponseType, Option<String>),
}

impl Gateway {
    pub fn new(lambda: Arc<Lambda>) -> anyhow::Result<Self> {
        let stack = lambda.stack().clone();
        let api = stack
            .api
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the template declares no REST API"))?;
        for r in &api.routes {
            if r.mock.is_none() && !stack.functions.contains_key(&r.function) {
                anyhow::bail!(
                    "route {} {} calls unknown function {}",
                    r.method,
                    r.path,
                    r.function
                );
            }
        }
        for (name, a) in &api.authorizers {
            if a.identity_validation_expression.is_some() {
                tracing::warn!(authorizer = %name, "identityValidationExpression is not evaluated locally");
            }
        }
        let throttle = api
            .throttling
            .as_ref()
            .and_then(|t| t.get("* /*"))
            .and_then(|t| match (t.rate_limit, t.burst_limit) {
                (Some(rate), Some(burst)) if rate > 0.0 && burst > 0.0 => {
                    Some(TokenBucket::new(rate, burst))
                }
                _ => None,
            })
            .map(Mutex::new);
        let usage = UsagePlans::new(api.usage_plans.clone(), &stack.endpoint, &stack.region);
        Ok(Gateway {
            usage,
            routes: RouteTable::new(api.routes.clone()),
            account_id: stack.account_id.clone(),
            region: stack.region.clone(),
            lambda,
            api,
            cache: Mutex::new(HashMap::new()),
            throttle,
        })
    }

    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new().fallback(handle).with_state(self)
    }

    fn method_arn(&self, method: &str, path: &str) -> String {
        format!(
            "arn:aws:execute-api:{}:{}:{}/{}/{}/{}",
            self.region,
            self.account_id,
            self.api.api_id,
            self.api.stage,
            method,
            path.trim_start_matches('/')
        )
    }

    fn request_context(&self, r: &Req, resource: &str) -> Value {
        json!({
            "resourceId": short_id(resource, 6),
            "resourcePath": resource,
            "httpMethod": r.method.as_str(),
            "extendedRequestId": r.extended_request_id,
            "requestTime": r.request_time,
            "path": format!("/{}{}", self.api.stage, r.path),
            "accountId": self.account_id,
            "protocol": "HTTP/1.1",
            "stage": self.api.stage,
            "domainPrefix": r.host.split(['.', ':']).next().unwrap_or(""),
            "requestTimeEpoch": r.start_epoch_ms,
            "requestId": r.request_id,
            "identity": {
                "cognitoIdentityPoolId": null,
                "accountId": null,
                "cognitoIdentityId": null,
                "caller": null,
                "sourceIp": r.source_ip,
                "principalOrgId": null,
                "accessKey": null,
                "cognitoAuthenticationType": null,
                "cognitoAuthenticationProvider": null,
                "userArn": null,
                "userAgent": r.header("user-agent"),
                "user": null
            },
            "domainName": r.host,
            "apiId": self.api.api_id,
        })
    }

    fn gw_context(&self, r: &Req, resource: Option<&str>) -> GwContext {
        let mut vars = BTreeMap::new();
        vars.insert("requestId".into(), r.request_id.clone());
        vars.insert("extendedRequestId".into(), r.extended_request_id.clone());
        vars.insert("stage".into(), self.api.stage.clone());
        vars.insert("apiId".into(), self.api.api_id.clone());
        vars.insert("accountId".into(), self.account_id.clone());
        vars.insert("httpMethod".into(), r.method.to_string());
        vars.insert("path".into(), format!("/{}{}", self.api.stage, r.path));
        vars.insert("requestTime".into(), r.request_time.clone());
        vars.insert("requestTimeEpoch".into(), r.start_epoch_ms.to_string());
        vars.insert("domainName".into(), r.host.clone());
        vars.insert("identity.sourceIp".into(), r.source_ip.clone());
        if let Some(ua) = r.header("user-agent") {
            vars.insert("identity.userAgent".into(), ua.to_string());
        }
        if let Some(res) = resource {
            vars.insert("resourcePath".into(), res.to_string());
        }
        GwContext {
            vars,
            error_message: None,
            request_headers: r.headers.iter().cloned().collect(),
            query: r.query.iter().cloned().collect(),
            stage_variables: self.api.stage_variables.clone(),
        }
    }

    fn gateway_response(
        &self,
        r: &Req,
        resource: Option<&str>,
        t: ResponseType,
        message: Option<String>,
    ) -> Response {
        let mut ctx = self.gw_context(r, resource);
        ctx.error_message = message.or_else(|| gwresponse::default_error_message(t));
        ctx.vars
            .insert("error.responseType".into(), t.name().to_string());
        let rendered = gwresponse::render(t, &self.api.gateway_responses, &ctx);
        let mut resp = Response::new(Body::from(rendered.body));
        *resp.status_mut() =
            StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&rendered.content_type) {
            h.insert("content-type", v);
        }
        // Header mappings override the template's content type (as on AWS).
        for (k, v) in rendered.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_str(&v)) {
                h.insert(k, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(t.error_type_header()) {
            h.insert("x-amzn-errortype", v);
        }
        self.standard_headers(h, r);
        resp
    }

    fn standard_headers(&self, h: &mut HeaderMap, r: &Req) {
        if let Ok(v) = HeaderValue::from_str(&r.request_id) {
            h.insert("x-amzn-requestid", v);
        }
        if let Ok(v) = HeaderValue::from_str(&r.extended_request_id) {
            h.insert("x-amz-apigw-id", v);
        }
    }

    async fn authorize(
        &self,
        name: &str,
        spec: &AuthorizerSpec,
        r: &Req,
        resource: &str,
        path_params: &BTreeMap<String, String>,
        method_arn: &str,
    ) -> Result<(AuthOutput, u64), Rejection> {
        let unauthorized = || Rejection::Gateway(ResponseType::Unauthorized, None);
        let mut identity = Vec::new();
        for src in &spec.identity_source {
            let v = match src.kind.as_str() {
                "header" | "multivalueheader" => r.header(&src.name).map(str::to_string),
                "querystring" | "multivaluequerystring" => r
                    .query
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == src.name)
                    .map(|(_, v)| v.clone()),
                "stageVariables" => self.api.stage_variables.get(&src.name).cloned(),
                _ => Some(String::new()),
            };
            identity.push(v.unwrap_or_default());
        }
        // A missing identity source is a 401 without calling the authorizer
        // (always for TOKEN; for REQUEST when caching is enabled).
        let must_have = spec.kind == "token" || spec.ttl_seconds > 0;
        if must_have && identity.iter().any(String::is_empty) {
            return Err(unauthorized());
        }
        let cache_key = format!("{name}\u{0}{}", identity.join("\u{0}"));
        if spec.ttl_seconds > 0 {
            let cached = self.cache.lock().unwrap().get(&cache_key).cloned();
            if let Some((expires, out)) = cached
                && Instant::now() < expires
            {
                return Ok((out, 0));
            }
        }

        let event = if spec.kind == "token" {
            json!({
                "type": "TOKEN",
                "authorizationToken": identity.first().cloned().unwrap_or_default(),
                "methodArn": method_arn,
            })
        } else {
            let mut rc = self.request_context(r, resource);
            rc.as_object_mut().map(|o| o.remove("authorizer"));
            json!({
                "type": "REQUEST",
                "methodArn": method_arn,
                "resource": resource,
                "path": r.path,
                "httpMethod": r.method.as_str(),
                "headers": r.single_headers(),
                "multiValueHeaders": r.multi_headers(),
                "queryStringParameters": r.single_query().as_object().cloned().unwrap_or_default(),
                "multiValueQueryStringParameters": r.multi_query().as_object().cloned().unwrap_or_default(),
                "pathParameters": path_params,
                "stageVariables": self.api.stage_variables,
                "requestContext": rc,
            })
        };
        let started = Instant::now();
        let outcome = self.invoke(&spec.function, event.to_string()).await;
        let latency = started.elapsed().as_millis() as u64;
        let failure = |msg: &str| {
            tracing::warn!(authorizer = %name, request_id = %r.request_id, "authorizer failure: {msg}");
            Rejection::Gateway(ResponseType::AuthorizerFailure, None)
        };
        let payload = match outcome {
            Ok(Outcome::Success(p)) => p,
            Ok(Outcome::FunctionError(e)) => {
                let v: Value = serde_json::from_slice(&e).unwrap_or(Value::Null);
                if v.get("errorMessage").and_then(Value::as_str) == Some("Unauthorized") {
                    return Err(unauthorized());
                }
                return Err(failure(&String::from_utf8_lossy(&e)));
            }
            Err(e) => return Err(failure(&e)),
        };
        let v: Value = serde_json::from_slice(&payload).map_err(|e| failure(&e.to_string()))?;
        let config_error = |msg: &str| {
            tracing::warn!(authorizer = %name, request_id = %r.request_id, "invalid authorizer response: {msg}");
            Rejection::Gateway(ResponseType::AuthorizerConfigurationError, None)
        };
        let principal_id = match v.get("principalId") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(config_error("principalId is missing")),
        };
        let policy_doc = v
            .get("policyDocument")
            .cloned()
            .ok_or_else(|| config_error("policyDocument is missing"))?;
        policy::validate(&policy_doc).map_err(|m| config_error(&m))?;
        let context = match v.get("context") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => {
                if m.values().any(|x| x.is_object() || x.is_array()) {
                    return Err(config_error(
                        "context values must be strings, numbers or booleans",
                    ));
                }
                m.clone()
            }
            Some(_) => return Err(config_error("context must be an object")),
        };
        let usage_identifier_key = v
            .get("usageIdentifierKey")
            .and_then(Value::as_str)
            .map(str::to_string);
        let out = AuthOutput {
            principal_id,
            policy: policy_doc,
            context,
            usage_identifier_key,
        };
        if spec.ttl_seconds > 0 {
            let expires = Instant::now() + Duration::from_secs(spec.ttl_seconds);
            let mut cache = self.cache.lock().unwrap();
            cache.retain(|_, (exp, _)| *exp > Instant::now());
            cache.insert(cache_key, (expires, out.clone()));
        }
        Ok((out, latency))
    }

    /// Invoke with API Gateway's integration timeout.
    async fn invoke(&self, function: &str, payload: String) -> Result<Outcome, String> {
        let req = InvokeRequest {
            payload: Bytes::from(payload),
            ..Default::default()
        };
        match tokio::time::timeout(INTEGRATION_TIMEOUT, self.lambda.invoke(function, req)).await {
            Err(_) => Err("timeout".into()),
            Ok(Err(InvokeError::NotFound(f))) => Err(format!("function {f} not found")),
            Ok(Err(InvokeError::TooLarge(n))) => {
                Err(format!("payload of {n} bytes exceeds Lambda's 6 MB"))
            }
            Ok(Ok(o)) => Ok(o),
        }
    }

    async fn serve(
        &self,
        req: Request,
        peer: SocketAddr,
        r: &mut Option<Req>,
    ) -> (Response, Option<String>) {
        let (parts, body) = req.into_parts();
        let now = time::OffsetDateTime::now_utc();
        let request_time = now
            .format(time::macros::format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
            ))
            .unwrap_or_default();
        let raw_path = parts.uri.path().to_string();
        let stage_prefix = format!("/{}", self.api.stage);
        let path_no_stage = if raw_path == stage_prefix {
            "/".to_string()
        } else if let Some(rest) = raw_path.strip_prefix(&format!("{stage_prefix}/")) {
            format!("/{rest}")
        } else {
            raw_path.clone()
        };
        let mut headers = Vec::new();
        for (k, v) in &parts.headers {
            headers.push((
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
        let host = parts
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        // What API Gateway adds in front of the integration.
        headers.push(("x-forwarded-for".into(), peer.ip().to_string()));
        let server_port = host
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .unwrap_or(80);
        headers.push(("x-forwarded-port".into(), server_port.to_string()));
        headers.push(("x-forwarded-proto".into(), "http".into()));
        let trace = format!(
            "Root=1-{:08x}-{}",
            now.unix_timestamp(),
            &uuid::Uuid::new_v4().simple().to_string()[..24]
        );
        headers.push(("x-amzn-trace-id".into(), trace));

        let extended = base64::engine::general_purpose::STANDARD
            .encode(&uuid::Uuid::new_v4().as_bytes()[..10]);
        *r = Some(Req {
            request_id: uuid::Uuid::new_v4().to_string(),
            extended_request_id: extended,
            method: parts.method.clone(),
            path: percent_decode(&path_no_stage, false),
            headers,
            query: parts.uri.query().map(parse_query).unwrap_or_default(),
            source_ip: peer.ip().to_string(),
            host,
            start_epoch_ms: (now.unix_timestamp_nanos() / 1_000_000) as i64,
            request_time,
        });
        let r = r.as_ref().expect("set above");

        // Dev-only introspection, unless the template itself routes there.
        let matched = self.routes.find(r.method.as_str(), &r.path);
        if matched.is_none() && r.method == Method::POST && r.path == WEBHOOK_SINK_PATH {
            // The seeded sample webhook's target: it accepts every delivery
            // and logs which one arrived (never the payload).
            let header = |name: &str| {
                r.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("")
            };
            println!(
                "{}",
                json!({
                    "message": "webhook delivery received by /_local/webhook-sink",
                    "webhook-id": header("webhook-id"),
                    "signed": !header("webhook-signature").is_empty(),
                })
            );
            return (StatusCode::NO_CONTENT.into_response(), None);
        }
        if matched.is_none() && r.method == Method::GET {
            match r.path.as_str() {
                "/_local/routes" => {
                    return (
                        axum::Json(json!({
                            "api": self.api.logical_id,
                            "api_id": self.api.api_id,
                            "stage": self.api.stage,
                            "routes": self.routes.routes(),
                        }))
                        .into_response(),
                        None,
                    );
                }
                "/_local/health" => {
                    return (axum::Json(json!({"status": "ok"})).into_response(), None);
                }
                _ => {}
            }
        }

        if let Some(t) = &self.throttle
            && !t.lock().unwrap().take()
        {
            log_rate_limited();
            return (
                self.gateway_response(r, None, ResponseType::Throttled, None),
                None,
            );
        }

        let too_large = parts
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > BODY_LIMIT);
        if too_large {
            return (
                self.gateway_response(r, None, ResponseType::RequestTooLarge, None),
                None,
            );
        }
        let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
            Ok(b) => b,
            Err(_) => {
                return (
                    self.gateway_response(r, None, ResponseType::RequestTooLarge, None),
                    None,
                );
            }
        };

        let Some(m) = matched else {
            return (
                self.gateway_response(r, None, ResponseType::MissingAuthenticationToken, None),
                None,
            );
        };
        let resource = m.resource.to_string();
        let route = m.route.clone();
        if let Some(mock) = &route.mock {
            let mut resp = Response::builder().status(mock.status_code);
            for (k, v) in &mock.headers {
                resp = resp.header(k.as_str(), v.as_str());
            }
            let resp = resp
                .header("x-amzn-requestid", r.request_id.as_str())
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
            return (resp, None);
        }
        let path_params = m.path_params.clone();
        let method_arn = self.method_arn(r.method.as_str(), &r.path);

        let mut authorizer_ctx = Value::Null;
        let mut usage_identifier_key = None;
        if let Some(auth_name) = &route.authorizer {
            let Some(spec) = self.api.authorizers.get(auth_name) else {
                return (
                    self.gateway_response(
                        r,
                        Some(&resource),
                        ResponseType::AuthorizerConfigurationError,
                        None,
                    ),
                    None,
                );
            };
            match self
                .authorize(auth_name, spec, r, &resource, &path_params, &method_arn)
                .await
            {
                Err(Rejection::Gateway(t, msg)) => {
                    return (self.gateway_response(r, Some(&resource), t, msg), None);
                }
                Ok((out, latency)) => match policy::evaluate(&out.policy, &method_arn) {
                    Decision::Allow => {
                        let mut ctx = Map::new();
                        for (k, v) in &out.context {
                            let s = match v {
                                Value::String(s) => Value::String(s.clone()),
                                other => Value::String(other.to_string()),
                            };
                            ctx.insert(k.clone(), s);
                        }
                        ctx.insert(
                            "principalId".into(),
                            Value::String(out.principal_id.clone()),
                        );
                        ctx.insert("integrationLatency".into(), json!(latency));
                        authorizer_ctx = Value::Object(ctx);
                        usage_identifier_key = out.usage_identifier_key.clone();
                    }
                    Decision::ExplicitDeny => {
                        return (
                            self.gateway_response(
                                r,
                                Some(&resource),
                                ResponseType::AccessDenied,
                                Some("User is not authorized to access this resource with an explicit deny".into()),
                            ),
                            None,
                        );
                    }
                    Decision::ImplicitDeny => {
                        return (
                            self.gateway_response(
                                r,
                                Some(&resource),
                                ResponseType::AccessDenied,
                                None,
                            ),
                            None,
                        );
                    }
                },
            }
        }

        if route.api_key_required {
            let key = if self.api.api_key_source == ApiKeySource::Authorizer {
                usage_identifier_key.as_deref()
            } else {
                r.header("x-api-key")
            };
            let verdict = self.usage.admit(key).await;
            let rejection = match verdict {
                Verdict::Allowed => None,
                Verdict::InvalidKey => Some(ResponseType::InvalidApiKey),
                Verdict::Throttled => Some(ResponseType::Throttled),
                Verdict::QuotaExceeded => Some(ResponseType::QuotaExceeded),
            };
            if let Some(t) = rejection {
                if t != ResponseType::InvalidApiKey {
                    log_rate_limited();
                }
                return (self.gateway_response(r, Some(&resource), t, None), None);
            }
        }

        let content_type = r.header("content-type").unwrap_or("");
        let binary_type = self
            .api
            .binary_media_types
            .iter()
            .any(|p| media_type_matches(p, content_type));
        let (body_value, is_b64) = if body.is_empty() {
            (Value::Null, false)
        } else {
            match std::str::from_utf8(&body) {
                Ok(s) if !binary_type => (Value::String(s.to_string()), false),
                _ => (
                    Value::String(base64::engine::general_purpose::STANDARD.encode(&body)),
                    true,
                ),
            }
        };
        let mut rc = self.request_context(r, &resource);
        if !authorizer_ctx.is_null() {
            rc["authorizer"] = authorizer_ctx;
        }
        let event = json!({
            "resource": resource,
            "path": r.path,
            "httpMethod": r.method.as_str(),
            "headers": r.single_headers(),
            "multiValueHeaders": r.multi_headers(),
            "queryStringParameters": r.single_query(),
            "multiValueQueryStringParameters": r.multi_query(),
            "pathParameters": map_or_null(&path_params),
            "stageVariables": map_or_null(&self.api.stage_variables),
            "requestContext": rc,
            "body": body_value,
            "isBase64Encoded": is_b64,
        });

        let payload = match self.invoke(&route.function, event.to_string()).await {
            Err(e) if e == "timeout" => {
                return (
                    self.gateway_response(
                        r,
                        Some(&resource),
                        ResponseType::IntegrationTimeout,
                        None,
                    ),
                    Some(route.function.clone()),
                );
            }
            Err(e) => {
                tracing::warn!(request_id = %r.request_id, "integration failure: {e}");
                return (
                    self.gateway_response(r, Some(&resource), ResponseType::BadGateway, None),
                    Some(route.function.clone()),
                );
            }
            Ok(Outcome::FunctionError(e)) => {
                tracing::warn!(
                    request_id = %r.request_id,
                    function = %route.function,
                    "Lambda function error: {}",
                    String::from_utf8_lossy(&e)
                );
                return (
                    self.gateway_response(r, Some(&resource), ResponseType::BadGateway, None),
                    Some(route.function.clone()),
                );
            }
            Ok(Outcome::Success(p)) => p,
        };
        match self.proxy_response(&payload, r) {
            Ok(resp) => (resp, Some(route.function.clone())),
            Err(msg) => {
                tracing::warn!(request_id = %r.request_id, function = %route.function, "Malformed Lambda proxy response: {msg}");
                (
                    self.gateway_response(r, Some(&resource), ResponseType::BadGateway, None),
                    Some(route.function.clone()),
                )
            }
        }
    }

    /// Map a Lambda proxy response (`statusCode`, `headers`,
    /// `multiValueHeaders`, `body`, `isBase64Encoded`) to HTTP.
    fn proxy_response(&self, payload: &[u8], r: &Req) -> Result<Response, String> {
        let v: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        let obj = v.as_object().ok_or("not a JSON object")?;
        let status = obj
            .get("statusCode")
            .and_then(Value::as_u64)
            .ok_or("statusCode missing or not an integer")?;
        let status = StatusCode::from_u16(u16::try_from(status).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let scalar = |v: &Value| -> Result<String, String> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err("header values must be strings".into()),
            }
        };
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut mv_names = Vec::new();
        if let Some(mv) = obj.get("multiValueHeaders").filter(|v| !v.is_null()) {
            for (k, vals) in mv
                .as_object()
                .ok_or("multiValueHeaders must be an object")?
            {
                mv_names.push(k.to_ascii_lowercase());
                for x in vals
                    .as_array()
                    .ok_or("multiValueHeaders values must be lists")?
                {
                    pairs.push((k.clone(), scalar(x)?));
                }
            }
        }
        if let Some(h) = obj.get("headers").filter(|v| !v.is_null()) {
            for (k, x) in h.as_object().ok_or("headers must be an object")? {
                if !mv_names.contains(&k.to_ascii_lowercase()) {
                    pairs.push((k.clone(), scalar(x)?));
                }
            }
        }
        let is_b64 = obj
            .get("isBase64Encoded")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let body = match obj.get("body") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.clone().into_bytes(),
            Some(_) => return Err("body must be a string".into()),
        };
        let content_type = pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone());
        // API Gateway decodes a base64 body only for binary media types.
        let decode = is_b64
            && self.api.binary_media_types.iter().any(|p| {
                media_type_matches(p, content_type.as_deref().unwrap_or("application/json"))
            });
        let body = if decode {
            base64::engine::general_purpose::STANDARD
                .decode(&body)
                .map_err(|e| format!("invalid base64 body: {e}"))?
        } else {
            body
        };
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        for (k, v) in pairs {
            let lk = k.to_ascii_lowercase();
            if matches!(
                lk.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "upgrade"
            ) {
                continue;
            }
            let name = HeaderName::try_from(k).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(&v).map_err(|e| e.to_string())?;
            h.append(name, value);
        }
        if content_type.is_none() {
            h.insert("content-type", HeaderValue::from_static("application/json"));
        }
        self.standard_headers(h, r);
        Ok(resp)
    }
}

async fn handle(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut r = None;
    let (resp, function) = gw.serve(req, peer, &mut r).await;
    let request_id = r.as_ref().map(|r| r.request_id.as_str()).unwrap_or("-");
    tracing::info!(
        target: "gateway",
        "{} {} -> {} in {:.1} ms (request_id={}{})",
        method,
        path,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64() * 1000.0,
        request_id,
        function.map(|f| format!(", function={f}")).unwrap_or_default()
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("/v1/items/a%20b", false), "/v1/items/a b");
        assert_eq!(percent_decode("a+b%2", true), "a b%2");
        assert_eq!(percent_decode("%zz%41", false), "%zzA");
        assert_eq!(
            parse_query("a=1&b=x+y&a=2&c"),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "x y".to_string()),
                ("a".to_string(), "2".to_string()),
                ("c".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn media_types() {
        assert!(media_type_matches("image/*", "image/png"));
        assert!(media_type_matches("*/*", "text/plain"));
        assert!(media_type_matches(
            "application/octet-stream",
            "application/octet-stream; x=1"
        ));
        assert!(!media_type_matches("image/png", "application/json"));
    }
}
