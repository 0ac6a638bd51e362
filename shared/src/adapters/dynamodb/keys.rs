use super::error::classify;
use super::{from_attrs, s, to_attrs};
use crate::auth::ApiKeyRecord;
use crate::ports::{ApiKeyStore, StoreError};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;

/// [`ApiKeyStore`] on the API keys table (partition key `key_hash`).
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
impl ApiKeyStore for DynamoApiKeyStore {
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

    async fn put_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attrs(record)?))
            .condition_expression("attribute_not_exists(key_hash)")
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception())
                {
                    StoreError::AlreadyExists
                } else {
                    classify(e)
                }
            })?;
        Ok(())
    }
}
