use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use stockroom_app::telemetry::error_chain;
use stockroom_app::uploads::{SplitOutcome, UploadSplitter, parse_upload_key};
use stockroom_aws::sqs_batch::{receive_count, trace_header};
use tracing::Instrument;

pub struct App {
    pub splitter: UploadSplitter,
    pub dlq_arn: String,
    pub function: String,
}

/// The parts of an S3 notification the splitter reads. (`aws_lambda_events`'
/// `S3Event` requires fields, such as `userIdentity`, that the local
/// emulator leaves out; these two are in every notification.)
#[derive(serde::Deserialize)]
struct Notification {
    #[serde(rename = "Records")]
    records: Vec<NotificationRecord>,
}

#[derive(serde::Deserialize)]
struct NotificationRecord {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: NotificationS3,
}

#[derive(serde::Deserialize)]
struct NotificationS3 {
    object: NotificationObject,
}

#[derive(serde::Deserialize)]
struct NotificationObject {
    key: String,
}

/// The object keys an S3 notification names (none for S3's test event).
/// Keys arrive URL-encoded, spaces as `+`.
pub fn object_keys(body: &str) -> Result<Vec<String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let event: Notification =
        serde_json::from_value(value).map_err(|e| format!("not an S3 notification: {e}"))?;
    event
        .records
        .into_iter()
        .filter(|r| r.event_name.starts_with("ObjectCreated:"))
        .map(|r| r.s3.object.key)
        .map(|key| {
            percent_encoding::percent_decode_str(&key.replace('+', " "))
                .decode_utf8()
                .map(|k| k.into_owned())
                .map_err(|e| format!("object key {key:?} is not UTF-8: {e}"))
        })
        .collect()
}

async fn split_one(app: &'static App, key: &str, dead_lettered: bool) -> Result<(), String> {
    let (tenant, batch_id) = parse_upload_key(key)
        .map(|(t, b)| (t.as_str().to_owned(), b))
        .unwrap_or_default();
    let span = tracing::info_span!(
        "upload",
        request_id = tracing::field::Empty,
        tenant = %tenant,
        function = %app.function,
        batch_id = %batch_id,
        key = %key,
        dead_lettered,
    );
    async move {
        let outcome = if dead_lettered {
            app.splitter.dead_lettered(key).await
        } else {
            app.splitter.split(key).await
        };
        match outcome {
            Ok(SplitOutcome::Enqueued {
                total,
                invalid,
                chunks,
            }) => {
                tracing::info!(total, invalid, chunks, "upload enqueued");
                Ok(())
            }
            Ok(SplitOutcome::Failed(error)) => {
                tracing::info!(code = %error.code, "upload refused; the batch failed");
                Ok(())
            }
            Ok(SplitOutcome::Ignored(why)) => {
                tracing::warn!(why, "upload notification ignored");
                Ok(())
            }
            Err(e) => {
                let error = error_chain(&e);
                tracing::error!(error = %error, "splitting the upload failed; it will be retried");
                Err(error)
            }
        }
    }
    .instrument(span)
    .await
}

/// Processes one message; `Err(message_id)` when it must be retried.
async fn process(app: &'static App, msg: SqsMessage, cold_start: bool) -> Result<(), String> {
    let message_id = msg.message_id.clone().unwrap_or_default();
    let dead_lettered = msg.event_source_arn.as_deref() == Some(app.dlq_arn.as_str());
    let span = tracing::info_span!(
        "notification",
        function = %app.function,
        message_id = %message_id,
        receive_count = receive_count(&msg),
        trace_header = trace_header(&msg),
        cold_start,
        dead_lettered,
    );
    async move {
        let keys = match object_keys(msg.body.as_deref().unwrap_or_default()) {
            Ok(keys) => keys,
            Err(why) => {
                // Retrying cannot make it readable: drop it, loudly.
                tracing::error!(why = %why, "unreadable upload notification dropped");
                return Ok(());
            }
        };
        let mut failed = false;
        for key in keys {
            failed |= split_one(app, &key, dead_lettered).await.is_err();
        }
        if failed { Err(message_id) } else { Ok(()) }
    }
    .instrument(span)
    .await
}

pub async fn handle(
    event: LambdaEvent<SqsEvent>,
    app: &'static App,
) -> Result<SqsBatchResponse, Error> {
    let cold_start = stockroom_app::telemetry::cold_start();
    Ok(
        stockroom_aws::sqs_batch::each_message(event.payload.records, |msg| {
            process(app, msg, cold_start)
        })
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_decoded_and_test_events_skipped() {
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-11-27T03:29:49.884Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","configurationId":"x","bucket":{"name":"b","arn":"arn:aws:s3:::b"},"object":{"key":"uploads%2Facme%2Fb_1+2","size":0}}}]}"#;
        assert_eq!(object_keys(body).unwrap(), vec!["uploads/acme/b_1 2"]);
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"t","Bucket":"b"}"#;
        assert!(object_keys(test).unwrap().is_empty());
        assert!(object_keys("{}").is_err());
        assert!(object_keys("garbage").is_err());
    }
}
