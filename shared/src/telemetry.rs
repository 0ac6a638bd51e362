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
