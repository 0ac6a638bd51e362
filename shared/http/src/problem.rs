//! The one mapping from [`ApiError`] to an RFC 9457 `application/problem+json`
//! response. 5xx causes are logged with their chain; clients get only the
//! public text and the request id.
//!
//! `ApiError` belongs to the use cases (`stockroom-app`), which know nothing
//! of HTTP; [`HttpError`] is the one place it meets axum. Handlers return
//! `Result<_, HttpError>` and `?` converts any `ApiError` (or anything that
//! converts into one) on the way out.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use stockroom_app::error::ApiError;
use stockroom_app::telemetry::error_chain;
use stockroom_domain::FieldError;

pub const PROBLEM_JSON: &str = "application/problem+json";
const TYPE_BASE: &str = "https://stockroom.dev/problems/";

tokio::task_local! {
    /// The current request's id, set by the request-context middleware.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// Problem details (RFC 9457) with Stockroom's stable `code`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// URI identifying the problem type.
    #[serde(rename = "type")]
    #[schema(example = "https://stockroom.dev/problems/item-not-found")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code; see the API documentation for the list.
    #[schema(example = "item_not_found")]
    pub code: String,
    pub request_id: String,
    /// Field-level errors (validation and parameter problems only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// On `rate_limited` (429) only: which limit was hit. `rate`: the tenant
    /// plan's requests per second (retry in a second); `daily_quota`: the
    /// plan's requests per UTC day (resets at 00:00 UTC); `client_ip`: the
    /// firewall's requests per client address in 5 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "rate")]
    pub limit: Option<String>,
}

/// Status, code and title of every error, in one place.
fn classify(e: &ApiError) -> (StatusCode, &'static str, &'static str) {
    use ApiError::*;
    match e {
        MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json", "Malformed JSON"),
        InvalidParameters(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "Invalid parameter",
        ),
        InvalidCursor(_) => (StatusCode::BAD_REQUEST, "invalid_cursor", "Invalid cursor"),
        UnsupportedMediaType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
        ),
        PayloadTooLarge { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
        ),
        Validation(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Validation failed",
        ),
        Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
        InsufficientScope(_) => (
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "Insufficient scope",
        ),
        ItemNotFound => (StatusCode::NOT_FOUND, "item_not_found", "Item not found"),
        BatchNotFound => (StatusCode::NOT_FOUND, "batch_not_found", "Batch not found"),
        KeyNotFound => (StatusCode::NOT_FOUND, "key_not_found", "API key not found"),
        LocationNotFound => (
            StatusCode::NOT_FOUND,
            "location_not_found",
            "Location not found",
        ),
        LocationExists => (StatusCode::CONFLICT, "location_exists", "Location exists"),
        LocationHoldsStock => (
            StatusCode::CONFLICT,
            "location_holds_stock",
            "Location holds stock",
        ),
        DefaultLocationFixed => (StatusCode::CONFLICT, "default_location", "Default location"),
        ItemReserved { .. } => (StatusCode::CONFLICT, "item_reserved", "Item reserved"),
        ItemStockedElsewhere { .. } => (
            StatusCode::CONFLICT,
            "item_stocked_elsewhere",
            "Item stocked at other locations",
        ),
        StockSplit { .. } => (StatusCode::CONFLICT, "stock_split", "Stock split"),
        CountBelowReserved { .. } => (
            StatusCode::CONFLICT,
            "count_below_reserved",
            "Count below reserved",
        ),
        ReservationNotFound => (
            StatusCode::NOT_FOUND,
            "reservation_not_found",
            "Reservation not found",
        ),
        InsufficientAvailable { .. } => (
            StatusCode::CONFLICT,
            "insufficient_available",
            "Insufficient available stock",
        ),
        ReservationEnded { .. } => (
            StatusCode::CONFLICT,
            "reservation_ended",
            "Reservation ended",
        ),
        ReservationExpired => (
            StatusCode::CONFLICT,
            "reservation_expired",
            "Reservation expired",
        ),
        WebhookNotFound => (
            StatusCode::NOT_FOUND,
            "webhook_not_found",
            "Webhook not found",
        ),
        DeliveryNotFound => (
            StatusCode::NOT_FOUND,
            "delivery_not_found",
            "Delivery not found",
        ),
        WebhookUrlRefused { code, .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            "Webhook URL refused",
        ),
        WebhookLimitReached { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_limit_reached",
            "Too many webhooks",
        ),
        WebhookDisabled => (StatusCode::CONFLICT, "webhook_disabled", "Webhook disabled"),
        ScopeNotGrantable(_) => (
            StatusCode::FORBIDDEN,
            "scope_not_grantable",
            "Scope not grantable",
        ),
        MalformedBatch(_) => (
            StatusCode::BAD_REQUEST,
            "malformed_batch",
            "Malformed batch",
        ),
        InvalidRecords(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_records",
            "Invalid records",
        ),
        TooManyRecords { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            "Too many records",
        ),
        UploadTooLarge { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            "Upload too large",
        ),
        RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found", "Not found"),
        MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
        ),
        SkuExists => (StatusCode::CONFLICT, "sku_exists", "SKU already exists"),
        InsufficientStock { .. } => (
            StatusCode::CONFLICT,
            "insufficient_stock",
            "Insufficient stock",
        ),
        QuantityOverflow => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "quantity_overflow",
            "Quantity too large",
        ),
        PreconditionFailed => (
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "Precondition failed",
        ),
        IdempotencyKeyReused => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Idempotency key reused",
        ),
        ConcurrentUpdate => (
            StatusCode::CONFLICT,
            "concurrent_update",
            "Concurrent update",
        ),
        Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service unavailable",
        ),
        Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        ),
    }
}

