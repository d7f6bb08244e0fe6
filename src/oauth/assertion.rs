//! Client credentials with a certificate instead of a secret (RFC 7523 §2.2, "private_key_jwt"):
//! a short-lived JWT naming the app as issuer and subject and the token endpoint as audience,
//! signed RS256 with the app's private key, its certificate named by thumbprint (`x5t` SHA-1 and
//! `x5t#S256`, as the Microsoft identity platform asks). ring signs; the key is read once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

use crate::secret::Secret;

/// The app's signing identity: its key, and its certificate's thumbprints when it has one (a
/// Google service account has a key only).
pub struct ClientCertificate {
    key: RsaKeyPair,
    thumbprints: Option<(String, String)>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.thumbprints {
            Some((_, s256)) => write!(f, "ClientCertificate {{ x5t#S256: {s256} }}"),
            None => write!(f, "ClientCertificate {{ key only }}"),
        }
    }
}

impl ClientCertificate {
    /// Reads a PEM certificate and its RSA private key (PKCS#8 or PKCS#1 PEM).
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Self, String> {
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_file(cert)
            .map_err(|e| format!("{}: not a PEM certificate ({e})", cert.display()))?;
        let mut c = ClientCertificate::load_key(key)?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der.as_ref());
        let sha256 = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        c.thumbprints = Some((B64.encode(sha1.as_ref()), B64.encode(sha256.as_ref())));
        Ok(c)
    }

    /// Reads an RSA private key alone (PKCS#8 or PKCS#1 PEM).
    pub fn load_key(key: &std::path::Path) -> Result<Self, String> {
        use rustls_pki_types::pem::PemObject;
        let private = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("{}: not a PEM private key ({e})", key.display()))?;
        let pair = match &private {
            rustls_pki_types::PrivateKeyDer::Pkcs8(k) => {
                RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
            }
            rustls_pki_types::PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => {
                return Err(format!(
                    "{}: the key must be RSA (PKCS#8 or PKCS#1)",
                    key.display()
                ));
            }
        }
        .map_err(|e| format!("{}: not a usable RSA key ({e})", key.display()))?;
        Ok(ClientCertificate {
            key: pair,
            thumbprints: None,
        })
    }

    /// A signed assertion for `client_id` at `audience` (the token endpoint), valid from `now`
    /// (unix seconds) for ten minutes.
    pub fn assertion(&self, client_id: &str, audience: &str, now: i64) -> Result<Secret, String> {
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| "no randomness".to_string())?;
        let claims = serde_json::json!({
            "aud": audience, "iss": client_id, "sub": client_id,
            "jti": B64.encode(jti), "nbf": now, "iat": now, "exp": now + 600,
        });
        self.sign(&claims)
    }

    /// A service account's authorization grant for one user (RFC 7523 §2.1, Google's
    /// domain-wide delegation): issuer the account, subject the mailbox, the scope asked.
    pub fn impersonation(
        &self,
        account: &str,
        user: &str,
        scope: &str,
        audience: &str,
        now: i64,
    ) -> Result<Secret, String> {
        let claims = serde_json::json!({
            "iss": account, "sub": user, "scope": scope, "aud": audience,
            "iat": now, "exp": now + 600,
        });
        self.sign(&claims)
    }

    fn sign(&self, claims: &serde_json::Value) -> Result<Secret, String> {
        let header = match &self.thumbprints {
            Some((x5t, s256)) => serde_json::json!({
                "alg": "RS256", "typ": "JWT", "x5t": x5t, "x5t#S256": s256,
            }),
            None => serde_json::json!({ "alg": "RS256", "typ": "JWT" }),
        };
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "the client key could not sign".to_string())?;
        Ok(Secret::new(format!(
            "{signing_input}.{}",
            B64.encode(signature)
        )))
    }
}

/// The JWT's parts, decoded (for tests and diagnostics): header, claims, signing input, signature.
pub fn split(jwt: &str) -> Option<(serde_json::Value, serde_json::Value, String, Vec<u8>)> {
    let mut parts = jwt.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    let header = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
    let claims = serde_json::from_slice(&B64.decode(c).ok()?).ok()?;
    Some((header, claims, format!("{h}.{c}"), B64.decode(s).ok()?))
}
