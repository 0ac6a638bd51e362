//! Batches submitted as a file: the upload request, and how one row of an
//! NDJSON or CSV file becomes a batch record. Reading the file (streaming,
//! bounded memory) is `stockroom::uploads`; this module sees one row at a time.
//!
//! A row's record id is its row number (1-based; in a CSV file the header is
//! row 1), so failures point at the line a person would open the file at.

use super::TenantId;
use super::batch::UploadFormat;
use super::batch::{
    BatchMode, BatchRecord, BatchRejection, RecordFailure, parse_mode, parse_record, request_object,
};
use super::validation::FieldErrors;
use serde_json::{Map, Value};

/// Largest file accepted (S3 takes up to 5 GiB in one PUT; this bounds the
/// splitter's run to a few minutes).
pub const MAX_UPLOAD_BYTES: u64 = 1024 * 1024 * 1024;
/// Most rows one uploaded batch may hold.
pub const MAX_UPLOAD_ROWS: u64 = 2_000_000;
/// Longest row: a record with every field at its limit fits, and a row is
/// never more than one SQS message.
pub const MAX_ROW_BYTES: usize = 192 * 1024;
/// Most cells a CSV row may have (9 fields and up to 50 attributes fit).
pub const MAX_CSV_FIELDS: usize = 128;

/// `POST /v1/batches` with `upload: true`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRequest {
    pub mode: BatchMode,
    pub format: UploadFormat,
    pub size_bytes: u64,
}

/// Whether a batch request asks for an upload URL instead of carrying records.
pub fn is_upload_request(body: &Value) -> bool {
    body.get("upload").is_some()
}

pub fn parse_upload_request(body: &Value) -> Result<UploadRequest, BatchRejection> {
    let obj = request_object(body)?;
    let mut errors = FieldErrors::default();
    for k in obj.keys() {
        match k.as_str() {
            "mode" | "format" | "upload" | "size_bytes" => {}
            "records" => errors.push(
                "records",
                "an upload batch carries its records in the uploaded file, not in the request",
            ),
            _ => errors.push(k.clone(), "unknown field"),
        }
    }
    if obj.get("upload") != Some(&Value::Bool(true)) {
        errors.push("upload", "must be true (or leave it out and send records)");
    }
    let mode = parse_mode(obj, &mut errors);
    let format = match obj.get("format").and_then(Value::as_str) {
        Some("ndjson") => Some(UploadFormat::Ndjson),
        Some("csv") => Some(UploadFormat::Csv),
        _ => {
            errors.push("format", "must be \"ndjson\" or \"csv\"");
            None
        }
    };
    let size_bytes = match obj
        .get("size_bytes")
        .and_then(crate::validation::integer)
        .and_then(|n| u64::try_from(n).ok())
    {
        Some(n) if (1..=MAX_UPLOAD_BYTES).contains(&n) => Some(n),
        Some(n) if n > MAX_UPLOAD_BYTES => {
            return Err(BatchRejection::UploadTooLarge {
                limit: MAX_UPLOAD_BYTES,
            });
        }
        _ => {
            errors.push(
                "size_bytes",
                format!(
                    "must be the file's exact size in bytes, 1 to {MAX_UPLOAD_BYTES} (the upload URL only accepts that size)"
                ),
            );
            None
        }
    };
    match (mode, format, size_bytes) {
        (Some(mode), Some(format), Some(size_bytes)) if errors.is_empty() => Ok(UploadRequest {
            mode,
            format,
            size_bytes,
        }),
        _ => Err(BatchRejection::Invalid(errors)),
    }
}

/// A row of a file that failed before it became a record.
pub fn invalid_row(row: u32, sku: Option<&str>, message: impl Into<String>) -> RecordFailure {
    RecordFailure::new(row, &row.to_string(), sku, "invalid_record", message)
}

/// Why a row could not even be read as a line or as cells. Every reader of
/// an upload (the splitter, the CLI's `import --inline`) reports it alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnreadableRow {
    /// Longer than `MAX_ROW_BYTES`.
    TooLong,
    /// A CSV row with more than `MAX_CSV_FIELDS` cells.
    TooManyCells,
    NotUtf8,
}

