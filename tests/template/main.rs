//! Deploy rules, checked on the template as CloudFormation will deploy it:
//! `template.yaml` after the SAM transform (aws-sam-translator, the pinned
//! version the local stack uses, run by `devtools/stack.py show`) with the
//! resources of its nested stacks (`ops/observability.yaml`: alarms, metric
//! filters, the dashboard; `stack.py show --nested`), plus `samconfig.toml`.
//! No local stack needed. Each rule is one AWS behaviour the emulator would
//! not show: a template that breaks it deploys, then fails.
//!
//! `STOCKROOM_TEMPLATE=<file>` checks another template (e.g. an older one).

use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `devtools/stack.py show [extra]` on the template, as JSON.
fn stack_py_show(extra: &[&str]) -> Value {
    let template = std::env::var("STOCKROOM_TEMPLATE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("template.yaml"));
    let out = Command::new(stockroom_tests::venv_tool("python"))
        .arg(root().join("devtools/stack.py"))
        .arg("show")
        .arg("--template")
        .arg(&template)
        .args(extra)
        .env_remove("STOCKROOM_PARAMETER_OVERRIDES")
        .output()
        .expect(".venv/bin/python runs devtools/stack.py");
    assert!(
        out.status.success(),
        "stack.py show {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stack.py show prints JSON")
}

/// The translated template (with the template's parameter defaults).
fn cfn() -> &'static Value {
    static CFN: OnceLock<Value> = OnceLock::new();
    CFN.get_or_init(|| stack_py_show(&[]))
}

/// The templates of the nested stacks, by the parent's logical id.
fn nested() -> &'static Map<String, Value> {
    static NESTED: OnceLock<Value> = OnceLock::new();
    NESTED
        .get_or_init(|| stack_py_show(&["--nested"]))
        .as_object()
        .expect("stack.py show --nested prints an object")
}

/// Every resource the deploy creates: the template's, and each nested
/// stack's as `<stack>/<resource>`, its parameters replaced by what the
/// template passes (`OperatorAlertsTopicArn` -> `{"Ref": "OperatorAlertsTopic"}`),
/// so a rule follows a nested alarm to the template's topic and its key.
fn resources() -> &'static Map<String, Value> {
    static ALL: OnceLock<Map<String, Value>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = cfn()["Resources"].as_object().expect("Resources").clone();
        for (stack, template) in nested() {
            let stack_resource = &all[stack];
            assert_eq!(
                stack_resource["Type"], "AWS::CloudFormation::Stack",
                "{stack}: a nested template, so a nested stack"
            );
            let names = Inlined::new(stack, template, &stack_resource["Properties"]["Parameters"]);
            for (lid, r) in template["Resources"].as_object().expect("nested Resources") {
                all.insert(format!("{stack}/{lid}"), names.inline(r));
            }
        }
        all
    })
}

/// A nested stack's values as its parent sees them.
struct Inlined<'a> {
    stack: &'a str,
    /// Parameter -> the value the parent passes (or the template's default).
    parameters: Map<String, Value>,
    resources: BTreeSet<String>,
}

impl<'a> Inlined<'a> {
    fn new(stack: &'a str, template: &Value, passed: &Value) -> Self {
        let mut parameters = Map::new();
        for (name, declared) in template["Parameters"].as_object().into_iter().flatten() {
            let value = passed
                .get(name)
                .or_else(|| declared.get("Default"))
                .unwrap_or_else(|| {
                    panic!("{stack}: parameter {name} is neither passed nor defaulted")
                });
            parameters.insert(name.clone(), value.clone());
        }
        let resources = template["Resources"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(lid, _)| lid.clone())
            .collect();
        Inlined {
            stack,
            parameters,
            resources,
        }
    }

    /// The value of `${name}` (or `Ref name`) inside the nested stack.
    fn name(&self, name: &str) -> Option<Value> {
        if let Some(value) = self.parameters.get(name) {
            return Some(value.clone());
        }
        let (lid, attr) = name.split_once('.').unwrap_or((name, ""));
        if !self.resources.contains(lid) {
            return None; // a pseudo parameter
        }
        let lid = format!("{}/{lid}", self.stack);
        Some(if attr.is_empty() {
            serde_json::json!({ "Ref": lid })
        } else {
            serde_json::json!({ "Fn::GetAtt": [lid, attr] })
        })
    }

