//! The command line's definition (clap derive): every command, its options and their help,
//! which `--help`, the man pages and the shell completions are all generated from. `main.rs`
//! runs what was asked.

pub mod complete;
pub mod man;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueHint};

/// Where the package puts the config.
pub const DEFAULT_CONFIG: &str = "/etc/sidesync/sidesync.toml";

/// The exit statuses, as `--help` shows them (the man page's EXIT STATUS, [`man::EXIT_STATUS`],
/// says the same at more length; both follow `sidesync::operate::exit`).
const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   done; nothing needs attention
  1   something needs attention — status, mailboxes: a failing or stale mailbox; status: a
      refused reload; alerts: one at error level; outbox: a failed email; check-config: a
      mistake; test: a failed test; run --once: a failed sync — or the command failed (its
      reason on stderr)
  2   the command line is wrong
  3   the appliance is not running (no control socket, or nobody answers on it)
  78  run: the config cannot be used (systemd does not restart it)

Read commands (status, mailboxes, alerts, outbox) print tables for a person, or with --json
the API's answer as JSON. See sidesync(1) and sidesync.toml(5).";

#[derive(Parser)]
#[command(
    name = "sidesync",
    version,
    about = "Server-side email synchronization appliance",
    after_long_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the appliance: sync mailboxes and serve the status endpoint until SIGTERM/SIGINT;
    /// SIGHUP reloads the config.
    Run {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
        /// Sync every processed mailbox once, then exit (exit 1 if any sync failed).
        #[arg(long)]
        once: bool,
        /// How logs are written: journald under systemd else plain lines (auto), or json.
        #[arg(long, value_enum, env = "SIDESYNC_LOG_FORMAT", default_value = "auto")]
        log_format: sidesync::logging::LogFormat,
    },
    /// Test & Enable: test incoming and outgoing of the named mailboxes (all when none is named),
    /// record the results, enable those that pass. Exit 1 if any failed.
    Test {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
        /// Test the mailboxes of this profile.
        #[arg(long, add = complete::profiles())]
        profile: Option<String>,
        /// The mailboxes' email addresses (all when none is named and no --profile).
        #[arg(add = complete::mailboxes())]
        addresses: Vec<String>,
    },
    /// The running appliance at a glance: a summary line, then each failing or not processed
    /// mailbox with why (over the control socket in the data folder). Exit 1 when a mailbox is
    /// failing or stale or the last reload was refused; 3 when the appliance is not running.
    Status {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
        /// List every mailbox, not only those needing attention.
        #[arg(long)]
        all: bool,
        /// Print the appliance's `/status` answer as JSON (every mailbox) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// The mailboxes in config order with their state (the API's `GET /api/v1/mailboxes`).
    /// Exit 1 when one listed is failing or stale; 3 when the appliance is not running.
    Mailboxes {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
        /// Only the failing ones.
        #[arg(long)]
        failing: bool,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print the API's answer as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Approve (or reject) a mailbox's email address in the running appliance.
    Approve {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
        /// The approval to set.
        #[arg(long, default_value = "approved",
              value_parser = ["approved", "rejected", "pending_approval", "empty"])]
        approval: String,
        /// The mailbox's email address.
        #[arg(add = complete::mailboxes())]
        address: String,
    },
    /// The running appliance's alerts, newest first. Exit 1 when one listed is at error level;
    /// 3 when the appliance is not running.
    Alerts {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
        /// Only this mailbox's alerts.
        #[arg(long, add = complete::mailboxes())]
        mailbox: Option<String>,
        /// At most this many (1 to 10000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print the API's answer (`GET /api/v1/alerts`) as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queued outgoing email, newest first, or one email by its id. Exit 1 when one listed
    /// failed; 3 when the appliance is not running.
    Outbox {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
        /// Only emails in this status.
        #[arg(long, value_parser = ["pending_send", "sending", "sent", "failed", "cancelled"])]
        status: Option<String>,
        /// Only this sending mailbox's emails.
        #[arg(long, add = complete::mailboxes())]
        mailbox: Option<String>,
        /// At most this many (1 to 10000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print the API's answer (`GET /api/v1/outbox`, or one email) as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// One email's id (as `sidesync send` printed it).
        id: Option<u64>,
    },
    /// Write a mailbox's or a conversation's emails as an mbox file or a maildir, with the bytes
    /// the server delivered: through the running appliance, or from the store when it is stopped.
    Export {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
        /// Every email this mailbox saw.
        #[arg(
            long,
            required_unless_present = "conversation",
            conflicts_with = "conversation",
            add = complete::mailboxes()
        )]
        mailbox: Option<String>,
        /// Every email of this conversation (its id, as the API shows it).
        #[arg(long)]
        conversation: Option<u64>,
        /// mbox (one file, mboxrd) or maildir (a folder, one file per email).
        #[arg(long, default_value = "mbox", value_parser = ["mbox", "maildir"])]
        format: String,
        /// The mbox file or maildir folder to write.
        #[arg(long, short, value_hint = ValueHint::AnyPath)]
        output: PathBuf,
    },
    /// Print shell completions for bash, zsh, fish, elvish or powershell. With --dynamic, the
    /// script asks sidesync itself while completing, so mailbox addresses and profile names
    /// complete from the config (SIDESYNC_CONFIG, else the default path).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
        /// Complete values from the config too (the script calls `sidesync` on the PATH).
        #[arg(long)]
        dynamic: bool,
    },
    /// Print the man page (roff) generated from this help; with --dir, write sidesync.1, a
    /// page per command (sidesync-run.1, …) and sidesync.toml.5 (every config key) there.
    Man {
        /// Write the pages into this folder instead of printing one.
        #[arg(long, value_hint = ValueHint::DirPath)]
        dir: Option<PathBuf>,
        /// Print the config file's page, sidesync.toml(5), instead of sidesync(1).
        #[arg(long, conflicts_with = "dir")]
        config_page: bool,
    },
    /// Queue an email through the running appliance (Pending Send); prints its id.
    Send {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
        /// The sending mailbox (its address).
        #[arg(long, add = complete::mailboxes())]
        from: String,
        /// A To recipient (repeat for more).
        #[arg(long)]
        to: Vec<String>,
        /// A Cc recipient (repeat for more).
        #[arg(long)]
        cc: Vec<String>,
        /// A Bcc recipient (repeat for more).
        #[arg(long)]
        bcc: Vec<String>,
        /// The subject line.
        #[arg(long, default_value = "")]
        subject: String,
        /// The text body.
        #[arg(long)]
        text: Option<String>,
        /// The text body from a file.
        #[arg(long, value_hint = ValueHint::FilePath)]
        text_file: Option<PathBuf>,
        /// The HTML body from a file.
        #[arg(long, value_hint = ValueHint::FilePath)]
        html_file: Option<PathBuf>,
        /// A file to attach (repeat for more).
        #[arg(long, value_hint = ValueHint::FilePath)]
        attach: Vec<PathBuf>,
    },
    /// Validate the config file; print every mistake as FILE:LINE:COL: message.
    CheckConfig {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
    },
    /// Passwords sealed in the config file (enc:v1 values) and their key file.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
}

