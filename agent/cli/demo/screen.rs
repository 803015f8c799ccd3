//! The keyboard and the table: parsing a key line, help, colours and the
//! rows of the status table.

use super::*;

/// A command typed by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `p`: cut mains power.
    CutPower,
    /// `P`: restore mains power.
    RestorePower,
    /// `c`: fail the room's cooling.
    FailCooling,
    /// `C`: restore cooling.
    RestoreCooling,
    /// `h N`: heat node N (1-based) alone.
    Heat(usize),
    /// `s`: print the status now.
    Status,
    /// `r`: restart every agent with fresh state, power and cooling back.
    Reset,
    /// `q`: quit.
    Quit,
    /// `?`: help.
    Help,
    /// An empty line.
    Nothing,
}

/// Parse one line typed by the user; the error says what to type instead.
pub fn parse_key(line: &str, nodes: usize) -> Result<Key, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (cmd, arg) = match words.as_slice() {
        [] => return Ok(Key::Nothing),
        [c] => (*c, None),
        [c, a] => (*c, Some(*a)),
        _ => {
            return Err(format!(
                "{:?}: one key per line, e.g. `p` or `h 2`; type ? for the list",
                line.trim()
            ))
        }
    };
    // `h2` is `h 2`.
    let (cmd, arg) = match (cmd.strip_prefix('h'), arg) {
        (Some(n), None) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => ("h", Some(n)),
        _ => (cmd, arg),
    };
    let key = match (cmd, arg) {
        ("p", None) => Key::CutPower,
        ("P", None) => Key::RestorePower,
        ("c", None) => Key::FailCooling,
        ("C", None) => Key::RestoreCooling,
        ("s", None) => Key::Status,
        ("r", None) => Key::Reset,
        ("q" | "quit" | "exit", None) => Key::Quit,
        ("?" | "help", None) => Key::Help,
        ("h", None) => {
            return Err(format!(
                "which node? type `h N` with N from 1 to {nodes}, e.g. `h 2`"
            ))
        }
        ("h", Some(a)) => match a.parse::<usize>() {
            Ok(n) if (1..=nodes).contains(&n) => Key::Heat(n),
            _ => {
                return Err(format!(
                    "no node {a:?}: nodes are 1 to {nodes}; e.g. `h {}`",
                    nodes.min(2)
                ))
            }
        },
        _ => {
            return Err(format!(
                "unknown key {:?}; type ? for the list",
                line.trim()
            ))
        }
    };
    Ok(key)
}

/// The key list.
pub fn help_text(nodes: usize) -> String {
    let rows = [
        ["p", "cut mains power (the power target stops answering)"],
        ["P", "restore mains power"],
        ["c", "fail the room's cooling: every node heats"],
        ["C", "restore cooling (also ends `h`)"],
        ["h N", "heat node N alone (1 to N)"],
        ["s", "print the status now"],
        ["r", "reset: restart every agent with fresh state"],
        ["q", "quit (also Ctrl-C); stops every agent"],
        ["?", "this list"],
    ];
    let mut s = format!("keys (type one, then Enter; nodes are 1 to {nodes}):\n");
    for [k, what] in rows {
        s.push_str(&format!("  {k:<4} {what}\n"));
    }
    s
}

/// Lines from stdin, read on a plain thread (no raw mode, nothing that
/// could hold up the exit). The channel closes at end of input.
pub(super) fn spawn_stdin() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(16);
    let _ = std::thread::Builder::new()
        .name("demo-keys".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match stdin.lock().read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        if tx.blocking_send(line).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
    rx
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// ANSI colour, only on a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Emit colour codes.
    pub colour: bool,
}

impl Style {
    /// Colour by the rule of every command (`render::colour_stdout`): a
    /// terminal, `NO_COLOR` unset or empty, `TERM` not `dumb`.
    pub fn detect() -> Style {
        Style {
            colour: crate::render::colour_stdout(),
        }
    }

