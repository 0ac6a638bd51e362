//! The docs page in a real browser: headless Chromium (Debian's package,
//! driven by playwright-core from `tests/docs/browser.mjs`) loads `/docs`
//! from the local gateway with no network beyond it, and the reference it
//! renders lists every route, shows examples and the problem codes, with
//! no console errors. A screenshot is left in `.local/screenshots/docs.png`.

use anyhow::{Context, ensure};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Only this test needs Node.js and Chromium (`make run` does not): where
/// `make test` could not install them, it fails with the one line that does.
fn browser_prerequisites(root: &Path) -> anyhow::Result<std::path::PathBuf> {
    ensure!(
        on_path("node"),
        "Node.js is missing (only the docs page test needs it): \
         `sudo apt-get install nodejs npm` or `brew install node`, then `make test-deps`"
    );
    let chromium = std::env::var_os("CHROMIUM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    ensure!(
        chromium.exists(),
        "Chromium is missing at {} (only the docs page test needs it): \
         `sudo apt-get install chromium`, or set CHROMIUM to a Chromium binary",
        chromium.display()
    );
    ensure!(
        root.join("tests/docs/node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed in tests/docs: run `make test-deps`"
    );
    Ok(chromium)
}

fn open_docs_in_chromium() -> anyhow::Result<Value> {
    let root = repo_root();
    let script = root.join("tests/docs/browser.mjs");
    let chromium = browser_prerequisites(root)?;
    let shots = root.join(".local/screenshots");
    std::fs::create_dir_all(&shots)?;
    let screenshot = shots.join("docs.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!("{}/docs", stockroom_tests::base_url());
    let out = Command::new("node")
        .env("CHROMIUM", &chromium)
        .arg(&script)
        .arg(&url)
        .arg(&screenshot)
        .output()
        .context("run node")?;
    ensure!(
        out.status.success(),
        "browser script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("report: {}", String::from_utf8_lossy(&out.stdout)))?;
    println!("{report:#}");
    ensure!(report["error"].is_null(), "browser: {}", report["error"]);
    Ok(report)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_docs_page_renders_every_route_offline_without_console_errors() -> anyhow::Result<()> {
    let report = open_docs_in_chromium()?;
    assert_eq!(report["status"], 200);
    assert!(
        report["csp"]
            .as_str()
            .is_some_and(|c| c.contains("script-src 'self'")),
        "the page is served with its CSP"
    );
    for problem in [
        "consoleErrors",
        "pageErrors",
        "failedRequests",
        "errorResponses",
        "foreignRequests",
    ] {
        assert!(
            strings(&report[problem]).is_empty(),
            "{problem}: {}",
            report[problem]
        );
    }
    assert_eq!(report["title"], "Stockroom API reference");
    assert!(
        report["heading"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Stockroom API")
    );

    // The page lists the routes, then the document's webhooks (`POST <event type>`).
    let (mut shown, mut shown_webhooks): (Vec<String>, Vec<String>) =
        strings(&report["routes"]).into_iter().partition(|r| {
            r.split_once(' ')
                .is_some_and(|(_, path)| path.starts_with('/'))
        });
    shown.sort();
    let mut routes = stockroom_tests::template_routes()?;
    routes.sort();
    assert_eq!(shown, routes, "routes on the page vs template.yaml");
    shown_webhooks.sort();
    let document: Value = tokio::runtime::Runtime::new()?.block_on(async {
        stockroom_tests::client()
            .get(format!("{}/openapi.json", stockroom_tests::base_url()))
            .send()
            .await?
            .json()
            .await
    })?;
    let webhooks: Vec<String> = document["webhooks"]
        .as_object()
        .map(|o| o.keys().map(|k| format!("POST {k}")).collect())
        .unwrap_or_default();
    assert!(!webhooks.is_empty(), "the document has no webhooks");
    assert_eq!(
        shown_webhooks, webhooks,
        "webhooks on the page vs the document"
    );

    let table = report["codesTable"].as_str().unwrap_or_default();
    for code in [
        "insufficient_stock",
        "rate_limited",
        "webhook_url_forbidden_address",
        "internal",
    ] {
        assert!(
            table.contains(code),
            "{code} missing from the problem codes table"
        );
    }
    let request: Value =
        serde_json::from_str(report["adjustRequestExample"].as_str().unwrap_or("null"))
            .context("the request example is JSON")?;
    assert_eq!(request["reason"], "sale");
    let conflicts = strings(&report["adjustConflictExamples"]);
    for code in ["insufficient_stock", "concurrent_update"] {
        assert!(
            conflicts.iter().any(|c| c.contains(code)),
            "409 examples of the adjustments route lack {code}: {conflicts:?}"
        );
    }

    let png = std::fs::read(report["screenshot"].as_str().unwrap_or_default())?;
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "a real screenshot"
    );
    Ok(())
}
