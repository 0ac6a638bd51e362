//! `stockroom import`: submit a file as a batch (uploaded, or inline),
//! follow it with a progress bar, then report and write its failures.

use crate::api::{Api, Retry, read_json, refused, transport_error};
use crate::batch::Batch;
use crate::cli::{ImportArgs, Mode};
use crate::error::{CliError, Exit};
use crate::progress::Progress;
use crate::records::{Failure, Format, Inline, inline_records};
use crate::report;
use anyhow::Context;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest inline batch body the API takes.
pub const MAX_INLINE_BYTES: u64 = 5 * 1024 * 1024;

/// The 202 of `POST /v1/batches`.
#[derive(Debug, Deserialize)]
struct Accepted {
    batch_id: String,
    #[serde(default)]
    upload: Option<UploadTarget>,
}

#[derive(Debug, Deserialize)]
struct UploadTarget {
    url: String,
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// What was submitted.
enum Submitted {
    /// A batch to follow; `rejected` are the rows not sent (inline).
    Batch {
        batch_id: String,
        rejected: Vec<Failure>,
    },
    /// Nothing was applied and no batch needs following (an inline batch
    /// refused before or at submission): the reason, and the failed rows.
    Refused {
        reason: String,
        total: u64,
        failures: Vec<Failure>,
    },
}

pub async fn run(api: &Api, args: &ImportArgs) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let format = match args.format {
        Some(f) => f,
        None => format_of(&args.file)?,
    };
    let failures_path = match &args.failures {
        Some(p) => p.clone(),
        None => default_failures_path(&args.file),
    };
    if same_file(&failures_path, &args.file) {
        return Err(CliError::usage(format!(
            "the failures file {} would overwrite the input file",
            failures_path.display()
        ))
        .into());
    }
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    if size == 0 {
        return Err(CliError::usage(format!("{} is empty", args.file.display())).into());
    }

    let submitted = if args.inline {
        submit_inline(api, args, format, size).await?
    } else {
        submit_upload(api, args, format, size).await?
    };
    let (batch, rejected) = match submitted {
        Submitted::Refused {
            reason,
            total,
            failures,
        } => {
            report::print_refused(&reason, total, failures.len() as u64, started.elapsed());
            report::write_failures(&failures_path, &failures)?;
            return Ok(Exit::Failed);
        }
        Submitted::Batch { batch_id, rejected } => {
            let interval = Duration::from_millis(args.poll_interval_ms);
            (follow(api, &batch_id, interval).await?, rejected)
        }
    };

    let mut failures = rejected;
    let rejected = failures.len() as u64;
    let exit = match (batch.status.as_str(), rejected) {
        ("completed", 0) => Exit::Completed,
        ("completed" | "completed_with_errors", _) => Exit::CompletedWithErrors,
        ("failed", _) => Exit::Failed,
        (other, _) => anyhow::bail!("the batch ended with an unknown status {other:?}"),
    };
    // The summary first: it stands even if the failures cannot be fetched.
    report::print_summary(&batch, exit, rejected, started.elapsed());
    if batch.failed > 0 {
        let fetched = report::fetch_failures(api, &batch.batch_id)
            .await
            .with_context(|| {
                format!(
                    "the batch ended but its failures could not be fetched (GET {}/v1/batches/{}/failures)",
                    api.base(),
                    batch.batch_id
                )
            })?;
        failures.extend(fetched);
    }
    // Row order, whichever side refused a row (ids are row numbers).
    failures.sort_by_key(|f| row_number(&f.record_id));
    report::write_failures(&failures_path, &failures)?;
    Ok(exit)
}

/// The format named by the file's extension.
fn format_of(file: &Path) -> Result<Format, CliError> {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => Ok(Format::Csv),
        Some("ndjson" | "jsonl") => Ok(Format::Ndjson),
        _ => Err(CliError::usage(format!(
            "cannot tell the format of {} from its extension: pass --format csv or --format ndjson",
            file.display()
        ))),
    }
}

