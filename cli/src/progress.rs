//! Progress bars (indicatif, on stderr). When stderr is not a terminal the
//! bars are hidden and each status change is printed as one line instead.

use crate::batch::Batch;
use futures_util::StreamExt;
use indicatif::{HumanDuration, ProgressBar, ProgressState, ProgressStyle};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(120);

pub struct Progress {
    bar: ProgressBar,
    batch_id: String,
    /// Since when the bar has its length (the batch's total is known), and
    /// the records done then: the rate and ETA are measured from there (the
    /// counts move in jumps, one poll at a time, which indicatif's own
    /// estimate reads as a stall).
    counting: Option<(Instant, u64)>,
    last_status: String,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
        // No estimate before anything moved (indicatif would say 0s).
        .with_key("eta", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = match s.pos() {
                0 => write!(w, "-"),
                _ => write!(w, "{:#}", HumanDuration(s.eta())),
            };
        })
}

impl Progress {
    /// Bytes sent of the file being uploaded.
    pub fn upload(size: u64) -> Self {
        let bar = ProgressBar::new(size).with_style(style(
            "uploading [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})",
        ));
        Self {
            bar,
            batch_id: String::new(),
            counting: None,
            last_status: String::new(),
        }
    }

    /// A request body streaming `file`, advancing this bar as it is sent.
    pub fn body(&self, file: tokio::fs::File) -> reqwest::Body {
        let bar = self.bar.clone();
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    bar.inc(chunk.len() as u64);
                }
            });
        reqwest::Body::wrap_stream(stream)
    }

    /// A batch being followed: a spinner until its total is known, then a bar.
    pub fn batch(batch_id: &str) -> Self {
        let bar = ProgressBar::new_spinner().with_style(style("{spinner} {msg}"));
        bar.enable_steady_tick(TICK);
        Self {
            bar,
            batch_id: batch_id.to_owned(),
            counting: None,
            last_status: String::new(),
        }
    }

    pub fn update(&mut self, batch: &Batch) {
        if self.bar.is_hidden() {
            if batch.status != self.last_status {
                eprintln!(
                    "batch {}: {} ({} applied, {} failed, {} records)",
                    self.batch_id, batch.status, batch.succeeded, batch.failed, batch.total
                );
            }
            self.last_status.clone_from(&batch.status);
            return;
        }
        self.last_status.clone_from(&batch.status);
        if batch.total == 0 {
            let msg = match batch.status.as_str() {
                "awaiting_upload" => "waiting for the uploaded file to be picked up".to_owned(),
                _ => format!("reading the file: {} records read", batch.records_read),
            };
            self.bar.set_message(format!("{}: {msg}", self.batch_id));
            return;
        }
        let done = batch.succeeded + batch.failed;
        let (since, done_then) = *self.counting.get_or_insert_with(|| {
            self.bar.set_length(batch.total);
            self.bar.set_style(style(
                "{spinner} [{elapsed_precise}] [{wide_bar}] {pos}/{len} {msg}",
            ));
            (Instant::now(), done)
        });
        self.bar.set_position(done);
        let mut msg = format!("applied {}, failed {}", batch.succeeded, batch.failed);
        let secs = since.elapsed().as_secs_f64();
        if done > done_then && secs > 0.0 {
            let rate = (done - done_then) as f64 / secs;
            let left = batch.total.saturating_sub(done) as f64 / rate;
            if let Ok(eta) = Duration::try_from_secs_f64(left) {
                msg.push_str(&format!(" ({rate:.0}/s, ETA {:#})", HumanDuration(eta)));
            }
        }
        self.bar.set_message(msg);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    pub fn abandon(&self) {
        self.bar.abandon();
    }
}
