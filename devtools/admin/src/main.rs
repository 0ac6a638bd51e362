//! `stockroom-admin [--stack NAME] create-tenant --name NAME [--plan standard|trial] [--api-key KEY] [--scopes a,b]`
//! `stockroom-admin [--stack NAME] set-plan --tenant-id ID --plan standard|trial`
//! `stockroom-admin seed-samples [--events DIR] [--api-key KEY]` (local stack only)
//! `stockroom-admin [--stack NAME] backfill-feed [--segments N]`
//! `stockroom-admin [--stack NAME] backfill-listing [--segments N]`
//! `stockroom-admin [--stack NAME] split-stock --tenant-id ID --sku SKU --buckets N`
//! `stockroom-admin [--stack NAME] merge-stock --tenant-id ID --sku SKU`
//!
//! `--stack NAME` works on a deployed stack: its API keys table comes from
//! the stack's outputs (CloudFormation DescribeStacks) and the keys it mints
//! are live (`sk_live_`). Without it, on the stack `.local/env` describes
//! (`STOCKROOM_STACK_NAME`, `API_KEYS_TABLE`): the local stack, test keys
//! (`sk_test_`). The AWS account, region and credentials (or
//! `AWS_ENDPOINT_URL` for the local stack) come from the standard AWS
//! environment.
//!
//! `create-tenant` puts the tenant on a usage plan of the stack (an API
//! Gateway key on `<stack>-<plan>`) and creates its first API key directly in
//! the API keys table. Prints
//! `{"tenant_id":..,"api_key":..,"key_id":..,"plan":..}` as its last line. The
//! key is shown only here: only its SHA-256 is stored. `set-plan` moves a
//! tenant to another plan (its keys keep working; the new limits apply at once).
//! `seed-samples` seeds the data the sample events in `events/` name (the
//! demo tenant must exist with `--api-key`, the sample key by default):
//! see `samples.rs`. `backfill-feed` puts movements written before the change
//! feed existed into its index (docs/operations.md#change-feed-backfill);
//! `backfill-listing` moves items written before the listing was sharded
//! into it (docs/operations.md#listing-backfill). Both can be stopped and
//! run again, and print what they did as JSON. `split-stock` spreads a
//! sku's available units over N buckets before a flash sale, so its orders
//! spread over N partitions; `merge-stock` moves them back once no hold is
//! left in them (docs/operations.md#flash-sales). Both print the item.

use anyhow::{Context, bail};
use rand::Rng;
use stockroom_app::auth::generate_api_key;
use stockroom_app::items::LevelStores;
use stockroom_app::ports::{ApiKeyLookup, ApiKeyStore};
use stockroom_app::stock_split::StockSplitService;
use stockroom_aws::dynamodb::backfill::{BackfilledIndex, IndexBackfill};
use stockroom_aws::dynamodb::{DynamoApiKeyStore, DynamoItemStore};
use stockroom_domain::TenantId;
use stockroom_domain::key::ALL_SCOPES;
use stockroom_domain::{MovementContext, Sku};
mod samples;

use stockroom_admin::{PLANS, StackTarget, UsagePlans, key_record};

const USAGE: &str = "usage: stockroom-admin [--stack NAME] create-tenant --name NAME [--tenant-id ID] [--plan standard|trial] [--api-key KEY] [--scopes s1,s2]
       stockroom-admin [--stack NAME] set-plan --tenant-id ID --plan standard|trial
       stockroom-admin seed-samples [--events DIR] [--api-key KEY]   (local stack only)
       stockroom-admin [--stack NAME] backfill-feed [--segments N]     (N parallel scan segments, 1-64, default 4)
       stockroom-admin [--stack NAME] backfill-listing [--segments N]
       stockroom-admin [--stack NAME] split-stock --tenant-id ID --sku SKU --buckets N   (N: 2-64)
       stockroom-admin [--stack NAME] merge-stock --tenant-id ID --sku SKU
--stack NAME: a deployed stack (live keys); without it, the stack of .local/env (test keys)";

#[derive(Debug, PartialEq, Eq)]
enum Command {
    CreateTenant,
    SetPlan,
    SeedSamples,
    Backfill(BackfilledIndex),
    SplitStock,
    MergeStock,
}

