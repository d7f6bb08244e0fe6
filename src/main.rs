//! The `sidesync` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use sidesync::config::Config;
use sidesync::engine::RunMode;
use sidesync::http::client::CallError;
use sidesync::operate::{Answer, exit};

mod cli;

use cli::{Cli, Command, SecretAction};

/// mimalloc instead of glibc's malloc: with syncs hopping between the runtime's threads, glibc
/// kept freed memory in per-thread arenas (at 10,000 mailboxes the process held 440 MB for
/// 100 MB in use); mimalloc gives it back and allocates faster (bench/RESULTS.md, scale).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// sysexits.h: configuration error.
const EX_CONFIG: u8 = exit::CONFIG;

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

/// Prints what a read command found: a table, or the API's JSON with `json`; exit 1 when it
/// needs attention, 3 when the appliance is not running, 1 with its sentence when it failed.
fn answer(found: Result<Answer, CallError>, json: bool) -> ExitCode {
    match found {
        Ok(a) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&a.json).unwrap_or_else(|_| a.json.to_string())
                );
            } else {
                println!("{}", a.text);
            }
            ExitCode::from(if a.attention {
                exit::ATTENTION
            } else {
                exit::OK
            })
        }
        Err(e) => {
            eprintln!("sidesync: {e}");
            ExitCode::from(sidesync::operate::exit_status_of(&e))
        }
    }
}

/// The control socket, or the sentence why there is none (exit 1, a config without a data
/// folder is not "not running").
fn socket_of(config: &std::path::Path) -> Result<PathBuf, CallError> {
    operator(config).map_err(CallError::Other)
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

/// The dynamic completion script for `shell`: it calls `sidesync` (on the PATH) with
/// SIDESYNC_COMPLETE set, so values complete from the config.
fn completion_script(shell: clap_complete::Shell) -> std::io::Result<()> {
    let shells = clap_complete::env::Shells::builtins();
    let name = shell.to_string();
    let Some(completer) = shells.completer(&name) else {
        return Err(std::io::Error::other(format!(
            "no dynamic completions for {name}"
        )));
    };
    completer.write_registration(
        cli::complete::COMPLETE_VAR,
        "sidesync",
        "sidesync",
        "sidesync",
        &mut std::io::stdout(),
    )
}

fn main() -> ExitCode {
    // A completion request from the dynamic script answers and exits here.
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(cli::complete::COMPLETE_VAR)
        .complete();
    let cli = Cli::parse();
    match cli.command {
        Command::Completions { shell, dynamic } => {
            let done = if dynamic {
                completion_script(shell)
            } else {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "sidesync",
                    &mut std::io::stdout(),
                );
                Ok(())
            };
            match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sidesync: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Man { dir, config_page } => {
            use std::io::Write;
            let done = match (dir, config_page) {
                (Some(dir), _) => cli::man::write_all(Cli::command(), &dir),
                (None, true) => std::io::stdout().write_all(cli::man::config_page().as_bytes()),
                (None, false) => cli::man::main_page(Cli::command())
                    .and_then(|page| std::io::stdout().write_all(&page)),
            };
            match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sidesync: cannot write the man pages: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Status { config, all, json } => answer(
            socket_of(&config).and_then(|s| sidesync::operate::status(&s, all)),
            json,
        ),
        Command::Mailboxes {
            config,
            failing,
            limit,
            json,
        } => answer(
            socket_of(&config).and_then(|s| sidesync::operate::mailboxes(&s, failing, limit)),
            json,
        ),
        Command::Approve {
            config,
            approval,
            address,
        } => answer(
            socket_of(&config).and_then(|s| sidesync::operate::approve(&s, &address, &approval)),
            false,
        ),
        Command::Alerts {
            config,
            mailbox,
            limit,
            json,
        } => answer(
            socket_of(&config)
                .and_then(|s| sidesync::operate::alerts(&s, mailbox.as_deref(), limit)),
            json,
        ),
        Command::Outbox {
            config,
            status,
            mailbox,
            limit,
            id,
            json,
        } => answer(
            socket_of(&config).and_then(|s| {
                sidesync::operate::outbox(&s, id, status.as_deref(), mailbox.as_deref(), limit)
            }),
            json,
        ),
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
                    ExitCode::from(sidesync::operate::exit_status_of(&e))
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
