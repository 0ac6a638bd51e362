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
//!   `/error`), which includes the first calls to the emulator, and
//! * warm: the same event handed to the same process a second time, from
//!   the answer to its `next` to its response.
//!
//! References in the same run: `hello-lambda` (a bare `lambda_runtime`
//! echo built with the same profile from the same directory), and the ideal
//! cold start of a function — hello-lambda's first response plus the
//! function's own warm invocation — since the first response of a function
//! that reads DynamoDB includes the emulator's service time, which no binary
//! can shorten. Each time is the median of `rounds` fresh processes; the
//! ratio is the median of each round's first response against the same
//! round's reference (one process of every binary per round).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::mpsc;

/// (row label, binary, sample event): each function with an event that
/// does its first store call, like a real first event.
const EVENTS: &[(&str, &str, &str)] = &[
    ("authorizer", "authorizer", "authorizer/demo-key.json"),
    ("items-api", "items-api", "items-api/get-item.json"),
    ("batches-api", "batches-api", "batches-api/get-batch.json"),
    ("keys-api", "keys-api", "keys-api/list-keys.json"),
    (
        "webhooks-api",
        "webhooks-api",
        "webhooks-api/list-webhooks.json",
    ),
    ("batch-worker", "batch-worker", "batch-worker/chunk.json"),
    // A notification for a batch the stack does not have: the splitter
    // looks it up in DynamoDB and lets it go, every time the same work.
    // (A real upload would be split by the first invocation only, and the
    // stack's own splitter would race for it.)
    (
        "batch-splitter",
        "batch-splitter",
        "batch-splitter/upload-notification.json",
    ),
    // S3's test event needs no call at all: init alone against hello-lambda's
    // whole first response, the worst case of the ratio.
    (
        "splitter (S3 test)",
        "batch-splitter",
        "batch-splitter/s3-test-event.json",
    ),
    (
        "webhook-dispatcher",
        "webhook-dispatcher",
        "webhook-dispatcher/event.json",
    ),
    // A stream batch (a movement inserted, its item modified): one
    // `stock.changed` published to the topic and the webhook events queue,
    // which drops the repeats as duplicates (same event id).
    (
        "events-publisher",
        "events-publisher",
        "events-publisher/stream-batch.json",
    ),
];

/// Invocations per process: the cold one and one warm.
const INVOCATIONS: u32 = 2;

#[derive(Debug)]
enum Mark {
    /// Invocation `n` handed out (n = 1: init done).
    Served(u32),
    Answered {
        n: u32,
        error: bool,
    },
}

struct Runtime {
    event: Bytes,
    started: Instant,
    marks: mpsc::UnboundedSender<(Mark, Duration)>,
    served: Mutex<u32>,
    /// How long the first event waits after init asks for it.
    hold: Duration,
}

