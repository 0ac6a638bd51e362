//! The `stockroom` command-line client, run as a user would: the real
//! binary, against the running local stack, each test with its own tenant.
//!
//! The binary belongs to another package (`stockroom-cli`), so Cargo does
//! not build it for these tests and `CARGO_BIN_EXE_stockroom` does not
//! exist here. The tests build it themselves, once per run, with
//! `cargo build -p stockroom-cli --message-format=json` and take its path
//! from Cargo's own artifact message: that is up to date with the sources
//! and right whatever `CARGO_TARGET_DIR` or profile layout is in use
//! (a no-op when `make test` built the workspace already).
//! `STOCKROOM_CLI_BIN=/path/to/stockroom` skips the build.

use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use stockroom_tests::{Tenant, base_url};

/// The `stockroom` binary, built on first use.
fn cli_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("STOCKROOM_CLI_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var("CARGO")
            .ok()
            .or_else(|| option_env!("CARGO").map(str::to_owned))
            .unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = std::process::Command::new(cargo)
            .current_dir(&workspace)
            .args([
                "build",
                "-p",
                "stockroom-cli",
                "--bin",
                "stockroom",
                "--message-format=json-render-diagnostics",
            ])
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("running cargo build -p stockroom-cli");
        assert!(out.status.success(), "cargo build -p stockroom-cli failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "stockroom")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no stockroom executable")
    })
}

/// A scratch directory for one test's files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch() -> Scratch {
    let dir = std::env::temp_dir().join(format!("stockroom-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    Scratch(dir)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `stockroom <args>` with this API key in `STOCKROOM_API_KEY` (the
/// URL from `--url` when the args name one, else `STOCKROOM_URL`).
async fn stockroom(key: &str, args: &[&str]) -> anyhow::Result<Run> {
    let bin = cli_bin().to_owned();
    let key = key.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(&args)
            .env("STOCKROOM_URL", base_url())
            .env("STOCKROOM_API_KEY", key)
            .env_remove("STOCKROOM_WEBHOOK_SECRET")
            .output()
    })
    .await??;
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ stockroom ... -> exit {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    );
    Ok(run)
}

/// The item as the API has it (None: 404). Like every poller here, it
/// waits out "retry later" answers of a busy local stack.
async fn item(t: &Tenant, sku: &str) -> anyhow::Result<Option<Value>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let resp = t.get(&format!("/v1/items/{sku}")).send().await?;
        match resp.status() {
            StatusCode::OK => return Ok(Some(resp.json().await?)),
            StatusCode::NOT_FOUND => return Ok(None),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            s => anyhow::bail!("GET {sku}: {s}"),
        }
    }
}

/// Creates an item, waiting out "retry later" answers (nothing was written then).
async fn create_item(t: &Tenant, sku: &str, quantity: i64) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let body = serde_json::json!({"sku": sku, "name": format!("Item {sku}"), "quantity": quantity});
    loop {
        let status = t.post_json("/v1/items", &body).send().await?.status();
        match status {
            StatusCode::CREATED => return Ok(()),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            s => anyhow::bail!("create {sku}: {s}"),
        }
    }
}

/// A CSV with a bit of everything: good rows, invalid rows (caught before
/// anything is applied) and rows that fail when applied.
const MIXED_CSV: &str = "\
op,sku,name,quantity,delta,reason,attributes.colour
upsert,MUG-1,Blue mug,10,,,blue
upsert,MUG-2,Red mug,twelve,,,
adjust,MUG-1,,,-3,sale,
adjust,MUG-1,,,-100,sale,
explode,MUG-3,,,,,
upsert,MUG-4
adjust,MUG-404,,,1,count,
upsert,MUG-5,\"Mug, \"\"large\"\"\",5,,,
";

