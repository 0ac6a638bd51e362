//! The emulator enforces IAM as AWS does (devtools/iam.py): proven on a
//! copy of template.yaml with one permission removed, on an emulator of its
//! own, so the running stack is not touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stockroom_tests::{KilledOnDrop, free_port};

use anyhow::{Context, Result, bail, ensure};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    stockroom_tests::venv_tool("python")
}

/// A moto server of this test's own, killed when dropped.
struct Emulator {
    _child: KilledOnDrop,
    endpoint: String,
}

fn stack_py(template: &Path, state: &Path, endpoint: &str, command: &str) -> Result<()> {
    let out = Command::new(python())
        .arg(repo().join("devtools/stack.py"))
        .args([command, "--template"])
        .arg(template)
        .arg("--state-dir")
        .arg(state)
        .args(["--endpoint", endpoint])
        .output()
        .context("running devtools/stack.py")?;
    ensure!(
        out.status.success(),
        "stack.py {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

async fn start_emulator(policies: &Path, log: &Path) -> Result<Emulator> {
    let port = free_port()?;
    let child = Command::new(python())
        .arg(repo().join("devtools/moto_server.py"))
        .args(["-p", &port.to_string(), "--iam-policies"])
        .arg(policies)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting devtools/moto_server.py")?;
    let emulator = Emulator {
        _child: KilledOnDrop(child),
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/moto-api/", emulator.endpoint)).await
            && r.status().is_success()
        {
            return Ok(emulator);
        }
        if Instant::now() > deadline {
            bail!(
                "moto_server did not come up: {}",
                std::fs::read_to_string(log)?
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn client(endpoint: &str, access_key: &str) -> Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(access_key, "test", None, None, "iam-test"))
        .build();
    Client::from_conf(conf)
}

/// The template with the one line `- <action>` removed from `resource`'s
/// block; fails unless exactly one such line is there.
fn without_permission(template: &str, resource: &str, action: &str) -> Result<String> {
    let lines: Vec<&str> = template.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == format!("  {resource}:"))
        .with_context(|| format!("{resource} is not in template.yaml"))?;
    // The block ends at the next line indented by exactly two spaces.
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.len() > 2 && l.starts_with("  ") && !l[2..].starts_with([' ', '#']))
        .map_or(lines.len(), |i| start + 1 + i);
    let wanted = format!("- {action}");
    let hits: Vec<usize> = (start + 1..end)
        .filter(|&i| lines[i].trim() == wanted)
        .collect();
    ensure!(
        hits.len() == 1,
        "{resource} grants `{wanted}` on {} lines, expected one",
        hits.len()
    );
    let mut kept: Vec<&str> = lines;
    kept.remove(hits[0]);
    Ok(kept.join("\n") + "\n")
}

fn key(sku: &str) -> [(String, AttributeValue); 2] {
    [
        ("pk".into(), AttributeValue::S("T#iam-meta#ITEM".into())),
        ("sk".into(), AttributeValue::S(format!("ITEM#{sku}"))),
    ]
}

async fn exists(db: &Client, table: &str, sku: &str) -> Result<bool> {
    let out = db
        .get_item()
        .table_name(table)
        .set_key(Some(key(sku).into_iter().collect()))
        .send()
        .await?;
    Ok(out.item.is_some())
}

/// Remove `dynamodb:DeleteItem` from the items API's role in a copy of the
/// template: its DeleteItem, and a transaction with a Delete in it, are
/// refused with AccessDeniedException and nothing is written. Restoring the
/// template (the emulator re-reads the rendered policies) lets the same
/// calls through: the refusal came from that one permission.
#[tokio::test]
async fn a_permission_removed_from_the_template_is_refused_and_nothing_is_written() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("stockroom-iam-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let original = std::fs::read_to_string(repo().join("template.yaml"))?;
    let cut = dir.join("template.yaml");
    std::fs::write(
        &cut,
        without_permission(&original, "ItemsApiFunction", "dynamodb:DeleteItem")?,
    )?;
    // Its nested application beside it, where its Location points (stack.py
    // reads it to check the alarms' deliveries).
    std::fs::create_dir_all(dir.join("ops"))?;
    std::fs::copy(
        repo().join("ops/observability.yaml"),
        dir.join("ops/observability.yaml"),
    )?;
    let state = dir.join("state");
    // Render first (the emulator starts with the cut policies), then provision.
    stack_py(&cut, &state, "http://127.0.0.1:1", "render")?;
    let emulator = start_emulator(&state.join("iam.json"), &dir.join("moto.log")).await?;
    stack_py(&cut, &state, &emulator.endpoint, "provision")?;

    let stack: Value = serde_json::from_slice(&std::fs::read(state.join("stack.json"))?)?;
    let items_key = stack["functions"]["ItemsApiFunction"]["access_key_id"]
        .as_str()
        .context("no access key for the items API")?;
    let table = stack["functions"]["ItemsApiFunction"]["env"]["STOCK_TABLE"]
        .as_str()
        .context("no STOCK_TABLE")?
        .to_owned();
    let operator = client(&emulator.endpoint, "test");
    let items_api = client(&emulator.endpoint, items_key);

    for sku in ["A", "B"] {
        operator
            .put_item()
            .table_name(&table)
            .set_item(Some(key(sku).into_iter().collect()))
            .send()
            .await?;
    }
    // Allowed by the rest of the policy: the function's identity works.
    ensure!(
        items_api
            .get_item()
            .table_name(&table)
            .set_key(Some(key("A").into_iter().collect()))
            .send()
            .await?
            .item
            .is_some()
    );

    let err = items_api
        .delete_item()
        .table_name(&table)
        .set_key(Some(key("A").into_iter().collect()))
        .send()
        .await
        .expect_err("DeleteItem without dynamodb:DeleteItem must be refused");
    let service = err.into_service_error();
    assert_eq!(service.meta().code(), Some("AccessDeniedException"));
    let message = service.meta().message().unwrap_or_default().to_owned();
    assert!(
        message.contains("ItemsApiFunctionRole")
            && message.contains("dynamodb:DeleteItem")
            && message.contains(&table),
        "{message}"
    );

    // A transaction: the Put it also holds is allowed, the Delete is not, so
    // nothing of it is written.
    let put = Put::builder()
        .table_name(&table)
        .set_item(Some(key("C").into_iter().collect()))
        .build()?;
    let delete = Delete::builder()
        .table_name(&table)
        .set_key(Some(key("B").into_iter().collect()))
        .build()?;
    let err = items_api
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(put.clone()).build())
        .transact_items(TransactWriteItem::builder().delete(delete.clone()).build())
        .send()
        .await
        .expect_err("a transaction with a Delete needs dynamodb:DeleteItem");
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("AccessDeniedException")
    );
    assert!(exists(&operator, &table, "A").await?, "A was deleted");
    assert!(exists(&operator, &table, "B").await?, "B was deleted");
    assert!(!exists(&operator, &table, "C").await?, "C was written");

    // The refusals are logged with the function, action and resource.
    let log = std::fs::read_to_string(dir.join("moto.log"))?;
    assert!(
        log.lines().any(|l| l.contains("\"denied\"")
            && l.contains("ItemsApiFunction")
            && l.contains("dynamodb:DeleteItem")),
        "{log}"
    );

    // Control: the template as it is grants the permission back.
    stack_py(
        &repo().join("template.yaml"),
        &state,
        &emulator.endpoint,
        "render",
    )?;
    items_api
        .delete_item()
        .table_name(&table)
        .set_key(Some(key("A").into_iter().collect()))
        .send()
        .await?;
    items_api
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(put).build())
        .transact_items(TransactWriteItem::builder().delete(delete).build())
        .send()
        .await?;
    assert!(!exists(&operator, &table, "A").await?);
    assert!(!exists(&operator, &table, "B").await?);
    assert!(exists(&operator, &table, "C").await?);

    drop(emulator);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn without_permission_removes_exactly_one_line_of_one_resource() -> Result<()> {
    let t = "Resources:\n  A:\n    Policies:\n      - x:Get\n      - x:Del\n  B:\n    Policies:\n      - x:Del\n";
    let cut = without_permission(t, "A", "x:Del")?;
    assert_eq!(
        cut,
        "Resources:\n  A:\n    Policies:\n      - x:Get\n  B:\n    Policies:\n      - x:Del\n"
    );
    assert!(without_permission(t, "A", "x:Put").is_err());
    assert!(without_permission(t, "C", "x:Del").is_err());
    Ok(())
}
