//! Webhooks and their deliveries in the stock table.
//!
//! | record   | pk                          | sk             |
//! |----------|-----------------------------|----------------|
//! | webhook  | `T#<tenant>#WH`             | `WH#<id>`      |
//! | delivery | `T#<tenant>#WH#<id>`        | `D#<delivery>` |
//!
//! Delivery ids derive from event ids (ULIDs), so a query in reverse lists
//! the newest first; deliveries expire (TTL) after 30 days.

use super::error::{classify, condition};
use super::items::start_key;
use super::projection::{Decoder, StoredFields, Unread, project_get, project_query};
use super::{Attrs, n, query_page, s, to_attrs};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use stockroom_app::ports::{
    DeliveryRecord, DeliveryTracking, EndpointHealth, Page, PageKey, StoreError, WebhookRecord,
    WebhookStore,
};
use stockroom_domain::event::EventType;
use stockroom_domain::webhook::{
    Attempt, Delivery, DeliveryStatus, StoredSecret, Webhook, WebhookStatus,
};
use stockroom_domain::{Fields, TenantId};

const DELIVERY_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// A webhook's and a delivery's `id` are stored as `webhook_id` and
/// `delivery_id` (the records share a table with other kinds); every other
/// field under its own name.
const WEBHOOK_STORED: StoredFields = StoredFields {
    sources: &[("id", &["webhook_id"])],
};
const DELIVERY_STORED: StoredFields = StoredFields {
    sources: &[("id", &["delivery_id"])],
};

#[derive(Clone, Debug)]
pub struct DynamoWebhookStore {
    client: Client,
    table: String,
}

impl DynamoWebhookStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), table)
    }

    /// One record by key (strongly consistent), in its stored shape, whole
    /// or only what `projection` names.
    async fn get<R: serde::de::DeserializeOwned + Unread>(
        &self,
        pk: String,
        sk: String,
        projection: Option<super::projection::Projection>,
    ) -> Result<Option<R>, StoreError> {
        let decoder = Decoder::<R>::new(projection.is_some())?;
        let get = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true);
        let out = project_get(get, projection)
            .send()
            .await
            .map_err(classify)?;
        out.item.map(|attrs| decoder.decode(attrs)).transpose()
    }

    /// Writes a record unless its key exists (`ConditionFailed` then).
    async fn put_new<R: Serialize>(&self, record: &R) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attrs(record)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(condition)?;
        Ok(())
    }
}

fn webhooks_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#WH")
}
/// The sort key prefix of webhook records (the stream tells them by it).
pub(super) const WEBHOOK_PREFIX: &str = "WH#";

