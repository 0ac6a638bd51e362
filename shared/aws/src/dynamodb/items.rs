use super::error::{build_error, classify};
use super::projection::{Decoder, Projection, StoredFields, project_get, project_query};
use super::records::*;
use super::sharded::{KeyRange, Reading, gather, gather_with};
use super::tx::{TransactFailure, batch_get_projected, transact};
use super::{Attrs, from_attrs, n, s, to_attrs};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};
use stockroom_app::ports::{ChangeLog, IdempotencyRecord, ItemStore, Page, PageKey, StoreError};
use stockroom_domain::change::{ChangeCause, Deletion};
use stockroom_domain::{Fields, Item, Movement, Sku, TenantId};

/// Items by `T#<tenant>#L#<shard>`, then sku; keys only.
const LISTING_INDEX: &str = "gsi3";
/// Items written before the listing was sharded: by `T#<tenant>`, then sku.
const LEGACY_LISTING_INDEX: &str = "gsi1";
/// Where a listing cursor resumes: after its sku, `gsi1`'s sort key.
fn listing_cursor(key: &PageKey) -> Option<&str> {
    key.get("gsi1sk").map(String::as_str)
}

/// The cursor after `sku`, in the shape the release before gives and reads
/// (`gsi1`'s key of the item): a client holding it may be served by either
/// during a gradual deploy or after a rollback.
fn listing_cursor_after(tenant: &TenantId, sku: &str) -> PageKey {
    PageKey::from([
        ("gsi1pk".to_owned(), legacy_listing_pk(tenant)),
        ("gsi1sk".to_owned(), sku.to_owned()),
        ("pk".to_owned(), item_pk(tenant, sku)),
        ("sk".to_owned(), ITEM_SK.to_owned()),
    ])
}
/// The change feed: movements by `T#<tenant>#CH#<shard>`, then id.
const FEED_INDEX: &str = "gsi2";

/// Items and movements keep every API field under its own name.
const ITEM_STORED: StoredFields = StoredFields::SAME_NAMES;
const MOVEMENT_STORED: StoredFields = StoredFields::SAME_NAMES;

/// [`ItemStore`] on one DynamoDB table (see the module docs for the layout).
#[derive(Clone, Debug)]
pub struct DynamoItemStore {
    pub(super) client: Client,
    pub(super) table: String,
    /// What it writes where sharding moved things.
    pub(super) layout: WriteLayout,
}

impl DynamoItemStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            layout: WriteLayout::default(),
        }
    }

    /// Writes in `layout` (reads are the same in both).
    pub fn with_write_layout(mut self, layout: WriteLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Builds the client from shared SDK configuration (no network call).
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), table)
    }

    fn put(&self, item: Attrs, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub(super) fn movement_put(
        &self,
        tenant: &TenantId,
        m: &Movement,
    ) -> Result<TransactWriteItem, StoreError> {
        // A movement id is never reused; the condition guards against a replayed write.
        self.put(
            to_attrs(&MovementRecord::new(tenant, m, self.layout))?,
            Some("attribute_not_exists(pk)"),
        )
    }

    fn key(pk: String, sk: &str) -> Attrs {
        Attrs::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
    }

    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), TransactFailure> {
        transact(&self.client, items).await
    }
}

impl DynamoItemStore {
    async fn read_item(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        fields: Option<&Fields<Item>>,
        consistent: bool,
    ) -> Result<Option<Item>, StoreError> {
        let projection = ITEM_STORED.projection(fields);
        let decoder = Decoder::<ItemRecord>::new(projection.is_some())?;
        let get = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(item_pk(tenant, sku.as_str()), ITEM_SK)))
            .consistent_read(consistent);
        let out = project_get(get, projection)
            .send()
            .await
            .map_err(classify)?;
        out.item
            .map(|attrs| decoder.decode(attrs).map(Item::from))
            .transpose()
    }
}

/// A sku's collection and its first `partitions` buckets': where its
/// movements and holds are.
pub(crate) fn collection_ranges(tenant: &TenantId, sku: &Sku, partitions: u16) -> Vec<KeyRange> {
    std::iter::once(item_pk(tenant, sku.as_str()))
        .chain((0..partitions).map(|b| bucket_pk(tenant, sku.as_str(), b)))
        .map(|pk| KeyRange {
            index: None,
            pk_name: "pk",
            pk,
            sk_name: "sk",
        })
        .collect()
}

