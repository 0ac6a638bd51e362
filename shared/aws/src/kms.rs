//! KMS adapter: encrypts webhook signing secrets under the stack's key, with
//! an encryption context binding each ciphertext to its tenant and webhook
//! (a ciphertext copied to another webhook does not decrypt).

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use stockroom_app::ports::{SecretCipher, StoreError};

#[derive(Clone, Debug)]
pub struct KmsSecretCipher {
    client: Client,
    /// Key id, ARN or alias.
    key_id: String,
}

impl KmsSecretCipher {
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, key_id: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            key_id: key_id.into(),
        }
    }
}

fn context(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[async_trait]
impl SecretCipher for KmsSecretCipher {
    async fn encrypt(&self, plaintext: &str, ctx: &[(&str, &str)]) -> Result<String, StoreError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(plaintext.as_bytes()))
            .set_encryption_context(Some(context(ctx)))
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| StoreError::Corrupt("KMS returned no ciphertext".into()))?;
        Ok(STANDARD.encode(blob.as_ref()))
    }

    async fn decrypt(&self, ciphertext: &str, ctx: &[(&str, &str)]) -> Result<String, StoreError> {
        let bytes = STANDARD
            .decode(ciphertext)
            .map_err(|e| StoreError::Corrupt(format!("secret ciphertext: {e}")))?;
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(bytes))
            .set_encryption_context(Some(context(ctx)))
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let plain = out
            .plaintext
            .ok_or_else(|| StoreError::Corrupt("KMS returned no plaintext".into()))?;
        String::from_utf8(plain.into_inner())
            .map_err(|_| StoreError::Corrupt("secret is not UTF-8".into()))
    }
}
