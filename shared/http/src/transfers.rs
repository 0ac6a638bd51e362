//! Handler of `POST /v1/transfers`.

use super::AppState;
use super::extract::{Auth, JsonBody, idempotency_request, replayed};
use super::problem::{Problem, current_request_id};
use crate::problem::HttpError;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use stockroom_app::error::ApiError;
use stockroom_app::transfers::{TransferOutcome, TransferResult};
use stockroom_domain::MovementContext;
use stockroom_domain::key::ITEMS_WRITE;
use stockroom_domain::transfer::NewTransfer;

/// Body of `POST /v1/transfers`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TransferRequest {
    #[schema(example = "SKU-1001", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    /// The location the units leave (`default`: the default location).
    #[schema(example = "default", min_length = 1, max_length = 64)]
    from: String,
    /// The location they arrive at; not `from`.
    #[schema(example = "paris-1", min_length = 1, max_length = 64)]
    to: String,
    #[schema(minimum = 1, maximum = 1_000_000_000, example = 4)]
    quantity: i64,
    /// The client's own reference (a transfer order), on both movements; absent: the
    /// transfer's id.
    #[schema(example = "TO-2231", max_length = 200)]
    reference: Option<String>,
}

/// Move stock between two locations.
///
/// Takes `quantity` available units (not held ones) off `from` and adds them to `to` in one
/// transaction, with a `transfer` movement at each: both levels change, or neither. 409
/// `insufficient_stock` when `from` has fewer available. With `Idempotency-Key` a retry
/// replays the first answer for 24 h.
#[utoipa::path(post, path = "/v1/transfers", tag = "stock",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body replay the first response for 24 h"),
    ),
    request_body(content = TransferRequest, content_type = "application/json"),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 200, description = "Moved (or replayed: header Idempotent-Replayed: true)", body = TransferResult),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`item_not_found` or `location_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient_stock`, `stock_split` or `concurrent_update`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `quantity_overflow` or `idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_transfer(
    State(app): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    let idempotency = idempotency_request(&headers, "transfers", &body.raw)?;
    let new = NewTransfer::from_json(&body.value).map_err(ApiError::Validation)?;
    let ctx = MovementContext {
        request_id: current_request_id(),
        key_id: Some(auth.0.key_id.clone()),
        batch_record: None,
    };
    let outcome = app
        .transfers
        .transfer(&caller.tenant_id, &new, &ctx, idempotency.as_ref())
        .await?;
    Ok(match outcome {
        TransferOutcome::Applied(result) => Json(result).into_response(),
        TransferOutcome::Replayed { status, body } => replayed(status, body),
    })
}
