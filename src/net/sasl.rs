//! SASL for bearer tokens, shared by IMAP, POP3 and SMTP: XOAUTH2 (Google's and Microsoft's)
//! and OAUTHBEARER (RFC 7628), and which one a login uses. Pure; the sessions send the bytes.

use crate::config::AuthProtocol;

/// A bearer-token mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerMechanism {
    XOAuth2,
    OAuthBearer,
}

impl BearerMechanism {
    pub fn name(self) -> &'static str {
        match self {
            BearerMechanism::XOAuth2 => "XOAUTH2",
            BearerMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// XOAUTH2's initial response: `user=U ^A auth=Bearer T ^A ^A`.
pub fn xoauth2(user: &str, token: &str) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes())
}

/// OAUTHBEARER's initial response (RFC 7628 §3.1): a GS2 header naming the user (`,` and `=`
/// escaped as RFC 5801 says), then host, port and the token as key=value pairs.
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &str) -> zeroize::Zeroizing<Vec<u8>> {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    zeroize::Zeroizing::new(
        format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
            .into_bytes(),
    )
}

/// The mechanism for a login with a bearer token: the configured one, or with `auto` the one the
/// server advertises (OAUTHBEARER, the standard, first). `advertised(name)` says whether the
/// server offers a mechanism. None: the server offers neither (or the protocol is a password
/// one), said as the reason.
pub fn bearer_mechanism(
    protocol: AuthProtocol,
    advertised: impl Fn(&str) -> bool,
) -> Result<BearerMechanism, String> {
    match protocol {
        AuthProtocol::XOAuth2 => Ok(BearerMechanism::XOAuth2),
        AuthProtocol::OAuthBearer => Ok(BearerMechanism::OAuthBearer),
        AuthProtocol::Auto => {
            if advertised("OAUTHBEARER") {
                Ok(BearerMechanism::OAuthBearer)
            } else if advertised("XOAUTH2") {
                Ok(BearerMechanism::XOAuth2)
            } else {
                Err("the server offers neither OAUTHBEARER nor XOAUTH2".into())
            }
        }
        AuthProtocol::Plain | AuthProtocol::Login => Err(
            "the profile logs in with an OAuth token: its authentication protocol must be \
             \"auto\", \"xoauth2\" or \"oauthbearer\""
                .into(),
        ),
    }
}

/// What a server's failure challenge says (XOAUTH2 and OAUTHBEARER send a base64 JSON status
/// before the final NO): `invalid_token` (the token expired or was revoked: refresh and retry)
/// or something else, with the server's words.
pub fn failure_status(challenge: &[u8]) -> Option<(bool, String)> {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(challenge.trim_ascii())
        .unwrap_or_else(|_| challenge.to_vec());
    let v: serde_json::Value = serde_json::from_slice(&decoded).ok()?;
    let status = v["status"].as_str().unwrap_or("").to_string();
    // XOAUTH2 (Google) says "401" or "400"; OAUTHBEARER says "invalid_token".
    let invalid = status == "invalid_token" || status == "401";
    Some((invalid, v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bearer responses come in buffers that are overwritten when dropped (zeroize's
    /// `Zeroizing`, whose drop is the `zeroize()` called here): the token does not stay behind in
    /// freed memory. The types are the check; wiping one shows what its drop does.
    #[test]
    fn credential_forms_are_wiped_buffers() {
        use zeroize::{Zeroize, Zeroizing};
        let mut x: Zeroizing<Vec<u8>> = xoauth2("u@example.com", "the-token");
        let mut o: Zeroizing<Vec<u8>> = oauthbearer("u@example.com", "h", 993, "the-token");
        assert!(x.windows(9).any(|w| w == b"the-token"));
        x.zeroize();
        o.zeroize();
        assert!(x.is_empty() && o.is_empty());
    }

    #[test]
    fn the_initial_responses_as_the_specifications_write_them() {
        assert_eq!(
            *xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
        // RFC 7628 §4.1.
        assert_eq!(
            *oauthbearer("user@example.com", "server.example.com", 143, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="),
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        assert!(oauthbearer("a=b,c@x", "h", 1, "t").starts_with(b"n,a=a=3Db=2Cc@x,"));
    }

    #[test]
    fn auto_prefers_oauthbearer_and_says_when_neither_is_offered() {
        let both = |m: &str| m == "XOAUTH2" || m == "OAUTHBEARER";
        let xo = |m: &str| m == "XOAUTH2";
        let none = |_: &str| false;
        assert_eq!(
            bearer_mechanism(AuthProtocol::Auto, both),
            Ok(BearerMechanism::OAuthBearer)
        );
        assert_eq!(
            bearer_mechanism(AuthProtocol::Auto, xo),
            Ok(BearerMechanism::XOAuth2)
        );
        assert!(bearer_mechanism(AuthProtocol::Auto, none).is_err());
        assert_eq!(
            bearer_mechanism(AuthProtocol::XOAuth2, none),
            Ok(BearerMechanism::XOAuth2),
            "configured: used as said"
        );
        assert!(bearer_mechanism(AuthProtocol::Plain, both).is_err());
    }

    #[test]
    fn failure_challenges() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let (invalid, text) = failure_status(
            b64(r#"{"status":"invalid_token","scope":"imap","openid-configuration":"x"}"#)
                .as_bytes(),
        )
        .expect("a status");
        assert!(invalid, "{text}");
        let (invalid, _) =
            failure_status(b64(r#"{"status":"401","schemes":"Bearer"}"#).as_bytes()).expect("x");
        assert!(invalid);
        let (invalid, _) = failure_status(b64(r#"{"status":"400"}"#).as_bytes()).expect("x");
        assert!(!invalid);
        assert_eq!(failure_status(b"not json at all"), None);
    }
}
