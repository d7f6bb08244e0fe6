//! What a mailbox logs in with on an endpoint: its password (or the profile's acting for it), or
//! with OAuth an access token — from the cache, or fetched from the token endpoint (client
//! credentials, or the mailbox's refresh token; a rotated refresh token is sealed into the store
//! before it is relied on). A server that refuses a token as invalid gets one fresh token and
//! one more try.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::JobContext;
use super::error::SyncError;
use crate::config::{Endpoint, Mailbox, OAuth, OAuthGrant, Profile, identity};
use crate::net::{Login, Recorder, sasl};
use crate::oauth::cache::Source;
use crate::oauth::grant::{self, GrantError, GrantRequest};
use crate::oauth::http;
use crate::secret::Secret;

/// Owned login material for one connection.
pub(crate) struct Credentials {
    username: String,
    secret: Secret,
    authzid: Option<String>,
    /// The cache identity of the token (None: a password).
    bearer: Option<String>,
}

impl Credentials {
    pub fn login(&self) -> Login<'_> {
        Login {
            username: &self.username,
            password: &self.secret,
            authzid: self.authzid.as_deref(),
            bearer: self.bearer.is_some(),
        }
    }

    pub fn is_bearer(&self) -> bool {
        self.bearer.is_some()
    }

    /// Every form in which this credential may cross the wire to `host:port`, for a transcript
    /// to mask.
    pub fn wire_forms(&self, host: &str, port: u16) -> Vec<String> {
        let login = self.login();
        let s = self.secret.expose();
        let mut forms = vec![s.to_string(), STANDARD.encode(s)];
        if self.bearer.is_some() {
            for m in [
                sasl::BearerMechanism::XOAuth2,
                sasl::BearerMechanism::OAuthBearer,
            ] {
                forms.push(STANDARD.encode(crate::net::bearer_response(m, &login, host, port)));
            }
        } else {
            forms.push(s.replace('\\', "\\\\").replace('"', "\\\""));
            forms.push((*crate::net::plain_blob(&login)).clone());
        }
        forms
    }
}

