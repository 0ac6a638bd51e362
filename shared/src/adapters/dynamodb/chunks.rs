//! Applying a chunk of batch records exactly once.
//!
//! Isolated mode: every record gets exactly one outcome marker (`R#<index>`,
//! applied or failed), written in the same transaction as the record's effect
//! (item write + ledger movement) under `attribute_not_exists`. A redelivered
//! chunk skips records that have a marker, and a concurrent delivery that
//! loses the race sees its marker action fail and drops the record. Records
//! are applied in groups of distinct skus, one transaction per group (up to
//! 100 actions), conditioned on the item versions read just before; a lost
//! race re-reads and retries only the affected group. When every record has
//! an outcome, the chunk marker (`C#<chunk>`) and the header's counters are
//! written in one transaction, so a chunk is counted once.
//!
//! Atomic mode (at most 99 records, one chunk): all item writes and the
//! header's claim (`chunks_done = 0 -> 1`, with the ledger plan) commit in one
//! transaction, or, if any record cannot be applied, the header claims the
//! failure with the failure report and nothing is written to items. Ledger
//! movements and failure entries are written from the stored plan afterwards,
//! idempotently, and re-written by a redelivery until `ledger_written`.

use super::batch_table::DynamoBatchStore;
use super::error::{build_error, classify};
use super::records::*;
use super::tx::{TransactFailure, batch_get, batch_write, transact};
use super::{Attrs, from_attrs, n, s, to_attrs};
use crate::domain::batch::{BatchMode, BatchRecord, ChunkMessage, RecordEffect, RecordFailure};
use crate::domain::event::{Event, crosses_low_stock};
use crate::domain::{Item, Movement, MovementContext, TenantId};
use crate::ports::{ChunkDisposition, StoreError};
use aws_sdk_dynamodb::types::{
    ConditionCheck, Delete, Put, PutRequest, TransactWriteItem, WriteRequest,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Records per isolated transaction: up to 3 actions each (item, movement,
/// marker) within DynamoDB's 100-action limit.
const GROUP_RECORDS: usize = 33;
const MAX_ROUNDS: u32 = 40;

pub(crate) async fn process(
    store: &DynamoBatchStore,
    chunk: &ChunkMessage,
    disposition: ChunkDisposition,
) -> Result<Vec<Event>, StoreError> {
    let tenant = TenantId::parse(&chunk.tenant_id).map_err(StoreError::Corrupt)?;
    match chunk.mode {
        BatchMode::Isolated => isolated(store, &tenant, chunk, disposition).await,
        BatchMode::Atomic => atomic(store, &tenant, chunk, disposition).await,
    }
}

/// The events a committed write of this record causes.
fn record_events(
    tenant: &TenantId,
    chunk: &ChunkMessage,
    sku: &str,
    before: Option<&Item>,
    after: Option<&Item>,
    now: &str,
) -> Option<Event> {
    let batch = Some(chunk.batch_id.as_str());
    match after {
        Some(item) => crosses_low_stock(before, item)
            .then(|| Event::low_stock(tenant.as_str(), item, &chunk.request_id, batch)),
        None => {
            before.map(|_| Event::item_deleted(tenant.as_str(), sku, now, &chunk.request_id, batch))
        }
    }
}

fn context(chunk: &ChunkMessage) -> MovementContext {
    MovementContext {
        request_id: chunk.request_id.clone(),
        key_id: None,
    }
}

fn dead_lettered(rec: &BatchRecord) -> RecordEffect {
    RecordEffect::Fail {
        code: "chunk_dead_lettered",
        message: format!(
            "record {} was not applied: its chunk failed repeatedly and was dead-lettered",
            rec.id
        ),
    }
}

async fn backoff(round: u32) {
    let ms = (5u64 << round.min(6)).min(500);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn put_action(
    table: &str,
    item: Attrs,
    condition: &str,
    values: &[(&str, aws_sdk_dynamodb::types::AttributeValue)],
) -> Result<TransactWriteItem, StoreError> {
    let mut put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition);
    for (k, v) in values {
        put = put.expression_attribute_values(*k, v.clone());
    }
    Ok(TransactWriteItem::builder()
        .put(put.build().map_err(build_error)?)
        .build())
}

fn plain_put(table: &str, item: Attrs) -> Result<TransactWriteItem, StoreError> {
    Ok(TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .build()
                .map_err(build_error)?,
        )
        .build())
}

fn write_request(item: Attrs) -> Result<WriteRequest, StoreError> {
    Ok(WriteRequest::builder()
        .put_request(
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(build_error)?,
        )
        .build())
}

/// Current items for these skus (strongly consistent).
async fn read_items(
    store: &DynamoBatchStore,
    tenant: &TenantId,
    skus: &HashSet<&str>,
) -> Result<HashMap<String, Item>, StoreError> {
    let keys = skus
        .iter()
        .map(|sku| DynamoBatchStore::key(item_pk(tenant, sku), ITEM_SK))
        .collect();
    batch_get(&store.client, &store.table, keys)
        .await?
        .into_iter()
        .map(|a| from_attrs::<ItemRecord>(a).map(|r| (r.sku.clone(), Item::from(r))))
        .collect()
}

/// Outcome markers of these records: index -> applied?
async fn outcomes(
    store: &DynamoBatchStore,
    pk: &str,
    records: &[&BatchRecord],
) -> Result<HashMap<u32, bool>, StoreError> {
    let keys = records
        .iter()
        .map(|r| DynamoBatchStore::key(pk.to_owned(), &outcome_sk(r.index)))
        .collect();
    let mut map = HashMap::new();
    for a in batch_get(&store.client, &store.table, keys).await? {
        let o: OutcomeStored = from_attrs(a)?;
        let index =
            o.sk.trim_start_matches(OUTCOME_PREFIX)
                .parse::<u32>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        map.insert(index, o.outcome == "applied");
    }
    Ok(map)
}

async fn chunk_counted(store: &DynamoBatchStore, pk: &str, chunk: u32) -> Result<bool, StoreError> {
    let out = store
        .client
        .get_item()
        .table_name(&store.table)
        .set_key(Some(DynamoBatchStore::key(pk.to_owned(), &chunk_sk(chunk))))
        .consistent_read(true)
        .send()
        .await
        .map_err(classify)?;
    Ok(out.item.is_some())
}

/// Takes the next group: records in order, distinct skus, and no record
/// overtaking an earlier one of the same sku.
fn take_group<'a>(pending: &mut Vec<&'a BatchRecord>) -> Vec<&'a BatchRecord> {
    let mut group = Vec::new();
    let mut rest = Vec::new();
    let mut in_group: HashSet<&str> = HashSet::new();
    let mut blocked: HashSet<&str> = HashSet::new();
    for rec in pending.drain(..) {
        if group.len() < GROUP_RECORDS
            && !in_group.contains(rec.sku.as_str())
            && !blocked.contains(rec.sku.as_str())
        {
            in_group.insert(rec.sku.as_str());
            group.push(rec);
        } else {
            blocked.insert(rec.sku.as_str());
            rest.push(rec);
        }
    }
    *pending = rest;
    group
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Item,
    Marker,
    Other,
}

