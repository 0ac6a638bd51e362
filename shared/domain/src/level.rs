//! Stock levels per (sku, location): units on hand, units held by
//! reservations, and the rules every change of a level follows. Pure: the
//! stores read a level, ask these rules for the next one, and write it on
//! the condition that nobody wrote in between.
//!
//! - `available = on_hand - reserved`; none of the three is ever negative.
//! - A physical count sets `on_hand` as of its `occurred_at` (Square's rule):
//!   the latest count by `occurred_at` wins, and a change that occurred
//!   before it, arriving after it, is recorded but moves nothing.

use super::MAX_QUANTITY;
use std::cmp::Ordering;
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A client's RFC 3339 instant, kept in UTC at millisecond precision
/// (`2026-12-04T09:30:00.000Z`), so stored values also sort as strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OccurredAt(String);

/// How far ahead of the server's clock a client's `occurred_at` may be.
pub const CLOCK_SKEW_MS: i128 = 5 * 60 * 1000;

impl OccurredAt {
    /// Parses an RFC 3339 timestamp with an offset; refuses one further
    /// ahead of `now_ms` (Unix milliseconds) than [`CLOCK_SKEW_MS`]: a
    /// change cannot have occurred in the future, and one dated there
    /// would outrank every real count.
    pub fn parse(raw: &str, now_ms: u64) -> Result<Self, String> {
        let t = OffsetDateTime::parse(raw, &Rfc3339)
            .map_err(|_| "must be an RFC 3339 timestamp with an offset".to_owned())?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        if ms > i128::from(now_ms) + CLOCK_SKEW_MS {
            return Err("must not be in the future".into());
        }
        if ms < 0 {
            return Err("must be after 1970-01-01T00:00:00Z".into());
        }
        Ok(Self::from_unix_ms(ms as u64))
    }

    /// The instant `ms` after the Unix epoch.
    pub fn from_unix_ms(ms: u64) -> Self {
        let nanos = i128::from(ms) * 1_000_000;
        let t =
            OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Self(format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ))
    }

    /// A stored value, written by [`OccurredAt::from_unix_ms`].
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Unix milliseconds (0 if the stored value is not RFC 3339).
    pub fn unix_ms(&self) -> u64 {
        OffsetDateTime::parse(&self.0, &Rfc3339)
            .map(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
            .unwrap_or(0)
    }
}

impl fmt::Display for OccurredAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One (sku, location) level as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Level {
    pub on_hand: i64,
    /// Units held by reservations not yet committed, released or swept:
    /// expired holds count here until released (see [`Level::as_of`]).
    pub reserved: i64,
    /// The `occurred_at` of the count that last set `on_hand`.
    pub counted_at: Option<OccurredAt>,
}

/// Why a level cannot change as asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LevelError {
    /// Fewer units available than the change takes.
    InsufficientAvailable { available: i64 },
    /// The result would exceed [`MAX_QUANTITY`].
    Overflow,
    /// A count below the units reserved: available would be negative.
    /// Release or commit holds first (the count is not lost: the client
    /// sends it again).
    CountBelowReserved { reserved: i64 },
}

/// What an adjustment did to a level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adjusted {
    /// `on_hand` moved by the delta.
    Applied(Level),
    /// It occurred before the last count, which already includes it: it is
    /// recorded in the ledger and moves nothing.
    BeforeCount { counted_at: OccurredAt },
}

/// What a physical count did to a level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Counted {
    /// `on_hand` is the count plus the changes that occurred after it and
    /// were applied before it arrived; `delta` is how far it moved.
    Set { level: Level, delta: i64 },
    /// A later count exists: this one is recorded and moves nothing.
    Superseded { counted_at: OccurredAt },
}

impl Level {
    /// Units that can be taken or held now.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }

    /// The level as it is once holds of `expired_units` in all have expired:
    /// they stop counting at their expiry, whether or not they were swept.
    pub fn as_of(&self, expired_units: i64) -> Level {
        Level {
            reserved: (self.reserved - expired_units.max(0)).max(0),
            ..self.clone()
        }
    }

