//! The change feed (`GET /v1/changes`): every stock movement of a tenant in
//! commit order, resumable from a position (the last movement id read).
//!
//! Movement ids are ULIDs, minted just before the write that commits them,
//! so id order is commit order except for writes still in flight: an id
//! minted at t may commit up to a little later than ids minted after it. The
//! feed therefore only returns movements minted before `now - settle`; a
//! write commits within `settle` of its id (`settle` exceeds the time the
//! writers can take, see docs/guarantees.md#change-feed), so nothing can appear
//! behind a position once a reader has passed it.

use crate::domain::{Fields, Movement, MovementId, Sku, TenantId};
use crate::error::ApiError;
use crate::ports::ChangeLog;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// How long a movement write can still commit after its id was minted, by
/// default (`CHANGES_SETTLE_SECONDS`): the longest writer timeout (the batch
/// worker's 30 s by default; the items function's is 10 s) plus the index's
/// lag (about a second) and a margin.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(45);

/// One page of the feed.
#[derive(Debug, PartialEq)]
pub struct ChangesPage {
    /// In commit order (ascending movement id).
    pub movements: Vec<Movement>,
    /// Where the next page starts: the last movement returned, or the
    /// position read from when the page is empty (None: the beginning).
    pub position: Option<String>,
    /// More settled movements follow this page right now.
    pub has_more: bool,
}

type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

#[derive(Clone)]
pub struct ChangeFeed {
    log: Arc<dyn ChangeLog>,
    settle: Duration,
    now: Clock,
}

impl ChangeFeed {
    pub fn new(log: Arc<dyn ChangeLog>, settle: Duration) -> Self {
        Self {
            log,
            settle,
            now: Arc::new(crate::clock::now),
        }
    }

