//! How an email's raw MIME is stored: byte-exact, smaller, and cheap on CPU.
//!
//! Most of a typical email's bytes are base64 attachments of already-compressed files. Compressing
//! base64 text with zstd costs the most CPU of the whole ingest and only wins back the 25% that
//! base64 adds. So runs of base64 lines are stored as their decoded bytes (plus line length and
//! line ending), and only the rest — headers and text parts — goes through zstd. Canonical base64
//! (no stray trailing bits, canonical padding) decodes and re-encodes to the same text, so the
//! original bytes come back exactly; a run that is not canonical stays with the rest.
//!
//! Format: either a plain zstd frame of the whole email (magic 28 B5 2F FD), or
//! `SSR1 | u32 literal_len | u32 zstd_len | zstd(literals) | u32 runs | run*`, where a run is
//! `u32 literal_offset | u16 line_len | u8 flags | u32 payload_len | payload` and the email is the
//! literals with each run's re-encoded lines inserted at its offset. Integers are little-endian.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const MAGIC: &[u8; 4] = b"SSR1";
/// zstd's level for what is left after the base64 runs (headers and text parts) when the config
/// names none (`store_compression_level`). Chosen on the real-text corpus (`bench/codec.sh`,
/// bench/RESULTS.md "Real mail"): level 1 stores 44% of the raw bytes at 0.24 ms per email, where
/// -30 stored 74% for less CPU and -1 50% for the same CPU; level 3 gains one point for 45% more
/// CPU. The level is the admin's choice of disk against CPU; any level decodes the same way.
pub const DEFAULT_LEVEL: i32 = 1;
/// Levels the config accepts: zstd's fast negative levels down to -100 (beyond, nothing is
/// compressed any more) up to 19 (above, zstd needs far more memory per context).
pub const LEVELS: std::ops::RangeInclusive<i64> = -100..=19;
/// Shorter base64 runs are not worth a segment.
const MIN_RUN_BYTES: usize = 256;
const MIN_LINE: usize = 40;
const FLAG_CRLF: u8 = 1;
const FLAG_LAST_EOL: u8 = 2;
const FLAG_ZSTD: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("zstd: {0}")]
    Zstd(#[from] std::io::Error),
    #[error("stored email is truncated or malformed")]
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    start: usize,
    end: usize,
    line_len: usize,
    crlf: bool,
    last_eol: bool,
}

/// Which bytes may appear in base64 text (padding aside).
const B64: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
        c += 1;
    }
    t
};

fn all_b64(s: &[u8]) -> bool {
    s.iter().all(|&c| B64[c as usize])
}

/// A line's content end, the next line's start, and its ending (Some(true) = CRLF, None = none).
fn split_line(raw: &[u8], at: usize) -> (usize, usize, Option<bool>) {
    let rest = &raw[at..];
    match memchr::memchr(b'\n', rest) {
        Some(nl) => {
            let crlf = nl > 0 && rest[nl - 1] == b'\r';
            let content_end = if crlf { nl - 1 } else { nl };
            (at + content_end, at + nl + 1, Some(crlf))
        }
        None => (raw.len(), raw.len(), None),
    }
}

/// A run being collected: where it starts, its line length and ending, its base64 text so far.
struct Open {
    start: usize,
    len: usize,
    crlf: bool,
    end: usize,
    text: Vec<u8>,
}

fn close(o: Open, end: usize, last_eol: bool, runs: &mut Vec<(Run, Vec<u8>)>) {
    if end - o.start >= MIN_RUN_BYTES {
        let run = Run {
            start: o.start,
            end,
            line_len: o.len,
            crlf: o.crlf,
            last_eol,
        };
        runs.push((run, o.text));
    }
}

