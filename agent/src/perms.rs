//! The one permission rule for the secret files the agent reads
//! (`http.token_file`, `cluster.psk_file`), and the accounts it is checked
//! against.
//!
//! The rule ([`RULE`]): owner root or the service user, group the service
//! group, mode 0640 or stricter, never readable or writable by others. The
//! Debian package installs both files `root:coolmesh 0640`; the agent's
//! start-up warning, `coolmesh check-config` (`preflight`), the operator
//! guide and the example config all say the same, from here.
//!
//! Why not 0600: the agent runs as `coolmesh` (`User=coolmesh` in the unit),
//! so a `root 0600` key is unreadable for it and the agent does not start.
//! Why not 0644: every user of the host could then join the cluster (the
//! key) or cancel a shutdown (the token).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The user the unit runs the agent as.
pub const DEFAULT_SERVICE_USER: &str = "coolmesh";

/// The rule in one sentence, for messages and documents.
pub const RULE: &str = "owner root or the service user, group the service group, mode 0640 or stricter, never readable or writable by others";

/// A user as the kernel checks it: uid, primary group, other groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// User name (or the uid in decimal when it has none).
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id: "the service group".
    pub gid: u32,
    /// Name of the primary group (or its gid in decimal).
    pub group: String,
    /// Supplementary group ids (systemd sets them for `User=`).
    pub groups: Vec<u32>,
}

/// Owner, group and mode of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
}

impl FileInfo {
    /// From a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> FileInfo {
        FileInfo {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        }
    }
}

/// One line of `/etc/passwd` or `getent passwd`: name, uid, gid.
fn passwd_fields(line: &str) -> Option<(String, u32, u32)> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 4 {
        return None;
    }
    Some((f[0].to_string(), f[2].parse().ok()?, f[3].parse().ok()?))
}

/// One line of `/etc/group` or `getent group`: name, gid, members.
fn group_fields(line: &str) -> Option<(String, u32, Vec<String>)> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 3 {
        return None;
    }
    let members = f
        .get(3)
        .map(|m| {
            m.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Some((f[0].to_string(), f[2].parse().ok()?, members))
}

/// `getent DB KEY`, for users and groups that live in LDAP and the like.
fn getent(db: &str, key: &str) -> Option<String> {
    let out = std::process::Command::new("getent")
        .args([db, key])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout)
        .ok()?
        .lines()
        .next()
        .map(String::from)
}

/// The passwd entry whose name (or uid) is `key`: the file first, then NSS.
fn passwd_entry(key: &str) -> Option<(String, u32, u32)> {
    let matches = |(name, uid, _): &(String, u32, u32)| name == key || uid.to_string() == key;
    if let Ok(text) = std::fs::read_to_string("/etc/passwd") {
        if let Some(e) = text.lines().filter_map(passwd_fields).find(matches) {
            return Some(e);
        }
    }
    getent("passwd", key)
        .as_deref()
        .and_then(passwd_fields)
        .filter(matches)
}

/// The name of user `uid`, or the number.
pub fn user_name(uid: u32) -> String {
    passwd_entry(&uid.to_string())
        .map(|(n, _, _)| n)
        .unwrap_or_else(|| uid.to_string())
}

/// The name of group `gid`, or the number.
pub fn group_name(gid: u32) -> String {
    let key = gid.to_string();
    let from_file = std::fs::read_to_string("/etc/group").ok().and_then(|t| {
        t.lines()
            .filter_map(group_fields)
            .find(|(_, g, _)| *g == gid)
            .map(|(n, _, _)| n)
    });
    from_file
        .or_else(|| {
            getent("group", &key)
                .as_deref()
                .and_then(group_fields)
                .map(|(n, _, _)| n)
        })
        .unwrap_or(key)
}

/// Supplementary groups of `user`: `/etc/group` members, plus what `id -G`
/// says (NSS groups).
fn supplementary_groups(user: &str, primary: u32) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_to_string("/etc/group")
        .ok()
        .map(|t| {
            t.lines()
                .filter_map(group_fields)
                .filter(|(_, _, m)| m.iter().any(|m| m == user))
                .map(|(_, g, _)| g)
                .collect()
        })
        .unwrap_or_default();
    if let Ok(o) = std::process::Command::new("id")
        .args(["-G", user])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
    {
        if o.status.success() {
            out.extend(
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|g| g.parse::<u32>().ok()),
            );
        }
    }
    out.retain(|g| *g != primary);
    out.sort_unstable();
    out.dedup();
    out
}

