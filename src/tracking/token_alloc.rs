//! Which token an outgoing email gets (issue 26): pure, over what the store knows of the mailbox.
//!
//! Invariant: no two activities of one store carry the same token, and no two shards can issue
//! the same one. A mailbox is known by its address, never by its place in the config file: the
//! first email it sends assigns it the store's next user number, kept with its own counter, so
//! inserting, removing or reordering mailboxes changes no token. The counter only grows, and a
//! wider number gets more digits instead of wrapping. Because the user number and the counter
//! both grow, two pairs can write the same digits (user 1234 and counter 5 against user 123 and
//! counter 4005), and an upgraded store holds the tokens of older versions: a candidate already in
//! the token index is passed over for the next counter. The store writer runs this inside the
//! transaction that records the email, so a crash can never hand a token out twice.

use super::token::TokenFormat;

/// What the store keeps per mailbox: its user number and the last counter it issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxTokens {
    pub user: u64,
    pub last_counter: u64,
}

/// The token an email gets, and what the store must keep for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaim {
    pub token: String,
    pub mailbox: MailboxTokens,
    /// The user number is new: the store's next user number moves past it.
    pub new_user: bool,
}

/// How many taken candidates are passed over before giving up: collisions need an unusual pair
/// of numbers or an old token, so a handful in a row means a broken index, not bad luck.
const MAX_SKIPS: u64 = 10_000;

/// The next token of a mailbox: `known` is what the store keeps for it (none before its first
/// email), `next_user` the store's next free user number, `taken` whether a token is already
/// in the token index. None only when `MAX_SKIPS` candidates in a row are taken.
pub fn next_claim(
    format: &TokenFormat,
    shard: Option<u32>,
    known: Option<MailboxTokens>,
    next_user: u64,
    taken: impl Fn(&str) -> bool,
) -> Option<TokenClaim> {
    let (user, last, new_user) = match known {
        Some(k) => (k.user, k.last_counter, false),
        None => (next_user.max(1), 0, true),
    };
    let mut counter = last;
    for _ in 0..MAX_SKIPS {
        counter = counter.checked_add(1)?;
        let token = format.token_on(shard, user, counter);
        if !taken(&token) {
            return Some(TokenClaim {
                token,
                mailbox: MailboxTokens {
                    user,
                    last_counter: counter,
                },
                new_user,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none_taken(_: &str) -> bool {
        false
    }

    #[test]
    fn a_new_mailbox_takes_the_next_user_number_and_counter_one() {
        let c = next_claim(&TokenFormat::default(), None, None, 4, none_taken).expect("claim");
        assert_eq!(c.token, "CRM:0001004001");
        assert_eq!(
            c.mailbox,
            MailboxTokens {
                user: 4,
                last_counter: 1
            }
        );
        assert!(c.new_user);
    }

    #[test]
    fn a_known_mailbox_keeps_its_number_whatever_the_next_user_is() {
        let known = MailboxTokens {
            user: 2,
            last_counter: 41,
        };
        let c =
            next_claim(&TokenFormat::default(), None, Some(known), 90, none_taken).expect("claim");
        assert_eq!(c.token, "CRM:0001002042");
        assert!(!c.new_user);
    }

    #[test]
    fn the_counter_grows_past_its_digits() {
        let known = MailboxTokens {
            user: 1,
            last_counter: 1099,
        };
        let c =
            next_claim(&TokenFormat::default(), None, Some(known), 2, none_taken).expect("claim");
        assert_eq!(c.token, "CRM:00010011100");
        assert_eq!(c.mailbox.last_counter, 1100);
    }

    #[test]
    fn a_taken_token_is_passed_over() {
        // User 123 at counter 4004 would write the digits user 1234 wrote at counter 5.
        let known = MailboxTokens {
            user: 123,
            last_counter: 4004,
        };
        let taken = |t: &str| t == "CRM:00011234005";
        let c = next_claim(&TokenFormat::default(), None, Some(known), 1235, taken).expect("claim");
        assert_eq!(c.token, "CRM:00011234006");
        assert_eq!(c.mailbox.last_counter, 4006);
    }

    #[test]
    fn shards_never_share_a_token() {
        let f = TokenFormat::default();
        let a = next_claim(&f, Some(0), None, 1, none_taken).expect("claim");
        let b = next_claim(&f, Some(1), None, 1, none_taken).expect("claim");
        assert_ne!(a.token, b.token, "the same numbers on two shards");
        assert_eq!(b.token, "CRM:00010001001001");
    }

    #[test]
    fn an_index_where_everything_is_taken_gives_no_token() {
        assert_eq!(
            next_claim(&TokenFormat::default(), None, None, 1, |_| true),
            None
        );
    }
}
