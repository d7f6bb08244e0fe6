//! A small OAuth 2.0 authorization server for the tests, over HTTPS (the dovecot fixture's
//! certificate): `POST /token` issues access tokens for client credentials and refresh tokens
//! (rotating refresh tokens when asked), `POST /introspect` tells dovecot's oauth2 passdb whether
//! a token is active (RFC 7662). The test can expire every access token, revoke a refresh token,
//! and count the token requests.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "sidesync-test-app";
pub const CLIENT_SECRET: &str = "app-secret-4711";

#[derive(Default)]
struct State {
    access: HashSet<String>,
    refresh: HashSet<String>,
    revoked: HashSet<String>,
    issued: usize,
    /// Each refresh token's first ancestor (the one the test granted).
    origin: HashMap<String, String>,
}

pub struct TokenServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    /// Token requests answered (every grant type, refused ones included).
    pub requests: Arc<AtomicUsize>,
    /// Issue a new refresh token with every refresh (and retire the old one).
    pub rotate: Arc<AtomicBool>,
    /// Access tokens live this many seconds (as the answer says).
    pub expires_in: Arc<AtomicUsize>,
    /// The app certificate whose key may sign client assertions (DER).
    app_certificate: Arc<Mutex<Option<Vec<u8>>>>,
    /// Introspection calls every token inactive (a server that refuses them all).
    pub refuse_all: Arc<AtomicBool>,
}

fn form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

impl TokenServer {
    /// Serves on a free loopback port with `cert`/`key` (PEM).
    pub fn start(cert: &Path, key: &Path) -> TokenServer {
        let config = super::tls_server_config(cert, key);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = TokenServer {
            port,
            state: Arc::default(),
            requests: Arc::default(),
            rotate: Arc::new(AtomicBool::new(false)),
            expires_in: Arc::new(AtomicUsize::new(3600)),
            app_certificate: Arc::default(),
            refuse_all: Arc::new(AtomicBool::new(false)),
        };
        let (state, requests, rotate, expires_in, app_cert, refuse_all) = (
            server.state.clone(),
            server.requests.clone(),
            server.rotate.clone(),
            server.expires_in.clone(),
            server.app_certificate.clone(),
            server.refuse_all.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (config, state, requests, rotate, expires_in, app_cert, refuse_all) = (
                    config.clone(),
                    state.clone(),
                    requests.clone(),
                    rotate.clone(),
                    expires_in.clone(),
                    app_cert.clone(),
                    refuse_all.clone(),
                );
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    let mut reader = BufReader::new(&mut tls);
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length.min(64 * 1024)];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let f = form(&String::from_utf8_lossy(&body));
                    let (status, answer) = match path.as_str() {
                        "/token" => {
                            requests.fetch_add(1, Ordering::SeqCst);
                            let url = format!("https://127.0.0.1:{port}/token");
                            let cert = app_cert.lock().expect("cert").clone();
                            token(&state, &f, &rotate, &expires_in, cert.as_deref(), &url)
                        }
                        "/introspect" => {
                            // An app token acts for every mailbox: dovecot compares the token's
                            // user with a constant (username_validation_format), not the login.
                            let active = !refuse_all.load(Ordering::SeqCst)
                                && f.get("token").is_some_and(|t| {
                                    state.lock().expect("state").access.contains(t)
                                });
                            (
                                200,
                                format!("{{\"active\":{active},\"email\":\"sidesync-app\"}}"),
                            )
                        }
                        _ => (404, "{\"error\":\"not_found\"}".to_string()),
                    };
                    let reason = if status == 200 { "OK" } else { "Bad Request" };
                    let _ = write!(
                        tls,
                        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        server
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/token", self.port)
    }

    pub fn introspection_url(&self) -> String {
        format!("https://127.0.0.1:{}/introspect", self.port)
    }

    /// A refresh token the server knows (as if a user had consented).
    pub fn grant_refresh_token(&self, token: &str) {
        self.state
            .lock()
            .expect("state")
            .refresh
            .insert(token.to_string());
    }

    /// Every access token stops working now (as if they had expired early).
    pub fn expire_access_tokens(&self) {
        self.state.lock().expect("state").access.clear();
    }

    /// The refresh token is revoked (the user withdrew consent).
    pub fn revoke_refresh_token(&self, token: &str) {
        let mut s = self.state.lock().expect("state");
        s.refresh.remove(token);
        s.revoked.insert(token.to_string());
    }

    /// Client assertions signed by this certificate's key are accepted (PEM file).
    pub fn trust_app_certificate(&self, pem: &Path) {
        let der = sidesync::net::pem_certificates("app", pem).expect("app cert");
        *self.app_certificate.lock().expect("cert") = Some(der[0].as_ref().to_vec());
    }

    /// The refresh token now valid that descends from `granted` (rotation).
    pub fn current_refresh_of(&self, granted: &str) -> Option<String> {
        let s = self.state.lock().expect("state");
        s.refresh
            .iter()
            .find(|t| *t == granted || s.origin.get(*t).map(String::as_str) == Some(granted))
            .cloned()
    }

    /// The refresh tokens currently valid.
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("state")
            .refresh
            .iter()
            .cloned()
            .collect()
    }
}

