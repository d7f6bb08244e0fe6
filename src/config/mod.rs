//! Configuration: the TOML file, its validation, and the typed model the engine runs on.
//!
//! Validation is pure (text in, model or mistakes out) so that every rule is unit-tested; the only
//! I/O is reading the file itself and the password/CA files it names.

mod automatic;
mod control;
pub mod diff;
mod duration;
mod follow;
mod one_line;
mod pin;
mod raw;
pub mod reference;
pub mod seal;
mod sent;
pub mod shard;
pub mod webhook;

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use toml::Spanned;

pub use duration::parse_duration;
use raw::{RawConfig, RawDuration, RawMailbox, RawProfile};
pub use webhook::Webhook;

use crate::secret::Secret;
use crate::tracking::automatic::AutomaticSet;
use crate::tracking::decision::{Correlation, Directory, MailboxInfo, Track};

/// Seed limits (Dynamics): connection timeout at most 100,000 ms; 1–300 connections; polling 0–1440 min.
pub const MAX_CONNECTION_TIMEOUT: Duration = Duration::from_secs(100);
pub const MAX_POLLING_INTERVAL: Duration = Duration::from_secs(1440 * 60);
pub const MAX_CONCURRENT_CONNECTIONS: u32 = 300;

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub appliance: Appliance,
    pub profiles: Vec<Profile>,
    /// The mailboxes this appliance processes (with `shard`: those it owns).
    pub mailboxes: Vec<Mailbox>,
    /// With `shard`: the mailboxes other shards own (still known to the tracking decision).
    pub skipped: Vec<Mailbox>,
    pub webhooks: Vec<Webhook>,
    /// Position of each mailbox in `mailboxes` by address: lookups at 100,000 mailboxes.
    by_address: std::collections::HashMap<String, usize>,
}

#[derive(Debug, Clone)]
pub struct Appliance {
    pub data_dir: PathBuf,
    pub status_listen: SocketAddr,
    /// Host header names the status listener answers to (DNS rebinding); empty: any.
    pub status_allowed_hosts: Vec<String>,
    /// What members of these groups may do over the control socket (`control_groups`); root
    /// and the service's own user are admins, any other member of the socket's group reads.
    pub control_groups: Vec<(String, TokenScope)>,
    /// `/`, `/status` and `/metrics` without the token from other hosts than loopback.
    pub status_public: bool,
    /// A request body must reach the front whole within this (else 408): no client holds an
    /// HTTP worker, and none holds the front's memory for long.
    pub status_body_timeout: Duration,
    pub process_unapproved_mailboxes: bool,
    /// How many mailbox syncs may run at once across the appliance (each holds one connection).
    pub max_concurrent_syncs: usize,
    /// Connections open at once across the appliance (syncs, IDLE, kept sessions, SMTP); None:
    /// sized from the file limit and memory (`engine::limits::default_max_connections`).
    pub max_connections: Option<usize>,
    /// Of those, connections held open while idle (IDLE, sessions kept between polls); None:
    /// half of `max_connections`, at most 1,000.
    pub max_idle_connections: Option<usize>,
    /// Messages fetched per IMAP FETCH command and handed to the store writer as one batch.
    pub fetch_batch_size: u32,
    /// A batch is also cut when its raw bytes reach this size, bounding memory per sync.
    pub fetch_batch_bytes: usize,
    /// An alert is raised when a folder's UIDVALIDITY changed this many times.
    pub uidvalidity_alert_after_changes: u32,
    /// Wait before retrying a mailbox whose sync failed with a transient error.
    pub retry_interval: Duration,
    /// Transient failures in a row after which the error counts as permanent (Dynamics: 10).
    pub transient_failure_retries: u32,
    /// Alerts older than this are dropped.
    pub alert_retention: Duration,
    /// The API's bearer token; `None` leaves the API off.
    pub api_token: Option<Secret>,
    /// Every API token with its name and scope: `api_token_file`'s is "admin", scope admin.
    pub api_tokens: Vec<ApiToken>,
    /// A1: serve the status listener over HTTPS with this certificate chain and key (PEM).
    pub status_tls: Option<StatusTls>,
    pub alert_smtp: Option<AlertSmtp>,
    /// O4: the token added to the subject of sent email; `None` = off.
    pub tracking_token: Option<crate::tracking::token::TokenFormat>,
    /// I6: which correlation steps run (the token step reads the token format above, or the
    /// default one when sending tokens is off).
    pub correlation: crate::tracking::decision::Correlation,
    /// Known contacts loaded at start (CSV `address,record` or JSON `{"address": ["record"]}`).
    pub contacts_file: Option<PathBuf>,
    /// O2: first retry wait of a queued email after a transient failure (doubling, with jitter).
    pub outbox_retry_interval: Duration,
    pub outbox_max_retry_interval: Duration,
    pub outbox_max_tries: u32,
    /// An SMTP connection with nothing to send is closed after this long (O3).
    pub smtp_idle_timeout: Duration,
    /// Raw email bytes being fetched across all mailboxes at once; a batch waits for room.
    pub max_bytes_in_flight: u64,
    /// The store's page cache (redb), bytes: what of the store stays in memory.
    pub store_cache_bytes: u64,
    /// zstd's level for the text of stored emails (headers and text parts): disk against CPU.
    pub store_compression_level: i32,
    /// Recipients (To, Cc and Bcc together) one queued email may have.
    pub outbox_max_recipients: u32,
    /// Emails one mailbox may queue through the API per minute (0: no limit).
    pub outbox_max_per_minute: u32,
    /// A processed mailbox without a successful sync for this many polling intervals is stale
    /// (one warning alert); 0: never.
    pub stale_after_polls: u32,
    /// Tries of an email that fails to be stored (a poison email) before it is skipped.
    pub item_failure_max_tries: u32,
    /// Item failures (skipped or failing emails) are kept this long.
    pub item_failure_retention: Duration,
    /// Inline plaintext passwords are accepted (with a warning at each start).
    pub allow_plaintext_passwords: bool,
    /// Change feed events older than this go (once every webhook had them).
    pub event_retention: Duration,
    /// This appliance owns only the mailboxes of this shard (see `shard.rs`).
    pub shard: Option<shard::Shard>,
}

/// What an API token may do: `read` (GET), `send` (read, and queue email), `admin` (everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TokenScope {
    Read,
    Send,
    Admin,
}

impl TokenScope {
    /// The config's words for the scopes (`api_tokens.scope`, `control_groups`).
    pub(crate) const WORDS: [(&'static str, TokenScope); 3] = [
        ("read", TokenScope::Read),
        ("send", TokenScope::Send),
        ("admin", TokenScope::Admin),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Send => "send",
            TokenScope::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub scope: TokenScope,
    pub token: Secret,
}

#[derive(Debug, Clone)]
pub struct StatusTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The appliance's own way out for alert emails (`[appliance.alert_smtp]`).
#[derive(Debug, Clone)]
pub struct AlertSmtp {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub auth: AuthProtocol,
    pub ca_file: Option<PathBuf>,
    pub from: String,
    pub login: Option<(String, Secret)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerType {
    ImapSmtp,
    Pop3Smtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Implicit,
    StartTls,
    /// Plaintext: only when the config says `tls = "none"`.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    Auto,
    Plain,
    Login,
    /// Bearer tokens (OAuth 2.0): Google's and Microsoft's SASL mechanism.
    XOAuth2,
    /// Bearer tokens (OAuth 2.0): RFC 7628.
    OAuthBearer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
    Smtp,
}

/// One direction's server settings.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub auth: AuthProtocol,
    pub credentials: CredentialSource,
}

/// "Credentials specified by a user or queue" or "credentials specified in email server profile".
#[derive(Debug, Clone)]
pub enum CredentialSource {
    Mailbox,
    Profile { username: String, password: Secret },
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: Option<String>,
    pub server_type: ServerType,
    pub is_default: bool,
    pub active: bool,
    pub owner_email: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub incoming: Endpoint,
    pub outgoing: Option<Endpoint>,
    pub process_emails_received_after: Option<DateTime<Utc>>,
    pub min_polling_interval: Duration,
    pub max_concurrent_connections: u32,
    /// Connections at once to this profile's servers (each host and port), all mailboxes and
    /// profiles together (the smallest cap of the profiles sharing a server); None: no cap but
    /// the appliance's.
    pub max_connections_per_server: Option<u32>,
    pub timeout_mailbox_connection_after: Duration,
    pub move_undelivered_emails: bool,
    pub send_alert_email: bool,
    /// IMAP IDLE on each processed mailbox's INBOX and tracking folders where the server offers
    /// it: a new email wakes the mailbox's sync at once (polling goes on beside it).
    pub idle: bool,
    /// Cheap polls: keep each mailbox's IMAP session open between polls (within the idle
    /// budget). A password changed on the server is then noticed at the next login, at most 25
    /// minutes on.
    pub keep_sessions_open: bool,
    /// O5: APPEND a copy of each sent email to `sent_folder` over IMAP.
    pub save_sent_copy: bool,
    pub sent_folder: String,
    /// `sent_folder` is in the config (not the default): with `track_sent` it is the folder
    /// read, without looking for the server's Sent folder.
    pub sent_folder_named: bool,
    /// The default `track_sent` of its mailboxes; None when it says nothing.
    pub track_sent: Option<bool>,
    /// How its mailboxes follow changes on the server after ingest (`follow_server_changes`).
    pub follow_server_changes: crate::tracking::server_state::FollowMode,
    /// How often flags are compared in full where CONDSTORE is not used; None: never.
    pub flags_compare_every: Option<Duration>,
    /// POP3: delete a message from the server once it has been stored this many days (0: right
    /// after it is stored). `None` leaves messages on the server (I8).
    pub pop3_delete_after_days: Option<u32>,
    /// An email larger than this (as the server lists it) is not fetched: it is recorded as a
    /// skipped item with an alert.
    pub max_message_size: u64,
    /// A sync that commits no batch for this long is stopped and retried later: a server that
    /// drips bytes cannot hold a connection slot forever.
    pub sync_deadline: Duration,
    /// Trust exactly the server certificate with this SHA-256 (self-signed servers), instead of
    /// authorities.
    pub tls_pin_sha256: Option<[u8; 32]>,
    /// A sealed password of the profile did not open: its mailboxes are not processed.
    pub secret_error: Option<String>,
    /// The default relevance filter of its mailboxes (else: users `responses`, queues `all`).
    pub track: Option<Track>,
    /// The automatic kinds its mailboxes skip, unless a mailbox names its own.
    pub skip_automatic: Option<AutomaticSet>,
    /// A mailbox with relevance on and no date takes this many days back at its first enable
    /// (0: everything).
    pub first_sync_days: u32,
    /// Bearer tokens instead of passwords (XOAUTH2 / OAUTHBEARER).
    pub oauth: Option<OAuth>,
}

/// How a profile's mailboxes get OAuth 2.0 access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthGrant {
    /// App-only: the profile's client id and secret, one token acting for every mailbox (the
    /// mailbox's address is the user in XOAUTH2/OAUTHBEARER), as Dynamics' server-to-server
    /// profile with Exchange Online.
    ClientCredentials,
    /// Delegated: each mailbox's own refresh token (rotated ones are kept in the store).
    RefreshToken,
    /// A service account acting as each mailbox (Google's domain-wide delegation, RFC 7523
    /// §2.1): its key signs a grant naming the mailbox; one token per mailbox.
    ServiceAccount,
}

/// A profile's OAuth 2.0 settings: its mailboxes log in with bearer tokens, not passwords.
#[derive(Debug, Clone)]
pub struct OAuth {
    /// `https://…/token` (Microsoft identity platform, Google, Keycloak, any RFC 6749 server).
    pub token_endpoint: String,
    pub grant: OAuthGrant,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Instead of a secret: the app's certificate and key sign a client assertion (RFC 7523).
    pub client_certificate: Option<std::sync::Arc<crate::oauth::assertion::ClientCertificate>>,
    pub scope: String,
    /// Trusted besides the system roots for the token endpoint (else the profile's `ca_file`).
    pub ca_file: Option<PathBuf>,
    /// When the client secret stops working (app registrations' secrets expire): a warning alert
    /// `expiry_warning_days` before.
    pub client_secret_expires: Option<DateTime<Utc>>,
    pub expiry_warning_days: u32,
}

/// A tracking folder and the record its emails are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingFolder {
    pub folder: String,
    pub regarding: Option<String>,
}

