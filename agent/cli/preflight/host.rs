//! What this host must provide for the config: programs, permissions to
//! power off (logind/polkit, sudo), ICMP, the state directory, and the
//! secrets' owners and modes.

use super::*;

/// What this host must provide for the config to work.
pub(super) fn check_host(r: &mut Report<'_>, file: &Path, c: &Config, h: &Host) {
    let user = h.user.as_ref();
    if user.is_none() {
        r.warn(
            "(host)",
            format!(
                "no user {} on this host (the Debian package creates coolmesh): permissions are judged by their mode alone; pass --user NAME for the user the agent runs as",
                h.user_name
            ),
        );
    }
    // The config file itself: the agent reads it as the service user.
    if let Some(u) = user {
        if let Err(e) = u.can_open(file, 4) {
            r.error(
                "(config file)",
                format!("{e}: the agent could not read its config; chmod 0644 it, or chown root:{} and chmod 0640", u.group),
            );
        }
    }
    check_web_config(r, c, user);
    if let Some(p) = &c.http.token_file {
        check_secret(r, "http.token_file", p, user, |text| {
            coolmesh_exporter::auth::Token::from_file_content(text)
                .map(|_| ())
                .map_err(|e| format!("{e} (create it with `openssl rand -hex 32`)"))
        });
    }
    if c.cluster.enabled {
        if let Some(p) = &c.cluster.psk_file {
            check_secret(r, "cluster.psk_file", p, user, |text| {
                coolmesh_agent::cluster::parse_psk(text).map(|_| ()).map_err(|e| {
                    format!("{e}; write one with `coolmesh keygen --psk --out FILE` and copy the same file to every server")
                })
            });
        }
    }
    check_programs(r, c, h);
    check_icmp(r, c, h);
    check_poweroff_permission(r, c, h);
    check_state_paths(r, c, h);
}

pub(super) fn check_web_config(r: &mut Report<'_>, c: &Config, user: Option<&Account>) {
    let Some(p) = &c.http.web_config_file else {
        return;
    };
    if let Err(e) = coolmesh_exporter::WebConfig::load(p) {
        r.error(
            "http.web_config_file",
            format!("{e} (deploy/web-config.example.yml documents the format)"),
        );
        return;
    }
    if let Some(u) = user {
        if let Err(e) = u.can_open(p, 4) {
            r.error(
                "http.web_config_file",
                format!(
                    "{e}: the agent would not start; chown root:{} and chmod 0640 it",
                    u.group
                ),
            );
        }
    }
}

/// A secret file: exists, parses with the agent's own parser, follows
/// the permission rule for the service user.
pub(super) fn check_secret(
    r: &mut Report<'_>,
    key: &str,
    path: &Path,
    user: Option<&Account>,
    parse: impl Fn(&str) -> Result<(), String>,
) {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let make = if key == "cluster.psk_file" {
                "make the room's key once with `coolmesh keygen --psk --out FILE` and copy the same file to every server"
            } else {
                "create it with `openssl rand -hex 32`, or copy the room's token"
            };
            let group = user.map(|u| u.group.as_str()).unwrap_or("coolmesh");
            r.error(
                key,
                format!(
                    "{} does not exist, and the agent would not start: {make}, then {}",
                    path.display(),
                    perms::fix(path, group)
                ),
            );
            return;
        }
        Err(e) => {
            r.error(key, format!("{}: {e}", path.display()));
            return;
        }
    };
    if !meta.is_file() {
        r.error(key, format!("{} is not a file", path.display()));
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if let Err(e) = parse(&text) {
                r.error(key, format!("{}: {e}", path.display()));
            }
        }
        Err(e) => r.error(
            key,
            format!(
                "{}: {e} (run the preflight as root to check its contents)",
                path.display()
            ),
        ),
    }
    let info = FileInfo::of(&meta);
    let problems = perms::secret_problems(&info, user);
    if !problems.is_empty() {
        let group = user.map(|u| u.group.as_str()).unwrap_or("coolmesh");
        r.error(
            key,
            format!(
                "{}: {}; fix: {}",
                path.display(),
                problems.join("; "),
                perms::fix(path, group)
            ),
        );
    } else if let Some(u) = user {
        // The rule holds for the file; the directories above must let the
        // service user reach it too.
        if let Err(e) = u.can_open(path, 4) {
            r.error(key, format!("{e}: the agent would not start"));
        }
    }
}

