//! Status push end to end on the local stack: events published to the SNS
//! topic, fanned out by the dispatcher, delivered signed (Standard Webhooks)
//! to receivers on 127.0.0.1, retried, dead-lettered, disabled, replayed.
//! The test stack runs with `WebhookRetrySchedule=1,1,1` (4 attempts, 1 s
//! apart) and the local-only flag that allows `http://127.0.0.1` targets.

use anyhow::{Context, Result};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use stockroom_app::webhooks::signing;
use stockroom_app::webhooks::target::{TargetPolicy, validate_url};
use stockroom_tests::receiver::{Receiver, Reply};
use stockroom_tests::{Tenant, expect_problem, function_env, unique_sku, wait_for_batch};

/// No local log file contains any of these strings (keys, secrets).
fn assert_in_no_log(needles: &[&str]) -> Result<()> {
    let logs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/logs");
    for entry in std::fs::read_dir(&logs)? {
        let path = entry?.path();
        let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
        for needle in needles {
            anyhow::ensure!(
                !text.contains(needle),
                "{} contains a secret",
                path.display()
            );
        }
    }
    Ok(())
}

async fn webhook(tenant: &Tenant, id: &str) -> Result<Value> {
    Ok(tenant
        .get(&format!("/v1/webhooks/{id}"))
        .send()
        .await?
        .json()
        .await?)
}

async fn deliveries(tenant: &Tenant, webhook: &str) -> Result<Vec<Value>> {
    let page: Value = tenant
        .get(&format!("/v1/webhooks/{webhook}/deliveries?limit=100"))
        .send()
        .await?
        .json()
        .await?;
    Ok(page["deliveries"].as_array().cloned().unwrap_or_default())
}

/// Polls the delivery log until `done` holds for the delivery.
async fn wait_delivery(
    tenant: &Tenant,
    webhook: &str,
    delivery: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d: Value = tenant
            .get(&format!("/v1/webhooks/{webhook}/deliveries/{delivery}"))
            .send()
            .await?
            .json()
            .await?;
        if done(&d) {
            return Ok(d);
        }
        anyhow::ensure!(Instant::now() < deadline, "delivery never settled: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ping(tenant: &Tenant, webhook: &str) -> Result<String> {
    let resp = tenant
        .request(Method::POST, &format!("/v1/webhooks/{webhook}/test"))
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 202, "ping: {}", resp.text().await?);
    let body: Value = resp.json().await?;
    Ok(body["id"].as_str().context("delivery id")?.to_owned())
}

