use super::validation::{FieldErrors, ObjectReader};
use super::{MAX_QUANTITY, Sku};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const MAX_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 2000;

/// Names of the fields an item representation has (for `?fields=`).
pub const ITEM_FIELDS: &[&str] = &[
    "sku",
    "name",
    "description",
    "quantity",
    "low_stock_threshold",
    "attributes",
    "stock_buckets",
    "version",
    "created_at",
    "updated_at",
];

/// An inventory item as stored and as returned by the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Item {
    #[schema(example = "SKU-1001", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub sku: String,
    #[schema(example = "Blue mug")]
    pub name: String,
    pub description: Option<String>,
    /// Units in stock; never negative.
    #[schema(minimum = 0, example = 12)]
    pub quantity: i64,
    /// At or below this quantity the item counts as low on stock.
    pub low_stock_threshold: Option<i64>,
    pub attributes: BTreeMap<String, String>,
    /// Present while the sku's stock is split into this many buckets, so
    /// that many concurrent orders (a flash sale) spread over them:
    /// `quantity` is the sum of the item's own stock and its buckets'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 2, maximum = 64)]
    pub stock_buckets: Option<u16>,
    /// How many bucket partitions hold the sku's movements and holds: the
    /// most it was ever split into (not shown; kept once the split ends).
    #[serde(skip)]
    pub bucket_partitions: u16,
    /// Increases by one on every change (descriptive or stock); a split
    /// sku's is the sum of the item's and its buckets' (see
    /// `stock_buckets`), so orders taken in a bucket raise it too.
    pub version: u64,
    /// RFC 3339 UTC timestamp.
    pub created_at: String,
    pub updated_at: String,
}

/// The fields [`Item::etag`] is made of.
pub const ETAG_FIELDS: &[&str] = &["sku", "created_at", "version"];

impl super::Selectable for Item {
    const FIELDS: &'static [&'static str] = ITEM_FIELDS;
}

/// The descriptive part of an item: what `PUT` replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemFields {
    pub name: String,
    pub description: Option<String>,
    pub low_stock_threshold: Option<i64>,
    pub attributes: BTreeMap<String, String>,
}

/// A validated `POST /v1/items` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewItem {
    pub sku: Sku,
    pub fields: ItemFields,
    pub quantity: i64,
}

/// A validated `PUT /v1/items/{sku}` body.
pub type ItemPatch = ItemFields;

fn read_fields(r: &mut ObjectReader<'_>) -> Option<ItemFields> {
    let name = r.string("name", true, MAX_NAME);
    let description = r.string("description", false, MAX_DESCRIPTION);
    let low_stock_threshold = r.int("low_stock_threshold", false, 0, MAX_QUANTITY);
    let attributes = r.string_map("attributes");
    Some(ItemFields {
        name: name?,
        description,
        low_stock_threshold,
        attributes,
    })
}

impl NewItem {
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(body)?;
        r.deny_unknown(&[
            "sku",
            "name",
            "description",
            "quantity",
            "low_stock_threshold",
            "attributes",
        ]);
        let sku = r
            .string("sku", true, Sku::MAX_LEN + 1)
            .and_then(|s| Sku::parse(&s).map_err(|m| r.errors.push("sku", m)).ok());
        let quantity = r.int("quantity", false, 0, MAX_QUANTITY).unwrap_or(0);
        let fields = read_fields(&mut r);
        match (sku, fields) {
            (Some(sku), Some(fields)) if r.errors.is_empty() => Ok(Self {
                sku,
                fields,
                quantity,
            }),
            _ => Err(r.errors),
        }
    }
}

impl ItemFields {
    /// Parses a `PUT` body for the item at `path_sku`. `sku` may be repeated in
    /// the body but must match; `quantity` is refused since stock only moves
    /// through adjustments (which keep the ledger).
    pub fn from_put_json(body: &Value, path_sku: &Sku) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(body)?;
        r.deny_unknown(&[
            "sku",
            "name",
            "description",
            "low_stock_threshold",
            "attributes",
            "quantity",
        ]);
        if r.names("quantity") {
            r.errors.push(
                "quantity",
                "cannot be set by PUT; use POST /v1/items/{sku}/adjustments",
            );
        }
        if let Some(sku) = r.string("sku", false, Sku::MAX_LEN + 1)
            && sku != path_sku.as_str()
        {
            r.errors.push("sku", "must match the sku in the path");
        }
        let fields = read_fields(&mut r);
        match fields {
            Some(f) if r.errors.is_empty() => Ok(f),
            _ => Err(r.errors),
        }
    }
}

impl Item {
    pub fn fields(&self) -> ItemFields {
        ItemFields {
            name: self.name.clone(),
            description: self.description.clone(),
            low_stock_threshold: self.low_stock_threshold,
            attributes: self.attributes.clone(),
        }
    }

    /// The item with its descriptive fields replaced, or `None` when the
    /// replacement changes nothing (the API answers 204 then).
    pub fn replaced(&self, fields: ItemFields, now: &str) -> Option<Item> {
        if self.fields() == fields {
            return None;
        }
        Some(Item {
            name: fields.name,
            description: fields.description,
            low_stock_threshold: fields.low_stock_threshold,
            attributes: fields.attributes,
            version: self.version + 1,
            updated_at: now.to_owned(),
            ..self.clone()
        })
    }

