//! Batches: request parsing and record validation, chunking, and the pure
//! decision of what one record does to one item.

use super::item::{ItemFields, MAX_DESCRIPTION, MAX_NAME};
use super::validation::{FieldErrors, ObjectReader};
use super::{Item, MAX_QUANTITY, Sku, StockCheck, apply_delta};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// Most records one inline batch may carry.
pub const MAX_BATCH_RECORDS: usize = 50_000;
/// Most records an atomic batch may carry: they are applied in one DynamoDB
/// transaction (at most 100 actions: one per item plus the batch header;
/// counts, transfers and holds take more, see [`atomic_actions`]).
pub const MAX_ATOMIC_RECORDS: usize = 99;
pub const MAX_RECORD_ID: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    /// Only the bad records fail.
    Isolated,
    /// One bad record rejects the whole batch; nothing is applied.
    Atomic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// Created by an upload request; waiting for the file to arrive.
    AwaitingUpload,
    Accepted,
    Processing,
    Completed,
    CompletedWithErrors,
    Failed,
}

impl BatchStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::CompletedWithErrors | Self::Failed
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingUpload => "awaiting_upload",
            Self::Accepted => "accepted",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::CompletedWithErrors => "completed_with_errors",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::AwaitingUpload,
            Self::Accepted,
            Self::Processing,
            Self::Completed,
            Self::CompletedWithErrors,
            Self::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
    /// Terminal status of an isolated batch from its final counts.
    pub fn from_counts(succeeded: u64, failed: u64) -> Self {
        match (succeeded, failed) {
            (_, 0) => Self::Completed,
            (0, _) => Self::Failed,
            _ => Self::CompletedWithErrors,
        }
    }
}

/// Names of the fields a batch representation has (for `?fields=`).
pub const BATCH_FIELDS: &[&str] = &[
    "batch_id",
    "mode",
    "status",
    "total",
    "succeeded",
    "failed",
    "created_at",
    "updated_at",
    "completed_at",
    "request_id",
    "records_read",
    "records_enqueued",
    "upload",
    "error",
];

impl super::Selectable for Batch {
    const FIELDS: &'static [&'static str] = BATCH_FIELDS;
}

/// A batch as reported by the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Batch {
    #[schema(example = "b_01jd8x3b6q5w3z2y1x0v9t8s7r")]
    pub batch_id: String,
    pub mode: BatchMode,
    pub status: BatchStatus,
    pub total: u64,
    /// Records applied so far (exact once the status is terminal).
    pub succeeded: u64,
    /// Records failed so far, including those that failed validation at submission.
    pub failed: u64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Request id of the POST that created the batch.
    pub request_id: String,
    /// Records read from the submission (the body, or the uploaded file as
    /// the splitter reads it).
    #[serde(default)]
    pub records_read: u64,
    /// Valid records handed to the workers; `succeeded` + `failed` tell how
    /// many have their outcome.
    #[serde(default)]
    pub records_enqueued: u64,
    /// Batches submitted by upload: the file's format, size and deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadInfo>,
    /// Why the whole batch failed, when it failed as a whole (e.g. an
    /// unreadable upload); record failures are listed under `/failures`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<BatchError>,
    /// Chunks the valid records were split into, and how many are done.
    #[serde(skip)]
    pub chunks_total: u64,
    #[serde(skip)]
    pub chunks_done: u64,
}

/// Format of an uploaded batch file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UploadFormat {
    /// One JSON record per line (the inline record shape, without `id`).
    Ndjson,
    /// A header row naming the columns, then one record per row.
    Csv,
}

impl UploadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
        }
    }
}

/// The upload of a batch submitted with `upload: true`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadInfo {
    pub format: UploadFormat,
    /// The size the client declared; the file must have exactly this size.
    pub size_bytes: u64,
    /// The upload URL stops working at this time; a file that has not
    /// arrived some time after it fails the batch (`upload_expired`).
    pub url_expires_at: String,
    /// A batch whose file has not arrived by this time fails.
    pub expires_at: String,
}

/// Why a batch failed as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchError {
    /// `upload_expired`, `upload_size_mismatch`, `upload_too_large`,
    /// `invalid_upload`, `too_many_records`, `invalid_records` (atomic),
    /// `upload_unprocessable`.
    #[schema(example = "invalid_upload")]
    pub code: String,
    pub message: String,
}

impl BatchError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// One SQS message: a chunk of a batch's valid records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMessage {
    pub v: u8,
    pub tenant_id: String,
    pub batch_id: String,
    pub mode: BatchMode,
    pub chunk: u32,
    pub request_id: String,
    pub records: Vec<BatchRecord>,
}

