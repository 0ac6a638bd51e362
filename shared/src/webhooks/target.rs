//! Where webhooks may be sent (SSRF guard) and the HTTP sender that enforces it.
//!
//! Checks happen three times: on registration (`validate_url` + `check_resolved`),
//! before each send (`validate_url`, which covers IP-literal hosts that bypass DNS),
//! and at connect time (`GuardedResolver`, against DNS rebinding).

use std::error::Error as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use url::{Host, Url};

const MAX_URL_LEN: usize = 2048;
const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
const USER_AGENT: &str = "Stockroom-Webhooks/1";

/// Which targets are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Dev only: allow the literal `127.0.0.1` (any port, http or https). Nothing else private.
    pub allow_loopback_http: bool,
}

impl TargetPolicy {
    /// Production: https only, public addresses only.
    pub const fn deployed() -> Self {
        Self {
            allow_loopback_http: false,
        }
    }

    /// The dev exception: the exact IPv4 literal 127.0.0.1, never a name or another loopback.
    fn allows_literal(&self, ip: IpAddr) -> bool {
        self.allow_loopback_http && ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

/// Why a webhook URL is refused. Messages are safe to show to API clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("invalid webhook URL: {0}")]
    InvalidUrl(String),
    #[error("webhook URL must use https")]
    SchemeNotAllowed,
    #[error("webhook URL must not contain credentials")]
    Credentials,
    #[error("webhook URL is longer than {MAX_URL_LEN} characters")]
    TooLong,
    // Only echo the address for IP literals: for names it could reveal internal DNS data.
    #[error("{}", forbidden_msg(host, addr))]
    ForbiddenAddress { host: String, addr: IpAddr },
    #[error("webhook URL host {0} could not be resolved")]
    Unresolvable(String),
}

fn forbidden_msg(host: &str, addr: &IpAddr) -> String {
    if host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        format!("address {addr} is private or reserved")
    } else {
        format!("host {host} resolves to a private or reserved address")
    }
}

impl TargetError {
    /// Stable machine-readable code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_webhook_url",
            Self::SchemeNotAllowed => "webhook_url_not_https",
            Self::Credentials => "webhook_url_has_credentials",
            Self::TooLong => "webhook_url_too_long",
            Self::ForbiddenAddress { .. } => "webhook_url_forbidden_address",
            Self::Unresolvable(_) => "webhook_url_unresolvable",
        }
    }
}

/// True if `ip` is not a public unicast address (loopback, private, link-local, reserved...).
// std only: the std helpers that would cover this (`is_global`, `is_shared`, ...) are still
// unstable, and the range list is short enough to audit in one screen.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => v6_forbidden(v6),
    }
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0                                      // 0.0.0.0/8 "this network"
        || a == 10                              // 10/8 private
        || a == 127                             // 127/8 loopback
        || (a == 100 && (b & 0xc0) == 64)       // 100.64/10 CGNAT
        || (a == 169 && b == 254)               // 169.254/16 link-local, cloud metadata
        || (a == 172 && (b & 0xf0) == 16)       // 172.16/12 private
        || (a == 192 && b == 0 && c == 0)       // 192.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)       // 192.0.2/24 TEST-NET-1
        || (a == 192 && b == 168)               // 192.168/16 private
        || (a == 198 && (b & 0xfe) == 18)       // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100)    // 198.51.100/24 TEST-NET-2
        || (a == 203 && b == 0 && c == 113)     // 203.0.113/24 TEST-NET-3
        || a >= 224 // 224/4 multicast, 240/4 reserved, 255.255.255.255
}