/// Every program the agent may run: found, a file, executable.
pub(super) fn check_programs(r: &mut Report<'_>, c: &Config, h: &Host) {
    let path_note = |h: &Host| {
        format!(
            "looked up in the PATH the unit gives the agent ({})",
            h.path.to_string_lossy()
        )
    };
    let program = |r: &mut Report<'_>, key: &str, argv0: &str, what: &str| {
        if let Err(e) = coolmesh_agent::power::exec::check_program_in(argv0, &h.path) {
            let e = if argv0.contains('/') {
                e
            } else {
                format!("{e}; {}", path_note(h))
            };
            r.error(key, format!("{what}: {e}"));
        }
    };
    if let Some(p) = c.shutdown.command.first() {
        program(
            r,
            "shutdown.command[0]",
            p,
            "the shutdown would fail (a missed shutdown)",
        );
    }
    if let Some(p) = c.shutdown.pre_command.first() {
        program(
            r,
            "shutdown.pre_command[0]",
            p,
            "the pre-command would fail",
        );
    }
    for (i, t) in c.power.targets.iter().enumerate() {
        if let Ok(spec) = coolmesh_agent::power::parse_target(t) {
            if let coolmesh_agent::power::TargetKind::Exec { program: p, .. } = &spec.kind {
                program(
                    r,
                    &format!("power.targets[{i}]"),
                    p,
                    &format!("{t}: the agent would not start"),
                );
            }
        }
    }
    let s = &c.sensors;
    if s.sources.contains(&SourceKind::Exec) {
        if let Some(p) = s.exec.first() {
            program(
                r,
                "sensors.exec[0]",
                p,
                "the exec source would be down (no readings)",
            );
        }
    }
    if s.sources.contains(&SourceKind::LmSensors) {
        match &s.lm_sensors_file {
            Some(f) if !f.exists() => r.warn(
                "sensors.lm_sensors_file",
                format!(
                    "{} does not exist (yet): the lm_sensors source is down until it does",
                    f.display()
                ),
            ),
            Some(_) => {}
            None => {
                if let Some(p) = s.lm_sensors_command.first() {
                    program(
                        r,
                        "sensors.lm_sensors_command[0]",
                        p,
                        "the lm_sensors source would be down (apt install lm-sensors)",
                    );
                }
            }
        }
    }
    if s.sources.contains(&SourceKind::Ipmi) {
        if let Some(p) = s.ipmi.command.first() {
            program(
                r,
                "sensors.ipmi_command[0]",
                p,
                "the ipmi source would be down (apt install ipmitool, or freeipmi-tools)",
            );
        }
        if s.ipmi.host.is_none() && !std::path::Path::new("/dev/ipmi0").exists() {
            r.warn(
                "sensors.ipmi_command",
                "/dev/ipmi0 does not exist: no local BMC (modprobe ipmi_devintf ipmi_si), or set sensors.ipmi_host",
            );
        }
        if let Some(f) = &s.ipmi.password_file {
            if !f.exists() {
                r.warn(
                    "sensors.ipmi_password_file",
                    format!(
                        "{} does not exist: the ipmi source is down until it does",
                        f.display()
                    ),
                );
            }
        }
    }
    if s.sources.contains(&SourceKind::File) {
        if let Some(f) = &s.file {
            if !f.exists() {
                r.warn(
                    "sensors.file",
                    format!(
                        "{} does not exist (yet): the file source is down until whatever writes it runs",
                        f.display()
                    ),
                );
            }
        }
    }
}

