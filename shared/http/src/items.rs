//! Handlers of the items routes: parse, call the service, map the result.

use super::AppState;
use super::extract::{
    Auth, JsonBody, QueryParams, SkuPath, entity_tags, header_str, idempotency_request, replayed,
};
use super::fields::{FieldsParam, Shown};
use super::problem::{Problem, current_request_id};
use crate::problem::HttpError;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;
use stockroom_app::error::ApiError;
use stockroom_app::items::{AdjustOutcome, AdjustmentResult, IfMatch, ItemLevels, Replaced};
use stockroom_domain::key::{ITEMS_READ, ITEMS_WRITE};
use stockroom_domain::{Adjustment, Item, ItemFields, Movement, MovementContext, NewItem};

const DEFAULT_PAGE: u32 = 20;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ItemPage {
    /// With `fields`, each item has only those fields.
    #[schema(value_type = Vec<Item>)]
    pub items: Vec<Shown<Item>>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MovementPage {
    /// With `fields`, each movement has only those fields.
    #[schema(value_type = Vec<Movement>)]
    pub movements: Vec<Shown<Movement>>,
    pub next_cursor: Option<String>,
}

/// Request body of `POST /v1/items`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateItemRequest {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "SKU-1001")]
    sku: String,
    #[schema(min_length = 1, max_length = 200, example = "Blue mug")]
    name: String,
    #[schema(max_length = 2000)]
    description: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64, default = 0)]
    quantity: Option<i64>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    low_stock_threshold: Option<i64>,
    /// At most 50 entries; keys 1..64 characters, values up to 500.
    attributes: Option<std::collections::BTreeMap<String, String>>,
}

/// Request body of `PUT /v1/items/{sku}`: the descriptive fields (absent optional fields are cleared).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ReplaceItemRequest {
    /// Optional; must equal the sku in the path.
    sku: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[schema(max_length = 2000)]
    description: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    low_stock_threshold: Option<i64>,
    attributes: Option<std::collections::BTreeMap<String, String>>,
}

/// Request body of `POST /v1/items/{sku}/adjustments`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AdjustmentRequest {
    /// Signed, non-zero change of the quantity.
    #[schema(example = -2, minimum = -1_000_000_000_000_i64, maximum = 1_000_000_000_000_i64)]
    delta: i64,
    #[schema(min_length = 1, max_length = 100, example = "sale")]
    reason: String,
    #[schema(max_length = 200, example = "order-7731")]
    reference: Option<String>,
    /// Where the units are (`GET /v1/locations`); the default location when absent.
    /// Taking units leaves at least those reserved there.
    #[schema(example = "paris-1")]
    location: Option<String>,
}

fn movement_context(auth: &Auth) -> MovementContext {
    MovementContext {
        request_id: current_request_id(),
        key_id: Some(auth.0.key_id.clone()),
        batch_record: None,
    }
}

/// An item as the API answers with it: its JSON (serialised once, straight
/// to bytes) and its entity tag.
struct Representation {
    json: Vec<u8>,
    etag: HeaderValue,
}

fn etag_header(item: &Item) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&item.etag()).map_err(|e| ApiError::Internal(Box::new(e)))
}

impl Representation {
    fn of(item: &Item) -> Result<Self, ApiError> {
        Self::tagged(item, etag_header(item)?)
    }

    /// With the tag the caller has already computed.
    fn tagged(item: &Item, etag: HeaderValue) -> Result<Self, ApiError> {
        let json = serde_json::to_vec(item).map_err(|e| ApiError::Internal(Box::new(e)))?;
        Ok(Self { json, etag })
    }

    /// `status` with the ETag header and the item as the JSON body.
    fn response(self, status: StatusCode, mut headers: HeaderMap) -> Response {
        headers.insert(header::ETAG, self.etag);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        (status, headers, self.json).into_response()
    }
}

fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, ApiError> {
    Ok(
        header_str(headers, "if-match")?.map(|v| match entity_tags(v) {
            None => IfMatch::Any,
            Some(tags) => IfMatch::Tags(tags),
        }),
    )
}

