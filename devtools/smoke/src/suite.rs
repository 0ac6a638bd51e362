//! The run: its state, the bounded runner that turns each check into a row,
//! the order of the checks, and the cleanup that follows them whatever
//! happened.

use crate::api::Api;
use crate::config::{CLEANUP_RESERVE, Config};
use crate::report::{Outcome, Row};
use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

/// A plain call and its checks of the answer.
pub const QUICK: Duration = Duration::from_secs(30);
/// A batch: submitted, then polled until terminal.
pub const BATCH: Duration = Duration::from_secs(180);
/// A webhook delivery: queued, dispatched, recorded.
pub const DELIVERY: Duration = Duration::from_secs(90);

/// A check that did not run, and why (a row `SKIP`, never a pass).
#[derive(Debug)]
pub struct Skipped(pub String);

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Skipped {}

/// Ends a check as skipped because `what` (an earlier check) did not leave
/// what it needs.
pub fn needs(what: &str) -> anyhow::Error {
    Skipped(format!("not run: needs {what}, which failed")).into()
}

/// What the run created, so that cleanup removes it even after a failure.
#[derive(Debug, Default)]
pub struct Created {
    pub skus: BTreeSet<String>,
    pub keys: Vec<String>,
    pub webhooks: Vec<String>,
}

/// The item the items checks share.
#[derive(Debug, Clone)]
pub struct Item {
    pub sku: String,
    pub etag: String,
}

/// The items:read key the keys checks share.
#[derive(Debug, Clone)]
pub struct ScopedKey {
    pub id: String,
    pub key: String,
}

pub struct Suite {
    pub api: Api,
    pub cfg: Config,
    /// `SMOKE-<ulid>`: every sku, key name and idempotency key starts with it.
    pub run: String,
    checks_deadline: Instant,
    pub rows: Vec<Row>,
    pub created: Created,
    pub item: Option<Item>,
    pub scoped: Option<ScopedKey>,
    pub webhook: Option<String>,
}

/// Runs one check within its bound and records its row.
macro_rules! check {
    ($suite:ident, $name:expr, $limit:expr, $body:expr) => {{
        let started = Instant::now();
        let result = match $suite.budget($limit) {
            None => Err(anyhow::anyhow!("not run: the suite's time budget is spent")),
            Some(limit) => match tokio::time::timeout(limit, $body).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!(
                    "timed out after {:.0} s",
                    limit.as_secs_f64()
                )),
            },
        };
        $suite.record($name, started, result);
    }};
}

impl Suite {
    pub fn new(cfg: Config, started: Instant) -> anyhow::Result<Self> {
        let api = Api::new(&cfg.url, &cfg.key)?;
        Ok(Self {
            api,
            run: format!("SMOKE-{}", ulid::Ulid::new()),
            checks_deadline: started + cfg.timeout - CLEANUP_RESERVE,
            cfg,
            rows: Vec::new(),
            created: Created::default(),
            item: None,
            scoped: None,
            webhook: None,
        })
    }

