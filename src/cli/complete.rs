//! Values that complete from the config while the shell asks (`sidesync completions SHELL
//! --dynamic`): mailbox addresses and profile names. The config is read as plain TOML, not
//! validated, so a file with a mistake still completes; nothing is printed when it cannot be
//! read (a completion never writes errors into the shell's line).

use std::ffi::OsStr;

use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};

/// The environment variable that turns a run of `sidesync` into a completion request (set by
/// the dynamic completion script; a name of its own so no other program's variable triggers it).
pub const COMPLETE_VAR: &str = "SIDESYNC_COMPLETE";

/// What a completion request reads: `SIDESYNC_CONFIG`, else the default path (the completer
/// does not see the line's `--config`).
fn config_text() -> Option<String> {
    let path = std::env::var_os("SIDESYNC_CONFIG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| super::DEFAULT_CONFIG.into());
    std::fs::read_to_string(path).ok()
}

/// The `key` of every `[[table]]` in `text` that starts with `prefix`, in the file's order.
pub fn names_in(text: &str, table: &str, key: &str, prefix: &str) -> Vec<String> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    doc.get(table)
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get(key)?.as_str())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn candidates(table: &'static str, key: &'static str, current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(prefix) = current.to_str() else {
        return Vec::new();
    };
    config_text()
        .map(|text| names_in(&text, table, key, prefix))
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// Completes a mailbox's email address.
pub fn mailboxes() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| candidates("mailbox", "email_address", current))
}

/// Completes a profile's name.
pub fn profiles() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| candidates("profile", "name", current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_tables_and_match_the_prefix() {
        let text = "[[profile]]\nname = \"corp\"\n[[profile]]\nname = \"cloud\"\n\
                    [[mailbox]]\nemail_address = \"a@x.example\"\n\
                    [[mailbox]]\nemail_address = \"b@x.example\"\n[[mailbox]]\nname = \"no address\"\n";
        assert_eq!(
            names_in(text, "mailbox", "email_address", ""),
            ["a@x.example", "b@x.example"]
        );
        assert_eq!(
            names_in(text, "mailbox", "email_address", "b"),
            ["b@x.example"]
        );
        assert_eq!(names_in(text, "profile", "name", "co"), ["corp"]);
        assert!(names_in(text, "profile", "name", "z").is_empty());
    }

    #[test]
    fn a_file_that_is_not_toml_completes_nothing() {
        assert!(names_in("[[mailbox", "mailbox", "email_address", "").is_empty());
        assert!(names_in("mailbox = 3", "mailbox", "email_address", "").is_empty());
    }
}
