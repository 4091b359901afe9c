//! The `roommanager` command: parses the command line, sets up logging and runs a subcommand.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use roommanager::config::{Config, Overrides};
use roommanager::media::nginx::MediaPaths;
use roommanager::media::rtmp;
use roommanager::site::Site;

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