/// What a record does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RecordOp {
    /// Create or replace the item, with an absolute quantity (a stock count).
    Upsert {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        quantity: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        low_stock_threshold: Option<i64>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        attributes: BTreeMap<String, String>,
    },
    Adjust {
        delta: i64,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    Delete,
    /// A physical count at a location (`POST /v1/counts`).
    Count {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
        on_hand: i64,
        occurred_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// Stock moved between two locations (`POST /v1/transfers`).
    Transfer {
        from: String,
        to: String,
        quantity: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// A hold on units at a location (`POST /v1/reservations`).
    Reserve {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
        quantity: i64,
        expires_in: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
}

impl RecordOp {
    /// A count, transfer or hold: applied by its own use case (with its
    /// levels, tallies and holds), not as a write of the item.
    pub fn is_level(&self) -> bool {
        matches!(
            self,
            Self::Count { .. } | Self::Transfer { .. } | Self::Reserve { .. }
        )
    }
}

/// A valid record, as carried in a chunk message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// Position in the submitted batch (0-based).
    #[serde(rename = "i")]
    pub index: u32,
    pub id: String,
    pub sku: String,
    #[serde(flatten)]
    pub op: RecordOp,
}

/// A record that failed, with an actionable business code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordFailure {
    #[serde(skip)]
    pub index: u32,
    pub record_id: String,
    pub sku: Option<String>,
    /// `invalid_record`, `item_not_found`, `insufficient_stock`, `quantity_overflow`,
    /// `atomic_batch_aborted`, `chunk_dead_lettered`.
    pub code: String,
    pub message: String,
}

impl RecordFailure {
    pub fn new(
        index: u32,
        record_id: &str,
        sku: Option<&str>,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            index,
            record_id: record_id.to_owned(),
            sku: sku.map(str::to_owned),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Names of the fields a record failure has (for `?fields=`).
pub const FAILURE_FIELDS: &[&str] = &["record_id", "sku", "code", "message"];

impl super::Selectable for RecordFailure {
    const FIELDS: &'static [&'static str] = FAILURE_FIELDS;
}

/// Why a whole batch request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchRejection {
    /// The body's shape is wrong (400): not an object, records not an array,
    /// records that are not objects, unknown or missing `op`.
    Malformed(FieldErrors),
    /// 422: bad mode, no records, bad or duplicate record ids.
    Invalid(FieldErrors),
    /// 422 in atomic mode: every invalid record with its reason.
    InvalidRecords(Vec<RecordFailure>),
    /// 413/422: more records than the mode allows.
    TooManyRecords { limit: usize },
    /// 413: the declared upload is larger than an upload may be.
    UploadTooLarge { limit: u64 },
}

/// A parsed batch request: the valid records and, in isolated mode, the
/// records that already failed validation.
#[derive(Debug, PartialEq, Eq)]
pub struct BatchRequest {
    pub mode: BatchMode,
    pub total: usize,
    pub valid: Vec<BatchRecord>,
    pub invalid: Vec<RecordFailure>,
}

pub const OPS: &[&str] = &["upsert", "adjust", "delete", "count", "transfer", "reserve"];

/// The ops, as an error message lists them.
pub fn ops_listed() -> String {
    let (last, rest) = OPS.split_last().unwrap_or((&"", &[]));
    format!("{} or {last}", rest.join(", "))
}

/// The body of a batch request, which must be a JSON object.
pub(crate) fn request_object(
    body: &Value,
) -> Result<&serde_json::Map<String, Value>, BatchRejection> {
    body.as_object().ok_or_else(|| {
        let mut e = FieldErrors::default();
        e.push("$", "the request body must be a JSON object");
        BatchRejection::Malformed(e)
    })
}

/// The request's `mode`, or an error recorded for it.
pub(crate) fn parse_mode(
    obj: &serde_json::Map<String, Value>,
    errors: &mut FieldErrors,
) -> Option<BatchMode> {
    match obj.get("mode").and_then(Value::as_str) {
        Some("isolated") => Some(BatchMode::Isolated),
        Some("atomic") => Some(BatchMode::Atomic),
        _ => {
            errors.push("mode", "must be \"isolated\" or \"atomic\"");
            None
        }
    }
}

pub fn parse_batch(body: &Value) -> Result<BatchRequest, BatchRejection> {
    let obj = request_object(body)?;
    let mut errors = FieldErrors::default();
    for k in obj.keys() {
        if !["mode", "records"].contains(&k.as_str()) {
            errors.push(k.clone(), "unknown field");
        }
    }
    let mode = parse_mode(obj, &mut errors);
    let Some(records) = obj.get("records").and_then(Value::as_array) else {
        let mut e = FieldErrors::default();
        e.push("records", "must be an array of records");
        return Err(BatchRejection::Malformed(e));
    };
    if records.is_empty() {
        errors.push("records", "must contain at least one record");
    }
    let limit = match mode {
        Some(BatchMode::Atomic) => MAX_ATOMIC_RECORDS,
        _ => MAX_BATCH_RECORDS,
    };
    if records.len() > limit {
        return Err(BatchRejection::TooManyRecords { limit });
    }
    // Shape problems first: a record without a usable id or op cannot even be reported.
    let mut malformed = FieldErrors::default();
    let mut seen = HashSet::new();
    let mut duplicates = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        let Some(r) = rec.as_object() else {
            malformed.push(format!("records[{i}]"), "must be an object");
            continue;
        };
        match r.get("op").and_then(Value::as_str) {
            Some(op) if OPS.contains(&op) => {}
            Some(op) => malformed.push(
                format!("records[{i}].op"),
                format!("unknown op {op:?}; expected {}", ops_listed()),
            ),
            None => malformed.push(
                format!("records[{i}].op"),
                format!("is required ({})", ops_listed()),
            ),
        }
        match r.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() && id.chars().count() <= MAX_RECORD_ID => {
                if !seen.insert(id) {
                    duplicates.push(id.to_owned());
                }
            }
            _ => errors.push(
                format!("records[{i}].id"),
                format!("must be a string of 1 to {MAX_RECORD_ID} characters"),
            ),
        }
    }
    if !malformed.is_empty() {
        return Err(BatchRejection::Malformed(malformed));
    }
    if !duplicates.is_empty() {
        duplicates.sort();
        duplicates.dedup();
        for d in duplicates {
            errors.push("records", format!("duplicate record id {d:?}"));
        }
    }
    let (Some(mode), true) = (mode, errors.is_empty()) else {
        return Err(BatchRejection::Invalid(errors));
    };
    let mut valid = Vec::with_capacity(records.len());
    let mut invalid = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        match parse_record(i as u32, rec) {
            Ok(r) => valid.push(r),
            Err(f) => invalid.push(f),
        }
    }
    if mode == BatchMode::Atomic && !invalid.is_empty() {
        return Err(BatchRejection::InvalidRecords(invalid));
    }
    Ok(BatchRequest {
        mode,
        total: records.len(),
        valid,
        invalid,
    })
}

