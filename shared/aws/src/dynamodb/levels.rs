//! [`LevelStore`] and [`ReservationStore`] on the stock table. A sku's
//! level at a location is `T#<tenant>#I#<sku>` / `L#<location>`, in the
//! item's collection, and so are its reservations (`RSV#<ulid>`): a sku's
//! levels are one Query, and a change of one, with its holds and
//! movements, is one transaction within one partition. At the default
//! location the item's `quantity` is on hand and `L#default` holds only
//! the holds (and the last count's time), so the writers of the item
//! (replace, batches) never touch them.
//!
//! Each location tallies its levels that hold stock in
//! [`LOCATION_SHARDS`] counters, `T#<tenant>#LOC#<location>` / `N#<shard>`
//! (shard = FNV-1a of the sku), written only when a level starts or stops
//! holding stock: a large first import into a location spreads over them
//! instead of one hot key. Creating a location opens every shard; a level
//! that starts holding stock needs its shard open, and deleting a location
//! closes them all on the condition that each counts zero, in one
//! transaction with the location's record. So stock never lands on a
//! deleted location, and a location holding stock is never deleted.

use super::error::{build_error, classify};
use super::items::collection_ranges;
use super::locations::{LOCATION_SHARDS, location_sk, locations_pk, tally_pk, tally_sk};
use super::records::{ITEM_SK, IdempotencyStored, bucket_pk, collection_pk, item_pk};
use super::sharded::{Reading, gather_with, shard_of};
use super::tx::{TransactFailure, batch_get};
use super::{Attrs, DynamoItemStore, from_attrs, n, s, to_attrs};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use stockroom_app::ports::{
    ActiveHold, HoldWrite, LevelStore, LevelWrite, Page, PageKey, ReservationStore, SplitChange,
    StoreError, StoredLevel, StoredReservation,
};
use stockroom_domain::level::{Level, OccurredAt};
use stockroom_domain::location::{DEFAULT_LOCATION, LocationId};
use stockroom_domain::reservation::{ReservationId, ReservationStatus};
use stockroom_domain::{Sku, TenantId};

pub(crate) const LEVEL_PREFIX: &str = "L#";

pub(crate) fn level_sk(location: &str) -> String {
    format!("{LEVEL_PREFIX}{location}")
}

#[derive(Serialize, Deserialize)]
pub(crate) struct LevelStored {
    pub pk: String,
    pub sk: String,
    pub tenant_id: String,
    pub sku: String,
    pub location: String,
    /// A split sku's stock bucket (`bucket_pk`): its on hand is here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<u16>,
    /// At the default location the item's quantity is on hand: this record
    /// holds only the holds (`on_hand` stays 0), but in a bucket.
    pub on_hand: i64,
    pub reserved: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds_check_at: Option<u64>,
    pub version: u64,
    pub updated_at: String,
    pub changed_by_request: String,
}

impl LevelStored {
    fn into_stored(self) -> Result<StoredLevel, StoreError> {
        Ok(StoredLevel {
            location: LocationId::parse(&self.location).map_err(StoreError::Corrupt)?,
            bucket: self.bucket,
            split: None,
            level: Level {
                on_hand: self.on_hand,
                reserved: self.reserved,
                counted_at: self.counted_at.map(OccurredAt::from_stored),
            },
            version: self.version,
            holds_version: self.version,
            holds_check_at: self.holds_check_at,
        })
    }
}

/// What a default-location level reads of the item: its on hand.
#[derive(Deserialize)]
struct ItemOnHand {
    quantity: i64,
    version: u64,
    #[serde(default)]
    stock_buckets: Option<u16>,
}

/// The default location's level: on hand from the item, the rest from its
/// holds record (if any).
fn default_level_of(item: ItemOnHand, holds: Option<StoredLevel>) -> StoredLevel {
    let mut level = StoredLevel::empty(LocationId::default_location());
    level.level.on_hand = item.quantity;
    level.version = item.version;
    level.split = item.stock_buckets;
    if let Some(holds) = holds {
        level.level.reserved = holds.level.reserved;
        level.level.counted_at = holds.level.counted_at;
        level.holds_version = holds.version;
        level.holds_check_at = holds.holds_check_at;
    }
    level
}

