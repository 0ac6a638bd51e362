//! The OpenAPI document checked by maintained tools, without the stack:
//! Spectral (`spectral:oas`, `.spectral.yaml`) and Redocly (`recommended`,
//! `redocly.yaml`) find no error in `docs/openapi/v1.json`, and Optic's
//! breaking-change check (`optic.yml`: its `breaking-changes` ruleset plus
//! `optic-rules.js`) finds nothing a `/v1` client would notice between that
//! snapshot and the document the code generates now (what `/openapi.json`
//! serves). Mutated copies prove that each kind of break is caught.
//!
//! The tools are pinned in `tests/contract/package.json` (`make test-deps`
//! installs them); they run offline, with telemetry and update checks off,
//! and are killed after `TOOL_TIMEOUT` rather than left hanging.

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Optic takes 15-40 s on the document on 2 busy cores; a run past this is stuck.
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
}

fn contract_dir() -> PathBuf {
    repo_root().join("tests/contract")
}

fn snapshot() -> PathBuf {
    repo_root().join("docs/openapi/v1.json")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// `node` running one of the pinned tools, with nothing sent anywhere.
fn tool(bin: &str) -> anyhow::Result<Command> {
    ensure!(
        on_path("node"),
        "Node.js is missing (the OpenAPI lint needs it): \
         `sudo apt-get install nodejs npm` or `brew install node`, then `make test-deps`"
    );
    // Redocly CLI 2 needs Node.js 20.19 or later (Debian 12's nodejs is 18).
    let version = Command::new("node").arg("--version").output()?;
    let version = String::from_utf8_lossy(&version.stdout);
    let parts: Vec<u32> = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    ensure!(
        parts.as_slice() >= [20, 19].as_slice(),
        "Node.js {} is too old for the OpenAPI linters (Redocly needs 20.19 or later): \
         install Node.js 20 LTS or newer (https://nodejs.org, or `brew install node`)",
        version.trim()
    );
    let script = contract_dir().join("node_modules/.bin").join(bin);
    ensure!(
        script.exists(),
        "{bin} is not installed in tests/contract: run `make test-deps`"
    );
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .current_dir(contract_dir())
        .stdin(Stdio::null())
        // Optic: Segment and Sentry off; Redocly: usage data and the
        // registry check off; update-notifier (Optic) off.
        .env("OPTIC_TELEMETRY_LEVEL", "off")
        .env("REDOCLY_TELEMETRY", "off")
        .env("REDOCLY_SUPPRESS_UPDATE_NOTICE", "true")
        .env("NO_UPDATE_NOTIFIER", "1")
        .env("DO_NOT_TRACK", "1");
    Ok(cmd)
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion or kills it after `TOOL_TIMEOUT`. Output goes
/// to files, so a chatty tool never blocks on a full pipe.
fn run(mut cmd: Command, what: &str) -> anyhow::Result<Run> {
    let scratch = Scratch::new(&format!("run-{what}"))?;
    let (out, err) = (scratch.0.join("stdout"), scratch.0.join("stderr"));
    cmd.stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?);
    let mut child = cmd.spawn().with_context(|| format!("start {what}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > TOOL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{what} still running after {TOOL_TIMEOUT:?}: killed (waiting for the network?)\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(Run {
        success: status.success(),
        stdout: std::fs::read_to_string(&out)?,
        stderr: std::fs::read_to_string(&err)?,
    })
}

/// A directory of its own under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> anyhow::Result<Self> {
        // Tests run in parallel threads of one process: a counter keeps them apart.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "stockroom-openapi-{}-{n}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn write(&self, file: &str, doc: &Value) -> anyhow::Result<PathBuf> {
        let path = self.0.join(file);
        std::fs::write(&path, serde_json::to_string_pretty(doc)? + "\n")?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Default)]
struct Findings {
    errors: usize,
    warnings: usize,
    /// One line each: `severity rule location: message`.
    lines: Vec<String>,
}

