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

#[cfg(test)]
mod contract {
    //! The `/v1` contract is frozen in `docs/openapi/v1.json`. Any change to
    //! the generated document fails here until the snapshot is deliberately
    //! rewritten (`STOCKROOM_UPDATE_OPENAPI=1 cargo test -p stockroom-shared
    //! contract`); breaking changes (a route, method, documented status or
    //! schema property removed, a property newly required) are listed first.

    use super::ApiDoc;
    use serde_json::Value;
    use utoipa::OpenApi;

    fn snapshot_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi/v1.json")
    }

    fn keys(v: &Value) -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// What a client relying on `old` would find missing or stricter in `new`.
    fn breaking_changes(old: &Value, new: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for path in keys(&old["paths"]) {
            for method in keys(&old["paths"][&path]) {
                let (o, n) = (&old["paths"][&path][&method], &new["paths"][&path][&method]);
                if n.is_null() {
                    out.push(format!("{} {path} removed", method.to_uppercase()));
                    continue;
                }
                for status in keys(&o["responses"]) {
                    if n["responses"][&status].is_null() {
                        out.push(format!(
                            "{} {path}: response {status} no longer documented",
                            method.to_uppercase()
                        ));
                    }
                }
            }
        }
        for schema in keys(&old["components"]["schemas"]) {
            let (o, n) = (
                &old["components"]["schemas"][&schema],
                &new["components"]["schemas"][&schema],
            );
            if n.is_null() {
                out.push(format!("schema {schema} removed"));
                continue;
            }
            for prop in keys(&o["properties"]) {
                if n["properties"][&prop].is_null() {
                    out.push(format!("schema {schema}: property {prop} removed"));
                }
            }
            let was: Vec<&Value> = o["required"]
                .as_array()
                .map(|r| r.iter().collect())
                .unwrap_or_default();
            for req in n["required"].as_array().into_iter().flatten() {
                if !was.contains(&req) {
                    let name = req.as_str().unwrap_or_default();
                    out.push(format!("schema {schema}: {name} is newly required"));
                }
            }
        }
        out
    }

    #[test]
    fn the_v1_contract_changes_only_deliberately() {
        let current = serde_json::to_value(ApiDoc::openapi()).expect("openapi serialises");
        let path = snapshot_path();
        if std::env::var("STOCKROOM_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().expect("docs dir")).expect("mkdir");
            let text = serde_json::to_string_pretty(&current).expect("json") + "\n";
            std::fs::write(&path, text).expect("write snapshot");
            return;
        }
        let snapshot: Value = serde_json::from_str(
            &std::fs::read_to_string(&path).expect("docs/openapi/v1.json exists"),
        )
        .expect("snapshot is JSON");
        let breaking = breaking_changes(&snapshot, &current);
        assert!(
            breaking.is_empty(),
            "BREAKING changes to /v1 (add a new version instead):\n  {}",
            breaking.join("\n  ")
        );
        assert!(
            snapshot == current,
            "the OpenAPI document changed (compatibly): review it, note it in CHANGELOG.md and \
             rewrite docs/openapi/v1.json with STOCKROOM_UPDATE_OPENAPI=1 cargo test -p stockroom-shared contract"
        );
    }

    #[test]
    fn removals_and_new_requirements_are_breaking() {
        let old = serde_json::json!({
            "paths": {"/v1/a": {"get": {"responses": {"200": {}, "404": {}}}}, "/v1/b": {"post": {"responses": {}}}},
            "components": {"schemas": {"A": {"properties": {"x": {}, "y": {}}, "required": ["x"]}}}
        });
        let new = serde_json::json!({
            "paths": {"/v1/a": {"get": {"responses": {"200": {}}}}, "/v1/c": {"get": {"responses": {}}}},
            "components": {"schemas": {"A": {"properties": {"x": {}, "z": {}}, "required": ["x", "z"]}}}
        });
        let found = breaking_changes(&old, &new);
        assert_eq!(
            found,
            vec![
                "GET /v1/a: response 404 no longer documented",
                "POST /v1/b removed",
                "schema A: property y removed",
                "schema A: z is newly required",
            ]
        );
        assert!(breaking_changes(&old, &old).is_empty());
    }
}