async fn next(State(rt): State<Arc<Runtime>>) -> axum::response::Response {
    let n = {
        let mut served = rt.served.lock().unwrap_or_else(|e| e.into_inner());
        *served += 1;
        *served
    };
    if n > INVOCATIONS {
        // Done with this process: park the runtime until it is killed.
        std::future::pending::<()>().await;
    }
    let _ = rt.marks.send((Mark::Served(n), rt.started.elapsed()));
    if n == 1 {
        tokio::time::sleep(rt.hold).await;
    }
    let mut headers = HeaderMap::new();
    let deadline = (std::time::SystemTime::now() + Duration::from_secs(30))
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    for (k, v) in [
        ("lambda-runtime-aws-request-id", n.to_string()),
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

fn answered(rt: &Runtime, id: &str, error: bool) -> StatusCode {
    let n = id.parse().unwrap_or(0);
    let _ = rt
        .marks
        .send((Mark::Answered { n, error }, rt.started.elapsed()));
    StatusCode::ACCEPTED
}

/// One process's figures, in ms from exec.
struct Start {
    ready: f64,
    first: f64,
    warm: f64,
    error: bool,
}

/// One cold start and one warm invocation; `hold`: how long the first event
/// waits after init asks for it, left out of `first`.
async fn once(
    binary: &Path,
    env: &BTreeMap<String, String>,
    event: &[u8],
    hold: Duration,
) -> Result<Start> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let rt = Arc::new(Runtime {
        event: Bytes::copy_from_slice(event),
        started,
        marks: tx,
        served: Mutex::new(0),
        hold,
    });
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(
                |State(rt): State<Arc<Runtime>>, UrlPath(id): UrlPath<String>| async move {
                    answered(&rt, &id, false)
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(
                |State(rt): State<Arc<Runtime>>, UrlPath(id): UrlPath<String>| async move {
                    answered(&rt, &id, true)
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(|State(rt): State<Arc<Runtime>>| async move { answered(&rt, "0", true) }),
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
    let (mut served, mut answered) = (BTreeMap::new(), BTreeMap::new());
    let mut error = false;
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some((mark, at)) = rx.recv().await {
            let at = at.saturating_sub(offset).as_secs_f64() * 1000.0;
            match mark {
                Mark::Served(n) => {
                    served.insert(n, at);
                }
                Mark::Answered { n, error: e } => {
                    error |= e;
                    answered.insert(n, at);
                    // An init error ends the process: no warm invocation.
                    if n == 0 || n == INVOCATIONS {
                        return;
                    }
                }
            }
        }
    })
    .await;
    let _ = child.kill().await;
    server.abort();
    if outcome.is_err() {
        bail!("{} gave no answer in 30 s", binary.display());
    }
    let first = match (answered.get(&1), answered.get(&0)) {
        (Some(first), _) => first - hold.as_secs_f64() * 1000.0,
        (None, Some(init_error)) => *init_error,
        (None, None) => bail!("{} never answered", binary.display()),
    };
    let warm = match (served.get(&2), answered.get(&2)) {
        (Some(s), Some(a)) => a - s,
        _ => f64::NAN,
    };
    Ok(Start {
        ready: served.get(&1).copied().unwrap_or(first),
        first,
        warm,
        error,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The environment Lambda and the template give `function` (by binary name).
fn function_env(stack: &Value, binary: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    // The trust-store settings pass through, to compare stores
    // (docs/performance.md).
    for key in [
        "PATH",
        "HOME",
        "LANG",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "STOCKROOM_SDK_TLS_ROOTS",
    ] {
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

/// One binary's figures over the rounds, ms from exec.
#[derive(Default)]
struct Samples {
    ready: Vec<f64>,
    first: Vec<f64>,
    warm: Vec<f64>,
    errors: usize,
}

/// How the benchmark runs the functions.
#[derive(Clone, Copy, Debug, Default)]
pub struct Modes {
    /// The functions reach the emulator through an HTTPS front that keeps
    /// connections alive, as AWS endpoints do (`tls_front.rs`).
    pub tls: bool,
    /// Every function also runs a second time per round with
    /// `STOCKROOM_WARM_CONNECTIONS=true` (its first connection opened during
    /// init), a row of its own beside the plain one.
    pub warm: bool,
    /// Init runs ahead of the first event, as for provisioned concurrency:
    /// the Runtime API hands the first event out [`AHEAD`] after init asks
    /// for it, and the times leave that wait out.
    pub ahead: bool,
}

/// How long an `ahead` environment waits for its first event.
const AHEAD: Duration = Duration::from_millis(50);

impl Modes {
    pub fn parse(words: &[&str]) -> Result<Self> {
        let mut modes = Self::default();
        for word in words {
            match *word {
                "tls" => modes.tls = true,
                "warm" => modes.warm = true,
                "ahead" => modes.ahead = true,
                other => bail!("cold-start modes are tls, warm and ahead, not {other:?}"),
            }
        }
        Ok(modes)
    }
}

pub async fn run(bin_dir: PathBuf, rounds: usize, modes: Modes) -> Result<()> {
    let tls = modes.tls;
    let hold = if modes.ahead { AHEAD } else { Duration::ZERO };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let stack: Value = serde_json::from_slice(
        &std::fs::read(root.join(".local/stack.json"))
            .context(".local/stack.json: start the local stack first")?,
    )?;
    let front = if tls {
        let endpoint = stack["endpoint"]
            .as_str()
            .context("stack.json has no endpoint")?;
        Some(crate::tls_front::start(endpoint, &root.join(".local")).await?)
    } else {
        None
    };
    println!(
        "cold start: exec -> first response, {rounds} rounds of one fresh process per binary, binaries in {}",
        bin_dir.display()
    );
    if modes.ahead {
        println!(
            "  ahead: init runs ahead of the first event, as with provisioned concurrency\n  \
             (AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency): the first event is handed\n  \
             out {} ms after init asks for it; first leaves that wait out",
            AHEAD.as_millis()
        );
    }
    if modes.warm {
        println!(
            "  `+ warm-up` rows: the same binary with STOCKROOM_WARM_CONNECTIONS=true (its first\n  \
             connection opened on a task during init), in the same rounds"
        );
    }
    if let Some(front) = &front {
        println!(
            "  over TLS: the functions call the emulator through {} (keep-alive, certificate\n  \
             trusted through SSL_CERT_FILE and STOCKROOM_SDK_TLS_ROOTS=system)",
            front.url
        );
    }
    println!(
        "  ready: exec -> first `next` (init); first: exec -> first response; warm: the same\n  \
         event again in the same process (medians); ideal: hello-lambda's first + warm;\n  \
         ratio: median over the rounds of first / (that round's hello-lambda first + warm)\n  \
         (target <= 1.5); of medians: first / ideal; vs hello: first / hello-lambda's first;\n  \
         1st call: first - ready - warm, what the first event costs more than a warm one"
    );
    println!(
        "{:<29} {:>9} {:>9} {:>8} {:>9} {:>7} {:>10} {:>9} {:>9}  answer",
        "function",
        "ready ms",
        "first ms",
        "warm ms",
        "ideal ms",
        "ratio",
        "of medians",
        "vs hello",
        "1st call"
    );
    let mut cases: Vec<(String, &str, Vec<u8>, bool)> = vec![(
        "hello-lambda".to_owned(),
        "hello-lambda",
        b"{\"hello\":1}".to_vec(),
        false,
    )];
    for (label, binary, event) in EVENTS {
        let path = root.join("events").join(event);
        let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        cases.push(((*label).to_owned(), binary, bytes.clone(), false));
        if modes.warm {
            cases.push((format!("{label} + warm-up"), binary, bytes, true));
        }
    }
    let mut runs = Vec::new();
    for (label, binary, event, warm_up) in cases {
        let path = bin_dir.join(binary);
        if path.is_file() {
            let mut env = function_env(&stack, binary);
            if let Some(front) = &front {
                env.insert("AWS_ENDPOINT_URL".to_owned(), front.url.clone());
                env.insert("STOCKROOM_SDK_TLS_ROOTS".to_owned(), "system".to_owned());
                env.insert(
                    "SSL_CERT_FILE".to_owned(),
                    front.cert_file.display().to_string(),
                );
                env.remove("SSL_CERT_DIR");
            }
            if modes.ahead {
                env.insert(
                    "AWS_LAMBDA_INITIALIZATION_TYPE".to_owned(),
                    "provisioned-concurrency".to_owned(),
                );
            }
            // Whatever the template sets: both ways, side by side.
            env.insert("STOCKROOM_WARM_CONNECTIONS".to_owned(), warm_up.to_string());
            runs.push((label, path, env, event));
        } else if binary == "hello-lambda" {
            bail!(
                "hello-lambda, the reference, is not built in {}",
                bin_dir.display()
            );
        } else if !warm_up {
            println!("{label:<29} not built in {}", bin_dir.display());
        }
    }
    // Round-robin, one process of every binary per round: the machine's
    // drift over the minute the benchmark takes then touches the reference
    // and every function alike instead of whichever ran during it.
    let mut samples: Vec<Samples> = runs.iter().map(|_| Samples::default()).collect();
    for _ in 0..rounds {
        for ((_, path, env, event), samples) in runs.iter().zip(samples.iter_mut()) {
            let start = once(path, env, event, hold).await?;
            samples.ready.push(start.ready);
            samples.first.push(start.first);
            samples.warm.push(start.warm);
            samples.errors += usize::from(start.error);
        }
    }
    let hello_firsts = samples[0].first.clone();
    let hello = median(hello_firsts.clone());
    for ((label, ..), samples) in runs.iter().zip(samples) {
        let is_reference = label == "hello-lambda";
        // Each round's first response against the same round's reference:
        // paired, so a slow minute of the machine slows both sides.
        let paired: Vec<f64> = samples
            .first
            .iter()
            .zip(&samples.warm)
            .zip(&hello_firsts)
            .map(|((first, warm), hello)| {
                if is_reference {
                    first / hello
                } else {
                    first / (hello + warm)
                }
            })
            .collect();
        let first_call: Vec<f64> = samples
            .first
            .iter()
            .zip(&samples.ready)
            .zip(&samples.warm)
            .map(|((first, ready), warm)| first - ready - warm)
            .collect();
        let (ready, first, warm) = (
            median(samples.ready),
            median(samples.first),
            median(samples.warm),
        );
        // hello-lambda's own warm echo is part of its first response already.
        let ideal = if is_reference { first } else { hello + warm };
        println!(
            "{label:<29} {ready:>9.1} {first:>9.1} {warm:>8.1} {ideal:>9.1} {:>7.2} {:>10.2} {:>9.2} {:>9.1}  {}",
            median(paired),
            first / ideal,
            first / hello,
            median(first_call),
            if samples.errors == 0 {
                "response"
            } else {
                "error"
            }
        );
    }
    Ok(())
}
