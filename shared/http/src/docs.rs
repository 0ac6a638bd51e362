//! `GET /docs`: an interactive API reference, rendered in the browser from
//! `/openapi.json` by Swagger UI. The viewer is vendored in
//! `shared/assets/swagger-ui` (see its VERSION; refreshed by
//! `devtools/vendor-swagger-ui.sh`) and compiled into the binary, so the page
//! needs no CDN and works offline.

use crate::problem::HttpError;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use stockroom_app::error::ApiError;

const PAGE: &str = include_str!("../assets/docs/index.html");

/// The page's assets by the name they are served under (`/docs/{asset}`).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_str!("../assets/swagger-ui/swagger-ui.css"),
    ),
    (
        "stockroom-docs.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/docs/stockroom-docs.js"),
    ),
];

/// Scripts and styles from this origin only (no inline script); the page
/// talks to this API and nothing else.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// Public, unauthenticated and the same for everyone: cacheable for a while.
const ASSET_CACHE: &str = "public, max-age=3600";

/// The API reference page (no authentication).
///
/// Swagger UI over `/openapi.json`, served from the API itself with a strict
/// Content-Security-Policy; it loads nothing from elsewhere.
#[utoipa::path(get, path = "/docs", tag = "meta", security(()),
    responses((status = 200, description = "Interactive API reference (HTML) rendered from /openapi.json", content_type = "text/html")))]
pub async fn page() -> Response {
    let mut resp = public_file(PAGE, "text/html; charset=utf-8");
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    resp
}

/// A script or stylesheet of the reference page (no authentication).
///
/// The page's own scripts and stylesheets, vendored and versioned with the API; cacheable
/// for an hour.
#[utoipa::path(get, path = "/docs/{asset}", tag = "meta", security(()),
    params(("asset" = String, Path, description = "`swagger-ui-bundle.js`, `swagger-ui.css` or `stockroom-docs.js`")),
    responses(
        (status = 200, description = "The asset (JavaScript or CSS)", content_type = "text/javascript"),
        (status = 404, description = "No such asset", body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn asset(Path(name): Path<String>) -> Result<Response, HttpError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or(ApiError::RouteNotFound)?;
    Ok(public_file(body, content_type))
}

/// A compiled-in file with its content type, cacheable by anyone.
fn public_file(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(ASSET_CACHE));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_only_served_assets_by_relative_paths() {
        let referenced: Vec<&str> = PAGE
            .split(['"', '\''])
            .filter_map(|s| s.strip_prefix("docs/"))
            .collect();
        assert_eq!(referenced.len(), ASSETS.len(), "{referenced:?}");
        for name in referenced {
            assert!(
                ASSETS.iter().any(|(n, _, _)| *n == name),
                "{name} not served"
            );
        }
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        assert!(
            !PAGE.contains("<script>"),
            "inline scripts are refused by the CSP"
        );
    }
}
