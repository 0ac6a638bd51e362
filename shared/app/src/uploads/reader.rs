//! Streams the rows of an uploaded file, in bounded memory: one row (at most
//! `MAX_ROW_BYTES`) is held at a time, whatever the file's size.
//!
//! NDJSON is split on line breaks here; CSV goes through `csv-core` (the
//! push parser under the `csv` crate), which handles quoting and line breaks
//! inside quoted cells without buffering more than the row.

use crate::domain::batch::{BatchRecord, RecordFailure, UploadFormat};
use crate::domain::upload::{
    CsvHeader, MAX_CSV_FIELDS, MAX_ROW_BYTES, UnreadableRow, parse_ndjson_row,
};
use crate::ports::UploadBody;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One row: a valid record or the reason it is not one.
pub type Row = Result<BatchRecord, RecordFailure>;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be read as this format at all (e.g. an unusable CSV
    /// header): the batch fails as a whole.
    #[error("{0}")]
    Unusable(String),
    /// Reading the stream failed; reading again may work.
    #[error("reading the upload failed")]
    Io(#[from] std::io::Error),
}

pub struct RowReader {
    input: BufReader<UploadBody>,
    format: Format,
    /// Row number of the last row returned (CSV: the header is row 1).
    row: u32,
    started: bool,
}

enum Format {
    Ndjson,
    Csv(Box<CsvState>),
}

struct CsvState {
    core: csv_core::Reader,
    header: Option<CsvHeader>,
    out: Vec<u8>,
    ends: Vec<usize>,
}

/// One raw CSV record.
enum CsvRecord {
    Cells(Vec<String>),
    /// The row is unusable as a whole (too long, too many cells, not UTF-8).
    Bad(UnreadableRow),
}

impl RowReader {
    pub fn new(body: UploadBody, format: UploadFormat) -> Self {
        let format = match format {
            UploadFormat::Ndjson => Format::Ndjson,
            UploadFormat::Csv => Format::Csv(Box::new(CsvState {
                core: csv_core::Reader::new(),
                header: None,
                out: vec![0; MAX_ROW_BYTES],
                ends: vec![0; MAX_CSV_FIELDS],
            })),
        };
        Self {
            input: BufReader::with_capacity(64 * 1024, body),
            format,
            row: 0,
            started: false,
        }
    }

    /// The next row, or None at the end of the file.
    pub async fn next(&mut self) -> Result<Option<Row>, ReadError> {
        if !self.started {
            self.started = true;
            skip_bom(&mut self.input).await?;
        }
        match &mut self.format {
            Format::Ndjson => loop {
                let Some(line) = read_line(&mut self.input).await? else {
                    return Ok(None);
                };
                self.row = self.row.saturating_add(1);
                let row = self.row;
                let parsed = match line {
                    Line::Bytes(bytes) => parse_ndjson_row(row, &bytes),
                    Line::TooLong => Some(Err(too_long(row))),
                };
                if let Some(parsed) = parsed {
                    return Ok(Some(parsed));
                }
            },
            Format::Csv(state) => {
                if state.header.is_none() {
                    let header = match read_csv_record(&mut self.input, state).await? {
                        None => return Err(ReadError::Unusable("the CSV file is empty".into())),
                        Some(CsvRecord::Bad(why)) => {
                            return Err(ReadError::Unusable(format!("the CSV header {why}")));
                        }
                        Some(CsvRecord::Cells(names)) => {
                            CsvHeader::parse(&names).map_err(ReadError::Unusable)?
                        }
                    };
                    state.header = Some(header);
                    self.row = 1;
                }
                let record = read_csv_record(&mut self.input, state).await?;
                let Some(header) = &state.header else {
                    return Ok(None);
                };
                let Some(record) = record else {
                    return Ok(None);
                };
                self.row = self.row.saturating_add(1);
                let row = self.row;
                Ok(Some(match record {
                    CsvRecord::Cells(cells) => header.parse_row(row, &cells),
                    CsvRecord::Bad(why) => Err(why.failure(row)),
                }))
            }
        }
    }
}

fn too_long(row: u32) -> RecordFailure {
    UnreadableRow::TooLong.failure(row)
}

async fn skip_bom<R: AsyncBufRead + Unpin>(input: &mut R) -> std::io::Result<()> {
    let buf = input.fill_buf().await?;
    if buf.starts_with(BOM) {
        input.consume(BOM.len());
    }
    Ok(())
}

enum Line {
    Bytes(Vec<u8>),
    TooLong,
}

/// Reads up to the next `\n` (dropping it and a `\r` before it); a line
/// longer than `MAX_ROW_BYTES` is skipped to its end and reported as such.
async fn read_line<R: AsyncBufRead + Unpin>(input: &mut R) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = input.fill_buf().await?;
        if buf.is_empty() {
            if !any {
                return Ok(None);
            }
            break;
        }
        any = true;
        let (part, found) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + part.len() > MAX_ROW_BYTES {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(part);
            }
        }
        let used = found.map_or(buf.len(), |i| i + 1);
        input.consume(used);
        if found.is_some() {
            break;
        }
    }
    if too_long {
        return Ok(Some(Line::TooLong));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(Line::Bytes(line)))
}

