//! `stockroom-bench sizes <bin-dir>`: each function's deployment package —
//! its release binary zipped as `bootstrap`, the file Lambda runs for a
//! `provided.al2023` function — against issue 8's 6 MB target.
//!
//! The binaries are this machine's architecture (the functions deploy as
//! arm64, built by `sam build` through cargo lambda; docs/performance.md has
//! both measured side by side). Deflate at zlib's default level.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::Path;
use zip::write::SimpleFileOptions;

/// Issue 8: each `bootstrap.zip` ≤ 6 MB (decimal, the stricter reading).
const TARGET_BYTES: f64 = 6_000_000.0;

/// `binary` zipped as `bootstrap`, in memory: the package.
fn bootstrap_zip(binary: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755);
    zip.start_file("bootstrap", options)?;
    zip.write_all(&bytes)?;
    Ok(zip.finish()?.into_inner())
}

/// The function binaries: one per `functions/<name>` of the workspace.
fn function_names(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("functions")).context("reading functions/")? {
        let entry = entry?;
        if entry.path().join("Cargo.toml").is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

pub fn run(bin_dir: &Path) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    println!(
        "deployment packages: each function binary ({}, {}) zipped as `bootstrap` (deflate)",
        std::env::consts::ARCH,
        bin_dir.display()
    );
    println!(
        "{:<20} {:>10} {:>15} {:>18}",
        "function", "binary MB", "bootstrap.zip MB", "of the 6 MB target"
    );
    let mut over = Vec::new();
    for name in function_names(&root)? {
        let binary = bin_dir.join(&name);
        if !binary.is_file() {
            bail!("{name} is not built in {}", bin_dir.display());
        }
        let size = std::fs::metadata(&binary)?.len() as f64;
        let zipped = bootstrap_zip(&binary)?.len() as f64;
        println!(
            "{name:<20} {:>10.2} {:>15.2} {:>18.2}",
            size / 1e6,
            zipped / 1e6,
            zipped / TARGET_BYTES
        );
        if zipped > TARGET_BYTES {
            over.push(name);
        }
    }
    if !over.is_empty() {
        println!("over the target: {}", over.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_package_holds_the_binary_as_an_executable_bootstrap() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("stockroom-artifact-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let binary = dir.join("fn");
        // Compressible, like a binary's tables: the package must be smaller.
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
        std::fs::write(&binary, &content)?;

        let package = bootstrap_zip(&binary)?;
        assert!(
            package.len() < content.len() / 10,
            "{} bytes",
            package.len()
        );

        // One entry, `bootstrap`, executable, the binary's bytes.
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(package))?;
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_name("bootstrap")?;
        assert_eq!(entry.unix_mode().map(|m| m & 0o777), Some(0o755));
        let mut read = Vec::new();
        entry.read_to_end(&mut read)?;
        assert_eq!(read, content);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
