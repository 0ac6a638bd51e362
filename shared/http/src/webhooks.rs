//! Handlers of the webhook routes (scope `webhooks:manage`).

use super::extract::{Auth, JsonBody, QueryParams, is_prefixed_id};
use super::fields::{FieldsParam, Shown};
use super::problem::{Problem, current_request_id};
use crate::problem::HttpError;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use stockroom_app::cursor::CursorCodec;
use stockroom_app::error::ApiError;
use stockroom_app::webhooks::{CreatedWebhook, RotatedSecret, WebhooksService};
use stockroom_domain::key::WEBHOOKS_MANAGE;
use stockroom_domain::webhook::{Delivery, Webhook};

#[derive(Clone)]
pub struct WebhooksState {
    pub webhooks: WebhooksService,
    pub cursors: CursorCodec,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    /// With `fields`, each webhook has only those fields.
    #[schema(value_type = Vec<Webhook>)]
    pub webhooks: Vec<Shown<Webhook>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    /// With `fields`, each delivery has only those fields.
    #[schema(value_type = Vec<Delivery>)]
    pub deliveries: Vec<Shown<Delivery>>,
    pub next_cursor: Option<String>,
}

/// Body of `POST /v1/webhooks`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateWebhookRequest {
    /// `https` URL of a public host (private, loopback and link-local
    /// addresses are refused, at registration and at every send).
    #[schema(max_length = 2048, example = "https://erp.example.com/hooks/stockroom")]
    url: String,
    /// Event types to receive.
    #[schema(example = json!(["batch.completed", "batch.completed_with_errors", "batch.failed", "item.low_stock"]))]
    events: Vec<stockroom_domain::event::SubscribableEventType>,
    #[schema(max_length = 256)]
    description: Option<String>,
}

/// The `{webhook_id}` (and optional `{delivery_id}`) path segments; an id
/// that cannot exist is not found.
pub struct WebhookPath {
    pub webhook: String,
    pub delivery: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for WebhookPath {
    type Rejection = HttpError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let axum::extract::Path(params) =
            axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::WebhookNotFound)?;
        let mut path = WebhookPath {
            webhook: String::new(),
            delivery: None,
        };
        for (name, value) in params {
            match name.as_str() {
                "webhook_id" if is_prefixed_id(&value, "wh_") => path.webhook = value,
                "delivery_id" if is_prefixed_id(&value, "dlv_") => path.delivery = Some(value),
                "delivery_id" => return Err(ApiError::DeliveryNotFound.into()),
                _ => return Err(ApiError::WebhookNotFound.into()),
            }
        }
        if path.webhook.is_empty() {
            return Err(ApiError::WebhookNotFound.into());
        }
        Ok(path)
    }
}

impl WebhookPath {
    fn delivery(&self) -> Result<&str, ApiError> {
        self.delivery.as_deref().ok_or(ApiError::DeliveryNotFound)
    }
}

/// Register a webhook; the signing secret is shown only in this response.
///
/// The URL must be https and resolve to a public address. Deliveries are signed with the
/// secret (Standard Webhooks `webhook-signature`); store it, it is not shown again.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body(content = CreateWebhookRequest, content_type = "application/json"),
    security(("api_key" = ["webhooks:manage"])),
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = CreatedWebhook, headers(("Location" = String))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope webhooks:manage", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `webhook_limit_reached`, or the URL refused: `invalid_webhook_url`, `webhook_url_not_https`, `webhook_url_has_credentials`, `webhook_url_too_long`, `webhook_url_forbidden_address`, `webhook_url_unresolvable`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_webhook(
    State(app): State<WebhooksState>,
    auth: Auth,
    body: JsonBody,
) -> Result<Response, HttpError> {
    let caller = auth.require(WEBHOOKS_MANAGE)?;
    let created = app.webhooks.create(&caller.tenant_id, &body.value).await?;
    let location = HeaderValue::from_str(&format!("/v1/webhooks/{}", created.webhook.id))
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    )
        .into_response())
}

