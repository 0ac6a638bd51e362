//! `stockroom webhooks listen`: a local webhook receiver that prints every
//! delivery and verifies its Standard Webhooks signature.

use crate::error::CliError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use standardwebhooks::Webhook;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

struct Listener {
    verifier: Option<Webhook>,
    fail_first: u32,
    seen: AtomicU32,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-")
}

async fn receive(
    State(app): State<Arc<Listener>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = app.seen.fetch_add(1, Ordering::SeqCst) + 1;
    let verdict = match &app.verifier {
        None => Ok("not checked (no --secret)".to_owned()),
        Some(webhook) => match webhook.verify(&body, &headers) {
            Ok(()) => Ok("valid".to_owned()),
            Err(e) => Err(format!("INVALID ({e})")),
        },
    };
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    println!(
        "#{n} POST {} webhook-id={} type={} request-id={} signature {}",
        uri.path(),
        header(&headers, "webhook-id"),
        event["type"].as_str().unwrap_or("?"),
        header(&headers, "x-request-id"),
        verdict.as_ref().unwrap_or_else(|e| e),
    );
    println!("    {}", String::from_utf8_lossy(&body));
    let status = if n <= app.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if verdict.is_err() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    if status != StatusCode::OK {
        println!("    -> {}", status.as_u16());
    }
    status
}

/// The secret as the Standard Webhooks library reads it (`whsec_` + base64).
fn verifier(secret: &str) -> Result<Webhook, CliError> {
    let ok = secret
        .strip_prefix("whsec_")
        .is_some_and(|b64| !b64.is_empty());
    ok.then(|| Webhook::new(secret).ok())
        .flatten()
        .ok_or_else(|| CliError::usage("--secret must be a webhook secret: whsec_<base64>"))
}

pub async fn listen(port: u16, secret: Option<String>, fail_first: u32) -> anyhow::Result<()> {
    let verifier = match secret.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(verifier(s)?),
        None => None,
    };
    let app = Arc::new(Listener {
        verifier,
        fail_first,
        seen: AtomicU32::new(0),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| CliError::usage(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let port = listener.local_addr()?.port();
    println!("listening on http://127.0.0.1:{port}/ (Ctrl-C to stop)");
    axum::serve(listener, Router::new().fallback(receive).with_state(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
