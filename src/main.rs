//! The `roommanager` command: parses the command line, sets up logging and runs a subcommand.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use roommanager::admin::{self, AdminError};
use roommanager::config::{Config, Overrides};
use roommanager::media::nginx::MediaPaths;
use roommanager::media::rtmp;
use roommanager::site::Site;
use roommanager::store::{Store, StoreError};

/// RoomManager: a self-hosted live-streaming site in one binary.
///
/// Run without arguments to start the server on the defaults (or ./roommanager.toml if present),
/// then open http://localhost:8080 in a browser.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Config file (TOML). Without it, ./roommanager.toml is used if present, else the built-in
    /// defaults.
    #[arg(long, short, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Folder for the database, uploads, mail outbox and recordings [config: storage.data_dir].
    #[arg(long, global = true, value_name = "PATH")]
    data_dir: Option<PathBuf>,
    /// Address to listen on, like 0.0.0.0:8080 [config: server.listen].
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (the default when no command is given).
    Serve,
    /// Check a config file and print the effective settings, with command-line overrides applied.
    CheckConfig,
    /// Print the nginx config that the rtmp media backend uses, for running nginx yourself.
    NginxConfig,
    /// Manage the admin accounts (the server must not be running on the same data dir).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin. The password is asked for on the terminal (not shown), or read from
    /// the first line of stdin with --password-stdin.
    Create {
        name: String,
        /// Read the password from the first line of stdin (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password for an admin; its sessions end.
    Passwd {
        name: String,
        /// Read the password from the first line of stdin (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the admins.
    List,
    /// Delete an admin; its sessions end.
    Delete { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.listen,
        data_dir: cli.data_dir,
    };
    let (config, source) = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("# config OK, from {source}");
            match Site::new(&config, config.server.listen).public_url() {
                None => println!(
                    "# URLs: derived from each request (server.public_url is empty): links are \
                     relative, push URLs use the host the page was opened with"
                ),
                Some(url) => {
                    println!("# URLs: every link and push URL uses server.public_url = {url}")
                }
            }
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Command::NginxConfig => {
            let paths = match MediaPaths::new(&config.storage.data_dir) {
                Ok(paths) => paths,
                Err(e) => {
                    eprintln!("error: cannot prepare the media folders: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let secret = match rtmp::hook_secret(&config.media.rtmp, &paths) {
                Ok(secret) => secret,
                Err(e) => {
                    eprintln!("error: cannot read or create the hook secret: {e}");
                    return ExitCode::FAILURE;
                }
            };
            print!(
                "{}",
                rtmp::config_text(&config.media.rtmp, &paths, config.server.listen, &secret)
            );
            ExitCode::SUCCESS
        }
        Command::Admin { command } => run_admin(&config, command),
        Command::Serve => {
            init_logging(&config.log.level);
            tracing::info!(config = %source, version = env!("CARGO_PKG_VERSION"), "starting roommanager");
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(roommanager::server::run(config)) {
                Ok(()) => {
                    tracing::info!("stopped");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `roommanager admin …`: works on the store directly, so the server must not hold it.
fn run_admin(config: &Config, command: AdminCommand) -> ExitCode {
    let store = match Store::open(&config.storage.data_dir) {
        Ok(store) => store,
        Err(StoreError::InUse { path }) => {
            eprintln!(
                "error: a running roommanager holds the database {}; stop the server first \
                 (admin commands change the database directly), then run this again",
                path.display()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let done = match command {
        AdminCommand::Create {
            name,
            password_stdin,
        } => read_password(&name, password_stdin)
            .and_then(|password| admin::create(&store, &name, &password))
            .map(|()| println!("created the admin {name:?}; log in at /admin/login")),
        AdminCommand::Passwd {
            name,
            password_stdin,
        } => read_password(&name, password_stdin)
            .and_then(|password| admin::change_password(&store, &name, &password))
            .map(|()| println!("changed the password of the admin {name:?}; its sessions ended")),
        AdminCommand::List => admin::list(&store).map(|admins| {
            if admins.is_empty() {
                println!("no admins yet (create one with `roommanager admin create NAME`)");
            }
            for a in admins {
                let last = a.last_login_at.map_or_else(
                    || "never logged in".to_owned(),
                    |at| {
                        let ip = a.last_login_ip.as_deref().unwrap_or("?");
                        format!("last login at {at} (unix) from {ip}")
                    },
                );
                println!("{}\tcreated at {} (unix)\t{last}", a.name, a.created_at);
            }
        }),
        AdminCommand::Delete { name } => admin::delete(&store, &name)
            .map(|()| println!("deleted the admin {name:?}; its sessions ended")),
    };
    if let Err(e) = store.close() {
        eprintln!("warning: closing the database: {e}");
    }
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The new password of admin `name`: the first line of stdin with `--password-stdin`, else
/// typed twice on the terminal without being shown.
fn read_password(name: &str, from_stdin: bool) -> Result<String, AdminError> {
    let refuse = |why: String| AdminError::InvalidPassword(why);
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| refuse(format!("cannot read the password from stdin: {e}")))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(refuse(
            "stdin is not a terminal: pass --password-stdin to read the password from it"
                .to_owned(),
        ));
    }
    let read = |prompt: &str| {
        read_hidden_line(prompt).map_err(|e| refuse(format!("cannot read the password: {e}")))
    };
    let first = read(&format!("Password for the admin {name:?}: "))?;
    let again = read("The same password again: ")?;
    if first != again {
        return Err(refuse(
            "the two passwords differ; nothing was changed".to_owned(),
        ));
    }
    Ok(first)
}

/// Reads a line from the terminal with echo turned off, restoring the terminal after.
fn read_hidden_line(prompt: &str) -> std::io::Result<String> {
    eprint!("{prompt}");
    let fd = libc::STDIN_FILENO;
    // SAFETY: `termios` is plain data that tcgetattr fills in; it is used only if that worked.
    let mut term = unsafe { std::mem::zeroed::<libc::termios>() };
    // SAFETY: `fd` is stdin and `term` a valid termios buffer.
    let saved = (unsafe { libc::tcgetattr(fd, &mut term) } == 0).then_some(term);
    if let Some(original) = saved {
        let mut hidden = original;
        hidden.c_lflag &= !libc::ECHO;
        // SAFETY: as above; a failure only leaves echo on.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &hidden) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if let Some(original) = saved {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &original) };
    }
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Logs go to stderr; RUST_LOG, when set, wins over the config's `log.level`.
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