pub(crate) fn page_key(attrs: Option<&Attrs>) -> Option<PageKey> {
    attrs.map(|m| {
        m.iter()
            .filter_map(|(k, v)| v.as_s().ok().map(|s| (k.clone(), s.clone())))
            .collect()
    })
}

pub(crate) fn start_key(key: Option<PageKey>) -> Option<Attrs> {
    key.map(|k| k.into_iter().map(|(k, v)| (k, s(v))).collect())
}

#[async_trait]
impl ItemStore for DynamoItemStore {
    async fn get_item(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        fields: Option<&Fields<Item>>,
    ) -> Result<Option<Item>, StoreError> {
        self.read_item(tenant, sku, fields, true).await
    }

    async fn get_item_hint(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        fields: Option<&Fields<Item>>,
    ) -> Result<Option<Item>, StoreError> {
        self.read_item(tenant, sku, fields, false).await
    }

    async fn create_item(
        &self,
        tenant: &TenantId,
        item: &Item,
        opening: Option<&Movement>,
        cause: &ChangeCause,
    ) -> Result<(), StoreError> {
        let mut actions = vec![self.put(
            to_attrs(&ItemRecord::new(tenant, item, cause, self.layout))?,
            Some("attribute_not_exists(pk)"),
        )?];
        if let Some(m) = opening {
            actions.push(self.movement_put(tenant, m)?);
        }
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Condition(f)) if TransactFailure::failed(&f, 0) => {
                Err(StoreError::AlreadyExists)
            }
            Err(TransactFailure::Condition(_) | TransactFailure::Conflict) => {
                Err(StoreError::ConditionFailed)
            }
            Err(TransactFailure::Store(e)) => Err(e),
        }
    }

    async fn replace_item(
        &self,
        tenant: &TenantId,
        item: &Item,
        expected_version: u64,
        cause: &ChangeCause,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attrs(&ItemRecord::new(
                tenant,
                item,
                cause,
                self.layout,
            ))?))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(expected_version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::ConditionFailed)
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn delete_item(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        expected_version: u64,
        closing: Option<&Movement>,
        deletion: &Deletion,
    ) -> Result<(), StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(item_pk(tenant, sku.as_str()), ITEM_SK)))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(expected_version))
            .build()
            .map_err(build_error)?;
        let mut actions = vec![
            TransactWriteItem::builder().delete(delete).build(),
            self.put(to_attrs(&DeletionStored::new(tenant, deletion))?, None)?,
        ];
        if let Some(m) = closing {
            actions.push(self.movement_put(tenant, m)?);
        }
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Condition(_) | TransactFailure::Conflict) => {
                Err(StoreError::ConditionFailed)
            }
            Err(TransactFailure::Store(e)) => Err(e),
        }
    }

    /// Scatter-gather over the listing's shards and the legacy key (one
    /// keys-only Query each, in parallel), merged in sku order; then the
    /// page's items, read strongly consistent by key (with `fields`, only
    /// those and the sku that places each item).
    async fn list_items(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Item>>,
    ) -> Result<Page<Item>, StoreError> {
        let projection = ITEM_STORED.projection(fields).map(|p| p.including("sku"));
        let decoder = Decoder::<ItemRecord>::new(projection.is_some())?;
        let after = start.as_ref().and_then(listing_cursor);
        let mut ranges: Vec<KeyRange> = (0..LISTING_SHARDS)
            .map(|shard| KeyRange {
                index: Some(LISTING_INDEX),
                pk_name: "gsi3pk",
                pk: listing_pk(tenant, shard),
                sk_name: "gsi3sk",
            })
            .collect();
        ranges.push(KeyRange {
            index: Some(LEGACY_LISTING_INDEX),
            pk_name: "gsi1pk",
            pk: legacy_listing_pk(tenant),
            sk_name: "gsi1sk",
        });
        let want = usize::try_from(limit).unwrap_or(usize::MAX);
        let keys_only = Some(Projection::nothing());
        let page = gather(
            &self.client,
            &self.table,
            ranges,
            after,
            None,
            want,
            keys_only,
        )
        .await?;
        let keys = page
            .entries
            .iter()
            .map(|(sku, _)| Self::key(item_pk(tenant, sku), ITEM_SK))
            .collect();
        let mut found: std::collections::HashMap<String, Item> =
            batch_get_projected(&self.client, &self.table, keys, projection)
                .await?
                .into_iter()
                .map(|attrs| {
                    decoder
                        .decode(attrs)
                        .map(|r| (r.sku.clone(), Item::from(r)))
                })
                .collect::<Result<_, _>>()?;
        // An entry whose item is gone (the index lags a delete) is skipped.
        let items = page
            .entries
            .iter()
            .filter_map(|(sku, _)| found.remove(sku))
            .collect();
        let next = match page.entries.last() {
            Some((sku, _)) if page.more => Some(listing_cursor_after(tenant, sku)),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn record_adjustment(
        &self,
        tenant: &TenantId,
        item: &Item,
        expected_version: u64,
        movement: &Movement,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(item_pk(tenant, &item.sku), ITEM_SK)))
            .update_expression("SET quantity = :q, version = :nv, updated_at = :u, changed_by_request = :r REMOVE changed_by_batch")
            .condition_expression("version = :v")
            .expression_attribute_values(":r", s(&movement.request_id))
            .expression_attribute_values(":q", n(item.quantity))
            .expression_attribute_values(":nv", n(item.version))
            .expression_attribute_values(":u", s(&item.updated_at))
            .expression_attribute_values(":v", n(expected_version))
            .build()
            .map_err(build_error)?;
        let mut actions = vec![
            TransactWriteItem::builder().update(update).build(),
            self.movement_put(tenant, movement)?,
        ];
        if let Some(rec) = idempotency {
            actions.push(IdempotencyStored::put(&self.table, tenant, rec)?);
        }
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Condition(f)) if TransactFailure::failed(&f, 2) => {
                Err(StoreError::IdempotencyKeyTaken)
            }
            Err(TransactFailure::Condition(_) | TransactFailure::Conflict) => {
                Err(StoreError::ConditionFailed)
            }
            Err(TransactFailure::Store(e)) => Err(e),
        }
    }

    async fn list_movements(
        &self,
        tenant: &TenantId,
        sku: &Sku,
        partitions: u16,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Movement>>,
    ) -> Result<Page<Movement>, StoreError> {
        let projection = MOVEMENT_STORED.projection(fields);
        let decoder = Decoder::<MovementRecord>::new(projection.is_some())?;
        let reading = Reading {
            // The cursor is the last movement's key in the item's collection
            // (the shape the release before gives and reads); its sort key
            // orders the buckets' movements too.
            after: start.as_ref().and_then(|k| k.get("sk")).cloned(),
            prefix: Some(MOVEMENT_PREFIX),
            descending: true,
            // A count reads what applied after it here, and a client reads
            // its own writes.
            consistent: true,
            only: None,
            projection,
        };
        let want = usize::try_from(limit).unwrap_or(usize::MAX);
        let page = gather_with(
            &self.client,
            &self.table,
            collection_ranges(tenant, sku, partitions),
            want,
            reading,
        )
        .await?;
        let next = match page.entries.last() {
            Some((sk, _)) if page.more => Some(PageKey::from([
                ("pk".to_owned(), item_pk(tenant, sku.as_str())),
                ("sk".to_owned(), sk.clone()),
            ])),
            _ => None,
        };
        let items = page
            .entries
            .into_iter()
            .map(|(_, attrs)| decoder.decode(attrs).map(Movement::from))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        read_idempotency(&self.client, &self.table, tenant, key).await
    }

    async fn record_idempotency(
        &self,
        tenant: &TenantId,
        record: &IdempotencyRecord,
    ) -> Result<(), StoreError> {
        let action = IdempotencyStored::put(&self.table, tenant, record)?;
        match super::tx::transact(&self.client, vec![action]).await {
            Ok(()) => Ok(()),
            Err(super::tx::TransactFailure::Condition(_)) => Err(StoreError::IdempotencyKeyTaken),
            Err(super::tx::TransactFailure::Conflict) => Err(StoreError::Unavailable(
                "an idempotency key was being written concurrently".into(),
            )),
            Err(super::tx::TransactFailure::Store(e)) => Err(e),
        }
    }
}

