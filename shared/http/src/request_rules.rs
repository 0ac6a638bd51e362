//! The rules the server enforces on requests, written into the OpenAPI
//! document from the validators' own constants: a client that validates
//! against the document is refused nothing the document allows.
//!
//! utoipa derives the request schemas' shapes and descriptions; what its
//! attributes cannot take from a constant (lengths, patterns, item counts,
//! closed objects, the batch body's two forms) is set here. The tests feed
//! the same bodies to the validators and to the schemas and fail on any
//! disagreement, so a rule added to a validator without its schema
//! counterpart (or the reverse) is found.

use serde_json::{Value, json};
use stockroom_app::keys::MAX_KEY_NAME;
use stockroom_domain::batch::{
    MAX_ATOMIC_RECORDS, MAX_BATCH_RECORDS, MAX_RECORD_ID, MAX_TRANSACTION_ACTIONS, OPS,
};
use stockroom_domain::key::ALL_SCOPES;
use stockroom_domain::location::{DEFAULT_LOCATION, MAX_LOCATION_NAME};
use stockroom_domain::upload::MAX_UPLOAD_BYTES;
use stockroom_domain::validation::{
    MAX_ATTRIBUTE_KEY, MAX_ATTRIBUTE_VALUE, MAX_ATTRIBUTES, TEXT_PATTERN,
};
use stockroom_domain::webhook::{MAX_URL, MAX_WEBHOOK_DESCRIPTION};
use stockroom_domain::{MAX_DESCRIPTION, MAX_NAME, MAX_QUANTITY, MAX_REASON, MAX_REFERENCE, Sku};

/// `Idempotency-Key`: 1 to this many characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The pattern of a sku (`Sku::parse`): the alphabet, but not `.` or `..`
/// (dot segments, which URL clients remove from a path). No lookahead, for
/// the JSON Schema tools that do not take one.
pub fn sku_pattern() -> String {
    let max = Sku::MAX_LEN;
    format!(
        "^(?:[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{}}}|\\.[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{}}}|\\.\\.[A-Za-z0-9._-]{{1,{}}})$",
        max - 1,
        max - 2,
        max - 2
    )
}

/// A free-text field: `ObjectReader::string` (1..=max characters, no
/// control characters but tab and newline).
fn text(max: usize) -> Value {
    json!({"minLength": 1, "maxLength": max, "pattern": TEXT_PATTERN})
}

fn quantity() -> Value {
    json!({"minimum": 0, "maximum": MAX_QUANTITY})
}

/// A signed stock change: non-zero, within the quantity bound.
fn delta() -> Value {
    json!({"minimum": -MAX_QUANTITY, "maximum": MAX_QUANTITY, "not": {"const": 0}})
}

/// `ObjectReader::string_map`.
fn attributes() -> Value {
    json!({
        "maxProperties": MAX_ATTRIBUTES,
        "propertyNames": {"type": "string", "minLength": 1, "maxLength": MAX_ATTRIBUTE_KEY},
        "additionalProperties": {"type": "string", "maxLength": MAX_ATTRIBUTE_VALUE},
    })
}

fn merge(target: &mut Value, rules: &Value) {
    if let (Some(target), Some(rules)) = (target.as_object_mut(), rules.as_object()) {
        for (k, v) in rules {
            target.insert(k.clone(), v.clone());
        }
    }
}

/// Closes the schema (the validators refuse unknown fields) and adds each
/// property's rules.
fn constrain(schemas: &mut Value, name: &str, rules: &[(&str, Value)]) {
    let schema = &mut schemas[name];
    assert!(schema.is_object(), "no schema {name}");
    schema["additionalProperties"] = json!(false);
    for (property, rule) in rules {
        let target = &mut schema["properties"][*property];
        assert!(target.is_object(), "{name} has no property {property}");
        merge(target, rule);
    }
}

