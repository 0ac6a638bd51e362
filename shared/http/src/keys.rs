//! Handlers of the key management routes.

use super::extract::{Auth, JsonBody, QueryParams, is_prefixed_id};
use super::fields::{FieldsParam, Shown};
use super::problem::Problem;
use crate::problem::HttpError;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use stockroom_app::cursor::CursorCodec;
use stockroom_app::error::ApiError;
use stockroom_app::keys::{ApiKeyView, CreatedKey, KeysService, NewKey};
use stockroom_domain::key::KEYS_MANAGE;

#[derive(Clone)]
pub struct KeysState {
    pub keys: KeysService,
    pub cursors: CursorCodec,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyPage {
    /// With `fields`, each key has only those fields.
    #[schema(value_type = Vec<ApiKeyView>)]
    pub keys: Vec<Shown<ApiKeyView>>,
    pub next_cursor: Option<String>,
}

/// Body of `POST /v1/keys`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateKeyRequest {
    #[schema(min_length = 1, max_length = 100, example = "warehouse sync")]
    name: String,
    /// Scopes of the new key: a subset of the calling key's scopes.
    #[schema(example = json!(["items:read", "batches:write"]))]
    scopes: Vec<String>,
    /// RFC 3339; the key stops working after it.
    expires_at: Option<String>,
}

/// The `{key_id}` path segment; an id that cannot exist is not found.
pub struct KeyIdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for KeyIdPath {
    type Rejection = HttpError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::KeyNotFound)?;
        if is_prefixed_id(&raw, "key_") {
            Ok(KeyIdPath(raw))
        } else {
            Err(ApiError::KeyNotFound.into())
        }
    }
}

/// Create an API key for the caller's tenant (shown once).
///
/// The new key is in this response only (only its SHA-256 is stored). It may carry only
/// scopes the calling key holds (403 `scope_not_grantable` otherwise).
#[utoipa::path(post, path = "/v1/keys", tag = "keys",
    request_body(content = CreateKeyRequest, content_type = "application/json"),
    security(("api_key" = ["keys:manage"])),
    responses(
        (status = 201, description = "Created; `api_key` is shown only now", body = CreatedKey, headers(("Location" = String))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`insufficient_scope` (keys:manage) or `scope_not_grantable`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_key(
    State(app): State<KeysState>,
    auth: Auth,
    body: JsonBody,
) -> Result<Response, HttpError> {
    let caller = auth.require(KEYS_MANAGE)?;
    let new = NewKey::from_json(&body.value, stockroom_app::clock::now())
        .map_err(ApiError::Validation)?;
    let created = app.keys.create(caller, new).await?;
    let location = HeaderValue::from_str(&format!("/v1/keys/{}", created.key.key_id))
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    )
        .into_response())
}

/// The tenant's API keys (metadata only), oldest first.
///
/// Name, scopes, creation, last use and revocation of each key; never the key itself.
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        FieldsParam<ApiKeyView>,
    ),
    security(("api_key" = ["keys:manage"])),
    responses(
        (status = 200, description = "A page of keys", body = KeyPage),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope keys:manage", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_keys(
    State(app): State<KeysState>,
    auth: Auth,
    query: QueryParams,
) -> Result<Json<KeyPage>, HttpError> {
    let caller = auth.require(KEYS_MANAGE)?;
    query.only(&["limit", "cursor", "fields"])?;
    let limit = query.limit(20)?;
    let fields = query.fields::<ApiKeyView>()?;
    let start = query
        .get("cursor")
        .map(|c| app.cursors.decode("keys", &caller.tenant_id, c))
        .transpose()?;
    let page = app
        .keys
        .list(&caller.tenant_id, limit, start, fields.as_ref())
        .await?;
    Ok(Json(KeyPage {
        keys: Shown::each(page.items, fields.as_ref())?,
        next_cursor: page
            .next
            .map(|k| app.cursors.encode("keys", &caller.tenant_id, &k)),
    }))
}

/// One API key's metadata.
///
/// Name, scopes, creation, last use and revocation; never the key itself.
#[utoipa::path(get, path = "/v1/keys/{key_id}", tag = "keys",
    params(
        ("key_id" = String, Path, description = "The key's id"),
        FieldsParam<ApiKeyView>,
    ),
    security(("api_key" = ["keys:manage"])),
    responses(
        (status = 200, description = "The key", body = ApiKeyView),
        (status = 400, description = "`invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope keys:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`key_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_key(
    State(app): State<KeysState>,
    auth: Auth,
    KeyIdPath(id): KeyIdPath,
    query: QueryParams,
) -> Result<Json<Shown<ApiKeyView>>, HttpError> {
    let caller = auth.require(KEYS_MANAGE)?;
    query.only(&["fields"])?;
    let fields = query.fields::<ApiKeyView>()?;
    let key = app
        .keys
        .get(&caller.tenant_id, &id, fields.as_ref())
        .await?;
    Ok(Json(Shown::of(key, fields.as_ref())?))
}

/// Revoke an API key. It stops working once the authorizer's cached decision
/// for it expires (the template's `AuthorizerCacheTtlSeconds`, 300 s by default).
///
/// Revoking is permanent; the key's metadata stays readable, with `revoked_at`.
#[utoipa::path(delete, path = "/v1/keys/{key_id}", tag = "keys",
    params(("key_id" = String, Path, description = "The key's id")),
    security(("api_key" = ["keys:manage"])),
    responses(
        (status = 204, description = "Revoked (or already revoked)"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope keys:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`key_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_key(
    State(app): State<KeysState>,
    auth: Auth,
    KeyIdPath(id): KeyIdPath,
) -> Result<StatusCode, HttpError> {
    let caller = auth.require(KEYS_MANAGE)?;
    app.keys.revoke(&caller.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
