//! Handler of `POST /v1/counts`.

use super::AppState;
use super::extract::{Auth, JsonBody, idempotency_request, replayed};
use super::problem::{Problem, current_request_id};
use crate::problem::HttpError;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use stockroom_app::counts::{CountOutcome, CountResult};
use stockroom_app::error::ApiError;
use stockroom_domain::MovementContext;
use stockroom_domain::count::NewCount;
use stockroom_domain::key::ITEMS_WRITE;

/// Body of `POST /v1/counts`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CountRequest {
    #[schema(example = "SKU-1001", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    /// Where the units were counted; absent: the default location.
    #[schema(example = "paris-1", min_length = 1, max_length = 64)]
    location: Option<String>,
    /// The units found.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64, example = 40)]
    on_hand: i64,
    /// When the count was taken (RFC 3339 with an offset); not in the future.
    #[schema(example = "2026-12-04T07:00:00Z", format = DateTime)]
    occurred_at: String,
    /// The client's own reference (a stocktake), up to 200 characters.
    #[schema(example = "stocktake-2026-12", max_length = 200)]
    reference: Option<String>,
}

/// Record a physical count.
///
/// Sets on hand at the location as of `occurred_at` (Square's rule). Changes that occurred
/// after `occurred_at` and were already applied stay applied on top of the count; a change
/// that occurred before it and arrives later (an adjustment with an earlier `occurred_at`)
/// is recorded and moves nothing, since the count includes it. A count older than the last
/// recorded one is kept in the ledger and changes nothing (`applied: false`). 409
/// `count_below_reserved` when fewer units were found than active holds keep there.
#[utoipa::path(post, path = "/v1/counts", tag = "stock",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body replay the first response for 24 h"),
    ),
    request_body(content = CountRequest, content_type = "application/json"),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 200, description = "Recorded (or replayed: header Idempotent-Replayed: true)", body = CountResult),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`item_not_found` or `location_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`count_below_reserved`, `stock_split` or `concurrent_update`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `quantity_overflow` or `idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_count(
    State(app): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    let idempotency = idempotency_request(&headers, "counts", &body.raw)?;
    let now_ms = stockroom_app::clock::unix_ms(stockroom_app::clock::now());
    let count = NewCount::from_json(&body.value, now_ms).map_err(ApiError::Validation)?;
    let ctx = MovementContext {
        request_id: current_request_id(),
        key_id: Some(auth.0.key_id.clone()),
        batch_record: None,
    };
    let outcome = app
        .counts
        .record(&caller.tenant_id, &count, &ctx, idempotency.as_ref())
        .await?;
    Ok(match outcome {
        CountOutcome::Recorded(result) => Json(result).into_response(),
        CountOutcome::Replayed { status, body } => replayed(status, body),
    })
}
