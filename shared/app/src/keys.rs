//! Key management use cases: a tenant creates, lists and revokes its keys.

use crate::auth::{AuthContext, generate_api_key, hash_api_key, key_prefix};
use crate::clock;
use crate::domain::key::{ALL_SCOPES, ApiKeyRecord};
use crate::domain::{FieldErrors, Fields, TenantId};
use crate::error::ApiError;
use crate::ports::{ApiKeyStore, Page, PageKey, StoreError};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

pub const MAX_KEY_NAME: usize = 100;

pub use crate::domain::key::{ApiKeyView, KEY_FIELDS};

/// The 201 body of `POST /v1/keys`: the only time the key is shown.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The secret key. Store it now: only its SHA-256 is kept.
    #[schema(example = "sk_live_4eC39HqLyjWDarjtT1zdp7dc4eC39HqLyjWDarjt")]
    pub api_key: String,
}

/// A validated `POST /v1/keys` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
}

impl NewKey {
    pub fn from_json(body: &Value, now: time::OffsetDateTime) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let Some(obj) = body.as_object() else {
            errors.push("$", "the request body must be a JSON object");
            return Err(errors);
        };
        for k in obj.keys() {
            if !["name", "scopes", "expires_at"].contains(&k.as_str()) {
                errors.push(k.clone(), "unknown field");
            }
        }
        let name = match obj.get("name").and_then(Value::as_str) {
            Some(n)
                if !n.is_empty()
                    && n.chars().count() <= MAX_KEY_NAME
                    && crate::domain::validation::is_plain_text(n) =>
            {
                n.to_owned()
            }
            _ => {
                errors.push(
                    "name",
                    format!("is required: 1 to {MAX_KEY_NAME} characters, no control characters"),
                );
                String::new()
            }
        };
        let mut scopes = Vec::new();
        match obj.get("scopes").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => {
                for (i, s) in list.iter().enumerate() {
                    match s.as_str() {
                        Some(s) if ALL_SCOPES.contains(&s) => {
                            if !scopes.iter().any(|x| x == s) {
                                scopes.push(s.to_owned());
                            }
                        }
                        _ => errors.push(
                            format!("scopes[{i}]"),
                            format!("must be one of {}", ALL_SCOPES.join(", ")),
                        ),
                    }
                }
            }
            _ => errors.push("scopes", "is required: a non-empty array of scopes"),
        }
        let expires_at = match obj.get("expires_at") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match clock::parse(s) {
                Some(t) if t > now => Some(clock::format(t)),
                Some(_) => {
                    errors.push("expires_at", "must be in the future");
                    None
                }
                None => {
                    errors.push("expires_at", "must be an RFC 3339 timestamp");
                    None
                }
            },
            Some(_) => {
                errors.push("expires_at", "must be an RFC 3339 timestamp");
                None
            }
        };
        errors.into_result(Self {
            name,
            scopes,
            expires_at,
        })
    }
}

#[derive(Clone)]
pub struct KeysService {
    store: Arc<dyn ApiKeyStore>,
    environment: String,
}

impl KeysService {
    pub fn new(store: Arc<dyn ApiKeyStore>, environment: String) -> Self {
        Self { store, environment }
    }

