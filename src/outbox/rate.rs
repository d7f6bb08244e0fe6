//! The per-mailbox queueing rate (`outbox_max_per_minute`): how many emails one mailbox may queue
//! in a minute through the API, so that a leaked token or a runaway client cannot turn the
//! appliance into a spam cannon. A fixed one-minute window per mailbox; pure.

use std::collections::HashMap;

/// Emails queued per mailbox in the current window.
#[derive(Debug, Default)]
pub struct SendRate {
    windows: HashMap<String, (i64, u32)>,
}

impl SendRate {
    /// Counts one email of `mailbox` at unix time `now` if the limit allows it (0: no limit);
    /// otherwise the seconds until the window ends.
    pub fn admit(&mut self, mailbox: &str, now: i64, limit: u32) -> Result<(), i64> {
        if limit == 0 {
            return Ok(());
        }
        let minute = now.div_euclid(60);
        let entry = self
            .windows
            .entry(mailbox.to_string())
            .or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= limit {
            return Err(60 - now.rem_euclid(60));
        }
        entry.1 += 1;
        // Old windows of other mailboxes go, so the map stays as large as the active senders.
        if self.windows.len() > 10_000 {
            self.windows.retain(|_, (m, _)| *m == minute);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_is_held_to_its_minute() {
        let mut r = SendRate::default();
        let t = 6_000; // the start of a minute
        for _ in 0..3 {
            assert!(r.admit("a@x", t + 10, 3).is_ok());
        }
        assert_eq!(r.admit("a@x", t + 20, 3), Err(40));
        assert!(
            r.admit("b@x", t + 20, 3).is_ok(),
            "another mailbox has its own"
        );
        assert!(r.admit("a@x", t + 60, 3).is_ok(), "a new minute");
        assert!(r.admit("a@x", t, 0).is_ok(), "0: no limit");
    }
}
