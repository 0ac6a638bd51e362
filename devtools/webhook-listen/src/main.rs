//! A local webhook receiver for development (`make webhook-listen`): prints
//! every delivery and checks its signature against the webhook's secret
//! (401 when it does not verify, so the dispatcher's retries are visible).

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use stockroom::webhooks::signing;

const USAGE: &str = "usage: stockroom-webhook-listen [--port 4000] [--secret whsec_...] [--fail N]
  Register http://127.0.0.1:<port>/ as a webhook on the local stack, then watch.
  --secret   the webhook's signing secret (or STOCKROOM_WEBHOOK_SECRET); without
             it signatures are shown but not checked
  --fail N   answer 500 to the first N deliveries (to watch the retries)";

struct Listener {
    secret: Option<String>,
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
    let verified = match &app.secret {
        None => "not checked (no --secret)".to_owned(),
        Some(secret) => match signing::verify(secret, &headers, &body) {
            Ok(()) => "valid".to_owned(),
            Err(e) => format!("INVALID ({e})"),
        },
    };
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    println!(
        "#{n} POST {} webhook-id={} type={} request-id={} signature {verified}",
        uri.path(),
        header(&headers, "webhook-id"),
        event["type"].as_str().unwrap_or("?"),
        header(&headers, "x-request-id"),
    );
    println!("    {}", String::from_utf8_lossy(&body));
    if n <= app.fail_first {
        println!("    -> 500 (--fail {})", app.fail_first);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if verified.starts_with("INVALID") {
        return StatusCode::UNAUTHORIZED;
    }
    StatusCode::OK
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut port: u16 = 4000;
    let mut secret = std::env::var("STOCKROOM_WEBHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let mut fail_first = 0;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--port" => port = value()?.parse().context("--port")?,
            "--secret" => secret = Some(value()?).filter(|s| !s.is_empty()),
            "--fail" => fail_first = value()?.parse().context("--fail")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let app = Arc::new(Listener {
        secret,
        fail_first,
        seen: AtomicU32::new(0),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    println!("listening on http://127.0.0.1:{port}/ (Ctrl-C to stop)");
    axum::serve(listener, Router::new().fallback(receive).with_state(app)).await?;
    Ok(())
}
