//! Applying a chunk of batch records, as rules: which records share a
//! transaction, what each record does to its item, which marker a deletion
//! commits, and the outcome an atomic batch commits to. The store only
//! reads items and outcomes, commits what is planned here, and counts the
//! chunk (`stockroom::adapters::dynamodb` chunks.rs).

use super::batch::{BatchRecord, ChunkMessage, RecordEffect, RecordFailure};
use super::change::{ChangeCause, Deletion};
use super::{Item, Movement, MovementContext};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Records per isolated transaction: up to 3 actions each (item, movement,
/// outcome marker) within DynamoDB's 100-action limit.
pub const GROUP_RECORDS: usize = 33;

/// Actions per isolated transaction, at most (DynamoDB allows 100).
pub const GROUP_ACTIONS: usize = 99;

/// The actions a record may take in its group's transaction: a deletion
/// writes its marker too (item, marker, movement, outcome).
fn actions_of(rec: &BatchRecord) -> usize {
    match rec.op {
        super::batch::RecordOp::Delete => 4,
        // Applied in their own transaction: the outcome and a failure entry.
        _ if rec.op.is_level() => 2,
        _ => 3,
    }
}

/// How a chunk is being processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkDisposition {
    /// Apply the records.
    Apply,
    /// The chunk exhausted its deliveries (dead-letter queue): report every
    /// record without an outcome as failed so the batch still ends.
    DeadLettered,
}

/// Takes the next group: records in order, distinct skus, at most
/// `GROUP_RECORDS`, and no record overtaking an earlier one of the same sku.
pub fn take_group<'a>(pending: &mut Vec<&'a BatchRecord>) -> Vec<&'a BatchRecord> {
    let mut group = Vec::new();
    let mut rest = Vec::new();
    let mut in_group: HashSet<&str> = HashSet::new();
    let mut blocked: HashSet<&str> = HashSet::new();
    let mut actions = 0;
    for rec in pending.drain(..) {
        if group.len() < GROUP_RECORDS
            && actions + actions_of(rec) <= GROUP_ACTIONS
            && !in_group.contains(rec.sku.as_str())
            && !blocked.contains(rec.sku.as_str())
        {
            in_group.insert(rec.sku.as_str());
            actions += actions_of(rec);
            group.push(rec);
        } else {
            blocked.insert(rec.sku.as_str());
            rest.push(rec);
        }
    }
    *pending = rest;
    group
}

/// The skus these records touch, each once (the items a chunk or a group
/// reads before it is planned).
pub fn distinct_skus<'a>(records: impl IntoIterator<Item = &'a BatchRecord>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    records
        .into_iter()
        .map(|r| r.sku.as_str())
        .filter(|sku| seen.insert(*sku))
        .collect()
}

/// The one failure entry of a dead-lettered chunk whose body cannot be
/// read: its records are counted as failed under it. Its index is past any
/// real record's, so the entry lists after them.
pub fn unreadable_chunk_failure(chunk: u32, record_count: u64) -> RecordFailure {
    RecordFailure::new(
        u32::MAX - chunk,
        &format!("chunk:{chunk}"),
        None,
        "chunk_dead_lettered",
        format!(
            "chunk {chunk} ({record_count} records) could not be read after repeated deliveries; its records were not applied"
        ),
    )
}

/// Who caused the chunk's writes: its batch's request, and the batch.
pub fn cause(chunk: &ChunkMessage) -> ChangeCause {
    ChangeCause {
        request_id: chunk.request_id.clone(),
        batch_id: Some(chunk.batch_id.clone()),
    }
}

