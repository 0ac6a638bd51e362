//! Examples for the OpenAPI document (and so for the `/docs` page): a request
//! and response example for every route, and for every documented error
//! status the problem `code`s a client can meet there, each explained.
//!
//! Success examples are written out here; problem examples are produced by
//! the one `ApiError` → problem mapping, so their text is what clients get.
//! `examples_match_their_schemas` checks all of them against the schemas.

use super::problem::Problem;
use serde_json::{Map, Value, json};
use stockroom_app::error::ApiError;
use stockroom_app::webhooks::target::TargetError;
use stockroom_domain::FieldErrors;

const REQUEST_ID: &str = "0b6ad5a2-7f0e-4c1b-9a8e-3d2f1c0b9a87";

/// Where a problem can occur, for attaching its example to the right routes.
enum Occurs {
    /// Every route: what API Gateway and the firewall answer before any
    /// function runs.
    Everywhere,
    /// Every route that needs an API key.
    Authenticated,
    /// Every route that takes a JSON body.
    WithBody,
    /// Every route with query or header parameters, or a sku in its path.
    WithParameters,
    /// Every paginated listing.
    WithCursor,
    /// Every route under this path.
    Under(&'static str),
    /// These routes (`METHOD /path`).
    On(&'static [&'static str]),
    /// Any route, not tied to a documented response (405): in the codes
    /// table only.
    TableOnly,
}

struct ProblemEntry {
    problem: Problem,
    occurs: Occurs,
    /// When it happens and what the client should do.
    meaning: &'static str,
}

fn problem(e: ApiError) -> Problem {
    use crate::problem::ProblemMapping;
    e.to_problem(REQUEST_ID.to_owned())
}

fn field_errors(entries: &[(&str, &str, Option<&str>)]) -> FieldErrors {
    let mut errors = FieldErrors::default();
    for (field, message, record) in entries {
        errors.push(*field, *message);
        if let (Some(last), Some(record)) = (errors.0.last_mut(), record) {
            last.record_id = Some((*record).to_owned());
        }
    }
    errors
}

/// A problem API Gateway answers itself (see `GatewayResponses` in template.yaml).
fn gateway_problem(status: u16, code: &str, title: &str, detail: &str) -> Problem {
    Problem {
        type_: format!("https://stockroom.dev/problems/{}", code.replace('_', "-")),
        title: title.to_owned(),
        status,
        detail: detail.to_owned(),
        code: code.to_owned(),
        request_id: REQUEST_ID.to_owned(),
        errors: Vec::new(),
        limit: None,
    }
}

/// A 429 API Gateway (or the firewall) answers, naming the limit hit.
fn limit_problem(limit: &str, detail: &str) -> Problem {
    Problem {
        limit: Some(limit.to_owned()),
        ..gateway_problem(429, "rate_limited", "Too Many Requests", detail)
    }
}

const ITEM_ROUTES: &[&str] = &["PUT /v1/items/{sku}", "DELETE /v1/items/{sku}"];
const ADJUST: &str = "POST /v1/items/{sku}/adjustments";
const CREATE_BATCH: &str = "POST /v1/batches";
const RESERVE: &str = "POST /v1/reservations";
const TRANSFER: &str = "POST /v1/transfers";
const COUNT: &str = "POST /v1/counts";
const SPLIT: &str = "PUT /v1/items/{sku}/stock-split";
const MERGE: &str = "DELETE /v1/items/{sku}/stock-split";
const COMMIT: &str = "POST /v1/reservations/{reservation_id}/commit";
const RELEASE: &str = "POST /v1/reservations/{reservation_id}/release";
const CREATE_WEBHOOK: &str = "POST /v1/webhooks";

