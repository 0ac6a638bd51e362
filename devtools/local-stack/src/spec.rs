//! `.local/stack.json`: the normalised view of template.yaml written by
//! `devtools/stack.py` (functions, routes, authorizers, gateway responses).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Stack {
    pub stack_name: String,
    pub region: String,
    pub account_id: String,
    /// AWS emulator endpoint (moto server) the functions talk to.
    pub endpoint: String,
    pub functions: BTreeMap<String, FunctionSpec>,
    pub api: Option<ApiSpec>,
    #[serde(default)]
    pub event_sources: Vec<EventSourceSpec>,
}

/// An `AWS::Lambda::EventSourceMapping` (SAM `Type: SQS` events).
#[derive(Debug, Clone, Deserialize)]
pub struct EventSourceSpec {
    pub logical_id: String,
    /// Logical id (or name/ARN) of the function.
    pub function: String,
    pub source_arn: String,
    /// Queue URL on the emulator (SQS sources).
    #[serde(default)]
    pub queue_url: Option<String>,
    #[serde(default)]
    pub batch_size: Option<u64>,
    #[serde(default)]
    pub maximum_batching_window_seconds: Option<u64>,
    /// ScalingConfig.MaximumConcurrency.
    #[serde(default)]
    pub maximum_concurrency: Option<u64>,
    #[serde(default)]
    pub function_response_types: Vec<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// FilterCriteria.Filters[].Pattern, parsed.
    #[serde(default)]
    pub filter_criteria: Vec<serde_json::Value>,
    /// The source is a FIFO queue.
    #[serde(default)]
    pub fifo: bool,
    /// Stream sources: TRIM_HORIZON | LATEST (| AT_TIMESTAMP, Kinesis only).
    #[serde(default)]
    pub starting_position: Option<String>,
    #[serde(default)]
    pub bisect_batch_on_function_error: bool,
    /// -1 (default): retry until the records expire.
    #[serde(default)]
    pub maximum_retry_attempts: Option<i64>,
    /// -1 (default): the stream's retention (24 h for DynamoDB).
    #[serde(default)]
    pub maximum_record_age_seconds: Option<i64>,
    #[serde(default)]
    pub parallelization_factor: Option<i64>,
    #[serde(default)]
    pub tumbling_window_seconds: Option<i64>,
    /// DestinationConfig.OnFailure.Destination (an ARN).
    #[serde(default)]
    pub on_failure_destination: Option<String>,
    /// Its queue URL on the emulator, when it is a queue.
    #[serde(default)]
    pub on_failure_queue_url: Option<String>,
}

impl EventSourceSpec {
    pub fn is_sqs(&self) -> bool {
        self.source_arn.starts_with("arn:aws:sqs:")
    }

    pub fn is_dynamodb_stream(&self) -> bool {
        self.source_arn.starts_with("arn:aws:dynamodb:") && self.source_arn.contains("/stream/")
    }