    fn inline(&self, v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("Ref") {
                    return self.name(r).unwrap_or_else(|| v.clone());
                }
                if let Some(Value::Array(ga)) = m.get("Fn::GetAtt")
                    && let Some(Value::String(lid)) = ga.first()
                    && self.resources.contains(lid)
                {
                    let mut ga = ga.clone();
                    ga[0] = Value::String(format!("{}/{lid}", self.stack));
                    return serde_json::json!({ "Fn::GetAtt": ga });
                }
                if let Some(sub) = m.get("Fn::Sub") {
                    // Into the [text, variables] form, each placeholder of the
                    // nested stack a variable holding the parent's value.
                    let (text, vars) = match sub {
                        Value::Array(a) => (
                            a.first().and_then(Value::as_str).unwrap_or_default(),
                            a.get(1)
                                .and_then(Value::as_object)
                                .cloned()
                                .unwrap_or_default(),
                        ),
                        Value::String(s) => (s.as_str(), Map::new()),
                        _ => ("", Map::new()),
                    };
                    let mut vars: Map<String, Value> = vars
                        .iter()
                        .map(|(k, x)| (k.clone(), self.inline(x)))
                        .collect();
                    for var in placeholders(text) {
                        if !vars.contains_key(&var)
                            && let Some(value) = self.name(&var)
                        {
                            vars.insert(var, value);
                        }
                    }
                    return serde_json::json!({ "Fn::Sub": [text, vars] });
                }
                Value::Object(m.iter().map(|(k, x)| (k.clone(), self.inline(x))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.inline(x)).collect()),
            other => other.clone(),
        }
    }
}

fn of_type(ty: &str) -> Vec<(&'static String, &'static Value)> {
    resources()
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .collect()
}

fn type_of(lid: &str) -> &'static str {
    resources()
        .get(lid)
        .and_then(|r| r["Type"].as_str())
        .unwrap_or("")
}

/// Logical ids and pseudo parameters (`AWS::StackId`) a value refers to
/// through Ref, Fn::GetAtt and Fn::Sub placeholders (a Sub's own variables
/// are followed to what they refer to).
fn refs(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    collect_refs(v, &mut out);
    out
}

fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("Ref") {
                out.insert(r.split('.').next().unwrap_or(r).to_string());
            }
            if let Some(ga) = m.get("Fn::GetAtt") {
                let target = match ga {
                    Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or(""),
                    Value::String(s) => s.split('.').next().unwrap_or(""),
                    _ => "",
                };
                out.insert(target.to_string());
            }
            if let Some(sub) = m.get("Fn::Sub") {
                let (text, vars) = match sub {
                    Value::String(s) => (s.as_str(), None),
                    Value::Array(a) => (
                        a.first().and_then(Value::as_str).unwrap_or(""),
                        a.get(1).and_then(Value::as_object),
                    ),
                    _ => ("", None),
                };
                for var in placeholders(text) {
                    match vars.and_then(|vars| vars.get(&var)) {
                        Some(value) => collect_refs(value, out),
                        None => {
                            out.insert(var.split('.').next().unwrap_or(&var).to_string());
                        }
                    }
                }
                return;
            }
            for x in m.values() {
                collect_refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn placeholders(text: &str) -> Vec<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(var, _)| var))
        .filter(|var| !var.starts_with('!'))
        .map(str::to_string)
        .collect()
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// IAM action matching with `*` wildcards (case-insensitive, as IAM does).
fn action_matches(pattern: &str, action: &str) -> bool {
    let (p, a) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    match p.split_once('*') {
        None => p == a,
        Some((prefix, "")) => a.starts_with(prefix),
        Some((prefix, rest)) => {
            a.starts_with(prefix)
                && (0..=a.len() - prefix.len())
                    .any(|i| action_matches(rest, &a[prefix.len() + i..]))
        }
    }
}

