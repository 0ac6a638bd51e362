use super::location::LocationId;
use super::validation::{FieldErrors, ObjectReader};
use super::{MAX_QUANTITY, Sku};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MAX_REASON: usize = 100;
pub const MAX_REFERENCE: usize = 200;

/// A validated `POST /v1/items/{sku}/adjustments` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjustment {
    pub delta: i64,
    pub reason: String,
    pub reference: Option<String>,
    /// Where the units are: the default location when the body names none.
    pub location: LocationId,
    /// When the change happened, if the client says (a sale recorded late);
    /// see `level::Level::adjust`. Checked against the clock by the use case.
    pub occurred_at: Option<super::level::OccurredAt>,
}

impl Adjustment {
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(body)?;
        r.deny_unknown(&["delta", "reason", "reference", "location", "occurred_at"]);
        let delta = r.int("delta", true, -MAX_QUANTITY, MAX_QUANTITY);
        if delta == Some(0) {
            r.errors.push("delta", "must not be zero");
        }
        let reason = r.string("reason", true, MAX_REASON);
        let reference = r.string("reference", false, MAX_REFERENCE);
        let location = match r.string("location", false, Sku::MAX_LEN) {
            None => Some(LocationId::default_location()),
            Some(raw) => LocationId::parse(&raw)
                .map_err(|e| r.errors.push("location", e))
                .ok(),
        };
        // The format here; "not in the future" needs the clock (the use case).
        let occurred_at = r.string("occurred_at", false, 64).and_then(|raw| {
            super::level::OccurredAt::parse(&raw, u64::MAX / 2)
                .map_err(|e| r.errors.push("occurred_at", e))
                .ok()
        });
        match (delta, reason, location) {
            (Some(delta), Some(reason), Some(location)) if r.errors.is_empty() => Ok(Self {
                delta,
                reason,
                reference,
                location,
                occurred_at,
            }),
            _ => Err(r.errors),
        }
    }
}

/// Identifier of one stock movement; sorts by creation time (ULID).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MovementId(String);

impl MovementId {
    pub fn generate() -> Self {
        Self(format!("mv_{}", ulid::Ulid::new()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The smallest id minted at `unix_ms`: every id minted earlier sorts
    /// below it (the change feed's settle horizon).
    pub fn floor_at(unix_ms: u64) -> Self {
        Self(format!("mv_{}", ulid::Ulid::from_parts(unix_ms, 0)))
    }

    /// An id minted at `unix_ms` (tests that control time).
    pub fn minted_at(unix_ms: u64) -> Self {
        Self(format!(
            "mv_{}",
            ulid::Ulid::from_parts(unix_ms, ulid::Ulid::new().random())
        ))
    }

    /// When the id was minted (Unix milliseconds), if it is a movement id.
    pub fn minted_ms(id: &str) -> Option<u64> {
        let ulid = ulid::Ulid::from_string(id.strip_prefix("mv_")?).ok()?;
        Some(ulid.timestamp_ms())
    }
}

/// Who and what caused a movement (for the audit ledger).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MovementContext {
    pub request_id: String,
    pub key_id: Option<String>,
    /// (batch id, record id) when a batch record makes the movements.
    pub batch_record: Option<(String, String)>,
}

/// Names of the fields a movement representation has (for `?fields=`).
pub const MOVEMENT_FIELDS: &[&str] = &[
    "movement_id",
    "sku",
    "location",
    "stock_bucket",
    "delta",
    "quantity_after",
    "reason",
    "reference",
    "request_id",
    "key_id",
    "batch_id",
    "record_id",
    "occurred_at",
    "applies",
    "reserved_delta",
    "reserved_after",
    "created_at",
];

impl super::Selectable for Movement {
    const FIELDS: &'static [&'static str] = MOVEMENT_FIELDS;
}

/// One entry of an item's stock ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Movement {
    #[schema(example = "mv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R")]
    pub movement_id: String,
    pub sku: String,
    /// The location whose stock moved; absent: the default location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Present when the units moved in one of a split sku's stock buckets
    /// (a flash sale spreads its orders over them): `quantity_after` and
    /// `reserved_after` are then the bucket's. The deltas of all of a
    /// sku's movements still sum to its stock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 63)]
    pub stock_bucket: Option<u16>,
    /// Signed change of the quantity (on hand at the location).
    pub delta: i64,
    /// Quantity (on hand at the location) right after this movement.
    pub quantity_after: i64,
    #[schema(example = "sale")]
    pub reason: String,
    pub reference: Option<String>,
    pub request_id: String,
    /// Id of the API key that made the change.
    pub key_id: Option<String>,
    /// Set when the movement was made by a batch record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// When the change happened, as the client stated it (`occurred_at` of an
    /// adjustment or a count); absent: when it was recorded (`created_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// Present and false when the change occurred before the last physical
    /// count of its level, which already includes it: it is recorded and
    /// moved nothing (`quantity_after` is the level as it stayed).
    #[serde(default = "applies", skip_serializing_if = "is_true")]
    #[schema(default = true)]
    pub applies: bool,
    /// Signed change of the units held by reservations at the location: a
    /// hold placed (+), committed, released or expired (−). Present only on
    /// those movements; `delta` stays the change of on hand (0 but for a
    /// commit), so deltas still sum to on hand.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserved_delta: i64,
    /// Units held at the location right after this movement (holds that
    /// expired no longer count); present with `reserved_delta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_after: Option<i64>,
    pub created_at: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn applies() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Movement {
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        sku: &str,
        delta: i64,
        quantity_after: i64,
        reason: &str,
        reference: Option<String>,
        ctx: &MovementContext,
        now: &str,
    ) -> Self {
        Movement {
            movement_id: MovementId::generate().0,
            sku: sku.to_owned(),
            location: None,
            stock_bucket: None,
            delta,
            quantity_after,
            reason: reason.to_owned(),
            reference,
            request_id: ctx.request_id.clone(),
            key_id: ctx.key_id.clone(),
            batch_id: ctx.batch_record.as_ref().map(|(b, _)| b.clone()),
            record_id: ctx.batch_record.as_ref().map(|(_, r)| r.clone()),
            occurred_at: None,
            applies: true,
            reserved_delta: 0,
            reserved_after: None,
            created_at: now.to_owned(),
        }
    }