/// Every problem `code` a client can receive.
fn catalogue() -> Vec<ProblemEntry> {
    use Occurs::*;
    let entry = |e: ApiError, occurs: Occurs, meaning: &'static str| ProblemEntry {
        problem: problem(e),
        occurs,
        meaning,
    };
    let mut all = vec![
        entry(
            ApiError::MalformedJson("expected `,` or `}` at line 1 column 18".into()),
            WithBody,
            "The body is not JSON. Fix the client's serialisation; nothing was changed.",
        ),
        entry(
            ApiError::InvalidParameters(field_errors(&[(
                "limit",
                "must be an integer from 1 to 100",
                None,
            )])),
            WithParameters,
            "A query or header parameter is invalid; `errors` names each one.",
        ),
        entry(
            ApiError::InvalidCursor(stockroom_app::cursor::CursorError("signature mismatch")),
            WithCursor,
            "The `cursor` was altered or comes from another listing (cursors are signed); list again from the start.",
        ),
        entry(
            ApiError::UnsupportedMediaType("text/plain".into()),
            WithBody,
            "Send bodies as `application/json`.",
        ),
        entry(
            ApiError::PayloadTooLarge {
                size: 300_000,
                limit: 262_144,
            },
            WithBody,
            "The body is over the route's limit (256 KiB; batches 5 MiB); API Gateway may answer it too. Split the request or upload a batch file.",
        ),
        entry(
            ApiError::Validation(field_errors(&[(
                "name",
                "must be 1 to 200 characters",
                None,
            )])),
            WithBody,
            "Well-formed JSON with invalid fields; `errors` lists each field (JSON path) and why.",
        ),
        entry(
            ApiError::Unauthorized,
            Authenticated,
            "No key, a malformed, unknown, expired or revoked key. A revoked key stops working within the authorizer cache period.",
        ),
        entry(
            ApiError::InsufficientScope("items:write"),
            Authenticated,
            "The key is valid but lacks the scope this route needs (named in `detail`); use a key with that scope.",
        ),
        entry(
            ApiError::ItemNotFound,
            Under("/v1/items/{sku}"),
            "No item with this sku for your tenant (other tenants' items are never visible).",
        ),
        entry(
            ApiError::BatchNotFound,
            Under("/v1/batches/{batch_id}"),
            "No batch with this id for your tenant.",
        ),
        entry(
            ApiError::LocationNotFound,
            On(&[
                "GET /v1/locations/{location_id}",
                "DELETE /v1/locations/{location_id}",
                ADJUST,
                RESERVE,
                TRANSFER,
                COUNT,
            ]),
            "No location with this id for your tenant (create it with POST /v1/locations).",
        ),
        entry(
            ApiError::LocationExists,
            On(&["POST /v1/locations"]),
            "A location with this id exists already (ids are the client's, unique per tenant).",
        ),
        entry(
            ApiError::LocationHoldsStock,
            On(&["DELETE /v1/locations/{location_id}"]),
            "Some sku still has units at this location (`GET /v1/items/{sku}/levels`); adjust or move them to zero first.",
        ),
        entry(
            ApiError::DefaultLocationFixed,
            On(&["DELETE /v1/locations/{location_id}"]),
            "The default location always exists: it cannot be deleted.",
        ),
        entry(
            ApiError::ItemReserved { holds: 2 },
            On(&["DELETE /v1/items/{sku}", MERGE]),
            "Active reservations hold the item; commit or release them (or let them expire) before deleting it.",
        ),
        entry(
            ApiError::ItemStockedElsewhere {
                locations: vec!["paris-1".into()],
            },
            On(&["DELETE /v1/items/{sku}"]),
            "Other locations keep stock of the item; transfer it or count it to zero there before deleting the item (the default location's stock goes with it).",
        ),
        entry(
            ApiError::StockSplit { buckets: 64 },
            On(&["DELETE /v1/items/{sku}", COUNT, TRANSFER, SPLIT]),
            "The sku's stock is split into buckets for a sale (`stock_buckets` on the item): adjustments and holds spread over them; counts, transfers at the default location and deletes wait until it is merged back (`DELETE /v1/items/{sku}/stock-split`); a split into another count waits for the merge too. Nothing changed.",
        ),
        entry(
            ApiError::CountBelowReserved { reserved: 4 },
            On(&[COUNT]),
            "Fewer units were counted than active holds keep at the location; commit or release holds, then send the count again (nothing changed).",
        ),
        entry(
            ApiError::ReservationNotFound,
            Under("/v1/reservations/{reservation_id}"),
            "No reservation with this id for your tenant.",
        ),
        entry(
            ApiError::InsufficientAvailable {
                available: 1,
                requested: 2,
            },
            On(&[RESERVE]),
            "Fewer units are available (on hand less what active holds keep) than the hold asks for; nothing is held. Hold fewer, or wait for holds to end.",
        ),
        entry(
            ApiError::ReservationEnded { status: "released" },
            On(&[COMMIT, RELEASE]),
            "The hold ended already another way (`detail` says how): a released hold cannot be committed, nor a committed one released.",
        ),
        entry(
            ApiError::ReservationExpired,
            On(&[COMMIT]),
            "The hold expired before the commit: its units are free again. Reserve again (the units may be gone).",
        ),
        entry(
            ApiError::KeyNotFound,
            Under("/v1/keys/{key_id}"),
            "No API key with this id for your tenant.",
        ),
        entry(
            ApiError::WebhookNotFound,
            Under("/v1/webhooks/{webhook_id}"),
            "No webhook with this id for your tenant.",
        ),
        entry(
            ApiError::DeliveryNotFound,
            Under("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}"),
            "The webhook has no delivery with this id (deliveries are kept 30 days).",
        ),
        entry(
            ApiError::WebhookLimitReached {
                limit: stockroom_domain::webhook::MAX_WEBHOOKS_PER_TENANT,
            },
            On(&[CREATE_WEBHOOK]),
            "The tenant has as many webhooks as allowed (the limit is in `detail`); delete one first.",
        ),
        entry(
            ApiError::WebhookDisabled,
            On(&[
                "POST /v1/webhooks/{webhook_id}/test",
                "POST /v1/webhooks/{webhook_id}/rotate-secret",
                "POST /v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
            ]),
            "The webhook was disabled (its endpoint answered 410 Gone, or failed for days); fix the endpoint, then POST .../enable.",
        ),
        entry(
            ApiError::ScopeNotGrantable("keys:manage".into()),
            On(&["POST /v1/keys"]),
            "A key can only create keys with scopes it holds itself.",
        ),
        entry(
            ApiError::MalformedBatch(field_errors(&[(
                "records[3].op",
                "must be upsert, adjust or delete",
                Some("row-4"),
            )])),
            On(&[CREATE_BATCH]),
            "The body's shape is wrong: not an object, `records` not an array of objects, an `op` missing or unknown; nothing was accepted. (Duplicate or bad record ids are `validation_failed`.)",
        ),
        entry(
            ApiError::InvalidRecords(field_errors(&[(
                "records[0].delta",
                "must be a non-zero integer",
                Some("row-1"),
            )])),
            On(&[CREATE_BATCH]),
            "Atomic batches only: a record is invalid, so the whole batch was refused. Isolated batches accept the valid records and report the others as failures.",
        ),
        entry(
            ApiError::TooManyRecords {
                limit: 50_000,
                atomic: false,
            },
            On(&[CREATE_BATCH]),
            "Inline batches hold at most 50,000 records (atomic: 99); upload a file (`upload: true`) for more.",
        ),
        entry(
            ApiError::UploadTooLarge {
                limit: 1_073_741_824,
            },
            On(&[CREATE_BATCH]),
            "A batch file may be at most 1 GiB; split it into several batches.",
        ),
        entry(
            ApiError::RouteNotFound,
            On(&["GET /docs/{asset}"]),
            "No such route (or docs asset); check the path against this reference.",
        ),
        entry(
            ApiError::MethodNotAllowed,
            TableOnly,
            "The route exists but not with this method.",
        ),
        entry(
            ApiError::SkuExists,
            On(&["POST /v1/items"]),
            "An item with this sku already exists; PUT /v1/items/{sku} changes it.",
        ),
        entry(
            ApiError::InsufficientStock {
                available: 3,
                delta: -5,
            },
            On(&[ADJUST, TRANSFER]),
            "The adjustment (or the transfer, at its `from` location) would take more than is available (on hand less what is held); nothing was changed. Stock is never negative.",
        ),
        entry(
            ApiError::QuantityOverflow,
            On(&[ADJUST, TRANSFER, COUNT]),
            "The resulting quantity would exceed 10^12.",
        ),
        entry(
            ApiError::PreconditionFailed,
            On(ITEM_ROUTES),
            "`If-Match` named an ETag the item no longer has: someone changed it. GET it again and retry with the new ETag.",
        ),
        entry(
            ApiError::IdempotencyKeyReused,
            On(&[
                ADJUST,
                CREATE_BATCH,
                RESERVE,
                COMMIT,
                RELEASE,
                TRANSFER,
                COUNT,
            ]),
            "This `Idempotency-Key` was used with a different request in the last 24 hours; use a fresh key per distinct request.",
        ),
        entry(
            ApiError::ConcurrentUpdate,
            On(&[
                ADJUST,
                "PUT /v1/items/{sku}",
                "DELETE /v1/items/{sku}",
                RESERVE,
                COMMIT,
                RELEASE,
                TRANSFER,
                COUNT,
            ]),
            "The item kept changing under this request; retry (with the same Idempotency-Key, if any).",
        ),
        entry(
            ApiError::Unavailable(stockroom_app::ports::StoreError::Unavailable(
                "throttled".into(),
            )),
            Authenticated,
            "A dependency is temporarily unavailable; retry after `Retry-After` seconds (with the same Idempotency-Key).",
        ),
        entry(
            ApiError::Internal("example".into()),
            Everywhere,
            "A fault on our side; nothing is leaked. Quote `request_id` when reporting it.",
        ),
    ];
    let refusals: [(TargetError, &'static str); 6] = [
        (
            TargetError::InvalidUrl("relative URL without a base".into()),
            "The webhook URL does not parse as an absolute URL.",
        ),
        (
            TargetError::SchemeNotAllowed,
            "Webhooks are sent over https only.",
        ),
        (
            TargetError::Credentials,
            "The URL carries user:password; authenticate deliveries with the signature instead.",
        ),
        (TargetError::TooLong, "The URL is over 2,048 characters."),
        (
            TargetError::ForbiddenAddress {
                host: "10.0.0.8".into(),
                addr: std::net::IpAddr::from([10, 0, 0, 8]),
            },
            "The host is, or resolves to, a private, loopback, link-local or reserved address (checked at registration and at every send).",
        ),
        (
            TargetError::Unresolvable("hooks.example.invalid".into()),
            "The host name does not resolve.",
        ),
    ];
    for (refused, meaning) in refusals {
        all.push(entry(refused.into(), On(&[CREATE_WEBHOOK]), meaning));
    }
    all.push(ProblemEntry {
        problem: gateway_problem(
            403,
            "forbidden",
            "Forbidden",
            "This API key may not call this route.",
        ),
        occurs: Authenticated,
        meaning: "Answered by API Gateway when the authorizer denies the key for this route.",
    });
    all.push(ProblemEntry {
        problem: gateway_problem(
            403,
            "no_usage_plan",
            "Forbidden",
            "This API key belongs to a tenant without a usage plan; ask the operator to assign one.",
        ),
        occurs: Authenticated,
        meaning: "The key is valid but its tenant was never put on a usage plan (`stockroom-admin set-plan`); an operator error, nothing was done.",
    });
    all.push(ProblemEntry {
        problem: limit_problem(
            "rate",
            "Rate limit exceeded; retry after the Retry-After delay.",
        ),
        occurs: Everywhere,
        meaning: "Over the tenant plan's requests per second (or the stage's overall rate), `limit: rate`; nothing was done. Retry after `Retry-After` seconds.",
    });
    all.push(ProblemEntry {
        problem: limit_problem(
            "daily_quota",
            "The daily request quota of this tenant (its usage plan) is used up; it resets at 00:00 UTC.",
        ),
        occurs: Authenticated,
        meaning: "The tenant plan's requests per UTC day are used up, `limit: daily_quota`; nothing was done. `Retry-After: 3600`; the quota resets at 00:00 UTC.",
    });
    all.push(ProblemEntry {
        problem: limit_problem(
            "client_ip",
            "Too many requests from this address; retry after the Retry-After delay.",
        ),
        occurs: Everywhere,
        meaning: "The firewall's per-client-address rate (`WafRequestsPerIpPer5Minutes`), before authentication, `limit: client_ip`; nothing was done. Retry after `Retry-After` seconds.",
    });
    all
}

