//! The token endpoint's language (RFC 6749): the form a grant request sends, and what the answer
//! says — an access token with its lifetime (and maybe a new refresh token), or an error with the
//! endpoint's own words. Pure; `http.rs` carries the bytes.

use crate::secret::Secret;

/// What is asked of the token endpoint.
pub enum GrantRequest<'a> {
    /// App-only (RFC 6749 §4.4): one identity acting for every mailbox of the profile.
    ClientCredentials {
        client_id: &'a str,
        client_secret: &'a Secret,
        scope: &'a str,
    },
    /// App-only with a certificate: a signed client assertion instead of a secret (RFC 7523).
    ClientAssertion {
        client_id: &'a str,
        assertion: &'a Secret,
        scope: &'a str,
    },
    /// A service account's signed grant for one mailbox (RFC 7523 §2.1).
    JwtBearer { assertion: &'a Secret },
    /// Delegated (RFC 6749 §6): a mailbox's own refresh token.
    RefreshToken {
        client_id: &'a str,
        client_secret: Option<&'a Secret>,
        refresh_token: &'a Secret,
        scope: &'a str,
    },
}

/// `application/x-www-form-urlencoded` (the HTML form encoding RFC 6749 §B names).
fn encode(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    for (i, part) in [key, value].iter().enumerate() {
        if i == 1 {
            out.push('=');
        }
        for b in part.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
}

impl GrantRequest<'_> {
    /// The request body (it holds secrets: it never reaches a log or a transcript).
    pub fn body(&self) -> Secret {
        let mut b = String::new();
        match self {
            GrantRequest::ClientCredentials {
                client_id,
                client_secret,
                scope,
            } => {
                encode(&mut b, "grant_type", "client_credentials");
                encode(&mut b, "client_id", client_id);
                encode(&mut b, "client_secret", client_secret.expose());
                encode(&mut b, "scope", scope);
            }
            GrantRequest::ClientAssertion {
                client_id,
                assertion,
                scope,
            } => {
                encode(&mut b, "grant_type", "client_credentials");
                encode(&mut b, "client_id", client_id);
                encode(
                    &mut b,
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                );
                encode(&mut b, "client_assertion", assertion.expose());
                encode(&mut b, "scope", scope);
            }
            GrantRequest::JwtBearer { assertion } => {
                encode(
                    &mut b,
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer",
                );
                encode(&mut b, "assertion", assertion.expose());
            }
            GrantRequest::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
                scope,
            } => {
                encode(&mut b, "grant_type", "refresh_token");
                encode(&mut b, "refresh_token", refresh_token.expose());
                encode(&mut b, "client_id", client_id);
                if let Some(s) = client_secret {
                    encode(&mut b, "client_secret", s.expose());
                }
                if !scope.is_empty() {
                    encode(&mut b, "scope", scope);
                }
            }
        }
        Secret::new(b)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            GrantRequest::ClientCredentials { .. } | GrantRequest::ClientAssertion { .. } => {
                "client_credentials"
            }
            GrantRequest::RefreshToken { .. } => "refresh_token",
            GrantRequest::JwtBearer { .. } => "jwt_bearer",
        }
    }
}

/// A successful answer.
#[derive(Debug)]
pub struct Grant {
    pub access_token: Secret,
    /// Seconds the access token lives (the endpoint's word; a default when it says nothing).
    pub expires_in: u64,
    /// A new refresh token (rotation): it replaces the one used, which may stop working.
    pub refresh_token: Option<Secret>,
    /// Seconds the refresh token lives, when the endpoint says (some do).
    pub refresh_token_expires_in: Option<u64>,
}

/// Why the endpoint said no, or what was wrong with its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// RFC 6749 §5.2: `invalid_grant` (a refresh token revoked or expired), `invalid_client`
    /// (a wrong or expired client secret), … — permanent until an admin acts.
    #[error("the token endpoint refused: {error}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    /// The endpoint is unwell (5xx, 429, a temporarily_unavailable error): try again later.
    #[error("the token endpoint is unavailable now (HTTP {status}){}", text.as_ref().map(|t| format!(": {t}")).unwrap_or_default())]
    Unavailable { status: u16, text: Option<String> },
    #[error("the token endpoint's answer is not a token response: {0}")]
    Malformed(String),
}

impl GrantError {
    pub fn transient(&self) -> bool {
        matches!(self, GrantError::Unavailable { .. })
    }
}

/// Access tokens whose lifetime the endpoint does not state are used for this long.
pub const DEFAULT_EXPIRES_IN: u64 = 3600;

