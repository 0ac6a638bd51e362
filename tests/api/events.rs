//! Every sample event in `events/`, invoked through the local Lambda invoke
//! API (what `cargo lambda invoke --data-file` uses) against the stack that
//! `make run` / `make test` start, which seeds the data they name
//! (`stockroom-admin seed-samples`): each gets the answer it documents.
//!
//! A sample with no entry in `EXPECTED` fails the test, so a new sample
//! cannot go untried. Four samples show a refusal on purpose (an unknown
//! key, a webhook target that is refused, a message that cannot be read);
//! for them the refusal is the documented answer.

use serde_json::Value;
use std::path::Path;

/// What a sample's invocation answers.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An API Gateway proxy response with one of these statuses.
    Http(&'static [u16]),
    /// An authorizer policy allowing the call.
    Allow,
    /// The authorizer's `Unauthorized` error (the client gets a 401).
    Unauthorized,
    /// An SQS batch handled whole: no `batchItemFailures`.
    NoFailures,
    /// An SQS batch whose one message is reported failed (SQS retries it,
    /// then dead-letters it: never lost).
    OneFailure,
}

/// In invocation order: the items before what reads them.
const EXPECTED: &[(&str, &str, Expect)] = &[
    ("authorizer", "authorizer/demo-key.json", Expect::Allow),
    (
        "authorizer",
        "authorizer/unknown-key.json",
        Expect::Unauthorized,
    ),
    ("items-api", "items-api/health.json", Expect::Http(&[200])),
    // 409 only when an earlier run on the same stack created SAMPLE-3.
    (
        "items-api",
        "items-api/create-item.json",
        Expect::Http(&[201, 409]),
    ),
    ("items-api", "items-api/get-item.json", Expect::Http(&[200])),
    (
        "items-api",
        "items-api/list-items.json",
        Expect::Http(&[200]),
    ),
    // Its Idempotency-Key makes a repeat replay the first answer.
    (
        "items-api",
        "items-api/adjust-stock.json",
        Expect::Http(&[200]),
    ),
    (
        "items-api",
        "items-api/list-movements.json",
        Expect::Http(&[200]),
    ),
    // Replays the seeded batch (same Idempotency-Key and body).
    (
        "batches-api",
        "batches-api/create-batch.json",
        Expect::Http(&[202]),
    ),
    (
        "batches-api",
        "batches-api/get-batch.json",
        Expect::Http(&[200]),
    ),
    (
        "batches-api",
        "batches-api/list-batches.json",
        Expect::Http(&[200]),
    ),
    ("keys-api", "keys-api/list-keys.json", Expect::Http(&[200])),
    (
        "webhooks-api",
        "webhooks-api/create-webhook.json",
        Expect::Http(&[201]),
    ),
    (
        "webhooks-api",
        "webhooks-api/list-webhooks.json",
        Expect::Http(&[200]),
    ),
    // A cloud metadata address: refused (webhook_url_*).
    (
        "webhooks-api",
        "webhooks-api/refused-target.json",
        Expect::Http(&[422]),
    ),
    (
        "batch-splitter",
        "batch-splitter/s3-test-event.json",
        Expect::NoFailures,
    ),
    (
        "batch-splitter",
        "batch-splitter/upload-notification.json",
        Expect::NoFailures,
    ),
    (
        "batch-worker",
        "batch-worker/chunk.json",
        Expect::NoFailures,
    ),
    (
        "batch-worker",
        "batch-worker/dead-lettered-chunk.json",
        Expect::NoFailures,
    ),
    (
        "batch-worker",
        "batch-worker/poison-message.json",
        Expect::OneFailure,
    ),
    (
        "webhook-dispatcher",
        "webhook-dispatcher/event.json",
        Expect::NoFailures,
    ),
    (
        "webhook-dispatcher",
        "webhook-dispatcher/delivery-job.json",
        Expect::NoFailures,
    ),
    (
        "webhook-dispatcher",
        "webhook-dispatcher/unreadable.json",
        Expect::NoFailures,
    ),
    // A stream batch: SAMPLE-1's movement and item write; one stock.changed
    // published (a repeat is deduplicated downstream by its event id).
    (
        "events-publisher",
        "events-publisher/stream-batch.json",
        Expect::NoFailures,
    ),
];

