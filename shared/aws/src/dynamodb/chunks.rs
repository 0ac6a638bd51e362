//! The DynamoDB primitives the batch worker applies chunks with
//! (`stockroom_app::chunks` is the loop over them).
//!
//! Isolated mode: a record's outcome marker (`R#<index>`, applied or failed)
//! commits with its effect (item write + ledger movement) under
//! `attribute_not_exists`, in one transaction per group of distinct skus,
//! conditioned on the item versions read just before. A chunk is counted
//! once: the chunk marker (`C#<chunk>`) and the header's counters commit in
//! one transaction.
//!
//! Atomic mode (at most 99 records, one chunk): all item and level writes
//! (holds, location tallies) and the header's claim (`chunks_done = 0 -> 1`,
//! with the ledger plan) commit in one transaction, or, if any record cannot
//! be applied, the header claims the failure with the failure report and
//! nothing is written to items or levels (`stockroom_app::atomic_batches`
//! plans it). Ledger
//! movements and failure entries are written from the stored plan afterwards,
//! idempotently, and re-written by a redelivery until `ledger_written`.
//!
//! What each record does, which records share a transaction, which events a
//! write causes and what an atomic batch commits to are the domain's rules
//! (`domain::chunk_plan`, unit-tested there); this module reads and commits.

use super::batch_table::DynamoBatchStore;
use super::error::{build_error, classify};
use super::levels::{default_holds_key, held_at_default};
use super::records::*;
use super::tx::{TransactFailure, batch_get, batch_write, transact};
use super::{Attrs, from_attrs, n, s, to_attrs};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::{
    ConditionCheck, Delete, Put, PutRequest, TransactWriteItem, WriteRequest,
};
use std::collections::{HashMap, HashSet};
use stockroom_app::ports::{
    AtomicCommit, AtomicCommitted, GroupCommit, ItemsRead, PlannedRecord, StoreError,
};
use stockroom_domain::batch::{ChunkMessage, RecordEffect, RecordFailure};
use stockroom_domain::change::{ChangeCause, Deletion};
use stockroom_domain::chunk_plan::{self as chunk_plan, AtomicPlan};
use stockroom_domain::{Item, Movement, TenantId};

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

/// Current items for these skus and their default location's holds
/// records, in one strongly consistent read (see [`ItemsRead`]).
pub(super) async fn read_items(
    store: &DynamoBatchStore,
    tenant: &TenantId,
    skus: &[&str],
) -> Result<ItemsRead, StoreError> {
    let keys = skus
        .iter()
        .flat_map(|sku| {
            let (pk, sk) = default_holds_key(tenant, sku);
            [
                DynamoBatchStore::key(item_pk(tenant, sku), ITEM_SK),
                DynamoBatchStore::key(pk, &sk),
            ]
        })
        .collect();
    let now_ms = stockroom_app::clock::unix_ms(stockroom_app::clock::now());
    let mut read = ItemsRead::default();
    for attrs in batch_get(&store.client, &store.table, keys).await? {
        if matches!(attrs.get("sk"), Some(AttributeValue::S(sk)) if sk == ITEM_SK) {
            let item = Item::from(from_attrs::<ItemRecord>(attrs)?);
            read.items.insert(item.sku.clone(), item);
        } else {
            let (sku, held) = held_at_default(&store.client, &store.table, attrs, now_ms).await?;
            if held > 0 {
                read.held.insert(sku, held);
            }
        }
    }
    Ok(read)
}

