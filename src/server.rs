//! Server: runs RoomManager from a validated config until a shutdown signal, then stops in order.
//!
//! Order of shutdown: stop accepting connections; let in-flight requests finish within
//! `server.shutdown_grace_secs`; then close the app (and with it the store).
//! Calls: app, web.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

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
    let served = serve(listener, app.clone(), stop).await;
    app.close().await;
    served.map_err(ServerError::Serve)
}

/// Serves `app` on an already bound listener until `shutdown` completes, then waits for
/// in-flight requests at most the configured grace period. Tests call this with their own
/// listener and shutdown future.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(app.config.server.shutdown_grace_secs);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let closing = app.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: closing the rooms");
        closing.close_rooms().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the sender is gone, which only happens after it sent `true`.
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let make_service = web::router(app).into_make_service_with_connect_info::<SocketAddr>();
    // Danmaku are small frames that should leave at once, not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, make_service)
        .with_graceful_shutdown(stopped(stop_rx.clone()))
        .into_future();
    let deadline = async {
        stopped(stop_rx).await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: no new connections"
        );
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("shutdown grace period over: closing the remaining connections");
            Ok(())
        }
    }
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
