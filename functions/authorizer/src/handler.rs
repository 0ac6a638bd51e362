use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest,
    ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use stockroom_app::auth::{Decision, authorize, stage_wide_resource};
use stockroom_app::clock;
use stockroom_app::ports::ApiKeyLookup;
use stockroom_app::telemetry::error_chain;
use tracing::Instrument;

/// How an authorization ends without a policy. API Gateway answers 401 for
/// the exact message "Unauthorized" and AUTHORIZER_FAILURE (503 here) otherwise.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    #[error("Unauthorized")]
    Unauthorized,
    #[error("the API key store is unavailable")]
    StoreUnavailable,
    #[error("unexpected methodArn")]
    UnexpectedMethodArn,
}

impl From<AuthorizerError> for Diagnostic {
    fn from(e: AuthorizerError) -> Self {
        let error_type = match e {
            AuthorizerError::Unauthorized => "Unauthorized",
            AuthorizerError::StoreUnavailable => "StoreUnavailable",
            AuthorizerError::UnexpectedMethodArn => "UnexpectedMethodArn",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

pub async fn handle(
    event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>,
    store: &dyn ApiKeyLookup,
    function: &str,
) -> Result<ApiGatewayCustomAuthorizerResponse, AuthorizerError> {
    let request = event.payload;
    let request_id = request
        .request_context
        .request_id
        .clone()
        .unwrap_or_else(|| event.context.request_id.clone());
    let span = tracing::info_span!("authorize", request_id = %request_id, tenant = tracing::field::Empty, function = %function, cold_start = stockroom_app::telemetry::cold_start());
    async move {
        // Never log the header: it carries the key.
        let header = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let decision = authorize(store, header, clock::now()).await.map_err(|e| {
            tracing::error!(error = %error_chain(&e), "key lookup failed");
            AuthorizerError::StoreUnavailable
        })?;
        match decision {
            Decision::Allow(ctx, usage_key) => {
                tracing::Span::current().record("tenant", ctx.tenant_id.as_str());
                let method_arn = request.method_arn.unwrap_or_default();
                let resource = stage_wide_resource(&method_arn).ok_or_else(|| {
                    tracing::error!(method_arn = %method_arn, "unexpected methodArn");
                    AuthorizerError::UnexpectedMethodArn
                })?;
                tracing::info!(key_id = %ctx.key_id, "allowed");
                stockroom_app::telemetry::authorizer_decision(true);
                let mut response = ApiGatewayCustomAuthorizerResponse::<Value>::default();
                response.principal_id = Some(ctx.key_id.clone());
                response.policy_document = allow(resource);
                response.context =
                    serde_json::to_value(ctx.to_context_fields()).unwrap_or_default();
                // Binds the request to the tenant's usage plan (API key source
                // AUTHORIZER). Without it API Gateway answers 403
                // INVALID_API_KEY: a tenant must be given a plan.
                response.usage_identifier_key = usage_key;
                Ok(response)
            }
            Decision::Unauthorized(reason) => {
                tracing::info!(reason, "denied");
                stockroom_app::telemetry::authorizer_decision(false);
                Err(AuthorizerError::Unauthorized)
            }
        }
    }
    .instrument(span)
    .await
}

fn allow(resource: String) -> ApiGatewayCustomAuthorizerPolicy {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".into()];
    statement.effect = IamPolicyEffect::Allow;
    statement.resource = vec![resource];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".into());
    policy.statement = vec![statement];
    policy
}