/// Who made the chunk's movements: its request, no key (a worker did).
pub fn context(chunk: &ChunkMessage) -> MovementContext {
    MovementContext {
        request_id: chunk.request_id.clone(),
        key_id: None,
        batch_record: None,
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

fn effect(
    rec: &BatchRecord,
    current: Option<&Item>,
    held: i64,
    disposition: ChunkDisposition,
    now: &str,
) -> RecordEffect {
    match disposition {
        ChunkDisposition::Apply => rec.effect(current, held, now),
        ChunkDisposition::DeadLettered => dead_lettered(rec),
    }
}

fn movement(
    chunk: &ChunkMessage,
    rec: &BatchRecord,
    delta: i64,
    after: i64,
    now: &str,
) -> Option<Movement> {
    (delta != 0).then(|| {
        let (reason, reference) = rec.movement_reason();
        Movement::record(
            &rec.sku,
            delta,
            after,
            reason,
            reference,
            &context(chunk),
            now,
        )
        .in_batch(&chunk.batch_id, &rec.id)
    })
}

/// What one record of an isolated chunk does, decided against its item as
/// read. All of it commits together with the record's outcome marker, or
/// none of it does.
#[derive(Debug, PartialEq)]
pub struct RecordPlan {
    pub effect: RecordEffect,
    /// The ledger entry, when the quantity changes.
    pub movement: Option<Movement>,
    /// The marker committed with a deletion (its event derives from it).
    pub deletion: Option<Deletion>,
    /// The failure entry of a record that is not applied.
    pub failure: Option<RecordFailure>,
}

impl RecordPlan {
    pub fn applied(&self) -> bool {
        self.failure.is_none()
    }
}

pub fn plan_record(
    chunk: &ChunkMessage,
    rec: &BatchRecord,
    current: Option<&Item>,
    held: i64,
    disposition: ChunkDisposition,
    now: &str,
) -> RecordPlan {
    let effect = effect(rec, current, held, disposition, now);
    plan_of(chunk, rec, current, effect, now)
}

/// The plan of a count, transfer or hold whose own use case settled it:
/// applied (`None`), or failed with this code and message.
pub fn plan_level_record(rec: &BatchRecord, failed: Option<(&'static str, String)>) -> RecordPlan {
    let effect = match failed {
        None => RecordEffect::Recorded,
        Some((code, message)) => RecordEffect::Fail { code, message },
    };
    let failure = match &effect {
        RecordEffect::Fail { code, message } => Some(RecordFailure::new(
            rec.index,
            &rec.id,
            Some(&rec.sku),
            code,
            message.clone(),
        )),
        _ => None,
    };
    RecordPlan {
        effect,
        movement: None,
        deletion: None,
        failure,
    }
}

fn plan_of(
    chunk: &ChunkMessage,
    rec: &BatchRecord,
    current: Option<&Item>,
    effect: RecordEffect,
    now: &str,
) -> RecordPlan {
    let (movement, deletion, failure) = match &effect {
        RecordEffect::Recorded => (None, None, None),
        RecordEffect::Put { item, delta, .. } => {
            (movement(chunk, rec, *delta, item.quantity, now), None, None)
        }
        RecordEffect::Delete { delta } => (
            movement(chunk, rec, *delta, 0, now),
            current.map(|_| Deletion::new(&rec.sku, cause(chunk), now)),
            None,
        ),
        RecordEffect::Fail { code, message } => (
            None,
            None,
            Some(RecordFailure::new(
                rec.index,
                &rec.id,
                Some(&rec.sku),
                code,
                message.clone(),
            )),
        ),
    };
    RecordPlan {
        effect,
        movement,
        deletion,
        failure,
    }
}

/// The outcome an atomic batch commits to.
#[derive(Clone, Debug, PartialEq)]
pub enum AtomicPlan {
    Apply {
        /// sku -> (item as read, item after every record).
        items: BTreeMap<String, (Option<Item>, Option<Item>)>,
        movements: Vec<Movement>,
        /// A marker per item that existed and is deleted.
        deletions: Vec<Deletion>,
    },
    /// Every record's failure: the culprits' own, and `atomic_batch_aborted`
    /// for the rest, so total = failed and the culprits say why.
    Reject(Vec<RecordFailure>),
}

/// What an atomic batch's counts, transfers and holds do to the levels they
/// name: the caller keeps the levels (as read, then as the earlier records
/// left them) and the holds placed; the plan keeps the order and the items.
pub trait LevelSteps {
    /// Units held now at the sku's default location (a write of the item
    /// may not take on hand below them).
    fn held(&self, sku: &str) -> i64;

    /// Applies a count, transfer or reserve record to its levels and to
    /// `item`, the sku's item as the earlier records left it (at the default
    /// location its quantity is on hand): the movements it makes, or the
    /// code and message it fails with.
    fn apply(
        &mut self,
        rec: &BatchRecord,
        item: &mut Option<Item>,
    ) -> Result<Vec<Movement>, (&'static str, String)>;

    /// An item record moved on hand at the default location by `delta`,
    /// now (a later count there keeps it on top).
    fn item_written(&mut self, _sku: &str, _delta: i64) {}
}

/// Applies the records in order, each to the item (and levels) as the
/// earlier records left them; one failure rejects them all.
pub fn plan_atomic(
    chunk: &ChunkMessage,
    read: &HashMap<String, Item>,
    levels: &mut dyn LevelSteps,
    disposition: ChunkDisposition,
    now: &str,
) -> AtomicPlan {
    let mut state: BTreeMap<String, (Option<Item>, Option<Item>)> = BTreeMap::new();
    let mut movements = Vec::new();
    let mut failures = Vec::new();
    for rec in &chunk.records {
        let entry = state
            .entry(rec.sku.clone())
            .or_insert_with(|| (read.get(&rec.sku).cloned(), read.get(&rec.sku).cloned()));
        if rec.op.is_level() && disposition == ChunkDisposition::Apply {
            match levels.apply(rec, &mut entry.1) {
                Ok(made) => movements.extend(made),
                Err((code, message)) => failures.push(RecordFailure::new(
                    rec.index,
                    &rec.id,
                    Some(&rec.sku),
                    code,
                    message,
                )),
            }
            continue;
        }
        let held = levels.held(&rec.sku);
        match effect(rec, entry.1.as_ref(), held, disposition, now) {
            RecordEffect::Put { item, delta, .. } => {
                levels.item_written(&rec.sku, delta);
                movements.extend(movement(chunk, rec, delta, item.quantity, now));
                entry.1 = Some(item);
            }
            RecordEffect::Delete { delta } => {
                levels.item_written(&rec.sku, delta);
                movements.extend(movement(chunk, rec, delta, 0, now));
                entry.1 = None;
            }
            // Only a count, transfer or hold settled by its use case records.
            RecordEffect::Recorded => {}
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
        let deletions = state
            .iter()
            .filter(|(_, (before, after))| before.is_some() && after.is_none())
            .map(|(sku, _)| Deletion::new(sku, cause(chunk), now))
            .collect();
        return AtomicPlan::Apply {
            items: state,
            movements,
            deletions,
        };
    }
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

/// Records applied and failed, from their outcome markers (index -> applied).
pub fn count_outcomes(outcomes: &HashMap<u32, bool>) -> (u64, u64) {
    let applied = outcomes.values().filter(|a| **a).count() as u64;
    (applied, outcomes.len() as u64 - applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchMode, parse_record};
    use serde_json::{Value, json};

    const NOW: &str = "2026-12-03T10:00:00Z";

    fn chunk(mode: BatchMode, records: &[Value]) -> ChunkMessage {
        ChunkMessage {
            v: 1,
            tenant_id: "acme".into(),
            batch_id: "b_1".into(),
            mode,
            chunk: 0,
            request_id: "req-1".into(),
            records: records
                .iter()
                .enumerate()
                .map(|(i, r)| parse_record(i as u32, r).unwrap())
                .collect(),
        }
    }

    /// Items alone: nothing held, no level record.
    struct NoHolds;

    impl LevelSteps for NoHolds {
        fn held(&self, _: &str) -> i64 {
            0
        }

        fn apply(
            &mut self,
            rec: &BatchRecord,
            _: &mut Option<Item>,
        ) -> Result<Vec<Movement>, (&'static str, String)> {
            panic!("no level record expected: {rec:?}")
        }
    }

    fn adjust(id: &str, sku: &str, delta: i64) -> Value {
        json!({"id": id, "op": "adjust", "sku": sku, "delta": delta, "reason": "sale"})
    }

    fn upsert(id: &str, sku: &str, quantity: i64) -> Value {
        json!({"id": id, "op": "upsert", "sku": sku, "name": sku, "quantity": quantity, "low_stock_threshold": 5})
    }

    /// The item an upsert of `quantity` creates.
    fn item(sku: &str, quantity: i64) -> Item {
        let c = chunk(BatchMode::Isolated, &[upsert("x", sku, quantity)]);
        match c.records[0].effect(None, 0, NOW) {
            RecordEffect::Put { item, .. } => item,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deletions_take_four_actions_so_a_group_of_them_is_smaller() {
        let records: Vec<Value> = (0..40)
            .map(|i| json!({"id": format!("r{i}"), "op": "delete", "sku": format!("S{i}")}))
            .collect();
        let c = chunk(BatchMode::Isolated, &records);
        let mut pending: Vec<&BatchRecord> = c.records.iter().collect();
        let group = take_group(&mut pending);
        assert_eq!(group.len(), GROUP_ACTIONS / 4);
        assert_eq!(pending.len(), 40 - GROUP_ACTIONS / 4);
    }

    #[test]
    fn groups_hold_distinct_skus_in_order_and_nothing_overtakes() {
        let c = chunk(
            BatchMode::Isolated,
            &[
                adjust("1", "A", 1),
                adjust("2", "B", 1),
                adjust("3", "A", 1),
                adjust("4", "C", 1),
                adjust("5", "B", 1),
            ],
        );
        let mut pending: Vec<&BatchRecord> = c.records.iter().collect();
        let ids = |g: &[&BatchRecord]| g.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        // 4 (C) joins the first group; 3 and 5 wait for the A and B before them.
        assert_eq!(ids(&take_group(&mut pending)), ["1", "2", "4"]);
        assert_eq!(ids(&take_group(&mut pending)), ["3", "5"]);
        assert!(pending.is_empty());

        let many: Vec<Value> = (0..80)
            .map(|i| adjust(&i.to_string(), &format!("S{i}"), 1))
            .collect();
        let c = chunk(BatchMode::Isolated, &many);
        let mut pending: Vec<&BatchRecord> = c.records.iter().collect();
        let sizes: Vec<usize> =
            std::iter::from_fn(|| (!pending.is_empty()).then(|| take_group(&mut pending).len()))
                .collect();
        assert_eq!(
            sizes,
            [GROUP_RECORDS, GROUP_RECORDS, 80 - 2 * GROUP_RECORDS]
        );
    }

    #[test]
    fn distinct_skus_are_each_named_once_in_first_seen_order() {
        let c = chunk(
            BatchMode::Isolated,
            &[
                adjust("1", "B", 1),
                adjust("2", "A", 1),
                adjust("3", "B", 1),
            ],
        );
        assert_eq!(distinct_skus(&c.records), ["B", "A"]);
        assert!(distinct_skus(&[]).is_empty());
    }

    #[test]
    fn a_record_plans_its_write_movement_and_deletion_marker_together() {
        let c = chunk(
            BatchMode::Isolated,
            &[
                adjust("r1", "A", -3),
                adjust("r2", "A", -99),
                json!({"id": "r3", "op": "delete", "sku": "A"}),
            ],
        );
        let current = item("A", 7);

        let sale = plan_record(
            &c,
            &c.records[0],
            Some(&current),
            0,
            ChunkDisposition::Apply,
            NOW,
        );
        assert!(sale.applied());
        let RecordEffect::Put {
            item: after,
            created: false,
            ..
        } = &sale.effect
        else {
            panic!("{:?}", sale.effect)
        };
        assert_eq!(after.quantity, 4);
        let m = sale
            .movement
            .as_ref()
            .expect("a quantity change is a movement");
        assert_eq!((m.delta, m.quantity_after), (-3, 4));
        assert_eq!(
            (m.batch_id.as_deref(), m.record_id.as_deref()),
            (Some("b_1"), Some("r1"))
        );
        assert_eq!(sale.deletion, None);

        let short = plan_record(
            &c,
            &c.records[1],
            Some(&current),
            0,
            ChunkDisposition::Apply,
            NOW,
        );
        assert!(!short.applied());
        assert_eq!(
            short.failure.as_ref().map(|f| f.code.as_str()),
            Some("insufficient_stock")
        );
        assert_eq!((short.movement, short.deletion), (None, None));

        let gone = plan_record(
            &c,
            &c.records[2],
            Some(&current),
            0,
            ChunkDisposition::Apply,
            NOW,
        );
        assert_eq!(
            gone.movement.map(|m| (m.delta, m.quantity_after)),
            Some((-7, 0))
        );
        let deletion = gone.deletion.expect("a deletion commits its marker");
        assert_eq!(
            (deletion.sku.as_str(), deletion.cause.batch_id.as_deref()),
            ("A", Some("b_1"))
        );
        let nothing = plan_record(&c, &c.records[2], None, 0, ChunkDisposition::Apply, NOW);
        assert_eq!(
            nothing.failure.map(|f| f.code),
            Some("item_not_found".to_owned())
        );

        let dead = plan_record(
            &c,
            &c.records[0],
            Some(&current),
            0,
            ChunkDisposition::DeadLettered,
            NOW,
        );
        assert_eq!(
            dead.failure.map(|f| f.code),
            Some("chunk_dead_lettered".to_owned())
        );
        assert_eq!(dead.movement, None);
    }

    #[test]
    fn an_atomic_batch_applies_in_order_or_rejects_every_record() {
        let c = chunk(
            BatchMode::Atomic,
            &[
                adjust("1", "A", -4),
                adjust("2", "A", -2),
                adjust("3", "B", 5),
            ],
        );
        let read = HashMap::from([
            ("A".to_owned(), item("A", 6)),
            ("B".to_owned(), item("B", 0)),
        ]);
        let AtomicPlan::Apply {
            items, movements, ..
        } = plan_atomic(&c, &read, &mut NoHolds, ChunkDisposition::Apply, NOW)
        else {
            panic!("6 - 4 - 2 leaves 0")
        };
        assert_eq!(items["A"].1.as_ref().map(|i| i.quantity), Some(0));
        assert_eq!(
            items["A"].0.as_ref().map(|i| i.quantity),
            Some(6),
            "as read"
        );
        let after: Vec<(i64, i64)> = movements
            .iter()
            .map(|m| (m.delta, m.quantity_after))
            .collect();
        assert_eq!(after, [(-4, 2), (-2, 0), (5, 5)]);

        let c = chunk(
            BatchMode::Atomic,
            &[
                adjust("1", "A", -4),
                adjust("2", "A", -3),
                adjust("3", "B", 5),
            ],
        );
        let AtomicPlan::Reject(failures) =
            plan_atomic(&c, &read, &mut NoHolds, ChunkDisposition::Apply, NOW)
        else {
            panic!("the second sale overdraws A")
        };
        let codes: Vec<(&str, &str)> = failures
            .iter()
            .map(|f| (f.record_id.as_str(), f.code.as_str()))
            .collect();
        assert_eq!(
            codes,
            [
                ("1", "atomic_batch_aborted"),
                ("2", "insufficient_stock"),
                ("3", "atomic_batch_aborted")
            ]
        );
        assert!(
            failures[0].message.contains("record(s) 2"),
            "{}",
            failures[0].message
        );
    }

    #[test]
    fn outcomes_count_applied_and_failed() {
        let outcomes = HashMap::from([(0, true), (1, false), (2, true)]);
        assert_eq!(count_outcomes(&outcomes), (2, 1));
    }
}