struct Args {
    /// `--stack`: the deployed stack to work on.
    stack: Option<String>,
    command: Command,
    name: String,
    tenant_id: Option<String>,
    plan: String,
    api_key: Option<String>,
    scopes: Vec<String>,
    events: Option<String>,
    segments: u32,
    sku: Option<String>,
    buckets: Option<u16>,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut stack = None;
    let command = loop {
        match argv.next().as_deref() {
            Some("--stack") => stack = Some(argv.next().context(USAGE)?),
            Some("create-tenant") => break Command::CreateTenant,
            Some("set-plan") => break Command::SetPlan,
            Some("seed-samples") => break Command::SeedSamples,
            Some("backfill-feed") => break Command::Backfill(BackfilledIndex::ChangeFeed),
            Some("backfill-listing") => break Command::Backfill(BackfilledIndex::Listing),
            Some("split-stock") => break Command::SplitStock,
            Some("merge-stock") => break Command::MergeStock,
            _ => bail!(USAGE),
        }
    };
    let mut args = Args {
        stack,
        command,
        name: String::new(),
        tenant_id: None,
        plan: "standard".into(),
        api_key: None,
        scopes: ALL_SCOPES.iter().map(|s| s.to_string()).collect(),
        events: None,
        segments: 4,
        sku: None,
        buckets: None,
    };
    while let Some(flag) = argv.next() {
        let value = argv
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--stack" => args.stack = Some(value),
            "--name" => args.name = value,
            "--tenant-id" => args.tenant_id = Some(value),
            "--plan" => args.plan = value,
            "--api-key" if !value.is_empty() => args.api_key = Some(value),
            "--api-key" => {}
            "--events" => args.events = Some(value),
            "--segments" => {
                args.segments = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .with_context(|| format!("--segments takes 1 to 64, not {value:?}"))?
            }
            "--scopes" => args.scopes = value.split(',').map(|s| s.trim().to_owned()).collect(),
            "--sku" => args.sku = Some(value),
            "--buckets" => {
                let n: i64 = value
                    .parse()
                    .with_context(|| format!("--buckets takes a number, not {value:?}"))?;
                args.buckets = Some(
                    stockroom_domain::stock_split::bucket_count(n)
                        .map_err(|e| anyhow::anyhow!("--buckets {e}"))?,
                );
            }
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    if args.command == Command::CreateTenant && args.name.is_empty() {
        bail!("--name is required\n{USAGE}");
    }
    if args.command == Command::SeedSamples && args.stack.is_some() {
        bail!("seed-samples seeds the local stack only (no --stack)\n{USAGE}");
    }
    if args.command == Command::SetPlan && args.tenant_id.is_none() {
        bail!("--tenant-id is required\n{USAGE}");
    }
    if matches!(args.command, Command::SplitStock | Command::MergeStock)
        && (args.tenant_id.is_none() || args.sku.is_none())
    {
        bail!("--tenant-id and --sku are required\n{USAGE}");
    }
    if args.command == Command::SplitStock && args.buckets.is_none() {
        bail!("--buckets is required\n{USAGE}");
    }
    if !PLANS.contains(&args.plan.as_str()) {
        bail!("unknown plan {}; known: {}", args.plan, PLANS.join(", "));
    }
    for s in &args.scopes {
        if !ALL_SCOPES.contains(&s.as_str()) {
            bail!("unknown scope {s}; known: {}", ALL_SCOPES.join(", "));
        }
    }
    Ok(args)
}

/// A tenant id from the display name: a lowercase slug plus a random suffix.
fn tenant_id_for(name: &str) -> String {
    let slug: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(40)
        .collect();
    let suffix: u32 = rand::rng().random_range(0..0xffffff);
    if slug.is_empty() {
        format!("t-{suffix:06x}")
    } else {
        format!("{slug}-{suffix:06x}")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    let sdk = stockroom_aws::sdk::aws_sdk_config().await;
    if args.command == Command::SeedSamples {
        let events = args.events.as_deref().unwrap_or("events");
        let seeder = samples::Seeder::from_env(&sdk, std::path::Path::new(events)).await?;
        let api_key = args.api_key.as_deref().unwrap_or(samples::SAMPLE_API_KEY);
        println!("{}", seeder.seed(api_key).await?);
        return Ok(());
    }
    let target = match &args.stack {
        Some(stack) => StackTarget::deployed(&sdk, stack).await?,
        None => StackTarget::from_env()?,
    };
    if let Command::Backfill(index) = args.command {
        let backfill = IndexBackfill::from_sdk_config(&sdk, target.stock_table.clone(), index);
        let report = backfill
            .run(args.segments)
            .await
            .with_context(|| format!("backfilling {index:?}"))?;
        for key in &report.unreadable {
            eprintln!("not readable as an entry of {index:?}, left as it is: {key}");
        }
        println!(
            "{}",
            serde_json::json!({
                "table": target.stock_table,
                "found": report.found,
                "indexed": report.indexed,
                "already_indexed": report.already_indexed,
                "left_legacy_index": report.left_legacy_index,
                "unreadable": report.unreadable.len(),
            })
        );
        if !report.unreadable.is_empty() {
            bail!("{} entries could not be read", report.unreadable.len());
        }
        return Ok(());
    }
    if matches!(args.command, Command::SplitStock | Command::MergeStock) {
        let tenant = TenantId::parse(args.tenant_id.as_deref().unwrap_or_default())
            .map_err(anyhow::Error::msg)?;
        let sku =
            Sku::parse(args.sku.as_deref().unwrap_or_default()).map_err(anyhow::Error::msg)?;
        let store = std::sync::Arc::new(DynamoItemStore::from_sdk_config(
            &sdk,
            target.stock_table.clone(),
        ));
        let splits = StockSplitService::new(
            store.clone(),
            LevelStores {
                locations: store.clone(),
                levels: store.clone(),
                holds: store,
            },
        );
        let ctx = MovementContext {
            request_id: format!("admin-{}", ulid::Ulid::new()),
            key_id: None,
            batch_record: None,
        };
        let item = match args.buckets {
            Some(buckets) if args.command == Command::SplitStock => {
                splits.split(&tenant, &sku, buckets, &ctx).await
            }
            _ => splits.merge(&tenant, &sku, &ctx).await,
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("{}", serde_json::to_string(&item)?);
        return Ok(());
    }
    let plans = UsagePlans::new(&sdk, target.stack_name.clone());
    if args.command == Command::SetPlan {
        let tenant_id = args.tenant_id.unwrap_or_default();
        TenantId::parse(&tenant_id).map_err(anyhow::Error::msg)?;
        plans.assign(&tenant_id, &args.plan).await?;
        println!(
            "{}",
            serde_json::json!({"tenant_id": tenant_id, "plan": args.plan})
        );
        return Ok(());
    }
    let tenant_id = args.tenant_id.unwrap_or_else(|| tenant_id_for(&args.name));
    TenantId::parse(&tenant_id).map_err(anyhow::Error::msg)?;
    let usage_key = plans.assign(&tenant_id, &args.plan).await?;
    let api_key = args
        .api_key
        .unwrap_or_else(|| generate_api_key(target.key_prefix()));
    if api_key.len() < 24 {
        bail!("--api-key must be at least 24 characters");
    }
    let record = key_record(
        &api_key,
        &tenant_id,
        &format!("{} admin key", args.name),
        &args.scopes,
        Some(usage_key),
    );
    let store = DynamoApiKeyStore::from_sdk_config(&sdk, target.api_keys_table.clone());
    match store.put_key(&record).await {
        Ok(()) => {}
        // The same key given again (e.g. a fixed demo key on a second run): reuse it.
        Err(stockroom_app::ports::StoreError::AlreadyExists) => {
            let existing = store
                .find_key(&record.key_hash)
                .await?
                .context("key exists but cannot be read")?;
            println!(
                "{}",
                serde_json::json!({"tenant_id": existing.tenant_id, "api_key": api_key, "key_id": existing.key_id, "plan": args.plan})
            );
            return Ok(());
        }
        Err(e) => return Err(anyhow::Error::new(e).context("storing the API key")),
    }
    println!(
        "{}",
        serde_json::json!({"tenant_id": tenant_id, "api_key": api_key, "key_id": record.key_id, "plan": args.plan})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_valid_slugs() {
        for name in ["Acme Corp", "", "ÉÉ", "a".repeat(100).as_str()] {
            let id = tenant_id_for(name);
            assert!(TenantId::parse(&id).is_ok(), "{id}");
        }
    }

    #[test]
    fn args() {
        let a = parse_args(
            ["create-tenant", "--name", "x"]
                .map(String::from)
                .into_iter(),
        )
        .unwrap();
        assert_eq!(a.scopes.len(), ALL_SCOPES.len());
        assert_eq!(a.plan, "standard");
        assert!(parse_args(["create-tenant"].map(String::from).into_iter()).is_err());
        assert!(
            parse_args(
                ["set-plan", "--plan", "trial"]
                    .map(String::from)
                    .into_iter()
            )
            .is_err()
        );
        assert!(
            parse_args(
                ["create-tenant", "--name", "x", "--plan", "gold"]
                    .map(String::from)
                    .into_iter()
            )
            .is_err()
        );
        let s = parse_args(
            ["set-plan", "--tenant-id", "acme", "--plan", "trial"]
                .map(String::from)
                .into_iter(),
        )
        .unwrap();
        assert_eq!((s.command, s.plan.as_str()), (Command::SetPlan, "trial"));
        let d = parse_args(
            ["--stack", "stockroom-dev", "create-tenant", "--name", "x"]
                .map(String::from)
                .into_iter(),
        )
        .unwrap();
        assert_eq!(d.stack.as_deref(), Some("stockroom-dev"));
        assert_eq!(a.stack, None);
        let e = parse_args(
            ["create-tenant", "--name", "x", "--stack", "stockroom-prod"]
                .map(String::from)
                .into_iter(),
        )
        .unwrap();
        assert_eq!(e.stack.as_deref(), Some("stockroom-prod"));
        let b = parse_args(
            ["backfill-feed", "--segments", "8"]
                .map(String::from)
                .into_iter(),
        )
        .unwrap();
        assert_eq!(
            (b.command, b.segments),
            (Command::Backfill(BackfilledIndex::ChangeFeed), 8)
        );
        let l = parse_args(["backfill-listing"].map(String::from).into_iter()).unwrap();
        assert_eq!(
            (l.command, l.segments),
            (Command::Backfill(BackfilledIndex::Listing), 4)
        );
        let split = parse_args(
            [
                "split-stock",
                "--tenant-id",
                "acme",
                "--sku",
                "MUG-1",
                "--buckets",
                "64",
            ]
            .map(String::from)
            .into_iter(),
        )
        .unwrap();
        assert_eq!(
            (split.command, split.buckets),
            (Command::SplitStock, Some(64))
        );
        let merge = parse_args(
            ["merge-stock", "--tenant-id", "acme", "--sku", "MUG-1"]
                .map(String::from)
                .into_iter(),
        )
        .unwrap();
        assert_eq!(merge.command, Command::MergeStock);
        for bad in [
            &["split-stock", "--tenant-id", "acme", "--sku", "MUG-1"][..],
            &[
                "split-stock",
                "--tenant-id",
                "acme",
                "--sku",
                "MUG-1",
                "--buckets",
                "65",
            ],
            &[
                "split-stock",
                "--tenant-id",
                "acme",
                "--sku",
                "MUG-1",
                "--buckets",
                "1",
            ],
            &["merge-stock", "--sku", "MUG-1"],
            &["merge-stock", "--tenant-id", "acme"],
        ] {
            assert!(
                parse_args(bad.iter().map(|s| s.to_string())).is_err(),
                "{bad:?}"
            );
        }
        for bad in ["0", "65", "x"] {
            assert!(
                parse_args(
                    ["backfill-feed", "--segments", bad]
                        .map(String::from)
                        .into_iter()
                )
                .is_err()
            );
        }
        assert!(
            parse_args(
                ["create-tenant", "--name", "x", "--scopes", "nope"]
                    .map(String::from)
                    .into_iter()
            )
            .is_err()
        );
    }
}
