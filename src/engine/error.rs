//! Why a mailbox sync failed, and whether trying again later can help.

use crate::net::NetError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Net(#[from] NetError),
    /// A value for a command (a login name, a folder, a password) holds a control character:
    /// refused before it is sent (it could end the command and start another).
    #[error(transparent)]
    UnsafeValue(#[from] crate::net::line::UnsafeValue),
    #[error(
        "{address} does not offer {command}, and the profile requires TLS; refusing to continue in plaintext"
    )]
    TlsNotOffered {
        address: String,
        /// STARTTLS (IMAP, SMTP) or STLS (POP3).
        command: &'static str,
    },
    #[error("{address} offers {command} but refused it ({reply}); it is not used in plaintext")]
    TlsRefused {
        address: String,
        command: &'static str,
        /// Only the status word and response code: text before TLS may be an attacker's.
        reply: String,
        transient: bool,
    },
    #[error(
        "{address} sent data before the TLS handshake after its {command} go-ahead: possible STARTTLS injection; the connection was dropped"
    )]
    TlsInjection {
        address: String,
        command: &'static str,
    },
    #[error("authentication rejected by {address}: {reply}")]
    AuthRejected { address: String, reply: String },
    #[error("{address} offers no login method sidesync can use: {detail}")]
    AuthUnsupported { address: String, detail: String },
    #[error("folder \"{folder}\" cannot be opened: {reply}")]
    FolderMissing { folder: String, reply: String },
    #[error(
        "folder \"{folder}\" has no UIDVALIDITY; exactly-once sync is impossible on this server"
    )]
    NoUidValidity { folder: String },
    #[error(
        "{address} gives no usable UIDL ({detail}); exactly-once sync over POP3 is impossible on this server"
    )]
    NoUidl { address: String, detail: String },
    #[error("{address} closed the connection")]
    ConnectionLost { address: String },
    #[error("unexpected answer from {address}: {detail}")]
    Protocol { address: String, detail: String },
    #[error("{address} broke the protocol: {detail}; the connection was dropped")]
    ProtocolViolation { address: String, detail: String },
    #[error("{address} says it is unavailable: {reply}")]
    ServerBusy { address: String, reply: String },
    #[error("{address} refused: {reply}")]
    Rejected { address: String, reply: String },

    #[error(
        "the sync made no progress for {seconds} s (sync_deadline); it was stopped and will be retried"
    )]
    SyncDeadline { seconds: u64 },
    #[error(
        "email UID {uid} in folder \"{folder}\" could not be stored ({error}); try {tries} of {max}, it is tried again on the next sync"
    )]
    ItemFailed {
        folder: String,
        uid: u32,
        tries: u32,
        max: u32,
        error: String,
    },
    #[error("the store could not commit: {0}")]
    Store(String),
    #[error("{0}")]
    Unsupported(String),
    /// The token endpoint refused the grant (a revoked or expired refresh token, a wrong or
    /// expired client secret): an admin has to act.
    #[error("the OAuth token endpoint {endpoint} refused: {detail}")]
    TokenRefused { endpoint: String, detail: String },
    /// The token endpoint cannot be reached or is unwell: tried again later.
    #[error("the OAuth token endpoint {endpoint} is unavailable: {detail}")]
    TokenUnavailable { endpoint: String, detail: String },
    /// A job panicked (a bug in sidesync, set off by whatever the server sent): only this
    /// mailbox's turn is lost, and it is retried like a transient failure.
    #[error("an internal error (a bug in sidesync) stopped this turn: {detail}")]
    Internal { detail: String },
}

impl SyncError {
    /// A refused bearer login with the server's failure status added to its reply, when it sent
    /// one (the JSON says why: `invalid_token`, the scope it wanted, …).
    pub fn with_sasl_status(self, challenge: Option<&[u8]>) -> SyncError {
        match (self, challenge.and_then(crate::net::sasl::failure_status)) {
            (SyncError::AuthRejected { address, reply }, Some((_, status))) => {
                SyncError::AuthRejected {
                    address,
                    reply: format!("{reply} (status {status})"),
                }
            }
            (e, _) => e,
        }
    }

    /// Whether the error says the server refuses or throttles connections (or cannot be
    /// reached), which holds back all its mailboxes, not only this one.
    pub fn refuses_connections(&self) -> bool {
        matches!(
            self,
            SyncError::Net(
                NetError::Connect { .. } | NetError::Timeout { .. } | NetError::UnknownHost { .. }
            ) | SyncError::ServerBusy { .. }
                | SyncError::ConnectionLost { .. }
        )
    }

