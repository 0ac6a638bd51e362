//! HTTP surface of the items API: an axum router that `lambda_http` runs
//! behind API Gateway, plus the request-context middleware.

mod batches;
mod changes;
mod counts;
pub mod deprecation;
mod docs;
mod examples;
mod extract;
mod fields;
mod items;
mod keys;
mod locations;
mod openapi;
pub mod problem;
mod request_rules;
mod reservations;
mod stock_split;
mod transfers;
pub use extract::{idempotency_request, parse_json_body};
mod webhooks;

pub use batches::BatchesState;
pub use extract::{Auth, JsonBody, MAX_BODY_BYTES, auth_context};
pub use keys::KeysState;
pub use openapi::{ApiDoc, document as openapi_document};
pub use problem::{PROBLEM_JSON, Problem};
pub use webhooks::WebhooksState;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use problem::HttpError;
use std::time::Instant;
use stockroom_app::cursor::CursorCodec;
use stockroom_app::error::ApiError;
use stockroom_app::items::ItemsService;
use tracing::Instrument;

/// Everything the handlers share, built once per Lambda instance.
#[derive(Clone)]
pub struct AppState {
    pub items: ItemsService,
    /// `GET /v1/changes`.
    pub changes: stockroom_app::changes::ChangeFeed,
    pub locations: stockroom_app::locations::LocationsService,
    pub reservations: stockroom_app::reservations::ReservationsService,
    pub transfers: stockroom_app::transfers::TransfersService,
    pub counts: stockroom_app::counts::CountsService,
    /// `PUT` and `DELETE /v1/items/{sku}/stock-split`.
    pub stock_splits: stockroom_app::stock_split::StockSplitService,
    pub cursors: CursorCodec,
    /// `AWS_LAMBDA_FUNCTION_NAME`, for log lines.
    pub function: String,
}

/// Routes of the items-api function (plus health, the OpenAPI document and
/// the docs page rendered from it).
pub fn router(state: AppState) -> Router {
    let function = state.function.clone();
    let routes = Router::new()
        .route("/v1/health", get(items::health))
        .route("/openapi.json", get(openapi::serve))
        .route("/docs", get(docs::page))
        .route("/docs/{asset}", get(docs::asset))
        .route("/v1/items", get(items::list_items).post(items::create_item))
        .route(
            "/v1/items/{sku}",
            get(items::get_item)
                .put(items::replace_item)
                .delete(items::delete_item),
        )
        .route(
            "/v1/items/{sku}/adjustments",
            axum::routing::post(items::adjust_stock),
        )
        .route("/v1/items/{sku}/movements", get(items::list_movements))
        .route("/v1/items/{sku}/levels", get(items::get_levels))
        .route(
            "/v1/items/{sku}/stock-split",
            put(stock_split::split_stock).delete(stock_split::merge_stock),
        )
        .route("/v1/changes", get(changes::list_changes))
        .route("/v1/transfers", post(transfers::create_transfer))
        .route("/v1/counts", post(counts::create_count))
        .route(
            "/v1/levels/batch-retrieve",
            post(items::batch_retrieve_levels),
        )
        .route(
            "/v1/locations",
            get(locations::list_locations).post(locations::create_location),
        )
        .route(
            "/v1/locations/{location_id}",
            get(locations::get_location).delete(locations::delete_location),
        )
        .route(
            "/v1/reservations",
            get(reservations::list_reservations).post(reservations::create_reservation),
        )
        .route(
            "/v1/reservations/{reservation_id}",
            get(reservations::get_reservation),
        )
        .route(
            "/v1/reservations/{reservation_id}/commit",
            post(reservations::commit_reservation),
        )
        .route(
            "/v1/reservations/{reservation_id}/release",
            post(reservations::release_reservation),
        )
        .with_state(state);
    with_common_layers(routes, function)
}

/// Routes of the batches-api function.
pub fn batches_router(state: BatchesState, function: String) -> Router {
    let routes = Router::new()
        .route(
            "/v1/batches",
            get(batches::list_batches).post(batches::create_batch),
        )
        .route("/v1/batches/{batch_id}", get(batches::get_batch))
        .route(
            "/v1/batches/{batch_id}/failures",
            get(batches::list_failures),
        )
        .with_state(state);
    with_common_layers(routes, function)
}