fn events_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn invoke_url(function: &str) -> String {
    let port = std::env::var("STOCKROOM_INVOKE_PORT").unwrap_or_else(|_| "9000".into());
    format!("http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations")
}

async fn invoke(function: &str, path: &str) -> anyhow::Result<(Option<String>, Value)> {
    let resp = stockroom_tests::client()
        .post(invoke_url(function))
        .body(std::fs::read(events_dir().join(path))?)
        .send()
        .await?;
    let function_error = resp
        .headers()
        .get("x-amz-function-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((function_error, resp.json().await?))
}

fn check(file: &str, expect: Expect, error: Option<String>, out: &Value) -> Result<(), String> {
    let failures = || out["batchItemFailures"].as_array().map_or(0, Vec::len);
    let ok = match expect {
        Expect::Http(statuses) => {
            let status = out["statusCode"].as_u64().unwrap_or_default() as u16;
            error.is_none()
                && statuses.contains(&status)
                && (out["headers"]["x-request-id"].is_string()
                    || out["multiValueHeaders"]["x-request-id"].is_array())
        }
        Expect::Allow => {
            error.is_none()
                && out["policyDocument"]["Statement"][0]["Effect"] == "Allow"
                && out["context"]["tenant_id"] == "demo"
        }
        Expect::Unauthorized => error.is_some() && out["errorMessage"] == "Unauthorized",
        Expect::NoFailures => error.is_none() && out.is_object() && failures() == 0,
        Expect::OneFailure => error.is_none() && failures() == 1,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{file}: expected {expect:?}, got error {error:?}: {out}"
        ))
    }
}

#[tokio::test]
async fn every_sample_event_gets_its_documented_answer() -> anyhow::Result<()> {
    // Every file in events/ has an expectation.
    let mut files = Vec::new();
    for dir in std::fs::read_dir(events_dir())? {
        let dir = dir?.path();
        if dir.is_dir() {
            for file in std::fs::read_dir(&dir)? {
                let file = file?.path();
                if file.extension().is_some_and(|e| e == "json") {
                    let rel = file
                        .strip_prefix(events_dir())?
                        .to_string_lossy()
                        .into_owned();
                    files.push(rel);
                }
            }
        }
    }
    files.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|(_, f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "events/ and EXPECTED disagree");

    let mut wrong = Vec::new();
    for &(function, file, expect) in EXPECTED {
        let (error, out) = invoke(function, file).await?;
        if let Err(e) = check(file, expect, error, &out) {
            wrong.push(e);
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Invoked again, each still gets its answer: the samples are repeatable
    // (idempotent writes, duplicate deliveries acknowledged).
    for &(function, file, expect) in EXPECTED {
        let expect = match (file, expect) {
            ("items-api/create-item.json", _) => Expect::Http(&[409]),
            ("webhooks-api/create-webhook.json", _) => continue,
            (_, e) => e,
        };
        let (error, out) = invoke(function, file).await?;
        if let Err(e) = check(file, expect, error, &out) {
            wrong.push(format!("second time: {e}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

/// The seeded data is there before any sample runs: the batch the worker
/// and get-batch samples name finished, the delivery the dispatcher's job
/// names exists. (Through the public API, as the demo tenant.)
#[tokio::test]
async fn the_seeded_batch_is_done_and_readable_with_the_demo_key() -> anyhow::Result<()> {
    let resp = stockroom_tests::client()
        .get(format!(
            "{}/v1/batches/b_01jd8x3b6q5w3z2y1x0v9t8s7r",
            stockroom_tests::base_url()
        ))
        .bearer_auth("sk_test_demo_key_for_local_development_only")
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let batch: Value = resp.json().await?;
    // Two records of SAMPLE-2 apply; NO-SUCH-SKU's adjustment and the
    // invalid sku fail, as the sample shows.
    assert_eq!(batch["status"], "completed_with_errors", "{batch}");
    assert_eq!(
        (batch["succeeded"].as_u64(), batch["failed"].as_u64()),
        (Some(2), Some(2))
    );
    let upload = stockroom_tests::client()
        .get(format!(
            "{}/v1/batches/b_01jd8x3b6q5w3z2y1x0v9t8s7w",
            stockroom_tests::base_url()
        ))
        .bearer_auth("sk_test_demo_key_for_local_development_only")
        .send()
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(upload["status"], "completed", "{upload}");
    assert_eq!(upload["succeeded"], 2, "{upload}");
    Ok(())
}