    fn with_on_hand(&self, on_hand: Option<i64>) -> Result<Level, LevelError> {
        match on_hand {
            Some(q) if q > MAX_QUANTITY => Err(LevelError::Overflow),
            // Taking units may not reach into what is held; adding is always
            // fine, even to a level already below its holds.
            Some(q) if q < self.reserved && q < self.on_hand => {
                Err(LevelError::InsufficientAvailable {
                    available: self.available().max(0),
                })
            }
            Some(q) => Ok(Level {
                on_hand: q,
                ..self.clone()
            }),
            None => Err(LevelError::Overflow),
        }
    }

    /// A signed change of `on_hand` (a sale, a receipt, a correction) that
    /// occurred at `occurred_at`. Taking units leaves at least `reserved`.
    pub fn adjust(&self, delta: i64, occurred_at: &OccurredAt) -> Result<Adjusted, LevelError> {
        if let Some(counted_at) = &self.counted_at
            && occurred_at < counted_at
        {
            return Ok(Adjusted::BeforeCount {
                counted_at: counted_at.clone(),
            });
        }
        self.with_on_hand(self.on_hand.checked_add(delta))
            .map(Adjusted::Applied)
    }

    /// Holds `quantity` units (> 0) for a reservation.
    pub fn reserve(&self, quantity: i64) -> Result<Level, LevelError> {
        if quantity > self.available() {
            return Err(LevelError::InsufficientAvailable {
                available: self.available().max(0),
            });
        }
        Ok(Level {
            reserved: self.reserved + quantity,
            ..self.clone()
        })
    }

    /// A hold of `quantity` ends: released, or expired and swept.
    pub fn release(&self, quantity: i64) -> Level {
        Level {
            reserved: (self.reserved - quantity).max(0),
            ..self.clone()
        }
    }

    /// A hold of `quantity` is committed (the order shipped): the units
    /// leave `on_hand` and the hold ends.
    pub fn commit(&self, quantity: i64) -> Level {
        let taken = quantity.min(self.on_hand);
        Level {
            on_hand: self.on_hand - taken,
            reserved: (self.reserved - quantity).max(0),
            ..self.clone()
        }
    }

    /// A physical count of `counted` units as of `occurred_at`.
    /// `applied_after` sums the deltas already applied to this level that
    /// occurred after `occurred_at` (read from the ledger): the count does
    /// not undo them.
    pub fn count(
        &self,
        counted: i64,
        occurred_at: &OccurredAt,
        applied_after: i64,
    ) -> Result<Counted, LevelError> {
        if let Some(counted_at) = &self.counted_at
            && occurred_at.cmp(counted_at) != Ordering::Greater
        {
            return Ok(Counted::Superseded {
                counted_at: counted_at.clone(),
            });
        }
        let on_hand = counted
            .checked_add(applied_after)
            .filter(|q| *q <= MAX_QUANTITY)
            .ok_or(LevelError::Overflow)?
            .max(0);
        if on_hand < self.reserved {
            return Err(LevelError::CountBelowReserved {
                reserved: self.reserved,
            });
        }
        Ok(Counted::Set {
            level: Level {
                on_hand,
                reserved: self.reserved,
                counted_at: Some(occurred_at.clone()),
            },
            delta: on_hand - self.on_hand,
        })
    }
}

