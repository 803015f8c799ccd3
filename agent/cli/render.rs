//! Human and machine output of the one-shot commands (`sensors`, `state`,
//! tables of `room` and `roster`), colour rules, and the progress line.

use crate::args::SensorsFormat;
use coolmesh_agent::sampler::SourceStatus;
use coolmesh_agent::thermal::Reading;
use coolmesh_exporter::Snapshot;

/// Render readings in the chosen format.
pub fn render_sensors(
    readings: &[Reading],
    statuses: &[SourceStatus],
    format: SensorsFormat,
) -> String {
    match format {
        SensorsFormat::Json => serde_json::to_string_pretty(readings)
            .map(|s| s + "\n")
            .unwrap_or_default(),
        SensorsFormat::Prom => {
            let mut snap = Snapshot::default();
            let state = coolmesh_agent::sampler::SensorState {
                round: 1,
                readings: readings.to_vec(),
                sources: statuses.to_vec(),
                thermal: coolmesh_agent::thermal::TrendWindow::new(
                    std::time::Duration::from_secs(60),
                    2,
                )
                .summarize(readings),
            };
            coolmesh_agent::snapshot::apply_sensors(&mut snap, &state);
            let fams: Vec<_> = coolmesh_exporter::collector::families(&snap, 0)
                .into_iter()
                .filter(|f| {
                    let n = f.name();
                    n.starts_with("coolmesh_temperature_")
                        || n.starts_with("coolmesh_source_")
                        || n.starts_with("coolmesh_thermal_")
                })
                .collect();
            coolmesh_exporter::metrics::encode_families(&fams)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        }
        SensorsFormat::Table => {
            let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            let rows: Vec<[String; 7]> = readings
                .iter()
                .map(|r| {
                    [
                        r.chip.clone(),
                        r.sensor.clone(),
                        r.label.clone().unwrap_or_default(),
                        format!("{:.1}", r.celsius),
                        opt(r.max_celsius),
                        opt(r.critical_celsius),
                        r.source.clone(),
                    ]
                })
                .collect();
            table(
                &[
                    "CHIP", "SENSOR", "LABEL", "CELSIUS", "MAX", "CRIT", "SOURCE",
                ],
                &rows,
                &[3, 4, 5],
            )
        }
    }
}

/// Align columns; `right` lists columns to right-align (numbers).
pub fn table<const N: usize>(head: &[&str; N], rows: &[[String; N]], right: &[usize]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            if right.contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Text for `coolmesh state --cluster`: this node and its peers, best
/// thermal headroom first.
pub fn render_cluster(s: &Snapshot, now_ms: u64) -> String {
    let o = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    let left = |d: Option<u64>| {
        d.map(|d| secs(d.saturating_sub(now_ms) / 1000))
            .unwrap_or_else(|| "-".into())
    };
    let power = |p: Option<bool>| match p {
        Some(true) => "up",
        Some(false) => "DOWN",
        None => "-",
    };
    let mut rows: Vec<(f64, [String; 10])> = vec![(
        s.thermal.headroom_celsius.unwrap_or(f64::NEG_INFINITY),
        [
            s.node.clone(),
            "this node".into(),
            s.fsm.state.clone(),
            s.fsm.reason.clone(),
            left(s.fsm.deadline_ms),
            o(s.thermal.hottest_celsius),
            o(s.thermal.headroom_celsius),
            o(s.thermal.trend_celsius_per_minute),
            power(s.power.up).into(),
            own_stage(&s.fsm.stage),
        ],
    )];
    for p in &s.cluster.peers {
        rows.push((
            p.thermal.headroom_celsius.unwrap_or(f64::NEG_INFINITY),
            [
                p.node.clone(),
                if p.stale {
                    format!("{} (stale)", p.liveness)
                } else {
                    p.liveness.clone()
                },
                p.state.clone(),
                p.reason.clone(),
                left(p.deadline_ms),
                o(p.thermal.hottest_celsius),
                o(p.thermal.headroom_celsius),
                o(p.thermal.trend_celsius_per_minute),
                power(p.power_up).into(),
                p.stage.to_string(),
            ],
        ));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1[0].cmp(&b.1[0])));
    let rows: Vec<[String; 10]> = rows.into_iter().map(|r| r.1).collect();
    let mut out = table(
        &[
            "NODE",
            "LIVENESS",
            "STATE",
            "REASON",
            "SHUTDOWN IN",
            "HOTTEST",
            "HEADROOM",
            "TREND/MIN",
            "POWER",
            "STAGE",
        ],
        &rows,
        &[5, 6, 7],
    );
    for v in &s.cluster.power_votes {
        out.push_str(&format!(
            "votes {}: {} up, {} down (quorum {})\n",
            v.target, v.up, v.down, s.cluster.quorum
        ));
    }
    out
}