/// The tenant's webhooks (at most 20).
///
/// Each webhook with its events, status and, while deliveries fail, `failing_since`; never
/// the secrets.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    params(FieldsParam<Webhook>),
    security(("api_key" = ["webhooks:manage"])),
    responses(
        (status = 200, description = "Every webhook of the tenant", body = WebhookList),
        (status = 400, description = "`invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope webhooks:manage", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_webhooks(
    State(app): State<WebhooksState>,
    auth: Auth,
    query: QueryParams,
) -> Result<Json<WebhookList>, HttpError> {
    let caller = auth.require(WEBHOOKS_MANAGE)?;
    query.only(&["fields"])?;
    let fields = query.fields::<Webhook>()?;
    let webhooks = app
        .webhooks
        .list(&caller.tenant_id, fields.as_ref())
        .await?;
    Ok(Json(WebhookList {
        webhooks: Shown::each(webhooks, fields.as_ref())?,
    }))
}

/// One webhook (without its secret).
///
/// Its URL, events, status, `disabled_reason` and `failing_since`; never the secret.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(
        ("webhook_id" = String, Path, description = "The webhook's id"),
        FieldsParam<Webhook>,
    ),
    security(("api_key" = ["webhooks:manage"])),
    responses(
        (status = 200, description = "The webhook", body = Webhook),
        (status = 400, description = "`invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope webhooks:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_webhook(
    State(app): State<WebhooksState>,
    auth: Auth,
    path: WebhookPath,
    query: QueryParams,
) -> Result<Json<Shown<Webhook>>, HttpError> {
    let caller = auth.require(WEBHOOKS_MANAGE)?;
    query.only(&["fields"])?;
    let fields = query.fields::<Webhook>()?;
    let webhook = app
        .webhooks
        .get(&caller.tenant_id, &path.webhook, fields.as_ref())
        .await?;
    Ok(Json(Shown::of(webhook, fields.as_ref())?))
}

/// Delete a webhook; queued deliveries to it are dropped.
///
/// Deleting is permanent; no further delivery is attempted.
#[utoipa::path(delete, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The webhook's id")),
    security(("api_key" = ["webhooks:manage"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope webhooks:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_webhook(
    State(app): State<WebhooksState>,
    auth: Auth,
    path: WebhookPath,
) -> Result<StatusCode, HttpError> {
    let caller = auth.require(WEBHOOKS_MANAGE)?;
    app.webhooks
        .delete(&caller.tenant_id, &path.webhook)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Re-enable a disabled webhook.
///
/// A webhook is disabled when its endpoint answered 410 Gone or kept failing past the
/// disable period; enabling it resumes deliveries of new events.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/enable", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The webhook's id")),
    security(("api_key" = ["webhooks:manage"])),
    responses(
        (status = 200, description = "The webhook, enabled", body = Webhook),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope webhooks:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn enable_webhook(
    State(app): State<WebhooksState>,
    auth: Auth,
    path: WebhookPath,
) -> Result<Json<Webhook>, HttpError> {
    let caller = auth.require(WEBHOOKS_MANAGE)?;
    Ok(Json(
        app.webhooks
            .enable(&caller.tenant_id, &path.webhook)
            .await?,
    ))
}

/// Replace the signing secret; the previous one keeps signing for 24 h
/// (deliveries carry both signatures meanwhile).
///
/// Answers the new secret once and when the previous one stops signing; receivers verify
/// against either until then.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The webhook's id")),
    security(("api_key" = ["webhooks:manage"])),
    responses(
        (status = 200, description = "The new secret, shown only now", body = RotatedSecret),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope webhooks:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`concurrent_update`: another rotation won; retry", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_secret(
    State(app): State<WebhooksState>,
    auth: Auth,
    path: WebhookPath,
) -> Result<Json<RotatedSecret>, HttpError> {
    let caller = auth.require(WEBHOOKS_MANAGE)?;
    Ok(Json(
        app.webhooks
            .rotate_secret(&caller.tenant_id, &path.webhook)
            .await?,
    ))
}

/// Send a `webhook.ping` event to this webhook; follow it in its deliveries.
///
/// Answers 202 with the delivery; a disabled webhook answers 409 `webhook_disabled`.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/test", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The webhook's id")),
    security(("api_key" = ["webhooks:manage"])),
    responses(
        (status = 202, description = "Queued", body = Delivery),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope webhooks:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`webhook_disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store or queue unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn test_webhook(
    State(app): State<WebhooksState>,
    auth: Auth,
    path: WebhookPath,
) -> Result<(StatusCode, Json<Delivery>), HttpError> {
    let caller = auth.require(WEBHOOKS_MANAGE)?;
    let delivery = app
        .webhooks
        .test(&caller.tenant_id, &path.webhook, &current_request_id())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}

/// Deliveries to this webhook, newest first, with every attempt.
///
/// Each delivery with its event, status, every attempt (status code, latency, error) and
/// `next_retry_at`, paginated by `next_cursor`.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(
        ("webhook_id" = String, Path, description = "The webhook's id"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        FieldsParam<Delivery>,
    ),
    security(("api_key" = ["webhooks:manage"])),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope webhooks:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_deliveries(
    State(app): State<WebhooksState>,
    auth: Auth,
    path: WebhookPath,
    query: QueryParams,
) -> Result<Json<DeliveryPage>, HttpError> {
    let caller = auth.require(WEBHOOKS_MANAGE)?;
    query.only(&["limit", "cursor", "fields"])?;
    let limit = query.limit(20)?;
    let fields = query.fields::<Delivery>()?;
    let listing = format!("deliveries:{}", path.webhook);
    let start = query
        .get("cursor")
        .map(|c| app.cursors.decode(&listing, &caller.tenant_id, c))
        .transpose()?;
    let page = app
        .webhooks
        .deliveries(
            &caller.tenant_id,
            &path.webhook,
            limit,
            start,
            fields.as_ref(),
        )
        .await?;
    Ok(Json(DeliveryPage {
        deliveries: Shown::each(page.items, fields.as_ref())?,
        next_cursor: page
            .next
            .map(|k| app.cursors.encode(&listing, &caller.tenant_id, &k)),
    }))
}

/// One delivery with every attempt.
///
/// The delivery's event, status, every attempt (status code, latency, error) and
/// `next_retry_at`.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}", tag = "webhooks",
    params(
        ("webhook_id" = String, Path, description = "The webhook's id"),
        ("delivery_id" = String, Path, description = "The delivery's id"),
        FieldsParam<Delivery>,
    ),
    security(("api_key" = ["webhooks:manage"])),
    responses(
        (status = 200, description = "The delivery", body = Delivery),
        (status = 400, description = "`invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope webhooks:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_found` or `delivery_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_delivery(
    State(app): State<WebhooksState>,
    auth: Auth,
    path: WebhookPath,
    query: QueryParams,
) -> Result<Json<Shown<Delivery>>, HttpError> {
    let caller = auth.require(WEBHOOKS_MANAGE)?;
    query.only(&["fields"])?;
    let fields = query.fields::<Delivery>()?;
    let delivery = app
        .webhooks
        .delivery(
            &caller.tenant_id,
            &path.webhook,
            path.delivery()?,
            fields.as_ref(),
        )
        .await?;
    Ok(Json(Shown::of(delivery, fields.as_ref())?))
}

/// Send a delivery again: same event, same `webhook-id`, a fresh retry schedule.
///
/// Receivers that deduplicate on `webhook-id` see the replay as the same event. Answers
/// 202.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay", tag = "webhooks",
    params(
        ("webhook_id" = String, Path, description = "The webhook's id"),
        ("delivery_id" = String, Path, description = "The delivery's id"),
    ),
    security(("api_key" = ["webhooks:manage"])),
    responses(
        (status = 202, description = "Queued", body = Delivery),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope webhooks:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_found` or `delivery_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`webhook_disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store or queue unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replay_delivery(
    State(app): State<WebhooksState>,
    auth: Auth,
    path: WebhookPath,
) -> Result<(StatusCode, Json<Delivery>), HttpError> {
    let caller = auth.require(WEBHOOKS_MANAGE)?;
    let delivery = app
        .webhooks
        .replay(
            &caller.tenant_id,
            &path.webhook,
            path.delivery()?,
            &current_request_id(),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}
