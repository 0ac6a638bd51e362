//! Handlers of `PUT` and `DELETE /v1/items/{sku}/stock-split`: a sku's
//! stock split into buckets for a flash sale, and merged back.

use super::AppState;
use super::extract::{Auth, JsonBody, SkuPath};
use super::problem::{Problem, current_request_id};
use crate::problem::HttpError;
use axum::Json;
use axum::extract::State;
use stockroom_app::error::ApiError;
use stockroom_domain::key::ITEMS_WRITE;
use stockroom_domain::{Item, MovementContext, stock_split};

/// Body of `PUT /v1/items/{sku}/stock-split`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct StockSplitRequest {
    /// Into how many buckets, 2 to 64. At 2,000 orders a second on the sku,
    /// 64 keep each bucket near 0.3 of what one DynamoDB partition takes.
    #[schema(minimum = 2, maximum = 64, example = 64)]
    buckets: u16,
}

fn context(auth: &Auth) -> MovementContext {
    MovementContext {
        request_id: current_request_id(),
        key_id: Some(auth.0.key_id.clone()),
        batch_record: None,
    }
}

/// Split a sku's stock into buckets, for a flash sale.
///
/// One item takes a few hundred orders a second at most: every order writes it. Split, the
/// sku's available units at the default location move into `buckets` buckets, evenly (units
/// held by reservations stay with their holds), and adjustments and holds there spread over
/// the buckets; the item's `quantity` and levels stay the sum, and the item shows
/// `stock_buckets`. While split, counts, transfers at the default location, deletes and
/// batch records of the sku answer `stock_split`: merge it back after the sale. Splitting
/// again into as many buckets changes nothing; into another count, 409 `stock_split`.
#[utoipa::path(put, path = "/v1/items/{sku}/stock-split", tag = "stock",
    params(("sku" = String, Path, description = "The item's sku")),
    request_body(content = StockSplitRequest, content_type = "application/json"),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 200, description = "Split: the item (`stock_buckets`)", body = Item),
        (status = 400, description = "`malformed_json`, or `invalid_parameter`: not a sku", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`item_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`stock_split` (split into another count) or `concurrent_update`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn split_stock(
    State(app): State<AppState>,
    auth: Auth,
    SkuPath(sku): SkuPath,
    body: JsonBody,
) -> Result<Json<Item>, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    let buckets = stock_split::buckets_from_json(&body.value).map_err(ApiError::Validation)?;
    let item = app
        .stock_splits
        .split(&caller.tenant_id, &sku, buckets, &context(&auth))
        .await?;
    Ok(Json(item))
}

/// Merge a split sku's stock back.
///
/// Moves every bucket's units back to the item and closes the buckets, once no hold counts
/// in them (409 `item_reserved` until its holds are committed, released or expired). The
/// buckets' movements and holds stay listed. Not split: the item, unchanged.
#[utoipa::path(delete, path = "/v1/items/{sku}/stock-split", tag = "stock",
    params(("sku" = String, Path, description = "The item's sku")),
    security(("api_key" = ["items:write"])),
    responses(
        (status = 200, description = "Merged: the item, without `stock_buckets`", body = Item),
        (status = 400, description = "`invalid_parameter`: not a sku", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`item_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`item_reserved` or `concurrent_update`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn merge_stock(
    State(app): State<AppState>,
    auth: Auth,
    SkuPath(sku): SkuPath,
) -> Result<Json<Item>, HttpError> {
    let caller = auth.require(ITEMS_WRITE)?;
    let item = app
        .stock_splits
        .merge(&caller.tenant_id, &sku, &context(&auth))
        .await?;
    Ok(Json(item))
}