/// A reservation as stored, `T#<tenant>#I#<sku>` / `RSV#<ulid>`.
#[derive(Serialize, Deserialize)]
pub(crate) struct ReservationStored {
    pub pk: String,
    pub sk: String,
    pub tenant_id: String,
    pub id: String,
    pub sku: String,
    pub location: String,
    pub quantity: i64,
    pub status: String,
    pub expires_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub request_id: String,
}

pub(crate) const RESERVATION_PREFIX: &str = "RSV#";
/// An active hold's own small record, `H#<ulid>`, beside its reservation:
/// written with the hold, deleted when it ends, so a level reads its active
/// holds without the sku's history of ended ones.
pub(crate) const ACTIVE_HOLD_PREFIX: &str = "H#";

/// The ids of a hold whose active-hold record DynamoDB's TTL removed
/// (its old image): tenant and reservation id.
pub(crate) fn lapsed_hold(attrs: &serde_dynamo::Item) -> Result<(String, String), String> {
    let hold: ActiveHoldStored =
        serde_dynamo::from_item(attrs.clone()).map_err(|e| e.to_string())?;
    if hold.tenant_id.is_empty() {
        return Err("an active-hold record without its tenant".into());
    }
    Ok((hold.tenant_id, hold.id))
}

fn active_hold_sk(id: &ReservationId) -> String {
    format!("{ACTIVE_HOLD_PREFIX}{}", id.ulid())
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ActiveHoldStored {
    pk: String,
    sk: String,
    /// Absent on holds placed before their expiry was handed to TTL.
    #[serde(default)]
    pub tenant_id: String,
    pub id: String,
    location: String,
    quantity: i64,
    expires_at_ms: u64,
    /// The table's TTL attribute (Unix seconds): DynamoDB removes the
    /// record some time after the hold expired, and the stream's removal
    /// ends the hold for good if no write of its level swept it first
    /// (`ReservationsService::lapse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

impl ActiveHoldStored {
    fn into_hold(self) -> Result<ActiveHold, StoreError> {
        Ok(ActiveHold {
            id: ReservationId::parse(&self.id).map_err(StoreError::Corrupt)?,
            location: LocationId::parse(&self.location).map_err(StoreError::Corrupt)?,
            quantity: self.quantity,
            expires_at_ms: self.expires_at_ms,
        })
    }
}

pub(crate) fn reservation_sk(id: &ReservationId) -> String {
    format!("{RESERVATION_PREFIX}{}", id.ulid())
}

impl ReservationStored {
    fn new(tenant: &TenantId, r: &StoredReservation) -> Self {
        Self {
            pk: collection_pk(tenant, r.id.sku().as_str(), r.id.bucket()),
            sk: reservation_sk(&r.id),
            tenant_id: tenant.to_string(),
            id: r.id.as_str().to_owned(),
            sku: r.id.sku().to_string(),
            location: r.location.as_str().to_owned(),
            quantity: r.quantity,
            status: r.status.as_str().to_owned(),
            expires_at_ms: r.expires_at_ms,
            reference: r.reference.clone(),
            created_at: r.created_at.clone(),
            ended_at: r.ended_at.clone(),
            request_id: r.request_id.clone(),
        }
    }

    pub(crate) fn into_stored(self) -> Result<StoredReservation, StoreError> {
        Ok(StoredReservation {
            id: ReservationId::parse(&self.id).map_err(StoreError::Corrupt)?,
            location: LocationId::parse(&self.location).map_err(StoreError::Corrupt)?,
            quantity: self.quantity,
            status: ReservationStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("status {:?}", self.status)))?,
            expires_at_ms: self.expires_at_ms,
            reference: self.reference,
            created_at: self.created_at,
            ended_at: self.ended_at,
            request_id: self.request_id,
        })
    }
}

/// Every record of partition `pk` whose sort key starts with `prefix`,
/// read strongly consistent, page after page.
async fn collection(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: String,
    prefix: &str,
) -> Result<Vec<Attrs>, StoreError> {
    let mut records = Vec::new();
    let mut start: Option<Attrs> = None;
    loop {
        let out = client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(classify)?;
        records.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(records),
        }
    }
}

/// The key of a sku's default-location holds record.
pub(crate) fn default_holds_key(tenant: &TenantId, sku: &str) -> (String, String) {
    (
        item_pk(tenant, sku),
        level_sk(LocationId::default_location().as_str()),
    )
}