async fn isolated(
    store: &DynamoBatchStore,
    tenant: &TenantId,
    chunk: &ChunkMessage,
    disposition: ChunkDisposition,
) -> Result<Vec<Event>, StoreError> {
    let pk = batch_pk(tenant, &chunk.batch_id);
    if chunk_counted(store, &pk, chunk.chunk).await? {
        return Ok(Vec::new());
    }
    match store.header(tenant, &chunk.batch_id).await? {
        None => {
            return Err(StoreError::Corrupt(format!(
                "batch {} has no header",
                chunk.batch_id
            )));
        }
        // Aborted at submission (could not be enqueued in full): apply nothing.
        Some(h) if h.status.is_terminal() => return Ok(Vec::new()),
        Some(_) => {}
    }
    store.mark_processing(tenant, &chunk.batch_id).await?;
    let all: Vec<&BatchRecord> = chunk.records.iter().collect();
    let done = outcomes(store, &pk, &all).await?;
    let mut pending: Vec<&BatchRecord> = all
        .iter()
        .copied()
        .filter(|r| !done.contains_key(&r.index))
        .collect();
    let mut round = 0;
    let mut events = Vec::new();
    while !pending.is_empty() {
        let group = take_group(&mut pending);
        let (retry, caused) = apply_group(store, tenant, chunk, &group, disposition).await?;
        events.extend(caused);
        if !retry.is_empty() {
            round += 1;
            if round > MAX_ROUNDS {
                return Err(StoreError::Unavailable(
                    "gave up applying a chunk under contention".into(),
                ));
            }
            backoff(round).await;
            pending.extend(retry);
            pending.sort_by_key(|r| r.index);
        }
    }
    let outcomes = outcomes(store, &pk, &all).await?;
    if outcomes.len() != all.len() {
        return Err(StoreError::Corrupt(format!(
            "chunk {} of batch {}: {} of {} outcomes recorded",
            chunk.chunk,
            chunk.batch_id,
            outcomes.len(),
            all.len()
        )));
    }
    let applied = outcomes.values().filter(|a| **a).count() as u64;
    store
        .count_chunk(
            tenant,
            &chunk.batch_id,
            chunk.chunk,
            applied,
            all.len() as u64 - applied,
        )
        .await?;
    Ok(events)
}

