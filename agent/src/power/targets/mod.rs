//! Target strings: `icmp://HOST`, `tcp://HOST:PORT`, `http://HOST[:PORT]/PATH`,
//! `nut://[USER@]HOST[:PORT]/UPS` and `exec:COMMAND [ARGS...]`, parsed into a
//! [`TargetSpec`].
//!
//! Parsing is strict and every error names the offending string and says
//! what to write instead: a typo in a power target must fail at startup, not
//! look like a power outage at 3 a.m.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The syntax summary used in error messages.
pub const TARGET_SYNTAX: &str =
    "icmp://HOST, tcp://HOST:PORT, http://HOST[:PORT]/PATH, nut://[USER@]HOST[:PORT]/UPS, nuts://[USER@]HOST[:PORT]/UPS?ca=FILE or exec:COMMAND [ARGS...]";

/// The NUT network port (upsd's default, IANA-registered).
pub const NUT_PORT: u16 = 3493;

/// The exec target shown in error messages. Not `upsc` alone: `upsc`
/// exits 0 whenever it can read the UPS, on battery too, so a bare
/// `exec:upsc ...` would never see mains fail; this form tests the status.
pub const EXEC_EXAMPLE: &str =
    "e.g. exec:sh -c 'upsc ups@localhost ups.status | grep -qw OL' (NUT: test the status, upsc itself exits 0 on battery too)";

/// Where a network probe goes: an IP literal (no resolution needed) or a
/// host name (resolved on every probe, so a DNS change or a DNS outage that
/// ends is picked up without a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// A syntactically valid DNS name (not checked for existence).
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// A parsed power target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// The configured string (surrounding whitespace removed). Used verbatim
    /// as the `target` metric label and in logs, so operators see what they
    /// wrote.
    pub label: String,
    /// What to probe.
    pub kind: TargetKind,
}

/// The probe-specific part of a [`TargetSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// ICMP echo request; up when a matching echo reply arrives.
    Icmp {
        /// Target host.
        host: Host,
    },
    /// TCP connect; up when the three-way handshake completes.
    Tcp {
        /// Target host.
        host: Host,
        /// Target port (1-65535).
        port: u16,
    },
    /// HTTP/1.1 GET; up on a 2xx status. Redirects are not followed.
    Http {
        /// Target host.
        host: Host,
        /// Target port (default 80).
        port: u16,
        /// The `Host` header value: the authority as configured.
        authority: String,
        /// Origin-form request target (path and query), at least `/`.
        path: String,
    },
    /// A UPS through the NUT network protocol (`upsd`); up when its
    /// `ups.status` has `OL`, down when it has `OB`, unknown otherwise.
    Nut {
        /// The host running `upsd`.
        host: Host,
        /// Its port (default [`NUT_PORT`]).
        port: u16,
        /// The UPS name as `upsd` knows it (`[name]` in `ups.conf`).
        ups: String,
        /// Sent as `USERNAME` before reading, so that upsd knows who asks.
        /// No password: upsd needs none to read a UPS (it checks one only
        /// for `LOGIN`, `SET` and `INSTCMD`, which coolmesh never sends).
        user: Option<String>,
        /// `nuts://...?ca=FILE`: STARTTLS is required and upsd's
        /// certificate must chain to the CA certificates (PEM) in `FILE`
        /// and name the host. `None` for `nut://` (plain text).
        ca_file: Option<std::path::PathBuf>,
    },
    /// An external command; up when it exits with status 0.
    Exec {
        /// Program: an absolute path or a name looked up in `PATH`.
        program: String,
        /// Arguments, passed as-is (no shell).
        args: Vec<String>,
    },
}

/// A target string that cannot be used. The message names the string and
/// says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    /// The target string as given.
    pub target: String,
    /// Human-readable reason, including the target and a fix.
    pub message: String,
}

fn err(target: &str, message: String) -> TargetError {
    TargetError {
        target: target.to_string(),
        message,
    }
}