/// Units held now at the default location, from its holds record as read
/// (`attrs`): its `reserved`, less the holds that expired when one may
/// have (their own records are read then). Returns the sku and the units.
pub(crate) async fn held_at_default(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    attrs: Attrs,
    now_ms: u64,
) -> Result<(String, i64), StoreError> {
    let level: LevelStored = from_attrs(attrs)?;
    if level.holds_check_at.is_none_or(|at| at > now_ms) {
        return Ok((level.sku, level.reserved));
    }
    let mut held = 0;
    for attrs in collection(client, table, level.pk.clone(), ACTIVE_HOLD_PREFIX).await? {
        let hold = from_attrs::<ActiveHoldStored>(attrs)?;
        if hold.location == level.location
            && ReservationStatus::Active.holds(hold.expires_at_ms, now_ms)
        {
            held += hold.quantity;
        }
    }
    Ok((level.sku, held))
}

impl DynamoItemStore {
    async fn collection(&self, pk: String, prefix: &str) -> Result<Vec<Attrs>, StoreError> {
        collection(&self.client, &self.table, pk, prefix).await
    }

    /// The default location's level: on hand from the item, holds from
    /// their own record, in one strongly consistent BatchGetItem.
    async fn default_level(&self, tenant: &TenantId, sku: &Sku) -> Result<StoredLevel, StoreError> {
        let pk = item_pk(tenant, sku.as_str());
        let key =
            |sk: String| Attrs::from([("pk".to_owned(), s(pk.clone())), ("sk".to_owned(), s(sk))]);
        let location = LocationId::default_location();
        let found = batch_get(
            &self.client,
            &self.table,
            vec![key(ITEM_SK.to_owned()), key(level_sk(location.as_str()))],
        )
        .await?;
        let (mut item, mut holds) = (None, None);
        for attrs in found {
            if matches!(attrs.get("sk"), Some(AttributeValue::S(sk)) if sk == ITEM_SK) {
                item = Some(from_attrs::<ItemOnHand>(attrs)?);
            } else {
                holds = Some(from_attrs::<LevelStored>(attrs)?.into_stored()?);
            }
        }
        Ok(match item {
            Some(item) => default_level_of(item, holds),
            // A deleted item's holds record stays: a write of the level
            // conditions on its version.
            None => StoredLevel {
                holds_version: holds.map_or(0, |h| h.holds_version),
                ..StoredLevel::empty(location)
            },
        })
    }

