//! `fanout --serve`: the real RoomManager (the `roommanager` library's app, router and server,
//! as `roommanager serve` runs them) with the scripted in-process media plane, because the
//! binary's own media plane refuses `start_live` until a real backend exists. The load
//! generator starts this mode as a child process pinned to its own core.
//!
//! Settings: the config file given (or ./roommanager.toml, or the defaults, as the binary), then
//! what the benchmark needs: the listen address and data dir, chat and sign-up limits out of the
//! way (one publisher sends thousands of danmaku a second), no per-IP connection cap (every
//! viewer is on 127.0.0.1), viewers that never answer pings kept, and `rooms.client_queue` if
//! given.
//! It prints `listening on http://ADDR` on stdout when ready and shuts down gracefully when its
//! standard input closes (the load generator ended) or on SIGTERM/SIGINT.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use roommanager::app::App;
use roommanager::config::{Config, Overrides};
use roommanager::media::scripted::ScriptedMedia;

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub client_queue: Option<usize>,
}

pub fn main(options: ServeOptions) -> ExitCode {
    let overrides = Overrides {
        listen: Some(options.listen),
        data_dir: Some(options.data_dir.clone()),
    };
    let mut config = match Config::load(options.config.as_deref(), &overrides) {
        Ok((config, _)) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    // Same runtime as `roommanager serve`: one worker per CPU it may use (one, under taskset).
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    bench_settings(&mut config, options.client_queue);
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench_settings(config: &mut Config, client_queue: Option<usize>) {
    let limits = &mut config.limits;
    limits.register_per_ip = 1_000_000;
    limits.login_per_ip = 1_000_000;
    limits.email_per_address = 1_000_000;
    // Every viewer is a guest made from 127.0.0.1.
    limits.guest_per_ip = 1_000_000;
    config.email.retry_min_secs = 1;
    config.email.retry_max_secs = 2;
    config.rooms.chat_per_window = u32::MAX;
    config.rooms.chat_window_secs = 1;
    config.rooms.record_delay_secs = 0;
    // Every viewer connects from 127.0.0.1: the per-IP connection cap would refuse all but 64.
    config.server.max_connections_per_ip = 0;
    // The viewers read and never write, so they never answer the server's pings; a sweep keeps
    // them connected for minutes. The pings are still sent (and ignored by the viewers).
    config.rooms.ws_idle_secs = 3600;
    if let Some(queue) = client_queue {
        config.rooms.client_queue = queue;
    }
}

async fn serve(mut config: Config) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    config.server.listen = addr;
    config.validate().map_err(|e| e.to_string())?;
    tracing::info!(
        client_queue = config.rooms.client_queue,
        data_dir = %config.storage.data_dir.display(),
        "fan-out bench server with the scripted media plane"
    );
    let app = App::open_with_media(config, addr, Arc::new(ScriptedMedia::default()))
        .map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    let served = roommanager::server::serve(listener, app.clone(), stop_signal()).await;
    app.close().await;
    served.map_err(|e| e.to_string())
}

/// Completes when standard input ends (the parent closed it or died), or on SIGTERM/SIGINT.
pub async fn stop_signal() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() {
                break;
            }
        }
        let _ = tx.send(());
    });
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = rx => tracing::info!("standard input closed: stopping"),
        () = term => tracing::info!("received SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
    }
}