fn spectral(doc: &Path) -> anyhow::Result<Findings> {
    let scratch = Scratch::new("spectral")?;
    let report = scratch.0.join("report.json");
    let mut cmd = tool("spectral")?;
    cmd.arg("lint")
        .arg(doc)
        .args([
            "--ruleset",
            ".spectral.yaml",
            "--format",
            "json",
            "--output",
        ])
        .arg(&report)
        .args(["--fail-severity", "error"]);
    let out = run(cmd, "spectral")?;
    // Exit 1 means errors were found (counted below); anything else is a failure to lint.
    let results: Vec<Value> = std::fs::read_to_string(&report)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .with_context(|| format!("no Spectral report:\n{}\n{}", out.stdout, out.stderr))?;
    let mut findings = Findings::default();
    for r in &results {
        // Spectral's severities: 0 error, 1 warning, 2 info, 3 hint.
        let severity = match r["severity"].as_u64() {
            Some(0) => {
                findings.errors += 1;
                "error"
            }
            Some(1) => {
                findings.warnings += 1;
                "warning"
            }
            _ => "info",
        };
        let path: Vec<&str> = r["path"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        findings.lines.push(format!(
            "{severity} {} line {} {}: {}",
            r["code"].as_str().unwrap_or("?"),
            r["range"]["start"]["line"].as_u64().map_or(0, |l| l + 1),
            path.join("."),
            r["message"].as_str().unwrap_or_default()
        ));
        // Not recognised as OpenAPI: no OpenAPI rule ran at all.
        ensure!(
            r["code"] != "unrecognized-format",
            "Spectral did not recognise {} as OpenAPI",
            doc.display()
        );
    }
    Ok(findings)
}

fn redocly(doc: &Path) -> anyhow::Result<Findings> {
    let mut cmd = tool("redocly")?;
    cmd.arg("lint")
        .arg(doc)
        .args(["--config", "redocly.yaml", "--format", "json"]);
    let out = run(cmd, "redocly")?;
    let report: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("no Redocly report:\n{}\n{}", out.stdout, out.stderr))?;
    let count = |key: &str| report["totals"][key].as_u64().unwrap_or(0) as usize;
    let lines = report["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{} {} {}: {}",
                p["severity"].as_str().unwrap_or("?"),
                p["ruleId"].as_str().unwrap_or("?"),
                p["location"][0]["pointer"].as_str().unwrap_or_default(),
                p["message"].as_str().unwrap_or_default()
            )
        })
        .collect();
    ensure!(
        report["totals"].is_object(),
        "Redocly report without totals: {report}"
    );
    Ok(Findings {
        errors: count("errors"),
        warnings: count("warnings"),
        lines,
    })
}

fn print_findings(linter: &str, doc: &Path, f: &Findings) {
    println!(
        "{linter}: {} error(s), {} warning(s) in {}",
        f.errors,
        f.warnings,
        doc.display()
    );
    for line in &f.lines {
        println!("  {line}");
    }
}

/// Optic's verdict on `head` against `base`: `Ok(None)` when compatible,
/// `Ok(Some(report))` listing the breaking changes.
fn breaking_changes(base: &Path, head: &Path) -> anyhow::Result<Option<String>> {
    // Optic asks git about the directory it runs in (status, HEAD, remotes):
    // with no repository to find, it never touches the checkout's index.
    // (It stays in tests/contract, where optic.yml's `./optic-rules.js` resolves.)
    let mut cmd = tool("optic")?;
    cmd.env("GIT_DIR", "/dev/null")
        .arg("diff")
        .arg(base)
        .arg(head)
        .args(["--check", "--standard", "optic.yml"])
        .args(["--severity", "error"]);
    let out = run(cmd, "optic")?;
    let report = format!("{}{}", out.stdout, out.stderr);
    // A ruleset that fails to load is only a warning to Optic (exit 0): refuse
    // it here, or the check would pass with fewer rules than optic.yml names.
    for sign in [
        "Constructing ruleset",
        "Loading ruleset",
        "had configuration errors",
        "Cannot find module",
        "rules are not supported",
        "rulesets are not supported",
    ] {
        ensure!(
            !report.contains(sign),
            "Optic could not load optic.yml's rules:\n{report}"
        );
    }
    if out.success {
        // "Operations: No operations changed", or "... changed" and "Checks: n/n passed".
        ensure!(
            report.contains("Operations:"),
            "Optic passed without comparing anything:\n{report}"
        );
        return Ok(None);
    }
    ensure!(
        report.contains("This is a breaking change."),
        "Optic failed without reporting a breaking change:\n{report}"
    );
    Ok(Some(report))
}