/// The failures file of MIXED_CSV, whichever way it was submitted: record
/// ids are CSV row numbers (the header is row 1).
const MIXED_FAILURES: &str = "\
record_id,sku,code,message
3,MUG-2,invalid_record,quantity: must be an integer
5,MUG-1,insufficient_stock,adjusting by -100 would take the quantity below zero: 7 available
6,MUG-3,invalid_record,\"op: unknown op \"\"explode\"\"; expected upsert, adjust, delete, count, transfer or reserve\"
7,,invalid_record,the row has 2 cells; the header names 7 columns
8,MUG-404,item_not_found,no item with sku MUG-404
";

async fn import_mixed_csv(inline: bool) -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let dir = scratch();
    let file = dir.join("counts.csv");
    std::fs::write(&file, MIXED_CSV)?;
    let file_arg = file.to_string_lossy().into_owned();
    let mut args = vec!["import", file_arg.as_str(), "--poll-interval-ms", "200"];
    if inline {
        args.push("--inline");
    }
    let run = stockroom(&t.api_key, &args).await?;
    assert_eq!(run.code, 2, "completed with errors is exit 2");
    assert!(
        run.stdout.contains("completed_with_errors"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("succeeded  3"), "{}", run.stdout);
    assert!(run.stdout.contains("failed     5"), "{}", run.stdout);
    assert!(!run.stderr.contains(&t.api_key) && !run.stdout.contains(&t.api_key));

    let failures = std::fs::read_to_string(dir.join("counts.failures.csv"))?;
    assert_eq!(failures, MIXED_FAILURES);

    let mug1 = item(&t, "MUG-1").await?.expect("MUG-1 exists");
    assert_eq!(mug1["quantity"], 7, "{mug1}");
    assert_eq!(mug1["attributes"]["colour"], "blue", "{mug1}");
    let mug5 = item(&t, "MUG-5").await?.expect("MUG-5 exists");
    assert_eq!(
        (&mug5["name"], &mug5["quantity"]),
        (&Value::from("Mug, \"large\""), &Value::from(5))
    );
    for absent in ["MUG-2", "MUG-3", "MUG-4", "MUG-404"] {
        assert!(item(&t, absent).await?.is_none(), "{absent}");
    }
    Ok(())
}

#[tokio::test]
async fn upload_import_reports_bad_rows_by_row_number() -> anyhow::Result<()> {
    import_mixed_csv(false).await
}

#[tokio::test]
async fn inline_import_reports_the_same_failures() -> anyhow::Result<()> {
    import_mixed_csv(true).await
}

#[tokio::test]
async fn a_clean_import_exits_0_and_leaves_no_failures_file() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let dir = scratch();
    let file = dir.join("good.ndjson");
    std::fs::write(
        &file,
        "{\"op\":\"upsert\",\"sku\":\"CUP-1\",\"name\":\"Cup\",\"quantity\":4}\n\
         \n\
         {\"op\":\"adjust\",\"sku\":\"CUP-1\",\"delta\":2,\"reason\":\"count\"}\n",
    )?;
    // A failures file from an earlier run of the same import is stale now.
    let stale = dir.join("good.failures.csv");
    std::fs::write(&stale, "record_id,sku,code,message\n1,CUP-1,x,y\n")?;
    let run = stockroom(
        &t.api_key,
        &[
            "import",
            &file.to_string_lossy(),
            "--poll-interval-ms",
            "200",
        ],
    )
    .await?;
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains(": completed\n"), "{}", run.stdout);
    assert!(run.stdout.contains("succeeded  2"), "{}", run.stdout);
    assert!(!stale.exists(), "the stale failures file is removed");
    assert_eq!(item(&t, "CUP-1").await?.expect("CUP-1")["quantity"], 6);
    Ok(())
}