/// A mailbox's rotated refresh token as the store keeps it.
#[derive(Serialize, Deserialize)]
struct RotatedToken {
    /// The new refresh token, sealed with the key file.
    sealed: String,
    /// A keyed MAC of the configured refresh token it replaced: when the config brings another
    /// one (an admin issued a new token), the config's wins again.
    replaces: String,
    at: chrono::DateTime<chrono::Utc>,
    /// When it stops working, if the endpoint said (`refresh_token_expires_in`).
    #[serde(default)]
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// When the mailbox's rotated refresh token expires, if the store knows.
pub(crate) fn rotated_expiry(
    ctx: &JobContext,
    mailbox: &Mailbox,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let raw = ctx.store.oauth_token(&mailbox.email_address).ok()??;
    serde_json::from_slice::<RotatedToken>(&raw)
        .ok()?
        .expires_at
}

fn aad(mailbox: &str) -> String {
    crate::oauth::rotated_token_aad(mailbox)
}

/// The refresh token to use now: the rotated one in the store if it replaced the configured
/// one, else the configured one. With the MAC of the configured one (for the next rotation).
fn current_refresh_token(
    ctx: &JobContext,
    mailbox: &Mailbox,
    configured: &Secret,
) -> Result<(Secret, String), SyncError> {
    let ring = crate::vault::KeyRing::load_or_create(&crate::vault::KeyRing::path(
        &ctx.config.appliance.data_dir,
    ))
    .map_err(SyncError::Unsupported)?;
    let mac = crate::vault::mac(ring.fingerprint_key(), configured.expose().as_bytes());
    let stored = ctx
        .store
        .oauth_token(&mailbox.email_address)
        .map_err(|e| SyncError::Store(e.to_string()))?
        .and_then(|raw| serde_json::from_slice::<RotatedToken>(&raw).ok());
    if let Some(r) = stored
        && r.replaces == mac
    {
        let token = ring
            .open(&r.sealed, &aad(&mailbox.email_address))
            .map_err(|e| {
                SyncError::Unsupported(format!(
                    "the rotated refresh token of {} in the store does not open ({e}); set a new \
                 refresh token in the config",
                    mailbox.email_address
                ))
            })?;
        return Ok((token, mac));
    }
    Ok((configured.clone(), mac))
}

/// Keeps a rotated refresh token (sealed) before anything relies on it.
async fn keep_rotated(
    ctx: &JobContext,
    mailbox: &Mailbox,
    token: &Secret,
    replaces: String,
    lives: Option<u64>,
) -> Result<(), SyncError> {
    let ring = crate::vault::KeyRing::load_or_create(&crate::vault::KeyRing::path(
        &ctx.config.appliance.data_dir,
    ))
    .map_err(SyncError::Unsupported)?;
    let sealed = ring
        .seal(token.expose(), &aad(&mailbox.email_address))
        .map_err(|e| SyncError::Unsupported(e.to_string()))?;
    let now = chrono::Utc::now();
    let record = RotatedToken {
        sealed,
        replaces,
        at: now,
        expires_at: lives
            .and_then(|s| i64::try_from(s).ok())
            .and_then(chrono::Duration::try_seconds)
            .map(|d| now + d),
    };
    let raw = serde_json::to_vec(&record).map_err(|e| SyncError::Store(e.to_string()))?;
    ctx.writer
        .oauth_token(&mailbox.email_address, raw)
        .await
        .map_err(|e| SyncError::Store(e.to_string()))
}

fn token_error(endpoint: &str, e: GrantError) -> SyncError {
    if e.transient() || matches!(e, GrantError::Malformed(_)) {
        SyncError::TokenUnavailable {
            endpoint: endpoint.to_string(),
            detail: e.to_string(),
        }
    } else {
        SyncError::TokenRefused {
            endpoint: endpoint.to_string(),
            detail: e.to_string(),
        }
    }
}

/// Asks the token endpoint; the access token and its lifetime.
async fn fetch(
    ctx: &JobContext,
    profile: &Profile,
    oauth: &OAuth,
    mailbox: &Mailbox,
) -> Result<(Secret, Duration), SyncError> {
    let url = &oauth.token_endpoint;
    let endpoint = http::Endpoint::parse(url).map_err(SyncError::Unsupported)?;
    let ca = oauth.ca_file.as_deref().or(profile.ca_file.as_deref());
    let tls = crate::net::TlsContext::new(ca).map_err(SyncError::Unsupported)?;
    let timeout = profile.timeout_mailbox_connection_after;
    let (body, replaces) = match oauth.grant {
        OAuthGrant::ClientCredentials => {
            let body = match (&oauth.client_certificate, &oauth.client_secret) {
                (Some(cert), _) => {
                    let assertion = cert
                        .assertion(&oauth.client_id, url, chrono::Utc::now().timestamp())
                        .map_err(SyncError::Unsupported)?;
                    GrantRequest::ClientAssertion {
                        client_id: &oauth.client_id,
                        assertion: &assertion,
                        scope: &oauth.scope,
                    }
                    .body()
                }
                (None, Some(secret)) => GrantRequest::ClientCredentials {
                    client_id: &oauth.client_id,
                    client_secret: secret,
                    scope: &oauth.scope,
                }
                .body(),
                (None, None) => {
                    return Err(SyncError::Unsupported(format!(
                        "profile {} has no OAuth client secret or certificate",
                        profile.name
                    )));
                }
            };
            (body, None)
        }
        OAuthGrant::ServiceAccount => {
            let Some(key) = &oauth.client_certificate else {
                return Err(SyncError::Unsupported(format!(
                    "profile {} has no service account key",
                    profile.name
                )));
            };
            let assertion = key
                .impersonation(
                    &oauth.client_id,
                    &mailbox.username,
                    &oauth.scope,
                    url,
                    chrono::Utc::now().timestamp(),
                )
                .map_err(SyncError::Unsupported)?;
            (
                GrantRequest::JwtBearer {
                    assertion: &assertion,
                }
                .body(),
                None,
            )
        }
        OAuthGrant::RefreshToken => {
            let Some(configured) = &mailbox.refresh_token else {
                return Err(SyncError::Unsupported(format!(
                    "mailbox {} has no refresh token",
                    mailbox.email_address
                )));
            };
            let (refresh, mac) = current_refresh_token(ctx, mailbox, configured)?;
            let body = GrantRequest::RefreshToken {
                client_id: &oauth.client_id,
                client_secret: oauth.client_secret.as_ref(),
                refresh_token: &refresh,
                scope: &oauth.scope,
            }
            .body();
            (body, Some(mac))
        }
    };
    let (status, answer) = http::post_form(&endpoint, &tls, &body, timeout)
        .await
        .map_err(|e| SyncError::TokenUnavailable {
            endpoint: url.clone(),
            detail: e.to_string(),
        })?;
    let g = grant::parse(status, &answer).map_err(|e| token_error(url, e))?;
    if let (Some(new), Some(replaces)) = (&g.refresh_token, replaces) {
        keep_rotated(ctx, mailbox, new, replaces, g.refresh_token_expires_in).await?;
        tracing::info!(mailbox = %mailbox.email_address, "the token endpoint rotated the refresh token; the new one is kept in the store");
    }
    Ok((g.access_token, Duration::from_secs(g.expires_in)))
}

/// The cache identity of a mailbox's token: the profile's app identity, or the mailbox's own.
fn token_identity(profile: &Profile, oauth: &OAuth, mailbox: &Mailbox) -> String {
    match oauth.grant {
        OAuthGrant::ClientCredentials => format!("profile:{}", profile.name),
        OAuthGrant::RefreshToken | OAuthGrant::ServiceAccount => {
            format!("mailbox:{}", mailbox.email_address)
        }
    }
}

/// What `mailbox` logs in with on `endpoint`. With a recorder (Test & Enable), the token step is
/// noted and every wire form of the credential is masked.
pub(crate) async fn credentials(
    ctx: &JobContext,
    profile: &Profile,
    endpoint: &Endpoint,
    mailbox: &Mailbox,
    recorder: Option<&Recorder>,
) -> Result<Credentials, SyncError> {
    let creds = match &profile.oauth {
        None => {
            let (username, password, authzid) = identity(endpoint, mailbox);
            let Some(password) = password else {
                return Err(SyncError::Unsupported(format!(
                    "mailbox {} has no password",
                    mailbox.email_address
                )));
            };
            Credentials {
                username: username.to_string(),
                secret: password.clone(),
                authzid: authzid.map(str::to_string),
                bearer: None,
            }
        }
        Some(oauth) => {
            let id = token_identity(profile, oauth, mailbox);
            let got = ctx
                .tokens
                .get(&id, || fetch(ctx, profile, oauth, mailbox))
                .await;
            if let Some(r) = recorder {
                r.note(&match &got {
                    Ok((_, Source::Cached)) => format!(
                        "OAuth {}: access token from the cache (endpoint {}, scope \"{}\")",
                        grant_name(oauth.grant),
                        oauth.token_endpoint,
                        oauth.scope
                    ),
                    Ok((_, Source::Fetched)) => format!(
                        "OAuth {}: access token fetched from {} (scope \"{}\")",
                        grant_name(oauth.grant),
                        oauth.token_endpoint,
                        oauth.scope
                    ),
                    Err(e) => format!("OAuth {}: {e}", grant_name(oauth.grant)),
                });
            }
            let (token, _) = got?;
            Credentials {
                username: mailbox.username.clone(),
                secret: token,
                authzid: None,
                bearer: Some(id),
            }
        }
    };
    if let Some(r) = recorder {
        r.add_secrets(creds.wire_forms(&endpoint.host, endpoint.port));
    }
    Ok(creds)
}

fn grant_name(g: OAuthGrant) -> &'static str {
    match g {
        OAuthGrant::ClientCredentials => "client credentials",
        OAuthGrant::RefreshToken => "refresh token",
        OAuthGrant::ServiceAccount => "service account",
    }
}

/// After a server refused `used` as invalid: forget it, and the credentials to try once more
/// (None for a password login, which is not retried).
pub(crate) async fn renewed(
    ctx: &JobContext,
    profile: &Profile,
    endpoint: &Endpoint,
    mailbox: &Mailbox,
    used: &Credentials,
    recorder: Option<&Recorder>,
) -> Result<Option<Credentials>, SyncError> {
    let Some(id) = &used.bearer else {
        return Ok(None);
    };
    ctx.tokens.invalidate(id, &used.secret).await;
    credentials(ctx, profile, endpoint, mailbox, recorder)
        .await
        .map(Some)
}

/// A refusal of a fresh token: permanent, and said as a token problem.
pub(crate) fn token_refused(e: SyncError) -> SyncError {
    match e {
        SyncError::AuthRejected { address, reply } => SyncError::AuthRejected {
            address,
            reply: format!("the OAuth access token was refused: {reply}"),
        },
        other => other,
    }
}
