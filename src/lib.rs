//! sidesync: server-side email synchronization in one binary.
//!
//! Data flows config → engine (scheduler, per-mailbox jobs) → protocol sessions (imap, pop3, smtp) over one
//! connection layer (net) → tracking decisions → store; the HTTP side reads the store.

pub mod app;
pub mod config;
pub mod engine;
pub mod export;
pub mod files;
pub mod http;
pub mod imap;
pub mod lifecycle;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod oauth;
pub mod operate;
pub mod outbox;
pub mod pop3;
pub mod reload;
pub mod secret;
pub mod smtp;
pub mod store;
pub mod timefmt;
pub mod tracking;
pub mod vault;
pub mod watchdog;
pub mod webhook;
pub mod wire;
