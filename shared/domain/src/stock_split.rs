//! A hot sku's stock split into buckets (a flash sale). One item takes a
//! few hundred orders a second at most: every order writes its partition,
//! and orders conditioned on one version serialize. Split, the sku's free
//! units at the default location move into `n` buckets, each a level of
//! its own partition; an order takes its units from one bucket (its
//! movement and hold live there), so the orders spread over `n` partitions
//! and contend only within a bucket. Each bucket, like the sku's own level,
//! never goes below zero, so neither does their sum; the sku's level is the
//! sum of its own and its buckets'. Moving units between them (the split,
//! a rebalance, the merge) is one transaction that leaves the sum alone.

use super::level::Level;
use super::validation::{FieldErrors, ObjectReader};

/// Most buckets a sku's stock splits into: at 2,000 orders/s, 64 buckets
/// keep each partition near 0.3 of its write limit (docs/scaling.md).
pub const MAX_BUCKETS: u16 = 64;
/// Fewest buckets worth a split.
pub const MIN_BUCKETS: u16 = 2;

/// How many buckets, checked.
pub fn bucket_count(n: i64) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|n| (MIN_BUCKETS..=MAX_BUCKETS).contains(n))
        .ok_or_else(|| format!("must be from {MIN_BUCKETS} to {MAX_BUCKETS}"))
}

/// A validated `PUT /v1/items/{sku}/stock-split` body: how many buckets.
pub fn buckets_from_json(body: &serde_json::Value) -> Result<u16, FieldErrors> {
    let mut r = ObjectReader::new(body)?;
    r.deny_unknown(&["buckets"]);
    let buckets = r.int(
        "buckets",
        true,
        i64::from(MIN_BUCKETS),
        i64::from(MAX_BUCKETS),
    );
    match buckets.map(bucket_count) {
        Some(Ok(n)) if r.errors.is_empty() => Ok(n),
        _ => Err(r.errors),
    }
}

/// `units` spread over `buckets` as evenly as can be (the first ones get
/// the remainder, one each).
pub fn shares(units: i64, buckets: u16) -> Vec<i64> {
    let n = i64::from(buckets.max(1));
    let (each, rest) = (units / n, units % n);
    (0..n).map(|i| each + i64::from(i < rest)).collect()
}

/// The bucket an order tries first: from a random `draw`, so concurrent
/// orders spread evenly.
pub fn first_choice(draw: u64, buckets: u16) -> u16 {
    (draw % u64::from(buckets.max(1))) as u16
}

/// A bucket with at least `need` available units, drawn among them by
/// `draw` (so orders retrying at once do not all pick the same one).
/// `available`: (bucket, units available).
pub fn pick(available: &[(u16, i64)], need: i64, draw: u64) -> Option<u16> {
    let enough: Vec<u16> = available
        .iter()
        .filter(|(_, units)| *units >= need)
        .map(|(bucket, _)| *bucket)
        .collect();
    let n = u64::try_from(enough.len()).ok().filter(|n| *n > 0)?;
    enough.get(usize::try_from(draw % n).ok()?).copied()
}

/// Where the units an order of `need` misses come from when no bucket has
/// them alone: into the fullest bucket, from the next fullest others, as
/// few as can be. `(target, [(source, units)])`; None when all of them
/// together have fewer than `need`.
pub fn gather_plan(available: &[(u16, i64)], need: i64) -> Option<(u16, Vec<(u16, i64)>)> {
    let mut by_units: Vec<(u16, i64)> = available.iter().copied().filter(|(_, u)| *u > 0).collect();
    by_units.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: i64 = by_units.iter().map(|(_, u)| u).sum();
    let (&(target, has), rest) = by_units.split_first()?;
    if total < need {
        return None;
    }
    let mut missing = need - has;
    let mut moves = Vec::new();
    for &(source, units) in rest {
        if missing <= 0 {
            break;
        }
        let take = units.min(missing);
        moves.push((source, take));
        missing -= take;
    }
    Some((target, moves))
}

