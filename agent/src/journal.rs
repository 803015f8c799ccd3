//! The decision journal: every transition, trigger, deadline move, operator
//! action and shutdown command, with the evidence the decision used at that
//! moment, kept in the state directory across restarts and reboots.
//!
//! Why: the question the morning after is "why did this server power off
//! at 03:12?", and by then the process that decided is gone. Metrics hold
//! numbers; the journal holds the reasons, the votes and who cast them.
//!
//! # Format
//!
//! `journal.log` in the state directory, append-only, one entry per line:
//!
//! ```text
//! <crc32 of the JSON, 8 hex digits> <entry as one line of JSON>\n
//! ```
//!
//! Each append is followed by `fdatasync`, so an entry that was reported
//! written survives a power cut. A torn last line (the power went while it
//! was written) fails its checksum or lacks its newline: it is dropped,
//! reported (`coolmesh explain`, `GET /v1/events`, the log), and the file is
//! cut back to the last whole entry, so nothing before it is lost.
//!
//! Bounded: when `journal.log` passes half of `max_bytes` it becomes
//! `journal.1.log` (the previous one is deleted), so the two together stay
//! within `max_bytes`; entries older than `max_age` are not served.
//!
//! # Use
//!
//! [`Journal::open`] loads what is on disk (at most `max_bytes`) and starts
//! nothing; the [`Writer`] it also returns is the task that appends. The agent
//! calls [`Journal::record`], which never blocks: entries go through a
//! bounded channel, and if the writer is behind the entry is dropped and
//! counted ([`Journal::dropped`]).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The current journal file.
pub const FILE: &str = "journal.log";
/// The previous one.
pub const OLD_FILE: &str = "journal.1.log";
/// Longest line read back; a longer one is corrupt.
const MAX_LINE: usize = 256 * 1024;

/// Limits of the journal. Config: `[journal]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// Bytes on disk for both files together. Default 4 MiB: about 4,000
    /// entries with the evidence of a 40-node room, months of a quiet
    /// room's transitions. Larger keeps more history; memory use is about
    /// the same again (the entries are served from memory).
    pub max_bytes: u64,
    /// Entries older than this are not served. Default 90 days.
    pub max_age: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            max_bytes: 4 * 1024 * 1024,
            max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// One power target in the evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetEvidence {
    /// The target as configured.
    pub target: String,
    /// This node's last probe of it (`None`: unknown, a local error).
    pub own: Option<bool>,
    /// Voters (peers) that see it up, by node name.
    pub up: Vec<String>,
    /// Voters that see it down.
    pub down: Vec<String>,
}

/// A thermal summary in the evidence (this node's or a peer's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThermalEvidence {
    /// Node name.
    pub node: String,
    /// Hottest sensor, C.
    pub hottest: Option<f64>,
    /// Headroom to critical, C.
    pub headroom: Option<f64>,
    /// Trend, C per minute.
    pub trend: Option<f64>,
    /// Projected seconds to critical.
    pub time_to_critical: Option<f64>,
    /// At or above a critical threshold.
    pub critical: bool,
    /// Votes "cooling lost".
    pub cooling_vote: bool,
    /// Votes by inlet/ambient air sensors (weight 2).
    pub air: bool,
    /// CPU load (this node only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
}

/// The cooling quorum as the state machine counted it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CoolingEvidence {
    /// Nodes counted (voters and this node).
    pub nodes: u32,
    /// Their total weight.
    pub weight: u32,
    /// Weight voting "cooling lost".
    pub voting_weight: u32,
    /// Weight a quorum needs.
    pub needed: u32,
    /// The quorum holds.
    pub formed: bool,
    /// The peers voting "cooling lost", with their readings.
    pub voting: Vec<ThermalEvidence>,
}

/// What a decision used, at the moment it was taken.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// This node's probe round: "up", "down", "unknown" ("" if none).
    pub own_power: String,
    /// Per target: this node's result and the voters' (peers that vote:
    /// alive, directly connected, one per host address).
    pub targets: Vec<TargetEvidence>,
    /// This node's thermal summary.
    pub thermal: ThermalEvidence,
    /// The cooling quorum.
    pub cooling: CoolingEvidence,
    /// Peers that vote, and peers known but not voting (relayed, suspect,
    /// a second identity of an address).
    pub voters: u32,
    /// See `voters`.
    pub non_voters: u32,
    /// Staged shutdown: this node's stage and the lower-stage nodes still
    /// going down. `None` in entries written before staged shutdown.
    #[serde(default)]
    pub stage: Option<StageEvidence>,
}