fn statuses(delivery: &Value) -> Vec<u64> {
    delivery["attempts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["status_code"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_1000_record_batch_produces_exactly_one_signed_batch_completed_delivery() -> Result<()> {
    let t = Tenant::new().await?;
    let rx = Receiver::start(vec![]).await?;
    let (hook, secret) = t
        .create_webhook(
            &format!("{}/hooks/stock", rx.url),
            &[
                "batch.completed",
                "batch.completed_with_errors",
                "batch.failed",
            ],
        )
        .await?;
    let prefix = unique_sku("wh");
    let records: Vec<Value> = (0..1000)
        .map(|i| json!({"id": format!("r{i}"), "op": "upsert", "sku": format!("{prefix}-{i}"), "name": "n", "quantity": 5}))
        .collect();
    let resp = t
        .post_json(
            "/v1/batches",
            &json!({"mode": "isolated", "records": records}),
        )
        .send()
        .await?;
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let accepted: Value = resp.json().await?;
    let batch_id = accepted["batch_id"]
        .as_str()
        .context("batch id")?
        .to_owned();
    let batch = wait_for_batch(&t, &batch_id, Duration::from_secs(120)).await?;
    assert_eq!(batch["status"], "completed", "{batch}");

    let got = rx.wait_for(1, Duration::from_secs(30)).await?;
    // Chunks finishing together must not announce twice: give stragglers time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got_after = rx.received();
    assert_eq!(got_after.len(), 1, "exactly one delivery: {got_after:?}");
    let r = &got[0];
    assert_eq!(r.path, "/hooks/stock");
    signing::verify(&secret, &r.headers, r.body.as_bytes()).context("signature verifies")?;
    let event = r.json();
    assert_eq!(event["type"], "batch.completed");
    assert_eq!(event["tenant_id"], t.tenant_id.as_str());
    assert_eq!(event["data"]["batch_id"], batch_id.as_str());
    assert_eq!(event["data"]["succeeded"], 1000);
    assert_eq!(event["request_id"], request_id.as_str());
    assert_eq!(
        r.header("webhook-id"),
        event["id"].as_str().unwrap_or_default()
    );
    assert_eq!(r.header("x-request-id"), request_id);
    assert_eq!(r.header("content-type"), "application/json");

    let log = deliveries(&t, &hook).await?;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["event_type"], "batch.completed");
    Ok(())
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_event_on_the_third_try_with_the_same_id() -> Result<()> {
    let t = Tenant::new().await?;
    let rx = Receiver::start(vec![Reply::Status(500), Reply::Status(503)]).await?;
    let (hook, secret) = t.create_webhook(&rx.url, &["batch.completed"]).await?;
    let delivery = ping(&t, &hook).await?;
    let got = rx.wait_for(3, Duration::from_secs(30)).await?;
    let ids: Vec<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "same webhook-id: {ids:?}"
    );
    assert!(ids[0].starts_with("evt_"));
    // Retries wait for the schedule (1 s here), they are not immediate.
    assert!(got[1].at - got[0].at >= Duration::from_millis(800));
    signing::verify(&secret, &got[2].headers, got[2].body.as_bytes())?;
    let d = wait_delivery(&t, &hook, &delivery, |d| d["status"] == "delivered").await?;
    assert_eq!(statuses(&d), vec![500, 503, 200], "{d}");
    assert_eq!(d["attempts"][0]["outcome"], "failed");
    assert_eq!(d["attempts"][2]["outcome"], "delivered");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rx.received().len(), 3, "nothing after the success");
    // The webhook is healthy again.
    let w = webhook(&t, &hook).await?;
    assert_eq!(w["status"], "enabled");
    assert!(w.get("failing_since").is_none(), "{w}");
    Ok(())
}

