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

/// Finds a token of this format in a subject, tolerantly as Dynamics does: the prefix in any case,
/// with or without the brackets, spaces between prefix and digits, and exactly as many digits as
/// the format writes (deployment, user, counter). Returns it as the format writes it, so that
/// "re: [crm: 0001007042]" and "[CRM:0001007042]" are the same token.
pub fn find_token(subject: &str, format: &TokenFormat) -> Option<String> {
    let prefix = format.prefix.to_lowercase();
    let lower = subject.to_lowercase();
    if prefix.is_empty() || lower.len() != subject.len() {
        // Lower-casing changed byte offsets (rare scripts): fall back to an exact-case search.
        return find_exact(subject, format);
    }
    scan(&lower, &prefix, format)
}

fn find_exact(subject: &str, format: &TokenFormat) -> Option<String> {
    scan(subject, &format.prefix, format)
}

fn scan(haystack: &str, prefix: &str, format: &TokenFormat) -> Option<String> {
    let want = 4 + (format.user_digits + format.counter_digits) as usize;
    let mut from = 0;
    while let Some(at) = haystack[from..].find(prefix) {
        let start = from + at;
        // The prefix must not be the tail of a longer word ("XCRM:").
        let standalone = haystack[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let rest = haystack[start + prefix.len()..].trim_start_matches([' ', '\t']);
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if standalone && !prefix.is_empty() && digits == want {
            return Some(format!("{}{}", format.prefix, &rest[..digits]));
        }
        from = start + prefix.len().max(1);
        if from >= haystack.len() {
            break;
        }
    }
    None
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
        for subject in [
            "Re: Quote [CRM:0001007042]",
            "RE: Quote [crm:0001007042]",
            "AW: Quote CRM:0001007042",
            "Re: Quote [CRM: 0001007042] (2)",
            "[CRM:0001007042]",
        ] {
            assert_eq!(
                find_token(subject, &f).as_deref(),
                Some("CRM:0001007042"),
                "{subject}"
            );
        }
        for subject in [
            "Re: Quote [CRM:12]",
            "Re: Quote [CRM:00010070421]",
            "XCRM:0001007042",
            "Quote",
            "CRM:",
        ] {
            assert_eq!(find_token(subject, &f), None, "{subject}");
        }
        let wide = TokenFormat {
            prefix: "Case#".into(),
            deployment: 2,
            user_digits: 5,
            counter_digits: 6,
        };
        let t = wide.token(12, 345);
        assert_eq!(t, "Case#000200012000345");
        assert_eq!(
            find_token(&format!("re: hi [case#{}]", &t[5..]), &wide).as_deref(),
            Some(t.as_str())
        );
        assert_eq!(find_token("hi [CRM:0001007042]", &wide), None);
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
        // A cut subject still carries its whole token, and it is found again.
        assert_eq!(find_token(&s, &f).as_deref(), Some("CRM:0001001001"));
    }
}
