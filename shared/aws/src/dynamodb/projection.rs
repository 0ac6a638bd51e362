//! Reads of a few fields (`?fields=`): a `ProjectionExpression` naming the
//! stored attributes behind the selected fields (the callers add to the
//! selection what they read themselves), every name through an
//! `ExpressionAttributeNames` placeholder (many are reserved words: `name`,
//! `status`, `error`...).
//!
//! DynamoDB bills a read by the size of the items it reads, whatever it
//! returns, so a projection saves no capacity: it saves the bytes on the
//! wire and their decoding. `LastEvaluatedKey` is the key of the last item
//! read, returned whatever the projection, so cursors need no key attribute.

use super::{Attrs, from_attrs, to_attrs};
use aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::marker::PhantomData;
use stockroom_app::ports::StoreError;
use stockroom_domain::{Fields, Selectable};

/// Where one kind of record keeps the fields of its API representation.
pub(crate) struct StoredFields {
    /// API fields stored under another name, or built from several
    /// attributes: all of them are read. Any other field is stored under its
    /// own name.
    pub sources: &'static [(&'static str, &'static [&'static str])],
}

impl StoredFields {
    /// Every field under its own name.
    pub const SAME_NAMES: Self = Self { sources: &[] };

    /// The stored attributes behind `fields`, sorted, each once.
    pub fn attributes<E: Selectable>(&self, fields: &Fields<E>) -> BTreeSet<&'static str> {
        let mut attributes = BTreeSet::new();
        for field in fields.names() {
            match self.sources.iter().find(|(api, _)| api == field) {
                Some((_, stored)) => attributes.extend(stored.iter().copied()),
                None => {
                    attributes.insert(*field);
                }
            }
        }
        attributes
    }

    /// The projection that reads `fields`, or none (the whole record).
    pub fn projection<E: Selectable>(&self, fields: Option<&Fields<E>>) -> Option<Projection> {
        let names: Vec<(String, String)> = self
            .attributes(fields?)
            .into_iter()
            .enumerate()
            .map(|(i, attribute)| (format!("#p{i}"), attribute.to_owned()))
            .collect();
        let expression = names
            .iter()
            .map(|(placeholder, _)| placeholder.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Some(Projection { expression, names })
    }
}

/// A `ProjectionExpression` with its attribute name placeholders (`#p0`...,
/// apart from the `#st` of the filters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Projection {
    pub expression: String,
    pub names: Vec<(String, String)>,
}

impl Projection {
    pub fn on_query(self, mut query: QueryFluentBuilder) -> QueryFluentBuilder {
        for (placeholder, attribute) in self.names {
            query = query.expression_attribute_names(placeholder, attribute);
        }
        query.projection_expression(self.expression)
    }

    /// The projection with `attribute` read too (one the caller needs, such
    /// as the key that places each item of a `BatchGetItem`).
    pub fn including(mut self, attribute: &str) -> Self {
        if !self.names.iter().any(|(_, name)| name == attribute) {
            let placeholder = format!("#p{}", self.names.len());
            if !self.expression.is_empty() {
                self.expression.push_str(", ");
            }
            self.expression.push_str(&placeholder);
            self.names.push((placeholder, attribute.to_owned()));
        }
        self
    }

    /// Nothing yet: what [`Projection::including`] adds.
    pub fn nothing() -> Self {
        Self {
            expression: String::new(),
            names: Vec::new(),
        }
    }

    pub fn on_get(self, mut get: GetItemFluentBuilder) -> GetItemFluentBuilder {
        for (placeholder, attribute) in self.names {
            get = get.expression_attribute_names(placeholder, attribute);
        }
        get.projection_expression(self.expression)
    }
}

/// A query, projected when there is a projection.
pub(crate) fn project_query(
    query: QueryFluentBuilder,
    projection: Option<Projection>,
) -> QueryFluentBuilder {
    match projection {
        Some(p) => p.on_query(query),
        None => query,
    }
}

