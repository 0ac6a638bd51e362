//! A physical count: the units found at a location as of `occurred_at`
//! (see `level::Level::count` for how it sets the level).

use super::level::OccurredAt;
use super::location::LocationId;
use super::validation::{FieldErrors, ObjectReader};
use super::{MAX_QUANTITY, MAX_REFERENCE, Sku};

/// The ledger's reason for a count's movement.
pub const COUNT_REASON: &str = "count";

/// A validated `POST /v1/counts` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCount {
    pub sku: Sku,
    /// The default location when the body names none.
    pub location: LocationId,
    pub on_hand: i64,
    pub occurred_at: OccurredAt,
    pub reference: Option<String>,
}

impl NewCount {
    /// `now_ms`: the server's clock (a count may not be dated in the future).
    pub fn from_json(body: &serde_json::Value, now_ms: u64) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(body)?;
        r.deny_unknown(&["sku", "location", "on_hand", "occurred_at", "reference"]);
        let sku = r
            .string("sku", true, Sku::MAX_LEN)
            .and_then(|raw| Sku::parse(&raw).map_err(|e| r.errors.push("sku", e)).ok());
        let location = match r.string("location", false, Sku::MAX_LEN) {
            None => Some(LocationId::default_location()),
            Some(raw) => LocationId::parse(&raw)
                .map_err(|e| r.errors.push("location", e))
                .ok(),
        };
        let on_hand = r.int("on_hand", true, 0, MAX_QUANTITY);
        let occurred_at = r.string("occurred_at", true, 64).and_then(|raw| {
            OccurredAt::parse(&raw, now_ms)
                .map_err(|e| r.errors.push("occurred_at", e))
                .ok()
        });
        let reference = r.string("reference", false, MAX_REFERENCE);
        match (sku, location, on_hand, occurred_at) {
            (Some(sku), Some(location), Some(on_hand), Some(occurred_at))
                if r.errors.is_empty() =>
            {
                Ok(Self {
                    sku,
                    location,
                    on_hand,
                    occurred_at,
                    reference,
                })
            }
            _ => Err(r.errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_764_840_000_000; // 2025-12-04T09:20:00Z

    #[test]
    fn a_count_names_a_figure_and_when_it_was_taken_never_in_the_future() {
        let c = NewCount::from_json(
            &json!({"sku": "S", "on_hand": 40, "occurred_at": "2025-12-04T08:00:00Z"}),
            NOW,
        )
        .unwrap();
        assert!(c.location.is_default());
        assert_eq!(c.occurred_at.as_str(), "2025-12-04T08:00:00.000Z");
        for (body, field) in [
            (
                json!({"sku": "S", "on_hand": -1, "occurred_at": "2025-12-04T08:00:00Z"}),
                "on_hand",
            ),
            (json!({"sku": "S", "on_hand": 1}), "occurred_at"),
            (
                json!({"sku": "S", "on_hand": 1, "occurred_at": "2025-12-04T10:00:00Z"}),
                "occurred_at",
            ),
            (
                json!({"sku": "S", "on_hand": 1, "occurred_at": "today"}),
                "occurred_at",
            ),
            (
                json!({"on_hand": 1, "occurred_at": "2025-12-04T08:00:00Z"}),
                "sku",
            ),
            (
                json!({"sku": "S", "on_hand": 1, "occurred_at": "2025-12-04T08:00:00Z", "x": 1}),
                "x",
            ),
        ] {
            let errors = NewCount::from_json(&body, NOW).unwrap_err();
            assert!(
                errors.0.iter().any(|e| e.field == field),
                "{body}: {errors:?}"
            );
        }
    }
}