    /// What CreateEventSourceMapping (and so CloudFormation) refuses for
    /// this mapping, every problem at once; empty if it is valid.
    pub fn invalid(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut no = |cond: bool, why: &str| {
            if cond {
                out.push(why.to_string());
            }
        };
        let window = self.maximum_batching_window_seconds;
        no(
            window.is_some_and(|w| w > 300),
            "MaximumBatchingWindowInSeconds must be 0..300",
        );
        no(
            !self
                .function_response_types
                .iter()
                .all(|t| t == "ReportBatchItemFailures"),
            "FunctionResponseTypes accepts only ReportBatchItemFailures",
        );
        let stream_only = [
            (self.starting_position.is_some(), "StartingPosition"),
            (
                self.bisect_batch_on_function_error,
                "BisectBatchOnFunctionError",
            ),
            (
                self.maximum_retry_attempts.is_some(),
                "MaximumRetryAttempts",
            ),
            (
                self.maximum_record_age_seconds.is_some(),
                "MaximumRecordAgeInSeconds",
            ),
            (
                self.parallelization_factor.is_some(),
                "ParallelizationFactor",
            ),
            (
                self.tumbling_window_seconds.is_some(),
                "TumblingWindowInSeconds",
            ),
            (self.on_failure_destination.is_some(), "DestinationConfig"),
        ];
        if self.is_sqs() {
            for (set, name) in stream_only {
                no(
                    set,
                    &format!("{name} is not supported for SQS event sources"),
                );
            }
            let size = self.batch_size.unwrap_or(10);
            if self.fifo {
                no(
                    !(1..=10).contains(&size),
                    "BatchSize must be 1..10 for a FIFO queue",
                );
                no(
                    window.is_some(),
                    "MaximumBatchingWindowInSeconds is not supported for FIFO queues",
                );
            } else {
                no(
                    !(1..=10_000).contains(&size),
                    "BatchSize must be 1..10000 for an SQS queue",
                );
                no(
                    size > 10 && window.unwrap_or(0) == 0,
                    "MaximumBatchingWindowInSeconds must be greater than 0 when BatchSize is greater than 10",
                );
            }
        } else if self.is_dynamodb_stream() {
            no(
                self.maximum_concurrency.is_some(),
                "ScalingConfig is supported for SQS event sources only",
            );
            match self.starting_position.as_deref() {
                Some("TRIM_HORIZON" | "LATEST") => {}
                None => no(true, "StartingPosition is required for a stream"),
                Some(other) => no(
                    true,
                    &format!(
                        "StartingPosition {other} is not supported for DynamoDB streams (TRIM_HORIZON or LATEST)"
                    ),
                ),
            }
            no(
                !(1..=10_000).contains(&self.batch_size.unwrap_or(100)),
                "BatchSize must be 1..10000 for a DynamoDB stream",
            );
            no(
                self.maximum_retry_attempts
                    .is_some_and(|n| !(-1..=10_000).contains(&n)),
                "MaximumRetryAttempts must be -1..10000",
            );
            no(
                self.maximum_record_age_seconds
                    .is_some_and(|n| n != -1 && !(60..=604_800).contains(&n)),
                "MaximumRecordAgeInSeconds must be -1 or 60..604800",
            );
            no(
                self.parallelization_factor
                    .is_some_and(|n| !(1..=10).contains(&n)),
                "ParallelizationFactor must be 1..10",
            );
            no(
                self.tumbling_window_seconds
                    .is_some_and(|n| !(0..=900).contains(&n)),
                "TumblingWindowInSeconds must be 0..900",
            );
            no(
                self.on_failure_destination.as_deref().is_some_and(|d| {
                    !(d.starts_with("arn:aws:sqs:")
                        || d.starts_with("arn:aws:sns:")
                        || d.starts_with("arn:aws:s3:"))
                }),
                "DestinationConfig.OnFailure.Destination must be an SQS queue, SNS topic or S3 bucket ARN",
            );
        }
        out
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionSpec {
    /// Physical function name (AWS_LAMBDA_FUNCTION_NAME).
    pub name: String,
    pub arn: String,
    /// Cargo binary (Metadata.BuildProperties.Binary).
    pub binary: String,
    #[serde(default = "default_handler")]
    pub handler: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Seconds.
    pub timeout: u64,
    /// MB.
    pub memory: u64,
    /// The function's own access key id: the emulator authorises the
    /// function's calls against its role (devtools/iam.py).
    #[serde(default)]
    pub access_key_id: Option<String>,
}

/// The access key of callers that are not a function (the operator's, the
/// local gateway's): the emulator does not restrict it.
pub const OPERATOR_ACCESS_KEY: &str = "test";

impl FunctionSpec {
    pub fn access_key(&self) -> &str {
        self.access_key_id.as_deref().unwrap_or(OPERATOR_ACCESS_KEY)
    }
}

fn default_handler() -> String {
    "bootstrap".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSpec {
    pub logical_id: String,
    pub api_id: String,
    pub stage: String,
    #[serde(default)]
    pub stage_variables: BTreeMap<String, String>,
    #[serde(default)]
    pub throttling: Option<BTreeMap<String, Throttle>>,
    #[serde(default)]
    pub api_key_source: ApiKeySource,
    #[serde(default)]
    pub usage_plans: Vec<UsagePlanSpec>,
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub authorizers: BTreeMap<String, AuthorizerSpec>,
    #[serde(default)]
    pub gateway_responses: BTreeMap<String, GatewayResponseSpec>,
    #[serde(default)]
    pub binary_media_types: Vec<String>,
}

/// Where API Gateway reads the key a request is metered against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApiKeySource {
    /// The `x-api-key` header.
    #[default]
    Header,
    /// The authorizer's `usageIdentifierKey`.
    Authorizer,
}

/// An `AWS::ApiGateway::UsagePlan` of the API's stage, as the template sets it.
#[derive(Debug, Clone, Deserialize)]
pub struct UsagePlanSpec {
    pub name: String,
    pub rate_limit: Option<f64>,
    pub burst_limit: Option<f64>,
    pub quota_limit: Option<u64>,
    /// DAY | WEEK | MONTH
    pub quota_period: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Throttle {
    pub rate_limit: Option<f64>,
    pub burst_limit: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct RouteSpec {
    pub method: String,
    pub path: String,
    /// Empty for a mock integration.
    #[serde(default)]
    pub function: String,
    #[serde(default)]
    pub authorizer: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api_key_required: bool,
    /// A mock integration's static answer (SAM's CORS preflight methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct MockResponse {
    pub status_code: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthorizerSpec {
    /// `request` or `token`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: String,
    pub identity_source: Vec<IdentitySource>,
    #[serde(default)]
    pub identity_validation_expression: Option<String>,
    pub ttl_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdentitySource {
    /// header | querystring | multivalueheader | multivaluequerystring | stageVariables | context
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GatewayResponseSpec {
    pub status_code: Option<u16>,
    /// header name -> mapping expression (`'literal'`, `context.requestId`, ...)
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// content type -> template
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
}

impl Stack {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading {} (run `devtools/local.sh render` first)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Find a function by logical id, binary name, physical name or ARN.
    pub fn find_function(&self, name: &str) -> Option<&str> {
        let name = name.strip_suffix(":$LATEST").unwrap_or(name);
        self.functions
            .iter()
            .find(|(id, f)| *id == name || f.binary == name || f.name == name || f.arn == name)
            .map(|(id, _)| id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> EventSourceSpec {
        let mut base = serde_json::json!({"logical_id": "M", "function": "F", "source_arn": "arn:aws:sqs:us-east-1:123456789012:q"});
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    const STREAM: &str =
        "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000";

    #[test]
    fn lambda_refuses_these_mappings() {
        let fifo = serde_json::json!({"source_arn": "arn:aws:sqs:us-east-1:123456789012:q.fifo", "fifo": true});
        for (v, why) in [
            (
                serde_json::json!({"fifo": true, "maximum_batching_window_seconds": 1}),
                "not supported for FIFO",
            ),
            (
                serde_json::json!({"fifo": true, "batch_size": 11}),
                "1..10 for a FIFO",
            ),
            (
                serde_json::json!({"batch_size": 11}),
                "greater than 0 when BatchSize",
            ),
            (
                serde_json::json!({"batch_size": 10001, "maximum_batching_window_seconds": 1}),
                "1..10000",
            ),
            (
                serde_json::json!({"bisect_batch_on_function_error": true}),
                "not supported for SQS",
            ),
            (
                serde_json::json!({"on_failure_destination": "arn:aws:sqs:us-east-1:1:d"}),
                "not supported for SQS",
            ),
            (
                serde_json::json!({"function_response_types": ["Other"]}),
                "only ReportBatchItemFailures",
            ),
            (
                serde_json::json!({"source_arn": STREAM}),
                "StartingPosition is required",
            ),
            (
                serde_json::json!({"source_arn": STREAM, "starting_position": "AT_TIMESTAMP"}),
                "not supported for DynamoDB",
            ),
            (
                serde_json::json!({"source_arn": STREAM, "starting_position": "LATEST", "batch_size": 10001}),
                "1..10000",
            ),
            (
                serde_json::json!({"source_arn": STREAM, "starting_position": "LATEST", "maximum_record_age_seconds": 30}),
                "-1 or 60",
            ),
            (
                serde_json::json!({"source_arn": STREAM, "starting_position": "LATEST", "maximum_retry_attempts": 10001}),
                "-1..10000",
            ),
            (
                serde_json::json!({"source_arn": STREAM, "starting_position": "LATEST", "maximum_concurrency": 2}),
                "ScalingConfig",
            ),
        ] {
            let problems = spec(v.clone()).invalid();
            assert!(
                problems.iter().any(|p| p.contains(why)),
                "{v}: {problems:?}"
            );
        }
        assert!(spec(fifo).invalid().is_empty());
        let ok = serde_json::json!({
            "source_arn": STREAM, "starting_position": "TRIM_HORIZON", "batch_size": 100,
            "maximum_batching_window_seconds": 1, "bisect_batch_on_function_error": true,
            "maximum_retry_attempts": 10, "maximum_record_age_seconds": 86400,
            "parallelization_factor": 1, "function_response_types": ["ReportBatchItemFailures"],
            "on_failure_destination": "arn:aws:sqs:us-east-1:123456789012:failures"
        });
        assert_eq!(spec(ok).invalid(), Vec::<String>::new());
    }
}
