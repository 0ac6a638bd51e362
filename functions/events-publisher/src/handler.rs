use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{Error, LambdaEvent};
use stockroom_app::domain::change::CommittedChange;
use stockroom_app::outbox::EventsOutbox;
use stockroom_app::reservations::ReservationsService;
use stockroom_app::telemetry::{self, error_chain};
use stockroom_aws::dynamodb::stream::committed_change;
use tracing::Instrument;

pub struct App {
    pub outbox: EventsOutbox,
    /// Ends for good the holds whose records TTL removed unswept.
    pub holds: ReservationsService,
    pub function: String,
}

/// One batch of stream records (one shard, in order). Every event of the
/// batch is published, or the batch is reported failed from its first
/// record: the event source mapping retries it (bisecting on error), and
/// the stable event ids make the retry harmless downstream. A record that
/// cannot be read is reported (log and metric) and skipped: it must not
/// hold back the shard.
pub async fn handle(
    event: LambdaEvent<Event>,
    app: &'static App,
) -> Result<DynamoDbEventResponse, Error> {
    let cold_start = telemetry::cold_start();
    let records = event.payload.records;
    let span = tracing::info_span!(
        "stream_batch",
        request_id = %event.context.request_id,
        function = %app.function,
        records = records.len(),
        cold_start,
        first_sequence = records
            .first()
            .and_then(|r| r.change.sequence_number.as_deref())
            .unwrap_or_default(),
    );
    async move {
        let mut changes = Vec::with_capacity(records.len());
        let mut oldest_commit = None;
        for record in &records {
            match committed_change(record) {
                Ok(Some(change)) => {
                    changes.push(change);
                    let at = record.change.approximate_creation_date_time.timestamp_millis();
                    oldest_commit = Some(oldest_commit.map_or(at, |o: i64| o.min(at)));
                }
                Ok(None) => {}
                Err(e) => {
                    telemetry::stream_record_unreadable();
                    tracing::error!(sequence = %e.sequence, key = %e.key, reason = %e.reason, "stream record unreadable; skipped");
                }
            }
        }
        let lapsed = end_lapsed_holds(app, &changes, &event.context.request_id).await;
        let published = match lapsed {
            Ok(()) => app.outbox.publish(&changes).await,
            Err(e) => Err(e),
        };
        match published {
            Ok(events) => {
                if let Some(at) = oldest_commit {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or(at);
                    telemetry::stream_lag((now - at).max(0) as f64 / 1000.0);
                }
                let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
                tracing::info!(events = events.len(), event_ids = %ids.join(","), "events published");
                Ok(DynamoDbEventResponse::default())
            }
            Err(e) => {
                let first = records
                    .first()
                    .and_then(|r| r.change.sequence_number.clone());
                tracing::error!(error = %error_chain(&e), "publishing events failed; the batch will be retried");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = first;
                let mut response = DynamoDbEventResponse::default();
                response.batch_item_failures.push(failure);
                Ok(response)
            }
        }
    }
    .instrument(span)
    .await
}

/// Ends the holds whose active-hold records DynamoDB's TTL removed before a
/// write of their level swept them (each once: an ended hold is left alone).
async fn end_lapsed_holds(
    app: &App,
    changes: &[CommittedChange],
    request_id: &str,
) -> Result<(), stockroom_app::ports::StoreError> {
    let ctx = stockroom_app::domain::MovementContext {
        request_id: request_id.to_owned(),
        ..Default::default()
    };
    for change in changes {
        let CommittedChange::HoldLapsed {
            tenant,
            reservation_id,
        } = change
        else {
            continue;
        };
        let (Ok(tenant), Ok(id)) = (
            stockroom_app::domain::TenantId::parse(tenant),
            stockroom_app::domain::reservation::ReservationId::parse(reservation_id),
        ) else {
            tracing::error!(reservation_id = %reservation_id, "a lapsed hold names no valid tenant or reservation; skipped");
            continue;
        };
        app.holds.lapse(&tenant, &id, &ctx).await.map_err(|e| {
            stockroom_app::ports::StoreError::Unavailable(
                format!("ending lapsed hold {reservation_id}: {}", error_chain(&e)).into(),
            )
        })?;
        tracing::info!(reservation_id = %reservation_id, "lapsed hold ended");
    }
    Ok(())
}
