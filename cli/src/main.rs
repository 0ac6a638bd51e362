use clap::Parser;
use std::process::ExitCode;
use stockroom_cli::cli::Cli;
use stockroom_cli::error::{Exit, exit_code};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own exit code for usage errors is 2, which here means
            // "completed with errors": usage errors are 1.
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Completed.into()
            };
        }
    };
    match stockroom_cli::run(cli).await {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code(&e).into()
        }
    }
}
