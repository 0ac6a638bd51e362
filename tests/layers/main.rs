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
                "stockroom-app",
                "stockroom-aws",
                "stockroom-http",
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
        is_aws_sdk(n) || n.starts_with("lambda") || n.starts_with("stockroom-a")
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

/// HTTP and Lambda crates: what the use cases must not know about.
fn is_http_or_lambda(name: &str) -> bool {
    [
        "axum",
        "hyper",
        "tower",
        "reqwest",
        "lambda",
        "aws_lambda",
        "aws-lc",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

#[test]
fn the_use_cases_link_the_domain_and_no_adapter_http_or_lambda_crate() -> Result<()> {
    let names = linked(&["-p", "stockroom-app"])?;
    ensure!(names.iter().any(|n| n == "stockroom-domain"), "{names:?}");
    let bad = offending(&names, |n| {
        is_aws_sdk(n) || is_http_or_lambda(n) || n == "stockroom-aws" || n == "stockroom-http"
    });
    ensure!(bad.is_empty(), "stockroom-app links {bad:?}");
    Ok(())
}

#[test]
fn the_http_surface_links_the_use_cases_and_no_adapter() -> Result<()> {
    let names = linked(&["-p", "stockroom-http"])?;
    ensure!(
        names.iter().any(|n| n == "stockroom-app") && names.iter().any(|n| n == "axum"),
        "{names:?}"
    );
    let bad = offending(&names, |n| is_aws_sdk(n) || n == "stockroom-aws");
    ensure!(bad.is_empty(), "stockroom-http links {bad:?}");
    Ok(())
}

/// Each function links only the layers it runs: the ones that serve no HTTP
/// route do not link the HTTP surface or axum.
#[test]
fn each_function_links_only_the_layers_it_runs() -> Result<()> {
    let http_functions = ["items-api", "batches-api", "keys-api", "webhooks-api"];
    let event_functions = [
        "authorizer",
        "batch-worker",
        "batch-splitter",
        "webhook-dispatcher",
        "events-publisher",
    ];
    // Every function is in one list: a new one cannot escape the check.
    let mut listed: Vec<&str> = http_functions
        .iter()
        .chain(&event_functions)
        .copied()
        .collect();
    listed.sort_unstable();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let mut present: Vec<String> = std::fs::read_dir(&root)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    present.sort_unstable();
    ensure!(
        present == listed,
        "functions/ holds {present:?}, the check lists {listed:?}"
    );
    for f in http_functions {
        let names = linked(&["-p", f])?;
        ensure!(
            ["stockroom-app", "stockroom-aws", "stockroom-http"]
                .iter()
                .all(|c| names.iter().any(|n| n == c)),
            "{f} links {names:?}"
        );
    }
    for f in event_functions {
        let names = linked(&["-p", f])?;
        ensure!(names.iter().any(|n| n == "stockroom-aws"), "{f}: {names:?}");
        let bad = offending(&names, |n| n == "stockroom-http" || n.starts_with("axum"));
        ensure!(bad.is_empty(), "{f} links {bad:?}");
    }
    Ok(())
}

/// The checks above are not blind: the adapters' crate does link the SDK,
/// and the HTTP surface does link axum.
#[test]
fn the_adapters_link_the_sdk_they_adapt() -> Result<()> {
    let names = linked(&["-p", "stockroom-aws"])?;
    ensure!(
        !offending(&names, is_aws_sdk).is_empty(),
        "expected the AWS SDK in {names:?}"
    );
    let http = linked(&["-p", "stockroom-http"])?;
    ensure!(!offending(&http, is_http_or_lambda).is_empty(), "{http:?}");
    Ok(())
}

/// Module dependencies of one crate, from the paths its sources name
/// (`crate::a::b`, `super::c`, grouped `use` trees). Test modules, inline
/// or in files of their own, are left out: a test may reach anywhere.
mod modules {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    pub type Module = Vec<String>;

    /// Every module of the crate rooted at `src`, with its file's text.
    pub fn read_crate(src: &Path) -> anyhow::Result<BTreeMap<Module, String>> {
        let mut out = BTreeMap::new();
        let mut test_only: Vec<Module> = Vec::new();
        let mut dirs = vec![src.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let rel = path.strip_prefix(src)?.with_extension("");
                let mut module: Module = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    module.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    module.pop();
                }
                if module.first().is_some_and(|m| m == "bin") {
                    continue; // other crate roots
                }
                let text = std::fs::read_to_string(&path)?;
                for name in test_module_files(&text) {
                    test_only.push([module.clone(), vec![name]].concat());
                }
                let text = match text.find("#[cfg(test)]\nmod tests") {
                    Some(i) => text[..i].to_owned(),
                    None => text,
                };
                out.insert(module, text);
            }
        }
        out.retain(|m, _| !test_only.iter().any(|t| m.starts_with(t)));
        Ok(out)
    }

    /// The modules a file declares test-only in files of their own
    /// (`#[cfg(test)] mod name;`): left out with everything under them.
    fn test_module_files(text: &str) -> Vec<String> {
        text.match_indices("#[cfg(test)]")
            .filter_map(|(at, tag)| {
                let rest = text[at + tag.len()..].trim_start();
                let rest = rest.strip_prefix("pub(crate) ").unwrap_or(rest);
                let name = rest.strip_prefix("mod ")?;
                let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
                name[end..].starts_with(';').then(|| name[..end].to_owned())
            })
            .collect()
    }

    /// The paths a `use` tree or expression names after `crate::`/`super::`:
    /// `a::{b, c::d}` gives `a::b` and `a::c::d`.
    fn paths(text: &str, start: usize) -> Vec<Vec<String>> {
        let bytes = text.as_bytes();
        let mut i = start;
        let mut prefix = Vec::new();
        loop {
            if text[i..].starts_with('{') {
                let mut depth = 0;
                let mut item = i + 1;
                let mut out = Vec::new();
                for (k, ch) in text[i..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' | ',' if depth == 1 => {
                            for p in paths(text, item) {
                                out.push([prefix.clone(), p].concat());
                            }
                            item = i + k + 1;
                            if ch == '}' {
                                return out;
                            }
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if ch.is_whitespace() && item == i + k {
                        item += 1;
                    }
                }
                return out;
            }
            let begin = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            if i > begin {
                prefix.push(text[begin..i].to_owned());
            }
            if text[i..].starts_with("::") {
                i += 2;
                continue;
            }
            return vec![prefix];
        }
    }

    /// The longest module prefix of `path`.
    fn resolve(modules: &BTreeMap<Module, String>, path: &[String]) -> Module {
        (0..=path.len())
            .rev()
            .map(|k| path[..k].to_vec())
            .find(|m| modules.contains_key(m))
            .unwrap_or_default()
    }

    pub fn edges(modules: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
        let mut out: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (module, text) in modules {
            let targets = out.entry(module.clone()).or_default();
            for (at, _) in text.match_indices("crate::") {
                if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
                    continue; // `$crate::`, `my_crate::`
                }
                for p in paths(text, at + "crate::".len()) {
                    targets.insert(resolve(modules, &p));
                }
            }
            let mut at = 0;
            while let Some(found) = text[at..].find("super::") {
                let begin = at + found;
                if text[..begin].ends_with("super::")
                    || text[..begin].ends_with(char::is_alphanumeric)
                {
                    at = begin + 1;
                    continue;
                }
                let mut end = begin;
                let mut ups = 0;
                while text[end..].starts_with("super::") {
                    ups += 1;
                    end += "super::".len();
                }
                let base = &module[..module.len().saturating_sub(ups)];
                for p in paths(text, end) {
                    targets.insert(resolve(modules, &[base.to_vec(), p].concat()));
                }
                at = end;
            }
        }
        out
    }

    /// Cycles among the children of one module (a child stands for its whole
    /// subtree). A parent using its child and the child using its parent is
    /// Rust's usual re-export pattern and is not counted.
    pub fn sibling_cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<String>> {
        let parents: BTreeSet<Module> = edges
            .keys()
            .filter(|m| !m.is_empty())
            .map(|m| m[..m.len() - 1].to_vec())
            .collect();
        let mut cycles = Vec::new();
        for parent in parents {
            let child_of = |m: &Module| -> Option<Module> {
                (m.len() > parent.len() && m[..parent.len()] == parent[..])
                    .then(|| m[..=parent.len()].to_vec())
            };
            let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
            for (from, targets) in edges {
                let Some(a) = child_of(from) else { continue };
                for to in targets {
                    if let Some(b) = child_of(to)
                        && a != b
                    {
                        graph.entry(a.clone()).or_default().insert(b);
                    }
                }
            }
            for scc in strongly_connected(&graph) {
                if scc.len() > 1 {
                    cycles.push(scc.iter().map(|m| m.join("::")).collect());
                }
            }
        }
        cycles
    }

    /// Tarjan's algorithm.
    fn strongly_connected(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
        struct State<'a> {
            graph: &'a BTreeMap<Module, BTreeSet<Module>>,
            index: BTreeMap<&'a Module, usize>,
            low: BTreeMap<&'a Module, usize>,
            stack: Vec<&'a Module>,
            on_stack: BTreeSet<&'a Module>,
            out: Vec<Vec<Module>>,
        }
        fn visit<'a>(st: &mut State<'a>, v: &'a Module) {
            let n = st.index.len();
            st.index.insert(v, n);
            st.low.insert(v, n);
            st.stack.push(v);
            st.on_stack.insert(v);
            if let Some(targets) = st.graph.get(v) {
                for w in targets {
                    let w = st.graph.get_key_value(w).map_or(w, |(k, _)| k);
                    if !st.index.contains_key(w) {
                        visit(st, w);
                        let low = st.low[w].min(st.low[v]);
                        st.low.insert(v, low);
                    } else if st.on_stack.contains(w) {
                        let low = st.index[w].min(st.low[v]);
                        st.low.insert(v, low);
                    }
                }
            }
            if st.low[v] == st.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = st.stack.pop() {
                    st.on_stack.remove(w);
                    scc.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                st.out.push(scc);
            }
        }
        let mut st = State {
            graph,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            out: Vec::new(),
        };
        for v in graph.keys() {
            if !st.index.contains_key(v) {
                visit(&mut st, v);
            }
        }
        st.out
    }
}

