//! The status page's search and filters (`/?q=&profile=&state=&page=`): what a query string asks
//! for, and whether a mailbox matches. Pure; the page renders the form back from the same values.

use super::error::percent_decode;

/// A mailbox state the page can filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Failing,
    Stale,
    NotProcessed,
    WaitingForTest,
    FirstSync,
    Ok,
}

impl StateFilter {
    pub const ALL: [StateFilter; 6] = [
        StateFilter::Failing,
        StateFilter::Stale,
        StateFilter::NotProcessed,
        StateFilter::WaitingForTest,
        StateFilter::FirstSync,
        StateFilter::Ok,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Failing => "failing",
            StateFilter::Stale => "stale",
            StateFilter::NotProcessed => "not_processed",
            StateFilter::WaitingForTest => "waiting_for_test",
            StateFilter::FirstSync => "first_sync",
            StateFilter::Ok => "ok",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            StateFilter::Failing => "failing",
            StateFilter::Stale => "stale",
            StateFilter::NotProcessed => "not processed",
            StateFilter::WaitingForTest => "waiting for Test & Enable",
            StateFilter::FirstSync => "in first sync",
            StateFilter::Ok => "ok",
        }
    }
}

/// What a mailbox is, for matching.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub address: &'a str,
    pub name: Option<&'a str>,
    pub profile: Option<&'a str>,
    pub failing: bool,
    pub stale: bool,
    pub not_processed: bool,
    pub waiting_for_test: bool,
    pub first_sync: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Part of the address or display name, any case.
    pub q: String,
    pub profile: Option<String>,
    pub state: Option<StateFilter>,
    pub page: usize,
}

impl Filter {
    /// Reads the query string of `/`; unknown keys and values are ignored (a page, not an API).
    pub fn parse(url: &str) -> Filter {
        let mut f = Filter {
            page: 1,
            ..Filter::default()
        };
        let query = url.split_once('?').map_or("", |(_, q)| q);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(&v.replace('+', " "));
            let v = v.trim();
            match k {
                "q" => f.q = v.chars().take(200).collect::<String>().to_lowercase(),
                "profile" if !v.is_empty() => f.profile = Some(v.to_string()),
                "state" => f.state = StateFilter::ALL.into_iter().find(|s| s.as_str() == v),
                "page" => f.page = v.parse().unwrap_or(1),
                _ => {}
            }
        }
        f
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty() && self.profile.is_none() && self.state.is_none()
    }

    pub fn matches(&self, m: &Facts<'_>) -> bool {
        let text = self.q.is_empty()
            || m.address.contains(&self.q)
            || m.name.is_some_and(|n| n.to_lowercase().contains(&self.q));
        let profile = self.profile.as_deref().is_none_or(|p| m.profile == Some(p));
        let state = match self.state {
            None => true,
            Some(StateFilter::Failing) => m.failing,
            Some(StateFilter::Stale) => m.stale,
            Some(StateFilter::NotProcessed) => m.not_processed,
            Some(StateFilter::WaitingForTest) => m.waiting_for_test,
            Some(StateFilter::FirstSync) => m.first_sync,
            Some(StateFilter::Ok) => {
                !(m.failing || m.stale || m.not_processed || m.waiting_for_test)
            }
        };
        text && profile && state
    }

    /// The query string for page `page` of this filter (for the links).
    pub fn query(&self, page: usize) -> String {
        let mut parts = Vec::new();
        if !self.q.is_empty() {
            parts.push(format!("q={}", encode(&self.q)));
        }
        if let Some(p) = &self.profile {
            parts.push(format!("profile={}", encode(p)));
        }
        if let Some(s) = self.state {
            parts.push(format!("state={}", s.as_str()));
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() {
            "/".into()
        } else {
            format!("/?{}", parts.join("&"))
        }
    }
}

/// Percent-encodes everything but unreserved characters (and `@`, common in addresses).
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(address: &'static str) -> Facts<'static> {
        Facts {
            address,
            name: None,
            profile: Some("corp"),
            failing: false,
            stale: false,
            not_processed: false,
            waiting_for_test: false,
            first_sync: false,
        }
    }

    #[test]
    fn search_profile_and_state_together() {
        let f = Filter::parse("/?q=Alice&profile=corp&state=failing&page=3");
        assert_eq!(f.q, "alice");
        assert_eq!(f.profile.as_deref(), Some("corp"));
        assert_eq!(f.state, Some(StateFilter::Failing));
        assert_eq!(f.page, 3);
        let mut m = facts("alice@contoso.com");
        assert!(!f.matches(&m), "not failing");
        m.failing = true;
        assert!(f.matches(&m));
        m.profile = Some("other");
        assert!(!f.matches(&m));
        let by_name = Filter::parse("/?q=smith");
        let mut named = facts("a1@contoso.com");
        named.name = Some("Alice Smith");
        assert!(by_name.matches(&named));
        assert!(!by_name.matches(&facts("a2@contoso.com")));
    }

    #[test]
    fn ok_means_nothing_wrong_and_unknown_values_are_ignored() {
        let ok = Filter::parse("/?state=ok");
        assert!(ok.matches(&facts("a@x.example")));
        let mut stale = facts("a@x.example");
        stale.stale = true;
        assert!(!ok.matches(&stale));
        let f = Filter::parse("/?state=bogus&colour=red&page=x&q=");
        assert!(f.is_empty());
        assert_eq!(f.page, 1);
    }

    #[test]
    fn links_keep_the_filter_and_encode_it() {
        let f = Filter::parse("/?q=a+b%26c&state=stale");
        assert_eq!(f.q, "a b&c");
        assert_eq!(f.query(2), "/?q=a%20b%26c&state=stale&page=2");
        assert_eq!(Filter::parse("/").query(1), "/");
    }
}
