//! Handlers of the batch routes.

use super::extract::{Auth, BatchIdPath, JsonBody, QueryParams, idempotency_request};
use super::fields::{FieldsParam, Shown};
use super::problem::{Problem, current_request_id};
use crate::problem::HttpError;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;
use stockroom_app::batches::{BatchAccepted, BatchesService, MAX_BATCH_BODY_BYTES, SubmitOutcome};
use stockroom_app::cursor::CursorCodec;
use stockroom_app::error::ApiError;
use stockroom_domain::batch::{Batch, BatchStatus, RecordFailure, UploadFormat};
use stockroom_domain::key::{BATCHES_READ, BATCHES_WRITE};

const DEFAULT_PAGE: u32 = 20;

#[derive(Clone)]
pub struct BatchesState {
    pub batches: BatchesService,
    pub cursors: CursorCodec,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchPage {
    /// With `fields`, each batch has only those fields.
    #[schema(value_type = Vec<Batch>)]
    pub batches: Vec<Shown<Batch>>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FailurePage {
    /// With `fields`, each failure has only those fields.
    #[schema(value_type = Vec<RecordFailure>)]
    pub failures: Vec<Shown<RecordFailure>>,
    pub next_cursor: Option<String>,
}

/// One record of `POST /v1/batches` (fields by `op`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BatchRecordRequest {
    /// The client's record id, unique in the batch (1 to 128 characters).
    #[schema(example = "row-17")]
    id: String,
    /// `upsert` (create or replace, absolute quantity), `adjust` (delta),
    /// `delete`; in isolated batches also `count`, `transfer` and `reserve`
    /// (the bodies of `POST /v1/counts`, `/v1/transfers` and
    /// `/v1/reservations`).
    #[schema(example = "adjust")]
    op: String,
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    /// upsert: required.
    name: Option<String>,
    description: Option<String>,
    /// upsert: the absolute quantity counted (required).
    quantity: Option<i64>,
    low_stock_threshold: Option<i64>,
    attributes: Option<std::collections::BTreeMap<String, String>>,
    /// adjust: signed, non-zero.
    delta: Option<i64>,
    /// adjust: required.
    reason: Option<String>,
    reference: Option<String>,
    /// count, reserve: the location (absent: the default one).
    location: Option<String>,
    /// count: the figure counted (required).
    on_hand: Option<i64>,
    /// count: when it was taken, RFC 3339 (required).
    occurred_at: Option<String>,
    /// transfer: the location the units leave (required).
    from: Option<String>,
    /// transfer: the location they arrive at (required).
    to: Option<String>,
    /// reserve: seconds the hold lasts (required).
    expires_in: Option<i64>,
}

/// Body of `POST /v1/batches`: either the records themselves, or
/// `upload: true` with the file's format and size to get an upload URL
/// (for files too large for a request body: up to 2,000,000 rows, 1 GiB).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BatchRequestBody {
    /// `isolated`: only bad records fail. `atomic`: one bad record rejects the batch (at most 99 records, 200 KiB once validated).
    #[schema(example = "isolated")]
    mode: String,
    /// Inline batches: 1 to 50,000 records (body at most 5 MiB).
    records: Option<Vec<BatchRecordRequest>>,
    /// `true`: the records come in a file uploaded to the returned URL. A
    /// file's rows are identified by row number (CSV: the header is row 1);
    /// rows carry no `id`.
    upload: Option<bool>,
    /// Upload batches: `ndjson` (one record object per line) or `csv`
    /// (header row naming columns from op, sku, name, description, quantity,
    /// low_stock_threshold, delta, reason, reference, location, on_hand,
    /// occurred_at, from, to, expires_in and attributes.<key>).
    format: Option<UploadFormat>,
    /// Upload batches: the file's exact size in bytes (at most 1 GiB); the
    /// upload URL accepts only this size.
    size_bytes: Option<u64>,
}

