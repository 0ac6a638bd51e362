//! Structured JSON logs through `tracing`. Fields of the current span
//! (request id, tenant, function) are attached to every line.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. Level: Lambda's `AWS_LAMBDA_LOG_LEVEL`
/// (advanced logging controls) if set, else `RUST_LOG`, else `info`.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into())
        .to_ascii_lowercase();
    // Keep the AWS SDK's own chatter at warn unless explicitly asked for.
    let directives = if level.contains('=') {
        level
    } else {
        format!("{level},aws_smithy_runtime=warn,aws_config=warn,hyper=warn,rustls=warn")
    };
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

static COLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// True for the first invocation of this process (a cold start), false after;
/// call once per invocation and put it on the invocation's span.
pub fn cold_start() -> bool {
    COLD.swap(false, std::sync::atomic::Ordering::Relaxed)
}

/// The metrics crate's CloudWatch EMF backend, re-exported so the functions'
/// `main` can hand their handler to its Lambda runner (which flushes the
/// metrics after every invocation).
pub use metrics_cloudwatch_embedded as emf;

/// Installs the EMF recorder: namespace `Stockroom`, dimension `function`,
/// a `ColdStart` count, and the Lambda request id on every document. The
/// documents go to stdout, where Lambda (and the local stack) log them.
pub fn metrics(function: &'static str) -> Result<&'static emf::Collector, emf::Error> {
    emf::Builder::new()
        .cloudwatch_namespace("Stockroom")
        .with_dimension("function", function)
        .lambda_cold_start_metric("ColdStart")
        .with_lambda_request_id("RequestId")
        .init()
}

/// `AuthorizerDecisions` by decision (denial spikes feed an alarm).
pub fn authorizer_decision(allowed: bool) {
    let decision = if allowed { "allow" } else { "deny" };
    metrics::counter!("AuthorizerDecisions", "decision" => decision).increment(1);
}

/// A batch reached its terminal status: its records by outcome and its
/// end-to-end duration (accepted to terminal).
pub fn batch_finished(batch: &crate::domain::batch::Batch) {
    metrics::counter!("BatchRecords", "outcome" => "applied").increment(batch.succeeded);
    metrics::counter!("BatchRecords", "outcome" => "failed").increment(batch.failed);
    metrics::counter!("Batches", "status" => batch.status.as_str()).increment(1);
    if let (Some(start), Some(end)) = (
        crate::clock::parse(&batch.created_at),
        batch.completed_at.as_deref().and_then(crate::clock::parse),
    ) {
        metrics::histogram!("BatchDurationMs").record((end - start).as_seconds_f64() * 1000.0);
    }
}

/// One webhook delivery attempt by outcome and attempt number.
pub fn webhook_attempt(outcome: &'static str, attempt: u32) {
    let attempt = match attempt {
        1 => "1",
        2 => "2",
        3 => "3",
        _ => "4+",
    };
    metrics::counter!("WebhookDeliveries", "outcome" => outcome, "attempt" => attempt).increment(1);
}

/// Renders an error with its whole `source()` chain, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
