//! The daemon's logs: level filter, colour rules, and the line format
//! (logfmt or JSON with Prometheus' keys: [`crate::logformat`]).

use crate::logformat::{Encoding, PromFormat, SpanFields};

/// Log directives added to every `log.level` that does not mention their
/// target: libp2p's request-response warns once per inbound stream it
/// resets at the per-connection stream cap, i.e. once per frame of a
/// flooding peer (thousands per second).
const QUIET: &[&str] = &["libp2p_request_response::handler=error"];

fn log_filter(level: &str) -> String {
    let mut f = level.to_string();
    for d in QUIET {
        // Any directive for the crate wins (the operator asked for it).
        let krate = d.split([':', '=']).next().unwrap_or(d);
        if !level.contains(krate) {
            f.push(',');
            f.push_str(d);
        }
    }
    f
}

/// Colour in the logs (the level of a logfmt line; JSON never has any):
/// only on a terminal, never with `NO_COLOR` set to anything
/// (<https://no-color.org>) or `TERM=dumb`, as the other commands.
fn log_colour(
    tty: bool,
    no_color: Option<std::ffi::OsString>,
    term: Option<std::ffi::OsString>,
) -> bool {
    tty && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

/// Install the daemon's logger; returns what applies a new `log.level` to
/// it (a config reload).
pub fn init(level: &str, encoding: Encoding) -> coolmesh_agent::agent::LogLevelSetter {
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(level)).unwrap_or_else(|e| {
        eprintln!("bad log level {level:?} ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    use std::io::IsTerminal;
    let colour = encoding == Encoding::Logfmt
        && log_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
            std::env::var_os("TERM"),
        );
    // Reloading last: its handle's type names the formatter set above.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .fmt_fields(SpanFields)
        .event_format(PromFormat { encoding })
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    Box::new(move |level: &str| {
        coolmesh_agent::config::check_log_level(level)?;
        let f = tracing_subscriber::EnvFilter::try_new(log_filter(level))
            .map_err(|e| format!("{level:?}: {e}"))?;
        handle.reload(f).map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::{log_colour, log_filter};

    #[test]
    fn log_colour_follows_the_terminal_no_color_and_term() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        let table = [
            (true, None, os("xterm"), true),
            (false, None, os("xterm"), false),
            (true, os("1"), os("xterm"), false),
            (true, os(""), os("xterm"), true),
            (true, None, os("dumb"), false),
            (true, None, None, true),
        ];
        for (tty, no_color, term, want) in table {
            assert_eq!(
                log_colour(tty, no_color.clone(), term.clone()),
                want,
                "{tty} {no_color:?} {term:?}"
            );
        }
    }

    #[test]
    fn log_filter_quiets_per_stream_warnings_unless_asked_for() {
        let table = [
            ("info", "info,libp2p_request_response::handler=error"),
            (
                "debug,libp2p_swarm=debug",
                "debug,libp2p_swarm=debug,libp2p_request_response::handler=error",
            ),
            (
                "info,libp2p_request_response=debug",
                "info,libp2p_request_response=debug",
            ),
        ];
        for (level, want) in table {
            assert_eq!(log_filter(level), want, "{level}");
            assert!(tracing_subscriber::EnvFilter::try_new(want).is_ok());
        }
    }
}
