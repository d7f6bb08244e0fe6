//! The config file exactly as written: every field optional where a default exists, spans kept so
//! that validation can point at `FILE:LINE:COL`. Unknown keys are rejected by serde.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub appliance: Option<RawAppliance>,
    #[serde(default)]
    pub profile: Vec<RawProfile>,
    #[serde(default)]
    pub mailbox: Vec<RawMailbox>,
    #[serde(default)]
    pub webhook: Vec<RawWebhook>,
}

/// A duration may be written as a string ("5m") or a bare number of seconds.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawDuration {
    Seconds(i64),
    Text(String),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAppliance {
    pub data_dir: Option<Spanned<String>>,
    pub status_listen: Option<Spanned<String>>,
    pub process_unapproved_mailboxes: Option<bool>,
    pub max_concurrent_syncs: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_idle_connections: Option<Spanned<i64>>,
    pub fetch_batch_size: Option<Spanned<i64>>,
    pub fetch_batch_bytes: Option<Spanned<i64>>,
    pub uidvalidity_alert_after_changes: Option<Spanned<i64>>,
    pub retry_interval: Option<Spanned<RawDuration>>,
    pub transient_failure_retries: Option<Spanned<i64>>,
    pub alert_retention_days: Option<Spanned<i64>>,
    pub api_token_file: Option<Spanned<String>>,
    pub status_tls_cert: Option<Spanned<String>>,
    pub status_tls_key: Option<Spanned<String>>,
    pub alert_smtp: Option<Spanned<RawAlertSmtp>>,
    pub tracking_token: Option<bool>,
    pub tracking_token_prefix: Option<Spanned<String>>,
    pub tracking_token_deployment: Option<Spanned<i64>>,
    pub tracking_token_user_digits: Option<Spanned<i64>>,
    pub tracking_token_counter_digits: Option<Spanned<i64>>,
    pub correlation_in_reply_to: Option<bool>,
    pub correlation_tracking_token: Option<bool>,
    pub correlation_smart_matching: Option<bool>,
    pub contacts_file: Option<Spanned<String>>,
    pub outbox_retry_interval: Option<Spanned<RawDuration>>,
    pub outbox_max_retry_interval: Option<Spanned<RawDuration>>,
    pub outbox_max_tries: Option<Spanned<i64>>,
    pub smtp_idle_timeout: Option<Spanned<RawDuration>>,
    pub max_bytes_in_flight: Option<Spanned<i64>>,
    pub store_cache_bytes: Option<Spanned<i64>>,
    pub store_compression_level: Option<Spanned<i64>>,
    pub outbox_max_recipients: Option<Spanned<i64>>,
    pub outbox_max_per_minute: Option<Spanned<i64>>,
    pub stale_after_polls: Option<Spanned<i64>>,
    pub item_failure_max_tries: Option<Spanned<i64>>,
    pub item_failure_retention_days: Option<Spanned<i64>>,
    pub allow_plaintext_passwords: Option<bool>,
    pub status_allowed_hosts: Option<Spanned<Vec<String>>>,
    pub api_tokens: Option<Vec<Spanned<RawApiToken>>>,
    pub status_public: Option<bool>,
    pub status_body_timeout: Option<Spanned<RawDuration>>,
    pub event_retention: Option<Spanned<RawDuration>>,
    pub shard: Option<Spanned<String>>,
    pub control_groups: Option<std::collections::BTreeMap<String, Spanned<String>>>,
}

/// `[[appliance.api_tokens]]`: a further API token with a name and a scope.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiToken {
    pub name: Spanned<String>,
    pub scope: Spanned<String>,
    pub file: Option<Spanned<String>>,
    pub env: Option<Spanned<String>>,
    pub credential: Option<Spanned<String>>,
}

