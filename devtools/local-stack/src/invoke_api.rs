//! Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`), the
//! endpoint `cargo lambda invoke <name> --data-file ...` talks to (it sends the
//! payload and the optional `lambda-runtime-client-context` /
//! `lambda-runtime-cognito-identity` headers, and treats any non-200 answer
//! as an error whose JSON body is `{errorType, errorMessage}`).
//!
//! AWS answers an unhandled function error with 200 + `X-Amz-Function-Error`;
//! cargo-lambda's local client only looks at the status, so a request without
//! the SDK's signature gets 500 + the same header and body, and an AWS SDK
//! (signed request) gets exactly what Lambda returns.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::json;

use crate::lambda::{InvokeError, InvokeRequest, Lambda, Outcome, PAYLOAD_LIMIT};

pub fn router(lambda: Arc<Lambda>) -> Router {
    Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .route("/_local/functions", get(list))
        .route("/_local/functions/{name}/env", get(function_env))
        .route(
            "/_local/functions/{name}/watch",
            axum::routing::put(watch).delete(unwatch),
        )
        .layer(DefaultBodyLimit::max(PAYLOAD_LIMIT * 2))
        .with_state(lambda)
}

async fn list(State(l): State<Arc<Lambda>>) -> Response {
    let fns: Vec<_> = l
        .stack()
        .functions
        .iter()
        .map(|(id, f)| json!({"logical_id": id, "binary": f.binary, "name": f.name, "arn": f.arn}))
        .collect();
    axum::Json(json!({ "functions": fns })).into_response()
}

/// `make watch`: the env file `cargo lambda watch --env-file` reads.
async fn function_env(State(l): State<Arc<Lambda>>, Path(name): Path<String>) -> Response {
    match l.function_env(&name) {
        Ok(env) => {
            let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            ([("content-type", "text/plain")], text).into_response()
        }
        Err(_) => not_found(&name),
    }
}

fn not_found(name: &str) -> Response {
    aws_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        format!("Function not found: {name}"),
    )
}

/// `make watch`: `{"invoke_url": "http://127.0.0.1:<port>"}` hands the
/// function's invocations to that runtime (loopback only).
async fn watch(State(l): State<Arc<Lambda>>, Path(name): Path<String>, body: Bytes) -> Response {
    let url = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["invoke_url"].as_str().map(str::to_owned));
    let Some(url) = url.filter(|u| {
        u.starts_with("http://127.0.0.1:")
            || u.starts_with("http://[::1]:")
            || u.starts_with("http://localhost:")
    }) else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "expected {\"invoke_url\": \"http://127.0.0.1:<port>\"}".into(),
        );
    };
    match l.watch(&name, Some(url)) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => not_found(&name),
    }
}

async fn unwatch(State(l): State<Arc<Lambda>>, Path(name): Path<String>) -> Response {
    match l.watch(&name, None) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => not_found(&name),
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn aws_error(status: StatusCode, kind: &str, message: String) -> Response {
    (
        status,
        [("x-amzn-errortype", kind.to_string())],
        axum::Json(
            json!({"Type": "User", "message": message, "errorType": kind, "errorMessage": message}),
        ),
    )
        .into_response()
}

async fn invoke(
    State(l): State<Arc<Lambda>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sdk = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-"));
    let client_context = header(&headers, "lambda-runtime-client-context").or_else(|| {
        header(&headers, "x-amz-client-context").and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
        })
    });
    let req = InvokeRequest {
        payload: body,
        client_context,
        cognito_identity: header(&headers, "lambda-runtime-cognito-identity"),
    };
    let invocation_type = header(&headers, "x-amz-invocation-type").unwrap_or_default();
    if l.resolve(&name).is_none() {
        return not_found(&name);
    }
    match invocation_type.as_str() {
        "DryRun" => return StatusCode::NO_CONTENT.into_response(),
        "Event" => {
            tokio::spawn(async move {
                let _ = l.invoke(&name, req).await;
            });
            return StatusCode::ACCEPTED.into_response();
        }
        _ => {}
    }
    match l.invoke(&name, req).await {
        Ok(Outcome::Success(payload)) => (
            StatusCode::OK,
            [
                ("content-type", "application/json"),
                ("x-amz-executed-version", "$LATEST"),
            ],
            payload,
        )
            .into_response(),
        Ok(Outcome::FunctionError(payload)) => (
            if sdk {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            },
            [
                ("content-type", "application/json"),
                ("x-amz-function-error", "Unhandled"),
                ("x-amz-executed-version", "$LATEST"),
            ],
            payload,
        )
            .into_response(),
        Err(InvokeError::NotFound(n)) => not_found(&n),
        Err(InvokeError::TooLarge(n)) => aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            format!(
                "Request must be smaller than {PAYLOAD_LIMIT} bytes for the InvokeFunction operation (got {n})"
            ),
        ),
    }
}
