//! The HTTPS client that sends webhook deliveries under a `TargetPolicy`:
//! redirects not followed, no proxy, every connection resolved through the
//! SSRF guard. The dispatcher sees it as the `WebhookTransport` port.

use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use stockroom_app::ports::{AttemptResult, Outcome, WebhookTransport};
use stockroom_app::webhooks::target::{TargetError, TargetPolicy, resolve_checked, validate_url};

const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
const USER_AGENT: &str = "Stockroom-Webhooks/1";

/// reqwest DNS resolver that refuses names resolving to any forbidden address, so the
/// check is repeated on the address actually connected to (defeats DNS rebinding).
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest substitutes the URL's port.
            let addrs = resolve_checked(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Why a `WebhookSender` could not be built (at init, never per request).
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("webhook TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// TLS for deliveries: rustls with aws-lc (the crypto reqwest's `rustls`
/// feature uses), TLS 1.2 and 1.3, HTTP/1.1 only, trusting Mozilla's roots
/// as the trust anchors `webpki-roots` compiles in. Pre-parsed anchors cost
/// nothing at init; DER certificates handed to reqwest are parsed one by one
/// when the client is built, ~150 of them, and the platform verifier reads
/// the whole system store (docs/performance.md).
fn webhook_tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Sends webhook POSTs under a `TargetPolicy`. Build once and reuse (it holds a connection pool).
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    policy: TargetPolicy,
    timeout: Duration,
}

impl WebhookSender {
    /// Sender with the standard 10 s total / 5 s connect timeouts.
    pub fn new(policy: TargetPolicy) -> Result<Self, SenderError> {
        Self::with_timeout(policy, TOTAL_TIMEOUT)
    }

    /// Sender with a custom total timeout (connect timeout is min(5 s, total)).
    pub fn with_timeout(policy: TargetPolicy, timeout: Duration) -> Result<Self, SenderError> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(webhook_tls_config()?)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .no_proxy()
            .dns_resolver(GuardedResolver)
            .user_agent(USER_AGENT)
            .http1_only()
            .https_only(!policy.allow_loopback_http)
            .referer(false)
            .retry(reqwest::retry::never()) // a POST must not be replayed behind our back
            .build()?;
        Ok(Self {
            client,
            policy,
            timeout,
        })
    }

    /// POST `body` as JSON to `url`. Never panics; every failure becomes `Outcome::Failed`.
    pub async fn send(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> AttemptResult {
        let start = Instant::now();
        let failed = |error: String| AttemptResult {
            status: None,
            latency_ms: elapsed_ms(start),
            error: Some(error),
            retry_after: None,
            outcome: Outcome::Failed,
        };
        // Re-validate: IP-literal hosts never reach the resolver, so this is their only check.
        let url = match validate_url(url, &self.policy) {
            Ok(u) => u,
            Err(e) => return failed(format!("refused: {e}")),
        };
        let header_map = match build_headers(headers) {
            Ok(h) => h,
            Err(e) => return failed(e),
        };
        let resp = match self
            .client
            .post(url)
            .headers(header_map)
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return failed(describe_error(&e, self.timeout)),
        };
        let latency_ms = elapsed_ms(start);
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        drop(resp); // body is never read: receivers' replies are not our business
        let (outcome, error) = match status.as_u16() {
            200..=299 => (Outcome::Delivered, None),
            410 => (Outcome::Gone, Some("HTTP 410 (gone)".to_owned())),
            c @ 300..=399 => (
                Outcome::Failed,
                Some(format!("redirect ({c}) not followed")),
            ),
            c => (Outcome::Failed, Some(format!("HTTP {c}"))),
        };
        AttemptResult {
            status: Some(status.as_u16()),
            latency_ms,
            error,
            retry_after,
            outcome,
        }
    }
}

#[async_trait::async_trait]
impl WebhookTransport for WebhookSender {
    async fn send(&self, url: &str, headers: &[(String, String)], body: Vec<u8>) -> AttemptResult {
        WebhookSender::send(self, url, headers, body).await
    }
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Caller headers plus our content type; framing/routing headers are ours alone.
fn build_headers(headers: &[(String, String)]) -> Result<HeaderMap, String> {
    const RESERVED: [&str; 5] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "content-type",
    ];
    let mut map = HeaderMap::with_capacity(headers.len() + 1);
    for (k, v) in headers {
        let name =
            HeaderName::try_from(k.as_str()).map_err(|_| format!("invalid header name {k:?}"))?;
        if RESERVED.contains(&name.as_str()) {
            return Err(format!("header {name} may not be set"));
        }
        let value = HeaderValue::try_from(v.as_str())
            .map_err(|_| format!("invalid value for header {name}"))?;
        map.append(name, value);
    }
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(map)
}