/// Routes of the webhooks-api function.
pub fn webhooks_router(state: WebhooksState, function: String) -> Router {
    let routes = Router::new()
        .route(
            "/v1/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook),
        )
        .route(
            "/v1/webhooks/{webhook_id}",
            get(webhooks::get_webhook).delete(webhooks::delete_webhook),
        )
        .route(
            "/v1/webhooks/{webhook_id}/enable",
            post(webhooks::enable_webhook),
        )
        .route(
            "/v1/webhooks/{webhook_id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route(
            "/v1/webhooks/{webhook_id}/test",
            post(webhooks::test_webhook),
        )
        .route(
            "/v1/webhooks/{webhook_id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .route(
            "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}",
            get(webhooks::get_delivery),
        )
        .route(
            "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
            post(webhooks::replay_delivery),
        )
        .with_state(state);
    with_common_layers(routes, function)
}

/// Routes of the keys-api function.
pub fn keys_router(state: KeysState, function: String) -> Router {
    let routes = Router::new()
        .route("/v1/keys", get(keys::list_keys).post(keys::create_key))
        .route(
            "/v1/keys/{key_id}",
            get(keys::get_key).delete(keys::revoke_key),
        )
        .with_state(state);
    with_common_layers(routes, function)
}

fn with_common_layers(routes: Router, function: String) -> Router {
    with_layers(routes, function, deprecation::DEPRECATED_ROUTES)
}

fn with_layers(
    routes: Router,
    function: String,
    deprecations: &'static [deprecation::RouteDeprecation],
) -> Router {
    let routed = routes
        .fallback(|| async { HttpError(ApiError::RouteNotFound) })
        .method_not_allowed_fallback(|| async { HttpError(ApiError::MethodNotAllowed) })
        .layer(middleware::from_fn(move |req, next| {
            request_context(function.clone(), deprecations, req, next)
        }));
    // The URI must be fixed before routing, hence outside the router.
    Router::new()
        .fallback_service(tower::ServiceExt::map_request(routed, restore_encoded_path))
        .layer(middleware::from_fn(answer_missing_methods))
}

/// Characters that cannot stand unencoded in a URI path.
const NOT_IN_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// API Gateway hands the function the *decoded* path, and `lambda_http`
/// parses it back into a URI as is: a `#`, `?` or `%` sent encoded inside an
/// id (`/v1/webhooks/a%23b/enable`) would cut the path short and reach
/// another route. Re-encode the path from the event before routing.
fn restore_encoded_path(mut req: Request) -> Request {
    use lambda_http::RequestExt;
    let raw = req.raw_http_path();
    if !raw.contains(['#', '?', '%']) {
        return req;
    }
    let mut path_and_query = percent_encoding::utf8_percent_encode(raw, NOT_IN_PATH).to_string();
    let query = req.query_string_parameters().to_query_string();
    if !query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&query);
    }
    if let Ok(uri) = http::Uri::try_from(path_and_query) {
        *req.uri_mut() = uri;
    }
    req
}

/// A client-supplied `x-request-id` is kept when it is well formed.
fn valid_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn request_id_of(req: &Request) -> String {
    if let Some(v) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        && valid_request_id(v)
    {
        return v.to_owned();
    }
    if let Some(RequestContext::ApiGatewayV1(ctx)) = req.extensions().get::<RequestContext>()
        && let Some(id) = ctx.request_id.as_deref()
    {
        return id.to_owned();
    }
    uuid::Uuid::new_v4().to_string()
}

