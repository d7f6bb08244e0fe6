//! The config file's reference — every section and key with its type, default and meaning —
//! read from the annotated example `appliance/sidesync.toml` (compiled in), which is the one
//! place keys are described: `sidesync man` renders sidesync.toml(5) from it, and the tests
//! hold it to the parser ([`accepted_keys`], read from the raw types serde checks files
//! against), so a key cannot be added, renamed or dropped without the page following.
//!
//! The example's shape: `[section]` / `[[section]]` headers; a key is `key = value` (shown with
//! its default) or `# key = value` (optional, an example value); the `#` comment lines before
//! a key (or a run of keys) say what it means; a `# [[table]]` header starts a commented-out
//! table whose keys follow it directly.

use serde::Deserialize;

/// The annotated example, as the package ships it.
pub const EXAMPLE: &str = include_str!("../../appliance/sidesync.toml");

/// One key of the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDoc {
    /// `appliance`, `profile`, `mailbox`, `appliance.api_tokens`, …
    pub section: String,
    pub key: String,
    /// string, integer, boolean, duration, date, array or table (from the example's value).
    pub kind: &'static str,
    /// The example's value as written.
    pub value: String,
    /// Whether `value` is the default (written out) or an example (commented out: optional,
    /// or its default is computed, as `meaning` says).
    pub is_default: bool,
    pub meaning: String,
}

/// A section and what the example says of it before its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionDoc {
    pub name: String,
    /// `[[name]]`: a list of tables.
    pub many: bool,
    pub meaning: String,
}

fn header(line: &str) -> Option<(String, bool)> {
    let l = line.trim();
    let (inner, many) = if let Some(i) = l.strip_prefix("[[").and_then(|i| i.strip_suffix("]]")) {
        (i, true)
    } else {
        (l.strip_prefix('[')?.strip_suffix(']')?, false)
    };
    inner
        .chars()
        .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
        .then(|| (inner.to_string(), many))
}

/// `key = value  # note` split into its parts (a `#` inside a quoted string stays).
fn key_line(line: &str) -> Option<(String, String, String)> {
    let (key, rest) = line.split_once(" = ")?;
    if key.is_empty()
        || !key.starts_with(|c: char| c.is_ascii_lowercase())
        || !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let mut quoted = false;
    let mut cut = rest.len();
    for (i, c) in rest.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => {
                cut = i;
                break;
            }
            _ => {}
        }
    }
    let value = rest[..cut].trim().to_string();
    let note = rest[cut..].trim_start_matches('#').trim().to_string();
    Some((key.to_string(), value, note))
}

fn kind_of(value: &str) -> Option<&'static str> {
    let v: toml::Table = format!("v = {value}").parse().ok()?;
    Some(match v.get("v")? {
        toml::Value::String(s) => {
            if crate::config::parse_duration(s).is_ok()
                && s.starts_with(|c: char| c.is_ascii_digit())
            {
                "duration"
            } else {
                "string"
            }
        }
        toml::Value::Integer(_) => "integer",
        toml::Value::Float(_) => "number",
        toml::Value::Boolean(_) => "boolean",
        toml::Value::Datetime(_) => "date",
        toml::Value::Array(_) => "array",
        toml::Value::Table(_) => "table",
    })
}

/// The sections and keys of the example, in its order.
pub fn reference() -> (Vec<SectionDoc>, Vec<KeyDoc>) {
    let mut sections = Vec::new();
    let mut keys = Vec::new();
    let mut section = String::new();
    let mut commented_table: Option<String> = None;
    let mut prose: Vec<String> = Vec::new();
    let mut after_key = false;
    for line in EXAMPLE.lines() {
        let t = line.trim();
        if t.is_empty() {
            prose.clear();
            commented_table = None;
            after_key = false;
            continue;
        }
        let (commented, body) = match t.strip_prefix('#') {
            Some(b) => (true, b.strip_prefix(' ').unwrap_or(b)),
            None => (false, t),
        };
        if let Some((name, many)) = header(body) {
            sections.push(SectionDoc {
                name: name.clone(),
                many,
                meaning: prose.join(" "),
            });
            if commented {
                commented_table = Some(name);
            } else {
                section = name;
                commented_table = None;
            }
            prose.clear();
            after_key = false;
            continue;
        }
        if let Some((key, value, note)) = key_line(body)
            && let Some(kind) = kind_of(&value)
        {
            let mut meaning = prose.join(" ");
            if !note.is_empty() {
                meaning = if meaning.is_empty() {
                    note
                } else {
                    format!("{meaning} ({note})")
                };
            }
            keys.push(KeyDoc {
                section: commented_table.clone().unwrap_or_else(|| section.clone()),
                key,
                kind,
                value,
                is_default: !commented,
                meaning,
            });
            after_key = true;
            continue;
        }
        // Prose: it ends a commented-out table, and after a key it starts the next key's words.
        commented_table = None;
        if after_key {
            prose.clear();
            after_key = false;
        }
        if !commented || !section.is_empty() || !sections.is_empty() {
            prose.push(body.to_string());
        }
    }
    // A section written twice (a second `[[mailbox]]` example) is described once.
    let mut seen = std::collections::HashSet::new();
    sections.retain(|s| seen.insert(s.name.clone()));
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert((k.section.clone(), k.key.clone())));
    (sections, keys)
}

