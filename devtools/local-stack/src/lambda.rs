//! Lambda runtime emulator: runs each function as its pre-built binary with a
//! private Runtime API (2018-06-01) server, the way the Lambda service runs a
//! `provided.al2023` function. One invocation at a time per instance; more
//! instances (up to a cap) when all are busy; timeout kills and replaces an
//! instance; a crashed process fails its in-flight invocation.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as AxPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::spec::{FunctionSpec, Stack};

/// Lambda's synchronous invocation payload limit (request and response).
pub const PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct InvokeRequest {
    pub payload: Bytes,
    /// Raw JSON client context (Lambda-Runtime-Client-Context).
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Success(Bytes),
    /// Unhandled function error: JSON `{errorType, errorMessage, ...}`.
    FunctionError(Bytes),
}

impl Outcome {
    fn error(error_type: &str, message: String) -> Self {
        Outcome::FunctionError(Bytes::from(
            json!({"errorType": error_type, "errorMessage": message}).to_string(),
        ))
    }
}

#[derive(Debug)]
pub enum InvokeError {
    NotFound(String),
    TooLarge(usize),
}

pub struct Options {
    pub bin_dir: PathBuf,
    pub log_dir: PathBuf,
    pub echo_logs: bool,
    pub max_instances: usize,
}

/// All functions of the stack.
pub struct Lambda {
    pools: HashMap<String, Arc<Pool>>,
    stack: Arc<Stack>,
    children: Arc<Children>,
    /// Functions handed to an outside runtime (`make watch`: `cargo lambda
    /// watch`), by logical id: the base URL of its Invoke API.
    watched: Mutex<HashMap<String, String>>,
    http: reqwest::Client,
}

/// Every live child process, so shutdown can kill them all.
#[derive(Default)]
pub struct Children {
    pids: Mutex<HashMap<u64, u32>>,
}

impl Children {
    pub fn kill_all(&self) {
        let pids: Vec<u32> = self.pids.lock().unwrap().values().copied().collect();
        for pid in pids {
            kill_group(pid);
        }
    }
}

fn kill_group(pid: u32) {
    // Each function process leads its own process group (see spawn).
    // SAFETY: plain syscalls on a pid we spawned; errors (already gone) are ignored.
    unsafe {
        libc::killpg(pid as libc::pid_t, libc::SIGKILL);
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

impl Lambda {
    pub fn new(stack: Arc<Stack>, opts: Options) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&opts.log_dir)?;
        let children = Arc::new(Children::default());
        let mut pools = HashMap::new();
        for (id, spec) in &stack.functions {
            let log = Arc::new(LogSink::open(
                &opts.log_dir.join(format!("{}.log", spec.binary)),
                opts.echo_logs,
                id.clone(),
            )?);
            pools.insert(
                id.clone(),
                Arc::new(Pool {
                    logical_id: id.clone(),
                    spec: Arc::new(spec.clone()),
                    binary: opts.bin_dir.join(&spec.binary),
                    stack: stack.clone(),
                    permits: Semaphore::new(opts.max_instances.max(1)),
                    idle: Mutex::new(Vec::new()),
                    next_instance: AtomicU64::new(1),
                    log,
                    children: children.clone(),
                }),
            );
        }
        Ok(Lambda {
            pools,
            stack,
            children,
            watched: Mutex::new(HashMap::new()),
            http: reqwest::Client::new(),
        })
    }

    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// From now on, `function`'s invocations go to the Invoke API at `base`
    /// (`cargo lambda watch`), or back to its binary with `None`.
    pub fn watch(&self, function: &str, base: Option<String>) -> Result<(), InvokeError> {
        let pool = self.pool(function)?;
        let mut watched = self.watched.lock().unwrap();
        match base {
            Some(base) => {
                pool.log
                    .line(&format!("WATCH invocations now go to {base} (make watch)"));
                watched.insert(pool.logical_id.clone(), base);
            }
            None => {
                if watched.remove(&pool.logical_id).is_some() {
                    pool.log
                        .line("WATCH ended: invocations go to the binary again");
                }
            }
        }
        Ok(())
    }

    /// The environment the stack gives `function` beyond what a Lambda
    /// runtime sets itself: its identity, the emulator and the template's
    /// variables (the env file of `make watch`).
    pub fn function_env(&self, function: &str) -> Result<Vec<(String, String)>, InvokeError> {
        Ok(stack_env(&self.pool(function)?.spec, &self.stack))
    }

    /// The pool of a function named by binary, logical id, name or ARN.
    fn pool(&self, function: &str) -> Result<&Arc<Pool>, InvokeError> {
        self.resolve(function)
            .map(|id| &self.pools[id])
            .ok_or_else(|| InvokeError::NotFound(function.to_string()))
    }

    pub fn children(&self) -> Arc<Children> {
        self.children.clone()
    }

    /// Resolve a function by logical id, binary, physical name or ARN.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        self.stack.find_function(name)
    }

    /// Invoke synchronously (RequestResponse).
    pub async fn invoke(&self, function: &str, req: InvokeRequest) -> Result<Outcome, InvokeError> {
        let pool = self.pool(function)?.clone();
        if req.payload.len() > PAYLOAD_LIMIT {
            return Err(InvokeError::TooLarge(req.payload.len()));
        }
        let watched = self.watched.lock().unwrap().get(&pool.logical_id).cloned();
        if let Some(base) = watched {
            return Ok(pool.forward(&self.http, &base, req).await);
        }
        // Run detached: a caller that gives up (integration timeout, client
        // gone) must not strand the instance half-way through an invocation.
        let task = tokio::spawn(pool.invoke(req));
        Ok(task.await.unwrap_or_else(|e| {
            Outcome::error("Runtime.Unknown", format!("invocation task failed: {e}"))
        }))
    }
}

