//! Durable state: atomic file writes and the state machine's `fsm.json`.
//!
//! The shutdown decision must be on disk before the shutdown command runs,
//! and a pending deadline must survive a restart of the agent. A half-written
//! file after a crash or power cut must therefore be impossible: every write
//! goes to a temporary file in the same directory, is fsynced, renamed over
//! the target, and the directory is fsynced so the rename itself is durable.

use crate::fsm::{Machine, Millis};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// File name of the state machine record inside the state directory.
pub const FILE_NAME: &str = "fsm.json";

/// Format version written into `fsm.json`. Bump on incompatible changes; an
/// agent refuses files with another version instead of misreading them.
pub const FORMAT_VERSION: u32 = 1;

/// Largest `fsm.json` we read. The real file is about a kilobyte; anything
/// huge is not ours and must not exhaust memory at startup.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Write `bytes` to `path` atomically and durably: readers (and a restarted
/// agent after a crash) see either the old content or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    // Same directory, so the rename cannot cross file systems. The pid keeps
    // two agents pointed at one directory (a misconfiguration) from
    // clobbering each other's temporary file.
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename durable: without this a power cut can bring the
        // old file back.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // Best effort: do not leave temporary files behind on a full disk.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The on-disk record: the machine plus what is needed to interpret it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// Kernel boot id at write time (`/proc/sys/kernel/random/boot_id`).
    /// Tells an agent restart (same boot) from a reboot of the machine, e.g.
    /// after the shutdown it decided.
    pub boot_id: Option<String>,
    /// When the record was written.
    pub written_at: Millis,
    /// The state machine.
    pub machine: Machine,
}

impl Persisted {
    /// A record of the current format.
    pub fn new(machine: Machine, boot_id: Option<String>, written_at: Millis) -> Self {
        Persisted {
            version: FORMAT_VERSION,
            boot_id,
            written_at,
            machine,
        }
    }
}

/// Why `fsm.json` could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading, writing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("{path}: corrupt state file: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// The file was written in a format this agent does not read.
    #[error("{path}: state file format version {found}, this agent reads version {supported}")]
    Version {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this agent reads.
        supported: u32,
    },
    /// The file is larger than any state file we write.
    #[error("{path}: {size} bytes, too large for a state file")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