/// The batch records: loose in `isolated` mode (only `id` and `op` can
/// reject the batch; any other problem is that record's failure), strict in
/// `atomic` mode (any problem rejects the batch).
fn batch_schemas(schemas: &mut Value) {
    let id = json!({
        "type": "string", "minLength": 1, "maxLength": MAX_RECORD_ID,
        "description": "The client's record id, unique in the batch.", "example": "row-17"
    });
    let sku = json!({"type": "string", "pattern": sku_pattern(), "example": "SKU-1001"});
    let op = |name: &str| json!({"const": name});
    let nullable_text = |max: usize| {
        let mut t = text(max);
        t["type"] = json!(["string", "null"]);
        t
    };
    let mut attributes = attributes();
    attributes["type"] = json!(["object", "null"]);
    let mut threshold = quantity();
    threshold["type"] = json!(["integer", "null"]);
    let mut quantity = quantity();
    quantity["type"] = json!("integer");
    let mut delta = delta();
    delta["type"] = json!("integer");
    let mut name = text(MAX_NAME);
    name["type"] = json!("string");
    let mut reason = text(MAX_REASON);
    reason["type"] = json!("string");

    schemas["BatchRecordRequest"] = json!({
        "description": "One record of an `isolated` batch. `id` and `op` must be well formed or \
    the batch is refused; the other fields follow `IsolatedBatchRecord` by `op`, and a record that \
    breaks them is reported as a failure of the batch while the other records are applied.",
        "type": "object",
        // Open on purpose: the fields are judged per record, by `op`.
        "additionalProperties": true,
        "required": ["id", "op"],
        "properties": {
            "id": id,
            "op": {"type": "string", "enum": OPS, "description": "`upsert` (create or replace, absolute quantity), `adjust` (delta), `delete`, `count` (a physical count at a location), `transfer` (between locations), `reserve` (a hold).", "example": "adjust"},
        },
    });
    let location = |what: &str| {
        json!({
            "type": "string", "pattern": sku_pattern(),
            "description": what, "example": "paris-1",
        })
    };
    let optional = |mut schema: Value| {
        schema["type"] = json!(["string", "null"]);
        schema
    };
    let positive =
        json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_QUANTITY});
    schemas["CountRecord"] = json!({
        "description": "A physical count at a location, as `POST /v1/counts` takes it (isolated batches only).",
        "type": "object", "additionalProperties": false,
        "required": ["id", "op", "sku", "on_hand", "occurred_at"],
        "properties": {
            "id": id, "op": op("count"), "sku": sku,
            "location": optional(location("The location counted; absent: the default location.")),
            "on_hand": {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_QUANTITY},
            "occurred_at": {"type": "string", "format": "date-time", "description": "When the count was taken (RFC 3339, not in the future)."},
            "reference": nullable_text(MAX_REFERENCE),
        },
    });
    schemas["TransferRecord"] = json!({
        "description": "Stock moved between two locations, as `POST /v1/transfers` takes it (isolated batches only).",
        "type": "object", "additionalProperties": false,
        "required": ["id", "op", "sku", "from", "to", "quantity"],
        "properties": {
            "id": id, "op": op("transfer"), "sku": sku,
            "from": location("The location the units leave."),
            "to": location("The location the units arrive at."),
            "quantity": positive.clone(),
            "reference": nullable_text(MAX_REFERENCE),
        },
    });
    schemas["ReserveRecord"] = json!({
        "description": "A hold on available units, as `POST /v1/reservations` takes it (isolated batches only); its id is in the ledger of its sku (`GET /v1/reservations?sku=`).",
        "type": "object", "additionalProperties": false,
        "required": ["id", "op", "sku", "quantity", "expires_in"],
        "properties": {
            "id": id, "op": op("reserve"), "sku": sku,
            "location": optional(location("The location held at; absent: the default location.")),
            "quantity": positive,
            "expires_in": {"type": "integer", "format": "int64",
                "minimum": stockroom_domain::reservation::MIN_EXPIRES_IN,
                "maximum": stockroom_domain::reservation::MAX_EXPIRES_IN,
                "description": "Seconds the hold lasts."},
            "reference": nullable_text(MAX_REFERENCE),
        },
    });
    schemas["IsolatedBatchRecord"] = json!({
        "description": "One record of an `isolated` batch, by `op`.",
        "oneOf": [
            {"$ref": "#/components/schemas/UpsertRecord"},
            {"$ref": "#/components/schemas/AdjustRecord"},
            {"$ref": "#/components/schemas/DeleteRecord"},
            {"$ref": "#/components/schemas/CountRecord"},
            {"$ref": "#/components/schemas/TransferRecord"},
            {"$ref": "#/components/schemas/ReserveRecord"},
        ],
        "discriminator": {"propertyName": "op", "mapping": {
            "upsert": "#/components/schemas/UpsertRecord",
            "adjust": "#/components/schemas/AdjustRecord",
            "delete": "#/components/schemas/DeleteRecord",
            "count": "#/components/schemas/CountRecord",
            "transfer": "#/components/schemas/TransferRecord",
            "reserve": "#/components/schemas/ReserveRecord",
        }},
    });
    schemas["UpsertRecord"] = json!({
        "description": "Create or replace the item with an absolute quantity (a count).",
        "type": "object", "additionalProperties": false,
        "required": ["id", "op", "sku", "name", "quantity"],
        "properties": {
            "id": id, "op": op("upsert"), "sku": sku, "name": name,
            "description": nullable_text(MAX_DESCRIPTION),
            "quantity": quantity, "low_stock_threshold": threshold, "attributes": attributes,
        },
    });
    schemas["AdjustRecord"] = json!({
        "description": "Change the item's quantity by a signed delta (never below zero).",
        "type": "object", "additionalProperties": false,
        "required": ["id", "op", "sku", "delta", "reason"],
        "properties": {
            "id": id, "op": op("adjust"), "sku": sku, "delta": delta, "reason": reason,
            "reference": nullable_text(MAX_REFERENCE),
        },
    });
    schemas["DeleteRecord"] = json!({
        "description": "Delete the item (its ledger is kept).",
        "type": "object", "additionalProperties": false,
        "required": ["id", "op", "sku"],
        "properties": {"id": id, "op": op("delete"), "sku": sku},
    });
    schemas["BatchRecord"] = json!({
        "description": "One record, by `op`: what an `atomic` batch requires of every record.",
        "oneOf": [
            {"$ref": "#/components/schemas/UpsertRecord"},
            {"$ref": "#/components/schemas/AdjustRecord"},
            {"$ref": "#/components/schemas/DeleteRecord"},
            {"$ref": "#/components/schemas/CountRecord"},
            {"$ref": "#/components/schemas/TransferRecord"},
            {"$ref": "#/components/schemas/ReserveRecord"},
        ],
        "discriminator": {"propertyName": "op", "mapping": {
            "upsert": "#/components/schemas/UpsertRecord",
            "adjust": "#/components/schemas/AdjustRecord",
            "delete": "#/components/schemas/DeleteRecord",
            "count": "#/components/schemas/CountRecord",
            "transfer": "#/components/schemas/TransferRecord",
            "reserve": "#/components/schemas/ReserveRecord",
        }},
    });
    let mode = json!({
        "type": "string", "enum": ["isolated", "atomic"], "example": "isolated",
        "description": format!("`isolated`: only bad records fail. `atomic`: one bad record \
    rejects the batch (at most {MAX_ATOMIC_RECORDS} records, 200 KiB once validated, and the \
    writes of one DynamoDB transaction: one per item, one per level a count, transfer or hold \
    names and one more per such level away from the default location, two per hold, one for \
    the batch; at most {MAX_TRANSACTION_ACTIONS}).")
    });
    schemas["InlineBatchRequest"] = json!({
        "description": format!("A batch whose records are in the request: 1 to \
    {MAX_BATCH_RECORDS} records with distinct ids (body at most 5 MiB)."),
        "type": "object", "additionalProperties": false,
        "required": ["mode", "records"],
        "properties": {
            "mode": mode,
            "records": {
                "type": "array", "minItems": 1, "maxItems": MAX_BATCH_RECORDS,
                "items": {"$ref": "#/components/schemas/BatchRecordRequest"},
            },
        },
        "if": {"required": ["mode"], "properties": {"mode": {"const": "atomic"}}},
        "then": {"properties": {"records": {
            "maxItems": MAX_ATOMIC_RECORDS,
            "items": {"$ref": "#/components/schemas/BatchRecord"},
        }}},
    });
    let format = schemas["BatchRequestBody"]["properties"]["format"]["oneOf"][1].clone();
    schemas["UploadBatchRequest"] = json!({
        "description": "A batch whose records come in a file uploaded to the returned URL \
    (for files too large for a request body: up to 2,000,000 rows, 1 GiB). A file's rows are \
    identified by row number (CSV: the header is row 1); rows carry no `id`.",
        "type": "object", "additionalProperties": false,
        "required": ["mode", "upload", "format", "size_bytes"],
        "properties": {
            "mode": mode,
            "upload": {"const": true},
            "format": format,
            "size_bytes": {
                "type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_UPLOAD_BYTES,
                "description": "The file's exact size in bytes; the upload URL accepts only this size.",
            },
        },
    });
    schemas["BatchRequestBody"] = json!({
        "description": "Body of `POST /v1/batches`: the records themselves, or `upload: true` \
    with the file's format and size to get an upload URL.",
        "oneOf": [
            {"$ref": "#/components/schemas/InlineBatchRequest"},
            {"$ref": "#/components/schemas/UploadBatchRequest"},
        ],
    });
}