async fn read_csv_record<R: AsyncBufRead + Unpin>(
    input: &mut R,
    st: &mut CsvState,
) -> std::io::Result<Option<CsvRecord>> {
    use csv_core::ReadRecordResult as R;
    let (mut outlen, mut endlen) = (0, 0);
    let mut problem: Option<UnreadableRow> = None;
    loop {
        let buf = input.fill_buf().await?;
        let (res, nin, nout, nend) =
            st.core
                .read_record(buf, &mut st.out[outlen..], &mut st.ends[endlen..]);
        input.consume(nin);
        outlen += nout;
        endlen += nend;
        match res {
            R::InputEmpty => continue,
            // Keep reading to the row's end, discarding it.
            R::OutputFull => {
                problem.get_or_insert(UnreadableRow::TooLong);
                outlen = 0;
                endlen = 0;
            }
            R::OutputEndsFull => {
                problem.get_or_insert(UnreadableRow::TooManyCells);
                outlen = 0;
                endlen = 0;
            }
            R::Record => {
                if let Some(why) = problem {
                    return Ok(Some(CsvRecord::Bad(why)));
                }
                return Ok(Some(cells(&st.out[..outlen], &st.ends[..endlen])));
            }
            R::End => return Ok(None),
        }
    }
}

fn cells(out: &[u8], ends: &[usize]) -> CsvRecord {
    let mut cells = Vec::with_capacity(ends.len());
    let mut start = 0;
    for &end in ends {
        match std::str::from_utf8(&out[start..end]) {
            Ok(s) => cells.push(s.to_owned()),
            Err(_) => return CsvRecord::Bad(UnreadableRow::NotUtf8),
        }
        start = end;
    }
    CsvRecord::Cells(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &'static [u8], format: UploadFormat) -> RowReader {
        RowReader::new(Box::new(bytes), format)
    }

    async fn all(mut r: RowReader) -> Result<Vec<Row>, ReadError> {
        let mut rows = Vec::new();
        while let Some(row) = r.next().await? {
            rows.push(row);
        }
        Ok(rows)
    }

    fn ids(rows: &[Row]) -> Vec<(String, bool)> {
        rows.iter()
            .map(|r| match r {
                Ok(rec) => (rec.id.clone(), true),
                Err(f) => (f.record_id.clone(), false),
            })
            .collect()
    }

    #[tokio::test]
    async fn ndjson_rows_are_numbered_by_line() {
        let file = b"\xEF\xBB\xBF{\"op\":\"delete\",\"sku\":\"A\"}\r\n\n{\"op\":\"delete\",\"sku\":\"a b\"}\n{\"op\":\"delete\",\"sku\":\"C\"}";
        let rows = all(reader(file, UploadFormat::Ndjson)).await.unwrap();
        assert_eq!(
            ids(&rows),
            vec![("1".into(), true), ("3".into(), false), ("4".into(), true)]
        );
    }

    #[tokio::test]
    async fn an_overlong_line_fails_alone() {
        let long: &'static [u8] = Box::leak(
            [
                b"{\"op\":\"delete\",\"sku\":\"A\"}\n".to_vec(),
                vec![b'x'; MAX_ROW_BYTES + 10],
                b"\n{\"op\":\"delete\",\"sku\":\"B\"}\n".to_vec(),
            ]
            .concat()
            .into_boxed_slice(),
        );
        let rows = all(reader(long, UploadFormat::Ndjson)).await.unwrap();
        assert_eq!(
            ids(&rows),
            vec![("1".into(), true), ("2".into(), false), ("3".into(), true)]
        );
        assert!(rows[1].as_ref().unwrap_err().message.contains("longer"));
    }

    #[tokio::test]
    async fn csv_rows_are_numbered_after_the_header() {
        let file = b"op,sku,name,quantity\nupsert,A,\"Mug, large\",3\nupsert,B,\"two\nlines\",x\ndelete,C,,\n";
        let rows = all(reader(file, UploadFormat::Csv)).await.unwrap();
        assert_eq!(
            ids(&rows),
            vec![("2".into(), true), ("3".into(), false), ("4".into(), true)]
        );
    }

    #[tokio::test]
    async fn an_unusable_csv_header_fails_the_file() {
        let err = all(reader(b"\x00\x01garbage,zz\n1,2\n", UploadFormat::Csv))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, ReadError::Unusable(m) if m.contains("not known")));
        let empty = all(reader(b"", UploadFormat::Csv)).await.err().unwrap();
        assert!(matches!(empty, ReadError::Unusable(m) if m.contains("empty")));
    }

    #[tokio::test]
    async fn bad_bytes_in_a_csv_row_fail_that_row() {
        let file = b"op,sku\ndelete,\xff\xfe\ndelete,B\n";
        let rows = all(reader(file, UploadFormat::Csv)).await.unwrap();
        assert_eq!(ids(&rows), vec![("2".into(), false), ("3".into(), true)]);
    }
}
