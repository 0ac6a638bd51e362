//! DynamoDB error helpers: failed conditions, builder errors; the general
//! classification (`Unavailable` vs `Backend`) is `adapters::classify`.

pub(crate) use crate::classify;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use stockroom_app::ports::StoreError;

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

/// For a create conditioned on the record's absence: a failed condition
/// means it exists already (`AlreadyExists`).
pub(crate) fn already_exists<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match condition(e) {
        StoreError::ConditionFailed => StoreError::AlreadyExists,
        other => other,
    }
}

/// Whether a conditional write applied: a failed condition is `Ok(false)`.
pub(crate) fn applied<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result.map_err(condition) {
        Ok(_) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(Box::new(e))
}