/// A stored idempotent response, unless absent or expired (TTL deletes lazily).
pub(crate) async fn read_idempotency(
    client: &Client,
    table: &str,
    tenant: &TenantId,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(DynamoItemStore::key(
            idempotency_pk(tenant, key),
            IDEM_SK,
        )))
        .consistent_read(true)
        .send()
        .await
        .map_err(classify)?;
    let now = stockroom_app::clock::now().unix_timestamp();
    Ok(out
        .item
        .map(from_attrs::<IdempotencyStored>)
        .transpose()?
        .map(IdempotencyRecord::from)
        .filter(|r| r.expires_at >= now))
}

/// One key range of movements ordered by id: a feed shard of the index, or
/// a sku's ledger in the table.
struct MovementRange {
    index: Option<&'static str>,
    pk_name: &'static str,
    pk: String,
    sk_name: &'static str,
    /// What precedes the movement id in the sort key.
    sk_prefix: &'static str,
}

impl MovementRange {
    /// Up to `want` movements with `after < id < before`, in id order:
    /// reads on past a page the size limit cut short.
    async fn read(
        self,
        client: Client,
        table: String,
        after: Option<String>,
        before: String,
        want: usize,
        fields: Option<Fields<Movement>>,
    ) -> Result<Vec<Movement>, StoreError> {
        let projection = MOVEMENT_STORED.projection(fields.as_ref());
        let decoder = Decoder::<MovementRecord>::new(projection.is_some())?;
        // Below every movement id (a key value cannot be empty).
        let low = format!("{}{}", self.sk_prefix, after.as_deref().unwrap_or("mv_"));
        let high = format!("{}{before}", self.sk_prefix);
        let mut found = Vec::new();
        let mut start = None;
        loop {
            // BETWEEN is inclusive: one more for the `after` entry itself.
            let room = want - found.len() + 1;
            let query = client
                .query()
                .table_name(&table)
                .set_index_name(self.index.map(str::to_owned))
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
                .expression_attribute_names("#pk", self.pk_name)
                .expression_attribute_names("#sk", self.sk_name)
                .expression_attribute_values(":pk", s(&self.pk))
                .expression_attribute_values(":lo", s(&low))
                .expression_attribute_values(":hi", s(&high))
                .limit(i32::try_from(room).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start);
            let out = project_query(query, projection.clone())
                .send()
                .await
                .map_err(classify)?;
            start = out.last_evaluated_key.clone();
            for attrs in out.items.unwrap_or_default() {
                let m = Movement::from(decoder.decode(attrs)?);
                let id = m.movement_id.as_str();
                if after.as_deref() != Some(id) && id < before.as_str() && found.len() < want {
                    found.push(m);
                }
            }
            if found.len() >= want || start.is_none() {
                return Ok(found);
            }
        }
    }
}

