//! Tracking tokens in subjects (O4, I6), shaped as Dynamics writes them: a prefix ("CRM:" by
//! default), then digits for the deployment, the user (mailbox) number and a message counter.
//! Unlike Dynamics' counter, ours never wraps: the configured digits are a minimum width and a
//! number that needs more digits gets them, so a token names one email for as long as its
//! activity exists (issue 26). Which numbers a mailbox gets is `token_alloc`'s job; this file
//! only writes and reads the text. Subjects are limited to 255 characters: the subject is cut to
//! make room for the token, and the token is left out if it alone would not fit.

/// The longest subject Dynamics keeps.
pub const MAX_SUBJECT: usize = 255;

/// Width of the shard digits a sharded appliance writes after the deployment: enough for
/// `config::shard::MAX_SHARDS` shards, fixed so that two shards' tokens can never be equal.
pub const SHARD_DIGITS: usize = 4;

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
    /// The token of an unsharded appliance for mailbox number `user` and its message number
    /// `counter`, each at least its configured width and wider when it needs to be.
    pub fn token(&self, user: u64, counter: u64) -> String {
        self.token_on(None, user, counter)
    }

    /// As [`TokenFormat::token`], with the shard index (4 digits after the deployment) when the
    /// appliance is one shard of several: each shard keeps its own store and numbers, so the
    /// shard digits are what keeps two shards from issuing the same token.
    pub fn token_on(&self, shard: Option<u32>, user: u64, counter: u64) -> String {
        let shard = shard.map_or(String::new(), |s| format!("{s:0w$}", w = SHARD_DIGITS));
        format!(
            "{}{:04}{shard}{user:0uw$}{counter:0cw$}",
            self.prefix,
            self.deployment,
            uw = self.user_digits.min(18) as usize,
            cw = self.counter_digits.min(18) as usize,
        )
    }

    /// The fewest digits a token of this format has (deployment, user, counter at their widths):
    /// the shape of every token Dynamics or sidesync before issue 26 wrote.
    pub fn min_digits(&self) -> usize {
        4 + (self.user_digits.min(18) + self.counter_digits.min(18)) as usize
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
/// with or without the brackets, spaces between prefix and digits, and at least as many digits as
/// the format writes (the old fixed-width tokens and the grown ones alike; the whole run of digits
/// is the token, looked up exactly). Returns it as the format writes it, so that
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
    let want = format.min_digits();
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
        if standalone && !prefix.is_empty() && digits >= want {
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
        for subject in ["Re: Quote [CRM:12]", "XCRM:0001007042", "Quote", "CRM:"] {
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
    fn numbers_grow_past_their_digits_instead_of_wrapping() {
        let f = TokenFormat::default();
        assert_eq!(f.token(7, 999), "CRM:0001007999");
        assert_eq!(f.token(7, 1000), "CRM:00010071000", "the counter grows");
        assert_eq!(f.token(7, 1100), "CRM:00010071100");
        assert_ne!(
            f.token(7, 1100),
            f.token(7, 100),
            "no wrap: #1100 is not #100"
        );
        assert_eq!(
            f.token(1234, 5),
            "CRM:00011234005",
            "the user number grows too"
        );
        assert_eq!(f.min_digits(), 10);
    }

    #[test]
    fn shards_write_their_index_after_the_deployment() {
        let f = TokenFormat::default();
        assert_eq!(f.token_on(Some(3), 1, 1), "CRM:00010003001001");
        assert_eq!(f.token_on(None, 1, 1), f.token(1, 1));
        assert_ne!(f.token_on(Some(0), 1, 1), f.token_on(Some(1), 1, 1));
    }

    #[test]
    fn old_and_grown_tokens_are_both_found() {
        let f = TokenFormat::default();
        // The fixed-width form every token had before issue 26 (and Dynamics writes).
        assert_eq!(
            find_token("Re: Quote [CRM:0001007042]", &f).as_deref(),
            Some("CRM:0001007042")
        );
        // Grown forms: a counter past 999, a shard's index.
        for t in ["CRM:00010071100", "CRM:00010003001001", "CRM:00011234005"] {
            assert_eq!(
                find_token(&format!("RE: Quote [{}]", t.to_lowercase()), &f).as_deref(),
                Some(t)
            );
        }
        // Fewer digits than the format's widths is not a token.
        assert_eq!(find_token("Re: [CRM:000100704]", &f), None);
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
