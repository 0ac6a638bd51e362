//! The batch table's primitives: the store's handle, header reads and
//! updates, chunk counting and failure entries. Both the batch lifecycle
//! (`batches.rs`) and chunk application (`chunks.rs`) build on them, and
//! neither needs the other's internals.

use super::error::{applied, build_error, classify};
use super::projection::{Decoder, StoredFields, project_get};
use super::records::*;
use super::tx::{TransactFailure, transact};
use super::{Attrs, n, s, to_attrs};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use stockroom_app::ports::StoreError;
use stockroom_domain::batch::{Batch, BatchStatus, RecordFailure};
use stockroom_domain::{Fields, TenantId};

/// Batch headers and failure entries keep every API field under its own name.
pub(super) const BATCH_STORED: StoredFields = StoredFields::SAME_NAMES;
pub(super) const FAILURE_STORED: StoredFields = StoredFields::SAME_NAMES;

/// The batch ports (`BatchStore`) on the same table as the items (see `mod.rs` for keys).
#[derive(Clone, Debug)]
pub struct DynamoBatchStore {
    pub(crate) client: Client,
    pub(crate) table: String,
    /// Whether a batch's markers are sharded, as its header says (it never
    /// changes): read once per batch and instance.
    marker_layouts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, bool>>>,
    /// What it writes where sharding moved things.
    pub(crate) layout: WriteLayout,
}

/// Batches whose marker layout an instance remembers (a few bytes each).
const REMEMBERED_LAYOUTS: usize = 4096;