#[tokio::test]
async fn exhausted_deliveries_are_dead_lettered_then_replayable() -> Result<()> {
    let t = Tenant::new().await?;
    let rx = Receiver::start(vec![Reply::Status(500); 4]).await?;
    let (hook, _) = t.create_webhook(&rx.url, &["batch.completed"]).await?;
    let delivery = ping(&t, &hook).await?;
    let d = wait_delivery(&t, &hook, &delivery, |d| d["status"] == "failed").await?;
    assert_eq!(statuses(&d), vec![500, 500, 500, 500], "{d}");
    let last = d["attempts"][3]["error"].as_str().unwrap_or_default();
    assert!(last.contains("dead-lettered"), "{d}");

    // The job is in the DLQ, for an operator to redrive.
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let dlq = function_env("WebhookDispatcherFunction", "WEBHOOK_DLQ_URL")?;
    let mut found = false;
    for _ in 0..10 {
        let out = sqs
            .receive_message()
            .queue_url(&dlq)
            .max_number_of_messages(10)
            .visibility_timeout(1)
            .send()
            .await?;
        found = out
            .messages()
            .iter()
            .any(|m| m.body().unwrap_or_default().contains(&delivery));
        if found {
            break;
        }
    }
    assert!(found, "the exhausted job is in the webhook DLQ");

    // Replay: the same event again, now answered 200.
    let resp = t
        .request(
            Method::POST,
            &format!("/v1/webhooks/{hook}/deliveries/{delivery}/replay"),
        )
        .send()
        .await?;
    assert_eq!(resp.status(), 202);
    let d = wait_delivery(&t, &hook, &delivery, |d| d["status"] == "delivered").await?;
    assert_eq!(statuses(&d), vec![500, 500, 500, 500, 200], "{d}");
    let got = rx.received();
    assert_eq!(got.len(), 5);
    assert_eq!(got[4].header("webhook-id"), got[0].header("webhook-id"));
    Ok(())
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_the_tenant_is_told() -> Result<()> {
    let t = Tenant::new().await?;
    let gone = Receiver::start(vec![Reply::Status(410)]).await?;
    let watcher = Receiver::start(vec![]).await?;
    let (hook, _) = t.create_webhook(&gone.url, &["batch.completed"]).await?;
    let (_, watcher_secret) = t
        .create_webhook(&watcher.url, &["webhook.disabled"])
        .await?;
    let delivery = ping(&t, &hook).await?;
    let d = wait_delivery(&t, &hook, &delivery, |d| d["status"] == "failed").await?;
    assert_eq!(statuses(&d), vec![410], "no retry after 410: {d}");
    let w = webhook(&t, &hook).await?;
    assert_eq!(w["status"], "disabled", "{w}");
    assert!(
        w["disabled_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("410")
    );

    let told = watcher.wait_for(1, Duration::from_secs(30)).await?;
    signing::verify(&watcher_secret, &told[0].headers, told[0].body.as_bytes())?;
    let event = told[0].json();
    assert_eq!(event["type"], "webhook.disabled");
    assert_eq!(event["data"]["webhook_id"], hook.as_str());

    // Disabled: no test pings, no replays; enabling brings it back.
    let resp = t
        .request(Method::POST, &format!("/v1/webhooks/{hook}/test"))
        .send()
        .await?;
    expect_problem(resp, 409, "webhook_disabled").await?;
    let w: Value = t
        .request(Method::POST, &format!("/v1/webhooks/{hook}/enable"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(w["status"], "enabled");
    ping(&t, &hook).await?;
    gone.wait_for(2, Duration::from_secs(30)).await?;
    Ok(())
}

#[tokio::test]
async fn private_and_internal_targets_are_refused() -> Result<()> {
    let t = Tenant::new().await?;
    let table = [
        ("http://10.0.0.1/hook", "webhook_url_not_https"),
        ("https://10.0.0.1/hook", "webhook_url_forbidden_address"),
        (
            "https://169.254.169.254/latest/meta-data/",
            "webhook_url_forbidden_address",
        ),
        ("https://[::1]:8443/hook", "webhook_url_forbidden_address"),
        ("https://[fd00::1]/hook", "webhook_url_forbidden_address"),
        ("https://100.64.0.1/hook", "webhook_url_forbidden_address"),
        ("https://127.0.0.2/hook", "webhook_url_forbidden_address"),
        // A hostname resolving to loopback (via /etc/hosts here).
        (
            "https://localhost:8443/hook",
            "webhook_url_forbidden_address",
        ),
        ("http://localhost:8080/hook", "webhook_url_not_https"),
        (
            "https://user:pw@example.com/hook",
            "webhook_url_has_credentials",
        ),
        ("ftp://example.com/hook", "webhook_url_not_https"),
        ("not a url", "invalid_webhook_url"),
    ];
    for (url, code) in table {
        let resp = t
            .post_json(
                "/v1/webhooks",
                &json!({"url": url, "events": ["batch.completed"]}),
            )
            .send()
            .await?;
        expect_problem(resp, 422, code)
            .await
            .with_context(|| format!("registering {url}"))?;
    }
    // The local stack allows exactly http(s)://127.0.0.1 (for these tests);
    // the deployed policy, which the template uses, refuses it too.
    for url in ["http://127.0.0.1:8080/", "https://127.0.0.1/"] {
        assert!(
            validate_url(url, &TargetPolicy::deployed()).is_err(),
            "{url}"
        );
    }

    // A redirect (here to a private address) is a failed attempt, never followed.
    let rx = Receiver::start(vec![Reply::Redirect("http://10.0.0.1/steal".into()); 4]).await?;
    let (hook, _) = t.create_webhook(&rx.url, &["batch.completed"]).await?;
    let delivery = ping(&t, &hook).await?;
    let d = wait_delivery(&t, &hook, &delivery, |d| d["status"] == "failed").await?;
    assert_eq!(statuses(&d), vec![302, 302, 302, 302], "{d}");
    let error = d["attempts"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("redirect"), "{d}");
    assert_eq!(
        rx.received().len(),
        4,
        "one request per attempt, none followed"
    );
    Ok(())
}

#[tokio::test]
async fn low_stock_fires_once_per_crossing_from_adjustments_and_batches() -> Result<()> {
    let t = Tenant::new().await?;
    let rx = Receiver::start(vec![]).await?;
    t.create_webhook(&rx.url, &["item.low_stock"]).await?;
    let sku = unique_sku("low");
    let resp = t
        .post_json(
            "/v1/items",
            &json!({"sku": sku, "name": "mug", "quantity": 10, "low_stock_threshold": 5}),
        )
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let adjust = |delta: i64| {
        t.post_json(
            &format!("/v1/items/{sku}/adjustments"),
            &json!({"delta": delta, "reason": "sale"}),
        )
        .send()
    };
    for delta in [-3, -3, -1] {
        assert_eq!(adjust(delta).await?.status(), 200);
    }
    // 10 -> 7 -> 4 (crosses) -> 3 (already low). Then back up and down
    // through a batch: 3 -> 13 -> 3 (crosses again) -> 2 (already low).
    let batch: Value = t
        .post_json(
            "/v1/batches",
            &json!({"mode": "isolated", "records": [
                {"id": "up", "op": "adjust", "sku": sku, "delta": 10, "reason": "receipt"},
                {"id": "down", "op": "adjust", "sku": sku, "delta": -10, "reason": "sale"},
                {"id": "more", "op": "adjust", "sku": sku, "delta": -1, "reason": "sale"},
            ]}),
        )
        .send()
        .await?
        .json()
        .await?;
    let batch_id = batch["batch_id"].as_str().context("batch id")?.to_owned();
    wait_for_batch(&t, &batch_id, Duration::from_secs(60)).await?;
    let got = rx.wait_for(2, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got_after = rx.received();
    assert_eq!(got_after.len(), 2, "one event per crossing: {got_after:?}");
    let first = got[0].json();
    let second = got[1].json();
    let mut events = [first, second];
    events.sort_by_key(|e| e["data"]["version"].as_u64());
    assert_eq!(events[0]["type"], "item.low_stock");
    assert_eq!(events[0]["data"]["quantity"], 4);
    assert_eq!(events[0]["data"]["sku"], sku.as_str());
    assert!(events[0]["data"].get("batch_id").is_none());
    assert_eq!(events[1]["data"]["quantity"], 3);
    assert_eq!(events[1]["data"]["batch_id"], batch_id.as_str());
    Ok(())
}

#[tokio::test]
async fn rotated_secrets_both_sign_during_the_overlap() -> Result<()> {
    let t = Tenant::new().await?;
    let rx = Receiver::start(vec![]).await?;
    let (hook, old) = t.create_webhook(&rx.url, &["batch.completed"]).await?;
    let rotated: Value = t
        .request(Method::POST, &format!("/v1/webhooks/{hook}/rotate-secret"))
        .send()
        .await?
        .json()
        .await?;
    let new = rotated["secret"].as_str().context("secret")?.to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    assert!(rotated["previous_secret_expires_at"].is_string());
    ping(&t, &hook).await?;
    let got = rx.wait_for(1, Duration::from_secs(30)).await?;
    let signature = got[0].header("webhook-signature");
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    signing::verify(&new, &got[0].headers, got[0].body.as_bytes())?;
    signing::verify(&old, &got[0].headers, got[0].body.as_bytes())?;
    // Neither secret is ever shown again, nor written to any log.
    let shown = t
        .get(&format!("/v1/webhooks/{hook}"))
        .send()
        .await?
        .text()
        .await?;
    assert!(!shown.contains("whsec_"), "{shown}");
    assert_in_no_log(&[
        old.trim_start_matches("whsec_"),
        new.trim_start_matches("whsec_"),
    ])?;
    Ok(())
}

#[tokio::test]
async fn tenants_can_subscribe_their_own_queue_filtered_on_tenant_id() -> Result<()> {
    let a = Tenant::new().await?;
    let b = Tenant::new().await?;
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let sns = aws_sdk_sns::Client::new(&sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("tenant-{}", a.tenant_id))
        .send()
        .await?
        .queue_url
        .context("queue url")?;
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .context("queue arn")?;
    let topic_arn = function_env("EventsPublisherFunction", "EVENTS_TOPIC_ARN")?;
    // As on AWS, the topic may send to the queue only if the queue's policy
    // lets it (the local stack enforces queue policies on SNS deliveries).
    sqs.set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::Policy,
            json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}
            }]})
            .to_string(),
        )
        .send()
        .await?;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .attributes("RawMessageDelivery", "true")
        .attributes(
            "FilterPolicy",
            json!({"tenant_id": [a.tenant_id], "event_type": [{"prefix": "batch."}]}).to_string(),
        )
        .send()
        .await?;
    for tenant in [&b, &a] {
        let batch: Value = tenant
            .post_json(
                "/v1/batches",
                &json!({"mode": "isolated", "records": [
                    {"id": "1", "op": "upsert", "sku": unique_sku("sub"), "name": "n", "quantity": 1}]}),
            )
            .send()
            .await?
            .json()
            .await?;
        let id = batch["batch_id"].as_str().context("batch id")?.to_owned();
        wait_for_batch(tenant, &id, Duration::from_secs(60)).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut bodies = Vec::new();
    while Instant::now() < deadline && bodies.is_empty() {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        bodies.extend(
            out.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_owned)),
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .send()
        .await?;
    bodies.extend(
        out.messages()
            .iter()
            .filter_map(|m| m.body().map(str::to_owned)),
    );
    assert_eq!(bodies.len(), 1, "only A's batch event: {bodies:?}");
    let event: Value = serde_json::from_str(&bodies[0])?;
    assert_eq!(event["tenant_id"], a.tenant_id.as_str());
    assert_eq!(event["type"], "batch.completed");
    Ok(())
}

