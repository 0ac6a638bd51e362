//! S3 adapter for uploaded batch files: presigned PUT URLs bound to the
//! declared size, size checks, and streaming reads.

use super::classify;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use std::collections::BTreeMap;
use std::time::Duration;
use stockroom_app::ports::{PresignedUpload, StoreError, UploadBody, UploadStore};

#[derive(Clone, Debug)]
pub struct S3UploadStore {
    client: Client,
    bucket: String,
}

impl S3UploadStore {
    /// Builds the client from shared SDK configuration (no network call).
    /// With an endpoint override (the local emulator, one host for every
    /// bucket) requests use path-style addresses.
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        let path_style = sdk.endpoint_url().is_some();
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .build();
        Self {
            client: Client::from_conf(conf),
            bucket: bucket.into(),
        }
    }
}

#[async_trait]
impl UploadStore for S3UploadStore {
    async fn presign_put(
        &self,
        key: &str,
        size_bytes: u64,
        ttl: Duration,
    ) -> Result<PresignedUpload, StoreError> {
        let config =
            PresigningConfig::expires_in(ttl).map_err(|e| StoreError::Backend(e.into()))?;
        // Content length and `If-None-Match: *` are signed headers: S3
        // refuses a PUT of any other size, and a second PUT to the key (the
        // file cannot change under the splitter). The bucket's default
        // encryption (SSE-KMS) applies.
        let length = i64::try_from(size_bytes)
            .map_err(|_| StoreError::Backend("upload size out of range".into()))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(length)
            .if_none_match("*")
            .presigned(config)
            .await
            .map_err(classify)?;
        let headers: BTreeMap<String, String> = request
            .headers()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect();
        Ok(PresignedUpload {
            url: request.uri().to_owned(),
            method: request.method().to_owned(),
            headers,
        })
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length.unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    async fn open(&self, key: &str) -> Result<UploadBody, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        Ok(Box::new(out.body.into_async_read()))
    }
}
