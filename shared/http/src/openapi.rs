//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use super::problem::Problem;
use super::{
    batches, changes, counts, docs, items, keys, locations, reservations, stock_split, transfers,
    webhooks,
};
use axum::Json;
use stockroom_app::batches::BatchAccepted;
use stockroom_app::items::AdjustmentResult;
use stockroom_domain::batch::{Batch, BatchMode, BatchStatus, RecordFailure};
use stockroom_domain::{FieldError, Item, Movement};
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
        contact(name = "Stockroom", url = "https://stockroom.dev"),
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
        items::get_levels,
        stock_split::split_stock,
        stock_split::merge_stock,
        changes::list_changes,
        locations::create_location,
        locations::list_locations,
        locations::get_location,
        locations::delete_location,
        transfers::create_transfer,
        counts::create_count,
        items::batch_retrieve_levels,
        reservations::create_reservation,
        reservations::list_reservations,
        reservations::get_reservation,
        reservations::commit_reservation,
        reservations::release_reservation,
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
        items::ItemPage, items::MovementPage, changes::ChangePage, items::Health,
        items::CreateItemRequest, items::ReplaceItemRequest, items::AdjustmentRequest,
        stockroom_domain::location::Location, stockroom_domain::location::LocationKind,
        stockroom_app::items::ItemLevels, stockroom_app::items::LevelView,
        locations::LocationPage, locations::CreateLocationRequest,
        reservations::ReservationPage, reservations::CreateReservationRequest,
        transfers::TransferRequest, stockroom_app::transfers::TransferResult,
        counts::CountRequest, stockroom_app::counts::CountResult,
        stock_split::StockSplitRequest,
        items::BatchLevelsRequest, items::LevelPairRequest,
        stockroom_app::items::BatchLevels, stockroom_app::items::SkuLevel,
        stockroom_app::items::LevelPair,
        stockroom_app::transfers::TransferSide,
        stockroom_app::reservations::Reservation,
        stockroom_domain::reservation::ReservationStatus,
        Batch, BatchMode, BatchStatus, RecordFailure, BatchAccepted,
        batches::BatchPage, batches::FailurePage, batches::BatchRequestBody, batches::BatchRecordRequest,
        stockroom_app::keys::ApiKeyView, stockroom_app::keys::CreatedKey, keys::KeyPage, keys::CreateKeyRequest,
        stockroom_domain::webhook::Webhook, stockroom_domain::webhook::WebhookStatus,
        stockroom_domain::webhook::Delivery, stockroom_domain::webhook::DeliveryStatus,
        stockroom_domain::webhook::Attempt, stockroom_domain::webhook::AttemptOutcome,
        stockroom_domain::event::Event, stockroom_domain::event::EventType,
        stockroom_domain::event::SubscribableEventType,
        stockroom_app::webhooks::CreatedWebhook, stockroom_app::webhooks::RotatedSecret,
        webhooks::WebhookList, webhooks::DeliveryPage, webhooks::CreateWebhookRequest,
    )),
    modifiers(&BearerKey),
    security(("api_key" = [])),
    tags(
        (name = "items", description = "Items and their descriptive fields"),
        (name = "stock", description = "Stock adjustments, the movement ledger and the change feed"),
        (name = "locations", description = "Where stock is kept: the default location and the tenant's warehouses, stores and others"),
        (name = "reservations", description = "Stock held while a cart checks out: committed when the order ships, released, or expired"),
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
    super::request_rules::annotate(&mut doc);
    add_links(&mut doc);
    super::examples::annotate(&mut doc);
    super::deprecation::annotate(&mut doc, super::deprecation::DEPRECATED_ROUTES);
    doc
}