/// Finds runs of base64 lines of one length (the last may be shorter, with padding), with their
/// base64 text (line endings removed), in one pass.
fn find_runs(raw: &[u8]) -> Vec<(Run, Vec<u8>)> {
    let mut runs = Vec::new();
    let mut at = 0;
    let mut current: Option<Open> = None;
    while at < raw.len() {
        let (content_end, next, eol) = split_line(raw, at);
        let line = &raw[at..content_end];
        // Text lines fail on their first space: the check is cheap where it matters.
        let full = line.len() >= MIN_LINE && line.len().is_multiple_of(4) && all_b64(line);
        match current.take() {
            Some(mut o) if full && line.len() == o.len && eol == Some(o.crlf) => {
                o.text.extend_from_slice(line);
                o.end = next;
                current = Some(o);
            }
            Some(mut o) => {
                // This line may be the run's last, shorter or padded line.
                let body = line.iter().rposition(|&c| c != b'=').map_or(0, |p| p + 1);
                let last = !line.is_empty()
                    && line.len() <= o.len
                    && line.len().is_multiple_of(4)
                    && line.len() - body <= 2
                    && all_b64(&line[..body])
                    && (eol.is_none() || eol == Some(o.crlf));
                if last {
                    o.text.extend_from_slice(line);
                    close(o, next, eol.is_some(), &mut runs);
                    at = next;
                } else {
                    let end = o.end;
                    close(o, end, true, &mut runs);
                    // Look at this line again: it may start a run of its own.
                }
                continue;
            }
            None if full && eol.is_some() => {
                let mut text = Vec::with_capacity(raw.len() - at);
                text.extend_from_slice(line);
                current = Some(Open {
                    start: at,
                    len: line.len(),
                    crlf: eol == Some(true),
                    end: next,
                    text,
                });
            }
            None => {}
        }
        at = next;
    }
    if let Some(o) = current {
        let end = o.end;
        close(o, end, true, &mut runs);
    }
    runs
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

/// Encodes an email for storage. `compressor` is reused across a batch.
pub fn encode(
    raw: &[u8],
    compressor: &mut zstd::bulk::Compressor<'_>,
) -> Result<Vec<u8>, CodecError> {
    let mut literals = Vec::with_capacity(raw.len() / 2);
    let mut runs: Vec<(usize, Run, Vec<u8>)> = Vec::new();
    let mut at = 0;
    for (run, text) in find_runs(raw) {
        // Non-canonical base64 would not come back byte for byte: leave it with the literals.
        let Ok(decoded) = STANDARD.decode(&text) else {
            continue;
        };
        literals.extend_from_slice(&raw[at..run.start]);
        runs.push((literals.len(), run, decoded));
        at = run.end;
    }
    if runs.is_empty() {
        return Ok(compressor.compress(raw)?);
    }
    literals.extend_from_slice(&raw[at..]);
    let packed = compressor.compress(&literals)?;
    let mut out = Vec::with_capacity(packed.len() + raw.len() * 3 / 4);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, literals.len());
    put_u32(&mut out, packed.len());
    out.extend_from_slice(&packed);
    put_u32(&mut out, runs.len());
    for (offset, run, decoded) in runs {
        // Attachments are mostly compressed already: zstd them only if a sample shrinks well.
        let sample = &decoded[..decoded.len().min(4096)];
        let worth = compressor
            .compress(sample)
            .map(|c| c.len() * 10 < sample.len() * 8)
            .unwrap_or(false);
        let (payload, zstd_flag) = if worth {
            (compressor.compress(&decoded)?, FLAG_ZSTD)
        } else {
            (decoded, 0)
        };
        put_u32(&mut out, offset);
        out.extend_from_slice(&(run.line_len as u16).to_le_bytes());
        let flags = zstd_flag
            | if run.crlf { FLAG_CRLF } else { 0 }
            | if run.last_eol { FLAG_LAST_EOL } else { 0 };
        out.push(flags);
        put_u32(&mut out, payload.len());
        out.extend_from_slice(&payload);
    }
    Ok(out)
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.at.checked_add(n).ok_or(CodecError::Malformed)?;
        let s = self.data.get(self.at..end).ok_or(CodecError::Malformed)?;
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<usize, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn u16(&mut self) -> Result<usize, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    }
}

thread_local! {
    /// One decompression context per thread: making one per email costs more than small emails.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_decode(data: &[u8], expected: Option<usize>) -> Result<Vec<u8>, CodecError> {
    // Frames from zstd's one-shot API carry their size: decompress in one go with a reused context.
    let size = zstd::zstd_safe::get_frame_content_size(data).ok().flatten();
    let out = match size {
        Some(n) if n <= 1 << 30 => DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new()?);
            }
            match slot.as_mut() {
                Some(d) => d.decompress(data, n as usize),
                None => zstd::decode_all(data),
            }
        })?,
        _ => zstd::decode_all(data)?,
    };
    match expected {
        Some(n) if n != out.len() => Err(CodecError::Malformed),
        _ => Ok(out),
    }
}

