//! Stockroom's pure domain: value types that cannot hold invalid data, the
//! stock and batch rules, and request parsing. No AWS, Lambda, HTTP or async
//! runtime types here: the crate does not depend on them.

pub mod batch;
pub mod change;
pub mod chunk_plan;
pub mod count;
pub mod event;
pub mod fields;
mod item;
pub mod key;
pub mod level;
pub mod location;
mod movement;
pub mod reservation;
pub mod stock_split;
pub mod transfer;
pub mod upload;
pub mod validation;
pub mod webhook;

pub use fields::{Fields, Selectable};
pub use item::{
    ETAG_FIELDS, ITEM_FIELDS, Item, ItemFields, ItemPatch, MAX_DESCRIPTION, MAX_NAME, NewItem,
};
pub use movement::{
    Adjustment, MAX_REASON, MAX_REFERENCE, MOVEMENT_FIELDS, Movement, MovementContext, MovementId,
};
pub use validation::{FieldError, FieldErrors};

use std::fmt;

/// An id of the form `<prefix><alphanumerics>`, at most 64 bytes (API key,
/// webhook and delivery ids): anything else cannot exist.
pub fn is_prefixed_id(raw: &str, prefix: &str) -> bool {
    raw.len() <= 64
        && raw.len() > prefix.len()
        && raw.starts_with(prefix)
        && raw[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

/// Largest quantity an item may hold; keeps every sum far from i64 overflow.
pub const MAX_QUANTITY: i64 = 1_000_000_000_000;

/// A tenant identifier. Only ever taken from the authorizer context.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("invalid tenant id {raw:?}"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stock keeping unit: `^[A-Za-z0-9._-]{1,64}$`, but not `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Sku(String);

impl Sku {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(format!("must be 1 to {} characters", Self::MAX_LEN));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err("may contain only letters, digits, '.', '_' and '-'".into());
        }
        if raw == "." || raw == ".." {
            // Dot segments: URL clients remove them from a path, so such an
            // item could never be addressed.
            return Err("must not be \".\" or \"..\"".into());
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The outcome of applying a signed delta to a quantity, by the stock rules.
#[derive(Debug, PartialEq, Eq)]
pub enum StockCheck {
    Ok(i64),
    /// The result would be negative: stock never goes below zero.
    Insufficient {
        available: i64,
    },
    /// The result would exceed [`MAX_QUANTITY`].
    Overflow,
}

pub fn apply_delta(quantity: i64, delta: i64) -> StockCheck {
    match quantity.checked_add(delta) {
        Some(q) if q < 0 => StockCheck::Insufficient {
            available: quantity,
        },
        Some(q) if q > MAX_QUANTITY => StockCheck::Overflow,
        Some(q) => StockCheck::Ok(q),
        None => StockCheck::Overflow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_accepts_the_documented_alphabet() {
        assert!(Sku::parse("ABC-123_x.y").is_ok());
        assert!(Sku::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn sku_rejects_empty_long_and_foreign_characters() {
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse(&"a".repeat(65)).is_err());
        assert!(Sku::parse("a b").is_err());
        assert!(Sku::parse("a/b").is_err());
        assert!(Sku::parse("é").is_err());
        assert!(Sku::parse(".").is_err());
        assert!(Sku::parse("..").is_err());
        assert!(Sku::parse("...").is_ok());
        assert!(Sku::parse(".a").is_ok());
    }

    #[test]
    fn tenant_ids_are_lowercase_slugs() {
        assert!(TenantId::parse("acme-1").is_ok());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a#b").is_err());
    }

    #[test]
    fn stock_never_goes_negative_nor_overflows() {
        assert_eq!(apply_delta(5, -5), StockCheck::Ok(0));
        assert_eq!(
            apply_delta(5, -6),
            StockCheck::Insufficient { available: 5 }
        );
        assert_eq!(apply_delta(MAX_QUANTITY, 1), StockCheck::Overflow);
        assert_eq!(apply_delta(1, i64::MAX), StockCheck::Overflow);
        assert_eq!(apply_delta(0, 7), StockCheck::Ok(7));
    }
}