/// A transfer of `quantity` units between two levels of one sku: both
/// change, or neither.
pub fn transfer(from: &Level, to: &Level, quantity: i64) -> Result<(Level, Level), LevelError> {
    if quantity > from.available() {
        return Err(LevelError::InsufficientAvailable {
            available: from.available().max(0),
        });
    }
    let from = Level {
        on_hand: from.on_hand - quantity,
        ..from.clone()
    };
    let to = to.with_on_hand(to.on_hand.checked_add(quantity))?;
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_840_000_000; // 2025-12-04T09:20:00Z

    fn at(minute: u64) -> OccurredAt {
        OccurredAt::from_unix_ms(NOW + minute * 60_000)
    }

    fn level(on_hand: i64, reserved: i64) -> Level {
        Level {
            on_hand,
            reserved,
            counted_at: None,
        }
    }

    #[test]
    fn occurred_at_is_normalised_to_utc_milliseconds_and_never_in_the_future() {
        let t = OccurredAt::parse("2025-12-04T10:20:00.5+01:00", NOW).unwrap();
        assert_eq!(t.as_str(), "2025-12-04T09:20:00.500Z");
        assert!(OccurredAt::parse("2025-12-04T09:24:59Z", NOW).is_ok());
        assert!(OccurredAt::parse("2025-12-04T09:25:01Z", NOW).is_err());
        for bad in [
            "2025-12-04",
            "yesterday",
            "2025-12-04T09:00:00",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(OccurredAt::parse(bad, NOW).is_err(), "{bad}");
        }
        assert!(at(1) > at(0), "stored values sort as strings");
        assert!(at(0).as_str() > OccurredAt::from_unix_ms(NOW - 1).as_str());
    }

    #[test]
    fn nothing_goes_negative_and_available_is_on_hand_minus_reserved() {
        let l = level(10, 0).reserve(7).unwrap();
        assert_eq!((l.on_hand, l.reserved, l.available()), (10, 7, 3));
        assert_eq!(
            l.reserve(4),
            Err(LevelError::InsufficientAvailable { available: 3 })
        );
        // A sale may take only what is not held.
        assert_eq!(
            l.adjust(-4, &at(0)),
            Err(LevelError::InsufficientAvailable { available: 3 })
        );
        assert_eq!(l.adjust(-3, &at(0)), Ok(Adjusted::Applied(level(7, 7))));
        let committed = l.commit(7);
        assert_eq!((committed.on_hand, committed.reserved), (3, 0));
        assert_eq!(l.release(7), level(10, 0));
        assert_eq!(l.release(100), level(10, 0));
        assert_eq!(level(1, 0).reserve(0).map(|l| l.reserved), Ok(0));
        assert_eq!(
            level(MAX_QUANTITY, 0).adjust(1, &at(0)),
            Err(LevelError::Overflow)
        );
        // Below its holds (a batch sale took held units): receipts still land.
        assert_eq!(
            level(2, 5).adjust(1, &at(0)),
            Ok(Adjusted::Applied(level(3, 5)))
        );
        assert!(level(2, 5).adjust(-1, &at(0)).is_err());
    }

    #[test]
    fn expired_holds_stop_counting_before_they_are_swept() {
        let l = level(10, 8);
        assert_eq!(l.available(), 2);
        assert_eq!(l.as_of(5).available(), 7);
        assert_eq!(l.as_of(50).reserved, 0);
        assert_eq!(l.as_of(5).reserve(7).map(|l| l.available()), Ok(0));
    }

    /// A count of 40 units at minute 0 reaches the server after a sale of 2
    /// at minute 2 was applied: on hand is 38 (the count keeps the later
    /// sale). A sale of 3 at minute -5 arriving after the count is recorded
    /// and moves nothing: the count already saw its effect.
    #[test]
    fn a_count_sets_the_level_as_of_its_time_and_earlier_changes_arriving_late_move_nothing() {
        let start = level(50, 0);
        let Adjusted::Applied(after_sale) = start.adjust(-2, &at(2)).unwrap() else {
            panic!("applied")
        };
        let Counted::Set {
            level: counted,
            delta,
        } = after_sale.count(40, &at(0), -2).unwrap()
        else {
            panic!("set")
        };
        assert_eq!((counted.on_hand, delta), (38, -10));
        assert_eq!(counted.counted_at, Some(at(0)));
        // A sale after the count applies as usual.
        assert_eq!(
            counted.adjust(-3, &at(1)),
            Ok(Adjusted::Applied(Level {
                on_hand: 35,
                ..counted.clone()
            }))
        );
        let early = OccurredAt::from_unix_ms(NOW - 5 * 60_000);
        assert_eq!(
            counted.adjust(-3, &early),
            Ok(Adjusted::BeforeCount { counted_at: at(0) })
        );
        // An older count arriving later changes nothing; a newer one does.
        assert_eq!(
            counted.count(99, &early, 0),
            Ok(Counted::Superseded { counted_at: at(0) })
        );
        assert_eq!(
            counted.count(99, &at(0), 0),
            Ok(Counted::Superseded { counted_at: at(0) })
        );
        let Counted::Set { level: recount, .. } = counted.count(12, &at(9), 0).unwrap() else {
            panic!("set")
        };
        assert_eq!(recount.on_hand, 12);
    }

    #[test]
    fn a_count_below_what_is_held_is_refused_and_changes_nothing() {
        let held = level(10, 6);
        assert_eq!(
            held.count(5, &at(0), 0),
            Err(LevelError::CountBelowReserved { reserved: 6 })
        );
        assert!(matches!(held.count(6, &at(0), 0), Ok(Counted::Set { .. })));
    }

    #[test]
    fn a_transfer_moves_available_units_only() {
        let from = level(10, 4);
        let to = level(1, 0);
        let (f, t) = transfer(&from, &to, 6).unwrap();
        assert_eq!((f.on_hand, f.reserved, t.on_hand), (4, 4, 7));
        assert_eq!(
            transfer(&from, &to, 7),
            Err(LevelError::InsufficientAvailable { available: 6 })
        );
        assert_eq!(
            transfer(&from, &level(MAX_QUANTITY, 0), 1),
            Err(LevelError::Overflow)
        );
    }
}

