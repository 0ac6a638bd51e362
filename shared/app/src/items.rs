//! Use cases of the items API, over the [`ItemStore`] port. HTTP-free so they
//! can be exercised directly (and reused by the batch workers).

use crate::clock;
use crate::domain::change::{ChangeCause, Deletion};
use crate::domain::level::{Adjusted, Level, LevelError, OccurredAt};
use crate::domain::location::LocationId;
use crate::domain::{
    Adjustment, ETAG_FIELDS, Fields, Item, ItemFields, Movement, MovementContext, NewItem, Sku,
    StockCheck, TenantId, apply_delta,
};
use crate::error::ApiError;
use crate::levels::LevelNow;
pub use crate::levels::LevelStores;
pub(crate) use crate::levels::backoff;
use crate::ports::{IdempotencyRecord, ItemStore, Page, PageKey, StoreError};
use crate::stock_split::{self, OrderSource};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How long a stored idempotent response is replayed.
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 3600;
/// Optimistic-concurrency attempts before answering 409 `concurrent_update`.
const MAX_ATTEMPTS: u32 = 12;

/// An `If-Match` precondition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Tags(Vec<String>),
}

impl IfMatch {
    /// Strong comparison, as RFC 9110 requires for If-Match: weak tags never match.
    pub fn matches(&self, etag: &str) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Tags(tags) => tags.iter().any(|t| t == etag),
        }
    }
}

/// Result of `POST /v1/items/{sku}/adjustments`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdjustmentResult {
    pub sku: String,
    /// The location adjusted; absent: the default location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Quantity after the adjustment (on hand at the location, or in the
    /// stock bucket when `stock_bucket` is present).
    pub quantity: i64,
    /// Present when the units moved in one of a split sku's stock buckets
    /// (`Item::stock_buckets`): `quantity` is then the bucket's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 63)]
    pub stock_bucket: Option<u16>,
    pub movement_id: String,
    /// Present and false when the adjustment occurred before the level's last
    /// physical count, which already includes it: recorded, nothing moved.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    #[schema(default = true)]
    pub applied: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// One sku's stock at one location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LevelView {
    #[schema(example = "paris-1")]
    pub location: String,
    /// Units at the location.
    #[schema(minimum = 0)]
    pub on_hand: i64,
    /// Units held by active reservations.
    #[schema(minimum = 0)]
    pub reserved: i64,
    /// `on_hand - reserved`: what can be sold or held now.
    #[schema(minimum = 0)]
    pub available: i64,
    /// `occurred_at` of the physical count that last set `on_hand`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_at: Option<String>,
}

impl LevelView {
    fn of(location: LocationId, level: &Level) -> Self {
        Self {
            location: location.as_str().to_owned(),
            on_hand: level.on_hand,
            reserved: level.reserved,
            available: level.available().max(0),
            counted_at: level.counted_at.as_ref().map(ToString::to_string),
        }
    }
}

/// `GET /v1/items/{sku}/levels`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemLevels {
    pub sku: String,
    /// The default location first, then the others with a level, by id.
    pub levels: Vec<LevelView>,
}

/// A (sku, location) pair of `POST /v1/levels/batch-retrieve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LevelPair {
    #[schema(example = "SKU-1001")]
    pub sku: String,
    #[schema(example = "paris-1")]
    pub location: String,
}

/// One found level of `POST /v1/levels/batch-retrieve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkuLevel {
    #[schema(example = "SKU-1001")]
    pub sku: String,
    #[serde(flatten)]
    pub level: LevelView,
}

