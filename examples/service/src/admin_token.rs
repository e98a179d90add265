//! The admin token: the shared secret that every admin request must carry.
//!
//! Membership and leadership changes (`/admin/...`) can take a cluster apart, so they are
//! not open to whoever reaches a node's HTTP port. The `certs` command (`counter certs`,
//! `kv certs`) writes a random token next to the certificates (`admin.token`, readable by its owner only); every node loads
//! it at start, and an admin request must send it as `Authorization: Bearer <token>`. The
//! README says why this design was chosen over the alternatives.
//!
//! The token is 32 bytes from the operating system's CSPRNG (`getrandom`), written as 64
//! hex digits. A token of your own (from a secret store, say) works too, if it is at least
//! [`MIN_LEN`] characters of the bearer-token alphabet.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq;

/// The least number of characters a token may have: 32 hex digits are 128 bits.
pub const MIN_LEN: usize = 32;
/// The most characters a token may have: more is a wrong file, not a token.
pub const MAX_LEN: usize = 512;
/// Random bytes in a generated token.
const RANDOM_BYTES: usize = 32;

/// The cluster's admin token. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct AdminToken(Arc<str>);

/// Why a token could not be made, read or written. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read. (The commands add a hint: which command writes one,
    /// see [`crate::cmd::load_admin_token`].)
    #[error("cannot read the admin token {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The file holds something other than a token.
    #[error("{} is not an admin token: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A token is already there, and replacing it was not asked for.
    #[error("{} already exists; replacing it locks out every node and client still using it (pass --force to replace it)", .0.display())]
    Exists(PathBuf),
    /// The file could not be written.
    #[error("cannot write the admin token {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("cannot generate an admin token: the system's random number generator failed: {0}")]
    Random(String),
}

impl AdminToken {
    /// A new random token.
    pub fn generate() -> Result<AdminToken, TokenError> {
        let mut bytes = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(AdminToken(hex.into()))
    }

    /// A token from its text (surrounding whitespace, such as a final newline, ignored).
    /// Refuses text too short to be a secret, too long to be a token, or with characters
    /// that cannot go into an `Authorization: Bearer` header.
    pub fn parse(text: &str) -> Result<AdminToken, String> {
        let token = text.trim();
        if token.len() < MIN_LEN {
            return Err(format!(
                "{} characters, fewer than the {MIN_LEN} a token needs",
                token.len()
            ));
        }
        if token.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} characters"));
        }
        // RFC 6750's bearer-token characters.
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
        if let Some(bad) = token.chars().find(|&c| !allowed(c)) {
            return Err(format!(
                "it contains {bad:?}; a token has letters, digits and -._~+/= only"
            ));
        }
        Ok(AdminToken(token.into()))
    }

    /// Reads the token in `path`. Reads at most a little more than a token can be long,
    /// so pointing this at a wrong (large) file costs nothing.
    pub fn load(path: &Path) -> Result<AdminToken, TokenError> {
        let read_error = |source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        warn_if_others_can_read(path, &file);
        let mut bytes = Vec::new();
        file.take(MAX_LEN as u64 + 64)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        let invalid = |reason: String| TokenError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid("it is not text".into()))?;
        AdminToken::parse(text).map_err(invalid)
    }

    /// Writes the token to `path`, readable and writable by its owner only (mode 0600).
    /// Refuses to replace an existing file unless `force`. The file is written under a
    /// temporary name and renamed into place, so it never exists with looser permissions
    /// or half written.
    pub fn write(&self, path: &Path, force: bool) -> Result<(), TokenError> {
        if path.exists() && !force {
            return Err(TokenError::Exists(path.to_path_buf()));
        }
        let write_error = |source| TokenError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(write_error)?;
        // tempfile creates its files with mode 0600.
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(write_error)?;
        writeln!(file, "{}", self.0).map_err(write_error)?;
        file.as_file().sync_all().map_err(write_error)?;
        let persisted = if force {
            file.persist(path)
        } else {
            // Checked above, but another process may have written one since.
            file.persist_noclobber(path)
        };
        persisted.map_err(|e| match e.error.kind() {
            std::io::ErrorKind::AlreadyExists => TokenError::Exists(path.to_path_buf()),
            _ => write_error(e.error),
        })?;
        Ok(())
    }

    /// Whether `presented` is this token. The comparison takes the same time wherever the
    /// first difference is, so timing the answers does not reveal the token a byte at a
    /// time (only whether the length is right, which is no secret).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }

    /// The value of the `Authorization` header that carries this token.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// A token others can read is a token others can use: say so (but start anyway, as an
/// ssh client does not: the file may sit on a filesystem without Unix permissions).
fn warn_if_others_can_read(path: &Path, file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata()
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the admin token can be read by other users; `chmod 600` it"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_tokens_are_long_random_and_private_on_disk() {
        let a = AdminToken::generate().unwrap();
        let b = AdminToken::generate().unwrap();
        assert_eq!(a.0.len(), 2 * RANDOM_BYTES);
        assert_ne!(a.0, b.0);
        assert!(
            !format!("{a:?}").contains(&*a.0),
            "Debug must not show the secret"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("admin.token");
        a.write(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(AdminToken::load(&path).unwrap().matches(a.0.as_bytes()));

        let again = b.write(&path, false).unwrap_err();
        assert!(again.to_string().contains("--force"), "{again}");
        b.write(&path, true).unwrap();
        let loaded = AdminToken::load(&path).unwrap();
        assert!(loaded.matches(b.0.as_bytes()) && !loaded.matches(a.0.as_bytes()));
    }

    #[test]
    fn only_the_exact_token_matches() {
        let t = AdminToken::parse(&"a".repeat(40)).unwrap();
        assert!(t.matches("a".repeat(40).as_bytes()));
        assert!(!t.matches("a".repeat(39).as_bytes()));
        assert!(!t.matches(format!("{}b", "a".repeat(39)).as_bytes()));
        assert!(!t.matches(b""));
        assert_eq!(t.authorization(), format!("Bearer {}", "a".repeat(40)));
    }

    #[test]
    fn bad_token_files_are_refused_naming_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        let missing = AdminToken::load(&path).unwrap_err();
        assert!(missing.to_string().contains("admin.token"), "{missing}");

        for (content, expected) in [
            (b"short\n".to_vec(), "fewer than"),
            (
                b"a b c d e f g h i j k l m n o p q r s t u v w x y z".to_vec(),
                "' '",
            ),
            (vec![b'a'; 100_000], "longer than"),
            (vec![0xff; 40], "not text"),
        ] {
            std::fs::write(&path, content).unwrap();
            let e = AdminToken::load(&path).unwrap_err();
            assert!(e.to_string().contains(expected), "{e}");
        }
    }
}