/// Staged shutdown at the moment of a decision (see `crate::stage`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageEvidence {
    /// This node's stage.
    pub stage: u32,
    /// Alive lower-stage nodes still going down, per trigger.
    pub lower: crate::fsm::StageGate,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The agent started.
    Started {
        /// Agent version.
        version: String,
        /// State restored from disk.
        state: String,
        /// Its reason.
        reason: String,
        /// Its detail.
        detail: String,
    },
    /// A state-machine transition.
    Transition {
        /// From.
        from: String,
        /// To.
        to: String,
        /// Why.
        reason: String,
        /// The trigger whose grace runs (pre_fail, shutdown).
        trigger: String,
        /// The machine's detail.
        detail: String,
        /// Shutdown deadline before (unix ms).
        deadline_before_ms: Option<u64>,
        /// And after.
        deadline_ms: Option<u64>,
    },
    /// A deadline moved without a state change (a prediction, a trigger
    /// that joined or cleared).
    DeadlineMoved {
        /// Why.
        reason: String,
        /// The machine's detail.
        detail: String,
        /// Before (unix ms).
        before_ms: Option<u64>,
        /// After.
        after_ms: Option<u64>,
    },
    /// A trigger became active or cleared.
    Trigger {
        /// power, cooling, overheat.
        trigger: String,
        /// Active (true) or cleared.
        active: bool,
    },
    /// An operator action.
    Operator {
        /// cancel, maintenance for 1h, end maintenance.
        action: String,
        /// Who asked (a room command's requester; "http" for the node's own API).
        requester: String,
        /// Through which peer (room commands) or "this node".
        via: String,
        /// applied, nothing to do, refused.
        outcome: String,
        /// What the agent answered.
        message: String,
    },
    /// The shutdown command.
    Command {
        /// Attempt number.
        attempt: u32,
        /// started, succeeded, failed, outcome unknown.
        outcome: String,
        /// Why it failed.
        error: Option<String>,
        /// A dry run (logged, not run).
        dry_run: bool,
    },
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Increasing, across restarts.
    pub seq: u64,
    /// When (unix ms).
    pub at_ms: u64,
    /// What.
    #[serde(flatten)]
    pub event: Event,
    /// What the decision used (transitions, triggers, deadline moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<Evidence>>,
}

/// A line that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub error: String,
}

/// The line of an entry: checksum, space, JSON, newline.
pub fn encode_line(e: &Entry) -> Vec<u8> {
    let json = serde_json::to_vec(e).unwrap_or_default();
    let mut out = format!("{:08x} ", crc32fast::hash(&json)).into_bytes();
    out.extend_from_slice(&json);
    out.push(b'\n');
    out
}

/// Read at most the last `max` bytes of a file, starting at a line: (the
/// bytes, their offset in the file). A journal can only be larger than its
/// bound if something else wrote it; reading it whole could exhaust memory.
fn read_tail(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= max {
        let mut b = Vec::with_capacity(len as usize);
        f.read_to_end(&mut b)?;
        return Ok((b, 0));
    }
    let start = len - max;
    f.seek(SeekFrom::Start(start))?;
    let mut b = Vec::with_capacity(max as usize);
    f.take(max).read_to_end(&mut b)?;
    // Skip the partial first line.
    let cut = b
        .iter()
        .position(|c| *c == b'\n')
        .map_or(b.len(), |i| i + 1);
    b.drain(..cut);
    Ok((b, start + cut as u64))
}

/// Read a journal file's bytes: the entries, the problems, and the length
/// of the prefix that holds whole lines (where to cut a torn tail).
pub fn decode(file: &str, bytes: &[u8]) -> (Vec<Entry>, Vec<Problem>, usize) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut good = 0;
    let mut pos = 0;
    let mut line_no = 0;
    while pos < bytes.len() {
        line_no += 1;
        let Some(nl) = bytes[pos..].iter().position(|b| *b == b'\n') else {
            problems.push(Problem {
                file: file.into(),
                line: line_no,
                error: format!(
                    "torn last entry ({} bytes without an end of line): the write was cut, e.g. by a power loss; dropped",
                    bytes.len() - pos
                ),
            });
            break;
        };
        let line = &bytes[pos..pos + nl];
        pos += nl + 1;
        match decode_line(line) {
            Ok(e) => {
                entries.push(e);
                good = pos;
            }
            Err(error) => {
                problems.push(Problem {
                    file: file.into(),
                    line: line_no,
                    error,
                });
                // A bad line in the middle is skipped; the rest is kept.
                good = pos;
            }
        }
    }
    (entries, problems, good)
}

