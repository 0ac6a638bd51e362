//! Test support: each test gets its own tenant (its own isolated world) on the
//! running local stack, and an HTTP client pointed at the local gateway.
//!
//! The stack is started by `make test` (or `devtools/local.sh start`); the
//! tests read its address and AWS settings from the environment that
//! `.local/env` provides.

use anyhow::{Context, Result};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use stockroom_app::auth::generate_api_key;
use stockroom_app::ports::ApiKeyStore;
use stockroom_aws::dynamodb::DynamoApiKeyStore;
use stockroom_domain::key::ALL_SCOPES;
use tokio::sync::OnceCell;

pub mod receiver;

/// A free loopback port, for a server of the test's own.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A process the test started, killed and reaped when dropped.
pub struct KilledOnDrop(pub std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tool of the project's Python virtualenv (`.venv/`, made by `make deps`
/// from requirements-dev.txt): tests call `python`, `st` and the others
/// there, never whichever one PATH happens to find.
pub fn venv_tool(name: &str) -> std::path::PathBuf {
    let tool = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(name);
    assert!(
        tool.exists(),
        "{} is missing: run `make deps` (creates .venv from requirements-dev.txt)",
        tool.display()
    );
    tool
}

/// The local gateway: `STOCKROOM_URL`, else the one `.local/env` names.
pub fn base_url() -> String {
    std::env::var("STOCKROOM_URL")
        .or_else(|_| std::env::var("STOCKROOM_API_URL"))
        .unwrap_or_else(|_| "http://127.0.0.1:3000".into())
}

static KEYS: OnceCell<DynamoApiKeyStore> = OnceCell::const_new();
static PLANS: OnceCell<stockroom_admin::UsagePlans> = OnceCell::const_new();

/// The stack's usage plans: every test tenant gets its own API Gateway key on
/// one, as `stockroom-admin create-tenant` does, so each has its own limits.
pub async fn plans() -> Result<&'static stockroom_admin::UsagePlans> {
    PLANS
        .get_or_try_init(|| async {
            let sdk = stockroom_aws::sdk::aws_sdk_config().await;
            stockroom_admin::UsagePlans::from_env(&sdk)
        })
        .await
}

async fn keys() -> Result<&'static DynamoApiKeyStore> {
    KEYS.get_or_try_init(|| async {
        let table = std::env::var("API_KEYS_TABLE").context(
            "API_KEYS_TABLE is not set: run the tests through `make test`, \
             or `source .local/env` after `devtools/local.sh start`",
        )?;
        let sdk = stockroom_aws::sdk::aws_sdk_config().await;
        Ok(DynamoApiKeyStore::from_sdk_config(&sdk, table))
    })
    .await
}

/// A tenant with one API key, created directly in the keys table.
#[derive(Clone)]
pub struct Tenant {
    pub tenant_id: String,
    pub api_key: String,
    pub key_id: String,
    /// The tenant's usage plan key (API Gateway key value).
    pub usage_key: Option<String>,
    pub client: reqwest::Client,
}

impl Tenant {
    pub async fn new() -> Result<Self> {
        Self::with_scopes(ALL_SCOPES).await
    }

    pub async fn with_scopes(scopes: &[&str]) -> Result<Self> {
        Self::on_plan("standard", scopes).await
    }

    /// A new tenant on the stack's usage plan `plan` (`standard`, `trial`).
    pub async fn on_plan(plan: &str, scopes: &[&str]) -> Result<Self> {
        let tenant_id = format!("t-{}", uuid::Uuid::new_v4().simple());
        let usage_key = plans().await?.assign(&tenant_id, plan).await?;
        Self::key_with(&tenant_id, Some(usage_key), scopes).await
    }

    /// A new tenant that was never given a usage plan.
    pub async fn without_plan(scopes: &[&str]) -> Result<Self> {
        let tenant_id = format!("t-{}", uuid::Uuid::new_v4().simple());
        Self::key_with(&tenant_id, None, scopes).await
    }

    /// Another key of the same tenant.
    pub async fn another_key(&self, scopes: &[&str]) -> Result<Self> {
        Self::key_with(&self.tenant_id, self.usage_key.clone(), scopes).await
    }