/// Dynamics allows this many tracking folders per mailbox.
pub const MAX_TRACKING_FOLDERS: usize = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerType {
    User,
    Queue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncomingDelivery {
    ServerSideSync,
    ForwardMailbox,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingDelivery {
    ServerSideSync,
    None,
}

/// "Email Address Status" in Dynamics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    Empty,
    Approved,
    PendingApproval,
    Rejected,
}

impl Approval {
    pub fn parse(word: &str) -> Option<Approval> {
        match word {
            "empty" => Some(Approval::Empty),
            "approved" => Some(Approval::Approved),
            "pending_approval" => Some(Approval::PendingApproval),
            "rejected" => Some(Approval::Rejected),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Empty => "empty",
            Approval::Approved => "approved",
            Approval::PendingApproval => "pending_approval",
            Approval::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Mailbox {
    /// Lower-cased; the mailbox's key everywhere (one mailbox per owner address).
    pub email_address: String,
    pub name: Option<String>,
    pub owner: OwnerType,
    /// The profile named, or the default profile; `None` when neither exists (the mailbox is not processed).
    pub profile: Option<String>,
    pub incoming_delivery: IncomingDelivery,
    pub outgoing_delivery: OutgoingDelivery,
    pub approval: Approval,
    pub active: bool,
    pub username: String,
    pub password: Option<Secret>,
    /// I1/I7: IMAP folders synced besides INBOX, always tracked, each about its record.
    pub tracking_folders: Vec<TrackingFolder>,
    /// I5: which emails of INBOX become activities.
    pub track: Track,
    /// The automatic kinds skipped whatever `track` says: its own, else its profile's, else none.
    pub skip_automatic: AutomaticSet,
    /// Its Sent folder is read too, its emails judged as outgoing by `track` (`config/sent.rs`).
    pub track_sent: bool,
    /// The Sent folder as its profile's `sent_folder` names it; None: found on the server.
    pub sent_folder: Option<String>,
    /// M6: this is a forward mailbox: each email in it is a forward from a user whose incoming
    /// delivery is "forward_mailbox", and what it carries is that user's email.
    pub forward_mailbox: bool,
    /// A forward mailbox deletes a forward from the server once what it carried is stored.
    pub process_and_delete_emails: bool,
    /// Its own "process email received after" (the later of this and the profile's applies).
    pub process_emails_received_after: Option<DateTime<Utc>>,
    /// Its OAuth refresh token (profiles with `oauth_grant = "refresh_token"`).
    pub refresh_token: Option<Secret>,
    /// When its refresh token stops working, if known: a warning alert before.
    pub refresh_token_expires: Option<DateTime<Utc>>,
    /// Its sealed password did not open (tampered, moved, or its key is gone): it is not
    /// processed, with this reason, until the config is fixed.
    pub secret_error: Option<String>,
    /// What the enablements of this mailbox were decided under (see [`fingerprint`]); set once the
    /// whole config is read.
    pub fingerprint: String,
}

impl Config {
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The mailbox with this (lower-case) address.
    pub fn mailbox(&self, address: &str) -> Option<&Mailbox> {
        self.by_address
            .get(address)
            .and_then(|&i| self.mailboxes.get(i))
            .filter(|m| m.email_address == address)
            // `mailboxes` is public: a list changed after loading is still searched right.
            .or_else(|| self.mailboxes.iter().find(|m| m.email_address == address))
    }

    fn index_mailboxes(&mut self) {
        self.by_address = self
            .mailboxes
            .iter()
            .enumerate()
            .map(|(i, m)| (m.email_address.clone(), i))
            .collect();
    }

    pub fn mailbox_profile(&self, mailbox: &Mailbox) -> Option<&Profile> {
        mailbox.profile.as_deref().and_then(|n| self.profile(n))
    }

    /// Recomputes every mailbox's fingerprint with the passwords' HMAC under `key` (the running
    /// appliance calls this once its key file is open).
    pub fn key_fingerprints(&mut self, key: &[u8; 32]) {
        let profiles = self.profiles.clone();
        for m in &mut self.mailboxes {
            let profile = m
                .profile
                .as_deref()
                .and_then(|n| profiles.iter().find(|p| p.name == n));
            m.fingerprint = fingerprint(profile, m, Some(key));
        }
    }

    /// Sealed passwords that did not open, by what they belong to (`mailbox:…`, `profile:…`).
    pub fn unreadable_secrets(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .mailboxes
            .iter()
            .filter_map(|m| m.secret_error.clone().map(|e| (m.email_address.clone(), e)))
            .collect();
        out.extend(self.profiles.iter().filter_map(|p| {
            p.secret_error
                .clone()
                .map(|e| (format!("profile {}", p.name), e))
        }));
        out.extend(self.webhooks.iter().filter_map(|w| {
            w.secret_error
                .clone()
                .map(|e| (format!("webhook {}", w.name), e))
        }));
        out
    }

    /// What the tracking decision knows of the config: every mailbox that receives email, with
    /// its filter, and the correlation steps.
    pub fn directory(&self) -> Directory {
        Directory {
            // Every mailbox of the config, other shards' too: who else tracks an email is the
            // same question on every shard.
            mailboxes: self
                .mailboxes
                .iter()
                .chain(&self.skipped)
                .filter(|m| {
                    m.active && m.incoming_delivery != IncomingDelivery::None && !m.forward_mailbox
                })
                .map(|m| {
                    (
                        m.email_address.clone(),
                        MailboxInfo {
                            queue: m.owner == OwnerType::Queue,
                            track: m.track,
                            skip_automatic: m.skip_automatic,
                        },
                    )
                })
                .collect(),
            correlation: self.appliance.correlation.clone(),
            forwarding: self
                .mailboxes
                .iter()
                .chain(&self.skipped)
                .filter(|m| m.active && m.incoming_delivery == IncomingDelivery::ForwardMailbox)
                .map(|m| m.email_address.clone())
                .collect(),
        }
    }

    /// Keeps the mailboxes `shard` owns (the config's `shard`, unless another is given) and sets
    /// the others apart in `skipped`.
    pub fn apply_shard(&mut self, over: Option<shard::Shard>) {
        if over.is_some() {
            self.appliance.shard = over;
        }
        let Some(s) = self.appliance.shard else {
            return;
        };
        let all = std::mem::take(&mut self.mailboxes);
        let (mine, others): (Vec<Mailbox>, Vec<Mailbox>) =
            all.into_iter().partition(|m| s.owns(&m.email_address));
        self.mailboxes = mine;
        self.skipped.extend(others);
        self.index_mailboxes();
    }

    /// The shard that owns a mailbox of the config another shard processes.
    pub fn owner_elsewhere(&self, address: &str) -> Option<shard::Shard> {
        let s = self.appliance.shard?;
        self.skipped
            .iter()
            .any(|m| m.email_address == address)
            .then(|| shard::Shard {
                index: shard::owner(address, s.count),
                count: s.count,
            })
    }

    /// Reads and validates a config file. Every mistake found is reported, each with its place.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            errors: vec![ConfigError {
                file: path.display().to_string(),
                line: 0,
                col: 0,
                message: format!("cannot read the config file: {e}"),
            }],
        })?;
        let mut config = Config::parse(path, &text)?;
        // One config for every shard: each is told its shard by `SIDESYNC_SHARD` (a
        // StatefulSet's pod index), or by the config's own `shard`.
        let over = match std::env::var("SIDESYNC_SHARD") {
            Ok(v) if !v.trim().is_empty() => {
                Some(shard::Shard::parse(&v).map_err(|message| ConfigErrors {
                    errors: vec![ConfigError {
                        file: "SIDESYNC_SHARD".into(),
                        line: 0,
                        col: 0,
                        message,
                    }],
                })?)
            }
            _ => None,
        };
        config.apply_shard(over);
        Ok(config)
    }

    /// Only where the data folder is (the operator commands need no more: the control socket is
    /// there), without checking the rest — secrets that only the service can open included.
    pub fn data_dir_of(path: &Path) -> Result<PathBuf, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the config file: {e}", path.display()))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| format!("{}: not a valid config: {}", path.display(), e.message()))?;
        let dir = match table.get("appliance").and_then(|a| a.get("data_dir")) {
            None => return Ok(PathBuf::from("/var/lib/sidesync")),
            Some(toml::Value::String(d)) => PathBuf::from(d),
            Some(_) => {
                return Err(format!(
                    "{}: [appliance] data_dir must be a string",
                    path.display()
                ));
            }
        };
        Ok(if dir.is_absolute() {
            dir
        } else {
            path.parent().unwrap_or(Path::new(".")).join(dir)
        })
    }

    /// Validates config text; `path` names the file in messages and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        Config::parse_with(path, text, false)
    }

    /// For unit tests elsewhere in the crate: [`Config::parse`] accepting inline plaintext.
    #[cfg(test)]
    pub(crate) fn parse_allowing_plaintext(
        path: &Path,
        text: &str,
    ) -> Result<Config, ConfigErrors> {
        Config::parse_with(path, text, true)
    }

    /// As [`Config::parse`]; `plaintext_ok` accepts inline plaintext passwords whatever the file
    /// says (the unit tests' configs are full of them).
    fn parse_with(path: &Path, text: &str, plaintext_ok: bool) -> Result<Config, ConfigErrors> {
        let mut v = Validator {
            plaintext_ok,
            file: path.display().to_string(),
            text,
            base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            errors: Vec::new(),
            data_dir: PathBuf::new(),
            keyring: None,
            allow_plaintext: false,
            scope: String::new(),
            unreadable: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                v.error(e.span(), e.message().trim().to_string());
                return Err(v.finish());
            }
        };
        let config = v.config(path, raw);
        if v.errors.is_empty() {
            Ok(config)
        } else {
            Err(v.finish())
        }
    }
}