/// The sku's level as clients see it: its own level plus its buckets'
/// (the last count is the sku's own; buckets are never counted).
pub fn combined<'a>(own: &Level, buckets: impl IntoIterator<Item = &'a Level>) -> Level {
    buckets.into_iter().fold(own.clone(), |sum, b| Level {
        on_hand: sum.on_hand + b.on_hand,
        reserved: sum.reserved + b.reserved,
        counted_at: sum.counted_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_takes_two_to_sixty_four_buckets() {
        assert_eq!(bucket_count(2), Ok(2));
        assert_eq!(bucket_count(64), Ok(64));
        for bad in [-1, 0, 1, 65, i64::MAX] {
            assert!(bucket_count(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_split_body_names_its_buckets_and_nothing_else() {
        use serde_json::json;
        assert_eq!(buckets_from_json(&json!({"buckets": 64})), Ok(64));
        for (body, field) in [
            (json!({"buckets": 1}), "buckets"),
            (json!({"buckets": 65}), "buckets"),
            (json!({"buckets": "8"}), "buckets"),
            (json!({}), "buckets"),
            (json!({"buckets": 8, "sku": "A"}), "sku"),
        ] {
            let errors = buckets_from_json(&body).unwrap_err();
            assert!(
                errors.0.iter().any(|e| e.field == field),
                "{body}: {errors:?}"
            );
        }
        assert!(buckets_from_json(&json!([8])).is_err());
    }

    #[test]
    fn shares_are_even_and_sum_to_the_units() {
        assert_eq!(shares(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(shares(3, 4), vec![1, 1, 1, 0]);
        assert_eq!(shares(0, 2), vec![0, 0]);
        for (units, n) in [(1_000_003, 64), (63, 64), (7, 2)] {
            let s = shares(units, n);
            assert_eq!((s.len(), s.iter().sum::<i64>()), (usize::from(n), units));
            assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn draws_land_on_every_bucket() {
        let seen: std::collections::BTreeSet<u16> =
            (0..640u64).map(|d| first_choice(d, 64)).collect();
        assert_eq!(seen.len(), 64);
        assert_eq!(first_choice(u64::MAX, 64), (u64::MAX % 64) as u16);
    }

    #[test]
    fn an_order_goes_to_a_bucket_that_has_enough() {
        let available = [(0, 1), (1, 5), (2, 5), (3, 0)];
        let picked: std::collections::BTreeSet<_> =
            (0..8).filter_map(|d| pick(&available, 1, d)).collect();
        assert_eq!(picked, [0, 1, 2].into());
        let picked: std::collections::BTreeSet<_> =
            (0..8).filter_map(|d| pick(&available, 5, d)).collect();
        assert_eq!(picked, [1, 2].into());
        assert_eq!(pick(&available, 6, 0), None);
        assert_eq!(pick(&[], 1, 0), None);
    }

    #[test]
    fn a_gather_moves_just_the_missing_units_from_the_fewest_buckets() {
        let available = [(0, 2), (1, 4), (2, 0), (3, 3), (4, -1)];
        assert_eq!(gather_plan(&available, 6), Some((1, vec![(3, 2)])));
        assert_eq!(gather_plan(&available, 9), Some((1, vec![(3, 3), (0, 2)])));
        assert_eq!(gather_plan(&available, 4), Some((1, vec![])));
        assert_eq!(gather_plan(&available, 10), None);
        assert_eq!(gather_plan(&[(0, 0)], 1), None);
    }

    #[test]
    fn the_sku_level_sums_its_own_and_its_buckets() {
        let own = Level {
            on_hand: 5,
            reserved: 2,
            counted_at: None,
        };
        let buckets = [
            Level {
                on_hand: 3,
                reserved: 1,
                counted_at: None,
            },
            Level {
                on_hand: 4,
                reserved: 0,
                counted_at: None,
            },
        ];
        let sum = combined(&own, &buckets);
        assert_eq!((sum.on_hand, sum.reserved, sum.available()), (12, 3, 9));
    }
}
