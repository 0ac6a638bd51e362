//! API Gateway "gateway responses": the errors API Gateway produces itself
//! (401 from the authorizer, 404/403 for unknown routes, 413, 429, 5xx),
//! rendered from the template's `GatewayResponses` with AWS's fallbacks
//! (type -> DEFAULT_4XX/DEFAULT_5XX -> built-in default).

use std::collections::BTreeMap;

use crate::spec::GatewayResponseSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    MissingAuthenticationToken,
    Unauthorized,
    AccessDenied,
    AuthorizerFailure,
    AuthorizerConfigurationError,
    RequestTooLarge,
    Throttled,
    /// Usage plan quota used up.
    QuotaExceeded,
    /// API key required but missing, unknown or on no plan of the stage.
    InvalidApiKey,
    /// Lambda unhandled error or malformed proxy response (502).
    BadGateway,
    IntegrationTimeout,
}

impl ResponseType {
    pub fn name(self) -> &'static str {
        match self {
            Self::MissingAuthenticationToken => "MISSING_AUTHENTICATION_TOKEN",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::AccessDenied => "ACCESS_DENIED",
            Self::AuthorizerFailure => "AUTHORIZER_FAILURE",
            Self::AuthorizerConfigurationError => "AUTHORIZER_CONFIGURATION_ERROR",
            Self::RequestTooLarge => "REQUEST_TOO_LARGE",
            Self::Throttled => "THROTTLED",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::InvalidApiKey => "INVALID_API_KEY",
            // Not a customisable type of its own: DEFAULT_5XX applies.
            Self::BadGateway => "DEFAULT_5XX",
            Self::IntegrationTimeout => "INTEGRATION_TIMEOUT",
        }
    }

    pub fn default_status(self) -> u16 {
        match self {
            Self::MissingAuthenticationToken | Self::AccessDenied | Self::InvalidApiKey => 403,
            Self::Unauthorized => 401,
            Self::AuthorizerFailure | Self::AuthorizerConfigurationError => 500,
            Self::RequestTooLarge => 413,
            Self::Throttled | Self::QuotaExceeded => 429,
            Self::BadGateway => 502,
            Self::IntegrationTimeout => 504,
        }
    }

    /// `x-amzn-ErrorType` API Gateway sends with the response.
    pub fn error_type_header(self) -> &'static str {
        match self {
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::Unauthorized => "UnauthorizedException",
            Self::AccessDenied => "AccessDeniedException",
            Self::AuthorizerFailure | Self::AuthorizerConfigurationError => {
                "AuthorizerConfigurationException"
            }
            Self::RequestTooLarge => "RequestTooLargeException",
            Self::Throttled | Self::QuotaExceeded => "TooManyRequestsException",
            Self::InvalidApiKey => "ForbiddenException",
            Self::BadGateway => "InternalServerErrorException",
            Self::IntegrationTimeout => "InternalServerErrorException",
        }
    }
}

/// Values `$context.*` / `context.*` can refer to.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub vars: BTreeMap<String, String>,
    /// `$context.error.message` (None renders `null` in messageString).
    pub error_message: Option<String>,
    pub request_headers: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
    pub stage_variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub content_type: String,
    pub body: String,
}

impl Context {
    fn lookup(&self, expr: &str) -> Option<String> {
        match expr {
            "context.error.message" => Some(self.error_message.clone().unwrap_or_default()),
            "context.error.messageString" => Some(match &self.error_message {
                Some(m) => serde_json::to_string(m).unwrap_or_default(),
                None => "null".into(),
            }),
            _ => {
                if let Some(k) = expr.strip_prefix("context.") {
                    return self.vars.get(k).cloned();
                }
                if let Some(k) = expr.strip_prefix("method.request.header.") {
                    return self
                        .request_headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(k))
                        .map(|(_, v)| v.clone());
                }
                if let Some(k) = expr.strip_prefix("method.request.querystring.") {
                    return self.query.get(k).cloned();
                }
                if let Some(k) = expr.strip_prefix("stageVariables.") {
                    return self.stage_variables.get(k).cloned();
                }
                None
            }
        }
    }
}

/// Evaluate a header mapping expression: `'literal'` or a variable reference.
pub fn header_value(expr: &str, ctx: &Context) -> Option<String> {
    let e = expr.trim();
    if e.len() >= 2 && e.starts_with('\'') && e.ends_with('\'') {
        return Some(e[1..e.len() - 1].to_string());
    }
    ctx.lookup(e)
}

/// Substitute `$context.x.y` / `${context.x.y}` (and `$stageVariables.x`)
/// references in a mapping template; unknown references render empty, as in
/// VTL.
pub fn render_template(tpl: &str, ctx: &Context) -> String {
    let mut out = String::with_capacity(tpl.len());
    let mut rest = tpl;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (braced, body) = match after.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, after),
        };
        let name_len = body
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_'))
            .map(|(i, _)| i)
            .unwrap_or(body.len());
        let mut name = &body[..name_len];
        // A trailing '.' is punctuation, not part of the reference.
        while name.ends_with('.') {
            name = &name[..name.len() - 1];
        }
        let is_ref = name.starts_with("context.") || name.starts_with("stageVariables.");
        if !is_ref || (braced && !body[name.len()..].starts_with('}')) {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&ctx.lookup(name).unwrap_or_default());
        let consumed = name.len() + if braced { 2 } else { 0 };
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