    pub fn new(new: NewItem, now: &str) -> Item {
        Item {
            bucket_partitions: 0,
            stock_buckets: None,
            sku: new.sku.as_str().to_owned(),
            name: new.fields.name,
            description: new.fields.description,
            quantity: new.quantity,
            low_stock_threshold: new.fields.low_stock_threshold,
            attributes: new.fields.attributes,
            version: 1,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }
    }

    /// Strong entity tag of this state of the item (RFC 9110): a digest of
    /// what identifies it. Every change of an item raises its version, and a
    /// deleted-and-recreated item starts again with a new `created_at`, so
    /// sku, `created_at` and version name one state of one item; the field
    /// names are in the digest too, so a representation that gains a field
    /// gets new tags. Three small attributes rather than the whole item: a
    /// read of a few fields (`?fields=`) fetches them and still answers with
    /// the full item's tag, and `If-None-Match` needs nothing more.
    pub fn etag(&self) -> String {
        use sha2::{Digest, Sha256};
        // Reads exactly ETAG_FIELDS (and the constant field names).
        let digest = Sha256::new()
            .chain_update(ITEM_FIELDS.join(",").as_bytes())
            .chain_update([0])
            .chain_update(self.sku.as_bytes())
            .chain_update([0])
            .chain_update(self.created_at.as_bytes())
            .chain_update([0])
            .chain_update(self.version.to_be_bytes())
            .finalize();
        format!("\"{}\"", hex::encode(&digest[..12]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn new_item_defaults_quantity_to_zero() {
        let item = NewItem::from_json(&json!({"sku": "A-1", "name": "Mug"})).unwrap();
        assert_eq!(item.quantity, 0);
        assert_eq!(item.sku.as_str(), "A-1");
    }

    #[test]
    fn new_item_reports_every_invalid_field() {
        let err = NewItem::from_json(&json!({
            "sku": "bad sku", "name": "", "quantity": -1,
            "attributes": {"k": 1}, "colour": "red"
        }))
        .unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        for f in ["sku", "name", "quantity", "attributes.k", "colour"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn new_item_rejects_non_objects_and_wrong_types() {
        assert!(NewItem::from_json(&json!([1, 2])).is_err());
        let err = NewItem::from_json(&json!({"sku": 5, "name": "x", "quantity": "3"})).unwrap_err();
        assert_eq!(err.0.len(), 2);
        let err =
            NewItem::from_json(&json!({"sku": "a", "name": "x", "quantity": 1.5})).unwrap_err();
        assert_eq!(err.0[0].message, "must be an integer");
    }

    #[test]
    fn name_length_is_counted_in_characters() {
        let name: String = "é".repeat(MAX_NAME);
        assert!(NewItem::from_json(&json!({"sku": "a", "name": name})).is_ok());
        let name: String = "é".repeat(MAX_NAME + 1);
        assert!(NewItem::from_json(&json!({"sku": "a", "name": name})).is_err());
    }

    #[test]
    fn put_refuses_quantity_and_foreign_sku() {
        let sku = Sku::parse("A").unwrap();
        let err = ItemFields::from_put_json(&json!({"name": "x", "quantity": 3, "sku": "B"}), &sku)
            .unwrap_err();
        assert_eq!(err.0.len(), 2);
        assert!(ItemFields::from_put_json(&json!({"name": "x", "sku": "A"}), &sku).is_ok());
    }

    #[test]
    fn replacing_with_identical_fields_changes_nothing() {
        let new =
            NewItem::from_json(&json!({"sku": "A", "name": "Mug", "attributes": {"c": "red"}}))
                .unwrap();
        let item = Item::new(new, "2026-01-01T00:00:00Z");
        assert!(item.replaced(item.fields(), "later").is_none());
        let mut f = item.fields();
        f.description = Some("tall".into());
        let changed = item.replaced(f, "2026-01-02T00:00:00Z").unwrap();
        assert_eq!(changed.version, 2);
        assert_eq!(changed.quantity, item.quantity);
        assert_ne!(changed.etag(), item.etag());
    }

    #[test]
    fn the_tag_changes_with_every_state_and_only_then() {
        let new = NewItem::from_json(&json!({"sku": "A", "name": "Mug"})).unwrap();
        let item = Item::new(new, "2026-01-01T00:00:00.000Z");
        let tag = item.etag();
        assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 26);
        let adjusted = Item {
            quantity: 5,
            version: 2,
            ..item.clone()
        };
        assert_ne!(adjusted.etag(), tag);
        let recreated = Item {
            created_at: "2026-01-01T00:00:01.000Z".into(),
            ..item.clone()
        };
        assert_ne!(recreated.etag(), tag, "a recreated item never reuses a tag");
        // What a read of a few fields fetches is enough for the full tag.
        let sparse = Item {
            name: String::new(),
            attributes: Default::default(),
            ..item.clone()
        };
        assert_eq!(sparse.etag(), tag);
        assert!(ETAG_FIELDS.iter().all(|f| ITEM_FIELDS.contains(f)));
    }

    #[test]
    fn item_fields_name_every_field_of_the_representation() {
        crate::fields::assert_names_every_field(&Item {
            bucket_partitions: 0,
            stock_buckets: Some(2),
            sku: "A".into(),
            name: "Mug".into(),
            description: Some("tall".into()),
            quantity: 1,
            low_stock_threshold: Some(1),
            attributes: [("c".to_owned(), "red".to_owned())].into(),
            version: 1,
            created_at: "t".into(),
            updated_at: "t".into(),
        });
    }
}
