//! What the use cases report beside their results: metric events (through
//! the `metrics` facade; the Lambda runtime installs the recorder), the
//! cold-start flag, and error chains for logs.

static COLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// True for the first invocation of this process (a cold start), false after;
/// call once per invocation and put it on the invocation's span.
pub fn cold_start() -> bool {
    COLD.swap(false, std::sync::atomic::Ordering::Relaxed)
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

/// An event derived from the table's stream was published, by type.
pub fn event_published(event_type: &'static str) {
    metrics::counter!("EventsPublished", "event_type" => event_type).increment(1);
}

/// A stream record the events publisher could not read (an alarm watches it).
pub fn stream_record_unreadable() {
    metrics::counter!("StreamRecordsUnreadable").increment(1);
}

/// How long after its commit a change's events were published.
pub fn stream_lag(seconds: f64) {
    metrics::histogram!("StreamToPublishMs").record(seconds * 1000.0);
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

/// One line per failed batch record (its id, code and reason), so "what
/// happened to record R of batch B" is answered by the logs too.
pub fn log_failures(failures: &[crate::domain::batch::RecordFailure]) {
    for f in failures {
        tracing::info!(record_id = %f.record_id, code = %f.code, reason = %f.message, "record failed");
    }
}
