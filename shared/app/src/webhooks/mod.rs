//! Webhooks: managing a tenant's endpoints (API) and delivering events to
//! them (dispatcher): signed per the Standard Webhooks spec, retried on a
//! schedule through SQS, dead-lettered, never sent to private addresses.

pub mod signing;
pub mod target;
#[cfg(test)]
mod use_case_tests;

use crate::clock;
use crate::domain::event::Event;
use crate::domain::webhook::{
    Attempt, AttemptOutcome, Delivery, DeliveryStatus, MAX_ATTEMPTS_KEPT, MAX_WEBHOOKS_PER_TENANT,
    NewWebhook, RetrySchedule, StoredSecret, Webhook, WebhookStatus, delivery_id,
};
use crate::domain::{Fields, TenantId};
use crate::error::ApiError;
use crate::ports::{
    DeliveryJob, DeliveryQueue, DeliveryRecord, DeliveryTracking, EndpointHealth, Outcome, Page,
    PageKey, SecretCipher, StoreError, WebhookRecord, WebhookStore, WebhookTransport,
};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use target::{TargetError, TargetPolicy};

/// How long a replaced secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);

fn secret_context<'a>(tenant: &'a TenantId, webhook_id: &'a str) -> [(&'a str, &'a str); 2] {
    [("tenant_id", tenant.as_str()), ("webhook_id", webhook_id)]
}

impl From<TargetError> for ApiError {
    fn from(e: TargetError) -> Self {
        ApiError::WebhookUrlRefused {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// The 201 body of `POST /v1/webhooks`: the only time the secret is shown.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// Signing secret (`whsec_...`); verify `webhook-signature` with it.
    pub secret: String,
}

/// The body of `POST /v1/webhooks/{id}/rotate-secret`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    pub secret: String,
    /// Until then deliveries carry signatures with both secrets.
    pub previous_secret_expires_at: String,
}

#[derive(Clone)]
pub struct WebhooksService {
    store: Arc<dyn WebhookStore>,
    cipher: Arc<dyn SecretCipher>,
    queue: Arc<dyn DeliveryQueue>,
    policy: TargetPolicy,
}

impl WebhooksService {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        cipher: Arc<dyn SecretCipher>,
        queue: Arc<dyn DeliveryQueue>,
        policy: TargetPolicy,
    ) -> Self {
        Self {
            store,
            cipher,
            queue,
            policy,
        }
    }

    pub async fn create(
        &self,
        tenant: &TenantId,
        body: &serde_json::Value,
    ) -> Result<CreatedWebhook, ApiError> {
        let id = format!("wh_{}", ulid::Ulid::new().to_string().to_ascii_lowercase());
        self.create_with_id(tenant, body, id).await
    }