/// The failed checks of an Optic report, one line each:
/// `METHOD /path: [rule] message (at file:line:col)`. Optic's full report
/// also lists every place its rules looked at, changed or not.
fn failed_checks(report: &str) -> String {
    let mut operation = "";
    let mut out = Vec::new();
    let mut lines = report.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(header) = line.strip_prefix("x ") {
            if !header.starts_with(' ') && header.contains(" /") {
                operation = header.trim().trim_end_matches(':');
            }
        } else if let Some(check) = trimmed.strip_prefix("x [") {
            let at = lines
                .peek()
                .map(|l| l.trim())
                .filter(|l| l.starts_with("at "))
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            out.push(format!("{operation}: [{check}{at}"));
        }
    }
    if out.is_empty() {
        report.to_owned()
    } else {
        out.join("\n")
    }
}

fn load(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

#[test]
fn spectral_finds_no_error_in_the_v1_document() -> anyhow::Result<()> {
    let doc = snapshot();
    let found = spectral(&doc)?;
    print_findings("Spectral (spectral:oas)", &doc, &found);
    ensure!(
        found.errors == 0,
        "Spectral: {} error(s), above",
        found.errors
    );
    Ok(())
}

#[test]
fn redocly_finds_no_error_in_the_v1_document() -> anyhow::Result<()> {
    let doc = snapshot();
    let found = redocly(&doc)?;
    print_findings("Redocly (recommended)", &doc, &found);
    ensure!(
        found.errors == 0,
        "Redocly: {} error(s), above",
        found.errors
    );
    Ok(())
}

/// The linters are really linting: a copy with a response missing its
/// (required) description and a route secured by an undefined scheme fails both.
#[test]
fn the_linters_report_errors_in_a_broken_copy() -> anyhow::Result<()> {
    let mut doc = load(&snapshot())?;
    let get = &mut doc["paths"]["/v1/items"]["get"];
    get["responses"]["200"]
        .as_object_mut()
        .context("GET /v1/items answers 200")?
        .remove("description");
    get["security"] = json!([{"no_such_scheme": []}]);
    let scratch = Scratch::new("broken")?;
    let broken = scratch.write("broken.json", &doc)?;

    let found = spectral(&broken)?;
    print_findings("Spectral", &broken, &found);
    ensure!(
        found.errors > 0,
        "Spectral found no error in a broken document"
    );
    let found = redocly(&broken)?;
    print_findings("Redocly", &broken, &found);
    ensure!(
        found.errors > 0,
        "Redocly found no error in a broken document"
    );
    ensure!(
        found.lines.iter().any(|l| l.contains("security-defined")),
        "Redocly's security-defined (Spectral's is off) missed an undefined scheme"
    );
    Ok(())
}

#[test]
fn the_current_document_keeps_every_v1_promise() -> anyhow::Result<()> {
    let scratch = Scratch::new("current")?;
    let head = scratch.write("current.json", &stockroom_http::openapi_document())?;
    let base = snapshot();
    println!(
        "breaking-change check: {} -> {}",
        base.display(),
        head.display()
    );
    if let Some(report) = breaking_changes(&base, &head)? {
        bail!(
            "BREAKING changes to /v1 (add a new version instead):\n{}",
            failed_checks(&report)
        );
    }
    Ok(())
}

fn schema<'a>(doc: &'a mut Value, name: &str) -> &'a mut Value {
    &mut doc["components"]["schemas"][name]
}

fn parameters<'a>(doc: &'a mut Value, path: &str, method: &str) -> &'a mut Vec<Value> {
    doc["paths"][path][method]["parameters"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("{method} {path} has parameters"))
}

fn remove(v: &mut Value, key: &str) {
    let removed = v.as_object_mut().and_then(|o| o.remove(key));
    assert!(removed.is_some(), "nothing to remove at {key}");
}