/// One mistake in the config file, printed as `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // Not about a place in the file (it could not be read at all).
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.col, self.message
            )
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

struct Validator<'a> {
    file: String,
    text: &'a str,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
    /// Where `enc:v1` values find their key file; set once `[appliance]` is read.
    data_dir: PathBuf,
    keyring: Option<Result<crate::vault::KeyRing, String>>,
    allow_plaintext: bool,
    plaintext_ok: bool,
    /// What the value being read belongs to (`mailbox:ADDRESS`, `profile:NAME`, `appliance`).
    scope: String,
    /// `enc:v1` values that did not open, by scope: only what they belong to stops.
    unreadable: Vec<(String, String)>,
}

/// The ways one secret can be given.
#[derive(Default)]
struct SecretFields<'a> {
    inline: Option<&'a Spanned<String>>,
    file: Option<&'a Spanned<String>>,
    env: Option<&'a Spanned<String>>,
    credential: Option<&'a Spanned<String>>,
}

impl Validator<'_> {
    fn error(&mut self, span: Option<Range<usize>>, message: String) {
        let (line, col) = span.map(|s| line_col(self.text, s.start)).unwrap_or((1, 1));
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            col,
            message,
        });
    }

    fn at<T>(&mut self, value: &Spanned<T>, message: String) {
        self.error(Some(value.span()), message);
    }

    fn finish(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.col));
        ConfigErrors {
            errors: self.errors,
        }
    }

    /// Picks one of the allowed words, or records an error listing them.
    fn choice<T: Copy>(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: T,
        allowed: &[(&str, T)],
    ) -> T {
        let Some(value) = value else { return default };
        let word = value
            .get_ref()
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' '], "_");
        if let Some((_, t)) = allowed.iter().find(|(name, _)| *name == word) {
            return *t;
        }
        let names: Vec<String> = allowed.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        self.at(
            value,
            format!(
                "{key} = \"{}\" is not one of {}",
                value.get_ref(),
                names.join(", ")
            ),
        );
        default
    }

    /// A switch that only an IMAP profile may turn on: on for POP3 is an error (`why`).
    fn imap_only(
        &mut self,
        value: Option<&Spanned<bool>>,
        server_type: ServerType,
        why: &str,
    ) -> bool {
        match value {
            Some(v) if *v.get_ref() && server_type == ServerType::Pop3Smtp => {
                self.at(v, why.to_string());
                false
            }
            Some(v) => *v.get_ref(),
            None => false,
        }
    }

    fn int_in(
        &mut self,
        key: &str,
        value: Option<&Spanned<i64>>,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
    ) -> i64 {
        let Some(value) = value else { return default };
        let n = *value.get_ref();
        if range.contains(&n) {
            n
        } else {
            self.at(
                value,
                format!(
                    "{key} = {n} is out of range ({}–{})",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }

    fn duration(
        &mut self,
        key: &str,
        value: Option<&Spanned<RawDuration>>,
        default: Duration,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Duration {
        let (min, max) = (*range.start(), *range.end());
        let Some(value) = value else { return default };
        let parsed = match value.get_ref() {
            RawDuration::Seconds(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
            RawDuration::Seconds(n) => Err(format!("{n} is negative")),
            RawDuration::Text(t) => parse_duration(t),
        };
        match parsed {
            Ok(d) if d < min => {
                self.at(
                    value,
                    format!(
                        "{key} = {} makes no sense; it must be at least {}",
                        fmt_duration(d),
                        fmt_duration(min)
                    ),
                );
                default
            }
            Ok(d) if d <= max => d,
            Ok(d) => {
                self.at(
                    value,
                    format!(
                        "{key} = {} is over the upper limit of {} s",
                        fmt_duration(d),
                        max.as_secs()
                    ),
                );
                default
            }
            Err(e) => {
                self.at(value, format!("{key}: {e}"));
                default
            }
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }

    /// A file the appliance must read (CA file, password file): checked now, not at the first sync.
    fn readable_file(&mut self, key: &str, value: &Spanned<String>) -> Option<PathBuf> {
        let p = self.path(value.get_ref());
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => Some(p),
            Ok(_) => {
                self.at(value, format!("{key}: {} is not a file", p.display()));
                None
            }
            Err(e) => {
                self.at(value, format!("{key}: cannot read {}: {e}", p.display()));
                None
            }
        }
    }

    /// A file that holds a secret (a password, a private key): readable, and by its owner only.
    /// A secret others can read is no secret: refuse it, and say how to fix it.
    fn private_file(&mut self, key: &str, value: &Spanned<String>) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.readable_file(key, value)?;
        if let Ok(meta) = std::fs::metadata(&p)
            && meta.permissions().mode() & 0o077 != 0
        {
            self.at(
                value,
                format!(
                    "{key} {} can be read by others (mode {:o}); run chmod 600 on it",
                    p.display(),
                    meta.permissions().mode() & 0o777
                ),
            );
            return None;
        }
        Some(p)
    }

    /// A secret from exactly one of: inline (an `enc:v1` value, or plaintext when
    /// `allow_plaintext_passwords`), `KEY_file` (owner-only), `KEY_env`, `KEY_credential` (systemd's
    /// `$CREDENTIALS_DIRECTORY`). An `enc:v1` value that does not open is recorded against the
    /// current scope (that mailbox or profile stops), not as a config error.
    fn secret(&mut self, key: &str, f: SecretFields<'_>) -> Option<Secret> {
        let given = [f.inline, f.file, f.env, f.credential]
            .iter()
            .filter(|x| x.is_some())
            .count();
        if given > 1 {
            let at = f.inline.or(f.file).or(f.env).or(f.credential)?;
            self.at(
                at,
                format!("set only one of {key}, {key}_file, {key}_env, {key}_credential"),
            );
            return None;
        }
        if let Some(a) = f.inline {
            let v = a.get_ref();
            if v.trim_start().starts_with(crate::vault::PREFIX) {
                return self.open_sealed(key, a);
            }
            if !self.allow_plaintext {
                self.at(
                    a,
                    format!(
                        "{key} is plaintext in the config file; use {key}_file, {key}_env, \
                         {key}_credential or an enc:v1 value from `sidesync secret encrypt` (or set \
                         allow_plaintext_passwords = true in [appliance])"
                    ),
                );
                return None;
            }
            return Some(Secret::new(v.clone()));
        }
        if let Some(e) = f.env {
            let name = e.get_ref().trim();
            return match std::env::var(name) {
                Ok(v) if !v.is_empty() => Some(Secret::new(v)),
                _ => {
                    self.at(
                        e,
                        format!("{key}_env: the environment variable {name} is not set"),
                    );
                    None
                }
            };
        }
        if let Some(c) = f.credential {
            let name = c.get_ref().trim();
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                self.at(
                    c,
                    format!("{key}_credential: \"{name}\" is not a credential name"),
                );
                return None;
            }
            let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
                self.at(
                    c,
                    format!(
                        "{key}_credential: $CREDENTIALS_DIRECTORY is not set (systemd sets it for \
                         LoadCredential= and LoadCredentialEncrypted=)"
                    ),
                );
                return None;
            };
            let path = PathBuf::from(dir).join(name);
            return match std::fs::read_to_string(&path) {
                Ok(v) => Some(Secret::new(v.trim_end_matches(['\r', '\n']).to_string())),
                Err(e) => {
                    self.at(
                        c,
                        format!("{key}_credential: cannot read {}: {e}", path.display()),
                    );
                    None
                }
            };
        }
        let f = f.file?;
        let p = self.private_file(&format!("{key}_file"), f)?;
        match std::fs::read_to_string(&p) {
            Ok(s) => Some(Secret::new(s.trim_end_matches(['\r', '\n']).to_string())),
            Err(e) => {
                self.at(f, format!("{key}_file: cannot read {}: {e}", p.display()));
                None
            }
        }
    }

    /// Opens an `enc:v1` value with the key file in `data_dir`.
    fn open_sealed(&mut self, key: &str, a: &Spanned<String>) -> Option<Secret> {
        if self.keyring.is_none() {
            let path = crate::vault::KeyRing::path(&self.data_dir);
            self.keyring = Some(crate::vault::KeyRing::load(&path).map_err(|e| e.to_string()));
        }
        let aad = crate::vault::aad(&self.scope, key);
        let opened = match &self.keyring {
            Some(Ok(ring)) => ring.open(a.get_ref(), &aad).map_err(|e| e.to_string()),
            Some(Err(e)) => Err(e.clone()),
            None => Err("no key file".to_string()),
        };
        match opened {
            Ok(s) => Some(s),
            Err(e) => {
                let message = format!("{key} ({}) cannot be read: {e}", self.scope);
                self.unreadable.push((self.scope.clone(), message));
                None
            }
        }
    }

    fn config(&mut self, path: &Path, raw: RawConfig) -> Config {
        self.one_line_values(&raw);
        let raw_appliance = raw.appliance.unwrap_or_default();
        self.allow_plaintext =
            self.plaintext_ok || raw_appliance.allow_plaintext_passwords.unwrap_or(false);
        let appliance = self.appliance(raw_appliance);
        self.data_dir = appliance.data_dir.clone();
        let mut profiles: Vec<Profile> = Vec::new();
        for rp in &raw.profile {
            let p = self.profile(rp);
            if profiles.iter().any(|q| q.name == p.name) {
                self.at(
                    &rp.name,
                    format!("a profile named \"{}\" is already defined", p.name),
                );
            }
            profiles.push(p);
        }
        let defaults: Vec<&RawProfile> = raw
            .profile
            .iter()
            .filter(|p| p.is_default == Some(true))
            .collect();
        if let Some(second) = defaults.get(1) {
            self.at(
                &second.name,
                format!(
                    "profile \"{}\" is_default = true, but \"{}\" is already the default profile",
                    second.name.get_ref(),
                    defaults[0].name.get_ref()
                ),
            );
        }
        let default_profile = profiles
            .iter()
            .find(|p| p.is_default)
            .map(|p| p.name.clone());
        let mut mailboxes: Vec<Mailbox> = Vec::new();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for rm in &raw.mailbox {
            let m = self.mailbox(rm, &profiles, default_profile.as_deref());
            if !seen.insert(m.email_address.clone()) {
                self.at(
                    &rm.email_address,
                    format!(
                        "a mailbox for {} is already defined (one mailbox per address)",
                        m.email_address
                    ),
                );
            }
            self.forward_rules(rm, &m);
            mailboxes.push(m);
        }
        // A user whose email comes through a forward mailbox needs one to come through.
        if !mailboxes.iter().any(|m| m.forward_mailbox && m.active) {
            for (rm, m) in raw.mailbox.iter().zip(&mailboxes) {
                if let (Some(d), IncomingDelivery::ForwardMailbox) =
                    (&rm.incoming_delivery, m.incoming_delivery)
                {
                    self.at(
                        d,
                        format!(
                            "mailbox {}: incoming_delivery = \"forward_mailbox\" needs a forward \
                             mailbox (a [[mailbox]] with forward_mailbox = true) to receive its forwards",
                            m.email_address
                        ),
                    );
                }
            }
        }
        // Once per load: the fingerprint formats the whole profile, too slow per status request.
        for m in &mut mailboxes {
            let profile = m
                .profile
                .as_deref()
                .and_then(|n| profiles.iter().find(|p| p.name == n));
            m.fingerprint = fingerprint(profile, m, None);
        }
        let mut webhooks = self.webhooks(&raw.webhook);
        for w in &mut webhooks {
            w.give_up_after = appliance.event_retention;
        }
        let mut config = Config {
            path: path.to_path_buf(),
            appliance,
            profiles,
            mailboxes,
            skipped: Vec::new(),
            webhooks,
            by_address: std::collections::HashMap::new(),
        };
        config.index_mailboxes();
        config
    }

    fn appliance(&mut self, ra: raw::RawAppliance) -> Appliance {
        let data_dir = ra
            .data_dir
            .as_ref()
            .map(|d| self.path(d.get_ref()))
            .unwrap_or_else(|| PathBuf::from("/var/lib/sidesync"));
        let status_listen = match &ra.status_listen {
            None => SocketAddr::from(([127, 0, 0, 1], 8025)),
            Some(s) => match s.get_ref().parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.at(
                        s,
                        format!(
                            "status_listen = \"{}\" is not an address and port (e.g. \"127.0.0.1:8025\")",
                            s.get_ref()
                        ),
                    );
                    SocketAddr::from(([127, 0, 0, 1], 8025))
                }
            },
        };
        let day = Duration::from_secs(86_400);
        let status_allowed_hosts = match &ra.status_allowed_hosts {
            Some(h) => h.get_ref().iter().map(|x| x.trim().to_string()).collect(),
            None => default_allowed_hosts(status_listen),
        };
        let api_tokens = self.api_tokens(&ra);
        let control_groups = self.control_groups(&ra);
        let mut appliance = Appliance {
            api_tokens,
            control_groups,
            data_dir,
            status_listen,
            status_allowed_hosts,
            status_public: ra.status_public.unwrap_or(false),
            status_body_timeout: self.duration(
                "status_body_timeout",
                ra.status_body_timeout.as_ref(),
                Duration::from_secs(120),
                // Within the five minutes a connection may live at most.
                Duration::from_secs(1)..=Duration::from_secs(300),
            ),
            process_unapproved_mailboxes: ra.process_unapproved_mailboxes.unwrap_or(false),
            allow_plaintext_passwords: false,
            max_connections: ra
                .max_connections
                .as_ref()
                .map(|v| self.int_in("max_connections", Some(v), 1024, 2..=1_000_000) as usize),
            max_idle_connections: ra
                .max_idle_connections
                .as_ref()
                .map(|v| self.int_in("max_idle_connections", Some(v), 0, 0..=1_000_000) as usize),
            max_concurrent_syncs: self.int_in(
                "max_concurrent_syncs",
                ra.max_concurrent_syncs.as_ref(),
                256,
                1..=100_000,
            ) as usize,
            fetch_batch_size: self.int_in(
                "fetch_batch_size",
                ra.fetch_batch_size.as_ref(),
                200,
                1..=10_000,
            ) as u32,
            fetch_batch_bytes: self.int_in(
                "fetch_batch_bytes",
                ra.fetch_batch_bytes.as_ref(),
                16 << 20,
                1 << 16..=1 << 30,
            ) as usize,
            uidvalidity_alert_after_changes: self.int_in(
                "uidvalidity_alert_after_changes",
                ra.uidvalidity_alert_after_changes.as_ref(),
                2,
                1..=1000,
            ) as u32,
            retry_interval: self.duration(
                "retry_interval",
                ra.retry_interval.as_ref(),
                Duration::from_secs(300),
                Duration::from_secs(1)..=day,
            ),
            transient_failure_retries: self.int_in(
                "transient_failure_retries",
                ra.transient_failure_retries.as_ref(),
                10,
                0..=1000,
            ) as u32,
            alert_retention: Duration::from_secs(
                86_400
                    * self.int_in(
                        "alert_retention_days",
                        ra.alert_retention_days.as_ref(),
                        30,
                        1..=3650,
                    ) as u64,
            ),
            api_token: ra.api_token_file.as_ref().and_then(|f| {
                let token = self.secret(
                    "api_token",
                    SecretFields {
                        file: Some(f),
                        ..SecretFields::default()
                    },
                )?;
                if token.expose().len() < 16 {
                    self.at(
                        f,
                        "api_token_file: the token must be at least 16 characters".to_string(),
                    );
                    return None;
                }
                Some(token)
            }),
            status_tls: match (&ra.status_tls_cert, &ra.status_tls_key) {
                (None, None) => None,
                (Some(c), Some(k)) => {
                    let cert = self.readable_file("status_tls_cert", c);
                    let key = self.private_file("status_tls_key", k);
                    cert.zip(key).map(|(cert, key)| StatusTls { cert, key })
                }
                (Some(v), None) | (None, Some(v)) => {
                    self.at(
                        v,
                        "status_tls_cert and status_tls_key go together: set both for HTTPS, or neither"
                            .to_string(),
                    );
                    None
                }
            },
            alert_smtp: ra.alert_smtp.as_ref().map(|a| self.alert_smtp(a)),
            tracking_token: match ra.tracking_token.unwrap_or(true) {
                false => None,
                true => {
                    let prefix = ra
                        .tracking_token_prefix
                        .as_ref()
                        .map_or("CRM:".to_string(), |p| p.get_ref().clone());
                    if let Some(p) = &ra.tracking_token_prefix
                        && (prefix.is_empty()
                            || prefix.chars().count() > 20
                            || prefix.contains([' ', '[', ']']))
                    {
                        self.at(p, "tracking_token_prefix must be 1–20 characters without spaces or brackets".to_string());
                    }
                    let deployment = self.int_in(
                        "tracking_token_deployment",
                        ra.tracking_token_deployment.as_ref(),
                        1,
                        0..=9999,
                    ) as u32;
                    Some(crate::tracking::token::TokenFormat {
                        prefix,
                        deployment,
                        user_digits: self.int_in(
                            "tracking_token_user_digits",
                            ra.tracking_token_user_digits.as_ref(),
                            3,
                            1..=9,
                        ) as u32,
                        counter_digits: self.int_in(
                            "tracking_token_counter_digits",
                            ra.tracking_token_counter_digits.as_ref(),
                            3,
                            1..=9,
                        ) as u32,
                    })
                }
            },
            correlation: Correlation::default(),
            contacts_file: ra.contacts_file.as_ref().map(|f| {
                let path = self.path(f.get_ref());
                if let Err(e) = crate::tracking::contacts::parse_file(&path) {
                    self.at(f, e);
                }
                path
            }),
            outbox_retry_interval: self.duration(
                "outbox_retry_interval",
                ra.outbox_retry_interval.as_ref(),
                Duration::from_secs(60),
                Duration::from_secs(1)..=day,
            ),
            outbox_max_retry_interval: self.duration(
                "outbox_max_retry_interval",
                ra.outbox_max_retry_interval.as_ref(),
                Duration::from_secs(3600),
                Duration::from_secs(1)..=day,
            ),
            smtp_idle_timeout: self.duration(
                "smtp_idle_timeout",
                ra.smtp_idle_timeout.as_ref(),
                Duration::from_secs(30),
                Duration::ZERO..=Duration::from_secs(3600),
            ),
            outbox_max_recipients: self.int_in(
                "outbox_max_recipients",
                ra.outbox_max_recipients.as_ref(),
                100,
                1..=10_000,
            ) as u32,
            outbox_max_per_minute: self.int_in(
                "outbox_max_per_minute",
                ra.outbox_max_per_minute.as_ref(),
                0,
                0..=1_000_000,
            ) as u32,
            shard: ra
                .shard
                .as_ref()
                .and_then(|s| match shard::Shard::parse(s.get_ref()) {
                    Ok(shard) => Some(shard),
                    Err(e) => {
                        self.at(s, e);
                        None
                    }
                }),
            event_retention: self.duration(
                "event_retention",
                ra.event_retention.as_ref(),
                7 * day,
                Duration::from_secs(60)..=(3650 * day),
            ),
            stale_after_polls: self.int_in(
                "stale_after_polls",
                ra.stale_after_polls.as_ref(),
                10,
                0..=100_000,
            ) as u32,
            max_bytes_in_flight: self.int_in(
                "max_bytes_in_flight",
                ra.max_bytes_in_flight.as_ref(),
                256 << 20,
                (1 << 20)..=(64 << 30),
            ) as u64,
            store_cache_bytes: self.int_in(
                "store_cache_bytes",
                ra.store_cache_bytes.as_ref(),
                crate::store::DEFAULT_CACHE_BYTES as i64,
                (1 << 20)..=(64 << 30),
            ) as u64,
            store_compression_level: self.int_in(
                "store_compression_level",
                ra.store_compression_level.as_ref(),
                crate::store::rawcodec::DEFAULT_LEVEL as i64,
                crate::store::rawcodec::LEVELS,
            ) as i32,
            item_failure_max_tries: self.int_in(
                "item_failure_max_tries",
                ra.item_failure_max_tries.as_ref(),
                3,
                1..=100,
            ) as u32,
            item_failure_retention: Duration::from_secs(
                self.int_in(
                    "item_failure_retention_days",
                    ra.item_failure_retention_days.as_ref(),
                    3,
                    1..=3650,
                ) as u64
                    * 86_400,
            ),
            outbox_max_tries: self.int_in(
                "outbox_max_tries",
                ra.outbox_max_tries.as_ref(),
                10,
                1..=1000,
            ) as u32,
        };
        // Each try of a poison email is a failed sync: more tries than the mailbox may fail in a
        // row would disable the mailbox before the email is skipped.
        if let Some(t) = &ra.item_failure_max_tries
            && appliance.transient_failure_retries > 0
            && appliance.item_failure_max_tries > appliance.transient_failure_retries
        {
            self.at(
                t,
                format!(
                    "item_failure_max_tries = {} is more than transient_failure_retries = {}: \
                     the mailbox would be disabled before a failing email is skipped",
                    appliance.item_failure_max_tries, appliance.transient_failure_retries
                ),
            );
        }
        appliance.allow_plaintext_passwords = self.allow_plaintext;
        if let Some(t) = &appliance.api_token {
            appliance.api_tokens.insert(
                0,
                ApiToken {
                    name: "admin".to_string(),
                    scope: TokenScope::Admin,
                    token: t.clone(),
                },
            );
        }
        appliance.correlation = Correlation {
            in_reply_to: ra.correlation_in_reply_to.unwrap_or(true),
            tracking_token: ra
                .correlation_tracking_token
                .unwrap_or(true)
                .then(|| appliance.tracking_token.clone().unwrap_or_default()),
            smart_matching: ra.correlation_smart_matching.unwrap_or(false),
        };
        appliance
    }

    fn alert_smtp(&mut self, a: &Spanned<raw::RawAlertSmtp>) -> AlertSmtp {
        let a = a.get_ref();
        let tls = self.choice(
            "alert_smtp.tls",
            a.tls.as_ref(),
            TlsMode::StartTls,
            &[
                ("implicit", TlsMode::Implicit),
                ("starttls", TlsMode::StartTls),
                ("none", TlsMode::None),
            ],
        );
        let port = match a.port_number.as_ref() {
            Some(p) => self.int_in("alert_smtp.port_number", Some(p), 0, 1..=65535) as u16,
            None => default_port(Protocol::Smtp, tls),
        };
        let auth = self.choice(
            "alert_smtp.authentication_protocol",
            a.authentication_protocol.as_ref(),
            AuthProtocol::Auto,
            &[
                ("auto", AuthProtocol::Auto),
                ("plain", AuthProtocol::Plain),
                ("login", AuthProtocol::Login),
            ],
        );
        self.scope = "appliance:alert_smtp".to_string();
        let password = self.secret(
            "alert_smtp.password",
            SecretFields {
                inline: a.password.as_ref(),
                file: a.password_file.as_ref(),
                env: a.password_env.as_ref(),
                credential: a.password_credential.as_ref(),
            },
        );
        let login = match (a.username.as_ref(), password) {
            (Some(u), Some(p)) => Some((u.get_ref().clone(), p)),
            (None, None) => None,
            (Some(u), None) => {
                self.at(
                    u,
                    "alert_smtp.username needs alert_smtp.password or password_file".to_string(),
                );
                None
            }
            (None, Some(_)) => {
                self.at(
                    &a.server_location,
                    "alert_smtp has a password but no username".to_string(),
                );
                None
            }
        };
        if !a.from.get_ref().contains('@') {
            self.at(
                &a.from,
                format!(
                    "alert_smtp.from = \"{}\" is not an email address",
                    a.from.get_ref()
                ),
            );
        }
        AlertSmtp {
            host: a.server_location.get_ref().trim().to_string(),
            port,
            tls,
            auth,
            ca_file: a
                .ca_file
                .as_ref()
                .and_then(|c| self.readable_file("alert_smtp.ca_file", c)),
            from: a.from.get_ref().trim().to_string(),
            login,
        }
    }

    fn endpoint(
        &mut self,
        direction: &str,
        protocol: Protocol,
        fields: EndpointFields<'_>,
        profile_span: &Spanned<String>,
    ) -> Endpoint {
        let host = match fields.host {
            Some(h) if !h.get_ref().trim().is_empty() => h.get_ref().trim().to_string(),
            Some(h) => {
                self.at(h, format!("{direction}_server_location is empty"));
                String::new()
            }
            None => {
                self.at(
                    profile_span,
                    format!(
                        "profile \"{}\" has no {direction}_server_location",
                        profile_span.get_ref()
                    ),
                );
                String::new()
            }
        };
        let tls = self.choice(
            &format!("{direction}_tls"),
            fields.tls,
            TlsMode::Implicit,
            &[
                ("implicit", TlsMode::Implicit),
                ("starttls", TlsMode::StartTls),
                ("none", TlsMode::None),
            ],
        );
        let port = match fields.port {
            Some(_) => self.int_in(
                &format!("{direction}_port_number"),
                fields.port,
                0,
                1..=65535,
            ) as u16,
            None => default_port(protocol, tls),
        };
        let auth = self.choice(
            &format!("{direction}_authentication_protocol"),
            fields.auth,
            AuthProtocol::Auto,
            &[
                ("auto", AuthProtocol::Auto),
                ("plain", AuthProtocol::Plain),
                ("login", AuthProtocol::Login),
                ("xoauth2", AuthProtocol::XOAuth2),
                ("oauthbearer", AuthProtocol::OAuthBearer),
            ],
        );
        #[derive(Clone, Copy, PartialEq)]
        enum Retrieval {
            Mailbox,
            Profile,
            Without,
        }
        let retrieval = self.choice(
            &format!("{direction}_credential_retrieval"),
            fields.retrieval,
            Retrieval::Mailbox,
            &[
                ("mailbox", Retrieval::Mailbox),
                ("profile", Retrieval::Profile),
                ("without_credentials", Retrieval::Without),
            ],
        );
        let credentials = match retrieval {
            Retrieval::Mailbox => CredentialSource::Mailbox,
            Retrieval::Without => {
                if let Some(r) = fields.retrieval {
                    self.at(
                        r,
                        format!(
                            "{direction}_credential_retrieval = \"without_credentials\" is not valid: \
                             the server must authenticate each mailbox (use \"mailbox\" or \"profile\")"
                        ),
                    );
                }
                CredentialSource::Mailbox
            }
            Retrieval::Profile => {
                let password = self.secret(
                    fields.password_key,
                    SecretFields {
                        inline: fields.password,
                        file: fields.password_file,
                        env: fields.password_env,
                        credential: fields.password_credential,
                    },
                );
                let username = fields.username.map(|u| u.get_ref().clone());
                // A sealed password that did not open stops the profile's mailboxes (see
                // `Profile::secret_error`), not the whole config.
                let unreadable = self.unreadable.iter().any(|(s, _)| *s == self.scope);
                let password = password.or_else(|| unreadable.then(|| Secret::new("")));
                let given = fields.password.is_some()
                    || fields.password_file.is_some()
                    || fields.password_env.is_some()
                    || fields.password_credential.is_some();
                match (username, password) {
                    (Some(username), Some(password)) => {
                        CredentialSource::Profile { username, password }
                    }
                    (username, _) => {
                        // A password given but refused is reported as such already.
                        if username.is_none() || !given {
                            let at = fields.retrieval.unwrap_or(profile_span);
                            self.at(
                                at,
                                format!(
                                    "{direction}_credential_retrieval = \"profile\" needs {direction}_username \
                                     and {direction}_password (or its _file, _env or _credential)"
                                ),
                            );
                        }
                        CredentialSource::Mailbox
                    }
                }
            }
        };
        Endpoint {
            host,
            port,
            tls,
            auth,
            credentials,
        }
    }

    /// A profile's OAuth settings (None without `oauth_token_endpoint`): a usable https URL, a
    /// client id, a client secret for client credentials, a scope.
    fn oauth(&mut self, rp: &RawProfile, name: &str) -> Option<OAuth> {
        let Some(endpoint) = &rp.oauth_token_endpoint else {
            let stray = [
                rp.oauth_grant.as_ref(),
                rp.oauth_client_id.as_ref(),
                rp.oauth_scope.as_ref(),
                rp.oauth_client_secret.as_ref(),
                rp.oauth_client_secret_file.as_ref(),
                rp.oauth_client_secret_env.as_ref(),
                rp.oauth_client_secret_credential.as_ref(),
                rp.oauth_ca_file.as_ref(),
            ];
            if let Some(span) = stray.into_iter().flatten().next() {
                self.at(
                    span,
                    format!("profile \"{name}\": the oauth_* keys need oauth_token_endpoint"),
                );
            }
            return None;
        };
        if let Err(e) = crate::oauth::url::Endpoint::parse(endpoint.get_ref().trim()) {
            self.at(endpoint, format!("oauth_token_endpoint: {e}"));
        }
        let grant = self.choice(
            "oauth_grant",
            rp.oauth_grant.as_ref(),
            OAuthGrant::ClientCredentials,
            &[
                ("client_credentials", OAuthGrant::ClientCredentials),
                ("refresh_token", OAuthGrant::RefreshToken),
                ("service_account", OAuthGrant::ServiceAccount),
            ],
        );
        let client_id = match &rp.oauth_client_id {
            Some(c) if !c.get_ref().trim().is_empty() => c.get_ref().trim().to_string(),
            Some(c) => {
                self.at(c, "oauth_client_id is empty".into());
                String::new()
            }
            None => {
                self.at(
                    endpoint,
                    format!("profile \"{name}\": OAuth needs oauth_client_id"),
                );
                String::new()
            }
        };
        let client_secret = self.secret(
            "oauth_client_secret",
            SecretFields {
                inline: rp.oauth_client_secret.as_ref(),
                file: rp.oauth_client_secret_file.as_ref(),
                env: rp.oauth_client_secret_env.as_ref(),
                credential: rp.oauth_client_secret_credential.as_ref(),
            },
        );
        let secret_given = rp.oauth_client_secret.is_some()
            || rp.oauth_client_secret_file.is_some()
            || rp.oauth_client_secret_env.is_some()
            || rp.oauth_client_secret_credential.is_some();
        let client_certificate = match (&rp.oauth_client_certificate, &rp.oauth_client_key_file) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                let (cert, key) = (
                    self.readable_file("oauth_client_certificate", c),
                    self.private_file("oauth_client_key_file", k),
                );
                match (cert, key) {
                    (Some(cert), Some(key)) => {
                        match crate::oauth::assertion::ClientCertificate::load(&cert, &key) {
                            Ok(cc) => Some(std::sync::Arc::new(cc)),
                            Err(e) => {
                                self.at(c, format!("oauth client certificate: {e}"));
                                None
                            }
                        }
                    }
                    _ => None,
                }
            }
            // A service account signs with its key alone.
            (None, Some(k)) if grant == OAuthGrant::ServiceAccount => self
                .private_file("oauth_client_key_file", k)
                .and_then(
                    |key| match crate::oauth::assertion::ClientCertificate::load_key(&key) {
                        Ok(cc) => Some(std::sync::Arc::new(cc)),
                        Err(e) => {
                            self.at(k, format!("oauth_client_key_file: {e}"));
                            None
                        }
                    },
                ),
            (Some(at), None) | (None, Some(at)) => {
                self.at(
                    at,
                    format!(
                        "profile \"{name}\": oauth_client_certificate and oauth_client_key_file \
                         go together"
                    ),
                );
                None
            }
        };
        if grant == OAuthGrant::ServiceAccount && rp.oauth_client_key_file.is_none() {
            self.at(
                endpoint,
                format!(
                    "profile \"{name}\": oauth_grant = \"service_account\" needs \
                     oauth_client_key_file (the account's private key, PEM)"
                ),
            );
        }
        let certificate_given = rp.oauth_client_certificate.is_some();
        if grant == OAuthGrant::ClientCredentials && !secret_given && !certificate_given {
            self.at(
                endpoint,
                format!(
                    "profile \"{name}\": oauth_grant = \"client_credentials\" needs \
                     oauth_client_secret_file, _env, _credential or an enc:v1 oauth_client_secret, \
                     or oauth_client_certificate with oauth_client_key_file"
                ),
            );
        }
        if secret_given
            && certificate_given
            && let Some(at) = &rp.oauth_client_certificate
        {
            self.at(
                at,
                format!(
                    "profile \"{name}\": set a client secret or a client certificate, not both"
                ),
            );
        }
        let scope = rp
            .oauth_scope
            .as_ref()
            .map(|s| s.get_ref().trim().to_string())
            .unwrap_or_default();
        if grant != OAuthGrant::RefreshToken && scope.is_empty() {
            self.at(
                endpoint,
                format!(
                    "profile \"{name}\": client credentials need oauth_scope (Microsoft 365: \
                     \"https://outlook.office365.com/.default\")"
                ),
            );
        }
        Some(OAuth {
            token_endpoint: endpoint.get_ref().trim().to_string(),
            grant,
            client_id,
            client_secret,
            client_certificate,
            scope,
            ca_file: rp
                .oauth_ca_file
                .as_ref()
                .and_then(|c| self.readable_file("oauth_ca_file", c)),
            client_secret_expires: rp
                .oauth_client_secret_expires
                .as_ref()
                .and_then(|d| self.date("oauth_client_secret_expires", d)),
            expiry_warning_days: self.int_in(
                "oauth_expiry_warning_days",
                rp.oauth_expiry_warning_days.as_ref(),
                14,
                0..=365,
            ) as u32,
        })
    }

    fn profile(&mut self, rp: &RawProfile) -> Profile {
        let name = rp.name.get_ref().trim().to_string();
        self.scope = format!("profile:{name}");
        if name.is_empty() {
            self.at(&rp.name, "profile name is empty".to_string());
        }
        let server_type = self.choice(
            "server_type",
            rp.server_type.as_ref(),
            ServerType::ImapSmtp,
            &[
                ("imap_smtp", ServerType::ImapSmtp),
                ("imap", ServerType::ImapSmtp),
                ("pop3_smtp", ServerType::Pop3Smtp),
                ("pop3", ServerType::Pop3Smtp),
            ],
        );
        let in_protocol = match server_type {
            ServerType::ImapSmtp => Protocol::Imap,
            ServerType::Pop3Smtp => Protocol::Pop3,
        };
        let incoming = self.endpoint(
            "incoming",
            in_protocol,
            EndpointFields {
                password_key: "incoming_password",
                password_env: rp.incoming_password_env.as_ref(),
                password_credential: rp.incoming_password_credential.as_ref(),
                host: rp.incoming_server_location.as_ref(),
                port: rp.incoming_port_number.as_ref(),
                tls: rp.incoming_tls.as_ref(),
                auth: rp.incoming_authentication_protocol.as_ref(),
                retrieval: rp.incoming_credential_retrieval.as_ref(),
                username: rp.incoming_username.as_ref(),
                password: rp.incoming_password.as_ref(),
                password_file: rp.incoming_password_file.as_ref(),
            },
            &rp.name,
        );
        let same = rp
            .use_same_settings_for_outgoing_connections
            .unwrap_or(false);
        let outgoing = if rp.outgoing_server_location.is_some() {
            let mut fields = EndpointFields {
                password_key: "outgoing_password",
                password_env: rp.outgoing_password_env.as_ref(),
                password_credential: rp.outgoing_password_credential.as_ref(),
                host: rp.outgoing_server_location.as_ref(),
                port: rp.outgoing_port_number.as_ref(),
                tls: rp.outgoing_tls.as_ref(),
                auth: rp.outgoing_authentication_protocol.as_ref(),
                retrieval: rp.outgoing_credential_retrieval.as_ref(),
                username: rp.outgoing_username.as_ref(),
                password: rp.outgoing_password.as_ref(),
                password_file: rp.outgoing_password_file.as_ref(),
            };
            if same {
                // "Use same settings for outgoing connections": the incoming identity sends too.
                fields.retrieval = rp.incoming_credential_retrieval.as_ref();
                fields.username = rp.incoming_username.as_ref();
                fields.password = rp.incoming_password.as_ref();
                fields.password_file = rp.incoming_password_file.as_ref();
                fields.password_env = rp.incoming_password_env.as_ref();
                fields.password_credential = rp.incoming_password_credential.as_ref();
                fields.password_key = "incoming_password";
                fields.auth = fields.auth.or(rp.incoming_authentication_protocol.as_ref());
            }
            Some(self.endpoint("outgoing", Protocol::Smtp, fields, &rp.name))
        } else {
            None
        };
        // Every endpoint logs in (there is no "without credentials"): without TLS the password
        // crosses the network in the clear, which a config must say it wants.
        if !rp.allow_plaintext_login.unwrap_or(false) {
            let plaintext = [
                (Some(&incoming), rp.incoming_tls.as_ref(), "incoming_tls"),
                (
                    outgoing.as_ref(),
                    rp.outgoing_tls.as_ref().or(rp.incoming_tls.as_ref()),
                    "outgoing_tls",
                ),
            ];
            for (endpoint, span, key) in plaintext {
                if let (Some(e), Some(span)) = (endpoint, span)
                    && e.tls == TlsMode::None
                {
                    self.at(
                        span,
                        format!(
                            "{key} = \"none\" sends the password in the clear; set \
                             allow_plaintext_login = true in profile \"{name}\" if that is meant"
                        ),
                    );
                }
            }
        }
        let ca_file = rp
            .ca_file
            .as_ref()
            .and_then(|c| self.readable_file("ca_file", c));
        let process_emails_received_after = rp
            .process_emails_received_after
            .as_ref()
            .and_then(|d| self.date("process_emails_received_after", d));
        let is_pop3 = server_type == ServerType::Pop3Smtp;
        if let (true, Some(m)) = (is_pop3, &rp.move_undelivered_emails)
            && *m.get_ref()
        {
            self.at(
                m,
                format!(
                    "profile \"{name}\": move_undelivered_emails needs IMAP folders; a POP3 \
                     maildrop has none (emails that fail are listed as item failures)"
                ),
            );
        }
        if let (true, Some(true)) = (is_pop3, rp.save_sent_copy) {
            self.at(
                &rp.name,
                format!(
                    "profile \"{name}\": save_sent_copy needs IMAP to store the copy; \
                     a pop3_smtp profile cannot save sent copies"
                ),
            );
        }
        let oauth = self.oauth(rp, &name);
        for (endpoint, span, key) in [
            (
                Some(&incoming),
                rp.incoming_authentication_protocol.as_ref(),
                "incoming",
            ),
            (
                outgoing.as_ref(),
                rp.outgoing_authentication_protocol.as_ref(),
                "outgoing",
            ),
        ] {
            let bearer_protocol = endpoint.is_some_and(|e| {
                matches!(e.auth, AuthProtocol::XOAuth2 | AuthProtocol::OAuthBearer)
            });
            if let (Some(e), Some(span)) = (endpoint, span) {
                if bearer_protocol && oauth.is_none() {
                    self.at(
                        span,
                        format!(
                            "{key}_authentication_protocol = \"{}\" logs in with OAuth tokens: \
                             set oauth_token_endpoint (and the oauth_* keys) in profile \"{name}\"",
                            span.get_ref()
                        ),
                    );
                }
                if oauth.is_some() && matches!(e.auth, AuthProtocol::Plain | AuthProtocol::Login) {
                    self.at(
                        span,
                        format!(
                            "profile \"{name}\" logs in with OAuth tokens: {key}_authentication_protocol \
                             must be \"auto\", \"xoauth2\" or \"oauthbearer\""
                        ),
                    );
                }
            }
        }
        let pop3_delete_after_days = rp.pop3_delete_after_days.as_ref().map(|d| {
            if !is_pop3 {
                self.at(
                    d,
                    format!(
                        "pop3_delete_after_days applies to pop3_smtp profiles only; \
                         profile \"{name}\" is IMAP (IMAP mailboxes are never changed)"
                    ),
                );
            }
            self.int_in("pop3_delete_after_days", Some(d), 0, 0..=3650) as u32
        });
        let track_sent = self.profile_track_sent(rp, &name, server_type);
        let (follow_server_changes, flags_compare_every) =
            self.profile_follow(rp, &name, server_type);
        Profile {
            name,
            description: rp.description.clone(),
            server_type,
            is_default: rp.is_default.unwrap_or(false),
            active: rp.active.unwrap_or(true),
            owner_email: rp
                .owner_email
                .as_ref()
                .map(|o| o.get_ref().trim().to_string()),
            ca_file,
            incoming,
            outgoing,
            process_emails_received_after,
            min_polling_interval: self.duration(
                "min_polling_interval",
                rp.min_polling_interval.as_ref(),
                Duration::from_secs(300),
                Duration::from_secs(1)..=MAX_POLLING_INTERVAL,
            ),
            max_connections_per_server: rp.max_connections_per_server.as_ref().map(|v| {
                self.int_in("max_connections_per_server", Some(v), 10, 2..=100_000) as u32
            }),
            max_concurrent_connections: self.int_in(
                "max_concurrent_connections",
                rp.max_concurrent_connections.as_ref(),
                10,
                1..=MAX_CONCURRENT_CONNECTIONS as i64,
            ) as u32,
            timeout_mailbox_connection_after: self.duration(
                "timeout_mailbox_connection_after",
                rp.timeout_mailbox_connection_after.as_ref(),
                Duration::from_secs(60),
                Duration::from_secs(1)..=MAX_CONNECTION_TIMEOUT,
            ),
            move_undelivered_emails: rp
                .move_undelivered_emails
                .as_ref()
                .is_some_and(|m| *m.get_ref()),
            send_alert_email: rp.send_alert_email.unwrap_or(false),
            idle: self.imap_only(
                rp.idle.as_ref(),
                server_type,
                "idle = true is for IMAP profiles (POP3 has no IDLE)",
            ),
            keep_sessions_open: self.imap_only(
                rp.keep_sessions_open.as_ref(),
                server_type,
                "keep_sessions_open = true is for IMAP profiles (a POP3 server deletes at QUIT and locks the maildrop meanwhile)",
            ),
            save_sent_copy: rp.save_sent_copy.unwrap_or(false),
            sent_folder: rp
                .sent_folder
                .as_ref()
                .map_or("Sent".to_string(), |f| f.get_ref().trim().to_string()),
            sent_folder_named: rp.sent_folder.is_some(),
            track_sent,
            follow_server_changes,
            flags_compare_every,
            pop3_delete_after_days,
            oauth,
            max_message_size: self.int_in(
                "max_message_size",
                rp.max_message_size.as_ref(),
                50 << 20,
                1024..=(1 << 30),
            ) as u64,
            sync_deadline: self.duration(
                "sync_deadline",
                rp.sync_deadline.as_ref(),
                Duration::from_secs(300),
                Duration::from_secs(1)..=Duration::from_secs(86_400),
            ),
            track: rp.track.as_ref().and_then(|t| self.track(t)),
            skip_automatic: rp
                .skip_automatic
                .as_ref()
                .map(|kinds| self.skip_automatic(kinds)),
            first_sync_days: self.int_in(
                "first_sync_days",
                rp.first_sync_days.as_ref(),
                30,
                0..=36_500,
            ) as u32,
            tls_pin_sha256: rp.tls_pin_sha256.as_ref().and_then(|p| {
                let pin = pin::parse_pin(p.get_ref().trim());
                if pin.is_none() {
                    self.at(
                        p,
                        "tls_pin_sha256 must be 64 hex digits (colons allowed): the SHA-256 of \
                         the server certificate's DER bytes"
                            .to_string(),
                    );
                }
                pin
            }),
            secret_error: self
                .unreadable
                .iter()
                .find(|(scope, _)| *scope == format!("profile:{}", rp.name.get_ref().trim()))
                .map(|(_, m)| m.clone()),
        }
    }

    fn mailbox(
        &mut self,
        rm: &RawMailbox,
        profiles: &[Profile],
        default_profile: Option<&str>,
    ) -> Mailbox {
        let email_address = rm.email_address.get_ref().trim().to_ascii_lowercase();
        let valid_address = email_address
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'));
        if !valid_address {
            self.at(
                &rm.email_address,
                format!(
                    "email_address = \"{}\" is not an email address",
                    rm.email_address.get_ref()
                ),
            );
        }
        let profile = match &rm.profile {
            Some(p) => {
                if !profiles.iter().any(|q| q.name == p.get_ref().trim()) {
                    self.at(
                        p,
                        format!(
                            "mailbox {email_address} names profile \"{}\", which is not defined",
                            p.get_ref()
                        ),
                    );
                }
                Some(p.get_ref().trim().to_string())
            }
            None => default_profile.map(str::to_string),
        };
        let owner = self.choice(
            "owner",
            rm.owner.as_ref(),
            OwnerType::User,
            &[("user", OwnerType::User), ("queue", OwnerType::Queue)],
        );
        let incoming_delivery = self.choice(
            "incoming_delivery",
            rm.incoming_delivery.as_ref(),
            IncomingDelivery::ServerSideSync,
            &[
                ("server_side_sync", IncomingDelivery::ServerSideSync),
                ("forward_mailbox", IncomingDelivery::ForwardMailbox),
                ("none", IncomingDelivery::None),
            ],
        );
        let forward_mailbox = rm.forward_mailbox.as_ref().is_some_and(|f| *f.get_ref());
        let outgoing_delivery = self.choice(
            "outgoing_delivery",
            rm.outgoing_delivery.as_ref(),
            // A forward mailbox only receives (Dynamics: its outgoing is None).
            if forward_mailbox {
                OutgoingDelivery::None
            } else {
                OutgoingDelivery::ServerSideSync
            },
            &[
                ("server_side_sync", OutgoingDelivery::ServerSideSync),
                ("none", OutgoingDelivery::None),
            ],
        );
        let approval = self.choice(
            "approval",
            rm.approval.as_ref(),
            Approval::Empty,
            &[
                ("empty", Approval::Empty),
                ("approved", Approval::Approved),
                ("pending_approval", Approval::PendingApproval),
                ("rejected", Approval::Rejected),
            ],
        );
        self.scope = format!("mailbox:{email_address}");
        let password = self.secret(
            "password",
            SecretFields {
                inline: rm.password.as_ref(),
                file: rm.password_file.as_ref(),
                env: rm.password_env.as_ref(),
                credential: rm.password_credential.as_ref(),
            },
        );
        let refresh_token = self.secret(
            "refresh_token",
            SecretFields {
                inline: rm.refresh_token.as_ref(),
                file: rm.refresh_token_file.as_ref(),
                env: rm.refresh_token_env.as_ref(),
                credential: rm.refresh_token_credential.as_ref(),
            },
        );
        let secret_error = self
            .unreadable
            .iter()
            .find(|(scope, _)| *scope == self.scope)
            .map(|(_, m)| m.clone());
        let the_profile = profile
            .as_deref()
            .and_then(|n| profiles.iter().find(|p| p.name == n));
        let oauth_grant = the_profile.and_then(|p| p.oauth.as_ref()).map(|o| o.grant);
        let token_given = rm.refresh_token.is_some()
            || rm.refresh_token_file.is_some()
            || rm.refresh_token_env.is_some()
            || rm.refresh_token_credential.is_some();
        if oauth_grant == Some(OAuthGrant::RefreshToken)
            && incoming_delivery != IncomingDelivery::None
            && !token_given
        {
            self.at(
                &rm.email_address,
                format!(
                    "mailbox {email_address} needs refresh_token_file, _env, _credential or an \
                     enc:v1 refresh_token (its profile uses oauth_grant = \"refresh_token\")"
                ),
            );
        }
        if token_given && oauth_grant != Some(OAuthGrant::RefreshToken) {
            let at = rm
                .refresh_token
                .as_ref()
                .or(rm.refresh_token_file.as_ref())
                .or(rm.refresh_token_env.as_ref())
                .or(rm.refresh_token_credential.as_ref());
            if let Some(at) = at {
                self.at(
                    at,
                    format!(
                        "mailbox {email_address}: a refresh token needs a profile with \
                         oauth_grant = \"refresh_token\""
                    ),
                );
            }
        }
        // A mailbox whose profile takes credentials from the mailbox must carry a password
        // (unless its profile logs in with OAuth tokens).
        let needs_password = the_profile.is_some_and(|p| {
            incoming_delivery != IncomingDelivery::None
                && p.oauth.is_none()
                && matches!(p.incoming.credentials, CredentialSource::Mailbox)
        });
        let given = rm.password.is_some()
            || rm.password_file.is_some()
            || rm.password_env.is_some()
            || rm.password_credential.is_some();
        // A password given but refused (plaintext, a bad file) is reported as such already.
        if needs_password && password.is_none() && secret_error.is_none() && !given {
            self.at(
                &rm.email_address,
                format!(
                    "mailbox {email_address} needs password, password_file, password_env or \
                     password_credential (its profile takes credentials from the mailbox)"
                ),
            );
        }
        let tracking_folders =
            self.tracking_folders(rm, &email_address, owner, profile.as_deref(), profiles);
        let profile_track = profile
            .as_deref()
            .and_then(|n| profiles.iter().find(|p| p.name == n))
            .and_then(|p| p.track);
        // Dynamics' defaults: a user tracks responses to tracked email, a queue everything.
        let track = rm
            .track
            .as_ref()
            .and_then(|t| self.track(t))
            .or(profile_track)
            .unwrap_or(match owner {
                OwnerType::User => Track::Responses,
                OwnerType::Queue => Track::All,
            });
        // The mailbox's list replaces its profile's whole (`[]` skips nothing).
        let profile_skip = profile
            .as_deref()
            .and_then(|n| profiles.iter().find(|p| p.name == n))
            .and_then(|p| p.skip_automatic);
        let skip_automatic = match &rm.skip_automatic {
            Some(kinds) => self.skip_automatic(kinds),
            None => profile_skip.unwrap_or_default(),
        };
        let (track_sent, sent_folder) = self.mailbox_track_sent(
            rm,
            &email_address,
            profile
                .as_deref()
                .and_then(|n| profiles.iter().find(|p| p.name == n)),
        );
        Mailbox {
            username: rm
                .username
                .as_ref()
                .map(|u| u.get_ref().clone())
                .unwrap_or_else(|| email_address.clone()),
            email_address,
            name: rm.name.clone(),
            owner,
            profile,
            incoming_delivery,
            outgoing_delivery,
            approval,
            active: rm.active.unwrap_or(true),
            password,
            tracking_folders,
            track,
            skip_automatic,
            track_sent,
            sent_folder,
            forward_mailbox,
            secret_error,
            process_and_delete_emails: rm
                .process_and_delete_emails
                .as_ref()
                .is_some_and(|p| *p.get_ref()),
            process_emails_received_after: rm
                .process_emails_received_after
                .as_ref()
                .and_then(|d| self.date("process_emails_received_after", d)),
            refresh_token,
            refresh_token_expires: rm
                .refresh_token_expires
                .as_ref()
                .and_then(|d| self.date("refresh_token_expires", d)),
            fingerprint: String::new(),
        }
    }

    /// Tracking folders are IMAP folders: a POP3 maildrop has none, nor does a queue (as in
    /// Dynamics). At most [`MAX_TRACKING_FOLDERS`]; each named once.
    fn tracking_folders(
        &mut self,
        rm: &RawMailbox,
        email_address: &str,
        owner: OwnerType,
        profile: Option<&str>,
        profiles: &[Profile],
    ) -> Vec<TrackingFolder> {
        let mut wanted: Vec<(Range<usize>, String, Option<String>)> = Vec::new();
        if let Some(folders) = &rm.tracking_folders {
            for f in folders.get_ref() {
                wanted.push((folders.span(), f.clone(), None));
            }
        }
        for tf in rm.tracking_folder.iter().flatten() {
            let regarding = tf.get_ref().regarding.as_ref().and_then(|r| {
                match crate::tracking::parties::check_record(r.get_ref()) {
                    Ok(()) => Some(r.get_ref().trim().to_string()),
                    Err(e) => {
                        self.at(r, format!("mailbox {email_address}: regarding {e}"));
                        None
                    }
                }
            });
            let folder = &tf.get_ref().folder;
            wanted.push((folder.span(), folder.get_ref().clone(), regarding));
        }
        let Some((first_span, _, _)) = wanted.first().cloned() else {
            return Vec::new();
        };
        let pop3 = profile
            .and_then(|n| profiles.iter().find(|p| p.name == n))
            .filter(|p| p.server_type == ServerType::Pop3Smtp);
        if let Some(p) = pop3 {
            self.error(
                Some(first_span),
                format!(
                    "mailbox {email_address}: tracking folders do not apply to POP3 \
                     (profile \"{}\" is pop3_smtp, and a POP3 maildrop has no folders)",
                    p.name
                ),
            );
            return Vec::new();
        }
        if owner == OwnerType::Queue {
            self.error(
                Some(first_span),
                format!(
                    "mailbox {email_address}: a queue has no tracking folders (a queue tracks \
                     with track = \"all\" or another filter instead)"
                ),
            );
            return Vec::new();
        }
        let mut out: Vec<TrackingFolder> = Vec::new();
        for (span, f, regarding) in wanted {
            let f = f.trim();
            if f.is_empty() || f.eq_ignore_ascii_case("INBOX") {
                self.error(
                    Some(span),
                    format!(
                        "mailbox {email_address}: tracking folder \"{f}\" is not valid \
                         (INBOX is always synced; names cannot be empty)"
                    ),
                );
            } else if out.iter().any(|o| o.folder == f) {
                self.error(
                    Some(span),
                    format!("mailbox {email_address}: tracking folder \"{f}\" is named twice"),
                );
            } else {
                out.push(TrackingFolder {
                    folder: f.to_string(),
                    regarding,
                });
            }
        }
        if out.len() > MAX_TRACKING_FOLDERS {
            self.error(
                Some(first_span),
                format!(
                    "mailbox {email_address}: {} tracking folders; at most {MAX_TRACKING_FOLDERS}",
                    out.len()
                ),
            );
            out.truncate(MAX_TRACKING_FOLDERS);
        }
        out
    }

    /// M6, as Dynamics has it: a forward mailbox receives through server-side sync and never
    /// sends; it has no tracking folders and no filter of its own (each forward is judged by its
    /// user's); `process_and_delete_emails` belongs to a forward mailbox.
    fn forward_rules(&mut self, rm: &RawMailbox, m: &Mailbox) {
        let address = &m.email_address;
        if let Some(p) = &rm.process_and_delete_emails
            && *p.get_ref()
            && !m.forward_mailbox
        {
            self.at(
                p,
                format!(
                    "mailbox {address}: process_and_delete_emails applies to a forward mailbox only \
                     (set forward_mailbox = true, or remove it)"
                ),
            );
        }
        let Some(f) = rm.forward_mailbox.as_ref().filter(|f| *f.get_ref()) else {
            return;
        };
        let mut wrong = Vec::new();
        if m.incoming_delivery != IncomingDelivery::ServerSideSync {
            wrong.push("its incoming_delivery must be \"server_side_sync\"");
        }
        if m.outgoing_delivery != OutgoingDelivery::None {
            wrong.push("its outgoing_delivery must be \"none\"");
        }
        if !m.tracking_folders.is_empty() {
            wrong.push("it has no tracking folders");
        }
        if rm.track.is_some() {
            wrong.push("it has no track of its own (each forward follows its user's)");
        }
        if rm.skip_automatic.is_some() {
            wrong.push("it has no skip_automatic of its own (each forward follows its user's)");
        }
        if !wrong.is_empty() {
            self.at(
                f,
                format!(
                    "mailbox {address} is a forward mailbox: {}",
                    wrong.join("; ")
                ),
            );
        }
    }

    fn date(&mut self, key: &str, d: &Spanned<toml::value::Datetime>) -> Option<DateTime<Utc>> {
        let t = toml_datetime_to_utc(d.get_ref());
        if t.is_none() {
            self.at(
                d,
                format!(
                    "{key} needs a date or a date and time (e.g. 2024-01-31 or 2024-01-31T08:00:00Z)"
                ),
            );
        }
        t
    }

    /// `[[appliance.api_tokens]]`, each read one way (file, env or credential), at least 16
    /// characters, names unique.
    fn api_tokens(&mut self, ra: &raw::RawAppliance) -> Vec<ApiToken> {
        self.scope = "appliance:api_tokens".to_string();
        let mut out: Vec<ApiToken> = Vec::new();
        for t in ra.api_tokens.iter().flatten() {
            let t = t.get_ref();
            let name = t.name.get_ref().trim().to_string();
            let scope = self.choice(
                "api_tokens.scope",
                Some(&t.scope),
                TokenScope::Read,
                &TokenScope::WORDS,
            );
            if name.is_empty() || name == "admin" || out.iter().any(|o| o.name == name) {
                self.at(
                    &t.name,
                    format!("api_tokens: the name \"{name}\" is empty, taken or reserved (\"admin\" is api_token_file's)"),
                );
                continue;
            }
            let Some(token) = self.secret(
                "api_tokens.token",
                SecretFields {
                    file: t.file.as_ref(),
                    env: t.env.as_ref(),
                    credential: t.credential.as_ref(),
                    ..SecretFields::default()
                },
            ) else {
                if t.file.is_none() && t.env.is_none() && t.credential.is_none() {
                    self.at(
                        &t.name,
                        format!("api_tokens \"{name}\": set file, env or credential"),
                    );
                }
                continue;
            };
            if token.expose().len() < 16 {
                self.at(
                    &t.name,
                    format!("api_tokens \"{name}\": the token must be at least 16 characters"),
                );
                continue;
            }
            out.push(ApiToken { name, scope, token });
        }
        out
    }

    fn track(&mut self, t: &Spanned<String>) -> Option<Track> {
        let found = Track::parse(t.get_ref().trim());
        if found.is_none() {
            self.at(
                t,
                format!(
                    "track = \"{}\" is not one of \"all\", \"responses\", \"known_contacts\", \"none\"",
                    t.get_ref()
                ),
            );
        }
        found
    }
}

