//! Subject normalisation for smart matching: the subject without reply and forward prefixes (in
//! the languages Outlook and Gmail write them), without tracking tokens, in lower case with single
//! spaces. Two emails of one thread normalise to the same text.

use sha2::{Digest, Sha256};

/// Reply and forward prefixes, lower case, without the colon: English, German (AW, WG), the
/// Scandinavian languages (SV, VS, VB), Dutch (Antw, Doorst), French (TR), Spanish (RV).
const PREFIXES: &[&str] = &[
    "re", "fw", "fwd", "aw", "wg", "sv", "vs", "vb", "antw", "doorst", "tr", "rv",
];

/// "Re: [CRM:0001001001] AW:  Quote  " → "quote".
pub fn normalize(subject: &str) -> String {
    let mut s = subject.trim();
    loop {
        let before = s;
        s = strip_prefix(s).trim_start();
        s = strip_bracketed_token(s).trim_start();
        if s == before {
            break;
        }
    }
    let s = remove_tokens(s);
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A number from the normalised subject, for the subject index; 0 for an empty subject (which
/// never matches: an empty subject says nothing about a thread).
pub fn subject_hash(subject: &str) -> u64 {
    let n = normalize(subject);
    if n.is_empty() {
        return 0;
    }
    let d = Sha256::digest(n.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b).max(1)
}

/// One "Re:", "RE[2]:", "Fwd :" at the start, if there is one.
fn strip_prefix(s: &str) -> &str {
    let word_end = s
        .char_indices()
        .find(|(_, c)| !c.is_ascii_alphabetic())
        .map_or(s.len(), |(i, _)| i);
    let word = s[..word_end].to_ascii_lowercase();
    if !PREFIXES.contains(&word.as_str()) {
        return s;
    }
    let mut rest = &s[word_end..];
    // A counter: "Re[2]:" or "Re(2):".
    if let Some(r) = rest.strip_prefix('[').or_else(|| rest.strip_prefix('(')) {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        let r = &r[digits..];
        match r.strip_prefix(']').or_else(|| r.strip_prefix(')')) {
            Some(r) if digits > 0 => rest = r,
            _ => return s,
        }
    }
    match rest.trim_start().strip_prefix(':') {
        Some(r) => r,
        None => s,
    }
}

/// A leading "[CRM:…]" style tag: brackets around a word with a colon and digits.
fn strip_bracketed_token(s: &str) -> &str {
    if let Some(r) = s.strip_prefix('[')
        && let Some(end) = r.find(']')
        && looks_like_token(&r[..end])
    {
        return &r[end + 1..];
    }
    s
}

fn looks_like_token(t: &str) -> bool {
    t.contains(':') && t.bytes().filter(u8::is_ascii_digit).count() >= 4
}

/// Every bracketed token anywhere in the subject.
fn remove_tokens(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('[') {
        let after = &rest[start + 1..];
        match after.find(']') {
            Some(end) if looks_like_token(&after[..end]) => {
                out.push_str(&rest[..start]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str(&rest[..=start]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_tokens_go() {
        for s in [
            "Quote for Contoso",
            "Re: Quote for Contoso",
            "RE: AW: Quote for Contoso",
            "Fwd: re:  Quote   for Contoso ",
            "SV: Quote for Contoso [CRM:0001001001]",
            "Re[2]: Quote for Contoso",
            "WG: Re(3): Quote for Contoso",
            "[CRM:0001001001] Re: Quote for Contoso",
            "Antw: Doorst: TR: RV: VS: Quote for Contoso",
        ] {
            assert_eq!(normalize(s), "quote for contoso", "{s}");
            assert_eq!(subject_hash(s), subject_hash("quote for contoso"), "{s}");
        }
    }

    #[test]
    fn words_that_only_look_like_prefixes_stay() {
        assert_eq!(normalize("Results: Q3"), "results: q3");
        assert_eq!(normalize("Revenue report"), "revenue report");
        assert_eq!(normalize("Re-launch"), "re-launch");
        assert_eq!(normalize("[urgent] Re: x"), "[urgent] re: x");
        assert_eq!(subject_hash(""), 0);
        assert_eq!(subject_hash("Re: "), 0);
    }
}