/// Most (sku, location) pairs one `POST /v1/levels/batch-retrieve` reads.
pub const MAX_LEVEL_PAIRS: usize = 1_000;

/// A validated `POST /v1/levels/batch-retrieve` body: distinct pairs, in the
/// order asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelPairs(pub Vec<(super::Sku, super::location::LocationId)>);

impl LevelPairs {
    pub fn from_json(body: &serde_json::Value) -> Result<Self, super::FieldErrors> {
        use super::location::LocationId;
        let mut r = super::validation::ObjectReader::new(body)?;
        r.deny_unknown(&["pairs"]);
        let mut errors = r.errors;
        let Some(list) = body.get("pairs").and_then(serde_json::Value::as_array) else {
            errors.push("pairs", "must be an array of {sku, location?}");
            return Err(errors);
        };
        if list.is_empty() || list.len() > MAX_LEVEL_PAIRS {
            errors.push("pairs", format!("must hold 1 to {MAX_LEVEL_PAIRS} pairs"));
            return Err(errors);
        }
        let mut pairs = Vec::with_capacity(list.len());
        let mut seen = std::collections::HashSet::new();
        for (i, pair) in list.iter().enumerate() {
            let field = |name: &str| format!("pairs[{i}].{name}");
            let Some(obj) = pair.as_object() else {
                errors.push(format!("pairs[{i}]"), "must be an object {sku, location?}");
                continue;
            };
            if let Some(unknown) = obj.keys().find(|k| *k != "sku" && *k != "location") {
                errors.push(field(unknown), "is not a known field");
            }
            let sku = match obj.get("sku").and_then(serde_json::Value::as_str) {
                Some(raw) => super::Sku::parse(raw)
                    .map_err(|e| errors.push(field("sku"), e))
                    .ok(),
                None => {
                    errors.push(field("sku"), "is required (a string)");
                    None
                }
            };
            let location = match obj.get("location") {
                None | Some(serde_json::Value::Null) => Some(LocationId::default_location()),
                Some(serde_json::Value::String(raw)) => LocationId::parse(raw)
                    .map_err(|e| errors.push(field("location"), e))
                    .ok(),
                Some(_) => {
                    errors.push(field("location"), "must be a string");
                    None
                }
            };
            if let (Some(sku), Some(location)) = (sku, location)
                && seen.insert((sku.clone(), location.clone()))
            {
                pairs.push((sku, location));
            }
        }
        errors.into_result(Self(pairs))
    }
}

#[cfg(test)]
mod pairs_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_are_one_to_a_thousand_distinct_and_each_error_is_named() {
        let p = LevelPairs::from_json(&json!({"pairs": [
            {"sku": "A"}, {"sku": "A", "location": "p-1"}, {"sku": "A", "location": "default"}
        ]}))
        .unwrap();
        assert_eq!(
            p.0.len(),
            2,
            "the default location named or not is one pair"
        );
        let errors = LevelPairs::from_json(&json!({"pairs": [
            {"sku": "a b"}, {"location": "p"}, 3, {"sku": "B", "x": 1}
        ]}))
        .unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["pairs[0].sku", "pairs[1].sku", "pairs[2]", "pairs[3].x"]
        );
        let many: Vec<_> = (0..1_001)
            .map(|i| json!({"sku": format!("S{i}")}))
            .collect();
        assert!(LevelPairs::from_json(&json!({"pairs": many})).is_err());
        assert!(LevelPairs::from_json(&json!({"pairs": []})).is_err());
        assert!(LevelPairs::from_json(&json!({})).is_err());
    }
}
