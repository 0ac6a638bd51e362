use super::error::{already_exists, classify};
use super::items::start_key;
use super::projection::{Decoder, StoredFields, Unread, project_query};
use super::{from_attrs, query_page, s, to_attrs};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use stockroom_app::ports::{ApiKeyLookup, ApiKeyStore, Page, PageKey, StoreError};
use stockroom_domain::key::{ApiKeyRecord, ApiKeyView};
use stockroom_domain::{Fields, TenantId};

/// Index of the keys table by tenant and key id.
const TENANT_INDEX: &str = "by_tenant";

/// A key's metadata is stored under the names the API shows.
const KEY_STORED: StoredFields = StoredFields::SAME_NAMES;

impl Unread for ApiKeyRecord {
    fn unread() -> Self {
        Self {
            key_hash: String::new(),
            key_id: String::new(),
            tenant_id: String::new(),
            name: String::new(),
            scopes: Vec::new(),
            created_at: String::new(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            usage_key: None,
        }
    }
}

/// [`ApiKeyLookup`] and [`ApiKeyStore`] on the API keys table (partition key `key_hash`).
#[derive(Clone, Debug)]
pub struct DynamoApiKeyStore {
    client: Client,
    table: String,
}

impl DynamoApiKeyStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Builds the client from shared SDK configuration (no network call).
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), table)
    }
}

#[async_trait]
impl ApiKeyLookup for DynamoApiKeyStore {
    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("key_hash", s(key_hash))
            .send()
            .await
            .map_err(classify)?;
        out.item.map(from_attrs).transpose()
    }

    async fn touch_key(&self, key_hash: &str, now: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("key_hash", s(key_hash))
            .update_expression("SET last_used_at = :now")
            .condition_expression("attribute_exists(key_hash)")
            .expression_attribute_values(":now", s(now))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

#[async_trait]
impl ApiKeyStore for DynamoApiKeyStore {
    async fn put_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attrs(record)?))
            .condition_expression("attribute_not_exists(key_hash)")
            .send()
            .await
            .map_err(already_exists)?;
        Ok(())
    }

    async fn list_keys(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<ApiKeyView>>,
    ) -> Result<Page<ApiKeyRecord>, StoreError> {
        let projection = KEY_STORED.projection(fields);
        let decoder = Decoder::<ApiKeyRecord>::new(projection.is_some())?;
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(TENANT_INDEX)
            .key_condition_expression("tenant_id = :t")
            .expression_attribute_values(":t", s(tenant.as_str()))
            .limit(limit as i32)
            .set_exclusive_start_key(start_key(start));
        let out = project_query(query, projection)
            .send()
            .await
            .map_err(classify)?;
        query_page::<ApiKeyRecord, ApiKeyRecord>(out, &decoder)
    }

    async fn find_key_by_id(
        &self,
        tenant: &TenantId,
        key_id: &str,
        fields: Option<&Fields<ApiKeyView>>,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let projection = KEY_STORED.projection(fields);
        let decoder = Decoder::<ApiKeyRecord>::new(projection.is_some())?;
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(TENANT_INDEX)
            .key_condition_expression("tenant_id = :t AND key_id = :k")
            .expression_attribute_values(":t", s(tenant.as_str()))
            .expression_attribute_values(":k", s(key_id));
        let out = project_query(query, projection)
            .send()
            .await
            .map_err(classify)?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|attrs| decoder.decode(attrs))
            .transpose()
    }

    async fn revoke_key(&self, key_hash: &str, now: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("key_hash", s(key_hash))
            .update_expression("SET revoked_at = :now")
            // Records written before optional fields were skipped hold NULLs.
            .condition_expression(
                "attribute_exists(key_hash) AND (attribute_not_exists(revoked_at) OR attribute_type(revoked_at, :null))",
            )
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":null", s("NULL"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already revoked: revoking again changes nothing.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(classify(e)),
        }
    }
}
