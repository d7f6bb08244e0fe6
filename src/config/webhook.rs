//! `[[webhook]]`: where the change feed is pushed, and `event_retention`. Checked like the rest
//! of the config: every problem names its key and place.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawWebhook;
use super::{SecretFields, Validator};
use crate::net::url::Endpoint;
use crate::secret::Secret;
use crate::store::feed::EVENT_TYPES;

/// A receiver of the change feed.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub name: String,
    pub endpoint: Endpoint,
    /// Event types it wants (`activity.*` matches every activity event); empty: all.
    pub events: Vec<String>,
    /// Signs every delivery (HMAC-SHA256). `whsec_`-prefixed values are base64 (Standard
    /// Webhooks); others are used as written.
    pub secret: Secret,
    /// Why the secret (a sealed value) does not open: the webhook is held — nothing is sent,
    /// and its events are kept for it — until it does; `check-config` fails and says why.
    pub secret_error: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Deliveries at once (each to a different mailbox: one mailbox's are in order).
    pub max_in_flight: usize,
    /// Tries of one event before it goes to the dead-letter list; None (the default): tried
    /// until it is older than `give_up_after`, so a receiver down for hours or days loses
    /// nothing and gets each mailbox's events in order once it is back.
    pub max_attempts: Option<u32>,
    /// The appliance's `event_retention`: how long an event is tried without `max_attempts`.
    pub give_up_after: Duration,
    pub timeout: Duration,
    /// First wait after a failed delivery, doubling with jitter up to `max_retry_interval`.
    pub retry_interval: Duration,
    pub max_retry_interval: Duration,
}

impl Webhook {
    /// Whether an event tried `attempts` times, first recorded `age` ago, goes to the
    /// dead-letter list now.
    pub fn gives_up(&self, attempts: u32, age: Duration) -> bool {
        match self.max_attempts {
            Some(max) => attempts >= max,
            None => age >= self.give_up_after,
        }
    }

    /// Whether this webhook wants events of type `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|p| type_matches(p, kind))
    }
}

/// `activity.*` matches `activity.created`; `*` matches everything; else the exact name.
pub fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

