use super::{Recorded, lock, page};
use crate::domain::Fields;
use crate::domain::TenantId;
use crate::domain::change::CommittedChange;
use crate::domain::webhook::{
    Attempt, Delivery, DeliveryStatus, StoredSecret, Webhook, WebhookStatus,
};
use crate::ports::{
    AttemptResult, DeliveryJob, DeliveryQueue, DeliveryRecord, DeliveryTracking, EndpointHealth,
    Page, PageKey, SecretCipher, StoreError, WebhookRecord, WebhookStore, WebhookTransport,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
struct Webhooks {
    /// (tenant, webhook id) -> record.
    hooks: BTreeMap<(String, String), WebhookRecord>,
    /// (tenant, webhook id, delivery id) -> record.
    deliveries: BTreeMap<(String, String, String), DeliveryRecord>,
    /// Status changes of webhooks, as the table's stream reports them.
    changes: Vec<CommittedChange>,
}

/// [`WebhookStore`] in memory, with the DynamoDB adapter's conditions: a
/// delivery is created once, a secret rotation is refused when another one
/// got there first, only an enabled endpoint is marked failing or disabled.
#[derive(Debug, Default)]
pub struct MemoryWebhookStore(Mutex<Webhooks>);

impl MemoryWebhookStore {
    /// The webhook changes committed since the last call (the stream's view).
    pub fn take_changes(&self) -> Vec<CommittedChange> {
        std::mem::take(&mut lock(&self.0).changes)
    }
}

fn hook_key(tenant: &TenantId, id: &str) -> (String, String) {
    (tenant.as_str().to_owned(), id.to_owned())
}

fn delivery_key(tenant: &TenantId, hook: &str, id: &str) -> (String, String, String) {
    (tenant.as_str().to_owned(), hook.to_owned(), id.to_owned())
}

#[async_trait]
impl DeliveryTracking for MemoryWebhookStore {
    async fn list_webhooks(
        &self,
        tenant: &TenantId,
        _fields: Option<&Fields<Webhook>>,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        Ok(lock(&self.0)
            .hooks
            .iter()
            .filter(|((t, _), _)| t == tenant.as_str())
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn get_webhook(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        _fields: Option<&Fields<Webhook>>,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        Ok(lock(&self.0)
            .hooks
            .get(&hook_key(tenant, webhook_id))
            .cloned())
    }

    async fn set_health(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        health: &EndpointHealth,
    ) -> Result<bool, StoreError> {
        let mut guard = lock(&self.0);
        let w = &mut *guard;
        let Some(rec) = w.hooks.get_mut(&hook_key(tenant, webhook_id)) else {
            return Ok(false);
        };
        let hook = &mut rec.webhook;
        let enabled = hook.status == WebhookStatus::Enabled;
        Ok(match health {
            EndpointHealth::Succeeded => {
                hook.status = WebhookStatus::Enabled;
                hook.failing_since = None;
                hook.disabled_reason = None;
                hook.updated_at = crate::clock::now_rfc3339();
                false
            }
            EndpointHealth::Failing { now } => {
                if enabled && hook.failing_since.is_none() {
                    hook.failing_since = Some(now.clone());
                }
                false
            }
            EndpointHealth::Disable {
                reason,
                now,
                request_id,
            } => {
                if enabled {
                    hook.status = WebhookStatus::Disabled;
                    hook.disabled_reason = Some(reason.clone());
                    hook.updated_at = now.clone();
                    w.changes.push(CommittedChange::WebhookWritten {
                        tenant: tenant.to_string(),
                        before: Some(WebhookStatus::Enabled),
                        after: hook.clone(),
                        request_id: request_id.clone(),
                    });
                }
                enabled
            }
        })
    }

    async fn create_delivery(
        &self,
        tenant: &TenantId,
        rec: &DeliveryRecord,
    ) -> Result<bool, StoreError> {
        let mut w = lock(&self.0);
        let k = delivery_key(tenant, &rec.delivery.webhook_id, &rec.delivery.id);
        if w.deliveries.contains_key(&k) {
            return Ok(false);
        }
        w.deliveries.insert(k, rec.clone());
        Ok(true)
    }

    async fn get_delivery(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        delivery_id: &str,
        _fields: Option<&Fields<Delivery>>,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(lock(&self.0)
            .deliveries
            .get(&delivery_key(tenant, webhook_id, delivery_id))
            .cloned())
    }

    async fn record_attempt(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        delivery_id: &str,
        attempt: &Attempt,
        status: DeliveryStatus,
        next_retry_at: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut w = lock(&self.0);
        let Some(rec) = w
            .deliveries
            .get_mut(&delivery_key(tenant, webhook_id, delivery_id))
        else {
            return Err(StoreError::ConditionFailed);
        };
        let d = &mut rec.delivery;
        d.attempts.push(attempt.clone());
        d.status = status;
        d.next_retry_at = next_retry_at.map(str::to_owned);
        d.updated_at = crate::clock::now_rfc3339();
        Ok(())
    }
}

#[async_trait]
impl WebhookStore for MemoryWebhookStore {
    async fn create_webhook(
        &self,
        tenant: &TenantId,
        rec: &WebhookRecord,
    ) -> Result<(), StoreError> {
        let mut w = lock(&self.0);
        let k = hook_key(tenant, &rec.webhook.id);
        if w.hooks.contains_key(&k) {
            return Err(StoreError::ConditionFailed);
        }
        w.hooks.insert(k, rec.clone());
        Ok(())
    }

    async fn delete_webhook(&self, tenant: &TenantId, webhook_id: &str) -> Result<(), StoreError> {
        lock(&self.0)
            .hooks
            .remove(&hook_key(tenant, webhook_id))
            .map(|_| ())
            .ok_or(StoreError::ConditionFailed)
    }

    async fn replace_secrets(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        expected: &[StoredSecret],
        secrets: &[StoredSecret],
        now: &str,
    ) -> Result<(), StoreError> {
        let mut w = lock(&self.0);
        let Some(rec) = w.hooks.get_mut(&hook_key(tenant, webhook_id)) else {
            return Err(StoreError::ConditionFailed);
        };
        // As the adapter's `secrets[0].ciphertext = :newest`.
        if rec.secrets.first().map(|s| &s.ciphertext) != expected.first().map(|s| &s.ciphertext) {
            return Err(StoreError::ConditionFailed);
        }
        rec.secrets = secrets.to_vec();
        rec.webhook.updated_at = now.to_owned();
        Ok(())
    }

    async fn reopen_delivery(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        delivery_id: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        let mut w = lock(&self.0);
        let Some(rec) = w
            .deliveries
            .get_mut(&delivery_key(tenant, webhook_id, delivery_id))
        else {
            return Err(StoreError::ConditionFailed);
        };
        rec.delivery.status = DeliveryStatus::Pending;
        rec.delivery.next_retry_at = None;
        rec.delivery.updated_at = now.to_owned();
        Ok(())
    }

    /// Newest first (delivery ids sort by time, as the adapter's keys).
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        limit: u32,
        start: Option<PageKey>,
        _fields: Option<&Fields<Delivery>>,
    ) -> Result<Page<Delivery>, StoreError> {
        let newest_first: Vec<Delivery> = lock(&self.0)
            .deliveries
            .iter()
            .rev()
            .filter(|((t, h, _), _)| t == tenant.as_str() && h == webhook_id)
            .map(|(_, r)| r.delivery.clone())
            .collect();
        Ok(page(
            &newest_first,
            limit,
            start.as_ref(),
            "delivery_id",
            |d| &d.id,
        ))
    }
}

/// [`SecretCipher`] that binds the plaintext to its context as KMS does
/// (decrypting under another context fails) without any secrecy: for
/// tests only.
#[derive(Debug, Default)]
pub struct MemoryCipher;

fn context_tag(context: &[(&str, &str)]) -> String {
    context
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[async_trait]
impl SecretCipher for MemoryCipher {
    async fn encrypt(
        &self,
        plaintext: &str,
        context: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        Ok(format!("{}|{plaintext}", context_tag(context)))
    }

    async fn decrypt(
        &self,
        ciphertext: &str,
        context: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        ciphertext
            .strip_prefix(&format!("{}|", context_tag(context)))
            .map(str::to_owned)
            .ok_or_else(|| {
                StoreError::Backend("InvalidCiphertextException: context mismatch".into())
            })
    }
}

/// What the dispatcher asked of its queue, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueCall {
    Enqueued(DeliveryJob),
    RetryIn(String, Duration),
    DeadLettered(DeliveryJob),
    DeadLetteredUnreadable(String),
    Released(Vec<String>),
}

/// [`DeliveryQueue`] that records every call.
pub type MemoryDeliveryQueue = Recorded<QueueCall>;

#[async_trait]
impl DeliveryQueue for MemoryDeliveryQueue {
    async fn enqueue(&self, jobs: &[DeliveryJob]) -> Result<(), StoreError> {
        self.record(jobs.iter().cloned().map(QueueCall::Enqueued));
        Ok(())
    }

    async fn retry_in(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError> {
        self.record([QueueCall::RetryIn(receipt_handle.to_owned(), delay)]);
        Ok(())
    }

    async fn dead_letter(&self, job: &DeliveryJob) -> Result<(), StoreError> {
        self.record([QueueCall::DeadLettered(job.clone())]);
        Ok(())
    }

    async fn dead_letter_unreadable(&self, body: &str, _reason: &str) -> Result<(), StoreError> {
        self.record([QueueCall::DeadLetteredUnreadable(body.to_owned())]);
        Ok(())
    }

    async fn release(&self, receipt_handles: &[String]) -> Result<(), StoreError> {
        self.record([QueueCall::Released(receipt_handles.to_vec())]);
        Ok(())
    }
}

/// One request the dispatcher sent.
#[derive(Clone, Debug)]
pub struct SentRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// [`WebhookTransport`] that answers from a script (one result per send,
/// in order; 2xx once the script runs out) and keeps what was sent.
#[derive(Debug, Default)]
pub struct ScriptedTransport {
    script: Mutex<VecDeque<AttemptResult>>,
    sent: Mutex<Vec<SentRequest>>,
}

impl ScriptedTransport {
    pub fn answer(&self, result: AttemptResult) {
        lock(&self.script).push_back(result);
    }

    pub fn sent(&self) -> Vec<SentRequest> {
        lock(&self.sent).clone()
    }
}

#[async_trait]
impl WebhookTransport for ScriptedTransport {
    async fn send(&self, url: &str, headers: &[(String, String)], body: Vec<u8>) -> AttemptResult {
        lock(&self.sent).push(SentRequest {
            url: url.to_owned(),
            headers: headers.to_vec(),
            body,
        });
        lock(&self.script).pop_front().unwrap_or(AttemptResult {
            status: Some(204),
            latency_ms: 1,
            error: None,
            retry_after: None,
            outcome: crate::ports::Outcome::Delivered,
        })
    }
}