impl Account {
    /// Look a user up by name (or uid): `/etc/passwd` and `/etc/group`
    /// first, then NSS through `getent` and `id`. `None`: no such user.
    pub fn lookup(user: &str) -> Option<Account> {
        let (name, uid, gid) = passwd_entry(user)?;
        Some(Account {
            groups: supplementary_groups(&name, gid),
            group: group_name(gid),
            name,
            uid,
            gid,
        })
    }

    /// The user this process runs as (effective ids; what the kernel
    /// checks when the agent opens a file).
    pub fn current() -> Account {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        Account {
            name: user_name(uid),
            uid,
            gid,
            group: group_name(gid),
            groups: Vec::new(),
        }
    }

    /// Root: reads anything.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Whether this account may `want` (4 read, 2 write, 1 execute/search)
    /// on a file with `f`'s owner, group and mode, the way the kernel
    /// decides: the owner class, else the group class, else others.
    pub fn may(&self, f: &FileInfo, want: u32) -> bool {
        if self.is_root() {
            return true;
        }
        let bits = if f.uid == self.uid {
            f.mode >> 6
        } else if self.in_group(f.gid) {
            f.mode >> 3
        } else {
            f.mode
        } & 0o7;
        bits & want == want
    }

    /// Whether this account can open `path` for `want` (4 read, 2 write),
    /// every directory above it searchable included. The error says which
    /// part stops it, with owner, group and mode.
    pub fn can_open(&self, path: &Path, want: u32) -> Result<(), String> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.to_path_buf())
        };
        let mut dirs: Vec<&Path> = abs.ancestors().skip(1).collect();
        dirs.reverse();
        for d in dirs {
            let Ok(meta) = std::fs::metadata(d) else {
                continue;
            };
            let f = FileInfo::of(&meta);
            if !self.may(&f, 1) {
                return Err(format!(
                    "user {} cannot enter directory {} ({})",
                    self.name,
                    d.display(),
                    describe(&f)
                ));
            }
        }
        let meta = std::fs::metadata(&abs).map_err(|e| format!("{}: {e}", abs.display()))?;
        let f = FileInfo::of(&meta);
        if !self.may(&f, want) {
            let what = if want & 2 != 0 { "write" } else { "read" };
            return Err(format!(
                "user {} cannot {what} {} ({})",
                self.name,
                abs.display(),
                describe(&f)
            ));
        }
        Ok(())
    }
}

/// "owner root, group coolmesh, mode 0640".
pub fn describe(f: &FileInfo) -> String {
    format!(
        "owner {}, group {}, mode {:04o}",
        user_name(f.uid),
        group_name(f.gid),
        f.mode
    )
}

/// The command that makes `path` follow the rule for the service `group`.
pub fn fix(path: &Path, group: &str) -> String {
    format!(
        "chown root:{group} {p} && chmod 0640 {p}",
        p = path.display()
    )
}

/// What is wrong with a secret file's owner, group and mode under
/// [`RULE`], for the service user `user` (`None`: not known here, so only
/// the mode is judged). Each problem is one sentence; empty means the file
/// follows the rule.
pub fn secret_problems(f: &FileInfo, user: Option<&Account>) -> Vec<String> {
    let mut out = Vec::new();
    let desc = describe(f);
    if f.mode & 0o007 != 0 {
        let what = match (f.mode & 0o004 != 0, f.mode & 0o002 != 0) {
            (true, true) => "read and change",
            (true, false) => "read",
            _ => "change",
        };
        out.push(format!(
            "every user of this host can {what} it ({desc}); the rule is {RULE}"
        ));
    } else if f.mode & !0o640 != 0 {
        out.push(format!(
            "mode {:04o} is looser than 0640 ({desc}); the rule is {RULE}",
            f.mode
        ));
    }
    let Some(u) = user else {
        return out;
    };
    if f.uid != 0 && f.uid != u.uid {
        out.push(format!(
            "it is owned by {}, neither root nor the service user {} ({desc}): its owner can read and change it whatever the mode",
            user_name(f.uid),
            u.name
        ));
    }
    if f.mode & 0o040 != 0 && f.gid != u.gid {
        out.push(format!(
            "group {} can read it, and that is not the service group {} ({desc})",
            group_name(f.gid),
            u.group
        ));
    }
    let readable = u.is_root()
        || (f.uid == u.uid && f.mode & 0o400 != 0)
        || (f.uid != u.uid && u.in_group(f.gid) && f.mode & 0o040 != 0)
        || f.mode & 0o004 != 0;
    if !readable {
        out.push(format!(
            "the service user {} cannot read it ({desc}), so the agent would not start",
            u.name
        ));
    }
    out
}

