//! Thermal sources: one file per source, all behind [`Source`].
//!
//! A source turns some system interface into [`Reading`]s. Sources never run
//! on a scrape: the sampler (`crate::sampler`) calls them on an interval,
//! under a timeout, and keeps the last result.
//!
//! # Layout
//!
//! - [`hwmon`], [`thermal_zone`]: Linux sysfs (root override `--path.sysfs`).
//! - [`sysinfo`]: the portable fallback.
//! - [`lm_sensors`]: lm-sensors' `sensors` program or a saved output; a folder:
//!   `mod.rs` (modes, command, formats), `json.rs`, `text.rs`, `tests/`.
//! - [`exec`]: a plugin command printing a JSON readings document.
//! - [`ipmi`]: the BMC's temperature sensors through `ipmitool` or freeipmi,
//!   run on a cadence of its own; a folder: `mod.rs` (the source and its
//!   runner), `parse.rs` (the output rules), `command.rs` (tool, password
//!   argument, lanplus), `tests.rs`.
//! - [`file`]: a JSON readings document on disk; [`json`]: its schema.
//! - [`child`]: the one child-process runner of `exec`, `lm_sensors` and `ipmi`.

use crate::thermal::Reading;
use futures::future::BoxFuture;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub mod child;
pub mod exec;
pub mod file;
pub mod hwmon;
pub mod ipmi;
pub mod json;
pub mod lm_sensors;
pub mod sysinfo;
pub mod thermal_zone;

/// Why a source produced nothing usable this round.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The underlying interface is missing or unreadable.
    #[error("{path}: {err}")]
    Io {
        /// What we tried to read.
        path: String,
        /// The OS error.
        err: std::io::Error,
    },
    /// The data was there but could not be understood.
    #[error("{0}")]
    Parse(String),
    /// An external command failed.
    #[error("{0}")]
    Command(String),
    /// The read did not finish within the source timeout.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

/// A thermal source. Implementations must be cheap to call repeatedly and must
/// not panic on any input: garbage becomes a `SourceError` or a skipped reading.
pub trait Source: Send + Sync + 'static {
    /// Short stable name, used as the `source` label (`hwmon`, `exec`, ...).
    fn name(&self) -> &str;

    /// Read all sensors once. The sampler applies the timeout; a blocking
    /// source should do its work inside `spawn_blocking` (see [`blocking`]).
    fn read(self: Arc<Self>) -> BoxFuture<'static, Result<Vec<Reading>, SourceError>>;
}

/// Guards a blocking source against piling up threads.
///
/// The sampler's timeout drops a read's future, but it cannot stop a thread
/// stuck in `read(2)` on a hung device. The guard makes the next read fail
/// fast ("previous read still running") until that thread returns, so a hung
/// bus costs one thread, not one per interval.
#[derive(Debug, Clone, Default)]
pub struct BusyGuard(Arc<AtomicBool>);

/// Run a synchronous read on the blocking pool, so that a stuck sysfs file
/// (a hung I2C bus) never stalls the runtime. See [`BusyGuard`].
pub fn blocking<F>(busy: &BusyGuard, f: F) -> BoxFuture<'static, Result<Vec<Reading>, SourceError>>
where
    F: FnOnce() -> Result<Vec<Reading>, SourceError> + Send + 'static,
{
    if busy.0.swap(true, Ordering::AcqRel) {
        return Box::pin(async {
            Err(SourceError::Parse(
                "previous read has not returned yet (hung device?); skipping this round".into(),
            ))
        });
    }
    let flag = busy.0.clone();
    Box::pin(async move {
        tokio::task::spawn_blocking(move || {
            let r = f();
            flag.store(false, Ordering::Release);
            r
        })
        .await
        .unwrap_or_else(|e| Err(SourceError::Parse(format!("reader task failed: {e}"))))
    })
}

/// Cap on how much of any one sensor or data file we read. Sysfs attributes
/// are a page at most; a bigger file is not a sensor file.
pub const MAX_SMALL_FILE: u64 = 4096;
/// Cap for JSON files and command output.
pub const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;

/// Read at most `cap` bytes of `path` as UTF-8 text. Larger files, non-UTF-8
/// content and I/O errors become errors that name the file.
pub fn read_capped(path: &Path, cap: u64) -> Result<String, SourceError> {
    let io = |err| SourceError::Io {
        path: path.display().to_string(),
        err,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(cap + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > cap {
        return Err(SourceError::Parse(format!(
            "{}: larger than {cap} bytes, not a sensor file",
            path.display()
        )));
    }
    String::from_utf8(buf)
        .map_err(|_| SourceError::Parse(format!("{}: not UTF-8 text", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn busy_guard_prevents_pileup() {
        let guard = BusyGuard::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // First read blocks until released; the sampler's timeout gives up on it.
        let first = blocking(&guard, move || {
            let _ = rx.recv();
            Ok(vec![])
        });
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(50), first).await;
        assert!(timed_out.is_err());
        let e = blocking(&guard, || Ok(vec![]))
            .await
            .expect_err("still busy")
            .to_string();
        assert!(e.contains("previous read has not returned"), "{e}");
        tx.send(()).expect("release");
        // Once the stuck thread returns, reads work again.
        let mut ok = false;
        for _ in 0..100 {
            if blocking(&guard, || Ok(vec![])).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(ok);
    }

    #[test]
    fn read_capped_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'1'; 5000]).expect("write");
        let e = read_capped(&big, MAX_SMALL_FILE)
            .expect_err("too big")
            .to_string();
        assert!(e.contains("big") && e.contains("larger than 4096"), "{e}");

        let bin = dir.path().join("bin");
        std::fs::write(&bin, [0xff, 0xfe, 0x00]).expect("write");
        let e = read_capped(&bin, MAX_SMALL_FILE)
            .expect_err("binary")
            .to_string();
        assert!(e.contains("not UTF-8"), "{e}");

        let e = read_capped(&dir.path().join("missing"), 10)
            .expect_err("missing")
            .to_string();
        assert!(e.contains("missing"), "{e}");

        let ok = dir.path().join("ok");
        std::fs::write(&ok, "42000\n").expect("write");
        assert_eq!(read_capped(&ok, MAX_SMALL_FILE).expect("ok"), "42000\n");
    }
}
