//! The lines of the NUT protocol: sending a command, reading one capped
//! answer line, a `VAR` answer's value and an `ERR` answer's meaning.

use super::MAX_LINE;
use crate::power::ProbeError;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// A value as logged: quoted, escaped, at most 80 characters (a hostile
/// upsd chooses these bytes).
pub(super) fn shown(v: &str) -> String {
    let mut s: String = v.chars().take(80).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    format!("{s:?}")
}

/// `battery.runtime` in seconds (NUT sends an integer, some drivers a
/// decimal); nonsense (negative, not a number, over a year) is `None`.
pub fn parse_runtime(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && (0.0..=365.0 * 86400.0).contains(&secs))
        .then(|| Duration::from_secs_f64(secs))
}

/// Send a command that upsd answers with `OK...`.
pub(super) async fn command<S>(
    conn: &mut BufReader<S>,
    line: &str,
    what: &str,
) -> Result<(), ProbeError>
where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    send(conn, line).await?;
    let answer = read_line(conn).await?;
    if answer.starts_with("OK") {
        Ok(())
    } else {
        Err(refusal(&answer, what))
    }
}

/// `GET VAR ups var`; the value of `VAR ups var "value"`.
pub(super) async fn get_var<S>(
    conn: &mut BufReader<S>,
    ups: &str,
    var: &str,
) -> Result<String, ProbeError>
where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    send(conn, &format!("GET VAR {ups} {var}\n")).await?;
    let answer = read_line(conn).await?;
    parse_var(&answer, ups, var).ok_or_else(|| refusal(&answer, var))
}

/// The value of `VAR <ups> <var> "<value>"`, unescaped; `None` for any
/// other line (an `ERR`, another variable, garbage, an unclosed quote).
pub fn parse_var(line: &str, ups: &str, var: &str) -> Option<String> {
    let rest = line.strip_prefix("VAR ")?.strip_prefix(ups)?;
    let rest = rest.strip_prefix(' ')?.strip_prefix(var)?;
    let quoted = rest.strip_prefix(" \"")?;
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().trim().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None
}

/// Why an answer is not the one asked for, as a no-reading error.
fn refusal(answer: &str, what: &str) -> ProbeError {
    match answer.strip_prefix("ERR ") {
        Some(code) => {
            let code = code.split_ascii_whitespace().next().unwrap_or("");
            let meaning = match code {
                "DATA-STALE" => " (the driver lost the UPS: data stale)",
                "DRIVER-NOT-CONNECTED" => " (upsd has no driver for this UPS running)",
                "ACCESS-DENIED" => " (upsd refused this client: upsd.conf LISTEN, upsd.users)",
                "UNKNOWN-UPS" => " (no such UPS on this upsd: `upsc -l HOST` lists them)",
                "VAR-NOT-SUPPORTED" => " (the UPS does not report it)",
                "FEATURE-NOT-CONFIGURED" => {
                    " (upsd has no certificate: CERTFILE, or CERTPATH and CERTIDENT, in upsd.conf)"
                }
                "FEATURE-NOT-SUPPORTED" => " (this upsd was built without TLS)",
                "ALREADY-SSL-MODE" => " (the connection is in TLS already)",
                _ => "",
            };
            ProbeError::NoReading(format!(
                "upsd answered {what} with ERR {}{meaning}",
                shown(code).trim_matches('"')
            ))
        }
        None => ProbeError::NoReading(format!(
            "upsd answered {what} with {}: not the NUT protocol",
            shown(answer)
        )),
    }
}

async fn send<S>(conn: &mut BufReader<S>, line: &str) -> Result<(), ProbeError>
where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    let w = conn.get_mut();
    w.write_all(line.as_bytes())
        .await
        .map_err(|err| ProbeError::Io {
            what: "write to upsd".into(),
            err,
        })?;
    w.flush().await.map_err(|err| ProbeError::Io {
        what: "write to upsd".into(),
        err,
    })
}

/// One answer line, without its `\n` (and `\r`), at most [`MAX_LINE`]
/// bytes. EOF before the newline, a longer line or bytes that are not
/// UTF-8 are errors; nothing is buffered beyond the cap.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<String, ProbeError> {
    let mut line: Vec<u8> = Vec::new();
    loop {
        let buf = r.fill_buf().await.map_err(|err| ProbeError::Io {
            what: "read from upsd".into(),
            err,
        })?;
        if buf.is_empty() {
            return Err(ProbeError::NoReading(if line.is_empty() {
                "upsd closed the connection without an answer".into()
            } else {
                "upsd closed the connection in the middle of an answer".into()
            }));
        }
        let room = MAX_LINE - line.len();
        match buf.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&buf[..i]);
                r.consume(i + 1);
                break;
            }
            None if buf.len() >= room => {
                return Err(ProbeError::NoReading(format!(
                    "upsd sent a line longer than {MAX_LINE} bytes: not the NUT protocol"
                )));
            }
            None => {
                let n = buf.len();
                line.extend_from_slice(buf);
                r.consume(n);
            }
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map_err(|_| ProbeError::NoReading("upsd sent bytes that are not UTF-8".into()))
}