#[derive(Subcommand)]
pub enum SecretAction {
    /// Seal a password read from standard input (one line) for one mailbox or profile field;
    /// prints the enc:v1 value to put in the config. The key file is made when missing.
    Encrypt {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
        /// The mailbox whose `password` this is.
        #[arg(long, conflicts_with_all = ["profile", "alert_smtp", "webhook"],
              add = complete::mailboxes())]
        mailbox: Option<String>,
        /// The profile whose `incoming_password` (or, with --field, `outgoing_password`) this is.
        #[arg(long, conflicts_with_all = ["alert_smtp", "webhook"], add = complete::profiles())]
        profile: Option<String>,
        /// `[appliance.alert_smtp]`'s password.
        #[arg(long, conflicts_with = "webhook")]
        alert_smtp: bool,
        /// The `[[webhook]]` (by name) whose signing `secret` this is.
        #[arg(long)]
        webhook: Option<String>,
        /// The field: password or refresh_token (a mailbox), incoming_password,
        /// outgoing_password or oauth_client_secret (a profile), alert_smtp.password, secret
        /// (a webhook).
        #[arg(long, value_parser = ["password", "refresh_token", "incoming_password",
              "outgoing_password", "oauth_client_secret", "alert_smtp.password", "secret"])]
        field: Option<String>,
    },
    /// Re-seal every enc:v1 value of the config under a new key, all or none; the old key goes.
    Rotate {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG, value_hint = ValueHint::FilePath)]
        config: PathBuf,
    },
}