/// ICMP probes need a raw socket (`CAP_NET_RAW`, which the unit grants)
/// or unprivileged ping (`net.ipv4.ping_group_range` covering the user's
/// group); without either the agent does not start. A warning: file
/// capabilities on the binary would do too, and are not looked at.
pub(super) fn check_icmp(r: &mut Report<'_>, c: &Config, h: &Host) {
    let Some(u) = &h.user else {
        return;
    };
    let first = c.power.targets.iter().position(|t| {
        coolmesh_agent::power::parse_target(t)
            .is_ok_and(|s| matches!(s.kind, coolmesh_agent::power::TargetKind::Icmp { .. }))
    });
    let Some(i) = first else {
        return;
    };
    if u.is_root() {
        return;
    }
    let settings = unit_settings(h);
    let unit_grants = unit_setting(&settings, "AmbientCapabilities")
        .is_some_and(|v| v.split_whitespace().any(|c| c == "CAP_NET_RAW"));
    let ping_range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        });
    let in_range = ping_range.is_some_and(|(lo, hi)| {
        std::iter::once(u.gid)
            .chain(u.groups.iter().copied())
            .any(|g| lo <= g && g <= hi)
    });
    if !unit_grants && !in_range {
        r.warn(
            &format!("power.targets[{i}]"),
            format!(
                "ICMP probes need CAP_NET_RAW or unprivileged ping, and user {} has neither here (no coolmesh.service granting AmbientCapabilities=CAP_NET_RAW for it, and net.ipv4.ping_group_range {} does not cover its groups): the agent would not start; run it under the packaged unit, or sysctl -w net.ipv4.ping_group_range=\"0 2147483647\", or use tcp:// targets",
                u.name,
                ping_range
                    .map(|(a, b)| format!("{a} {b}"))
                    .unwrap_or_else(|| "(unreadable)".into())
            ),
        );
    }
}

