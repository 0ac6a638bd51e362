//! Tenants of the benchmarks' own, each with its usage plan and API keys.

use anyhow::{Context, Result};
use stockroom_app::auth::generate_api_key;
use stockroom_app::ports::ApiKeyStore;
use stockroom_aws::dynamodb::DynamoApiKeyStore;
use stockroom_domain::key::ALL_SCOPES;

/// with `keys` API keys (all scopes).
pub(crate) async fn tenant_with_keys(keys: usize) -> Result<(String, Vec<String>)> {
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    let tenant_id = format!(
        "bench-{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    let usage_key = stockroom_admin::UsagePlans::from_env(&sdk)?
        .assign(&tenant_id, "standard")
        .await?;
    let table = std::env::var("API_KEYS_TABLE").context("API_KEYS_TABLE (source .local/env)")?;
    let store = DynamoApiKeyStore::from_sdk_config(&sdk, table);
    let mut api_keys = Vec::with_capacity(keys);
    for _ in 0..keys {
        let api_key = generate_api_key("sk_test_");
        let record = stockroom_admin::key_record(
            &api_key,
            &tenant_id,
            "bench",
            ALL_SCOPES,
            Some(usage_key.clone()),
        );
        store.put_key(&record).await?;
        api_keys.push(api_key);
    }
    Ok((tenant_id, api_keys))
}

/// A tenant of its own with one API key.
pub(crate) async fn tenant() -> Result<(String, String)> {
    let (tenant_id, mut keys) = tenant_with_keys(1).await?;
    let key = keys.pop().context("no key made")?;
    Ok((tenant_id, key))
}
