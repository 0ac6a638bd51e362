//! `stockroom-bench cold-start [bin-dir] [rounds]` (issue 8, target 1): for
//! every function, process exec -> first response, the way Lambda starts a
//! `provided.al2023` function: the binary is started with the function's
//! environment from the local stack (`.local/stack.json`: tables, queues,
//! `AWS_ENDPOINT_URL` of the emulator) and a Runtime API served here, which
//! hands it the function's sample event from `events/` and times
//!
//! * ready: exec -> the first `GET /runtime/invocation/next` (init: config,
//!   SDK clients built, no network), and
//! * first response: exec -> `POST /runtime/invocation/<id>/response` (or
//!   `/error`), which includes the first calls to the emulator.
//!
//! Reference in the same run: `hello-lambda` (a bare `lambda_runtime`
//! echo built with the same profile from the same directory). Each figure is
//! the median of `rounds` fresh processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::mpsc;

/// The sample event each function is started with.
const EVENTS: &[(&str, &str)] = &[
    ("authorizer", "authorizer/demo-key.json"),
    ("items-api", "items-api/get-item.json"),
    ("batches-api", "batches-api/get-batch.json"),
    ("keys-api", "keys-api/list-keys.json"),
    ("webhooks-api", "webhooks-api/list-webhooks.json"),
    ("batch-worker", "batch-worker/chunk.json"),
    ("batch-splitter", "batch-splitter/s3-test-event.json"),
    ("webhook-dispatcher", "webhook-dispatcher/event.json"),
];

#[derive(Debug)]
enum Mark {
    Ready,
    Answered { error: bool },
}

struct Runtime {
    event: Bytes,
    started: Instant,
    marks: mpsc::UnboundedSender<(Mark, Duration)>,
    served: Mutex<bool>,
}

async fn next(State(rt): State<Arc<Runtime>>) -> axum::response::Response {
    let _ = rt.marks.send((Mark::Ready, rt.started.elapsed()));
    let first = !std::mem::replace(
        &mut *rt.served.lock().unwrap_or_else(|e| e.into_inner()),
        true,
    );
    if !first {
        // One invocation per process: park the runtime until it is killed.
        std::future::pending::<()>().await;
    }
    let mut headers = HeaderMap::new();
    let deadline = (std::time::SystemTime::now() + Duration::from_secs(30))
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    for (k, v) in [
        (
            "lambda-runtime-aws-request-id",
            "cold-start-bench".to_owned(),
        ),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
    (StatusCode::OK, headers, rt.event.clone()).into_response()
}

fn answered(rt: &Runtime, error: bool) -> StatusCode {
    let _ = rt
        .marks
        .send((Mark::Answered { error }, rt.started.elapsed()));
    StatusCode::ACCEPTED
}

/// One cold start: (ready, first response, answered with an error).
async fn once(
    binary: &Path,
    env: &BTreeMap<String, String>,
    event: &[u8],
) -> Result<(f64, f64, bool)> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let rt = Arc::new(Runtime {
        event: Bytes::copy_from_slice(event),
        started,
        marks: tx,
        served: Mutex::new(false),
    });
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(|State(rt): State<Arc<Runtime>>| async move { answered(&rt, false) }),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(|State(rt): State<Arc<Runtime>>| async move { answered(&rt, true) }),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(|State(rt): State<Arc<Runtime>>| async move { answered(&rt, true) }),
        )
        .with_state(rt.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut cmd = tokio::process::Command::new(binary);
    cmd.env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    // The clock started before the listener was ready: restart it at exec.
    let exec = Instant::now();
    let offset = exec.duration_since(started);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut ready = None;
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some((mark, at)) = rx.recv().await {
            let at = at.saturating_sub(offset).as_secs_f64() * 1000.0;
            match mark {
                Mark::Ready => {
                    ready.get_or_insert(at);
                }
                Mark::Answered { error } => return Some((at, error)),
            }
        }
        None
    })
    .await;
    let _ = child.kill().await;
    server.abort();
    match outcome {
        Ok(Some((first, error))) => Ok((ready.unwrap_or(first), first, error)),
        _ => bail!("{} gave no answer in 30 s", binary.display()),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The environment Lambda and the template give `function` (by binary name).
fn function_env(stack: &Value, binary: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for key in ["PATH", "HOME", "LANG", "TMPDIR"] {
        if let Ok(v) = std::env::var(key) {
            env.insert(key.to_owned(), v);
        }
    }
    let region = stack["region"].as_str().unwrap_or("us-east-1");
    let spec = stack["functions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, f)| f)
        .find(|f| f["binary"] == binary);
    let name = spec
        .and_then(|f| f["name"].as_str())
        .unwrap_or("hello-lambda");
    let memory = spec.and_then(|f| f["memory"].as_u64()).unwrap_or(128);
    for (k, v) in [
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".to_owned()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("AWS_REGION", region.to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_SESSION_TOKEN", "test".to_owned()),
        (
            "AWS_ENDPOINT_URL",
            stack["endpoint"].as_str().unwrap_or_default().to_owned(),
        ),
        ("TZ", ":UTC".to_owned()),
    ] {
        env.insert(k.to_owned(), v);
    }
    for (k, v) in spec
        .and_then(|f| f["env"].as_object())
        .into_iter()
        .flatten()
    {
        env.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
    }
    env
}

pub async fn run(bin_dir: PathBuf, rounds: usize) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let stack: Value = serde_json::from_slice(
        &std::fs::read(root.join(".local/stack.json"))
            .context(".local/stack.json: start the local stack first")?,
    )?;
    println!(
        "cold start: exec -> first response, median of {rounds} fresh processes, binaries in {}",
        bin_dir.display()
    );
    println!(
        "{:<20} {:>10} {:>16} {:>8} {:>10}",
        "function", "ready ms", "first resp. ms", "ratio", "answer"
    );
    let mut cases: Vec<(&str, Vec<u8>)> = vec![("hello-lambda", b"{\"hello\":1}".to_vec())];
    for (binary, event) in EVENTS {
        let path = root.join("events").join(event);
        let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        cases.push((binary, bytes));
    }
    let mut reference = None;
    for (binary, event) in cases {
        let path = bin_dir.join(binary);
        if !path.is_file() {
            println!("{binary:<20} not built in {}", bin_dir.display());
            continue;
        }
        let env = function_env(&stack, binary);
        let (mut ready, mut first, mut errors) = (Vec::new(), Vec::new(), 0);
        for _ in 0..rounds {
            let (r, f, error) = once(&path, &env, &event).await?;
            ready.push(r);
            first.push(f);
            errors += usize::from(error);
        }
        let (ready, first) = (median(ready), median(first));
        let base = *reference.get_or_insert(first);
        println!(
            "{binary:<20} {ready:>10.1} {first:>16.1} {:>8.2} {:>10}",
            first / base,
            if errors == 0 { "response" } else { "error" }
        );
    }
    Ok(())
}
