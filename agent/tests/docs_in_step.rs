//! The metric reference in README.md and docs/metrics.md must list the same
//! names, and every metric the agent exposes must be in it.

use std::collections::BTreeSet;
use std::path::Path;

fn table_names(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).expect("doc");
    text.lines()
        .filter_map(|l| l.strip_prefix("| `coolmesh_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|n| format!("coolmesh_{n}"))
        .collect()
}

#[test]
fn readme_and_reference_agree_with_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = table_names(&root.join("README.md"));
    let reference = table_names(&root.join("docs/metrics.md"));
    assert!(readme.len() > 20, "{readme:?}");
    assert_eq!(
        readme, reference,
        "README.md and docs/metrics.md list different metrics"
    );

    let golden = std::fs::read_to_string(root.join("agent/tests/fixtures/golden-metrics.prom"))
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
            readme.contains(name),
            "{name} is exposed but not documented in README.md"
        );
    }
}