#[tokio::test]
async fn webhook_requests_are_validated_scoped_and_tenant_bound() -> Result<()> {
    let t = Tenant::new().await?;
    let resp = t
        .post_json(
            "/v1/webhooks",
            &json!({"url": "https://example.com/h", "events": ["batch.exploded"], "colour": "red"}),
        )
        .send()
        .await?;
    let problem = expect_problem(resp, 422, "validation_failed").await?;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, vec!["colour", "events[0]"]);
    let reader = t.another_key(&["items:read"]).await?;
    let resp = reader.get("/v1/webhooks").send().await?;
    expect_problem(resp, 403, "insufficient_scope").await?;

    let rx = Receiver::start(vec![]).await?;
    let (hook, _) = t.create_webhook(&rx.url, &["batch.completed"]).await?;
    let list: Value = t.get("/v1/webhooks").send().await?.json().await?;
    assert_eq!(list["webhooks"].as_array().map(Vec::len), Some(1));
    let other = Tenant::new().await?;
    let resp = other.get(&format!("/v1/webhooks/{hook}")).send().await?;
    expect_problem(resp, 404, "webhook_not_found").await?;
    let resp = t
        .get("/v1/webhooks/wh_nope/deliveries/dlv_nope")
        .send()
        .await?;
    expect_problem(resp, 404, "webhook_not_found").await?;
    let resp = t
        .get(&format!("/v1/webhooks/{hook}/deliveries/dlv_01nope"))
        .send()
        .await?;
    expect_problem(resp, 404, "delivery_not_found").await?;
    assert_eq!(
        t.delete(&format!("/v1/webhooks/{hook}"))
            .send()
            .await?
            .status(),
        204
    );
    let resp = t.delete(&format!("/v1/webhooks/{hook}")).send().await?;
    expect_problem(resp, 404, "webhook_not_found").await?;
    Ok(())
}