/// Reads the endpoint's answer: HTTP status and JSON body.
pub fn parse(status: u16, body: &[u8]) -> Result<Grant, GrantError> {
    let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().map(str::to_string);
    let number = |v: &serde_json::Value, k: &str| {
        v[k].as_u64()
            .or_else(|| v[k].as_str().and_then(|s| s.parse().ok()))
    };
    if status == 429 || status >= 500 {
        return Err(GrantError::Unavailable {
            status,
            text: v.as_ref().and_then(|v| text(v, "error")),
        });
    }
    let Some(v) = v else {
        return Err(GrantError::Malformed(format!(
            "HTTP {status} with a body that is not JSON"
        )));
    };
    if let Some(error) = text(&v, "error") {
        if error == "temporarily_unavailable" {
            return Err(GrantError::Unavailable {
                status,
                text: text(&v, "error_description"),
            });
        }
        return Err(GrantError::Refused {
            error,
            description: text(&v, "error_description"),
        });
    }
    if status != 200 {
        return Err(GrantError::Malformed(format!(
            "HTTP {status} without an error"
        )));
    }
    let Some(access_token) = text(&v, "access_token").filter(|t| !t.is_empty()) else {
        return Err(GrantError::Malformed("no access_token".into()));
    };
    if let Some(kind) = text(&v, "token_type")
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(GrantError::Malformed(format!(
            "token_type \"{kind}\" is not Bearer"
        )));
    }
    Ok(Grant {
        access_token: Secret::new(access_token),
        expires_in: number(&v, "expires_in").unwrap_or(DEFAULT_EXPIRES_IN),
        refresh_token: text(&v, "refresh_token")
            .filter(|t| !t.is_empty())
            .map(Secret::new),
        refresh_token_expires_in: number(&v, "refresh_token_expires_in"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_are_form_encoded() {
        let secret = Secret::new("s3cr&t=+");
        let body = GrantRequest::ClientCredentials {
            client_id: "app-1",
            client_secret: &secret,
            scope: "https://outlook.office365.com/.default",
        }
        .body();
        assert_eq!(
            body.expose(),
            "grant_type=client_credentials&client_id=app-1&client_secret=s3cr%26t%3D%2B\
             &scope=https%3A%2F%2Foutlook.office365.com%2F.default"
        );
        let rt = Secret::new("1//0g rt");
        let body = GrantRequest::RefreshToken {
            client_id: "c",
            client_secret: None,
            refresh_token: &rt,
            scope: "",
        }
        .body();
        assert_eq!(
            body.expose(),
            "grant_type=refresh_token&refresh_token=1%2F%2F0g+rt&client_id=c"
        );
    }

    #[test]
    fn answers_tokens_rotation_and_errors() {
        let g = parse(
            200,
            br#"{"access_token":"at-1","token_type":"Bearer","expires_in":3599,"refresh_token":"rt-2","refresh_token_expires_in":"86400"}"#,
        )
        .expect("grant");
        assert_eq!(g.access_token.expose(), "at-1");
        assert_eq!(g.expires_in, 3599);
        assert_eq!(g.refresh_token.as_ref().map(|t| t.expose()), Some("rt-2"));
        assert_eq!(g.refresh_token_expires_in, Some(86400));
        let plain = parse(200, br#"{"access_token":"at","token_type":"bearer"}"#).expect("grant");
        assert_eq!(plain.expires_in, DEFAULT_EXPIRES_IN);
        assert!(plain.refresh_token.is_none());

        let e = parse(
            400,
            br#"{"error":"invalid_grant","error_description":"AADSTS70008: The refresh token has expired"}"#,
        )
        .expect_err("refused");
        assert!(!e.transient());
        assert!(e.to_string().contains("invalid_grant (AADSTS70008"), "{e}");
        assert!(parse(503, b"<html>").expect_err("x").transient());
        assert!(parse(429, b"{}").expect_err("x").transient());
        assert!(
            parse(400, br#"{"error":"temporarily_unavailable"}"#)
                .expect_err("x")
                .transient()
        );
        assert!(matches!(
            parse(200, b"not json"),
            Err(GrantError::Malformed(_))
        ));
        assert!(matches!(
            parse(200, br#"{"access_token":"x","token_type":"mac"}"#),
            Err(GrantError::Malformed(_))
        ));
        assert!(matches!(
            parse(200, br#"{"token_type":"Bearer"}"#),
            Err(GrantError::Malformed(_))
        ));
    }
}