/// `dir/counts.csv` → `dir/counts.failures.csv`.
fn default_failures_path(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map_or_else(|| "import".into(), |s| s.to_string_lossy().into_owned());
    file.with_file_name(format!("{stem}.failures.csv"))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// POST /v1/batches with an `Idempotency-Key`, so that a retried POST
/// (after a 429/503 or a timeout) cannot create a second batch.
async fn post_batch(api: &Api, body: &Value) -> Result<reqwest::Response, CliError> {
    let key = format!("stockroom-cli-{}", uuid::Uuid::new_v4().simple());
    api.send(Retry::Safe, || {
        Ok(api
            .request(Method::POST, "/v1/batches")?
            .header("idempotency-key", &key)
            .json(body))
    })
    .await
}

async fn submit_upload(
    api: &Api,
    args: &ImportArgs,
    format: Format,
    size: u64,
) -> anyhow::Result<Submitted> {
    let what = "POST /v1/batches";
    let body = json!({
        "mode": args.mode.as_str(),
        "format": format.as_str(),
        "upload": true,
        "size_bytes": size,
    });
    let resp = post_batch(api, &body).await?;
    if !resp.status().is_success() {
        return Err(refused(what, resp).await.into_error().into());
    }
    let accepted: Accepted = read_json(what, resp).await?;
    let target = accepted.upload.ok_or_else(|| {
        CliError::new(
            Exit::Network,
            "the API accepted the batch but gave no upload URL",
        )
    })?;
    if !target.method.eq_ignore_ascii_case("PUT") {
        anyhow::bail!(
            "the API asks for an upload by {}, only PUT is supported",
            target.method
        );
    }
    eprintln!(
        "batch {} created; uploading {} ({})",
        accepted.batch_id,
        args.file.display(),
        report::bytes(size)
    );
    upload(api, &accepted.batch_id, &args.file, &target, format, size).await?;
    Ok(Submitted::Batch {
        batch_id: accepted.batch_id,
        rejected: Vec::new(),
    })
}

/// PUTs the file to the upload URL with every header it names (they are
/// signed: `content-length`, `if-none-match`), streaming the body.
async fn upload(
    api: &Api,
    batch_id: &str,
    file: &Path,
    target: &UploadTarget,
    format: Format,
    size: u64,
) -> anyhow::Result<()> {
    let opened = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    let bar = Progress::upload(size);
    let body = bar.body(opened);
    let mut req = api.http().put(&target.url);
    for (name, value) in &target.headers {
        req = req.header(name, value);
    }
    if !target
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("content-type"))
    {
        // Not application/x-www-form-urlencoded: some S3 emulators drop such bodies.
        req = req.header(reqwest::header::CONTENT_TYPE, format.content_type());
    }
    let without_query = target.url.split('?').next().unwrap_or_default().to_owned();
    let resp = req
        .timeout(upload_timeout(size))
        .body(body)
        .send()
        .await
        .map_err(|e| transport_error(&format!("the upload URL {without_query}"), &e));
    bar.finish();
    let resp = resp?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let why = s3_error(&text);
        let exit = if status.is_server_error() {
            Exit::Network
        } else {
            Exit::Usage
        };
        return Err(CliError::new(
            exit,
            format!(
                "the upload of batch {batch_id} was refused ({}){why}",
                status.as_u16()
            ),
        )
        .into());
    }
    Ok(())
}

/// The upload must finish within this: 5 minutes plus what the file takes at
/// 100 kB/s, so a stalled connection ends with exit 5 instead of hanging,
/// and a slow but moving one (1 GiB: ~3 hours) is left alone.
fn upload_timeout(size: u64) -> std::time::Duration {
    std::time::Duration::from_secs(300 + size / 100_000)
}

/// `: <Code>: <Message>` from an S3 XML error body, if it has them.
fn s3_error(body: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find("</")? + start;
        Some(body[start..end].to_owned())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!(": {c}: {m}"),
        (Some(c), None) => format!(": {c}"),
        _ => String::new(),
    }
}

async fn submit_inline(
    api: &Api,
    args: &ImportArgs,
    format: Format,
    size: u64,
) -> anyhow::Result<Submitted> {
    if size > MAX_INLINE_BYTES {
        return Err(CliError::usage(format!(
            "{} is {}: --inline takes files up to 5 MiB; leave out --inline to upload it",
            args.file.display(),
            report::bytes(size)
        ))
        .into());
    }
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let inline = inline_records(&bytes, format)
        .map_err(|why| CliError::usage(format!("{}: {why}", args.file.display())))?;
    let total = (inline.records.len() + inline.rejected.len()) as u64;
    if inline.records.is_empty() {
        return Ok(Submitted::Refused {
            reason: format!("none of the file's {total} rows is a valid record; nothing was sent"),
            total,
            failures: inline.rejected,
        });
    }
    if args.mode == Mode::Atomic && !inline.rejected.is_empty() {
        return Ok(Submitted::Refused {
            reason: format!(
                "{} row(s) are invalid, so the atomic batch was not sent; nothing was applied",
                inline.rejected.len()
            ),
            total,
            failures: atomic_refusal(&inline, inline.rejected.clone()),
        });
    }
    let what = "POST /v1/batches";
    let body = json!({"mode": args.mode.as_str(), "records": inline.records});
    let resp = post_batch(api, &body).await?;
    if !resp.status().is_success() {
        let refusal = refused(what, resp).await;
        if refusal.status == 422 && refusal.problem.code == "invalid_records" {
            let invalid = invalid_records(&inline, &refusal.problem.errors);
            return Ok(Submitted::Refused {
                reason: format!(
                    "the API refused the atomic batch (422 invalid_records): {} row(s) are invalid; nothing was applied",
                    invalid.len()
                ),
                total,
                failures: atomic_refusal(&inline, invalid),
            });
        }
        return Err(refusal.into_error().into());
    }
    let accepted: Accepted = read_json(what, resp).await?;
    eprintln!(
        "batch {} created with {} records{}",
        accepted.batch_id,
        inline.records.len(),
        match inline.rejected.len() {
            0 => String::new(),
            n => format!(" ({n} invalid row(s) not sent)"),
        }
    );
    Ok(Submitted::Batch {
        batch_id: accepted.batch_id,
        rejected: inline.rejected,
    })
}

