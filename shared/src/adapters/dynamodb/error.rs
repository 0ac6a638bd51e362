//! Classifies SDK errors: throttling and transport failures (after the SDK's
//! own retries) are `Unavailable` (HTTP 503), everything else `Backend` (500).

use crate::ports::StoreError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

const RETRYABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
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

/// Maps a failed condition to `ConditionFailed`, anything else through `classify`.
pub(crate) fn condition<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let SdkError::ServiceError(se) = &e
        && se.err().code() == Some("ConditionalCheckFailedException")
    {
        return StoreError::ConditionFailed;
    }
    classify(e)
}

pub(crate) fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(Box::new(e))
}
