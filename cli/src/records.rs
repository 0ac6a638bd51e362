//! `import --inline`: a CSV or NDJSON file turned into the records of an
//! inline batch, exactly as the API reads an uploaded file.
//!
//! A record's `id` is its row number (NDJSON: the line number from 1; CSV:
//! the header is row 1). Rows the API would refuse as a whole request (no
//! usable `op`, an `id` in an NDJSON row, a CSV row with the wrong number
//! of cells, a line that is not a JSON object) are not sent: they are
//! reported as `invalid_record` failures with the message the API gives
//! the same row of an uploaded file, so `--inline` and the upload flow
//! produce the same failures report. Everything else (bad values, unknown
//! fields) is left for the API to judge.

//!
//! The row rules are the API's own (`stockroom_domain::upload`): only the
//! reading of the whole file is the CLI's.

use serde_json::Value;
use stockroom_domain::batch::RecordFailure;
use stockroom_domain::upload::{CsvHeader, UnreadableRow, ndjson_row_object};

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }

    /// The content type the file is uploaded with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Ndjson => "application/x-ndjson",
        }
    }
}

/// One failed record, as the API's failures report and the failures file list it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Failure {
    pub record_id: String,
    pub sku: Option<String>,
    pub code: String,
    pub message: String,
}

impl From<RecordFailure> for Failure {
    fn from(f: RecordFailure) -> Self {
        Self {
            record_id: f.record_id,
            sku: f.sku,
            code: f.code,
            message: f.message,
        }
    }
}

/// The records to send, and the rows refused before sending.
#[derive(Debug, Default)]
pub struct Inline {
    pub records: Vec<Value>,
    pub rejected: Vec<Failure>,
}

impl Inline {
    fn push(&mut self, row: Result<serde_json::Map<String, Value>, RecordFailure>) {
        match row {
            Ok(record) => self.records.push(Value::Object(record)),
            Err(failure) => self.rejected.push(failure.into()),
        }
    }

    /// The sku of the record with this id, if it was sent.
    pub fn sku_of(&self, record_id: &str) -> Option<String> {
        self.records
            .iter()
            .find(|r| r["id"] == record_id)
            .and_then(|r| r["sku"].as_str())
            .map(str::to_owned)
    }
}

/// Reads a whole file. `Err` when the file is unusable as a whole (as the
/// API would fail an upload of it with `invalid_upload`).
pub fn inline_records(file: &[u8], format: Format) -> Result<Inline, String> {
    let file = file.strip_prefix(BOM).unwrap_or(file);
    let inline = match format {
        Format::Ndjson => ndjson(file),
        Format::Csv => csv(file)?,
    };
    if inline.records.is_empty() && inline.rejected.is_empty() {
        return Err("the file holds no records".into());
    }
    Ok(inline)
}

fn ndjson(file: &[u8]) -> Inline {
    let mut out = Inline::default();
    for (i, line) in file.split(|b| *b == b'\n').enumerate() {
        let row = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(record) = ndjson_row_object(row, line) {
            out.push(record);
        }
    }
    out
}

