//! Warm handler overhead (issue 8, target 2): what one warm items-api
//! invocation costs besides the store. Each iteration takes the API Gateway
//! event as the Lambda runtime hands it over (JSON bytes from
//! `events/items-api/`), deserialises it, runs lambda_http's adapter and the
//! router (routing, auth context from the authorizer, validation, the
//! service, problem mapping, response serialisation) and serialises the
//! Lambda response to bytes — with the DynamoDB store replaced by the
//! in-memory one (`stockroom_app::memory`, the same semantics). Not included:
//! the runtime's HTTP exchange with the Runtime API, and log output (no
//! subscriber is installed here).
//!
//! `cargo bench -p stockroom-bench --features handler-bench --bench handler`
//! (part of `make bench`);
//! criterion prints the median (p50) per request for each case.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lambda_http::lambda_runtime::{Context, LambdaEvent, Service as _};
use lambda_http::request::LambdaRequest;
use serde_json::Value;
use stockroom_app::cursor::CursorCodec;
use stockroom_app::items::ItemsService;
use stockroom_app::memory::MemoryItemStore;
use stockroom_http::{AppState, router};

fn event(name: &str) -> Value {
    let path = format!(
        "{}/../../events/items-api/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The POST event for a new sku (each iteration creates another item).
fn create_event(template: &Value, n: u64) -> Vec<u8> {
    with_sku(template, &format!("BENCH-{n}"))
}

/// The create event for `sku`.
fn with_sku(template: &Value, sku: &str) -> Vec<u8> {
    let mut e = template.clone();
    let mut body: Value =
        serde_json::from_str(e["body"].as_str().unwrap_or("{}")).unwrap_or_default();
    body["sku"] = Value::String(sku.to_owned());
    e["body"] = Value::String(body.to_string());
    serde_json::to_vec(&e).unwrap_or_default()
}

/// One warm invocation: event bytes in, response bytes out.
async fn invoke(app: &axum::Router, event: &[u8]) -> Vec<u8> {
    let request: LambdaRequest = serde_json::from_slice(event).expect("event");
    let mut adapter = lambda_http::Adapter::from(app.clone());
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("handler");
    serde_json::to_vec(&response).expect("response")
}

/// Checked before and after measuring, not inside the timed loop.
async fn status(app: &axum::Router, event: &[u8]) -> u64 {
    let bytes = invoke(app, event).await;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["statusCode"].as_u64())
        .unwrap_or(0)
}

fn handler(c: &mut Criterion) {
    // As the template's Globals set it for every function: routes see
    // `/v1/...`, not `/<stage>/v1/...`.
    // SAFETY: set before any other thread exists (criterion runs this on main).
    unsafe { std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true") };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(MemoryItemStore::default());
    let app = router(AppState {
        items: ItemsService::new(store.clone()).with_locations(stockroom_app::items::LevelStores {
            locations: store.clone(),
            levels: store.clone(),
            holds: store.clone(),
        }),
        changes: stockroom_app::changes::ChangeFeed::new(
            store.clone(),
            stockroom_app::changes::DEFAULT_SETTLE,
        ),
        locations: stockroom_app::locations::LocationsService::new(store.clone()),
        reservations: stockroom_app::reservations::ReservationsService::new(
            store.clone(),
            stockroom_app::items::LevelStores {
                locations: store.clone(),
                levels: store.clone(),
                holds: store.clone(),
            },
        ),
        transfers: stockroom_app::transfers::TransfersService::new(
            store.clone(),
            stockroom_app::items::LevelStores {
                locations: store.clone(),
                levels: store.clone(),
                holds: store.clone(),
            },
        ),
        counts: stockroom_app::counts::CountsService::new(
            store.clone(),
            stockroom_app::items::LevelStores {
                locations: store.clone(),
                levels: store.clone(),
                holds: store.clone(),
            },
        ),
        stock_splits: stockroom_app::stock_split::StockSplitService::new(
            store.clone(),
            stockroom_app::items::LevelStores {
                locations: store.clone(),
                levels: store.clone(),
                holds: store.clone(),
            },
        ),
        cursors: CursorCodec::new(vec![7u8; 64]),
        function: "items-api-bench".into(),
    });
    let get_event = event("get-item");
    let get = serde_json::to_vec(&get_event).unwrap_or_default();
    let create = event("create-item");
    // The item the sample GET reads, created through the handler itself.
    let first = with_sku(
        &create,
        get_event["pathParameters"]["sku"]
            .as_str()
            .expect("the sample GET names its sku"),
    );
    assert_eq!(rt.block_on(status(&app, &first)), 201);
    assert_eq!(rt.block_on(status(&app, &get)), 200);

    let mut g = c.benchmark_group("items-api warm invocation, store in-process");
    g.bench_function("GET /v1/items/{sku} (200)", |b| {
        b.to_async(&rt).iter(|| invoke(&app, &get));
    });
    let mut n = 0u64;
    g.bench_function("POST /v1/items (201)", |b| {
        b.to_async(&rt).iter_batched(
            || {
                n += 1;
                create_event(&create, n)
            },
            |e| {
                let app = &app;
                async move { invoke(app, &e).await }
            },
            BatchSize::SmallInput,
        );
    });
    let missing = {
        let mut e = event("get-item");
        e["path"] = Value::String("/v1/items/NOPE-1".into());
        e["pathParameters"]["sku"] = Value::String("NOPE-1".into());
        serde_json::to_vec(&e).unwrap_or_default()
    };
    assert_eq!(rt.block_on(status(&app, &missing)), 404);
    g.bench_function("GET /v1/items/{sku} (404 problem)", |b| {
        b.to_async(&rt).iter(|| invoke(&app, &missing));
    });
    g.finish();
    // Every timed POST created its item (none answered 409 or 500).
    let created = store.item_count() as u64;
    assert_eq!(created, n + 1, "POSTs that created an item");
}

criterion_group!(benches, handler);
criterion_main!(benches);
