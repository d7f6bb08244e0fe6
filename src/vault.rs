//! Secrets at rest (M9): `password = "enc:v1:…"` values made by `sidesync secret encrypt`, and
//! the key file they need.
//!
//! A value is `enc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`, sealed with
//! ChaCha20-Poly1305 (ring, already in the tree for TLS) under a random 96-bit nonce. The
//! associated data names where the value belongs (`mailbox:alice@example.com` and the field), so a
//! value copied to another mailbox or field does not open. The key file, `data_dir/secret.key`
//! (mode 0600, created on first use), holds one key per line, the current one first, and a
//! separate key for the config fingerprint's MAC, which rotation keeps: a rotation re-tests nothing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::Secret;

pub const PREFIX: &str = "enc:v1:";
pub const KEY_FILE: &str = "secret.key";
const HEADER: &str = "# sidesync secret keys: the first key seals new values; keep this file 0600";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("the key file {0} does not exist (it is made by `sidesync secret encrypt`)")]
    NoKeyFile(PathBuf),
    #[error("the key file {path} can be read by others (mode {mode:o}); run chmod 600 on it")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the key file {path}: {problem}")]
    BadKeyFile { path: PathBuf, problem: String },
    #[error("the value is sealed with key {0}, which the key file does not hold")]
    UnknownKey(String),
    #[error("the value is not an enc:v1 value (enc:v1:KEY:DATA)")]
    Malformed,
    #[error(
        "the value does not open with key {0}: it was changed, or it was made for another mailbox or field"
    )]
    Tampered(String),
    #[error("no randomness from the system")]
    Random,
}

/// Where a value belongs: its associated data.
pub fn aad(scope: &str, field: &str) -> String {
    format!("sidesync-secret:v1|{scope}|{field}")
}

/// The keys of the key file.
#[derive(Clone)]
pub struct KeyRing {
    /// (id, key); the first seals new values.
    keys: Vec<(String, [u8; 32])>,
    /// The config fingerprint's MAC key.
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "KeyRing {{ keys: {ids:?} }}")
    }
}

fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| VaultError::Random)?;
    Ok(b)
}

fn key_id() -> Result<String, VaultError> {
    Ok(random::<4>()?.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

impl KeyRing {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(KEY_FILE)
    }

    /// A new ring with one key.
    pub fn generate() -> Result<KeyRing, VaultError> {
        Ok(KeyRing {
            keys: vec![(key_id()?, random()?)],
            fingerprint: random()?,
        })
    }

    /// Reads the key file; refuses one others can read.
    pub fn load(path: &Path) -> Result<KeyRing, VaultError> {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(path).map_err(|_| VaultError::NoKeyFile(path.to_path_buf()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(VaultError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| VaultError::BadKeyFile {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        Self::parse(&text).map_err(|problem| VaultError::BadKeyFile {
            path: path.to_path_buf(),
            problem,
        })
    }

    fn parse(text: &str) -> Result<KeyRing, String> {
        let mut keys = Vec::new();
        let mut fingerprint = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || {
                format!(
                    "line {} is not \"key ID BASE64\" or \"fingerprint BASE64\"",
                    n + 1
                )
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            let decode = |b: &str| -> Result<[u8; 32], String> {
                URL_SAFE_NO_PAD
                    .decode(b)
                    .ok()
                    .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                    .ok_or_else(bad)
            };
            match parts.as_slice() {
                ["key", id, b] => keys.push((id.to_string(), decode(b)?)),
                ["fingerprint", b] => fingerprint = Some(decode(b)?),
                _ => return Err(bad()),
            }
        }
        match (keys.is_empty(), fingerprint) {
            (false, Some(fingerprint)) => Ok(KeyRing { keys, fingerprint }),
            _ => Err("it holds no key or no fingerprint key".to_string()),
        }
    }

    fn render(&self) -> String {
        let mut out = format!("{HEADER}\n");
        for (id, k) in &self.keys {
            let _ = writeln!(out, "key {id} {}", URL_SAFE_NO_PAD.encode(k));
        }
        let _ = writeln!(
            out,
            "fingerprint {}",
            URL_SAFE_NO_PAD.encode(self.fingerprint)
        );
        out
    }

    /// Writes the key file atomically, 0600 when new, and keeping the owner, group and mode of
    /// the file it replaces (run as root on the packaged layout, the service must still read it).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::files::replace(path, self.render().as_bytes(), 0o600)
    }

    /// The key file's ring, made (and saved) when there is none.
    pub fn load_or_create(path: &Path) -> Result<KeyRing, String> {
        match KeyRing::load(path) {
            Ok(r) => Ok(r),
            Err(VaultError::NoKeyFile(_)) => {
                let r = KeyRing::generate().map_err(|e| e.to_string())?;
                r.save(path)
                    .map_err(|e| format!("cannot write the key file {}: {e}", path.display()))?;
                Ok(r)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn current_id(&self) -> &str {
        self.keys.first().map_or("", |(id, _)| id.as_str())
    }

    /// A new current key; the old ones stay until [`KeyRing::keep_only_current`].
    pub fn add_key(&mut self) -> Result<(), VaultError> {
        self.keys.insert(0, (key_id()?, random()?));
        Ok(())
    }

    pub fn keep_only_current(&mut self) {
        self.keys.truncate(1);
    }

    pub fn fingerprint_key(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Seals `plaintext` for `aad` with the current key.
    pub fn seal(&self, plaintext: &str, aad: &str) -> Result<String, VaultError> {
        let (id, key) = self.keys.first().ok_or(VaultError::Malformed)?;
        let key = LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, key).map_err(|_| VaultError::Malformed)?,
        );
        let nonce_bytes: [u8; NONCE_LEN] = random()?;
        let mut data = plaintext.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad.as_bytes()),
            &mut data,
        )
        .map_err(|_| VaultError::Malformed)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{PREFIX}{id}:{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens an `enc:v1:` value made for `aad`.
    pub fn open(&self, value: &str, aad: &str) -> Result<Secret, VaultError> {
        let rest = value
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(VaultError::Malformed)?;
        let (id, data) = rest.split_once(':').ok_or(VaultError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, k)| k)
            .ok_or_else(|| VaultError::UnknownKey(id.to_string()))?;
        let mut data = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| VaultError::Malformed)?;
        if data.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(VaultError::Malformed);
        }
        let nonce = Nonce::try_assume_unique_for_key(&data[..NONCE_LEN])
            .map_err(|_| VaultError::Malformed)?;
        let key = LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, key).map_err(|_| VaultError::Malformed)?,
        );
        let mut sealed = data.split_off(NONCE_LEN);
        let plain = key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut sealed)
            .map_err(|_| VaultError::Tampered(id.to_string()))?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Malformed)?;
        zeroize::Zeroize::zeroize(&mut sealed);
        Ok(Secret::new(text))
    }
}