/// A route's success examples: `(route, request body, [(status, body)])`.
type RouteExamples = (&'static str, Option<Value>, Vec<(&'static str, Value)>);

fn success_examples() -> Vec<RouteExamples> {
    let item = json!({
        "sku": "SKU-1001", "name": "Blue mug", "description": "Stoneware, 350 ml",
        "quantity": 12, "low_stock_threshold": 5, "attributes": {"colour": "blue"},
        "version": 3, "created_at": "2026-11-20T09:12:44Z", "updated_at": "2026-11-26T17:03:10Z"
    });
    let movement = json!({
        "movement_id": "mv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R", "sku": "SKU-1001", "delta": -2,
        "quantity_after": 12, "reason": "sale", "reference": "order-7731",
        "request_id": REQUEST_ID, "key_id": "key_01jd8x3b6q5w3z2y1x0v9t8s7r",
        "created_at": "2026-11-26T17:03:10Z"
    });
    let batch = json!({
        "batch_id": "b_01jd8x3b6q5w3z2y1x0v9t8s7r", "mode": "isolated",
        "status": "completed_with_errors", "total": 1000, "succeeded": 998, "failed": 2,
        "records_read": 1000, "records_enqueued": 999,
        "created_at": "2026-11-26T02:00:00Z", "updated_at": "2026-11-26T02:00:41Z",
        "completed_at": "2026-11-26T02:00:41Z", "request_id": REQUEST_ID
    });
    let location = json!({
        "id": "paris-1",
        "name": "Paris store",
        "kind": "store",
        "default": false,
        "created_at": "2026-11-02T09:30:00Z"
    });
    let key = json!({
        "key_id": "key_01jd8x3b6q5w3z2y1x0v9t8s7r", "name": "warehouse sync",
        "scopes": ["items:read", "batches:write"], "created_at": "2026-11-01T08:00:00Z",
        "expires_at": "2027-11-01T00:00:00Z", "last_used_at": "2026-11-26T17:03:10Z"
    });
    let webhook = json!({
        "id": "wh_01jd8x3b6q5w3z2y1x0v9t8s7r", "url": "https://erp.example.com/hooks/stockroom",
        "events": ["batch.completed", "batch.completed_with_errors", "batch.failed", "item.low_stock"],
        "status": "enabled", "description": "ERP sync", "created_at": "2026-11-01T08:00:00Z",
        "updated_at": "2026-11-01T08:00:00Z"
    });
    let delivery = json!({
        "id": "dlv_01jd8x3b6q5w3z2y1x0v9t8s7r", "webhook_id": "wh_01jd8x3b6q5w3z2y1x0v9t8s7r",
        "event_id": "evt_01jd8x3b6q5w3z2y1x0v9t8s7r", "event_type": "batch.completed_with_errors",
        "status": "delivered",
        "attempts": [
            {"attempt": 1, "at": "2026-11-26T02:00:42Z", "status_code": 503, "latency_ms": 120, "outcome": "failed", "error": "HTTP 503"},
            {"attempt": 2, "at": "2026-11-26T02:00:47Z", "status_code": 200, "latency_ms": 85, "outcome": "delivered"}
        ],
        "created_at": "2026-11-26T02:00:42Z", "updated_at": "2026-11-26T02:00:47Z"
    });
    let pending = json!({
        "id": "dlv_01jd8x9c2k7m4n5p6q7r8s9t0v", "webhook_id": "wh_01jd8x3b6q5w3z2y1x0v9t8s7r",
        "event_id": "evt_01jd8x9c2k7m4n5p6q7r8s9t0v", "event_type": "webhook.ping",
        "status": "pending", "attempts": [], "next_retry_at": "2026-11-26T17:03:11Z",
        "created_at": "2026-11-26T17:03:10Z", "updated_at": "2026-11-26T17:03:10Z"
    });
    let next = "eyJrIjoiU0tVLTEwMDEifQ.5c1f0e";
    let reservation = json!({
        "id": "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R_SKU-1001", "sku": "SKU-1001",
        "location": "default", "quantity": 2, "status": "active",
        "expires_at": "2026-12-04T09:45:00.000Z", "reference": "cart-8812",
        "created_at": "2026-12-04T09:30:00Z", "ended_at": null
    });
    vec![
        (
            "GET /v1/health",
            None,
            vec![("200", json!({"status": "ok"}))],
        ),
        (
            "GET /v1/items",
            None,
            vec![("200", json!({"items": [item], "next_cursor": next}))],
        ),
        (
            "POST /v1/items",
            Some(json!({
                "sku": "SKU-1001", "name": "Blue mug", "description": "Stoneware, 350 ml",
                "quantity": 12, "low_stock_threshold": 5, "attributes": {"colour": "blue"}
            })),
            vec![("201", item.clone())],
        ),
        ("GET /v1/items/{sku}", None, vec![("200", item.clone())]),
        (
            "PUT /v1/items/{sku}",
            Some(json!({
                "name": "Blue mug", "description": "Stoneware, 350 ml",
                "low_stock_threshold": 5, "attributes": {"colour": "blue"}
            })),
            vec![("200", item.clone())],
        ),
        ("DELETE /v1/items/{sku}", None, vec![]),
        (
            ADJUST,
            Some(json!({"delta": -2, "reason": "sale", "reference": "order-7731"})),
            vec![(
                "200",
                json!({"sku": "SKU-1001", "quantity": 10, "movement_id": "mv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R"}),
            )],
        ),
        (
            "GET /v1/items/{sku}/levels",
            None,
            vec![(
                "200",
                json!({"sku": "SKU-1001", "levels": [
                    {"location": "default", "on_hand": 10, "reserved": 0, "available": 10},
                    {"location": "paris-1", "on_hand": 4, "reserved": 1, "available": 3}
                ]}),
            )],
        ),
        (
            SPLIT,
            Some(json!({"buckets": 64})),
            vec![(
                "200",
                json!({
                    "sku": "SKU-1001", "name": "Blue mug", "description": "Stoneware, 350 ml",
                    "quantity": 5000, "low_stock_threshold": 5, "attributes": {"colour": "blue"},
                    "stock_buckets": 64, "version": 4,
                    "created_at": "2026-12-01T09:00:00.000Z", "updated_at": "2026-12-04T07:00:00.000Z"
                }),
            )],
        ),
        (
            MERGE,
            None,
            vec![(
                "200",
                json!({
                    "sku": "SKU-1001", "name": "Blue mug", "description": "Stoneware, 350 ml",
                    "quantity": 12, "low_stock_threshold": 5, "attributes": {"colour": "blue"},
                    "version": 5,
                    "created_at": "2026-12-01T09:00:00.000Z", "updated_at": "2026-12-04T21:00:00.000Z"
                }),
            )],
        ),
        (
            "GET /v1/items/{sku}/movements",
            None,
            vec![("200", json!({"movements": [movement], "next_cursor": null}))],
        ),
        (
            "GET /v1/changes",
            None,
            vec![(
                "200",
                json!({"movements": [movement], "next_cursor": next, "has_more": false}),
            )],
        ),
        (
            CREATE_BATCH,
            Some(json!({
                "mode": "isolated",
                "records": [
                    {"id": "row-1", "op": "upsert", "sku": "SKU-1001", "name": "Blue mug", "quantity": 40},
                    {"id": "row-2", "op": "adjust", "sku": "SKU-1002", "delta": -3, "reason": "count correction"},
                    {"id": "row-3", "op": "delete", "sku": "SKU-0999"}
                ]
            })),
            vec![(
                "202",
                json!({"batch_id": "b_01jd8x3b6q5w3z2y1x0v9t8s7r", "status": "accepted", "total": 3}),
            )],
        ),
        (
            "GET /v1/batches",
            None,
            vec![("200", json!({"batches": [batch], "next_cursor": null}))],
        ),
        ("GET /v1/batches/{batch_id}", None, vec![("200", batch)]),
        (
            "GET /v1/batches/{batch_id}/failures",
            None,
            vec![(
                "200",
                json!({"failures": [
                    {"record_id": "row-17", "sku": "SKU-1017", "code": "insufficient_stock", "message": "adjusting by -5 would take the quantity below zero: 3 available"},
                    {"record_id": "row-52", "sku": "SKU-1052", "code": "item_not_found", "message": "no item with this sku"}
                ], "next_cursor": null}),
            )],
        ),
        (
            "POST /v1/locations",
            Some(json!({"id": "paris-1", "name": "Paris store", "kind": "store"})),
            vec![("201", location.clone())],
        ),
        (
            "GET /v1/locations",
            None,
            vec![(
                "200",
                json!({"locations": [
                    {"id": "default", "name": "Default location", "kind": "other", "default": true},
                    location
                ], "next_cursor": null}),
            )],
        ),
        (
            "GET /v1/locations/{location_id}",
            None,
            vec![("200", location.clone())],
        ),
        ("DELETE /v1/locations/{location_id}", None, vec![]),
        (
            "POST /v1/levels/batch-retrieve",
            Some(json!({"pairs": [
                {"sku": "SKU-1001"}, {"sku": "SKU-1001", "location": "paris-1"}, {"sku": "SKU-0999"}
            ]})),
            vec![(
                "200",
                json!({
                    "levels": [
                        {"sku": "SKU-1001", "location": "default", "on_hand": 10, "reserved": 2, "available": 8},
                        {"sku": "SKU-1001", "location": "paris-1", "on_hand": 4, "reserved": 0, "available": 4, "counted_at": "2026-12-04T07:00:00.000Z"}
                    ],
                    "missing": [{"sku": "SKU-0999", "location": "default"}]
                }),
            )],
        ),
        (
            COUNT,
            Some(
                json!({"sku": "SKU-1001", "location": "paris-1", "on_hand": 40, "occurred_at": "2026-12-04T07:00:00Z", "reference": "stocktake-2026-12"}),
            ),
            vec![(
                "200",
                json!({
                    "sku": "SKU-1001", "location": "paris-1", "on_hand": 38,
                    "counted_at": "2026-12-04T07:00:00.000Z", "applied": true, "delta": -6,
                    "movement_id": "mv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R"
                }),
            )],
        ),
        (
            TRANSFER,
            Some(
                json!({"sku": "SKU-1001", "from": "default", "to": "paris-1", "quantity": 4, "reference": "TO-2231"}),
            ),
            vec![(
                "200",
                json!({
                    "transfer_id": "tr_01JD8X3B6Q5W3Z2Y1X0V9T8S7R", "sku": "SKU-1001", "quantity": 4,
                    "from": {"location": "default", "on_hand": 8, "movement_id": "mv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R"},
                    "to": {"location": "paris-1", "on_hand": 4, "movement_id": "mv_01JD8X3B6Q5W3Z2Y1X0V9T8S7S"}
                }),
            )],
        ),
        (
            RESERVE,
            Some(
                json!({"sku": "SKU-1001", "quantity": 2, "expires_in": 900, "reference": "cart-8812"}),
            ),
            vec![("201", reservation.clone())],
        ),
        (
            "GET /v1/reservations",
            None,
            vec![(
                "200",
                json!({"reservations": [reservation.clone()], "next_cursor": null}),
            )],
        ),
        (
            "GET /v1/reservations/{reservation_id}",
            None,
            vec![("200", reservation.clone())],
        ),
        (
            COMMIT,
            None,
            vec![(
                "200",
                json!({
                    "id": "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R_SKU-1001", "sku": "SKU-1001",
                    "location": "default", "quantity": 2, "status": "committed",
                    "expires_at": "2026-12-04T09:45:00.000Z", "reference": "cart-8812",
                    "created_at": "2026-12-04T09:30:00Z", "ended_at": "2026-12-04T09:33:10Z"
                }),
            )],
        ),
        (
            RELEASE,
            None,
            vec![(
                "200",
                json!({
                    "id": "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R_SKU-1001", "sku": "SKU-1001",
                    "location": "default", "quantity": 2, "status": "released",
                    "expires_at": "2026-12-04T09:45:00.000Z", "reference": "cart-8812",
                    "created_at": "2026-12-04T09:30:00Z", "ended_at": "2026-12-04T09:31:02Z"
                }),
            )],
        ),
        (
            "POST /v1/keys",
            Some(
                json!({"name": "warehouse sync", "scopes": ["items:read", "batches:write"], "expires_at": "2027-11-01T00:00:00Z"}),
            ),
            vec![("201", {
                let mut created = key.clone();
                created["api_key"] = json!("sk_live_4eC39HqLyjWDarjtT1zdp7dc4eC39HqLyjWDarjt");
                created.as_object_mut().map(|o| o.remove("last_used_at"));
                created
            })],
        ),
        (
            "GET /v1/keys",
            None,
            vec![("200", json!({"keys": [key], "next_cursor": null}))],
        ),
        ("GET /v1/keys/{key_id}", None, vec![("200", key)]),
        ("DELETE /v1/keys/{key_id}", None, vec![]),
        (
            CREATE_WEBHOOK,
            Some(json!({
                "url": "https://erp.example.com/hooks/stockroom",
                "events": ["batch.completed", "batch.completed_with_errors", "batch.failed", "item.low_stock"],
                "description": "ERP sync"
            })),
            vec![("201", {
                let mut created = webhook.clone();
                created["secret"] = json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
                created
            })],
        ),
        (
            "GET /v1/webhooks",
            None,
            vec![("200", json!({"webhooks": [webhook]}))],
        ),
        (
            "GET /v1/webhooks/{webhook_id}",
            None,
            vec![("200", webhook.clone())],
        ),
        ("DELETE /v1/webhooks/{webhook_id}", None, vec![]),
        (
            "POST /v1/webhooks/{webhook_id}/enable",
            None,
            vec![("200", webhook)],
        ),
        (
            "POST /v1/webhooks/{webhook_id}/rotate-secret",
            None,
            vec![(
                "200",
                json!({"secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "previous_secret_expires_at": "2026-11-27T17:03:10Z"}),
            )],
        ),
        (
            "POST /v1/webhooks/{webhook_id}/test",
            None,
            vec![("202", pending.clone())],
        ),
        (
            "GET /v1/webhooks/{webhook_id}/deliveries",
            None,
            vec![(
                "200",
                json!({"deliveries": [delivery], "next_cursor": null}),
            )],
        ),
        (
            "GET /v1/webhooks/{webhook_id}/deliveries/{delivery_id}",
            None,
            vec![("200", delivery)],
        ),
        (
            "POST /v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
            None,
            vec![("202", pending)],
        ),
    ]
}

fn occurs_on(occurs: &Occurs, route: &str, path: &str, op: &Value) -> bool {
    let params = || op["parameters"].as_array().into_iter().flatten();
    match occurs {
        Occurs::Everywhere => true,
        Occurs::Authenticated => !op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.as_object().is_some_and(Map::is_empty))),
        Occurs::WithBody => !op["requestBody"].is_null(),
        // A sku in the path is validated too (`SkuPath`); other ids that
        // cannot exist are simply not found.
        Occurs::WithParameters => params().any(|p| p["in"] != "path" || p["name"] == "sku"),
        Occurs::WithCursor => params().any(|p| p["name"] == "cursor"),
        Occurs::Under(prefix) => path.starts_with(prefix),
        Occurs::On(routes) => routes.contains(&route),
        Occurs::TableOnly => false,
    }
}

