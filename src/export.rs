//! `sidesync export`: a mailbox's or a conversation's activities as an mbox (mboxrd) file or a
//! maildir, with the bytes the server delivered, so the data is never locked in the store's
//! codec. It reads the running appliance through its control socket (the store is its alone
//! while it runs), or the store itself when the appliance is stopped.
//!
//! A maildir file holds exactly the server's bytes. The mbox is mboxrd: a `From ` line before
//! each email and one `>` added to every line that starts with `>*From `, which a reader
//! removes again (every mbox tool reads it); an email that does not end with a newline gets one.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::store::{Activity, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Mbox,
    Maildir,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "mbox" => Ok(Format::Mbox),
            "maildir" => Ok(Format::Maildir),
            _ => Err(format!("format \"{s}\" is not mbox or maildir")),
        }
    }
}

/// Which activities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every activity the mailbox saw (it or another mailbox stored it).
    Mailbox(String),
    /// A conversation by its id.
    Conversation(u64),
}

/// One email to write: its id, the envelope sender and time of its `From ` line.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: u64,
    pub sender: String,
    pub at: DateTime<Utc>,
}

/// Where the emails come from: the store, or the running appliance's API.
pub trait Source {
    /// Every selected email, oldest first.
    fn items(&mut self, selection: &Selection) -> Result<Vec<Item>, String>;
    fn raw(&mut self, id: u64) -> Result<Vec<u8>, String>;
}

/// The `From ` line's sender: the From address, else MAILER-DAEMON (as mbox writers do).
pub fn sender_of(from: Option<&str>) -> String {
    let address = from
        .map(|f| match (f.rfind('<'), f.rfind('>')) {
            (Some(a), Some(b)) if a < b => f[a + 1..b].to_string(),
            _ => f.trim().to_string(),
        })
        .unwrap_or_default();
    if address.is_empty() || address.contains(char::is_whitespace) {
        "MAILER-DAEMON".into()
    } else {
        address
    }
}

/// One email as an mboxrd entry.
pub fn mbox_entry(raw: &[u8], sender: &str, at: DateTime<Utc>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 128);
    out.extend_from_slice(
        format!("From {sender} {}\n", at.format("%a %b %e %H:%M:%S %Y")).as_bytes(),
    );
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let quoted = line.iter().take_while(|&&b| b == b'>').count();
        if line[quoted..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// The emails of an mboxrd file, unquoted (what a reader gets back; the tests use it).
pub fn read_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            // The blank line before a From line belongs to the separator.
            if let Some(last) = out.last_mut()
                && last.ends_with(b"\n\n")
            {
                last.pop();
            }
            out.push(Vec::new());
            continue;
        }
        let Some(current) = out.last_mut() else {
            continue;
        };
        let quoted = line.iter().take_while(|&&b| b == b'>').count();
        if quoted > 0 && line[quoted..].starts_with(b"From ") {
            current.extend_from_slice(&line[1..]);
        } else {
            current.extend_from_slice(line);
        }
    }
    if let Some(last) = out.last_mut()
        && last.ends_with(b"\n\n")
    {
        last.pop();
    }
    out
}

/// Writes the selection to `output` (a file for mbox, a folder for maildir); how many emails.
pub fn export(
    source: &mut dyn Source,
    selection: &Selection,
    format: Format,
    output: &Path,
) -> Result<usize, String> {
    let items = source.items(selection)?;
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    match format {
        Format::Mbox => {
            let partial = output.with_extension("partial");
            // A partial left by an earlier failed run may have another mode: made anew.
            let _ = std::fs::remove_file(&partial);
            let mut f =
                std::io::BufWriter::new(private_file(&partial).map_err(|e| io(&partial, e))?);
            for item in &items {
                let raw = source.raw(item.id)?;
                f.write_all(&mbox_entry(&raw, &item.sender, item.at))
                    .map_err(|e| io(&partial, e))?;
            }
            let file = f.into_inner().map_err(|e| io(&partial, e.into_error()))?;
            file.sync_all().map_err(|e| io(&partial, e))?;
            // Whole or not at all: a failed export leaves no half mbox under the asked name.
            std::fs::rename(&partial, output).map_err(|e| io(output, e))?;
        }
        Format::Maildir => {
            for sub in ["tmp", "new", "cur"] {
                let d = output.join(sub);
                private_dirs(&d).map_err(|e| io(&d, e))?;
            }
            for item in &items {
                let raw = source.raw(item.id)?;
                let name = format!("{}.A{}.sidesync:2,", item.at.timestamp(), item.id);
                let tmp: PathBuf = output.join("tmp").join(&name);
                let _ = std::fs::remove_file(&tmp);
                private_file(&tmp)
                    .and_then(|mut f| f.write_all(&raw))
                    .map_err(|e| io(&tmp, e))?;
                let cur = output.join("cur").join(&name);
                std::fs::rename(&tmp, &cur).map_err(|e| io(&cur, e))?;
            }
        }
    }
    Ok(items.len())
}

