//! Locations: where a tenant keeps stock (warehouses, stores, ...). Every
//! tenant has the default location, which cannot be created or deleted:
//! the single-quantity calls (`/v1/items/{sku}` and its adjustments) act on
//! it.

use super::validation::{FieldErrors, ObjectReader};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The id of the tenant's default location.
pub const DEFAULT_LOCATION: &str = "default";
pub const MAX_LOCATION_NAME: usize = 200;

/// A location id: the same alphabet and rules as a sku.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LocationId(String);

impl LocationId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        super::Sku::parse(raw).map(|sku| Self(sku.as_str().to_owned()))
    }

    pub fn default_location() -> Self {
        Self(DEFAULT_LOCATION.to_owned())
    }

    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_LOCATION
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a location is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocationKind {
    Warehouse,
    Store,
    /// Stock on its way between two locations.
    Transit,
    /// A supplier's or a marketplace's stock sold by the tenant.
    Dropship,
    Other,
}

impl LocationKind {
    pub const ALL: &[(&'static str, LocationKind)] = &[
        ("warehouse", LocationKind::Warehouse),
        ("store", LocationKind::Store),
        ("transit", LocationKind::Transit),
        ("dropship", LocationKind::Dropship),
        ("other", LocationKind::Other),
    ];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == raw)
            .map(|(_, kind)| *kind)
    }
}

/// Names of the fields a location representation has (for `?fields=`).
pub const LOCATION_FIELDS: &[&str] = &["id", "name", "kind", "default", "created_at"];

/// A location as stored and as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Location {
    #[schema(example = "paris-1")]
    pub id: String,
    #[schema(example = "Paris store")]
    pub name: String,
    pub kind: LocationKind,
    /// The tenant's default location: where the single-quantity calls act;
    /// it always exists and cannot be deleted.
    pub default: bool,
    /// RFC 3339 UTC; absent for the default location, which exists with the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

impl super::Selectable for Location {
    const FIELDS: &'static [&'static str] = LOCATION_FIELDS;
}

impl Location {
    pub fn new(new: NewLocation, now: &str) -> Self {
        Self {
            id: new.id.as_str().to_owned(),
            name: new.name,
            kind: new.kind,
            default: false,
            created_at: Some(now.to_owned()),
        }
    }

    /// The tenant's default location, which is not stored.
    pub fn default_location() -> Self {
        Self {
            id: DEFAULT_LOCATION.to_owned(),
            name: "Default location".to_owned(),
            kind: LocationKind::Other,
            default: true,
            created_at: None,
        }
    }
}

/// A validated `POST /v1/locations` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLocation {
    pub id: LocationId,
    pub name: String,
    pub kind: LocationKind,
}

impl NewLocation {
    pub fn from_json(body: &serde_json::Value) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(body)?;
        r.deny_unknown(&["id", "name", "kind"]);
        let id = r
            .string("id", true, 64)
            .and_then(|raw| match LocationId::parse(&raw) {
                Ok(id) if id.is_default() => {
                    r.errors.push(
                        "id",
                        "\"default\" is the tenant's default location, which always exists",
                    );
                    None
                }
                Ok(id) => Some(id),
                Err(e) => {
                    r.errors.push("id", e);
                    None
                }
            });
        let name = r.string("name", true, MAX_LOCATION_NAME);
        let kind = r.string("kind", true, 32).and_then(|raw| {
            let kind = LocationKind::parse(&raw);
            if kind.is_none() {
                let known: Vec<&str> = LocationKind::ALL.iter().map(|(n, _)| *n).collect();
                r.errors.push(
                    "kind",
                    format!("unknown kind {raw:?}; known: {}", known.join(", ")),
                );
            }
            kind
        });
        match (id, name, kind) {
            (Some(id), Some(name), Some(kind)) if r.errors.is_empty() => {
                Ok(Self { id, name, kind })
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
    fn a_location_needs_an_id_a_name_and_a_known_kind() {
        let ok =
            NewLocation::from_json(&json!({"id": "paris-1", "name": "Paris", "kind": "store"}))
                .unwrap();
        assert_eq!((ok.id.as_str(), ok.kind), ("paris-1", LocationKind::Store));
        for (body, field) in [
            (json!({"id": "default", "name": "x", "kind": "store"}), "id"),
            (json!({"id": "a b", "name": "x", "kind": "store"}), "id"),
            (json!({"id": "a", "name": "x", "kind": "shed"}), "kind"),
            (json!({"id": "a", "kind": "store"}), "name"),
            (
                json!({"id": "a", "name": "x", "kind": "store", "extra": 1}),
                "extra",
            ),
        ] {
            let errors = NewLocation::from_json(&body).unwrap_err();
            assert!(
                errors.0.iter().any(|e| e.field == field),
                "{body}: {errors:?}"
            );
        }
    }
}
