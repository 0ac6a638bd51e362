//! A transfer moves units of one sku between two of the tenant's locations:
//! both levels change in one transaction, or neither.

use super::location::LocationId;
use super::validation::{FieldErrors, ObjectReader};
use super::{MAX_QUANTITY, MAX_REFERENCE, Sku};

/// The ledger's reason for both movements of a transfer.
pub const TRANSFER_REASON: &str = "transfer";

/// A validated `POST /v1/transfers` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTransfer {
    pub sku: Sku,
    pub from: LocationId,
    pub to: LocationId,
    pub quantity: i64,
    pub reference: Option<String>,
}

impl NewTransfer {
    pub fn from_json(body: &serde_json::Value) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(body)?;
        r.deny_unknown(&["sku", "from", "to", "quantity", "reference"]);
        let sku = r
            .string("sku", true, Sku::MAX_LEN)
            .and_then(|raw| Sku::parse(&raw).map_err(|e| r.errors.push("sku", e)).ok());
        let location = |r: &mut ObjectReader, field: &str| {
            r.string(field, true, Sku::MAX_LEN).and_then(|raw| {
                LocationId::parse(&raw)
                    .map_err(|e| r.errors.push(field, e))
                    .ok()
            })
        };
        let from = location(&mut r, "from");
        let to = location(&mut r, "to");
        if let (Some(from), Some(to)) = (&from, &to)
            && from == to
        {
            r.errors.push("to", "must differ from `from`");
        }
        let quantity = r.int("quantity", true, 1, MAX_QUANTITY);
        let reference = r.string("reference", false, MAX_REFERENCE);
        match (sku, from, to, quantity) {
            (Some(sku), Some(from), Some(to), Some(quantity)) if r.errors.is_empty() => Ok(Self {
                sku,
                from,
                to,
                quantity,
                reference,
            }),
            _ => Err(r.errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_transfer_names_two_different_locations_and_a_positive_quantity() {
        let t = NewTransfer::from_json(
            &json!({"sku": "S-1", "from": "default", "to": "paris-1", "quantity": 3}),
        )
        .unwrap();
        assert!(t.from.is_default());
        assert_eq!((t.to.as_str(), t.quantity), ("paris-1", 3));
        for (body, field) in [
            (
                json!({"sku": "S", "from": "a", "to": "a", "quantity": 1}),
                "to",
            ),
            (
                json!({"sku": "S", "from": "a", "to": "b", "quantity": 0}),
                "quantity",
            ),
            (json!({"sku": "S", "to": "b", "quantity": 1}), "from"),
            (
                json!({"sku": "S", "from": "a b", "to": "b", "quantity": 1}),
                "from",
            ),
            (
                json!({"sku": "S", "from": "a", "to": "b", "quantity": 1, "x": 1}),
                "x",
            ),
            (json!({"from": "a", "to": "b", "quantity": 1}), "sku"),
        ] {
            let errors = NewTransfer::from_json(&body).unwrap_err();
            assert!(
                errors.0.iter().any(|e| e.field == field),
                "{body}: {errors:?}"
            );
        }
    }
}