fn csv(file: &[u8]) -> Result<Inline, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(file);
    let mut rows = reader.byte_records();
    let header = match rows.next() {
        None => return Err("the CSV file is empty".into()),
        Some(Err(e)) => return Err(format!("the CSV header cannot be read: {e}")),
        Some(Ok(h)) => h,
    };
    let names: Vec<&str> = header
        .iter()
        .map(std::str::from_utf8)
        .collect::<Result<_, _>>()
        .map_err(|_| "the CSV header is not valid UTF-8".to_owned())?;
    let header = CsvHeader::parse(&names)?;
    let mut out = Inline::default();
    for (i, cells) in rows.enumerate() {
        let row = u32::try_from(i + 2).unwrap_or(u32::MAX);
        let cells = cells.map_err(|e| format!("row {row} cannot be read: {e}"))?;
        out.push(
            match cells
                .iter()
                .map(std::str::from_utf8)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(cells) => header.row_object(row, &cells),
                Err(_) => Err(UnreadableRow::NotUtf8.failure(row)),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(inline: &Inline) -> (Vec<String>, Vec<String>) {
        (
            inline
                .records
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect(),
            inline
                .rejected
                .iter()
                .map(|f| f.record_id.clone())
                .collect(),
        )
    }

    #[test]
    fn csv_rows_become_records_numbered_like_a_spreadsheet() {
        let file = "\u{feff}op,sku,name,quantity,delta,reason,attributes.colour\n\
                    upsert,A-1,\"Mug, large\",12,,,red\n\
                    adjust,A-1,,,-3,sale,\n\
                    upsert,B-1,\"two\nlines\",twelve,,,\n\
                    explode,C-1,,,,,\n\
                    upsert,D-1\n";
        let inline = inline_records(file.as_bytes(), Format::Csv).unwrap();
        assert_eq!(
            inline.records[0],
            json!({"id": "2", "op": "upsert", "sku": "A-1", "name": "Mug, large", "quantity": 12, "attributes": {"colour": "red"}})
        );
        assert_eq!(
            inline.records[1],
            json!({"id": "3", "op": "adjust", "sku": "A-1", "delta": -3, "reason": "sale"})
        );
        // Not an integer: sent as text, for the API to name the field.
        assert_eq!(inline.records[2]["quantity"], "twelve");
        assert_eq!(
            ids(&inline),
            (
                vec!["2".into(), "3".into(), "4".into()],
                vec!["5".into(), "6".into()]
            )
        );
        assert_eq!(
            inline.rejected[0],
            Failure {
                record_id: "5".into(),
                sku: Some("C-1".into()),
                code: "invalid_record".into(),
                message: "op: unknown op \"explode\"; expected upsert, adjust, delete, count, transfer or reserve".into()
            }
        );
        assert_eq!(
            inline.rejected[1].message,
            "the row has 2 cells; the header names 7 columns"
        );
        assert_eq!(inline.sku_of("3").as_deref(), Some("A-1"));
    }

    #[test]
    fn unusable_csv_files_are_refused_whole() {
        let e = inline_records(b"sku,qty,sku\nA,1,A\n", Format::Csv).unwrap_err();
        assert!(e.contains("\"qty\" is not known"), "{e}");
        assert!(e.contains("twice"), "{e}");
        assert!(e.contains("\"op\" is required"), "{e}");
        assert_eq!(
            inline_records(b"", Format::Csv).unwrap_err(),
            "the CSV file is empty"
        );
        assert_eq!(
            inline_records(b"op,sku\n", Format::Csv).unwrap_err(),
            "the file holds no records"
        );
    }

    #[test]
    fn ndjson_lines_are_numbered_from_one_and_blank_lines_skipped() {
        let file = b"{\"op\":\"delete\",\"sku\":\"A\"}\r\n\n{\"op\":\"adjust\",\n[1]\n{\"id\":\"x\",\"op\":\"delete\",\"sku\":\"B\"}\n{\"sku\":\"C\"}\n{\"op\":\"delete\",\"sku\":\"D\"}";
        let inline = inline_records(file, Format::Ndjson).unwrap();
        assert_eq!(
            ids(&inline),
            (
                vec!["1".into(), "7".into()],
                vec!["3".into(), "4".into(), "5".into(), "6".into()]
            )
        );
        assert!(
            inline.rejected[0]
                .message
                .starts_with("not a JSON object: ")
        );
        assert_eq!(inline.rejected[1].message, "the row must be a JSON object");
        assert!(inline.rejected[2].message.contains("row number"));
        assert_eq!(
            inline.rejected[3],
            Failure {
                record_id: "6".into(),
                sku: Some("C".into()),
                code: "invalid_record".into(),
                message: "op: is required (upsert, adjust, delete, count, transfer or reserve)"
                    .into()
            }
        );
    }
}