    async fn key_with(tenant_id: &str, usage_key: Option<String>, scopes: &[&str]) -> Result<Self> {
        let api_key = generate_api_key("sk_test_");
        let record =
            stockroom_admin::key_record(&api_key, tenant_id, "test", scopes, usage_key.clone());
        keys().await?.put_key(&record).await?;
        Ok(Self {
            tenant_id: tenant_id.to_owned(),
            api_key,
            key_id: record.key_id,
            usage_key,
            client: client(),
        })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", base_url()))
            .bearer_auth(&self.api_key)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> RequestBuilder {
        self.request(Method::POST, path).json(body)
    }

    pub fn put_json(&self, path: &str, body: &Value) -> RequestBuilder {
        self.request(Method::PUT, path).json(body)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// Creates an item and returns its JSON, failing the test on any other status.
    /// A webhook to `url` for `events`: its id and signing secret.
    pub async fn create_webhook(&self, url: &str, events: &[&str]) -> Result<(String, String)> {
        let resp = self
            .post_json("/v1/webhooks", &json!({"url": url, "events": events}))
            .send()
            .await?;
        anyhow::ensure!(
            resp.status() == 201,
            "create webhook: {}",
            resp.text().await?
        );
        let body: Value = resp.json().await?;
        Ok((
            body["id"].as_str().context("id")?.to_owned(),
            body["secret"].as_str().context("secret")?.to_owned(),
        ))
    }

    pub async fn create_item(&self, sku: &str, quantity: i64) -> Result<Value> {
        let resp = self
            .post_json("/v1/items", &serde_json::json!({"sku": sku, "name": format!("Item {sku}"), "quantity": quantity}))
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 201, "create {sku}: {}", resp.status());
        Ok(resp.json().await?)
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// An unauthenticated request.
pub fn anonymous(method: Method, path: &str) -> RequestBuilder {
    client().request(method, format!("{}{path}", base_url()))
}

/// Asserts an `application/problem+json` response with this status and code,
/// and returns its body.
pub async fn expect_problem(resp: Response, status: u16, code: &str) -> Result<Value> {
    let got = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = resp.json().await.context("problem body is not JSON")?;
    anyhow::ensure!(got == status, "expected {status} {code}, got {got}: {body}");
    anyhow::ensure!(
        ct.starts_with("application/problem+json"),
        "content-type {ct:?} for {body}"
    );
    anyhow::ensure!(body["code"] == code, "expected code {code}: {body}");
    anyhow::ensure!(body["status"] == status, "status field: {body}");
    for field in ["type", "title", "detail", "request_id"] {
        anyhow::ensure!(body[field].is_string(), "{field} missing: {body}");
    }
    anyhow::ensure!(
        body["request_id"] == request_id.as_str(),
        "request_id {} != header {request_id}",
        body["request_id"]
    );
    Ok(body)
}

pub fn unique_sku(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// `METHOD /path` of every API route in template.yaml, as the local stack
/// rendered them (`.local/stack.json`, written from the translated template).
pub fn template_routes() -> Result<Vec<String>> {
    let mut routes: Vec<String> = stack_routes()?
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap_or_default(),
                r["path"].as_str().unwrap_or_default()
            )
        })
        .collect();
    routes.sort();
    Ok(routes)
}

/// The rendered routes with their authorizer (null for open routes), without
/// each path's `ANY` method (it only answers the methods a path lacks: 405,
/// or the CORS preflight) and mock integrations: not operations of the API.
pub fn stack_routes() -> Result<Vec<Value>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/stack.json");
    let stack: Value = serde_json::from_slice(
        &std::fs::read(&path)
            .with_context(|| format!("reading {} (is the local stack up?)", path.display()))?,
    )?;
    let routes = stack["api"]["routes"]
        .as_array()
        .context("stack.json has no api.routes")?;
    Ok(routes
        .iter()
        .filter(|r| r["mock"].is_null() && r["method"] != "ANY")
        .cloned()
        .collect())
}

/// An environment variable of a function as the local stack runs it
/// (resolved from template.yaml into `.local/stack.json`).
pub fn function_env(function: &str, name: &str) -> Result<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/stack.json");
    let stack: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    stack["functions"][function]["env"][name]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{function} has no env {name}"))
}