/// Gives back the email's original bytes.
pub fn decode(stored: &[u8]) -> Result<Vec<u8>, CodecError> {
    if !stored.starts_with(MAGIC) {
        return zstd_decode(stored, None);
    }
    let mut r = Reader {
        data: stored,
        at: MAGIC.len(),
    };
    let literal_len = r.u32()?;
    let packed_len = r.u32()?;
    let literals = zstd_decode(r.take(packed_len)?, Some(literal_len))?;
    let count = r.u32()?;
    let mut out = Vec::with_capacity(literal_len * 2);
    let mut at = 0;
    for _ in 0..count {
        let offset = r.u32()?;
        let line_len = r.u16()?;
        let flags = r.take(1)?[0];
        let payload_len = r.u32()?;
        let payload = r.take(payload_len)?;
        let decoded;
        let bytes = if flags & FLAG_ZSTD != 0 {
            decoded = zstd_decode(payload, None)?;
            &decoded[..]
        } else {
            payload
        };
        if offset < at || line_len == 0 {
            return Err(CodecError::Malformed);
        }
        out.extend_from_slice(literals.get(at..offset).ok_or(CodecError::Malformed)?);
        at = offset;
        let text = STANDARD.encode(bytes);
        let eol: &[u8] = if flags & FLAG_CRLF != 0 {
            b"\r\n"
        } else {
            b"\n"
        };
        let lines: Vec<&[u8]> = text.as_bytes().chunks(line_len).collect();
        for (i, line) in lines.iter().enumerate() {
            out.extend_from_slice(line);
            if i + 1 < lines.len() || flags & FLAG_LAST_EOL != 0 {
                out.extend_from_slice(eol);
            }
        }
    }
    out.extend_from_slice(literals.get(at..).ok_or(CodecError::Malformed)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(raw: &[u8]) -> Vec<u8> {
        let mut c = zstd::bulk::Compressor::new(1).expect("compressor");
        let stored = encode(raw, &mut c).expect("encode");
        assert_eq!(
            decode(&stored).expect("decode"),
            raw,
            "roundtrip of {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(80)])
        );
        stored
    }

    fn b64_lines(data: &[u8], line: usize, eol: &str) -> String {
        let t = STANDARD.encode(data);
        t.as_bytes()
            .chunks(line)
            .map(|l| format!("{}{eol}", String::from_utf8_lossy(l)))
            .collect()
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn attachments_are_stored_decoded_and_come_back_exactly() {
        for (len, line, eol) in [
            (30_000, 76, "\r\n"),
            (30_001, 76, "\r\n"),
            (30_002, 64, "\n"),
            (999, 72, "\r\n"),
        ] {
            let att = noise(len, len as u64);
            let raw = format!(
                "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
                 --b\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--b--\r\n",
                b64_lines(&att, line, eol)
            );
            let stored = roundtrip(raw.as_bytes());
            assert!(stored.starts_with(MAGIC));
            assert!(
                stored.len() < raw.len() * 80 / 100,
                "{} of {}",
                stored.len(),
                raw.len()
            );
        }
    }

    #[test]
    fn awkward_base64_stays_exact() {
        let att = noise(3_000, 7);
        let good = b64_lines(&att, 76, "\r\n");
        let cases = [
            // No line ending after the last line, at the end of the email.
            format!("A: b\r\n\r\n{}", good.trim_end()),
            // Mixed line endings inside the run.
            format!("A: b\r\n\r\n{}", good.replacen("\r\n", "\n", 3)),
            // Non-canonical trailing bits on the last line.
            format!(
                "A: b\r\n\r\n{}QQ==\r\n",
                b64_lines(&att[..2_997], 76, "\r\n")
            ),
            format!(
                "A: b\r\n\r\n{}QR==\r\n",
                b64_lines(&att[..2_997], 76, "\r\n")
            ),
            // A run followed directly by text that looks like base64 but is longer.
            format!("A: b\r\n\r\n{good}{}\r\nend\r\n", "Q".repeat(80)),
            // Two runs back to back with different line lengths.
            format!(
                "A: b\r\n\r\n{}{}",
                b64_lines(&att, 76, "\r\n"),
                b64_lines(&att, 64, "\r\n")
            ),
            // Garbage and binary.
            String::from_utf8_lossy(&noise(5_000, 3)).to_string(),
            String::new(),
            "no newline at all".to_string(),
        ];
        for raw in cases {
            roundtrip(raw.as_bytes());
        }
        for seed in 0..200u64 {
            let n = (seed * 37 % 2_000) as usize;
            let mut raw = b64_lines(
                &noise(n, seed),
                40 + (seed as usize % 10) * 4,
                if seed % 2 == 0 { "\r\n" } else { "\n" },
            )
            .into_bytes();
            if seed % 3 == 0 {
                raw.pop();
            }
            roundtrip(&raw);
        }
    }

    #[test]
    fn plain_text_is_one_zstd_frame() {
        let raw = "Subject: hi\r\n\r\n".to_string() + &"plain words repeat ".repeat(500);
        let stored = roundtrip(raw.as_bytes());
        assert!(!stored.starts_with(MAGIC));
        assert!(stored.len() < raw.len() / 10);
    }

    #[test]
    fn every_configurable_level_decodes_alike_and_the_fastest_stores_the_most() {
        let text = "Subject: levels\r\n\r\n".to_string()
            + &(0..400)
                .map(|n| {
                    format!(
                        "line {n} of a letter that says a little more each time {}\r\n",
                        n * 7
                    )
                })
                .collect::<String>();
        let raw = format!(
            "{text}--b\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--b--\r\n",
            b64_lines(&noise(5_000, 9), 76, "\r\n")
        );
        let stored_at = |level: i32| {
            let mut c = zstd::bulk::Compressor::new(level).expect("compressor");
            let stored = encode(raw.as_bytes(), &mut c).expect("encode");
            assert_eq!(
                decode(&stored).expect("decode"),
                raw.as_bytes(),
                "level {level}"
            );
            stored.len()
        };
        let (lowest, default, highest) = (
            stored_at(*LEVELS.start() as i32),
            stored_at(DEFAULT_LEVEL),
            stored_at(*LEVELS.end() as i32),
        );
        assert!(
            lowest > default && lowest > highest,
            "{lowest} {default} {highest}"
        );
    }

    #[test]
    fn malformed_stored_bytes_are_an_error_not_a_panic() {
        assert!(decode(b"SSR1").is_err());
        assert!(decode(b"SSR1\xff\xff\xff\xff\x00\x00\x00\x00").is_err());
        assert!(decode(b"garbage").is_err());
    }
}
