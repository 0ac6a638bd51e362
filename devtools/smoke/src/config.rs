//! The suite's settings, from the environment (`make smoke` passes them so),
//! checked once: every problem is one line naming the variable.

use std::time::Duration;
use url::Url;

/// The whole run (checks and cleanup) ends within this by default.
const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// The most a run may be given.
const MAX_TIMEOUT_SECS: u64 = 3600;
/// Cleanup needs at least this much of the budget.
pub const CLEANUP_RESERVE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Config {
    /// The API's base URL, stage included, without a trailing slash.
    pub url: String,
    pub key: String,
    pub webhook_url: Option<String>,
    /// How long to keep trying a revoked key until it is refused (the
    /// authorizer caches its decision per key for `AuthorizerCacheTtlSeconds`);
    /// zero: do not check.
    pub revocation_wait: Duration,
    /// The whole run, cleanup included.
    pub timeout: Duration,
}

impl Config {
    /// Reads the settings through `var` (the process environment in `main`).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let url = get("STOCKROOM_URL").ok_or_else(|| {
            "STOCKROOM_URL is required: the API's base URL, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com/prod (the stack output ApiUrl)".to_owned()
        })?;
        let url = http_url("STOCKROOM_URL", &url)?
            .trim_end_matches('/')
            .to_owned();
        let key = get("STOCKROOM_KEY").ok_or_else(|| {
            "STOCKROOM_KEY is required: an API key of the tenant to test with, holding every scope (stockroom-admin create-tenant prints one)".to_owned()
        })?;
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("STOCKROOM_KEY must be the key alone (no spaces, no \"Bearer \")".into());
        }
        let webhook_url = match get("STOCKROOM_WEBHOOK_URL") {
            Some(u) => Some(http_url("STOCKROOM_WEBHOOK_URL", &u)?),
            None => None,
        };
        let revocation_wait = Duration::from_secs(seconds(
            "STOCKROOM_SMOKE_REVOCATION_WAIT",
            get("STOCKROOM_SMOKE_REVOCATION_WAIT"),
            0,
        )?);
        let timeout = seconds(
            "STOCKROOM_SMOKE_TIMEOUT",
            get("STOCKROOM_SMOKE_TIMEOUT"),
            DEFAULT_TIMEOUT_SECS,
        )?;
        if !(CLEANUP_RESERVE.as_secs() * 2..=MAX_TIMEOUT_SECS).contains(&timeout) {
            return Err(format!(
                "STOCKROOM_SMOKE_TIMEOUT must be between {} and {MAX_TIMEOUT_SECS} seconds (got {timeout})",
                CLEANUP_RESERVE.as_secs() * 2
            ));
        }
        if revocation_wait.as_secs() >= timeout / 2 {
            return Err(format!(
                "STOCKROOM_SMOKE_REVOCATION_WAIT ({} s) must be under half of STOCKROOM_SMOKE_TIMEOUT ({timeout} s)",
                revocation_wait.as_secs()
            ));
        }
        Ok(Self {
            url,
            key,
            webhook_url,
            revocation_wait,
            timeout: Duration::from_secs(timeout),
        })
    }
}

/// An absolute `http`/`https` URL with a host, normalised.
fn http_url(name: &str, raw: &str) -> Result<String, String> {
    let hint = "an absolute URL with its scheme, e.g. https://api.example.com/prod";
    let parsed = Url::parse(raw).map_err(|_| format!("{name} must be {hint} (got {raw:?})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{name} must be {hint} (got {raw:?})"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{name} must not carry credentials"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "{name} must not have a query or a fragment (got {raw:?})"
        ));
    }
    Ok(parsed.into())
}

fn seconds(name: &str, raw: Option<String>, default: u64) -> Result<u64, String> {
    match raw {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name} must be a whole number of seconds (got {v:?})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn url_and_key_are_enough() {
        let c = config(&[
            (
                "STOCKROOM_URL",
                "https://abc.execute-api.eu-west-1.amazonaws.com/prod/",
            ),
            ("STOCKROOM_KEY", "sk_live_x"),
        ])
        .unwrap();
        assert_eq!(
            c.url,
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
        );
        assert_eq!(c.webhook_url, None);
        assert_eq!(c.revocation_wait, Duration::ZERO);
        assert_eq!(c.timeout, Duration::from_secs(600));
    }

    #[test]
    fn missing_or_bad_input_is_one_line_naming_the_variable() {
        for (vars, needle) in [
            (vec![("STOCKROOM_KEY", "k")], "STOCKROOM_URL is required"),
            (
                vec![("STOCKROOM_URL", "  "), ("STOCKROOM_KEY", "k")],
                "STOCKROOM_URL is required",
            ),
            (
                vec![("STOCKROOM_URL", "http://127.0.0.1:3000")],
                "STOCKROOM_KEY is required",
            ),
            (
                vec![
                    ("STOCKROOM_URL", "api.example.com/prod"),
                    ("STOCKROOM_KEY", "k"),
                ],
                "STOCKROOM_URL must be an absolute URL",
            ),
            (
                vec![("STOCKROOM_URL", "localhost:3000"), ("STOCKROOM_KEY", "k")],
                "STOCKROOM_URL must be an absolute URL",
            ),
            (
                vec![("STOCKROOM_URL", "ftp://h/x"), ("STOCKROOM_KEY", "k")],
                "STOCKROOM_URL must be an absolute URL",
            ),
            (
                vec![("STOCKROOM_URL", "https://u:p@h/x"), ("STOCKROOM_KEY", "k")],
                "must not carry credentials",
            ),
            (
                vec![
                    ("STOCKROOM_URL", "https://h"),
                    ("STOCKROOM_KEY", "Bearer k"),
                ],
                "the key alone",
            ),
            (
                vec![
                    ("STOCKROOM_URL", "https://h"),
                    ("STOCKROOM_KEY", "k"),
                    ("STOCKROOM_WEBHOOK_URL", "receiver:4000"),
                ],
                "STOCKROOM_WEBHOOK_URL must be an absolute URL",
            ),
            (
                vec![
                    ("STOCKROOM_URL", "https://h"),
                    ("STOCKROOM_KEY", "k"),
                    ("STOCKROOM_SMOKE_TIMEOUT", "5"),
                ],
                "between 120 and 3600",
            ),
            (
                vec![
                    ("STOCKROOM_URL", "https://h"),
                    ("STOCKROOM_KEY", "k"),
                    ("STOCKROOM_SMOKE_TIMEOUT", "ten"),
                ],
                "whole number",
            ),
            (
                vec![
                    ("STOCKROOM_URL", "https://h"),
                    ("STOCKROOM_KEY", "k"),
                    ("STOCKROOM_SMOKE_REVOCATION_WAIT", "330"),
                ],
                "under half",
            ),
        ] {
            let err = config(&vars).unwrap_err();
            assert!(err.contains(needle), "{vars:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn a_webhook_url_and_a_revocation_wait_are_taken() {
        let c = config(&[
            ("STOCKROOM_URL", "http://127.0.0.1:3000"),
            ("STOCKROOM_KEY", "sk_test_x"),
            ("STOCKROOM_WEBHOOK_URL", "http://127.0.0.1:4000/"),
            ("STOCKROOM_SMOKE_REVOCATION_WAIT", "15"),
        ])
        .unwrap();
        assert_eq!(c.webhook_url.as_deref(), Some("http://127.0.0.1:4000/"));
        assert_eq!(c.revocation_wait, Duration::from_secs(15));
    }
}
