//! Every error a request can end in. The one mapping to HTTP problems lives
//! in `http::problem`; the `Display` text here is for logs, never for clients.

use crate::cursor::CursorError;
use crate::domain::FieldErrors;
use crate::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    #[error("invalid request parameters")]
    InvalidParameters(FieldErrors),
    #[error(transparent)]
    InvalidCursor(#[from] CursorError),
    #[error("unsupported content type {0:?}")]
    UnsupportedMediaType(String),
    #[error("request body of {size} bytes exceeds the {limit}-byte limit")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("request body failed validation")]
    Validation(FieldErrors),
    #[error("no valid API key in the request context")]
    Unauthorized,
    #[error("missing scope {0}")]
    InsufficientScope(&'static str),
    #[error("item not found")]
    ItemNotFound,
    #[error("batch not found")]
    BatchNotFound,
    #[error("API key not found")]
    KeyNotFound,
    #[error("webhook not found")]
    WebhookNotFound,
    #[error("location not found")]
    LocationNotFound,
    #[error("a location with this id already exists")]
    LocationExists,
    #[error("the default location cannot be created or deleted")]
    DefaultLocationFixed,
    #[error("the location holds stock")]
    LocationHoldsStock,
    #[error("the item has {holds} active reservations")]
    ItemReserved { holds: usize },
    #[error("the item has stock at other locations: {locations:?}")]
    ItemStockedElsewhere { locations: Vec<String> },
    #[error("the sku's stock is split into {buckets} buckets")]
    StockSplit { buckets: u16 },
    #[error("the count is below the {reserved} units reserved")]
    CountBelowReserved { reserved: i64 },
    #[error("reservation not found")]
    ReservationNotFound,
    #[error("insufficient available stock: {available} available, {requested} requested")]
    InsufficientAvailable { available: i64, requested: i64 },
    #[error("the reservation ended already: {status}")]
    ReservationEnded { status: &'static str },
    #[error("the reservation expired")]
    ReservationExpired,
    #[error("webhook delivery not found")]
    DeliveryNotFound,
    #[error("webhook URL refused ({code}): {message}")]
    WebhookUrlRefused { code: &'static str, message: String },
    #[error("the tenant has {limit} webhooks already")]
    WebhookLimitReached { limit: usize },
    #[error("the webhook is disabled")]
    WebhookDisabled,
    #[error("scope {0} cannot be granted by this key")]
    ScopeNotGrantable(String),
    #[error("malformed batch")]
    MalformedBatch(FieldErrors),
    #[error("batch has invalid records")]
    InvalidRecords(FieldErrors),
    #[error("batch has more than {limit} records")]
    TooManyRecords { limit: usize, atomic: bool },
    #[error("declared upload exceeds {limit} bytes")]
    UploadTooLarge { limit: u64 },
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("an item with this sku already exists")]
    SkuExists,
    #[error("insufficient stock: {available} available, delta {delta}")]
    InsufficientStock { available: i64, delta: i64 },
    #[error("the resulting quantity would exceed the maximum")]
    QuantityOverflow,
    #[error("If-Match precondition failed")]
    PreconditionFailed,
    #[error("Idempotency-Key reused with a different request")]
    IdempotencyKeyReused,
    #[error("gave up after repeated concurrent updates")]
    ConcurrentUpdate,
    #[error("store unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::Unavailable(e),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl ApiError {
    pub fn invalid_parameter(field: &str, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::default();
        errors.push(field, message);
        ApiError::InvalidParameters(errors)
    }
}