/// A stocktake per location: each store's counts, as count rows of one
/// uploaded CSV, set the levels there; a row for a location that does not
/// exist fails by its row number.
#[tokio::test]
async fn counts_per_location_import_as_count_rows() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    for id in ["paris-1", "lyon-1"] {
        let resp = t
            .post_json(
                "/v1/locations",
                &serde_json::json!({"id": id, "name": id, "kind": "store"}),
            )
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 201, "location {id}: {}", resp.status());
    }
    create_item(&t, "MUG-1", 0).await?;
    create_item(&t, "CUP-1", 0).await?;
    let dir = scratch();
    let file = dir.join("stocktake.csv");
    std::fs::write(
        &file,
        "op,sku,location,on_hand,occurred_at,reference\n\
         count,MUG-1,paris-1,12,2026-12-01T06:00:00Z,st-7\n\
         count,MUG-1,lyon-1,3,2026-12-01T06:00:00Z,st-7\n\
         count,CUP-1,paris-1,40,2026-12-01T06:00:00Z,st-7\n\
         count,CUP-1,rome-1,5,2026-12-01T06:00:00Z,st-7\n\
         count,CUP-1,lyon-1,-1,2026-12-01T06:00:00Z,st-7\n",
    )?;
    let run = stockroom(
        &t.api_key,
        &[
            "import",
            &file.to_string_lossy(),
            "--poll-interval-ms",
            "200",
        ],
    )
    .await?;
    assert_eq!(run.code, 2, "completed with errors is exit 2");
    assert!(run.stdout.contains("succeeded  3"), "{}", run.stdout);
    let failures = std::fs::read_to_string(dir.join("stocktake.failures.csv"))?;
    let codes: Vec<&str> = failures.lines().skip(1).collect();
    assert_eq!(codes.len(), 2, "{failures}");
    assert!(
        codes[0].starts_with("5,CUP-1,location_not_found,"),
        "{failures}"
    );
    assert!(
        codes[1].starts_with("6,CUP-1,invalid_record,on_hand"),
        "{failures}"
    );
    for (sku, location, on_hand) in [
        ("MUG-1", "paris-1", 12),
        ("MUG-1", "lyon-1", 3),
        ("CUP-1", "paris-1", 40),
    ] {
        let level = stockroom_tests::level_at(&t, sku, location).await?;
        assert_eq!(level["on_hand"], on_hand, "{sku} at {location}: {level}");
    }
    Ok(())
}

#[tokio::test]
async fn a_refused_api_key_exits_4_with_the_reason() -> anyhow::Result<()> {
    let bad = "sk_test_thisKeyDoesNotExist0000000000000000000";
    let run = stockroom(bad, &["items", "get", "MUG-1"]).await?;
    assert_eq!(run.code, 4);
    assert!(
        run.stderr
            .starts_with("error: the API key was refused (401 unauthorized): "),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(bad), "the key is never printed");

    // The same through an import, with the key given as a flag.
    let dir = scratch();
    let file = dir.join("x.csv");
    std::fs::write(&file, "op,sku\ndelete,A\n")?;
    let run = stockroom("", &["import", &file.to_string_lossy(), "--api-key", bad]).await?;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(!run.stderr.contains(bad));
    assert!(!dir.join("x.failures.csv").exists());
    Ok(())
}

#[tokio::test]
async fn an_unreachable_api_exits_5() -> anyhow::Result<()> {
    let run = stockroom(
        "sk_test_whatever",
        &["--url", "http://127.0.0.1:1", "items", "get", "MUG-1"],
    )
    .await?;
    assert_eq!(run.code, 5);
    assert_eq!(
        run.stderr.trim_end(),
        "error: cannot reach http://127.0.0.1:1: connection refused"
    );
    Ok(())
}

#[tokio::test]
async fn usage_errors_exit_1() -> anyhow::Result<()> {
    let dir = scratch();
    let file = dir.join("counts.txt");
    std::fs::write(&file, "op,sku\ndelete,A\n")?;
    let run = stockroom("sk_test_whatever", &["import", &file.to_string_lossy()]).await?;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--format"), "{}", run.stderr);
    let run = stockroom("sk_test_whatever", &["import"]).await?;
    assert_eq!(run.code, 1, "clap's usage errors are 1 too, not 2");
    Ok(())
}

