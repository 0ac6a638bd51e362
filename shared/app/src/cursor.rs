//! Opaque, tamper-evident pagination cursors: the store's page key, bound to
//! the tenant and the listing it came from, signed with HMAC-SHA256.
//! A forged, truncated or foreign cursor decodes to an error (HTTP 400).

use crate::domain::TenantId;
use crate::ports::PageKey;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAX_CURSOR_LEN: usize = 2048;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid cursor: {0}")]
pub struct CursorError(pub &'static str);

#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec { key: <redacted> }")
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    /// Which listing the cursor belongs to, e.g. `items` or `movements:SKU`.
    s: String,
    t: String,
    k: PageKey,
}

impl CursorCodec {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }

    fn tag(&self, data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(data);
        mac.finalize().into_bytes()[..TAG_LEN].to_vec()
    }

    pub fn encode(&self, listing: &str, tenant: &TenantId, key: &PageKey) -> String {
        let payload = Payload {
            s: listing.to_owned(),
            t: tenant.to_string(),
            k: key.clone(),
        };
        self.seal(serde_json::to_vec(&payload).unwrap_or_default())
    }

    /// Signs `data` as a cursor (what `encode` sends). Public so the fuzz
    /// target can reach the payload parser behind the signature check.
    pub fn seal(&self, mut data: Vec<u8>) -> String {
        let tag = self.tag(&data);
        data.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(data)
    }

    pub fn decode(
        &self,
        listing: &str,
        tenant: &TenantId,
        cursor: &str,
    ) -> Result<PageKey, CursorError> {
        if cursor.is_empty() || cursor.len() > MAX_CURSOR_LEN {
            return Err(CursorError("wrong length"));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| CursorError("not base64url"))?;
        if raw.len() <= TAG_LEN {
            return Err(CursorError("too short"));
        }
        let (data, tag) = raw.split_at(raw.len() - TAG_LEN);
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).map_err(|_| CursorError("bad key"))?;
        mac.update(data);
        mac.verify_truncated_left(tag)
            .map_err(|_| CursorError("signature mismatch"))?;
        let payload: Payload =
            serde_json::from_slice(data).map_err(|_| CursorError("malformed payload"))?;
        if payload.s != listing || payload.t != tenant.as_str() {
            return Err(CursorError("cursor belongs to another listing"));
        }
        Ok(payload.k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PageKey {
        PageKey::from([
            ("pk".into(), "T#a#I#x".into()),
            ("sk".into(), "ITEM".into()),
        ])
    }

    #[test]
    fn round_trips() {
        let c = CursorCodec::new(b"secret".to_vec());
        let t = TenantId::parse("a").unwrap();
        let s = c.encode("items", &t, &key());
        assert_eq!(c.decode("items", &t, &s).unwrap(), key());
    }

    #[test]
    fn rejects_tampering_foreign_tenants_and_garbage() {
        let c = CursorCodec::new(b"secret".to_vec());
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        let s = c.encode("items", &a, &key());
        assert!(c.decode("items", &b, &s).is_err());
        assert!(c.decode("movements:x", &a, &s).is_err());
        assert!(
            CursorCodec::new(b"other".to_vec())
                .decode("items", &a, &s)
                .is_err()
        );
        let mut bytes = s.clone().into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        assert!(
            c.decode("items", &a, &String::from_utf8(bytes).unwrap())
                .is_err()
        );
        for junk in ["", "!!!", "abc", &"A".repeat(5000), &s[..s.len() - 2]] {
            assert!(c.decode("items", &a, junk).is_err(), "{junk}");
        }
    }
}
