//! Field-level validation of JSON request bodies: every problem is collected
//! (not just the first) so a client can fix a request in one round trip.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the offending field, e.g. `attributes.colour` or `records[3].delta`.
    pub field: String,
    pub message: String,
    /// The batch record concerned, for batch record errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// `field: message; field: message`, as a record failure states them.
    pub fn summary(&self) -> String {
        self.0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One field's error.
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.push(field, message);
        errors
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
            record_id: None,
        });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// Reads typed fields out of a JSON object, recording every violation.
pub(crate) struct ObjectReader<'a> {
    obj: &'a Map<String, Value>,
    pub errors: FieldErrors,
}

/// What every free-text field accepts: no control characters but tab and
/// newline (`char::is_control` is Unicode's Cc: U+0000-U+001F, U+007F-U+009F).
/// The OpenAPI schemas carry this pattern; a test ties it to the check.
pub const TEXT_PATTERN: &str = "^[^\\x00-\\x08\\x0B-\\x1F\\x7F-\\x9F]*$";

/// Whether `s` holds only what `TEXT_PATTERN` allows.
pub fn is_plain_text(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// A JSON integer as JSON Schema reads `"type": "integer"`: any number
/// with a zero fractional part, so `3.0` is 3 (a client's JSON library may
/// well write it so).
pub fn integer(v: &Value) -> Option<i64> {
    /// 2^63: every f64 below it in magnitude converts to i64 exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < LIMIT)
            .map(|f| f as i64)
    })
}

pub const MAX_ATTRIBUTES: usize = 50;
pub const MAX_ATTRIBUTE_KEY: usize = 64;
pub const MAX_ATTRIBUTE_VALUE: usize = 500;

impl<'a> ObjectReader<'a> {
    /// Fails (as a field error on the root) when the body is not a JSON object.
    pub fn new(value: &'a Value) -> Result<Self, FieldErrors> {
        match value.as_object() {
            Some(obj) => Ok(Self {
                obj,
                errors: FieldErrors::default(),
            }),
            None => {
                let mut errors = FieldErrors::default();
                errors.push("$", "the request body must be a JSON object");
                Err(errors)
            }
        }
    }

    /// Rejects fields the schema does not know, so typos are not silently ignored.
    pub fn deny_unknown(&mut self, known: &[&str]) {
        for key in self.obj.keys() {
            if !known.contains(&key.as_str()) {
                self.errors.push(key.clone(), "unknown field");
            }
        }
    }

    /// Whether the body names `field` at all, even as null.
    pub fn names(&self, field: &str) -> bool {
        self.obj.contains_key(field)
    }

    pub fn string(&mut self, field: &str, required: bool, max_chars: usize) -> Option<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.errors.push(field, "is required");
                }
                None
            }
            Some(Value::String(s)) => {
                let chars = s.chars().count();
                if chars == 0 {
                    self.errors.push(field, "must not be empty");
                    None
                } else if chars > max_chars {
                    self.errors
                        .push(field, format!("must be at most {max_chars} characters"));
                    None
                } else if !is_plain_text(s) {
                    self.errors
                        .push(field, "must not contain control characters");
                    None
                } else {
                    Some(s.clone())
                }
            }
            Some(_) => {
                self.errors.push(field, "must be a string");
                None
            }
        }
    }

    pub fn int(&mut self, field: &str, required: bool, min: i64, max: i64) -> Option<i64> {
        match self.obj.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.errors.push(field, "is required");
                }
                None
            }
            Some(v @ Value::Number(_)) => match integer(v) {
                Some(v) if (min..=max).contains(&v) => Some(v),
                Some(_) => {
                    self.errors
                        .push(field, format!("must be between {min} and {max}"));
                    None
                }
                None => {
                    self.errors.push(field, "must be an integer");
                    None
                }
            },
            Some(_) => {
                self.errors.push(field, "must be an integer");
                None
            }
        }
    }

    pub fn string_map(&mut self, field: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match self.obj.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                if map.len() > MAX_ATTRIBUTES {
                    self.errors
                        .push(field, format!("must have at most {MAX_ATTRIBUTES} entries"));
                    return out;
                }
                for (k, v) in map {
                    let path = format!("{field}.{k}");
                    if k.is_empty() || k.chars().count() > MAX_ATTRIBUTE_KEY {
                        self.errors.push(
                            path,
                            format!("keys must be 1 to {MAX_ATTRIBUTE_KEY} characters"),
                        );
                        continue;
                    }
                    match v {
                        Value::String(s) if s.chars().count() <= MAX_ATTRIBUTE_VALUE => {
                            out.insert(k.clone(), s.clone());
                        }
                        Value::String(_) => self.errors.push(
                            path,
                            format!("must be at most {MAX_ATTRIBUTE_VALUE} characters"),
                        ),
                        _ => self.errors.push(path, "must be a string"),
                    }
                }
            }
            Some(_) => self
                .errors
                .push(field, "must be an object of string values"),
        }
        out
    }
}