    /// Transient errors are retried later; permanent ones need an admin (bad credentials, trust,
    /// configuration) and retrying them only hammers the server.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Net(
                NetError::CertificateNotTrusted { .. } | NetError::BadServerName { .. },
            ) => false,
            SyncError::Net(_) => true,
            SyncError::TlsRefused { transient, .. } => *transient,
            SyncError::ConnectionLost { .. }
            | SyncError::Protocol { .. }
            | SyncError::ProtocolViolation { .. }
            | SyncError::SyncDeadline { .. }
            | SyncError::ItemFailed { .. }
            | SyncError::ServerBusy { .. }
            | SyncError::TokenUnavailable { .. }
            | SyncError::Internal { .. }
            | SyncError::Store(_) => true,
            SyncError::TlsNotOffered { .. }
            | SyncError::TlsInjection { .. }
            | SyncError::AuthRejected { .. }
            | SyncError::AuthUnsupported { .. }
            | SyncError::FolderMissing { .. }
            | SyncError::NoUidValidity { .. }
            | SyncError::NoUidl { .. }
            | SyncError::Rejected { .. }
            | SyncError::TokenRefused { .. }
            | SyncError::UnsafeValue(_)
            | SyncError::Unsupported(_) => false,
        }
    }

    /// A stable short code for `/status`, alerts and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::Net(NetError::Connect { .. }) => "connect_failed",
            SyncError::Net(NetError::UnknownHost { .. }) => "unknown_host",
            SyncError::Net(NetError::Timeout { .. }) => "timeout",
            SyncError::Net(NetError::CertificateNotTrusted { .. }) => "certificate_not_trusted",
            SyncError::Net(NetError::Handshake { .. }) => "tls_handshake_failed",
            SyncError::Net(NetError::BadServerName { .. }) => "bad_server_name",
            SyncError::TlsNotOffered { .. } => "tls_not_offered",
            SyncError::TlsRefused { .. } => "tls_refused",
            SyncError::TlsInjection { .. } => "tls_injection",
            SyncError::AuthRejected { .. } => "authentication_rejected",
            SyncError::AuthUnsupported { .. } => "authentication_unsupported",
            SyncError::FolderMissing { .. } => "folder_missing",
            SyncError::NoUidValidity { .. } => "no_uidvalidity",
            SyncError::NoUidl { .. } => "no_uidl",
            SyncError::ConnectionLost { .. } => "connection_lost",
            SyncError::Protocol { .. } => "protocol_error",
            SyncError::ProtocolViolation { .. } => "protocol_violation",
            SyncError::ServerBusy { .. } => "server_busy",
            SyncError::Rejected { .. } => "rejected",
            SyncError::SyncDeadline { .. } => "sync_deadline",
            SyncError::ItemFailed { .. } => "item_failed",
            SyncError::Store(_) => "store_error",
            SyncError::Unsupported(_) => "unsupported",
            SyncError::TokenRefused { .. } => "oauth_token_refused",
            SyncError::TokenUnavailable { .. } => "oauth_endpoint_unavailable",
            SyncError::Internal { .. } => "internal_error",
            SyncError::UnsafeValue(_) => "unsafe_value",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let refused = SyncError::Net(NetError::Connect {
            address: "h:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        });
        assert!(refused.is_transient());
        assert_eq!(refused.code(), "connect_failed");
        let untrusted = SyncError::Net(NetError::CertificateNotTrusted {
            address: "h:1".into(),
            reason: "x".into(),
        });
        assert!(!untrusted.is_transient());
        let auth = SyncError::AuthRejected {
            address: "h:1".into(),
            reply: "no".into(),
        };
        assert!(!auth.is_transient());
        assert!(
            auth.to_string()
                .starts_with("authentication rejected by h:1")
        );
        assert!(
            SyncError::Net(NetError::Timeout {
                address: "h".into(),
                step: "x",
                seconds: 1
            })
            .is_transient()
        );
        assert!(
            !SyncError::TlsNotOffered {
                address: "h".into(),
                command: "STLS"
            }
            .is_transient()
        );
        assert!(
            !SyncError::FolderMissing {
                folder: "INBOX".into(),
                reply: "no".into()
            }
            .is_transient()
        );
    }
}
