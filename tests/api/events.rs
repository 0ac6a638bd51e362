//! The sample events in `events/` are real event shapes: each one invoked
//! through the local Lambda invoke API (what `cargo lambda invoke
//! --data-file` uses) gets the expected answer from the function.

use serde_json::Value;

fn invoke_url(function: &str) -> String {
    let port = std::env::var("STOCKROOM_INVOKE_PORT").unwrap_or_else(|_| "9000".into());
    format!("http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations")
}

fn event(path: &str) -> anyhow::Result<Vec<u8>> {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(path);
    Ok(std::fs::read(file)?)
}

async fn invoke(function: &str, path: &str) -> anyhow::Result<(Option<String>, Value)> {
    let resp = stockroom_tests::client()
        .post(invoke_url(function))
        .body(event(path)?)
        .send()
        .await?;
    let function_error = resp
        .headers()
        .get("x-amz-function-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((function_error, resp.json().await?))
}

/// The items-api samples act as the demo tenant (`tenant_id: demo`), which
/// the local stack seeds.
#[tokio::test]
async fn items_api_sample_events_run_in_order() -> anyhow::Result<()> {
    let expected = [
        ("items-api/health.json", &[200][..]),
        // 409 when the sample item is left over from an earlier run on the same stack.
        ("items-api/create-item.json", &[201, 409][..]),
        ("items-api/get-item.json", &[200][..]),
        ("items-api/list-items.json", &[200][..]),
        ("items-api/adjust-stock.json", &[200, 409][..]),
        ("items-api/list-movements.json", &[200][..]),
    ];
    for (file, statuses) in expected {
        let (error, out) = invoke("items-api", file).await?;
        assert_eq!(error, None, "{file}: {out}");
        let status = out["statusCode"].as_u64().unwrap_or_default() as u16;
        assert!(statuses.contains(&status), "{file}: {status} {out}");
        let headers = &out["headers"];
        assert!(
            headers["x-request-id"].is_string()
                || out["multiValueHeaders"]["x-request-id"].is_array(),
            "{file}: {out}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn authorizer_sample_with_an_unknown_key_is_unauthorized() -> anyhow::Result<()> {
    let (error, out) = invoke("authorizer", "authorizer/unknown-key.json").await?;
    assert!(error.is_some(), "{out}");
    assert_eq!(out["errorMessage"], "Unauthorized");
    Ok(())
}

#[tokio::test]
async fn batches_api_sample_events_answer() -> anyhow::Result<()> {
    for (file, statuses) in [
        ("batches-api/create-batch.json", &[202][..]),
        ("batches-api/list-batches.json", &[200][..]),
        // The sample id names no batch of the demo tenant.
        ("batches-api/get-batch.json", &[404][..]),
    ] {
        let (error, out) = invoke("batches-api", file).await?;
        assert_eq!(error, None, "{file}: {out}");
        let status = out["statusCode"].as_u64().unwrap_or_default() as u16;
        assert!(statuses.contains(&status), "{file}: {status} {out}");
    }
    Ok(())
}

/// The worker samples name a batch that does not exist, so the worker
/// reports the message as a partial batch failure (it is retried, never lost)
/// rather than failing the invocation.
#[tokio::test]
async fn batch_worker_sample_events_report_partial_failures() -> anyhow::Result<()> {
    for file in [
        "batch-worker/chunk.json",
        "batch-worker/poison-message.json",
    ] {
        let (error, out) = invoke("batch-worker", file).await?;
        assert_eq!(error, None, "{file}: {out}");
        let failures = out["batchItemFailures"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(failures.len(), 1, "{file}: {out}");
        assert_eq!(
            failures[0]["itemIdentifier"],
            "059f36b4-87a3-44ab-83d2-661975830a7d"
        );
    }
    Ok(())
}
