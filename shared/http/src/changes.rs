//! `GET /v1/changes`: the change feed.

use super::AppState;
use super::extract::{Auth, QueryParams};
use super::fields::{FieldsParam, Shown};
use super::problem::Problem;
use crate::problem::HttpError;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use stockroom_app::cursor::CursorError;
use stockroom_app::error::ApiError;
use stockroom_app::ports::PageKey;
use stockroom_domain::key::ITEMS_READ;
use stockroom_domain::{Movement, MovementId, Sku};

const DEFAULT_PAGE: u32 = 20;
/// The position's key in the cursor: the last movement id returned.
const AFTER: &str = "after";

#[derive(Serialize, utoipa::ToSchema)]
pub struct ChangePage {
    /// In commit order. With `fields`, each movement has only those fields.
    #[schema(value_type = Vec<Movement>)]
    pub movements: Vec<Shown<Movement>>,
    /// Pass as `cursor` to read on. Never null: at the end of the feed it
    /// is where the next movements will start, so keep it and poll.
    pub next_cursor: String,
    /// More movements can be read right now (false: caught up).
    pub has_more: bool,
}

/// Every stock movement of the tenant, in commit order.
///
/// The tenant's stock ledger as one feed: every movement (opening stock, adjustments,
/// batch records, deletions) exactly once, in commit order (per sku and across skus),
/// resumable from `next_cursor` — after any downtime, since movements are kept as long as
/// the ledger. A movement appears once it has settled, about 45 s after it was made (so
/// that none can commit behind a position already read); for real-time notice use
/// webhooks. `sku` follows one item's movements; its cursors are bound to it.
#[utoipa::path(get, path = "/v1/changes", tag = "stock",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page; none: from the beginning"),
        ("sku" = Option<String>, Query, description = "Only this item's movements"),
        FieldsParam<Movement>,
    ),
    security(("api_key" = ["items:read"])),
    responses(
        (status = 200, description = "A page of the feed", body = ChangePage),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope items:read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_changes(
    State(app): State<AppState>,
    auth: Auth,
    query: QueryParams,
) -> Result<Json<ChangePage>, HttpError> {
    let caller = auth.require(ITEMS_READ)?;
    query.only(&["limit", "cursor", "sku", "fields"])?;
    let limit = query.limit(DEFAULT_PAGE)?;
    let fields = query.fields::<Movement>()?;
    let sku = query
        .get("sku")
        .map(|raw| Sku::parse(raw).map_err(|m| ApiError::invalid_parameter("sku", m)))
        .transpose()?;
    let listing = match &sku {
        Some(sku) => format!("changes:{sku}"),
        None => "changes".to_owned(),
    };
    let after = match query.get("cursor") {
        None => None,
        Some(c) => {
            let key = app.cursors.decode(&listing, &caller.tenant_id, c)?;
            match key.get(AFTER) {
                None => None,
                Some(id) if MovementId::minted_ms(id).is_some() => Some(id.clone()),
                Some(_) => return Err(ApiError::from(CursorError("not a position")).into()),
            }
        }
    };
    let page = app
        .changes
        .read(
            &caller.tenant_id,
            sku.as_ref(),
            after,
            limit,
            fields.as_ref(),
        )
        .await?;
    let key: PageKey = page
        .position
        .map(|id| PageKey::from([(AFTER.to_owned(), id)]))
        .unwrap_or_default();
    Ok(Json(ChangePage {
        movements: Shown::each(page.movements, fields.as_ref())?,
        next_cursor: app.cursors.encode(&listing, &caller.tenant_id, &key),
        has_more: page.has_more,
    }))
}