/// Every crate's source roots.
fn crate_sources() -> Result<Vec<PathBuf>> {
    let mut roots = vec![
        repo().join("shared/domain/src"),
        repo().join("shared/app/src"),
        repo().join("shared/aws/src"),
        repo().join("shared/http/src"),
        repo().join("cli/src"),
        repo().join("tests/support"),
    ];
    for group in ["functions", "devtools"] {
        for entry in std::fs::read_dir(repo().join(group))? {
            let src = entry?.path().join("src");
            if src.is_dir() {
                roots.push(src);
            }
        }
    }
    Ok(roots)
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() -> Result<()> {
    let mut found = Vec::new();
    let roots = crate_sources()?;
    ensure!(roots.len() >= 14, "found only {roots:?}");
    for src in roots {
        let crate_modules = modules::read_crate(&src)?;
        for cycle in modules::sibling_cycles(&modules::edges(&crate_modules)) {
            found.push(format!("{}: {}", src.display(), cycle.join(" <-> ")));
        }
    }
    ensure!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
    Ok(())
}

/// The cycle check sees the cycles it is meant to: through `use` trees,
/// expression paths and `super::`, across siblings at any depth.
#[test]
fn the_cycle_check_finds_planted_cycles() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("stockroom-cycles-{}", std::process::id()));
    let files = [
        (
            "lib.rs",
            "pub mod a;\npub mod b;\npub mod c;\npub mod store;\npub use a::A;",
        ),
        ("a.rs", "use crate::{b::{B, other}, c};\npub struct A;"),
        ("b.rs", "pub fn f() { crate::c::g() }"),
        (
            "c.rs",
            "use super::a::A;\n#[cfg(test)]\nmod fixtures;\n#[cfg(test)]\nmod tests { use crate::store::x; }",
        ),
        ("c/fixtures.rs", "use crate::store::X;"),
        ("store/mod.rs", "mod x;\nmod y;\npub use x::X;"),
        ("store/x.rs", "use super::y::Y;\nuse super::super::a::A;"),
        ("store/y.rs", "use super::X;\npub struct Y;"),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent"))?;
        std::fs::write(path, text)?;
    }
    let found = modules::sibling_cycles(&modules::edges(&modules::read_crate(&dir)?));
    std::fs::remove_dir_all(&dir)?;
    let mut found: Vec<String> = found
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.sort();
            c.join(" ")
        })
        .collect();
    found.sort();
    // a -> b -> c -> a at the root; store::x -> store::y -> store (re-export
    // of x) is a child using its parent, not a cycle; store -> a is one way
    // (c's test modules, inline or in c/fixtures.rs, do not count).
    ensure!(found == ["a b c"], "found {found:?}");
    Ok(())
}
