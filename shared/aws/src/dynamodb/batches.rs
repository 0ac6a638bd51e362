//! Batch headers, failure reports and the batch lifecycle on DynamoDB.
//! The chunk primitives (the exactly-once part) live in `chunks.rs`.

use super::chunks;
use super::error::{applied, build_error, classify};
use super::items::{page_key, start_key};
use super::projection::{Decoder, project_query};
use super::records::*;
use super::sharded::{KeyRange, gather};
use super::tx::{TransactFailure, batch_write, transact};
use super::{n, s, to_attrs};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, PutRequest, TransactWriteItem, WriteRequest};
use std::collections::HashMap;
use stockroom_app::ports::{
    AtomicCommit, AtomicCommitted, BatchHeaders, BatchSubmissions, ChunkApplication, GroupCommit,
    IdempotencyRecord, Page, PageKey, PlannedRecord, SplitTotals, StoreError, UploadSplits,
};
use stockroom_domain::batch::{Batch, BatchError, BatchStatus, ChunkMessage, RecordFailure};
use stockroom_domain::change::ChangeCause;
use stockroom_domain::chunk_plan::unreadable_chunk_failure;
use stockroom_domain::{Fields, TenantId};

pub use super::batch_table::DynamoBatchStore;
use super::batch_table::{BATCH_STORED, FAILURE_STORED};

#[async_trait]
impl BatchHeaders for DynamoBatchStore {
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

    async fn record_failures(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        failures: &[RecordFailure],
    ) -> Result<(), StoreError> {
        // Submission-time outcomes: nothing else writes these records, so
        // unconditional (idempotent) batch writes suffice.
        let sharded = self.markers_sharded(tenant, batch_id).await?;
        batch_write(
            &self.client,
            &self.table,
            self.failure_puts(tenant, batch_id, failures, sharded)?,
        )
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
        let now = stockroom_app::clock::now_rfc3339();
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

    async fn fail_upload(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        error: &BatchError,
        failed_records: u64,
    ) -> Result<bool, StoreError> {
        let now = stockroom_app::clock::now_rfc3339();
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

#[async_trait]
impl BatchSubmissions for DynamoBatchStore {
    async fn create_batch(
        &self,
        tenant: &TenantId,
        batch: &Batch,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let header = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_attrs(&BatchStored::new(
                tenant,
                batch,
                self.layout,
            ))?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let mut actions = vec![TransactWriteItem::builder().put(header).build()];
        if let Some(rec) = idempotency {
            actions.push(IdempotencyStored::put(&self.table, tenant, rec)?);
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

    async fn abort_batch(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError> {
        self.leave_accepted(tenant, batch_id, BatchStatus::Failed)
            .await
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

    /// Scatter-gather over the failure shards and the legacy key (one Query
    /// each, in parallel), merged in record order.
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
        let ranges = (0..MARKER_SHARDS)
            .map(|shard| failure_shard_pk(tenant, batch_id, shard))
            .chain([legacy_failures_pk(tenant, batch_id)])
            .map(|pk| KeyRange {
                index: None,
                pk_name: "pk",
                pk,
                sk_name: "sk",
            })
            .collect();
        // The cursor's `sk` is the last failure's sort key (as it was when
        // failures were listed straight from their one partition).
        let after = start.as_ref().and_then(|k| k.get("sk")).map(String::as_str);
        let want = usize::try_from(limit).unwrap_or(usize::MAX);
        let page = gather(
            &self.client,
            &self.table,
            ranges,
            after,
            Some(FAILURE_PREFIX),
            want,
            projection,
        )
        .await?;
        let next = match page.entries.last() {
            // The shape the release before gives and reads (the entry's key
            // under the batch's one failures key): a client holding it may be
            // served by either during a gradual deploy or after a rollback.
            Some((sk, _)) if page.more => Some(PageKey::from([
                ("pk".to_owned(), legacy_failures_pk(tenant, batch_id)),
                ("sk".to_owned(), sk.clone()),
            ])),
            _ => None,
        };
        let items = page
            .entries
            .into_iter()
            .map(|(_, attrs)| decoder.decode(attrs).map(RecordFailure::from))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        super::items::read_idempotency(&self.client, &self.table, tenant, key).await
    }
}

#[async_trait]
impl ChunkApplication for DynamoBatchStore {
    async fn chunk_counted(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        chunk: u32,
    ) -> Result<bool, StoreError> {
        chunks::chunk_counted(self, &batch_pk(tenant, batch_id), chunk).await
    }

    async fn mark_processing(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError> {
        DynamoBatchStore::mark_processing(self, tenant, batch_id).await
    }

    async fn read_outcomes(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        indexes: &[u32],
    ) -> Result<HashMap<u32, bool>, StoreError> {
        chunks::outcomes(self, tenant, batch_id, indexes).await
    }

    async fn read_items(
        &self,
        tenant: &TenantId,
        skus: &[&str],
    ) -> Result<stockroom_app::ports::ItemsRead, StoreError> {
        chunks::read_items(self, tenant, skus).await
    }

    async fn commit_group(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        cause: &ChangeCause,
        group: &[PlannedRecord<'_>],
    ) -> Result<GroupCommit, StoreError> {
        chunks::commit_group(self, tenant, batch_id, cause, group).await
    }

    async fn count_chunk(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        chunk: u32,
        applied: u64,
        failed: u64,
    ) -> Result<(), StoreError> {
        DynamoBatchStore::count_chunk(self, tenant, batch_id, chunk, applied, failed).await
    }

    async fn commit_atomic_chunk(
        &self,
        chunk: &ChunkMessage,
        commit: &AtomicCommit,
    ) -> Result<AtomicCommitted, StoreError> {
        let tenant = TenantId::parse(&chunk.tenant_id).map_err(StoreError::Corrupt)?;
        chunks::commit_atomic(self, &tenant, chunk, commit).await
    }

    async fn finish_atomic_chunk(
        &self,
        tenant: &TenantId,
        batch_id: &str,
    ) -> Result<(), StoreError> {
        chunks::finish_atomic(self, tenant, batch_id).await
    }

    async fn fail_unreadable_chunk(
        &self,
        tenant: &TenantId,
        batch_id: &str,
        chunk: u32,
        record_count: u64,
    ) -> Result<(), StoreError> {
        let failure = unreadable_chunk_failure(chunk, record_count);
        let sharded = self.markers_sharded(tenant, batch_id).await?;
        let item = to_attrs(&FailureStored::new(tenant, batch_id, &failure, sharded))?;
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
}

#[async_trait]
impl UploadSplits for DynamoBatchStore {
    async fn begin_split(&self, tenant: &TenantId, batch_id: &str) -> Result<(), StoreError> {
        let result = self
            .update_header(tenant, batch_id)
            .update_expression("SET #st = :accepted, updated_at = :now")
            .condition_expression("#st = :awaiting")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":accepted", s(BatchStatus::Accepted.as_str()))
            .expression_attribute_values(":awaiting", s(BatchStatus::AwaitingUpload.as_str()))
            .expression_attribute_values(":now", s(stockroom_app::clock::now_rfc3339()))
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
            .expression_attribute_values(":now", s(stockroom_app::clock::now_rfc3339()))
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
            .expression_attribute_values(":now", s(stockroom_app::clock::now_rfc3339()))
            .send()
            .await;
        applied(result)
    }
}
