//! What a Test & Enable said on the wire, for the admin to read: client and server lines, with
//! every credential masked before it is ever rendered.

use std::sync::{Arc, Mutex};

/// Characters of a rendered transcript; a test says far less.
const LIMIT: usize = 16 * 1024;
/// Bytes recorded: more than is shown, so that masking runs over whole secrets and the cut at
/// [`LIMIT`] comes after it (cut first, a secret split by the cut kept its unmasked beginning).
const RAW_LIMIT: usize = 4 * LIMIT;
const MASK: &str = "********";

#[derive(Default)]
struct Transcript {
    chunks: Vec<(bool, Vec<u8>)>,
    size: usize,
    secrets: Vec<String>,
    /// The test is over; the session lives on (kept for the first sync) unrecorded.
    finished: bool,
}

/// A shared handle: the stream writes into it, the test renders it.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Transcript>>);

impl Recorder {
    /// `secrets` are masked wherever they appear (raw, quoted, base64 forms as the caller lists).
    pub fn new(secrets: Vec<String>) -> Recorder {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so that a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Recorder(Arc::new(Mutex::new(Transcript {
            secrets,
            ..Transcript::default()
        })))
    }

    /// More secrets to mask (a token fetched after the recording started).
    pub fn add_secrets(&self, more: Vec<String>) {
        let Ok(mut t) = self.0.lock() else { return };
        t.secrets.extend(more.into_iter().filter(|s| !s.is_empty()));
        t.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        t.secrets.dedup();
    }

    fn push(&self, from_client: bool, bytes: &[u8]) {
        let Ok(mut t) = self.0.lock() else { return };
        if t.finished {
            return;
        }
        let room = RAW_LIMIT.saturating_sub(t.size);
        let take = &bytes[..bytes.len().min(room)];
        if take.is_empty() {
            return;
        }
        t.size += take.len();
        match t.chunks.last_mut() {
            Some((c, buf)) if *c == from_client => buf.extend_from_slice(take),
            _ => t.chunks.push((from_client, take.to_vec())),
        }
    }

    /// Stops recording: what the session says from now on is not the test's.
    pub fn finish(&self) {
        if let Ok(mut t) = self.0.lock() {
            t.finished = true;
        }
    }

    pub fn client(&self, bytes: &[u8]) {
        self.push(true, bytes);
    }

    pub fn server(&self, bytes: &[u8]) {
        self.push(false, bytes);
    }

    /// Marks a step that bytes do not show (e.g. the TLS handshake).
    pub fn note(&self, text: &str) {
        self.push(true, format!("[{text}]\n").as_bytes());
        // A note ends the client chunk so the next client bytes start a new line.
        self.push(false, b"");
    }

    /// "C: …" and "S: …" lines, credentials masked.
    pub fn render(&self) -> String {
        let Ok(t) = self.0.lock() else {
            return String::new();
        };
        let mut out = String::new();
        let capped = t.size >= RAW_LIMIT;
        let last = t.chunks.len().saturating_sub(1);
        for (i, (from_client, bytes)) in t.chunks.iter().enumerate() {
            let mut text = String::from_utf8_lossy(bytes).into_owned();
            // The recording stopped mid-line: that line may end in part of a secret, which no
            // mask matches. It goes whole.
            if capped && i == last && !text.ends_with('\n') {
                let keep = text.rfind('\n').map_or(0, |n| n + 1);
                text.truncate(keep);
            }
            for line in text.lines() {
                let line = line.trim_end_matches('\r');
                if let Some(note) = line.strip_prefix('[').filter(|_| *from_client) {
                    out.push_str("-- ");
                    out.push_str(note.trim_end_matches(']'));
                } else {
                    out.push_str(if *from_client { "C: " } else { "S: " });
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        // Mask first, then cut: the cut cannot split a secret that is still unmasked.
        for s in &t.secrets {
            out = out.replace(s.as_str(), MASK);
        }
        if capped || out.len() > LIMIT {
            let mut end = LIMIT.min(out.len());
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("-- (transcript cut at 16 KB)\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_attributed_and_secrets_masked() {
        let r = Recorder::new(vec!["hunter2".into(), "aHVudGVyMg==".into()]);
        r.server(b"* OK ready\r\n");
        r.client(b"a1 LOGIN \"bob\" \"hunter2\"\r\n");
        r.server(b"a1 OK logged in\r\n");
        r.client(b"AUTH PLAIN aHVudGVyMg==\r\n");
        let t = r.render();
        assert_eq!(
            t,
            "S: * OK ready\nC: a1 LOGIN \"bob\" \"********\"\nS: a1 OK logged in\nC: AUTH PLAIN ********\n"
        );
    }

    #[test]
    fn a_secret_straddling_the_cut_is_masked_not_half_shown() {
        let secret = "hunter2-secret-token-0123456789";
        let r = Recorder::new(vec![secret.into()]);
        // Server lines up to just before the cut, then the secret across it.
        let line = b"* OK filler line\r\n";
        let mut size = 0;
        // "a1 LOGIN bob " and "hunter2" before the cut, the rest after it.
        let before = LIMIT - "a1 LOGIN bob hunter2".len();
        while size + line.len() < before {
            r.server(line);
            size += line.len();
        }
        r.server(&vec![b'x'; before - size]);
        r.client(format!("a1 LOGIN bob {secret}\r\n").as_bytes());
        for _ in 0..4000 {
            r.server(line);
        }
        let t = r.render();
        assert!(
            !t.contains("hunter2"),
            "the secret's beginning survived the cut"
        );
        assert!(t.ends_with("-- (transcript cut at 16 KB)\n"));
        assert!(t.len() <= LIMIT + 64, "{}", t.len());
    }

    #[test]
    fn size_is_bounded() {
        let r = Recorder::new(vec![]);
        for _ in 0..10_000 {
            r.server(b"* 1 FETCH (FLAGS ())\r\n");
        }
        assert!(r.render().len() < LIMIT + 4096);
    }
}
