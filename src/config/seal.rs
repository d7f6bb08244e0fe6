//! `sidesync secret encrypt` and `sidesync secret rotate`: sealed (`enc:v1`) values in the config
//! file. Both read the file loosely (only what they need), so an admin moving from plaintext can
//! seal values before the config would load.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::RawConfig;
use crate::vault::{KeyRing, PREFIX, aad};

/// What a sealed value belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealScope {
    Mailbox(String),
    Profile(String),
    AlertSmtp,
    Webhook(String),
}

impl SealScope {
    fn scope(&self) -> String {
        match self {
            SealScope::Mailbox(a) => format!("mailbox:{}", a.trim().to_ascii_lowercase()),
            SealScope::Profile(p) => format!("profile:{}", p.trim()),
            SealScope::AlertSmtp => "appliance:alert_smtp".to_string(),
            SealScope::Webhook(w) => format!("webhook:{}", w.trim()),
        }
    }
}

fn read(path: &Path) -> Result<(String, RawConfig), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the config file: {e}", path.display()))?;
    let raw: RawConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((text, raw))
}

/// The data folder the config names (where the key file lives).
fn data_dir(path: &Path, raw: &RawConfig) -> PathBuf {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    match raw.appliance.as_ref().and_then(|a| a.data_dir.as_ref()) {
        Some(d) if Path::new(d.get_ref()).is_absolute() => PathBuf::from(d.get_ref()),
        Some(d) => base.join(d.get_ref()),
        None => PathBuf::from("/var/lib/sidesync"),
    }
}

/// Seals `plaintext` as `field` of `scope` (which must exist in the config), with the key file of
/// the config's data folder (made when missing). Returns the `enc:v1` value to paste.
pub fn encrypt(
    path: &Path,
    scope: &SealScope,
    field: &str,
    plaintext: &str,
) -> Result<String, String> {
    let (_, raw) = read(path)?;
    let known = match scope {
        SealScope::Mailbox(a) => raw.mailbox.iter().any(|m| {
            m.email_address
                .get_ref()
                .trim()
                .eq_ignore_ascii_case(a.trim())
        }),
        SealScope::Profile(p) => raw
            .profile
            .iter()
            .any(|q| q.name.get_ref().trim() == p.trim()),
        SealScope::AlertSmtp => raw
            .appliance
            .as_ref()
            .is_some_and(|a| a.alert_smtp.is_some()),
        SealScope::Webhook(w) => raw
            .webhook
            .iter()
            .any(|h| h.name.get_ref().trim() == w.trim()),
    };
    if !known {
        return Err(format!("{} has no {}", path.display(), scope.scope()));
    }
    let allowed: &[&str] = match scope {
        SealScope::Mailbox(_) => &["password", "refresh_token"],
        SealScope::Profile(_) => &[
            "incoming_password",
            "outgoing_password",
            "oauth_client_secret",
        ],
        SealScope::AlertSmtp => &["alert_smtp.password"],
        SealScope::Webhook(_) => &["secret"],
    };
    if !allowed.contains(&field) {
        return Err(format!(
            "the field of {} is one of {}",
            scope.scope(),
            allowed.join(", ")
        ));
    }
    let ring = KeyRing::load_or_create(&KeyRing::path(&data_dir(path, &raw)))?;
    ring.seal(plaintext, &aad(&scope.scope(), field))
        .map_err(|e| e.to_string())
}

/// Every sealed value of the config: (where in the text, its associated data, the value).
fn sealed_values(raw: &RawConfig) -> Vec<(std::ops::Range<usize>, String, String)> {
    let mut out = Vec::new();
    let mut take = |v: Option<&Spanned<String>>, scope: String, field: &str| {
        if let Some(v) = v
            && v.get_ref().trim_start().starts_with(PREFIX)
        {
            out.push((v.span(), aad(&scope, field), v.get_ref().clone()));
        }
    };
    for m in &raw.mailbox {
        let scope = SealScope::Mailbox(m.email_address.get_ref().clone()).scope();
        take(m.password.as_ref(), scope.clone(), "password");
        take(m.refresh_token.as_ref(), scope, "refresh_token");
    }
    for p in &raw.profile {
        let scope = SealScope::Profile(p.name.get_ref().clone()).scope();
        take(
            p.incoming_password.as_ref(),
            scope.clone(),
            "incoming_password",
        );
        take(
            p.outgoing_password.as_ref(),
            scope.clone(),
            "outgoing_password",
        );
        take(p.oauth_client_secret.as_ref(), scope, "oauth_client_secret");
    }
    for w in &raw.webhook {
        let scope = SealScope::Webhook(w.name.get_ref().clone()).scope();
        take(w.secret.as_ref(), scope, "secret");
    }
    if let Some(a) = raw.appliance.as_ref().and_then(|a| a.alert_smtp.as_ref()) {
        take(
            a.get_ref().password.as_ref(),
            SealScope::AlertSmtp.scope(),
            "alert_smtp.password",
        );
    }
    out
}

