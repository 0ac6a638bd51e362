//! The adapters: the ports of `stockroom-app` implemented on AWS services
//! (DynamoDB, SQS, SNS, KMS, S3) and on the webhook HTTPS client, plus what
//! a function's process sets up once at init (the SDK configuration, logs
//! and metrics, the SQS batch runner).

pub mod dynamodb;
pub mod kms;
pub mod runtime;
#[cfg(feature = "s3")]
pub mod s3;
pub mod sdk;
pub mod sns;
pub mod sqs;
pub mod sqs_batch;
pub mod webhook_sender;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use stockroom_app::ports::StoreError;

/// Throttling and transport failures (after the SDK's own retries) are
/// `Unavailable` (HTTP 503), everything else `Backend` (500).
const RETRYABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
    // S3
    "SlowDown",
    "InternalError",
];

pub(crate) fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let unavailable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ServiceError(se) => se
            .err()
            .code()
            .is_some_and(|c| RETRYABLE_CODES.contains(&c)),
        SdkError::ResponseError(_) => true,
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(Box::new(err))
    } else {
        StoreError::Backend(Box::new(err))
    }
}

use std::future::Future;
use std::time::Duration;

/// Indexes `0..len` in calls of at most `max` entries (entries of equal size).
pub(crate) fn calls_of(len: usize, max: usize) -> Vec<Vec<usize>> {
    (0..len)
        .collect::<Vec<_>>()
        .chunks(max)
        .map(<[usize]>::to_vec)
        .collect()
}

/// Batched sends (SQS SendMessageBatch, SNS PublishBatch) can accept part of
/// a call: `send` sends the entries at these indexes and returns the ones
/// to send again; they are resent with a growing pause, a few times.
pub(crate) async fn send_in_calls<F, Fut>(
    calls: Vec<Vec<usize>>,
    what: &str,
    mut send: F,
) -> Result<(), StoreError>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Vec<usize>, StoreError>>,
{
    const MAX_ROUNDS: u32 = 6;
    for call in calls {
        let mut pending = call;
        let mut round = 0;
        while !pending.is_empty() {
            pending = send(pending).await?;
            if !pending.is_empty() {
                round += 1;
                if round > MAX_ROUNDS {
                    return Err(StoreError::Unavailable(
                        format!("{what} kept refusing entries").into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20 << round)).await;
            }
        }
    }
    Ok(())
}
