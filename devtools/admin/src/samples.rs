//! `stockroom-admin seed-samples`: the data the sample events in `events/`
//! name, on the local stack, so that each of them succeeds when invoked
//! (`cargo lambda invoke <fn> --data-file events/...`).
//!
//! Everything goes through the product's own paths: the items through the
//! local gateway with the demo key, the batches and the webhook through the
//! use cases the functions run (only their ids are fixed, to the ones the
//! samples name), the upload through its presigned URL (S3's notification
//! then starts the splitter), the event through the events topic (the
//! dispatcher then creates the delivery). Idempotent: seeding a stack twice
//! changes nothing. It waits until the asynchronous parts (batches done,
//! delivery made) have happened, so a sample invoked right after finds them.

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use stockroom_app::batches::{BatchesService, SubmitOutcome, UploadSettings};
use stockroom_app::config;
use stockroom_app::ports::{BatchHeaders, DeliveryTracking, WebhookEventQueue};
use stockroom_app::webhooks::WebhooksService;
use stockroom_app::webhooks::target::TargetPolicy;
use stockroom_aws::dynamodb::{DynamoBatchStore, DynamoWebhookStore, WriteLayout};
use stockroom_aws::kms::KmsSecretCipher;
use stockroom_aws::s3::S3UploadStore;
use stockroom_aws::sqs::{SqsChunkQueue, SqsDeliveryQueue, SqsWebhookEventQueue};
use stockroom_domain::TenantId;
use stockroom_domain::event::Event;
use stockroom_http::idempotency_request;

/// The tenant every sample acts as (`tenant_id` in their authorizer context).
pub const SAMPLE_TENANT: &str = "demo";
/// The demo tenant's key in `events/authorizer/demo-key.json`.
pub const SAMPLE_API_KEY: &str = "sk_test_demo_key_for_local_development_only";
/// The sample item the items-api samples read, adjust and list.
const SAMPLE_SKU: &str = "SAMPLE-1";
/// The inline batch of `batches-api/get-batch.json` and the worker samples.
const SAMPLE_BATCH: &str = "b_01jd8x3b6q5w3z2y1x0v9t8s7r";
/// The upload batch of `batch-splitter/upload-notification.json`.
const SAMPLE_UPLOAD_BATCH: &str = "b_01jd8x3b6q5w3z2y1x0v9t8s7w";
/// The webhook of the webhook-dispatcher samples.
const SAMPLE_WEBHOOK: &str = "wh_01jd8x3b6q5w3z2y1x0v9t8s7r";
/// The uploaded file: what `upload-notification.json`'s object holds.
pub const SAMPLE_UPLOAD_CSV: &str =
    "op,sku,name,quantity\nupsert,SAMPLE-4,Counted jug,12\nupsert,SAMPLE-5,Counted bowl,7\n";
const WAIT: Duration = Duration::from_secs(60);

pub struct Seeder {
    events: PathBuf,
    api_url: String,
    tenant: TenantId,
    http: reqwest::Client,
    batches: BatchesService,
    batch_store: Arc<DynamoBatchStore>,
    webhooks: WebhooksService,
    webhook_store: Arc<DynamoWebhookStore>,
    /// The dispatcher's ordered events queue, which the events publisher feeds.
    webhook_events: SqsWebhookEventQueue,
}