/// Map a reqwest error to a short, client-safe message (no bodies, no internal detail).
fn describe_error(err: &reqwest::Error, timeout: Duration) -> String {
    let chain = || std::iter::successors(err.source(), |e| (*e).source());
    // Our resolver's refusal travels inside reqwest's DNS error.
    if let Some(t) = chain().find_map(|e| e.downcast_ref::<TargetError>()) {
        return format!("refused: {t}");
    }
    if err.is_timeout() {
        return if timeout.subsec_millis() == 0 {
            format!("timed out after {}s", timeout.as_secs())
        } else {
            format!("timed out after {}ms", timeout.as_millis())
        };
    }
    if err.is_dns() {
        return "could not resolve host".to_owned();
    }
    use std::io::ErrorKind as K;
    let io_kind = chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .map(|mut io| {
            // io::Error::source() skips its own payload, so unwrap nested io::Errors by hand.
            while let Some(inner) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<std::io::Error>())
            {
                io = inner;
            }
            io.kind()
        })
        .last();
    match io_kind {
        Some(K::ConnectionRefused) => "connection refused",
        Some(K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe) => "connection reset",
        // rustls reports handshake/certificate failures as InvalidData.
        Some(K::InvalidData) if err.is_connect() => "TLS handshake failed",
        _ if err.is_connect() => "connection failed",
        _ => "request failed (connection closed or invalid response)",
    }
    .to_owned()
}