fn webhook_sk(id: &str) -> String {
    format!("{WEBHOOK_PREFIX}{id}")
}
fn deliveries_pk(tenant: &TenantId, webhook_id: &str) -> String {
    format!("T#{tenant}#WH#{webhook_id}")
}
fn delivery_sk(id: &str) -> String {
    format!("D#{id}")
}
fn key(pk: String, sk: String) -> Attrs {
    Attrs::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

#[derive(Serialize, Deserialize)]
pub(super) struct WebhookStored {
    pk: String,
    sk: String,
    tenant_id: String,
    webhook_id: String,
    url: String,
    events: Vec<EventType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    status: WebhookStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failing_since: Option<String>,
    created_at: String,
    updated_at: String,
    secrets: Vec<StoredSecret>,
    /// The request whose delivery disabled it (the `webhook.disabled`
    /// event, derived from the table's stream, names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled_by_request: Option<String>,
}

impl WebhookStored {
    pub(super) fn status(&self) -> WebhookStatus {
        self.status
    }

    /// Tenant, the request that disabled it (if any) and the webhook.
    pub(super) fn into_change(mut self) -> (String, String, Webhook) {
        let tenant = std::mem::take(&mut self.tenant_id);
        let request = self.disabled_by_request.take().unwrap_or_default();
        (tenant, request, WebhookRecord::from(self).webhook)
    }
}

impl Unread for WebhookStored {
    fn unread() -> Self {
        Self {
            pk: String::new(),
            sk: String::new(),
            tenant_id: String::new(),
            webhook_id: String::new(),
            url: String::new(),
            events: Vec::new(),
            description: None,
            status: WebhookStatus::Enabled,
            disabled_reason: None,
            failing_since: None,
            created_at: String::new(),
            updated_at: String::new(),
            secrets: Vec::new(),
            disabled_by_request: None,
        }
    }
}

impl From<WebhookStored> for WebhookRecord {
    fn from(r: WebhookStored) -> Self {
        WebhookRecord {
            webhook: Webhook {
                id: r.webhook_id,
                url: r.url,
                events: r.events,
                description: r.description,
                status: r.status,
                disabled_reason: r.disabled_reason,
                failing_since: r.failing_since,
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
            secrets: r.secrets,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct DeliveryStored {
    pk: String,
    sk: String,
    tenant_id: String,
    delivery_id: String,
    webhook_id: String,
    event_id: String,
    event_type: EventType,
    status: DeliveryStatus,
    attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_retry_at: Option<String>,
    created_at: String,
    updated_at: String,
    payload: String,
    request_id: String,
    expires_at: i64,
}

impl Unread for DeliveryStored {
    fn unread() -> Self {
        Self {
            pk: String::new(),
            sk: String::new(),
            tenant_id: String::new(),
            delivery_id: String::new(),
            webhook_id: String::new(),
            event_id: String::new(),
            event_type: EventType::WebhookPing,
            status: DeliveryStatus::Pending,
            attempts: Vec::new(),
            next_retry_at: None,
            created_at: String::new(),
            updated_at: String::new(),
            payload: String::new(),
            request_id: String::new(),
            expires_at: 0,
        }
    }
}

fn delivery_view(r: &DeliveryStored) -> Delivery {
    Delivery {
        id: r.delivery_id.clone(),
        webhook_id: r.webhook_id.clone(),
        event_id: r.event_id.clone(),
        event_type: r.event_type,
        status: r.status,
        attempts: r.attempts.clone(),
        next_retry_at: r.next_retry_at.clone(),
        created_at: r.created_at.clone(),
        updated_at: r.updated_at.clone(),
    }
}

impl From<DeliveryStored> for DeliveryRecord {
    fn from(r: DeliveryStored) -> Self {
        DeliveryRecord {
            delivery: delivery_view(&r),
            payload: r.payload,
            request_id: r.request_id,
        }
    }
}

impl From<DeliveryStored> for Delivery {
    fn from(r: DeliveryStored) -> Self {
        delivery_view(&r)
    }
}

fn status_value<T: Serialize>(v: T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl DeliveryTracking for DynamoWebhookStore {
    async fn list_webhooks(
        &self,
        tenant: &TenantId,
        fields: Option<&Fields<Webhook>>,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let decoder = Decoder::<WebhookStored>::new(fields.is_some())?;
        let mut out = Vec::new();
        let mut start: Option<Attrs> = None;
        loop {
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", s(webhooks_pk(tenant)))
                .consistent_read(true)
                .set_exclusive_start_key(start);
            let page = project_query(query, WEBHOOK_STORED.projection(fields))
                .send()
                .await
                .map_err(classify)?;
            for item in page.items.unwrap_or_default() {
                out.push(decoder.decode(item)?.into());
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn get_webhook(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        fields: Option<&Fields<Webhook>>,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let stored: Option<WebhookStored> = self
            .get(
                webhooks_pk(tenant),
                webhook_sk(webhook_id),
                WEBHOOK_STORED.projection(fields),
            )
            .await?;
        Ok(stored.map(Into::into))
    }

    async fn set_health(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        health: &EndpointHealth,
    ) -> Result<bool, StoreError> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(webhooks_pk(tenant), webhook_sk(webhook_id))))
            .expression_attribute_names("#st", "status");
        let req = match health {
            EndpointHealth::Succeeded => req
                .update_expression(
                    "SET #st = :enabled, updated_at = :now REMOVE failing_since, disabled_reason, disabled_by_request",
                )
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":enabled", status_value(WebhookStatus::Enabled)?)
                .expression_attribute_values(":now", s(stockroom_app::clock::now_rfc3339())),
            EndpointHealth::Failing { now } => req
                .update_expression("SET failing_since = if_not_exists(failing_since, :now)")
                .condition_expression("attribute_exists(pk) AND #st = :enabled")
                .expression_attribute_values(":enabled", status_value(WebhookStatus::Enabled)?)
                .expression_attribute_values(":now", s(now)),
            EndpointHealth::Disable {
                reason,
                now,
                request_id,
            } => req
                .update_expression("SET #st = :disabled, disabled_reason = :why, updated_at = :now, disabled_by_request = :r")
                .expression_attribute_values(":r", s(request_id))
                .condition_expression("#st = :enabled")
                .expression_attribute_values(":enabled", status_value(WebhookStatus::Enabled)?)
                .expression_attribute_values(":disabled", status_value(WebhookStatus::Disabled)?)
                .expression_attribute_values(":why", s(reason))
                .expression_attribute_values(":now", s(now)),
        };
        match req.send().await.map_err(condition) {
            Ok(_) => Ok(matches!(health, EndpointHealth::Disable { .. })),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_delivery(
        &self,
        tenant: &TenantId,
        rec: &DeliveryRecord,
    ) -> Result<bool, StoreError> {
        let d = &rec.delivery;
        let stored = DeliveryStored {
            pk: deliveries_pk(tenant, &d.webhook_id),
            sk: delivery_sk(&d.id),
            tenant_id: tenant.to_string(),
            delivery_id: d.id.clone(),
            webhook_id: d.webhook_id.clone(),
            event_id: d.event_id.clone(),
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts.clone(),
            next_retry_at: d.next_retry_at.clone(),
            created_at: d.created_at.clone(),
            updated_at: d.updated_at.clone(),
            payload: rec.payload.clone(),
            request_id: rec.request_id.clone(),
            expires_at: stockroom_app::clock::now().unix_timestamp() + DELIVERY_TTL_SECONDS,
        };
        match self.put_new(&stored).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn get_delivery(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        delivery_id: &str,
        fields: Option<&Fields<Delivery>>,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let stored: Option<DeliveryStored> = self
            .get(
                deliveries_pk(tenant, webhook_id),
                delivery_sk(delivery_id),
                DELIVERY_STORED.projection(fields),
            )
            .await?;
        Ok(stored.map(Into::into))
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
        let now = stockroom_app::clock::now_rfc3339();
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(
                deliveries_pk(tenant, webhook_id),
                delivery_sk(delivery_id),
            )))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":a", status_value(vec![attempt])?)
            .expression_attribute_values(":st", status_value(status)?)
            .expression_attribute_values(":now", s(now));
        let req = match next_retry_at {
            Some(next) => req
                .update_expression(
                    "SET attempts = list_append(attempts, :a), #st = :st, updated_at = :now, next_retry_at = :next",
                )
                .expression_attribute_values(":next", s(next)),
            None => req.update_expression(
                "SET attempts = list_append(attempts, :a), #st = :st, updated_at = :now REMOVE next_retry_at",
            ),
        };
        req.send().await.map_err(condition)?;
        Ok(())
    }
}

#[async_trait]
impl WebhookStore for DynamoWebhookStore {
    async fn create_webhook(
        &self,
        tenant: &TenantId,
        rec: &WebhookRecord,
    ) -> Result<(), StoreError> {
        let w = &rec.webhook;
        let stored = WebhookStored {
            pk: webhooks_pk(tenant),
            sk: webhook_sk(&w.id),
            tenant_id: tenant.to_string(),
            webhook_id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            description: w.description.clone(),
            status: w.status,
            disabled_reason: w.disabled_reason.clone(),
            failing_since: w.failing_since.clone(),
            created_at: w.created_at.clone(),
            updated_at: w.updated_at.clone(),
            secrets: rec.secrets.clone(),
            disabled_by_request: None,
        };
        self.put_new(&stored).await
    }

    async fn delete_webhook(&self, tenant: &TenantId, webhook_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(webhooks_pk(tenant), webhook_sk(webhook_id))))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map_err(condition)?;
        Ok(())
    }

    async fn replace_secrets(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        expected: &[StoredSecret],
        secrets: &[StoredSecret],
        now: &str,
    ) -> Result<(), StoreError> {
        let newest = expected
            .first()
            .map(|s| s.ciphertext.clone())
            .unwrap_or_default();
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(webhooks_pk(tenant), webhook_sk(webhook_id))))
            .update_expression("SET secrets = :new, updated_at = :now")
            .condition_expression("secrets[0].ciphertext = :newest")
            .expression_attribute_values(":new", status_value(secrets)?)
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":newest", s(newest))
            .send()
            .await
            .map_err(condition)?;
        Ok(())
    }

    async fn reopen_delivery(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        delivery_id: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(
                deliveries_pk(tenant, webhook_id),
                delivery_sk(delivery_id),
            )))
            .update_expression(
                "SET #st = :pending, updated_at = :now, expires_at = :exp REMOVE next_retry_at",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":pending", status_value(DeliveryStatus::Pending)?)
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(
                ":exp",
                n(stockroom_app::clock::now().unix_timestamp() + DELIVERY_TTL_SECONDS),
            )
            .send()
            .await
            .map_err(condition)?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Delivery>>,
    ) -> Result<Page<Delivery>, StoreError> {
        let projection = DELIVERY_STORED.projection(fields);
        let decoder = Decoder::<DeliveryStored>::new(projection.is_some())?;
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", s(deliveries_pk(tenant, webhook_id)))
            .scan_index_forward(false)
            .limit(limit as i32)
            .set_exclusive_start_key(start_key(start));
        let out = project_query(query, projection)
            .send()
            .await
            .map_err(classify)?;
        query_page::<DeliveryStored, Delivery>(out, &decoder)
    }
}