/// An export holds people's mail: its files are the owner's alone (0600), with the mode given
/// at creation, so no other local user can open one in the moment before a chmod.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// The maildir's folders (and any missing parent) are the owner's alone (0700), made so.
fn private_dirs(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// The store of a stopped appliance.
pub struct StoreSource(pub Store);

impl Source for StoreSource {
    fn items(&mut self, selection: &Selection) -> Result<Vec<Item>, String> {
        let mut out = Vec::new();
        let mut before = None;
        loop {
            let page = match selection {
                Selection::Mailbox(m) => self
                    .0
                    .activities_page(before, 1000, |a| &a.mailbox == m || a.mailboxes.contains(m)),
                Selection::Conversation(c) => self.0.conversation_page(*c, before, 1000, |_| true),
            }
            .map_err(|e| e.to_string())?;
            let Some(last) = page.last().map(|a| a.id) else {
                break;
            };
            out.extend(page.iter().map(item_of));
            before = Some(last);
        }
        out.reverse();
        Ok(out)
    }

    fn raw(&mut self, id: u64) -> Result<Vec<u8>, String> {
        self.0
            .activity_raw(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("activity {id} has no stored email"))
    }
}

fn item_of(a: &Activity) -> Item {
    Item {
        id: a.id,
        sender: sender_of(a.headers.from.first().map(String::as_str)),
        at: a.received_at.unwrap_or(a.created_at),
    }
}

/// A query value, percent-encoded.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"@.-_".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The running appliance, through its control socket.
pub struct SocketSource(pub PathBuf);

impl Source for SocketSource {
    fn items(&mut self, selection: &Selection) -> Result<Vec<Item>, String> {
        let filter = match selection {
            Selection::Mailbox(m) => format!("mailbox={}", query_value(m)),
            Selection::Conversation(c) => format!("conversation={c}"),
        };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut target = format!("/api/v1/activities?{filter}&limit=1000");
            if let Some(c) = &cursor {
                target.push_str(&format!("&cursor={c}"));
            }
            let reply = crate::http::client::request(
                &self.0,
                "GET",
                &target,
                "",
                std::time::Duration::from_secs(60),
            )?;
            if reply.status != 200 {
                return Err(format!("listing the activities: {}", reply.refusal()));
            }
            let v = reply.json();
            for a in v["activities"].as_array().into_iter().flatten() {
                let at = a["received_at"]
                    .as_str()
                    .or(a["created_at"].as_str())
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
                out.push(Item {
                    id: a["id"].as_u64().ok_or("an activity without an id")?,
                    sender: sender_of(a["from"][0].as_str()),
                    at,
                });
            }
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        out.reverse();
        Ok(out)
    }

    fn raw(&mut self, id: u64) -> Result<Vec<u8>, String> {
        let (status, body) = crate::http::client::request_bytes(
            &self.0,
            "GET",
            &format!("/api/v1/activities/{id}/raw"),
            std::time::Duration::from_secs(60),
        )?;
        if status != 200 {
            return Err(format!("activity {id}: HTTP {status}"));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mboxrd_round_trips_from_lines() {
        let raw =
            b"From: a@x\r\nSubject: s\r\n\r\nFrom here on\r\n>From there\r\nbody\r\n".to_vec();
        let other = b"Subject: no newline\n\nend".to_vec();
        let at = Utc::now();
        let mut mbox = mbox_entry(&raw, "a@x", at);
        mbox.extend(mbox_entry(&other, "MAILER-DAEMON", at));
        let text = String::from_utf8_lossy(&mbox).to_string();
        assert!(
            text.contains("\n>From here on\r\n>>From there\r\n"),
            "{text}"
        );
        let back = read_mbox(&mbox);
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], raw);
        assert_eq!(back[1], b"Subject: no newline\n\nend\n".to_vec());
        assert_eq!(sender_of(Some("Ann <ann@x.org>")), "ann@x.org");
        assert_eq!(sender_of(None), "MAILER-DAEMON");
    }

    /// Two emails from memory.
    struct Two;

    impl Source for Two {
        fn items(&mut self, _: &Selection) -> Result<Vec<Item>, String> {
            Ok((1..=2)
                .map(|id| Item {
                    id,
                    sender: "a@x".into(),
                    at: Utc::now(),
                })
                .collect())
        }
        fn raw(&mut self, id: u64) -> Result<Vec<u8>, String> {
            Ok(format!("Subject: {id}\r\n\r\nbody\r\n").into_bytes())
        }
    }

    #[test]
    fn exports_are_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mbox = dir.path().join("out.mbox");
        // A partial left behind readable by all is not reused with its mode.
        std::fs::write(mbox.with_extension("partial"), b"old").expect("stale partial");
        std::fs::set_permissions(
            mbox.with_extension("partial"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let sel = Selection::Mailbox("a@x".into());
        assert_eq!(export(&mut Two, &sel, Format::Mbox, &mbox), Ok(2));
        assert_eq!(mode(&mbox), 0o600);
        let maildir = dir.path().join("deep").join("md");
        assert_eq!(export(&mut Two, &sel, Format::Maildir, &maildir), Ok(2));
        for d in [dir.path().join("deep"), maildir.clone()] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        for sub in ["tmp", "new", "cur"] {
            assert_eq!(mode(&maildir.join(sub)), 0o700, "{sub}");
        }
        let files: Vec<_> = std::fs::read_dir(maildir.join("cur"))
            .expect("cur")
            .filter_map(Result::ok)
            .collect();
        assert_eq!(files.len(), 2);
        for f in files {
            assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
        }
    }
}
