//! The webhook use cases on the in-memory adapters: registration, secret
//! rotation, fan-out, signed delivery, retry scheduling, dead-lettering and
//! disabling.

use super::*;
use crate::domain::event::EventType;
use crate::memory::{
    MemoryCipher, MemoryDeliveryQueue, MemoryWebhookStore, QueueCall, ScriptedTransport,
    SentRequest,
};
use crate::ports::AttemptResult;
use serde_json::json;

/// Registration accepts the literal loopback address (the local stack's
/// policy), so no name is resolved.
const LOCAL: TargetPolicy = TargetPolicy {
    allow_loopback_http: true,
};

struct World {
    store: Arc<MemoryWebhookStore>,
    queue: Arc<MemoryDeliveryQueue>,
    transport: Arc<ScriptedTransport>,
    service: WebhooksService,
    dispatcher: Dispatcher,
    tenant: TenantId,
}

fn world() -> World {
    let store = Arc::new(MemoryWebhookStore::default());
    let cipher = Arc::new(MemoryCipher);
    let queue = Arc::new(MemoryDeliveryQueue::default());
    let transport = Arc::new(ScriptedTransport::default());
    World {
        service: WebhooksService::new(store.clone(), cipher.clone(), queue.clone(), LOCAL),
        dispatcher: Dispatcher {
            store: store.clone(),
            cipher,
            queue: queue.clone(),
            sender: transport.clone(),
            schedule: RetrySchedule::parse("5,60").unwrap(),
            disable_after: Duration::from_secs(3 * 24 * 3600),
        },
        store,
        queue,
        transport,
        tenant: TenantId::parse("acme").unwrap(),
    }
}

fn failed(status: u16) -> AttemptResult {
    AttemptResult {
        status: Some(status),
        latency_ms: 3,
        error: Some(format!("HTTP {status}")),
        retry_after: None,
        outcome: if status == 410 {
            Outcome::Gone
        } else {
            Outcome::Failed
        },
    }
}

/// The headers a request was sent with, as a receiver reads them.
fn header_map(sent: &SentRequest) -> http::HeaderMap {
    sent.headers
        .iter()
        .map(|(name, value)| {
            (
                http::HeaderName::try_from(name.as_str()).unwrap(),
                value.parse().unwrap(),
            )
        })
        .collect()
}

impl World {
    async fn register(&self, events: &[&str]) -> CreatedWebhook {
        self.service
            .create(
                &self.tenant,
                &json!({"url": "https://127.0.0.1:8443/hooks", "events": events}),
            )
            .await
            .unwrap()
    }

    fn deleted_event(&self) -> Event {
        Event::item_deleted(
            self.tenant.as_str(),
            "MUG-1",
            &format!("del_{}", ulid::Ulid::new()),
            "2026-12-03T10:00:00Z",
            "req-1",
            None,
        )
    }

    /// Fans an event out and returns the jobs it queued.
    async fn fan_out(&self, event: &Event) -> Vec<DeliveryJob> {
        self.dispatcher.fan_out(event).await.unwrap();
        self.queue
            .take()
            .into_iter()
            .filter_map(|c| match c {
                QueueCall::Enqueued(job) => Some(job),
                _ => None,
            })
            .collect()
    }

    async fn delivery(&self, job: &DeliveryJob) -> Delivery {
        self.service
            .delivery(&self.tenant, &job.webhook_id, &job.delivery_id, None)
            .await
            .unwrap()
    }

    async fn webhook(&self, id: &str) -> Webhook {
        self.service.get(&self.tenant, id, None).await.unwrap()
    }
}