/// Whether a client assertion (RFC 7523) is signed by the app certificate's key and says what
/// it must: issuer and subject the client, audience this endpoint, not expired.
fn assertion_ok(jwt: &str, cert: &[u8], audience: &str) -> Result<(), String> {
    signed_claims(jwt, cert, audience, true).map(|_| ())
}

/// The claims of a JWT signed by the certificate's key, for `audience`, not expired (and for a
/// client assertion, with the certificate's thumbprint and the client as subject).
fn signed_claims(
    jwt: &str,
    cert: &[u8],
    audience: &str,
    client_assertion: bool,
) -> Result<serde_json::Value, String> {
    let (header, claims, input, signature) =
        sidesync::oauth::assertion::split(jwt).ok_or("not a JWT")?;
    if header["alg"] != "RS256" || (client_assertion && !header["x5t"].is_string()) {
        return Err(format!("header {header}"));
    }
    let der = rustls_pki_types::CertificateDer::from(cert.to_vec());
    let ee = webpki::EndEntityCert::try_from(&der).map_err(|e| e.to_string())?;
    ee.verify_signature(
        webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        input.as_bytes(),
        &signature,
    )
    .map_err(|e| format!("signature: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let subject_ok = if client_assertion {
        claims["sub"] == CLIENT_ID
    } else {
        claims["sub"].as_str().is_some_and(|s| s.contains('@'))
    };
    if claims["iss"] != CLIENT_ID
        || !subject_ok
        || claims["aud"] != audience
        || claims["exp"].as_i64().is_none_or(|e| e < now)
    {
        return Err(format!("claims {claims}"));
    }
    Ok(claims)
}

fn token(
    state: &Mutex<State>,
    f: &HashMap<String, String>,
    rotate: &AtomicBool,
    expires_in: &AtomicUsize,
    app_cert: Option<&[u8]>,
    url: &str,
) -> (u16, String) {
    let mut s = state.lock().expect("state");
    let refused = |e: &str, d: &str| {
        (
            400,
            format!("{{\"error\":\"{e}\",\"error_description\":\"{d}\"}}"),
        )
    };
    let jwt_grant = f.get("grant_type").map(String::as_str)
        == Some("urn:ietf:params:oauth:grant-type:jwt-bearer");
    if !jwt_grant && f.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return refused("invalid_client", "unknown client");
    }
    let mut new_refresh = None;
    match f.get("grant_type").map(String::as_str) {
        Some("client_credentials") => match (f.get("client_assertion"), app_cert) {
            (Some(jwt), Some(cert)) => {
                if f.get("client_assertion_type").map(String::as_str)
                    != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                {
                    return refused("invalid_request", "client_assertion_type");
                }
                if let Err(e) = assertion_ok(jwt, cert, url) {
                    return refused("invalid_client", &e.replace('"', "'"));
                }
            }
            _ => {
                if f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET) {
                    return refused("invalid_client", "wrong client secret");
                }
            }
        },
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let (Some(jwt), Some(cert)) = (f.get("assertion"), app_cert) else {
                return refused("invalid_grant", "no assertion");
            };
            if let Err(e) = signed_claims(jwt, cert, url, false) {
                return refused("invalid_grant", &e.replace('"', "'"));
            }
        }
        Some("refresh_token") => {
            let Some(rt) = f.get("refresh_token") else {
                return refused("invalid_request", "no refresh_token");
            };
            if !s.refresh.contains(rt) {
                return refused("invalid_grant", "the refresh token is revoked or expired");
            }
            if rotate.load(Ordering::SeqCst) {
                s.issued += 1;
                let next = format!("rt-rotated-{}", s.issued);
                s.refresh.remove(rt);
                s.refresh.insert(next.clone());
                let first = s.origin.get(rt).cloned().unwrap_or_else(|| rt.clone());
                s.origin.insert(next.clone(), first);
                new_refresh = Some(next);
            }
        }
        _ => return refused("unsupported_grant_type", "?"),
    }
    s.issued += 1;
    let at = format!("at-{}-{}", std::process::id(), s.issued);
    s.access.insert(at.clone());
    let refresh = new_refresh
        .map(|r| format!(",\"refresh_token\":\"{r}\""))
        .unwrap_or_default();
    (
        200,
        format!(
            "{{\"access_token\":\"{at}\",\"token_type\":\"Bearer\",\"expires_in\":{}{refresh}}}",
            expires_in.load(Ordering::SeqCst)
        ),
    )
}