/// One line per failed record (its id, code and reason), so "what happened
/// to record R of batch B" is answered by the logs too.
fn log_failures(failures: &[RecordFailure]) {
    for f in failures {
        tracing::info!(record_id = %f.record_id, code = %f.code, reason = %f.message, "record failed");
    }
}

/// Applies one group in one transaction; returns the records to retry and
/// the events the committed writes caused.
async fn apply_group<'a>(
    store: &DynamoBatchStore,
    tenant: &TenantId,
    chunk: &ChunkMessage,
    group: &[&'a BatchRecord],
    disposition: ChunkDisposition,
) -> Result<(Vec<&'a BatchRecord>, Vec<Event>), StoreError> {
    let table = store.table.as_str();
    let pk = batch_pk(tenant, &chunk.batch_id);
    let skus: HashSet<&str> = group.iter().map(|r| r.sku.as_str()).collect();
    let current = match disposition {
        ChunkDisposition::Apply => read_items(store, tenant, &skus).await?,
        ChunkDisposition::DeadLettered => HashMap::new(),
    };
    let now = crate::clock::now_rfc3339();
    let ctx = context(chunk);
    let mut actions = Vec::new();
    let mut roles: Vec<(usize, Role)> = Vec::new();
    let mut events = Vec::new();
    let mut failed: Vec<RecordFailure> = Vec::new();
    for (i, rec) in group.iter().enumerate() {
        let cur = current.get(&rec.sku);
        let effect = match disposition {
            ChunkDisposition::Apply => rec.effect(cur, &now),
            ChunkDisposition::DeadLettered => dead_lettered(rec),
        };
        let (reason, reference) = rec.movement_reason();
        let movement = |delta: i64, after: i64| {
            Movement::record(
                &rec.sku,
                delta,
                after,
                reason,
                reference.clone(),
                &ctx,
                &now,
            )
            .in_batch(&chunk.batch_id, &rec.id)
        };
        let applied = match effect {
            RecordEffect::Put {
                item,
                delta,
                created,
            } => {
                events.extend(record_events(
                    tenant,
                    chunk,
                    &rec.sku,
                    cur,
                    Some(&item),
                    &now,
                ));
                let attrs = to_attrs(&ItemRecord::new(tenant, &item))?;
                let action = match (created, cur) {
                    (false, Some(c)) => {
                        put_action(table, attrs, "version = :v", &[(":v", n(c.version))])?
                    }
                    _ => put_action(table, attrs, "attribute_not_exists(pk)", &[])?,
                };
                actions.push(action);
                roles.push((i, Role::Item));
                if delta != 0 {
                    actions.push(plain_put(
                        table,
                        to_attrs(&MovementRecord::new(
                            tenant,
                            &movement(delta, item.quantity),
                        ))?,
                    )?);
                    roles.push((i, Role::Other));
                }
                true
            }
            RecordEffect::Delete { delta } => {
                events.extend(record_events(tenant, chunk, &rec.sku, cur, None, &now));
                let version = cur.map(|c| c.version).unwrap_or_default();
                let delete = Delete::builder()
                    .table_name(table)
                    .set_key(Some(DynamoBatchStore::key(
                        item_pk(tenant, &rec.sku),
                        ITEM_SK,
                    )))
                    .condition_expression("version = :v")
                    .expression_attribute_values(":v", n(version))
                    .build()
                    .map_err(build_error)?;
                actions.push(TransactWriteItem::builder().delete(delete).build());
                roles.push((i, Role::Item));
                if delta != 0 {
                    actions.push(plain_put(
                        table,
                        to_attrs(&MovementRecord::new(tenant, &movement(delta, 0)))?,
                    )?);
                    roles.push((i, Role::Other));
                }
                true
            }
            RecordEffect::Fail { code, message } => {
                let failure = RecordFailure::new(rec.index, &rec.id, Some(&rec.sku), code, message);
                actions.push(plain_put(
                    table,
                    to_attrs(&FailureStored::new(tenant, &chunk.batch_id, &failure))?,
                )?);
                failed.push(failure);
                roles.push((i, Role::Other));
                false
            }
        };
        let marker = OutcomeStored {
            pk: pk.clone(),
            sk: outcome_sk(rec.index),
            outcome: if applied { "applied" } else { "failed" }.into(),
            record_id: rec.id.clone(),
        };
        actions.push(put_action(
            table,
            to_attrs(&marker)?,
            "attribute_not_exists(pk)",
            &[],
        )?);
        roles.push((i, Role::Marker));
    }
    match transact(&store.client, actions).await {
        Ok(()) => {
            log_failures(&failed);
            Ok((Vec::new(), events))
        }
        Err(TransactFailure::Condition(flags)) => {
            // Records whose marker already exists were done by another delivery.
            let settled: HashSet<usize> = roles
                .iter()
                .enumerate()
                .filter(|(a, (_, role))| {
                    *role == Role::Marker && TransactFailure::failed(&flags, *a)
                })
                .map(|(_, (i, _))| *i)
                .collect();
            let retry = group
                .iter()
                .enumerate()
                .filter(|(i, _)| !settled.contains(i))
                .map(|(_, r)| *r)
                .collect();
            Ok((retry, Vec::new()))
        }
        Err(TransactFailure::Conflict) => Ok((group.to_vec(), Vec::new())),
        Err(TransactFailure::Store(e)) => Err(e),
    }
}