/// Debug builds only: `SIDESYNC_TEST_ROTATE_STOP=N` ends a rotation right after step N, so the
/// tests can show that an interrupted rotation leaves every value readable.
fn stop_after(step: u32) -> bool {
    #[cfg(debug_assertions)]
    {
        std::env::var("SIDESYNC_TEST_ROTATE_STOP")
            .ok()
            .and_then(|v| v.parse().ok())
            == Some(step)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = step;
        false
    }
}

/// Re-seals every `enc:v1` value of the config under a new key: all or none. Every value is
/// opened and re-sealed in memory first (one that does not open stops it, nothing written);
/// then (1) the new key joins the key file, (2) the config is replaced atomically, (3) the old
/// keys leave the key file. Stopped after any step, every value still opens. Returns how many
/// values were re-sealed.
pub fn rotate(path: &Path) -> Result<usize, String> {
    let (text, raw) = read(path)?;
    let key_path = KeyRing::path(&data_dir(path, &raw));
    let mut ring = KeyRing::load(&key_path).map_err(|e| e.to_string())?;
    let values = sealed_values(&raw);
    let mut next = ring.clone();
    next.add_key().map_err(|e| e.to_string())?;
    // Rotated OAuth refresh tokens are sealed in the store: they move to the new key too, in the
    // same all-or-none order. The store must be free (a running appliance owns it).
    let data = data_dir(path, &raw);
    let store = if data.join(crate::store::STORE_FILE).exists() {
        match crate::store::Store::open(&data) {
            Ok(s) => Some(s),
            Err(crate::store::StoreError::Open {
                source: redb::DatabaseError::DatabaseAlreadyOpen,
                ..
            }) => {
                return Err(format!(
                    "{}: nothing rotated: the store is in use by a running sidesync, and it may                      hold sealed OAuth refresh tokens; stop it (systemctl stop sidesync), rotate,                      start it again",
                    path.display()
                ));
            }
            Err(e) => return Err(format!("nothing rotated: {e}")),
        }
    } else {
        None
    };
    let mut replaced = text.clone();
    // From the end, so earlier spans stay valid.
    let mut ordered = values.clone();
    ordered.sort_by_key(|(span, _, _)| std::cmp::Reverse(span.start));
    for (span, aad, value) in &ordered {
        let secret = ring
            .open(value, aad)
            .map_err(|e| format!("{}: nothing rotated: a value of {aad} {e}", path.display()))?;
        let sealed = next.seal(secret.expose(), aad).map_err(|e| e.to_string())?;
        replaced.replace_range(span.clone(), &format!("\"{sealed}\""));
    }
    // Step 1: both keys in the file.
    next.save(&key_path)
        .map_err(|e| format!("cannot write the key file {}: {e}", key_path.display()))?;
    if stop_after(1) {
        return Ok(0);
    }
    // Step 2: the config, replaced whole (same owner, group and mode).
    write_atomically(path, &replaced)?;
    if stop_after(2) {
        return Ok(0);
    }
    // Step 2b: the store's sealed tokens, re-sealed in one transaction (both keys still open).
    if let Some(store) = &store {
        store.rewrite_oauth_tokens(|mailbox, record| {
            let mut v: serde_json::Value = serde_json::from_slice(record)
                .map_err(|e| format!("an OAuth token record of {mailbox} is not JSON: {e}"))?;
            let aad = crate::oauth::rotated_token_aad(mailbox);
            let sealed = v["sealed"].as_str().unwrap_or("");
            let token = next
                .open(sealed, &aad)
                .map_err(|e| format!("nothing more rotated: the token of {mailbox} {e}"))?;
            v["sealed"] = serde_json::Value::from(
                next.seal(token.expose(), &aad).map_err(|e| e.to_string())?,
            );
            serde_json::to_vec(&v).map_err(|e| e.to_string())
        })?;
    }
    drop(store);
    // Step 3: the old keys go.
    ring = next;
    ring.keep_only_current();
    ring.save(&key_path)
        .map_err(|e| format!("cannot write the key file {}: {e}", key_path.display()))?;
    Ok(values.len())
}

/// The config replaced whole, with its owner, group and mode kept ([`crate::files::replace`]).
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    crate::files::replace(path, text.as_bytes(), 0o600)
        .map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// Opens (or makes) the key file in the data folder and keys the config fingerprints with it;
/// says what the config's secrets need attention for.
pub fn key_fingerprints(config: &mut super::Config) -> Result<(), String> {
    let path = crate::vault::KeyRing::path(&config.appliance.data_dir);
    let ring = crate::vault::KeyRing::load_or_create(&path)?;
    config.key_fingerprints(ring.fingerprint_key());
    for (what, why) in config.unreadable_secrets() {
        tracing::error!(mailbox = %what, "{why}; it is not processed");
    }
    if config.appliance.allow_plaintext_passwords {
        tracing::warn!(
            "allow_plaintext_passwords = true: passwords may sit in clear in the config file; \
             prefer *_file, *_env, *_credential or enc:v1 values (sidesync secret encrypt)"
        );
    }
    Ok(())
}