/// Parse one power target string.
///
/// Schemes are case-insensitive. Host names are checked for syntax only;
/// whether they resolve is found out on each probe.
pub fn parse_target(s: &str) -> Result<TargetSpec, TargetError> {
    let label = s.trim();
    if label.is_empty() {
        return Err(err(
            s,
            format!("empty power target; expected {TARGET_SYNTAX}"),
        ));
    }
    let kind = if let Some((scheme, rest)) = label.split_once("://") {
        match scheme.to_ascii_lowercase().as_str() {
            "icmp" | "ping" => parse_icmp(label, rest)?,
            "tcp" => parse_tcp(label, rest)?,
            "http" => parse_http(label, rest)?,
            "nut" => parse_nut(label, rest, false)?,
            "nuts" | "nut+tls" => parse_nut(label, rest, true)?,
            "https" => {
                return Err(err(
                    label,
                    format!(
                        "https targets are not supported (coolmesh carries no TLS stack): {label} — \
                         use an exec target with curl, e.g. \
                         exec:/usr/bin/curl -fsS -m 2 -o /dev/null {label}"
                    ),
                ))
            }
            "exec" => {
                return Err(err(
                    label,
                    format!("exec targets take no //: {label} — write exec:COMMAND [ARGS...], {EXEC_EXAMPLE}"),
                ))
            }
            other => {
                return Err(err(
                    label,
                    format!("unknown power target scheme {other:?} in {label}; expected {TARGET_SYNTAX}"),
                ))
            }
        }
    } else if let Some(rest) = strip_prefix_ci(label, "exec:") {
        parse_exec(label, rest)?
    } else if let Some((scheme, rest)) = label.split_once(':') {
        let scheme_lc = scheme.to_ascii_lowercase();
        if matches!(
            scheme_lc.as_str(),
            "icmp" | "tcp" | "http" | "https" | "nut"
        ) {
            return Err(err(
                label,
                format!("{label} is missing the // after the scheme — write {scheme_lc}://{rest}"),
            ));
        }
        return Err(err(
            label,
            format!(
                "power target {label} has no scheme; expected {TARGET_SYNTAX} \
                 (for a host and port, write tcp://{label})"
            ),
        ));
    } else {
        return Err(err(
            label,
            format!(
                "power target {label} has no scheme; expected {TARGET_SYNTAX} \
                 (to ping it, write icmp://{label})"
            ),
        ));
    };
    Ok(TargetSpec {
        label: label.to_string(),
        kind,
    })
}

/// Parse a list of targets, rejecting duplicates (the label must identify one
/// metric series).
pub fn parse_targets<S: AsRef<str>>(targets: &[S]) -> Result<Vec<TargetSpec>, TargetError> {
    let mut out: Vec<TargetSpec> = Vec::with_capacity(targets.len());
    for t in targets {
        let spec = parse_target(t.as_ref())?;
        if out.iter().any(|o| o.label == spec.label) {
            return Err(err(
                &spec.label,
                format!("power target {} is listed twice", spec.label),
            ));
        }
        out.push(spec);
    }
    Ok(out)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_icmp(label: &str, rest: &str) -> Result<TargetKind, TargetError> {
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(err(
            label,
            format!("icmp target takes no path: {label} — write icmp://HOST"),
        ));
    }
    let (host, port) = split_host_port(label, authority)?;
    if let Some(port) = port {
        return Err(err(
            label,
            format!(
                "icmp target takes no port: {label} — ICMP has no ports; write icmp://{} \
                 or, to check the port, tcp://{}:{port}",
                bracket(&host),
                bracket(&host)
            ),
        ));
    }
    Ok(TargetKind::Icmp { host })
}

fn parse_tcp(label: &str, rest: &str) -> Result<TargetKind, TargetError> {
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(err(
            label,
            format!("tcp target takes no path: {label} — write tcp://HOST:PORT"),
        ));
    }
    let (host, port) = split_host_port(label, authority)?;
    match port {
        Some(port) => Ok(TargetKind::Tcp { host, port }),
        None => Err(err(
            label,
            format!(
                "tcp target needs a port: {label} — write tcp://{}:22",
                bracket(&host)
            ),
        )),
    }
}