/// The agent's start-up check of a secret file it has just read: the rule
/// judged for the user it runs as. Logged as warnings, with the fix.
pub fn warn_secret_file(key: &str, path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let me = Account::current();
    for p in secret_problems(&FileInfo::of(&meta), Some(&me)) {
        tracing::warn!(
            key,
            path = %path.display(),
            fix = %fix(path, &me.group),
            "{p}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coolmesh() -> Account {
        Account {
            name: "coolmesh".into(),
            uid: 103,
            gid: 106,
            group: "coolmesh".into(),
            groups: vec![],
        }
    }

    fn file(uid: u32, gid: u32, mode: u32) -> FileInfo {
        FileInfo { uid, gid, mode }
    }

    #[test]
    fn the_rule_table() {
        let u = coolmesh();
        // (owner, group, mode, problems wanted as substrings; empty = ok)
        let table: &[(u32, u32, u32, &[&str])] = &[
            (0, 106, 0o640, &[]),   // what the package installs
            (0, 106, 0o440, &[]),   // stricter
            (103, 106, 0o600, &[]), // owned by the service user
            (103, 106, 0o400, &[]), // ... read-only
            (103, 0, 0o600, &[]),   // group has no access: harmless
            (0, 0, 0o600, &["service user coolmesh cannot read it"]), // the old "chmod 600" advice
            (0, 106, 0o644, &["every user of this host can read it"]),
            (
                0,
                106,
                0o646,
                &["every user of this host can read and change it"],
            ),
            (0, 106, 0o660, &["looser than 0640"]),
            (0, 106, 0o740, &["looser than 0640"]),
            (
                1000,
                106,
                0o640,
                &["owned by", "neither root nor the service user"],
            ),
            (
                0,
                0,
                0o640,
                &[
                    "group root can read it",
                    "not the service group coolmesh",
                    "cannot read it",
                ],
            ),
        ];
        for (uid, gid, mode, want) in table {
            let got = secret_problems(&file(*uid, *gid, *mode), Some(&u));
            let all = got.join(" | ");
            if want.is_empty() {
                assert!(got.is_empty(), "{uid}:{gid} {mode:o}: {all}");
            }
            for w in *want {
                assert!(all.contains(w), "{uid}:{gid} {mode:o}: {all} lacks {w:?}");
            }
        }
        // Root as the service user reads anything; the mode still counts.
        let root = Account {
            name: "root".into(),
            uid: 0,
            gid: 0,
            group: "root".into(),
            groups: vec![],
        };
        assert!(secret_problems(&file(0, 0, 0o600), Some(&root)).is_empty());
        assert!(secret_problems(&file(0, 0, 0o400), Some(&root)).is_empty());
        // Unknown service user: only the mode is judged.
        assert!(secret_problems(&file(0, 0, 0o600), None).is_empty());
        assert_eq!(secret_problems(&file(0, 0, 0o604), None).len(), 1);
    }

    #[test]
    fn may_follows_the_owner_then_group_then_others_classes() {
        let u = Account {
            groups: vec![7],
            ..coolmesh()
        };
        assert!(u.may(&file(103, 0, 0o400), 4));
        // The owner class applies alone, even when others may read.
        assert!(!u.may(&file(103, 0, 0o044), 4));
        assert!(u.may(&file(0, 106, 0o040), 4));
        assert!(u.may(&file(0, 7, 0o040), 4), "supplementary group");
        assert!(!u.may(&file(0, 8, 0o040), 4));
        assert!(u.may(&file(0, 8, 0o004), 4));
        assert!(!u.may(&file(0, 8, 0o755), 2));
    }

    #[test]
    fn passwd_and_group_lines() {
        assert_eq!(
            passwd_fields(
                "coolmesh:x:103:106:coolmesh watchdog,,,:/var/lib/coolmesh:/usr/sbin/nologin"
            ),
            Some(("coolmesh".into(), 103, 106))
        );
        assert_eq!(passwd_fields("broken"), None);
        assert_eq!(
            group_fields("adm:x:4:syslog,alice"),
            Some(("adm".into(), 4, vec!["syslog".into(), "alice".into()]))
        );
        assert_eq!(
            group_fields("coolmesh:x:106:"),
            Some(("coolmesh".into(), 106, vec![]))
        );
        assert_eq!(
            Account::lookup("root").map(|a| (a.uid, a.gid)),
            Some((0, 0))
        );
        assert_eq!(Account::lookup("no-such-user-coolmesh-test"), None);
        assert_eq!(
            fix(Path::new("/etc/coolmesh/swarm.key"), "coolmesh"),
            "chown root:coolmesh /etc/coolmesh/swarm.key && chmod 0640 /etc/coolmesh/swarm.key"
        );
    }
}