/// Most actions one DynamoDB transaction may take.
pub const MAX_TRANSACTION_ACTIONS: usize = 100;

/// The most writes an atomic batch's one transaction can need, whatever
/// the records find: each item once; each level a count, transfer or hold
/// names once, and, away from the default location, the tally shard of its
/// location (it may start or stop holding stock); a hold's reservation and
/// active-hold records; and the header's claim.
pub fn atomic_actions(records: &[BatchRecord]) -> usize {
    let mut skus = HashSet::new();
    let mut levels = HashSet::new();
    let mut holds = 0;
    for rec in records {
        skus.insert(rec.sku.as_str());
        let at = |l: &Option<String>| l.clone().unwrap_or_else(|| "default".to_owned());
        match &rec.op {
            RecordOp::Count { location, .. } => {
                levels.insert((rec.sku.as_str(), at(location)));
            }
            RecordOp::Transfer { from, to, .. } => {
                levels.insert((rec.sku.as_str(), from.clone()));
                levels.insert((rec.sku.as_str(), to.clone()));
            }
            RecordOp::Reserve { location, .. } => {
                levels.insert((rec.sku.as_str(), at(location)));
                holds += 1;
            }
            _ => {}
        }
    }
    let elsewhere = levels.iter().filter(|(_, l)| l != "default").count();
    skus.len() + levels.len() + elsewhere + 2 * holds + 1
}

