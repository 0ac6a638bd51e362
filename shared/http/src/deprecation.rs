//! Deprecating a `/v1` route without breaking it: while a route is listed in
//! [`DEPRECATED_ROUTES`] every answer on it carries `Deprecation` (RFC 9745),
//! `Sunset` (RFC 8594) and `Link` headers, and the OpenAPI document marks the
//! operation `deprecated`. The route keeps working until the sunset, and the
//! contract test stops it being removed from `/v1` (it goes in `/v2`).

use http::{HeaderMap, HeaderValue};

/// A deprecated route: `method` and `route` as API Gateway names them
/// (`GET`, `/v1/items/{sku}`), times as Unix seconds.
#[derive(Debug, Clone, Copy)]
pub struct RouteDeprecation {
    pub method: &'static str,
    pub route: &'static str,
    /// When the route was (or will be) deprecated.
    pub deprecated_at: i64,
    /// When it may stop working, if decided.
    pub sunset_at: Option<i64>,
    /// A page explaining the replacement and the migration.
    pub link: &'static str,
}

/// The routes deprecated today: none. Add an entry here (and a CHANGELOG line)
/// to deprecate one; see docs/operations.md, "Deprecating a route".
pub const DEPRECATED_ROUTES: &[RouteDeprecation] = &[];

pub fn find<'a>(
    table: &'a [RouteDeprecation],
    method: &str,
    route: &str,
) -> Option<&'a RouteDeprecation> {
    table
        .iter()
        .find(|d| d.method.eq_ignore_ascii_case(method) && d.route == route)
}

fn http_date(unix: i64) -> Option<String> {
    let time = std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::from_secs(u64::try_from(unix).ok()?))?;
    Some(httpdate::fmt_http_date(time))
}

/// Adds the deprecation headers of `d` to a response.
pub fn add_headers(headers: &mut HeaderMap, d: &RouteDeprecation) {
    // RFC 9745: a structured-field date, `@` + Unix seconds.
    if let Ok(v) = HeaderValue::from_str(&format!("@{}", d.deprecated_at)) {
        headers.insert("deprecation", v);
    }
    let mut links = vec![format!("<{}>; rel=\"deprecation\"", d.link)];
    if let Some(sunset) = d.sunset_at.and_then(http_date) {
        if let Ok(v) = HeaderValue::from_str(&sunset) {
            headers.insert("sunset", v);
        }
        links.push(format!("<{}>; rel=\"sunset\"", d.link));
    }
    for link in links {
        if let Ok(v) = HeaderValue::from_str(&link) {
            headers.append(http::header::LINK, v);
        }
    }
}

/// Marks the deprecated operations of the OpenAPI document.
pub fn annotate(doc: &mut serde_json::Value, table: &[RouteDeprecation]) {
    for d in table {
        let op = &mut doc["paths"][d.route][d.method.to_lowercase()];
        if !op.is_object() {
            continue;
        }
        op["deprecated"] = true.into();
        let sunset = d
            .sunset_at
            .and_then(http_date)
            .map(|s| format!(" It may stop working after {s}."))
            .unwrap_or_default();
        let note = format!(
            "\n\n**Deprecated** (answers carry `Deprecation`, `Sunset` and `Link` headers).{sunset} See {}.",
            d.link
        );
        let description = op["description"].as_str().unwrap_or_default().to_owned();
        op["description"] = (description + &note).into();
    }
}

/// A deprecated route for the tests (here and in the middleware's).
#[cfg(test)]
pub(crate) const SAMPLE: &[RouteDeprecation] = &[RouteDeprecation {
    method: "GET",
    route: "/v1/items/{sku}/movements",
    deprecated_at: 1_798_761_600,   // 2027-01-01
    sunset_at: Some(1_830_297_600), // 2028-01-01
    link: "https://stockroom.dev/changes/movements-v2",
}];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_rfc_9745_and_8594() {
        let d = find(SAMPLE, "get", "/v1/items/{sku}/movements").expect("listed");
        let mut headers = HeaderMap::new();
        add_headers(&mut headers, d);
        assert_eq!(headers["deprecation"], "@1798761600");
        assert_eq!(headers["sunset"], "Sat, 01 Jan 2028 00:00:00 GMT");
        let links: Vec<&str> = headers
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(
            links,
            [
                "<https://stockroom.dev/changes/movements-v2>; rel=\"deprecation\"",
                "<https://stockroom.dev/changes/movements-v2>; rel=\"sunset\""
            ]
        );
        assert!(find(SAMPLE, "POST", "/v1/items/{sku}/movements").is_none());
        assert!(find(SAMPLE, "GET", "/v1/items/{sku}").is_none());
    }

    #[test]
    fn the_document_marks_deprecated_operations() {
        let mut doc = super::super::openapi::document();
        annotate(&mut doc, SAMPLE);
        let op = &doc["paths"]["/v1/items/{sku}/movements"]["get"];
        assert_eq!(op["deprecated"], true);
        assert!(
            op["description"]
                .as_str()
                .unwrap_or_default()
                .contains("Sat, 01 Jan 2028")
        );
        assert!(doc["paths"]["/v1/items/{sku}"]["get"]["deprecated"].is_null());
    }
}