#[tokio::test]
async fn an_event_goes_to_the_webhooks_that_want_it_once_however_often_it_arrives() {
    let w = world();
    let wants = w.register(&["item.deleted"]).await;
    w.register(&["batch.completed"]).await;
    let event = w.deleted_event();
    let jobs = w.fan_out(&event).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].webhook_id, wants.webhook.id);
    // SNS delivers at least once: the same event again queues its unsent
    // delivery again (the first try may have failed to queue it) but
    // creates no second delivery.
    assert_eq!(w.fan_out(&event).await, jobs);
    let outcome = w.dispatcher.deliver(&jobs[0], 1, None).await.unwrap();
    assert_eq!(outcome, JobOutcome::Delivered);
    assert!(
        w.fan_out(&event).await.is_empty(),
        "delivered: not queued again"
    );
    let again = w.dispatcher.deliver(&jobs[0], 1, None).await.unwrap();
    assert_eq!(again, JobOutcome::AlreadyDelivered);
    assert_eq!(w.transport.sent().len(), 1, "one POST for one event");
}

#[tokio::test]
async fn a_delivery_is_signed_with_the_secret_the_tenant_was_shown() {
    let w = world();
    let created = w.register(&["item.deleted"]).await;
    let jobs = w.fan_out(&w.deleted_event()).await;
    w.dispatcher.deliver(&jobs[0], 1, None).await.unwrap();
    let sent = w.transport.sent().remove(0);
    assert_eq!(sent.url, "https://127.0.0.1:8443/hooks");
    let headers = header_map(&sent);
    signing::verify(&created.secret, &headers, &sent.body).unwrap();
    assert!(signing::verify(&signing::generate_secret(), &headers, &sent.body).is_err());
    let delivery = w.delivery(&jobs[0]).await;
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    assert_eq!(delivery.attempts.len(), 1);
}

#[tokio::test]
async fn after_a_rotation_deliveries_carry_both_signatures_until_the_overlap_ends() {
    let w = world();
    let created = w.register(&["item.deleted"]).await;
    let rotated = w
        .service
        .rotate_secret(&w.tenant, &created.webhook.id)
        .await
        .unwrap();
    assert_ne!(rotated.secret, created.secret);
    let jobs = w.fan_out(&w.deleted_event()).await;
    w.dispatcher.deliver(&jobs[0], 1, None).await.unwrap();
    let sent = w.transport.sent().remove(0);
    let headers = header_map(&sent);
    for secret in [&created.secret, &rotated.secret] {
        signing::verify(secret, &headers, &sent.body).unwrap();
    }
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_on_the_schedule_then_dead_lettered() {
    let w = world();
    let hook = w.register(&["item.deleted"]).await.webhook;
    let jobs = w.fan_out(&w.deleted_event()).await;
    let job = &jobs[0];
    for _ in 0..3 {
        w.transport.answer(failed(503));
    }
    for attempt in 1..=2 {
        let retry = w.dispatcher.deliver(job, attempt, Some("receipt")).await;
        assert!(
            matches!(retry, Err(DispatchError::RetryScheduled(_))),
            "{retry:?}"
        );
        let calls = w.queue.take();
        let [QueueCall::RetryIn(handle, delay)] = calls.as_slice() else {
            panic!("one retry scheduled: {calls:?}");
        };
        assert_eq!(handle, "receipt");
        let scheduled = if attempt == 1 { 5 } else { 60 };
        assert!(
            delay.as_secs_f64() >= f64::from(scheduled) * 0.5
                && delay.as_secs_f64() <= f64::from(scheduled) * 1.5,
            "attempt {attempt}: {delay:?}"
        );
        assert_eq!(w.delivery(job).await.status, DeliveryStatus::Pending);
    }
    assert!(w.webhook(&hook.id).await.failing_since.is_some());
    let last = w.dispatcher.deliver(job, 3, Some("receipt")).await.unwrap();
    assert_eq!(last, JobOutcome::DeadLettered);
    assert_eq!(w.queue.take(), [QueueCall::DeadLettered(job.clone())]);
    let delivery = w.delivery(job).await;
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts.len(), 3);
    assert!(
        delivery.attempts[2]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("dead-lettered"))
    );
}