/// Result of `POST /v1/levels/batch-retrieve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchLevels {
    /// The levels found, in the order asked (a level never changed reads 0).
    pub levels: Vec<SkuLevel>,
    /// The pairs whose item or location does not exist, in the order asked.
    pub missing: Vec<LevelPair>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AdjustOutcome {
    Applied(AdjustmentResult),
    /// The same `Idempotency-Key` and request were seen before: the stored response.
    Replayed {
        status: u16,
        body: String,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Replaced {
    Changed(Item),
    Unchanged(Item),
}

/// An `Idempotency-Key` with the digest of the request it came with.
#[derive(Clone, Debug)]
pub struct IdempotencyRequest {
    pub key: String,
    pub request_hash: String,
    /// How long the response is replayed ([`IDEMPOTENCY_TTL_SECONDS`] for
    /// a client's key).
    pub ttl_seconds: i64,
}

impl IdempotencyRequest {
    /// The answer `result` stored under this key.
    fn record(&self, result: &AdjustmentResult, now: time::OffsetDateTime) -> IdempotencyRecord {
        self.response(200, result, now)
    }

    /// The response (`status`, `body`) stored under this key, replayed for
    /// `ttl_seconds`.
    pub fn response(
        &self,
        status: u16,
        body: &impl Serialize,
        now: time::OffsetDateTime,
    ) -> IdempotencyRecord {
        IdempotencyRecord {
            key: self.key.clone(),
            request_hash: self.request_hash.clone(),
            status,
            body: serde_json::to_string(body).unwrap_or_default(),
            created_at: clock::format(now),
            expires_at: now.unix_timestamp() + self.ttl_seconds,
        }
    }
}

#[derive(Clone)]
pub struct ItemsService {
    store: Arc<dyn ItemStore>,
    /// Stock per location, with its holds (`with_locations`); without it,
    /// only the default location exists, and nothing is ever held.
    locations: Option<LevelStores>,
}

/// An adjustment of one level: from `before` to `after`, with its movement
/// and the answer it gives.
struct LevelChange<'a> {
    before: &'a LevelNow,
    after: &'a Level,
    movement: Movement,
    result: AdjustmentResult,
}

/// A field set that reads the quantity or the version also reads whether
/// the sku is split (they are then sums).
fn with_split(fields: &Fields<Item>) -> Fields<Item> {
    if fields.contains("quantity") || fields.contains("version") {
        fields.and(&["stock_buckets"])
    } else {
        fields.and(&[])
    }
}

/// Events are not published here: they are derived from the committed
/// writes on the table's change stream (`domain::change`), so a request
/// that dies after its commit loses none.
impl ItemsService {
    pub fn new(store: Arc<dyn ItemStore>) -> Self {
        Self {
            store,
            locations: None,
        }
    }

    /// With stock at the tenant's other locations too, and reservations.
    pub fn with_locations(mut self, stores: LevelStores) -> Self {
        self.locations = Some(stores);
        self
    }

    pub async fn create(
        &self,
        tenant: &TenantId,
        new: NewItem,
        ctx: &MovementContext,
    ) -> Result<Item, ApiError> {
        let now = clock::now_rfc3339();
        let item = Item::new(new, &now);
        // Opening stock is a movement too, so the ledger always sums to the quantity.
        let opening = (item.quantity > 0).then(|| {
            Movement::record(
                &item.sku,
                item.quantity,
                item.quantity,
                "initial_stock",
                None,
                ctx,
                &now,
            )
        });
        match self
            .store
            .create_item(
                tenant,
                &item,
                opening.as_ref(),
                &ChangeCause::request(&ctx.request_id),
            )
            .await
        {
            Ok(()) => Ok(item),
            Err(StoreError::AlreadyExists) => Err(ApiError::SkuExists),
            Err(e) => Err(e.into()),
        }
    }

    /// The item, whole or with `fields` (and what its entity tag is made
    /// of, so `Item::etag` holds either way).
    pub async fn get(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        fields: Option<&Fields<Item>>,
    ) -> Result<Item, ApiError> {
        let read = fields.map(|f| with_split(&f.and(ETAG_FIELDS)));
        let item = self.stored(tenant, sku, read.as_ref()).await?;
        self.shown(tenant, item).await
    }

    /// The item as stored: a split sku's `quantity` is its own part.
    async fn stored(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        fields: Option<&Fields<Item>>,
    ) -> Result<Item, ApiError> {
        self.store
            .get_item(tenant, sku, fields)
            .await?
            .ok_or(ApiError::ItemNotFound)
    }

    /// The item as clients see it: a split sku's quantity (and version)
    /// is the sum.
    async fn shown(&self, tenant: &TenantId, item: Item) -> Result<Item, ApiError> {
        match &self.locations {
            Some(stores) => stock_split::shown_item(stores, tenant, item).await,
            None => Ok(item),
        }
    }

    /// The entity tag clients were shown for `stored` (what `If-Match`
    /// names).
    async fn shown_tag(&self, tenant: &TenantId, stored: &Item) -> Result<String, ApiError> {
        if stored.stock_buckets.is_none() {
            return Ok(stored.etag());
        }
        Ok(self.shown(tenant, stored.clone()).await?.etag())
    }

    pub async fn replace(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        fields: ItemFields,
        if_match: Option<&IfMatch>,
        ctx: &MovementContext,
    ) -> Result<Replaced, ApiError> {
        for attempt in 0..MAX_ATTEMPTS {
            let current = self.stored(tenant, sku, None).await?;
            if let Some(cond) = if_match
                && !cond.matches(&self.shown_tag(tenant, &current).await?)
            {
                return Err(ApiError::PreconditionFailed);
            }
            let Some(next) = current.replaced(fields.clone(), &clock::now_rfc3339()) else {
                return Ok(Replaced::Unchanged(self.shown(tenant, current).await?));
            };
            match self
                .store
                .replace_item(
                    tenant,
                    &next,
                    current.version,
                    &ChangeCause::request(&ctx.request_id),
                )
                .await
            {
                Ok(()) => return Ok(Replaced::Changed(self.shown(tenant, next).await?)),
                // With an explicit If-Match the client's version is gone: 412.
                Err(StoreError::ConditionFailed) if if_match.is_some() => {
                    return Err(ApiError::PreconditionFailed);
                }
                Err(StoreError::ConditionFailed) => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    pub async fn delete(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        if_match: Option<&IfMatch>,
        ctx: &MovementContext,
    ) -> Result<(), ApiError> {
        for attempt in 0..MAX_ATTEMPTS {
            let current = self.stored(tenant, sku, None).await?;
            if let Some(cond) = if_match
                && !cond.matches(&self.shown_tag(tenant, &current).await?)
            {
                return Err(ApiError::PreconditionFailed);
            }
            // A split sku's stock is in its buckets: merged back first.
            if let Some(buckets) = current.stock_buckets {
                return Err(ApiError::StockSplit { buckets });
            }
            // Holds that still count would outlive the item (and weigh on
            // one re-created under its sku): they end first.
            if let Some(stores) = &self.locations {
                let now_ms = clock::unix_ms(clock::now());
                let live = stores
                    .holds
                    .active_holds(tenant, sku, None, None)
                    .await?
                    .iter()
                    .filter(|h| h.expires_at_ms > now_ms)
                    .count();
                if live > 0 {
                    return Err(ApiError::ItemReserved { holds: live });
                }
                // Stock elsewhere would outlive the item too. A level that
                // starts holding anything raises the item's version, so the
                // delete below, conditioned on it, cannot miss one.
                let stocked: Vec<String> = stores
                    .levels
                    .other_levels(tenant, sku)
                    .await?
                    .into_iter()
                    .filter(|l| l.level.on_hand > 0)
                    .map(|l| l.location.as_str().to_owned())
                    .collect();
                if !stocked.is_empty() {
                    return Err(ApiError::ItemStockedElsewhere { locations: stocked });
                }
            }
            let closing = (current.quantity > 0).then(|| {
                Movement::record(
                    &current.sku,
                    -current.quantity,
                    0,
                    "item_deleted",
                    None,
                    ctx,
                    &clock::now_rfc3339(),
                )
            });
            let deletion = Deletion::new(
                &current.sku,
                ChangeCause::request(&ctx.request_id),
                &clock::now_rfc3339(),
            );
            match self
                .store
                .delete_item(tenant, sku, current.version, closing.as_ref(), &deletion)
                .await
            {
                Ok(()) => return Ok(()),
                Err(StoreError::ConditionFailed) if if_match.is_some() => {
                    return Err(ApiError::PreconditionFailed);
                }
                Err(StoreError::ConditionFailed) => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    pub async fn list(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Item>>,
    ) -> Result<Page<Item>, ApiError> {
        let read = fields.map(with_split);
        let mut page = self
            .store
            .list_items(tenant, limit, start, read.as_ref())
            .await?;
        for item in &mut page.items {
            if item.stock_buckets.is_some() {
                *item = self.shown(tenant, item.clone()).await?;
            }
        }
        Ok(page)
    }

    /// Newest first. A sku with neither ledger nor item is not found (a
    /// deleted item keeps its ledger).
    pub async fn movements(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Movement>>,
    ) -> Result<Page<Movement>, ApiError> {
        let first_page = start.is_none();
        // A sku once split has movements in its buckets' partitions too.
        let item = self.store.get_item(tenant, sku, None).await?;
        let partitions = item.as_ref().map_or(0, |i| i.bucket_partitions);
        let page = self
            .store
            .list_movements(tenant, sku, partitions, limit, start, fields)
            .await?;
        if first_page && page.items.is_empty() && item.is_none() {
            return Err(ApiError::ItemNotFound);
        }
        Ok(page)
    }

    /// Applies a stock adjustment with optimistic concurrency: read, check the
    /// stock rule, write conditioned on the version read (retried on a lost
    /// race). The movement and the idempotent response are written in the
    /// same transaction as the quantity, so none exists without the others.
    pub async fn adjust(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        adjustment: &Adjustment,
        ctx: &MovementContext,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<AdjustOutcome, ApiError> {
        if let Some(idem) = idempotency
            && let Some(outcome) = self.replay(tenant, idem).await?
        {
            return Ok(outcome);
        }
        // With reservations, the default location's level has holds too:
        // the level's path respects them.
        if self.locations.is_some() || !adjustment.location.is_default() {
            return self
                .adjust_at_location(tenant, sku, adjustment, ctx, idempotency)
                .await;
        }
        for attempt in 0..MAX_ATTEMPTS {
            let current = self.stored(tenant, sku, None).await?;
            let quantity = match apply_delta(current.quantity, adjustment.delta) {
                StockCheck::Ok(q) => q,
                StockCheck::Insufficient { available } => {
                    return Err(ApiError::InsufficientStock {
                        available,
                        delta: adjustment.delta,
                    });
                }
                StockCheck::Overflow => return Err(ApiError::QuantityOverflow),
            };
            let now = clock::now();
            let now_s = clock::format(now);
            let movement = Movement::record(
                &current.sku,
                adjustment.delta,
                quantity,
                &adjustment.reason,
                adjustment.reference.clone(),
                ctx,
                &now_s,
            );
            let result = AdjustmentResult {
                stock_bucket: None,
                sku: current.sku.clone(),
                location: None,
                quantity,
                movement_id: movement.movement_id.clone(),
                applied: true,
            };
            let record = idempotency.map(|idem| idem.record(&result, now));
            let next = Item {
                quantity,
                version: current.version + 1,
                updated_at: now_s,
                ..current.clone()
            };
            let written = self
                .store
                .record_adjustment(tenant, &next, current.version, &movement, record.as_ref())
                .await;
            if let Some(outcome) = self
                .settle(tenant, idempotency, attempt, written, result)
                .await?
            {
                return Ok(outcome);
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    /// An adjustment of the stock at a location, of its level (at the
    /// default location, the item's quantity) with the same idempotency and
    /// optimistic concurrency. Taking units leaves at least those held.
    async fn adjust_at_location(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        adjustment: &Adjustment,
        ctx: &MovementContext,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<AdjustOutcome, ApiError> {
        let Some(stores) = &self.locations else {
            return Err(ApiError::LocationNotFound);
        };
        let location = &adjustment.location;
        // A split sku's orders go to its buckets (a change stated to have
        // occurred earlier goes to its own level, the one a count sets).
        let by_bucket = location.is_default() && adjustment.occurred_at.is_none();
        if by_bucket
            && let Some(outcome) = self
                .adjust_split(stores, tenant, sku, None, adjustment, ctx, idempotency)
                .await?
        {
            return Ok(outcome);
        }
        let mut tried_buckets = false;
        for attempt in 0..MAX_ATTEMPTS {
            let item = self
                .stored(tenant, sku, Some(&Fields::identifier()))
                .await?;
            if !location.is_default()
                && stores
                    .locations
                    .get_location(tenant, location, Some(&Fields::identifier()))
                    .await?
                    .is_none()
            {
                return Err(ApiError::LocationNotFound);
            }
            let now = clock::now();
            let now_s = clock::format(now);
            let now_ms = clock::unix_ms(now);
            let before = LevelNow::read(
                stores.levels.as_ref(),
                stores.holds.as_ref(),
                tenant,
                sku,
                location,
                now_ms,
            )
            .await?;
            if let Some(stated) = &adjustment.occurred_at
                && OccurredAt::parse(stated.as_str(), now_ms).is_err()
            {
                return Err(ApiError::Validation(crate::domain::FieldErrors::one(
                    "occurred_at",
                    "must not be in the future",
                )));
            }
            let occurred = adjustment
                .occurred_at
                .clone()
                .unwrap_or_else(|| OccurredAt::from_unix_ms(now_ms));
            let (after, applied) = match before.level.adjust(adjustment.delta, &occurred) {
                Ok(Adjusted::Applied(after)) => (after, true),
                // The last count already includes it: recorded, nothing moves.
                Ok(Adjusted::BeforeCount { .. }) => (before.level.clone(), false),
                Err(LevelError::InsufficientAvailable { available }) => {
                    // Split meanwhile (the routing read is a hint): the
                    // units may be in the buckets.
                    if let Some(buckets) = before.stored.split
                        && by_bucket
                        && !tried_buckets
                    {
                        tried_buckets = true;
                        match self
                            .adjust_split(
                                stores,
                                tenant,
                                sku,
                                Some(buckets),
                                adjustment,
                                ctx,
                                idempotency,
                            )
                            .await?
                        {
                            Some(outcome) => return Ok(outcome),
                            None => continue,
                        }
                    }
                    return Err(ApiError::InsufficientStock {
                        available,
                        delta: adjustment.delta,
                    });
                }
                Err(LevelError::Overflow | LevelError::CountBelowReserved { .. }) => {
                    return Err(ApiError::QuantityOverflow);
                }
            };
            let mut movement = Movement::record(
                &item.sku,
                adjustment.delta,
                after.on_hand,
                &adjustment.reason,
                adjustment.reference.clone(),
                ctx,
                &now_s,
            )
            .at(location)
            .occurred(adjustment.occurred_at.as_ref());
            movement.applies = applied;
            let result = AdjustmentResult {
                stock_bucket: None,
                sku: item.sku.clone(),
                location: (!location.is_default()).then(|| location.as_str().to_owned()),
                quantity: after.on_hand,
                movement_id: movement.movement_id.clone(),
                applied,
            };
            let change = LevelChange {
                before: &before,
                after: &after,
                movement,
                result,
            };
            if let Some(outcome) = self
                .write_adjustment(stores, tenant, change, ctx, idempotency, (now, attempt))
                .await?
            {
                return Ok(outcome);
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    /// An adjustment at the default location of a split sku (`split`: into
    /// how many buckets, when known; else read as a hint): applied in one
    /// bucket, with its movement and idempotency record there. None: the
    /// sku is not split, or its own level is where the units are.
    #[allow(clippy::too_many_arguments)]
    async fn adjust_split(
        &self,
        stores: &LevelStores,
        tenant: &TenantId,
        sku: &Sku,
        split: Option<u16>,
        adjustment: &Adjustment,
        ctx: &MovementContext,
        idempotency: Option<&IdempotencyRequest>,
    ) -> Result<Option<AdjustOutcome>, ApiError> {
        let buckets = match split {
            Some(n) => n,
            None => match self
                .store
                .get_item_hint(
                    tenant,
                    sku,
                    Some(&Fields::identifier().and(&["stock_buckets"])),
                )
                .await?
                .and_then(|item| item.stock_buckets)
            {
                Some(n) => n,
                None => return Ok(None),
            },
        };
        let order = stock_split::Order {
            tenant,
            sku,
            buckets,
            need: (-adjustment.delta).max(0),
            delta: adjustment.delta,
        };
        for attempt in 0..MAX_ATTEMPTS {
            let now = clock::now();
            let (now_s, now_ms) = (clock::format(now), clock::unix_ms(now));
            let before =
                match stock_split::order_source(stores, &order, attempt, ctx, (&now_s, now_ms))
                    .await?
                {
                    OrderSource::Own => return Ok(None),
                    OrderSource::Moved => continue,
                    OrderSource::Bucket(bucket) => *bucket,
                };
            let after = match before
                .level
                .adjust(adjustment.delta, &OccurredAt::from_unix_ms(now_ms))
            {
                Ok(Adjusted::Applied(after)) => after,
                // A bucket is never counted; short of units: lost a race.
                Ok(Adjusted::BeforeCount { .. })
                | Err(LevelError::InsufficientAvailable { .. }) => {
                    backoff(attempt).await;
                    continue;
                }
                Err(LevelError::Overflow | LevelError::CountBelowReserved { .. }) => {
                    return Err(ApiError::QuantityOverflow);
                }
            };
            let movement = Movement::record(
                sku.as_str(),
                adjustment.delta,
                after.on_hand,
                &adjustment.reason,
                adjustment.reference.clone(),
                ctx,
                &now_s,
            )
            .in_bucket(before.stored.bucket);
            let result = AdjustmentResult {
                sku: sku.to_string(),
                location: None,
                quantity: after.on_hand,
                stock_bucket: before.stored.bucket,
                movement_id: movement.movement_id.clone(),
                applied: true,
            };
            let change = LevelChange {
                before: &before,
                after: &after,
                movement,
                result,
            };
            if let Some(outcome) = self
                .write_adjustment(stores, tenant, change, ctx, idempotency, (now, attempt))
                .await?
            {
                return Ok(Some(outcome));
            }
        }
        Err(ApiError::ConcurrentUpdate)
    }

    /// Writes an adjustment of a level with its movement and idempotency
    /// record, all or nothing: the outcome, or None to read again (a failed
    /// condition: the level, the item or the location changed).
    async fn write_adjustment(
        &self,
        stores: &LevelStores,
        tenant: &TenantId,
        change: LevelChange<'_>,
        ctx: &MovementContext,
        idempotency: Option<&IdempotencyRequest>,
        (now, attempt): (time::OffsetDateTime, u32),
    ) -> Result<Option<AdjustOutcome>, ApiError> {
        let at = clock::format(now);
        let record = idempotency.map(|idem| idem.record(&change.result, now));
        let write = change.before.level_write(
            change.after,
            None,
            (vec![change.movement], Vec::new()),
            record.as_ref(),
            ctx,
            &at,
        );
        let written = stores.levels.record_level_change(tenant, &write).await;
        self.settle(tenant, idempotency, attempt, written, change.result)
            .await
    }

    /// The sku's stock per location: the default location's (the item's
    /// quantity) first, then the others' in location id order.
    pub async fn levels(&self, tenant: &TenantId, sku: &Sku) -> Result<ItemLevels, ApiError> {
        let item = self.stored(tenant, sku, None).await?;
        let Some(stores) = &self.locations else {
            let level = Level {
                on_hand: item.quantity,
                ..Level::default()
            };
            return Ok(ItemLevels {
                sku: item.sku,
                levels: vec![LevelView::of(LocationId::default_location(), &level)],
            });
        };
        let now_ms = clock::unix_ms(clock::now());
        let mut stored = vec![
            stores
                .levels
                .level(tenant, sku, &LocationId::default_location())
                .await?,
        ];
        stored.extend(stores.levels.other_levels(tenant, sku).await?);
        let mut levels = Vec::with_capacity(stored.len());
        for level in stored {
            // Holds that expired unswept stop counting now.
            let now = LevelNow::of(level, stores.holds.as_ref(), tenant, sku, now_ms).await?;
            let shown = stock_split::shown_level(stores, tenant, sku, &now, now_ms).await?;
            levels.push(LevelView::of(now.stored.location, &shown));
        }
        Ok(ItemLevels {
            sku: item.sku,
            levels,
        })
    }

    /// Many levels in one call: strongly consistent reads of every item,
    /// location and level, by key; holds that expired stop counting.
    pub async fn levels_of(
        &self,
        tenant: &TenantId,
        pairs: &[(Sku, LocationId)],
    ) -> Result<BatchLevels, ApiError> {
        let Some(stores) = &self.locations else {
            return Err(ApiError::LocationNotFound);
        };
        let now_ms = clock::unix_ms(clock::now());
        let found = stores.levels.levels_of(tenant, pairs).await?;
        let mut out = BatchLevels {
            levels: Vec::new(),
            missing: Vec::new(),
        };
        for ((sku, location), level) in pairs.iter().zip(found) {
            let Some(level) = level else {
                out.missing.push(LevelPair {
                    sku: sku.to_string(),
                    location: location.as_str().to_owned(),
                });
                continue;
            };
            let now = LevelNow::of(level, stores.holds.as_ref(), tenant, sku, now_ms).await?;
            let shown = stock_split::shown_level(stores, tenant, sku, &now, now_ms).await?;
            out.levels.push(SkuLevel {
                sku: sku.to_string(),
                level: LevelView::of(location.clone(), &shown),
            });
        }
        Ok(out)
    }

    /// What an adjustment's conditional write means: applied, or a replay
    /// of the request that took the same key first; `None`: something
    /// changed meanwhile, read again (after a backoff).
    async fn settle(
        &self,
        tenant: &TenantId,
        idempotency: Option<&IdempotencyRequest>,
        attempt: u32,
        written: Result<(), StoreError>,
        result: AdjustmentResult,
    ) -> Result<Option<AdjustOutcome>, ApiError> {
        match written {
            Ok(()) => return Ok(Some(AdjustOutcome::Applied(result))),
            Err(StoreError::ConditionFailed) => {}
            // A concurrent request with the same key won the race.
            Err(StoreError::IdempotencyKeyTaken) => {
                if let Some(idem) = idempotency
                    && let Some(outcome) = self.replay(tenant, idem).await?
                {
                    return Ok(Some(outcome));
                }
            }
            Err(e) => return Err(e.into()),
        }
        backoff(attempt).await;
        Ok(None)
    }

    async fn replay(
        &self,
        tenant: &TenantId,
        idem: &IdempotencyRequest,
    ) -> Result<Option<AdjustOutcome>, ApiError> {
        Ok(stored_response(self.store.as_ref(), tenant, Some(idem))
            .await?
            .map(|(status, body)| AdjustOutcome::Replayed { status, body }))
    }
}

/// The response stored under the request's `Idempotency-Key` (status,
/// body), if the same request came before; 422 if another one took the key.
pub(crate) async fn stored_response(
    store: &dyn ItemStore,
    tenant: &TenantId,
    idempotency: Option<&IdempotencyRequest>,
) -> Result<Option<(u16, String)>, ApiError> {
    let Some(idem) = idempotency else {
        return Ok(None);
    };
    match store.get_idempotency(tenant, &idem.key).await? {
        None => Ok(None),
        Some(rec) if rec.request_hash == idem.request_hash => Ok(Some((rec.status, rec.body))),
        Some(_) => Err(ApiError::IdempotencyKeyReused),
    }
}

/// The items use cases on the in-memory store: the stock rules, optimistic
/// concurrency, idempotency replay and the events, without the local stack.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Event;
    use crate::domain::event::EventType;
    use crate::memory::MemoryItemStore;
    use serde_json::json;

    struct World {
        store: Arc<MemoryItemStore>,
        items: ItemsService,
        tenant: TenantId,
        ctx: MovementContext,
    }

    fn world() -> World {
        let store = Arc::new(MemoryItemStore::default());
        World {
            // As the items function builds it: adjustments go through the
            // levels, with their holds.
            items: ItemsService::new(store.clone()).with_locations(LevelStores {
                locations: store.clone(),
                levels: store.clone(),
                holds: store.clone(),
            }),
            store,
            tenant: TenantId::parse("acme").unwrap(),
            ctx: MovementContext {
                request_id: "req-1".into(),
                key_id: Some("key_1".into()),
                batch_record: None,
            },
        }
    }

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn adjustment(delta: i64) -> Adjustment {
        Adjustment::from_json(&json!({"delta": delta, "reason": "sale"})).unwrap()
    }

    impl World {
        /// The events the committed writes since the last call cause (as
        /// the events publisher derives them from the stream), but for
        /// `stock.changed`, which every movement causes.
        fn announced(&self) -> Vec<Event> {
            crate::outbox::EventsOutbox::events_of(&self.store.take_changes())
                .into_iter()
                .filter(|e| e.kind != EventType::StockChanged)
                .collect()
        }

        async fn create(&self, body: serde_json::Value) -> Result<Item, ApiError> {
            let new = NewItem::from_json(&body).unwrap();
            self.items.create(&self.tenant, new, &self.ctx).await
        }

        async fn adjust(&self, s: &str, delta: i64) -> Result<AdjustOutcome, ApiError> {
            self.items
                .adjust(&self.tenant, &sku(s), &adjustment(delta), &self.ctx, None)
                .await
        }

        /// The ledger sums to the quantity: every change is a movement.
        fn assert_ledger_sums(&self, s: &str, quantity: i64) {
            let ledger = self.store.ledger(&self.tenant, s);
            assert_eq!(ledger.iter().map(|m| m.delta).sum::<i64>(), quantity);
            if let Some(last) = ledger.last() {
                assert_eq!(last.quantity_after, quantity);
            }
        }
    }

    #[tokio::test]
    async fn creating_records_the_opening_stock_and_refuses_a_second_create() {
        let w = world();
        let item = w
            .create(json!({"sku": "MUG-1", "name": "Mug", "quantity": 12}))
            .await
            .unwrap();
        assert_eq!((item.quantity, item.version), (12, 1));
        w.assert_ledger_sums("MUG-1", 12);
        let again = w
            .create(json!({"sku": "MUG-1", "name": "Other", "quantity": 1}))
            .await;
        assert!(matches!(again, Err(ApiError::SkuExists)), "{again:?}");
        let read = w.items.get(&w.tenant, &sku("MUG-1"), None).await.unwrap();
        assert_eq!(read.name, "Mug");
    }

    #[tokio::test]
    async fn stock_never_goes_negative_nor_overflows() {
        let w = world();
        w.create(json!({"sku": "A", "name": "A", "quantity": 5}))
            .await
            .unwrap();
        let short = w.adjust("A", -6).await;
        assert!(
            matches!(
                short,
                Err(ApiError::InsufficientStock {
                    available: 5,
                    delta: -6
                })
            ),
            "{short:?}"
        );
        let over = w.adjust("A", crate::domain::MAX_QUANTITY).await;
        assert!(matches!(over, Err(ApiError::QuantityOverflow)), "{over:?}");
        let Ok(AdjustOutcome::Applied(done)) = w.adjust("A", -5).await else {
            panic!("the last five units can be taken")
        };
        assert_eq!(done.quantity, 0);
        w.assert_ledger_sums("A", 0);
        assert!(matches!(
            w.adjust("NOPE", 1).await,
            Err(ApiError::ItemNotFound)
        ));
    }

    #[tokio::test]
    async fn concurrent_adjustments_all_apply_once() {
        let w = world();
        w.create(json!({"sku": "HOT", "name": "Hot", "quantity": 100}))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (items, tenant, ctx) = (w.items.clone(), w.tenant.clone(), w.ctx.clone());
                tokio::spawn(async move {
                    items
                        .adjust(&tenant, &sku("HOT"), &adjustment(-2), &ctx, None)
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Ok(AdjustOutcome::Applied(_))));
        }
        let item = w.items.get(&w.tenant, &sku("HOT"), None).await.unwrap();
        assert_eq!((item.quantity, item.version), (20, 41));
        w.assert_ledger_sums("HOT", 20);
    }

    #[tokio::test]
    async fn an_idempotency_key_replays_its_response_and_refuses_another_request() {
        let w = world();
        w.create(json!({"sku": "A", "name": "A", "quantity": 10}))
            .await
            .unwrap();
        let idem = IdempotencyRequest {
            key: "k-1".into(),
            request_hash: "hash-of-request-1".into(),
            ttl_seconds: IDEMPOTENCY_TTL_SECONDS,
        };
        let first = w
            .items
            .adjust(&w.tenant, &sku("A"), &adjustment(-3), &w.ctx, Some(&idem))
            .await
            .unwrap();
        let AdjustOutcome::Applied(result) = first else {
            panic!("{first:?}")
        };
        let again = w
            .items
            .adjust(&w.tenant, &sku("A"), &adjustment(-3), &w.ctx, Some(&idem))
            .await
            .unwrap();
        assert_eq!(
            again,
            AdjustOutcome::Replayed {
                status: 200,
                body: serde_json::to_string(&result).unwrap()
            }
        );
        let other = IdempotencyRequest {
            request_hash: "hash-of-request-2".into(),
            ..idem
        };
        let reused = w
            .items
            .adjust(&w.tenant, &sku("A"), &adjustment(-1), &w.ctx, Some(&other))
            .await;
        assert!(
            matches!(reused, Err(ApiError::IdempotencyKeyReused)),
            "{reused:?}"
        );
        let item = w.items.get(&w.tenant, &sku("A"), None).await.unwrap();
        assert_eq!(item.quantity, 7, "applied once");
        w.assert_ledger_sums("A", 7);
    }

    #[tokio::test]
    async fn if_match_guards_replace_and_delete() {
        let w = world();
        let item = w
            .create(json!({"sku": "A", "name": "A", "quantity": 3}))
            .await
            .unwrap();
        let stale = IfMatch::Tags(vec![item.etag()]);
        let patch =
            |name: &str| ItemFields::from_put_json(&json!({"name": name}), &sku("A")).unwrap();
        let Replaced::Changed(next) = w
            .items
            .replace(&w.tenant, &sku("A"), patch("B"), Some(&stale), &w.ctx)
            .await
            .unwrap()
        else {
            panic!("a new name changes the item")
        };
        assert_eq!((next.name.as_str(), next.version), ("B", 2));
        let unchanged = w
            .items
            .replace(&w.tenant, &sku("A"), patch("B"), None, &w.ctx)
            .await
            .unwrap();
        assert!(matches!(unchanged, Replaced::Unchanged(_)));
        let late = w
            .items
            .replace(&w.tenant, &sku("A"), patch("C"), Some(&stale), &w.ctx)
            .await;
        assert!(
            matches!(late, Err(ApiError::PreconditionFailed)),
            "{late:?}"
        );
        let refused = w
            .items
            .delete(&w.tenant, &sku("A"), Some(&stale), &w.ctx)
            .await;
        assert!(matches!(refused, Err(ApiError::PreconditionFailed)));
        w.items
            .delete(
                &w.tenant,
                &sku("A"),
                Some(&IfMatch::Tags(vec![next.etag()])),
                &w.ctx,
            )
            .await
            .unwrap();
        // The ledger outlives the item and closes at zero.
        w.assert_ledger_sums("A", 0);
        let ledger = w
            .items
            .movements(&w.tenant, &sku("A"), 10, None, None)
            .await
            .unwrap();
        assert_eq!(ledger.items[0].reason, "item_deleted", "newest first");
        let kinds: Vec<_> = w.announced().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventType::ItemDeleted]);
    }

    #[tokio::test]
    async fn low_stock_is_announced_once_when_the_threshold_is_crossed() {
        let w = world();
        w.create(json!({"sku": "A", "name": "A", "quantity": 10, "low_stock_threshold": 5}))
            .await
            .unwrap();
        w.adjust("A", -4).await.unwrap(); // 6: above
        assert!(w.announced().is_empty());
        w.adjust("A", -1).await.unwrap(); // 5: crossed
        w.adjust("A", -1).await.unwrap(); // 4: already below
        let events = w.announced();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventType::ItemLowStock);
        assert_eq!(events[0].data["quantity"], 5);
        w.adjust("A", 10).await.unwrap(); // back above
        w.adjust("A", -10).await.unwrap(); // crossed again
        assert_eq!(w.announced().len(), 1);
    }

    #[tokio::test]
    async fn listings_page_in_order_without_gaps_or_repeats() {
        let w = world();
        for i in 0..7 {
            w.create(json!({"sku": format!("S-{i}"), "name": "n", "quantity": 0}))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut start = None;
        loop {
            let page = w.items.list(&w.tenant, 3, start, None).await.unwrap();
            seen.extend(page.items.into_iter().map(|i| i.sku));
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = (0..7).map(|i| format!("S-{i}")).collect();
        assert_eq!(seen, expected);
        let other = TenantId::parse("other").unwrap();
        let none = w.items.list(&other, 10, None, None).await.unwrap();
        assert!(none.items.is_empty(), "tenants are isolated");
    }
}
