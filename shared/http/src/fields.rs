//! `?fields=` on the API's reads: the parameter read and checked, the
//! representations rendered with only the selected fields, and both
//! documented — all from `Selectable::FIELDS`, the one list.

use super::extract::QueryParams;
use serde::Serialize;
use serde_json::{Map, Value};
use std::marker::PhantomData;
use stockroom_app::error::ApiError;
use stockroom_domain::{Fields, Selectable};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};

impl QueryParams {
    /// The `fields` parameter, when given; an unknown or empty name is a 400
    /// `invalid_parameter` listing the known ones.
    pub fn fields<E: Selectable>(&self) -> Result<Option<Fields<E>>, ApiError> {
        self.get("fields")
            .map(|raw| Fields::parse(raw).map_err(ApiError::InvalidParameters))
            .transpose()
    }
}

/// A representation as sent: whole, or only the fields the client selected.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Shown<E> {
    Whole(E),
    Sparse(Map<String, Value>),
}

impl<E: Selectable> Shown<E> {
    pub fn of(value: E, fields: Option<&Fields<E>>) -> Result<Self, ApiError> {
        match fields {
            None => Ok(Self::Whole(value)),
            Some(fields) => fields
                .select(&value)
                .map(Self::Sparse)
                .map_err(|e| ApiError::Internal(Box::new(e))),
        }
    }

    /// Each element of a list, shown alike.
    pub fn each(values: Vec<E>, fields: Option<&Fields<E>>) -> Result<Vec<Self>, ApiError> {
        values
            .into_iter()
            .map(|value| Self::of(value, fields))
            .collect()
    }
}

/// The `fields` query parameter of the reads of `E`, in the API document:
/// `params(FieldsParam<Item>)` on the handler.
pub struct FieldsParam<E>(PhantomData<fn() -> E>);

impl<E: Selectable> utoipa::IntoParams for FieldsParam<E> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let names = E::FIELDS.join("|");
        let example = E::FIELDS.iter().take(2).copied().collect::<Vec<_>>();
        let description = format!(
            "Comma-separated top-level fields to return (of each element, in a list), e.g. \
             `{}`: only those are read from the store. Any of {}. An unknown or empty name is \
             a 400 `invalid_parameter`; a repeated one counts once.",
            example.join(","),
            E::FIELDS
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        vec![
            ParameterBuilder::new()
                .name("fields")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(format!("^({names})(,({names}))*$"))),
                ))
                .build(),
        ]
    }
}

/// Names of the component schemas of the representations `fields` selects
/// from (`Selectable` types).
fn selectable_schemas() -> Vec<String> {
    use utoipa::ToSchema;
    [
        stockroom_domain::Item::name(),
        stockroom_domain::Movement::name(),
        stockroom_domain::batch::Batch::name(),
        stockroom_domain::batch::RecordFailure::name(),
        stockroom_domain::webhook::Webhook::name(),
        stockroom_domain::webhook::Delivery::name(),
        stockroom_app::keys::ApiKeyView::name(),
        stockroom_domain::location::Location::name(),
    ]
    .into_iter()
    .map(|name| name.into_owned())
    .collect()
}

const SCHEMA_REF: &str = "#/components/schemas/";

