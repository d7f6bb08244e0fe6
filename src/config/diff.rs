//! What a reload changes: which mailboxes are added, removed, changed (they restart) or unchanged
//! (they keep their connections and state), and which settings cannot change while running.
//! Pure: the running appliance applies what this says.

use std::collections::BTreeSet;

use super::{Config, Mailbox};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigDiff {
    pub added: BTreeSet<String>,
    pub removed: BTreeSet<String>,
    /// Their own settings or their profile's changed: their jobs restart under the new ones.
    pub changed: BTreeSet<String>,
    pub unchanged: usize,
    /// `[appliance]` settings read only at start (the listener): they wait for a restart.
    pub at_restart: Vec<&'static str>,
}

/// Why a new config cannot replace the running one at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedReload {
    #[error(
        "data_dir changed from {old} to {new}: the store cannot move while running; restart to use it"
    )]
    DataDir { old: String, new: String },
}

/// Everything that decides how a mailbox runs, as text: its settings and its profile's, with the
/// password entering only through the keyed fingerprint (a `Secret` prints as stars).
fn settings(config: &Config, m: &Mailbox) -> String {
    format!("{m:?}|{:?}", config.mailbox_profile(m))
}

pub fn diff(old: &Config, new: &Config) -> Result<ConfigDiff, RefusedReload> {
    if old.appliance.data_dir != new.appliance.data_dir {
        return Err(RefusedReload::DataDir {
            old: old.appliance.data_dir.display().to_string(),
            new: new.appliance.data_dir.display().to_string(),
        });
    }
    let mut d = ConfigDiff::default();
    for m in &new.mailboxes {
        match old.mailbox(&m.email_address) {
            None => {
                d.added.insert(m.email_address.clone());
            }
            Some(o) if settings(old, o) != settings(new, m) => {
                d.changed.insert(m.email_address.clone());
            }
            Some(_) => d.unchanged += 1,
        }
    }
    for m in &old.mailboxes {
        if new.mailbox(&m.email_address).is_none() {
            d.removed.insert(m.email_address.clone());
        }
    }
    let (a, b) = (&old.appliance, &new.appliance);
    if a.status_listen != b.status_listen {
        d.at_restart.push("status_listen");
    }
    if a.status_body_timeout != b.status_body_timeout {
        d.at_restart.push("status_body_timeout");
    }
    if a.status_allowed_hosts != b.status_allowed_hosts {
        d.at_restart.push("status_allowed_hosts");
    }
    if format!("{:?}", a.status_tls) != format!("{:?}", b.status_tls) {
        d.at_restart.push("status_tls_cert/status_tls_key");
    }
    if a.max_bytes_in_flight != b.max_bytes_in_flight {
        d.at_restart.push("max_bytes_in_flight");
    }
    if a.store_cache_bytes != b.store_cache_bytes {
        d.at_restart.push("store_cache_bytes");
    }
    if a.store_compression_level != b.store_compression_level {
        d.at_restart.push("store_compression_level");
    }
    if webhook_settings(old) != webhook_settings(new) {
        d.at_restart.push("webhook");
    }
    Ok(d)
}

/// Everything a webhook is configured with, its secret included (Debug masks secrets).
fn webhook_settings(c: &Config) -> Vec<String> {
    c.webhooks
        .iter()
        .map(|w| {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(w.secret.expose().as_bytes());
            format!("{w:?}|{digest:x}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::parse_allowing_plaintext(Path::new("/etc/sidesync/sidesync.toml"), text)
            .expect("config")
    }

    const BASE: &str = "[appliance]\ndata_dir = \"/var/lib/sidesync\"\n\
        [[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"imap.example.com\"\n\
        [[profile]]\nname = \"q\"\nincoming_server_location = \"imap.example.org\"\n";

    fn mailbox(address: &str, extra: &str) -> String {
        format!("[[mailbox]]\nemail_address = \"{address}\"\npassword = \"pw\"\n{extra}\n")
    }

    #[test]
    fn added_removed_changed_and_unchanged_mailboxes() {
        let old = config(&format!(
            "{BASE}{}{}{}{}",
            mailbox("a@x.example", ""),
            mailbox("b@x.example", ""),
            mailbox("c@x.example", ""),
            mailbox("d@x.example", "profile = \"q\"")
        ));
        let new = config(&format!(
            "{BASE}{}{}{}{}",
            mailbox("a@x.example", ""),
            mailbox("b@x.example", "track = \"all\""),
            mailbox("e@x.example", ""),
            mailbox("d@x.example", "profile = \"q\"")
        ));
        let d = diff(&old, &new).expect("diff");
        assert_eq!(d.added, ["e@x.example".to_string()].into());
        assert_eq!(d.removed, ["c@x.example".to_string()].into());
        assert_eq!(d.changed, ["b@x.example".to_string()].into());
        assert_eq!(d.unchanged, 2);
        assert!(d.at_restart.is_empty());
    }

    #[test]
    fn a_profile_change_changes_its_mailboxes_only() {
        let old = config(&format!(
            "{BASE}{}{}",
            mailbox("a@x.example", ""),
            mailbox("d@x.example", "profile = \"q\"")
        ));
        let new_base = BASE.replace("imap.example.org", "imap2.example.org");
        let new = config(&format!(
            "{new_base}{}{}",
            mailbox("a@x.example", ""),
            mailbox("d@x.example", "profile = \"q\"")
        ));
        let d = diff(&old, &new).expect("diff");
        assert_eq!(d.changed, ["d@x.example".to_string()].into());
        assert_eq!(d.unchanged, 1);
    }

    #[test]
    fn a_new_password_is_a_change_through_the_keyed_fingerprint() {
        let mut old = config(&format!("{BASE}{}", mailbox("a@x.example", "")));
        let mut new = config(
            &format!("{BASE}{}", mailbox("a@x.example", ""))
                .replace("password = \"pw\"", "password = \"other\""),
        );
        let key = [7u8; 32];
        old.key_fingerprints(&key);
        new.key_fingerprints(&key);
        let d = diff(&old, &new).expect("diff");
        assert_eq!(d.changed, ["a@x.example".to_string()].into());
    }

    #[test]
    fn the_listener_waits_for_a_restart_and_the_store_cannot_move() {
        let old = config(BASE);
        let new = config(&BASE.replace(
            "[appliance]\n",
            "[appliance]\nstatus_listen = \"127.0.0.1:9999\"\n",
        ));
        assert_eq!(
            diff(&old, &new).expect("diff").at_restart,
            vec!["status_listen"]
        );
        let moved = config(&BASE.replace("/var/lib/sidesync", "/srv/sidesync"));
        let e = diff(&old, &moved).expect_err("refused");
        assert!(e.to_string().contains("data_dir changed"), "{e}");
    }
}
