//! Handlers of the locations routes.

use super::AppState;
use super::extract::{Auth, JsonBody, QueryParams};
use super::fields::{FieldsParam, Shown};
use super::problem::Problem;
use crate::problem::HttpError;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use stockroom_app::error::ApiError;
use stockroom_domain::key::{ITEMS_READ, ITEMS_WRITE};
use stockroom_domain::location::{Location, LocationId, LocationKind, NewLocation};

#[derive(Serialize, utoipa::ToSchema)]
pub struct LocationPage {
    /// The default location first (on the first page), then the others in id order.
    /// With `fields`, each location has only those fields.
    #[schema(value_type = Vec<Location>)]
    pub locations: Vec<Shown<Location>>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Body of `POST /v1/locations`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateLocationRequest {
    /// Chosen by the client; unique per tenant. `default` names the default location.
    #[schema(example = "paris-1", min_length = 1, max_length = 64)]
    id: String,
    #[schema(example = "Paris store", min_length = 1, max_length = 200)]
    name: String,
    kind: LocationKind,
}

/// The `{location_id}` path segment; an id that cannot exist is not found.
pub struct LocationIdPath(pub LocationId);

impl<S: Send + Sync> FromRequestParts<S> for LocationIdPath {
    type Rejection = HttpError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::LocationNotFound)?;
        LocationId::parse(&raw)
            .map(LocationIdPath)
            .map_err(|_| ApiError::LocationNotFound.into())
    }
}

/// Create a location.
///
/// A warehouse, a store or any other place stock is kept. The id is the client's and unique
/// per tenant: a second create answers 409 `location_exists`. The tenant's default location
/// (`default`) always exists.
#[utoipa::path(post, path = "/v1/locations", tag = "locations",
    request_body(content = CreateLocationRequest, content_type = "application/json"),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 201, description = "Created", body = Location,
            headers(("Location" = String, description = "URL of the new location"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`location_exists`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` with field errors", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_location(
    State(app): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> Result<Response, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    let new = NewLocation::from_json(&body.value).map_err(ApiError::Validation)?;
    let location = app.locations.create(&caller.tenant_id, new).await?;
    let url = HeaderValue::from_str(&format!("/v1/locations/{}", location.id))
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, url)],
        Json(location),
    )
        .into_response())
}

/// The tenant's locations.
///
/// The default location first, then the others in id order.
#[utoipa::path(get, path = "/v1/locations", tag = "locations",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        FieldsParam<Location>,
    ),
    security(("api_key" = ["items:read"])),
    responses(
        (status = 200, description = "A page of locations", body = LocationPage),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_locations(
    State(app): State<AppState>,
    auth: Auth,
    query: QueryParams,
) -> Result<Json<LocationPage>, HttpError> {
    let caller = auth.require(ITEMS_READ)?;
    query.only(&["limit", "cursor", "fields"])?;
    let limit = query.limit(20)?;
    let fields = query.fields::<Location>()?;
    let start = query
        .get("cursor")
        .map(|c| app.cursors.decode("locations", &caller.tenant_id, c))
        .transpose()?;
    let page = app
        .locations
        .list(&caller.tenant_id, limit, start, fields.as_ref())
        .await?;
    Ok(Json(LocationPage {
        locations: Shown::each(page.items, fields.as_ref())?,
        next_cursor: page
            .next
            .map(|k| app.cursors.encode("locations", &caller.tenant_id, &k)),
    }))
}

/// Get a location.
///
/// `default` is the tenant's default location, where the single-quantity calls act.
#[utoipa::path(get, path = "/v1/locations/{location_id}", tag = "locations",
    params(
        ("location_id" = String, Path, description = "The location's id (`default`: the default location)"),
        FieldsParam<Location>,
    ),
    security(("api_key" = ["items:read"])),
    responses(
        (status = 200, description = "The location", body = Location),
        (status = 400, description = "`invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`location_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_location(
    State(app): State<AppState>,
    auth: Auth,
    LocationIdPath(id): LocationIdPath,
    query: QueryParams,
) -> Result<Json<Shown<Location>>, HttpError> {
    let caller = auth.require(ITEMS_READ)?;
    query.only(&["fields"])?;
    let fields = query.fields::<Location>()?;
    let location = app
        .locations
        .get(&caller.tenant_id, &id, fields.as_ref())
        .await?;
    Ok(Json(Shown::of(location, fields.as_ref())?))
}

/// Delete a location.
///
/// The default location cannot be deleted (409 `default_location`).
#[utoipa::path(delete, path = "/v1/locations/{location_id}", tag = "locations",
    params(("location_id" = String, Path, description = "The location's id")),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`location_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`default_location`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_location(
    State(app): State<AppState>,
    auth: Auth,
    LocationIdPath(id): LocationIdPath,
) -> Result<StatusCode, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    app.locations.delete(&caller.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
