//! What a Test & Enable said on the wire, for the admin to read: client and server lines, with
//! every credential masked before it is ever rendered.

use std::sync::{Arc, Mutex};

/// Bytes kept per transcript; a test says far less.
const LIMIT: usize = 16 * 1024;
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
        let room = LIMIT.saturating_sub(t.size);
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
        for (from_client, bytes) in &t.chunks {
            let text = String::from_utf8_lossy(bytes);
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
        if t.size >= LIMIT {
            out.push_str("-- (transcript cut at 16 KB)\n");
        }
        for s in &t.secrets {
            out = out.replace(s.as_str(), MASK);
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
    fn size_is_bounded() {
        let r = Recorder::new(vec![]);
        for _ in 0..10_000 {
            r.server(b"* 1 FETCH (FLAGS ())\r\n");
        }
        assert!(r.render().len() < LIMIT + 4096);
    }
}