fn set_example(content: &mut Value, value: Value) {
    if let Some(media) = content.as_object_mut().and_then(|c| c.values_mut().next()) {
        media["example"] = value;
    }
}

/// The problem codes table that opens the document's description.
fn codes_table(entries: &[ProblemEntry]) -> String {
    let mut table = String::from(
        "\n\n## Problem codes\n\nEvery error is `application/problem+json` with a stable `code` \
         (and `errors` listing each invalid field, where fields are at fault). Each route's \
         error responses show examples of the codes it can return.\n\n\
         | Status | `code` | Meaning |\n|---|---|---|\n",
    );
    let mut rows: Vec<&ProblemEntry> = entries.iter().collect();
    rows.sort_by(|a, b| {
        (a.problem.status, &a.problem.code).cmp(&(b.problem.status, &b.problem.code))
    });
    // One row per code; a code with several causes (rate_limited: which
    // limit) explains each.
    let mut merged: Vec<(u16, &str, String)> = Vec::new();
    for e in rows {
        match merged.last_mut() {
            Some((_, code, meaning)) if *code == e.problem.code => {
                meaning.push(' ');
                meaning.push_str(e.meaning);
            }
            _ => merged.push((e.problem.status, &e.problem.code, e.meaning.to_owned())),
        }
    }
    for (status, code, meaning) in merged {
        table.push_str(&format!("| {status} | `{code}` | {meaning} |\n"));
    }
    table
}