/// The outcome an atomic batch commits to.
enum AtomicPlan {
    Apply {
        /// sku -> (item as read, item after every record).
        items: BTreeMap<String, (Option<Item>, Option<Item>)>,
        movements: Vec<Movement>,
    },
    Reject(Vec<RecordFailure>),
}

fn plan_atomic(
    chunk: &ChunkMessage,
    read: &HashMap<String, Item>,
    disposition: ChunkDisposition,
) -> AtomicPlan {
    let now = crate::clock::now_rfc3339();
    let ctx = context(chunk);
    let mut state: BTreeMap<String, (Option<Item>, Option<Item>)> = BTreeMap::new();
    let mut movements = Vec::new();
    let mut failures = Vec::new();
    for rec in &chunk.records {
        let entry = state
            .entry(rec.sku.clone())
            .or_insert_with(|| (read.get(&rec.sku).cloned(), read.get(&rec.sku).cloned()));
        let effect = match disposition {
            ChunkDisposition::Apply => rec.effect(entry.1.as_ref(), &now),
            ChunkDisposition::DeadLettered => dead_lettered(rec),
        };
        let (reason, reference) = rec.movement_reason();
        match effect {
            RecordEffect::Put { item, delta, .. } => {
                if delta != 0 {
                    movements.push(
                        Movement::record(
                            &rec.sku,
                            delta,
                            item.quantity,
                            reason,
                            reference,
                            &ctx,
                            &now,
                        )
                        .in_batch(&chunk.batch_id, &rec.id),
                    );
                }
                entry.1 = Some(item);
            }
            RecordEffect::Delete { delta } => {
                if delta != 0 {
                    movements.push(
                        Movement::record(&rec.sku, delta, 0, reason, reference, &ctx, &now)
                            .in_batch(&chunk.batch_id, &rec.id),
                    );
                }
                entry.1 = None;
            }
            RecordEffect::Fail { code, message } => {
                failures.push(RecordFailure::new(
                    rec.index,
                    &rec.id,
                    Some(&rec.sku),
                    code,
                    message,
                ));
            }
        }
    }
    if failures.is_empty() {
        return AtomicPlan::Apply {
            items: state,
            movements,
        };
    }
    // Everything else is reported as aborted, so total = failed and the
    // culprits say why.
    let culprits: Vec<String> = failures.iter().map(|f| f.record_id.clone()).collect();
    let culprit_indexes: HashSet<u32> = failures.iter().map(|f| f.index).collect();
    for rec in &chunk.records {
        if !culprit_indexes.contains(&rec.index) {
            failures.push(RecordFailure::new(
                rec.index,
                &rec.id,
                Some(&rec.sku),
                "atomic_batch_aborted",
                format!(
                    "not applied: the atomic batch was rejected because of record(s) {}",
                    culprits.join(", ")
                ),
            ));
        }
    }
    failures.sort_by_key(|f| f.index);
    AtomicPlan::Reject(failures)
}

