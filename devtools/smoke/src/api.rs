//! The public API as the suite calls it: one request, one answer read whole,
//! and expectations that say what came back instead.

use anyhow::{Context, bail};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder};
use serde_json::Value;
use std::time::Duration;

/// No single request waits longer than this (checks have their own bounds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Api {
    http: Client,
    base: String,
    key: String,
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub what: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// The status must be `want`; otherwise an error quoting the answer.
    pub fn expect(&self, want: u16) -> anyhow::Result<&Self> {
        if self.status != want {
            bail!("{}: expected {want}, got {}", self.what, self.summary());
        }
        Ok(self)
    }

    /// The answer must be the problem `status` with `code`.
    pub fn expect_problem(&self, status: u16, code: &str) -> anyhow::Result<&Self> {
        if self.status != status || self.code() != code {
            bail!(
                "{}: expected {status} {code}, got {}",
                self.what,
                self.summary()
            );
        }
        Ok(self)
    }

    /// The problem `code` of an error answer ("" when there is none).
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn str(&self, field: &str) -> anyhow::Result<String> {
        self.body[field]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{}: no string {field:?} in {}", self.what, self.short()))
    }

    /// `409 sku_exists: <detail>`, for messages.
    pub fn summary(&self) -> String {
        match (self.code(), self.body["detail"].as_str()) {
            ("", _) => format!("{} {}", self.status, self.short()),
            (code, Some(detail)) => format!("{} {code}: {detail}", self.status),
            (code, None) => format!("{} {code}", self.status),
        }
    }

    pub fn short(&self) -> String {
        let text = self.text.trim();
        if text.chars().count() > 160 {
            format!("{}...", text.chars().take(160).collect::<String>())
        } else {
            text.to_owned()
        }
    }
}

impl Api {
    pub fn new(base: &str, key: &str) -> anyhow::Result<Self> {
        let http = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stockroom-smoke/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The same API with another key.
    pub fn with_key(&self, key: &str) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            key: key.to_owned(),
        }
    }

    /// A request with this API's key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.unauthenticated(method, path).bearer_auth(&self.key)
    }

    /// A request without any `Authorization`.
    pub fn unauthenticated(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// A request to an absolute URL (a presigned upload URL), without the key.
    pub fn absolute(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.request(method, url)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        send(self.request(Method::DELETE, path)).await
    }
}

/// Sends and reads the whole answer; a body that is not JSON is `Null` in
/// `body` and kept in `text`.
pub async fn send(req: RequestBuilder) -> anyhow::Result<Answer> {
    let (client, built) = req.build_split();
    let built = built.context("building the request")?;
    let what = format!("{} {}", built.method(), built.url().path());
    let resp = client
        .execute(built)
        .await
        .with_context(|| format!("{what}: no answer"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp
        .text()
        .await
        .with_context(|| format!("{what}: reading the answer"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Answer {
        what,
        status,
        headers,
        body,
        text,
    })
}
