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
