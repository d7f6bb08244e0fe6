//! Test fixtures shared by the integration tests, the demo and the benchmark: a private dovecot on
//! loopback, realistic sample emails, and the sidesync binary as a child process.
#![allow(dead_code)]

pub mod appliance;
pub mod automatic_mail;
pub mod dovecot;
pub mod hostile;
pub mod ingest;
pub mod mail;
pub mod pop3_server;
pub mod postfix;
pub mod proxy;
pub mod realmail;
pub mod sidesync;
pub mod smtp_server;
pub mod token_server;
pub mod web;
pub mod webhook_receiver;

use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A rustls server config with `cert` and `key` (PEM): the test servers' HTTPS.
pub fn tls_server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::sync::Arc<rustls::ServerConfig> {
    let certs = ::sidesync::net::pem_certificates("cert", cert).expect("cert");
    let key = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::PrivateKeyDer::from_pem_file(key).expect("key")
    };
    std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config"),
    )
}