fn builtin_message(t: ResponseType) -> Option<&'static str> {
    Some(match t {
        ResponseType::MissingAuthenticationToken => "Missing Authentication Token",
        ResponseType::Unauthorized => "Unauthorized",
        ResponseType::AccessDenied => "User is not authorized to access this resource",
        ResponseType::RequestTooLarge => "Request Too Long",
        ResponseType::Throttled => "Too Many Requests",
        ResponseType::QuotaExceeded => "Limit Exceeded",
        ResponseType::InvalidApiKey => "Forbidden",
        ResponseType::BadGateway => "Internal server error",
        ResponseType::IntegrationTimeout => "Endpoint request timed out",
        ResponseType::AuthorizerFailure | ResponseType::AuthorizerConfigurationError => {
            return None;
        }
    })
}

/// Default `$context.error.message` for a response type.
pub fn default_error_message(t: ResponseType) -> Option<String> {
    builtin_message(t).map(str::to_string)
}

pub fn render(
    t: ResponseType,
    responses: &BTreeMap<String, GatewayResponseSpec>,
    ctx: &Context,
) -> Rendered {
    let status_default = t.default_status();
    let default_name = if status_default >= 500 {
        "DEFAULT_5XX"
    } else {
        "DEFAULT_4XX"
    };
    let spec = responses
        .get(t.name())
        .or_else(|| responses.get(default_name));
    let builtin_tpl = "{\"message\":$context.error.messageString}".to_string();
    let (status, header_map, tpl, content_type) = match spec {
        Some(s) => {
            let (ct, tpl) = s
                .templates
                .get_key_value("application/json")
                .or_else(|| s.templates.iter().next())
                .map(|(k, v)| (k.clone(), v.clone()))
                .unwrap_or_else(|| ("application/json".into(), builtin_tpl.clone()));
            // A DEFAULT_* response keeps the specific status unless it sets one.
            let status = s.status_code.unwrap_or(status_default);
            (status, s.headers.clone(), tpl, ct)
        }
        None => (
            status_default,
            BTreeMap::new(),
            builtin_tpl,
            "application/json".to_string(),
        ),
    };
    let headers = header_map
        .iter()
        .filter_map(|(name, expr)| header_value(expr, ctx).map(|v| (name.clone(), v)))
        .collect();
    Rendered {
        status,
        headers,
        content_type,
        body: render_template(&tpl, ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn responses() -> BTreeMap<String, GatewayResponseSpec> {
        let mut m = BTreeMap::new();
        m.insert(
            "UNAUTHORIZED".to_string(),
            GatewayResponseSpec {
                status_code: Some(401),
                headers: [
                    ("WWW-Authenticate".to_string(), "'Bearer'".to_string()),
                    ("x-request-id".to_string(), "context.requestId".to_string()),
                ]
                .into(),
                templates: [(
                    "application/json".to_string(),
                    r#"{"status":401,"request_id":"$context.requestId","msg":"$context.error.message"}"#
                        .to_string(),
                )]
                .into(),
            },
        );
        m.insert(
            "DEFAULT_5XX".to_string(),
            GatewayResponseSpec {
                status_code: None,
                headers: [("x-request-id".to_string(), "context.requestId".to_string())].into(),
                templates: [(
                    "application/json".to_string(),
                    r#"{"status":500,"request_id":"${context.requestId}"}"#.to_string(),
                )]
                .into(),
            },
        );
        m
    }

    fn ctx() -> Context {
        Context {
            vars: [("requestId".to_string(), "req-1".to_string())].into(),
            error_message: Some("Unauthorized".into()),
            ..Default::default()
        }
    }

    #[test]
    fn renders_template_headers_and_status() {
        let r = render(ResponseType::Unauthorized, &responses(), &ctx());
        assert_eq!(r.status, 401);
        assert_eq!(r.content_type, "application/json");
        assert_eq!(
            r.body,
            r#"{"status":401,"request_id":"req-1","msg":"Unauthorized"}"#
        );
        assert!(
            r.headers
                .contains(&("WWW-Authenticate".into(), "Bearer".into()))
        );
        assert!(r.headers.contains(&("x-request-id".into(), "req-1".into())));
    }

    #[test]
    fn falls_back_to_default_5xx_keeping_the_status() {
        let r = render(ResponseType::BadGateway, &responses(), &ctx());
        assert_eq!(r.status, 502);
        assert_eq!(r.body, r#"{"status":500,"request_id":"req-1"}"#);
        let r = render(ResponseType::IntegrationTimeout, &responses(), &ctx());
        assert_eq!(r.status, 504);
        let r = render(ResponseType::AuthorizerFailure, &responses(), &ctx());
        assert_eq!(r.status, 500);
        assert_eq!(r.headers, vec![("x-request-id".into(), "req-1".into())]);
    }

    #[test]
    fn builtin_default_when_template_has_none() {
        let mut c = ctx();
        c.error_message = default_error_message(ResponseType::MissingAuthenticationToken);
        let r = render(
            ResponseType::MissingAuthenticationToken,
            &BTreeMap::new(),
            &c,
        );
        assert_eq!(r.status, 403);
        assert_eq!(r.body, r#"{"message":"Missing Authentication Token"}"#);
        c.error_message = None;
        let r = render(ResponseType::AuthorizerFailure, &BTreeMap::new(), &c);
        assert_eq!(r.body, r#"{"message":null}"#);
    }

    #[test]
    fn template_edge_cases() {
        let c = ctx();
        assert_eq!(
            render_template("cost $5, id $context.requestId.", &c),
            "cost $5, id req-1."
        );
        assert_eq!(render_template("$context.nope|", &c), "|");
        assert_eq!(
            header_value("context.requestId", &c).as_deref(),
            Some("req-1")
        );
        assert_eq!(header_value("'a b'", &c).as_deref(), Some("a b"));
    }
}