fn allows(statement: &Value, action: &str) -> bool {
    statement["Effect"] == "Allow"
        && as_list(&statement["Action"])
            .iter()
            .filter_map(|a| a.as_str())
            .any(|p| action_matches(p, action))
}

// ------------------------------------------------------------------ rule 1

/// Item writes each function's code performs inside TransactWriteItems /
/// BatchWriteItem, and the file that builds them. DynamoDB authorises each
/// of them as its own IAM action; `dynamodb:TransactWriteItems` grants none.
const WRITES_INSIDE_TRANSACTIONS: &[(&str, &str, &[&str])] = &[
    (
        "BatchWorkerFunction",
        "shared/aws/src/dynamodb/chunks.rs",
        &["PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"],
    ),
    (
        "ItemsApiFunction",
        "shared/aws/src/dynamodb/items.rs",
        &["PutItem", "UpdateItem", "DeleteItem"],
    ),
    (
        "BatchesApiFunction",
        "shared/aws/src/dynamodb/batches.rs",
        &["PutItem", "UpdateItem"],
    ),
    (
        "BatchSplitterFunction",
        "shared/aws/src/dynamodb/batches.rs",
        &["PutItem", "UpdateItem"],
    ),
];

/// The IAM action each write request builder of the SDK is authorised as.
const BUILDERS: &[(&str, &str)] = &[
    ("Put::builder", "PutItem"),
    ("PutRequest::builder", "PutItem"),
    ("Update::builder", "UpdateItem"),
    ("Delete::builder", "DeleteItem"),
    ("DeleteRequest::builder", "DeleteItem"),
    ("ConditionCheck::builder", "ConditionCheckItem"),
];

#[test]
fn every_write_inside_a_transaction_or_batch_is_granted_as_its_own_action() {
    let mut missing = Vec::new();
    for (function, source, actions) in WRITES_INSIDE_TRANSACTIONS {
        // The list above must keep up with the code that builds the writes.
        let code = std::fs::read_to_string(root().join(source)).expect(source);
        for (builder, action) in BUILDERS {
            if code.contains(builder) {
                assert!(
                    actions.contains(action),
                    "{source} builds {builder}: list {action} for {function}"
                );
            }
        }
        let role = refs(&resources()[*function]["Properties"]["Role"]);
        let role = role.iter().next().expect("function role");
        let statements: Vec<&Value> = as_list(&resources()[role]["Properties"]["Policies"])
            .into_iter()
            .flat_map(|p| as_list(&p["PolicyDocument"]["Statement"]))
            .collect();
        for action in *actions {
            let action = format!("dynamodb:{action}");
            let granted = statements
                .iter()
                .any(|s| allows(s, &action) && refs(&s["Resource"]).contains("StockTable"));
            if !granted {
                missing.push(format!("{function} ({role}): {action} on StockTable"));
            }
        }
    }
    assert!(missing.is_empty(), "not granted: {missing:#?}");
}

// ------------------------------------------------------------------ rule 2

