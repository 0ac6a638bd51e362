//! The end of an import: the summary, the batch's failures (every page),
//! and the failures file.

use crate::api::Api;
use crate::batch::Batch;
use crate::error::Exit;
use crate::records::Failure;
use anyhow::Context;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The failures file's header row.
pub const FAILURES_HEADER: &str = "record_id,sku,code,message";

#[derive(Deserialize)]
struct FailurePage {
    failures: Vec<Failure>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// Every failure of a batch, in the API's order (record order).
pub async fn fetch_failures(api: &Api, batch_id: &str) -> anyhow::Result<Vec<Failure>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/batches/{batch_id}/failures?limit=100");
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.extend(url::form_urlencoded::byte_serialize(c.as_bytes()));
        }
        let page: FailurePage = api.get_json(&path).await?;
        out.extend(page.failures);
        match page.next_cursor {
            Some(c) if Some(&c) != cursor.as_ref() => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}

/// Writes the failures (through a temporary file, so a reader never sees
/// half of it); with none, removes a failures file an earlier run left.
pub fn write_failures(path: &Path, failures: &[Failure]) -> anyhow::Result<()> {
    if failures.is_empty() {
        if is_failures_file(path) {
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale {}", path.display()))?;
            println!(
                "no failures; removed {} (left by an earlier run)",
                path.display()
            );
        }
        return Ok(());
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let write = || -> anyhow::Result<()> {
        let mut out = csv::Writer::from_path(&tmp)?;
        for f in failures {
            out.serialize(f)?;
        }
        out.flush()?;
        Ok(())
    };
    write()
        .and_then(|()| Ok(std::fs::rename(&tmp, path)?))
        .with_context(|| format!("cannot write the failures file {}", path.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    println!(
        "{} failed record(s) written to {}",
        failures.len(),
        path.display()
    );
    Ok(())
}

/// Whether `path` is a failures file (its first line is our header).
fn is_failures_file(path: &Path) -> bool {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut first = String::new();
    std::io::BufReader::new(file).read_line(&mut first).is_ok()
        && first.trim_end() == FAILURES_HEADER
}

pub fn print_summary(batch: &Batch, exit: Exit, rejected: u64, elapsed: Duration) {
    let status = match (exit, batch.status.as_str()) {
        (Exit::CompletedWithErrors, "completed") => "completed_with_errors",
        (_, s) => s,
    };
    println!("batch {}: {status}", batch.batch_id);
    println!("  total      {}", batch.total + rejected);
    println!("  succeeded  {}", batch.succeeded);
    match rejected {
        0 => println!("  failed     {}", batch.failed),
        n => println!(
            "  failed     {} ({n} invalid row(s) not sent)",
            batch.failed + n
        ),
    }
    println!(
        "  duration   {}",
        human(server_duration(batch).unwrap_or(elapsed))
    );
    if let Some(e) = &batch.error {
        println!("  error      {}: {}", e.code, e.message);
    }
}

/// A batch refused before anything was applied (inline only).
pub fn print_refused(reason: &str, total: u64, failed: u64, elapsed: Duration) {
    println!("batch refused: {reason}");
    println!("  total      {total}");
    println!("  succeeded  0");
    println!("  failed     {failed}");
    println!("  duration   {}", human(elapsed));
}

/// From the batch's creation to its end, as the API recorded them.
fn server_duration(batch: &Batch) -> Option<Duration> {
    let parse = |s: &Option<String>| OffsetDateTime::parse(s.as_deref()?, &Rfc3339).ok();
    let d = parse(&batch.completed_at)? - parse(&batch.created_at)?;
    d.try_into().ok()
}

fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let s = d.as_secs();
        format!("{} min {:02} s", s / 60, s % 60)
    }
}

pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(2345)), "2.3 s");
        assert_eq!(human(Duration::from_secs(192)), "3 min 12 s");
    }

    #[test]
    fn failures_files_are_written_whole_and_stale_ones_removed() {
        let dir = std::env::temp_dir().join(format!("stockroom-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.failures.csv");
        let failures = vec![
            Failure {
                record_id: "2".into(),
                sku: None,
                code: "invalid_record".into(),
                message: "the row has 2 cells; the header names 3 columns".into(),
            },
            Failure {
                record_id: "3".into(),
                sku: Some("A-1".into()),
                code: "insufficient_stock".into(),
                message: "only 1, \"quoted\"".into(),
            },
        ];
        write_failures(&path, &failures).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "record_id,sku,code,message\n\
             2,,invalid_record,the row has 2 cells; the header names 3 columns\n\
             3,A-1,insufficient_stock,\"only 1, \"\"quoted\"\"\"\n"
        );
        write_failures(&path, &[]).unwrap();
        assert!(!path.exists());
        // Not a failures file: left alone.
        std::fs::write(&path, "something else\n").unwrap();
        write_failures(&path, &[]).unwrap();
        assert!(path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
