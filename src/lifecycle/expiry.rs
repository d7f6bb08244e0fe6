//! When an OAuth credential with a known end (a client secret, a refresh token) is worth a
//! warning: within `warning_days` of its end, or past it. Pure; the watch raises the alert.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Nothing to say yet.
    Fine,
    /// It ends within the warning window.
    Soon,
    /// It has ended.
    Past,
}

pub fn expiry(expires: DateTime<Utc>, warning_days: u32, now: DateTime<Utc>) -> Expiry {
    if now >= expires {
        Expiry::Past
    } else if now + chrono::Duration::days(i64::from(warning_days)) >= expires {
        Expiry::Soon
    } else {
        Expiry::Fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warned_within_the_window_and_after() {
        let end = Utc::now() + chrono::Duration::days(10);
        assert_eq!(expiry(end, 14, Utc::now()), Expiry::Soon);
        assert_eq!(expiry(end, 7, Utc::now()), Expiry::Fine);
        assert_eq!(expiry(end, 0, end), Expiry::Past);
        assert_eq!(
            expiry(end, 14, end + chrono::Duration::seconds(1)),
            Expiry::Past
        );
    }
}