#[tokio::test]
async fn an_endpoint_failing_for_days_is_disabled_on_its_next_failure() -> Result<()> {
    let t = Tenant::new().await?;
    let rx = Receiver::start(vec![Reply::Status(500); 4]).await?;
    let (hook, _) = t.create_webhook(&rx.url, &["batch.completed"]).await?;
    // Its failure streak began a week ago (the template disables after 5 days).
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    aws_sdk_dynamodb::Client::new(&sdk)
        .update_item()
        .table_name(function_env("WebhooksApiFunction", "STOCK_TABLE")?)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{}#WH", t.tenant_id)),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("WH#{hook}")),
        )
        .update_expression("SET failing_since = :then")
        .expression_attribute_values(
            ":then",
            aws_sdk_dynamodb::types::AttributeValue::S("2026-01-01T00:00:00.000Z".into()),
        )
        .send()
        .await?;
    let delivery = ping(&t, &hook).await?;
    let d = wait_delivery(&t, &hook, &delivery, |d| d["status"] == "failed").await?;
    assert_eq!(statuses(&d), vec![500], "no retries once disabled: {d}");
    let w = webhook(&t, &hook).await?;
    assert_eq!(w["status"], "disabled", "{w}");
    assert!(
        w["disabled_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("failed for more than"),
        "{w}"
    );
    Ok(())
}