/// Request id, tracing span (request id, tenant, function), security headers
/// and one access-log line per request.
async fn request_context(
    function: String,
    deprecations: &'static [deprecation::RouteDeprecation],
    req: Request,
    next: Next,
) -> Response {
    let request_id = request_id_of(&req);
    let tenant = auth_context(req.extensions())
        .map(|a| a.tenant_id.to_string())
        .unwrap_or_default();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The API Gateway resource (`/v1/items/{sku}`): a bounded metric dimension.
    let route = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.resource_path.clone(),
        _ => None,
    }
    .unwrap_or_else(|| "unmatched".to_owned());
    // The X-Ray trace of this invocation (Lambda's context), to join logs and traces.
    let trace_id = lambda_http::RequestExt::lambda_context_ref(&req)
        .and_then(|c| c.xray_trace_id.clone())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        tenant = %tenant,
        function = %function,
        cold_start = stockroom_app::telemetry::cold_start(),
        trace_id = %trace_id,
    );
    let started = Instant::now();
    let mut resp = problem::REQUEST_ID
        .scope(request_id.clone(), next.run(req).instrument(span.clone()))
        .await;
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", v);
    }
    // Authenticated answers are never cached; the public docs assets say otherwise.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=63072000; includeSubDomains"),
    );
    if let Some(d) = deprecation::find(deprecations, method.as_str(), &route) {
        deprecation::add_headers(headers, d);
    }
    add_cors_headers(headers, cors_allow_origin());
    let status = resp.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let class = match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!("Requests", "route" => route.clone(), "status" => class).increment(1);
    metrics::histogram!("LatencyMs", "route" => route).record(latency_ms);
    span.in_scope(|| {
        tracing::info!(
            http.method = %method,
            http.path = %path,
            http.status = status,
            latency_ms,
            "request completed"
        )
    });
    resp.into_response()
}

/// Request headers a browser may send cross-origin (the preflight's
/// `Access-Control-Allow-Headers`).
const CORS_ALLOW_HEADERS: &str =
    "Authorization, Content-Type, Idempotency-Key, If-Match, If-None-Match, x-request-id";

/// A method the route does not have. Every path's `ANY` method in the
/// template sends such requests here (API Gateway prefers the explicit
/// methods), so the router's `Allow` is the truth: `OPTIONS` gets the CORS
/// preflight answer from it, any other method a 405 naming it. Runs outside
/// the router, which sets `Allow` after its own layers.
async fn answer_missing_methods(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    method_not_routed(&method, resp, cors_allow_origin())
}

fn method_not_routed(
    method: &http::Method,
    mut resp: Response,
    origin: Option<&HeaderValue>,
) -> Response {
    let routed = resp
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let allow = if routed.is_empty() {
        "OPTIONS".to_owned()
    } else {
        format!("{routed},OPTIONS")
    };
    let Ok(allow) = HeaderValue::from_str(&allow) else {
        return resp;
    };
    if method != http::Method::OPTIONS {
        resp.headers_mut().insert(header::ALLOW, allow);
        return resp;
    }
    // The preflight: the 405's headers (request id, security, CORS origin)
    // without its problem body.
    let mut preflight = StatusCode::NO_CONTENT.into_response();
    let headers = preflight.headers_mut();
    for (name, value) in resp.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            headers.append(name.clone(), value.clone());
        }
    }
    if origin.is_some() {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow.clone());
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(CORS_ALLOW_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    headers.insert(header::ALLOW, allow);
    preflight
}

/// The stage's CORS origin (`CORS_ALLOW_ORIGIN`, the template's
/// `CorsAllowOrigin`): None = CORS off. Read once per process.
fn cors_allow_origin() -> Option<&'static HeaderValue> {
    static ORIGIN: std::sync::OnceLock<Option<HeaderValue>> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(|| {
            std::env::var("CORS_ALLOW_ORIGIN")
                .ok()
                .filter(|o| !o.trim().is_empty())
                .and_then(|o| HeaderValue::from_str(o.trim()).ok())
        })
        .as_ref()
}