    /// A hold's actions: its reservation record and its active-hold record.
    fn hold_actions(
        &self,
        tenant: &TenantId,
        hold: &HoldWrite,
    ) -> Result<[TransactWriteItem; 2], StoreError> {
        Ok(match hold {
            HoldWrite::Create(r) => {
                let active = ActiveHoldStored {
                    pk: collection_pk(tenant, r.id.sku().as_str(), r.id.bucket()),
                    sk: active_hold_sk(&r.id),
                    tenant_id: tenant.to_string(),
                    id: r.id.as_str().to_owned(),
                    location: r.location.as_str().to_owned(),
                    quantity: r.quantity,
                    expires_at_ms: r.expires_at_ms,
                    expires_at: Some(r.expires_at_ms.div_ceil(1000) as i64),
                };
                let put = |attrs| {
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(attrs))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .map_err(build_error)
                        .map(|p| TransactWriteItem::builder().put(p).build())
                };
                [
                    put(to_attrs(&ReservationStored::new(tenant, r))?)?,
                    put(to_attrs(&active)?)?,
                ]
            }
            HoldWrite::End {
                id,
                status,
                ended_at,
            } => {
                let pk = collection_pk(tenant, id.sku().as_str(), id.bucket());
                let update = Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(pk.clone()))
                    .key("sk", s(reservation_sk(id)))
                    .update_expression("SET #st = :to, ended_at = :at")
                    .condition_expression("#st = :active")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":to", s(status.as_str()))
                    .expression_attribute_values(":at", s(ended_at))
                    .expression_attribute_values(":active", s(ReservationStatus::Active.as_str()))
                    .build()
                    .map_err(build_error)?;
                // Unconditional: TTL may have removed it already (the
                // reservation's condition makes the ending happen once).
                let delete = aws_sdk_dynamodb::types::Delete::builder()
                    .table_name(&self.table)
                    .key("pk", s(pk))
                    .key("sk", s(active_hold_sk(id)))
                    .build()
                    .map_err(build_error)?;
                [
                    TransactWriteItem::builder().update(update).build(),
                    TransactWriteItem::builder().delete(delete).build(),
                ]
            }
        })
    }

    /// The level's own record: at the default location, its holds only.
    fn level_put(
        &self,
        tenant: &TenantId,
        sku: &str,
        write: &LevelWrite<'_>,
    ) -> Result<TransactWriteItem, StoreError> {
        let before = write.before;
        let location = before.location.as_str();
        let stored = LevelStored {
            pk: collection_pk(tenant, sku, before.bucket),
            sk: level_sk(location),
            tenant_id: tenant.to_string(),
            sku: sku.to_owned(),
            location: location.to_owned(),
            bucket: before.bucket,
            on_hand: if before.on_hand_in_item() {
                0
            } else {
                write.after.on_hand
            },
            reserved: write.after.reserved,
            counted_at: write
                .after
                .counted_at
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            holds_check_at: write.holds_check_at,
            version: before.holds_version + 1,
            updated_at: write.at.to_owned(),
            changed_by_request: write.request_id.to_owned(),
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_attrs(&stored)?))
            .condition_expression(if before.holds_version == 0 {
                "attribute_not_exists(pk)"
            } else {
                "version = :v"
            })
            .set_expression_attribute_values(
                (before.holds_version != 0)
                    .then(|| HashMap::from([(":v".to_owned(), n(before.holds_version))])),
            )
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The item's part of a level write: at the default location, its
    /// quantity (or, unchanged, the condition that it is); elsewhere, that
    /// it exists.
    fn item_action(
        &self,
        tenant: &TenantId,
        sku: &str,
        write: &LevelWrite<'_>,
        raise: bool,
    ) -> Result<TransactWriteItem, StoreError> {
        let before = write.before;
        let key = |b: aws_sdk_dynamodb::types::builders::UpdateBuilder| {
            b.table_name(&self.table)
                .key("pk", s(item_pk(tenant, sku)))
                .key("sk", s(ITEM_SK))
        };
        // See `LevelWrite::raises_item_version`: the item's other writers
        // are conditioned on its version alone.
        // (At the default location a change of on hand raises it anyway.)
        let default = before.location.is_default();
        if raise && (!default || write.after.on_hand == before.level.on_hand) {
            let update = if default {
                key(Update::builder())
                    .update_expression("SET version = :nv")
                    .condition_expression("version = :v")
                    .expression_attribute_values(":nv", n(before.version + 1))
                    .expression_attribute_values(":v", n(before.version))
            } else {
                key(Update::builder())
                    .update_expression("ADD version :one")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_values(":one", n(1))
            };
            return Ok(TransactWriteItem::builder()
                .update(update.build().map_err(build_error)?)
                .build());
        }
        if before.location.is_default() && write.after.on_hand != before.level.on_hand {
            let update = key(Update::builder())
                .update_expression("SET quantity = :q, version = :nv, updated_at = :u, changed_by_request = :r REMOVE changed_by_batch")
                .condition_expression("version = :v")
                .expression_attribute_values(":q", n(write.after.on_hand))
                .expression_attribute_values(":nv", n(before.version + 1))
                .expression_attribute_values(":u", s(write.at))
                .expression_attribute_values(":r", s(write.request_id))
                .expression_attribute_values(":v", n(before.version))
                .build()
                .map_err(build_error)?;
            return Ok(TransactWriteItem::builder().update(update).build());
        }
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(item_pk(tenant, sku)))
            .key("sk", s(ITEM_SK));
        let check = if before.location.is_default() {
            check
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(before.version))
        } else {
            check.condition_expression("attribute_exists(pk)")
        };
        Ok(TransactWriteItem::builder()
            .condition_check(check.build().map_err(build_error)?)
            .build())
    }
}

#[async_trait]
impl LevelStore for DynamoItemStore {
    async fn other_levels(
        &self,
        tenant: &TenantId,
        sku: &Sku,
    ) -> Result<Vec<StoredLevel>, StoreError> {
        let mut levels = Vec::new();
        for attrs in self
            .collection(item_pk(tenant, sku.as_str()), LEVEL_PREFIX)
            .await?
        {
            let level = from_attrs::<LevelStored>(attrs)?.into_stored()?;
            if !level.location.is_default() {
                levels.push(level);
            }
        }
        Ok(levels)
    }

