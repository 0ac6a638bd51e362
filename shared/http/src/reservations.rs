//! Handlers of the reservations routes.

use super::AppState;
use super::extract::{Auth, JsonBody, QueryParams, idempotency_request, replayed};
use super::problem::{Problem, current_request_id};
use crate::problem::HttpError;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;
use stockroom_app::error::ApiError;
use stockroom_app::reservations::{Reservation, ReservationOutcome};
use stockroom_domain::key::{ITEMS_READ, ITEMS_WRITE};
use stockroom_domain::reservation::{Ending, NewReservation, ReservationId, ReservationStatus};
use stockroom_domain::{MovementContext, Sku};

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReservationPage {
    /// In id order: creation order, to the millisecond.
    pub reservations: Vec<Reservation>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Body of `POST /v1/reservations`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateReservationRequest {
    #[schema(example = "SKU-1001", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    /// Where the units are held; absent: the default location.
    #[schema(example = "paris-1", min_length = 1, max_length = 64)]
    location: Option<String>,
    #[schema(minimum = 1, maximum = 1_000_000_000, example = 2)]
    quantity: i64,
    /// Seconds the hold lasts, 1 to 604800 (7 days).
    #[schema(minimum = 1, maximum = 604_800, example = 900)]
    expires_in: i64,
    /// The client's own reference (a cart, an order), up to 200 characters.
    #[schema(example = "cart-8812", max_length = 200)]
    reference: Option<String>,
}

/// The `{reservation_id}` path segment; an id that cannot exist is not found.
pub struct ReservationIdPath(pub ReservationId);

impl<S: Send + Sync> FromRequestParts<S> for ReservationIdPath {
    type Rejection = HttpError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::ReservationNotFound)?;
        ReservationId::parse(&raw)
            .map(ReservationIdPath)
            .map_err(|_| ApiError::ReservationNotFound.into())
    }
}

fn movement_context(auth: &Auth) -> MovementContext {
    MovementContext {
        request_id: current_request_id(),
        key_id: Some(auth.0.key_id.clone()),
        batch_record: None,
    }
}

fn answer(outcome: ReservationOutcome, status: StatusCode) -> Result<Response, HttpError> {
    let (mut resp, body) = match outcome {
        ReservationOutcome::Done(r) => {
            let body = serde_json::to_string(&r).map_err(|e| ApiError::Internal(Box::new(e)))?;
            let resp = (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body.clone(),
            )
                .into_response();
            (resp, body)
        }
        ReservationOutcome::Replayed { status, body } => (replayed(status, body.clone()), body),
    };
    // A created reservation is named by `Location`, replayed or not.
    if resp.status() == StatusCode::CREATED
        && let Ok(created) = serde_json::from_str::<Reservation>(&body)
    {
        let url = HeaderValue::from_str(&format!("/v1/reservations/{}", created.id))
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
        resp.headers_mut().insert(header::LOCATION, url);
    }
    Ok(resp)
}

/// Hold stock for a while.
///
/// Holds `quantity` units of the sku at the location (the default one if none is named) until
/// `expires_in` seconds from now: they stop being available, and no concurrent hold or sale can
/// take them. 409 `insufficient_available` when fewer units are available (on hand less what is
/// held); nothing is held then. An expired hold stops counting at its expiry, even before
/// anything sweeps it. With `Idempotency-Key` a retry replays the first answer for 24 h.
#[utoipa::path(post, path = "/v1/reservations", tag = "reservations",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body replay the first response for 24 h"),
    ),
    request_body(content = CreateReservationRequest, content_type = "application/json"),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 201, description = "Held (or replayed: header Idempotent-Replayed: true)", body = Reservation,
            headers(("Location" = String, description = "URL of the new reservation"))),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`item_not_found` or `location_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient_available` or `concurrent_update`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` or `idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_reservation(
    State(app): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    let idempotency = idempotency_request(&headers, "reservations", &body.raw)?;
    let new = NewReservation::from_json(&body.value).map_err(ApiError::Validation)?;
    let outcome = app
        .reservations
        .reserve(
            &caller.tenant_id,
            &new,
            &movement_context(&auth),
            idempotency.as_ref(),
        )
        .await?;
    answer(outcome, StatusCode::CREATED)
}

async fn end(
    app: &AppState,
    auth: &Auth,
    id: &ReservationId,
    headers: &HeaderMap,
    ending: Ending,
) -> Result<Response, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    let scope = match ending {
        Ending::Commit => "commit",
        Ending::Release => "release",
    };
    let idempotency = idempotency_request(headers, scope, id.as_str().as_bytes())?;
    let outcome = app
        .reservations
        .end(
            &caller.tenant_id,
            id,
            ending,
            &movement_context(auth),
            idempotency.as_ref(),
        )
        .await?;
    answer(outcome, StatusCode::OK)
}

