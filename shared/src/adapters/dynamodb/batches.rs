//! Batch headers, failure reports and the batch lifecycle on DynamoDB.
//! Chunk application (the exactly-once part) lives in `chunks.rs`.

use super::error::{applied, build_error, classify};
use super::items::{page_key, start_key};
use super::projection::{Decoder, StoredFields, project_get, project_query};
use super::records::*;
use super::tx::{TransactFailure, batch_write, transact};
use super::{Attrs, n, query_page, s, to_attrs};
use crate::domain::batch::{Batch, BatchError, BatchStatus, ChunkMessage, RecordFailure};
use crate::domain::event::Event;
use crate::domain::{Fields, TenantId};
use crate::ports::{
    BatchStore, ChunkDisposition, IdempotencyRecord, Page, PageKey, SplitTotals, StoreError,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};

/// Batch headers and failure entries keep every API field under its own name.
const BATCH_STORED: StoredFields = StoredFields::SAME_NAMES;
const FAILURE_STORED: StoredFields = StoredFields::SAME_NAMES;

/// [`BatchStore`] on the same table as the items (see `mod.rs` for keys).
#[derive(Clone, Debug)]
pub struct DynamoBatchStore {
    pub(crate) client: Client,
    pub(crate) table: String,
}

impl DynamoBatchStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Builds the client from shared SDK configuration (no network call).
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), table)
    }

    pub(crate) fn key(pk: String, sk: &str) -> Attrs {
        Attrs::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
    }

    /// An UpdateItem on a batch's header.
    fn update_header(
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
    async fn read_header(
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
            .expression_attribute_values(":now", s(crate::clock::now_rfc3339()))
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
    async fn leave_accepted(
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
            .expression_attribute_values(":now", s(crate::clock::now_rfc3339()));
        // DynamoDB refuses values the expression does not use.
        if to.is_terminal() {
            req = req.expression_attribute_values(":true", AttributeValue::Bool(true));
        }
        applied(req.send().await).map(|_| ())
    }

    fn failure_puts(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        failures: &[RecordFailure],
    ) -> Result<Vec<WriteRequest>, StoreError> {
        let mut requests = Vec::with_capacity(failures.len() * 2);
        for f in failures {
            let outcome = OutcomeStored {
                pk: batch_pk(tenant, batch_id),
                sk: outcome_sk(f.index),
                outcome: "failed".into(),
                record_id: f.record_id.clone(),
            };
            for item in [
                to_attrs(&outcome)?,
                to_attrs(&FailureStored::new(tenant, batch_id, f))?,
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

#[async_trait]
impl BatchStore for DynamoBatchStore {
    async fn create_batch(
        &self,
        tenant: &TenantId,
        batch: &Batch,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let header = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_attrs(&BatchStored::new(tenant, batch))?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let mut actions = vec![TransactWriteItem::builder().put(header).build()];
        if let Some(rec) = idempotency {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(to_attrs(&IdempotencyStored::new(tenant, rec))?))
                .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
                .expression_attribute_values(":now", n(crate::clock::now().unix_timestamp()))
                .build()
                .map_err(build_error)?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        match transact(&self.client, actions).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Condition(f)) if TransactFailure::failed(&f, 1) => {
                Err(StoreError::IdempotencyKeyTaken)
            }
            Err(TransactFailure::Condition(_)) => Err(StoreError::AlreadyExists),
            Err(TransactFailure::Conflict) => Err(StoreError::Unavailable(
                "transaction conflict creating a batch".into(),
            )),
            Err(TransactFailure::Store(e)) => Err(e),
        }
    }

    async fn record_failures(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        failures: &[RecordFailure],
    ) -> Result<(), StoreError> {
        // Submission-time outcomes: nothing else writes these records, so
        // unconditional (idempotent) batch writes suffice.
        batch_write(
            &self.client,
            &self.table,
            self.failure_puts(tenant, batch_id, failures)?,
        )
        .await
    }

    async fn abort_batch(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError> {
        self.leave_accepted(tenant, batch_id, BatchStatus::Failed)
            .await
    }

    async fn get_batch(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        fields: Option<&Fields<Batch>>,
    ) -> Result<Option<Batch>, StoreError> {
        Ok(self
            .read_header(tenant, batch_id, fields)
            .await?
            .map(Batch::from))
    }

    async fn list_batches(
        &self,
        tenant: &TenantId,
        status: Option<BatchStatus>,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Batch>>,
    ) -> Result<Page<Batch>, StoreError> {
        let decoder = Decoder::<BatchStored>::new(fields.is_some())?;
        // With a status filter DynamoDB may return short pages; keep reading
        // (each call evaluating at most what is still missing) to fill one.
        let mut items = Vec::new();
        let mut next = start;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :p")
                .expression_attribute_values(":p", s(tenant_batches_pk(tenant)))
                .scan_index_forward(false)
                .limit((limit as usize - items.len()) as i32)
                .set_exclusive_start_key(start_key(next.take()));
            if let Some(st) = status {
                q = q
                    .filter_expression("#st = :st")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":st", s(st.as_str()));
            }
            // The filter reads `status` whatever the projection returns.
            let q = project_query(q, BATCH_STORED.projection(fields));
            let out = q.send().await.map_err(classify)?;
            for a in out.items.unwrap_or_default() {
                items.push(Batch::from(decoder.decode(a)?));
            }
            next = page_key(out.last_evaluated_key.as_ref());
            if next.is_none() || items.len() >= limit as usize {
                break;
            }
        }
        Ok(Page { items, next })
    }

    async fn list_failures(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<RecordFailure>>,
    ) -> Result<Page<RecordFailure>, StoreError> {
        let projection = FAILURE_STORED.projection(fields);
        let decoder = Decoder::<FailureStored>::new(projection.is_some())?;
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :f)")
            .expression_attribute_values(":pk", s(failures_pk(tenant, batch_id)))
            .expression_attribute_values(":f", s(FAILURE_PREFIX))
            .limit(limit as i32)
            .set_exclusive_start_key(start_key(start));
        let out = project_query(query, projection)
            .send()
            .await
            .map_err(classify)?;
        query_page::<FailureStored, RecordFailure>(out, &decoder)
    }

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        super::items::read_idempotency(&self.client, &self.table, tenant, key).await
    }

    async fn process_chunk(
        &self,
        chunk: &ChunkMessage,
        disposition: ChunkDisposition,
    ) -> Result<Vec<Event>, StoreError> {
        super::chunks::process(self, chunk, disposition).await
    }

    async fn fail_unreadable_chunk(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        chunk: u32,
        record_count: u64,
    ) -> Result<(), StoreError> {
        // Index past any real record so the entry lists after them.
        let failure = RecordFailure::new(
            u32::MAX - chunk,
            &format!("chunk:{chunk}"),
            None,
            "chunk_dead_lettered",
            format!(
                "chunk {chunk} ({record_count} records) could not be read after repeated deliveries; its records were not applied"
            ),
        );
        let item = to_attrs(&FailureStored::new(tenant, batch_id, &failure))?;
        batch_write(
            &self.client,
            &self.table,
            vec![
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item))
                            .build()
                            .map_err(build_error)?,
                    )
                    .build(),
            ],
        )
        .await?;
        self.count_chunk(tenant, batch_id, chunk, 0, record_count)
            .await
    }

    async fn finalize(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> Result<Option<Batch>, StoreError> {
        let Some(h) = self.header(tenant, batch_id).await? else {
            return Err(StoreError::Corrupt(format!(
                "batch {batch_id} has no header"
            )));
        };
        if h.status.is_terminal() {
            return Ok(h.notify_pending.then(|| Batch::from(h)));
        }
        if h.splitting || h.chunks_done < h.chunks_total {
            return Ok(None);
        }
        let status = BatchStatus::from_counts(h.succeeded, h.failed);
        let now = crate::clock::now_rfc3339();
        let result = self
            .update_header(tenant, batch_id)
            .update_expression(
                "SET #st = :terminal, completed_at = :now, updated_at = :now, notify_pending = :true",
            )
            .condition_expression(
                "(#st = :accepted OR #st = :processing) AND chunks_done = chunks_total AND attribute_not_exists(splitting)",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":terminal", s(status.as_str()))
            .expression_attribute_values(":accepted", s(BatchStatus::Accepted.as_str()))
            .expression_attribute_values(":processing", s(BatchStatus::Processing.as_str()))
            .expression_attribute_values(":now", s(&now))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .send()
            .await;
        Ok(applied(result)?.then(|| Batch {
            status,
            completed_at: Some(now.clone()),
            updated_at: now,
            ..Batch::from(h)
        }))
    }

    async fn mark_notified(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError> {
        self.update_header(tenant, batch_id)
            .update_expression("REMOVE notify_pending")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn begin_split(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError> {
        let result = self
            .update_header(tenant, batch_id)
            .update_expression("SET #st = :accepted, updated_at = :now")
            .condition_expression("#st = :awaiting")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":accepted", s(BatchStatus::Accepted.as_str()))
            .expression_attribute_values(":awaiting", s(BatchStatus::AwaitingUpload.as_str()))
            .expression_attribute_values(":now", s(crate::clock::now_rfc3339()))
            .send()
            .await;
        applied(result).map(|_| ())
    }

    async fn record_split_progress(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        records_read: u64,
        records_enqueued: u64,
    ) -> Result<(), StoreError> {
        let result = self
            .update_header(tenant, batch_id)
            .update_expression("SET records_read = :r, records_enqueued = :e, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":r", n(records_read))
            .expression_attribute_values(":e", n(records_enqueued))
            .expression_attribute_values(":now", s(crate::clock::now_rfc3339()))
            .send()
            .await;
        applied(result).map(|_| ())
    }

    async fn complete_split(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        totals: &SplitTotals,
    ) -> Result<bool, StoreError> {
        // `failed` is set, not added: no chunk has been sent before this.
        let result = self
            .update_header(tenant, batch_id)
            .update_expression(
                "SET #total = :t, failed = :f, chunks_total = :c, records_read = :t, updated_at = :now REMOVE splitting",
            )
            .condition_expression("#st = :accepted AND attribute_exists(splitting)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#total", "total")
            .expression_attribute_values(":accepted", s(BatchStatus::Accepted.as_str()))
            .expression_attribute_values(":t", n(totals.total))
            .expression_attribute_values(":f", n(totals.invalid))
            .expression_attribute_values(":c", n(totals.chunks))
            .expression_attribute_values(":now", s(crate::clock::now_rfc3339()))
            .send()
            .await;
        applied(result)
    }

    async fn fail_upload(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        error: &BatchError,
        failed_records: u64,
    ) -> Result<bool, StoreError> {
        let now = crate::clock::now_rfc3339();
        let result = self
            .update_header(tenant, batch_id)
            .update_expression(
                "SET #st = :failed, #err = :err, #total = :n, failed = :n, updated_at = :now, completed_at = :now, notify_pending = :true REMOVE splitting",
            )
            .condition_expression(
                "(#st = :awaiting OR #st = :accepted) AND attribute_exists(splitting)",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#err", "error")
            .expression_attribute_names("#total", "total")
            .expression_attribute_values(":failed", s(BatchStatus::Failed.as_str()))
            .expression_attribute_values(":awaiting", s(BatchStatus::AwaitingUpload.as_str()))
            .expression_attribute_values(":accepted", s(BatchStatus::Accepted.as_str()))
            .expression_attribute_values(
                ":err",
                AttributeValue::M(to_attrs(error)?),
            )
            .expression_attribute_values(":n", n(failed_records))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .send()
            .await;
        applied(result)
    }
}