/// Path of `fsm.json` in `dir`.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Write the record to `dir/fsm.json` atomically, creating `dir` if needed.
pub fn store(dir: &Path, rec: &Persisted) -> Result<(), PersistError> {
    let path = state_path(dir);
    let io = |source| PersistError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    let mut bytes = serde_json::to_vec_pretty(rec).map_err(|source| PersistError::Parse {
        path: path.clone(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(&path, &bytes).map_err(io)
}

/// Read `dir/fsm.json`: `Ok(None)` when there is none.
pub fn load(dir: &Path) -> Result<Option<Persisted>, PersistError> {
    let path = state_path(dir);
    let io = |source| PersistError::Io {
        path: path.clone(),
        source,
    };
    let size = match fs::metadata(&path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if size > MAX_FILE_BYTES {
        return Err(PersistError::TooLarge { path, size });
    }
    let bytes = fs::read(&path).map_err(io)?;
    // Check the version before the full shape, so that a newer format gives
    // "version 2" rather than a confusing missing-field error.
    #[derive(Deserialize)]
    struct Header {
        version: u32,
    }
    let parse = |source| PersistError::Parse {
        path: path.clone(),
        source,
    };
    let header: Header = serde_json::from_slice(&bytes).map_err(parse)?;
    if header.version != FORMAT_VERSION {
        return Err(PersistError::Version {
            path,
            found: header.version,
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_slice(&bytes).map(Some).map_err(parse)
}

/// What the agent found in its state directory at startup.
#[derive(Debug)]
pub enum Loaded {
    /// No `fsm.json`: first start.
    Missing,
    /// A valid record (boxed: the machine is much larger than the others).
    Restored(Box<Persisted>),
    /// `fsm.json` exists but cannot be used. The agent starts from `normal`
    /// and must say so loudly. The file was moved aside (to `moved_to`, when
    /// that worked) so that the next write does not destroy the evidence.
    Unusable {
        /// What is wrong (names the file).
        error: PersistError,
        /// Where the bad file now is.
        moved_to: Option<PathBuf>,
    },
}

/// Load `dir/fsm.json`, or report why the agent has to start from defaults.
///
/// A corrupt or foreign-version file is renamed to `fsm.json.corrupt` (an
/// earlier one there is replaced). An I/O error (permissions, a failing
/// disk) leaves the file where it is.
pub fn load_or_default(dir: &Path) -> Loaded {
    match load(dir) {
        Ok(None) => Loaded::Missing,
        Ok(Some(rec)) => Loaded::Restored(Box::new(rec)),
        Err(error) => {
            let moved_to = match &error {
                PersistError::Io { .. } => None,
                _ => {
                    let from = state_path(dir);
                    let to = dir.join(format!("{FILE_NAME}.corrupt"));
                    fs::rename(&from, &to).ok().map(|()| to)
                }
            };
            Loaded::Unusable { error, moved_to }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{Reason, State};

    fn sample() -> Persisted {
        let mut m = Machine::new(Millis(1_700_000_000_000));
        m.state = State::PreFail;
        m.reason = Reason::Power;
        m.deadline = Some(Millis(1_700_000_300_000));
        Persisted::new(m, Some("boot-a".into()), Millis(1_700_000_000_000))
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(load_or_default(dir.path()), Loaded::Missing));
        let rec = sample();
        store(dir.path(), &rec).expect("store");
        assert_eq!(load(dir.path()).expect("load"), Some(rec.clone()));
        // Overwrite works and leaves no temporary files.
        let mut rec2 = rec;
        rec2.machine.state = State::Shutdown;
        store(dir.path(), &rec2).expect("store");
        assert!(matches!(load_or_default(dir.path()), Loaded::Restored(r) if *r == rec2));
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
    }

    #[test]
    fn store_creates_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("a/b");
        store(&sub, &sample()).expect("store");
        assert!(state_path(&sub).exists());
    }

    #[test]
    fn corrupt_file_names_the_file_and_is_moved_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            state_path(dir.path()),
            b"{\"version\": 1, \"machine\": {\"state\": \"exploded\"",
        )
        .expect("write");
        match load_or_default(dir.path()) {
            Loaded::Unusable { error, moved_to } => {
                let msg = error.to_string();
                assert!(msg.contains("fsm.json"), "{msg}");
                assert!(msg.contains("corrupt"), "{msg}");
                let moved = moved_to.expect("moved");
                assert!(moved.ends_with("fsm.json.corrupt"));
                assert!(moved.exists());
            }
            other => panic!("expected Unusable, got {other:?}"),
        }
        assert!(!state_path(dir.path()).exists());
    }

    #[test]
    fn unknown_state_name_is_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = serde_json::to_string(&sample())
            .expect("json")
            .replace("pre_fail", "exploded");
        fs::write(state_path(dir.path()), text).expect("write");
        assert!(matches!(load(dir.path()), Err(PersistError::Parse { .. })));
    }

    #[test]
    fn other_version_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            state_path(dir.path()),
            br#"{"version": 7, "whatever": true}"#,
        )
        .expect("write");
        let err = load(dir.path()).expect_err("must refuse");
        assert!(matches!(
            err,
            PersistError::Version {
                found: 7,
                supported: FORMAT_VERSION,
                ..
            }
        ));
        assert!(err.to_string().contains("fsm.json"));
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            state_path(dir.path()),
            vec![b' '; (MAX_FILE_BYTES + 1) as usize],
        )
        .expect("write");
        assert!(matches!(
            load(dir.path()),
            Err(PersistError::TooLarge { .. })
        ));
    }

    #[test]
    fn missing_fields_take_defaults_within_a_version() {
        // Fields added later within format 1 must not make old files corrupt.
        let dir = tempfile::tempdir().expect("tempdir");
        let text = r#"{"version":1,"boot_id":null,"written_at":5,"machine":{"state":"maintenance","maintenance_until":99}}"#;
        fs::write(state_path(dir.path()), text).expect("write");
        let rec = load(dir.path()).expect("load").expect("some");
        assert_eq!(rec.machine.state, State::Maintenance);
        assert_eq!(rec.machine.maintenance_until, Some(Millis(99)));
        assert!(!rec.machine.exec.issued);
    }

    #[test]
    fn write_atomic_replaces_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x");
        write_atomic(&p, b"one").expect("write");
        write_atomic(&p, b"two").expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"two");
    }

    #[test]
    fn write_atomic_into_missing_dir_fails_cleanly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("nope/x");
        assert!(write_atomic(&p, b"one").is_err());
    }
}
