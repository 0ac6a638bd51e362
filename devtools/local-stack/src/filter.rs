//! Lambda event filtering (`FilterCriteria.Filters[].Pattern`) for SQS
//! records: the EventBridge-style pattern subset Lambda supports.
//!
//! A record passes when any pattern matches. In a pattern every key must
//! match (AND); a list of conditions matches when any does (OR); nested
//! objects descend into the record. Conditions: exact string/number/`null`,
//! `{"prefix"}`, `{"suffix"}`, `{"equals-ignore-case"}`, `{"anything-but"}`
//! (value, list, or `{"prefix"}`), `{"numeric": [op, n, ...]}`,
//! `{"exists": bool}`. A JSON body is matched as JSON; a pattern that looks
//! into the body of a non-JSON message does not match (Lambda drops it),
//! while a plain-string condition on `body` matches the raw text.

use serde_json::{Map, Value};

/// Does the record (an event record, `body` still a string) pass?
pub fn matches_any(patterns: &[Value], record: &Value) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let mut view = record.clone();
    if let Some(body) = record.get("body").and_then(Value::as_str)
        && let Ok(parsed @ (Value::Object(_) | Value::Array(_))) =
            serde_json::from_str::<Value>(body)
    {
        view["body"] = parsed;
    }
    patterns.iter().any(|p| match p {
        Value::Object(p) => object_matches(p, Some(&view)),
        _ => false,
    })
}

fn object_matches(pattern: &Map<String, Value>, value: Option<&Value>) -> bool {
    pattern.iter().all(|(k, cond)| {
        let field = value.and_then(|v| v.get(k));
        match cond {
            Value::Object(nested) => match field {
                Some(Value::Object(_)) => object_matches(nested, field),
                _ => object_matches(nested, None),
            },
            Value::Array(conds) => conds.iter().any(|c| condition_matches(c, field)),
            _ => false,
        }
    })
}

fn condition_matches(cond: &Value, field: Option<&Value>) -> bool {
    // An array field matches when any element does.
    if let Some(Value::Array(items)) = field {
        return items.iter().any(|i| condition_matches(cond, Some(i)));
    }
    match cond {
        Value::Null => matches!(field, Some(Value::Null)),
        Value::String(s) => field.and_then(Value::as_str) == Some(s.as_str()),
        Value::Number(n) => match (field.and_then(Value::as_f64), n.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        Value::Bool(b) => field.and_then(Value::as_bool) == Some(*b),
        Value::Object(op) if op.len() == 1 => {
            let (name, arg) = op.iter().next().expect("one entry");
            operator(name, arg, field)
        }
        _ => false,
    }
}

fn operator(name: &str, arg: &Value, field: Option<&Value>) -> bool {
    let text = field.and_then(Value::as_str);
    match name {
        "exists" => arg.as_bool() == Some(field.is_some()),
        "prefix" => match (text, arg) {
            (Some(t), Value::String(p)) => t.starts_with(p.as_str()),
            (Some(t), Value::Object(o)) => o
                .get("equals-ignore-case")
                .and_then(Value::as_str)
                .is_some_and(|p| t.to_lowercase().starts_with(&p.to_lowercase())),
            _ => false,
        },
        "suffix" => match (text, arg) {
            (Some(t), Value::String(p)) => t.ends_with(p.as_str()),
            (Some(t), Value::Object(o)) => o
                .get("equals-ignore-case")
                .and_then(Value::as_str)
                .is_some_and(|p| t.to_lowercase().ends_with(&p.to_lowercase())),
            _ => false,
        },
        "equals-ignore-case" => match (text, arg.as_str()) {
            (Some(t), Some(p)) => t.eq_ignore_ascii_case(p) || t.to_lowercase() == p.to_lowercase(),
            _ => false,
        },
        "anything-but" => {
            let Some(f) = field else { return false };
            match arg {
                Value::Array(vals) => !vals.iter().any(|v| condition_matches(v, Some(f))),
                Value::Object(_) => !condition_matches(arg, Some(f)),
                v => !condition_matches(v, Some(f)),
            }
        }
        "numeric" => {
            let (Some(x), Some(ops)) = (field.and_then(Value::as_f64), arg.as_array()) else {
                return false;
            };
            ops.chunks(2).all(
                |c| match (c[0].as_str(), c.get(1).and_then(Value::as_f64)) {
                    (Some("="), Some(n)) => x == n,
                    (Some("<"), Some(n)) => x < n,
                    (Some("<="), Some(n)) => x <= n,
                    (Some(">"), Some(n)) => x > n,
                    (Some(">="), Some(n)) => x >= n,
                    _ => false,
                },
            )
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(body: &str) -> Value {
        json!({
            "messageId": "m",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SenderId": "S"},
            "messageAttributes": {"kind": {"stringValue": "chunk", "dataType": "String"}}
        })
    }

    #[test]
    fn no_filters_pass_everything() {
        assert!(matches_any(&[], &rec("x")));
    }

    #[test]
    fn json_body_conditions() {
        let r = rec(r#"{"type":"chunk","size":7,"tags":["a","b"],"meta":{"tenant":"acme-1"}}"#);
        let yes = [
            json!({"body": {"type": ["chunk"]}}),
            json!({"body": {"type": ["x", "chunk"]}}),
            json!({"body": {"size": [{"numeric": [">", 5, "<=", 7]}]}}),
            json!({"body": {"tags": ["b"]}}),
            json!({"body": {"meta": {"tenant": [{"prefix": "acme-"}]}}}),
            json!({"body": {"meta": {"tenant": [{"suffix": "-1"}]}}}),
            json!({"body": {"type": [{"anything-but": ["other"]}]}}),
            json!({"body": {"type": [{"equals-ignore-case": "CHUNK"}]}}),
            json!({"body": {"missing": [{"exists": false}], "type": [{"exists": true}]}}),
            json!({"messageAttributes": {"kind": {"stringValue": ["chunk"]}}}),
            json!({"attributes": {"SenderId": ["S"]}}),
        ];
        for p in &yes {
            assert!(matches_any(std::slice::from_ref(p), &r), "{p}");
        }
        let no = [
            json!({"body": {"type": ["other"]}}),
            json!({"body": {"size": [{"numeric": [">", 7]}]}}),
            json!({"body": {"type": [{"anything-but": "chunk"}]}}),
            json!({"body": {"type": ["chunk"], "size": [8]}}),
            json!({"body": {"missing": [{"exists": true}]}}),
            json!({"body": {"meta": {"tenant": [{"prefix": "other"}]}}}),
        ];
        for p in &no {
            assert!(!matches_any(std::slice::from_ref(p), &r), "{p}");
        }
        // Filters are ORed.
        assert!(matches_any(&[no[0].clone(), yes[0].clone()], &r));
    }

    #[test]
    fn plain_text_body() {
        let r = rec("hello world");
        assert!(matches_any(&[json!({"body": ["hello world"]})], &r));
        assert!(matches_any(&[json!({"body": [{"prefix": "hello"}]})], &r));
        // Looking into a non-JSON body never matches.
        assert!(!matches_any(&[json!({"body": {"type": ["chunk"]}})], &r));
    }
}