    /// A sku of this run: `SMOKE-<ulid>-<suffix>`.
    pub fn sku(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.run)
    }

    /// A sku of this run that cleanup deletes: registered before the call
    /// that may create it.
    pub fn new_sku(&mut self, suffix: &str) -> String {
        let sku = self.sku(suffix);
        self.created.skus.insert(sku.clone());
        sku
    }

    /// The time a check may take: its own bound, cut to what is left of the
    /// suite's; `None` once that is spent.
    fn budget(&self, limit: Duration) -> Option<Duration> {
        let left = self
            .checks_deadline
            .saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| limit.min(left))
    }

    pub fn record(&mut self, check: &str, started: Instant, result: anyhow::Result<String>) {
        let (outcome, detail) = match result {
            Ok(detail) => (Outcome::Pass, detail),
            Err(e) => match e.downcast_ref::<Skipped>() {
                Some(skipped) => (Outcome::Skip, skipped.0.clone()),
                None => (Outcome::Fail, format!("{e:#}")),
            },
        };
        self.rows.push(Row {
            check: check.to_owned(),
            outcome,
            took: started.elapsed(),
            detail,
        });
    }

    /// Every check, in order; later ones use what earlier ones created.
    pub async fn run_checks(&mut self) {
        check!(self, "health", QUICK, self.health());
        check!(
            self,
            "routing: 404, 405 with Allow, OPTIONS",
            QUICK,
            self.routing()
        );
        check!(self, "auth: no key -> 401", QUICK, self.no_key());
        check!(self, "auth: unknown key -> 401", QUICK, self.unknown_key());
        check!(
            self,
            "auth: STOCKROOM_KEY accepted",
            QUICK,
            self.key_accepted()
        );
        if self.rows.last().is_some_and(|r| r.outcome == Outcome::Fail) {
            // Every other check would fail the same way.
            self.rows.push(Row {
                check: "(the other checks)".into(),
                outcome: Outcome::Skip,
                took: Duration::ZERO,
                detail: "not run: the key is refused".into(),
            });
            return;
        }
        check!(self, "items: create", QUICK, self.item_create());
        check!(self, "items: read, ETag, 304", QUICK, self.item_read());
        check!(
            self,
            "items: update, If-Match, 412",
            QUICK,
            self.item_update()
        );
        check!(self, "items: list, paged", QUICK, self.item_list());
        check!(
            self,
            "items: unknown sku -> 404",
            QUICK,
            self.item_unknown()
        );
        check!(
            self,
            "adjust: Idempotency-Key replay",
            QUICK,
            self.adjust_replay()
        );
        check!(
            self,
            "adjust: key reused -> 422",
            QUICK,
            self.adjust_reuse()
        );
        check!(
            self,
            "batch: isolated, with deletes",
            BATCH,
            self.batch_isolated()
        );
        check!(
            self,
            "batch: atomic, with delete",
            BATCH,
            self.batch_atomic()
        );
        check!(
            self,
            "batch: upload file (splitter)",
            BATCH,
            self.batch_upload()
        );
        check!(
            self,
            "keys: create items:read key",
            QUICK,
            self.key_create()
        );
        check!(self, "keys: scoped key reads", QUICK, self.key_reads());
        check!(
            self,
            "keys: scoped write -> 403",
            QUICK,
            self.key_write_refused()
        );
        check!(self, "keys: revoke", QUICK, self.key_revoke());
        let wait = self.cfg.revocation_wait + QUICK;
        check!(
            self,
            "keys: revoked key -> 401",
            wait,
            self.key_revoked_refused()
        );
        if self.cfg.webhook_url.is_some() {
            check!(self, "webhooks: register", QUICK, self.webhook_register());
            check!(
                self,
                "webhooks: test ping delivered",
                DELIVERY,
                self.webhook_ping()
            );
            check!(
                self,
                "webhooks: low-stock event delivered",
                DELIVERY,
                self.webhook_low_stock()
            );
            check!(self, "webhooks: delete", QUICK, self.webhook_delete());
        }
        check!(self, "items: delete, then 404", QUICK, self.item_delete());
    }

    /// Deletes what the run created (items, keys, webhooks); one row.
    pub async fn cleanup(&mut self, limit: Duration) {
        let started = Instant::now();
        let result = match tokio::time::timeout(limit, self.remove_created()).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "timed out after {:.0} s; left: {} items, {} keys, {} webhooks of run {}",
                limit.as_secs_f64(),
                self.created.skus.len(),
                self.created.keys.len(),
                self.created.webhooks.len(),
                self.run
            )),
        };
        self.record("cleanup", started, result);
    }

    async fn remove_created(&mut self) -> anyhow::Result<String> {
        let mut problems = Vec::new();
        let (mut webhooks, mut keys, mut items) = (0, 0, 0);
        for id in std::mem::take(&mut self.created.webhooks) {
            match self.api.delete(&format!("/v1/webhooks/{id}")).await {
                Ok(a) if a.status == 204 => webhooks += 1,
                Ok(a) if a.status == 404 => {}
                Ok(a) => problems.push(format!("webhook {id}: {}", a.summary())),
                Err(e) => problems.push(format!("webhook {id}: {e:#}")),
            }
        }
        for id in std::mem::take(&mut self.created.keys) {
            match self.api.delete(&format!("/v1/keys/{id}")).await {
                Ok(a) if a.status == 204 => keys += 1,
                Ok(a) if a.status == 404 => {}
                Ok(a) => problems.push(format!("key {id}: {}", a.summary())),
                Err(e) => problems.push(format!("key {id}: {e:#}")),
            }
        }
        let skus = std::mem::take(&mut self.created.skus);
        for sku in &skus {
            match self.api.delete(&format!("/v1/items/{sku}")).await {
                Ok(a) if a.status == 204 => items += 1,
                Ok(a) if a.status == 404 => {}
                Ok(a) => problems.push(format!("item {sku}: {}", a.summary())),
                Err(e) => problems.push(format!("item {sku}: {e:#}")),
            }
        }
        anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
        Ok(format!(
            "deleted {items} items (of {} skus used), revoked {keys} keys, deleted {webhooks} webhooks",
            skus.len()
        ))
    }
}
