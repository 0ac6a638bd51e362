//! Reservations: units of one (sku, location) held for a while (a cart at
//! checkout), then committed (the order ships: the units leave on hand),
//! released, or expired. A hold stops counting at its expiry when read,
//! whether or not anything has swept it yet.

use super::location::LocationId;
use super::validation::{FieldErrors, ObjectReader};
use super::{MAX_QUANTITY, MAX_REFERENCE, Sku};
use serde::{Deserialize, Serialize};

/// Shortest and longest hold, in seconds.
pub const MIN_EXPIRES_IN: i64 = 1;

/// The ledger's reasons for the movements of holds (`reserved_delta`).
pub const PLACE_REASON: &str = "reservation_placed";
/// Units leave on hand and the hold ends.
pub const COMMIT_REASON: &str = "reservation_committed";
pub const RELEASE_REASON: &str = "reservation_released";
pub const EXPIRE_REASON: &str = "reservation_expired";
pub const MAX_EXPIRES_IN: i64 = 7 * 24 * 3600;

/// A reservation's id: `rsv_<ULID>_<sku>`, or `rsv_<ULID>.<bucket>_<sku>`
/// for a hold placed in one of a split sku's stock buckets
/// (`stock_split`). It names the sku (and the bucket) so a reservation is
/// read with its level, strongly consistent, by key (an index would be
/// eventually consistent: a commit right after the hold could miss it).
/// Ids sort by creation time (to the millisecond) within a sku.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId {
    raw: String,
    sku: Sku,
    bucket: Option<u16>,
}

const ID_PREFIX: &str = "rsv_";
const ULID_LEN: usize = 26;

impl ReservationId {
    pub fn generate(sku: &Sku) -> Self {
        Self::generate_in(sku, None)
    }

    /// A new id of a hold in `bucket` of the sku's stock (None: unsplit).
    pub fn generate_in(sku: &Sku, bucket: Option<u16>) -> Self {
        let ulid = ulid::Ulid::new();
        let raw = match bucket {
            Some(b) => format!("{ID_PREFIX}{ulid}.{b}_{sku}"),
            None => format!("{ID_PREFIX}{ulid}_{sku}"),
        };
        Self {
            raw,
            sku: sku.clone(),
            bucket,
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let invalid = || "is not a reservation id".to_owned();
        let rest = raw.strip_prefix(ID_PREFIX).ok_or_else(invalid)?;
        let (ulid, sku) = (rest.get(..ULID_LEN), rest.get(ULID_LEN..));
        let (Some(ulid), Some(rest)) = (ulid, sku) else {
            return Err(invalid());
        };
        // `.<bucket>` before the sku: a hold in a split sku's bucket.
        let (bucket, sku) = match rest.strip_prefix('.') {
            Some(tail) => {
                let (digits, sku) = tail.split_once('_').ok_or_else(invalid)?;
                let canonical = !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && (digits == "0" || !digits.starts_with('0'));
                let bucket: u16 = digits.parse().map_err(|_| invalid())?;
                if !canonical || bucket >= crate::stock_split::MAX_BUCKETS {
                    return Err(invalid());
                }
                (Some(bucket), sku)
            }
            None => (None, rest.strip_prefix('_').ok_or_else(invalid)?),
        };
        ulid::Ulid::from_string(ulid).map_err(|_| invalid())?;
        if ulid.chars().any(|c| c.is_ascii_lowercase()) {
            return Err(invalid());
        }
        let sku = Sku::parse(sku).map_err(|_| invalid())?;
        Ok(Self {
            raw: raw.to_owned(),
            sku,
            bucket,
        })
    }

    pub fn sku(&self) -> &Sku {
        &self.sku
    }

    /// The stock bucket the hold is in (None: the sku's own level).
    pub fn bucket(&self) -> Option<u16> {
        self.bucket
    }

    /// The ULID part: its key within the item's collection.
    pub fn ulid(&self) -> &str {
        &self.raw[ID_PREFIX.len()..ID_PREFIX.len() + ULID_LEN]
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl std::fmt::Display for ReservationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Where a reservation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Holding its units until `expires_at`.
    Active,
    /// Its units left on hand.
    Committed,
    /// Given back by the client.
    Released,
    /// Its time ran out before a commit or a release.
    Expired,
}

impl ReservationStatus {
    pub const ALL: &[ReservationStatus] = &[
        ReservationStatus::Active,
        ReservationStatus::Committed,
        ReservationStatus::Released,
        ReservationStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == raw)
    }

    /// Whether it still holds units as of `now` (an `Active` hold past its
    /// expiry holds nothing, though stored as active until swept).
    pub fn holds(self, expires_at_ms: u64, now_ms: u64) -> bool {
        self == Self::Active && now_ms < expires_at_ms
    }
}

/// What a client may still do with a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Commit,
    Release,
}

