use reqwest::Method;
use serde_json::Value;
use stockroom_tests::{Tenant, anonymous, expect_problem};

#[tokio::test]
async fn health_needs_no_key_and_carries_a_request_id() -> anyhow::Result<()> {
    let resp = anonymous(Method::GET, "/v1/health").send().await?;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await?;
    assert_eq!(body["status"], "ok");
    Ok(())
}

#[tokio::test]
async fn a_well_formed_incoming_request_id_is_kept_and_a_bad_one_replaced() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let resp = t
        .get("/v1/items/nope")
        .header("x-request-id", "trace-abc_123")
        .send()
        .await?;
    assert_eq!(resp.headers()["x-request-id"], "trace-abc_123");
    let body = expect_problem(resp, 404, "item_not_found").await?;
    assert_eq!(body["request_id"], "trace-abc_123");

    let resp = t
        .get("/v1/items/nope")
        .header("x-request-id", "has spaces!")
        .send()
        .await?;
    let id = resp.headers()["x-request-id"].to_str()?.to_owned();
    assert!(!id.is_empty() && id != "has spaces!");
    Ok(())
}

/// The OpenAPI document is generated from the code and covers exactly the
/// routes the template declares for the API.
#[tokio::test]
async fn openapi_document_covers_every_template_route() -> anyhow::Result<()> {
    let resp = anonymous(Method::GET, "/openapi.json").send().await?;
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await?;
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1")
    );
    let mut documented: Vec<String> = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                !responses.is_empty(),
                "{method} {path} documents no responses"
            );
        }
    }
    documented.sort();
    let template = stockroom_tests::template_routes()?;
    assert_eq!(
        documented, template,
        "OpenAPI paths vs template.yaml routes"
    );
    // Open routes in the template are the ones the document marks as needing no key.
    for route in stockroom_tests::stack_routes()? {
        let (method, path) = (
            route["method"].as_str().unwrap_or_default(),
            route["path"].as_str().unwrap_or_default(),
        );
        let op = &doc["paths"][path][method.to_lowercase()];
        let open_in_doc = op["security"].as_array().is_some_and(|s| {
            s.iter()
                .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
        });
        assert_eq!(
            route["authorizer"].is_null(),
            open_in_doc,
            "{method} {path}: auth differs between template and OpenAPI"
        );
    }
    for schema in [
        "Item",
        "Movement",
        "Problem",
        "FieldError",
        "AdjustmentResult",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    Ok(())
}

/// Unknown paths are API Gateway's own answer (403 Missing Authentication
/// Token, made a problem 404 by the template's gateway response); a method
/// a path lacks reaches the function through the path's ANY method and is a
/// 405 naming the path's methods, with or without a key.
#[tokio::test]
async fn unknown_routes_are_404s_and_missing_methods_405s() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    for path in ["/v1/nothing-here", "/", "/v1/items/A/nothing"] {
        let resp = t.get(path).send().await?;
        assert!(resp.headers().contains_key("x-request-id"), "{path}");
        expect_problem(resp, 404, "route_not_found").await?;
    }
    for (method, path, allow) in [
        (Method::PATCH, "/v1/items", "GET,HEAD,POST,OPTIONS"),
        (
            Method::POST,
            "/v1/items/SKU-1",
            "GET,HEAD,PUT,DELETE,OPTIONS",
        ),
        (Method::GET, "/v1/items/SKU-1/adjustments", "POST,OPTIONS"),
        (Method::DELETE, "/v1/batches", "GET,HEAD,POST,OPTIONS"),
        (Method::PUT, "/v1/keys/k_1", "GET,HEAD,DELETE,OPTIONS"),
        (Method::GET, "/v1/webhooks/wh_1/test", "POST,OPTIONS"),
        (Method::POST, "/v1/health", "GET,HEAD,OPTIONS"),
    ] {
        for resp in [
            t.request(method.clone(), path).send().await?,
            anonymous(method.clone(), path).send().await?,
        ] {
            let got = resp
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            assert_eq!(got.as_deref(), Some(allow), "{method} {path}");
            assert!(resp.headers().contains_key("x-request-id"));
            expect_problem(resp, 405, "method_not_allowed").await?;
        }
    }
    Ok(())
}