/// Outcome markers of these records: index -> applied?
pub(super) async fn outcomes(
    store: &DynamoBatchStore,
    tenant: &TenantId,
    batch_id: &str,
    indexes: &[u32],
) -> Result<HashMap<u32, bool>, StoreError> {
    let sharded = store.markers_sharded(tenant, batch_id).await?;
    let keys = indexes
        .iter()
        .map(|index| {
            DynamoBatchStore::key(
                outcome_pk(tenant, batch_id, *index, sharded),
                &outcome_sk(*index),
            )
        })
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

pub(super) async fn chunk_counted(
    store: &DynamoBatchStore,
    pk: &str,
    chunk: u32,
) -> Result<bool, StoreError> {
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

/// Commits one planned group in one transaction (see the module doc).
pub(super) async fn commit_group(
    store: &DynamoBatchStore,
    tenant: &TenantId,
    batch_id: &str,
    cause: &ChangeCause,
    group: &[PlannedRecord<'_>],
) -> Result<GroupCommit, StoreError> {
    let table = store.table.as_str();
    let sharded = store.markers_sharded(tenant, batch_id).await?;
    let mut actions = Vec::new();
    let mut roles: Vec<(usize, Role)> = Vec::new();
    for (i, planned) in group.iter().enumerate() {
        let rec = planned.record;
        let plan = &planned.plan;
        match &plan.effect {
            RecordEffect::Put { item, created, .. } => {
                let attrs = to_attrs(&ItemRecord::new(tenant, item, cause, store.layout))?;
                let action = match (created, planned.read_version) {
                    (false, Some(version)) => {
                        put_action(table, attrs, "version = :v", &[(":v", n(version))])?
                    }
                    _ => put_action(table, attrs, "attribute_not_exists(pk)", &[])?,
                };
                actions.push(action);
                roles.push((i, Role::Item));
            }
            RecordEffect::Delete { .. } => {
                let delete = Delete::builder()
                    .table_name(table)
                    .set_key(Some(DynamoBatchStore::key(
                        item_pk(tenant, &rec.sku),
                        ITEM_SK,
                    )))
                    .condition_expression("version = :v")
                    .expression_attribute_values(":v", n(planned.read_version.unwrap_or_default()))
                    .build()
                    .map_err(build_error)?;
                actions.push(TransactWriteItem::builder().delete(delete).build());
                roles.push((i, Role::Item));
            }
            RecordEffect::Fail { .. } | RecordEffect::Recorded => {}
        }
        if let Some(deletion) = &plan.deletion {
            actions.push(plain_put(
                table,
                to_attrs(&DeletionStored::new(tenant, deletion))?,
            )?);
            roles.push((i, Role::Other));
        }
        if let Some(movement) = &plan.movement {
            actions.push(plain_put(
                table,
                to_attrs(&MovementRecord::new(tenant, movement, store.layout))?,
            )?);
            roles.push((i, Role::Other));
        }
        if let Some(failure) = &plan.failure {
            actions.push(plain_put(
                table,
                to_attrs(&FailureStored::new(tenant, batch_id, failure, sharded))?,
            )?);
            roles.push((i, Role::Other));
        }
        let marker = OutcomeStored {
            pk: outcome_pk(tenant, batch_id, rec.index, sharded),
            sk: outcome_sk(rec.index),
            outcome: if plan.applied() { "applied" } else { "failed" }.into(),
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
        Ok(()) => Ok(GroupCommit::Committed),
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
            Ok(GroupCommit::retry_unsettled(group.len(), &settled))
        }
        Err(TransactFailure::Conflict) => Ok(GroupCommit::Retry((0..group.len()).collect())),
        Err(TransactFailure::Store(e)) => Err(e),
    }
}

/// Commits an atomic chunk's plan with the header's claim, in one
/// transaction: each item and level conditioned on its version as read.
pub(super) async fn commit_atomic(
    store: &DynamoBatchStore,
    tenant: &TenantId,
    chunk: &ChunkMessage,
    commit: &AtomicCommit,
) -> Result<AtomicCommitted, StoreError> {
    let table = store.table.as_str();
    let pk = batch_pk(tenant, &chunk.batch_id);
    let cause = chunk_plan::cause(chunk);
    let total = chunk.records.len() as u64;
    let now = stockroom_app::clock::now_rfc3339();
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
    match &commit.plan {
        AtomicPlan::Reject(failures) => {
            let json =
                serde_json::to_string(&failures.iter().map(|f| (f.index, f)).collect::<Vec<_>>())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            actions.push(
                TransactWriteItem::builder()
                    .update(claim(0, total, "atomic_failures", json)?)
                    .build(),
            );
        }
        AtomicPlan::Apply {
            items,
            movements,
            deletions,
        } => {
            for (sku, (before, after)) in items {
                actions.push(item_action(
                    (table, store.layout),
                    tenant,
                    sku,
                    before,
                    after,
                    &cause,
                )?);
            }
            let writes: Vec<_> = commit
                .levels
                .iter()
                .map(|w| (w.sku.as_str(), w.level_write(&chunk.request_id, &now)))
                .collect();
            let levels = super::DynamoItemStore::new(store.client.clone(), table);
            actions.extend(levels.atomic_level_actions(tenant, &writes)?);
            let json = serde_json::to_string(&AtomicLedger {
                movements: movements.clone(),
                deletions: deletions.clone(),
            })
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            actions.push(
                TransactWriteItem::builder()
                    .update(claim(total, 0, "atomic_plan", json)?)
                    .build(),
            );
        }
    }
    let claim_at = actions.len() - 1;
    match transact(&store.client, actions).await {
        Ok(()) => Ok(AtomicCommitted::Committed),
        // The header's claim lost: another delivery decided.
        Err(TransactFailure::Condition(f)) if TransactFailure::failed(&f, claim_at) => {
            Ok(AtomicCommitted::Decided)
        }
        Err(TransactFailure::Condition(_)) | Err(TransactFailure::Conflict) => {
            Ok(AtomicCommitted::Retry)
        }
        Err(TransactFailure::Store(e)) => Err(e),
    }
}

/// An item's action in an atomic transaction: created, replaced or
/// deleted on its version as read, or, absent and left absent, checked so.
fn item_action(
    (table, layout): (&str, WriteLayout),
    tenant: &TenantId,
    sku: &str,
    before: &Option<Item>,
    after: &Option<Item>,
    cause: &ChangeCause,
) -> Result<TransactWriteItem, StoreError> {
    let key = || Some(DynamoBatchStore::key(item_pk(tenant, sku), ITEM_SK));
    Ok(match (before, after) {
        (None, Some(new)) => put_action(
            table,
            to_attrs(&ItemRecord::new(tenant, new, cause, layout))?,
            "attribute_not_exists(pk)",
            &[],
        )?,
        (Some(old), Some(new)) => put_action(
            table,
            to_attrs(&ItemRecord::new(tenant, new, cause, layout))?,
            "version = :v",
            &[(":v", n(old.version))],
        )?,
        (Some(old), None) => TransactWriteItem::builder()
            .delete(
                Delete::builder()
                    .table_name(table)
                    .set_key(key())
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
                    .set_key(key())
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(build_error)?,
            )
            .build(),
    })
}

/// Once the claim committed: the ledger, markers and failure report it
/// holds, written once.
pub(super) async fn finish_atomic(
    store: &DynamoBatchStore,
    tenant: &TenantId,
    batch_id: &str,
) -> Result<(), StoreError> {
    let Some(header) = store.header(tenant, batch_id).await? else {
        return Err(StoreError::Corrupt(format!(
            "batch {batch_id} has no header"
        )));
    };
    write_atomic_side_effects(store, tenant, header).await
}

/// What an atomic batch writes once its transaction committed: the ledger
/// movements and the deletion markers. Headers written before markers
/// existed hold the movements alone.
#[derive(serde::Serialize, serde::Deserialize)]
struct AtomicLedger {
    movements: Vec<Movement>,
    #[serde(default)]
    deletions: Vec<Deletion>,
}

impl AtomicLedger {
    fn parse(json: &str) -> Result<Self, StoreError> {
        serde_json::from_str::<AtomicLedger>(json)
            .or_else(|_| {
                serde_json::from_str::<Vec<Movement>>(json).map(|movements| AtomicLedger {
                    movements,
                    deletions: Vec::new(),
                })
            })
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
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
    let mut ledger_rounds: Vec<Vec<WriteRequest>> = Vec::new();
    if let Some(plan) = &header.atomic_plan {
        let ledger = AtomicLedger::parse(plan)?;
        // One sku's movements go out in plan order, one per round: a batch
        // write has no order, and the stream (so `stock.changed`) follows
        // the order of the writes.
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for m in &ledger.movements {
            let round = seen.entry(m.sku.as_str()).or_default();
            if ledger_rounds.len() <= *round {
                ledger_rounds.push(Vec::new());
            }
            ledger_rounds[*round].push(write_request(to_attrs(&MovementRecord::new(
                tenant,
                m,
                store.layout,
            ))?)?);
            *round += 1;
        }
        // A deletion's marker after the sku's movements.
        let last = ledger_rounds.len();
        for d in &ledger.deletions {
            if ledger_rounds.len() == last {
                ledger_rounds.push(Vec::new());
            }
            ledger_rounds[last].push(write_request(to_attrs(&DeletionStored::new(tenant, d))?)?);
        }
    }
    for round in ledger_rounds {
        batch_write(&store.client, &store.table, round).await?;
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
                header.markers_sharded,
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
