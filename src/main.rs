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
        #[arg(long, short)]
        config: PathBuf,
        /// Sync every processed mailbox once, then exit (exit 1 if any sync failed).
        #[arg(long)]
        once: bool,
    },
    /// Test & Enable: test incoming and outgoing of the named mailboxes (all when none is named),
    /// record the results, enable those that pass. Exit 1 if any failed.
    Test {
        #[arg(long, short)]
        config: PathBuf,
        /// Test the mailboxes of this profile.
        #[arg(long)]
        profile: Option<String>,
        addresses: Vec<String>,
    },
    /// Queue an email through the running appliance (Pending Send); prints its id.
    Send {
        #[arg(long, short)]
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
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match load(&config) {
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
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
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