    /// The movement changed the units held at its location by `delta`,
    /// leaving `after` held.
    pub fn holding(mut self, delta: i64, after: i64) -> Self {
        self.reserved_delta = delta;
        self.reserved_after = Some(after);
        self
    }

    /// The movement of stock at `location` (none recorded for the default one).
    pub fn at(mut self, location: &LocationId) -> Self {
        self.location = (!location.is_default()).then(|| location.as_str().to_owned());
        self
    }

    /// The movement of one of a split sku's stock buckets (None: its own level).
    pub fn in_bucket(mut self, bucket: Option<u16>) -> Self {
        self.stock_bucket = bucket;
        self
    }

    /// The change happened at `at` (the client's `occurred_at`).
    pub fn occurred(mut self, at: Option<&super::level::OccurredAt>) -> Self {
        self.occurred_at = at.map(|a| a.as_str().to_owned());
        self
    }

    /// When the change happened: as stated, else when it was recorded.
    pub fn occurrence(&self) -> &str {
        self.occurred_at.as_deref().unwrap_or(&self.created_at)
    }

    /// Marks the movement as made by record `record_id` of batch `batch_id`.
    pub fn in_batch(mut self, batch_id: &str, record_id: &str) -> Self {
        self.batch_id = Some(batch_id.to_owned());
        self.record_id = Some(record_id.to_owned());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn adjustment_needs_non_zero_delta_and_reason() {
        assert!(Adjustment::from_json(&json!({"delta": -2, "reason": "sale"})).is_ok());
        let err = Adjustment::from_json(&json!({"delta": 0})).unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["delta", "reason"]);
        let at =
            Adjustment::from_json(&json!({"delta": 1, "reason": "r", "location": "p-1"})).unwrap();
        assert_eq!(at.location.as_str(), "p-1");
        let err = Adjustment::from_json(&json!({"delta": 1, "reason": "r", "location": "a b"}))
            .unwrap_err();
        assert_eq!(err.0[0].field, "location");
    }

    #[test]
    fn movement_fields_name_every_field_of_the_representation() {
        let movement = Movement::record(
            "A",
            -1,
            2,
            "sale",
            Some("order-1".into()),
            &MovementContext {
                request_id: "r".into(),
                key_id: Some("key_1".into()),
                batch_record: None,
            },
            "t",
        )
        .in_batch("b_1", "row-1")
        .at(&LocationId::parse("paris-1").unwrap())
        .in_bucket(Some(3))
        .occurred(Some(&crate::level::OccurredAt::from_unix_ms(0)));
        // `applies` shows only when false, the holds only when they changed.
        let movement = Movement {
            applies: false,
            ..movement.holding(-2, 3)
        };
        crate::fields::assert_names_every_field(&movement);
    }

    #[test]
    fn movement_ids_sort_by_time() {
        let a = MovementId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = MovementId::generate();
        assert!(a < b);
        assert!(a.as_str().starts_with("mv_"));
    }

    #[test]
    fn the_floor_of_a_millisecond_sorts_between_the_ids_around_it() {
        let at = MovementId::minted_at(1_700_000_000_123);
        assert_eq!(MovementId::minted_ms(at.as_str()), Some(1_700_000_000_123));
        assert!(MovementId::floor_at(1_700_000_000_123) <= at);
        assert!(MovementId::floor_at(1_700_000_000_124) > at);
        assert!(MovementId::minted_at(1_700_000_000_122) < MovementId::floor_at(1_700_000_000_123));
        assert_eq!(MovementId::minted_ms("nope"), None);
    }
}