    /// The same feed reading the time from `now` (tests).
    pub fn with_clock(self, now: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Self {
        Self {
            now: Arc::new(now),
            ..self
        }
    }

    /// The movements after `after` (from the beginning when None) that have
    /// settled, at most `limit`, of one sku when `sku` is given.
    pub async fn read(
        &self,
        tenant: &TenantId,
        sku: Option<&Sku>,
        after: Option<String>,
        limit: u32,
        fields: Option<&Fields<Movement>>,
    ) -> Result<ChangesPage, ApiError> {
        let horizon = (self.now)() - self.settle;
        let horizon_ms = u64::try_from(horizon.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let before = MovementId::floor_at(horizon_ms);
        // The order is by id: read it whatever the client selected.
        let read = fields.map(|f| f.and(&["movement_id"]));
        let mut movements = self
            .log
            .changes(
                tenant,
                sku,
                after.as_deref(),
                before.as_str(),
                limit.saturating_add(1),
                read.as_ref(),
            )
            .await?;
        let has_more = movements.len() > limit as usize;
        movements.truncate(limit as usize);
        let position = movements.last().map(|m| m.movement_id.clone()).or(after);
        Ok(ChangesPage {
            movements,
            position,
            has_more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Item, MovementContext};
    use crate::memory::MemoryItemStore;
    use crate::ports::ItemStore;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI64, Ordering};

    const T0: i64 = 1_800_000_000_000;

    struct World {
        store: Arc<MemoryItemStore>,
        clock_ms: Arc<AtomicI64>,
        feed: ChangeFeed,
        tenant: TenantId,
        versions: Mutex<std::collections::HashMap<String, u64>>,
    }

    fn world(settle: Duration) -> World {
        let store = Arc::new(MemoryItemStore::default());
        let clock_ms = Arc::new(AtomicI64::new(T0));
        let clock = clock_ms.clone();
        World {
            feed: ChangeFeed::new(store.clone(), settle).with_clock(move || {
                OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(clock.load(Ordering::SeqCst)) * 1_000_000,
                )
                .unwrap()
            }),
            store,
            clock_ms,
            tenant: TenantId::parse("acme").unwrap(),
            versions: Mutex::default(),
        }
    }

    impl World {
        fn at(&self, ms: i64) {
            self.clock_ms.store(ms, Ordering::SeqCst);
        }

        /// A movement of `sku` whose id was minted at `minted_ms`.
        fn mint(&self, sku: &str, minted_ms: i64) -> Movement {
            let mut m = Movement::record(
                sku,
                1,
                1,
                "count",
                None,
                &MovementContext::default(),
                "2027-01-15T08:00:00.000Z",
            );
            m.movement_id = MovementId::minted_at(minted_ms as u64).as_str().to_owned();
            m
        }

        /// Commits `m` as an adjustment (creating its item first if needed).
        async fn commit(&self, m: &Movement) {
            let version = {
                let mut versions = self.versions.lock().unwrap();
                let v = versions.entry(m.sku.clone()).or_insert(0);
                *v += 1;
                *v
            };
            let item = Item::new(
                crate::domain::NewItem::from_json(&serde_json::json!({"sku": m.sku, "name": "n"}))
                    .unwrap(),
                "2027-01-15T08:00:00.000Z",
            );
            if version == 1 {
                self.store
                    .create_item(&self.tenant, &item, None, &Default::default())
                    .await
                    .unwrap();
            }
            let next = Item {
                version: version + 1,
                ..item
            };
            self.store
                .record_adjustment(&self.tenant, &next, version, m, None)
                .await
                .unwrap();
        }

        async fn page(&self, after: Option<String>, limit: u32) -> ChangesPage {
            self.feed
                .read(&self.tenant, None, after, limit, None)
                .await
                .unwrap()
        }

        /// Every settled movement from `after` on, by pages of `limit`.
        async fn drain(
            &self,
            mut after: Option<String>,
            limit: u32,
        ) -> (Vec<String>, Option<String>) {
            let mut ids = Vec::new();
            loop {
                let page = self.page(after.clone(), limit).await;
                assert!(page.movements.len() <= limit as usize);
                ids.extend(page.movements.iter().map(|m| m.movement_id.clone()));
                after = page.position;
                if !page.has_more {
                    return (ids, after);
                }
            }
        }
    }

    #[tokio::test]
    async fn a_movement_minted_before_the_position_but_committed_late_is_not_skipped() {
        let settle = Duration::from_secs(5);
        let w = world(settle);
        // A is minted first, but B commits first (A's write is slow).
        let a = w.mint("A", T0);
        let b = w.mint("B", T0 + 1_000);
        w.commit(&b).await;
        // A reader polls while A is still in flight: B has not settled, so
        // the reader's position stays before A.
        w.at(T0 + 2_000);
        let early = w.page(None, 10).await;
        assert!(early.movements.is_empty(), "{early:?}");
        assert_eq!(early.position, None);
        // A commits late, within the settle window of its id.
        w.at(T0 + 4_000);
        w.commit(&a).await;
        w.at(T0 + 1_000 + 5_001);
        let (ids, _) = w.drain(early.position, 1).await;
        assert_eq!(ids, [a.movement_id.clone(), b.movement_id.clone()]);

        // Without the window the same race loses A: the reader passes B
        // before A commits.
        let hasty = world(Duration::ZERO);
        let a = hasty.mint("A", T0);
        let b = hasty.mint("B", T0 + 1_000);
        hasty.commit(&b).await;
        hasty.at(T0 + 2_000);
        let (seen, position) = hasty.drain(None, 10).await;
        assert_eq!(seen, [b.movement_id]);
        hasty.commit(&a).await;
        let (after, _) = hasty.drain(position, 10).await;
        assert!(after.is_empty(), "A sorts before the position: skipped");
    }

    #[tokio::test]
    async fn pages_return_every_settled_movement_once_in_id_order() {
        let w = world(Duration::from_secs(1));
        let mut minted = Vec::new();
        for i in 0..23 {
            let m = w.mint(["A", "B", "C"][i % 3], T0 + i as i64 * 10);
            w.commit(&m).await;
            minted.push(m.movement_id);
        }
        w.at(T0 + 10_000);
        let (first, position) = w.drain(None, 4).await;
        assert_eq!(first, minted);
        // Polling from the end: nothing new, the position is kept.
        let idle = w.page(position.clone(), 4).await;
        assert!(idle.movements.is_empty() && !idle.has_more);
        assert_eq!(idle.position, position);
        // Later movements follow on from there.
        let late = w.mint("B", T0 + 20_000);
        w.commit(&late).await;
        w.at(T0 + 30_000);
        let (next, _) = w.drain(position, 4).await;
        assert_eq!(next, [late.movement_id]);
    }

    #[tokio::test]
    async fn a_sku_filter_and_a_tenant_see_only_their_movements() {
        let w = world(Duration::from_secs(1));
        for (i, sku) in ["A", "B", "A", "C", "A"].iter().enumerate() {
            w.commit(&w.mint(sku, T0 + i as i64)).await;
        }
        w.at(T0 + 5_000);
        let a = Sku::parse("A").unwrap();
        let page = w
            .feed
            .read(&w.tenant, Some(&a), None, 10, None)
            .await
            .unwrap();
        assert_eq!(page.movements.len(), 3);
        assert!(page.movements.iter().all(|m| m.sku == "A"));
        let other = TenantId::parse("other").unwrap();
        let none = w.feed.read(&other, None, None, 10, None).await.unwrap();
        assert!(none.movements.is_empty());
    }
}
