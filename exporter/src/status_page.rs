//! The status page at `/`: one self-contained HTML document (no external
//! assets) that polls `/v1/state` and `/v1/peers`, and `/v1/history` and
//! `/v1/events` for each node's sparklines, state band and this node's
//! decision journal (inline SVG drawn by its own script). It is tested in headless
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
            "\"/v1/history?limit=\"",
            "\"/v1/events?limit=\"",
            "id=\"history\"",
            "id=\"journal\"",
            "el(\"details\")",
            "<template id=\"svg-parts\"><svg>",
        ] {
            assert!(STATUS_PAGE.contains(needle), "status page lacks {needle:?}");
        }
    }

    /// Every state has its colour in the band, the same as the cards'.
    #[test]
    fn the_state_band_has_a_colour_for_every_state() {
        for state in crate::model::FSM_STATES {
            assert!(
                STATUS_PAGE.contains(&format!(".s-{state} {{ fill: var(--st-")),
                "no band colour for {state}"
            );
        }
        for var in ["--st-pre", "--st-down", "--st-fault", "--st-maint"] {
            assert!(
                STATUS_PAGE.matches(&format!("var({var})")).count() >= 2,
                "{var} should colour both the cards and the band"
            );
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
