//! Every temperature, max and critical value that the real node_exporter
//! 1.5.0 printed for the fixture sysfs tree must equal what coolmesh reads
//! from the same tree. Chip names: coolmesh splits node_exporter's colliding
//! `ieee80211_phy0` into one chip per hwmon directory, so a node_exporter
//! chip matches ours exactly or as a `<chip>_` prefix.

use coolmesh_agent::sources::{hwmon::read_hwmon, thermal_zone::read_zones};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// (metric, labels) -> value, from a Prometheus text file.
fn parse_prom(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("k=v");
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        out.push((name.to_string(), labels, value.parse().expect("value")));
    }
    out
}

#[test]
fn hwmon_and_thermal_zone_agree_with_node_exporter() {
    let text = std::fs::read_to_string(fixtures().join("node_exporter-1.5.0-hwmon-thermal.prom"))
        .expect("golden");
    let ne = parse_prom(&text);
    let ours = read_hwmon(&fixtures().join("sysfs")).expect("hwmon");
    let zones = read_zones(&fixtures().join("sysfs")).expect("zones");

    let mut checked = 0;
    for (name, labels, value) in &ne {
        let field: fn(&coolmesh_agent::thermal::Reading) -> Option<f64> = match name.as_str() {
            "node_hwmon_temp_celsius" => |r| Some(r.celsius),
            "node_hwmon_temp_max_celsius" => |r| r.max_celsius,
            "node_hwmon_temp_crit_celsius" => |r| r.critical_celsius,
            "node_thermal_zone_temp" => {
                let zone = &labels["zone"];
                let r = zones
                    .iter()
                    .find(|r| r.chip == format!("thermal_zone{zone}"))
                    .expect("zone read");
                assert_eq!(r.sensor, labels["type"]);
                assert_eq!(r.celsius, *value, "thermal zone {zone}");
                checked += 1;
                continue;
            }
            _ => continue,
        };
        let chip = &labels["chip"];
        let sensor = &labels["sensor"];
        let matches: Vec<_> = ours
            .iter()
            .filter(|r| {
                (&r.chip == chip || r.chip.starts_with(&format!("{chip}_"))) && &r.sensor == sensor
            })
            .collect();
        assert!(
            !matches.is_empty(),
            "{name}{{chip={chip},sensor={sensor}}} missing from coolmesh"
        );
        assert!(
            matches.iter().any(|r| field(r) == Some(*value)),
            "{name}{{chip={chip},sensor={sensor}}}: node_exporter {value}, coolmesh {:?}",
            matches.iter().map(|r| field(r)).collect::<Vec<_>>()
        );
        checked += 1;
    }
    // 13 temperatures, 12 max, 12 crit, 1 zone in the node_exporter output.
    assert_eq!(checked, 38);

    // And the other way round: nothing we report is absent from node_exporter,
    // except the colliding chip's sibling radios that node_exporter dropped.
    for r in &ours {
        let ne_has = ne.iter().any(|(n, l, _)| {
            n == "node_hwmon_temp_celsius"
                && l["sensor"] == r.sensor
                && (r.chip == l["chip"] || r.chip.starts_with(&format!("{}_", l["chip"])))
        });
        assert!(
            ne_has,
            "coolmesh reports {}/{} which node_exporter does not",
            r.chip, r.sensor
        );
    }
}
