//! Build metadata for `coolmesh --version` and `coolmesh_build_info`:
//! the git revision and branch, the commit date (reproducible, unlike the
//! wall clock), the compiler and the target. Each falls back to "unknown"
//! (a source tarball has no git); `COOLMESH_REVISION`, `COOLMESH_BRANCH`
//! and `SOURCE_DATE_EPOCH` override them for packagers.

use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd).args(args).output().ok()?;
    if !o.status.success() {
        return None;
    }
    let s = String::from_utf8(o.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let env = |k: &str| {
        println!("cargo:rerun-if-env-changed={k}");
        std::env::var(k).ok().filter(|v| !v.is_empty())
    };
    let revision = env("COOLMESH_REVISION")
        .or_else(|| run("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let branch = env("COOLMESH_BRANCH")
        .or_else(|| run("git", &["rev-parse", "--abbrev-ref", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let date = match env("SOURCE_DATE_EPOCH") {
        Some(epoch) => format!("@{epoch}"),
        None => run("git", &["log", "-1", "--format=%cI"]).unwrap_or_else(|| "unknown".into()),
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=COOLMESH_REVISION={revision}");
    println!("cargo:rustc-env=COOLMESH_BRANCH={branch}");
    println!("cargo:rustc-env=COOLMESH_BUILD_DATE={date}");
    println!("cargo:rustc-env=COOLMESH_RUSTC={rustc}");
    println!("cargo:rustc-env=COOLMESH_TARGET={target}");
    // Rebuild the metadata when the checked-out commit changes (only paths
    // that exist: a missing one would rerun this script on every build).
    if let Some(git_dir) = run("git", &["rev-parse", "--git-dir"]) {
        let git = Path::new(&git_dir);
        for p in [git.join("HEAD"), git.join("packed-refs")] {
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
        if let Some(r) = run("git", &["symbolic-ref", "-q", "HEAD"]) {
            let p = git.join(r);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
}
