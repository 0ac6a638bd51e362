//! Standard Webhooks (<https://www.standardwebhooks.com/>) signing, via the `standardwebhooks` crate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use standardwebhooks::{Webhook, WebhookError};

const PREFIX: &str = "whsec_";
/// Key length bounds recommended by the spec (we generate 32).
const KEY_LEN: std::ops::RangeInclusive<usize> = 24..=64;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("no signing secret")]
    NoSecret,
    #[error("invalid signing secret")]
    InvalidSecret,
    /// Bad/missing headers, stale timestamp, wrong signature, or a non-UTF-8 payload.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

/// New endpoint secret: "whsec_" + standard base64 of 32 random bytes (CSPRNG).
pub fn generate_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("{PREFIX}{}", STANDARD.encode(key))
}

fn webhook(secret: &str) -> Result<Webhook, SigningError> {
    let key = secret
        .strip_prefix(PREFIX)
        .and_then(|b64| STANDARD.decode(b64).ok())
        .filter(|k| KEY_LEN.contains(&k.len()))
        .ok_or(SigningError::InvalidSecret)?;
    Ok(Webhook::from_bytes(key)?)
}

/// `webhook-signature` header value: one "v1,<b64>" per secret, space-separated, so that
/// during rotation receivers holding either the old or the new secret can verify.
/// The body must be UTF-8 (the spec signs `id.timestamp.body` as text).
pub fn signature_header(
    secrets: &[&str],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SigningError> {
    if secrets.is_empty() {
        return Err(SigningError::NoSecret);
    }
    let sigs = secrets
        .iter()
        .map(|s| Ok(webhook(s)?.sign(msg_id, timestamp, body)?))
        .collect::<Result<Vec<_>, SigningError>>()?;
    Ok(sigs.join(" "))
}

/// Verify `webhook-id` / `webhook-timestamp` (±5 min) / `webhook-signature` against `body`.
pub fn verify(secret: &str, headers: &http::HeaderMap, body: &[u8]) -> Result<(), SigningError> {
    Ok(webhook(secret)?.verify(body, headers)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        h.insert(
            "webhook-timestamp",
            HeaderValue::from_str(&ts.to_string()).unwrap(),
        );
        h.insert("webhook-signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn secret_format() {
        let s = generate_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&s[6..]).unwrap().len(), 32);
        assert_ne!(s, generate_secret());
    }

    #[test]
    fn known_vector() {
        // From the standardwebhooks reference test suite.
        let sig = signature_header(
            &["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"],
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn rotation_both_verify_and_tamper_fails() {
        let (old, new) = (generate_secret(), generate_secret());
        let body = br#"{"type":"item.updated","data":{"sku":"A-1"}}"#;
        let ts = now();
        let sig = signature_header(&[&old, &new], "msg_1", ts, body).unwrap();
        assert_eq!(sig.split(' ').count(), 2);
        assert!(sig.split(' ').all(|s| s.starts_with("v1,")));
        let h = headers("msg_1", ts, &sig);
        verify(&old, &h, body).unwrap();
        verify(&new, &h, body).unwrap();
        assert!(verify(&generate_secret(), &h, body).is_err());
        assert!(verify(&new, &h, br#"{"type":"item.updated","data":{"sku":"A-2"}}"#).is_err());
        assert!(verify(&new, &headers("msg_2", ts, &sig), body).is_err());
        // Stale timestamps are refused even with a valid signature.
        let old_ts = ts - 3600;
        let stale = signature_header(&[&new], "msg_1", old_ts, body).unwrap();
        assert!(verify(&new, &headers("msg_1", old_ts, &stale), body).is_err());
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(
            signature_header(&[], "m", 1, b"{}"),
            Err(SigningError::NoSecret)
        ));
        for bad in [
            "",
            "whsec_",
            "whsec_!!!",
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "whsec_YWJj",
        ] {
            assert!(
                matches!(
                    signature_header(&[bad], "m", 1, b"{}"),
                    Err(SigningError::InvalidSecret)
                ),
                "{bad}"
            );
        }
        let s = generate_secret();
        assert!(signature_header(&[&s], "m", 1, &[0xff, 0xfe]).is_err());
    }
}
