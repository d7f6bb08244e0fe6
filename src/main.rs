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
