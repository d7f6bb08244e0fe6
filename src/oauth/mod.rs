//! OAuth 2.0 for mailbox logins (XOAUTH2, OAUTHBEARER): what the token endpoint is asked and
//! answers (`grant.rs`), how it is reached (`http.rs`), and the access tokens kept until shortly
//! before they expire, fetched once per identity however many mailboxes wait (`cache.rs`).

pub mod assertion;
pub mod cache;
pub mod grant;
pub mod http;
pub use crate::net::url;

/// What a mailbox's rotated refresh token is sealed for (the vault's associated data).
pub fn rotated_token_aad(mailbox: &str) -> String {
    format!("mailbox:{mailbox}|oauth_rotated_refresh_token")
}
