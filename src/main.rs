//! The `sidesync` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sidesync::config::Config;
use sidesync::engine::RunMode;

/// mimalloc instead of glibc's malloc: with syncs hopping between the runtime's threads, glibc
/// kept freed memory in per-thread arenas (at 10,000 mailboxes the process held 440 MB for
/// 100 MB in use); mimalloc gives it back and allocates faster (bench/RESULTS.md, scale).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sidesync",
    version,
    about = "Server-side email synchronization appliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance: sync mailboxes and serve the status endpoint until SIGTERM/SIGINT;
    /// SIGHUP reloads the config.
    Run {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
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
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Test the mailboxes of this profile.
        #[arg(long)]
        profile: Option<String>,
        /// The mailboxes' email addresses (all when none is named and no --profile).
        addresses: Vec<String>,
    },
    /// The running appliance at a glance: a summary line, then each failing or not processed
    /// mailbox with why (over the control socket in the data folder).
    Status {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// List every mailbox, not only those needing attention.
        #[arg(long)]
        all: bool,
    },
    /// Approve (or reject) a mailbox's email address in the running appliance.
    Approve {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// approved, rejected, pending_approval or empty.
        #[arg(long, default_value = "approved")]
        approval: String,
        /// The mailbox's email address.
        address: String,
    },
    /// The running appliance's alerts, newest first.
    Alerts {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only this mailbox's alerts.
        #[arg(long)]
        mailbox: Option<String>,
        /// At most this many (1 to 10000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Queued outgoing email, newest first, or one email by its id.
    Outbox {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only emails in this status: pending_send, sending, sent, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Only this sending mailbox's emails.
        #[arg(long)]
        mailbox: Option<String>,
        /// At most this many (1 to 10000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One email's id (as `sidesync send` printed it).
        id: Option<u64>,
    },
    /// Write a mailbox's or a conversation's emails as an mbox file or a maildir, with the bytes
    /// the server delivered: through the running appliance, or from the store when it is stopped.
    Export {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Every email this mailbox saw.
        #[arg(
            long,
            required_unless_present = "conversation",
            conflicts_with = "conversation"
        )]
        mailbox: Option<String>,
        /// Every email of this conversation (its id, as the API shows it).
        #[arg(long)]
        conversation: Option<u64>,
        /// mbox (one file, mboxrd) or maildir (a folder, one file per email).
        #[arg(long, default_value = "mbox")]
        format: String,
        /// The mbox file or maildir folder to write.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) generated from this help; with --dir, write sidesync.1 and a
    /// page per command (sidesync-run.1, …) there.
    Man {
        /// Write the pages into this folder instead of printing the main one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Queue an email through the running appliance (Pending Send); prints its id.
    Send {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The sending mailbox (its address).
        #[arg(long)]
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
        #[arg(long)]
        text_file: Option<PathBuf>,
        /// The HTML body from a file.
        #[arg(long)]
        html_file: Option<PathBuf>,
        /// A file to attach (repeat for more).
        #[arg(long)]
        attach: Vec<PathBuf>,
    },
    /// Validate the config file; print every mistake as FILE:LINE:COL: message.
    CheckConfig {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Passwords sealed in the config file (enc:v1 values) and their key file.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
}

#[derive(Subcommand)]
enum SecretAction {
    /// Seal a password read from standard input (one line) for one mailbox or profile field;
    /// prints the enc:v1 value to put in the config. The key file is made when missing.
    Encrypt {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The mailbox whose `password` this is.
        #[arg(long, conflicts_with_all = ["profile", "alert_smtp", "webhook"])]
        mailbox: Option<String>,
        /// The profile whose `incoming_password` (or, with --field, `outgoing_password`) this is.
        #[arg(long, conflicts_with_all = ["alert_smtp", "webhook"])]
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
        #[arg(long)]
        field: Option<String>,
    },
    /// Re-seal every enc:v1 value of the config under a new key, all or none; the old key goes.
    Rotate {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

fn secret(action: SecretAction) -> ExitCode {
    use sidesync::config::seal::{SealScope, encrypt, rotate};
    let done = match action {
        SecretAction::Encrypt {
            config,
            mailbox,
            profile,
            alert_smtp,
            webhook,
            field,
        } => {
            let (scope, default_field) = match (mailbox, profile, alert_smtp, webhook) {
                (Some(m), _, _, _) => (SealScope::Mailbox(m), "password"),
                (None, Some(p), _, _) => (SealScope::Profile(p), "incoming_password"),
                (None, None, true, _) => (SealScope::AlertSmtp, "alert_smtp.password"),
                (None, None, false, Some(w)) => (SealScope::Webhook(w), "secret"),
                (None, None, false, None) => {
                    eprintln!(
                        "name what the secret is for: --mailbox, --profile, --alert-smtp or \
                         --webhook"
                    );
                    return ExitCode::from(2);
                }
            };
            let mut line = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                eprintln!("cannot read the password from standard input: {e}");
                return ExitCode::from(1);
            }
            let plaintext = line.trim_end_matches(['\r', '\n']);
            if plaintext.is_empty() {
                eprintln!("no password on standard input");
                return ExitCode::from(1);
            }
            let field = field.as_deref().unwrap_or(default_field);
            encrypt(&config, &scope, field, plaintext).map(|v| println!("{v}"))
        }
        SecretAction::Rotate { config } => rotate(&config).map(|n| {
            println!("{n} sealed values rotated to a new key; the old key is gone");
        }),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Where the package puts the config.
const DEFAULT_CONFIG: &str = "/etc/sidesync/sidesync.toml";

/// sysexits.h: configuration error.
const EX_CONFIG: u8 = 78;

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(1)
    })
}

/// The control socket of the appliance `config` runs (only its data folder is read from it).
fn operator(config: &std::path::Path) -> Result<PathBuf, String> {
    sidesync::operate::control_socket(config)
}

/// `sidesync export`: through the control socket when the appliance answers there, else from
/// the store (which only a stopped appliance leaves free).
fn export(
    config: &std::path::Path,
    mailbox: Option<String>,
    conversation: Option<u64>,
    format: &str,
    output: &std::path::Path,
) -> Result<Vec<String>, String> {
    use sidesync::export::{Format, Selection, SocketSource, StoreSource};
    let format = Format::parse(format)?;
    let selection = match (mailbox, conversation) {
        (Some(m), _) => Selection::Mailbox(m.trim().to_ascii_lowercase()),
        (None, Some(c)) => Selection::Conversation(c),
        (None, None) => return Err("name a --mailbox or a --conversation".into()),
    };
    let socket = operator(config)?;
    let running = std::os::unix::net::UnixStream::connect(&socket).is_ok();
    let (count, through) = if running {
        let mut source = SocketSource(socket);
        (
            sidesync::export::export(&mut source, &selection, format, output)?,
            "the running appliance",
        )
    } else {
        let data_dir = sidesync::config::Config::data_dir_of(config)?;
        let store = sidesync::store::Store::open(&data_dir)
            .map_err(|e| format!("{e} (is the appliance running without its control socket?)"))?;
        let mut source = StoreSource(store);
        (
            sidesync::export::export(&mut source, &selection, format, output)?,
            "the store",
        )
    };
    Ok(vec![format!(
        "{count} emails written to {} (read from {through})",
        output.display()
    )])
}

/// Prints what an operator command returned; exit 1 with its sentence when it failed.
fn print(lines: Result<Vec<String>, String>) -> ExitCode {
    match lines {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sidesync: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "sidesync",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            let done = match dir {
                None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
                Some(dir) => clap_mangen::generate_to(Cli::command(), &dir),
            };
            match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sidesync: cannot write the man pages: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Status { config, all } => {
            print(operator(&config).and_then(|s| sidesync::operate::status(&s, all)))
        }
        Command::Approve {
            config,
            approval,
            address,
        } => print(
            operator(&config).and_then(|s| sidesync::operate::approve(&s, &address, &approval)),
        ),
        Command::Alerts {
            config,
            mailbox,
            limit,
        } => print(
            operator(&config)
                .and_then(|s| sidesync::operate::alerts(&s, mailbox.as_deref(), limit)),
        ),
        Command::Outbox {
            config,
            status,
            mailbox,
            limit,
            id,
        } => print(operator(&config).and_then(|s| {
            sidesync::operate::outbox(&s, id, status.as_deref(), mailbox.as_deref(), limit)
        })),
        Command::Export {
            config,
            mailbox,
            conversation,
            format,
            output,
        } => print(export(&config, mailbox, conversation, &format, &output)),
        Command::Secret { action } => secret(action),
        Command::CheckConfig { config } => match load(&config) {
            Ok(c) if !c.unreadable_secrets().is_empty() => {
                for (what, why) in c.unreadable_secrets() {
                    eprintln!("{}: {what}: {why}", config.display());
                }
                ExitCode::from(1)
            }
            Ok(c) => {
                println!(
                    "{}: OK ({} profiles, {} mailboxes)",
                    config.display(),
                    c.profiles.len(),
                    c.mailboxes.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Send {
            config,
            from,
            to,
            cc,
            bcc,
            subject,
            text,
            text_file,
            html_file,
            attach,
        } => {
            let socket = match operator(&config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("sidesync: {e}");
                    return ExitCode::from(1);
                }
            };
            let read = |p: Option<PathBuf>| -> Result<Option<String>, String> {
                p.map(|p| {
                    std::fs::read_to_string(&p)
                        .map_err(|e| format!("cannot read {}: {e}", p.display()))
                })
                .transpose()
            };
            let bodies = read(text_file).and_then(|t| Ok((t, read(html_file)?)));
            let (text_from_file, html) = match bodies {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("sidesync: {e}");
                    return ExitCode::from(1);
                }
            };
            let args = sidesync::operate::SendArgs {
                from,
                to,
                cc,
                bcc,
                subject,
                text: text.or(text_from_file),
                html,
                attach,
            };
            match sidesync::operate::send(&socket, args) {
                Ok(v) => {
                    println!(
                        "queued: id {} ({})",
                        v["id"],
                        v["status"].as_str().unwrap_or("")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sidesync: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Test {
            config,
            profile,
            addresses,
        } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match sidesync::app::test(config, &addresses, profile.as_deref()) {
                Ok(rows) => {
                    println!(
                        "{:<32} {:<9} {:<9} reason",
                        "mailbox", "incoming", "outgoing"
                    );
                    for r in &rows {
                        println!(
                            "{:<32} {:<9} {:<9} {}",
                            r.mailbox,
                            r.incoming,
                            r.outgoing,
                            r.reasons.join("; ")
                        );
                    }
                    if rows.iter().any(|r| r.failed()) {
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("sidesync: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run {
            config,
            once,
            log_format,
        } => {
            sidesync::logging::init(log_format);
            // A broken config is EX_CONFIG (78): systemd's RestartPreventExitStatus=78 stops
            // restarting what a restart cannot fix.
            let config = match load(&config) {
                Ok(c) => c,
                Err(_) => return ExitCode::from(EX_CONFIG),
            };
            let mode = if once {
                RunMode::Once
            } else {
                RunMode::Forever
            };
            match sidesync::app::run(config, mode) {
                Ok(report) if once && report.failures > 0 => ExitCode::from(1),
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sidesync: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