struct EndpointFields<'a> {
    /// The password's key, also its place in an `enc:v1` value's associated data.
    password_key: &'static str,
    password_env: Option<&'a Spanned<String>>,
    password_credential: Option<&'a Spanned<String>>,
    host: Option<&'a Spanned<String>>,
    port: Option<&'a Spanned<i64>>,
    tls: Option<&'a Spanned<String>>,
    auth: Option<&'a Spanned<String>>,
    retrieval: Option<&'a Spanned<String>>,
    username: Option<&'a Spanned<String>>,
    password: Option<&'a Spanned<String>>,
    password_file: Option<&'a Spanned<String>>,
}

/// Who logs in on `endpoint` for `mailbox`: its own identity, or the profile's acting for it.
pub fn identity<'a>(
    endpoint: &'a Endpoint,
    mailbox: &'a Mailbox,
) -> (&'a str, Option<&'a Secret>, Option<&'a str>) {
    match &endpoint.credentials {
        CredentialSource::Mailbox => (&mailbox.username, mailbox.password.as_ref(), None),
        CredentialSource::Profile { username, password } => {
            (username, Some(password), Some(&mailbox.username))
        }
    }
}

/// A digest of everything in the config that decides how a mailbox connects. Passwords enter it
/// only as an HMAC under `key` (the key file's fingerprint key), so the stored fingerprint is no
/// offline guessing oracle; without a key (check-config, tests) they are left out. A stored
/// enablement belongs to one fingerprint: after a config change the mailbox is tested again.
fn fingerprint(profile: Option<&Profile>, mailbox: &Mailbox, key: Option<&[u8; 32]>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // Which emails are tracked says nothing about how the mailbox connects: changing it needs
    // no new test.
    let profile = profile.map(|p| Profile {
        track: None,
        skip_automatic: None,
        track_sent: None,
        first_sync_days: 0,
        process_emails_received_after: None,
        ..p.clone()
    });
    let profile = profile.as_ref();
    let mut connection = mailbox.clone();
    connection.track = Track::All;
    connection.skip_automatic = AutomaticSet::default();
    connection.track_sent = false;
    connection.process_emails_received_after = None;
    connection.fingerprint = String::new();
    for f in &mut connection.tracking_folders {
        f.regarding = None;
    }
    h.update(format!("{profile:?}|{connection:?}").as_bytes());
    if let Some(key) = key {
        let secrets = [
            mailbox.password.as_ref(),
            profile.and_then(|p| match &p.incoming.credentials {
                CredentialSource::Profile { password, .. } => Some(password),
                CredentialSource::Mailbox => None,
            }),
            profile.and_then(|p| match p.outgoing.as_ref().map(|o| &o.credentials) {
                Some(CredentialSource::Profile { password, .. }) => Some(password),
                _ => None,
            }),
        ];
        let mut joined = Vec::new();
        for s in secrets {
            joined.push(0u8);
            joined.extend_from_slice(s.map(|s| s.expose()).unwrap_or("").as_bytes());
        }
        h.update(crate::vault::mac(key, &joined).as_bytes());
        zeroize::Zeroize::zeroize(&mut joined);
    }
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The Host names a status listener answers to unless the config says: the loopback names, and
/// the listening address when it is a specific one; any name when it listens on every address
/// (the names clients use cannot be known; `status_allowed_hosts` narrows it, with a warning).
fn default_allowed_hosts(listen: SocketAddr) -> Vec<String> {
    let ip = listen.ip();
    if ip.is_unspecified() {
        return Vec::new();
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !hosts.contains(&ip.to_string()) {
        hosts.push(ip.to_string());
    }
    hosts
}

/// P2: the port follows from protocol and TLS mode when the config omits it.
pub fn default_port(protocol: Protocol, tls: TlsMode) -> u16 {
    match (protocol, tls) {
        (Protocol::Imap, TlsMode::Implicit) => 993,
        (Protocol::Imap, _) => 143,
        (Protocol::Pop3, TlsMode::Implicit) => 995,
        (Protocol::Pop3, _) => 110,
        (Protocol::Smtp, TlsMode::Implicit) => 465,
        (Protocol::Smtp, _) => 587,
    }
}

fn toml_datetime_to_utc(d: &toml::value::Datetime) -> Option<DateTime<Utc>> {
    let text = d.to_string();
    if let Ok(t) = DateTime::parse_from_rfc3339(&text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.is_zero() {
        "0s".to_string()
    } else if d.subsec_millis() != 0 || s == 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod test_fixture;
#[cfg(test)]
mod tests;
