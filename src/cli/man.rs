//! The man pages: sidesync(1) from the CLI's help plus the sections clap does not know (EXIT
//! STATUS, ENVIRONMENT, FILES, SEE ALSO), a page per command, and sidesync.toml(5) from the
//! annotated example config ([`sidesync::config::reference`]).

use std::io::Write;
use std::path::Path;

use clap_mangen::roff::{Roff, bold, italic, roman};

/// The exit statuses (the `--help` text says the same in its own layout).
pub const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Done; nothing needs attention."),
    (
        "1",
        "Something needs attention, or the command failed (its reason on standard error). Per \
         command: status and mailboxes — a mailbox is failing (incoming or outgoing) or stale; \
         status — the last reload was refused (a mailbox waiting for approval or a test is not a failure); alerts — \
         an alert it lists is at error level (narrow with --mailbox and --limit); outbox — an \
         email it lists failed; check-config — a mistake in the file; test — a mailbox failed \
         its test; run --once — a sync failed; approve, send, export, secret — the command was \
         refused or failed.",
    ),
    (
        "2",
        "The command line is wrong (an unknown option or value).",
    ),
    (
        "3",
        "The appliance is not running: no control socket in the data folder, or nobody answers \
         on it (status, mailboxes, approve, alerts, outbox, send).",
    ),
    (
        "78",
        "run: the config cannot be used (EX_CONFIG); the unit's RestartPreventExitStatus=78 \
         stops systemd from restarting what a restart cannot fix.",
    ),
];

/// Every environment variable the binary reads (tests/cli.rs holds this list to the source).
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "SIDESYNC_CONFIG",
        "The config file, when --config is not given (default /etc/sidesync/sidesync.toml).",
    ),
    (
        "SIDESYNC_LOG",
        "The level of sidesync's own log lines, as a tracing filter: error, warn, info (the \
         default), debug, trace, or per module (sidesync::imap=debug).",
    ),
    (
        "SIDESYNC_LOG_FORMAT",
        "run: how logs are written, auto (journald under systemd, else plain lines), plain or \
         json; --log-format wins.",
    ),
    (
        "SIDESYNC_SHARD",
        "i/N: this appliance is shard i of N and owns only the mailboxes whose address hashes \
         to it; wins over [appliance] shard.",
    ),
    (
        "SIDESYNC_COMPLETE",
        "Set by the dynamic completion script (sidesync completions SHELL --dynamic): the run \
         prints completions for the shell it names instead of running a command.",
    ),
    (
        "CREDENTIALS_DIRECTORY",
        "Set by systemd (LoadCredential=): where *_credential keys of the config are read.",
    ),
    (
        "JOURNAL_STREAM",
        "Set by systemd: logs go to the journal (with --log-format auto).",
    ),
    (
        "NOTIFY_SOCKET",
        "Set by systemd (Type=notify): READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 go there.",
    ),
    (
        "WATCHDOG_USEC",
        "Set by systemd (WatchdogSec=): how often the watchdog must hear from the appliance.",
    ),
    (
        "*_env keys",
        "Any variable the config names in password_env, incoming_password_env, \
         outgoing_password_env, oauth_client_secret_env, refresh_token_env, secret_env or an \
         api_tokens env: the secret is read from it.",
    ),
];

/// The files sidesync reads and writes.
pub const FILES: &[(&str, &str)] = &[
    (
        "/etc/sidesync/sidesync.toml",
        "The config (root:sidesync 0640); see sidesync.toml(5). Relative paths in it are relative \
         to its folder.",
    ),
    (
        "/usr/share/doc/sidesync/examples/sidesync.toml",
        "The annotated example: every key with its default and meaning.",
    ),
    (
        "DATA_DIR/sidesync.redb",
        "The store: activities, raw emails, mailbox states, alerts, the outbox and the change \
         feed. DATA_DIR is [appliance] data_dir, /var/lib/sidesync by default (sidesync:sidesync \
         0750). One process opens it at a time.",
    ),
    (
        "DATA_DIR/secret.key",
        "The key file of sealed (enc:v1) config values, 0600, made by sidesync secret encrypt; \
         sidesync secret rotate replaces its key.",
    ),
    (
        "DATA_DIR/control.sock",
        "The control socket (0660, the service's user and group) the operator's commands reach \
         the running appliance through; it exists while the appliance runs.",
    ),
    (
        "/etc/sidesync/api.token",
        "The usual api_token_file: the API's admin token (0600).",
    ),
    (
        "/run/credentials/sidesync.service/",
        "systemd credentials (LoadCredential=) the *_credential keys name.",
    ),
];

