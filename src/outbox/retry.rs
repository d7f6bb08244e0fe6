//! What happens to a queued email after an attempt (O2): pure decisions.

use std::time::Duration;

/// The outcome of one attempt to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The server took it (possibly not for every recipient).
    Accepted,
    /// A 4xx reply, a timeout or a dropped connection: try again later.
    Transient(String),
    /// A 5xx reply: trying again would get the same answer.
    Permanent(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    Sent,
    RetryAfter(Duration),
    Failed(String),
}

/// Exponential backoff from `base`, doubling per try, capped at `max`, with up to 25% jitter
/// (`jitter` in 0..=1000 chooses how much) so that many emails do not retry in lockstep.
pub fn backoff(base: Duration, tries: u32, max: Duration, jitter: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << tries.saturating_sub(1).min(20));
    let capped = exp.min(max);
    capped + capped.mul_f64(f64::from(jitter.min(1000)) / 4000.0)
}

pub fn next_step(
    attempt: &Attempt,
    tries: u32,
    max_tries: u32,
    base: Duration,
    max: Duration,
    jitter: u32,
) -> NextStep {
    match attempt {
        Attempt::Accepted => NextStep::Sent,
        Attempt::Permanent(reply) => NextStep::Failed(reply.clone()),
        Attempt::Transient(reply) if tries >= max_tries => {
            NextStep::Failed(format!("{reply} (gave up after {tries} tries)"))
        }
        Attempt::Transient(_) => NextStep::RetryAfter(backoff(base, tries, max, jitter)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn transient_retries_back_off_then_fail() {
        let t = Attempt::Transient("451 later".into());
        assert_eq!(
            next_step(&t, 1, 3, 60 * S, 3600 * S, 0),
            NextStep::RetryAfter(60 * S)
        );
        assert_eq!(
            next_step(&t, 2, 3, 60 * S, 3600 * S, 0),
            NextStep::RetryAfter(120 * S)
        );
        assert_eq!(
            next_step(&t, 3, 3, 60 * S, 3600 * S, 0),
            NextStep::Failed("451 later (gave up after 3 tries)".into())
        );
        assert_eq!(backoff(60 * S, 10, 3600 * S, 0), 3600 * S, "capped");
        assert_eq!(
            backoff(60 * S, 1, 3600 * S, 1000),
            75 * S,
            "at most 25% jitter"
        );
    }

    #[test]
    fn permanent_and_accepted() {
        assert_eq!(
            next_step(&Attempt::Permanent("550 no".into()), 1, 9, S, S, 0),
            NextStep::Failed("550 no".into())
        );
        assert_eq!(next_step(&Attempt::Accepted, 1, 9, S, S, 0), NextStep::Sent);
    }
}