impl UnreadableRow {
    pub fn failure(self, row: u32) -> RecordFailure {
        invalid_row(row, None, format!("the row {self}"))
    }
}

/// The predicate, after "the row" or "the CSV header".
impl std::fmt::Display for UnreadableRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong => write!(f, "is longer than {MAX_ROW_BYTES} bytes"),
            Self::TooManyCells => write!(f, "has more than {MAX_CSV_FIELDS} cells"),
            Self::NotUtf8 => f.write_str("is not valid UTF-8"),
        }
    }
}

/// The checks a row passes before it is a record (a JSON object, no `id`, a
/// known `op`), then its row number as its `id`. What is left (field values,
/// unknown fields) is `parse_record`'s to judge: the CLI's `import --inline`
/// sends this object and lets the API judge the rest.
pub fn row_object(row: u32, value: Value) -> Result<Map<String, Value>, RecordFailure> {
    let Value::Object(mut obj) = value else {
        return Err(invalid_row(row, None, "the row must be a JSON object"));
    };
    let sku = obj.get("sku").and_then(Value::as_str).map(str::to_owned);
    if obj.contains_key("id") {
        return Err(invalid_row(
            row,
            sku.as_deref(),
            "id: rows of an uploaded file are identified by their row number; remove id",
        ));
    }
    match obj.get("op").and_then(Value::as_str) {
        Some(op) if super::batch::OPS.contains(&op) => {}
        Some(op) => {
            return Err(invalid_row(
                row,
                sku.as_deref(),
                format!(
                    "op: unknown op {op:?}; expected {}",
                    super::batch::ops_listed()
                ),
            ));
        }
        None => {
            return Err(invalid_row(
                row,
                sku.as_deref(),
                format!("op: is required ({})", super::batch::ops_listed()),
            ));
        }
    }
    obj.insert("id".into(), Value::String(row.to_string()));
    Ok(obj)
}

/// Validates a row already parsed into a JSON object (either format).
pub fn parse_row(row: u32, value: Value) -> Result<BatchRecord, RecordFailure> {
    let obj = row_object(row, value)?;
    parse_record(row, &Value::Object(obj))
}

/// One NDJSON line (without its line break) as a row object. `None` for a
/// blank line.
pub fn ndjson_row_object(
    row: u32,
    line: &[u8],
) -> Option<Result<Map<String, Value>, RecordFailure>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    if line.len() > MAX_ROW_BYTES {
        return Some(Err(UnreadableRow::TooLong.failure(row)));
    }
    Some(match serde_json::from_slice::<Value>(line) {
        Ok(v) => row_object(row, v),
        Err(e) => Err(invalid_row(row, None, format!("not a JSON object: {e}"))),
    })
}

/// One NDJSON line (without its line break). `None` for a blank line.
pub fn parse_ndjson_row(row: u32, line: &[u8]) -> Option<Result<BatchRecord, RecordFailure>> {
    ndjson_row_object(row, line)
        .map(|obj| obj.and_then(|obj| parse_record(row, &Value::Object(obj))))
}

/// Columns a CSV file may have, besides `attributes.<key>`.
pub const CSV_COLUMNS: &[&str] = &[
    "op",
    "sku",
    "name",
    "description",
    "quantity",
    "low_stock_threshold",
    "delta",
    "reason",
    "reference",
    "location",
    "on_hand",
    "occurred_at",
    "from",
    "to",
    "expires_in",
];
const CSV_INTEGERS: &[&str] = &[
    "quantity",
    "low_stock_threshold",
    "delta",
    "on_hand",
    "expires_in",
];
const ATTRIBUTE_PREFIX: &str = "attributes.";

