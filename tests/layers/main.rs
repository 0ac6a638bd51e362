//! The layers as Cargo resolves them: what each crate links. A layer that
//! reaches into another shows up here as a dependency it must not have.

use anyhow::{Context, Result, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// The packages `cargo tree` shows for `args`: normal dependencies with the
/// features as built, one name per package.
fn linked(args: &[&str]) -> Result<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo())
        .args(["tree", "--locked", "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p}"])
        .args(args)
        .output()
        .context("running cargo tree")?;
    ensure!(
        out.status.success(),
        "cargo tree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The AWS SDK and its runtime crates.
fn is_aws_sdk(name: &str) -> bool {
    [
        "aws-sdk-",
        "aws-config",
        "aws-smithy-",
        "aws-runtime",
        "aws-types",
        "aws-credential",
        "aws-sigv4",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

fn offending(names: &[String], forbidden: impl Fn(&str) -> bool) -> Vec<&str> {
    names
        .iter()
        .map(String::as_str)
        .filter(|n| forbidden(n))
        .collect()
}

#[test]
fn the_domain_links_no_aws_http_async_runtime_or_lambda_crate() -> Result<()> {
    let names = linked(&["-p", "stockroom-domain"])?;
    ensure!(
        names.iter().any(|n| n == "serde_json"),
        "cargo tree parsed: {names:?}"
    );
    let bad = offending(&names, |n| {
        is_aws_sdk(n)
            || [
                "aws_lambda",
                "lambda",
                "tokio",
                "axum",
                "hyper",
                "tower",
                "reqwest",
                "http",
                "stockroom-shared",
            ]
            .iter()
            .any(|p| n.starts_with(p))
    });
    ensure!(bad.is_empty(), "stockroom-domain links {bad:?}");
    Ok(())
}

#[test]
fn the_cli_links_the_domain_and_no_aws_sdk() -> Result<()> {
    let names = linked(&["-p", "stockroom-cli"])?;
    ensure!(
        names.iter().any(|n| n == "stockroom-domain"),
        "the CLI reads files with the domain's row rules: {names:?}"
    );
    let bad = offending(&names, |n| {
        is_aws_sdk(n) || n.starts_with("lambda") || n == "stockroom-shared"
    });
    ensure!(bad.is_empty(), "stockroom-cli links {bad:?}");
    Ok(())
}

#[test]
fn the_fuzz_targets_link_no_aws_sdk() -> Result<()> {
    let names = linked(&["--manifest-path", "fuzz/Cargo.toml"])?;
    ensure!(names.iter().any(|n| n == "stockroom-domain"), "{names:?}");
    let bad = offending(&names, is_aws_sdk);
    ensure!(bad.is_empty(), "the fuzz targets link {bad:?}");
    Ok(())
}

/// The check above is not blind: the adapters' crate does link the SDK.
#[test]
fn the_shared_crate_links_the_sdk_it_adapts() -> Result<()> {
    let names = linked(&["-p", "stockroom-shared"])?;
    ensure!(
        !offending(&names, is_aws_sdk).is_empty(),
        "expected the AWS SDK in {names:?}"
    );
    Ok(())
}
