//! Bearer tokens for the mutating endpoints.

use subtle::ConstantTimeEq;

/// The operator's token, loaded from `http.token_file`.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Shortest token accepted: anything shorter is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

impl Token {
    /// Parse a token file's content: surrounding white space is dropped.
    pub fn from_file_content(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.len() < MIN_TOKEN_LEN {
            return Err(format!("token is {} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)", t.len()));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("token must be a single word without spaces".into());
        }
        Ok(Token(t.as_bytes().to_vec()))
    }

    /// Check an `Authorization` header value in constant time.
    pub fn check_header(&self, header: Option<&[u8]>) -> bool {
        let Some(h) = header else { return false };
        let Some(given) = h.strip_prefix(b"Bearer ") else {
            return false;
        };
        self.check_raw(given)
    }

    /// Whether two tokens are the same, in constant time (a reload compares
    /// the re-read token with the running one).
    pub fn same_as(&self, other: &Token) -> bool {
        self.check_raw(&other.0)
    }

    /// Check a bare token (the `X-Coolmesh-Token` header) in constant time.
    pub fn check_raw(&self, given: &[u8]) -> bool {
        // ct_eq on slices of different length returns false without leaking
        // where they differ.
        given.ct_eq(&self.0).into()
    }
}

/// The operator token as the HTTP server reads it on every request: a
/// config reload (`SIGHUP`, `POST /-/reload`) swaps it in place, so a
/// rotated token file takes effect without a restart and without dropping
/// connections. Cloning shares the cell.
#[derive(Clone, Default)]
pub struct TokenCell(std::sync::Arc<std::sync::RwLock<Option<Token>>>);

impl TokenCell {
    /// A cell holding `token` (`None`: the mutating endpoints answer 403).
    pub fn new(token: Option<Token>) -> Self {
        TokenCell(std::sync::Arc::new(std::sync::RwLock::new(token)))
    }

    /// The current token.
    pub fn get(&self) -> Option<Token> {
        // A panic while holding the lock cannot leave a half-written
        // `Option<Token>`: the value is usable, so poisoning is ignored.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace the token (a reload).
    pub fn set(&self, token: Option<Token>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = token;
    }
}

impl From<Option<Token>> for TokenCell {
    fn from(t: Option<Token>) -> Self {
        TokenCell::new(t)
    }
}

impl std::fmt::Debug for TokenCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.get() {
            Some(_) => f.write_str("TokenCell(<redacted>)"),
            None => f.write_str("TokenCell(none)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules() {
        assert!(Token::from_file_content("short").is_err());
        assert!(Token::from_file_content("has space inside the token").is_err());
        let t = Token::from_file_content("  0123456789abcdef0123\n").expect("ok");
        assert!(t.check_header(Some(b"Bearer 0123456789abcdef0123")));
        assert!(!t.check_header(Some(b"Bearer 0123456789abcdef0124")));
        assert!(!t.check_header(Some(b"Bearer 0123456789abcdef012")));
        assert!(!t.check_header(Some(b"Basic 0123456789abcdef0123")));
        assert!(!t.check_header(None));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn a_token_cell_is_shared_and_swapped_in_place() {
        let cell = TokenCell::new(None);
        let server_side = cell.clone();
        assert!(server_side.get().is_none());
        cell.set(Some(
            Token::from_file_content("0123456789abcdef0123").expect("ok"),
        ));
        let t = server_side.get().expect("the clone sees the new token");
        assert!(t.check_raw(b"0123456789abcdef0123"));
        assert_eq!(format!("{server_side:?}"), "TokenCell(<redacted>)");
        cell.set(None);
        assert!(server_side.get().is_none());
    }
}