impl Seeder {
    /// The local stack `.local/env` describes (`AWS_ENDPOINT_URL` set: this
    /// never seeds a deployed stack).
    pub async fn from_env(sdk: &aws_config::SdkConfig, events: &Path) -> anyhow::Result<Self> {
        ensure!(
            std::env::var_os("AWS_ENDPOINT_URL").is_some(),
            "seed-samples works on the local stack only: source .local/env"
        );
        let api_url = std::env::var("STOCKROOM_API_URL")
            .context("STOCKROOM_API_URL is not set: source .local/env")?;
        let batches_cfg = config::BatchesApiConfig::from_env()?;
        let webhooks_cfg = config::WebhooksApiConfig::from_env()?;
        let batch_store = Arc::new(
            DynamoBatchStore::from_sdk_config(sdk, batches_cfg.stock_table.clone())
                .with_write_layout(WriteLayout::sharded_if(config::sharded_writes()?)),
        );
        let publisher_cfg = config::EventsPublisherConfig::from_env()?;
        let batches = BatchesService::new(
            batch_store.clone(),
            Arc::new(SqsChunkQueue::from_sdk_config(
                sdk,
                batches_cfg.batch_queue_url,
            )),
        )
        .with_uploads(UploadSettings {
            store: Arc::new(S3UploadStore::from_sdk_config(
                sdk,
                batches_cfg.uploads_bucket,
            )),
            url_ttl: batches_cfg.upload_url_ttl,
            grace: batches_cfg.upload_grace,
        });
        let webhook_store = Arc::new(DynamoWebhookStore::from_sdk_config(
            sdk,
            webhooks_cfg.stock_table,
        ));
        let webhooks = WebhooksService::new(
            webhook_store.clone(),
            Arc::new(KmsSecretCipher::from_sdk_config(
                sdk,
                webhooks_cfg.secrets_key_id,
            )),
            Arc::new(SqsDeliveryQueue::from_sdk_config(
                sdk,
                webhooks_cfg.delivery_queue_url,
                None,
            )),
            TargetPolicy {
                allow_loopback_http: true,
            },
        );
        Ok(Self {
            events: events.to_owned(),
            api_url,
            tenant: TenantId::parse(SAMPLE_TENANT).map_err(anyhow::Error::msg)?,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            batches,
            batch_store,
            webhooks,
            webhook_store,
            webhook_events: SqsWebhookEventQueue::from_sdk_config(
                sdk,
                publisher_cfg.webhook_events_queue_url,
            ),
        })
    }