/// Every function's log lines for one request id (JSON lines, `span.request_id`).
fn log_lines_with(function: &str, needle: &str) -> Result<Vec<Value>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.local/logs")
        .join(format!("{function}.log"));
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(text
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[tokio::test]
async fn one_request_id_follows_a_batch_from_the_api_call_to_the_webhook() -> Result<()> {
    let t = Tenant::new().await?;
    let rx = Receiver::start(vec![]).await?;
    let (_, secret) = t.create_webhook(&rx.url, &["batch.completed"]).await?;
    let request_id = format!("trace-{}", uuid::Uuid::new_v4().simple());
    let batch: Value = t
        .post_json(
            "/v1/batches",
            &json!({"mode": "isolated", "records": [
                {"id": "r1", "op": "upsert", "sku": unique_sku("trace"), "name": "n", "quantity": 1}]}),
        )
        .header("x-request-id", &request_id)
        .send()
        .await?
        .json()
        .await?;
    let batch_id = batch["batch_id"].as_str().context("batch id")?.to_owned();
    let got = rx.wait_for(1, Duration::from_secs(60)).await?;
    assert_eq!(got[0].header("x-request-id"), request_id);
    assert_eq!(got[0].json()["request_id"], request_id.as_str());
    // The problem bodies carry it too (see the api tests); here the logs:
    // the API call, the worker's chunk, the dispatcher's fan-out and delivery.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for function in ["batches-api", "batch-worker", "webhook-dispatcher"] {
        let lines = log_lines_with(function, &request_id)?;
        assert!(
            !lines.is_empty(),
            "{function} logged nothing for {request_id}"
        );
        for line in &lines {
            let span = &line["span"];
            assert_eq!(span["request_id"], request_id.as_str(), "{line}");
            assert_eq!(span["tenant"], t.tenant_id.as_str(), "{line}");
            assert!(
                span["function"].as_str().is_some_and(|f| !f.is_empty()),
                "{line}"
            );
            assert!(span["cold_start"].is_boolean(), "{line}");
        }
    }
    let worker = log_lines_with("batch-worker", &request_id)?;
    assert!(
        worker
            .iter()
            .any(|l| l["batch_id"] == batch_id.as_str()
                || l["span"]["batch_id"] == batch_id.as_str())
    );
    let dispatcher = log_lines_with("webhook-dispatcher", &request_id)?;
    assert!(
        dispatcher
            .iter()
            .any(|l| l["message"] == "webhook delivery attempt"),
        "the delivery attempt is logged with the request id: {dispatcher:?}"
    );
    // Neither the API key nor the signing secret appears in any log.
    assert_in_no_log(&[&t.api_key, secret.trim_start_matches("whsec_")])?;
    Ok(())
}

