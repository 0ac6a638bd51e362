//! [`LevelStore`] on the stock table. A sku's level at a location other
//! than the default one is `T#<tenant>#I#<sku>` / `L#<location>`, in the
//! item's collection: a sku's levels are one Query, and a change of one is
//! one transaction within one partition. (The default location's level is
//! the item's `quantity`.)
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
use super::records::{IdempotencyStored, feed_shard, item_pk};
use super::tx::TransactFailure;
use super::{Attrs, DynamoItemStore, from_attrs, n, s, to_attrs};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use stockroom_app::ports::{IdempotencyRecord, LevelStore, StoreError, StoredLevel};
use stockroom_domain::level::{Level, OccurredAt};
use stockroom_domain::location::LocationId;
use stockroom_domain::{Movement, Sku, TenantId};

pub(crate) const LEVEL_PREFIX: &str = "L#";
/// Counters per location of its stocked levels.
pub(crate) const LOCATION_SHARDS: u32 = 16;

pub(crate) fn level_sk(location: &str) -> String {
    format!("{LEVEL_PREFIX}{location}")
}

pub(crate) fn tally_pk(tenant: &TenantId, location: &str) -> String {
    format!("T#{tenant}#LOC#{location}")
}

pub(crate) fn tally_sk(shard: u32) -> String {
    format!("N#{shard:02}")
}

#[derive(Serialize, Deserialize)]
pub(crate) struct LevelStored {
    pub pk: String,
    pub sk: String,
    pub tenant_id: String,
    pub sku: String,
    pub location: String,
    pub on_hand: i64,
    pub reserved: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_at: Option<String>,
    pub version: u64,
    pub updated_at: String,
    pub changed_by_request: String,
}

impl LevelStored {
    fn into_stored(self) -> Result<StoredLevel, StoreError> {
        Ok(StoredLevel {
            location: LocationId::parse(&self.location).map_err(StoreError::Corrupt)?,
            level: Level {
                on_hand: self.on_hand,
                reserved: self.reserved,
                counted_at: self.counted_at.map(OccurredAt::from_stored),
            },
            version: self.version,
        })
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
        let mut start: Option<Attrs> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :l)")
                .expression_attribute_values(":pk", s(item_pk(tenant, sku.as_str())))
                .expression_attribute_values(":l", s(LEVEL_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            for attrs in out.items.unwrap_or_default() {
                levels.push(from_attrs::<LevelStored>(attrs)?.into_stored()?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(levels),
            }
        }
    }

    async fn level(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        location: &LocationId,
    ) -> Result<StoredLevel, StoreError> {
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
        before: &StoredLevel,
        after: &Level,
        movement: &Movement,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let location = before.location.as_str();
        let pk = item_pk(tenant, &movement.sku);
        let stored = LevelStored {
            pk: pk.clone(),
            sk: level_sk(location),
            tenant_id: tenant.to_string(),
            sku: movement.sku.clone(),
            location: location.to_owned(),
            on_hand: after.on_hand,
            reserved: after.reserved,
            counted_at: after.counted_at.as_ref().map(|c| c.as_str().to_owned()),
            version: before.version + 1,
            updated_at: movement.created_at.clone(),
            changed_by_request: movement.request_id.clone(),
        };
        let level =
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(to_attrs(&stored)?))
                .condition_expression(if before.version == 0 {
                    "attribute_not_exists(pk)"
                } else {
                    "version = :v"
                })
                .set_expression_attribute_values((before.version != 0).then(|| {
                    std::collections::HashMap::from([(":v".to_owned(), n(before.version))])
                }))
                .build()
                .map_err(build_error)?;
        let item_exists = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(super::records::ITEM_SK))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build_error)?;
        let mut actions = vec![
            TransactWriteItem::builder().put(level).build(),
            TransactWriteItem::builder()
                .condition_check(item_exists)
                .build(),
            self.movement_put(tenant, movement)?,
        ];
        let (was, is) = (before.level.on_hand > 0, after.on_hand > 0);
        if was != is {
            let tally = Update::builder()
                .table_name(&self.table)
                .key("pk", s(tally_pk(tenant, location)))
                .key(
                    "sk",
                    s(tally_sk(feed_shard(&movement.sku, LOCATION_SHARDS))),
                )
                .update_expression("ADD stocked :d")
                .expression_attribute_values(":d", n(if is { 1 } else { -1 }))
                .set_condition_expression(is.then(|| "attribute_exists(#open)".to_owned()))
                .set_expression_attribute_names(is.then(|| {
                    std::collections::HashMap::from([("#open".to_owned(), "open".to_owned())])
                }))
                .build()
                .map_err(build_error)?;
            actions.push(TransactWriteItem::builder().update(tally).build());
        }
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
