//! The `sidesync` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sidesync::config::Config;
use sidesync::engine::RunMode;

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
    /// Run the appliance: sync mailboxes and serve the status endpoint until SIGTERM/SIGINT.
    Run {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Sync every processed mailbox once, then exit (exit 1 if any sync failed).
        #[arg(long)]
        once: bool,
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
        addresses: Vec<String>,
    },
    /// Queue an email through the running appliance (Pending Send); prints its id.
    Send {
        /// The config file.
        #[arg(long, short, env = "SIDESYNC_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The sending mailbox (its address).
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: Vec<String>,
        #[arg(long)]
        cc: Vec<String>,
        #[arg(long)]
        bcc: Vec<String>,
        #[arg(long, default_value = "")]
        subject: String,
        #[arg(long)]
        text: Option<String>,
        /// The text body from a file.
        #[arg(long)]
        text_file: Option<PathBuf>,
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
        #[arg(long, conflicts_with_all = ["profile", "alert_smtp"])]
        mailbox: Option<String>,
        /// The profile whose `incoming_password` (or, with --field, `outgoing_password`) this is.
        #[arg(long, conflicts_with = "alert_smtp")]
        profile: Option<String>,
        /// `[appliance.alert_smtp]`'s password.
        #[arg(long)]
        alert_smtp: bool,
        /// The field: password, incoming_password, outgoing_password or alert_smtp.password.
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
            field,
        } => {
            let (scope, default_field) = match (mailbox, profile, alert_smtp) {
                (Some(m), _, _) => (SealScope::Mailbox(m), "password"),
                (None, Some(p), _) => (SealScope::Profile(p), "incoming_password"),
                (None, None, true) => (SealScope::AlertSmtp, "alert_smtp.password"),
                (None, None, false) => {
                    eprintln!(
                        "name what the password is for: --mailbox, --profile or --alert-smtp"
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
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
            let args = sidesync::app::SendArgs {
                from,
                to,
                cc,
                bcc,
                subject,
                text: text.or(text_from_file),
                html,
                attach,
            };
            match sidesync::app::send(&config, args) {
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
        Command::Run { config, once } => {
            sidesync::logging::init();
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
