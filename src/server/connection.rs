//! One accepted TCP connection, served with hyper's HTTP/1 and RoomManager's deadlines:
//! - a request head (request line and headers) must be complete within
//!   `server.header_timeout_secs` of the connection opening, or of the first byte of the next
//!   request on a kept-alive connection; a client that says nothing or dribbles its headers
//!   ("slowloris") is dropped;
//! - a kept-alive connection with no next request for `server.keepalive_idle_secs` is closed.
//!
//! These are the deadlines of Go's `ReadHeaderTimeout` and `IdleTimeout`. hyper's own
//! `header_read_timeout` cannot express them: it runs one timer from the end of a response to
//! the end of the next head, so the idle time and the header time would be one setting.
//!
//! A connection over the per-IP cap is served too, so that its client reads why: every request
//! on it is answered 429 `too_many_connections`, and it closes after the first answer.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::app::App;
use crate::config::ServerConfig;
use crate::connections::Slot;
use crate::web;

/// How long a request head may take, and how long a kept-alive connection may wait for one.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub header: Duration,
    pub idle: Duration,
}

impl Deadlines {
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            header: Duration::from_secs(config.header_timeout_secs),
            idle: Duration::from_secs(config.keepalive_idle_secs),
        }
    }
}

/// What the server does with the connection's requests.
pub enum Answer {
    Serve(Router),
    /// Over the per-IP cap: answer 429 and close.
    Refuse,
}

/// The stop signals of the server: `graceful` asks connections to finish their request and
/// close; `force` (at the end of the grace period) drops them.
#[derive(Clone)]
pub struct Stop {
    pub graceful: CancellationToken,
    pub force: CancellationToken,
}

/// Serves one connection until it ends, runs out of time, is upgraded to a WebSocket (the
/// socket then lives on in the WebSocket's task) or is dropped by shutdown.
pub async fn serve(
    app: Arc<App>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Option<Slot>,
    answer: Answer,
    deadlines: Deadlines,
    stop: Stop,
) {
    let activity = Arc::new(Activity::new());
    let refuse = matches!(answer, Answer::Refuse);
    let io = Io::new(tcp, activity.clone(), slot, app.clone());
    let service = {
        let activity = activity.clone();
        let app = app.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let busy = Busy::start(&activity);
            req.extensions_mut().insert(ConnectInfo(peer));
            let answered = match &answer {
                // A Router is always ready: no poll_ready is needed before calling it.
                Answer::Serve(router) => Ok(router.clone().call(req)),
                Answer::Refuse => Err(web::too_many_connections(&app, req.uri(), req.headers())),
            };
            async move {
                let response = match answered {
                    Ok(routed) => routed.await.unwrap_or_else(|never| match never {}),
                    Err(refused) => refused,
                };
                Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
            }
        })
    };
    let mut builder = http1::Builder::new();
    // Without a timer hyper has no header timeout of its own; the deadlines below replace it.
    builder.header_read_timeout(None).keep_alive(!refuse);
    let mut conn = pin!(builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades());
    let mut finishing = false;
    loop {
        let due = activity.due(&deadlines);
        if let Some((at, reason)) = due {
            if at <= Instant::now() {
                tracing::debug!(%peer, reason, "closing the connection");
                app.metrics.connection_dropped(reason);
                return;
            }
        }
        // While a request is being answered there is no deadline; look again later.
        let wake = due.map_or_else(
            || Instant::now() + deadlines.header.min(deadlines.idle),
            |(at, _)| at,
        );
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {}
            () = stop.graceful.cancelled(), if !finishing => {
                finishing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = stop.force.cancelled() => return,
        }
    }
}

/// Where the connection is between requests, for its deadlines.
struct Activity {
    /// A std mutex: held for a few instructions, never across an `.await`.
    state: Mutex<State>,
}

struct State {
    /// Requests being answered (their responses not yet sent in full).
    busy: usize,
    /// Since when the connection has been waiting: for a head (`head_started`) or, kept alive,
    /// for the first byte of the next request.
    since: Instant,
    head_started: bool,
}

impl Activity {
    /// A new connection waits for its first request head from now on.
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                busy: 0,
                since: Instant::now(),
                head_started: true,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes came in: on an idle kept-alive connection, the next request head has begun.
    fn bytes_arrived(&self) {
        let mut state = self.state();
        if state.busy == 0 && !state.head_started {
            state.head_started = true;
            state.since = Instant::now();
        }
    }

    /// When the connection runs out of time and which deadline that is; `None` while a request
    /// is being answered.
    fn due(&self, deadlines: &Deadlines) -> Option<(Instant, &'static str)> {
        let state = self.state();
        if state.busy > 0 {
            None
        } else if state.head_started {
            Some((state.since + deadlines.header, "header_timeout"))
        } else {
            Some((state.since + deadlines.idle, "keepalive_idle"))
        }
    }
}

/// A request being answered, from its complete head until its response has been sent (or
/// dropped).
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.state().busy += 1;
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.busy -= 1;
        if state.busy == 0 {
            state.head_started = false;
            state.since = Instant::now();
        }
    }
}

/// A response body that keeps its request [`Busy`] until hyper has sent it and drops it.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket: notes arriving bytes for the deadlines, and for as long as it lives (after a
/// WebSocket upgrade too) holds the connection's place in the per-IP count and in the gauge of
/// open connections.
struct Io {
    tcp: TcpStream,
    activity: Arc<Activity>,
    _slot: Option<Slot>,
    app: Arc<App>,
}

impl Io {
    fn new(tcp: TcpStream, activity: Arc<Activity>, slot: Option<Slot>, app: Arc<App>) -> Self {
        app.metrics.connection_opened();
        Self {
            tcp,
            activity,
            _slot: slot,
            app,
        }
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        self.app.metrics.connection_closed();
    }
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        read
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
