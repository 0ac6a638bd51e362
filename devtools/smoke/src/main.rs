//! `stockroom-smoke`: checks a running Stockroom stack through its public API
//! with only its URL and a key (`make smoke`). Prints one row per check and
//! exits 0 when none failed, 1 when one did, 2 on bad input.

mod api;
mod checks;
mod config;
mod report;
mod suite;

use config::{CLEANUP_RESERVE, Config};
use std::process::ExitCode;
use std::time::Instant;
use suite::Suite;

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = match Config::from_vars(|name| std::env::var(name).ok()) {
        Ok(cfg) => cfg,
        Err(message) => {
            eprintln!("stockroom-smoke: {message}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut suite = match Suite::new(cfg, started) {
        Ok(suite) => suite,
        Err(e) => {
            eprintln!("stockroom-smoke: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!(
        "stockroom-smoke: {} as key {}..., run {} (at most {} s)",
        suite.cfg.url,
        suite.cfg.key.chars().take(8).collect::<String>(),
        suite.run,
        suite.cfg.timeout.as_secs()
    );
    if suite.cfg.webhook_url.is_none() {
        println!(
            "webhooks: skipped, no STOCKROOM_WEBHOOK_URL given (a receiver the stack can reach; the webhook-dispatcher function goes unchecked)"
        );
    }
    // Ctrl-C or the whole-run bound stop the checks; cleanup runs regardless.
    let checks_budget = suite.cfg.timeout - CLEANUP_RESERVE;
    let interrupted = tokio::select! {
        r = tokio::time::timeout(checks_budget, suite.run_checks()) => r.is_err().then_some("the checks ran out of time"),
        _ = tokio::signal::ctrl_c() => Some("interrupted"),
    };
    if let Some(why) = interrupted {
        suite.record(
            "(run)",
            started,
            Err(anyhow::anyhow!("{why}: the remaining checks did not run")),
        );
    }
    let left = (started + suite.cfg.timeout).saturating_duration_since(Instant::now());
    suite.cleanup(left.max(CLEANUP_RESERVE)).await;
    print!("{}", report::table(&suite.rows));
    let failed = report::any_failed(&suite.rows);
    println!(
        "{}: {} in {:.1} s (run {})",
        if failed { "FAILED" } else { "OK" },
        report::counts(&suite.rows),
        started.elapsed().as_secs_f64(),
        suite.run
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