/// `systemctl poweroff` and friends as a user other than root need a
/// polkit rule (logind asks polkit); `sudo ...` needs a sudoers rule and
/// a unit without `NoNewPrivileges=yes`. Warnings: only a drill tells
/// for sure, and `busctl ... CanPowerOff` as the user shows what logind
/// says.
pub(super) fn check_poweroff_permission(r: &mut Report<'_>, c: &Config, h: &Host) {
    let Some(u) = &h.user else {
        return;
    };
    if u.is_root() {
        return;
    }
    let argv = &c.shutdown.command;
    let Some(first) = argv.first() else {
        return;
    };
    let key = "shutdown.command";
    if basename(first) == "sudo" {
        check_sudo(r, argv, u, h);
        return;
    }
    if !powers_off_through_logind(argv) {
        return;
    }
    let can_poweroff = format!(
        "test it with: runuser -u {} -- busctl call org.freedesktop.login1 /org/freedesktop/login1 org.freedesktop.login1.Manager CanPowerOff (must answer s \"yes\")",
        u.name
    );
    let (found, unreadable) = polkit_rule_for(h, u);
    match found {
        Some(rule) => {
            if !h.polkitd.iter().any(|p| p.exists()) {
                r.warn(
                    key,
                    format!(
                        "{} as user {} relies on the polkit rule {}, but polkitd is not installed, so logind refuses: apt install polkitd; {can_poweroff}",
                        argv.join(" "),
                        u.name,
                        rule.display()
                    ),
                );
            }
        }
        None => {
            let unread = if unreadable.is_empty() {
                String::new()
            } else {
                format!(
                    " (could not read {}: run the preflight as root)",
                    unreadable
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            r.warn(
                key,
                format!(
                    "{cmd} runs as user {user}, and no polkit rule lets {user} power off{unread}: logind would refuse and the shutdown would fail. Install polkitd and the package's /usr/share/polkit-1/rules.d/50-coolmesh.rules (for another user, a copy naming it), or use sudo: a sudoers line `{user} ALL=(root) NOPASSWD: /usr/bin/systemctl poweroff`, command = [\"sudo\", \"-n\", \"/usr/bin/systemctl\", \"poweroff\"] and NoNewPrivileges=no in a drop-in (operator guide, \"Shutdown permission\"); {can_poweroff}",
                    cmd = argv.join(" "),
                    user = u.name
                ),
            );
        }
    }
}

/// `systemctl poweroff|halt|reboot`, `shutdown`, `poweroff`, `halt`, or
/// a D-Bus call of logind's PowerOff: all end at logind, which asks polkit
/// about a caller that is not root.
pub(super) fn powers_off_through_logind(argv: &[String]) -> bool {
    let Some(first) = argv.first() else {
        return false;
    };
    let args = &argv[1..];
    match basename(first) {
        "systemctl" => args
            .iter()
            .any(|a| matches!(a.as_str(), "poweroff" | "halt" | "reboot" | "kexec")),
        "shutdown" | "poweroff" | "halt" => true,
        "busctl" | "dbus-send" | "gdbus" => args.iter().any(|a| a.contains("PowerOff")),
        _ => false,
    }
}

/// A polkit rule that names `u` (or its group) and logind's power-off
/// action; also the directories that could not be read.
pub(super) fn polkit_rule_for(h: &Host, u: &Account) -> (Option<PathBuf>, Vec<PathBuf>) {
    let mut unreadable = Vec::new();
    let names_user = |text: &str| {
        [&u.name, &u.group]
            .iter()
            .any(|n| text.contains(&format!("\"{n}\"")) || text.contains(&format!("'{n}'")))
    };
    for dir in &h.polkit_rules {
        for f in files_in(dir, "rules", &mut unreadable) {
            if let Ok(text) = std::fs::read_to_string(&f) {
                if text.contains("org.freedesktop.login1.power-off") && names_user(&text) {
                    return (Some(f), unreadable);
                }
            }
        }
    }
    for dir in &h.polkit_pkla {
        let mut subdirs = vec![dir.clone()];
        if let Ok(rd) = std::fs::read_dir(dir) {
            subdirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for d in subdirs {
            for f in files_in(&d, "pkla", &mut unreadable) {
                if let Ok(text) = std::fs::read_to_string(&f) {
                    if text.contains("org.freedesktop.login1.power-off")
                        && (text.contains(&format!("unix-user:{}", u.name))
                            || text.contains(&format!("unix-group:{}", u.group)))
                    {
                        return (Some(f), unreadable);
                    }
                }
            }
        }
    }
    (None, unreadable)
}

/// Files `*.EXT` in `dir`, sorted; an existing directory that cannot be
/// read is added to `unreadable`.
pub(super) fn files_in(dir: &Path, ext: &str, unreadable: &mut Vec<PathBuf>) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
                .collect();
            v.sort();
            v
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(_) => {
            unreadable.push(dir.to_path_buf());
            Vec::new()
        }
    }
}

/// The unit's settings (unit file, then drop-ins in name order; read
/// them with [`unit_setting`], last assignment wins), when the unit runs
/// the agent as the user checked: its sandbox applies only then. Empty
/// without a unit file, or for another user (`--user` someone else: the
/// agent does not run under this unit).
pub(super) fn unit_settings(h: &Host) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(unit) = h.unit_files.iter().find(|p| p.exists()) else {
        return out;
    };
    let mut files = vec![unit.clone()];
    let mut dropins: Vec<PathBuf> = Vec::new();
    let mut ignored = Vec::new();
    for d in &h.unit_dropins {
        dropins.extend(files_in(d, "conf", &mut ignored));
    }
    dropins.sort_by_key(|p| p.file_name().map(|n| n.to_os_string()));
    files.extend(dropins);
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    let unit_user = unit_setting(&out, "User").unwrap_or_else(|| "root".into());
    if h.user.as_ref().map(|u| u.name.as_str()) != Some(unit_user.as_str()) {
        out.clear();
    }
    out
}

pub(super) fn unit_setting(settings: &[(String, String)], key: &str) -> Option<String> {
    settings
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

pub(super) fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "1" | "on")
}

pub(super) fn check_sudo(r: &mut Report<'_>, argv: &[String], u: &Account, h: &Host) {
    let key = "shutdown.command";
    // The command sudo would run: skip sudo's options (and the values of
    // those that take one).
    let mut rest = argv[1..].iter().peekable();
    while let Some(a) = rest.peek() {
        if a.as_str() == "--" {
            rest.next();
            break;
        }
        if !a.starts_with('-') {
            break;
        }
        let takes_value = matches!(
            a.as_str(),
            "-u" | "-g" | "-C" | "-D" | "-h" | "-p" | "-r" | "-t" | "-U" | "-T"
        );
        rest.next();
        if takes_value {
            rest.next();
        }
    }
    let cmd: Vec<&String> = rest.collect();
    if cmd.is_empty() {
        r.error(key, "sudo without a command to run");
        return;
    }
    let settings = unit_settings(h);
    if unit_setting(&settings, "NoNewPrivileges").is_some_and(|v| truthy(&v)) {
        r.warn(
            key,
            "sudo cannot raise privileges in coolmesh.service, which sets NoNewPrivileges=yes: add a drop-in (`systemctl edit coolmesh`: [Service] NoNewPrivileges=no), or let polkit allow systemctl poweroff instead (operator guide, \"Shutdown permission\")",
        );
    }
    if !h.as_root {
        r.warn(
            key,
            format!(
                "cannot check whether sudo lets user {} run {} without being root; run the preflight as root",
                u.name,
                cmd.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
            ),
        );
        return;
    }
    let out = std::process::Command::new(&argv[0])
        .args(["-n", "-l", "-U", &u.name, "--"])
        .args(cmd.iter().map(|s| s.as_str()))
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(_) => r.warn(
            key,
            format!(
                "sudo does not let user {user} run {c} without a password: the shutdown would fail; add `{user} ALL=(root) NOPASSWD: {c}` to /etc/sudoers.d/coolmesh (visudo -f), and keep -n in the command",
                user = u.name,
                c = cmd.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
            ),
        ),
        Err(e) => r.warn(key, format!("could not ask sudo ({e})")),
    }
}