fn decode_line(line: &[u8]) -> Result<Entry, String> {
    if line.len() > MAX_LINE {
        return Err(format!("line of {} bytes, over the limit", line.len()));
    }
    if line.len() < 10 || line[8] != b' ' {
        return Err("not a journal line (want: CRC32 JSON)".into());
    }
    let crc = std::str::from_utf8(&line[..8])
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or("bad checksum field")?;
    let json = &line[9..];
    if crc32fast::hash(json) != crc {
        return Err("checksum mismatch: the entry was cut or altered; dropped".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("checksum good but not an entry: {e}"))
}

/// Read the journal of a state directory (both files, oldest first).
pub fn read_dir(dir: &Path) -> std::io::Result<(Vec<Entry>, Vec<Problem>)> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for name in [OLD_FILE, FILE] {
        // Far above any configured bound; only a foreign file is larger.
        let bytes = match read_tail(&dir.join(name), 1 << 30) {
            Ok((b, _)) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let (e, p, _) = decode(name, &bytes);
        entries.extend(e);
        problems.extend(p);
    }
    Ok((entries, problems))
}

/// A page of entries, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Entries, newest first.
    pub entries: Vec<Entry>,
    /// Pass as `before` for the next (older) page; none when this is the last.
    pub next_before: Option<u64>,
    /// Lines that could not be read back when the journal was loaded.
    pub problems: Vec<Problem>,
    /// Entries dropped because the writer was behind (since start).
    pub dropped: u64,
}

struct Inner {
    dir: PathBuf,
    cfg: JournalConfig,
    entries: Mutex<VecDeque<Entry>>,
    /// Approximate bytes of `entries` on disk.
    bytes: Mutex<u64>,
    problems: Mutex<Vec<Problem>>,
    next_seq: AtomicU64,
    dropped: AtomicU64,
}

/// The journal of one agent (cheap to clone).
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
    tx: mpsc::Sender<Entry>,
}

/// The task that appends entries (returned by [`Journal::open`]; run it once).
pub struct Writer {
    inner: Arc<Inner>,
    rx: mpsc::Receiver<Entry>,
}

