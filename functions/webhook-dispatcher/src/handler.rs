use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use stockroom_app::telemetry::error_chain;
use stockroom_app::webhooks::{DispatchError, DispatchMessage, Dispatcher};
use stockroom_aws::sqs_batch::{attribute, receive_count, trace_header};
use tracing::Instrument;

pub struct App {
    pub dispatcher: Dispatcher,
    /// The deliveries queue's name: held-back jobs from it are released.
    pub deliveries_queue: String,
    pub function: String,
}

/// Handles one message; `Err(message_id)` when SQS must deliver it again.
async fn process(app: &'static App, msg: SqsMessage, cold_start: bool) -> Result<(), String> {
    let message_id = msg.message_id.clone().unwrap_or_default();
    let receive_count = receive_count(&msg);
    let body = msg.body.as_deref().unwrap_or_default();
    let parsed: Result<DispatchMessage, _> = serde_json::from_str(body);
    let (request_id, tenant) = match &parsed {
        Ok(DispatchMessage::Job(j)) => (j.request_id.clone(), j.tenant_id.clone()),
        Ok(DispatchMessage::Event(e)) => (e.request_id.clone(), e.tenant_id.clone()),
        Err(_) => (
            attribute(&msg, "request_id").unwrap_or_default(),
            attribute(&msg, "tenant_id").unwrap_or_default(),
        ),
    };
    let span = tracing::info_span!(
        "dispatch",
        request_id = %request_id,
        tenant = %tenant,
        function = %app.function,
        message_id = %message_id,
        receive_count,
        cold_start,
        trace_header = trace_header(&msg),
    );
    async move {
        let result = match parsed {
            Ok(DispatchMessage::Event(event)) => app
                .dispatcher
                .fan_out(&event)
                .await
                .map(|n| tracing::info!(event_id = %event.id, event_type = event.kind.as_str(), deliveries = n, "event fanned out")),
            Ok(DispatchMessage::Job(job)) => app
                .dispatcher
                .deliver(&job, receive_count, msg.receipt_handle.as_deref())
                .await
                .map(|outcome| tracing::info!(webhook_id = %job.webhook_id, delivery_id = %job.delivery_id, outcome = ?outcome, "delivery job done")),
            Err(e) => Err(DispatchError::Unreadable(e.to_string())),
        };
        match result {
            Ok(()) => Ok(()),
            // Redelivering cannot make it readable: dead-letter it now (no hot
            // loop, no 5 x visibility-timeout wait), SQS redelivery as fallback.
            Err(DispatchError::Unreadable(why)) => {
                match app.dispatcher.reject_unreadable(body, &why).await {
                    Ok(()) => {
                        tracing::warn!(reason = %why, "unreadable message dead-lettered");
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(reason = %why, error = %error_chain(&e), "could not dead-letter an unreadable message; SQS will redeliver");
                        Err(message_id)
                    }
                }
            }
            Err(DispatchError::RetryScheduled(why)) => {
                tracing::info!(reason = %why, "delivery attempt failed; retry scheduled");
                Err(message_id)
            }
            Err(e) => {
                // Store failures go back to SQS; the redrive policy
                // dead-letters what keeps failing.
                tracing::error!(error = %error_chain(&e), "dispatch failed; SQS will redeliver");
                Err(message_id)
            }
        }
    }
    .instrument(span)
    .await
}

/// Both queues are FIFO: the messages of one group (an event key, or a
/// webhook and event key) are handled in order and a failure holds back the
/// rest of its group; groups are handled concurrently (deliveries wait on
/// remote endpoints). Only the failed ones are reported back to SQS.
pub async fn handle(
    event: LambdaEvent<SqsEvent>,
    app: &'static App,
) -> Result<SqsBatchResponse, Error> {
    let cold_start = stockroom_app::telemetry::cold_start();
    let (response, held_back) =
        stockroom_aws::sqs_batch::each_group_in_order(event.payload.records, move |msg| {
            process(app, msg, cold_start)
        })
        .await;
    // Jobs behind a failed one: visible again now, so they follow its retry
    // instead of the visibility timeout (SQS keeps their group blocked).
    let handles: Vec<String> = held_back
        .into_iter()
        .filter(|m| {
            m.event_source_arn
                .as_deref()
                .is_some_and(|arn| arn.rsplit(':').next() == Some(app.deliveries_queue.as_str()))
        })
        .filter_map(|m| m.receipt_handle)
        .collect();
    if !handles.is_empty()
        && let Err(e) = app.dispatcher.queue.release(&handles).await
    {
        tracing::warn!(error = %error_chain(&e), "releasing held-back jobs failed; they wait out their visibility timeout");
    }
    Ok(response)
}