    /// `create` under an id chosen by the caller: the API always takes a
    /// fresh one; the local stack seeds the webhook its sample events name
    /// (stockroom-admin seed-samples) through this same path.
    pub async fn create_with_id(
        &self,
        tenant: &TenantId,
        body: &serde_json::Value,
        id: String,
    ) -> Result<CreatedWebhook, ApiError> {
        let new = NewWebhook::from_json(body).map_err(ApiError::Validation)?;
        let url = target::validate_url(&new.url, &self.policy)?;
        target::check_resolved(&url, &self.policy).await?;
        // Counting them needs their ids only, not their secrets.
        let existing = self
            .store
            .list_webhooks(tenant, Some(&Fields::identifier()))
            .await?;
        if existing.len() >= MAX_WEBHOOKS_PER_TENANT {
            return Err(ApiError::WebhookLimitReached {
                limit: MAX_WEBHOOKS_PER_TENANT,
            });
        }
        let secret = signing::generate_secret();
        let now = clock::now_rfc3339();
        let ciphertext = self
            .cipher
            .encrypt(&secret, &secret_context(tenant, &id))
            .await?;
        let webhook = Webhook {
            id,
            url: url.to_string(),
            events: new.events,
            description: new.description,
            status: WebhookStatus::Enabled,
            disabled_reason: None,
            failing_since: None,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let record = WebhookRecord {
            webhook: webhook.clone(),
            secrets: vec![StoredSecret {
                ciphertext,
                created_at: now,
                expires_at: None,
            }],
        };
        self.store.create_webhook(tenant, &record).await?;
        tracing::info!(webhook_id = %webhook.id, "webhook created");
        Ok(CreatedWebhook { webhook, secret })
    }

    /// Every webhook of the tenant by id, whole or with `fields`.
    pub async fn list(
        &self,
        tenant: &TenantId,
        fields: Option<&Fields<Webhook>>,
    ) -> Result<Vec<Webhook>, ApiError> {
        // The id is the sort key, whatever the client selected.
        let read = fields.map(|f| f.and(&["id"]));
        let mut hooks: Vec<Webhook> = self
            .store
            .list_webhooks(tenant, read.as_ref())
            .await?
            .into_iter()
            .map(|r| r.webhook)
            .collect();
        hooks.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(hooks)
    }

    async fn record(
        &self,
        tenant: &TenantId,
        id: &str,
        fields: Option<&Fields<Webhook>>,
    ) -> Result<WebhookRecord, ApiError> {
        self.store
            .get_webhook(tenant, id, fields)
            .await?
            .ok_or(ApiError::WebhookNotFound)
    }

    /// 404 unless the webhook exists (reads its id only).
    async fn exists(&self, tenant: &TenantId, id: &str) -> Result<(), ApiError> {
        self.record(tenant, id, Some(&Fields::identifier()))
            .await
            .map(drop)
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &str,
        fields: Option<&Fields<Webhook>>,
    ) -> Result<Webhook, ApiError> {
        Ok(self.record(tenant, id, fields).await?.webhook)
    }

    pub async fn delete(&self, tenant: &TenantId, id: &str) -> Result<(), ApiError> {
        match self.store.delete_webhook(tenant, id).await {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed) => Err(ApiError::WebhookNotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-enables a disabled webhook (its failure streak starts over).
    pub async fn enable(&self, tenant: &TenantId, id: &str) -> Result<Webhook, ApiError> {
        self.exists(tenant, id).await?;
        self.store
            .set_health(tenant, id, &EndpointHealth::Succeeded)
            .await?;
        Ok(self.record(tenant, id, None).await?.webhook)
    }

    /// A new secret; the previous ones keep signing for 24 h so receivers
    /// can switch without dropping deliveries.
    pub async fn rotate_secret(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<RotatedSecret, ApiError> {
        let record = self.record(tenant, id, None).await?;
        let now = clock::now();
        let now_s = clock::format(now);
        let overlap_end = clock::format(now + ROTATION_OVERLAP);
        let secret = signing::generate_secret();
        let ciphertext = self
            .cipher
            .encrypt(&secret, &secret_context(tenant, id))
            .await?;
        let mut secrets = vec![StoredSecret {
            ciphertext,
            created_at: now_s.clone(),
            expires_at: None,
        }];
        secrets.extend(
            record
                .secrets
                .iter()
                .filter(|s| s.valid_at(&now_s))
                .map(|s| StoredSecret {
                    expires_at: Some(
                        s.expires_at
                            .clone()
                            .filter(|e| *e < overlap_end)
                            .unwrap_or_else(|| overlap_end.clone()),
                    ),
                    ..s.clone()
                }),
        );
        match self
            .store
            .replace_secrets(tenant, id, &record.secrets, &secrets, &now_s)
            .await
        {
            Ok(()) => {}
            Err(StoreError::ConditionFailed) => return Err(ApiError::ConcurrentUpdate),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(webhook_id = %id, "webhook secret rotated");
        Ok(RotatedSecret {
            secret,
            previous_secret_expires_at: overlap_end,
        })
    }

    /// Sends a `webhook.ping` event to this webhook only.
    pub async fn test(
        &self,
        tenant: &TenantId,
        id: &str,
        request_id: &str,
    ) -> Result<Delivery, ApiError> {
        let record = self.record(tenant, id, None).await?;
        if record.webhook.status != WebhookStatus::Enabled {
            return Err(ApiError::WebhookDisabled);
        }
        let now = clock::now_rfc3339();
        let event = Event::ping(tenant.as_str(), id, &now, request_id);
        let rec = new_delivery(&event, id, &now)?;
        self.store.create_delivery(tenant, &rec).await?;
        self.queue
            .enqueue(&[job(
                tenant,
                id,
                &rec.delivery.id,
                request_id,
                event.ordering_key(),
            )])
            .await?;
        Ok(rec.delivery)
    }

    pub async fn deliveries(
        &self,
        tenant: &TenantId,
        id: &str,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Delivery>>,
    ) -> Result<Page<Delivery>, ApiError> {
        self.exists(tenant, id).await?;
        Ok(self
            .store
            .list_deliveries(tenant, id, limit, start, fields)
            .await?)
    }

    pub async fn delivery(
        &self,
        tenant: &TenantId,
        id: &str,
        delivery: &str,
        fields: Option<&Fields<Delivery>>,
    ) -> Result<Delivery, ApiError> {
        self.exists(tenant, id).await?;
        self.store
            .get_delivery(tenant, id, delivery, fields)
            .await?
            .map(|d| d.delivery)
            .ok_or(ApiError::DeliveryNotFound)
    }

    /// Sends a delivery again (same event, same `webhook-id`), with a fresh
    /// retry schedule.
    pub async fn replay(
        &self,
        tenant: &TenantId,
        id: &str,
        delivery: &str,
        request_id: &str,
    ) -> Result<Delivery, ApiError> {
        let record = self.record(tenant, id, None).await?;
        if record.webhook.status != WebhookStatus::Enabled {
            return Err(ApiError::WebhookDisabled);
        }
        let existing = self
            .store
            .get_delivery(tenant, id, delivery, None)
            .await?
            .ok_or(ApiError::DeliveryNotFound)?;
        let now = clock::now_rfc3339();
        self.store
            .reopen_delivery(tenant, id, delivery, &now)
            .await?;
        self.queue
            // A replay is sent on its own, not in line with newer events.
            .enqueue(&[job(
                tenant,
                id,
                delivery,
                request_id,
                format!("{tenant}#replay#{delivery}"),
            )])
            .await?;
        Ok(Delivery {
            status: DeliveryStatus::Pending,
            next_retry_at: None,
            updated_at: now,
            ..existing.delivery
        })
    }
}

fn new_delivery(event: &Event, webhook_id: &str, now: &str) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        delivery: Delivery {
            id: delivery_id(&event.id),
            webhook_id: webhook_id.to_owned(),
            event_id: event.id.clone(),
            event_type: event.kind,
            status: DeliveryStatus::Pending,
            attempts: Vec::new(),
            next_retry_at: None,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        },
        payload: serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        request_id: event.request_id.clone(),
    })
}

fn job(
    tenant: &TenantId,
    webhook_id: &str,
    delivery_id: &str,
    request_id: &str,
    ordering_key: String,
) -> DeliveryJob {
    DeliveryJob {
        v: 1,
        tenant_id: tenant.to_string(),
        webhook_id: webhook_id.to_owned(),
        delivery_id: delivery_id.to_owned(),
        request_id: request_id.to_owned(),
        ordering_key,
    }
}

/// A message the dispatcher receives: an event from the topic (fan out to
/// the tenant's webhooks) or a delivery job (send one delivery).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum DispatchMessage {
    Job(DeliveryJob),
    Event(Event),
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("unreadable message: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The attempt failed and its retry is scheduled (the message was hidden).
    #[error("delivery failed ({0}); retry scheduled")]
    RetryScheduled(String),
}

/// What happened to one job, for the log line and the tests.
#[derive(Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Delivered,
    AlreadyDelivered,
    Dropped(&'static str),
    DeadLettered,
    Disabled,
}

pub struct Dispatcher {
    pub store: Arc<dyn DeliveryTracking>,
    pub cipher: Arc<dyn SecretCipher>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub sender: Arc<dyn WebhookTransport>,
    pub schedule: RetrySchedule,
    /// Failing longer than this disables the endpoint.
    pub disable_after: Duration,
}

impl Dispatcher {
    /// Creates one delivery per interested webhook (idempotent: delivery ids
    /// derive from the event id) and queues their jobs.
    pub async fn fan_out(&self, event: &Event) -> Result<usize, DispatchError> {
        let tenant = TenantId::parse(&event.tenant_id).map_err(DispatchError::Unreadable)?;
        let now = clock::now_rfc3339();
        let mut jobs = Vec::new();
        for hook in self.store.list_webhooks(&tenant, None).await? {
            if !hook.webhook.wants(event.kind) {
                continue;
            }
            let rec = new_delivery(event, &hook.webhook.id, &now)?;
            let created = self.store.create_delivery(&tenant, &rec).await?;
            // A redelivered event re-queues deliveries not yet attempted (the
            // first try may have stored them and failed to queue the jobs).
            let unsent = created
                || self
                    .store
                    .get_delivery(&tenant, &hook.webhook.id, &rec.delivery.id, None)
                    .await?
                    .is_some_and(|d| {
                        d.delivery.status == DeliveryStatus::Pending
                            && d.delivery.attempts.is_empty()
                    });
            if unsent {
                jobs.push(job(
                    &tenant,
                    &hook.webhook.id,
                    &rec.delivery.id,
                    &event.request_id,
                    event.ordering_key(),
                ));
            }
        }
        self.queue.enqueue(&jobs).await?;
        Ok(jobs.len())
    }

    /// One attempt of one delivery. `attempt` is the job's receive count
    /// (1 for the first try of a series); on a retryable failure the job is
    /// hidden until its next attempt and `RetryScheduled` is returned.
    pub async fn deliver(
        &self,
        job: &DeliveryJob,
        attempt: u32,
        receipt_handle: Option<&str>,
    ) -> Result<JobOutcome, DispatchError> {
        let tenant = TenantId::parse(&job.tenant_id).map_err(DispatchError::Unreadable)?;
        let Some(hook) = self
            .store
            .get_webhook(&tenant, &job.webhook_id, None)
            .await?
        else {
            return Ok(JobOutcome::Dropped("webhook deleted"));
        };
        let Some(rec) = self
            .store
            .get_delivery(&tenant, &job.webhook_id, &job.delivery_id, None)
            .await?
        else {
            return Ok(JobOutcome::Dropped("delivery expired"));
        };
        if rec.delivery.status == DeliveryStatus::Delivered {
            return Ok(JobOutcome::AlreadyDelivered);
        }
        let now = clock::now();
        let now_s = clock::format(now);
        let number = (rec.delivery.attempts.len() + 1).min(MAX_ATTEMPTS_KEPT * 10) as u32;
        if hook.webhook.status != WebhookStatus::Enabled {
            let skipped = Attempt {
                attempt: number,
                at: now_s,
                status_code: None,
                latency_ms: 0,
                outcome: AttemptOutcome::Failed,
                error: Some("not sent: the webhook is disabled".into()),
            };
            self.record(&tenant, job, &skipped, DeliveryStatus::Failed, None)
                .await?;
            return Ok(JobOutcome::Dropped("webhook disabled"));
        }
        let secrets = self.signing_secrets(&tenant, &hook, &now_s).await?;
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let timestamp = now.unix_timestamp();
        let signature = signing::signature_header(
            &secret_refs,
            &rec.delivery.event_id,
            timestamp,
            rec.payload.as_bytes(),
        )
        .map_err(|e| StoreError::Corrupt(format!("signing failed: {e}")))?;
        let headers = vec![
            ("webhook-id".to_owned(), rec.delivery.event_id.clone()),
            ("webhook-timestamp".to_owned(), timestamp.to_string()),
            ("webhook-signature".to_owned(), signature),
            ("x-request-id".to_owned(), rec.request_id.clone()),
        ];
        let result = self
            .sender
            .send(
                &hook.webhook.url,
                &headers,
                rec.payload.clone().into_bytes(),
            )
            .await;
        let mut record = Attempt {
            attempt: number,
            at: now_s.clone(),
            status_code: result.status,
            latency_ms: result.latency_ms,
            outcome: match result.outcome {
                Outcome::Delivered => AttemptOutcome::Delivered,
                Outcome::Failed => AttemptOutcome::Failed,
                Outcome::Gone => AttemptOutcome::Gone,
            },
            error: result.error.clone(),
        };
        tracing::info!(
            webhook_id = %job.webhook_id,
            delivery_id = %job.delivery_id,
            event_id = %rec.delivery.event_id,
            attempt = number,
            status_code = result.status.unwrap_or_default(),
            latency_ms = result.latency_ms,
            outcome = ?record.outcome,
            error = result.error.as_deref().unwrap_or_default(),
            "webhook delivery attempt"
        );
        crate::telemetry::webhook_attempt(
            match result.outcome {
                Outcome::Delivered => "delivered",
                Outcome::Failed => "failed",
                Outcome::Gone => "gone",
            },
            attempt,
        );
        match result.outcome {
            Outcome::Delivered => {
                self.record(&tenant, job, &record, DeliveryStatus::Delivered, None)
                    .await?;
                if hook.webhook.failing_since.is_some() {
                    self.store
                        .set_health(&tenant, &job.webhook_id, &EndpointHealth::Succeeded)
                        .await?;
                }
                Ok(JobOutcome::Delivered)
            }
            Outcome::Gone => {
                self.record(&tenant, job, &record, DeliveryStatus::Failed, None)
                    .await?;
                self.disable(&tenant, job, "the endpoint answered 410 Gone", &now_s)
                    .await?;
                Ok(JobOutcome::Disabled)
            }
            Outcome::Failed => {
                let failing_for = hook
                    .webhook
                    .failing_since
                    .as_deref()
                    .and_then(clock::parse)
                    .map(|since| now - since)
                    .unwrap_or(time::Duration::ZERO);
                if failing_for > self.disable_after {
                    self.record(&tenant, job, &record, DeliveryStatus::Failed, None)
                        .await?;
                    let why = format!(
                        "deliveries failed for more than {} hours",
                        self.disable_after.as_secs() / 3600
                    );
                    self.disable(&tenant, job, &why, &now_s).await?;
                    return Ok(JobOutcome::Disabled);
                }
                if hook.webhook.failing_since.is_none() {
                    self.store
                        .set_health(
                            &tenant,
                            &job.webhook_id,
                            &EndpointHealth::Failing { now: now_s.clone() },
                        )
                        .await?;
                }
                let jitter: f64 = rand::random();
                match self
                    .schedule
                    .delay_after(attempt, jitter, result.retry_after)
                {
                    Some(delay) => {
                        let next = clock::format(now + delay);
                        self.record(&tenant, job, &record, DeliveryStatus::Pending, Some(&next))
                            .await?;
                        if let Some(handle) = receipt_handle {
                            self.queue.retry_in(handle, delay).await?;
                        }
                        Err(DispatchError::RetryScheduled(
                            result.error.unwrap_or_else(|| "failed".into()),
                        ))
                    }
                    None => {
                        record.error = Some(format!(
                            "{}; retries exhausted, dead-lettered",
                            record.error.as_deref().unwrap_or("failed")
                        ));
                        self.record(&tenant, job, &record, DeliveryStatus::Failed, None)
                            .await?;
                        self.queue.dead_letter(job).await?;
                        Ok(JobOutcome::DeadLettered)
                    }
                }
            }
        }
    }

    /// A message that can never be processed goes to the DLQ at once.
    pub async fn reject_unreadable(&self, body: &str, reason: &str) -> Result<(), StoreError> {
        self.queue.dead_letter_unreadable(body, reason).await
    }

    async fn record(
        &self,
        tenant: &TenantId,
        job: &DeliveryJob,
        attempt: &Attempt,
        status: DeliveryStatus,
        next_retry_at: Option<&str>,
    ) -> Result<(), StoreError> {
        self.store
            .record_attempt(
                tenant,
                &job.webhook_id,
                &job.delivery_id,
                attempt,
                status,
                next_retry_at,
            )
            .await
    }

    async fn signing_secrets(
        &self,
        tenant: &TenantId,
        hook: &WebhookRecord,
        now: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for s in hook.secrets.iter().filter(|s| s.valid_at(now)) {
            out.push(
                self.cipher
                    .decrypt(&s.ciphertext, &secret_context(tenant, &hook.webhook.id))
                    .await?,
            );
        }
        Ok(out)
    }

    /// Disables the endpoint. The tenant is told by the `webhook.disabled`
    /// event derived from this change on the table's stream (once: only a
    /// write that changes the status causes it).
    async fn disable(
        &self,
        tenant: &TenantId,
        job: &DeliveryJob,
        reason: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        let changed = self
            .store
            .set_health(
                tenant,
                &job.webhook_id,
                &EndpointHealth::Disable {
                    reason: reason.to_owned(),
                    now: now.to_owned(),
                    request_id: job.request_id.clone(),
                },
            )
            .await?;
        if changed {
            tracing::warn!(webhook_id = %job.webhook_id, reason, "webhook disabled");
        }
        Ok(())
    }
}
