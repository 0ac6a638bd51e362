//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use super::problem::Problem;
use super::{batches, docs, items, keys, webhooks};
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
        description = "Real-time and batch inventory API for stock levels: read and adjust items \
now, or apply large batches (inline, or by file upload) asynchronously with a per-record failure report; \
status changes are pushed to signed webhooks.\n\n\
Authenticate with `Authorization: Bearer <API key>`; each route names the scope it needs. Every \
response carries `x-request-id` (send your own to correlate). Input limits: JSON bodies at most \
256 KiB (batches 5 MiB, 50,000 records, atomic 99) and 16 levels deep; strings as documented per field.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers(
        (url = "https://{api_id}.execute-api.{region}.amazonaws.com/{stage}",
            description = "A deployed stack (its `ApiUrl` stack output)",
            variables(
                ("api_id" = (default = "abc123", description = "The REST API's id")),
                ("region" = (default = "us-east-1", description = "The AWS region")),
                ("stage" = (default = "live", description = "The `StageName` parameter")),
            )),
        (url = "http://127.0.0.1:3000", description = "The local stack (`make run`)"),
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
        docs::page,
        docs::asset,
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
        crate::domain::event::SubscribableEventType,
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

/// The document served at `/openapi.json`: generated from the handlers'
/// annotations, with the examples and the problem codes table added.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    doc["webhooks"] = webhooks_section();
    super::fields::annotate(&mut doc);
    super::examples::annotate(&mut doc);
    super::deprecation::annotate(&mut doc, super::deprecation::DEPRECATED_ROUTES);
    doc
}

/// OpenAPI 3.1 `webhooks`: what a subscriber's endpoint receives, one entry
/// per event type that can be delivered (utoipa has no attribute for it).
fn webhooks_section() -> serde_json::Value {
    use crate::domain::event::EventType;
    let header = |name: &str, description: &str| {
        serde_json::json!({
            "name": name, "in": "header", "required": true,
            "description": description, "schema": {"type": "string"}
        })
    };
    let entries = EventType::DELIVERABLE.iter().map(|&kind| {
        let name = kind.as_str();
        let operation = serde_json::json!({
            "post": {
                "operationId": format!("webhook_{}", name.replace('.', "_")),
                "summary": format!("`{name}` delivered to a webhook that subscribed to it"),
                "description": kind.description(),
                "tags": ["webhooks"],
                "security": [],
                "parameters": [
                    header("webhook-id", "The event's id (`evt_...`): the same for every attempt and replay; deduplicate on it"),
                    header("webhook-timestamp", "Unix seconds when this attempt was signed; reject it when more than 5 minutes off"),
                    header("webhook-signature", "`v1,<base64 HMAC-SHA256>` of `<webhook-id>.<webhook-timestamp>.<body>` with the webhook's secret; during a rotation, one per valid secret, space-separated"),
                ],
                "requestBody": {
                    "required": true,
                    "content": {"application/json": {"schema": {
                        "allOf": [
                            {"$ref": "#/components/schemas/Event"},
                            {"type": "object", "properties": {"type": {"const": name}}}
                        ]
                    }}}
                },
                "responses": {
                    "2XX": {"description": "Received: any 2xx within 10 s ends the delivery"},
                    "410": {"description": "Gone: the webhook is disabled, no further delivery"},
                    "default": {"description": "Anything else, or no answer within 10 s: retried on the schedule, then recorded as failed"}
                }
            }
        });
        (name.to_owned(), operation)
    });
    serde_json::Value::Object(entries.collect())
}

/// This document (no authentication).
///
/// The OpenAPI 3.1 description of `/v1`, generated from the handlers: every route
/// with its scope, parameters, answers and examples, the problem codes, and the
/// webhook payloads. The frozen copy is `docs/openapi/v1.json` in the repository.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn serve() -> Json<&'static serde_json::Value> {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document))
}

#[cfg(test)]
mod completeness {
    //! What a strict client reads in the document beyond the routes.

    use super::document;
    use crate::domain::event::EventType;
    use serde_json::Value;

    #[test]
    fn every_operation_has_a_summary_and_a_description() {
        let doc = document();
        let mut missing = Vec::new();
        for section in ["paths", "webhooks"] {
            for (path, methods) in doc[section].as_object().into_iter().flatten() {
                for (method, op) in methods.as_object().into_iter().flatten() {
                    for field in ["summary", "description"] {
                        if op[field].as_str().is_none_or(str::is_empty) {
                            missing.push(format!("{method} {path}: no {field}"));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn the_document_names_its_servers_and_its_license() {
        let doc = document();
        let urls: Vec<&str> = doc["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["url"].as_str())
            .collect();
        assert_eq!(
            urls,
            [
                "https://{api_id}.execute-api.{region}.amazonaws.com/{stage}",
                "http://127.0.0.1:3000"
            ]
        );
        assert_eq!(doc["servers"][0]["variables"]["stage"]["default"], "live");
        assert_eq!(doc["info"]["license"]["identifier"], "Apache-2.0");
    }

    /// One `webhooks` entry per type that can be delivered, its body the
    /// `Event` schema with that type.
    #[test]
    fn every_deliverable_event_is_a_webhook_of_the_document() {
        let doc = document();
        let names: Vec<&String> = doc["webhooks"]
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        let mut want: Vec<&str> = EventType::DELIVERABLE.iter().map(|t| t.as_str()).collect();
        want.sort_unstable();
        assert_eq!(names, want);
        for kind in EventType::DELIVERABLE {
            let body = &doc["webhooks"][kind.as_str()]["post"]["requestBody"]["content"]["application/json"]
                ["schema"]["allOf"];
            assert_eq!(body[0]["$ref"], "#/components/schemas/Event");
            assert_eq!(body[1]["properties"]["type"]["const"], kind.as_str());
        }
        // The Event schema is used (it was defined and referenced nowhere).
        assert!(doc["components"]["schemas"]["Event"].is_object());
    }

    /// A webhook subscribes to the server's list, which leaves out the ping;
    /// deliveries and events may carry every type.
    #[test]
    fn subscriptions_and_deliveries_use_their_own_event_enums() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let subscribable: Vec<&str> = schemas["SubscribableEventType"]["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let want: Vec<&str> = EventType::SUBSCRIBABLE.iter().map(|t| t.as_str()).collect();
        assert_eq!(subscribable, want);
        assert!(!subscribable.contains(&"webhook.ping"));
        for schema in ["CreateWebhookRequest", "Webhook"] {
            assert_eq!(
                schemas[schema]["properties"]["events"]["items"]["$ref"],
                "#/components/schemas/SubscribableEventType",
                "{schema}"
            );
        }
        let deliverable: Vec<&str> = schemas["EventType"]["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(deliverable.contains(&"webhook.ping"));
        // The server refuses to subscribe to the ping, as the schema says.
        let refused = crate::domain::webhook::NewWebhook::from_json(&serde_json::json!({
            "url": "https://erp.example.com/hooks",
            "events": ["webhook.ping"],
        }));
        assert!(refused.is_err());
    }
}

#[cfg(test)]
mod contract {
    //! The `/v1` contract is frozen in `docs/openapi/v1.json`. Any change to
    //! the generated document fails here until the snapshot is deliberately
    //! rewritten (`STOCKROOM_UPDATE_OPENAPI=1 cargo test -p stockroom-shared
    //! contract`); breaking changes (a route, method, documented status or
    //! schema property removed, a property newly required) are listed first.

    use super::document;
    use serde_json::Value;

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
        let current = document();
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