/// OpenAPI links: how an answer's ids feed the next calls (create → read →
/// change → delete), for clients and for stateful contract tests.
/// (operation, status, link, target operation, target parameter, value).
const LINKS: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "create_item",
        "201",
        "GetItem",
        "get_item",
        "sku",
        "$response.body#/sku",
    ),
    (
        "create_item",
        "201",
        "ReplaceItem",
        "replace_item",
        "sku",
        "$response.body#/sku",
    ),
    (
        "create_item",
        "201",
        "AdjustStock",
        "adjust_stock",
        "sku",
        "$response.body#/sku",
    ),
    (
        "create_item",
        "201",
        "ListMovements",
        "list_movements",
        "sku",
        "$response.body#/sku",
    ),
    (
        "create_item",
        "201",
        "DeleteItem",
        "delete_item",
        "sku",
        "$response.body#/sku",
    ),
    (
        "adjust_stock",
        "200",
        "GetItem",
        "get_item",
        "sku",
        "$response.body#/sku",
    ),
    (
        "adjust_stock",
        "200",
        "ListMovements",
        "list_movements",
        "sku",
        "$response.body#/sku",
    ),
    (
        "list_changes",
        "200",
        "NextChanges",
        "list_changes",
        "cursor",
        "$response.body#/next_cursor",
    ),
    (
        "adjust_stock",
        "200",
        "ChangesOfItem",
        "list_changes",
        "sku",
        "$response.body#/sku",
    ),
    (
        "replace_item",
        "200",
        "GetItem",
        "get_item",
        "sku",
        "$response.body#/sku",
    ),
    (
        "replace_item",
        "200",
        "DeleteItem",
        "delete_item",
        "sku",
        "$response.body#/sku",
    ),
    (
        "create_item",
        "201",
        "GetLevels",
        "get_levels",
        "sku",
        "$response.body#/sku",
    ),
    (
        "create_location",
        "201",
        "GetLocation",
        "get_location",
        "location_id",
        "$response.body#/id",
    ),
    (
        "create_location",
        "201",
        "DeleteLocation",
        "delete_location",
        "location_id",
        "$response.body#/id",
    ),
    (
        "create_batch",
        "202",
        "GetBatch",
        "get_batch",
        "batch_id",
        "$response.body#/batch_id",
    ),
    (
        "create_batch",
        "202",
        "ListFailures",
        "list_failures",
        "batch_id",
        "$response.body#/batch_id",
    ),
    (
        "create_key",
        "201",
        "GetKey",
        "get_key",
        "key_id",
        "$response.body#/key_id",
    ),
    (
        "create_webhook",
        "201",
        "GetWebhook",
        "get_webhook",
        "webhook_id",
        "$response.body#/id",
    ),
    (
        "create_webhook",
        "201",
        "TestWebhook",
        "test_webhook",
        "webhook_id",
        "$response.body#/id",
    ),
    (
        "create_webhook",
        "201",
        "RotateSecret",
        "rotate_secret",
        "webhook_id",
        "$response.body#/id",
    ),
    (
        "create_webhook",
        "201",
        "EnableWebhook",
        "enable_webhook",
        "webhook_id",
        "$response.body#/id",
    ),
    (
        "create_webhook",
        "201",
        "ListDeliveries",
        "list_deliveries",
        "webhook_id",
        "$response.body#/id",
    ),
    (
        "create_webhook",
        "201",
        "DeleteWebhook",
        "delete_webhook",
        "webhook_id",
        "$response.body#/id",
    ),
    (
        "test_webhook",
        "202",
        "GetDelivery",
        "get_delivery",
        "delivery_id",
        "$response.body#/id",
    ),
    (
        "test_webhook",
        "202",
        "ReplayDelivery",
        "replay_delivery",
        "delivery_id",
        "$response.body#/id",
    ),
];

fn add_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut().filter_map(|v| v.as_object_mut()) {
        for op in item.values_mut() {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            for (from, status, name, to, param, value) in LINKS {
                if *from != id {
                    continue;
                }
                let mut parameters = serde_json::json!({ *param: value });
                // Calls under a webhook keep naming it.
                if *from == "test_webhook" {
                    parameters["webhook_id"] = "$request.path.webhook_id".into();
                }
                op["responses"][*status]["links"][*name] =
                    serde_json::json!({"operationId": to, "parameters": parameters});
            }
        }
    }
}

/// OpenAPI 3.1 `webhooks`: what a subscriber's endpoint receives, one entry
/// per event type that can be delivered (utoipa has no attribute for it).
fn webhooks_section() -> serde_json::Value {
    use stockroom_domain::event::EventType;
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
    use serde_json::Value;
    use stockroom_domain::event::EventType;

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

    /// Every link names an operation that exists, answering the status it
    /// hangs on, and only parameters that operation takes.
    #[test]
    fn links_lead_to_real_operations_and_parameters() {
        let doc = document();
        let mut operations = std::collections::BTreeMap::new();
        for item in doc["paths"].as_object().into_iter().flatten() {
            for op in item.1.as_object().into_iter().flatten().map(|(_, op)| op) {
                if let Some(id) = op["operationId"].as_str() {
                    operations.insert(id.to_owned(), op.clone());
                }
            }
        }
        let mut links = 0;
        for op in operations.values() {
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                for (name, link) in response["links"].as_object().into_iter().flatten() {
                    links += 1;
                    let target = &operations[link["operationId"].as_str().expect("operationId")];
                    for param in link["parameters"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|p| p.0)
                    {
                        let takes = target["parameters"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|p| p["name"] == param.as_str());
                        assert!(takes, "{status} {name}: {param}");
                    }
                }
            }
        }
        assert_eq!(links, super::LINKS.len());
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
        let refused = stockroom_domain::webhook::NewWebhook::from_json(&serde_json::json!({
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
    //! rewritten (`STOCKROOM_UPDATE_OPENAPI=1 cargo test -p stockroom-http
    //! contract`). Whether a change is compatible is Optic's call, with the
    //! rules in tests/contract/optic.yml (`cargo test --test openapi-lint`,
    //! which diffs the snapshot and this document): run it before rewriting.

    use super::document;
    use serde_json::Value;

    fn snapshot_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi/v1.json")
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
        assert!(
            snapshot == current,
            "the OpenAPI document changed: `cargo test --test openapi-lint` says whether \
             compatibly (a breaking change needs a new version instead); review it, note it \
             in CHANGELOG.md and rewrite docs/openapi/v1.json with \
             STOCKROOM_UPDATE_OPENAPI=1 cargo test -p stockroom-http contract"
        );
    }
}
