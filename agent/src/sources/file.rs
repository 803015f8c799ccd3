//! Source `file`: a JSON readings document (schema in [`super::json`]),
//! re-read every interval. Whatever writes it (a cron job, a BMC poller) only
//! has to replace it atomically.

use super::{
    blocking, json::parse_readings, read_capped, BusyGuard, Source, SourceError, MAX_DOCUMENT,
};
use crate::thermal::Reading;
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;

/// Reads readings from a JSON file.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    busy: BusyGuard,
}

impl FileSource {
    /// A source reading `path` on every call.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSource {
            path: path.into(),
            busy: BusyGuard::default(),
        }
    }
}

impl Source for FileSource {
    fn name(&self) -> &str {
        "file"
    }

    fn read(self: Arc<Self>) -> BoxFuture<'static, Result<Vec<Reading>, SourceError>> {
        blocking(&self.busy.clone(), move || {
            let text = read_capped(&self.path, MAX_DOCUMENT)?;
            parse_readings(&text, "file")
                .map_err(|e| SourceError::Parse(format!("{}: {e}", self.path.display())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rereads_and_reports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("inlet.json");
        let src = Arc::new(FileSource::new(&p));
        let e = src.clone().read().await.expect_err("missing").to_string();
        assert!(e.contains("inlet.json"), "{e}");
        std::fs::write(&p, r#"[{"chip":"inlet","sensor":"t","celsius":20}]"#).expect("w");
        assert_eq!(src.clone().read().await.expect("ok")[0].celsius, 20.0);
        std::fs::write(&p, r#"[{"chip":"inlet","sensor":"t","celsius":31}]"#).expect("w");
        assert_eq!(src.clone().read().await.expect("ok")[0].celsius, 31.0);
        std::fs::write(&p, "{{{{").expect("w");
        let e = src.clone().read().await.expect_err("garbage").to_string();
        assert!(
            e.contains("inlet.json") && e.contains("not a readings document"),
            "{e}"
        );
    }
}