/// Scatter-gather over the feed's shards (one Query each, in parallel),
/// merged by id; with a sku, that sku's ledger (one Query).
#[async_trait]
impl ChangeLog for DynamoItemStore {
    async fn changes(
        &self,
        tenant: &TenantId,
        sku: Option<&Sku>,
        after: Option<&str>,
        before: &str,
        limit: u32,
        fields: Option<&Fields<Movement>>,
    ) -> Result<Vec<Movement>, StoreError> {
        let want = usize::try_from(limit).unwrap_or(usize::MAX);
        let ranges: Vec<MovementRange> = match sku {
            // The sku's ledger, with its buckets' if it was ever split.
            Some(sku) => {
                let partitions = self
                    .read_item(tenant, sku, None, true)
                    .await?
                    .map_or(0, |item| item.bucket_partitions);
                collection_ranges(tenant, sku, partitions)
                    .into_iter()
                    .map(|range| MovementRange {
                        index: None,
                        pk_name: "pk",
                        pk: range.pk,
                        sk_name: "sk",
                        sk_prefix: MOVEMENT_PREFIX,
                    })
                    .collect()
            }
            None => (0..FEED_READ_SHARDS)
                .map(|shard| MovementRange {
                    index: Some(FEED_INDEX),
                    pk_name: "gsi2pk",
                    pk: feed_pk(tenant, shard),
                    sk_name: "gsi2sk",
                    sk_prefix: "",
                })
                .collect(),
        };
        let mut reads = tokio::task::JoinSet::new();
        for range in ranges {
            reads.spawn(range.read(
                self.client.clone(),
                self.table.clone(),
                after.map(str::to_owned),
                before.to_owned(),
                want,
                fields.cloned(),
            ));
        }
        let mut merged = Vec::new();
        while let Some(read) = reads.join_next().await {
            merged.extend(read.map_err(|e| StoreError::Backend(Box::new(e)))??);
        }
        // Each shard gave its first `want` (or all it has): the first
        // `want` of the union are the range's first `want`.
        merged.sort_by(|a, b| a.movement_id.cmp(&b.movement_id));
        merged.truncate(want);
        Ok(merged)
    }
}
