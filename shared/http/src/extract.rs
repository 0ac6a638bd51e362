//! Extractors: the caller's identity (from the authorizer context only), the
//! JSON body with its limits, the sku path segment, and query parameters.

use crate::problem::HttpError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, header};
use lambda_http::request::RequestContext;
use serde_json::Value;
use stockroom_app::auth::AuthContext;
use stockroom_app::error::ApiError;
use stockroom_domain::{FieldErrors, Sku};

/// Largest accepted JSON body for the items routes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Deepest accepted JSON nesting (no request needs more than 3 levels).
pub const MAX_JSON_DEPTH: usize = 16;

/// Nesting depth of a JSON value, without recursion.
fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((v, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    deepest
}

/// A request body's bytes to JSON, within `limit` bytes and
/// [`MAX_JSON_DEPTH`] levels: 413 or 400 otherwise (fuzzed: fuzz/).
pub fn parse_json_body(raw: &[u8], limit: usize) -> Result<Value, ApiError> {
    if raw.len() > limit {
        return Err(ApiError::PayloadTooLarge {
            size: raw.len(),
            limit,
        });
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson("the body is empty".into()));
    }
    // serde_json itself stops at 128 levels; anything near that is abuse.
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    if json_depth(&value) > MAX_JSON_DEPTH {
        return Err(ApiError::MalformedJson(format!(
            "nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    Ok(value)
}

/// The authenticated caller. The tenant comes only from the authorizer's
/// context in the API Gateway event, never from the request itself.
pub struct Auth(pub AuthContext);

impl Auth {
    pub fn require(&self, scope: &'static str) -> Result<&AuthContext, ApiError> {
        if self.0.has_scope(scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::InsufficientScope(scope))
        }
    }
}

pub fn auth_context(parts_ext: &http::Extensions) -> Option<AuthContext> {
    let RequestContext::ApiGatewayV1(ctx) = parts_ext.get::<RequestContext>()? else {
        return None;
    };
    let fields = &ctx.authorizer.fields;
    AuthContext::from_context_fields(|k| match fields.get(k)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    })
    .ok()
}

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = HttpError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        auth_context(&parts.extensions)
            .map(Auth)
            .ok_or(HttpError(ApiError::Unauthorized))
    }
}

/// A JSON body: content type checked, size bounded, syntax checked. Field
/// validation is the domain's job (422); this layer answers 400/413/415.
pub struct JsonBody<const LIMIT: usize = MAX_BODY_BYTES> {
    pub value: Value,
    pub raw: Bytes,
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for JsonBody<LIMIT> {
    type Rejection = HttpError;
    async fn from_request(req: Request, _: &S) -> Result<Self, HttpError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            if !is_json(ct) {
                return Err(ApiError::UnsupportedMediaType(ct.chars().take(100).collect()).into());
            }
        }
        let raw = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .map_err(|e| ApiError::MalformedJson(format!("unreadable body ({e})")))?;
        let value = parse_json_body(&raw, LIMIT)?;
        Ok(Self { value, raw })
    }
}

/// The `{sku}` path segment, validated.
pub struct SkuPath(pub Sku);

impl<S: Send + Sync> FromRequestParts<S> for SkuPath {
    type Rejection = HttpError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::invalid_parameter("sku", "is not a valid path segment"))?;
        Sku::parse(&raw)
            .map(SkuPath)
            .map_err(|m| ApiError::invalid_parameter("sku", m).into())
    }
}

pub(crate) use stockroom_domain::is_prefixed_id;

/// The `{batch_id}` path segment. An id that cannot exist is simply not found.
pub struct BatchIdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BatchIdPath {
    type Rejection = HttpError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::BatchNotFound)?;
        let ok = raw.len() == 28
            && raw.starts_with("b_")
            && raw[2..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(BatchIdPath(raw))
        } else {
            Err(ApiError::BatchNotFound.into())
        }
    }
}

/// Query parameters, with unknown names refused (a typo is not silently ignored).
pub struct QueryParams(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = HttpError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        let q = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .map(QueryParams)
            .map_err(|_| ApiError::invalid_parameter("query", "is not valid URL encoding").into())
    }
}

impl QueryParams {
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let mut errors = FieldErrors::default();
        for (k, _) in &self.0 {
            if !allowed.contains(&k.as_str()) {
                errors.push(
                    k.clone(),
                    format!("unknown query parameter; allowed: {}", allowed.join(", ")),
                );
            }
        }
        for name in allowed {
            if self.0.iter().filter(|(k, _)| k == name).count() > 1 {
                errors.push(*name, "must be given at most once");
            }
        }
        errors.into_result(()).map_err(ApiError::InvalidParameters)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `limit` within 1..=100 (default `default`).
    pub fn limit(&self, default: u32) -> Result<u32, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_parameter("limit", "must be an integer from 1 to 100")
                }),
        }
    }
}

/// A header as a string, rejecting non-visible-ASCII values.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::invalid_parameter(name, "must be visible ASCII")),
    }
}

/// A response stored under an `Idempotency-Key`, sent again as it was, marked
/// `Idempotent-Replayed: true`.
pub fn replayed(status: u16, body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    use http::{HeaderValue, StatusCode, header};
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::HeaderName::from_static("idempotent-replayed"),
                HeaderValue::from_static("true"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The `Idempotency-Key` of a request, with the digest of what it guards:
/// `scope` (which resource the request targets) and the raw body. The same key
/// with another scope or body is a different request.
pub fn idempotency_request(
    headers: &HeaderMap,
    scope: &str,
    raw_body: &[u8],
) -> Result<Option<stockroom_app::items::IdempotencyRequest>, ApiError> {
    use sha2::{Digest, Sha256};
    match header_str(headers, "idempotency-key")? {
        None => Ok(None),
        Some(key)
            if (1..=super::request_rules::MAX_IDEMPOTENCY_KEY).contains(&key.chars().count()) =>
        {
            let digest = Sha256::new()
                .chain_update(scope.as_bytes())
                .chain_update([0])
                .chain_update(raw_body)
                .finalize();
            Ok(Some(stockroom_app::items::IdempotencyRequest {
                key: key.to_owned(),
                request_hash: hex::encode(digest),
                ttl_seconds: stockroom_app::items::IDEMPOTENCY_TTL_SECONDS,
            }))
        }
        Some(_) => Err(ApiError::invalid_parameter(
            "Idempotency-Key",
            "must be 1 to 255 characters",
        )),
    }
}

/// Parses `If-Match` / `If-None-Match`: `*` or a list of entity tags.
pub fn entity_tags(value: &str) -> Option<Vec<String>> {
    let value = value.trim();
    if value == "*" {
        return None;
    }
    Some(
        value
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }

    #[test]
    fn json_depth_counts_levels() {
        assert_eq!(json_depth(&serde_json::json!(1)), 1);
        assert_eq!(json_depth(&serde_json::json!({"a": [1, {"b": 2}]})), 4);
    }

    #[test]
    fn entity_tag_lists() {
        assert_eq!(entity_tags("*"), None);
        assert_eq!(
            entity_tags("\"a\", W/\"b\"").unwrap(),
            vec!["\"a\"", "W/\"b\""]
        );
    }
}