/// Writes the server's request rules into `doc` (the generated document).
pub(super) fn annotate(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let sku = json!({"pattern": sku_pattern()});
    constrain(
        schemas,
        "CreateItemRequest",
        &[
            ("sku", sku.clone()),
            ("name", text(MAX_NAME)),
            ("description", text(MAX_DESCRIPTION)),
            ("quantity", quantity()),
            ("low_stock_threshold", quantity()),
            ("attributes", attributes()),
        ],
    );
    constrain(
        schemas,
        "ReplaceItemRequest",
        &[
            ("sku", sku),
            ("name", text(MAX_NAME)),
            ("description", text(MAX_DESCRIPTION)),
            ("low_stock_threshold", quantity()),
            ("attributes", attributes()),
        ],
    );
    constrain(
        schemas,
        "AdjustmentRequest",
        &[
            ("delta", delta()),
            ("reason", text(MAX_REASON)),
            ("reference", text(MAX_REFERENCE)),
            ("location", json!({"pattern": sku_pattern()})),
        ],
    );
    constrain(
        schemas,
        "CreateLocationRequest",
        &[
            (
                "id",
                json!({"pattern": sku_pattern(), "not": {"const": DEFAULT_LOCATION}}),
            ),
            ("name", text(MAX_LOCATION_NAME)),
        ],
    );
    constrain(schemas, "BatchLevelsRequest", &[]);
    constrain(
        schemas,
        "LevelPairRequest",
        &[
            ("sku", json!({"pattern": sku_pattern()})),
            ("location", json!({"pattern": sku_pattern()})),
        ],
    );
    constrain(
        schemas,
        "CountRequest",
        &[
            ("sku", json!({"pattern": sku_pattern()})),
            ("location", json!({"pattern": sku_pattern()})),
            ("on_hand", quantity()),
            ("reference", text(MAX_REFERENCE)),
        ],
    );
    constrain(schemas, "StockSplitRequest", &[]);
    constrain(
        schemas,
        "TransferRequest",
        &[
            ("sku", json!({"pattern": sku_pattern()})),
            ("from", json!({"pattern": sku_pattern()})),
            ("to", json!({"pattern": sku_pattern()})),
            ("quantity", json!({"minimum": 1, "maximum": MAX_QUANTITY})),
            ("reference", text(MAX_REFERENCE)),
        ],
    );
    constrain(
        schemas,
        "CreateReservationRequest",
        &[
            ("sku", json!({"pattern": sku_pattern()})),
            ("location", json!({"pattern": sku_pattern()})),
            ("quantity", json!({"minimum": 1, "maximum": MAX_QUANTITY})),
            (
                "expires_in",
                json!({
                    "minimum": stockroom_domain::reservation::MIN_EXPIRES_IN,
                    "maximum": stockroom_domain::reservation::MAX_EXPIRES_IN,
                }),
            ),
            ("reference", text(MAX_REFERENCE)),
        ],
    );
    constrain(
        schemas,
        "CreateKeyRequest",
        &[
            ("name", text(MAX_KEY_NAME)),
            (
                "scopes",
                json!({"minItems": 1, "items": {"type": "string", "enum": ALL_SCOPES}}),
            ),
            ("expires_at", json!({"format": "date-time"})),
        ],
    );
    constrain(
        schemas,
        "CreateWebhookRequest",
        &[
            (
                "url",
                json!({"minLength": 1, "maxLength": MAX_URL, "format": "uri", "pattern": "^https://"}),
            ),
            ("events", json!({"minItems": 1})),
            ("description", text(MAX_WEBHOOK_DESCRIPTION)),
        ],
    );
    batch_schemas(schemas);
    parameters(doc);
}