/// Commit a hold: the order ships.
///
/// Its units leave on hand (a movement with reason `reservation_committed` and the
/// reservation's id as reference) and the hold ends. Committing it again answers the same; a
/// released hold cannot be committed (409 `reservation_ended`), nor an expired one (409
/// `reservation_expired`: its units are free again).
#[utoipa::path(post, path = "/v1/reservations/{reservation_id}/commit", tag = "reservations",
    params(
        ("reservation_id" = String, Path, description = "The reservation's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key replay the first response for 24 h"),
    ),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 200, description = "Committed (or was already)", body = Reservation),
        (status = 400, description = "Invalid Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`reservation_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`reservation_ended`, `reservation_expired` or `concurrent_update`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn commit_reservation(
    State(app): State<AppState>,
    auth: Auth,
    ReservationIdPath(id): ReservationIdPath,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    end(&app, &auth, &id, &headers, Ending::Commit).await
}

/// Release a hold: its units are available again.
///
/// Releasing it again answers the same, and so does releasing one that expired (its status
/// stays `expired`). A committed hold cannot be released (409 `reservation_ended`).
#[utoipa::path(post, path = "/v1/reservations/{reservation_id}/release", tag = "reservations",
    params(
        ("reservation_id" = String, Path, description = "The reservation's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key replay the first response for 24 h"),
    ),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 200, description = "Released (or was already, or expired)", body = Reservation),
        (status = 400, description = "Invalid Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`reservation_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`reservation_ended` or `concurrent_update`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn release_reservation(
    State(app): State<AppState>,
    auth: Auth,
    ReservationIdPath(id): ReservationIdPath,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    end(&app, &auth, &id, &headers, Ending::Release).await
}

/// Get a reservation.
///
/// Its status is as of now: an active hold past its expiry shows as `expired`, even before
/// anything sweeps it.
#[utoipa::path(get, path = "/v1/reservations/{reservation_id}", tag = "reservations",
    params(("reservation_id" = String, Path, description = "The reservation's id")),
    security(("api_key" = ["items:read"])),
    responses(
        (status = 200, description = "The reservation", body = Reservation),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`reservation_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_reservation(
    State(app): State<AppState>,
    auth: Auth,
    ReservationIdPath(id): ReservationIdPath,
) -> Result<Json<Reservation>, HttpError> {
    let caller = auth.require(ITEMS_READ)?;
    Ok(Json(app.reservations.get(&caller.tenant_id, &id).await?))
}

/// A sku's reservations.
///
/// In id order (creation order, to the millisecond), optionally of one status (`active` holds only those that still count:
/// one past its expiry is `expired`).
#[utoipa::path(get, path = "/v1/reservations", tag = "reservations",
    params(
        ("sku" = String, Query, description = "The item's sku"),
        ("status" = Option<ReservationStatus>, Query, description = "Only reservations with this status"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    security(("api_key" = ["items:read"])),
    responses(
        (status = 200, description = "A page of reservations", body = ReservationPage),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_reservations(
    State(app): State<AppState>,
    auth: Auth,
    query: QueryParams,
) -> Result<Json<ReservationPage>, HttpError> {
    let caller = auth.require(ITEMS_READ)?;
    query.only(&["sku", "status", "limit", "cursor"])?;
    let sku = match query.get("sku") {
        None => return Err(ApiError::invalid_parameter("sku", "is required").into()),
        Some(raw) => Sku::parse(raw).map_err(|e| ApiError::invalid_parameter("sku", e))?,
    };
    let status = query
        .get("status")
        .map(|raw| {
            ReservationStatus::parse(raw).ok_or_else(|| {
                ApiError::invalid_parameter(
                    "status",
                    "must be one of active, committed, released, expired",
                )
            })
        })
        .transpose()?;
    let limit = query.limit(20)?;
    // The cursor is bound to the sku and status it pages through.
    let scope = format!("reservations:{sku}:{}", status.map_or("", |s| s.as_str()));
    let start = query
        .get("cursor")
        .map(|c| app.cursors.decode(&scope, &caller.tenant_id, c))
        .transpose()?;
    let page = app
        .reservations
        .list(&caller.tenant_id, &sku, status, limit, start)
        .await?;
    Ok(Json(ReservationPage {
        reservations: page.items,
        next_cursor: page
            .next
            .map(|k| app.cursors.encode(&scope, &caller.tenant_id, &k)),
    }))
}
