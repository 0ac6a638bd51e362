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
//!
//! What each record does, which records share a transaction, which events a
//! write causes and what an atomic batch commits to are the domain's rules
//! (`domain::chunk_plan`, unit-tested there); this module reads, commits what
//! they plan, and counts.

use super::batch_table::DynamoBatchStore;
use super::error::{build_error, classify};
use super::records::*;
use super::tx::{TransactFailure, batch_get, batch_write, transact};
use super::{Attrs, from_attrs, n, s, to_attrs};
use crate::domain::batch::{BatchMode, BatchRecord, ChunkMessage, RecordEffect, RecordFailure};
use crate::domain::chunk_plan::{
    AtomicPlan, ChunkDisposition, count_outcomes, plan_atomic, plan_record, record_event,
    take_group,
};
use crate::domain::event::Event;
use crate::domain::{Item, Movement, TenantId};
use crate::ports::StoreError;
use aws_sdk_dynamodb::types::{
    ConditionCheck, Delete, Put, PutRequest, TransactWriteItem, WriteRequest,
};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

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
    let (applied, failed) = count_outcomes(&outcomes);
    store
        .count_chunk(tenant, &chunk.batch_id, chunk.chunk, applied, failed)
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
    let mut actions = Vec::new();
    let mut roles: Vec<(usize, Role)> = Vec::new();
    let mut events = Vec::new();
    let mut failed: Vec<RecordFailure> = Vec::new();
    for (i, rec) in group.iter().enumerate() {
        let cur = current.get(&rec.sku);
        let plan = plan_record(chunk, rec, cur, disposition, &now);
        let applied = plan.applied();
        match plan.effect {
            RecordEffect::Put { item, created, .. } => {
                let attrs = to_attrs(&ItemRecord::new(tenant, &item))?;
                let action = match (created, cur) {
                    (false, Some(c)) => {
                        put_action(table, attrs, "version = :v", &[(":v", n(c.version))])?
                    }
                    _ => put_action(table, attrs, "attribute_not_exists(pk)", &[])?,
                };
                actions.push(action);
                roles.push((i, Role::Item));
            }
            RecordEffect::Delete { .. } => {
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
            }
            RecordEffect::Fail { .. } => {}
        }
        if let Some(movement) = &plan.movement {
            actions.push(plain_put(
                table,
                to_attrs(&MovementRecord::new(tenant, movement))?,
            )?);
            roles.push((i, Role::Other));
        }
        if let Some(failure) = plan.failure {
            actions.push(plain_put(
                table,
                to_attrs(&FailureStored::new(tenant, &chunk.batch_id, &failure))?,
            )?);
            failed.push(failure);
            roles.push((i, Role::Other));
        }
        events.extend(plan.event);
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
        match plan_atomic(chunk, &read, disposition, &now) {
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
                    events.extend(record_event(
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
