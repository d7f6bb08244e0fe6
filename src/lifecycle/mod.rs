//! The mailbox lifecycle in one place, as pure functions (M3–M8): its state and how each event
//! changes it (`state`, `transitions`), whether a mailbox is processed in each direction and why
//! not (`eligibility`), what follows a failed sync (`after_failure`), and the one rule for
//! "failing" that the status page, `/metrics` and the 50% alert share (`failing`). The scheduler,
//! the outbox task and the store writer only orchestrate and persist what these decide.

pub mod after_failure;
pub mod eligibility;
pub mod expiry;
pub mod failing;
pub mod stale;
pub mod state;
pub mod transitions;
