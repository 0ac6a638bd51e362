//! Batch records: upload rows (NDJSON lines, CSV header + rows) and inline
//! records through validation and chunking. Chunks must respect their
//! bounds and keep every record exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockroom_domain::batch::{chunk_records, parse_batch};
use stockroom_domain::upload::{CsvHeader, parse_ndjson_row};

const MAX_CHUNK_BYTES: usize = 4096;
const MAX_CHUNK_RECORDS: usize = 25;

fuzz_target!(|data: &[u8]| {
    let mut valid = Vec::new();
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        if let Some(Ok(rec)) = parse_ndjson_row(i as u32 + 1, line) {
            valid.push(rec);
        }
    }
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    if let Some(first) = lines.next() {
        let names: Vec<String> = first.split(',').map(str::to_owned).collect();
        if let Ok(header) = CsvHeader::parse(&names) {
            for (i, line) in lines.enumerate() {
                let cells: Vec<String> = line.split(',').map(str::to_owned).collect();
                if let Ok(rec) = header.parse_row(i as u32 + 2, &cells) {
                    valid.push(rec);
                }
            }
        }
    }
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(req) = parse_batch(&body)
    {
        valid.extend(req.valid);
    }
    let n = valid.len();
    let chunks = chunk_records(valid, MAX_CHUNK_BYTES, MAX_CHUNK_RECORDS);
    assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), n);
    for c in &chunks {
        assert!(!c.is_empty() && c.len() <= MAX_CHUNK_RECORDS);
        let bytes = serde_json::to_vec(c).map(|v| v.len()).unwrap_or(0);
        assert!(
            c.len() == 1 || bytes <= MAX_CHUNK_BYTES,
            "{bytes} bytes in {} records",
            c.len()
        );
    }
});
