//! Tests of `check-config` / `preflight`: the file, and fake hosts.

use super::*;

fn host_in(dir: &Path, user: Option<Account>) -> Host {
    Host {
        user,
        user_name: "coolmesh".into(),
        path: OsString::from(dir.join("bin")),
        polkit_rules: vec![dir.join("rules.d")],
        polkit_pkla: vec![dir.join("localauthority")],
        polkitd: vec![dir.join("polkitd")],
        unit_files: vec![dir.join("coolmesh.service")],
        unit_dropins: vec![dir.join("coolmesh.service.d")],
        as_root: false,
    }
}

fn svc() -> Account {
    Account {
        name: "coolmesh".into(),
        uid: 4242,
        gid: 4242,
        group: "coolmesh".into(),
        groups: vec![],
    }
}

fn messages(o: &Outcome) -> String {
    o.problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn systemctl_poweroff_without_a_polkit_rule_is_named_with_the_fix() {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(d.path().join("bin")).expect("bin");
    let systemctl = d.path().join("bin/systemctl");
    std::fs::write(&systemctl, "#!/bin/sh\n").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let h = host_in(d.path(), Some(svc()));
    let src = "[cluster]\nenabled = false\n[shutdown]\ncommand = [\"systemctl\", \"poweroff\"]\n";
    let file = d.path().join("c.toml");
    let o = check_config(&file, src, Some(&h));
    let m = messages(&o);
    assert!(
            m.contains("warning: line 4: shutdown.command: systemctl poweroff runs as user coolmesh, and no polkit rule lets coolmesh power off")
                && m.contains("50-coolmesh.rules")
                && m.contains("NOPASSWD"),
            "{m}"
        );
    // With the package's rule (and polkitd): no warning.
    std::fs::create_dir_all(d.path().join("rules.d")).expect("rules.d");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/polkit/50-coolmesh.rules"),
        d.path().join("rules.d/50-coolmesh.rules"),
    )
    .expect("copy rule");
    std::fs::write(d.path().join("polkitd"), "").expect("polkitd");
    let m = messages(&check_config(&file, src, Some(&h)));
    assert!(!m.contains("shutdown.command"), "{m}");
    // The rule without polkitd: logind refuses.
    std::fs::remove_file(d.path().join("polkitd")).expect("rm");
    let m = messages(&check_config(&file, src, Some(&h)));
    assert!(m.contains("polkitd is not installed"), "{m}");
    // sudo under the packaged unit (NoNewPrivileges=yes).
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/coolmesh.service"),
        d.path().join("coolmesh.service"),
    )
    .expect("copy unit");
    let sudo = d.path().join("bin/sudo");
    std::fs::write(&sudo, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let src_sudo = "[cluster]\nenabled = false\n[shutdown]\ncommand = [\"sudo\", \"-n\", \"/usr/bin/systemctl\", \"poweroff\"]\n";
    let m = messages(&check_config(&file, src_sudo, Some(&h)));
    assert!(m.contains("NoNewPrivileges=yes"), "{m}");
    std::fs::create_dir_all(d.path().join("coolmesh.service.d")).expect("d");
    std::fs::write(
        d.path().join("coolmesh.service.d/sudo.conf"),
        "[Service]\nNoNewPrivileges=no\n",
    )
    .expect("dropin");
    let m = messages(&check_config(&file, src_sudo, Some(&h)));
    assert!(!m.contains("NoNewPrivileges=yes"), "{m}");
    assert!(m.contains("run the preflight as root"), "{m}");
    // Root needs neither.
    let root = Account {
        name: "root".into(),
        uid: 0,
        gid: 0,
        group: "root".into(),
        groups: vec![],
    };
    let m = messages(&check_config(
        &file,
        src,
        Some(&host_in(d.path(), Some(root))),
    ));
    assert!(!m.contains("shutdown.command"), "{m}");
}

#[test]
fn logind_commands() {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(powers_off_through_logind(&v(&["systemctl", "poweroff"])));
    assert!(powers_off_through_logind(&v(&[
        "/usr/bin/systemctl",
        "poweroff",
        "-i"
    ])));
    assert!(powers_off_through_logind(&v(&[
        "/sbin/shutdown",
        "-h",
        "now"
    ])));
    assert!(powers_off_through_logind(&v(&[
        "dbus-send",
        "--system",
        "--print-reply",
        "--dest=org.freedesktop.login1",
        "/org/freedesktop/login1",
        "org.freedesktop.login1.Manager.PowerOff",
        "boolean:false"
    ])));
    assert!(!powers_off_through_logind(&v(&["systemctl", "status"])));
    assert!(!powers_off_through_logind(&v(&[
        "/usr/local/bin/drain-and-off"
    ])));
}

#[test]
fn durations_that_fake_or_miss_a_shutdown() {
    let f = Path::new("c.toml");
    let src = "[power]\ntargets = [\"tcp://10.0.0.1:22\"]\ninterval = \"10s\"\ntimeout = \"1s\"\n[shutdown]\ngrace = \"15s\"\nduration = \"1m\"\npre_command = [\"/bin/true\"]\npre_command_timeout = \"2m\"\ncancel_hold = \"0s\"\n[sensors]\ninterval = \"10s\"\ntimeout = \"1s\"\n[cluster]\nenabled = false\n";
    let o = check_config(f, src, None);
    let m = messages(&o);
    for want in [
        "line 6: shutdown.grace: 15s is not longer than the time a recovery takes",
        "warning: line 7: shutdown.duration: 1m is not shorter than shutdown.grace",
        "warning: line 7: shutdown.duration: 1m is shorter than shutdown.pre_command_timeout",
        "warning: line 10: shutdown.cancel_hold: zero",
        "warning: line 12: sensors.interval: 10s",
    ] {
        assert!(m.contains(want), "{want}\n{m}");
    }
    assert_eq!(o.errors(), 1, "{m}");
    // The defaults are sane (warnings only: no targets, no roster).
    let o = check_config(f, "[cluster]\ninsecure_no_psk = true\n", None);
    assert_eq!(o.errors(), 0, "{}", messages(&o));
    // A bare upsc never sees mains fail.
    let o = check_config(
            f,
            "[cluster]\nenabled = false\n[power]\ntargets = [\n  \"tcp://10.0.0.1:22\",\n  \"exec:/usr/bin/upsc ups@localhost ups.status\",\n]\n",
            None,
        );
    assert!(
        messages(&o).contains(
            "line 6: power.targets[1]: exec:/usr/bin/upsc ups@localhost ups.status: upsc exits 0"
        ),
        "{}",
        messages(&o)
    );
}