/// Why a reservation cannot end as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndingRefused {
    /// It ended already, another way (the status it has).
    Ended(ReservationStatus),
    /// It expired: its units are free again, so it cannot be committed.
    Expired,
}

/// Whether `ending` may happen to a reservation in `status`, expiring at
/// `expires_at_ms`, at `now_ms`. Ending it the way it already ended is a
/// repeat (`Ok(false)`: nothing to do, same answer).
pub fn may_end(
    status: ReservationStatus,
    expires_at_ms: u64,
    now_ms: u64,
    ending: Ending,
) -> Result<bool, EndingRefused> {
    match (status, ending) {
        (ReservationStatus::Committed, Ending::Commit)
        | (ReservationStatus::Released, Ending::Release) => Ok(false),
        // Releasing an expired hold is what the client wanted anyway.
        (ReservationStatus::Expired, Ending::Release) => Ok(false),
        (ReservationStatus::Expired, Ending::Commit) => Err(EndingRefused::Expired),
        (ReservationStatus::Active, _) if now_ms >= expires_at_ms => match ending {
            Ending::Commit => Err(EndingRefused::Expired),
            Ending::Release => Ok(true),
        },
        (ReservationStatus::Active, _) => Ok(true),
        (ended, _) => Err(EndingRefused::Ended(ended)),
    }
}

/// A validated `POST /v1/reservations` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReservation {
    pub sku: Sku,
    /// The default location when the body names none.
    pub location: LocationId,
    pub quantity: i64,
    pub expires_in_seconds: i64,
    pub reference: Option<String>,
}