/// What a function gets from the stack: its region, its own access key
/// (the emulator enforces its role), the emulator's endpoint, and the
/// template's variables.
fn stack_env(spec: &FunctionSpec, stack: &Stack) -> Vec<(String, String)> {
    let mut env = vec![
        ("AWS_REGION".to_owned(), stack.region.clone()),
        ("AWS_DEFAULT_REGION".to_owned(), stack.region.clone()),
        ("AWS_ACCESS_KEY_ID".to_owned(), spec.access_key().to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
        ("AWS_SESSION_TOKEN".to_owned(), "test".to_owned()),
        ("AWS_ENDPOINT_URL".to_owned(), stack.endpoint.clone()),
    ];
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

struct LogSink {
    file: Mutex<std::fs::File>,
    echo: bool,
    prefix: String,
}

impl LogSink {
    fn open(path: &Path, echo: bool, prefix: String) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(LogSink {
            file: Mutex::new(file),
            echo,
            prefix,
        })
    }

    fn line(&self, line: &str) {
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{line}");
        }
        if self.echo {
            eprintln!("[{}] {line}", self.prefix);
        }
    }
}

struct Pool {
    logical_id: String,
    spec: Arc<FunctionSpec>,
    binary: PathBuf,
    stack: Arc<Stack>,
    permits: Semaphore,
    idle: Mutex<Vec<Arc<Instance>>>,
    next_instance: AtomicU64,
    log: Arc<LogSink>,
    children: Arc<Children>,
}

impl Pool {
    async fn invoke(self: Arc<Self>, req: InvokeRequest) -> Outcome {
        let _permit = self.permits.acquire().await.expect("semaphore closed");
        let inst = loop {
            let candidate = self.idle.lock().unwrap().pop();
            match candidate {
                Some(i) if i.alive() => break i,
                Some(_) => continue,
                None => match self.clone().spawn_instance().await {
                    Ok(i) => break i,
                    Err(e) => {
                        self.log
                            .line(&format!("failed to start {}: {e:#}", self.logical_id));
                        return Outcome::error(
                            "Runtime.InvalidEntrypoint",
                            format!(
                                "cannot start {} ({}): {e:#}; build it first (cargo build -p {})",
                                self.logical_id,
                                self.binary.display(),
                                self.spec.binary
                            ),
                        );
                    }
                },
            }
        };
        let out = inst.invoke(req, &self.spec, &self.log).await;
        if inst.alive() {
            self.idle.lock().unwrap().push(inst);
        }
        out
    }