fn detail(e: &ApiError) -> String {
    use ApiError::*;
    match e {
        MalformedJson(why) => format!("The request body is not valid JSON: {why}."),
        InvalidParameters(_) => "One or more request parameters are invalid; see errors.".into(),
        InvalidCursor(_) => {
            "The cursor is not one this API issued for this listing; start again without a cursor."
                .into()
        }
        UnsupportedMediaType(ct) => {
            format!("Content-Type {ct:?} is not supported; send application/json.")
        }
        PayloadTooLarge { limit, .. } => {
            format!("The request body exceeds the limit of {limit} bytes.")
        }
        Validation(_) => "The request body has invalid fields; see errors.".into(),
        Unauthorized => "A valid API key is required: send Authorization: Bearer <key>.".into(),
        InsufficientScope(scope) => {
            format!("This API key lacks the scope {scope} required by this route.")
        }
        ItemNotFound => "No item with this sku exists.".into(),
        BatchNotFound => "No batch with this id exists.".into(),
        KeyNotFound => "No API key with this id exists.".into(),
        LocationNotFound => "No location with this id exists.".into(),
        LocationExists => "A location with this id already exists.".into(),
        LocationHoldsStock => "Stock is held at this location; move or adjust it to zero first.".into(),
        DefaultLocationFixed => "The default location always exists: it cannot be created or deleted.".into(),
        ItemReserved { holds } => format!(
            "{holds} active reservations hold this item; commit or release them (or let them expire) before deleting it."
        ),
        ItemStockedElsewhere { locations } => format!(
            "Stock of this item is kept at {}; transfer it or count it to zero there before deleting the item.",
            locations.join(", ")
        ),
        StockSplit { buckets } => format!(
            "The sku's stock is split into {buckets} buckets for concurrent orders (a sale): adjust and reserve it as usual, or merge it back (DELETE /v1/items/{{sku}}/stock-split) to count, transfer or delete it."
        ),
        CountBelowReserved { reserved } => format!(
            "The count is below the {reserved} units active reservations hold there; commit or release them, then send the count again."
        ),
        ReservationNotFound => "No reservation with this id exists.".into(),
        InsufficientAvailable { available, requested } => format!(
            "Holding {requested} would take more than is available: {available} available (on hand less what is held)."
        ),
        ReservationEnded { status } => format!(
            "The reservation is {status} already: a hold ends once."
        ),
        ReservationExpired => "The reservation expired: its units are free again, so it cannot be committed. Reserve again.".into(),
        WebhookNotFound => "No webhook with this id exists.".into(),
        DeliveryNotFound => "This webhook has no delivery with this id.".into(),
        WebhookUrlRefused { message, .. } => format!("{message}. Webhooks are only sent over https to public addresses."),
        WebhookLimitReached { limit } => format!("A tenant may have at most {limit} webhooks; delete one first."),
        WebhookDisabled => "The webhook is disabled (it answered 410 Gone or failed for too long); re-enable it first.".into(),
        ScopeNotGrantable(scope) => format!("A key can only grant scopes it holds itself, and this key lacks {scope}."),
        MalformedBatch(_) => "The batch is not well formed (records must be objects with an id and an op of upsert, adjust, delete, count, transfer or reserve); see errors.".into(),
        InvalidRecords(_) => "An atomic batch is applied whole or not at all, and these records are invalid; nothing was accepted. See errors.".into(),
        TooManyRecords { limit, atomic: true } => format!("An atomic batch may hold at most {limit} records (one DynamoDB transaction); split it or use isolated mode."),
        TooManyRecords { limit, .. } => format!("A batch may hold at most {limit} records."),
        UploadTooLarge { limit } => format!(
            "An uploaded batch file may be at most {limit} bytes; split it into several batches."
        ),
        RouteNotFound => "No such route.".into(),
        MethodNotAllowed => "This route does not support this method.".into(),
        SkuExists => "An item with this sku already exists; use PUT to change it.".into(),
        InsufficientStock { available, delta } => format!(
            "Taking {} would take more than is available: {available} available (on hand less what is held).", -delta
        ),
        QuantityOverflow => format!("The quantity would exceed {}.", stockroom_domain::MAX_QUANTITY),
        PreconditionFailed => {
            "The item changed since the ETag you sent (If-Match); fetch it again.".into()
        }
        IdempotencyKeyReused => {
            "This Idempotency-Key was already used with a different request.".into()
        }
        ConcurrentUpdate => "The item is being changed concurrently; retry the request.".into(),
        Unavailable(_) => {
            "The service is temporarily unavailable; retry after the Retry-After delay.".into()
        }
        Internal(_) => {
            "Something went wrong on our side; quote the request id when reporting it.".into()
        }
    }
}

