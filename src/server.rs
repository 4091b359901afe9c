//! Server: runs RoomManager from a validated config until a shutdown signal, then stops in order.
//! Accepts connections, applies the per-IP connection cap, and serves each connection with the
//! header and keep-alive deadlines (`connection.rs`).
//!
//! Order of shutdown: stop accepting connections; let in-flight requests finish within
//! `server.shutdown_grace_secs`; then close the app (and with it the store).
//! Calls: app, web, config, connections.

mod connection;
pub mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use connection::{Answer, Deadlines, Stop};

use crate::app::{App, AppError};
use crate::config::Config;
use crate::web;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("cannot listen on {addr}: {source} (is another server using that port? choose another with --listen)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server stopped with an error: {0}")]
    Serve(std::io::Error),
}

/// Opens the app, listens on the configured address and serves until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let addr = config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(ServerError::Serve)?;
    let app = App::open(config, local)?;
    let stop = shutdown_signal().map_err(ServerError::Serve)?;
    tracing::info!("listening on http://{local}");
    // Like Jupyter or Owncast: every address someone on the network can open, and where OBS
    // pushes, so nobody has to look up this machine's address.
    for url in app.site.reachable_urls() {
        tracing::info!("open RoomManager at {url}");
    }
    if app.rtmp.is_some() {
        for url in app.site.reachable_rtmp() {
            tracing::info!("OBS and ffmpeg push to {url}");
        }
    }
    announce_setup_link(&app).await;
    let served = serve(listener, app.clone(), stop).await;
    app.close().await;
    served.map_err(ServerError::Serve)
}

/// While no admin exists, logs a fresh one-time link that creates the first one in the browser
/// (like Jupyter's token): whoever can read this log runs the machine. Every earlier link stops
/// working.
async fn announce_setup_link(app: &App) {
    match app.admins.issue_setup_token().await {
        Ok(Some(token)) => {
            let minutes = app.config.admin.setup_link_secs / 60;
            for url in app.site.reachable_urls() {
                tracing::warn!(
                    "no admin yet: create the first one within {minutes} minutes at \
                     {url}/admin/setup?token={token} (or run `roommanager admin create NAME`)"
                );
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "cannot make the first-run setup link"),
    }
}

/// Serves `app` on an already bound listener until `shutdown` completes, then waits for
/// in-flight requests at most the configured grace period. Tests call this with their own
/// listener and shutdown future.
///
/// Each connection is served by [`connection::serve`] with the header and keep-alive deadlines.
/// A client address over `server.max_connections_per_ip` has its new connection answered 429
/// and closed; trusted proxies are not counted here (the web layer counts the clients they
/// forward).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(app.config.server.shutdown_grace_secs);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let closing = app.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: closing the rooms");
        closing.close_rooms().await;
        let _ = stop_tx.send(true);
    });
    let router = web::router(app.clone());
    let deadlines = Deadlines::new(&app.config.server);
    let stop = Stop {
        graceful: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // An error means the sender is gone, which only happens after it sent `true`.
            _ = stop_rx.wait_for(|stop| *stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                wait_after_accept_error(e).await;
                continue;
            }
        };
        // Danmaku are small frames that should leave at once, not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        // A dual-stack listener shows IPv4 clients as ::ffff:a.b.c.d; they are IPv4 clients.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let (slot, answer) = if app.config.server.is_trusted_proxy(peer.ip()) {
            (None, Answer::Serve(router.clone()))
        } else {
            match app.connections.try_open(peer.ip()) {
                Some(slot) => (Some(slot), Answer::Serve(router.clone())),
                None => {
                    app.metrics.connection_dropped("per_ip_cap");
                    (None, Answer::Refuse)
                }
            }
        };
        connections.spawn(connection::serve(
            app.clone(),
            tcp,
            peer,
            slot,
            answer,
            deadlines,
            stop.clone(),
        ));
    }
    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections"
    );
    stop.graceful.cancel();
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over: closing the remaining connections");
        stop.force.cancel();
    }
    Ok(())
}

/// After a failed `accept`: a connection that was reset before it was taken is nothing to wait
/// for; anything else (most likely no file descriptors left) waits a moment for some to close
/// instead of spinning.
async fn wait_after_accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "cannot accept a connection; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed here, before the server
/// says it is listening, so a signal sent right after start stops it gracefully too.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
        }
    })
}