#[tokio::test]
async fn gone_disables_the_webhook_once_and_tells_the_tenant() {
    let w = world();
    let hook = w.register(&["item.deleted"]).await.webhook;
    let jobs = w.fan_out(&w.deleted_event()).await;
    w.transport.answer(failed(410));
    let outcome = w.dispatcher.deliver(&jobs[0], 1, None).await.unwrap();
    assert_eq!(outcome, JobOutcome::Disabled);
    let disabled = w.webhook(&hook.id).await;
    assert_eq!(disabled.status, WebhookStatus::Disabled);
    // Told by the event the disabling write causes on the stream, once.
    let told: Vec<Event> = crate::outbox::EventsOutbox::events_of(&w.store.take_changes());
    let kinds: Vec<EventType> = told.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventType::WebhookDisabled]);
    assert_eq!(told[0].data["webhook_id"], hook.id.as_str());
    assert_eq!(told[0].request_id, jobs[0].request_id);
    // A disabled endpoint gets no more events, and a queued job is dropped.
    assert!(w.fan_out(&w.deleted_event()).await.is_empty());
    let dropped = w.dispatcher.deliver(&jobs[0], 2, None).await.unwrap();
    assert_eq!(dropped, JobOutcome::Dropped("webhook disabled"));
    assert_eq!(w.transport.sent().len(), 1);
    // Enabling it again clears the failure.
    let enabled = w.service.enable(&w.tenant, &hook.id).await.unwrap();
    assert_eq!(
        (enabled.status, enabled.disabled_reason),
        (WebhookStatus::Enabled, None)
    );
}

#[tokio::test]
async fn an_endpoint_failing_longer_than_the_limit_is_disabled() {
    let w = world();
    let hook = w.register(&["item.deleted"]).await.webhook;
    // It has been failing for four days.
    let since = clock::format(clock::now() - time::Duration::days(4));
    w.store
        .set_health(&w.tenant, &hook.id, &EndpointHealth::Failing { now: since })
        .await
        .unwrap();
    let jobs = w.fan_out(&w.deleted_event()).await;
    w.transport.answer(failed(500));
    let outcome = w.dispatcher.deliver(&jobs[0], 1, Some("r")).await.unwrap();
    assert_eq!(outcome, JobOutcome::Disabled);
    assert!(
        w.webhook(&hook.id)
            .await
            .disabled_reason
            .is_some_and(|r| r.contains("72 hours"))
    );
    assert!(
        w.queue.take().is_empty(),
        "no retry for a disabled endpoint"
    );
}

#[tokio::test]
async fn a_delivery_of_a_deleted_webhook_is_dropped() {
    let w = world();
    let hook = w.register(&["item.deleted"]).await.webhook;
    let jobs = w.fan_out(&w.deleted_event()).await;
    w.service.delete(&w.tenant, &hook.id).await.unwrap();
    let outcome = w.dispatcher.deliver(&jobs[0], 1, None).await.unwrap();
    assert_eq!(outcome, JobOutcome::Dropped("webhook deleted"));
    assert!(w.transport.sent().is_empty());
}

#[tokio::test]
async fn registration_refuses_private_targets_and_more_than_the_limit() {
    let w = world();
    for url in [
        "https://10.0.0.1/hook",
        "http://example.com/hook",
        "https://[::1]/",
    ] {
        let refused = w
            .service
            .create(&w.tenant, &json!({"url": url, "events": ["item.deleted"]}))
            .await;
        assert!(
            matches!(refused, Err(ApiError::WebhookUrlRefused { .. })),
            "{url}: {refused:?}"
        );
    }
    for _ in 0..MAX_WEBHOOKS_PER_TENANT {
        w.register(&["item.deleted"]).await;
    }
    let over = w
        .service
        .create(
            &w.tenant,
            &json!({"url": "https://127.0.0.1/x", "events": ["item.deleted"]}),
        )
        .await;
    assert!(
        matches!(over, Err(ApiError::WebhookLimitReached { .. })),
        "{over:?}"
    );
}
