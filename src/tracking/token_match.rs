//! Which activity a tracking token found in a subject names (issue 26). Pure.
//!
//! Since issue 26 a token is issued once (see `token_alloc`), so the index holds one activity
//! for it and the answer is exact. Stores from before issue 26 wrapped the counter at its digits,
//! so one old token can name several activities; they are all kept (the upgrade indexes every
//! outgoing activity's token) and this rule picks among them: the one whose subject is the
//! reply's subject (without `Re:` and the token), else the newest, which is what those versions
//! answered.

use super::decision::Tracked;

/// An activity the token index lists for a token, with its normalised subject hash
/// (`subject::subject_hash`, 0 for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCandidate {
    pub tracked: Tracked,
    pub subject_hash: u64,
}

/// `candidates` newest first; `reply_subject_hash` the hash of the reply's subject.
pub fn resolve(candidates: &[TokenCandidate], reply_subject_hash: u64) -> Option<Tracked> {
    match candidates {
        // Never issued (or another deployment's): no correlation by token.
        [] => None,
        // The only activity that ever carried it: exact.
        [only] => Some(only.tracked.clone()),
        // An old, wrapped token: the same subject tells them apart when exactly one has it.
        several => {
            let mut same = several
                .iter()
                .filter(|c| reply_subject_hash != 0 && c.subject_hash == reply_subject_hash);
            match (same.next(), same.next()) {
                (Some(one), None) => Some(one.tracked.clone()),
                // Several with that subject, or none: the newest of them, as before issue 26.
                (Some(newest), Some(_)) => Some(newest.tracked.clone()),
                (None, _) => several.first().map(|c| c.tracked.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(activity: u64, subject_hash: u64) -> TokenCandidate {
        TokenCandidate {
            tracked: Tracked {
                activity,
                conversation: activity,
                regarding: None,
                fingerprint: 0,
            },
            subject_hash,
        }
    }

    fn id(t: Option<Tracked>) -> Option<u64> {
        t.map(|t| t.activity)
    }

    #[test]
    fn no_candidate_no_match() {
        assert_eq!(id(resolve(&[], 5)), None);
    }

    #[test]
    fn one_candidate_is_the_answer_whatever_the_subject() {
        assert_eq!(id(resolve(&[c(7, 1)], 99)), Some(7));
    }

    #[test]
    fn an_old_wrapped_token_is_told_apart_by_its_subject() {
        // Newest first: 1100 and 100 both carried the wrapped token.
        assert_eq!(id(resolve(&[c(1100, 3), c(100, 4)], 4)), Some(100));
        assert_eq!(id(resolve(&[c(1100, 3), c(100, 4)], 3)), Some(1100));
    }

    #[test]
    fn an_old_token_the_subject_cannot_tell_apart_takes_the_newest() {
        assert_eq!(
            id(resolve(&[c(1100, 3), c(100, 3), c(50, 4)], 3)),
            Some(1100)
        );
        assert_eq!(id(resolve(&[c(1100, 3), c(100, 4)], 9)), Some(1100));
        assert_eq!(id(resolve(&[c(1100, 0), c(100, 0)], 0)), Some(1100));
    }
}
