//! The command line: which tool it runs, a password put on it, and the
//! network (lanplus) arguments of `[sensors]`.

/// The tool a command runs, by the file name of `argv[0]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `ipmitool`.
    Ipmitool,
    /// freeipmi's `ipmi-sensors`.
    Freeipmi,
    /// Something else (a wrapper script): printed in one of the formats above.
    Other,
}

/// Which tool `program` is.
pub fn tool(program: &str) -> Tool {
    match program.rsplit('/').next().unwrap_or(program) {
        "ipmitool" => Tool::Ipmitool,
        "ipmi-sensors" => Tool::Freeipmi,
        _ => Tool::Other,
    }
}

/// An argument that puts a password on the command line, where `ps` shows
/// it to every user: ipmitool's `-P`, freeipmi's `-p`/`--password`.
pub fn password_argument(argv: &[String]) -> Option<&str> {
    let t = argv.first().map_or(Tool::Other, |p| tool(p));
    argv.iter().skip(1).map(String::as_str).find(|a| match t {
        Tool::Ipmitool => a.starts_with("-P"),
        Tool::Freeipmi => {
            a.starts_with("--password") && !a.starts_with("--password-prompt")
                || (a.starts_with("-p") && !a.starts_with("--"))
        }
        Tool::Other => false,
    })
}

/// The network BMC settings of `[sensors]` (`ipmi_host` and friends).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lanplus {
    /// `HOST` or `HOST:PORT`.
    pub host: String,
    /// User name; none: ipmitool's default (`ADMIN` on most BMCs is wrong; set it).
    pub user: Option<String>,
    /// File holding the password (ipmitool `-f`): never on the command line.
    pub password_file: Option<std::path::PathBuf>,
}

/// The full command: `command[0]`, then the lanplus arguments (ipmitool
/// only), then the rest of `command`.
///
/// # Errors
///
/// A message for `sensors.ipmi_host` when the command is not ipmitool.
pub fn argv_with_lanplus(command: &[String], lan: Option<&Lanplus>) -> Result<Vec<String>, String> {
    let Some(lan) = lan else {
        return Ok(command.to_vec());
    };
    let Some((program, rest)) = command.split_first() else {
        return Err("ipmi_command is empty".into());
    };
    if tool(program) != Tool::Ipmitool {
        return Err(format!(
            "works with ipmitool only; for {program} put the host, user and a config file holding the password into ipmi_command"
        ));
    }
    let mut argv = vec![program.clone(), "-I".into(), "lanplus".into()];
    let (host, port) = match lan.host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, Some(p)),
        _ => (lan.host.as_str(), None),
    };
    argv.push("-H".into());
    argv.push(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    );
    if let Some(p) = port {
        argv.push("-p".into());
        argv.push(p.to_string());
    }
    if let Some(u) = &lan.user {
        argv.push("-U".into());
        argv.push(u.clone());
    }
    if let Some(f) = &lan.password_file {
        argv.push("-f".into());
        argv.push(f.display().to_string());
    }
    argv.extend(rest.iter().cloned());
    Ok(argv)
}