fn parse_http(label: &str, rest: &str) -> Result<TargetKind, TargetError> {
    if rest.contains('#') {
        return Err(err(
            label,
            format!("http target must not have a #fragment: {label} — the fragment is never sent; remove it"),
        ));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    if authority.contains('@') {
        return Err(err(
            label,
            format!(
                "http target must not carry credentials: {label} — use an exec target with curl \
                 and a netrc file, e.g. exec:/usr/bin/curl -fsS -m 2 --netrc-file /etc/coolmesh/netrc -o /dev/null URL"
            ),
        ));
    }
    let (host, port) = split_host_port(label, authority)?;
    let path = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    if let Err(e) = path.parse::<hyper::http::uri::PathAndQuery>() {
        return Err(err(
            label,
            format!("bad path in http target {label}: {e} (percent-encode spaces and other special characters)"),
        ));
    }
    Ok(TargetKind::Http {
        host,
        port: port.unwrap_or(80),
        authority: authority.to_string(),
        path,
    })
}

/// `[USER@]HOST[:PORT]/UPS`.
fn parse_nut(label: &str, rest: &str, tls: bool) -> Result<TargetKind, TargetError> {
    let syntax = if tls {
        "write nuts://[USER@]HOST[:PORT]/UPS?ca=FILE, e.g. nuts://ups1.example/ups?ca=/etc/coolmesh/nut-ca.pem"
    } else {
        "write nut://[USER@]HOST[:PORT]/UPS, e.g. nut://localhost/ups"
    };
    if rest.contains('#') {
        return Err(err(
            label,
            format!("nut target must not have a #fragment: {label} — {syntax}"),
        ));
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let Some((authority, ups)) = rest.split_once('/') else {
        // `nut://ups@host` is how upsc names a UPS; say where the name goes.
        let hint = match rest.split_once('@') {
            Some((u, h)) if !u.is_empty() && !h.is_empty() => {
                format!(" (upsc's UPS@HOST is nut://{h}/{u} here)")
            }
            _ => String::new(),
        };
        return Err(err(
            label,
            format!("nut target needs the UPS name after a /: {label} — {syntax}{hint}"),
        ));
    };
    let ups = ups.strip_suffix('/').unwrap_or(ups);
    if ups.is_empty() {
        return Err(err(
            label,
            format!("nut target has an empty UPS name: {label} — {syntax} (`upsc -l HOST` lists the names)"),
        ));
    }
    if !nut_word_ok(ups) {
        return Err(err(
            label,
            format!(
                "bad UPS name {ups:?} in {label}: letters, digits, '-', '_' and '.' only, at most 64 \
                 (the [name] in upsd's ups.conf; `upsc -l HOST` lists them)"
            ),
        ));
    }
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(u) = user {
        if u.contains(':') {
            return Err(err(
                label,
                format!(
                    "nut target must not carry a password: {label} — upsd needs none to read a UPS \
                     (it checks passwords only for LOGIN, SET and INSTCMD, which coolmesh never sends); \
                     write nut://{}@HOST/UPS or drop the user",
                    u.split(':').next().unwrap_or_default()
                ),
            ));
        }
        if !nut_word_ok(u) {
            return Err(err(
                label,
                format!("bad user name {u:?} in {label}: letters, digits, '-', '_' and '.' only"),
            ));
        }
    }
    let ca_file = match (tls, query) {
        (false, None) => None,
        (false, Some(q)) => {
            return Err(err(
                label,
                format!(
                    "nut target takes no parameters: ?{q} in {label} — {syntax} \
                     (for TLS: nuts://HOST/UPS?ca=FILE)"
                ),
            ))
        }
        (true, q) => Some(nut_ca_param(label, q, syntax)?),
    };
    let (host, port) = split_host_port(label, hostport)?;
    Ok(TargetKind::Nut {
        host,
        port: port.unwrap_or(NUT_PORT),
        ups: ups.to_string(),
        user: user.map(str::to_string),
        ca_file,
    })
}

/// The `ca=FILE` of a `nuts://` target: exactly one parameter, an absolute
/// path. Without it there is nothing to check upsd's certificate against,
/// and TLS without a check only hides the traffic from a passive listener.
fn nut_ca_param(
    label: &str,
    query: Option<&str>,
    syntax: &str,
) -> Result<std::path::PathBuf, TargetError> {
    let missing = || {
        err(
            label,
            format!("nuts:// needs the CA that signed upsd's certificate: {label} — {syntax}"),
        )
    };
    let q = query.ok_or_else(missing)?;
    let mut ca = None;
    for pair in q.split('&') {
        match pair.split_once('=') {
            Some(("ca", v)) if ca.is_none() => ca = Some(v),
            _ => {
                return Err(err(
                    label,
                    format!(
                        "nuts:// takes one parameter, ca=FILE; not {pair:?} in {label} — {syntax}"
                    ),
                ))
            }
        }
    }
    let ca = ca.filter(|v| !v.is_empty()).ok_or_else(missing)?;
    let path = std::path::PathBuf::from(ca);
    if !path.is_absolute() {
        return Err(err(
            label,
            format!("ca={ca} in {label} must be an absolute path — {syntax}"),
        ));
    }
    Ok(path)
}

/// A UPS or user name NUT accepts unquoted, with nothing that could end a
/// protocol line or break its quoting.
fn nut_word_ok(w: &str) -> bool {
    !w.is_empty()
        && w.len() <= 64
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn parse_exec(label: &str, rest: &str) -> Result<TargetKind, TargetError> {
    let example = EXEC_EXAMPLE;
    let words = shell_words::split(rest).map_err(|e| {
        err(
            label,
            format!("cannot split exec target {label}: {e} (quote with '...' or \"...\", and close every quote)"),
        )
    })?;
    let mut words = words.into_iter();
    let Some(program) = words.next().filter(|p| !p.is_empty()) else {
        return Err(err(
            label,
            format!(
                "exec target needs a command: {label} — write exec:COMMAND [ARGS...], {example}"
            ),
        ));
    };
    if program.contains('/') && !program.starts_with('/') {
        return Err(err(
            label,
            format!(
                "exec target {label}: the program {program} is a relative path, which depends on \
                 the agent's working directory — use an absolute path or a bare name found in PATH"
            ),
        ));
    }
    Ok(TargetKind::Exec {
        program,
        args: words.collect(),
    })
}

/// `HOST`, `HOST:PORT`, `[V6]`, `[V6]:PORT` or a bare IPv6 literal (no port).
fn split_host_port(label: &str, authority: &str) -> Result<(Host, Option<u16>), TargetError> {
    if authority.is_empty() {
        return Err(err(label, format!("power target {label} has no host")));
    }
    if let Some(inner) = authority.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return Err(err(
                label,
                format!("unclosed [ in {label}: write [IPv6]:PORT"),
            ));
        };
        let ip: Ipv6Addr = v6.parse().map_err(|_| {
            err(
                label,
                format!("{v6:?} in {label} is not a valid IPv6 address"),
            )
        })?;
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(parse_port(label, p)?),
                None => {
                    return Err(err(
                        label,
                        format!("unexpected {after:?} after ] in {label}: write [IPv6]:PORT"),
                    ))
                }
            },
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), port));
    }
    if authority.matches(':').count() > 1 {
        return match authority.parse::<Ipv6Addr>() {
            Ok(ip) => Ok((Host::Ip(IpAddr::V6(ip)), None)),
            Err(_) => Err(err(
                label,
                format!(
                    "{authority:?} in {label} is not a valid host: IPv6 addresses go in brackets, \
                     e.g. [2001:db8::1]:22"
                ),
            )),
        };
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(parse_port(label, p)?)),
        None => (authority, None),
    };
    Ok((parse_host(label, host)?, port))
}

fn parse_port(label: &str, p: &str) -> Result<u16, TargetError> {
    if p.is_empty() {
        return Err(err(
            label,
            format!("empty port in {label}: write a port number 1-65535 after the colon"),
        ));
    }
    match p.parse::<u16>() {
        // u16::from_str accepts a leading '+'; a port is digits only.
        Ok(port) if port != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(err(
            label,
            format!("bad port {p:?} in {label}: a port is a number 1-65535"),
        )),
    }
}

fn parse_host(label: &str, host: &str) -> Result<Host, TargetError> {
    if host.is_empty() {
        return Err(err(label, format!("power target {label} has no host")));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    if labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(err(
            label,
            format!("{host:?} in {label} is not a valid IPv4 address"),
        ));
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.len() > 253 || !labels.iter().all(label_ok) {
        return Err(err(
            label,
            format!(
                "{host:?} in {label} is not a valid host name or IP address \
                 (letters, digits, '-' and '.' only; IPv6 in brackets)"
            ),
        ));
    }
    Ok(Host::Name(host.to_string()))
}

/// The host as it appears in a URL authority (IPv6 in brackets).
fn bracket(host: &Host) -> String {
    match host {
        Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
        h => h.to_string(),
    }
}

#[cfg(test)]
mod tests;
