//! The API's error: a status code, a stable problem type and a sentence naming the problem,
//! answered as RFC 9457 `application/problem+json`; and the percent-decoding of paths and
//! query values every handler shares.

use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    /// The stable problem type (`not-found`, `events-expired`, …): the last part of `type`.
    pub kind: &'static str,
    pub message: String,
    /// Members a client needs besides the sentence (the oldest event kept, …).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The problem type URIs: `urn:sidesync:problem:KIND` (stable; listed in the OpenAPI document).
pub const PROBLEM_PREFIX: &str = "urn:sidesync:problem:";

/// The problem type of a status code, when the handler names none.
pub fn kind_of(status: u16) -> &'static str {
    match status {
        400 => "bad-request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not-found",
        405 => "method-not-allowed",
        409 => "conflict",
        410 => "gone",
        413 => "too-large",
        422 => "unprocessable",
        429 => "too-many-requests",
        503 => "unavailable",
        _ => "internal",
    }
}

pub(super) fn err(status: u16, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        kind: kind_of(status),
        message: message.into(),
        extra: None,
    }
}

/// An error of a problem type of its own.
pub(super) fn problem(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        kind,
        ..err(status, message)
    }
}

/// The RFC 9457 body of an error.
#[derive(Serialize)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'a str,
    pub status: u16,
    pub detail: &'a str,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn with(mut self, key: &str, value: serde_json::Value) -> ApiError {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value);
        self
    }

    pub fn body(&self) -> String {
        let p = Problem {
            kind: format!("{PROBLEM_PREFIX}{}", self.kind),
            title: title(self.status),
            status: self.status,
            detail: &self.message,
            extra: self.extra.clone().unwrap_or_default(),
        };
        serde_json::to_string(&p).unwrap_or_default()
    }
}

fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}