/// Service health (no authentication).
///
/// Answers 200 while the function runs; it reads nothing from the store, so it shows the
/// API is reachable, not that every dependency is healthy.
#[utoipa::path(get, path = "/v1/health", tag = "meta", security(()),
    responses((status = 200, description = "The service is up", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Create an item.
///
/// Creates the item with its opening stock, recorded as the first movement of its ledger.
/// The sku is unique per tenant: a second create answers 409 `sku_exists`. Answers 201
/// with the item, its `ETag` and `Location`.
#[utoipa::path(post, path = "/v1/items", tag = "items",
    request_body(content = CreateItemRequest, content_type = "application/json"),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 201, description = "Created", body = Item,
            headers(("Location" = String, description = "URL of the new item"), ("ETag" = String))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`sku_exists`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` with field errors", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_item(
    State(app): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> Result<Response, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    let new = NewItem::from_json(&body.value).map_err(ApiError::Validation)?;
    let item = app
        .items
        .create(&caller.tenant_id, new, &movement_context(&auth))
        .await?;
    let location = HeaderValue::from_str(&format!("/v1/items/{}", item.sku))
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, location);
    Ok(Representation::of(&item)?.response(StatusCode::CREATED, headers))
}

/// Get an item.
///
/// Answers the item with its `ETag`; send it back in `If-None-Match` for a 304 when nothing
/// changed. `fields` returns only the named fields, with the whole item's `ETag`.
#[utoipa::path(get, path = "/v1/items/{sku}", tag = "items",
    params(
        ("sku" = String, Path, description = "The item's sku"),
        FieldsParam<Item>,
        ("If-None-Match" = Option<String>, Header, description = "ETag(s) the client holds"),
    ),
    security(("api_key" = ["items:read"])),
    responses(
        (status = 200, description = "The item", body = Item, headers(("ETag" = String))),
        (status = 304, description = "Not modified (If-None-Match matched)"),
        (status = 400, description = "Invalid sku or fields", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`item_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_item(
    State(app): State<AppState>,
    auth: Auth,
    SkuPath(sku): SkuPath,
    query: QueryParams,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let caller = auth.require(ITEMS_READ)?;
    query.only(&["fields"])?;
    let fields = query.fields::<Item>()?;
    // With `fields`, only those and what the tag is made of are read.
    let item = app
        .items
        .get(&caller.tenant_id, &sku, fields.as_ref())
        .await?;
    let etag = etag_header(&item)?;
    if let Some(inm) = header_str(&headers, "if-none-match")? {
        // Weak comparison, as RFC 9110 prescribes for If-None-Match.
        let current = etag.as_bytes();
        let matched = match entity_tags(inm) {
            None => true,
            Some(tags) => tags
                .iter()
                .any(|t| t.trim_start_matches("W/").as_bytes() == current),
        };
        if matched {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
        }
    }
    match fields {
        None => Ok(Representation::tagged(&item, etag)?.response(StatusCode::OK, HeaderMap::new())),
        // A sparse fieldset: the tag stays the full item's.
        Some(fields) => Ok((
            [(header::ETAG, etag)],
            Json(Shown::of(item, Some(&fields))?),
        )
            .into_response()),
    }
}

/// List the tenant's items, ordered by sku.
///
/// One page of the tenant's items in sku order; follow `next_cursor` for the next page.
#[utoipa::path(get, path = "/v1/items", tag = "items",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        FieldsParam<Item>,
    ),
    security(("api_key" = ["items:read"])),
    responses(
        (status = 200, description = "A page of items", body = ItemPage),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_items(
    State(app): State<AppState>,
    auth: Auth,
    query: QueryParams,
) -> Result<Json<ItemPage>, HttpError> {
    let caller = auth.require(ITEMS_READ)?;
    query.only(&["limit", "cursor", "fields"])?;
    let limit = query.limit(DEFAULT_PAGE)?;
    let fields = query.fields::<Item>()?;
    let start = query
        .get("cursor")
        .map(|c| app.cursors.decode("items", &caller.tenant_id, c))
        .transpose()?;
    let page = app
        .items
        .list(&caller.tenant_id, limit, start, fields.as_ref())
        .await?;
    Ok(Json(ItemPage {
        items: Shown::each(page.items, fields.as_ref())?,
        next_cursor: page
            .next
            .map(|k| app.cursors.encode("items", &caller.tenant_id, &k)),
    }))
}

/// Replace an item's descriptive fields (stock changes go through adjustments).
///
/// Replaces name, description, threshold and attributes; optional fields left out are
/// cleared. The same content again answers 204 (nothing changed). `If-Match` with the
/// item's `ETag` makes the write conditional (412 when it changed meanwhile).
#[utoipa::path(put, path = "/v1/items/{sku}", tag = "items",
    params(
        ("sku" = String, Path, description = "The item's sku"),
        ("If-Match" = Option<String>, Header, description = "Only replace if the item's ETag matches"),
    ),
    request_body(content = ReplaceItemRequest, content_type = "application/json"),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 200, description = "Replaced; the new item", body = Item, headers(("ETag" = String))),
        (status = 204, description = "The request changes nothing", headers(("ETag" = String))),
        (status = 400, description = "Malformed JSON or invalid sku", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`item_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`concurrent_update`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`: If-Match is stale", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replace_item(
    State(app): State<AppState>,
    auth: Auth,
    SkuPath(sku): SkuPath,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    let cond = if_match(&headers)?;
    let fields = ItemFields::from_put_json(&body.value, &sku).map_err(ApiError::Validation)?;
    match app
        .items
        .replace(
            &caller.tenant_id,
            &sku,
            fields,
            cond.as_ref(),
            &movement_context(&auth),
        )
        .await?
    {
        Replaced::Changed(item) => {
            Ok(Representation::of(&item)?.response(StatusCode::OK, HeaderMap::new()))
        }
        Replaced::Unchanged(item) => Ok((
            StatusCode::NO_CONTENT,
            [(header::ETAG, Representation::of(&item)?.etag)],
        )
            .into_response()),
    }
}

/// Delete an item (its ledger is kept; the closing stock is recorded as a movement).
///
/// Removes the item; its stock ledger stays readable and records the closing stock.
/// `If-Match` makes the delete conditional. An item that active reservations hold
/// (`item_reserved`) or that other locations still stock (`item_stocked_elsewhere`) is
/// not deleted.
#[utoipa::path(delete, path = "/v1/items/{sku}", tag = "items",
    params(
        ("sku" = String, Path, description = "The item's sku"),
        ("If-Match" = Option<String>, Header, description = "Only delete if the item's ETag matches"),
    ),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid sku", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`item_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`item_reserved`, `item_stocked_elsewhere`, `stock_split` or `concurrent_update`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_item(
    State(app): State<AppState>,
    auth: Auth,
    SkuPath(sku): SkuPath,
    headers: HeaderMap,
) -> Result<StatusCode, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    let cond = if_match(&headers)?;
    app.items
        .delete(
            &caller.tenant_id,
            &sku,
            cond.as_ref(),
            &movement_context(&auth),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adjust an item's stock by a signed delta (never below zero).
///
/// Applies the delta atomically with a ledger movement; a delta that would take the stock
/// below zero answers 409 `insufficient_stock` and changes nothing. With `Idempotency-Key`
/// a retry replays the first answer for 24 h.
#[utoipa::path(post, path = "/v1/items/{sku}/adjustments", tag = "stock",
    params(
        ("sku" = String, Path, description = "The item's sku"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body replay the first response for 24 h"),
    ),
    request_body(content = AdjustmentRequest, content_type = "application/json"),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 200, description = "Applied (or replayed: header Idempotent-Replayed: true)", body = AdjustmentResult),
        (status = 400, description = "Malformed JSON, invalid sku or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`item_not_found` or `location_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient_stock` or `concurrent_update`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `quantity_overflow` or `idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn adjust_stock(
    State(app): State<AppState>,
    auth: Auth,
    SkuPath(sku): SkuPath,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    let idempotency = idempotency_request(&headers, sku.as_str(), &body.raw)?;
    let adjustment = Adjustment::from_json(&body.value).map_err(ApiError::Validation)?;
    let outcome = app
        .items
        .adjust(
            &caller.tenant_id,
            &sku,
            &adjustment,
            &movement_context(&auth),
            idempotency.as_ref(),
        )
        .await?;
    Ok(match outcome {
        AdjustOutcome::Applied(result) => Json(result).into_response(),
        AdjustOutcome::Replayed { status, body } => replayed(status, body),
    })
}

/// The item's stock per location.
///
/// On hand, reserved and available at the default location (the item's `quantity`) and at
/// every other location where the item has had stock.
#[utoipa::path(get, path = "/v1/items/{sku}/levels", tag = "stock",
    params(("sku" = String, Path, description = "The item's sku")),
    security(("api_key" = ["items:read"])),
    responses(
        (status = 200, description = "The item's levels", body = ItemLevels),
        (status = 400, description = "`invalid_parameter`: not a sku", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`item_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_levels(
    State(app): State<AppState>,
    auth: Auth,
    SkuPath(sku): SkuPath,
) -> Result<Json<ItemLevels>, HttpError> {
    let caller = auth.require(ITEMS_READ)?;
    Ok(Json(app.items.levels(&caller.tenant_id, &sku).await?))
}

/// The item's stock ledger, newest first.
///
/// Every stock change of the item (opening stock, adjustments, batch records, deletion)
/// with its reason, reference and request id, newest first, paginated by `next_cursor`.
#[utoipa::path(get, path = "/v1/items/{sku}/movements", tag = "stock",
    params(
        ("sku" = String, Path, description = "The item's sku"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        FieldsParam<Movement>,
    ),
    security(("api_key" = ["items:read"])),
    responses(
        (status = 200, description = "A page of movements", body = MovementPage),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`item_not_found`: no item and no ledger for this sku", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_movements(
    State(app): State<AppState>,
    auth: Auth,
    SkuPath(sku): SkuPath,
    query: QueryParams,
) -> Result<Json<MovementPage>, HttpError> {
    let caller = auth.require(ITEMS_READ)?;
    query.only(&["limit", "cursor", "fields"])?;
    let limit = query.limit(DEFAULT_PAGE)?;
    let fields = query.fields::<Movement>()?;
    let listing = format!("movements:{sku}");
    let start = query
        .get("cursor")
        .map(|c| app.cursors.decode(&listing, &caller.tenant_id, c))
        .transpose()?;
    let page = app
        .items
        .movements(&caller.tenant_id, &sku, limit, start, fields.as_ref())
        .await?;
    Ok(Json(MovementPage {
        movements: Shown::each(page.items, fields.as_ref())?,
        next_cursor: page
            .next
            .map(|k| app.cursors.encode(&listing, &caller.tenant_id, &k)),
    }))
}

/// Body of `POST /v1/levels/batch-retrieve`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BatchLevelsRequest {
    /// 1 to 1,000 pairs; `location` absent: the default location. Repeats count once.
    #[schema(min_items = 1, max_items = 1000)]
    pairs: Vec<LevelPairRequest>,
}

/// One (sku, location) pair.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LevelPairRequest {
    #[schema(example = "SKU-1001", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    #[schema(example = "paris-1", min_length = 1, max_length = 64)]
    location: Option<String>,
}

/// Read many levels at once.
///
/// Up to 1,000 (sku, location) pairs in one call: on hand, reserved and available for each,
/// read strongly consistent by key. Pairs whose item or location does not exist are listed
/// in `missing`, not refused. A read, though a POST (the pairs do not fit a URL); scope
/// `items:read`.
#[utoipa::path(post, path = "/v1/levels/batch-retrieve", tag = "stock",
    request_body(content = BatchLevelsRequest, content_type = "application/json"),
    security(("api_key" = ["items:read"])),
    responses(
        (status = 200, description = "The levels, in the order asked", body = stockroom_app::items::BatchLevels),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:read", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: each bad pair named (`pairs[i].sku`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn batch_retrieve_levels(
    State(app): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> Result<Json<stockroom_app::items::BatchLevels>, HttpError> {
    let caller = auth.require(ITEMS_READ)?;
    let pairs = stockroom_domain::level::LevelPairs::from_json(&body.value)
        .map_err(ApiError::Validation)?;
    Ok(Json(
        app.items.levels_of(&caller.tenant_id, &pairs.0).await?,
    ))
}