/// A get, projected when there is a projection.
pub(crate) fn project_get(
    get: GetItemFluentBuilder,
    projection: Option<Projection>,
) -> GetItemFluentBuilder {
    match projection {
        Some(p) => p.on_get(get),
        None => get,
    }
}

/// A stored record shape that can stand in for the attributes a projected
/// read did not fetch.
pub(crate) trait Unread: Serialize {
    /// Values for the attributes not read: placeholders nobody sees (the API
    /// sends only the selected fields, and the server reads only what it
    /// always fetches), there only so the strict stored shape decodes.
    fn unread() -> Self;
}

/// Decodes stored records of shape `R`, read whole or through a projection.
pub(crate) struct Decoder<R> {
    /// With a projection: `R::unread()` as attributes, filling in the
    /// attributes not fetched.
    unread: Option<Attrs>,
    shape: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned + Unread> Decoder<R> {
    pub fn new(projected: bool) -> Result<Self, StoreError> {
        Ok(Self {
            unread: projected.then(|| to_attrs(&R::unread())).transpose()?,
            shape: PhantomData,
        })
    }

    pub fn decode(&self, mut attrs: Attrs) -> Result<R, StoreError> {
        if let Some(unread) = &self.unread {
            for (name, value) in unread {
                attrs.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        from_attrs(attrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockroom_domain::Item;
    use stockroom_domain::webhook::Webhook;

    const WEBHOOK_STORED: StoredFields = StoredFields {
        sources: &[("id", &["webhook_id"])],
    };

    #[test]
    fn an_attribute_the_caller_needs_is_added_once() {
        let p = Projection {
            expression: "#p0".into(),
            names: vec![("#p0".into(), "quantity".into())],
        };
        let with_sku = p.including("sku");
        assert_eq!(with_sku.expression, "#p0, #p1");
        assert_eq!(with_sku.names[1], ("#p1".to_owned(), "sku".to_owned()));
        assert_eq!(with_sku.clone().including("sku"), with_sku);
        let only_sku = Projection::nothing().including("sku");
        assert_eq!(only_sku.expression, "#p0");
    }

    #[test]
    fn every_attribute_goes_through_a_placeholder() {
        let fields = Fields::<Item>::parse("quantity,version,name,sku").unwrap();
        let projection = StoredFields::SAME_NAMES.projection(Some(&fields)).unwrap();
        assert_eq!(projection.expression, "#p0, #p1, #p2, #p3");
        let attributes: Vec<&str> = projection.names.iter().map(|(_, a)| a.as_str()).collect();
        // `name` is a reserved word: written plainly, DynamoDB refuses it.
        assert_eq!(attributes, ["name", "quantity", "sku", "version"]);
        assert_eq!(StoredFields::SAME_NAMES.projection::<Item>(None), None);
    }

    #[test]
    fn a_projected_record_decodes_with_placeholders_for_what_was_not_read() {
        use super::super::records::ItemRecord;
        use super::super::{n, s};
        let attrs = Attrs::from([("sku".to_owned(), s("A-1")), ("quantity".to_owned(), n(7))]);
        let strict = Decoder::<ItemRecord>::new(false).unwrap();
        assert!(
            strict.decode(attrs.clone()).is_err(),
            "a whole read stays strict"
        );
        let projected = Decoder::<ItemRecord>::new(true).unwrap();
        let item = Item::from(projected.decode(attrs).unwrap());
        assert_eq!((item.sku.as_str(), item.quantity), ("A-1", 7));
        assert_eq!((item.name.as_str(), item.version), ("", 0));
    }

    #[test]
    fn renamed_fields_read_their_stored_attributes() {
        let fields = Fields::<Webhook>::parse("id,url").unwrap();
        let attributes = WEBHOOK_STORED.attributes(&fields);
        assert_eq!(
            attributes.into_iter().collect::<Vec<_>>(),
            ["url", "webhook_id"]
        );
    }
}
