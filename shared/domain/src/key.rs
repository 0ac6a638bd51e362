//! API keys as the domain knows them: the scopes a key can hold, the stored
//! record (only the key's digest, never the key), and its public view.

use super::Selectable;
use serde::{Deserialize, Serialize};

pub const ITEMS_READ: &str = "items:read";
pub const ITEMS_WRITE: &str = "items:write";
pub const BATCHES_READ: &str = "batches:read";
pub const BATCHES_WRITE: &str = "batches:write";
pub const WEBHOOKS_MANAGE: &str = "webhooks:manage";
pub const KEYS_MANAGE: &str = "keys:manage";
pub const ALL_SCOPES: &[&str] = &[
    ITEMS_READ,
    ITEMS_WRITE,
    BATCHES_READ,
    BATCHES_WRITE,
    WEBHOOKS_MANAGE,
    KEYS_MANAGE,
];

/// A stored API key. The key itself is never stored, only `key_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_hash: String,
    pub key_id: String,
    pub tenant_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Refreshed by the authorizer (at most once per cache period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// The tenant's API Gateway API key value: the authorizer returns it as
    /// `usageIdentifierKey`, which binds the request to the tenant's usage
    /// plan (rate, burst, daily quota). Every key of a tenant carries the same
    /// one; it is an identifier for metering, not a credential (the API takes
    /// its API Gateway keys only from the authorizer, never from clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_key: Option<String>,
}

/// Names of the fields a key's metadata has (for `?fields=`).
pub const KEY_FIELDS: &[&str] = &[
    "key_id",
    "name",
    "scopes",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
];

impl Selectable for ApiKeyView {
    const FIELDS: &'static [&'static str] = KEY_FIELDS;
}

/// A key as listed: metadata only, never the key or its hash.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    #[schema(example = "key_01jd8x3b6q5w3z2y1x0v9t8s7r")]
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// When the authorizer last checked this key (refreshed at most once per
    /// authorizer cache period).
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(r: ApiKeyRecord) -> Self {
        Self {
            key_id: r.key_id,
            name: r.name,
            scopes: r.scopes,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_fields_name_every_field_of_the_representation() {
        crate::fields::assert_names_every_field(&ApiKeyView {
            key_id: "key_1".into(),
            name: "ci".into(),
            scopes: vec!["items:read".into()],
            created_at: "t".into(),
            expires_at: Some("t".into()),
            last_used_at: Some("t".into()),
            revoked_at: Some("t".into()),
        });
    }
}
