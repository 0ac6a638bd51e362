//! Evaluation of the IAM policy a Lambda authorizer returns, against the
//! request's method ARN, the way API Gateway does: an explicit Deny wins,
//! otherwise an Allow of `execute-api:Invoke` on a matching resource is
//! needed. Resource and action patterns use IAM wildcards (`*` any run of
//! characters, `?` one character), so `.../live/GET/*` covers every GET path.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No statement allows the call (implicit deny).
    ImplicitDeny,
    /// A Deny statement matches.
    ExplicitDeny,
}

/// IAM-style wildcard match (`*` and `?`), iterative with backtracking.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

fn action_matches(stmt: &Value) -> bool {
    let m = |a: &str| wildcard_match(&a.to_ascii_lowercase(), "execute-api:invoke");
    if let Some(na) = stmt.get("NotAction") {
        return !strings(Some(na)).into_iter().any(m);
    }
    strings(stmt.get("Action")).into_iter().any(m)
}

fn resource_matches(stmt: &Value, method_arn: &str) -> bool {
    if let Some(nr) = stmt.get("NotResource") {
        return !strings(Some(nr))
            .into_iter()
            .any(|r| wildcard_match(r, method_arn));
    }
    strings(stmt.get("Resource"))
        .into_iter()
        .any(|r| wildcard_match(r, method_arn))
}

/// Validate the shape API Gateway requires of a policy document.
pub fn validate(policy: &Value) -> Result<(), String> {
    let stmts = policy
        .get("Statement")
        .ok_or("policyDocument has no Statement")?;
    let list: Vec<&Value> = match stmts {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![stmts],
        _ => return Err("Statement must be a list or an object".into()),
    };
    for s in list {
        match s.get("Effect").and_then(Value::as_str) {
            Some("Allow" | "Deny") => {}
            _ => return Err("statement Effect must be Allow or Deny".into()),
        }
        if s.get("Action").is_none() && s.get("NotAction").is_none() {
            return Err("statement has no Action".into());
        }
        if s.get("Resource").is_none() && s.get("NotResource").is_none() {
            return Err("statement has no Resource".into());
        }
    }
    Ok(())
}

pub fn evaluate(policy: &Value, method_arn: &str) -> Decision {
    let stmts: Vec<&Value> = match policy.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => vec![],
    };
    let mut allowed = false;
    for s in stmts {
        if !(action_matches(s) && resource_matches(s, method_arn)) {
            continue;
        }
        match s.get("Effect").and_then(Value::as_str) {
            Some("Deny") => return Decision::ExplicitDeny,
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:abc123/live/GET/v1/items/SKU-1";

    fn policy(effect: &str, resource: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
        ]})
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ARN));
        assert!(wildcard_match(
            "arn:aws:execute-api:us-east-1:123456789012:abc123/*/GET/*",
            ARN
        ));
        assert!(wildcard_match(
            "arn:aws:execute-api:*:*:abc123/live/*/v1/items/*",
            ARN
        ));
        assert!(wildcard_match(
            "arn:aws:execute-api:us-east-1:123456789012:abc123/live/GET/v1/items/SKU-?",
            ARN
        ));
        assert!(!wildcard_match(
            "arn:aws:execute-api:us-east-1:123456789012:abc123/live/POST/*",
            ARN
        ));
        assert!(!wildcard_match(
            "arn:aws:execute-api:us-east-1:123456789012:other/live/GET/*",
            ARN
        ));
        assert!(!wildcard_match(
            "arn:aws:execute-api:us-east-1:123456789012:abc123/live/GET/v1/items",
            ARN
        ));
    }

    #[test]
    fn allow_deny_and_implicit_deny() {
        assert_eq!(evaluate(&policy("Allow", json!("*")), ARN), Decision::Allow);
        assert_eq!(
            evaluate(
                &policy(
                    "Allow",
                    json!(["arn:aws:execute-api:us-east-1:123456789012:abc123/live/GET/*"])
                ),
                ARN
            ),
            Decision::Allow
        );
        assert_eq!(
            evaluate(
                &policy("Allow", json!("arn:aws:execute-api:*:*:*/live/POST/*")),
                ARN
            ),
            Decision::ImplicitDeny
        );
        let mut p = policy("Allow", json!("*"));
        p["Statement"].as_array_mut().unwrap().push(
            json!({"Action": ["execute-api:*"], "Effect": "Deny", "Resource": "*/GET/v1/items/*"}),
        );
        assert_eq!(evaluate(&p, ARN), Decision::ExplicitDeny);
        // Single statement object and other actions.
        let single =
            json!({"Statement": {"Action": "s3:GetObject", "Effect": "Allow", "Resource": "*"}});
        assert_eq!(evaluate(&single, ARN), Decision::ImplicitDeny);
        assert!(validate(&single).is_ok());
        assert!(validate(&json!({"Statement": [{"Effect": "Maybe"}]})).is_err());
    }
}
