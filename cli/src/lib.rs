//! `stockroom`, the command-line client of the Stockroom API: a plain HTTP
//! client of the public API (no AWS SDK, no `stockroom-aws`).

pub mod api;
pub mod batch;
pub mod cli;
pub mod error;
pub mod import;
pub mod items;
pub mod progress;
pub mod records;
pub mod report;
pub mod webhooks;

use cli::{Cli, Command, ItemsCommand, WebhooksCommand};
use error::Exit;

/// Runs one command; the exit code on success (an import that ended with
/// failed records is a success of the program, with exit 2 or 3).
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Webhooks(WebhooksCommand::Listen { port, secret, fail }) => {
            webhooks::listen(port, secret, fail).await?;
            Ok(Exit::Completed)
        }
        Command::Import(args) => {
            let api = api::Api::new(&cli.url, cli.api_key)?;
            import::run(&api, &args).await
        }
        Command::Items(ItemsCommand::Get { sku }) => {
            let api = api::Api::new(&cli.url, cli.api_key)?;
            items::get(&api, &sku).await
        }
    }
}