/// One copy of the snapshot with one break of each kind, each on a different
/// route or schema; Optic must name every one (its messages carry the names).
#[test]
fn the_breaking_change_check_flags_each_kind_of_break() -> anyhow::Result<()> {
    let mut doc = load(&snapshot())?;
    let mut expect: Vec<(&str, &str)> = Vec::new();

    // A route, a method, a documented response.
    remove(&mut doc["paths"], "/v1/keys/{key_id}");
    expect.push(("route removed", "x GET /v1/keys/{key_id}: removed"));
    remove(&mut doc["paths"]["/v1/webhooks/{webhook_id}"], "delete");
    expect.push((
        "method removed",
        "x DELETE /v1/webhooks/{webhook_id}: removed",
    ));
    remove(
        &mut doc["paths"]["/v1/batches/{batch_id}"]["get"]["responses"],
        "404",
    );
    expect.push((
        "response removed",
        "must not remove response status code 404",
    ));
    // Response body: a property removed, a type changed.
    remove(&mut schema(&mut doc, "Item")["properties"], "version");
    schema(&mut doc, "Item")["required"]
        .as_array_mut()
        .context("Item.required")?
        .retain(|r| r != "version");
    expect.push((
        "response property removed",
        "cannot remove response property 'version'",
    ));
    schema(&mut doc, "Item")["properties"]["quantity"]["type"] = json!("string");
    expect.push((
        "response type changed",
        "response body property 'quantity' not to be expanded",
    ));
    // Request body: a type changed, a new required property.
    schema(&mut doc, "AdjustmentRequest")["properties"]["delta"]["type"] = json!("string");
    expect.push((
        "request type changed",
        "request body property 'delta' not to be narrowed",
    ));
    let create = schema(&mut doc, "CreateItemRequest");
    create["properties"]["warehouse"] = json!({"type": "string"});
    create["required"]
        .as_array_mut()
        .context("CreateItemRequest.required")?
        .push(json!("warehouse"));
    expect.push((
        "newly required request property",
        "cannot add a required request property 'warehouse'",
    ));
    // Enums: a request value dropped (array items), a response value added.
    schema(&mut doc, "SubscribableEventType")["enum"]
        .as_array_mut()
        .context("SubscribableEventType.enum")?
        .retain(|v| v != "item.deleted");
    expect.push((
        "request enum narrowed",
        "cannot remove enum value(s) \"item.deleted\"",
    ));
    schema(&mut doc, "BatchStatus")["enum"]
        .as_array_mut()
        .context("BatchStatus.enum")?
        .push(json!("cancelled"));
    expect.push((
        "response enum changed",
        "cannot add enum option 'cancelled'",
    ));
    // Parameters: a new required one, one removed, one's type changed.
    parameters(&mut doc, "/v1/items", "get").push(
        json!({"name": "location", "in": "query", "required": true, "schema": {"type": "string"}}),
    );
    expect.push((
        "new required parameter",
        "cannot add required query parameter location",
    ));
    parameters(&mut doc, "/v1/batches/{batch_id}/failures", "get")
        .retain(|p| p["name"] != "cursor");
    expect.push((
        "parameter removed",
        "cannot remove query parameter 'cursor'",
    ));
    for p in parameters(&mut doc, "/v1/keys", "get") {
        if p["name"] == "limit" {
            p["schema"] = json!({"type": "string"});
        }
    }
    expect.push((
        "parameter type changed",
        "expected query parameter 'limit' not be narrowed",
    ));
    // A webhook event type.
    remove(&mut doc["webhooks"], "item.deleted");
    expect.push(("webhook removed", "cannot remove webhook(s) item.deleted"));

    let scratch = Scratch::new("breaking")?;
    let head = scratch.write("breaking.json", &doc)?;
    let report = breaking_changes(&snapshot(), &head)?
        .context("Optic passed a document with every kind of breaking change")?;
    let missed: Vec<String> = expect
        .iter()
        .filter(|(_, needle)| !report.contains(needle))
        .map(|(kind, needle)| format!("{kind} (no \"{needle}\")"))
        .collect();
    ensure!(
        missed.is_empty(),
        "Optic missed: {}\n{report}",
        missed.join("; ")
    );
    Ok(())
}

/// Additions a client does not notice pass: a new route, a new optional
/// parameter, a new response property, a reworded description.
#[test]
fn the_breaking_change_check_passes_compatible_additions() -> anyhow::Result<()> {
    let mut doc = load(&snapshot())?;
    let health = doc["paths"]["/v1/health"].clone();
    doc["paths"]["/v1/zones"] = health;
    parameters(&mut doc, "/v1/items", "get")
        .push(json!({"name": "q", "in": "query", "required": false, "schema": {"type": "string"}}));
    schema(&mut doc, "Item")["properties"]["zone"] = json!({"type": ["string", "null"]});
    schema(&mut doc, "Item")["description"] = json!("An inventory item.");
    let scratch = Scratch::new("compatible")?;
    let head = scratch.write("compatible.json", &doc)?;
    if let Some(report) = breaking_changes(&snapshot(), &head)? {
        bail!("compatible additions reported as breaking:\n{report}");
    }
    Ok(())
}