/// HMAC-SHA256 of `data` under the fingerprint key: a digest of passwords that is no offline
/// guessing oracle without the key file.
pub fn mac(key: &[u8; 32], data: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data)
        .as_ref()
        .iter()
        .take(12)
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_where_it_was_made_for() {
        let ring = KeyRing::generate().expect("ring");
        let here = aad("mailbox:alice@example.com", "password");
        let v = ring.seal("hunter2", &here).expect("seal");
        assert!(v.starts_with("enc:v1:"));
        assert!(!v.contains("hunter2"));
        assert_eq!(ring.open(&v, &here).expect("open").expose(), "hunter2");
        let moved = aad("mailbox:bob@example.com", "password");
        assert!(matches!(
            ring.open(&v, &moved),
            Err(VaultError::Tampered(_))
        ));
        // One changed character anywhere in the data is refused.
        let mut bad = v.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).expect("utf-8");
        assert!(ring.open(&bad, &here).is_err());
        assert_eq!(
            ring.open("enc:v1:zz", &here).err(),
            Some(VaultError::Malformed)
        );
        let other = KeyRing::generate().expect("ring");
        assert!(matches!(
            other.open(&v, &here),
            Err(VaultError::UnknownKey(_))
        ));
        assert_ne!(
            ring.seal("hunter2", &here).expect("seal"),
            v,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn the_key_file_round_trips_and_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = KeyRing::path(dir.path());
        assert!(matches!(
            KeyRing::load(&path),
            Err(VaultError::NoKeyFile(_))
        ));
        let ring = KeyRing::load_or_create(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let v = ring.seal("s3cret", "a").expect("seal");
        let again = KeyRing::load(&path).expect("load");
        assert_eq!(again.open(&v, "a").expect("open").expose(), "s3cret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = KeyRing::load(&path).expect_err("exposed");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(KeyRing::parse("key x notbase64\nfingerprint y\n").is_err());
    }

    #[test]
    fn rotation_keeps_old_values_readable_until_the_old_key_goes() {
        let mut ring = KeyRing::generate().expect("ring");
        let old = ring.seal("pw", "a").expect("seal");
        let fp = *ring.fingerprint_key();
        ring.add_key().expect("add");
        assert_eq!(ring.open(&old, "a").expect("old opens").expose(), "pw");
        let new = ring.seal("pw", "a").expect("seal");
        assert!(new.contains(ring.current_id()));
        ring.keep_only_current();
        assert!(ring.open(&old, "a").is_err());
        assert_eq!(ring.open(&new, "a").expect("new opens").expose(), "pw");
        assert_eq!(ring.fingerprint_key(), &fp, "the fingerprint key stays");
    }
}