/// Validates one record whose `id` and `op` are known to be well formed.
pub(crate) fn parse_record(index: u32, rec: &Value) -> Result<BatchRecord, RecordFailure> {
    let id = rec["id"].as_str().unwrap_or_default().to_owned();
    let op = rec["op"].as_str().unwrap_or_default();
    let raw_sku = rec.get("sku").and_then(Value::as_str);
    let fail = |errors: FieldErrors| {
        RecordFailure::new(index, &id, raw_sku, "invalid_record", errors.summary())
    };
    let mut r = ObjectReader::new(rec).map_err(fail)?;
    let sku = r
        .string("sku", true, Sku::MAX_LEN + 1)
        .and_then(|s| Sku::parse(&s).map_err(|m| r.errors.push("sku", m)).ok());
    let op = match op {
        "upsert" => {
            r.deny_unknown(&[
                "id",
                "op",
                "sku",
                "name",
                "description",
                "quantity",
                "low_stock_threshold",
                "attributes",
            ]);
            let name = r.string("name", true, MAX_NAME);
            let description = r.string("description", false, MAX_DESCRIPTION);
            let quantity = r.int("quantity", true, 0, MAX_QUANTITY);
            let low_stock_threshold = r.int("low_stock_threshold", false, 0, MAX_QUANTITY);
            let attributes = r.string_map("attributes");
            match (name, quantity) {
                (Some(name), Some(quantity)) => Some(RecordOp::Upsert {
                    name,
                    description,
                    quantity,
                    low_stock_threshold,
                    attributes,
                }),
                _ => None,
            }
        }
        "adjust" => {
            r.deny_unknown(&["id", "op", "sku", "delta", "reason", "reference"]);
            let delta = r.int("delta", true, -MAX_QUANTITY, MAX_QUANTITY);
            if delta == Some(0) {
                r.errors.push("delta", "must not be zero");
            }
            let reason = r.string("reason", true, super::movement::MAX_REASON);
            let reference = r.string("reference", false, super::movement::MAX_REFERENCE);
            match (delta, reason) {
                (Some(delta), Some(reason)) => Some(RecordOp::Adjust {
                    delta,
                    reason,
                    reference,
                }),
                _ => None,
            }
        }
        "count" => {
            r.deny_unknown(&[
                "id",
                "op",
                "sku",
                "location",
                "on_hand",
                "occurred_at",
                "reference",
            ]);
            let location = r.string("location", false, 256);
            let on_hand = r.int("on_hand", true, 0, MAX_QUANTITY);
            let occurred_at = r.string("occurred_at", true, 64);
            let reference = r.string("reference", false, super::movement::MAX_REFERENCE);
            match (on_hand, occurred_at) {
                (Some(on_hand), Some(occurred_at)) => Some(RecordOp::Count {
                    location,
                    on_hand,
                    occurred_at,
                    reference,
                }),
                _ => None,
            }
        }
        "transfer" => {
            r.deny_unknown(&["id", "op", "sku", "from", "to", "quantity", "reference"]);
            let from = r.string("from", true, 256);
            let to = r.string("to", true, 256);
            let quantity = r.int("quantity", true, 1, MAX_QUANTITY);
            let reference = r.string("reference", false, super::movement::MAX_REFERENCE);
            match (from, to, quantity) {
                (Some(from), Some(to), Some(quantity)) => Some(RecordOp::Transfer {
                    from,
                    to,
                    quantity,
                    reference,
                }),
                _ => None,
            }
        }
        "reserve" => {
            r.deny_unknown(&[
                "id",
                "op",
                "sku",
                "location",
                "quantity",
                "expires_in",
                "reference",
            ]);
            let location = r.string("location", false, 256);
            let quantity = r.int("quantity", true, 1, MAX_QUANTITY);
            let expires_in = r.int(
                "expires_in",
                true,
                super::reservation::MIN_EXPIRES_IN,
                super::reservation::MAX_EXPIRES_IN,
            );
            let reference = r.string("reference", false, super::movement::MAX_REFERENCE);
            match (quantity, expires_in) {
                (Some(quantity), Some(expires_in)) => Some(RecordOp::Reserve {
                    location,
                    quantity,
                    expires_in,
                    reference,
                }),
                _ => None,
            }
        }
        _ => {
            r.deny_unknown(&["id", "op", "sku"]);
            Some(RecordOp::Delete)
        }
    };
    // A count, transfer or hold is validated by its own request's rules
    // too (location ids, dates), so a record fails here exactly as the
    // request would (the count's "not in the future" is judged when it is
    // applied: this has no clock).
    let op = match (op, &sku) {
        (Some(op), Some(sku)) if op.is_level() && r.errors.is_empty() => {
            let record = BatchRecord {
                index,
                id: id.clone(),
                sku: sku.as_str().to_owned(),
                op,
            };
            match record.level_request(u64::MAX) {
                Ok(_) => Some(record.op),
                Err(errors) => return Err(fail(errors)),
            }
        }
        (op, _) => op,
    };
    match (sku, op) {
        (Some(sku), Some(op)) if r.errors.is_empty() => Ok(BatchRecord {
            index,
            id,
            sku: sku.as_str().to_owned(),
            op,
        }),
        _ => Err(fail(r.errors)),
    }
}

/// The effect of one record on one item, decided from the item's current state.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordEffect {
    /// Write this item (new or replaced); `delta` is the quantity change (a movement when non-zero).
    Put {
        item: Item,
        delta: i64,
        created: bool,
    },
    /// Delete the item; `delta` is minus its quantity.
    Delete {
        delta: i64,
    },
    Fail {
        code: &'static str,
        message: String,
    },
    /// A count, transfer or hold, applied by its own use case's
    /// transaction: only the record's outcome is left to commit.
    Recorded,
}

/// A record on a split sku's stock: its units are in buckets that only
/// real-time orders take from (`stock_split`); a batch writes the sku again
/// once it is merged back.
pub fn stock_split_refusal(buckets: u16) -> (&'static str, String) {
    (
        "stock_split",
        format!(
            "the sku's stock is split into {buckets} buckets for concurrent orders: merge it back (DELETE /v1/items/{{sku}}/stock-split) before a batch changes it"
        ),
    )
}