    async fn level(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        location: &LocationId,
    ) -> Result<StoredLevel, StoreError> {
        if location.is_default() {
            return self.default_level(tenant, sku).await;
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(item_pk(tenant, sku.as_str())))
            .key("sk", s(level_sk(location.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        match out.item {
            Some(attrs) => from_attrs::<LevelStored>(attrs)?.into_stored(),
            None => Ok(StoredLevel::empty(location.clone())),
        }
    }

    async fn record_level_change(
        &self,
        tenant: &TenantId,
        write: &LevelWrite<'_>,
    ) -> Result<(), StoreError> {
        // A bucket's write leaves the item alone (see `stock_split`).
        let item = write
            .before
            .bucket
            .is_none()
            .then(|| write.raises_item_version());
        let actions = self.level_actions(tenant, write, item)?;
        self.transact_levels(tenant, actions, write.idempotency)
            .await
    }

    async fn levels_of(
        &self,
        tenant: &TenantId,
        pairs: &[(Sku, LocationId)],
    ) -> Result<Vec<Option<StoredLevel>>, StoreError> {
        use std::collections::BTreeSet;
        // Every key once: the items, the (non-default) locations and the
        // level records, read in BatchGetItem pages of 100.
        let mut keys: BTreeSet<(String, String)> = BTreeSet::new();
        for (sku, location) in pairs {
            let pk = item_pk(tenant, sku.as_str());
            keys.insert((pk.clone(), ITEM_SK.to_owned()));
            keys.insert((pk, level_sk(location.as_str())));
            if !location.is_default() {
                keys.insert((locations_pk(tenant), location_sk(location.as_str())));
            }
        }
        let found = batch_get(
            &self.client,
            &self.table,
            keys.iter()
                .map(|(pk, sk)| Attrs::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))]))
                .collect(),
        )
        .await?;
        let mut by_key: HashMap<(String, String), Attrs> = HashMap::new();
        for attrs in found {
            let key = match (attrs.get("pk"), attrs.get("sk")) {
                (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => {
                    (pk.clone(), sk.clone())
                }
                _ => return Err(StoreError::Corrupt("a record without keys".into())),
            };
            by_key.insert(key, attrs);
        }
        let mut levels = Vec::with_capacity(pairs.len());
        for (sku, location) in pairs {
            let pk = item_pk(tenant, sku.as_str());
            let Some(item) = by_key.get(&(pk.clone(), ITEM_SK.to_owned())) else {
                levels.push(None);
                continue;
            };
            if !location.is_default()
                && !by_key.contains_key(&(locations_pk(tenant), location_sk(location.as_str())))
            {
                levels.push(None);
                continue;
            }
            let record = by_key
                .get(&(pk, level_sk(location.as_str())))
                .cloned()
                .map(|attrs| from_attrs::<LevelStored>(attrs)?.into_stored())
                .transpose()?;
            let level = if location.is_default() {
                default_level_of(from_attrs(item.clone())?, record)
            } else {
                record.unwrap_or_else(|| StoredLevel::empty(location.clone()))
            };
            levels.push(Some(level));
        }
        Ok(levels)
    }

    async fn record_transfer(
        &self,
        tenant: &TenantId,
        from: &LevelWrite<'_>,
        to: &LevelWrite<'_>,
    ) -> Result<(), StoreError> {
        // A transaction touches an item once: the item's part (its
        // quantity at the default location, else that it exists) goes with
        // one side only, the default location's if either is.
        let to_has_item = to.before.location.is_default();
        let raise = from.raises_item_version() || to.raises_item_version();
        let mut actions = self.level_actions(tenant, from, (!to_has_item).then_some(raise))?;
        actions.extend(self.level_actions(tenant, to, to_has_item.then_some(raise))?);
        self.transact_levels(tenant, actions, from.idempotency)
            .await
    }

