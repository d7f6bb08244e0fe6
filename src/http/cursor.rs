//! The API's one pagination style: a list answers `next_cursor` (opaque) and `next` (the same
//! request with `cursor=` set), or neither on its last page. A cursor names its list, so one
//! list's cursor given to another is refused rather than misread. Pure.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::{ApiError, err};

/// A cursor for position `at` of the list `list`.
pub fn encode(list: &str, at: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{list}:{at}"))
}

/// The position a cursor of `list` holds.
pub fn decode(list: &str, cursor: &str) -> Result<u64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (l, at) = s.split_once(':')?;
            (l == list).then(|| at.parse().ok()).flatten()
        })
        .ok_or_else(|| {
            err(
                400,
                format!("cursor \"{cursor}\" is not one this list gave (use its next_cursor)"),
            )
        })
}

/// The next page's link: `path?query` with `cursor` replaced.
pub fn next_link(url: &str, cursor: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut parts: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
        .map(str::to_string)
        .collect();
    parts.push(format!("cursor={cursor}"));
    format!("{path}?{}", parts.join("&"))
}

/// `next_cursor` and `next` of a page: present when the page was full.
#[derive(Debug, serde::Serialize)]
pub struct Next {
    pub next_cursor: Option<String>,
    pub next: Option<String>,
}

impl Next {
    pub fn of(url: &str, list: &str, full: bool, last: Option<u64>) -> Next {
        match last.filter(|_| full) {
            Some(at) => {
                let c = encode(list, at);
                Next {
                    next: Some(next_link(url, &c)),
                    next_cursor: Some(c),
                }
            }
            None => Next {
                next_cursor: None,
                next: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_belong_to_their_list() {
        let c = encode("activities", 42);
        assert_eq!(decode("activities", &c).expect("ours"), 42);
        assert!(decode("alerts", &c).is_err());
        assert!(decode("activities", "garbage!").is_err());
        assert_eq!(
            next_link("/api/v1/alerts?mailbox=a&cursor=x&limit=5", "Y"),
            "/api/v1/alerts?mailbox=a&limit=5&cursor=Y"
        );
    }
}