impl BatchRecord {
    /// What this record does to `current` (None: the item does not exist),
    /// of which `held` units are held by reservations at the default
    /// location: a record may not take on hand below them.
    pub fn effect(&self, current: Option<&Item>, held: i64, now: &str) -> RecordEffect {
        if let Some(buckets) = current.and_then(|c| c.stock_buckets) {
            let (code, message) = stock_split_refusal(buckets);
            return RecordEffect::Fail { code, message };
        }
        if let Some(fail) = self.breaks_holds(current, held) {
            return fail;
        }
        match (&self.op, current) {
            (
                RecordOp::Upsert {
                    name,
                    description,
                    quantity,
                    low_stock_threshold,
                    attributes,
                },
                current,
            ) => {
                let fields = ItemFields {
                    name: name.clone(),
                    description: description.clone(),
                    low_stock_threshold: *low_stock_threshold,
                    attributes: attributes.clone(),
                };
                match current {
                    Some(cur) => RecordEffect::Put {
                        item: Item {
                            name: fields.name,
                            description: fields.description,
                            low_stock_threshold: fields.low_stock_threshold,
                            attributes: fields.attributes,
                            quantity: *quantity,
                            version: cur.version + 1,
                            updated_at: now.to_owned(),
                            ..cur.clone()
                        },
                        delta: quantity - cur.quantity,
                        created: false,
                    },
                    None => {
                        let sku = Sku::parse(&self.sku)
                            .unwrap_or_else(|_| unreachable!("validated at parse"));
                        RecordEffect::Put {
                            item: Item::new(
                                super::NewItem {
                                    sku,
                                    fields,
                                    quantity: *quantity,
                                },
                                now,
                            ),
                            delta: *quantity,
                            created: true,
                        }
                    }
                }
            }
            (RecordOp::Count { .. } | RecordOp::Transfer { .. } | RecordOp::Reserve { .. }, _) => {
                RecordEffect::Fail {
                    code: "invalid_record",
                    message: format!(
                        "op: {} records change levels, not the item alone",
                        self.op_name()
                    ),
                }
            }
            (RecordOp::Adjust { .. }, None) | (RecordOp::Delete, None) => RecordEffect::Fail {
                code: "item_not_found",
                message: format!("no item with sku {}", self.sku),
            },
            (RecordOp::Adjust { delta, .. }, Some(cur)) => {
                match apply_delta(cur.quantity, *delta) {
                    StockCheck::Ok(q) => RecordEffect::Put {
                        item: Item {
                            quantity: q,
                            version: cur.version + 1,
                            updated_at: now.to_owned(),
                            ..cur.clone()
                        },
                        delta: *delta,
                        created: false,
                    },
                    StockCheck::Insufficient { available } => RecordEffect::Fail {
                        code: "insufficient_stock",
                        message: format!(
                            "adjusting by {delta} would take the quantity below zero: {available} available"
                        ),
                    },
                    StockCheck::Overflow => RecordEffect::Fail {
                        code: "quantity_overflow",
                        message: format!("the quantity would exceed {MAX_QUANTITY}"),
                    },
                }
            }
            (RecordOp::Delete, Some(cur)) => RecordEffect::Delete {
                delta: -cur.quantity,
            },
        }
    }

    /// A write that would leave on hand below the units held: refused,
    /// since `available` is never negative.
    fn breaks_holds(&self, current: Option<&Item>, held: i64) -> Option<RecordEffect> {
        let cur = current?;
        if held <= 0 {
            return None;
        }
        let available = cur.quantity - held;
        match &self.op {
            RecordOp::Adjust { delta, .. } if *delta < 0 && cur.quantity + delta < held => {
                Some(RecordEffect::Fail {
                    code: "insufficient_available",
                    message: format!(
                        "adjusting by {delta} would take on hand below the {held} units held by reservations: {available} available"
                    ),
                })
            }
            RecordOp::Upsert { quantity, .. } if *quantity < held => Some(RecordEffect::Fail {
                code: "count_below_reserved",
                message: format!(
                    "quantity {quantity} is below the {held} units held by reservations: commit or release them first"
                ),
            }),
            RecordOp::Delete => Some(RecordEffect::Fail {
                code: "item_reserved",
                message: format!(
                    "{held} units of the item are held by reservations: commit or release them first"
                ),
            }),
            _ => None,
        }
    }

    pub fn op_name(&self) -> &'static str {
        match self.op {
            RecordOp::Upsert { .. } => "upsert",
            RecordOp::Adjust { .. } => "adjust",
            RecordOp::Delete => "delete",
            RecordOp::Count { .. } => "count",
            RecordOp::Transfer { .. } => "transfer",
            RecordOp::Reserve { .. } => "reserve",
        }
    }

    /// Reason and reference of the movement this record produces.
    pub fn movement_reason(&self) -> (&str, Option<String>) {
        match &self.op {
            RecordOp::Upsert { .. } => ("stock_count", None),
            RecordOp::Adjust {
                reason, reference, ..
            } => (reason, reference.clone()),
            RecordOp::Delete => ("item_deleted", None),
            RecordOp::Count { reference, .. }
            | RecordOp::Transfer { reference, .. }
            | RecordOp::Reserve { reference, .. } => (self.op_name(), reference.clone()),
        }
    }

    /// A count, transfer or hold as the request its route takes, validated
    /// by that request's own rules (`now_ms`: a count may not be dated in
    /// the future). `None` for the item records.
    pub fn level_request(&self, now_ms: u64) -> Result<Option<LevelRequest>, FieldErrors> {
        let mut body = match serde_json::to_value(self) {
            Ok(Value::Object(body)) => body,
            _ => return Ok(None),
        };
        for k in ["i", "id", "op"] {
            body.remove(k);
        }
        let body = Value::Object(body);
        Ok(Some(match self.op {
            RecordOp::Count { .. } => {
                LevelRequest::Count(super::count::NewCount::from_json(&body, now_ms)?)
            }
            RecordOp::Transfer { .. } => {
                LevelRequest::Transfer(super::transfer::NewTransfer::from_json(&body)?)
            }
            RecordOp::Reserve { .. } => {
                LevelRequest::Reserve(super::reservation::NewReservation::from_json(&body)?)
            }
            _ => return Ok(None),
        }))
    }
}

/// A batch record that is a count, transfer or hold, as its route's request.
#[derive(Debug)]
pub enum LevelRequest {
    Count(super::count::NewCount),
    Transfer(super::transfer::NewTransfer),
    Reserve(super::reservation::NewReservation),
}

/// `[` and `]` of a chunk's JSON array, less the comma the last record does
/// not need (each record is counted with one).
const ARRAY_OVERHEAD: usize = 1;