/// This node's stage for the cluster table: the number, and what a held
/// shutdown waits for (`1 (waits for 2 of stage 0)`).
fn own_stage(st: &coolmesh_exporter::model::StageView) -> String {
    match st.waiting_for_stage {
        Some(l) if st.waiting => {
            format!("{} (waits for {} of stage {l})", st.stage, st.lower_pending)
        }
        _ => st.stage.to_string(),
    }
}

/// Prometheus file_sd JSON for `coolmesh state --format file_sd`: one target
/// group per node (this one, plus every known peer with `cluster`), sorted by
/// node name so that an unchanged room prints the same bytes.
///
/// The target is the HTTP address the member publishes in its record
/// (`published`, PeerId -> `host:port`, from the agent's `GET /v1/http_sd`),
/// else `NODE:PORT`: a member that publishes none (an agent older than
/// record key 12) is assumed to serve HTTP on `port` under its node name
/// (the hostname unless `node.name` says otherwise), which must then
/// resolve on the Prometheus server. Labels are `__meta_coolmesh_{node,cluster,peer_id}`:
/// available to relabelling, dropped afterwards, so they never collide with
/// the `coolmesh_node` and `coolmesh_cluster` labels of `coolmesh_node_info`.
pub fn render_file_sd(
    s: &Snapshot,
    cluster: bool,
    port: u16,
    published: &std::collections::HashMap<String, String>,
) -> String {
    let mut nodes: Vec<(&str, &str)> = vec![(s.node.as_str(), s.peer_id.as_str())];
    if cluster {
        nodes.extend(
            s.cluster
                .peers
                .iter()
                .map(|p| (p.node.as_str(), p.peer_id.as_str())),
        );
    }
    nodes.sort();
    nodes.dedup_by(|a, b| a.0 == b.0);
    let groups: Vec<serde_json::Value> = nodes
        .iter()
        .map(|(node, peer_id)| {
            let target = published
                .get(*peer_id)
                .cloned()
                .unwrap_or_else(|| format!("{node}:{port}"));
            serde_json::json!({
                "targets": [target],
                "labels": {
                    "__meta_coolmesh_node": node,
                    "__meta_coolmesh_cluster": s.cluster.name,
                    "__meta_coolmesh_peer_id": peer_id,
                },
            })
        })
        .collect();
    serde_json::to_string_pretty(&groups).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// Whether to colour output written to stdout: only on a terminal, and never
/// with `NO_COLOR` set (<https://no-color.org>) or `TERM=dumb`.
pub fn colour_stdout() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").as_deref() != Ok("dumb")
}

