//! The status page at `/`: one self-contained HTML document (no external
//! assets) that polls `/v1/state`.

/// The page.
pub const STATUS_PAGE: &str = include_str!("status.html");