/// The state directory and the dry-run marker: writable by the service
/// user, and inside what the unit's sandbox lets it write.
pub(super) fn check_state_paths(r: &mut Report<'_>, c: &Config, h: &Host) {
    let settings = unit_settings(h);
    let strict = unit_setting(&settings, "ProtectSystem").as_deref() == Some("strict");
    let writable: Vec<PathBuf> = settings
        .iter()
        .filter(|(k, _)| k == "ReadWritePaths")
        .flat_map(|(_, v)| {
            v.split_whitespace()
                .map(|p| PathBuf::from(p.trim_start_matches(['-', '+'])))
                .collect::<Vec<_>>()
        })
        .chain(std::iter::once(PathBuf::from("/var/lib/coolmesh")))
        .collect();
    let sandboxed = |p: &Path| strict && !writable.iter().any(|w| p.starts_with(w));
    let dir = &c.node.state_dir;
    if sandboxed(dir) {
        r.error(
            "node.state_dir",
            format!(
                "{}: coolmesh.service has ProtectSystem=strict, and only /var/lib/coolmesh (StateDirectory=) is writable there: the agent could not save its state machine; use /var/lib/coolmesh or add ReadWritePaths={} in a drop-in",
                dir.display(),
                dir.display()
            ),
        );
    } else if let (Some(u), true) = (&h.user, dir.is_dir()) {
        // systemd hands /var/lib/coolmesh (StateDirectory=) to the
        // service user at every start; another directory must be theirs.
        let managed = !settings.is_empty() && dir == Path::new("/var/lib/coolmesh");
        if !managed {
            let id = dir.join(coolmesh_agent::cluster::identity::IDENTITY_FILE);
            if let Err(e) = u.can_open(dir, 2 | 1) {
                r.error(
                    "node.state_dir",
                    format!(
                        "{e}: the agent could not save its state machine; chown -R {}:{} {}",
                        u.name,
                        u.group,
                        dir.display()
                    ),
                );
            } else if id.exists() {
                // An identity made by root (`coolmesh keygen` before the
                // install) that the agent cannot read stops it at start.
                if let Err(e) = u.can_open(&id, 4) {
                    r.error(
                        "node.state_dir",
                        format!(
                            "{e}: the agent could not load its identity and would not start; chown {}:{} {}",
                            u.name,
                            u.group,
                            id.display()
                        ),
                    );
                }
            }
        }
    }
    if c.shutdown.dry_run {
        if let Some(m) = &c.shutdown.dry_run_marker {
            let parent = m.parent().filter(|p| !p.as_os_str().is_empty());
            if sandboxed(m) {
                r.warn(
                    "shutdown.dry_run_marker",
                    format!(
                        "{}: outside what coolmesh.service may write (ProtectSystem=strict): a drill would write no marker; put it under /var/lib/coolmesh",
                        m.display()
                    ),
                );
            } else if parent.is_some_and(|p| !p.is_dir())
                && !parent.is_some_and(|p| p.starts_with(dir))
            {
                r.warn(
                    "shutdown.dry_run_marker",
                    format!(
                        "{}: its directory does not exist, so a drill would write no marker",
                        m.display()
                    ),
                );
            }
        }
    }
}