    async fn bucket_level(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        bucket: u16,
    ) -> Result<StoredLevel, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(bucket_pk(tenant, sku.as_str(), bucket)))
            .key("sk", s(level_sk(DEFAULT_LOCATION)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        match out.item {
            Some(attrs) => from_attrs::<LevelStored>(attrs)?.into_stored(),
            None => Ok(StoredLevel::empty_bucket(bucket)),
        }
    }

    async fn bucket_levels(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        count: u16,
    ) -> Result<Vec<StoredLevel>, StoreError> {
        let keys = (0..count)
            .map(|b| {
                Attrs::from([
                    ("pk".to_owned(), s(bucket_pk(tenant, sku.as_str(), b))),
                    ("sk".to_owned(), s(level_sk(DEFAULT_LOCATION))),
                ])
            })
            .collect();
        let mut levels: Vec<StoredLevel> = (0..count).map(StoredLevel::empty_bucket).collect();
        for attrs in batch_get(&self.client, &self.table, keys).await? {
            let level = from_attrs::<LevelStored>(attrs)?.into_stored()?;
            let slot = level
                .bucket
                .and_then(|b| levels.get_mut(usize::from(b)))
                .ok_or_else(|| StoreError::Corrupt("a bucket level without its bucket".into()))?;
            *slot = level;
        }
        Ok(levels)
    }

    async fn move_stock(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        writes: &[LevelWrite<'_>],
        split: Option<SplitChange>,
    ) -> Result<(), StoreError> {
        let mut actions = Vec::new();
        for write in writes {
            let before = write.before;
            if before.bucket.is_none() {
                if !before.location.is_default() {
                    return Err(StoreError::Corrupt(
                        "stock moves between the default location and its buckets".into(),
                    ));
                }
                actions.push(self.split_item_update(tenant, sku, write, split)?);
                actions.extend(self.level_own_actions(tenant, sku.as_str(), write)?);
            } else if matches!(split, Some(SplitChange::Close { .. })) {
                // Closing the split: a bucket is open while its level record
                // exists, so it goes, on the condition it is as read.
                actions.push(self.bucket_close(tenant, sku, write)?);
            } else {
                actions.extend(self.level_own_actions(tenant, sku.as_str(), write)?);
            }
        }
        self.transact_levels(tenant, actions, None).await
    }
}

impl DynamoItemStore {
    /// The item's part of a stock move: its quantity (its own level's on
    /// hand), on its version, and its split when that changes.
    fn split_item_update(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        write: &LevelWrite<'_>,
        split: Option<SplitChange>,
    ) -> Result<TransactWriteItem, StoreError> {
        let before = write.before;
        // Closing: the buckets' versions join the item's (see `SplitChange`).
        let closed_versions = match split {
            Some(SplitChange::Close { versions }) => versions,
            _ => 0,
        };
        let mut expression =
            "SET quantity = :q, version = :nv, updated_at = :u, changed_by_request = :r".to_owned();
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(item_pk(tenant, sku.as_str())))
            .key("sk", s(ITEM_SK))
            .condition_expression("version = :v")
            .expression_attribute_values(":q", n(write.after.on_hand))
            .expression_attribute_values(":nv", n(before.version + 1 + closed_versions))
            .expression_attribute_values(":u", s(write.at))
            .expression_attribute_values(":r", s(write.request_id))
            .expression_attribute_values(":v", n(before.version));
        match split {
            Some(SplitChange::Open {
                buckets,
                partitions,
            }) => {
                // `bucket_partitions`: how many a listing of the sku's
                // movements and holds reads, kept once the split ends.
                expression.push_str(", stock_buckets = :b, bucket_partitions = :p");
                update = update
                    .expression_attribute_values(":b", n(u64::from(buckets)))
                    .expression_attribute_values(":p", n(u64::from(partitions)));
            }
            Some(SplitChange::Close { .. }) => {
                expression.push_str(" REMOVE stock_buckets, changed_by_batch")
            }
            None => expression.push_str(" REMOVE changed_by_batch"),
        }
        Ok(TransactWriteItem::builder()
            .update(
                update
                    .update_expression(expression)
                    .build()
                    .map_err(build_error)?,
            )
            .build())
    }

    /// A bucket's level record deleted as the split closes, on its version.
    fn bucket_close(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        write: &LevelWrite<'_>,
    ) -> Result<TransactWriteItem, StoreError> {
        let before = write.before;
        let Some(bucket) = before.bucket else {
            return Err(StoreError::Corrupt(
                "closing a level that is no bucket".into(),
            ));
        };
        if write.after.on_hand != 0 || write.after.reserved != 0 {
            return Err(StoreError::Corrupt(
                "closing a bucket that holds stock".into(),
            ));
        }
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .key("pk", s(bucket_pk(tenant, sku.as_str(), bucket)))
            .key("sk", s(level_sk(DEFAULT_LOCATION)))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(before.holds_version))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

/// A level away from the default location that starts (true) or stops
/// (false) holding stock: its location and tally shard.
fn tally_change<'a>(write: &LevelWrite<'a>, sku: &str) -> Option<(&'a str, String, bool)> {
    let before = write.before;
    let (was, is) = (before.level.on_hand > 0, write.after.on_hand > 0);
    (!before.location.is_default() && before.bucket.is_none() && was != is).then(|| {
        (
            before.location.as_str(),
            tally_sk(shard_of(sku, LOCATION_SHARDS)),
            is,
        )
    })
}