impl NewReservation {
    pub fn from_json(body: &serde_json::Value) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(body)?;
        r.deny_unknown(&["sku", "location", "quantity", "expires_in", "reference"]);
        let sku = r
            .string("sku", true, Sku::MAX_LEN)
            .and_then(|raw| Sku::parse(&raw).map_err(|e| r.errors.push("sku", e)).ok());
        let location = match r.string("location", false, 64) {
            None => Some(LocationId::default_location()),
            Some(raw) => LocationId::parse(&raw)
                .map_err(|e| r.errors.push("location", e))
                .ok(),
        };
        let quantity = r.int("quantity", true, 1, MAX_QUANTITY);
        let expires_in = r.int("expires_in", true, MIN_EXPIRES_IN, MAX_EXPIRES_IN);
        let reference = r.string("reference", false, MAX_REFERENCE);
        match (sku, location, quantity, expires_in) {
            (Some(sku), Some(location), Some(quantity), Some(expires_in_seconds))
                if r.errors.is_empty() =>
            {
                Ok(Self {
                    sku,
                    location,
                    quantity,
                    expires_in_seconds,
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

    #[test]
    fn a_reservation_names_a_sku_a_quantity_and_how_long_it_holds() {
        let r = NewReservation::from_json(
            &json!({"sku": "S-1", "quantity": 2, "expires_in": 900, "reference": "cart-9"}),
        )
        .unwrap();
        assert!(r.location.is_default());
        assert_eq!((r.quantity, r.expires_in_seconds), (2, 900));
        for (body, field) in [
            (
                json!({"sku": "S 1", "quantity": 1, "expires_in": 60}),
                "sku",
            ),
            (
                json!({"sku": "S", "quantity": 0, "expires_in": 60}),
                "quantity",
            ),
            (
                json!({"sku": "S", "quantity": 1, "expires_in": 0}),
                "expires_in",
            ),
            (
                json!({"sku": "S", "quantity": 1, "expires_in": 604_801}),
                "expires_in",
            ),
            (json!({"sku": "S", "quantity": 1}), "expires_in"),
            (
                json!({"sku": "S", "quantity": 1, "expires_in": 60, "location": "a/b"}),
                "location",
            ),
            (
                json!({"sku": "S", "quantity": 1, "expires_in": 60, "price": 3}),
                "price",
            ),
        ] {
            let errors = NewReservation::from_json(&body).unwrap_err();
            assert!(
                errors.0.iter().any(|e| e.field == field),
                "{body}: {errors:?}"
            );
        }
    }

    #[test]
    fn a_reservation_id_names_its_sku_and_nothing_else_parses() {
        let sku = Sku::parse("MUG_1.b").unwrap();
        let id = ReservationId::generate(&sku);
        let parsed = ReservationId::parse(id.as_str()).unwrap();
        assert_eq!((parsed.sku(), parsed.ulid().len()), (&sku, 26));
        assert_eq!(parsed, id);
        for bad in [
            "",
            "rsv_",
            "mv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R_A",
            "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R",
            "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R_",
            "rsv_01jd8x3b6q5w3z2y1x0v9t8s7r_A",
            "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7RA_B",
            "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R_a b",
            "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R._A",
            "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R.07_A",
            "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R.+7_A",
            "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R.64_A",
            "rsv_01JD8X3B6Q5W3Z2Y1X0V9T8S7R.7A",
        ] {
            assert!(ReservationId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_hold_in_a_stock_bucket_names_the_bucket_and_its_sku() {
        let sku = Sku::parse("MUG_1.b").unwrap();
        for bucket in [0, 7, 63] {
            let id = ReservationId::generate_in(&sku, Some(bucket));
            assert!(id.as_str().contains(&format!(".{bucket}_MUG_1.b")), "{id}");
            let parsed = ReservationId::parse(id.as_str()).unwrap();
            assert_eq!((parsed.sku(), parsed.bucket()), (&sku, Some(bucket)));
            assert_eq!(parsed.ulid(), id.ulid());
        }
        assert_eq!(ReservationId::generate(&sku).bucket(), None);
    }

    #[test]
    fn a_hold_ends_once_and_an_expired_one_cannot_be_committed() {
        use ReservationStatus::*;
        let (expiry, before, after) = (1_000, 999, 1_000);
        assert_eq!(may_end(Active, expiry, before, Ending::Commit), Ok(true));
        assert_eq!(may_end(Active, expiry, before, Ending::Release), Ok(true));
        assert_eq!(
            may_end(Active, expiry, after, Ending::Commit),
            Err(EndingRefused::Expired)
        );
        assert_eq!(may_end(Active, expiry, after, Ending::Release), Ok(true));
        assert_eq!(
            may_end(Committed, expiry, before, Ending::Commit),
            Ok(false)
        );
        assert_eq!(
            may_end(Committed, expiry, before, Ending::Release),
            Err(EndingRefused::Ended(Committed))
        );
        assert_eq!(
            may_end(Released, expiry, before, Ending::Commit),
            Err(EndingRefused::Ended(Released))
        );
        assert_eq!(may_end(Expired, expiry, after, Ending::Release), Ok(false));
        assert!(Active.holds(expiry, before));
        assert!(!Active.holds(expiry, after));
        assert!(!Committed.holds(expiry, before));
    }
}