/// Responses any route can give, whatever its handler does: the firewall's
/// and API Gateway's throttling (and, with a key, quotas) (429), and a
/// fault on our side (500).
fn document_everywhere_responses(op: &mut Value) {
    let problem = json!({"schema": {"$ref": "#/components/schemas/Problem"}});
    let responses = [
        (
            "429",
            json!({
                "description": "Over the API's request rate (API Gateway throttling); retry after Retry-After",
                "headers": {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}},
                "content": {"application/problem+json": problem.clone()}
            }),
        ),
        (
            "500",
            json!({
                "description": "Internal error (nothing leaked; quote the request id)",
                "content": {"application/problem+json": problem}
            }),
        ),
    ];
    if let Some(documented) = op["responses"].as_object_mut() {
        for (status, response) in responses {
            documented.entry(status).or_insert(response);
        }
    }
}

/// Adds the examples and the problem codes table to the generated document.
pub(super) fn annotate(doc: &mut Value) {
    let problems = catalogue();
    if let Some(description) = doc["info"]["description"].as_str() {
        doc["info"]["description"] = json!(description.to_owned() + &codes_table(&problems));
    }
    let successes = success_examples();
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, ops) in paths.iter_mut() {
        let Some(ops) = ops.as_object_mut() else {
            continue;
        };
        for (method, op) in ops.iter_mut() {
            let route = format!("{} {path}", method.to_uppercase());
            document_everywhere_responses(op);
            if let Some((_, request, responses)) = successes.iter().find(|(r, _, _)| *r == route) {
                if let Some(request) = request {
                    set_example(&mut op["requestBody"]["content"], request.clone());
                }
                for (status, body) in responses {
                    set_example(&mut op["responses"][*status]["content"], body.clone());
                }
            }
            let statuses: Vec<String> = op["responses"]
                .as_object()
                .map(|r| r.keys().filter(|s| s.as_str() >= "400").cloned().collect())
                .unwrap_or_default();
            for status in statuses {
                let mut examples = Map::new();
                for entry in &problems {
                    if entry.problem.status.to_string() == status
                        && occurs_on(&entry.occurs, &route, path, op)
                    {
                        // Unique per cause: rate_limited, rate_limited_daily_quota, ...
                        let name = match &entry.problem.limit {
                            Some(l) if l != "rate" => format!("{}_{l}", entry.problem.code),
                            _ => entry.problem.code.clone(),
                        };
                        examples.insert(
                            name,
                            json!({
                                "summary": format!("{}: {}", entry.problem.code, entry.meaning),
                                "value": entry.problem,
                            }),
                        );
                    }
                }
                if examples.is_empty() {
                    continue;
                }
                if let Some(media) = op["responses"][&status]["content"]
                    .as_object_mut()
                    .and_then(|c| c.values_mut().next())
                {
                    media["examples"] = Value::Object(examples);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::openapi::document;
    use serde_json::{Value, json};

    fn operations(doc: &Value) -> Vec<(String, &Value)> {
        let mut out = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                out.push((format!("{} {path}", method.to_uppercase()), op));
            }
        }
        out
    }

    /// Validates `value` against `schema`, resolving `$ref`s in the document.
    fn check(doc: &Value, schema: &Value, value: &Value, what: &str) {
        let mut root = schema.clone();
        root["components"] = doc["components"].clone();
        let validator = jsonschema::draft202012::new(&root)
            .unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{what}: {errors:?}\n{value:#}");
    }

    #[test]
    fn every_route_has_examples_and_every_error_status_its_codes() {
        let doc = document();
        for (route, op) in operations(&doc) {
            for (_, media) in op["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten()
            {
                assert!(!media["example"].is_null(), "{route}: no request example");
            }
            for (status, response) in op["responses"].as_object().expect("responses") {
                for (content_type, media) in response["content"].as_object().into_iter().flatten() {
                    if media["schema"].is_null() {
                        continue; // the HTML page and the document itself
                    }
                    let has = !media["example"].is_null() || !media["examples"].is_null();
                    assert!(has, "{route} {status} ({content_type}): no example");
                }
            }
        }
    }

    #[test]
    fn examples_match_their_schemas() {
        let doc = document();
        for (route, op) in operations(&doc) {
            for (_, media) in op["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten()
            {
                check(
                    &doc,
                    &media["schema"],
                    &media["example"],
                    &format!("{route} request"),
                );
            }
            for (status, response) in op["responses"].as_object().expect("responses") {
                for (_, media) in response["content"].as_object().into_iter().flatten() {
                    if !media["example"].is_null() {
                        check(
                            &doc,
                            &media["schema"],
                            &media["example"],
                            &format!("{route} {status}"),
                        );
                    }
                    for (name, example) in media["examples"].as_object().into_iter().flatten() {
                        let value = &example["value"];
                        let code = value["code"].as_str().unwrap_or_default();
                        check(
                            &doc,
                            &media["schema"],
                            value,
                            &format!("{route} {status} {code}"),
                        );
                        assert_eq!(
                            value["status"],
                            json!(status.parse::<u16>().expect("status"))
                        );
                        // Named by the code, and the limit when a code has several causes.
                        assert!(name.starts_with(code), "{route} {status} {name}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_problem_code_is_explained_and_shown_on_a_route() {
        let doc = document();
        let description = doc["info"]["description"].as_str().expect("description");
        let mut shown = std::collections::BTreeSet::new();
        for (_, op) in operations(&doc) {
            for (_, response) in op["responses"].as_object().expect("responses") {
                for (_, media) in response["content"].as_object().into_iter().flatten() {
                    shown.extend(
                        media["examples"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(c, _)| c.clone()),
                    );
                }
            }
        }
        for entry in super::catalogue() {
            let code = entry.problem.code;
            assert!(
                description.contains(&format!("| `{code}` |")),
                "{code} not in the table"
            );
            let table_only = matches!(entry.occurs, super::Occurs::TableOnly);
            assert!(
                table_only || shown.contains(&code),
                "{code} shown on no route"
            );
        }
    }

    /// Each code the mapping can produce is in the catalogue. The codes are
    /// the lowercase literals of `classify` (titles are capitalised) and the
    /// literals of `TargetError::code`.
    #[test]
    fn the_catalogue_covers_every_code_of_the_mapping() {
        let catalogue: Vec<String> = super::catalogue()
            .into_iter()
            .map(|e| e.problem.code)
            .collect();
        let section = |source: &'static str, start: &str, end: &str| -> &'static str {
            let from = source.split(start).nth(1).expect("section start");
            from.split(end).next().expect("section end")
        };
        let sections = [
            section(include_str!("problem.rs"), "fn classify", "fn detail"),
            section(
                include_str!("../../app/src/webhooks/target.rs"),
                "pub fn code",
                "\n    }\n",
            ),
        ];
        let mut codes = 0;
        for source in sections {
            for literal in source.split('"').skip(1).step_by(2) {
                if literal.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    codes += 1;
                    assert!(
                        catalogue.iter().any(|c| c == literal),
                        "{literal} missing from the catalogue"
                    );
                }
            }
        }
        assert!(
            codes >= 35,
            "found only {codes} codes: is the scan still right?"
        );
    }
}
