//! `coolmesh explain`: the decision journal ([`coolmesh_agent::journal`]) as a story
//! a person can read the morning after.
//!
//! The journal comes from the running agent (`GET /v1/events`, every page
//! back to `--since`) or straight from the state directory (`--state-dir`),
//! which works while the agent is stopped. Lines that could not be read
//! back (a torn last entry after a power cut) are reported, not hidden.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;

use crate::args::{ExplainArgs, ExplainFormat};
use crate::client::{self, Endpoint};
use coolmesh_agent::journal::{Entry, Event, Evidence, Page, Problem};

/// Run `coolmesh explain`.
pub fn main(args: ExplainArgs) -> ExitCode {
    client::print_outcome(run(&args).map(|text| (text, true)))
}

fn run(args: &ExplainArgs) -> anyhow::Result<String> {
    let since = humantime::parse_duration(&args.since)
        .map_err(|e| anyhow::anyhow!("bad --since {:?}: {e} (e.g. 24h, 7d)", args.since))?;
    let now = coolmesh_agent::clock::unix_ms();
    let floor = now.saturating_sub(u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    let (entries, problems, source) = match &args.state_dir {
        Some(dir) => {
            let (e, p) = coolmesh_agent::journal::read_dir(dir)
                .with_context(|| format!("reading the journal in {}", dir.display()))?;
            let e: Vec<Entry> = e.into_iter().filter(|e| e.at_ms >= floor).collect();
            (e, p, dir.display().to_string())
        }
        None => {
            let ep = Endpoint::from_flags(&args.url, &args.client)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let r = rt.block_on(fetch(&ep, &args.since));
            rt.shutdown_timeout(Duration::from_millis(300));
            let (e, p) = r?;
            (e, p, args.url.clone())
        }
    };
    Ok(match args.format {
        ExplainFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({
                "entries": entries,
                "problems": problems,
            }))?
        ),
        ExplainFormat::Text => render(&entries, &problems, &source, &args.since),
    })
}

