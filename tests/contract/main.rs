//! Contract fuzzing: schemathesis generates requests from `/openapi.json`
//! (examples, coverage of every parameter and body edge, random fuzzing,
//! then stateful sequences along the document's links) and sends them
//! through the local gateway with a valid key of a fresh tenant of its own. Every answer must be documented for its route, match its
//! schema, content type and headers — so every 4xx is `problem+json` — and
//! nothing may be a 5xx.

use anyhow::{Context, ensure};
use std::process::Command;
use stockroom_tests::{Tenant, base_url};

/// At least this many generated requests per run (issue: >= 2,000).
const MIN_REQUESTS: u64 = 2_000;

fn generated_and_passed(output: &str) -> Option<(u64, u64)> {
    // The summary line: "2326 generated, 2326 passed".
    let line = output.lines().find(|l| l.contains(" generated, "))?;
    let mut numbers = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|n| n.parse::<u64>().ok());
    Some((numbers.next()??, numbers.next()??))
}

#[tokio::test]
async fn generated_requests_get_documented_answers_and_never_a_5xx() -> anyhow::Result<()> {
    let tenant = Tenant::new().await?;
    // schemathesis keeps a replay cache (.schemathesis/) and hypothesis an
    // example database (.hypothesis/) in its working directory: run it in an
    // empty one, so every run is the same seeded run and the checkout stays clean.
    let workdir = std::env::temp_dir().join(format!("stockroom-contract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&workdir);
    std::fs::create_dir_all(&workdir)?;
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contract/schemathesis.toml");
    let out = Command::new(stockroom_tests::venv_tool("st"))
        .current_dir(&workdir)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", base_url()))
        // The document's `servers` name a deployed stage first: test this one.
        .args(["--url", &base_url()])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", tenant.api_key),
        ])
        // Every check: conformance of status, body, headers and content type,
        // schema-valid data accepted and invalid data refused, 405s with
        // Allow, auth not ignored, and (stateful) deleted resources gone and
        // created ones readable. Expectations the schema cannot carry are in
        // schemathesis.toml, each with its reason.
        .args(["--checks", "all"])
        // The stateful phase follows the document's links: create -> read ->
        // adjust -> delete, with the ids the server answered.
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        // One worker: with two, schemathesis on Python 3.11 can crash with
        // "AST constructor recursion depth mismatch" (CPython gh-106905).
        .args(["--max-examples", "80", "--workers", "1", "--seed", "1"])
        // The page and its assets are HTML/JS, checked in a browser (tests/docs).
        .args(["--exclude-path-regex", "^/docs"])
        // Fuzzing this route with the run's own key as the id would revoke
        // that key and turn the rest of the run into 401s; tests/api covers
        // revocation.
        .args(["--exclude-name", "DELETE /v1/keys/{key_id}"])
        .args(["--no-color"])
        .output()
        .context("run schemathesis (`st`): `make deps` installs it in .venv")?;
    let _ = std::fs::remove_dir_all(&workdir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "schemathesis found failures (above)");
    let (generated, passed) =
        generated_and_passed(&stdout).context("no summary line in the schemathesis output")?;
    ensure!(generated == passed, "{passed} of {generated} passed");
    ensure!(
        generated >= MIN_REQUESTS,
        "only {generated} requests generated (want >= {MIN_REQUESTS})"
    );
    Ok(())
}

#[test]
fn the_summary_line_is_read() {
    assert_eq!(
        generated_and_passed("Test cases:\n  2326 generated, 2326 passed\n"),
        Some((2326, 2326))
    );
    assert_eq!(generated_and_passed("nothing"), None);
}