/// The service principals that publish to a topic or queue of the template.
fn publishers(target: &str) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    for (_, r) in resources() {
        let p = &r["Properties"];
        let points_here = |v: &Value| refs(v).contains(target);
        match r["Type"].as_str().unwrap_or("") {
            "AWS::CloudWatch::Alarm" | "AWS::CloudWatch::CompositeAlarm"
                if ["AlarmActions", "OKActions", "InsufficientDataActions"]
                    .iter()
                    .any(|k| points_here(&p[*k])) =>
            {
                out.insert("cloudwatch.amazonaws.com");
            }
            "AWS::SNS::Subscription" if points_here(&p["Endpoint"]) => {
                out.insert("sns.amazonaws.com");
            }
            "AWS::SNS::Topic" if points_here(&p["Subscription"]) => {
                out.insert("sns.amazonaws.com");
            }
            "AWS::S3::Bucket" if points_here(&p["NotificationConfiguration"]) => {
                out.insert("s3.amazonaws.com");
            }
            "AWS::Events::Rule" if points_here(&p["Targets"]) => {
                out.insert("events.amazonaws.com");
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_encrypted_topic_and_queue_lets_its_publishers_use_its_key() {
    let mut checked = 0;
    let mut missing = Vec::new();
    for ty in ["AWS::SNS::Topic", "AWS::SQS::Queue"] {
        for (lid, r) in of_type(ty) {
            let keys: Vec<String> = refs(&r["Properties"]["KmsMasterKeyId"])
                .into_iter()
                .filter(|k| type_of(k) == "AWS::KMS::Key")
                .collect();
            for key in keys {
                let statements =
                    as_list(&resources()[&key]["Properties"]["KeyPolicy"]["Statement"]);
                for principal in publishers(lid) {
                    checked += 1;
                    for action in ["kms:Decrypt", "kms:GenerateDataKey"] {
                        let ok = statements.iter().any(|s| {
                            allows(s, action)
                                && as_list(&s["Principal"]["Service"])
                                    .iter()
                                    .any(|p| p.as_str() == Some(principal))
                        });
                        if !ok {
                            missing
                                .push(format!("{principal} publishes to {lid}: {action} on {key}"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        checked > 0,
        "no encrypted topic or queue with a publisher found"
    );
    assert!(missing.is_empty(), "key policies miss: {missing:#?}");
}

/// The rules above see the nested stacks' resources with the template's
/// names: every alarm action is a topic of the template (whose key policy
/// rule 2 checks), however many stacks away the alarm is declared.
#[test]
fn the_nested_stacks_alarms_are_checked_with_the_template() {
    let alarms = of_type("AWS::CloudWatch::Alarm");
    let seen = alarms.iter().filter(|(lid, _)| lid.contains('/')).count();
    let declared: usize = nested()
        .values()
        .flat_map(|t| t["Resources"].as_object().into_iter().flatten())
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .count();
    assert!(
        seen > 0 && seen == declared,
        "{seen} nested alarms seen, {declared} declared in nested templates"
    );
    let mut wrong = Vec::new();
    for (lid, r) in &alarms {
        for key in ["AlarmActions", "OKActions", "InsufficientDataActions"] {
            for target in refs(&r["Properties"][key]) {
                if type_of(&target) != "AWS::SNS::Topic" {
                    wrong.push(format!("{lid}.{key} -> {target}"));
                } else if !publishers(&target).contains("cloudwatch.amazonaws.com") {
                    wrong.push(format!("{target}: its publishers miss {lid}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "alarm actions that are no topic of the template: {wrong:#?}"
    );
}

// ------------------------------------------------------------------ rule 3

/// Lambda functions and aliases a value points to.
fn lambda_targets(v: &Value) -> Vec<String> {
    refs(v)
        .into_iter()
        .filter(|t| matches!(type_of(t), "AWS::Lambda::Function" | "AWS::Lambda::Alias"))
        .collect()
}

fn collect_invocation_uris(v: &Value, at: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let here = format!("{at}/{k}");
                if k == "authorizerUri"
                    || (k == "uri" && at.ends_with("x-amazon-apigateway-integration"))
                {
                    out.push((here.clone(), x.clone()));
                }
                collect_invocation_uris(x, &here, out);
            }
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| collect_invocation_uris(x, &format!("{at}/{i}"), out)),
        _ => {}
    }
}

#[test]
fn every_function_api_gateway_or_an_event_source_invokes_is_invoked_through_its_alias() {
    let mut invocations: Vec<(String, Value)> = Vec::new();
    for (lid, r) in of_type("AWS::ApiGateway::RestApi") {
        collect_invocation_uris(&r["Properties"]["Body"], lid, &mut invocations);
    }
    for (lid, r) in of_type("AWS::ApiGateway::Authorizer") {
        invocations.push((lid.clone(), r["Properties"]["AuthorizerUri"].clone()));
    }
    for (lid, r) in of_type("AWS::ApiGateway::Method") {
        invocations.push((lid.clone(), r["Properties"]["Integration"]["Uri"].clone()));
    }
    for (lid, r) in of_type("AWS::Lambda::EventSourceMapping") {
        invocations.push((lid.clone(), r["Properties"]["FunctionName"].clone()));
    }
    for (lid, r) in of_type("AWS::Lambda::Permission") {
        if r["Properties"]["Principal"] == "apigateway.amazonaws.com" {
            invocations.push((lid.clone(), r["Properties"]["FunctionName"].clone()));
        }
    }
    let mut checked = BTreeSet::new();
    let mut direct = Vec::new();
    for (at, v) in &invocations {
        for target in lambda_targets(v) {
            checked.insert(target.clone());
            if type_of(&target) != "AWS::Lambda::Alias" {
                direct.push(format!("{at} -> {target}"));
            }
        }
    }
    assert!(
        checked.len() >= 2,
        "found too few invoked functions to check: {checked:?}"
    );
    assert!(
        direct.is_empty(),
        "invoked without the alias (outside gradual deployments): {direct:#?}"
    );
}

// ------------------------------------------------------------------ rule 5

/// Resource types that are one setting per account and region: two stacks
/// creating one keep overwriting each other.
const ONE_PER_ACCOUNT_AND_REGION: &[&str] = &[
    "AWS::ApiGateway::Account",
    "AWS::GuardDuty::Detector",
    "AWS::SecurityHub::Hub",
    "AWS::Config::ConfigurationRecorder",
    "AWS::IAM::AccountAlias",
];

/// A condition's value with the template's parameter defaults.
fn condition_value(v: &Value) -> Option<Value> {
    let params = &cfn()["Parameters"];
    match v {
        Value::Object(m) => {
            if let Some(Value::String(p)) = m.get("Ref") {
                return params[p].get("Default").cloned();
            }
            if let Some(Value::String(c)) = m.get("Condition") {
                return condition_value(&cfn()["Conditions"][c]);
            }
            if let Some(Value::Array(a)) = m.get("Fn::Equals") {
                let vals: Option<Vec<Value>> = a.iter().map(condition_value).collect();
                let vals = vals?;
                return Some(Value::Bool(vals.first() == vals.get(1)));
            }
            if let Some(Value::Array(a)) = m.get("Fn::Not") {
                return Some(Value::Bool(!condition_value(a.first()?)?.as_bool()?));
            }
            if let Some(Value::Array(a)) = m.get("Fn::And") {
                let all: Option<Vec<bool>> = a
                    .iter()
                    .map(|x| condition_value(x).and_then(|v| v.as_bool()))
                    .collect();
                return Some(Value::Bool(all?.iter().all(|b| *b)));
            }
            if let Some(Value::Array(a)) = m.get("Fn::Or") {
                let all: Option<Vec<bool>> = a
                    .iter()
                    .map(|x| condition_value(x).and_then(|v| v.as_bool()))
                    .collect();
                return Some(Value::Bool(all?.iter().any(|b| *b)));
            }
            None
        }
        other => Some(other.clone()),
    }
}

#[test]
fn no_one_per_account_resource_is_created_unconditionally() {
    let mut unconditional = Vec::new();
    for ty in ONE_PER_ACCOUNT_AND_REGION {
        for (lid, r) in of_type(ty) {
            let on_by_default = match r["Condition"].as_str() {
                None => true,
                Some(c) => condition_value(&cfn()["Conditions"][c]) != Some(Value::Bool(false)),
            };
            if on_by_default {
                unconditional.push(format!("{lid} ({ty})"));
            }
        }
    }
    assert!(
        unconditional.is_empty(),
        "one per account and region, yet created by every stack (give it a condition, off by default): {unconditional:?}"
    );
}

// ------------------------------------------------------------------ rule 6

/// The property holding a resource's physical name, per type.
const NAME_PROPERTIES: &[(&str, &str)] = &[
    ("AWS::Logs::LogGroup", "LogGroupName"),
    ("AWS::DynamoDB::Table", "TableName"),
    ("AWS::S3::Bucket", "BucketName"),
    ("AWS::SQS::Queue", "QueueName"),
    ("AWS::SNS::Topic", "TopicName"),
    ("AWS::KMS::Alias", "AliasName"),
    ("AWS::SecretsManager::Secret", "Name"),
    ("AWS::Lambda::Function", "FunctionName"),
    ("AWS::IAM::Role", "RoleName"),
];

/// Whether a resource's physical name differs for each stack created (even
/// under the same stack name): CloudFormation generates it, or it includes
/// the stack id or a generated name.
fn unique_per_stack(lid: &str, depth: usize) -> bool {
    let r = &resources()[lid];
    let ty = r["Type"].as_str().unwrap_or("");
    let Some((_, prop)) = NAME_PROPERTIES.iter().find(|(t, _)| *t == ty) else {
        // Types without a name property here: assume a generated id.
        return true;
    };
    let name = &r["Properties"][*prop];
    if name.is_null() {
        return true;
    }
    depth < 8
        && refs(name).iter().any(|x| {
            x == "AWS::StackId" || (resources().contains_key(x) && unique_per_stack(x, depth + 1))
        })
}

#[test]
fn no_retained_resource_has_a_name_a_redeploy_would_collide_with() {
    let mut colliding = Vec::new();
    let mut retained = 0;
    for (lid, r) in resources() {
        if !matches!(
            r["DeletionPolicy"].as_str(),
            Some("Retain" | "RetainExceptOnCreate")
        ) {
            continue;
        }
        retained += 1;
        if !unique_per_stack(lid, 0) {
            colliding.push(lid.clone());
        }
    }
    assert!(retained > 0, "no retained resource found");
    assert!(
        colliding.is_empty(),
        "retained with a fixed name: after `sam delete`, a new stack of the same name fails to create {colliding:?}"
    );
}

// ------------------------------------------------------------------ rule 4

fn samconfig() -> Value {
    let path = root().join("samconfig.toml");
    let out = Command::new(stockroom_tests::venv_tool("python"))
        .args([
            "-c",
            "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(&path)
        .output()
        .expect(".venv/bin/python runs");
    assert!(
        out.status.success(),
        "{} does not parse: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn every_environment_builds_and_deploys_without_a_prompt() {
    let config = samconfig();
    let beta_build = resources()
        .values()
        .any(|r| r["Metadata"]["BuildMethod"] == "rust-cargolambda");
    let parameters = cfn()["Parameters"].as_object().expect("Parameters");
    for env in ["dev", "prod"] {
        let build = &config[env]["build"]["parameters"];
        let deploy = &config[env]["deploy"]["parameters"];
        if beta_build {
            assert_eq!(
                build["beta_features"],
                Value::Bool(true),
                "[{env}.build.parameters] beta_features = true, or sam build asks y/N (rust-cargolambda is a beta feature)"
            );
        }
        assert!(deploy["stack_name"].is_string(), "{env}: stack_name");
        assert_eq!(deploy["resolve_s3"], Value::Bool(true), "{env}: resolve_s3");
        assert_eq!(
            deploy["confirm_changeset"],
            Value::Bool(false),
            "{env}: confirm_changeset"
        );
        let capabilities = deploy["capabilities"].to_string();
        assert!(
            capabilities.contains("CAPABILITY_IAM"),
            "{env}: capabilities"
        );
        if !nested().is_empty() {
            assert!(
                capabilities.contains("CAPABILITY_AUTO_EXPAND"),
                "{env}: a template with nested applications deploys with CAPABILITY_AUTO_EXPAND"
            );
        }
        for pair in deploy["parameter_overrides"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
        {
            let name = pair.split('=').next().unwrap_or_default();
            assert!(
                parameters.contains_key(name),
                "{env}: unknown parameter {name}"
            );
        }
    }
    let text = std::fs::read_to_string(root().join("samconfig.toml")).expect("samconfig.toml");
    let digits = text
        .split(|c: char| !c.is_ascii_digit())
        .any(|run| run.len() == 12);
    assert!(!digits, "samconfig.toml must not carry an account id");
    let makefile = std::fs::read_to_string(root().join("Makefile")).expect("Makefile");
    let deploy_recipe: Vec<&str> = makefile
        .lines()
        .skip_while(|l| !l.starts_with("deploy:"))
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .collect();
    assert!(
        !deploy_recipe.is_empty()
            && deploy_recipe.iter().all(|l| !l.contains("--guided"))
            && deploy_recipe.iter().any(|l| l.contains("--config-env")),
        "make deploy runs sam deploy --config-env $(ENV), not --guided: {deploy_recipe:?}"
    );
}