/// Groups records into chunks as they come: each chunk's JSON stays under
/// `max_bytes` and holds at most `max_records` (a single record larger than
/// `max_bytes` gets a chunk of its own). See the README for how the size is
/// chosen.
pub struct Chunker {
    max_bytes: usize,
    max_records: usize,
    current: Vec<BatchRecord>,
    size: usize,
}

impl Chunker {
    pub fn new(max_bytes: usize, max_records: usize) -> Self {
        Self {
            max_bytes,
            max_records,
            current: Vec::new(),
            size: ARRAY_OVERHEAD,
        }
    }

    /// Adds a record; returns the chunk it closed, if any.
    pub fn push(&mut self, rec: BatchRecord) -> Option<Vec<BatchRecord>> {
        let len = serde_json::to_vec(&rec).map(|v| v.len() + 1).unwrap_or(512);
        let full = !self.current.is_empty()
            && (self.size + len > self.max_bytes || self.current.len() >= self.max_records);
        let closed = full.then(|| {
            self.size = ARRAY_OVERHEAD;
            std::mem::take(&mut self.current)
        });
        self.size += len;
        self.current.push(rec);
        closed
    }

    /// The last, partly filled chunk.
    pub fn finish(self) -> Option<Vec<BatchRecord>> {
        (!self.current.is_empty()).then_some(self.current)
    }
}

/// Splits records into chunks (see [`Chunker`]).
pub fn chunk_records(
    records: Vec<BatchRecord>,
    max_bytes: usize,
    max_records: usize,
) -> Vec<Vec<BatchRecord>> {
    let mut chunker = Chunker::new(max_bytes, max_records);
    let mut chunks: Vec<_> = records
        .into_iter()
        .filter_map(|r| chunker.push(r))
        .collect();
    chunks.extend(chunker.finish());
    chunks
}

/// Largest JSON of an atomic batch's records: they travel in one SQS
/// message (256 KiB with its envelope and attributes).
pub const MAX_ATOMIC_CHUNK_BYTES: usize = 200 * 1024;