impl DynamoItemStore {
    /// A level write's actions, but for its idempotency record (and, with
    /// `item` None, the item's part; Some(raise): whether that part raises
    /// the item's version).
    fn level_actions(
        &self,
        tenant: &TenantId,
        write: &LevelWrite<'_>,
        item: Option<bool>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let Some(sku) = write.movements.first().map(|m| m.sku.clone()).or_else(|| {
            write
                .holds
                .iter()
                .map(|h| match h {
                    HoldWrite::Create(r) => r.id.sku().to_string(),
                    HoldWrite::End { id, .. } => id.sku().to_string(),
                })
                .next()
        }) else {
            return Err(StoreError::Corrupt("a level write names no sku".into()));
        };
        let mut actions = Vec::new();
        if let Some(raise) = item {
            actions.push(self.item_action(tenant, &sku, write, raise)?);
        }
        actions.extend(self.level_own_actions(tenant, &sku, write)?);
        if let Some((location, shard, counts)) = tally_change(write, &sku) {
            actions.push(self.tally_action(
                tenant,
                location,
                &shard,
                if counts { 1 } else { -1 },
                counts,
            )?);
        }
        Ok(actions)
    }

    /// The actions of the levels an atomic batch changes (their items are
    /// the batch's own): each level's, and each location tally shard once,
    /// by the net change of its levels holding stock.
    pub(super) fn atomic_level_actions(
        &self,
        tenant: &TenantId,
        writes: &[(&str, LevelWrite<'_>)],
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut actions = Vec::new();
        let mut tallies: std::collections::BTreeMap<(&str, String), (i64, bool)> =
            std::collections::BTreeMap::new();
        for (sku, write) in writes {
            actions.extend(self.level_own_actions(tenant, sku, write)?);
            if let Some((location, shard, counts)) = tally_change(write, sku) {
                let tally = tallies.entry((location, shard)).or_default();
                tally.0 += if counts { 1 } else { -1 };
                tally.1 |= counts;
            }
        }
        for ((location, shard), (delta, needs_open)) in tallies {
            actions.push(self.tally_action(tenant, location, &shard, delta, needs_open)?);
        }
        Ok(actions)
    }

    /// One location tally shard moves by `delta` levels holding stock; a
    /// level that starts holding stock needs the shard open (the location
    /// exists).
    fn tally_action(
        &self,
        tenant: &TenantId,
        location: &str,
        shard: &str,
        delta: i64,
        needs_open: bool,
    ) -> Result<TransactWriteItem, StoreError> {
        let tally = Update::builder()
            .table_name(&self.table)
            .key("pk", s(tally_pk(tenant, location)))
            .key("sk", s(shard))
            .update_expression("ADD stocked :d")
            .expression_attribute_values(":d", n(delta))
            .set_condition_expression(needs_open.then(|| "attribute_exists(#open)".to_owned()))
            .set_expression_attribute_names(
                needs_open.then(|| HashMap::from([("#open".to_owned(), "open".to_owned())])),
            )
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(tally).build())
    }

    /// A level write's own actions: its record (or the condition that it
    /// is unchanged), its movements and its holds.
    fn level_own_actions(
        &self,
        tenant: &TenantId,
        sku: &str,
        write: &LevelWrite<'_>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let before = write.before;
        let location = before.location.as_str();
        let sku = sku.to_owned();
        let mut actions = Vec::new();
        // The default location's holds record is written only when its
        // holds change (an adjustment there conditions on it instead).
        let holds_change = !before.on_hand_in_item()
            || write.after.reserved != before.level.reserved
            || write.after.counted_at != before.level.counted_at
            || write.holds_check_at != before.holds_check_at
            || !write.holds.is_empty();
        if holds_change {
            actions.push(self.level_put(tenant, &sku, write)?);
        } else {
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .key("pk", s(collection_pk(tenant, &sku, before.bucket)))
                .key("sk", s(level_sk(location)));
            let check = if before.holds_version == 0 {
                check.condition_expression("attribute_not_exists(pk)")
            } else {
                check
                    .condition_expression("version = :v")
                    .expression_attribute_values(":v", n(before.holds_version))
            };
            actions.push(
                TransactWriteItem::builder()
                    .condition_check(check.build().map_err(build_error)?)
                    .build(),
            );
        }
        for m in &write.movements {
            actions.push(self.movement_put(tenant, m)?);
        }
        for hold in &write.holds {
            actions.extend(self.hold_actions(tenant, hold)?);
        }
        Ok(actions)
    }

    async fn transact_levels(
        &self,
        tenant: &TenantId,
        mut actions: Vec<TransactWriteItem>,
        idempotency: Option<&stockroom_app::ports::IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let idempotency_at = actions.len();
        if let Some(rec) = idempotency {
            actions.push(IdempotencyStored::put(&self.table, tenant, rec)?);
        }
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Condition(f)) if TransactFailure::failed(&f, idempotency_at) => {
                Err(StoreError::IdempotencyKeyTaken)
            }
            Err(TransactFailure::Condition(_) | TransactFailure::Conflict) => {
                Err(StoreError::ConditionFailed)
            }
            Err(TransactFailure::Store(e)) => Err(e),
        }
    }
}

