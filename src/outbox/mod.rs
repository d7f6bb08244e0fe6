//! The outbox (O1–O6): an email to send is an outgoing activity with a status, Pending Send →
//! Sending → Sent or Failed. This module turns an API request into the MIME to send and the
//! envelope (pure), and decides what a server's reply means for the email (pure).

pub mod bounce;
pub mod bounce_match;
pub mod bounce_record;
#[cfg(test)]
mod bounce_tests;
mod bounce_text;
pub mod envelope;
pub mod rate;
pub mod request;
pub mod retry;

pub use request::{EmailRequest, NewEmail, RequestError};
