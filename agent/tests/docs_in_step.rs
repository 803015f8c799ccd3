//! The documents stay in step with the code and with each other:
//!
//! - every metric the agent exposes is in the reference (docs/metrics.md);
//! - every command of `coolmesh --help` is in docs/reference.md;
//! - every relative link of the user's documents points at a file that
//!   exists, and at a heading that exists when it names one;
//! - the README opens with the two commands (demo, tests), and CI runs the
//!   test command it gives.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn table_names(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).expect("doc");
    text.lines()
        .filter_map(|l| l.strip_prefix("| `coolmesh_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|n| format!("coolmesh_{n}"))
        .collect()
}

#[test]
fn the_metric_reference_lists_every_exposed_metric() {
    let reference = table_names(&root().join("docs/metrics.md"));
    assert!(reference.len() > 20, "{reference:?}");
    let golden = std::fs::read_to_string(root().join("agent/tests/fixtures/golden-metrics.prom"))
        .expect("golden");
    let mut exposed: BTreeSet<String> = golden
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect();
    let pm = coolmesh_agent::power::PowerMetrics::new().expect("power metrics");
    pm.duration.with_label_values(&["x"]).observe(0.1);
    pm.failures.with_label_values(&["x", "local"]).inc();
    let reg = prometheus::Registry::new();
    pm.register(&reg).expect("register");
    exposed.extend(reg.gather().iter().map(|f| f.name().to_string()));
    for name in &exposed {
        assert!(
            reference.contains(name),
            "{name} is exposed but not documented in docs/metrics.md"
        );
    }
}

/// GitHub's heading anchors: lower case, punctuation dropped, spaces to
/// dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for l in text.lines() {
        if l.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && l.starts_with('#') {
            out.insert(slug(l.trim_start_matches('#')));
        }
    }
    out
}

/// `(target, line)` of every inline link `](target)` outside code.
fn links(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut in_code = false;
    for (i, l) in text.lines().enumerate() {
        if l.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || l.starts_with("    ") {
            continue;
        }
        let mut rest = l;
        while let Some(p) = rest.find("](") {
            rest = &rest[p + 2..];
            if let Some(end) = rest.find(')') {
                out.push((rest[..end].to_string(), i + 1));
                rest = &rest[end..];
            }
        }
    }
    out
}

#[test]
fn relative_links_of_the_documents_resolve() {
    let root = root();
    let mut docs = vec![
        root.join("README.md"),
        root.join("CONTRIBUTING.md"),
        root.join("BENCHMARKS.md"),
        root.join("alerts/README.md"),
        root.join("dashboards/README.md"),
    ];
    for e in std::fs::read_dir(root.join("docs")).expect("docs") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(p);
        }
    }
    let mut bad = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("doc");
        let dir = doc.parent().expect("dir");
        for (target, line) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                doc.clone()
            } else {
                dir.join(file)
            };
            if !path.exists() {
                bad.push(format!("{}:{line}: {target}: no such file", doc.display()));
                continue;
            }
            if let (Some(a), true) = (anchor, path.extension().is_some_and(|x| x == "md")) {
                let t = std::fs::read_to_string(&path).expect("target");
                if !anchors(&t).contains(a) {
                    bad.push(format!(
                        "{}:{line}: {target}: no such heading",
                        doc.display()
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_readme_opens_with_the_two_commands_and_ci_runs_the_tests() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("readme");
    let first_block: String = readme
        .split("```")
        .nth(1)
        .expect("a code block")
        .to_string();
    assert!(
        first_block.contains("cargo run --release -- demo"),
        "{first_block}"
    );
    assert!(
        first_block.contains("cargo test --workspace --locked"),
        "{first_block}"
    );
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines()
            .any(|l| !l.trim_start().starts_with('#')
                && l.contains("cargo test --workspace --locked")),
        ".ci/run does not run the README's test command"
    );
    assert!(
        readme.len() < 8_000,
        "the README is for users: {} bytes",
        readme.len()
    );
}