    /// `s` in colour `code` (an SGR parameter such as `31;1`).
    pub fn paint(self, code: &str, s: &str) -> String {
        if self.colour && !code.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

pub(super) fn state_colour(state: &str) -> &'static str {
    match state {
        "normal" => "32",
        "pre_fail" => "33;1",
        "shutdown" => "31;1",
        "local_fault" => "35",
        "maintenance" => "36",
        _ => "31",
    }
}

/// Columns of the status table.
pub const COLUMNS: [&str; 9] = [
    "NODE",
    "STATE",
    "REASON",
    "SHUTDOWN IN",
    "HOTTEST C",
    "HEADROOM C",
    "TREND C/MIN",
    "POWER",
    "PEERS ALIVE",
];

pub(super) fn fmt_left(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// One table row for an agent's snapshot.
pub fn row(name: &str, snap: &Snapshot, now_ms: u64, other_nodes: usize) -> [String; 9] {
    let f = &snap.fsm;
    let num = |v: Option<f64>, plus: bool| match v {
        Some(v) if plus => format!("{v:+.1}"),
        Some(v) => format!("{v:.1}"),
        None => "-".to_string(),
    };
    let left = if f.state == "shutdown" {
        if f.executed {
            "done (dry-run)".to_string()
        } else {
            "now".to_string()
        }
    } else {
        f.deadline_ms
            .map(|d| fmt_left(d.saturating_sub(now_ms)))
            .unwrap_or_else(|| "-".to_string())
    };
    let peers = if snap.cluster.name.is_empty() && snap.cluster.peers.is_empty() {
        "-".to_string()
    } else {
        let alive = snap
            .cluster
            .peers
            .iter()
            .filter(|p| p.liveness == "alive" && !p.stale)
            .count();
        format!("{alive}/{other_nodes}")
    };
    [
        name.to_string(),
        f.state.clone(),
        if f.reason == "none" {
            "-".to_string()
        } else {
            f.reason.clone()
        },
        left,
        num(snap.thermal.hottest_celsius, false),
        num(snap.thermal.headroom_celsius, false),
        num(snap.thermal.trend_celsius_per_minute, true),
        match snap.power.up {
            Some(true) => "up".to_string(),
            Some(false) => "DOWN".to_string(),
            None => "?".to_string(),
        },
        peers,
    ]
}

/// A row for an agent that cannot be asked.
pub fn row_unreachable(name: &str, what: &str, why: &str) -> [String; 9] {
    let mut why: String = why.chars().take(60).collect();
    if why.is_empty() {
        why = "-".into();
    }
    [
        name.to_string(),
        what.to_string(),
        why,
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
    ]
}

pub(super) fn cell_colour(col: usize, text: &str) -> &'static str {
    match col {
        1 => state_colour(text),
        3 if text != "-" => "33;1",
        5 => match text.parse::<f64>() {
            Ok(h) if h < 10.0 => "31;1",
            Ok(h) if h < 20.0 => "33",
            _ => "",
        },
        6 => match text.parse::<f64>() {
            Ok(t) if t >= 3.0 => "33",
            _ => "",
        },
        7 => match text {
            "DOWN" => "31;1",
            "up" => "32",
            _ => "",
        },
        _ => "",
    }
}

/// The status table, aligned on the visible text (colour codes do not
/// count), numbers right-aligned.
pub fn render_table(rows: &[[String; 9]], style: Style) -> String {
    const RIGHT: [usize; 4] = [3, 4, 5, 6];
    let mut w: Vec<usize> = COLUMNS.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<(&str, &str)>| {
        let mut s = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, (text, colour)) in cells.into_iter().enumerate() {
            let pad = " ".repeat(w[i].saturating_sub(text.chars().count()));
            if i > 0 {
                s.push_str("  ");
            }
            let painted = style.paint(colour, text);
            if RIGHT.contains(&i) {
                s.push_str(&pad);
                s.push_str(&painted);
            } else {
                s.push_str(&painted);
                if i < last {
                    s.push_str(&pad);
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(COLUMNS.iter().map(|h| (*h, "1")).collect());
    for r in rows {
        out.push_str(&line(
            r.iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), cell_colour(i, c)))
                .collect(),
        ));
    }
    out
}