/// The HTTP face of an [`ApiError`]: its status, stable code and problem body.
pub trait ProblemMapping {
    fn status(&self) -> StatusCode;
    fn code(&self) -> &'static str;
    fn to_problem(&self, request_id: String) -> Problem;
}

impl ProblemMapping for ApiError {
    fn status(&self) -> StatusCode {
        classify(self).0
    }
    fn code(&self) -> &'static str {
        classify(self).1
    }

    fn to_problem(&self, request_id: String) -> Problem {
        let (status, code, title) = classify(self);
        let errors = match self {
            ApiError::Validation(e)
            | ApiError::InvalidParameters(e)
            | ApiError::MalformedBatch(e)
            | ApiError::InvalidRecords(e) => e.0.clone(),
            _ => Vec::new(),
        };
        Problem {
            type_: format!("{TYPE_BASE}{}", code.replace('_', "-")),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail(self),
            code: code.to_owned(),
            request_id,
            errors,
            limit: None,
        }
    }
}

/// An [`ApiError`] on its way out as a problem+json response.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl<E: Into<ApiError>> From<E> for HttpError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let HttpError(error) = self;
        let status = error.status();
        if status.is_server_error() {
            tracing::error!(code = error.code(), error = %error_chain(&error), "request failed");
        } else {
            tracing::info!(code = error.code(), error = %error, "request rejected");
        }
        let problem = error.to_problem(current_request_id());
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match error {
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_types_derive_from_them() {
        let p = ApiError::ItemNotFound.to_problem("r1".into());
        assert_eq!((p.status, p.code.as_str()), (404, "item_not_found"));
        assert_eq!(p.type_, "https://stockroom.dev/problems/item-not-found");
        assert_eq!(p.request_id, "r1");
    }

    #[test]
    fn internal_errors_never_leak_their_cause() {
        let e = ApiError::Internal("secret table name".into());
        let p = e.to_problem(String::new());
        assert!(!p.detail.contains("secret"));
        assert_eq!(p.status, 500);
    }
}