/// An atomic batch is applied from one message and one transaction: all
/// its records in one chunk, refused if they do not fit either.
pub fn atomic_chunk(records: Vec<BatchRecord>) -> Result<Vec<BatchRecord>, FieldErrors> {
    let bytes = serde_json::to_vec(&records)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if bytes > MAX_ATOMIC_CHUNK_BYTES {
        let mut e = FieldErrors::default();
        e.push(
            "records",
            format!(
                "an atomic batch's records must fit in {} KiB once validated; these take {} KiB: split the batch or use isolated mode",
                MAX_ATOMIC_CHUNK_BYTES / 1024,
                bytes.div_ceil(1024)
            ),
        );
        return Err(e);
    }
    let actions = atomic_actions(&records);
    if actions > MAX_TRANSACTION_ACTIONS {
        let mut e = FieldErrors::default();
        e.push(
            "records",
            format!(
                "an atomic batch is one transaction of at most {MAX_TRANSACTION_ACTIONS} writes; these records may need {actions} (one per item, one per level a count, transfer or hold names and one more for each away from the default location, two per hold, one for the batch): split the batch or use isolated mode"
            ),
        );
        return Err(e);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(records: Value) -> Value {
        json!({"mode": "isolated", "records": records})
    }

    #[test]
    fn batch_and_failure_fields_name_every_field_of_their_representations() {
        crate::fields::assert_names_every_field(&Batch {
            batch_id: "b_1".into(),
            mode: BatchMode::Isolated,
            status: BatchStatus::Failed,
            total: 1,
            succeeded: 0,
            failed: 1,
            created_at: "t".into(),
            updated_at: "t".into(),
            completed_at: Some("t".into()),
            request_id: "r".into(),
            records_read: 1,
            records_enqueued: 0,
            upload: Some(UploadInfo {
                format: UploadFormat::Csv,
                size_bytes: 1,
                url_expires_at: "t".into(),
                expires_at: "t".into(),
            }),
            error: Some(BatchError::new("invalid_upload", "no rows")),
            chunks_total: 0,
            chunks_done: 0,
        });
        crate::fields::assert_names_every_field(&RecordFailure::new(
            0,
            "row-1",
            Some("A"),
            "item_not_found",
            "no item",
        ));
    }

    #[test]
    fn parses_every_op() {
        let req = parse_batch(&batch(json!([
            {"id": "1", "op": "upsert", "sku": "A", "name": "Mug", "quantity": 5},
            {"id": "2", "op": "adjust", "sku": "A", "delta": -2, "reason": "sale"},
            {"id": "3", "op": "delete", "sku": "B"},
        ])))
        .unwrap();
        assert_eq!(req.total, 3);
        assert_eq!(req.valid.len(), 3);
        assert!(req.invalid.is_empty());
        assert_eq!(req.valid[1].index, 1);
    }

    #[test]
    fn isolated_mode_reports_invalid_records_without_rejecting() {
        let req = parse_batch(&batch(json!([
            {"id": "ok", "op": "delete", "sku": "A"},
            {"id": "bad-sku", "op": "delete", "sku": "a b"},
            {"id": "zero", "op": "adjust", "sku": "A", "delta": 0, "reason": "x"},
            {"id": "missing", "op": "upsert", "sku": "A", "name": "x"},
        ])))
        .unwrap();
        assert_eq!(req.valid.len(), 1);
        let codes: Vec<_> = req
            .invalid
            .iter()
            .map(|f| (f.record_id.as_str(), f.code.as_str()))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("bad-sku", "invalid_record"),
                ("zero", "invalid_record"),
                ("missing", "invalid_record")
            ]
        );
        assert!(req.invalid[2].message.contains("quantity"));
    }

    #[test]
    fn atomic_mode_rejects_any_invalid_record() {
        let err = parse_batch(&json!({"mode": "atomic", "records": [
            {"id": "1", "op": "delete", "sku": "A"},
            {"id": "2", "op": "adjust", "sku": "A", "delta": 0, "reason": "x"},
        ]}))
        .unwrap_err();
        let BatchRejection::InvalidRecords(f) = err else {
            panic!("{err:?}")
        };
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].record_id, "2");
    }

    #[test]
    fn shape_errors_reject_the_batch() {
        assert!(matches!(
            parse_batch(&json!([1])),
            Err(BatchRejection::Malformed(_))
        ));
        assert!(matches!(
            parse_batch(&json!({"mode": "isolated"})),
            Err(BatchRejection::Malformed(_))
        ));
        assert!(matches!(
            parse_batch(&batch(json!([{"id": "1", "op": "explode", "sku": "A"}]))),
            Err(BatchRejection::Malformed(_))
        ));
        assert!(matches!(
            parse_batch(&batch(json!([]))),
            Err(BatchRejection::Invalid(_))
        ));
        assert!(matches!(
            parse_batch(
                &json!({"mode": "sometimes", "records": [{"id": "1", "op": "delete", "sku": "A"}]})
            ),
            Err(BatchRejection::Invalid(_))
        ));
        let dup = parse_batch(&batch(json!([
            {"id": "1", "op": "delete", "sku": "A"}, {"id": "1", "op": "delete", "sku": "B"}
        ])));
        let Err(BatchRejection::Invalid(e)) = dup else {
            panic!()
        };
        assert!(e.0[0].message.contains("duplicate"));
    }

    #[test]
    fn atomic_batches_are_bounded() {
        let records: Vec<Value> = (0..=MAX_ATOMIC_RECORDS)
            .map(|i| json!({"id": i.to_string(), "op": "delete", "sku": "A"}))
            .collect();
        let err = parse_batch(&json!({"mode": "atomic", "records": records})).unwrap_err();
        assert_eq!(
            err,
            BatchRejection::TooManyRecords {
                limit: MAX_ATOMIC_RECORDS
            }
        );
    }

    #[test]
    fn effects_follow_the_stock_rules() {
        let item = Item::new(
            super::super::NewItem::from_json(&json!({"sku": "A", "name": "x", "quantity": 3}))
                .unwrap(),
            "t0",
        );
        let rec = |op: Value| parse_batch(&batch(json!([op]))).unwrap().valid.remove(0);
        let adjust =
            rec(json!({"id": "1", "op": "adjust", "sku": "A", "delta": -4, "reason": "sale"}));
        assert!(matches!(
            adjust.effect(Some(&item), 0, "t1"),
            RecordEffect::Fail {
                code: "insufficient_stock",
                ..
            }
        ));
        assert!(matches!(
            adjust.effect(None, 0, "t1"),
            RecordEffect::Fail {
                code: "item_not_found",
                ..
            }
        ));
        let count =
            rec(json!({"id": "2", "op": "upsert", "sku": "A", "name": "y", "quantity": 10}));
        let RecordEffect::Put {
            item: next,
            delta,
            created,
        } = count.effect(Some(&item), 0, "t1")
        else {
            panic!()
        };
        assert_eq!(
            (next.quantity, delta, created, next.version),
            (10, 7, false, 2)
        );
        let RecordEffect::Put { delta, created, .. } = count.effect(None, 0, "t1") else {
            panic!()
        };
        assert_eq!((delta, created), (10, true));
        let del = rec(json!({"id": "3", "op": "delete", "sku": "A"}));
        assert_eq!(
            del.effect(Some(&item), 0, "t1"),
            RecordEffect::Delete { delta: -3 }
        );
    }

    #[test]
    fn chunks_respect_bytes_and_counts() {
        let records: Vec<BatchRecord> = (0..1000)
            .map(|i| BatchRecord {
                index: i,
                id: format!("r{i}"),
                sku: format!("SKU-{i}"),
                op: RecordOp::Delete,
            })
            .collect();
        let chunks = chunk_records(records.clone(), 4096, 10_000);
        assert!(chunks.len() > 1);
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 1000);
        for c in &chunks {
            assert!(serde_json::to_vec(c).unwrap().len() <= 4096);
        }
        assert_eq!(chunk_records(records, 1 << 20, 100).len(), 10);
    }

    #[test]
    fn counts_transfers_and_holds_follow_their_routes_rules_in_isolated_batches_only() {
        let records = json!([
            {"id": "c", "op": "count", "sku": "A", "location": "paris-1", "on_hand": 4,
                "occurred_at": "2026-12-04T07:00:00Z"},
            {"id": "t", "op": "transfer", "sku": "A", "from": "default", "to": "paris-1", "quantity": 2},
            {"id": "r", "op": "reserve", "sku": "A", "quantity": 1, "expires_in": 60},
            {"id": "bad-date", "op": "count", "sku": "A", "on_hand": 4, "occurred_at": "yesterday"},
            {"id": "same", "op": "transfer", "sku": "A", "from": "x", "to": "x", "quantity": 2},
            {"id": "forever", "op": "reserve", "sku": "A", "quantity": 1, "expires_in": 99_999_999},
            {"id": "extra", "op": "count", "sku": "A", "on_hand": 1,
                "occurred_at": "2026-12-04T07:00:00Z", "delta": 3},
        ]);
        let parsed = parse_batch(&batch(records.clone())).unwrap();
        let ops: Vec<&str> = parsed.valid.iter().map(BatchRecord::op_name).collect();
        assert_eq!(ops, ["count", "transfer", "reserve"]);
        let invalid: Vec<(&str, bool)> = parsed
            .invalid
            .iter()
            .map(|f| (f.record_id.as_str(), f.code == "invalid_record"))
            .collect();
        assert_eq!(
            invalid,
            [
                ("bad-date", true),
                ("same", true),
                ("forever", true),
                ("extra", true)
            ]
        );
        assert!(parsed.invalid[0].message.contains("occurred_at"));
        assert!(parsed.invalid[1].message.contains("to"));
        // The request its route takes, judged with the clock: not in the future.
        let count = &parsed.valid[0];
        assert!(matches!(
            count.level_request(1_764_840_000_000),
            Err(e) if e.summary().contains("future")
        ));
        assert!(matches!(
            count.level_request(u64::MAX / 2),
            Ok(Some(LevelRequest::Count(_)))
        ));
        // An atomic batch takes them while its one transaction can hold
        // what they may write.
        let transfer = |i: usize| json!({"id": format!("t{i}"), "op": "transfer", "sku": format!("S{i}"), "from": "a", "to": "b", "quantity": 1});
        let fits: Vec<Value> = (0..19).map(transfer).collect();
        let parsed = parse_batch(&json!({"mode": "atomic", "records": fits})).unwrap();
        assert_eq!(atomic_actions(&parsed.valid), 19 * 5 + 1);
        assert!(atomic_chunk(parsed.valid).is_ok());
        let atomic = |records: Vec<Value>| {
            atomic_chunk(
                parse_batch(&json!({"mode": "atomic", "records": records}))
                    .unwrap()
                    .valid,
            )
        };
        let errors = atomic((0..20).map(transfer).collect()).unwrap_err();
        assert!(
            errors.summary().contains("at most 100 writes"),
            "{}",
            errors.summary()
        );
        // Each hold takes two writes of its own.
        let holds: Vec<Value> = (0..99)
            .map(|i| json!({"id": format!("r{i}"), "op": "reserve", "sku": "S", "quantity": 1, "expires_in": 60}))
            .collect();
        assert!(atomic(holds).is_err());
        // Records of one sku and level share their writes.
        let same: Vec<Value> = (0..40)
            .map(|i| json!({"id": format!("r{i}"), "op": "count", "sku": "S", "on_hand": i, "occurred_at": "2026-01-01T00:00:00Z"}))
            .collect();
        let parsed = parse_batch(&json!({"mode": "atomic", "records": same})).unwrap();
        assert_eq!(atomic_actions(&parsed.valid), 3);
    }

    #[test]
    fn a_record_may_not_take_on_hand_below_what_reservations_hold() {
        let item = Item::new(
            super::super::NewItem::from_json(&json!({"sku": "A", "name": "x", "quantity": 10}))
                .unwrap(),
            "t0",
        );
        let rec = |op: Value| parse_batch(&batch(json!([op]))).unwrap().valid.remove(0);
        let code = |effect: RecordEffect| match effect {
            RecordEffect::Fail { code, .. } => code,
            RecordEffect::Put { .. } => "put",
            RecordEffect::Delete { .. } => "delete",
            RecordEffect::Recorded => "recorded",
        };
        let sale = |delta: i64| {
            rec(json!({"id": "1", "op": "adjust", "sku": "A", "delta": delta, "reason": "sale"}))
        };
        // 10 on hand, 6 held: 4 available.
        assert_eq!(code(sale(-4).effect(Some(&item), 6, "t1")), "put");
        assert_eq!(
            code(sale(-5).effect(Some(&item), 6, "t1")),
            "insufficient_available"
        );
        // Receiving stock is never refused for the holds.
        assert_eq!(code(sale(5).effect(Some(&item), 6, "t1")), "put");
        let upsert = |q: i64| {
            rec(json!({"id": "1", "op": "upsert", "sku": "A", "name": "x", "quantity": q}))
        };
        assert_eq!(code(upsert(6).effect(Some(&item), 6, "t1")), "put");
        assert_eq!(
            code(upsert(5).effect(Some(&item), 6, "t1")),
            "count_below_reserved"
        );
        let delete = rec(json!({"id": "1", "op": "delete", "sku": "A"}));
        assert_eq!(code(delete.effect(Some(&item), 1, "t1")), "item_reserved");
        assert_eq!(code(delete.effect(Some(&item), 0, "t1")), "delete");
    }
}