    /// One invocation through the Invoke API of an outside runtime (`cargo
    /// lambda watch`), with the function's timeout.
    async fn forward(&self, http: &reqwest::Client, base: &str, req: InvokeRequest) -> Outcome {
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            base.trim_end_matches('/'),
            self.spec.binary
        );
        self.log
            .line(&format!("START forwarded to {url} (make watch)"));
        let mut call = http
            .post(&url)
            .timeout(std::time::Duration::from_secs(self.spec.timeout.max(1)))
            .body(req.payload);
        if let Some(ctx) = &req.client_context {
            call = call.header("lambda-runtime-client-context", ctx);
        }
        if let Some(id) = &req.cognito_identity {
            call = call.header("lambda-runtime-cognito-identity", id);
        }
        let resp = match call.send().await {
            Ok(resp) => resp,
            Err(e) => {
                return Outcome::error(
                    "Runtime.Unavailable",
                    format!(
                        "the watched function at {base} does not answer ({e}): is make watch still running?"
                    ),
                );
            }
        };
        let failed =
            resp.headers().contains_key("x-amz-function-error") || !resp.status().is_success();
        match resp.bytes().await {
            Ok(body) if failed => Outcome::FunctionError(body),
            Ok(body) => Outcome::Success(body),
            Err(e) => Outcome::error(
                "Runtime.Unavailable",
                format!("reading the watched function's answer: {e}"),
            ),
        }
    }

    async fn spawn_instance(self: Arc<Self>) -> anyhow::Result<Arc<Instance>> {
        if !self.binary.is_file() {
            anyhow::bail!("binary not found");
        }
        let n = self.next_instance.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel::<Pending>(1);
        let shared = Arc::new(Shared {
            rx: tokio::sync::Mutex::new(rx),
            in_flight: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
            kill: Notify::new(),
            function_arn: self.spec.arn.clone(),
            pid: std::sync::atomic::AtomicU32::new(0),
        });

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr: SocketAddr = listener.local_addr()?;
        let app = runtime_api(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let stream = format!(
            "{}/[$LATEST]{}",
            time_now_date(),
            uuid::Uuid::new_v4().simple()
        );
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear();
        // A minimal base environment, then what Lambda sets, then the template's.
        for key in ["PATH", "HOME", "TZ", "LANG", "RUST_BACKTRACE", "TMPDIR"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.spec.name)
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                self.spec.memory.to_string(),
            )
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.spec.name),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", stream)
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("_HANDLER", &self.spec.handler)
            .env(
                "LAMBDA_TASK_ROOT",
                self.binary.parent().unwrap_or(Path::new(".")),
            )
            .env("TZ", ":UTC");
        cmd.envs(stack_env(&self.spec, &self.stack));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        // If stockroom-local dies without cleaning up (SIGKILL), take the
        // function processes with it.
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        shared.pid.store(pid, Ordering::SeqCst);
        let key = (self.logical_id.len() as u64) << 48 | n;
        self.children.pids.lock().unwrap().insert(key, pid);
        self.log.line(&format!(
            "INIT_START instance {n} pid {pid} runtime-api {addr} binary {}",
            self.binary.display()
        ));

        for (pipe, name) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                "stdout",
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                "stderr",
            ),
        ] {
            let Some(pipe) = pipe else { continue };
            let log = self.log.clone();
            let _ = name;
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    log.line(&line);
                }
            });
        }

        // Watcher: owns the child; kills it on request; on exit fails whatever
        // is in flight the way Lambda reports a crashed runtime.
        let watch_shared = shared.clone();
        let log = self.log.clone();
        let children = self.children.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s.ok(),
                _ = watch_shared.kill.notified() => {
                    kill_group(pid);
                    let _ = child.kill().await;
                    None
                }
            };
            watch_shared.dead.store(true, Ordering::SeqCst);
            children.pids.lock().unwrap().remove(&key);
            server.abort();
            let msg = match status {
                Some(s) => format!("Runtime exited with error: {s}"),
                None => "Runtime exited: instance stopped".to_string(),
            };
            if status.is_some() {
                log.line(&format!("instance {n} (pid {pid}): {msg}"));
            }
            let pending: Vec<(String, oneshot::Sender<Outcome>)> =
                watch_shared.in_flight.lock().unwrap().drain().collect();
            for (id, tx) in pending {
                let _ = tx.send(Outcome::error(
                    "Runtime.ExitError",
                    format!("RequestId: {id} Error: {msg}"),
                ));
            }
        });

        Ok(Arc::new(Instance { tx, shared }))
    }
}

struct Pending {
    request_id: String,
    payload: Bytes,
    deadline_ms: u64,
    client_context: Option<String>,
    cognito_identity: Option<String>,
}

struct Shared {
    rx: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    dead: AtomicBool,
    kill: Notify,
    function_arn: String,
    /// The instance's process, for its peak memory in REPORT lines.
    pid: std::sync::atomic::AtomicU32,
}

struct Instance {
    tx: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
}

impl Instance {
    fn alive(&self) -> bool {
        !self.shared.dead.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        self.shared.dead.store(true, Ordering::SeqCst);
        self.shared.kill.notify_one();
    }