/// Lets a browser on the allowed origin read the answer (the preflight's
/// other headers: `method_not_routed`).
fn add_cors_headers(headers: &mut http::HeaderMap, origin: Option<&HeaderValue>) {
    let Some(origin) = origin else {
        return;
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "ETag, Location, Retry-After, x-request-id, Deprecation, Sunset, Link",
        ),
    );
    if origin != "*" {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[test]
    fn cors_headers_only_when_an_origin_is_configured() {
        let mut h = http::HeaderMap::new();
        add_cors_headers(&mut h, None);
        assert!(h.is_empty());
        let origin = HeaderValue::from_static("https://app.example.com");
        add_cors_headers(&mut h, Some(&origin));
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(h[header::VARY], "Origin");
        assert!(
            h[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("x-request-id")
        );
        let mut any = http::HeaderMap::new();
        add_cors_headers(&mut any, Some(&HeaderValue::from_static("*")));
        assert_eq!(any[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(any.get(header::VARY).is_none());
    }

    /// A deprecated route's answers carry the headers; other routes do not.
    #[tokio::test]
    async fn deprecated_routes_answer_with_deprecation_headers() {
        let app = with_layers(
            Router::new()
                .route("/v1/items/{sku}/movements", get(|| async { "old" }))
                .route("/v1/items/{sku}", get(|| async { "new" })),
            "test".into(),
            deprecation::SAMPLE,
        );
        let call = |path: &'static str, resource: &'static str| {
            let mut ctx = aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
            ctx.resource_path = Some(resource.into());
            let mut req = Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .expect("request");
            req.extensions_mut()
                .insert(RequestContext::ApiGatewayV1(ctx));
            app.clone().oneshot(req)
        };
        let old = call("/v1/items/7/movements", "/v1/items/{sku}/movements")
            .await
            .expect("answer");
        assert_eq!(old.status(), 200);
        assert_eq!(old.headers()["deprecation"], "@1798761600");
        assert_eq!(old.headers()["sunset"], "Sat, 01 Jan 2028 00:00:00 GMT");
        assert!(old.headers().contains_key("link"));
        let new = call("/v1/items/7", "/v1/items/{sku}")
            .await
            .expect("answer");
        assert!(!new.headers().contains_key("deprecation"));
        assert!(!new.headers().contains_key("sunset"));
    }

    /// An id holding `#`, `?` or `%` reaches its own route, decoded.
    #[tokio::test]
    async fn encoded_reserved_characters_stay_in_their_path_segment() {
        use lambda_http::RequestExt;
        let app = with_layers(
            Router::new().route(
                "/v1/things/{id}/enable",
                post(|axum::extract::Path(id): axum::extract::Path<String>| async move { id }),
            ),
            "test".into(),
            &[],
        );
        for id in ["a#b", "a?b", "a%b", "a b"] {
            // What lambda_http builds from API Gateway's decoded path.
            let truncated = format!("/v1/things/{}/enable", id.replace(' ', "%20"));
            let uri = truncated
                .split(['#', '?'])
                .next()
                .unwrap_or_default()
                .to_owned();
            let req = Request::builder()
                .method("POST")
                .uri(uri)
                .body(axum::body::Body::empty())
                .expect("request")
                .with_raw_http_path(format!("/v1/things/{id}/enable"));
            let resp = app.clone().oneshot(req).await.expect("answer");
            assert_eq!(resp.status(), 200, "{id}");
            let body = axum::body::to_bytes(resp.into_body(), 1024)
                .await
                .expect("body");
            assert_eq!(body, id.as_bytes(), "{id}");
        }
    }

    /// A method the path lacks is a 405 naming the methods it has; OPTIONS
    /// is the CORS preflight, from the same list; an unknown path stays 404.
    #[tokio::test]
    async fn methods_a_route_lacks_are_405s_and_options_is_the_preflight() {
        let app = with_layers(
            Router::new().route(
                "/v1/things",
                get(|| async { "list" }).post(|| async { "made" }),
            ),
            "test".into(),
            &[],
        );
        let call = |method: &str, path: &str| {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(axum::body::Body::empty())
                .expect("request");
            app.clone().oneshot(req)
        };
        let patch = call("PATCH", "/v1/things").await.expect("answer");
        assert_eq!(patch.status(), 405);
        assert_eq!(patch.headers()[header::ALLOW], "GET,HEAD,POST,OPTIONS");
        assert_eq!(patch.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(patch.headers().contains_key("x-request-id"));
        let options = call("OPTIONS", "/v1/things").await.expect("answer");
        assert_eq!(options.status(), 204);
        assert_eq!(options.headers()[header::ALLOW], "GET,HEAD,POST,OPTIONS");
        assert!(options.headers().contains_key("x-request-id"));
        assert_eq!(
            call("OPTIONS", "/v1/nothing")
                .await
                .expect("answer")
                .status(),
            404
        );

        let origin = HeaderValue::from_static("https://app.example.com");
        let routed = (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET,HEAD,POST")],
        );
        let preflight = method_not_routed(
            &http::Method::OPTIONS,
            routed.into_response(),
            Some(&origin),
        );
        let h = preflight.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET,HEAD,POST,OPTIONS"
        );
        assert!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .contains("Idempotency-Key")
        );
        assert!(
            !h[header::ACCESS_CONTROL_ALLOW_METHODS]
                .to_str()
                .unwrap()
                .contains("PATCH")
        );
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id("abc-123_x.y:z"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"a".repeat(129)));
    }
}
