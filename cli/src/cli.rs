//! Command-line arguments.

use crate::error::EXIT_CODES_HELP;
use crate::records::Format;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "stockroom",
    version,
    about = "Command-line client of the Stockroom inventory API",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Base URL of the API.
    #[arg(
        long,
        global = true,
        env = "STOCKROOM_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub url: String,

    /// API key, sent as `Authorization: Bearer <key>` (never printed).
    #[arg(long, global = true, env = "STOCKROOM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import a CSV or NDJSON file as a batch, follow it, and write its failures to a CSV file.
    #[command(after_help = IMPORT_HELP)]
    Import(ImportArgs),
    /// Read items.
    #[command(subcommand)]
    Items(ItemsCommand),
    /// Webhook tools.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Only bad records fail.
    Isolated,
    /// All or nothing (at most 99 records).
    Atomic,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Isolated => "isolated",
            Self::Atomic => "atomic",
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file: CSV (a header row: op, sku, name, description, quantity,
    /// low_stock_threshold, delta, reason, reference, attributes.<key>, and
    /// for counts, transfers and holds location, on_hand, occurred_at, from,
    /// to, expires_in) or NDJSON (one record object per line, without id).
    pub file: PathBuf,

    /// isolated: only bad records fail; atomic: all or nothing.
    #[arg(long, value_enum, default_value = "isolated")]
    pub mode: Mode,

    /// File format [default: from the extension: .csv, .ndjson/.jsonl]
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Where to write the failed records (record_id,sku,code,message)
    /// [default: <FILE stem>.failures.csv beside FILE]
    #[arg(long, value_name = "OUT.csv")]
    pub failures: Option<PathBuf>,

    /// Send the records in the request body (file at most 5 MiB) instead of uploading the file.
    #[arg(long)]
    pub inline: bool,

    /// How often to ask for the batch's progress.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..))]
    pub poll_interval_ms: u64,
}

const IMPORT_HELP: &str = "\
By default the file is uploaded: POST /v1/batches asks for an upload URL, the file is
streamed there (up to 1 GiB, 2,000,000 rows), then the batch is followed to its end.
Record ids are row numbers: NDJSON lines from 1, CSV rows with the header as row 1.

A stocktake per location is a file of count rows, e.g.
  op,sku,location,on_hand,occurred_at
  count,MUG-1,paris-1,12,2026-12-01T06:00:00Z
Each sets the level at its location as of occurred_at (see docs/guarantees.md#counts).

When the batch ends, its failed records are written to the failures file; when none
failed, no file is written, and a failures file left by an earlier run at that path
is removed (only if it is one: its first line is record_id,sku,code,message).

Exit codes: 0 completed, 2 completed with errors, 3 failed, 1 usage/file/configuration
error or request refused as invalid, 4 API key refused (401/403), 5 network/server error
(unreachable, timeouts, 5xx after retries), 130 interrupted (the batch goes on).";

#[derive(Debug, Subcommand)]
pub enum ItemsCommand {
    /// Print an item as JSON (exit 6 if there is no such sku).
    Get {
        /// The item's sku.
        sku: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Receive webhook deliveries locally: print each one and verify its signature.
    ///
    /// Register http://127.0.0.1:<PORT>/ as a webhook (the local stack accepts
    /// 127.0.0.1), then watch. A delivery whose signature does not verify is
    /// answered 401, so the sender's retries are visible.
    Listen {
        /// Port to listen on (127.0.0.1).
        #[arg(long, default_value_t = 4000)]
        port: u16,
        /// The webhook's signing secret (whsec_...); without it signatures are shown but not checked.
        #[arg(long, env = "STOCKROOM_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Answer 500 to the first N deliveries (to watch the retries).
        #[arg(long, value_name = "N", default_value_t = 0)]
        fail: u32,
    },
}