/// Query and header parameters, wherever they appear.
fn parameters(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for operation in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in operation.values_mut() {
            let parameters = op.get_mut("parameters").and_then(Value::as_array_mut);
            for p in parameters.into_iter().flatten() {
                let rule = match (p["name"].as_str(), p["in"].as_str()) {
                    // An empty cursor is not a cursor (400 invalid_cursor).
                    (Some("cursor"), Some("query")) => json!({"minLength": 1}),
                    (Some("Idempotency-Key"), Some("header")) => {
                        json!({"minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY})
                    }
                    (Some("sku"), Some("path" | "query")) => json!({"pattern": sku_pattern()}),
                    _ => continue,
                };
                merge(&mut p["schema"], &rule);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The validators and the document's schemas judge the same bodies: a
    //! valid body, then every property replaced by each probe value (and
    //! left out, and an unknown property added). Any body one accepts and
    //! the other refuses is a rule written on one side only.

    use super::*;
    use stockroom_app::keys::NewKey;
    use stockroom_app::webhooks::target::{TargetPolicy, validate_url};
    use stockroom_domain::batch::parse_batch;
    use stockroom_domain::upload::{is_upload_request, parse_upload_request};
    use stockroom_domain::webhook::NewWebhook;
    use stockroom_domain::{Adjustment, ItemFields, NewItem};

    fn document() -> Value {
        crate::openapi::document()
    }

    fn schema_validator(doc: &Value, name: &str) -> jsonschema::Validator {
        let root = json!({
            "$ref": format!("#/components/schemas/{name}"),
            "components": doc["components"].clone(),
        });
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Values that sit on or just past the rules' edges, and of every JSON type.
    fn probes(doc: &Value) -> Vec<Value> {
        let mut lengths: Vec<usize> = vec![1, 2, 64, 65, 100, 101, 128, 129, 200, 201];
        lengths.extend([255, 256, 500, 501, 2000, 2001, 2048, 2049, 3000]);
        // Every maxLength the document states, and one past it.
        let text = doc.to_string();
        for (i, _) in text.match_indices("\"maxLength\":") {
            let rest = &text[i + 12..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<usize>() {
                lengths.extend([n, n + 1]);
            }
        }
        lengths.sort_unstable();
        lengths.dedup();
        let mut out = vec![
            json!(null),
            json!(true),
            json!(0),
            json!(1),
            json!(-1),
            json!(1.5),
            json!(3.0),
            json!(-2.0),
            json!(1e3),
            json!(MAX_QUANTITY),
            json!(MAX_QUANTITY + 1),
            json!(-MAX_QUANTITY),
            json!(-MAX_QUANTITY - 1),
            json!(MAX_UPLOAD_BYTES),
            json!(MAX_UPLOAD_BYTES + 1),
            json!(""),
            json!(" "),
            json!("SKU-1"),
            json!("bad sku"),
            json!("a\u{1}b"),
            json!("a\rb"),
            json!("a\u{85}b"),
            json!("line one\nline two\tcolumn"),
            json!("é"),
            json!("isolated"),
            json!("atomic"),
            json!("upsert"),
            json!("adjust"),
            json!("delete"),
            json!("csv"),
            json!("ndjson"),
            json!("xml"),
            json!("https://erp.example.com/hooks"),
            json!("http://erp.example.com/hooks"),
            json!("2999-01-01T00:00:00Z"),
            json!("not a time"),
            json!([]),
            json!(["items:read"]),
            json!(["items:read", "items:read"]),
            json!(["no:such"]),
            json!(["batch.completed"]),
            json!(["webhook.ping"]),
            json!({}),
            json!({"colour": "blue"}),
            json!({"": "blank key"}),
            json!({"colour": 1}),
            json!({"colour": "x".repeat(MAX_ATTRIBUTE_VALUE + 1)}),
            json!({"k".repeat(MAX_ATTRIBUTE_KEY + 1): "v"}),
            Value::Object(
                (0..=MAX_ATTRIBUTES)
                    .map(|i| (format!("k{i}"), json!("v")))
                    .collect(),
            ),
        ];
        for n in lengths {
            out.push(json!("x".repeat(n)));
            out.push(json!("é".repeat(n)));
        }
        out
    }

    struct Body {
        schema: &'static str,
        valid: Value,
        server_accepts: fn(&Value) -> bool,
        /// Properties whose rule no schema can state, and why.
        skip: &'static [(&'static str, &'static str)],
    }

    fn bodies() -> Vec<Body> {
        vec![
            Body {
                schema: "CreateItemRequest",
                valid: json!({"sku": "SKU-1", "name": "Mug", "description": "Blue",
                    "quantity": 3, "low_stock_threshold": 1, "attributes": {"colour": "blue"}}),
                server_accepts: |b| NewItem::from_json(b).is_ok(),
                skip: &[],
            },
            Body {
                schema: "ReplaceItemRequest",
                valid: json!({"name": "Mug", "description": "Blue",
                    "low_stock_threshold": 1, "attributes": {"colour": "blue"}}),
                server_accepts: |b| {
                    let path_sku = Sku::parse("SKU-1").expect("sku");
                    ItemFields::from_put_json(b, &path_sku).is_ok()
                },
                skip: &[("sku", "must equal the sku in the path")],
            },
            Body {
                schema: "AdjustmentRequest",
                valid: json!({"delta": -2, "reason": "sale", "reference": "order-7"}),
                server_accepts: |b| Adjustment::from_json(b).is_ok(),
                skip: &[],
            },
            Body {
                schema: "CreateLocationRequest",
                valid: json!({"id": "paris-1", "name": "Paris", "kind": "store"}),
                server_accepts: |b| stockroom_domain::location::NewLocation::from_json(b).is_ok(),
                skip: &[],
            },
            Body {
                schema: "BatchLevelsRequest",
                valid: json!({"pairs": [{"sku": "SKU-1"}, {"sku": "SKU-1", "location": "paris-1"}]}),
                server_accepts: |b| stockroom_domain::level::LevelPairs::from_json(b).is_ok(),
                skip: &[],
            },
            Body {
                schema: "CountRequest",
                valid: json!({"sku": "SKU-1", "location": "paris-1", "on_hand": 40,
                    "occurred_at": "2026-12-04T07:00:00Z", "reference": "st-1"}),
                server_accepts: |b| {
                    stockroom_domain::count::NewCount::from_json(b, u64::MAX / 2).is_ok()
                },
                skip: &[(
                    "occurred_at",
                    "must not be in the future (the server's clock)",
                )],
            },
            Body {
                schema: "StockSplitRequest",
                valid: json!({"buckets": 64}),
                server_accepts: |b| stockroom_domain::stock_split::buckets_from_json(b).is_ok(),
                skip: &[],
            },
            Body {
                schema: "TransferRequest",
                valid: json!({"sku": "SKU-1", "from": "default", "to": "paris-1", "quantity": 2,
                    "reference": "TO-1"}),
                server_accepts: |b| stockroom_domain::transfer::NewTransfer::from_json(b).is_ok(),
                skip: &[("to", "must differ from `from`")],
            },
            Body {
                schema: "CreateReservationRequest",
                valid: json!({"sku": "SKU-1", "location": "paris-1", "quantity": 2,
                    "expires_in": 900, "reference": "cart-1"}),
                server_accepts: |b| {
                    stockroom_domain::reservation::NewReservation::from_json(b).is_ok()
                },
                skip: &[],
            },
            Body {
                schema: "CountRecord",
                valid: json!({"id": "r1", "op": "count", "sku": "SKU-1", "location": "paris-1",
                    "on_hand": 40, "occurred_at": "2026-12-04T07:00:00Z", "reference": "st-1"}),
                server_accepts: isolated_record_accepted,
                skip: &[],
            },
            Body {
                schema: "TransferRecord",
                valid: json!({"id": "r1", "op": "transfer", "sku": "SKU-1", "from": "default",
                    "to": "paris-1", "quantity": 2, "reference": "TO-1"}),
                server_accepts: isolated_record_accepted,
                skip: &[("to", "must differ from `from`")],
            },
            Body {
                schema: "ReserveRecord",
                valid: json!({"id": "r1", "op": "reserve", "sku": "SKU-1", "location": "paris-1",
                    "quantity": 2, "expires_in": 900, "reference": "cart-1"}),
                server_accepts: isolated_record_accepted,
                skip: &[],
            },
            Body {
                schema: "CreateKeyRequest",
                valid: json!({"name": "sync", "scopes": ["items:read"],
                    "expires_at": "2999-01-01T00:00:00Z"}),
                server_accepts: |b| NewKey::from_json(b, time::OffsetDateTime::now_utc()).is_ok(),
                skip: &[],
            },
            Body {
                schema: "CreateWebhookRequest",
                valid: json!({"url": "https://erp.example.com/hooks",
                    "events": ["batch.completed"], "description": "ERP"}),
                server_accepts: |b| {
                    NewWebhook::from_json(b)
                        .is_ok_and(|w| validate_url(&w.url, &TargetPolicy::deployed()).is_ok())
                },
                skip: &[],
            },
            Body {
                schema: "BatchRequestBody",
                valid: json!({"mode": "isolated", "upload": true, "format": "csv", "size_bytes": 10}),
                server_accepts: batch_accepted,
                skip: &[],
            },
        ]
    }

    /// A record an isolated batch applies (rather than reports as failed).
    fn isolated_record_accepted(record: &Value) -> bool {
        parse_batch(&json!({"mode": "isolated", "records": [record]}))
            .is_ok_and(|r| r.invalid.is_empty())
    }

    fn batch_accepted(body: &Value) -> bool {
        if is_upload_request(body) {
            parse_upload_request(body).is_ok()
        } else {
            parse_batch(body).is_ok()
        }
    }

    fn records() -> [Value; 6] {
        [
            json!({"id": "r1", "op": "upsert", "sku": "SKU-1", "name": "Mug", "description": "Blue",
                "quantity": 3, "low_stock_threshold": 1, "attributes": {"colour": "blue"}}),
            json!({"id": "r2", "op": "adjust", "sku": "SKU-2", "delta": -1, "reason": "sale",
                "reference": "order-7"}),
            json!({"id": "r3", "op": "delete", "sku": "SKU-3"}),
            json!({"id": "r4", "op": "count", "sku": "SKU-4", "location": "paris-1", "on_hand": 5,
                "occurred_at": "2026-01-01T00:00:00Z", "reference": "stocktake-1"}),
            json!({"id": "r5", "op": "transfer", "sku": "SKU-5", "from": "default", "to": "paris-1",
                "quantity": 2, "reference": "tr-1"}),
            json!({"id": "r6", "op": "reserve", "sku": "SKU-6", "location": "paris-1", "quantity": 1,
                "expires_in": 600, "reference": "cart-1"}),
        ]
    }

    /// `valid` with each property replaced by each probe, removed, plus an
    /// unknown property.
    fn variants(valid: &Value, probes: &[Value], names: &[String]) -> Vec<(String, Value)> {
        let mut out = vec![("(as is)".to_owned(), valid.clone())];
        let mut extra = valid.clone();
        extra["unknown_field"] = json!(1);
        out.push(("unknown_field".to_owned(), extra));
        for name in names {
            let mut without = valid.clone();
            if let Some(o) = without.as_object_mut() {
                o.remove(name);
            }
            out.push((format!("{name} left out"), without));
            for p in probes {
                let mut v = valid.clone();
                v[name.as_str()] = p.clone();
                out.push((format!("{name} = {}", short(p)), v));
            }
        }
        out
    }

    fn short(v: &Value) -> String {
        let s = v.to_string();
        let chars = s.chars().count();
        if chars > 40 {
            format!(
                "{}… ({chars} chars)",
                s.chars().take(20).collect::<String>()
            )
        } else {
            s
        }
    }

    fn property_names(doc: &Value, schema: &str) -> Vec<String> {
        let mut names: Vec<String> = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        if schema == "BatchRequestBody" {
            for part in ["InlineBatchRequest", "UploadBatchRequest"] {
                names.extend(property_names(doc, part));
            }
        }
        if schema == "BatchRecord" {
            for part in ["UpsertRecord", "AdjustRecord", "DeleteRecord"] {
                names.extend(property_names(doc, part));
            }
        }
        names.sort();
        names.dedup();
        names
    }

    fn disagreements(
        validator: &jsonschema::Validator,
        accepts: fn(&Value) -> bool,
        cases: Vec<(String, Value)>,
        schema: &str,
    ) -> Vec<String> {
        cases
            .into_iter()
            .filter_map(|(what, body)| {
                let (server, document) = (accepts(&body), validator.is_valid(&body));
                (server != document).then(|| {
                    format!(
                        "{schema}, {what}: server {}, document {}",
                        if server { "accepts" } else { "refuses" },
                        if document { "accepts" } else { "refuses" }
                    )
                })
            })
            .collect()
    }

    #[test]
    fn validators_and_schemas_accept_the_same_bodies() {
        let doc = document();
        let probes = probes(&doc);
        let mut found = Vec::new();
        let mut judged = 0;
        for body in bodies() {
            let validator = schema_validator(&doc, body.schema);
            let names: Vec<String> = property_names(&doc, body.schema)
                .into_iter()
                .filter(|n| !body.skip.iter().any(|(s, _)| s == n))
                .collect();
            assert!(
                (body.server_accepts)(&body.valid),
                "{}: valid body refused",
                body.schema
            );
            let cases = variants(&body.valid, &probes, &names);
            judged += cases.len();
            found.extend(disagreements(
                &validator,
                body.server_accepts,
                cases,
                body.schema,
            ));
        }
        // Batch records, inside a batch of each mode: the record's rules
        // reject an atomic batch, and only that record of an isolated one.
        let validator = schema_validator(&doc, "BatchRequestBody");
        let names = property_names(&doc, "BatchRecord");
        for mode in ["isolated", "atomic"] {
            for record in records() {
                let mut cases = Vec::new();
                for (what, rec) in variants(&record, &probes, &names) {
                    let body = json!({"mode": mode, "records": records().iter()
                        .filter(|r| r["id"] != record["id"]).cloned()
                        .chain([rec]).collect::<Vec<_>>()});
                    cases.push((format!("{mode} {} record, {what}", record["op"]), body));
                }
                judged += cases.len();
                found.extend(disagreements(
                    &validator,
                    batch_accepted,
                    cases,
                    "BatchRequestBody",
                ));
            }
            let inline = json!({"mode": mode, "records": records()});
            let cases = variants(&inline, &probes, &["mode".into(), "records".into()]);
            judged += cases.len();
            found.extend(disagreements(
                &validator,
                batch_accepted,
                cases,
                "BatchRequestBody",
            ));
        }
        assert!(judged > 5_000, "only {judged} bodies judged");
        assert!(
            found.is_empty(),
            "{} disagreements:\n{}",
            found.len(),
            found.join("\n")
        );
    }

    /// The document's text pattern allows exactly what the validators do.
    #[test]
    fn the_text_pattern_is_the_control_character_check() {
        // The regex engine the schema validator uses, as a client would.
        let pattern =
            jsonschema::validator_for(&json!({"type": "string", "pattern": TEXT_PATTERN}))
                .expect("pattern");
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(
                pattern.is_valid(&json!(s)),
                stockroom_domain::validation::is_plain_text(&s),
                "U+{:04X}",
                c as u32
            );
        }
    }

    /// A rule on one side only is found: the probe set is not blind.
    #[test]
    fn a_rule_missing_from_the_document_is_found() {
        let mut doc = document();
        doc["components"]["schemas"]["AdjustmentRequest"]["properties"]["reason"]
            .as_object_mut()
            .expect("reason")
            .remove("maxLength");
        let validator = schema_validator(&doc, "AdjustmentRequest");
        let valid = json!({"delta": -2, "reason": "sale"});
        let cases = variants(&valid, &probes(&doc), &["reason".into()]);
        let found = disagreements(&validator, |b| Adjustment::from_json(b).is_ok(), cases, "x");
        assert!(!found.is_empty());
    }

    /// The `fields` parameter's pattern accepts what the parser does.
    #[test]
    fn the_fields_pattern_is_the_parser() {
        use stockroom_domain::{Fields, Item};
        let doc = document();
        let param = doc["paths"]["/v1/items/{sku}"]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "fields")
            .expect("fields parameter");
        let schema = jsonschema::validator_for(&param["schema"]).expect("schema");
        for raw in [
            "sku",
            "sku,quantity",
            "quantity,sku",
            "sku,sku",
            "",
            ",",
            "sku,",
            ",sku",
            " sku",
            "sku ,quantity",
            "sku, quantity",
            "nope",
            "SKU",
            "sku;quantity",
            "sku,name,description,quantity,low_stock_threshold,attributes,version",
        ] {
            assert_eq!(
                schema.is_valid(&json!(raw)),
                Fields::<Item>::parse(raw).is_ok(),
                "{raw:?}"
            );
        }
    }

    /// Parameters the handlers check carry the same rules.
    #[test]
    fn parameters_carry_the_handlers_rules() {
        let doc = document();
        let mut cursors = 0;
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let schema = &p["schema"];
                    match p["name"].as_str() {
                        Some("cursor") => {
                            cursors += 1;
                            assert_eq!(schema["minLength"], 1, "{method} {path}");
                        }
                        Some("Idempotency-Key") => {
                            assert_eq!(schema["maxLength"], MAX_IDEMPOTENCY_KEY, "{method} {path}")
                        }
                        Some("sku") => assert_eq!(schema["pattern"], sku_pattern()),
                        _ => {}
                    }
                }
            }
        }
        assert!(cursors >= 6, "{cursors} listings with a cursor");
    }
}
