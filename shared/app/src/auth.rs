//! API keys: generation, hashing (keys are stored only as SHA-256 digests),
//! scopes, and the authorizer's decision.

use crate::domain::TenantId;
use crate::ports::{ApiKeyLookup, StoreError};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new random key: `<prefix>` + 40 base62 characters (~238 bits).
pub fn generate_api_key(prefix: &str) -> String {
    let mut rng = rand::rng();
    let body: String = (0..40)
        .map(|_| KEY_ALPHABET[rng.random_range(0..KEY_ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{body}")
}

/// `sk_live_` in AWS, `sk_test_` anywhere else.
pub fn key_prefix(environment: &str) -> &'static str {
    if environment == "aws" {
        "sk_live_"
    } else {
        "sk_test_"
    }
}

pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Who is calling, as established by the authorizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthContext {
    pub tenant_id: TenantId,
    pub key_id: String,
    pub scopes: Vec<String>,
}

impl AuthContext {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The authorizer context map handed to API Gateway (values must be flat
    /// strings, numbers or booleans).
    pub fn to_context_fields(&self) -> HashMap<String, String> {
        HashMap::from([
            ("tenant_id".to_owned(), self.tenant_id.to_string()),
            ("key_id".to_owned(), self.key_id.clone()),
            ("scopes".to_owned(), self.scopes.join(" ")),
        ])
    }

    pub fn from_context_fields(get: impl Fn(&str) -> Option<String>) -> Result<Self, &'static str> {
        let tenant = get("tenant_id").ok_or("no tenant_id in authorizer context")?;
        let tenant_id = TenantId::parse(&tenant).map_err(|_| "bad tenant_id in context")?;
        let key_id = get("key_id").ok_or("no key_id in authorizer context")?;
        let scopes = get("scopes")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Ok(Self {
            tenant_id,
            key_id,
            scopes,
        })
    }
}

/// The bearer token of an `Authorization` header value, if well formed.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.len() <= 256
        && token.bytes().all(|b| b.is_ascii_graphic()))
    .then_some(token)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The caller, and the usage plan key its requests are metered against.
    Allow(AuthContext, Option<String>),
    /// Unknown, malformed, revoked or expired key. Deliberately one variant:
    /// the caller learns nothing about which.
    Unauthorized(&'static str),
}

/// Decides on an `Authorization` header value by looking up the key's hash.
pub async fn authorize(
    store: &dyn ApiKeyLookup,
    authorization: Option<&str>,
    now: time::OffsetDateTime,
) -> Result<Decision, StoreError> {
    let Some(token) = authorization.and_then(bearer_token) else {
        return Ok(Decision::Unauthorized("missing or malformed bearer token"));
    };
    let hash = hash_api_key(token);
    let Some(record) = store.find_key(&hash).await? else {
        return Ok(Decision::Unauthorized("unknown key"));
    };
    // The lookup was by hash already; compare again in constant time so the
    // decision never depends on a short-circuiting string comparison.
    if !bool::from(record.key_hash.as_bytes().ct_eq(hash.as_bytes())) {
        return Ok(Decision::Unauthorized("unknown key"));
    }
    if record.revoked_at.is_some() {
        return Ok(Decision::Unauthorized("revoked key"));
    }
    if let Some(expiry) = record.expires_at.as_deref() {
        match crate::clock::parse(expiry) {
            Some(t) if t > now => {}
            _ => return Ok(Decision::Unauthorized("expired key")),
        }
    }
    let Ok(tenant_id) = TenantId::parse(&record.tenant_id) else {
        return Err(StoreError::Corrupt(format!(
            "key {} has an invalid tenant id",
            record.key_id
        )));
    };
    // Best effort: a failed bookkeeping write must not refuse a valid key.
    if let Err(e) = store.touch_key(&hash, &crate::clock::format(now)).await {
        tracing::warn!(key_id = %record.key_id, error = %crate::telemetry::error_chain(&e), "could not record last use");
    }
    Ok(Decision::Allow(
        AuthContext {
            tenant_id,
            key_id: record.key_id,
            scopes: record.scopes,
        },
        record.usage_key,
    ))
}

/// The resource an Allow policy grants: every method and path of the stage the
/// request came to. API Gateway caches the policy per key and evaluates it for
/// later requests to other routes, so it must not name only this method.
pub fn stage_wide_resource(method_arn: &str) -> Option<String> {
    // arn:aws:execute-api:<region>:<account>:<api-id>/<stage>/<METHOD>/<path...>
    let mut parts = method_arn.splitn(3, '/');
    let api = parts
        .next()
        .filter(|a| a.starts_with("arn:") && a.contains(":execute-api:"))?;
    let stage = parts.next().filter(|s| !s.is_empty())?;
    Some(format!("{api}/{stage}/*/*"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::key::{ApiKeyRecord, ITEMS_READ, ITEMS_WRITE};
    use crate::memory::MemoryKeyStore;
    use crate::ports::ApiKeyStore;

    fn record(key: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            key_hash: hash_api_key(key),
            key_id: "key_1".into(),
            tenant_id: "acme".into(),
            name: "test".into(),
            scopes: vec![ITEMS_READ.into()],
            created_at: crate::clock::now_rfc3339(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            usage_key: Some("usage-key-acme".into()),
        }
    }

    #[test]
    fn keys_are_prefixed_random_and_hash_to_hex() {
        let a = generate_api_key("sk_test_");
        let b = generate_api_key("sk_test_");
        assert!(a.starts_with("sk_test_") && a.len() == 48);
        assert_ne!(a, b);
        assert_eq!(hash_api_key(&a).len(), 64);
    }

    #[test]
    fn policies_cover_the_whole_stage() {
        let arn = "arn:aws:execute-api:us-east-1:123456789012:abc123/live/GET/v1/items/A";
        assert_eq!(
            stage_wide_resource(arn).unwrap(),
            "arn:aws:execute-api:us-east-1:123456789012:abc123/live/*/*"
        );
        assert_eq!(stage_wide_resource("garbage"), None);
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer a b"), None);
    }

    #[tokio::test]
    async fn allows_known_key_and_refuses_the_rest() {
        let store = MemoryKeyStore::default();
        store.put_key(&record("sk_test_good")).await.unwrap();
        let now = crate::clock::now();
        let d = authorize(&store, Some("Bearer sk_test_good"), now)
            .await
            .unwrap();
        let Decision::Allow(ctx, usage_key) = d else {
            panic!("{d:?}")
        };
        assert_eq!(ctx.tenant_id.as_str(), "acme");
        assert_eq!(usage_key.as_deref(), Some("usage-key-acme"));
        assert!(ctx.has_scope(ITEMS_READ) && !ctx.has_scope(ITEMS_WRITE));
        let used = store.find_key(&hash_api_key("sk_test_good")).await.unwrap();
        assert_eq!(
            used.and_then(|k| k.last_used_at),
            Some(crate::clock::format(now)),
            "the authorizer notes the key's use"
        );
        for h in [None, Some("Bearer sk_test_bad"), Some("sk_test_good")] {
            assert!(matches!(
                authorize(&store, h, now).await.unwrap(),
                Decision::Unauthorized(_)
            ));
        }
    }

    #[tokio::test]
    async fn revoked_and_expired_keys_are_refused() {
        let store = MemoryKeyStore::default();
        let mut revoked = record("k1");
        revoked.revoked_at = Some(crate::clock::now_rfc3339());
        let mut expired = record("k2");
        expired.expires_at = Some("2020-01-01T00:00:00Z".into());
        store.put_key(&revoked).await.unwrap();
        store.put_key(&expired).await.unwrap();
        let now = crate::clock::now();
        for h in ["Bearer k1", "Bearer k2"] {
            assert!(matches!(
                authorize(&store, Some(h), now).await.unwrap(),
                Decision::Unauthorized(_)
            ));
        }
    }

    #[test]
    fn context_fields_round_trip() {
        let ctx = AuthContext {
            tenant_id: TenantId::parse("acme").unwrap(),
            key_id: "key_1".into(),
            scopes: vec![ITEMS_READ.into(), ITEMS_WRITE.into()],
        };
        let fields = ctx.to_context_fields();
        let back = AuthContext::from_context_fields(|k| fields.get(k).cloned()).unwrap();
        assert_eq!(back, ctx);
    }
}
