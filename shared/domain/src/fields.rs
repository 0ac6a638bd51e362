//! Sparse fieldsets (`?fields=a,b`, issue 26 §5): the top-level fields of a
//! representation a client wants. Stores read only what a selection needs
//! (a DynamoDB `ProjectionExpression`); the API sends only what it names.

use super::validation::FieldErrors;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;

/// A representation whose top-level fields a client may select.
pub trait Selectable: Serialize {
    /// Every top-level field, in representation order, the identifying one
    /// first. The one list the validator, the stores and the API document
    /// use, so they cannot drift apart.
    const FIELDS: &'static [&'static str];
}

/// A non-empty set of `E`'s fields, each one of `E::FIELDS`.
pub struct Fields<E> {
    /// In `E::FIELDS` order, each once.
    names: Vec<&'static str>,
    of: PhantomData<fn() -> E>,
}

impl<E> Clone for Fields<E> {
    fn clone(&self) -> Self {
        Self {
            names: self.names.clone(),
            of: PhantomData,
        }
    }
}

impl<E> fmt::Debug for Fields<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fields").field(&self.names).finish()
    }
}

impl<E> PartialEq for Fields<E> {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
    }
}

impl<E: Selectable> Fields<E> {
    /// Parses a `fields` value: names separated by commas, nothing else (the
    /// parameter's schema pattern says the same). A name repeated counts
    /// once; an unknown or empty one is refused, the message listing the
    /// known names.
    pub fn parse(raw: &str) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut names = Vec::new();
        for name in raw.split(',') {
            match E::FIELDS.iter().find(|known| **known == name) {
                Some(known) if !names.contains(known) => names.push(*known),
                Some(_) => {}
                None if name.is_empty() => errors.push(
                    "fields",
                    format!("names no field; known: {}", E::FIELDS.join(",")),
                ),
                None => errors.push(
                    "fields",
                    format!("unknown field {name:?}; known: {}", E::FIELDS.join(",")),
                ),
            }
        }
        names.sort_by_key(|name| E::FIELDS.iter().position(|known| known == name));
        errors.into_result(Self {
            names,
            of: PhantomData,
        })
    }

    /// Only the identifying field (the first of `E::FIELDS`): for reads that
    /// only ask whether a record exists.
    pub fn identifier() -> Self {
        Self {
            names: E::FIELDS.iter().take(1).copied().collect(),
            of: PhantomData,
        }
    }

    /// These fields and `more` (names from `E::FIELDS`): what the client
    /// selected plus what the server reads itself (an entity tag's sources,
    /// a sort key). The output keeps to the client's selection.
    pub fn and(&self, more: &[&str]) -> Self {
        debug_assert!(
            more.iter().all(|name| E::FIELDS.contains(name)),
            "{more:?} names a field {:?} does not have",
            E::FIELDS
        );
        let names = E::FIELDS
            .iter()
            .filter(|known| self.contains(known) || more.contains(known))
            .copied()
            .collect();
        Self {
            names,
            of: PhantomData,
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(&name)
    }

    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// `value`'s representation with only these fields. A field the whole
    /// representation leaves out when empty is left out here too.
    pub fn select(&self, value: &E) -> Result<Map<String, Value>, serde_json::Error> {
        match serde_json::to_value(value)? {
            Value::Object(mut map) => {
                map.retain(|name, _| self.contains(name));
                Ok(map)
            }
            other => Err(serde::ser::Error::custom(format!(
                "a selectable representation must be an object, not {other}"
            ))),
        }
    }
}

/// Asserts that `E::FIELDS` names exactly the fields of `full`'s
/// representation (`full` with every optional field set).
#[cfg(any(test, feature = "test-support"))]
pub fn assert_names_every_field<E: Selectable>(full: &E) {
    let value = serde_json::to_value(full).expect("serialisable");
    let mut shown: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut named = E::FIELDS.to_vec();
    shown.sort_unstable();
    named.sort_unstable();
    assert_eq!(shown, named, "FIELDS and the representation differ");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize)]
    struct Pair {
        id: String,
        count: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    }

    impl Selectable for Pair {
        const FIELDS: &'static [&'static str] = &["id", "count", "note"];
    }

    #[test]
    fn parses_known_names_in_representation_order_once_each() {
        let fields = Fields::<Pair>::parse("note,id,note").unwrap();
        assert_eq!(fields.names(), ["id", "note"]);
        assert!(fields.contains("note") && !fields.contains("count"));
    }

    #[test]
    fn refuses_unknown_and_empty_names_listing_the_known_ones() {
        let err = Fields::<Pair>::parse("id,secret").unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].field, "fields");
        assert_eq!(
            err.0[0].message,
            "unknown field \"secret\"; known: id,count,note"
        );
        assert!(Fields::<Pair>::parse("").is_err());
        assert!(Fields::<Pair>::parse("id,,count").is_err());
        assert!(
            Fields::<Pair>::parse("ID").is_err(),
            "names are case-sensitive"
        );
    }

    #[test]
    fn selects_only_the_named_fields() {
        let pair = Pair {
            id: "a".into(),
            count: 2,
            note: None,
        };
        let fields = Fields::<Pair>::parse("count,note").unwrap();
        assert_eq!(
            Value::Object(fields.select(&pair).unwrap()),
            json!({"count": 2})
        );
        assert_eq!(Fields::<Pair>::identifier().names(), ["id"]);
    }

    #[test]
    fn the_server_adds_what_it_reads_itself() {
        let client = Fields::<Pair>::parse("note").unwrap();
        let read = client.and(&["id"]);
        assert_eq!(read.names(), ["id", "note"]);
        assert_eq!(client.names(), ["note"]);
    }
}
