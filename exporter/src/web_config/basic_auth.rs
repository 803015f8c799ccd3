//! Basic auth: bcrypt behind bounded verdict caches, one hash at a time.

use super::*;

/// Most cached verdicts of each kind (the toolkit keeps 100).
pub(super) const CACHE_ENTRIES: usize = 100;
/// Longest a request waits for its turn at bcrypt before it is refused
/// (503 with Retry-After). With the connection cap and ~60 ms per check
/// this is only reached under a password flood.
pub(super) const BCRYPT_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Basic auth users and the verdict caches.
pub struct BasicAuth {
    pub(super) users: BTreeMap<String, String>,
    /// Keys of credentials that verified.
    pub(super) good: Mutex<HashSet<[u8; 32]>>,
    /// Keys of credentials that did not.
    pub(super) bad: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt at a time.
    pub(super) slot: Arc<Semaphore>,
    /// Hash checked for unknown users, so the answer takes as long as for a
    /// known one (no user enumeration by timing). Made on first use.
    pub(super) decoy: Arc<OnceLock<String>>,
    pub(super) decoy_cost: u32,
    pub(super) runs: Arc<AtomicU64>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Outcome of a basic auth check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// Known user, right password.
    Ok,
    /// No, wrong or malformed credentials.
    Denied,
    /// Too many checks queued (a password flood): try again later.
    Busy,
}

pub(super) fn cache_key(user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    // Length prefixes: ("ab","c") and ("a","bc") must not collide.
    for part in [user.as_bytes(), hash.as_bytes(), password] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

pub(super) fn remember(set: &Mutex<HashSet<[u8; 32]>>, key: [u8; 32]) {
    let mut s = set.lock().unwrap_or_else(|p| p.into_inner());
    if s.len() >= CACHE_ENTRIES {
        // Evict an arbitrary entry (HashSet order is randomised per process).
        if let Some(k) = s.iter().next().copied() {
            s.remove(&k);
        }
    }
    s.insert(key);
}

/// Split an `Authorization: Basic ...` header into user and password.
pub fn parse_basic(header: &[u8]) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let i = raw.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(raw[..i].to_vec()).ok()?;
    Some((user, raw[i + 1..].to_vec()))
}

impl BasicAuth {
    pub(super) fn new(users: BTreeMap<String, String>) -> Self {
        let decoy_cost = users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        BasicAuth {
            users,
            good: Mutex::default(),
            bad: Mutex::default(),
            slot: Arc::new(Semaphore::new(1)),
            decoy: Arc::new(OnceLock::new()),
            decoy_cost,
            runs: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many bcrypt comparisons ran so far (cache misses).
    pub fn bcrypt_runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Number of users.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Check an `Authorization` header value.
    pub async fn check(&self, header: Option<&[u8]>) -> AuthResult {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return AuthResult::Denied;
        };
        let known = self.users.get(&user).cloned();
        let hash_key = known.as_deref().unwrap_or("(unknown user)");
        let key = cache_key(&user, hash_key, &password);
        if known.is_some()
            && self
                .good
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key)
        {
            return AuthResult::Ok;
        }
        if self
            .bad
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return AuthResult::Denied;
        }
        let Ok(Ok(permit)) =
            tokio::time::timeout(BCRYPT_QUEUE_WAIT, self.slot.clone().acquire_owned()).await
        else {
            return AuthResult::Busy;
        };
        let decoy = self.decoy.clone();
        let decoy_cost = self.decoy_cost;
        let runs = self.runs.clone();
        let hash = known.clone();
        let verdict = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            runs.fetch_add(1, Ordering::Relaxed);
            match hash {
                Some(h) => bcrypt::verify(&password, &h).unwrap_or(false),
                None => {
                    let d = decoy.get_or_init(|| {
                        bcrypt::hash(b"coolmesh decoy password", decoy_cost).unwrap_or_default()
                    });
                    let _ = bcrypt::verify(&password, d);
                    false
                }
            }
        })
        .await
        .unwrap_or(false);
        if verdict {
            remember(&self.good, key);
            AuthResult::Ok
        } else {
            remember(&self.bad, key);
            AuthResult::Denied
        }
    }
}