/// `Retry-After` as delta-seconds or HTTP-date, capped at 24 h; a past date means "now".
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Over-long digit strings saturate to the cap instead of being ignored.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const DEV: TargetPolicy = TargetPolicy {
        allow_loopback_http: true,
    };
    const PROD: TargetPolicy = TargetPolicy::deployed();

    #[test]
    fn retry_after_parsing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(120))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(120));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
    }

    /// Minimal HTTP/1.1 server: answers each connection's request with `response` (or never,
    /// if None), and counts requests seen.
    async fn serve(response: Option<String>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (counter, response) = (counter.clone(), response.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read headers + the Content-Length body.
                    loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf);
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text[..end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap())
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    match response {
                        Some(r) => {
                            let _ = sock.write_all(r.as_bytes()).await;
                            let _ = sock.shutdown().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        (base, hits)
    }

    /// A canned response with an empty body; `extra` is more header lines.
    fn reply(status: &str, extra: &str) -> Option<String> {
        let close = "Content-Length: 0\r\nConnection: close\r\n\r\n";
        Some(format!("HTTP/1.1 {status}\r\n{extra}{close}"))
    }

    async fn post(sender: &WebhookSender, url: &str) -> AttemptResult {
        let headers = [("webhook-id".to_owned(), "msg_1".to_owned())];
        sender.send(url, &headers, br#"{"ok":true}"#.to_vec()).await
    }

    #[tokio::test]
    async fn sender_outcomes() {
        let sender = WebhookSender::new(DEV).unwrap();
        let body_500 = "HTTP/1.1 500 Oops\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecret";
        let cases = [
            (reply("200 OK", ""), 200, Outcome::Delivered, None),
            (reply("204 No Content", ""), 204, Outcome::Delivered, None),
            (
                Some(body_500.to_owned()),
                500,
                Outcome::Failed,
                Some("HTTP 500"),
            ),
            (
                reply("404 Not Found", ""),
                404,
                Outcome::Failed,
                Some("HTTP 404"),
            ),
            (
                reply("410 Gone", ""),
                410,
                Outcome::Gone,
                Some("HTTP 410 (gone)"),
            ),
        ];
        for (resp, status, outcome, error) in cases {
            let (base, hits) = serve(resp).await;
            let r = post(&sender, &format!("{base}/hook")).await;
            assert_eq!(
                (r.status, r.outcome, r.error.as_deref()),
                (Some(status), outcome, error)
            );
            assert_eq!(hits.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn redirect_is_not_followed() {
        let sender = WebhookSender::new(DEV).unwrap();
        let (base, hits) = serve(reply("302 Found", "Location: http://10.0.0.1/\r\n")).await;
        let r = post(&sender, &format!("{base}/hook")).await;
        assert_eq!((r.status, r.outcome), (Some(302), Outcome::Failed));
        assert_eq!(r.error.as_deref(), Some("redirect (302) not followed"));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retry_after_on_429() {
        let sender = WebhookSender::new(DEV).unwrap();
        let (base, _) = serve(reply("429 Too Many Requests", "Retry-After: 7\r\n")).await;
        let r = post(&sender, &base).await;
        assert_eq!((r.status, r.outcome), (Some(429), Outcome::Failed));
        assert_eq!(r.retry_after, Some(Duration::from_secs(7)));
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let sender = WebhookSender::with_timeout(DEV, Duration::from_secs(1)).unwrap();
        let (base, _) = serve(None).await;
        let start = Instant::now();
        let r = post(&sender, &base).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.error.as_deref(), Some("timed out after 1s"));
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn connection_refused() {
        // Bind then drop to get a (very likely) closed port.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let r = post(&WebhookSender::new(DEV).unwrap(), &url).await;
        assert_eq!((r.status, r.outcome), (None, Outcome::Failed));
        assert_eq!(r.error.as_deref(), Some("connection refused"));
    }

    #[tokio::test]
    async fn tls_failure_and_bad_response_are_reported() {
        // A plain-text peer: https gets a TLS failure, http gets an unparseable reply.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let _ = sock.write_all(b"garbage\r\n\r\n").await;
                let _ = sock.shutdown().await;
            }
        });
        let sender = WebhookSender::new(DEV).unwrap();
        let r = post(&sender, &format!("https://{addr}/")).await;
        assert_eq!(r.error.as_deref(), Some("TLS handshake failed"));
        let r = post(&sender, &format!("http://{addr}/")).await;
        let msg = "request failed (connection closed or invalid response)";
        assert_eq!((r.status, r.error.as_deref()), (None, Some(msg)));
    }

    #[test]
    fn deliveries_trust_mozillas_roots_over_http1() {
        let tls = webhook_tls_config().unwrap();
        assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // webpki-roots carries Mozilla's ~150 server roots; a handful would
        // mean the wrong list.
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
    }

    #[tokio::test]
    async fn an_untrusted_certificate_is_refused_before_any_request() {
        // A TLS receiver on loopback whose certificate no root vouches for.
        // (It takes one connection at a time, so the counts below are exact.)
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connections, handshakes) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (seen, done) = (connections.clone(), handshakes.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                if acceptor.accept(sock).await.is_ok() {
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        // Control: a client that trusts the certificate completes a handshake.
        let mut trusting = rustls::RootCertStore::empty();
        trusting.add(cert.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(trusting)
        .with_no_client_auth();
        let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let _tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, sock)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while handshakes.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(handshakes.load(Ordering::SeqCst), 1);

        let r = post(
            &WebhookSender::new(DEV).unwrap(),
            &format!("https://{addr}/hook"),
        )
        .await;
        assert_eq!((r.status, r.outcome), (None, Outcome::Failed));
        assert_eq!(r.error.as_deref(), Some("TLS handshake failed"));
        // The sender connected, refused the certificate, and sent nothing.
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert_eq!(handshakes.load(Ordering::SeqCst), 1);
    }

    /// Sends each URL with `policy`, expects `error`, and checks nothing connected.
    async fn refused_without_connecting(policy: TargetPolicy, urls: &[&str], error: &str) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sender = WebhookSender::new(policy).unwrap();
        for url in urls {
            let r = post(&sender, &url.replace("PORT", &port.to_string())).await;
            assert_eq!(
                (r.outcome, r.error.as_deref()),
                (Outcome::Failed, Some(error)),
                "{url}"
            );
        }
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "sender must not connect");
    }

    #[tokio::test]
    async fn deployed_refuses_loopback_without_connecting() {
        let urls = ["http://127.0.0.1:PORT/"];
        refused_without_connecting(PROD, &urls, "refused: webhook URL must use https").await;
        let urls = ["https://127.0.0.1:PORT/"];
        let msg = "refused: address 127.0.0.1 is private or reserved";
        refused_without_connecting(PROD, &urls, msg).await;
    }

    #[tokio::test]
    async fn resolver_refuses_names_to_loopback_at_send_time() {
        // https passes validate_url; the GuardedResolver must stop it before connecting.
        let msg = "refused: host localhost resolves to a private or reserved address";
        for policy in [PROD, DEV] {
            refused_without_connecting(policy, &["https://localhost:PORT/"], msg).await;
        }
    }

    #[tokio::test]
    async fn reserved_and_invalid_headers_are_refused() {
        let sender = WebhookSender::new(DEV).unwrap();
        let send = |k: &str, v: &str| {
            let h = [(k.to_owned(), v.to_owned())];
            let s = &sender;
            async move { s.send("http://127.0.0.1:9/", &h, Vec::new()).await.error }
        };
        assert_eq!(
            send("Host", "evil").await.as_deref(),
            Some("header host may not be set")
        );
        let bad = send("x-a", "bad\nvalue").await;
        assert_eq!(bad.as_deref(), Some("invalid value for header x-a"));
    }
}
