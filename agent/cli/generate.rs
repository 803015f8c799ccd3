//! `coolmesh generate man|completions`: the man pages and shell completions,
//! generated from the clap tree itself so they never drift from the flags.
//! Hidden from `--help`: it is for packagers (`.ci/package.sh` ships the
//! output in the Debian package), not for operators.

use crate::args::{Cli, GenerateArgs, GenerateWhat};
use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::Path;
use std::process::ExitCode;

pub fn main(args: GenerateArgs) -> ExitCode {
    let r = match args.what {
        GenerateWhat::Man { out } => man(&out),
        GenerateWhat::Completions { shell, out } => completions(shell, out.as_deref()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The command tree as the pages and scripts show it: without hidden
/// commands (`generate` itself), which clap_complete would otherwise offer.
/// clap cannot remove a subcommand, so the root is rebuilt around the
/// visible ones.
fn command() -> clap::Command {
    let full = Cli::command();
    let mut root = clap::Command::new(full.get_name().to_string())
        .subcommand_required(full.is_subcommand_required_set())
        .arg_required_else_help(full.is_arg_required_else_help_set())
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    if let Some(v) = full.get_version() {
        root = root.version(v.to_string());
    }
    if let Some(v) = full.get_long_version() {
        root = root.long_version(v.to_string());
    }
    if let Some(a) = full.get_about() {
        root = root.about(a.clone());
    }
    if let Some(a) = full.get_long_about() {
        root = root.long_about(a.clone());
    }
    root
}

/// Every page: `coolmesh.1` and `coolmesh-COMMAND[-SUB].1`. Returns the
/// file names written.
pub fn man_pages(out: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
    let mut written = Vec::new();
    let mut stack = vec![(String::new(), command())];
    while let Some((prefix, cmd)) = stack.pop() {
        if cmd.is_hide_set() {
            continue;
        }
        let name = if prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        // The page's title is its file name (coolmesh-room-cancel), as man
        // looks it up; subcommands link to their own pages.
        let cmd = cmd.clone().name(name.clone()).display_name(name.clone());
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                stack.push((name.clone(), sub.clone()));
            }
        }
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut buf)
            .with_context(|| format!("rendering {name}.1"))?;
        let file = format!("{name}.1");
        std::fs::write(out.join(&file), buf)
            .with_context(|| format!("{}", out.join(&file).display()))?;
        written.push(file);
    }
    written.sort();
    Ok(written)
}

fn man(out: &Path) -> anyhow::Result<()> {
    for f in man_pages(out)? {
        println!("{}", out.join(f).display());
    }
    Ok(())
}

/// The file name each shell's vendor directory expects.
pub fn completion_file(shell: Shell) -> String {
    match shell {
        Shell::Bash => "coolmesh".into(),
        Shell::Zsh => "_coolmesh".into(),
        Shell::Fish => "coolmesh.fish".into(),
        Shell::PowerShell => "_coolmesh.ps1".into(),
        Shell::Elvish => "coolmesh.elv".into(),
        // Shell is non-exhaustive: a new one gets its own name.
        other => format!("coolmesh.{other}"),
    }
}

pub fn completion_script(shell: Shell) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut command(), "coolmesh", &mut buf);
    buf
}

fn completions(shell: Shell, out: Option<&Path>) -> anyhow::Result<()> {
    let script = completion_script(shell);
    match out {
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&script).context("stdout")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
            let path = dir.join(completion_file(shell));
            std::fs::write(&path, script).with_context(|| format!("{}", path.display()))?;
            println!("{}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_man_page_per_command_and_none_for_generate() {
        let dir = tempfile::tempdir().expect("tmp");
        let pages = man_pages(dir.path()).expect("pages");
        for want in [
            "coolmesh.1",
            "coolmesh-agent.1",
            "coolmesh-room.1",
            "coolmesh-room-cancel.1",
            "coolmesh-check-config.1",
        ] {
            assert!(pages.iter().any(|p| p == want), "{want} missing: {pages:?}");
        }
        assert!(
            !pages
                .iter()
                .any(|p| p.contains("generate") || p.contains("help")),
            "{pages:?}"
        );
        let root = std::fs::read_to_string(dir.path().join("coolmesh.1")).expect("page");
        assert!(
            root.starts_with(".ie \\n(.g .ds Aq") || root.contains(".TH coolmesh 1"),
            "{root}"
        );
        assert!(
            root.contains("coolmesh\\-agent(1)"),
            "the root page links the commands' pages: {root}"
        );
        let agent = std::fs::read_to_string(dir.path().join("coolmesh-agent.1")).expect("page");
        assert!(agent.contains(".TH coolmesh-agent 1"), "{agent}");
        assert!(
            agent.contains("web.listen\\-address"),
            "flags are on the page"
        );
    }

    #[test]
    fn completions_know_the_commands_and_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = String::from_utf8(completion_script(shell)).expect("utf8");
            for word in [
                "agent",
                "preflight",
                "room",
                "web.listen-address",
                "log.format",
            ] {
                assert!(s.contains(word), "{shell}: {word} missing");
            }
            assert!(
                !s.contains("generate"),
                "{shell}: the hidden command is offered"
            );
        }
        assert_eq!(completion_file(Shell::Bash), "coolmesh");
        assert_eq!(completion_file(Shell::Zsh), "_coolmesh");
        assert_eq!(completion_file(Shell::Fish), "coolmesh.fish");
    }
}
