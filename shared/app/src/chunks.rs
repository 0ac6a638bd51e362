//! Applying a chunk of batch records exactly once: the batch worker's loop.
//!
//! Isolated mode: every record gets exactly one outcome marker (applied or
//! failed), committed with the record's effect (item write and ledger
//! movement) and refused if it exists already. A redelivered chunk skips the
//! records that have a marker; a concurrent delivery that loses the race
//! sees its markers refused and drops those records. Records are applied in
//! groups of distinct skus (`domain::chunk_plan::take_group`), one
//! transaction per group, conditioned on the item versions read just before;
//! a lost race re-reads and retries only what is left of the group. When
//! every record has an outcome, the chunk is counted into the header once.
//!
//! Atomic mode is one transaction for the whole chunk, counts, transfers
//! and holds included (`atomic_batches`).
//!
//! In isolated mode a count, transfer or hold is applied by its own use case
//! in its own transaction (`batch_levels`); its outcome marker commits with
//! its group.
//!
//! What each record does and which events it causes are the domain's rules
//! (`domain::chunk_plan`); the store only reads and commits.

use crate::batch_levels::LevelRecords;
use crate::clock;
use crate::domain::TenantId;
use crate::domain::batch::{BatchMode, BatchRecord, ChunkMessage};
use crate::domain::chunk_plan::{
    self as chunk_plan, count_outcomes, distinct_skus, plan_record, take_group,
};
use crate::ports::{ChunkApplication, ChunkDisposition, GroupCommit, PlannedRecord, StoreError};
use std::collections::HashSet;
use std::time::Duration;

/// Rounds of lost races a chunk may go through before the delivery gives
/// up (and SQS delivers it again).
const MAX_ROUNDS: u32 = 40;

/// Applies (or, dead-lettered, fails) one chunk exactly once, however often
/// it is delivered, and counts it into the batch header. The events its
/// writes cause are derived from the table's change stream.
pub async fn apply_chunk(
    store: &dyn ChunkApplication,
    levels: &LevelRecords,
    chunk: &ChunkMessage,
    disposition: ChunkDisposition,
) -> Result<(), StoreError> {
    match chunk.mode {
        BatchMode::Isolated => apply_isolated(store, levels, chunk, disposition).await,
        BatchMode::Atomic => {
            crate::atomic_batches::apply_atomic(store, levels, chunk, disposition).await
        }
    }
}

async fn apply_isolated(
    store: &dyn ChunkApplication,
    levels: &LevelRecords,
    chunk: &ChunkMessage,
    disposition: ChunkDisposition,
) -> Result<(), StoreError> {
    let tenant = TenantId::parse(&chunk.tenant_id).map_err(StoreError::Corrupt)?;
    let batch_id = chunk.batch_id.as_str();
    if store.chunk_counted(&tenant, batch_id, chunk.chunk).await? {
        return Ok(());
    }
    // Aborted at submission (could not be enqueued in full): apply nothing.
    if store
        .delivered_header(&tenant, batch_id)
        .await?
        .status
        .is_terminal()
    {
        return Ok(());
    }
    store.mark_processing(&tenant, batch_id).await?;
    let indexes: Vec<u32> = chunk.records.iter().map(|r| r.index).collect();
    let done = store.read_outcomes(&tenant, batch_id, &indexes).await?;
    let mut pending: Vec<&BatchRecord> = chunk
        .records
        .iter()
        .filter(|r| !done.contains_key(&r.index))
        .collect();
    let mut round = 0;
    while !pending.is_empty() {
        let group = take_group(&mut pending);
        let planned = plan_group(store, levels, &tenant, chunk, &group, disposition).await?;
        match store
            .commit_group(&tenant, batch_id, &chunk_plan::cause(chunk), &planned)
            .await?
        {
            GroupCommit::Committed => {
                let failures: Vec<_> = planned.into_iter().filter_map(|p| p.plan.failure).collect();
                crate::telemetry::log_failures(&failures);
            }
            GroupCommit::Retry(positions) => {
                round += 1;
                if round > MAX_ROUNDS {
                    return Err(StoreError::Unavailable(
                        "gave up applying a chunk under contention".into(),
                    ));
                }
                backoff(round).await;
                let positions: HashSet<usize> = positions.into_iter().collect();
                pending.extend(
                    group
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| positions.contains(i))
                        .map(|(_, r)| *r),
                );
                pending.sort_by_key(|r| r.index);
            }
        }
    }
    let outcomes = store.read_outcomes(&tenant, batch_id, &indexes).await?;
    if outcomes.len() != indexes.len() {
        return Err(StoreError::Corrupt(format!(
            "chunk {} of batch {batch_id}: {} of {} outcomes recorded",
            chunk.chunk,
            outcomes.len(),
            indexes.len()
        )));
    }
    let (applied, failed) = count_outcomes(&outcomes);
    store
        .count_chunk(&tenant, batch_id, chunk.chunk, applied, failed)
        .await?;
    Ok(())
}

/// Plans each record of a group against its item as read now (a
/// dead-lettered chunk reads nothing: every record fails). A count,
/// transfer or hold is applied (exactly once) by its use case here: its
/// plan is its outcome.
async fn plan_group<'a>(
    store: &dyn ChunkApplication,
    levels: &LevelRecords,
    tenant: &TenantId,
    chunk: &ChunkMessage,
    group: &[&'a BatchRecord],
    disposition: ChunkDisposition,
) -> Result<Vec<PlannedRecord<'a>>, StoreError> {
    let item_records = group.iter().copied().filter(|r| !r.op.is_level());
    let current = match disposition {
        ChunkDisposition::Apply => {
            store
                .read_items(tenant, &distinct_skus(item_records))
                .await?
        }
        ChunkDisposition::DeadLettered => Default::default(),
    };
    let now = clock::now_rfc3339();
    let mut planned = Vec::with_capacity(group.len());
    for record in group {
        if record.op.is_level() {
            planned.push(PlannedRecord {
                record,
                plan: levels.settle(tenant, chunk, record, disposition).await?,
                read_version: None,
            });
            continue;
        }
        let item = current.items.get(&record.sku);
        let held = current.held.get(&record.sku).copied().unwrap_or(0);
        planned.push(PlannedRecord {
            record,
            plan: plan_record(chunk, record, item, held, disposition, &now),
            read_version: item.map(|i| i.version),
        });
    }
    Ok(planned)
}

async fn backoff(round: u32) {
    let ms = (5u64 << round.min(6)).min(500);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
