//! Per-tenant rate limits and quotas: API Gateway usage plans, enforced by
//! the local gateway with the template's numbers (the test stack lowers the
//! trial plan's daily quota, see TEST_PARAMETERS in the Makefile).

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use stockroom_domain::key::ALL_SCOPES;
use stockroom_tests::{Tenant, expect_problem, plans};

/// Sends `n` GET /v1/items at once; returns the statuses and the 429 bodies.
async fn burst(t: &Tenant, n: usize) -> Result<(Vec<u16>, Vec<(Option<String>, Value)>)> {
    let sends = (0..n).map(|_| t.get("/v1/items?limit=1").send());
    let mut statuses = Vec::new();
    let mut limited = Vec::new();
    for resp in all_at_once(sends).await {
        let resp = resp?;
        let status = resp.status().as_u16();
        statuses.push(status);
        if status == 429 {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            limited.push((
                retry_after,
                expect_problem(resp, 429, "rate_limited").await?,
            ));
        }
    }
    Ok((statuses, limited))
}

/// All the requests in flight at once.
async fn all_at_once<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn rate_limited_lines() -> usize {
    let log =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/logs/stockroom-local.log");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"RateLimitedRequests\""))
        .count()
}

#[tokio::test]
async fn a_tenant_over_its_plan_rate_gets_429_then_recovers_and_others_are_unaffected() -> Result<()>
{
    let limits = plans().await?.limits("trial").await?;
    let burst_limit = limits.burst.context("trial plan has a burst")? as usize;
    let t = Tenant::on_plan("trial", ALL_SCOPES).await?;
    let neighbour = Tenant::new().await?;
    let metric_before = rate_limited_lines();

    let started = std::time::Instant::now();
    let (statuses, limited) = burst(&t, burst_limit * 4).await?;
    // The bucket refills at the plan's rate while the burst is in flight.
    let refill =
        (limits.rate.unwrap_or_default() * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "only 200 or 429, never 5xx: {statuses:?}"
    );
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        !limited.is_empty(),
        "{} requests at once must trip a burst of {burst_limit}",
        statuses.len()
    );
    assert!(
        ok >= 1 && ok <= burst_limit + refill,
        "{ok} allowed for a burst of {burst_limit} (+{refill} refilled)"
    );
    for (retry_after, body) in &limited {
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body["limit"], "rate", "{body}");
    }
    // Another tenant's own plan is untouched by this tenant's flood.
    let resp = neighbour.get("/v1/items?limit=1").send().await?;
    assert_eq!(resp.status(), 200);

    // The bucket refills at the plan's rate: a second later it answers again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resp = t.get("/v1/items?limit=1").send().await?;
    assert_eq!(resp.status(), 200, "recovered after the Retry-After delay");

    // Counted as RateLimitedRequests (EMF line of the gateway; on AWS the
    // access-log metric filter on status 429).
    assert!(
        rate_limited_lines() >= metric_before + limited.len(),
        "every 429 is counted"
    );
    Ok(())
}

#[tokio::test]
async fn a_tenant_past_its_daily_quota_gets_429_with_the_reset_hint() -> Result<()> {
    let limits = plans().await?.limits("trial").await?;
    let quota = limits.quota.context("trial plan has a quota")? as usize;
    let rate = limits.rate.context("trial plan has a rate")?;
    assert!(
        quota <= 200,
        "the test stack lowers the trial quota (got {quota})"
    );
    let t = Tenant::on_plan("trial", ALL_SCOPES).await?;
    // Paced under the plan's rate, so only the quota can refuse.
    let pause = Duration::from_secs_f64(1.2 / rate);
    let mut served = 0;
    let refusal = loop {
        let resp = t.get("/v1/items?limit=1").send().await?;
        match resp.status().as_u16() {
            200 => served += 1,
            429 => break resp,
            other => anyhow::bail!("unexpected {other} after {served} requests"),
        }
        anyhow::ensure!(served <= quota, "the quota of {quota} was not enforced");
        tokio::time::sleep(pause).await;
    };
    assert_eq!(served, quota, "exactly the plan's quota is served");
    assert_eq!(
        refusal
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("3600")
    );
    let body = expect_problem(refusal, 429, "rate_limited").await?;
    assert_eq!(body["limit"], "daily_quota");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("00:00 UTC")
    );
    // It stays refused (today), and the tenant's other keys share the quota.
    tokio::time::sleep(pause).await;
    let other_key = t.another_key(ALL_SCOPES).await?;
    let resp = other_key.get("/v1/items?limit=1").send().await?;
    expect_problem(resp, 429, "rate_limited").await?;
    Ok(())
}

#[tokio::test]
async fn moving_a_tenant_to_another_plan_applies_its_limits() -> Result<()> {
    let t = Tenant::new().await?;
    let (statuses, _) = burst(&t, 30).await?;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "standard plan: {statuses:?}"
    );

    plans().await?.assign(&t.tenant_id, "trial").await?;
    // The gateway re-reads plan membership at least every 5 s (API Gateway
    // applies a change within seconds too).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (statuses, limited) = burst(&t, 30).await?;
    assert!(!limited.is_empty(), "trial plan: {statuses:?}");
    Ok(())
}

#[tokio::test]
async fn a_tenant_never_given_a_plan_is_refused_clearly() -> Result<()> {
    let t = Tenant::without_plan(ALL_SCOPES).await?;
    let resp = t.get("/v1/items").send().await?;
    expect_problem(resp, 403, "no_usage_plan").await?;
    // Open routes need no plan.
    let resp = t.get("/v1/health").send().await?;
    assert_eq!(resp.status(), 200);
    Ok(())
}