fn v6_forbidden(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| v4_forbidden(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    match s {
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => true, // :: and ::1
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => embedded(hi, lo), // ::ffff:a.b.c.d mapped
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => embedded(hi, lo), // ::ffff:0:a.b.c.d translated
        [0, 0, 0, 0, 0, 0, hi, lo] => embedded(hi, lo), // ::a.b.c.d compatible (deprecated)
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => embedded(hi, lo), // 64:ff9b::/96 NAT64
        [0x64, 0xff9b, 1, ..] => true,        // 64:ff9b:1::/48 local-use NAT64
        [0x2002, hi, lo, ..] => embedded(hi, lo), // 2002::/16 6to4
        [0x100, 0, 0, 0, ..] => true,         // 100::/64 discard-only
        [0x2001, 0, ..] => true,              // 2001::/32 Teredo (embedded v4 is obfuscated)
        [0x2001, 0xdb8, ..] => true,          // 2001:db8::/32 documentation
        [a, ..] => {
            (a & 0xfe00) == 0xfc00              // fc00::/7 unique local
                || (a & 0xffc0) == 0xfe80       // fe80::/10 link-local
                || (a & 0xffc0) == 0xfec0       // fec0::/10 site-local (deprecated)
                || (a & 0xff00) == 0xff00 // ff00::/8 multicast
        }
    }
}

/// An IP address is acceptable under `policy` (the dev exception applies to literals only).
fn check_literal(host: &str, ip: IpAddr, policy: &TargetPolicy) -> Result<(), TargetError> {
    if is_forbidden(ip) && !policy.allows_literal(ip) {
        return Err(TargetError::ForbiddenAddress {
            host: host.to_owned(),
            addr: ip,
        });
    }
    Ok(())
}

fn host_ip(host: &Host<&str>) -> Option<IpAddr> {
    match *host {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(_) => None,
    }
}

/// Syntax, scheme, credentials, length, and (for IP-literal hosts) the address itself.
/// Names are checked by `check_resolved` / `GuardedResolver`.
pub fn validate_url(raw: &str, policy: &TargetPolicy) -> Result<Url, TargetError> {
    if raw.len() > MAX_URL_LEN {
        return Err(TargetError::TooLong);
    }
    let url = Url::parse(raw.trim()).map_err(|e| TargetError::InvalidUrl(e.to_string()))?;
    let host = url
        .host()
        .ok_or_else(|| TargetError::InvalidUrl("missing host".into()))?;
    let ip = host_ip(&host);
    match url.scheme() {
        "https" => {}
        // http only for the dev literal 127.0.0.1
        "http" if ip.is_some_and(|ip| policy.allows_literal(ip)) => {}
        _ => return Err(TargetError::SchemeNotAllowed),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    if let Some(ip) = ip {
        check_literal(&host.to_string(), ip, policy)?;
    }
    Ok(url)
}

/// Resolve `host` and refuse if ANY address is forbidden (no dev exception for names).
async fn resolve_checked(host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
    let unresolvable = || TargetError::Unresolvable(host.to_owned());
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| unresolvable())?
            .map_err(|_| unresolvable())?
            .collect();
    if addrs.is_empty() {
        return Err(unresolvable());
    }
    if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
        return Err(TargetError::ForbiddenAddress {
            host: host.to_owned(),
            addr: bad.ip(),
        });
    }
    Ok(addrs)
}

/// Registration-time check: the URL's host (name or literal) must map only to allowed addresses.
pub async fn check_resolved(
    url: &Url,
    policy: &TargetPolicy,
) -> Result<Vec<SocketAddr>, TargetError> {
    let host = url
        .host()
        .ok_or_else(|| TargetError::InvalidUrl("missing host".into()))?;
    let port = url.port_or_known_default().unwrap_or(443);
    match host {
        Host::Domain(name) => resolve_checked(name, port).await,
        literal => {
            let ip = host_ip(&literal).ok_or_else(|| TargetError::InvalidUrl("bad host".into()))?;
            check_literal(&literal.to_string(), ip, policy)?;
            Ok(vec![SocketAddr::new(ip, port)])
        }
    }
}

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

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// Network error, timeout, 3xx, 4xx other than 410, 5xx, or refused target: retry later.
    Failed,
    /// 410: the receiver asked us to stop; disable the endpoint.
    Gone,
}