impl Validator<'_> {
    pub(super) fn webhooks(&mut self, raw: &[RawWebhook]) -> Vec<Webhook> {
        let mut out: Vec<Webhook> = Vec::new();
        for rw in raw {
            let name = rw.name.get_ref().trim().to_string();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                self.at(
                    &rw.name,
                    format!("webhook name \"{name}\": use letters, digits, - and _ only"),
                );
            }
            if out.iter().any(|w| w.name == name) {
                self.at(
                    &rw.name,
                    format!("a webhook named \"{name}\" is already defined"),
                );
            }
            let endpoint = match Endpoint::parse_http(rw.url.get_ref().trim()) {
                Ok(e) => e,
                Err(e) => {
                    self.at(&rw.url, format!("webhook \"{name}\": url: {e}"));
                    continue;
                }
            };
            let events: Vec<String> = rw
                .events
                .as_ref()
                .map(|e| e.get_ref().iter().map(|x| x.trim().to_string()).collect())
                .unwrap_or_default();
            if let Some(span) = &rw.events {
                for p in &events {
                    if !EVENT_TYPES.iter().any(|t| type_matches(p, t)) {
                        self.at(
                            span,
                            format!(
                                "webhook \"{name}\": events: \"{p}\" matches no event type ({})",
                                EVENT_TYPES.join(", ")
                            ),
                        );
                    }
                }
            }
            // A sealed secret belongs to this webhook: it opens against the webhook's scope only.
            self.scope = format!("webhook:{name}");
            let secret = self.secret(
                "secret",
                SecretFields {
                    inline: rw.secret.as_ref(),
                    file: rw.secret_file.as_ref(),
                    env: rw.secret_env.as_ref(),
                    credential: rw.secret_credential.as_ref(),
                },
            );
            let unreadable = self
                .unreadable
                .iter()
                .find(|(scope, _)| *scope == self.scope)
                .map(|(_, why)| why.clone());
            let (secret, secret_error) = match secret {
                Some(s) if s.expose().trim().len() >= 16 => (s, None),
                Some(_) => {
                    self.at(
                        &rw.name,
                        format!("webhook \"{name}\": the secret is shorter than 16 characters"),
                    );
                    continue;
                }
                None if unreadable.is_some() => (Secret::new(String::new()), unreadable),
                None => {
                    let given = rw.secret.is_some()
                        || rw.secret_file.is_some()
                        || rw.secret_env.is_some()
                        || rw.secret_credential.is_some();
                    if !given {
                        self.at(
                            &rw.name,
                            format!(
                                "webhook \"{name}\" needs a secret (secret_file, secret_env, \
                                 secret_credential or an enc:v1 secret): deliveries are signed"
                            ),
                        );
                    }
                    continue;
                }
            };
            let ca_file = rw
                .ca_file
                .as_ref()
                .and_then(|c| self.readable_file("ca_file", c));
            let retry_interval = self.duration(
                "retry_interval",
                rw.retry_interval.as_ref(),
                Duration::from_secs(1),
                Duration::from_millis(100)..=Duration::from_secs(3600),
            );
            out.push(Webhook {
                name,
                endpoint,
                events,
                secret,
                secret_error,
                ca_file,
                max_in_flight: self.int_in("max_in_flight", rw.max_in_flight.as_ref(), 8, 1..=256)
                    as usize,
                max_attempts: rw
                    .max_attempts
                    .as_ref()
                    .map(|m| self.int_in("max_attempts", Some(m), 12, 1..=100_000) as u32),
                // Set from `[appliance]` once it is read (see `Validator::load`).
                give_up_after: Duration::from_secs(7 * 86_400),
                timeout: self.duration(
                    "timeout",
                    rw.timeout.as_ref(),
                    Duration::from_secs(10),
                    Duration::from_secs(1)..=Duration::from_secs(300),
                ),
                retry_interval,
                max_retry_interval: self.duration(
                    "max_retry_interval",
                    rw.max_retry_interval.as_ref(),
                    Duration::from_secs(600),
                    retry_interval..=Duration::from_secs(86_400),
                ),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::type_matches;
    use std::time::Duration;

    fn hooks(extra: &str) -> Vec<super::Webhook> {
        let text = format!(
            "[appliance]\nevent_retention = \"3d\"\n\n[[webhook]]\nname = \"crm\"\n\
             url = \"http://127.0.0.1:9/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n{extra}"
        );
        match crate::config::Config::parse_allowing_plaintext(std::path::Path::new("t.toml"), &text)
        {
            Ok(c) => c.webhooks,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn by_default_an_event_is_tried_for_the_whole_event_retention() {
        let [w] = &hooks("")[..] else {
            panic!("one webhook")
        };
        assert_eq!(w.max_attempts, None);
        assert_eq!(w.give_up_after, Duration::from_secs(3 * 86_400));
        // An hour-long outage is nothing: hundreds of attempts, still tried.
        assert!(!w.gives_up(500, Duration::from_secs(3600)));
        assert!(!w.gives_up(100_000, Duration::from_secs(3 * 86_400 - 1)));
        assert!(w.gives_up(1, Duration::from_secs(3 * 86_400)));
    }

    #[test]
    fn max_attempts_when_set_is_the_limit() {
        let [w] = &hooks("max_attempts = 3\n")[..] else {
            panic!("one webhook")
        };
        assert_eq!(w.max_attempts, Some(3));
        assert!(
            !w.gives_up(2, Duration::from_secs(86_400 * 30)),
            "age does not count then"
        );
        assert!(w.gives_up(3, Duration::ZERO));
    }

    #[test]
    fn event_filters() {
        assert!(type_matches("activity.*", "activity.created"));
        assert!(type_matches("*", "alert.raised"));
        assert!(type_matches("alert.raised", "alert.raised"));
        assert!(!type_matches("activity.*", "alert.raised"));
        assert!(!type_matches("activity.created", "activity.updated"));
    }
}
