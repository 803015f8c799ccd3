//! The status page at `/`: one self-contained HTML document (no external
//! assets) that polls `/v1/state` and `/v1/peers`. It is tested in headless
//! Chromium against real agents by `.ci/status-page.sh`
//! (`tests/browser/status-page.test.mjs`); the tests here keep it
//! self-contained.

/// The page.
pub const STATUS_PAGE: &str = include_str!("status.html");

#[cfg(test)]
mod tests {
    use super::STATUS_PAGE;

    #[test]
    fn loads_nothing_from_the_network() {
        let p = STATUS_PAGE.to_ascii_lowercase();
        for needle in [
            "http://",
            "https://",
            "//cdn",
            "<link rel=\"stylesheet",
            "@import",
            "<img",
            "<iframe",
            "src=",
            "url(",
        ] {
            assert!(!p.contains(needle), "status page contains {needle:?}");
        }
        // The browser enforces it too, and asks for no favicon.
        assert!(p.contains("content-security-policy") && p.contains("connect-src 'self'"));
        assert!(p.contains("default-src 'none'"));
        assert!(p.contains("<link rel=\"icon\" href=\"data:,\">"));
    }

    #[test]
    fn polls_the_api_and_shows_every_part() {
        for needle in [
            "<title>coolmesh</title>",
            "\"/v1/state\"",
            "\"/v1/peers\"",
            "power_votes",
            "deadline_ms",
            "liveness",
            "counters",
            "id=\"room\"",
            "id=\"power\"",
            "id=\"peers\"",
            "id=\"counters\"",
            "class=\"legend\"",
            "role=\"alert\"",
            "id=\"announce\"",
        ] {
            assert!(STATUS_PAGE.contains(needle), "status page lacks {needle:?}");
        }
    }

    #[test]
    fn sets_text_never_html() {
        // Node names, errors and counter names come from peers: only ever
        // written as text.
        for needle in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!STATUS_PAGE.contains(needle), "status page uses {needle}");
        }
    }
}