    async fn invoke(&self, req: InvokeRequest, spec: &FunctionSpec, log: &LogSink) -> Outcome {
        let request_id = uuid::Uuid::new_v4().to_string();
        let timeout = Duration::from_secs(spec.timeout.max(1));
        let start = Instant::now();
        let (tx, rx) = oneshot::channel();
        self.shared
            .in_flight
            .lock()
            .unwrap()
            .insert(request_id.clone(), tx);
        // The watcher marks the instance dead before it drains in_flight, so
        // an instance seen alive here will answer (or fail) this invocation.
        if !self.alive() {
            self.shared.in_flight.lock().unwrap().remove(&request_id);
            return Outcome::error(
                "Runtime.ExitError",
                format!("RequestId: {request_id} Error: Runtime exited"),
            );
        }
        log.line(&format!("START RequestId: {request_id} Version: $LATEST"));
        let pending = Pending {
            request_id: request_id.clone(),
            payload: req.payload,
            deadline_ms: now_ms() + timeout.as_millis() as u64,
            client_context: req.client_context,
            cognito_identity: req.cognito_identity,
        };
        if self.tx.send(pending).await.is_err() {
            self.stop();
        }
        let out = tokio::select! {
            r = rx => r.unwrap_or_else(|_| Outcome::error(
                "Runtime.ExitError",
                format!("RequestId: {request_id} Error: Runtime exited"),
            )),
            _ = tokio::time::sleep(timeout) => {
                self.shared.in_flight.lock().unwrap().remove(&request_id);
                self.stop();
                log.line(&format!(
                    "{request_id} Task timed out after {:.2} seconds",
                    timeout.as_secs_f64()
                ));
                Outcome::error(
                    "Sandbox.Timedout",
                    format!(
                        "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                        timeout.as_secs_f64()
                    ),
                )
            }
        };
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        log.line(&format!("END RequestId: {request_id}"));
        // Like Lambda's "Max Memory Used": the instance's peak resident size.
        let peak = peak_rss_mb(self.shared.pid.load(Ordering::SeqCst))
            .map(|mb| format!("\tMax Memory Used: {mb} MB"))
            .unwrap_or_default();
        log.line(&format!(
            "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB{peak}",
            ms.ceil() as u64,
            spec.memory
        ));
        out
    }
}

/// Peak resident set size of a process, in MB (`VmHWM`), where /proc has it.
fn peak_rss_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb.div_ceil(1024))
}

fn time_now_date() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}/{:02}/{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn runtime_api(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .layer(DefaultBodyLimit::max(PAYLOAD_LIMIT + 1024 * 1024))
        .with_state(shared)
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    let pending = s.rx.lock().await.recv().await;
    let Some(p) = pending else {
        return (StatusCode::GONE, "instance stopped").into_response();
    };
    let mut headers = HeaderMap::new();
    let mut put = |k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            headers.insert(k, v);
        }
    };
    put("lambda-runtime-aws-request-id", &p.request_id);
    put("lambda-runtime-deadline-ms", &p.deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &s.function_arn);
    put(
        "lambda-runtime-trace-id",
        &format!(
            "Root=1-{:08x}-{};Parent={};Sampled=0;Lineage=1",
            now_ms() / 1000,
            &uuid::Uuid::new_v4().simple().to_string()[..24],
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        ),
    );
    if let Some(cc) = &p.client_context {
        put("lambda-runtime-client-context", cc);
    }
    if let Some(ci) = &p.cognito_identity {
        put("lambda-runtime-cognito-identity", ci);
    }
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, p.payload).into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

fn unknown_request() -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"})),
    )
        .into_response()
}

async fn response(
    State(s): State<Arc<Shared>>,
    AxPath(id): AxPath<String>,
    body: Bytes,
) -> Response {
    let Some(tx) = s.in_flight.lock().unwrap().remove(&id) else {
        return unknown_request();
    };
    if body.len() > PAYLOAD_LIMIT {
        let _ = tx.send(Outcome::error(
            "Function.ResponseSizeTooLarge",
            format!(
                "Response payload size ({} bytes) exceeded maximum allowed payload size ({PAYLOAD_LIMIT} bytes).",
                body.len()
            ),
        ));
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(
                json!({"errorMessage": "Payload too large", "errorType": "RequestEntityTooLarge"}),
            ),
        )
            .into_response();
    }
    let _ = tx.send(Outcome::Success(body));
    accepted()
}

fn error_body(headers: &HeaderMap, body: Bytes) -> Bytes {
    if serde_json::from_slice::<serde_json::Value>(&body)
        .map(|v| v.is_object())
        .unwrap_or(false)
    {
        return body;
    }
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled");
    Bytes::from(
        json!({"errorType": error_type, "errorMessage": String::from_utf8_lossy(&body)})
            .to_string(),
    )
}

async fn error(
    State(s): State<Arc<Shared>>,
    AxPath(id): AxPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(tx) = s.in_flight.lock().unwrap().remove(&id) else {
        return unknown_request();
    };
    let _ = tx.send(Outcome::FunctionError(error_body(&headers, body)));
    accepted()
}

async fn init_error(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = error_body(&headers, body);
    let pending: Vec<_> = s.in_flight.lock().unwrap().drain().collect();
    for (_, tx) in pending {
        let _ = tx.send(Outcome::FunctionError(body.clone()));
    }
    // Lambda tears the environment down after an init error.
    s.dead.store(true, Ordering::SeqCst);
    s.kill.notify_one();
    accepted()
}