async fn atomic(
    store: &DynamoBatchStore,
    tenant: &TenantId,
    chunk: &ChunkMessage,
    disposition: ChunkDisposition,
) -> Result<Vec<Event>, StoreError> {
    let table = store.table.as_str();
    let pk = batch_pk(tenant, &chunk.batch_id);
    let total = chunk.records.len() as u64;
    for round in 0..MAX_ROUNDS {
        let Some(header) = store.header(tenant, &chunk.batch_id).await? else {
            return Err(StoreError::Corrupt(format!(
                "batch {} has no header",
                chunk.batch_id
            )));
        };
        if header.chunks_done > 0 {
            write_atomic_side_effects(store, tenant, header).await?;
            return Ok(Vec::new());
        }
        store.mark_processing(tenant, &chunk.batch_id).await?;
        let skus: HashSet<&str> = chunk.records.iter().map(|r| r.sku.as_str()).collect();
        let read = match disposition {
            ChunkDisposition::Apply => read_items(store, tenant, &skus).await?,
            ChunkDisposition::DeadLettered => HashMap::new(),
        };
        let now = crate::clock::now_rfc3339();
        let claim = |succeeded: u64, failed: u64, field: &str, json: String| {
            aws_sdk_dynamodb::types::Update::builder()
                .table_name(table)
                .set_key(Some(DynamoBatchStore::key(pk.clone(), BATCH_SK)))
                .update_expression(format!("SET succeeded = :s, failed = :f, chunks_done = :one, updated_at = :now, {field} = :plan"))
                .condition_expression("chunks_done = :zero")
                .expression_attribute_values(":s", n(succeeded))
                .expression_attribute_values(":f", n(failed))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":now", s(&now))
                .expression_attribute_values(":plan", s(json))
                .build()
                .map_err(build_error)
        };
        let mut actions = Vec::new();
        let mut events = Vec::new();
        let mut rejected: Vec<RecordFailure> = Vec::new();
        let items_in_tx;
        match plan_atomic(chunk, &read, disposition) {
            AtomicPlan::Reject(failures) => {
                let json = serde_json::to_string(
                    &failures.iter().map(|f| (f.index, f)).collect::<Vec<_>>(),
                )
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                actions.push(
                    TransactWriteItem::builder()
                        .update(claim(0, total, "atomic_failures", json)?)
                        .build(),
                );
                items_in_tx = 0;
                rejected = failures;
            }
            AtomicPlan::Apply { items, movements } => {
                for (sku, (before, after)) in &items {
                    events.extend(record_events(
                        tenant,
                        chunk,
                        sku,
                        before.as_ref(),
                        after.as_ref(),
                        &now,
                    ));
                    let action = match (before, after) {
                        (None, Some(new)) => put_action(
                            table,
                            to_attrs(&ItemRecord::new(tenant, new))?,
                            "attribute_not_exists(pk)",
                            &[],
                        )?,
                        (Some(old), Some(new)) => put_action(
                            table,
                            to_attrs(&ItemRecord::new(tenant, new))?,
                            "version = :v",
                            &[(":v", n(old.version))],
                        )?,
                        (Some(old), None) => TransactWriteItem::builder()
                            .delete(
                                Delete::builder()
                                    .table_name(table)
                                    .set_key(Some(DynamoBatchStore::key(
                                        item_pk(tenant, sku),
                                        ITEM_SK,
                                    )))
                                    .condition_expression("version = :v")
                                    .expression_attribute_values(":v", n(old.version))
                                    .build()
                                    .map_err(build_error)?,
                            )
                            .build(),
                        (None, None) => TransactWriteItem::builder()
                            .condition_check(
                                ConditionCheck::builder()
                                    .table_name(table)
                                    .set_key(Some(DynamoBatchStore::key(
                                        item_pk(tenant, sku),
                                        ITEM_SK,
                                    )))
                                    .condition_expression("attribute_not_exists(pk)")
                                    .build()
                                    .map_err(build_error)?,
                            )
                            .build(),
                    };
                    actions.push(action);
                }
                items_in_tx = actions.len();
                let json = serde_json::to_string(&movements)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                actions.push(
                    TransactWriteItem::builder()
                        .update(claim(total, 0, "atomic_plan", json)?)
                        .build(),
                );
            }
        }
        match transact(&store.client, actions).await {
            Ok(()) => log_failures(&rejected),
            // The header claim lost: another delivery decided; finish its side effects.
            Err(TransactFailure::Condition(f)) if TransactFailure::failed(&f, items_in_tx) => {
                events.clear();
            }
            Err(TransactFailure::Condition(_)) | Err(TransactFailure::Conflict) => {
                backoff(round + 1).await;
                continue;
            }
            Err(TransactFailure::Store(e)) => return Err(e),
        }
        let Some(header) = store.header(tenant, &chunk.batch_id).await? else {
            return Err(StoreError::Corrupt(format!(
                "batch {} has no header",
                chunk.batch_id
            )));
        };
        write_atomic_side_effects(store, tenant, header).await?;
        return Ok(events);
    }
    Err(StoreError::Unavailable(
        "gave up applying an atomic batch under contention".into(),
    ))
}