/// Submit a batch of stock updates; applied asynchronously.
///
/// Inline records (up to 50,000, 5 MiB) are validated at once: invalid ones are reported as
/// failures, the rest applied exactly once by the workers, in `isolated` mode (only bad
/// records fail) or `atomic` mode (all or nothing, up to 99 records). An upload batch
/// answers `awaiting_upload` with `upload` (URL, method, headers); once the file is PUT
/// there the batch goes `accepted` -> `processing` -> terminal, and fails with `error.code`
/// `upload_expired` if no file arrives in time. With `Idempotency-Key` a retry replays the
/// first answer for 24 h.
#[utoipa::path(post, path = "/v1/batches", tag = "batches",
    params(("Idempotency-Key" = Option<String>, Header, description = "A retried POST with the same key and body returns the first batch for 24 h")),
    request_body(content = BatchRequestBody, content_type = "application/json"),
    security(("api_key" = ["batches:write"])),
    responses(
        (status = 202, description = "Accepted; poll the Location", body = BatchAccepted, headers(("Location" = String))),
        (status = 400, description = "`malformed_json` or `malformed_batch` (unknown op, records not objects)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope batches:write", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large` (over 5 MiB), `too_many_records` or `upload_too_large` (declared size over 1 GiB)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (mode, empty or duplicate ids, atomic batch over 200 KiB, upload format or size), `invalid_records` (atomic), an atomic batch over one transaction's writes, `idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store or queue unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_batch(
    State(app): State<BatchesState>,
    auth: Auth,
    headers: HeaderMap,
    body: JsonBody<MAX_BATCH_BODY_BYTES>,
) -> Result<Response, HttpError> {
    let caller = auth.require(BATCHES_WRITE)?;
    let idempotency = idempotency_request(&headers, "batches", &body.raw)?;
    let outcome = app
        .batches
        .submit(
            &caller.tenant_id,
            &body.value,
            &current_request_id(),
            idempotency.as_ref(),
        )
        .await?;
    let (status, body, replayed) = match outcome {
        SubmitOutcome::Accepted(a) => (
            StatusCode::ACCEPTED,
            serde_json::to_string(&a).unwrap_or_default(),
            false,
        ),
        SubmitOutcome::Replayed { status, body } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED),
            body,
            true,
        ),
    };
    let batch_id = serde_json::from_str::<BatchAccepted>(&body)
        .map(|a| a.batch_id)
        .unwrap_or_default();
    let mut resp = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/batches/{batch_id}")) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// A batch's status and counts.
///
/// Status, counts (`total`, `succeeded`, `failed`) and progress (`records_read`,
/// `records_enqueued`); the counts are exact once the status is terminal. `fields` returns
/// only the named fields.
#[utoipa::path(get, path = "/v1/batches/{batch_id}", tag = "batches",
    params(
        ("batch_id" = String, Path, description = "Id returned by POST /v1/batches"),
        FieldsParam<Batch>,
    ),
    security(("api_key" = ["batches:read"])),
    responses(
        (status = 200, description = "The batch", body = Batch),
        (status = 400, description = "`invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope batches:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`batch_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_batch(
    State(app): State<BatchesState>,
    auth: Auth,
    BatchIdPath(id): BatchIdPath,
    query: QueryParams,
) -> Result<Json<Shown<Batch>>, HttpError> {
    let caller = auth.require(BATCHES_READ)?;
    query.only(&["fields"])?;
    let fields = query.fields::<Batch>()?;
    let batch = app
        .batches
        .get(&caller.tenant_id, &id, fields.as_ref())
        .await?;
    Ok(Json(Shown::of(batch, fields.as_ref())?))
}

/// Every failed record of a batch, in record order.
///
/// Each failed record with its record id, sku, problem code and message, in the order the
/// records were submitted, paginated by `next_cursor`.
#[utoipa::path(get, path = "/v1/batches/{batch_id}/failures", tag = "batches",
    params(
        ("batch_id" = String, Path, description = "Id returned by POST /v1/batches"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        FieldsParam<RecordFailure>,
    ),
    security(("api_key" = ["batches:read"])),
    responses(
        (status = 200, description = "A page of failures", body = FailurePage),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope batches:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`batch_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_failures(
    State(app): State<BatchesState>,
    auth: Auth,
    BatchIdPath(id): BatchIdPath,
    query: QueryParams,
) -> Result<Json<FailurePage>, HttpError> {
    let caller = auth.require(BATCHES_READ)?;
    query.only(&["limit", "cursor", "fields"])?;
    let limit = query.limit(DEFAULT_PAGE)?;
    let fields = query.fields::<RecordFailure>()?;
    let listing = format!("failures:{id}");
    let start = query
        .get("cursor")
        .map(|c| app.cursors.decode(&listing, &caller.tenant_id, c))
        .transpose()?;
    let page = app
        .batches
        .failures(&caller.tenant_id, &id, limit, start, fields.as_ref())
        .await?;
    Ok(Json(FailurePage {
        failures: Shown::each(page.items, fields.as_ref())?,
        next_cursor: page
            .next
            .map(|k| app.cursors.encode(&listing, &caller.tenant_id, &k)),
    }))
}

/// The tenant's batches, newest first.
///
/// One page of the tenant's batches, newest first; `status` keeps only the batches in that
/// status.
#[utoipa::path(get, path = "/v1/batches", tag = "batches",
    params(
        ("status" = Option<BatchStatus>, Query, description = "Only batches with this status"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        FieldsParam<Batch>,
    ),
    security(("api_key" = ["batches:read"])),
    responses(
        (status = 200, description = "A page of batches", body = BatchPage),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope batches:read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_batches(
    State(app): State<BatchesState>,
    auth: Auth,
    query: QueryParams,
) -> Result<Json<BatchPage>, HttpError> {
    let caller = auth.require(BATCHES_READ)?;
    query.only(&["status", "limit", "cursor", "fields"])?;
    let limit = query.limit(DEFAULT_PAGE)?;
    let fields = query.fields::<Batch>()?;
    let status = query
        .get("status")
        .map(|s| {
            BatchStatus::parse(s).ok_or_else(|| {
                ApiError::invalid_parameter(
                    "status",
                    "must be awaiting_upload, accepted, processing, completed, completed_with_errors or failed",
                )
            })
        })
        .transpose()?;
    let listing = format!("batches:{}", status.map(BatchStatus::as_str).unwrap_or("*"));
    let start = query
        .get("cursor")
        .map(|c| app.cursors.decode(&listing, &caller.tenant_id, c))
        .transpose()?;
    let page = app
        .batches
        .list(&caller.tenant_id, status, limit, start, fields.as_ref())
        .await?;
    Ok(Json(BatchPage {
        batches: Shown::each(page.items, fields.as_ref())?,
        next_cursor: page
            .next
            .map(|k| app.cursors.encode(&listing, &caller.tenant_id, &k)),
    }))
}