/// Every page of `GET /v1/events` back to `since`, oldest first.
async fn fetch(ep: &Endpoint, since: &str) -> anyhow::Result<(Vec<Entry>, Vec<Problem>)> {
    let mut entries = Vec::new();
    let mut before: Option<u64> = None;
    let mut problems = Vec::new();
    // Bounded: a journal is at most a few thousand entries.
    for _ in 0..1000 {
        let mut path = format!("/v1/events?since={since}&limit=1000");
        if let Some(b) = before {
            let _ = write!(path, "&before={b}");
        }
        let body = client::request_to(hyper::Method::GET, ep, &path, None).await?;
        let page: Page = serde_json::from_slice(&body)
            .with_context(|| format!("{}{path} is not a page of the journal", ep.url))?;
        problems = page.problems;
        entries.extend(page.entries);
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    entries.reverse();
    Ok((entries, problems))
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Up to five names, then how many more.
fn names(list: &[String]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    let mut s = list.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if list.len() > 5 {
        let _ = write!(s, " +{} more", list.len() - 5);
    }
    s
}

fn celsius(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1} C"))
}

/// The evidence in a few indented lines.
pub fn render_evidence(e: &Evidence) -> String {
    let mut out = String::new();
    if !e.own_power.is_empty() || !e.targets.is_empty() {
        let _ = writeln!(
            out,
            "    power: own probe round {}; {} voting peers, {} other peers",
            if e.own_power.is_empty() {
                "-"
            } else {
                &e.own_power
            },
            e.voters,
            e.non_voters
        );
        for t in &e.targets {
            let own = match t.own {
                Some(true) => "up",
                Some(false) => "down",
                None => "unknown",
            };
            let _ = writeln!(
                out,
                "      {}: own {own}; peers down {} ({}), up {} ({})",
                t.target,
                t.down.len(),
                names(&t.down),
                t.up.len(),
                names(&t.up)
            );
        }
    }
    let th = &e.thermal;
    let _ = writeln!(
        out,
        "    thermal: hottest {}, headroom {}, trend {}{}{}{}{}",
        celsius(th.hottest),
        celsius(th.headroom),
        th.trend
            .map_or_else(|| "-".into(), |t| format!("{t:+.1} C/min")),
        th.time_to_critical
            .map(|s| format!(", critical in {:.0} s", s))
            .unwrap_or_default(),
        if th.critical { ", CRITICAL" } else { "" },
        if th.cooling_vote {
            ", votes cooling lost"
        } else {
            ""
        },
        th.load
            .map(|l| format!(", load {l:.2}"))
            .unwrap_or_default(),
    );
    let c = &e.cooling;
    let _ = writeln!(
        out,
        "    cooling quorum: weight {} of {} voting (needs {}): {}; voting peers: {}",
        c.voting_weight,
        c.weight,
        c.needed,
        if c.formed { "FORMED" } else { "not formed" },
        if c.voting.is_empty() {
            "none".to_string()
        } else {
            c.voting
                .iter()
                .take(8)
                .map(|v| {
                    format!(
                        "{} ({}{}{})",
                        v.node,
                        celsius(v.hottest),
                        v.trend
                            .map(|t| format!(", {t:+.1} C/min"))
                            .unwrap_or_default(),
                        if v.air { ", inlet" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    // Staged shutdown: only where it says something (a staged node, or
    // lower stages going down), so unstaged rooms read as before.
    if let Some(s) = e.stage.as_ref().filter(|s| s.stage > 0) {
        let pending = |p: &coolmesh_agent::stage::Pending| match p.lowest_stage {
            Some(l) => format!("{} (waiting for stage {l})", p.nodes),
            None => "none".to_string(),
        };
        let _ = writeln!(
            out,
            "    stage: own stage {}; lower-stage nodes still going down: for power {}, for cooling {}",
            s.stage,
            pending(&s.lower.power),
            pending(&s.lower.cooling),
        );
    }
    out
}

fn entry_line(e: &Entry) -> String {
    match &e.event {
        Event::Started {
            version,
            state,
            reason,
            detail,
        } => {
            let mut s = format!("agent started (coolmesh {version}), state {state}");
            if state != "normal" {
                let _ = write!(s, " ({reason}): {detail}");
            }
            s
        }
        Event::Transition {
            from,
            to,
            reason,
            detail,
            deadline_ms,
            ..
        } => {
            let mut s = format!("{from} -> {to} ({reason})");
            if !detail.is_empty() {
                let _ = write!(s, ": {detail}");
            }
            if let (Some(d), "pre_fail", false) =
                (deadline_ms, to.as_str(), detail.contains("shutdown at"))
            {
                let _ = write!(s, "; shutdown at {}", time(*d));
            }
            s
        }
        Event::DeadlineMoved {
            reason,
            detail,
            before_ms,
            after_ms,
        } => format!(
            "shutdown deadline moved ({reason}) from {} to {}: {detail}",
            before_ms.map_or_else(|| "none".into(), time),
            after_ms.map_or_else(|| "none".into(), time)
        ),
        Event::Trigger { trigger, active } => {
            if *active {
                format!("{trigger} trigger active")
            } else {
                format!("{trigger} trigger cleared")
            }
        }
        Event::Operator {
            action,
            requester,
            via,
            outcome,
            message,
        } => format!("operator {requester} via {via}: {action}: {outcome} ({message})"),
        Event::Command {
            attempt,
            outcome,
            error,
            dry_run,
        } => {
            let mut s = format!(
                "shutdown command attempt {attempt} {outcome}{}",
                if *dry_run {
                    " (dry run: logged, not run)"
                } else {
                    ""
                }
            );
            if let Some(e) = error {
                let _ = write!(s, ": {e}");
            }
            s
        }
    }
}

/// The story: one line per entry, the evidence under it, problems first.
pub fn render(entries: &[Entry], problems: &[Problem], source: &str, since: &str) -> String {
    let mut out = format!(
        "decision journal of {source}, last {since}: {} entries\n",
        entries.len()
    );
    for p in problems {
        let _ = writeln!(out, "WARNING: {} line {}: {}", p.file, p.line, p.error);
    }
    for e in entries {
        let _ = writeln!(out, "{}  {}", time(e.at_ms), entry_line(e));
        if let Some(ev) = &e.evidence {
            out.push_str(&render_evidence(ev));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use coolmesh_agent::journal::{CoolingEvidence, TargetEvidence, ThermalEvidence};

    #[test]
    fn the_story_names_the_votes_and_the_readings() {
        let ev = Evidence {
            own_power: "down".into(),
            targets: vec![TargetEvidence {
                target: "tcp://10.0.0.200:7".into(),
                own: Some(false),
                up: vec!["h7".into()],
                down: (2..=15).map(|i| format!("h{i:02}")).collect(),
            }],
            thermal: ThermalEvidence {
                node: "h1".into(),
                hottest: Some(41.0),
                headroom: Some(39.0),
                trend: Some(0.1),
                ..Default::default()
            },
            cooling: CoolingEvidence {
                nodes: 16,
                weight: 32,
                voting_weight: 0,
                needed: 17,
                formed: false,
                voting: vec![],
            },
            voters: 15,
            non_voters: 2,
            stage: Some(coolmesh_agent::journal::StageEvidence {
                stage: 1,
                lower: coolmesh_agent::stage::StageGate {
                    power: coolmesh_agent::stage::Pending {
                        nodes: 2,
                        lowest_stage: Some(0),
                    },
                    ..Default::default()
                },
            }),
        };
        let t0 = 1_796_613_102_000; // 2026-12-07T03:11:42Z
        let entries = vec![
            Entry {
                seq: 1,
                at_ms: t0,
                event: Event::Transition {
                    from: "normal".into(),
                    to: "pre_fail".into(),
                    reason: "power".into(),
                    trigger: "power".into(),
                    detail: "mains lost".into(),
                    deadline_before_ms: None,
                    deadline_ms: Some(t0 + 300_000),
                },
                evidence: Some(Box::new(ev)),
            },
            Entry {
                seq: 2,
                at_ms: t0 + 300_000,
                event: Event::Command {
                    attempt: 1,
                    outcome: "started".into(),
                    error: None,
                    dry_run: true,
                },
                evidence: None,
            },
        ];
        let problems = vec![Problem {
            file: "journal.log".into(),
            line: 3,
            error: "torn last entry".into(),
        }];
        let t = render(&entries, &problems, "h1", "24h");
        assert!(
            t.contains("WARNING: journal.log line 3: torn last entry"),
            "{t}"
        );
        assert!(
            t.contains("2026-12-07T03:11:42Z  normal -> pre_fail (power): mains lost; shutdown at 2026-12-07T03:16:42Z"),
            "{t}"
        );
        assert!(
            t.contains("tcp://10.0.0.200:7: own down; peers down 14 (h02, h03, h04, h05, h06 +9 more), up 1 (h7)"),
            "{t}"
        );
        assert!(
            t.contains("hottest 41.0 C, headroom 39.0 C, trend +0.1 C/min"),
            "{t}"
        );
        assert!(
            t.contains("weight 0 of 32 voting (needs 17): not formed"),
            "{t}"
        );
        assert!(
            t.contains("stage: own stage 1; lower-stage nodes still going down: for power 2 (waiting for stage 0), for cooling none"),
            "{t}"
        );
        assert!(
            t.contains("2026-12-07T03:16:42Z  shutdown command attempt 1 started (dry run: logged, not run)"),
            "{t}"
        );
    }
}