/// The OpenAPI document says what a `fields` answer looks like: every
/// operation with a `fields` parameter answers its representation (or each
/// element of its page) as `anyOf` the whole one and `<Name>Selection` — the
/// same properties, none required — added beside it. Derived from the
/// generated schemas, so the two cannot drift apart.
pub(super) fn annotate(doc: &mut Value) {
    let selectable = selectable_schemas();
    let mut pages = Vec::new();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for operation in paths.values_mut().filter_map(|p| p.get_mut("get")) {
            let has_fields = operation["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "fields"));
            if !has_fields {
                continue;
            }
            let schema =
                &mut operation["responses"]["200"]["content"]["application/json"]["schema"];
            match referenced(schema) {
                Some(name) if selectable.contains(&name) => *schema = whole_or_selection(&name),
                Some(page) => pages.push(page),
                None => {}
            }
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    for page in pages {
        if let Some(properties) = schemas[&page]["properties"].as_object_mut() {
            for property in properties.values_mut() {
                if let Some(name) =
                    referenced(&property["items"]).filter(|n| selectable.contains(n))
                {
                    property["items"] = whole_or_selection(&name);
                }
            }
        }
    }
    for name in selectable {
        let mut selection = schemas[&name].clone();
        if let Some(object) = selection.as_object_mut() {
            object.remove("required");
            object.insert(
                "description".into(),
                Value::String(format!(
                    "Only the fields of `{name}` that `fields` selected (those present)."
                )),
            );
            schemas[format!("{name}Selection")] = selection;
        }
    }
}

/// The component a `{"$ref": ...}` schema names.
fn referenced(schema: &Value) -> Option<String> {
    schema["$ref"]
        .as_str()?
        .strip_prefix(SCHEMA_REF)
        .map(str::to_owned)
}

fn whole_or_selection(name: &str) -> Value {
    serde_json::json!({"anyOf": [
        {"$ref": format!("{SCHEMA_REF}{name}")},
        {"$ref": format!("{SCHEMA_REF}{name}Selection")},
    ]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stockroom_domain::Item;
    use utoipa::IntoParams;

    fn item() -> Item {
        Item {
            bucket_partitions: 0,
            stock_buckets: None,
            sku: "A".into(),
            name: "Mug".into(),
            description: None,
            quantity: 3,
            low_stock_threshold: None,
            attributes: Default::default(),
            version: 1,
            created_at: "t".into(),
            updated_at: "t".into(),
        }
    }

    #[test]
    fn shows_whole_or_only_the_selected_fields() {
        let whole = serde_json::to_value(Shown::of(item(), None).unwrap()).unwrap();
        assert_eq!(whole, serde_json::to_value(item()).unwrap());
        let fields = Fields::<Item>::parse("quantity,description").unwrap();
        let sparse = serde_json::to_value(Shown::of(item(), Some(&fields)).unwrap()).unwrap();
        assert_eq!(sparse, json!({"quantity": 3, "description": null}));
    }

    #[test]
    fn the_documented_pattern_accepts_exactly_the_known_names() {
        let params = FieldsParam::<Item>::into_params(|| None);
        let doc = serde_json::to_value(&params[0]).unwrap();
        assert_eq!(doc["name"], "fields");
        assert_eq!(doc["in"], "query");
        let pattern = doc["schema"]["pattern"].as_str().unwrap();
        // Names are plain words: nothing in the pattern needs escaping.
        assert!(
            stockroom_domain::ITEM_FIELDS
                .iter()
                .all(|f| f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        assert!(pattern.starts_with("^(sku|name|description|"));
        let description = doc["description"].as_str().unwrap();
        assert!(description.contains("`low_stock_threshold`"));
    }

    #[test]
    fn every_read_with_fields_documents_its_sparse_answers() {
        let doc = super::super::openapi::document();
        let mut reads = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            let Some(get) = item.get("get") else { continue };
            let params = get["parameters"].as_array().cloned().unwrap_or_default();
            if !params.iter().any(|p| p["name"] == "fields") {
                continue;
            }
            reads += 1;
            let schema = &get["responses"]["200"]["content"]["application/json"]["schema"];
            let sparse = if schema["anyOf"].is_array() {
                schema.clone()
            } else {
                let page = referenced(schema).unwrap();
                let properties = doc["components"]["schemas"][&page]["properties"].clone();
                let lists: Vec<Value> = properties
                    .as_object()
                    .unwrap()
                    .values()
                    .filter(|p| p["items"]["anyOf"].is_array())
                    .map(|p| p["items"].clone())
                    .collect();
                assert_eq!(lists.len(), 1, "{path}: {properties}");
                lists[0].clone()
            };
            let selection = referenced(&sparse["anyOf"][1]).unwrap();
            let schema = &doc["components"]["schemas"][&selection];
            assert!(schema["properties"].is_object() && schema["required"].is_null());
        }
        assert_eq!(reads, 15, "every read takes fields");
    }
}
