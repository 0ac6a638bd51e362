//! Which stack the admin CLI provisions tenants in, and so which keys it mints.
//!
//! `--stack NAME` names a deployed stack: its outputs (the API keys table) are
//! read from CloudFormation (DescribeStacks) and its keys are live
//! (`sk_live_`). Without it the CLI works on the stack its environment
//! describes, the local stack's `.local/env` (`STOCKROOM_STACK_NAME`,
//! `API_KEYS_TABLE`, `STOCKROOM_ENV`), whose keys are test keys (`sk_test_`)
//! unless that environment says `STOCKROOM_ENV=aws`.

use anyhow::{Context, bail};
use stockroom_app::auth::key_prefix;

/// The stack output naming the API keys table (template.yaml, Outputs).
pub const API_KEYS_TABLE_OUTPUT: &str = "ApiKeysTableName";
/// The stack output naming the stock table.
pub const STOCK_TABLE_OUTPUT: &str = "StockTableName";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackTarget {
    /// The stack's name: its usage plans are `<stack>-<plan>`.
    pub stack_name: String,
    pub api_keys_table: String,
    pub stock_table: String,
    /// A deployed stack: its keys are live keys.
    pub live: bool,
}

impl StackTarget {
    /// A deployed stack, from the outputs DescribeStacks returned for it.
    pub fn from_outputs<'a>(
        stack_name: &str,
        outputs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<Self> {
        let outputs: Vec<(&str, &str)> = outputs.into_iter().collect();
        let output = |name: &str| {
            outputs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
                .with_context(|| {
                    format!("stack {stack_name} has no {name} output: is it a Stockroom stack?")
                })
        };
        Ok(Self {
            stack_name: stack_name.to_owned(),
            api_keys_table: output(API_KEYS_TABLE_OUTPUT)?,
            stock_table: output(STOCK_TABLE_OUTPUT)?,
            live: true,
        })
    }

    /// The stack an environment describes (`.local/env` of the local stack).
    pub fn from_vars(
        stack_name: Option<String>,
        api_keys_table: Option<String>,
        stock_table: Option<String>,
        environment: &str,
    ) -> anyhow::Result<Self> {
        let (Some(stack_name), Some(api_keys_table), Some(stock_table)) =
            (stack_name, api_keys_table, stock_table)
        else {
            bail!(
                "no stack: pass --stack NAME for a deployed stack, or source .local/env \
                 (STOCKROOM_STACK_NAME, API_KEYS_TABLE and STOCK_TABLE) for the local one"
            );
        };
        Ok(Self {
            stack_name,
            api_keys_table,
            stock_table,
            live: key_prefix(environment) == "sk_live_",
        })
    }

    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(
            std::env::var("STOCKROOM_STACK_NAME").ok(),
            std::env::var("API_KEYS_TABLE").ok(),
            std::env::var("STOCK_TABLE").ok(),
            &stockroom_app::config::environment(),
        )
    }

    /// A deployed stack by name, resolved through CloudFormation.
    pub async fn deployed(sdk: &aws_config::SdkConfig, stack_name: &str) -> anyhow::Result<Self> {
        let client = aws_sdk_cloudformation::Client::new(sdk);
        let found = client
            .describe_stacks()
            .stack_name(stack_name)
            .send()
            .await
            .with_context(|| format!("describing stack {stack_name} (CloudFormation)"))?;
        let stack = found
            .stacks()
            .first()
            .with_context(|| format!("no stack named {stack_name}"))?;
        Self::from_outputs(
            stack_name,
            stack
                .outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?, o.output_value()?))),
        )
    }

    /// The prefix of the keys minted for this stack.
    pub fn key_prefix(&self) -> &'static str {
        if self.live { "sk_live_" } else { "sk_test_" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_named_on_the_command_line_gets_live_keys_and_its_own_table() {
        let t = StackTarget::from_outputs(
            "stockroom-prod",
            [
                (
                    "ApiUrl",
                    "https://x.execute-api.eu-west-1.amazonaws.com/live",
                ),
                ("ApiKeysTableName", "stockroom-prod-ApiKeysTable-1X2Y3Z"),
                ("StockTableName", "stockroom-prod-StockTable-9Z8Y"),
            ],
        )
        .unwrap();
        assert_eq!(t.key_prefix(), "sk_live_");
        assert_eq!(t.api_keys_table, "stockroom-prod-ApiKeysTable-1X2Y3Z");
        assert_eq!(t.stock_table, "stockroom-prod-StockTable-9Z8Y");
        assert_eq!(t.stack_name, "stockroom-prod");
        assert!(StackTarget::from_outputs("other", [("ApiUrl", "https://x")]).is_err());
    }

    #[test]
    fn the_local_stack_keeps_test_keys() {
        let local = StackTarget::from_vars(
            Some("stockroom-local".into()),
            Some("stockroom-local-ApiKeysTable".into()),
            Some("stockroom-local-StockTable".into()),
            "local",
        )
        .unwrap();
        assert_eq!(local.key_prefix(), "sk_test_");
        let aws =
            StackTarget::from_vars(Some("s".into()), Some("t".into()), Some("st".into()), "aws")
                .unwrap();
        assert_eq!(aws.key_prefix(), "sk_live_");
        assert!(
            StackTarget::from_vars(None, Some("t".into()), Some("st".into()), "local").is_err()
        );
        assert!(StackTarget::from_vars(Some("s".into()), Some("t".into()), None, "local").is_err());
    }
}