    /// A sample event file, parsed.
    fn sample(&self, path: &str) -> anyhow::Result<Value> {
        let file = self.events.join(path);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))
    }

    /// Seeds everything; returns what was there already and what was made.
    pub async fn seed(&self, api_key: &str) -> anyhow::Result<Value> {
        let item = self.seed_item(api_key).await?;
        // The webhook first, so the batches' completion events reach it too.
        let webhook = self.seed_webhook().await?;
        let batch = self.seed_batch().await?;
        let upload = self.seed_upload_batch().await?;
        let delivery = self.seed_delivery().await?;
        self.wait_until_done(SAMPLE_BATCH).await?;
        self.wait_until_done(SAMPLE_UPLOAD_BATCH).await?;
        Ok(json!({
            "tenant_id": SAMPLE_TENANT,
            "item": {"sku": SAMPLE_SKU, "seeded": item},
            "webhook": {"id": SAMPLE_WEBHOOK, "seeded": webhook},
            "batch": {"id": SAMPLE_BATCH, "seeded": batch},
            "upload_batch": {"id": SAMPLE_UPLOAD_BATCH, "seeded": upload},
            "delivery": delivery,
        }))
    }

    /// SAMPLE-1 through the gateway: the same request as a client's.
    async fn seed_item(&self, api_key: &str) -> anyhow::Result<bool> {
        let resp = self
            .http
            .post(format!("{}/v1/items", self.api_url))
            .bearer_auth(api_key)
            .json(&json!({
                "sku": SAMPLE_SKU,
                "name": "Sample mug",
                "quantity": 10,
                "low_stock_threshold": 2,
                "attributes": {"colour": "blue"}
            }))
            .send()
            .await
            .context("POST /v1/items on the local gateway")?;
        match resp.status().as_u16() {
            201 => Ok(true),
            409 => Ok(false),
            status => bail!(
                "creating {SAMPLE_SKU}: {status} {}",
                resp.text().await.unwrap_or_default()
            ),
        }
    }

    /// The batch `batches-api/create-batch.json` submits, under the sample's
    /// id and Idempotency-Key: invoking that sample replays this one.
    async fn seed_batch(&self) -> anyhow::Result<bool> {
        let event = self.sample("batches-api/create-batch.json")?;
        let raw = event["body"]
            .as_str()
            .context("create-batch.json has no body")?;
        let body: Value = serde_json::from_str(raw)?;
        let headers = headers_of(&event)?;
        let idempotency = idempotency_request(&headers, "batches", raw.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .context("create-batch.json has no Idempotency-Key")?;
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("sample-batch-post");
        let outcome = self
            .batches
            .submit_with_id(
                &self.tenant,
                &body,
                request_id,
                Some(&idempotency),
                SAMPLE_BATCH.into(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("submitting the sample batch: {e}"))?;
        Ok(matches!(outcome, SubmitOutcome::Accepted(_)))
    }

    /// An upload batch whose file is PUT to its presigned URL: S3 notifies
    /// the uploads queue and the splitter takes it from there.
    async fn seed_upload_batch(&self) -> anyhow::Result<bool> {
        if self
            .batch_store
            .get_batch(&self.tenant, SAMPLE_UPLOAD_BATCH, None)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let body = json!({
            "upload": true,
            "format": "csv",
            "mode": "isolated",
            "size_bytes": SAMPLE_UPLOAD_CSV.len(),
        });
        let outcome = self
            .batches
            .submit_with_id(
                &self.tenant,
                &body,
                "sample-upload-post",
                None,
                SAMPLE_UPLOAD_BATCH.into(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating the sample upload batch: {e}"))?;
        let SubmitOutcome::Accepted(accepted) = outcome else {
            bail!("the sample upload batch was replayed, not created");
        };
        let target = accepted
            .upload
            .context("an upload batch answers with its upload target")?;
        let mut put = self
            .http
            .request(target.method.parse()?, &target.url)
            .body(SAMPLE_UPLOAD_CSV);
        for (name, value) in &target.headers {
            put = put.header(name, value);
        }
        let resp = put.send().await.context("PUT of the sample file")?;
        ensure!(
            resp.status().is_success(),
            "PUT of the sample file: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        Ok(true)
    }

    /// The webhook the dispatcher samples name, delivering to the local
    /// gateway's sink (which accepts every delivery and logs it).
    async fn seed_webhook(&self) -> anyhow::Result<bool> {
        if self
            .webhook_store
            .get_webhook(&self.tenant, SAMPLE_WEBHOOK, None)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let body = json!({
            "url": format!("{}/_local/webhook-sink", self.api_url),
            "events": ["batch.completed", "item.low_stock"],
            "description": "the sample webhook (local stack's sink)",
        });
        self.webhooks
            .create_with_id(&self.tenant, &body, SAMPLE_WEBHOOK.into())
            .await
            .map_err(|e| anyhow::anyhow!("creating the sample webhook: {e}"))?;
        Ok(true)
    }

    /// Queues `webhook-dispatcher/event.json`'s event as the events publisher
    /// would;
    /// the dispatcher creates the delivery `delivery-job.json` names. Waits
    /// until it exists.
    async fn seed_delivery(&self) -> anyhow::Result<Value> {
        let event = self.sample("webhook-dispatcher/event.json")?;
        let body = event["Records"][0]["body"]
            .as_str()
            .context("event.json has no record body")?;
        let event: Event = serde_json::from_str(body).context("event.json's body")?;
        let delivery_id = stockroom_domain::webhook::delivery_id(&event.id);
        if self.delivery_status(&delivery_id).await?.is_none() {
            self.webhook_events
                .enqueue_events(std::slice::from_ref(&event))
                .await
                .context("publishing the sample event")?;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.delivery_status(&delivery_id).await? {
                return Ok(json!({"id": delivery_id, "status": status}));
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the dispatcher made no delivery {delivery_id} within {WAIT:?} (see .local/logs/webhook-dispatcher.log)"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn delivery_status(&self, delivery_id: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .webhook_store
            .get_delivery(&self.tenant, SAMPLE_WEBHOOK, delivery_id, None)
            .await?
            .map(|d| {
                serde_json::to_value(d.delivery.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }))
    }

    async fn wait_until_done(&self, batch_id: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let batch = self
                .batch_store
                .get_batch(&self.tenant, batch_id, None)
                .await?;
            if batch.as_ref().is_some_and(|b| b.status.is_terminal()) {
                return Ok(());
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "batch {batch_id} did not finish within {WAIT:?} (status {:?}; see .local/logs/)",
                batch.map(|b| b.status)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn headers_of(event: &Value) -> anyhow::Result<http::HeaderMap> {
    let mut map = http::HeaderMap::new();
    for (k, v) in event["headers"].as_object().into_iter().flatten() {
        if let Some(v) = v.as_str() {
            map.insert(
                http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())?,
                http::HeaderValue::from_str(v)?,
            );
        }
    }
    Ok(map)
}