/// Colour whole words of a rendered table or text with ANSI SGR codes:
/// states and liveness by severity. Applied after alignment, so the columns
/// stay aligned (the codes take no width on a terminal).
pub fn colourize(text: &str) -> String {
    const RED: &str = "\x1b[1;31m";
    const YELLOW: &str = "\x1b[33m";
    const GREEN: &str = "\x1b[32m";
    const BLUE: &str = "\x1b[34m";
    const DIM: &str = "\x1b[2m";
    const BOLD: &str = "\x1b[1m";
    const RESET: &str = "\x1b[0m";
    let style = |w: &str| -> Option<&str> {
        Some(match w {
            "pre_fail" | "shutdown" | "DOWN" | "dead" | "down:" => RED,
            "local_fault" | "suspect" | "(stale)" | "(dry-run)" => YELLOW,
            "normal" | "up" | "alive" => GREEN,
            "maintenance" => BLUE,
            "-" => DIM,
            _ => return None,
        })
    };
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        // Header rows of tables are upper case: make them bold.
        let is_header = i == 0
            && line.chars().any(|c| c.is_ascii_uppercase())
            && !line.chars().any(|c| c.is_ascii_lowercase());
        if is_header {
            out.push_str(BOLD);
            out.push_str(line.trim_end_matches('\n'));
            out.push_str(RESET);
            if line.ends_with('\n') {
                out.push('\n');
            }
            continue;
        }
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            match style(word) {
                Some(c) => {
                    out.push_str(c);
                    out.push_str(word);
                    out.push_str(RESET);
                }
                None => out.push_str(word),
            }
            word.clear();
        };
        for ch in line.chars() {
            if ch == ' ' || ch == '\n' || ch == ',' {
                flush(&mut word, &mut out);
                out.push(ch);
            } else {
                word.push(ch);
            }
        }
        flush(&mut word, &mut out);
    }
    out
}

