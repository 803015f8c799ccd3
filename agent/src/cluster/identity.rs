//! Node identity (a persistent Ed25519 key) and the private-network key.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use libp2p::identity::{KeyType, Keypair};
use libp2p::pnet::PreSharedKey;
use rand::RngCore;

/// What a key signs: a domain prefix, then the bytes. Each kind of signed
/// thing (record, roster, room command) has its own prefix, so a signature
/// made for one is never valid as another.
pub fn domain_message(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + body.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(body);
    m
}

/// File name of the identity key inside the state directory. It holds the
/// key in the libp2p protobuf private-key encoding (also read by go- and
/// js-libp2p).
pub const IDENTITY_FILE: &str = "identity.key";

/// Load this node's Ed25519 identity from `state_dir/identity.key`, or create
/// one (directory included) if there is none. The file is created with mode
/// 0600 and written atomically (temporary file, fsync, rename, fsync of the
/// directory), so a crash never leaves a truncated key behind. A key that is
/// not Ed25519, or an unreadable file, is an error: the PeerId must stay
/// stable, so the agent must not silently make a new one.
pub fn load_or_create_identity(state_dir: &Path) -> anyhow::Result<Keypair> {
    let path = state_dir.join(IDENTITY_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            if let Ok(meta) = fs::metadata(&path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "identity key is readable by others; chmod 600 it");
                }
            }
            let key = Keypair::from_protobuf_encoding(&bytes)
                .with_context(|| format!("{} is not a libp2p private key", path.display()))?;
            if key.key_type() != KeyType::Ed25519 {
                bail!(
                    "{} holds a {:?} key; coolmesh needs Ed25519",
                    path.display(),
                    key.key_type()
                );
            }
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(state_dir)
                .with_context(|| format!("creating {}", state_dir.display()))?;
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .context("encoding the new identity key")?;
            write_atomic(&path, &bytes, 0o600)
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), peer_id = %key.public().to_peer_id(), "created a new node identity");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Write `bytes` to `path` atomically with the given mode.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode passed to open is filtered by the umask; make it exact.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A new random pre-shared key in the `swarm.key` format shared with
/// go-libp2p and js-libp2p:
///
/// ```text
/// /key/swarm/psk/1.0.0/
/// /base16/
/// <64 hex digits>
/// ```
pub fn generate_psk() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    PreSharedKey::new(key).to_key_file()
}

/// Errors parsing a `swarm.key`.
#[derive(Debug, thiserror::Error)]
#[error("invalid swarm.key: {0}")]
pub struct PskError(String);

/// Parse a `swarm.key` file's text (surrounding whitespace and CRLF line
/// ends are tolerated).
pub fn parse_psk(text: &str) -> Result<PreSharedKey, PskError> {
    let lines: Vec<&str> = text.trim().lines().map(str::trim).collect();
    lines
        .join("\n")
        .parse::<PreSharedKey>()
        .map_err(|e| PskError(e.to_string()))
}

/// Read and parse a `swarm.key` file, warning when its owner, group or
/// mode break the one rule for secret files ([`crate::perms::RULE`]:
/// root:coolmesh 0640 under the package).
pub fn load_psk(path: &Path) -> anyhow::Result<PreSharedKey> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let psk = parse_psk(&text).with_context(|| path.display().to_string())?;
    crate::perms::warn_secret_file("cluster.psk_file", path);
    tracing::info!(fingerprint = %psk.fingerprint(), "private network enabled");
    Ok(psk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = load_or_create_identity(&state).unwrap();
        let meta = fs::metadata(state.join(IDENTITY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let b = load_or_create_identity(&state).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(IDENTITY_FILE)]);
    }

    #[test]
    fn corrupt_or_foreign_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(IDENTITY_FILE), b"garbage").unwrap();
        assert!(load_or_create_identity(dir.path()).is_err());
    }

    #[test]
    fn psk_roundtrip_and_errors() {
        let text = generate_psk();
        assert!(text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"));
        let a = parse_psk(&text).unwrap();
        let crlf = format!("\n{}\r\n\r\n", text.replace('\n', "\r\n"));
        assert_eq!(parse_psk(&crlf).unwrap(), a);
        assert_ne!(parse_psk(&generate_psk()).unwrap(), a);
        assert!(parse_psk("").is_err());
        assert!(parse_psk("/key/swarm/psk/1.0.0/\n/base64/\nAAAA").is_err());
        assert!(parse_psk("/key/swarm/psk/1.0.0/\n/base16/\nabcd").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("swarm.key");
        write_atomic(&p, text.as_bytes(), 0o600).unwrap();
        assert_eq!(load_psk(&p).unwrap(), a);
    }
}