enum Column {
    Field(&'static str),
    Attribute(String),
}

/// A CSV file's header row: which column holds which field.
pub struct CsvHeader {
    columns: Vec<Column>,
}

impl CsvHeader {
    /// Refuses unknown, duplicate or missing required columns: the file is
    /// unusable, not some of its rows.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut columns = Vec::with_capacity(names.len());
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, raw) in names.iter().enumerate() {
            let name = raw.as_ref().trim();
            if !seen.insert(name.to_owned()) {
                problems.push(format!("column {name:?} appears twice"));
                continue;
            }
            if let Some(known) = CSV_COLUMNS.iter().find(|c| **c == name) {
                columns.push(Column::Field(known));
            } else if let Some(key) = name.strip_prefix(ATTRIBUTE_PREFIX)
                && !key.is_empty()
            {
                columns.push(Column::Attribute(key.to_owned()));
            } else {
                problems.push(format!("column {} {name:?} is not known", i + 1));
            }
        }
        for required in ["op", "sku"] {
            if !seen.contains(required) {
                problems.push(format!("column {required:?} is required"));
            }
        }
        if problems.is_empty() {
            Ok(Self { columns })
        } else {
            Err(format!(
                "the CSV header is not usable: {}; columns are {}, and attributes.<key>",
                problems.join("; "),
                CSV_COLUMNS.join(", ")
            ))
        }
    }

    /// One data row as a row object (see `row_object`). Empty cells are
    /// absent fields; integer columns that do not hold an integer are kept
    /// as text so validation names them.
    pub fn row_object<S: AsRef<str>>(
        &self,
        row: u32,
        cells: &[S],
    ) -> Result<Map<String, Value>, RecordFailure> {
        if cells.iter().map(|c| c.as_ref().len()).sum::<usize>() > MAX_ROW_BYTES {
            return Err(UnreadableRow::TooLong.failure(row));
        }
        if cells.len() > MAX_CSV_FIELDS {
            return Err(UnreadableRow::TooManyCells.failure(row));
        }
        if cells.len() != self.columns.len() {
            return Err(invalid_row(
                row,
                None,
                format!(
                    "the row has {} cells; the header names {} columns",
                    cells.len(),
                    self.columns.len()
                ),
            ));
        }
        let mut obj = Map::new();
        let mut attributes = Map::new();
        for (column, cell) in self.columns.iter().zip(cells) {
            let cell = cell.as_ref();
            if cell.is_empty() {
                continue;
            }
            match column {
                Column::Field(name) => {
                    let value = if CSV_INTEGERS.contains(name) {
                        cell.trim()
                            .parse::<i64>()
                            .map_or_else(|_| Value::from(cell), Value::from)
                    } else {
                        Value::from(cell)
                    };
                    obj.insert((*name).to_owned(), value);
                }
                Column::Attribute(key) => {
                    attributes.insert(key.clone(), Value::from(cell));
                }
            }
        }
        if !attributes.is_empty() {
            obj.insert("attributes".into(), Value::Object(attributes));
        }
        row_object(row, Value::Object(obj))
    }

    /// One data row as a record.
    pub fn parse_row<S: AsRef<str>>(
        &self,
        row: u32,
        cells: &[S],
    ) -> Result<BatchRecord, RecordFailure> {
        let obj = self.row_object(row, cells)?;
        parse_record(row, &Value::Object(obj))
    }
}

/// Object key of a batch's upload.
pub fn upload_key(tenant: &TenantId, batch_id: &str) -> String {
    format!("uploads/{}/{batch_id}", tenant.as_str())
}