fn definitions(title: &str, items: &[(&str, &str)]) -> String {
    let mut r = Roff::new();
    r.control("SH", [title]);
    for (name, text) in items {
        r.control("TP", []);
        r.text([bold(*name)]);
        r.text([roman(*text)]);
    }
    r.to_roff()
}

/// sidesync(1): clap's sections, then the ones it does not know.
pub fn main_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    out.write_all(definitions("EXIT STATUS", EXIT_STATUS).as_bytes())?;
    out.write_all(definitions("ENVIRONMENT", ENVIRONMENT).as_bytes())?;
    out.write_all(definitions("FILES", FILES).as_bytes())?;
    let mut r = Roff::new();
    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("sidesync.toml"),
        roman("(5), "),
        bold("systemctl"),
        roman("(1), /usr/share/doc/sidesync/README.md"),
    ]);
    out.write_all(r.to_roff().as_bytes())?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// sidesync.toml(5): every section and key of the config.
pub fn config_page() -> String {
    use sidesync::config::reference::reference;
    let (sections, keys) = reference();
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            "sidesync.toml",
            "5",
            "",
            &format!("sidesync {}", env!("CARGO_PKG_VERSION")),
        ],
    );
    r.control("SH", ["NAME"]);
    r.text([roman(
        "sidesync.toml - the sidesync appliance's configuration file",
    )]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(
        "A TOML file, /etc/sidesync/sidesync.toml unless --config or SIDESYNC_CONFIG names \
         another. Unknown keys are errors; sidesync check-config prints every mistake as \
         FILE:LINE:COL: message, and a reload (SIGHUP) with mistakes is refused while the running \
         config stays. Durations are written \"250ms\", \"30s\", \"5m\", \"1h\", \"1d\" or as a \
         bare number of seconds. In [appliance] a key shown with \"default\" has that default; one \
         shown with \"example\" is optional or its default is computed, as its text says. In the \
         tables of [[profile]], [[mailbox]] and [[webhook]] every value is the example's; the \
         text says the default. Secrets (password, \
         secret, token) come from *_file, *_env or *_credential keys, or as sealed enc:v1 values \
         (sidesync secret encrypt).",
    )]);
    for s in &sections {
        let head = if s.many {
            format!("[[{}]]", s.name)
        } else {
            format!("[{}]", s.name)
        };
        r.control("SH", [head.as_str()]);
        if !s.meaning.is_empty() {
            r.text([roman(s.meaning.as_str())]);
        }
        // In a list of tables (and the tables within one) the values are the example's.
        let many = s.many
            || sections
                .iter()
                .any(|p| p.many && s.name.starts_with(&format!("{}.", p.name)));
        for k in keys.iter().filter(|k| k.section == s.name) {
            r.control("TP", []);
            r.text([
                bold(k.key.as_str()),
                roman(" ("),
                italic(k.kind),
                roman(if k.is_default && !many {
                    "; default "
                } else {
                    "; example "
                }),
                roman(k.value.as_str()),
                roman(")"),
            ]);
            r.text([roman(k.meaning.as_str())]);
        }
    }
    r.control("SH", ["SEE ALSO"]);
    r.text([bold("sidesync"), roman("(1)")]);
    r.render()
}

/// `sidesync man --dir DIR`: sidesync.1, a page per command, sidesync.toml.5.
pub fn write_all(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    clap_mangen::generate_to(cmd.clone(), dir)?;
    std::fs::write(dir.join("sidesync.1"), main_page(cmd)?)?;
    std::fs::write(dir.join("sidesync.toml.5"), config_page())
}
