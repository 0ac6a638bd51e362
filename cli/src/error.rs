//! Exit codes, and the one error type that carries one.
//!
//! Commands return `anyhow::Result`; an error that should end the program
//! with a specific code is a [`CliError`] somewhere in the chain (anything
//! else is exit 1).

use std::process::ExitCode;

/// The program's exit codes (documented in `--help` and cli/README.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The batch completed: every record applied.
    Completed = 0,
    /// Usage, file, configuration errors, and requests the API refused as invalid.
    Usage = 1,
    /// The batch completed with errors: some records failed (see the failures file).
    CompletedWithErrors = 2,
    /// The batch failed: nothing applied (or, isolated, nothing succeeded).
    Failed = 3,
    /// The API key was refused (401) or lacks the scope (403).
    Auth = 4,
    /// The API could not be reached, timed out, or kept answering 5xx/429.
    Network = 5,
    /// What was asked for does not exist (404), e.g. `items get` of an unknown sku.
    NotFound = 6,
    /// Interrupted (Ctrl-C) while following a batch, which goes on on the server.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// An error with a one-line message meant for the user, and its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }
}

/// The exit code an error ends the program with.
pub fn exit_code(err: &anyhow::Error) -> Exit {
    err.chain()
        .find_map(|e| e.downcast_ref::<CliError>())
        .map_or(Exit::Usage, |e| e.exit)
}

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
    0  success (import: the batch completed, every record applied)
    1  usage, file or configuration error, or a request the API refused as invalid (400/409/413/422)
    2  import: the batch completed with errors (some records failed; see the failures file)
    3  import: the batch failed (nothing applied, or no record succeeded)
    4  authentication/authorization: the API key was refused (401) or lacks a scope (403)
    5  network/server: the API is unreachable, timed out, or answered 5xx/429/503 after retries
    6  not found (404), e.g. `items get` of a sku that does not exist
  130  interrupted (Ctrl-C) while following a batch: the batch goes on on the server";