#[tokio::test]
async fn items_get_prints_the_item_or_exits_6() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    create_item(&t, "PEN-1", 3).await?;
    let run = stockroom(&t.api_key, &["items", "get", "PEN-1"]).await?;
    assert_eq!(run.code, 0);
    let printed: Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(
        (&printed["sku"], &printed["quantity"]),
        (&"PEN-1".into(), &3.into())
    );

    let run = stockroom(&t.api_key, &["items", "get", "PEN-404"]).await?;
    assert_eq!(run.code, 6);
    assert_eq!(
        run.stderr.trim_end(),
        "error: no item with sku \"PEN-404\" (404 item_not_found)"
    );
    assert!(run.stdout.is_empty());
    Ok(())
}

/// `webhooks listen` verifies what the dispatcher signs (the server's own
/// signing code), answers 401 to a bad signature and 500 while `--fail` lasts.
#[tokio::test]
async fn webhooks_listen_verifies_signatures() -> anyhow::Result<()> {
    use std::io::BufRead;
    let secret = stockroom_app::webhooks::signing::generate_secret();
    let mut child = std::process::Command::new(cli_bin())
        .args([
            "webhooks", "listen", "--port", "0", "--fail", "1", "--secret", &secret,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).map(|_| (line, stdout))
    })
    .await??;
    let (line, mut stdout) = first;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_owned);
    let result = async {
        let url = url.ok_or_else(|| anyhow::anyhow!("no URL in {line:?}"))?;
        let body = r#"{"id":"evt_1","type":"webhook.ping","data":{}}"#;
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        let signature = stockroom_app::webhooks::signing::signature_header(
            &[&secret],
            "evt_1",
            ts,
            body.as_bytes(),
        )?;
        let send = |body: &'static str| {
            stockroom_tests::client()
                .post(&url)
                .header("webhook-id", "evt_1")
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", &signature)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        assert_eq!(send(body).await?.status(), 500, "--fail 1");
        assert_eq!(send(body).await?.status(), 200);
        let tampered = r#"{"id":"evt_1","type":"webhook.ping","data":{"x":1}}"#;
        assert_eq!(send(tampered).await?.status(), 401);
        anyhow::Ok(())
    }
    .await;
    child.kill()?;
    child.wait()?;
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut printed)?;
    eprintln!("{printed}");
    result?;
    let verdicts: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.split(" signature ").nth(1).unwrap_or_default())
        .collect();
    assert_eq!(verdicts.len(), 3, "{printed}");
    assert_eq!(verdicts[0..2], ["valid", "valid"]);
    assert!(verdicts[2].starts_with("INVALID"), "{printed}");
    assert!(printed.contains("webhook-id=evt_1 type=webhook.ping"));
    Ok(())
}

/// An atomic batch that cannot be applied: exit 3, nothing applied, the
/// culprit and the aborted rows in the failures file; uploaded or inline alike.
#[tokio::test]
async fn a_failed_atomic_import_exits_3_and_applies_nothing() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    create_item(&t, "BOX-1", 5).await?;
    let dir = scratch();
    let file = dir.join("atomic.csv");
    std::fs::write(
        &file,
        "op,sku,name,quantity,delta,reason\n\
         upsert,BOX-2,Box,9,,\n\
         adjust,BOX-1,,,-9,sale\n",
    )?;
    let file_arg = file.to_string_lossy().into_owned();
    for inline in [false, true] {
        let mut args = vec![
            "import",
            file_arg.as_str(),
            "--mode",
            "atomic",
            "--poll-interval-ms",
            "200",
        ];
        if inline {
            args.push("--inline");
        }
        let run = stockroom(&t.api_key, &args).await?;
        assert_eq!(run.code, 3, "a failed batch is exit 3");
        assert!(run.stdout.contains(": failed\n"), "{}", run.stdout);
        assert_eq!(
            std::fs::read_to_string(dir.join("atomic.failures.csv"))?,
            "record_id,sku,code,message\n\
             2,BOX-2,atomic_batch_aborted,not applied: the atomic batch was rejected because of record(s) 3\n\
             3,BOX-1,insufficient_stock,adjusting by -9 would take the quantity below zero: 5 available\n",
            "inline: {inline}"
        );
        assert_eq!(item(&t, "BOX-1").await?.expect("BOX-1")["quantity"], 5);
        assert!(item(&t, "BOX-2").await?.is_none());
    }
    Ok(())
}