impl DynamoBatchStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            marker_layouts: Default::default(),
            layout: WriteLayout::default(),
        }
    }

    /// Writes in `layout` (reads are the same in both): new batches' markers
    /// and failures, and the items and movements their records write.
    pub fn with_write_layout(mut self, layout: WriteLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Whether `batch_id`'s outcome markers and failures are sharded
    /// (`records::outcome_pk`, `records::failure_pk`). A batch without a
    /// header yet is being submitted by this code: its layout.
    pub(crate) async fn markers_sharded(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> Result<bool, StoreError> {
        let key = format!("{tenant}/{batch_id}");
        if let Some(sharded) = self.layouts().get(&key) {
            return Ok(*sharded);
        }
        // Only the flag (and the key, to tell a header without it from none):
        // an atomic batch's header holds its whole plan.
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(batch_pk(tenant, batch_id), BATCH_SK)))
            .consistent_read(true)
            .projection_expression("pk, markers_sharded")
            .send()
            .await
            .map_err(classify)?;
        let Some(header) = out.item.filter(|attrs| attrs.contains_key("pk")) else {
            return Ok(self.layout.sharded());
        };
        let sharded = matches!(
            header.get("markers_sharded"),
            Some(AttributeValue::Bool(true))
        );
        let mut layouts = self.layouts();
        if layouts.len() >= REMEMBERED_LAYOUTS {
            layouts.clear();
        }
        layouts.insert(key, sharded);
        Ok(sharded)
    }

    fn layouts(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, bool>> {
        self.marker_layouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Builds the client from shared SDK configuration (no network call).
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), table)
    }

    pub(crate) fn key(pk: String, sk: &str) -> Attrs {
        Attrs::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
    }

    /// An UpdateItem on a batch's header.
    pub(super) fn update_header(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(batch_pk(tenant, batch_id), BATCH_SK)))
    }

    pub(crate) async fn header(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> Result<Option<BatchStored>, StoreError> {
        self.read_header(tenant, batch_id, None).await
    }

    /// The header, or only what `fields` needs of it.
    pub(super) async fn read_header(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        fields: Option<&Fields<Batch>>,
    ) -> Result<Option<BatchStored>, StoreError> {
        let projection = BATCH_STORED.projection(fields);
        let decoder = Decoder::<BatchStored>::new(projection.is_some())?;
        let get = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(batch_pk(tenant, batch_id), BATCH_SK)))
            .consistent_read(true);
        let out = project_get(get, projection)
            .send()
            .await
            .map_err(classify)?;
        out.item.map(|attrs| decoder.decode(attrs)).transpose()
    }

    /// Adds a chunk's outcome counts to the header exactly once: the chunk
    /// marker and the counter update commit together, and the marker's
    /// condition refuses a second count.
    pub(crate) async fn count_chunk(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        chunk: u32,
        succeeded: u64,
        failed: u64,
    ) -> Result<(), StoreError> {
        let pk = batch_pk(tenant, batch_id);
        let marker = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Attrs::from([
                ("pk".to_owned(), s(&pk)),
                ("sk".to_owned(), s(chunk_sk(chunk))),
                ("succeeded".to_owned(), n(succeeded)),
                ("failed".to_owned(), n(failed)),
            ])))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let counters = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, BATCH_SK)))
            .update_expression(
                "ADD succeeded :s, failed :f, chunks_done :one SET updated_at = :now",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":s", n(succeeded))
            .expression_attribute_values(":f", n(failed))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(stockroom_app::clock::now_rfc3339()))
            .build()
            .map_err(build_error)?;
        match transact(
            &self.client,
            vec![
                TransactWriteItem::builder().put(marker).build(),
                TransactWriteItem::builder().update(counters).build(),
            ],
        )
        .await
        {
            Ok(()) => Ok(()),
            // Counted by an earlier delivery.
            Err(TransactFailure::Condition(f)) if TransactFailure::failed(&f, 0) => Ok(()),
            Err(TransactFailure::Condition(_)) => Err(StoreError::Corrupt(format!(
                "batch {batch_id} has no header"
            ))),
            Err(TransactFailure::Conflict) => Err(StoreError::Unavailable(
                "transaction conflict counting a chunk".into(),
            )),
            Err(TransactFailure::Store(e)) => Err(e),
        }
    }

    /// `accepted` -> `processing` when the first chunk starts.
    pub(crate) async fn mark_processing(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> Result<(), StoreError> {
        self.leave_accepted(tenant, batch_id, BatchStatus::Processing)
            .await
    }

    /// Moves a batch out of `accepted` (a no-op if another writer already
    /// did); a terminal status also sets `completed_at`.
    pub(super) async fn leave_accepted(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        to: BatchStatus,
    ) -> Result<(), StoreError> {
        let update = if to.is_terminal() {
            "SET #st = :to, updated_at = :now, completed_at = :now, notify_pending = :true"
        } else {
            "SET #st = :to, updated_at = :now"
        };
        let mut req = self
            .update_header(tenant, batch_id)
            .update_expression(update)
            .condition_expression("#st = :accepted")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":accepted", s(BatchStatus::Accepted.as_str()))
            .expression_attribute_values(":now", s(stockroom_app::clock::now_rfc3339()));
        // DynamoDB refuses values the expression does not use.
        if to.is_terminal() {
            req = req.expression_attribute_values(":true", AttributeValue::Bool(true));
        }
        applied(req.send().await).map(|_| ())
    }

    pub(super) fn failure_puts(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        failures: &[RecordFailure],
        markers_sharded: bool,
    ) -> Result<Vec<WriteRequest>, StoreError> {
        let mut requests = Vec::with_capacity(failures.len() * 2);
        for f in failures {
            let outcome = OutcomeStored {
                pk: outcome_pk(tenant, batch_id, f.index, markers_sharded),
                sk: outcome_sk(f.index),
                outcome: "failed".into(),
                record_id: f.record_id.clone(),
            };
            for item in [
                to_attrs(&outcome)?,
                to_attrs(&FailureStored::new(tenant, batch_id, f, markers_sharded))?,
            ] {
                requests.push(
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item))
                                .build()
                                .map_err(build_error)?,
                        )
                        .build(),
                );
            }
        }
        Ok(requests)
    }
}
