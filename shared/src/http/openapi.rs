//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use super::problem::Problem;
use super::{batches, items, keys, webhooks};
use crate::batches::BatchAccepted;
use crate::domain::batch::{Batch, BatchMode, BatchStatus, RecordFailure};
use crate::domain::{FieldError, Item, Movement};
use crate::service::AdjustmentResult;
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stockroom API",
        description = "Real-time and batch inventory API. Errors are `application/problem+json` \
with a stable `code`: malformed_json, invalid_parameter, invalid_cursor, unsupported_media_type, \
payload_too_large, validation_failed, unauthorized, forbidden, insufficient_scope, item_not_found, \
route_not_found, method_not_allowed, sku_exists, insufficient_stock, batch_not_found, malformed_batch, invalid_records, too_many_records, key_not_found, scope_not_grantable, webhook_not_found, delivery_not_found, webhook_disabled, webhook_limit_reached, invalid_webhook_url, webhook_url_not_https, webhook_url_has_credentials, webhook_url_too_long, webhook_url_forbidden_address, webhook_url_unresolvable, concurrent_update, \
quantity_overflow, precondition_failed, idempotency_key_reused, rate_limited, service_unavailable, internal. \
Every response carries `x-request-id`. Input limits: JSON bodies at most 256 KiB (batches 5 MiB, 50,000 records, atomic 99) and 16 levels deep; strings as documented per field.",
        license(name = "Apache-2.0"),
    ),
    paths(
        items::health,
        items::create_item,
        items::list_items,
        items::get_item,
        items::replace_item,
        items::delete_item,
        items::adjust_stock,
        items::list_movements,
        batches::create_batch,
        batches::list_batches,
        batches::get_batch,
        batches::list_failures,
        keys::create_key,
        keys::list_keys,
        keys::get_key,
        keys::revoke_key,
        webhooks::create_webhook,
        webhooks::list_webhooks,
        webhooks::get_webhook,
        webhooks::delete_webhook,
        webhooks::enable_webhook,
        webhooks::rotate_secret,
        webhooks::test_webhook,
        webhooks::list_deliveries,
        webhooks::get_delivery,
        webhooks::replay_delivery,
        serve,
    ),
    components(schemas(
        Item, Movement, Problem, FieldError, AdjustmentResult,
        items::ItemPage, items::MovementPage, items::Health,
        items::CreateItemRequest, items::ReplaceItemRequest, items::AdjustmentRequest,
        Batch, BatchMode, BatchStatus, RecordFailure, BatchAccepted,
        batches::BatchPage, batches::FailurePage, batches::BatchRequestBody, batches::BatchRecordRequest,
        crate::keys::ApiKeyView, crate::keys::CreatedKey, keys::KeyPage, keys::CreateKeyRequest,
        crate::domain::webhook::Webhook, crate::domain::webhook::WebhookStatus,
        crate::domain::webhook::Delivery, crate::domain::webhook::DeliveryStatus,
        crate::domain::webhook::Attempt, crate::domain::webhook::AttemptOutcome,
        crate::domain::event::Event, crate::domain::event::EventType,
        crate::webhooks::CreatedWebhook, crate::webhooks::RotatedSecret,
        webhooks::WebhookList, webhooks::DeliveryPage, webhooks::CreateWebhookRequest,
    )),
    modifiers(&BearerKey),
    security(("api_key" = [])),
    tags(
        (name = "items", description = "Items and their descriptive fields"),
        (name = "stock", description = "Stock adjustments and the movement ledger"),
        (name = "keys", description = "The tenant's API keys: create (shown once), list, revoke"),
        (name = "webhooks", description = "Signed event deliveries to the tenant's endpoints (Standard Webhooks), with a delivery log and replay"),
        (name = "batches", description = "Batch updates applied asynchronously, with per-record failure reports"),
        (name = "meta", description = "Health and API description"),
    )
)]
pub struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A Stockroom API key: `Authorization: Bearer sk_...`"))
                    .build(),
            ),
        );
    }
}

/// This document (no authentication).
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