    /// Creates a key for the caller's tenant. A key may only grant scopes it
    /// holds itself, so no key can mint a more powerful one.
    pub async fn create(&self, caller: &AuthContext, new: NewKey) -> Result<CreatedKey, ApiError> {
        if let Some(extra) = new.scopes.iter().find(|s| !caller.has_scope(s)) {
            return Err(ApiError::ScopeNotGrantable(extra.clone()));
        }
        // The new key is metered against the tenant's usage plan like the
        // caller's own key.
        let usage_key = self
            .store
            .find_key_by_id(&caller.tenant_id, &caller.key_id, None)
            .await?
            .and_then(|k| k.usage_key);
        let api_key = generate_api_key(key_prefix(&self.environment));
        let record = ApiKeyRecord {
            key_hash: hash_api_key(&api_key),
            key_id: format!("key_{}", ulid::Ulid::new().to_string().to_ascii_lowercase()),
            tenant_id: caller.tenant_id.to_string(),
            name: new.name,
            scopes: new.scopes,
            created_at: clock::now_rfc3339(),
            expires_at: new.expires_at,
            revoked_at: None,
            last_used_at: None,
            usage_key,
        };
        match self.store.put_key(&record).await {
            Ok(()) => Ok(CreatedKey {
                key: record.into(),
                api_key,
            }),
            // 238 random bits colliding: report, never overwrite.
            Err(StoreError::AlreadyExists) => Err(ApiError::ConcurrentUpdate),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<ApiKeyView>>,
    ) -> Result<Page<ApiKeyView>, ApiError> {
        let page = self.store.list_keys(tenant, limit, start, fields).await?;
        Ok(Page {
            items: page.items.into_iter().map(ApiKeyView::from).collect(),
            next: page.next,
        })
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        key_id: &str,
        fields: Option<&Fields<ApiKeyView>>,
    ) -> Result<ApiKeyView, ApiError> {
        Ok(self.record(tenant, key_id, fields).await?.into())
    }

    async fn record(
        &self,
        tenant: &TenantId,
        key_id: &str,
        fields: Option<&Fields<ApiKeyView>>,
    ) -> Result<ApiKeyRecord, ApiError> {
        self.store
            .find_key_by_id(tenant, key_id, fields)
            .await?
            .ok_or(ApiError::KeyNotFound)
    }

    /// Revokes the key; the authorizer refuses it once its cached decision expires.
    pub async fn revoke(&self, tenant: &TenantId, key_id: &str) -> Result<(), ApiError> {
        let record = self.record(tenant, key_id, None).await?;
        self.store
            .revoke_key(&record.key_hash, &clock::now_rfc3339())
            .await?;
        tracing::info!(key_id = %key_id, "API key revoked");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn new_keys_are_validated() {
        let now = clock::now();
        let k = NewKey::from_json(
            &json!({"name": "ci", "scopes": ["items:read", "items:read"]}),
            now,
        )
        .unwrap();
        assert_eq!(k.scopes, vec!["items:read"]);
        let err = NewKey::from_json(
            &json!({"name": "", "scopes": ["root"], "expires_at": "2001-01-01T00:00:00Z", "x": 1}),
            now,
        )
        .unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["x", "name", "scopes[0]", "expires_at"]);
        assert!(NewKey::from_json(&json!({"name": "a", "scopes": []}), now).is_err());
        assert!(
            NewKey::from_json(
                &json!({"name": "a", "scopes": ["items:read"], "expires_at": "soon"}),
                now
            )
            .is_err()
        );
    }

    /// The key use cases on the in-memory store, checked through the
    /// authorizer's decision as a client would meet them.
    mod service {
        use super::super::*;
        use crate::auth::{Decision, authorize};
        use crate::memory::MemoryKeyStore;

        async fn caller(store: &MemoryKeyStore, scopes: &[&str]) -> AuthContext {
            let record = ApiKeyRecord {
                key_hash: hash_api_key("sk_test_root"),
                key_id: "key_00root".into(),
                tenant_id: "acme".into(),
                name: "root".into(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                created_at: clock::now_rfc3339(),
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
                usage_key: Some("usage-acme".into()),
            };
            store.put_key(&record).await.unwrap();
            AuthContext {
                tenant_id: TenantId::parse("acme").unwrap(),
                key_id: record.key_id,
                scopes: record.scopes,
            }
        }

        fn new_key(scopes: &[&str]) -> NewKey {
            NewKey {
                name: "ci".into(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                expires_at: None,
            }
        }

        #[tokio::test]
        async fn a_key_mints_only_keys_weaker_than_itself_and_they_work() {
            let store = Arc::new(MemoryKeyStore::default());
            let me = caller(
                &store,
                &[
                    crate::domain::key::KEYS_MANAGE,
                    crate::domain::key::ITEMS_READ,
                ],
            )
            .await;
            let keys = KeysService::new(store.clone(), "local".into());
            let refused = keys
                .create(&me, new_key(&[crate::domain::key::ITEMS_WRITE]))
                .await;
            assert!(
                matches!(refused, Err(ApiError::ScopeNotGrantable(ref s)) if s == "items:write"),
                "{refused:?}"
            );
            let created = keys
                .create(&me, new_key(&[crate::domain::key::ITEMS_READ]))
                .await
                .unwrap();
            assert!(created.api_key.starts_with("sk_test_"));
            let header = format!("Bearer {}", created.api_key);
            let Decision::Allow(ctx, usage) = authorize(&*store, Some(&header), clock::now())
                .await
                .unwrap()
            else {
                panic!("the new key is accepted")
            };
            assert_eq!(ctx.scopes, ["items:read"]);
            assert_eq!(
                usage.as_deref(),
                Some("usage-acme"),
                "metered like its maker"
            );
        }

        #[tokio::test]
        async fn keys_list_oldest_first_stay_in_their_tenant_and_revoke() {
            let store = Arc::new(MemoryKeyStore::default());
            let me = caller(&store, &[crate::domain::key::KEYS_MANAGE]).await;
            let keys = KeysService::new(store.clone(), "local".into());
            let mut made = Vec::new();
            for _ in 0..3 {
                made.push(
                    keys.create(&me, new_key(&[crate::domain::key::KEYS_MANAGE]))
                        .await
                        .unwrap(),
                );
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            let first = keys.list(&me.tenant_id, 2, None, None).await.unwrap();
            let rest = keys
                .list(&me.tenant_id, 2, first.next.clone(), None)
                .await
                .unwrap();
            let listed: Vec<String> = first
                .items
                .iter()
                .chain(&rest.items)
                .map(|k| k.key_id.clone())
                .collect();
            let mut expected = vec![me.key_id.clone()];
            expected.extend(made.iter().map(|k| k.key.key_id.clone()));
            assert_eq!(listed, expected);
            assert!(rest.next.is_none());

            let other = TenantId::parse("other").unwrap();
            let target = &made[0].key.key_id;
            assert!(matches!(
                keys.get(&other, target, None).await,
                Err(ApiError::KeyNotFound)
            ));
            assert!(matches!(
                keys.revoke(&other, target).await,
                Err(ApiError::KeyNotFound)
            ));
            keys.revoke(&me.tenant_id, target).await.unwrap();
            let header = format!("Bearer {}", made[0].api_key);
            assert_eq!(
                authorize(&*store, Some(&header), clock::now())
                    .await
                    .unwrap(),
                Decision::Unauthorized("revoked key")
            );
            assert!(
                keys.get(&me.tenant_id, target, None)
                    .await
                    .unwrap()
                    .revoked_at
                    .is_some()
            );
        }
    }
}