/// Where alert emails go out when a profile cannot send them itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertSmtp {
    pub server_location: Spanned<String>,
    pub port_number: Option<Spanned<i64>>,
    pub tls: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub from: Spanned<String>,
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub password_credential: Option<Spanned<String>>,
    pub authentication_protocol: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub server_type: Option<Spanned<String>>,
    pub is_default: Option<bool>,
    pub active: Option<bool>,
    pub owner_email: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,

    pub incoming_server_location: Option<Spanned<String>>,
    pub incoming_port_number: Option<Spanned<i64>>,
    pub incoming_tls: Option<Spanned<String>>,
    pub incoming_authentication_protocol: Option<Spanned<String>>,
    pub incoming_credential_retrieval: Option<Spanned<String>>,
    pub incoming_username: Option<Spanned<String>>,
    pub incoming_password: Option<Spanned<String>>,
    pub incoming_password_file: Option<Spanned<String>>,
    pub incoming_password_env: Option<Spanned<String>>,
    pub incoming_password_credential: Option<Spanned<String>>,

    pub use_same_settings_for_outgoing_connections: Option<bool>,
    pub outgoing_server_location: Option<Spanned<String>>,
    pub outgoing_port_number: Option<Spanned<i64>>,
    pub outgoing_tls: Option<Spanned<String>>,
    pub outgoing_authentication_protocol: Option<Spanned<String>>,
    pub outgoing_credential_retrieval: Option<Spanned<String>>,
    pub outgoing_username: Option<Spanned<String>>,
    pub outgoing_password: Option<Spanned<String>>,
    pub outgoing_password_file: Option<Spanned<String>>,
    pub outgoing_password_env: Option<Spanned<String>>,
    pub outgoing_password_credential: Option<Spanned<String>>,

    pub process_emails_received_after: Option<Spanned<toml::value::Datetime>>,
    pub min_polling_interval: Option<Spanned<RawDuration>>,
    pub max_concurrent_connections: Option<Spanned<i64>>,
    pub max_connections_per_server: Option<Spanned<i64>>,
    pub timeout_mailbox_connection_after: Option<Spanned<RawDuration>>,
    pub move_undelivered_emails: Option<Spanned<bool>>,
    pub send_alert_email: Option<bool>,
    pub idle: Option<Spanned<bool>>,
    pub keep_sessions_open: Option<Spanned<bool>>,
    pub save_sent_copy: Option<bool>,
    pub sent_folder: Option<Spanned<String>>,
    pub track_sent: Option<Spanned<bool>>,
    pub follow_server_changes: Option<Spanned<String>>,
    pub flags_compare_every: Option<Spanned<RawDuration>>,
    pub pop3_delete_after_days: Option<Spanned<i64>>,
    pub max_message_size: Option<Spanned<i64>>,
    pub sync_deadline: Option<Spanned<RawDuration>>,
    pub tls_pin_sha256: Option<Spanned<String>>,
    pub allow_plaintext_login: Option<bool>,
    pub track: Option<Spanned<String>>,
    pub skip_automatic: Option<Spanned<Vec<Spanned<String>>>>,
    pub first_sync_days: Option<Spanned<i64>>,

    pub oauth_token_endpoint: Option<Spanned<String>>,
    pub oauth_grant: Option<Spanned<String>>,
    pub oauth_client_id: Option<Spanned<String>>,
    pub oauth_client_secret: Option<Spanned<String>>,
    pub oauth_client_secret_file: Option<Spanned<String>>,
    pub oauth_client_secret_env: Option<Spanned<String>>,
    pub oauth_client_secret_credential: Option<Spanned<String>>,
    pub oauth_client_secret_expires: Option<Spanned<toml::value::Datetime>>,
    pub oauth_client_certificate: Option<Spanned<String>>,
    pub oauth_client_key_file: Option<Spanned<String>>,
    pub oauth_scope: Option<Spanned<String>>,
    pub oauth_ca_file: Option<Spanned<String>>,
    pub oauth_expiry_warning_days: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMailbox {
    pub email_address: Spanned<String>,
    pub name: Option<String>,
    pub owner: Option<Spanned<String>>,
    pub profile: Option<Spanned<String>>,
    pub incoming_delivery: Option<Spanned<String>>,
    pub outgoing_delivery: Option<Spanned<String>>,
    pub approval: Option<Spanned<String>>,
    pub active: Option<bool>,
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub password_credential: Option<Spanned<String>>,
    pub refresh_token: Option<Spanned<String>>,
    pub refresh_token_file: Option<Spanned<String>>,
    pub refresh_token_env: Option<Spanned<String>>,
    pub refresh_token_credential: Option<Spanned<String>>,
    pub refresh_token_expires: Option<Spanned<toml::value::Datetime>>,
    pub tracking_folders: Option<Spanned<Vec<String>>>,
    pub tracking_folder: Option<Vec<Spanned<RawTrackingFolder>>>,
    pub track: Option<Spanned<String>>,
    pub skip_automatic: Option<Spanned<Vec<Spanned<String>>>>,
    pub forward_mailbox: Option<Spanned<bool>>,
    pub track_sent: Option<Spanned<bool>>,
    pub process_emails_received_after: Option<Spanned<toml::value::Datetime>>,
    pub process_and_delete_emails: Option<Spanned<bool>>,
}

/// `[[mailbox.tracking_folder]]`: a folder whose emails are always tracked, about `regarding`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrackingFolder {
    pub folder: Spanned<String>,
    pub regarding: Option<Spanned<String>>,
}

/// `[[webhook]]`, checked in `webhook.rs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    pub events: Option<Spanned<Vec<String>>>,
    pub secret: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    pub secret_env: Option<Spanned<String>>,
    pub secret_credential: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub max_attempts: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<RawDuration>>,
    pub retry_interval: Option<Spanned<RawDuration>>,
    pub max_retry_interval: Option<Spanned<RawDuration>>,
}