#[tokio::test]
async fn deleting_an_item_publishes_item_deleted_from_the_api_and_from_batches() -> Result<()> {
    let t = Tenant::new().await?;
    let rx = Receiver::start(vec![]).await?;
    t.create_webhook(&rx.url, &["item.deleted"]).await?;
    let (by_api, by_batch) = (unique_sku("del"), unique_sku("del"));
    t.create_item(&by_api, 3).await?;
    t.create_item(&by_batch, 0).await?;
    assert_eq!(
        t.delete(&format!("/v1/items/{by_api}"))
            .send()
            .await?
            .status(),
        204
    );
    let batch: Value = t
        .post_json(
            "/v1/batches",
            &json!({"mode": "isolated", "records": [{"id": "d", "op": "delete", "sku": by_batch}]}),
        )
        .send()
        .await?
        .json()
        .await?;
    let batch_id = batch["batch_id"].as_str().context("batch id")?.to_owned();
    wait_for_batch(&t, &batch_id, Duration::from_secs(60)).await?;
    let got = rx.wait_for(2, Duration::from_secs(30)).await?;
    let mut seen: Vec<(String, Value)> = got
        .iter()
        .map(|r| {
            let e = r.json();
            (e["data"]["sku"].as_str().unwrap_or_default().to_owned(), e)
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let api = seen
        .iter()
        .find(|(s, _)| *s == by_api)
        .context("API delete event")?;
    let via_batch = seen
        .iter()
        .find(|(s, _)| *s == by_batch)
        .context("batch delete event")?;
    assert_eq!(api.1["type"], "item.deleted");
    assert_eq!(via_batch.1["type"], "item.deleted");
    assert_eq!(via_batch.1["data"]["batch_id"], batch_id.as_str());
    Ok(())
}

#[tokio::test]
async fn a_records_fate_can_be_read_from_the_logs() -> Result<()> {
    let t = Tenant::new().await?;
    let sku = unique_sku("fate");
    let good = format!("good-{}", uuid::Uuid::new_v4().simple());
    let bad = format!("bad-{}", uuid::Uuid::new_v4().simple());
    let batch: Value = t
        .post_json(
            "/v1/batches",
            &json!({"mode": "isolated", "records": [
                {"id": good, "op": "upsert", "sku": sku, "name": "n", "quantity": 1},
                {"id": bad, "op": "adjust", "sku": sku, "delta": -5, "reason": "sale"},
            ]}),
        )
        .send()
        .await?
        .json()
        .await?;
    let batch_id = batch["batch_id"].as_str().context("batch id")?.to_owned();
    wait_for_batch(&t, &batch_id, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failed = log_lines_with("batch-worker", &bad)?;
    let line = failed
        .iter()
        .find(|l| l["message"] == "record failed")
        .context("a 'record failed' line for the bad record")?;
    assert_eq!(line["span"]["batch_id"], batch_id.as_str());
    assert_eq!(line["code"], "insufficient_stock", "{line}");
    let held = log_lines_with("batch-worker", &good)?;
    assert!(
        held.iter().any(|l| l["message"] == "chunk processed"
            && l["span"]["batch_id"] == batch_id.as_str()
            && l["record_ids"]
                .as_str()
                .is_some_and(|ids| ids.split(',').any(|id| id == good))),
        "the chunk line lists the good record: {held:?}"
    );
    assert!(
        !held.iter().any(|l| l["message"] == "record failed"),
        "no failure logged for the good record"
    );
    Ok(())
}

#[tokio::test]
async fn an_unreadable_event_is_dead_lettered_at_once_with_its_reason() -> Result<()> {
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let dlq = function_env("WebhookDispatcherFunction", "WEBHOOK_DLQ_URL")?;
    let events_queue = function_env("EventsPublisherFunction", "WEBHOOK_EVENTS_QUEUE_URL")?;
    let marker = format!("garbage-{}", uuid::Uuid::new_v4().simple());
    sqs.send_message()
        .queue_url(&events_queue)
        .message_body(format!(
            "{{\"not\": \"an event\", \"marker\": \"{marker}\"}}"
        ))
        .message_group_id(&marker)
        .message_deduplication_id(&marker)
        .send()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&dlq)
            .max_number_of_messages(10)
            .visibility_timeout(1)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await?;
        if let Some(m) = out
            .messages()
            .iter()
            .find(|m| m.body().unwrap_or_default().contains(&marker))
        {
            let reason = m
                .message_attributes()
                .and_then(|a| a.get("dead_letter_reason"))
                .and_then(|v| v.string_value())
                .unwrap_or_default();
            assert!(!reason.is_empty(), "the reason travels with it");
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the unreadable event was not dead-lettered within 20 s (it must not wait for the redrive count)"
        );
    }
}

/// Every committed movement is one `stock.changed` delivery, with an id of
/// its own, signed, and one sku's deliveries arrive in commit order even
/// when an attempt fails and is retried (the first request gets a 500).
#[tokio::test]
async fn stock_changed_arrives_once_per_movement_in_commit_order_per_sku() -> Result<()> {
    let t = std::sync::Arc::new(Tenant::new().await?);
    let rx = Receiver::start(vec![Reply::Status(500)]).await?;
    let (_, secret) = t.create_webhook(&rx.url, &["stock.changed"]).await?;
    let skus: Vec<String> = (0..3).map(|i| unique_sku(&format!("ord{i}"))).collect();
    for sku in &skus {
        let resp = t
            .post_json(
                "/v1/items",
                &json!({"sku": sku, "name": "n", "quantity": 100}),
            )
            .send()
            .await?;
        assert_eq!(resp.status(), 201);
    }
    // Two writers per sku, all skus at once: each sku's adjustments race
    // (optimistic concurrency decides the commit order) and skus interleave.
    const WRITERS: usize = 2;
    const EACH: usize = 4;
    const PER_SKU: usize = WRITERS * EACH;
    let mut writers = Vec::new();
    for sku in &skus {
        for _ in 0..WRITERS {
            let (t, sku) = (t.clone(), sku.clone());
            writers.push(tokio::spawn(async move {
                for _ in 0..EACH {
                    let resp = t
                        .post_json(
                            &format!("/v1/items/{sku}/adjustments"),
                            &json!({"delta": -1, "reason": "sale"}),
                        )
                        .send()
                        .await?;
                    anyhow::ensure!(resp.status() == 200, "adjust: {}", resp.status());
                }
                anyhow::Ok(())
            }));
        }
    }
    for w in writers {
        w.await??;
    }
    let expected = skus.len() * (PER_SKU + 1);
    rx.wait_for(expected + 1, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = rx.received();
    // The first attempt failed (500) and was retried: one extra request.
    assert_eq!(got.len(), expected + 1, "one delivery per movement");
    let mut ids = std::collections::HashSet::new();
    let mut per_sku: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    let mut movement_ids = std::collections::HashSet::new();
    for (i, r) in got.iter().enumerate() {
        signing::verify(&secret, &r.headers, r.body.as_bytes()).context("signature")?;
        let e = r.json();
        assert_eq!(e["type"], "stock.changed");
        // The retried request repeats the first one's id; every other id is new.
        if i > 0 {
            assert!(
                ids.insert(e["id"].as_str().context("id")?.to_owned()),
                "{e}"
            );
            movement_ids.insert(e["data"]["movement_id"].as_str().context("mv")?.to_owned());
        }
        if i > 0 || got[0].json()["id"] != got[1].json()["id"] {
            per_sku
                .entry(e["data"]["sku"].as_str().context("sku")?.to_owned())
                .or_default()
                .push(e["data"]["quantity"].as_i64().context("quantity")?);
        }
    }
    for sku in &skus {
        let seen = per_sku.get(sku).context("deliveries of the sku")?;
        let mut in_order: Vec<i64> = seen.clone();
        in_order.dedup();
        let want: Vec<i64> = (100 - PER_SKU as i64..=100).rev().collect();
        assert_eq!(in_order, want, "{sku}: deliveries in commit order");
        // Each delivery is a movement of the sku's ledger.
        let ledger: Value = t
            .get(&format!("/v1/items/{sku}/movements?limit=100"))
            .send()
            .await?
            .json()
            .await?;
        for m in ledger["movements"].as_array().context("movements")? {
            assert!(movement_ids.contains(m["movement_id"].as_str().context("id")?));
        }
    }
    assert_eq!(movement_ids.len(), expected);
    Ok(())
}
