//! The HTTP client of the public API: base URL, bearer key, retries of
//! "try again later" answers, and one-line messages for every failure.

use crate::error::{CliError, Exit};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// Every API call (not the file upload) gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request that may be repeated (GETs, and POSTs carrying an
/// `Idempotency-Key`) is retried after 429, 5xx or timeouts.
pub const RETRY_BUDGET: Duration = Duration::from_secs(120);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two attempts without a `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// RFC 9457 problem details, as the API (and its gateway) answers errors.
#[derive(Debug, Default, Deserialize)]
pub struct Problem {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Deserialize)]
pub struct FieldError {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub record_id: Option<String>,
}

/// A non-2xx answer, with its problem details when the body had them.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub problem: Problem,
    /// `METHOD /path`, for messages.
    pub what: String,
}

impl Refused {
    async fn read(what: String, resp: Response) -> Self {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let problem = serde_json::from_str::<Problem>(&text).unwrap_or_else(|_| Problem {
            detail: text.chars().take(200).collect::<String>().trim().to_owned(),
            ..Problem::default()
        });
        Self {
            status,
            problem,
            what,
        }
    }

    fn label(&self) -> String {
        match self.problem.code.as_str() {
            "" => self.status.as_u16().to_string(),
            code => format!("{} {code}", self.status.as_u16()),
        }
    }

    /// The error to end the program with, and its exit code.
    pub fn into_error(self) -> CliError {
        let detail = match self.problem.detail.as_str() {
            "" => self
                .status
                .canonical_reason()
                .unwrap_or("no detail")
                .to_owned(),
            d => d.to_owned(),
        };
        let (exit, message) = match self.status.as_u16() {
            401 => (
                Exit::Auth,
                format!("the API key was refused ({}): {detail}", self.label()),
            ),
            403 => (
                Exit::Auth,
                format!(
                    "the API key is not allowed to do this ({}): {detail}",
                    self.label()
                ),
            ),
            404 => (
                Exit::NotFound,
                format!("not found ({}): {detail}", self.label()),
            ),
            s if s >= 500 || s == 429 => (
                Exit::Network,
                format!(
                    "{} failed, the server answered {}: {detail}",
                    self.what,
                    self.label()
                ),
            ),
            _ => {
                let mut m = format!("{} was refused ({}): {detail}", self.what, self.label());
                for e in self.problem.errors.iter().take(10) {
                    m.push_str(&format!("\n  {}: {}", e.field, e.message));
                }
                if self.problem.errors.len() > 10 {
                    m.push_str(&format!(
                        "\n  ... and {} more",
                        self.problem.errors.len() - 10
                    ));
                }
                (Exit::Usage, m)
            }
        };
        CliError::new(exit, message)
    }
}

/// Whether a failed request may be sent again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// GETs, and POSTs with an `Idempotency-Key`: sent again after 429, 5xx
    /// and timeouts.
    Safe,
    /// Sent once.
    Never,
}

pub struct Api {
    base: Url,
    key: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base_url: &str, key: Option<String>) -> Result<Self, CliError> {
        let base = Url::parse(base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                CliError::usage(format!(
                    "invalid API URL {base_url:?} (STOCKROOM_URL or --url): expected http(s)://host[:port]"
                ))
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("stockroom-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            base,
            key: key.filter(|k| !k.is_empty()),
            http,
        })
    }

    /// The raw client, for requests outside the API (the file upload).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// A request to `path` (from `/v1/...`) with the bearer key.
    pub fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, CliError> {
        let key = self.key.as_deref().ok_or_else(|| {
            CliError::usage("no API key: set STOCKROOM_API_KEY or pass --api-key")
        })?;
        Ok(self
            .http
            .request(method, self.url(path))
            .bearer_auth(key)
            .timeout(REQUEST_TIMEOUT))
    }

    /// Sends a request built by `build` (called again for each attempt) and
    /// returns the response, 2xx or not; transport failures are errors
    /// (exit 5). With [`Retry::Safe`], 429, 5xx, timeouts and dropped
    /// connections are retried
    /// for up to [`RETRY_BUDGET`], honouring `Retry-After`: a busy API
    /// (say, one applying a million-row import) is waited for, not given up on.
    pub async fn send(
        &self,
        retry: Retry,
        build: impl Fn() -> Result<RequestBuilder, CliError>,
    ) -> Result<Response, CliError> {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result = build()?.send().await;
            let delay = match &result {
                Ok(resp) => {
                    let s = resp.status();
                    if s != StatusCode::TOO_MANY_REQUESTS && !s.is_server_error() {
                        return result.map_err(|e| transport_error(self.base(), &e));
                    }
                    retry_after(resp).unwrap_or(backoff)
                }
                // A connection that cannot be made (refused, no such host) is
                // final at once: nobody is listening. A timeout, or a
                // connection dropped mid-request, may go better next time.
                Err(e) if e.is_connect() && !e.is_timeout() => {
                    return Err(transport_error(self.base(), e));
                }
                Err(_) => backoff,
            };
            if retry == Retry::Never || started.elapsed() + delay > RETRY_BUDGET {
                return result.map_err(|e| transport_error(self.base(), &e));
            }
            tokio::time::sleep(delay).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// [`Api::send`], then any non-2xx answer as an error.
    pub async fn send_ok(
        &self,
        what: &str,
        retry: Retry,
        build: impl Fn() -> Result<RequestBuilder, CliError>,
    ) -> Result<Response, CliError> {
        let resp = self.send(retry, build).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(Refused::read(what.to_owned(), resp).await.into_error())
        }
    }

    /// GET `path` and decode its JSON (retried; any non-2xx is an error).
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, CliError> {
        let what = format!("GET {path}");
        let resp = self
            .send_ok(&what, Retry::Safe, || self.request(Method::GET, path))
            .await?;
        read_json(&what, resp).await
    }
}

/// Reads a non-2xx response's problem details.
pub async fn refused(what: &str, resp: Response) -> Refused {
    Refused::read(what.to_owned(), resp).await
}

/// Decodes a 2xx body; a body that is not the expected JSON is a server fault.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    what: &str,
    resp: Response,
) -> Result<T, CliError> {
    let bytes = resp.bytes().await.map_err(|e| {
        CliError::new(
            Exit::Network,
            format!("{what}: reading the answer failed: {}", cause(&e)),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        CliError::new(
            Exit::Network,
            format!("{what}: the answer is not what the API sends ({e})"),
        )
    })
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// "cannot reach http://127.0.0.1:3000: connection refused"
pub fn transport_error(target: &str, e: &reqwest::Error) -> CliError {
    let why = if e.is_timeout() {
        format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
    } else {
        cause(e)
    };
    CliError::new(Exit::Network, format!("cannot reach {target}: {why}"))
}

/// The innermost cause of a transport error, in a few words.
pub fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner: &dyn std::error::Error = e;
    let mut io_kind = None;
    while let Some(next) = inner.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        inner = next;
    }
    use std::io::ErrorKind::*;
    match io_kind {
        Some(ConnectionRefused) => "connection refused".into(),
        Some(ConnectionReset) => "connection reset".into(),
        Some(TimedOut) => "timed out".into(),
        _ => inner.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: &str, detail: &str) -> CliError {
        Refused {
            status: StatusCode::from_u16(status).unwrap(),
            problem: Problem {
                code: code.into(),
                detail: detail.into(),
                errors: Vec::new(),
            },
            what: "GET /v1/items/A".into(),
        }
        .into_error()
    }

    #[test]
    fn refusals_map_to_exit_codes_and_one_line_messages() {
        let e = refused(401, "unauthorized", "A valid API key is required.");
        assert_eq!(e.exit, Exit::Auth);
        assert_eq!(
            e.message,
            "the API key was refused (401 unauthorized): A valid API key is required."
        );
        assert_eq!(refused(403, "insufficient_scope", "x").exit, Exit::Auth);
        assert_eq!(refused(404, "item_not_found", "x").exit, Exit::NotFound);
        assert_eq!(refused(503, "", "").exit, Exit::Network);
        assert_eq!(refused(429, "too_many_requests", "x").exit, Exit::Network);
        let e = refused(422, "validation_failed", "bad");
        assert_eq!(e.exit, Exit::Usage);
        assert_eq!(
            e.message,
            "GET /v1/items/A was refused (422 validation_failed): bad"
        );
    }

    #[test]
    fn api_urls_are_checked_and_joined() {
        let api = Api::new("https://api.example.com/live/", None).unwrap();
        assert_eq!(
            api.url("/v1/items"),
            "https://api.example.com/live/v1/items"
        );
        assert!(Api::new("127.0.0.1:3000", None).is_err());
        assert!(Api::new("ftp://x", None).is_err());
        let e = api.request(Method::GET, "/v1/items").err().unwrap();
        assert_eq!(e.exit, Exit::Usage, "no key configured");
    }
}
