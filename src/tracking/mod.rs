//! Tracking decisions: pure functions that look at an email or a folder's state and decide what
//! to store or fetch. No I/O here, so every case is unit-tested directly.

pub mod automatic;
pub mod contacts;
pub mod decision;
#[cfg(test)]
mod decision_tests;
pub mod forward;
pub mod item_failure;
pub mod maildrop;
pub mod message;
pub mod parties;
pub mod plan;
pub mod process_from;
pub mod sent_folder;
pub mod server_state;
pub mod subject;
pub mod token;
pub mod token_alloc;
pub mod token_match;
