//! A function's process set-up: structured JSON logs through `tracing`
//! (fields of the current span, such as request id, tenant and function, on
//! every line) and the CloudWatch EMF metrics recorder.

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
