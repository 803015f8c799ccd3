//! The real binary: `coolmesh preflight` (the same command as
//! `check-config`) on a broken installation names every problem at once,
//! each with its config key and line, and exits 1; the agent refuses the
//! same config. On a good installation it passes (exit 0, warnings only).

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .args(args)
        .output()
        .expect("run coolmesh");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The lines of `err` that are errors (not warnings or the summary).
fn error_lines(err: &str) -> Vec<&str> {
    err.lines()
        .filter(|l| l.contains(": line ") && !l.contains(": warning: "))
        .collect()
}

#[test]
fn a_broken_install_names_every_problem_with_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // A malformed cluster key (not 64 hex digits), readable as it should be.
    let psk = d.join("swarm.key");
    std::fs::write(&psk, "/key/swarm/psk/1.0.0/\n/base16/\nnot-hex-at-all\n").expect("psk");
    chmod(&psk, 0o640);
    let cfg = d.join("coolmesh.toml");
    // Every problem at once: no token file, a malformed key, a missing
    // exec probe, grace 0, a misspelt shutdown program, an unknown level.
    std::fs::write(
        &cfg,
        format!(
            r#"[node]
state_dir = "{d}/state"
[http]
token_file = "{d}/token"
[power]
targets = ["exec:{d}/mains-ok --feed A"]
[shutdown]
grace = "0s"
command = ["systemctll", "poweroff"]
dry_run = true
[cluster]
name = "room-1"
psk_file = "{d}/swarm.key"
[log]
level = "verbose"
"#,
            d = d.display()
        ),
    )
    .expect("config");
    let me = current_user();
    let c = cfg.to_str().expect("path");
    let (code, _, err) = run(&["preflight", "--user", &me, "--config", c]);
    assert_eq!(code, Some(1), "{err}");
    let want: &[(&str, &[&str])] = &[
        (
            "line 4: http.token_file:",
            &["token does not exist", "openssl rand -hex 32", "chmod 0640"],
        ),
        (
            "line 6: power.targets[0]:",
            &["mains-ok", "does not exist", "the agent would not start"],
        ),
        (
            "line 8: shutdown.grace:",
            &["must not be zero", "first corroborated mains blip"],
        ),
        (
            "line 9: shutdown.command[0]:",
            &["program systemctll not found", "missed shutdown"],
        ),
        (
            "line 13: cluster.psk_file:",
            &["swarm.key: invalid swarm.key", "coolmesh keygen --psk"],
        ),
        (
            "line 15: log.level:",
            &[
                "\"verbose\" is not a log level",
                "allowed: trace, debug, info, warn, error, off",
            ],
        ),
    ];
    let errors = error_lines(&err);
    for (head, needles) in want {
        let Some(line) = errors.iter().find(|l| l.contains(head)) else {
            panic!("no {head} in\n{err}");
        };
        for n in *needles {
            assert!(line.contains(n), "{head} lacks {n:?}: {line}");
        }
    }
    assert_eq!(errors.len(), want.len(), "{err}");
    assert!(err.contains("6 error(s)"), "{err}");

    // `check-config FILE` is the same check.
    let (code2, _, err2) = run(&["check-config", "--user", &me, c]);
    assert_eq!((code2, &err2), (code, &err));

    // The agent refuses this config at start (exit 2), as the preflight said.
    let (code, _, agent_err) = run(&[
        "agent",
        "--config",
        c,
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(2), "{agent_err}");
    assert!(
        agent_err.contains("shutdown.grace") && agent_err.contains("log.level"),
        "{agent_err}"
    );

    // The token now exists, but every user of the host can read it.
    let token = d.join("token");
    std::fs::write(&token, format!("{}\n", "ab".repeat(32))).expect("token");
    chmod(&token, 0o644);
    let (code, _, err) = run(&["preflight", "--user", &me, "--config", c]);
    assert_eq!(code, Some(1), "{err}");
    let line = error_lines(&err)
        .into_iter()
        .find(|l| l.contains("line 4: http.token_file:"))
        .unwrap_or_else(|| panic!("no token line in\n{err}"));
    assert!(
        line.contains("every user of this host can read it")
            && line.contains("mode 0644")
            && line.contains(&format!("chmod 0640 {}", token.display())),
        "{line}"
    );
    assert_eq!(error_lines(&err).len(), want.len(), "{err}");

    // Following the old advice (0600 root) locks the service user out:
    // the check is for the user the agent runs as, not for whoever runs it.
    if me == "root" {
        let exists = |u: &str| {
            std::process::Command::new("id")
                .arg(u)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if let Some(nobody) = ["nobody", "daemon"].into_iter().find(|u| exists(u)) {
            chmod(&token, 0o600);
            chmod(d, 0o755);
            let (_, _, err) = run(&["preflight", "--user", nobody, "--config", c]);
            assert!(
                err.contains(&format!("the service user {nobody} cannot read it")),
                "{err}"
            );
        }
    }

    // An unknown --user is an error, not a silent pass.
    let (code, _, err) = run(&["preflight", "--user", "no-such-user-cm", "--config", c]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no such user"), "{err}");
}

#[test]
fn a_good_install_passes_with_warnings_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir(d.join("state")).expect("state");
    let psk = d.join("swarm.key");
    let (code, _, err) = run(&["keygen", "--psk", "--out", psk.to_str().expect("p")]);
    assert_eq!(code, Some(0), "{err}");
    chmod(&psk, 0o640);
    let token = d.join("token");
    std::fs::write(&token, format!("{}\n", "cd".repeat(32))).expect("token");
    chmod(&token, 0o640);
    let probe = d.join("mains-ok");
    std::fs::write(&probe, "#!/bin/sh\nexit 0\n").expect("probe");
    chmod(&probe, 0o755);
    let cfg = d.join("coolmesh.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[node]
state_dir = "{d}/state"
[http]
token_file = "{d}/token"
[power]
targets = ["exec:{d}/mains-ok --feed A"]
interval = "2s"
timeout = "1s"
[shutdown]
grace = "5m"
command = ["true"]
dry_run = true
dry_run_marker = "{d}/state/dry-run-shutdowns"
[cluster]
name = "room-1"
listen = ["/ip4/127.0.0.1/tcp/0"]
mdns = false
psk_file = "{d}/swarm.key"
[log]
level = "coolmesh_agent=debug,info"
"#,
            d = d.display()
        ),
    )
    .expect("config");
    let me = current_user();
    let (code, out, err) = run(&[
        "preflight",
        "--user",
        &me,
        "--config",
        cfg.to_str().expect("p"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(error_lines(&err).is_empty(), "{err}");
    assert!(
        out.contains("OK") && out.contains(&format!("for user {me}")),
        "{out}"
    );
    // The warnings an operator should see here: the dry run, the open roster.
    assert!(err.contains("warning: line 12: shutdown.dry_run"), "{err}");
    assert!(err.contains("operator_key"), "{err}");
}
