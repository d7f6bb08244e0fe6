//! Realistic sample emails, deterministic from a number: plain text, HTML alternatives,
//! attachments (base64), RFC 2047 encoded headers, a message without Message-ID, and large ones.
//! Lines end in CRLF, as on the wire, so the server serves exactly these bytes.

/// A small deterministic generator (xorshift), so no test depends on chance.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "invoice",
    "meeting",
    "quarterly",
    "report",
    "customer",
    "shipment",
    "delayed",
    "please",
    "review",
    "attached",
    "contract",
    "renewal",
    "thanks",
    "regards",
    "schedule",
    "budget",
    "approval",
    "question",
    "support",
    "ticket",
    "update",
    "project",
    "deadline",
    "Zürich",
    "München",
    "café",
    "résumé",
    "naïve",
    "日本語",
    "данные",
];

fn text(rng: &mut Rng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 80);
    let mut line = 0;
    while out.len() < bytes {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        out.push_str(w);
        line += w.len() + 1;
        if line > 70 {
            out.push_str("\r\n");
            line = 0;
        } else {
            out.push(' ');
        }
    }
    out.push_str("\r\n");
    out
}

/// Base64 in lines of 76 characters, CRLF after each.
pub fn base64_lines(data: &[u8]) -> String {
    base64(data)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 4);
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.push_str("\r\n");
    out
}

/// The Message-ID `sample` gives message `n` of `mailbox` (None for the shape without one).
pub fn message_id(mailbox: &str, n: usize) -> String {
    format!("<{n}.{}@sample.sidesync.test>", mailbox.replace('@', "."))
}

/// Email number `n` for `mailbox`, about `size` bytes of body. Every 37th has no Message-ID.
pub fn sample(mailbox: &str, n: usize, size: usize) -> Vec<u8> {
    let mut rng = Rng::new((n as u64) << 8 ^ mailbox.len() as u64);
    let mut h = String::new();
    if n % 37 != 36 {
        h.push_str(&format!("Message-ID: {}\r\n", message_id(mailbox, n)));
    }
    let day = 1 + n % 28;
    h.push_str(&format!(
        "Date: Mon, {day} Sep 2025 {:02}:{:02}:00 +0200\r\n",
        n % 24,
        n % 60
    ));
    h.push_str(&format!(
        "From: \"Sender {n}\" <sender{}@example.com>\r\n",
        n % 17
    ));
    h.push_str(&format!("To: {mailbox}\r\n"));
    if n.is_multiple_of(3) {
        h.push_str(
            "Cc: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.com>, team@example.com\r\n",
        );
    }
    let subject = match n % 4 {
        0 => format!("=?UTF-8?B?UsOpc3Vtw6k=?= number {n}"),
        1 => format!("Re: Quarterly report {n}"),
        _ => format!("Invoice {n} for customer {}", n % 13),
    };
    h.push_str(&format!("Subject: {subject}\r\n"));
    if n % 5 == 1 && n > 0 {
        h.push_str(&format!("In-Reply-To: {}\r\n", message_id(mailbox, n - 1)));
        h.push_str(&format!("References: {}\r\n", message_id(mailbox, n - 1)));
    }
    h.push_str("MIME-Version: 1.0\r\n");
    let body = match n % 3 {
        // Plain text.
        0 => {
            h.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            text(&mut rng, size)
        }
        // Text and HTML alternatives.
        1 => {
            let b = format!("alt-{n}");
            h.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"{b}\"\r\n\r\n"
            ));
            let t = text(&mut rng, size / 2);
            format!(
                "--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{t}--{b}\r\n\
                 Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{}</p></body></html>\r\n--{b}--\r\n",
                t.replace("\r\n", "<br>\r\n")
            )
        }
        // Text with a binary attachment.
        _ => {
            let b = format!("mixed-{n}");
            h.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n"
            ));
            let t = text(&mut rng, size / 4);
            let blob: Vec<u8> = (0..size / 2).map(|_| rng.next() as u8).collect();
            format!(
                "--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{t}--{b}\r\n\
                 Content-Type: application/pdf; name=\"=?UTF-8?Q?R=C3=A9sum=C3=A9_{n}.pdf?=\"\r\n\
                 Content-Disposition: attachment; filename=\"report-{n}.pdf\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}--{b}--\r\n",
                base64(&blob)
            )
        }
    };
    let mut raw = h.into_bytes();
    raw.extend_from_slice(body.as_bytes());
    raw
}
