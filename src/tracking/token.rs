//! Tracking tokens in subjects (O4, I6), as Dynamics writes them: a prefix ("CRM:" by default),
//! then digits for the deployment, the user (mailbox) number and a message counter that wraps.
//! Subjects are limited to 255 characters: the subject is cut to make room for the token, and
//! the token is left out if it alone would not fit.

/// The longest subject Dynamics keeps.
pub const MAX_SUBJECT: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFormat {
    pub prefix: String,
    pub deployment: u32,
    pub user_digits: u32,
    pub counter_digits: u32,
}

impl Default for TokenFormat {
    fn default() -> Self {
        TokenFormat {
            prefix: "CRM:".into(),
            deployment: 1,
            user_digits: 3,
            counter_digits: 3,
        }
    }
}

impl TokenFormat {
    /// The token for mailbox number `user` and message number `counter` (wrapping).
    pub fn token(&self, user: u64, counter: u64) -> String {
        let wrap = |n: u64, digits: u32| n % 10u64.pow(digits.min(18));
        format!(
            "{}{:04}{:0uw$}{:0cw$}",
            self.prefix,
            self.deployment,
            wrap(user, self.user_digits),
            wrap(counter, self.counter_digits),
            uw = self.user_digits as usize,
            cw = self.counter_digits as usize,
        )
    }
}

/// "subject [token]", cut to 255 characters; the subject alone if the token cannot fit.
pub fn with_token(subject: &str, token: &str) -> String {
    let tail = format!(" [{token}]");
    let tail_len = tail.chars().count();
    if tail_len > MAX_SUBJECT {
        return subject.chars().take(MAX_SUBJECT).collect();
    }
    let room = MAX_SUBJECT - tail_len;
    let mut out: String = subject.chars().take(room).collect();
    out.push_str(&tail);
    out
}

/// Finds a token of this format in a subject (for correlating replies).
pub fn find_token<'a>(subject: &'a str, format: &TokenFormat) -> Option<&'a str> {
    let start = subject.find(&format!("[{}", format.prefix))? + 1;
    let rest = &subject[start..];
    let end = rest.find(']')?;
    let token = &rest[..end];
    let digits = &token[format.prefix.len()..];
    (digits.len() == 4 + (format.user_digits + format.counter_digits) as usize
        && digits.bytes().all(|b| b.is_ascii_digit()))
    .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamics_shaped_tokens() {
        let f = TokenFormat::default();
        assert_eq!(f.token(7, 42), "CRM:0001007042");
        assert_eq!(f.token(7, 1042), "CRM:0001007042", "the counter wraps");
        assert_eq!(
            with_token("Quote", &f.token(7, 42)),
            "Quote [CRM:0001007042]"
        );
        assert_eq!(
            find_token("Re: Quote [CRM:0001007042]", &f),
            Some("CRM:0001007042")
        );
        assert_eq!(find_token("Re: Quote [CRM:12]", &f), None);
    }

    #[test]
    fn long_subjects_are_cut_to_fit_the_token() {
        let f = TokenFormat::default();
        let s = with_token(&"é".repeat(300), &f.token(1, 1));
        assert_eq!(s.chars().count(), MAX_SUBJECT);
        assert!(s.ends_with("[CRM:0001001001]"));
        let huge = TokenFormat {
            prefix: "X".repeat(300),
            ..TokenFormat::default()
        };
        assert_eq!(
            with_token("short", &huge.token(1, 1)),
            "short",
            "a token that cannot fit is dropped"
        );
    }
}