/// The records a 422 `invalid_records` names, as failures.
fn invalid_records(inline: &Inline, errors: &[crate::api::FieldError]) -> Vec<Failure> {
    errors
        .iter()
        .map(|e| {
            let record_id = e.record_id.clone().unwrap_or_default();
            Failure {
                sku: inline.sku_of(&record_id),
                record_id,
                code: "invalid_record".into(),
                message: e.message.clone(),
            }
        })
        .collect()
}

/// The report of an atomic batch refused for its invalid rows, as the API
/// gives it for an atomic upload: the invalid rows with their reasons, every
/// other row as `atomic_batch_aborted`, in row order.
fn atomic_refusal(inline: &Inline, mut invalid: Vec<Failure>) -> Vec<Failure> {
    invalid.sort_by_key(|f| row_number(&f.record_id));
    let culprits: Vec<&str> = invalid.iter().map(|f| f.record_id.as_str()).collect();
    let message = format!(
        "not applied: the atomic batch was rejected because of row(s) {}",
        culprits.join(", ")
    );
    let aborted: Vec<Failure> = inline
        .records
        .iter()
        .filter_map(|r| {
            let id = r["id"].as_str()?;
            (!culprits.contains(&id)).then(|| Failure {
                record_id: id.to_owned(),
                sku: r["sku"].as_str().map(str::to_owned),
                code: "atomic_batch_aborted".into(),
                message: message.clone(),
            })
        })
        .collect();
    invalid.extend(aborted);
    invalid.sort_by_key(|f| row_number(&f.record_id));
    invalid
}

/// Record ids are row numbers; anything else sorts last.
fn row_number(record_id: &str) -> u64 {
    record_id.parse().unwrap_or(u64::MAX)
}

/// Polls the batch until it ends, showing its progress.
async fn follow(api: &Api, batch_id: &str, interval: Duration) -> anyhow::Result<Batch> {
    let path = format!("/v1/batches/{batch_id}");
    let mut bar = Progress::batch(batch_id);
    let interrupted = |bar: &Progress| {
        bar.abandon();
        CliError::new(
            Exit::Interrupted,
            format!(
                "interrupted: batch {batch_id} goes on on the server (GET {}{path})",
                api.base()
            ),
        )
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let batch: Batch = tokio::select! {
            got = api.get_json(&path) => got.inspect_err(|_| bar.abandon())?,
            _ = &mut ctrl_c => return Err(interrupted(&bar).into()),
        };
        bar.update(&batch);
        if batch.is_terminal() {
            bar.finish();
            return Ok(batch);
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = &mut ctrl_c => return Err(interrupted(&bar).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_failures_path_come_from_the_file_name() {
        assert_eq!(format_of(Path::new("a/counts.CSV")).unwrap(), Format::Csv);
        assert_eq!(format_of(Path::new("x.jsonl")).unwrap(), Format::Ndjson);
        assert!(format_of(Path::new("x.txt")).is_err());
        assert_eq!(
            default_failures_path(Path::new("in/counts.csv")),
            PathBuf::from("in/counts.failures.csv")
        );
    }

    #[test]
    fn uploads_get_time_in_proportion_to_their_size() {
        assert_eq!(upload_timeout(0).as_secs(), 300);
        assert_eq!(upload_timeout(13_000_000).as_secs(), 430);
        assert_eq!(upload_timeout(1 << 30).as_secs(), 300 + 10_737);
    }

    #[test]
    fn a_refused_atomic_batch_reports_culprits_and_aborted_rows() {
        let inline = inline_records(
            b"op,sku,delta,reason\nadjust,A,1,x\nexplode,B,,\nadjust,C,1,x\n",
            Format::Csv,
        )
        .unwrap();
        let report = atomic_refusal(&inline, inline.rejected.clone());
        let rows: Vec<(&str, Option<&str>, &str)> = report
            .iter()
            .map(|f| (f.record_id.as_str(), f.sku.as_deref(), f.code.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("2", Some("A"), "atomic_batch_aborted"),
                ("3", Some("B"), "invalid_record"),
                ("4", Some("C"), "atomic_batch_aborted"),
            ]
        );
        assert_eq!(
            report[0].message,
            "not applied: the atomic batch was rejected because of row(s) 3"
        );
    }

    #[test]
    fn s3_errors_are_summarised() {
        assert_eq!(
            s3_error(
                "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>"
            ),
            ": PreconditionFailed: At least one of the pre-conditions you specified did not hold"
        );
        assert_eq!(s3_error("nope"), "");
    }
}
