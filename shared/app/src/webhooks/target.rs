//! Where webhooks may be sent (the SSRF guard). The HTTPS sender that
//! enforces it is an adapter (`stockroom_aws::webhook_sender`).
//!
//! Checks happen three times: on registration (`validate_url` + `check_resolved`),
//! before each send (`validate_url`, which covers IP-literal hosts that bypass DNS),
//! and at connect time (the sender's resolver calls `resolve_checked`, against
//! DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

const MAX_URL_LEN: usize = 2048;
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

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
pub async fn resolve_checked(host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