/// GET `path`, retrying what a client should retry until `deadline`: "retry
/// later" and gateway errors (the emulator can be saturated by a large batch,
/// a function timing out is a 502, and a quick loop of reads can outrun the
/// plan's rate). Returns the first other answer, whatever its status.
pub async fn get_answer_retrying(
    tenant: &Tenant,
    path: &str,
    deadline: std::time::Instant,
) -> Result<reqwest::Response> {
    loop {
        let resp = tenant.get(path).send().await?;
        let status = resp.status().as_u16();
        if !matches!(status, 429 | 502 | 503 | 504) {
            return Ok(resp);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "GET {path}: still {status} at the deadline"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// GET `path` as JSON, retrying as `get_answer_retrying`. Any other non-200
/// fails.
pub async fn get_retrying(
    tenant: &Tenant,
    path: &str,
    deadline: std::time::Instant,
) -> Result<Value> {
    let resp = get_answer_retrying(tenant, path, deadline).await?;
    let status = resp.status().as_u16();
    anyhow::ensure!(status == 200, "GET {path}: {status}");
    Ok(resp.json().await?)
}

/// Polls `GET /v1/batches/{id}` until the batch reaches a terminal status.
pub async fn wait_for_batch(
    tenant: &Tenant,
    batch_id: &str,
    timeout: std::time::Duration,
) -> Result<Value> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last_succeeded = 0;
    let mut last_failed = 0;
    loop {
        let batch = get_retrying(tenant, &format!("/v1/batches/{batch_id}"), deadline).await?;
        let (s, f) = (
            batch["succeeded"].as_u64().unwrap_or(0),
            batch["failed"].as_u64().unwrap_or(0),
        );
        anyhow::ensure!(
            s >= last_succeeded && f >= last_failed,
            "counts went backwards: {batch}"
        );
        (last_succeeded, last_failed) = (s, f);
        if ["completed", "completed_with_errors", "failed"]
            .contains(&batch["status"].as_str().unwrap_or_default())
        {
            return Ok(batch);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "batch {batch_id} not finished in {timeout:?}: {batch}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Every failure of a batch (all pages), as (record_id, code).
pub async fn all_failures(tenant: &Tenant, batch_id: &str) -> Result<Vec<(String, String)>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/batches/{batch_id}/failures?limit=100&cursor={c}"),
            None => format!("/v1/batches/{batch_id}/failures?limit=100"),
        };
        let page = get_retrying(tenant, &path, deadline).await?;
        for f in page["failures"].as_array().context("failures")? {
            out.push((
                f["record_id"].as_str().unwrap_or_default().to_owned(),
                f["code"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(out),
        }
    }
}

/// Creates an upload batch for `file` and PUTs it as instructed; returns
/// the batch id and the 202 body.
pub async fn upload(t: &Tenant, mode: &str, format: &str, file: &[u8]) -> Result<(String, Value)> {
    upload_declaring(t, mode, format, file, file.len()).await
}

pub async fn create_upload(t: &Tenant, mode: &str, format: &str, declared: usize) -> Result<Value> {
    let resp = t
        .post_json(
            "/v1/batches",
            &json!({"mode": mode, "format": format, "upload": true, "size_bytes": declared}),
        )
        .send()
        .await?;
    anyhow::ensure!(
        resp.status() == 202,
        "POST: {} {:?}",
        resp.status(),
        resp.text().await
    );
    let body: Value = resp.json().await?;
    anyhow::ensure!(body["status"] == "awaiting_upload", "{body}");
    Ok(body)
}

/// PUTs `bytes` to the batch's upload URL with the headers it names (the
/// declared content-length among them, as the signature requires).
pub async fn put_file(accepted: &Value, bytes: &[u8]) -> Result<reqwest::Response> {
    let target = &accepted["upload"];
    anyhow::ensure!(target["method"] == "PUT", "{target}");
    let mut req = client().put(target["url"].as_str().unwrap_or_default());
    for (name, value) in target["headers"].as_object().into_iter().flatten() {
        // reqwest sets content-length from the body; a truncated upload
        // sends fewer bytes than the URL was signed for.
        if name != "content-length" {
            req = req.header(name, value.as_str().unwrap_or_default());
        }
    }
    Ok(req.body(bytes.to_vec()).send().await?)
}

pub async fn upload_declaring(
    t: &Tenant,
    mode: &str,
    format: &str,
    file: &[u8],
    declared: usize,
) -> Result<(String, Value)> {
    let accepted = create_upload(t, mode, format, declared).await?;
    let resp = put_file(&accepted, file).await?;
    anyhow::ensure!(resp.status().is_success(), "PUT: {}", resp.status());
    Ok((
        accepted["batch_id"].as_str().unwrap_or_default().to_owned(),
        accepted,
    ))
}

/// Submits `records` as an inline isolated batch and waits for its end
/// (two minutes at most); returns its id and the batch as it ended.
pub async fn run_isolated_batch(t: &Tenant, records: Value) -> Result<(String, Value)> {
    run_batch(t, "isolated", records).await
}

/// Submits an inline batch in `mode` and waits until it ends: (id, batch).
pub async fn run_batch(t: &Tenant, mode: &str, records: Value) -> Result<(String, Value)> {
    let resp = t
        .post_json("/v1/batches", &json!({"mode": mode, "records": records}))
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 202, "batch: {}", resp.status());
    let id = resp.json::<Value>().await?["batch_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let batch = wait_for_batch(t, &id, std::time::Duration::from_secs(120)).await?;
    Ok((id, batch))
}

/// Creates `skus` (upserts in inline isolated batches of 5,000) with `quantity`
/// each, and waits until they are applied.
pub async fn seed(t: &Tenant, skus: &[String], quantity: i64) -> Result<()> {
    for group in skus.chunks(5000) {
        let records: Vec<Value> = group
            .iter()
            .map(|s| json!({"id": s, "op": "upsert", "sku": s, "name": "Seed", "quantity": quantity}))
            .collect();
        let (_, batch) = run_isolated_batch(t, Value::Array(records)).await?;
        anyhow::ensure!(batch["status"] == "completed", "seed: {batch}");
    }
    Ok(())
}

/// The level of `sku` at `location`, as `GET /v1/items/{sku}/levels` shows it.
pub async fn level_at(t: &Tenant, sku: &str, location: &str) -> Result<Value> {
    let levels: Value = t
        .get(&format!("/v1/items/{sku}/levels"))
        .send()
        .await?
        .json()
        .await?;
    levels["levels"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["location"] == location))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no level at {location}: {levels}"))
}

/// Every element of `field` over all pages of a cursor-paginated GET
/// (`path` without `cursor`; it may carry other query parameters).
pub async fn all_pages(tenant: &Tenant, path: &str, field: &str) -> Result<Vec<Value>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_path = match &cursor {
            Some(c) => format!("{path}{separator}cursor={c}"),
            None => path.to_owned(),
        };
        let page = get_retrying(tenant, &page_path, deadline).await?;
        out.extend(
            page[field]
                .as_array()
                .with_context(|| format!("{field} in {page}"))?
                .iter()
                .cloned(),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(out),
        }
    }
}

/// The size of a large import: `soak` under `make soak`
/// (`STOCKROOM_SOAK=1`), `ci` otherwise. CI runs the same test on a smaller
/// file to stay within its time budget; the soak size is for release checks.
pub fn import_rows(ci: u32, soak: u32) -> u32 {
    match std::env::var("STOCKROOM_SOAK").as_deref() {
        Ok("1") => soak,
        _ => ci,
    }
}

/// Live processes of this stack's function `comm` (`batch-worker`,
/// `items-api`): those whose environment names this stack's emulator
/// (`AWS_ENDPOINT_URL`), read from /proc. The emulator starts a new one on
/// the next event after one is killed.
pub fn stack_pids(comm: &str) -> Result<Vec<u32>> {
    let endpoint = format!(
        "AWS_ENDPOINT_URL={}",
        std::env::var("AWS_ENDPOINT_URL").context("AWS_ENDPOINT_URL (source .local/env)")?
    );
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if name.trim_end() != comm {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if environ
            .split(|b| *b == 0)
            .any(|var| var == endpoint.as_bytes())
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// The raw bodies of the DynamoDB responses one client received: what came
/// over the wire before the SDK decoded it (to see what a projection left
/// out, and to count its bytes).
#[derive(Clone, Debug, Default)]
pub struct DynamoWire(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl DynamoWire {
    /// A DynamoDB client on the stack's SDK settings that records here.
    pub fn client(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(self.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// The bodies recorded since the last call, oldest first.
    pub fn take(&self) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .map(|mut bodies| std::mem::take(&mut *bodies))
            .unwrap_or_default()
    }
}

impl aws_sdk_dynamodb::config::Intercept for DynamoWire {
    fn name(&self) -> &'static str {
        "DynamoWire"
    }

    fn read_after_deserialization(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::AfterDeserializationInterceptorContextRef<
            '_,
        >,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // Bodies of non-streaming operations are whole in memory by now.
        if let (Some(bytes), Ok(mut bodies)) = (context.response().body().bytes(), self.0.lock()) {
            bodies.push(bytes.to_vec());
        }
        Ok(())
    }
}