/// Writes the ledger movements or the failure report an atomic batch
/// committed to (idempotent: fixed keys, same content).
async fn write_atomic_side_effects(
    store: &DynamoBatchStore,
    tenant: &TenantId,
    header: BatchStored,
) -> Result<(), StoreError> {
    if header.ledger_written {
        return Ok(());
    }
    let mut requests = Vec::new();
    if let Some(plan) = &header.atomic_plan {
        let movements: Vec<Movement> =
            serde_json::from_str(plan).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        for m in &movements {
            requests.push(write_request(to_attrs(&MovementRecord::new(tenant, m))?)?);
        }
    }
    if let Some(failures) = &header.atomic_failures {
        let failures: Vec<(u32, RecordFailure)> =
            serde_json::from_str(failures).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        for (index, mut f) in failures {
            f.index = index;
            requests.push(write_request(to_attrs(&FailureStored::new(
                tenant,
                &header.batch_id,
                &f,
            ))?)?);
        }
    }
    batch_write(&store.client, &store.table, requests).await?;
    store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(DynamoBatchStore::key(header.pk.clone(), BATCH_SK)))
        .update_expression("SET ledger_written = :t")
        .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
        .send()
        .await
        .map_err(classify)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::batch::RecordOp;

    fn rec(index: u32, sku: &str) -> BatchRecord {
        BatchRecord {
            index,
            id: index.to_string(),
            sku: sku.into(),
            op: RecordOp::Delete,
        }
    }

    #[test]
    fn groups_keep_per_sku_order_and_distinct_skus() {
        let records = [
            rec(0, "A"),
            rec(1, "B"),
            rec(2, "A"),
            rec(3, "C"),
            rec(4, "B"),
        ];
        let mut pending: Vec<&BatchRecord> = records.iter().collect();
        let g1: Vec<u32> = take_group(&mut pending).iter().map(|r| r.index).collect();
        assert_eq!(g1, vec![0, 1, 3]);
        let g2: Vec<u32> = take_group(&mut pending).iter().map(|r| r.index).collect();
        assert_eq!(g2, vec![2, 4]);
        assert!(pending.is_empty());
    }

    #[test]
    fn groups_are_bounded() {
        let records: Vec<BatchRecord> = (0..100).map(|i| rec(i, &format!("S{i}"))).collect();
        let mut pending: Vec<&BatchRecord> = records.iter().collect();
        assert_eq!(take_group(&mut pending).len(), GROUP_RECORDS);
    }
}
