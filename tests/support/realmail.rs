//! A benchmark corpus from real text and real files that Debian ships: licence texts, package
//! changelogs and manual pages for the bodies; PDFs, images and gzip files for the attachments.
//! The generated corpus of `mail.rs` draws its words from a list of thirty, so it compresses far
//! better than real mail; figures for stored bytes and compression levels are taken on this one.
//! Deterministic for a given machine's files (sorted paths, xorshift choices).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::mail::Rng;

pub struct Corpus {
    /// Real text, lines joined with CRLF.
    text: Vec<u8>,
    /// Real binary files: (name, MIME type, bytes).
    files: Vec<(String, &'static str, Vec<u8>)>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 6 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out, depth + 1),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

fn gunzip(path: &Path) -> Option<Vec<u8>> {
    let out = Command::new("gzip").arg("-dc").arg(path).output().ok()?;
    out.status.success().then_some(out.stdout)
}

impl Corpus {
    /// Reads the machine's files; panics if it finds no text or no binary file.
    pub fn load() -> Corpus {
        let mut text = Vec::new();
        let mut add_text = |bytes: &[u8]| {
            // Printable text only, with CRLF line ends as on the wire.
            for line in String::from_utf8_lossy(bytes).lines() {
                let line: String = line
                    .chars()
                    .filter(|c| !c.is_control() || *c == '\t')
                    .collect();
                text.extend_from_slice(line.trim_end().as_bytes());
                text.extend_from_slice(b"\r\n");
            }
        };
        let mut licences = Vec::new();
        walk(Path::new("/usr/share/common-licenses"), &mut licences, 0);
        licences.sort();
        for p in &licences {
            if let Ok(b) = std::fs::read(p) {
                add_text(&b);
            }
        }
        let mut docs = Vec::new();
        walk(Path::new("/usr/share/doc"), &mut docs, 0);
        walk(Path::new("/usr/share/man/man1"), &mut docs, 0);
        docs.sort();
        let mut gz = 0;
        for p in docs
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "gz"))
        {
            let name = p.to_string_lossy();
            if gz < 400
                && (name.contains("changelog") || name.contains("/man1/"))
                && let Some(b) = gunzip(p)
            {
                add_text(&b);
                gz += 1;
            }
        }
        let mut files: Vec<(String, &'static str, Vec<u8>)> = Vec::new();
        let mut binaries = Vec::new();
        walk(Path::new("/usr/share/doc"), &mut binaries, 0);
        binaries.sort();
        for p in binaries {
            let mime = match p.extension().and_then(|e| e.to_str()) {
                Some("pdf") => "application/pdf",
                Some("png") => "image/png",
                Some("jpg") | Some("jpeg") => "image/jpeg",
                Some("gz") => "application/gzip",
                _ => continue,
            };
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            if bytes.len() < 4_000 {
                continue;
            }
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            // At most 80 of a kind: gzip files are many, PDFs few.
            if files.iter().filter(|f| f.1 == mime).count() < 80 {
                files.push((name, mime, bytes));
            }
        }
        assert!(
            text.len() > 1 << 20,
            "too little real text found ({} bytes)",
            text.len()
        );
        for kind in ["application/pdf", "image/"] {
            assert!(
                files.iter().any(|f| f.1.starts_with(kind)),
                "no {kind} file under /usr/share/doc (bench/ingest.sh installs packages that ship some)"
            );
        }
        Corpus { text, files }
    }

    /// Real text of about `bytes` bytes, starting at a line boundary.
    fn text(&self, rng: &mut Rng, bytes: usize) -> String {
        let start = rng.below(self.text.len().saturating_sub(bytes).max(1) as u64) as usize;
        let start = self.text[start..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(start, |i| start + i + 2);
        let end = (start + bytes).min(self.text.len());
        let mut s = String::from_utf8_lossy(&self.text[start..end]).to_string();
        if !s.ends_with("\r\n") {
            s.push_str("\r\n");
        }
        s
    }

    /// Email number `n` for `mailbox`, about `size` bytes: real text, and for three in five a
    /// real file (or the part of one that fits) as a base64 attachment.
    pub fn email(&self, mailbox: &str, n: usize, size: usize) -> Vec<u8> {
        let mut rng = Rng::new((n as u64) << 9 ^ 0x5eed);
        let subject = self.text(&mut rng, 60);
        let subject: String = subject
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(70)
            .collect();
        let mut h = format!(
            "Message-ID: <{n}.{}@real.sidesync.test>\r\nDate: Mon, {} Sep 2025 10:{:02}:00 +0200\r\n\
             From: Sender {n} <sender{}@example.org>\r\nTo: {mailbox}\r\nSubject: {subject}\r\n\
             MIME-Version: 1.0\r\n",
            mailbox.replace('@', "."),
            1 + n % 28,
            n % 60,
            n % 97,
        );
        let attach = n % 5 < 3 && !self.files.is_empty();
        if !attach {
            h.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            h.push_str(&self.text(&mut rng, size));
            return h.into_bytes();
        }
        let text_part = size / 4;
        let (name, mime, bytes) = &self.files[rng.below(self.files.len() as u64) as usize];
        // Base64 grows by a third: take what fits the size.
        let want = (size - text_part) * 3 / 4;
        let offset = if bytes.len() > want {
            rng.below((bytes.len() - want) as u64) as usize
        } else {
            0
        };
        let chunk = &bytes[offset..(offset + want).min(bytes.len())];
        h.push_str("Content-Type: multipart/mixed; boundary=\"part-boundary\"\r\n\r\n");
        h.push_str("--part-boundary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
        h.push_str(&self.text(&mut rng, text_part));
        h.push_str(&format!(
            "--part-boundary\r\nContent-Type: {mime}; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        ));
        h.push_str(&super::mail::base64_lines(chunk));
        h.push_str("--part-boundary--\r\n");
        h.into_bytes()
    }
}