/// The tenant and batch an object key belongs to.
pub fn parse_upload_key(key: &str) -> Option<(TenantId, String)> {
    let rest = key.strip_prefix("uploads/")?;
    let (tenant, batch_id) = rest.split_once('/')?;
    let tenant = TenantId::parse(tenant).ok()?;
    super::is_prefixed_id(batch_id, "b_").then(|| (tenant, batch_id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::RecordOp;
    use serde_json::json;

    #[test]
    fn upload_requests_are_checked() {
        let ok = parse_upload_request(
            &json!({"mode": "isolated", "format": "csv", "upload": true, "size_bytes": 10}),
        )
        .unwrap();
        assert_eq!(ok.format, UploadFormat::Csv);
        let Err(BatchRejection::Invalid(e)) = parse_upload_request(
            &json!({"mode": "x", "format": "xml", "upload": true, "records": [], "size_bytes": 0}),
        ) else {
            panic!()
        };
        let fields: Vec<_> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, vec!["records", "mode", "format", "size_bytes"]);
        assert_eq!(
            parse_upload_request(
                &json!({"mode": "isolated", "format": "csv", "upload": true, "size_bytes": MAX_UPLOAD_BYTES + 1})
            ),
            Err(BatchRejection::UploadTooLarge {
                limit: MAX_UPLOAD_BYTES
            })
        );
    }

    #[test]
    fn ndjson_rows_take_their_line_number_as_id() {
        let rec = parse_ndjson_row(
            7,
            br#"{"op":"adjust","sku":"A","delta":-1,"reason":"sale"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!((rec.index, rec.id.as_str()), (7, "7"));
        assert!(parse_ndjson_row(8, b"  \r").is_none());
        let bad = parse_ndjson_row(9, b"{\"op\":\"adjust\",")
            .unwrap()
            .unwrap_err();
        assert_eq!(
            (bad.record_id.as_str(), bad.code.as_str()),
            ("9", "invalid_record")
        );
        let with_id = parse_ndjson_row(10, br#"{"id":"x","op":"delete","sku":"A"}"#)
            .unwrap()
            .unwrap_err();
        assert!(
            with_id.message.contains("row number"),
            "{}",
            with_id.message
        );
        let unknown = parse_ndjson_row(11, br#"{"op":"explode","sku":"A"}"#)
            .unwrap()
            .unwrap_err();
        assert!(unknown.message.contains("explode"));
        assert!(parse_ndjson_row(12, b"[1]").unwrap().is_err());
    }

    #[test]
    fn csv_rows_map_columns_to_fields() {
        let names = ["op", "sku", "name", "quantity", "attributes.colour"].map(String::from);
        let header = CsvHeader::parse(&names).unwrap();
        let cells = ["upsert", "MUG-1", "Mug", "12", "red"].map(String::from);
        let rec = header.parse_row(2, &cells).unwrap();
        let RecordOp::Upsert {
            quantity,
            attributes,
            ..
        } = &rec.op
        else {
            panic!()
        };
        assert_eq!((*quantity, attributes["colour"].as_str()), (12, "red"));
        assert_eq!(rec.id, "2");
        let bad = header
            .parse_row(
                3,
                &["upsert", "MUG-1", "Mug", "twelve", ""].map(String::from),
            )
            .unwrap_err();
        assert!(bad.message.contains("quantity"), "{}", bad.message);
        let short = header.parse_row(4, &["upsert".to_owned()]).unwrap_err();
        assert!(short.message.contains("cells"));
    }

    #[test]
    fn unusable_csv_headers_are_refused_whole() {
        let e = CsvHeader::parse(&["sku", "qty", "sku"].map(String::from))
            .err()
            .unwrap();
        assert!(e.contains("\"qty\" is not known"), "{e}");
        assert!(e.contains("twice"), "{e}");
        assert!(e.contains("\"op\" is required"), "{e}");
    }

    #[test]
    fn upload_keys_name_tenant_and_batch() {
        let t = TenantId::parse("acme").unwrap();
        let key = upload_key(&t, "b_01jd8x3b6q5w3z2y1x0v9t8s7r");
        assert_eq!(key, "uploads/acme/b_01jd8x3b6q5w3z2y1x0v9t8s7r");
        assert_eq!(
            parse_upload_key(&key),
            Some((t, "b_01jd8x3b6q5w3z2y1x0v9t8s7r".to_owned()))
        );
        for bad in [
            "uploads/acme",
            "other/acme/b_01jd8x3b6q5w3z2y1x0v9t8s7r",
            "uploads/ACME/b_01jd8x3b6q5w3z2y1x0v9t8s7r",
            "uploads/acme/x_1",
            "uploads/acme/b_01jd8x3b6q5w3z2y1x0v9t8s7r/more",
        ] {
            assert_eq!(parse_upload_key(bad), None, "{bad}");
        }
    }
}