impl Journal {
    /// Load the journal of `dir` (cutting a torn tail off `journal.log`).
    /// Problems are kept for [`Journal::page`] and returned for the log.
    pub fn open(dir: &Path, cfg: JournalConfig) -> (Journal, Writer, Vec<Problem>) {
        let mut entries = VecDeque::new();
        let mut problems = Vec::new();
        let mut bytes = 0u64;
        for name in [OLD_FILE, FILE] {
            let path = dir.join(name);
            let (data, offset) = match read_tail(&path, cfg.max_bytes) {
                Ok((b, 0)) => (b, 0),
                Ok((b, offset)) => {
                    problems.push(Problem {
                        file: name.into(),
                        line: 0,
                        error: format!(
                            "larger than journal.max_bytes ({}): only its last entries were read",
                            cfg.max_bytes
                        ),
                    });
                    (b, offset)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    problems.push(Problem {
                        file: name.into(),
                        line: 0,
                        error: format!("cannot read: {e}"),
                    });
                    continue;
                }
            };
            let (e, p, good) = decode(name, &data);
            if name == FILE && good < data.len() {
                // Cut the torn tail so that the next entry starts on a
                // line of its own.
                if let Err(e) = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(offset + good as u64).and_then(|()| f.sync_all()))
                {
                    tracing::warn!(path = %path.display(), error = %e, "cannot cut the torn end of the journal");
                }
            }
            bytes += good as u64;
            entries.extend(e);
            problems.extend(p);
        }
        let next = entries.back().map_or(1, |e: &Entry| e.seq + 1);
        let (tx, rx) = mpsc::channel(64);
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            cfg,
            entries: Mutex::new(entries),
            bytes: Mutex::new(bytes),
            problems: Mutex::new(problems.clone()),
            next_seq: AtomicU64::new(next),
            dropped: AtomicU64::new(0),
        });
        (
            Journal {
                inner: inner.clone(),
                tx,
            },
            Writer { inner, rx },
            problems,
        )
    }

    /// Record an event (never blocks; dropped and counted if the writer is
    /// behind).
    pub fn record(&self, at_ms: u64, event: Event, evidence: Option<Evidence>) {
        let e = Entry {
            seq: self.inner.next_seq.fetch_add(1, Ordering::Relaxed),
            at_ms,
            event,
            evidence: evidence.map(Box::new),
        };
        if self.tx.try_send(e).is_err() {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Entries dropped since start.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Entries newest first: at most `limit`, with `seq < before` (if
    /// given) and `at_ms >= since_ms`, never older than `max_age`.
    pub fn page(
        &self,
        now_ms: u64,
        since_ms: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Page {
        let age_floor = now_ms
            .saturating_sub(u64::try_from(self.inner.cfg.max_age.as_millis()).unwrap_or(u64::MAX));
        let floor = since_ms.unwrap_or(0).max(age_floor);
        let entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Entry> = entries
            .iter()
            .rev()
            .filter(|e| before.is_none_or(|b| e.seq < b))
            .take_while(|e| e.at_ms >= floor)
            .take(limit.saturating_add(1))
            .cloned()
            .collect();
        let next_before = if out.len() > limit {
            out.truncate(limit);
            out.last().map(|e| e.seq)
        } else {
            None
        };
        Page {
            entries: out,
            next_before,
            problems: self
                .inner
                .problems
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            dropped: self.dropped(),
        }
    }
}

impl coolmesh_exporter::EventSource for Journal {
    fn page_json(
        &self,
        since_ms: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> serde_json::Value {
        serde_json::to_value(self.page(crate::clock::unix_ms(), since_ms, before, limit))
            .unwrap_or_default()
    }
}

impl Writer {
    /// Append entries until every [`Journal`] handle is gone.
    pub async fn run(mut self) {
        while let Some(e) = self.rx.recv().await {
            let inner = self.inner.clone();
            let line = encode_line(&e);
            // File I/O (and its fdatasync) off the async threads.
            let res = tokio::task::spawn_blocking(move || inner.append(&line)).await;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::error!(error = %err, dir = %self.inner.dir.display(), "cannot write the decision journal; the entry is kept in memory only");
                }
                Err(err) => tracing::error!(error = %err, "journal writer task failed"),
            }
            let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.push_back(e);
            // Memory follows the disk bound (roughly: by count of bytes).
            let max = self.inner.cfg.max_bytes;
            let mut bytes = self.inner.bytes.lock().unwrap_or_else(|p| p.into_inner());
            while *bytes > max && entries.len() > 1 {
                if let Some(old) = entries.pop_front() {
                    *bytes = bytes.saturating_sub(encode_line(&old).len() as u64);
                }
            }
        }
    }
}

impl Inner {
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(FILE);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len > 0 && len + line.len() as u64 > self.cfg.max_bytes / 2 {
            std::fs::rename(&path, self.dir.join(OLD_FILE))?;
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(line)?;
        f.sync_data()?;
        *self.bytes.lock().unwrap_or_else(|p| p.into_inner()) += line.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(to: &str) -> Event {
        Event::Transition {
            from: "normal".into(),
            to: to.into(),
            reason: "power".into(),
            trigger: "power".into(),
            detail: "mains lost".into(),
            deadline_before_ms: None,
            deadline_ms: Some(1_000),
        }
    }

    /// Wait until the writer appended `n` entries in all.
    async fn wait_len(j: &Journal, n: usize) {
        for _ in 0..2000 {
            if j.inner.entries.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("the writer did not append {n} entries");
    }

    async fn write_some(dir: &Path, cfg: JournalConfig, n: u64) -> Journal {
        let (j, w, _) = Journal::open(dir, cfg);
        tokio::spawn(w.run());
        for i in 0..n {
            j.record(1_000 + i, transition("pre_fail"), Some(Evidence::default()));
        }
        wait_len(&j, n as usize).await;
        j
    }

    #[tokio::test]
    async fn entries_survive_a_restart_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let j = write_some(dir.path(), JournalConfig::default(), 5).await;
        assert_eq!(j.inner.entries.lock().unwrap().len(), 5);
        let (j2, _w, problems) = Journal::open(dir.path(), JournalConfig::default());
        assert!(problems.is_empty(), "{problems:?}");
        let p = j2.page(2_000, None, None, 100);
        let seqs: Vec<u64> = p.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [5, 4, 3, 2, 1]);
        // The next entry continues the sequence.
        assert_eq!(j2.inner.next_seq.load(Ordering::Relaxed), 6);
    }

    #[tokio::test]
    async fn a_torn_last_entry_loses_only_that_entry_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let _ = write_some(dir.path(), JournalConfig::default(), 3).await;
        let path = dir.path().join(FILE);
        let full = std::fs::read(&path).unwrap();
        // Power cut in the middle of the third entry.
        let cut = full.len() - 20;
        std::fs::write(&path, &full[..cut]).unwrap();
        let (j, w, problems) = Journal::open(dir.path(), JournalConfig::default());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].error.contains("torn last entry"),
            "{problems:?}"
        );
        let p = j.page(2_000, None, None, 100);
        assert_eq!(p.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(p.problems, problems);
        // The torn tail was cut: a new entry starts on its own line and
        // reads back.
        tokio::spawn(w.run());
        j.record(5_000, transition("shutdown"), None);
        wait_len(&j, 3).await;
        let (entries, problems) = read_dir(dir.path()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum_and_only_that_line_is_lost() {
        let e = |seq| Entry {
            seq,
            at_ms: seq,
            event: transition("pre_fail"),
            evidence: None,
        };
        let mut bytes = Vec::new();
        for s in 1..=3 {
            bytes.extend(encode_line(&e(s)));
        }
        let second = encode_line(&e(1)).len() + 20;
        bytes[second] ^= 0x20;
        let (entries, problems, good) = decode(FILE, &bytes);
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 2);
        assert!(problems[0].error.contains("checksum"), "{problems:?}");
        assert_eq!(good, bytes.len());
        // Garbage is a problem, never a panic.
        for junk in [
            &b"\xff\xfe\n"[..],
            b"zzzzzzzz {}\n",
            b"\n\n",
            &[b'a'; 300][..],
        ] {
            let (_, p, _) = decode(FILE, junk);
            assert!(!p.is_empty(), "{junk:?}");
        }
    }

    #[test]
    fn a_file_far_over_the_bound_is_read_from_its_tail_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for seq in 1..=500u64 {
            bytes.extend(encode_line(&Entry {
                seq,
                at_ms: seq,
                event: transition("pre_fail"),
                evidence: None,
            }));
        }
        std::fs::write(dir.path().join(FILE), &bytes).unwrap();
        let cfg = JournalConfig {
            max_bytes: 65_536,
            ..Default::default()
        };
        let (j, _w, problems) = Journal::open(dir.path(), cfg);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].error.contains("larger than journal.max_bytes"));
        let entries = j.inner.entries.lock().unwrap();
        assert!(entries.len() < 500 && !entries.is_empty());
        assert_eq!(entries.back().map(|e| e.seq), Some(500));
        // Whole entries only, consecutive up to the last.
        assert!(entries
            .iter()
            .zip(entries.iter().skip(1))
            .all(|(a, b)| b.seq == a.seq + 1));
        assert_eq!(j.inner.next_seq.load(Ordering::Relaxed), 501);
    }

    #[tokio::test]
    async fn the_files_stay_within_max_bytes_and_pages_walk_back() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            max_bytes: 4_000,
            ..Default::default()
        };
        let (j, w, _) = Journal::open(dir.path(), cfg.clone());
        let task = tokio::spawn(w.run());
        for i in 0..200u64 {
            j.record(10_000 + i, transition("pre_fail"), None);
            if i % 32 == 31 {
                // Let the writer keep up (the queue holds 64).
                for _ in 0..400 {
                    if j.inner.next_seq.load(Ordering::Relaxed) - 1
                        == j.inner.entries.lock().unwrap().back().map_or(0, |e| e.seq)
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
        for _ in 0..400 {
            if j.inner.entries.lock().unwrap().back().map(|e| e.seq) == Some(200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(task);
        assert_eq!(j.dropped(), 0);
        let len = |f: &str| std::fs::metadata(dir.path().join(f)).unwrap().len();
        let on_disk = len(FILE) + len(OLD_FILE);
        assert!(on_disk <= 4_000, "{on_disk} bytes on disk");
        // Pages of 10, newest first, walking back without gaps.
        let mut before = None;
        let mut seen = Vec::new();
        loop {
            let p = j.page(20_000, None, before, 10);
            seen.extend(p.entries.iter().map(|e| e.seq));
            match p.next_before {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        assert_eq!(seen.first(), Some(&200));
        assert!(seen.windows(2).all(|w| w[0] == w[1] + 1), "{seen:?}");
        // `since` and max_age cut the old ones.
        let p = j.page(20_000, Some(10_195), None, 100);
        assert_eq!(p.entries.len(), 5);
        let p = j.page(10_199 + cfg.max_age.as_millis() as u64 + 1, None, None, 100);
        assert!(p.entries.is_empty());
    }
}