/// Carries the field names serde asked for out of [`fields_of`].
#[derive(Debug)]
struct Fields(&'static [&'static str]);

impl std::fmt::Display for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for Fields {}

impl serde::de::Error for Fields {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Fields(&[])
    }
}

/// A deserializer that answers nothing: it only notes the fields a struct asks for.
struct Capture;

impl<'de> serde::Deserializer<'de> for Capture {
    type Error = Fields;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
        Err(Fields(&[]))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Fields> {
        Err(Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The keys serde accepts in `T` (a `deny_unknown_fields` struct: exactly these).
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(Capture) {
        Err(Fields(f)) => f,
        Ok(_) => &[],
    }
}

/// Every (section, key) the config parser accepts, read from the raw types it checks files
/// against. A key that is itself a section (`alert_smtp` → `appliance.alert_smtp`) is listed as
/// the section's keys, not as a key.
pub fn accepted_keys() -> Vec<(String, String)> {
    use super::raw::*;
    let sections: [(&str, &[&str]); 7] = [
        ("appliance", fields_of::<RawAppliance>()),
        ("appliance.api_tokens", fields_of::<RawApiToken>()),
        ("appliance.alert_smtp", fields_of::<RawAlertSmtp>()),
        ("profile", fields_of::<RawProfile>()),
        ("mailbox", fields_of::<RawMailbox>()),
        ("mailbox.tracking_folder", fields_of::<RawTrackingFolder>()),
        ("webhook", fields_of::<RawWebhook>()),
    ];
    let names: Vec<&str> = sections.iter().map(|(s, _)| *s).collect();
    let mut out = Vec::new();
    for (section, fields) in sections {
        for f in fields {
            if !names.contains(&format!("{section}.{f}").as_str()) {
                out.push((section.to_string(), f.to_string()));
            }
        }
    }
    out
}

/// The top-level tables the parser accepts.
pub fn accepted_sections() -> &'static [&'static str] {
    fields_of::<super::raw::RawConfig>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_the_parser_accepts_is_described_and_no_other() {
        let (_, keys) = reference();
        let described: Vec<(String, String)> = keys
            .iter()
            .map(|k| (k.section.clone(), k.key.clone()))
            .collect();
        let accepted = accepted_keys();
        assert!(accepted.len() > 100, "{accepted:?}");
        let missing: Vec<_> = accepted.iter().filter(|k| !described.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "not in appliance/sidesync.toml: {missing:?}"
        );
        let unknown: Vec<_> = described.iter().filter(|k| !accepted.contains(k)).collect();
        assert!(
            unknown.is_empty(),
            "described but not accepted: {unknown:?}"
        );
        // A key of a commented-out table may rely on the table's words.
        let (sections, _) = reference();
        for k in &keys {
            let table_words = sections
                .iter()
                .any(|s| s.name == k.section && !s.meaning.is_empty());
            assert!(
                !k.meaning.is_empty() || table_words,
                "{}.{} has no words",
                k.section,
                k.key
            );
        }
    }

    #[test]
    fn every_section_is_described() {
        let (sections, _) = reference();
        for s in accepted_sections() {
            assert!(sections.iter().any(|d| d.name == *s), "[{s}]");
        }
    }

    #[test]
    fn key_lines_split_value_and_note() {
        assert_eq!(
            key_line("port_number = 587              # 587 for starttls"),
            Some((
                "port_number".into(),
                "587".into(),
                "587 for starttls".into()
            ))
        );
        assert_eq!(
            key_line("tracking_token_prefix = \"CRM:#\""),
            Some((
                "tracking_token_prefix".into(),
                "\"CRM:#\"".into(),
                String::new()
            ))
        );
        assert_eq!(key_line("Shard i of N = x"), None);
        assert_eq!(kind_of("\"5m\""), Some("duration"));
        assert_eq!(kind_of("\"imap_smtp\""), Some("string"));
        assert_eq!(kind_of("2025-06-01"), Some("date"));
        assert_eq!(kind_of("{ a = \"b\" }"), Some("table"));
        assert_eq!(kind_of("not toml"), None);
    }
}