/// Result of one delivery attempt. `error` is short and safe to show to the endpoint owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
    pub outcome: Outcome,
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
    fn forbidden_table() {
        let forbidden = concat!(
            "0.0.0.0 0.1.2.3 127.0.0.1 127.255.255.254 10.0.0.1 10.255.255.255 172.16.0.1 ",
            "172.31.255.255 192.168.1.1 169.254.169.254 169.254.0.1 100.64.0.1 ",
            "100.127.255.255 192.0.0.8 192.0.2.1 198.51.100.7 203.0.113.9 198.18.0.1 ",
            "198.19.255.255 224.0.0.1 239.255.255.250 240.0.0.1 255.255.255.255 :: ::1 ",
            "fd00::1 fc00::1 fe80::1 febf::1 fec0::1 ff02::1 2001:db8::1 ::ffff:127.0.0.1 ",
            "::ffff:10.0.0.1 ::ffff:169.254.169.254 ::127.0.0.1 ::ffff:0:10.0.0.1 ",
            "64:ff9b::a00:1 64:ff9b::7f00:1 64:ff9b:1::1 2002:0a00:0001:: 2002:7f00:1::1 ",
            "2002:a9fe:a9fe:: 2001::1 100::1 ",
        )
        .split_whitespace();
        for s in forbidden {
            assert!(is_forbidden(s.parse().unwrap()), "{s} should be forbidden");
        }
        let allowed = concat!(
            "8.8.8.8 1.1.1.1 172.15.255.255 172.32.0.1 100.63.255.255 100.128.0.1 ",
            "169.253.1.1 192.0.1.1 198.17.1.1 198.20.0.1 223.255.255.255 11.0.0.1 ",
            "2606:4700::1111 2a00:1450:4001::200e ::ffff:8.8.8.8 64:ff9b::808:808 ",
            "2002:0808:0808::1 2001:4860::8888 ",
        )
        .split_whitespace();
        for s in allowed {
            assert!(!is_forbidden(s.parse().unwrap()), "{s} should be allowed");
        }
    }

    #[test]
    fn validate_table() {
        let (ok, https, addr) = (
            "ok",
            "webhook_url_not_https",
            "webhook_url_forbidden_address",
        );
        let (creds, invalid) = ("webhook_url_has_credentials", "invalid_webhook_url");
        let long = format!("https://hooks.example.com/{}", "a".repeat(2048));
        let cases = [
            ("https://hooks.example.com/x?y=1", PROD, ok),
            ("https://8.8.8.8/hook", PROD, ok),
            ("http://hooks.example.com/x", PROD, https),
            ("http://hooks.example.com/x", DEV, https),
            ("ftp://hooks.example.com/x", PROD, https),
            ("https://127.0.0.1/x", PROD, addr),
            ("http://127.0.0.1:8080/x", PROD, https),
            ("http://127.0.0.1:8080/x", DEV, ok),
            ("https://127.0.0.1:8443/x", DEV, ok),
            // Only the exact literal: names, other loopbacks, v6 and odd encodings stay refused.
            ("http://localhost:8080/", DEV, https),
            ("http://127.0.0.2/", DEV, https),
            ("https://127.0.0.2/", DEV, addr),
            ("http://[::1]/", DEV, https),
            ("https://[::1]/", DEV, addr),
            ("https://[::ffff:127.0.0.1]/", DEV, addr),
            ("https://169.254.169.254/latest", PROD, addr),
            ("https://0x7f000001/", PROD, addr),
            ("https://2130706433/", PROD, addr),
            ("https://0177.0.0.1/", PROD, addr),
            ("https://[fd00::1]/", PROD, addr),
            ("https://user:pw@hooks.example.com/", PROD, creds),
            ("https://user@hooks.example.com/", PROD, creds),
            ("not a url", PROD, invalid),
            ("https://", PROD, invalid),
            ("", PROD, invalid),
            ("mailto:a@b.c", PROD, invalid),
            (&long, PROD, "webhook_url_too_long"),
        ];
        for (url, policy, want) in cases {
            let got = validate_url(url, &policy).map_or_else(|e| e.code(), |_| "ok");
            assert_eq!(got, want, "{url} {policy:?}");
        }
        let err = validate_url("https://10.0.0.1/", &PROD).unwrap_err();
        assert_eq!(err.to_string(), "address 10.0.0.1 is private or reserved");
    }

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

    #[tokio::test]
    async fn localhost_resolves_to_loopback_and_is_refused() {
        for policy in [PROD, DEV] {
            let url = Url::parse("https://localhost:8443/hook").unwrap();
            let err = check_resolved(&url, &policy).await.unwrap_err();
            assert_eq!(err.code(), "webhook_url_forbidden_address", "{err}");
            assert_eq!(
                err.to_string(),
                "host localhost resolves to a private or reserved address"
            );
        }
        let url = Url::parse("http://127.0.0.1:8080/").unwrap();
        let addrs = check_resolved(&url, &DEV).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:8080".parse().unwrap()]);
        let err = check_resolved(&Url::parse("https://127.0.0.1/").unwrap(), &PROD).await;
        assert!(err.is_err());
        let err = check_resolved(&Url::parse("https://nonexistent.invalid/").unwrap(), &PROD).await;
        assert_eq!(err.unwrap_err().code(), "webhook_url_unresolvable");
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
