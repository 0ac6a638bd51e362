//! [`LocationStore`] on the stock table: one record per location under the
//! tenant's locations key (`T#<tenant>#LOC`, sort key `LOC#<id>`), so a
//! listing is one Query in id order. The prefix keeps a location id such as
//! `ITEM` or `BATCH` from reading as another record kind in the table's
//! stream (`stream.rs` tells kinds by sort key). The default location is
//! not stored.

use super::error::{build_error, classify};
use super::items::start_key;
use super::projection::{Decoder, StoredFields, Unread, project_get, project_query};
use super::tx::TransactFailure;
use super::{DynamoItemStore, n, query_page, s, to_attrs};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use stockroom_app::ports::{LocationStore, Page, PageKey, StoreError};
use stockroom_domain::location::{Location, LocationId, LocationKind};
use stockroom_domain::{Fields, TenantId};

pub(crate) fn locations_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#LOC")
}

pub(crate) const LOCATION_PREFIX: &str = "LOC#";

/// Counters per location of its levels that hold stock (see `levels`).
pub(crate) const LOCATION_SHARDS: u32 = 16;

pub(crate) fn tally_pk(tenant: &TenantId, location: &str) -> String {
    format!("T#{tenant}#LOC#{location}")
}

pub(crate) fn tally_sk(shard: u32) -> String {
    format!("N#{shard:02}")
}

pub(crate) fn location_sk(id: &str) -> String {
    format!("{LOCATION_PREFIX}{id}")
}

/// `default` is not stored (a stored location never is the default one):
/// selecting it alone reads the id.
const LOCATION_STORED: StoredFields = StoredFields {
    sources: &[("default", &["id"])],
};

#[derive(Serialize, Deserialize)]
pub(crate) struct LocationStored {
    pub pk: String,
    pub sk: String,
    pub tenant_id: String,
    pub id: String,
    pub name: String,
    pub kind: LocationKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

impl From<LocationStored> for Location {
    fn from(r: LocationStored) -> Self {
        Location {
            id: r.id,
            name: r.name,
            kind: r.kind,
            default: false,
            created_at: r.created_at,
        }
    }
}

impl Unread for LocationStored {
    fn unread() -> Self {
        Self {
            pk: String::new(),
            sk: String::new(),
            tenant_id: String::new(),
            id: String::new(),
            name: String::new(),
            kind: LocationKind::Other,
            created_at: None,
        }
    }
}

#[async_trait]
impl LocationStore for DynamoItemStore {
    /// The location's record and its stock tally's shards, all open, in
    /// one transaction (`levels.rs`).
    async fn create_location(
        &self,
        tenant: &TenantId,
        location: &Location,
    ) -> Result<(), StoreError> {
        let stored = LocationStored {
            pk: locations_pk(tenant),
            sk: location_sk(&location.id),
            tenant_id: tenant.to_string(),
            id: location.id.clone(),
            name: location.name.clone(),
            kind: location.kind,
            created_at: location.created_at.clone(),
        };
        let record = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_attrs(&stored)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let mut actions = vec![TransactWriteItem::builder().put(record).build()];
        for shard in 0..LOCATION_SHARDS {
            let open = Put::builder()
                .table_name(&self.table)
                .item("pk", s(tally_pk(tenant, &location.id)))
                .item("sk", s(tally_sk(shard)))
                .item("open", AttributeValue::Bool(true))
                .item("stocked", n(0))
                .build()
                .map_err(build_error)?;
            actions.push(TransactWriteItem::builder().put(open).build());
        }
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Condition(_)) => Err(StoreError::AlreadyExists),
            Err(TransactFailure::Conflict) => Err(StoreError::ConditionFailed),
            Err(TransactFailure::Store(e)) => Err(e),
        }
    }

    async fn get_location(
        &self,
        tenant: &TenantId,
        id: &LocationId,
        fields: Option<&Fields<Location>>,
    ) -> Result<Option<Location>, StoreError> {
        let projection = LOCATION_STORED.projection(fields);
        let decoder = Decoder::<LocationStored>::new(projection.is_some())?;
        let get = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(locations_pk(tenant)))
            .key("sk", s(location_sk(id.as_str())))
            .consistent_read(true);
        let out = project_get(get, projection)
            .send()
            .await
            .map_err(classify)?;
        out.item
            .map(|attrs| decoder.decode(attrs).map(Location::from))
            .transpose()
    }

    async fn list_locations(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Location>>,
    ) -> Result<Page<Location>, StoreError> {
        let projection = LOCATION_STORED.projection(fields);
        let decoder = Decoder::<LocationStored>::new(projection.is_some())?;
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(locations_pk(tenant)))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start_key(start));
        let out = project_query(query, projection)
            .send()
            .await
            .map_err(classify)?;
        query_page::<LocationStored, Location>(out, &decoder)
    }

    /// The record goes, and every shard of its tally closes on the
    /// condition that it counts no stocked level, in one transaction.
    async fn delete_location(
        &self,
        tenant: &TenantId,
        id: &LocationId,
    ) -> Result<bool, StoreError> {
        let record = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(locations_pk(tenant)))
            .key("sk", s(location_sk(id.as_str())))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build_error)?;
        let mut actions = vec![TransactWriteItem::builder().delete(record).build()];
        for shard in 0..LOCATION_SHARDS {
            let close = Update::builder()
                .table_name(&self.table)
                .key("pk", s(tally_pk(tenant, id.as_str())))
                .key("sk", s(tally_sk(shard)))
                .update_expression("REMOVE #open")
                .condition_expression("attribute_not_exists(stocked) OR stocked = :zero")
                .expression_attribute_names("#open", "open")
                .expression_attribute_values(":zero", n(0))
                .build()
                .map_err(build_error)?;
            actions.push(TransactWriteItem::builder().update(close).build());
        }
        match self.transact(actions).await {
            Ok(()) => Ok(true),
            Err(TransactFailure::Condition(failed)) if TransactFailure::failed(&failed, 0) => {
                Ok(false)
            }
            Err(TransactFailure::Condition(_)) => Err(StoreError::LocationHoldsStock),
            Err(TransactFailure::Conflict) => Err(StoreError::ConditionFailed),
            Err(TransactFailure::Store(e)) => Err(e),
        }
    }
}