#[async_trait]
impl ReservationStore for DynamoItemStore {
    async fn get_reservation(
        &self,
        tenant: &TenantId,
        id: &ReservationId,
    ) -> Result<Option<StoredReservation>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                "pk",
                s(collection_pk(tenant, id.sku().as_str(), id.bucket())),
            )
            .key("sk", s(reservation_sk(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        out.item
            .map(|attrs| from_attrs::<ReservationStored>(attrs)?.into_stored())
            .transpose()
    }

    async fn list_reservations(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        partitions: u16,
        status: Option<ReservationStatus>,
        limit: u32,
        start: Option<PageKey>,
    ) -> Result<Page<StoredReservation>, StoreError> {
        let want = usize::try_from(limit).unwrap_or(usize::MAX);
        // Positions are reservation ULIDs (`{"id": ...}`), as in memory:
        // their sort keys order the buckets' holds too.
        let reading = Reading {
            after: start
                .and_then(|k| k.get("id").cloned())
                .map(|ulid| format!("{RESERVATION_PREFIX}{ulid}")),
            prefix: Some(RESERVATION_PREFIX),
            descending: false,
            consistent: true,
            only: status.map(|st| ("status", st.as_str().to_owned())),
            projection: None,
        };
        let page = gather_with(
            &self.client,
            &self.table,
            collection_ranges(tenant, sku, partitions),
            want,
            reading,
        )
        .await?;
        let next = match page.entries.last() {
            Some((sk, _)) if page.more => Some(PageKey::from([(
                "id".to_owned(),
                sk.strip_prefix(RESERVATION_PREFIX).unwrap_or(sk).to_owned(),
            )])),
            _ => None,
        };
        let items = page
            .entries
            .into_iter()
            .map(|(_, attrs)| from_attrs::<ReservationStored>(attrs)?.into_stored())
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    async fn active_holds(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        bucket: Option<u16>,
        location: Option<&LocationId>,
    ) -> Result<Vec<ActiveHold>, StoreError> {
        let mut holds = Vec::new();
        for attrs in self
            .collection(
                collection_pk(tenant, sku.as_str(), bucket),
                ACTIVE_HOLD_PREFIX,
            )
            .await?
        {
            let hold = from_attrs::<ActiveHoldStored>(attrs)?.into_hold()?;
            if location.is_none_or(|l| &hold.location == l) {
                holds.push(hold);
            }
        }
        Ok(holds)
    }
}