/// Colour the rows of a `sensors` table: red at or above critical, yellow
/// at or above max; the header bold. `text` must be the table of `readings`.
pub fn colour_sensor_rows(text: &str, readings: &[Reading]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in text.lines().enumerate() {
        let code = match i.checked_sub(1).and_then(|r| readings.get(r)) {
            None if i == 0 => Some("\x1b[1m"),
            Some(r) if r.critical_celsius.is_some_and(|c| r.celsius >= c) => Some("\x1b[1;31m"),
            Some(r) if r.max_celsius.is_some_and(|m| r.celsius >= m) => Some("\x1b[33m"),
            _ => None,
        };
        match code {
            Some(c) => out.push_str(&format!("{c}{line}\x1b[0m\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// A one-line "working on it" note on stderr for operations that may take
/// seconds, shown only when stderr is a terminal and erased when dropped, so
/// pipes and logs never see it.
pub struct Progress(bool);

impl Progress {
    /// Show `msg` (e.g. "reading 3 sources (timeout 5s)").
    pub fn new(msg: &str) -> Progress {
        use std::io::{IsTerminal, Write};
        let tty = std::io::stderr().is_terminal();
        if tty {
            let mut e = std::io::stderr();
            let _ = write!(e, "{msg}…");
            let _ = e.flush();
        }
        Progress(tty)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.0 {
            use std::io::Write;
            let mut e = std::io::stderr();
            let _ = write!(e, "\r\x1b[K");
            let _ = e.flush();
        }
    }
}

/// Seconds as `1h02m03s`, `2m05s` or `7s`.
pub fn secs(s: u64) -> String {
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Text for `coolmesh state`.
pub fn render_state(s: &Snapshot, now_ms: u64) -> String {
    let mut out = String::new();
    let f = &s.fsm;
    out.push_str(&format!("node     {}\n", s.node));
    out.push_str(&format!(
        "state    {}{}\n",
        f.state,
        if f.dry_run { " (dry-run)" } else { "" }
    ));
    out.push_str(&format!(
        "reason   {}{}\n",
        f.reason,
        if f.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", f.detail)
        }
    ));
    if let Some(d) = f.deadline_ms {
        out.push_str(&format!(
            "shutdown in {}\n",
            secs(d.saturating_sub(now_ms) / 1000)
        ));
    }
    // Staged shutdown: said only on a staged node or while something is held.
    if f.stage.stage > 0 || f.stage.waiting {
        let mut line = format!("stage    {}", f.stage.stage);
        if let Some(l) = f.stage.waiting_for_stage {
            line.push_str(&format!(
                ": {} lower-stage node(s) still going down (stage {l}){}",
                f.stage.lower_pending,
                if f.stage.waiting {
                    ", shutdown command held"
                } else {
                    ""
                }
            ));
        }
        if let Some(h) = f.stage.hold_until_ms {
            line.push_str(&format!(
                "; held at most {}",
                secs(h.saturating_sub(now_ms) / 1000)
            ));
        }
        out.push_str(&line);
        out.push('\n');
    }
    if let Some(m) = f.maintenance_until_ms {
        out.push_str(&format!(
            "maintenance for {}\n",
            secs(m.saturating_sub(now_ms) / 1000)
        ));
    }
    let t = &s.thermal;
    let o = |v: Option<f64>, u: &str| {
        v.map(|v| format!("{v:.1}{u}"))
            .unwrap_or_else(|| "-".into())
    };
    out.push_str(&format!(
        "thermal  hottest {}  headroom {}  trend {}\n",
        o(t.hottest_celsius, " C"),
        o(t.headroom_celsius, " C"),
        o(t.trend_celsius_per_minute, " C/min")
    ));
    if !s.power.targets.is_empty() {
        out.push_str(&format!(
            "power    {} (policy {})\n",
            match s.power.up {
                Some(true) => "up",
                Some(false) => "DOWN",
                None => "unknown",
            },
            s.power.policy
        ));
        for tg in &s.power.targets {
            out.push_str(&format!(
                "  {:<40} {}\n",
                tg.target,
                if tg.up {
                    "up".to_string()
                } else if tg.unknown {
                    // A local error: nothing is known about the target.
                    format!(
                        "unknown (local error, not a vote): {}",
                        tg.error.clone().unwrap_or_default()
                    )
                } else {
                    format!("down: {}", tg.error.clone().unwrap_or_default())
                }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(
            &["A", "NUM"],
            &[
                ["long name".into(), "1.0".into()],
                ["x".into(), "100.5".into()],
            ],
            &[1],
        );
        assert_eq!(t, "A            NUM\nlong name    1.0\nx          100.5\n");
    }

    #[test]
    fn cluster_table_ranks_by_headroom() {
        use coolmesh_exporter::model::{PeerStatus, ThermalSummary};
        let mut s = Snapshot {
            node: "me".into(),
            ..Default::default()
        };
        s.fsm.state = "normal".into();
        s.thermal.headroom_celsius = Some(30.0);
        let peer = |n: &str, h: f64| PeerStatus {
            node: n.into(),
            peer_id: String::new(),
            liveness: "alive".into(),
            last_seen_ms: 0,
            version: 1,
            thermal: ThermalSummary {
                headroom_celsius: Some(h),
                ..Default::default()
            },
            power_up: Some(true),
            state: "normal".into(),
            reason: "none".into(),
            deadline_ms: None,
            stale: false,
            stage: 0,
        };
        s.cluster.peers = vec![peer("cool", 50.0), peer("hot", 5.0)];
        let t = render_cluster(&s, 0);
        let order: Vec<&str> = t
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(order, ["cool", "me", "hot"], "{t}");
    }

    #[test]
    fn file_sd_lists_every_node_once_sorted() {
        use coolmesh_exporter::model::PeerStatus;
        let mut s = Snapshot {
            node: "srv2".into(),
            peer_id: "12D3me".into(),
            ..Default::default()
        };
        s.cluster.name = "room-1".into();
        let peer = |n: &str, liveness: &str| PeerStatus {
            node: n.into(),
            peer_id: format!("12D3{n}"),
            liveness: liveness.into(),
            last_seen_ms: 0,
            version: 1,
            thermal: Default::default(),
            power_up: None,
            state: "normal".into(),
            reason: "none".into(),
            deadline_ms: None,
            stale: liveness == "dead",
            stage: 0,
        };
        s.cluster.peers = vec![peer("srv10", "alive"), peer("srv1", "dead")];
        let none = std::collections::HashMap::new();
        let v: serde_json::Value =
            serde_json::from_str(&render_file_sd(&s, true, 9876, &none)).expect("json");
        let targets: Vec<&str> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|g| g["targets"][0].as_str().expect("target"))
            .collect();
        // A dead peer stays listed: Prometheus must keep scraping it to alert.
        assert_eq!(targets, ["srv1:9876", "srv10:9876", "srv2:9876"]);
        assert_eq!(v[2]["labels"]["__meta_coolmesh_cluster"], "room-1");
        assert_eq!(v[2]["labels"]["__meta_coolmesh_peer_id"], "12D3me");
        let alone: serde_json::Value =
            serde_json::from_str(&render_file_sd(&s, false, 80, &none)).expect("json");
        assert_eq!(alone.as_array().map(Vec::len), Some(1));
        assert_eq!(alone[0]["targets"][0], "srv2:80");
        // Published addresses win; the rest fall back to NODE:PORT.
        let published = std::collections::HashMap::from([
            ("12D3srv10".to_string(), "10.0.0.10:10027".to_string()),
            ("12D3me".to_string(), "[2001:db8::2]:10027".to_string()),
        ]);
        let v: serde_json::Value =
            serde_json::from_str(&render_file_sd(&s, true, 9876, &published)).expect("json");
        let targets: Vec<&str> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|g| g["targets"][0].as_str().expect("target"))
            .collect();
        assert_eq!(
            targets,
            ["srv1:9876", "10.0.0.10:10027", "[2001:db8::2]:10027"]
        );
    }

    #[test]
    fn colour_keeps_words_and_alignment() {
        let plain = table(
            &["NODE", "STATE"],
            &[
                ["a".into(), "pre_fail".into()],
                ["bb".into(), "normal".into()],
            ],
            &[],
        );
        let c = colourize(&plain);
        assert!(c.contains("\x1b[1;31mpre_fail\x1b[0m"), "{c:?}");
        assert!(c.starts_with("\x1b[1mNODE"), "{c:?}");
        let strip = |s: &str| {
            let mut out = String::new();
            let mut esc = false;
            for ch in s.chars() {
                match (esc, ch) {
                    (false, '\x1b') => esc = true,
                    (true, 'm') => esc = false,
                    (true, _) => {}
                    (false, c) => out.push(c),
                }
            }
            out
        };
        assert_eq!(strip(&c), plain);
    }

    #[test]
    fn state_text_shows_time_left() {
        let mut s = Snapshot {
            node: "n1".into(),
            ..Default::default()
        };
        s.fsm.state = "pre_fail".into();
        s.fsm.reason = "power".into();
        s.fsm.deadline_ms = Some(1_000_000 + 272_000);
        let t = render_state(&s, 1_000_000);
        assert!(
            t.contains("state    pre_fail") && t.contains("shutdown in 4m32s"),
            "{t}"
        );
        assert!(!t.contains("stage"), "an unstaged node says nothing: {t}");
        s.fsm.stage = coolmesh_exporter::model::StageView {
            stage: 1,
            waiting: true,
            lower_pending: 2,
            waiting_for_stage: Some(0),
            hold_until_ms: Some(1_000_000 + 90_000),
        };
        let t = render_state(&s, 1_000_000);
        assert!(
            t.contains("stage    1: 2 lower-stage node(s) still going down (stage 0), shutdown command held; held at most 1m30s"),
            "{t}"
        );
        let c = render_cluster(&s, 1_000_000);
        assert!(
            c.contains("STAGE") && c.contains("1 (waits for 2 of stage 0)"),
            "{c}"
        );
    }
}