/// The functions log CloudWatch EMF documents (what `make metrics` sums and
/// CloudWatch turns into metrics when deployed): requests by route and
/// status class, latency, cold starts.
#[tokio::test]
async fn requests_are_measured_as_embedded_metrics() -> anyhow::Result<()> {
    let t = stockroom_tests::Tenant::new().await?;
    let sku = stockroom_tests::unique_sku("emf");
    t.create_item(&sku, 1).await?;
    assert_eq!(
        t.get(&format!("/v1/items/{sku}")).send().await?.status(),
        200
    );
    let log = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/logs/items-api.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log)?;
        let docs: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| l.contains("\"_aws\""))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let counted = docs.iter().any(|d| {
            d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Stockroom"
                && d["route"] == "/v1/items/{sku}"
                && d["status"] == "2xx"
                && d["Requests"].as_u64().unwrap_or(0) >= 1
                && d["function"] == "items-api"
        });
        let timed = docs
            .iter()
            .any(|d| d["route"] == "/v1/items/{sku}" && d.get("LatencyMs").is_some());
        if counted && timed {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no EMF document for GET /v1/items/{{sku}} in {}",
            log.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// CORS is off by default; the test stack turns it on for one origin
/// (`CorsAllowOrigin`, Makefile TEST_PARAMETERS): the preflight, the
/// functions' answers and API Gateway's own errors all name that origin.
#[tokio::test]
async fn cors_follows_the_stage_setting() -> anyhow::Result<()> {
    const ORIGIN: &str = "https://app.example.test";
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let pre = anonymous(Method::OPTIONS, "/v1/items/SKU-1/adjustments")
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await?;
    assert_eq!(pre.status(), 204);
    assert_eq!(
        header(&pre, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    let allowed = header(&pre, "access-control-allow-headers").unwrap_or_default();
    assert!(allowed.contains("Authorization") && allowed.contains("Idempotency-Key"));
    // The path's own methods, nothing it does not implement.
    assert_eq!(
        header(&pre, "access-control-allow-methods").as_deref(),
        Some("POST,OPTIONS")
    );
    assert!(header(&pre, "x-request-id").is_some());
    let pre = anonymous(Method::OPTIONS, "/v1/items/SKU-1")
        .header("origin", ORIGIN)
        .header("access-control-request-method", "PUT")
        .send()
        .await?;
    assert_eq!(pre.status(), 204);
    assert_eq!(
        header(&pre, "access-control-allow-methods").as_deref(),
        Some("GET,HEAD,PUT,DELETE,OPTIONS")
    );

    let t = Tenant::new().await?;
    let ok = t.get("/v1/items").header("origin", ORIGIN).send().await?;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        header(&ok, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    assert!(
        header(&ok, "access-control-expose-headers")
            .unwrap_or_default()
            .contains("x-request-id")
    );

    let denied = anonymous(Method::GET, "/v1/items")
        .header("origin", ORIGIN)
        .send()
        .await?;
    assert_eq!(
        header(&denied, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    expect_problem(denied, 401, "unauthorized").await?;
    Ok(())
}

/// The benchmark's calls per record (docs/cost.md) come from these counts:
/// a function's SDK call through the fault proxy is counted by operation.
#[tokio::test]
async fn the_local_stack_counts_the_functions_aws_calls() -> anyhow::Result<()> {
    let t = Tenant::new().await?;
    let sku = stockroom_tests::unique_sku("calls");
    t.create_item(&sku, 1).await?;
    let calls = || async {
        let v: Value = stockroom_tests::client()
            .get(format!("{}/_local/aws-calls", stockroom_tests::base_url()))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        anyhow::Ok(v)
    };
    let get_items = |v: &Value| v["functions"]["dynamodb"]["GetItem"].as_u64().unwrap_or(0);
    let before = calls().await?;
    let resp = t.get(&format!("/v1/items/{sku}")).send().await?;
    assert_eq!(resp.status(), 200);
    let after = calls().await?;
    assert!(
        get_items(&after) > get_items(&before),
        "GetItem not counted: {before} -> {after}"
    );
    // The event source pollers' SQS calls are counted apart from the
    // functions', per queue.
    let chunks_queue = std::env::var("BATCH_QUEUE_URL")?
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        after["event-source-mappings"][format!("sqs/{chunks_queue}")]["ReceiveMessage"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{after}"
    );
    Ok(())
}

/// Every path of the API has an `ANY` method, open like API Gateway's own
/// answers, on the function that owns the path: without it a missing method
/// would be API Gateway's 404, not the router's 405 with `Allow`.
#[test]
fn every_path_sends_the_methods_it_lacks_to_its_own_function() -> anyhow::Result<()> {
    use std::collections::{BTreeMap, BTreeSet};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/stack.json");
    let stack: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    let mut owners: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut any: BTreeMap<&str, &Value> = BTreeMap::new();
    for route in stack["api"]["routes"].as_array().into_iter().flatten() {
        let path = route["path"].as_str().unwrap_or_default();
        if route["method"] == "ANY" {
            any.insert(path, route);
        } else {
            let function = route["function"].as_str().unwrap_or_default();
            owners.entry(path).or_default().insert(function);
        }
    }
    anyhow::ensure!(!owners.is_empty(), "no routes in {}", path.display());
    for (path, functions) in &owners {
        let route = any
            .get(path)
            .ok_or_else(|| anyhow::anyhow!("{path} has no ANY method"))?;
        assert_eq!(functions.len(), 1, "{path} is served by {functions:?}");
        assert!(
            functions.contains(route["function"].as_str().unwrap_or_default()),
            "{path}"
        );
        assert!(route["authorizer"].is_null(), "{path}: ANY must be open");
        assert_eq!(route["api_key_required"], false, "{path}");
    }
    assert_eq!(
        any.len(),
        owners.len(),
        "ANY methods on paths without operations"
    );
    Ok(())
}
