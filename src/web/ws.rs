//! `GET /ws`: one WebSocket per client, on the server's own transport (`server::websocket`), in
//! one task: it parses the client's messages and hands them to the room it is in, and drains the
//! client's bounded queue of outgoing frames (filled by the rooms, each frame complete and
//! shared), each batch with one vectored write. A write the client is slow to take never stops
//! the reading, nor a close. It pings every `rooms.ws_ping_secs` and closes a connection that
//! has sent nothing for `rooms.ws_idle_secs`; when it ends, the connection leaves its room once.
//! Each connection is in the app's connection registry for its lifetime, so the end of its
//! session (logout, expiry, the account's deletion) closes it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use tokio::time::{Instant, MissedTickBehavior};

use crate::accounts::{AccountsError, SignedIn};
use crate::app::App;
use crate::model::{BanScope, RoomId, UserKind};
use crate::rooms::connections::SESSION_ENDED;
use crate::rooms::protocol::{ClientMessage, Frame, ServerMessage};
use crate::rooms::{ClientId, ClientLink, FrameQueue, Member, RoomsError};
use crate::server::websocket::{self, Incoming, ReadError, Reader, WebSocketUpgrade, Writer};

use super::auth::{request_host, session_token, ClientIp};
use super::error::ApiError;
use super::ProxiedSlot;

/// At most this many queued frames go into one write.
const BATCH: usize = 256;

/// How long the close frame may take to leave.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

pub async fn ws(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    proxied: Option<Extension<ProxiedSlot>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let who = signed_socket(&app, &headers).await?;
    let rtmp_host: Arc<str> = app.site.rtmp_host(request_host(&headers)).into();
    let max_frame = app.config.rooms.max_frame_bytes;
    let tracked = app.clone();
    Ok(upgrade.on_upgrade(max_frame, move |reader, writer| {
        tracked.track(async move {
            connection(app, who, ip, rtmp_host, reader, writer).await;
            // A client behind a trusted proxy holds its place for as long as the socket.
            drop(proxied);
        })
    }))
}

/// A new connection's id, unique among every WebSocket of this run (rooms and publishing).
pub(super) fn new_client_id() -> ClientId {
    ClientId(NEXT_CLIENT.fetch_add(1, Ordering::Relaxed))
}

/// Who opens a WebSocket (`/ws`, `/ws/publish`): a page of this site (see [`same_origin`]) with
/// a session.
pub(super) async fn signed_socket(app: &App, headers: &HeaderMap) -> Result<SignedIn, ApiError> {
    if !same_origin(headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "WebSocket connections from other sites are refused",
        ));
    }
    let token = session_token(headers).ok_or(AccountsError::NotLoggedIn)?;
    Ok(app.accounts.authenticate(token).await?)
}

/// A browser's handshake names its page's origin; it must be this site. Programs send none.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

/// `rtmp_host` is the host for this client's push URLs: the name it reached the server by; `ip`
/// is the client's address, which IP bans are checked against.
async fn connection(
    app: Arc<App>,
    who: SignedIn,
    ip: IpAddr,
    rtmp_host: Arc<str>,
    mut reader: Reader,
    writer: Writer,
) {
    let client = new_client_id();
    let (link, frames) = ClientLink::new(app.config.rooms.client_queue);
    app.metrics.ws_opened();
    let ping = Duration::from_secs(app.config.rooms.ws_ping_secs);
    let mut outgoing = Outgoing::new(writer, frames, ping);
    // Everything moves into the session at once: what this task keeps between its waits is
    // every idle connection's memory.
    let mut session = Session {
        app: app.clone(),
        who,
        ip,
        client,
        link: link.clone(),
        rtmp_host,
        room: None,
    };
    let who = &session.who;
    let registration = app
        .sockets
        .register(client, who.user.id, who.session.clone(), link.clone());
    // The session was checked at the handshake; an end announced since then missed this
    // connection, which was not registered yet.
    match app.accounts.session_end(&who.session).await {
        Ok(Some(end)) => link.close_with(SESSION_ENDED, end.reason()),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot re-check a new connection's session"),
    }
    let written = session.serve(&mut reader, &mut outgoing).await;
    if let Some(room) = session.room.take() {
        // Boxed, like every rare path: the connection's state is as large as its largest wait.
        Box::pin(app.rooms.leave(room, client)).await;
    }
    link.close("bye");
    drop(registration);
    if written {
        let (code, reason) = link.close_frame().unwrap_or((1000, "bye"));
        // A client that reads nothing never takes the close frame either: give up after a while.
        let _ = tokio::time::timeout(CLOSE_WAIT, outgoing.socket.close(code, reason)).await;
    }
    app.metrics.ws_closed();
}

/// The sending side: the client's queue, and its socket with the batch being written.
struct Outgoing {
    socket: Writer,
    frames: FrameQueue,
    pings: tokio::time::Interval,
}

impl Outgoing {
    fn new(socket: Writer, frames: FrameQueue, ping: Duration) -> Self {
        let mut pings = tokio::time::interval_at(Instant::now() + ping, ping);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Outgoing {
            socket,
            frames,
            pings,
        }
    }

    /// Waits for batches and writes them, one after the other, until the socket fails. It may
    /// be given up at any point (for a message from the client, a close) and taken up again
    /// where it stopped. It does not end after a batch: the connection's `select!` stays the
    /// same across deliveries, so a lone danmaku costs one pass over its branches, not the pass
    /// that finishes a batch and another that sets the waits up again.
    async fn send(&mut self) -> std::io::Error {
        loop {
            if !self.socket.is_writing() {
                self.next().await;
            }
            if let Err(e) = self.socket.flush().await {
                return e;
            }
        }
    }

    /// Waits for frames or the time of a ping and hands them to the socket. The batch lives
    /// only while it is written: an idle connection keeps none.
    async fn next(&mut self) {
        tokio::select! {
            biased;
            _ = self.pings.tick() => self.socket.queue_ping(),
            batch = self.frames.next_batch(BATCH) => {
                // The same allocation: a frame is its bytes.
                self.socket.queue(batch.into_iter().map(|frame| frame.0).collect());
            }
        }
    }
}

/// One connection's view: who it is and which room it is in.
struct Session {
    app: Arc<App>,
    who: SignedIn,
    ip: IpAddr,
    client: ClientId,
    link: ClientLink,
    rtmp_host: Arc<str>,
    room: Option<RoomId>,
}

impl Session {
    /// Reads the client's messages and writes what the rooms queue for it until the connection
    /// ends; `false` when the socket failed to take a write (then no close frame can follow).
    /// A client that sends nothing at all, not even the pong to the pings, for
    /// `rooms.ws_idle_secs` is gone (its machine is off, its network dropped, or it holds the
    /// socket on purpose): it is closed with `ping_timeout`.
    async fn serve(&mut self, socket: &mut Reader, out: &mut Outgoing) -> bool {
        let idle = Duration::from_secs(self.app.config.rooms.ws_idle_secs);
        let mut heard = Instant::now();
        // One timer, moved on only when it fires: a message costs no timer update.
        let silence = tokio::time::sleep_until(heard + idle);
        tokio::pin!(silence);
        let guest = self.who.user.kind == UserKind::Guest;
        let mut ip_bans = self.app.ip_bans.subscribe();
        // Made once, not at every wake-up: each registers with a shared waiter list.
        let (link, app) = (self.link.clone(), self.app.clone());
        let closing = link.closing();
        tokio::pin!(closing);
        let stopping = app.stopping();
        tokio::pin!(stopping);
        loop {
            let message = tokio::select! {
                biased;
                () = closing.as_mut() => return true,
                _ = out.send() => {
                    self.link.close("write_failed");
                    return false;
                }
                Ok(()) = ip_bans.changed(), if guest => {
                    Box::pin(self.leave_if_ip_banned()).await;
                    continue;
                }
                () = stopping.as_mut() => {
                    self.link.close("server_shutdown");
                    return true;
                }
                () = silence.as_mut() => {
                    if heard.elapsed() >= idle {
                        self.app.metrics.connection_dropped("ping_timeout");
                        self.link.close("ping_timeout");
                        return true;
                    }
                    silence.as_mut().reset(heard + idle);
                    continue;
                }
                message = socket.next() => message,
            };
            heard = Instant::now();
            match message {
                Ok(Incoming::Text(text)) => {
                    self.app.metrics.ws_received();
                    match ClientMessage::parse(&text) {
                        // Boxed: the futures of the rare messages (a join, going live) would
                        // otherwise make every idle connection's state as large as theirs.
                        Ok(message) => Box::pin(self.dispatch(message)).await,
                        Err(bad) => self.reply(&ServerMessage::error(bad.code, bad.message, None)),
                    }
                }
                Ok(Incoming::Binary) => self.reply(&ServerMessage::error(
                    "bad_message",
                    "messages are JSON text frames",
                    None,
                )),
                Ok(Incoming::Ping(payload)) => {
                    if !self.link.send(Frame(websocket::pong(&payload))) {
                        self.link.close("too_slow");
                    }
                }
                Ok(Incoming::Pong) => {}
                Ok(Incoming::Close(code)) => {
                    // The reply echoes the client's code (RFC 6455 §5.5.1).
                    self.link.close_with(code.unwrap_or(1000), "bye");
                    return true;
                }
                Err(ReadError::Violation(v)) => {
                    self.link.close_with(v.code, v.reason);
                    return true;
                }
                Err(ReadError::Gone) => return true,
            }
        }
    }

    fn reply(&self, message: &ServerMessage) {
        if !self.link.send(message.frame()) {
            self.link.close("too_slow");
        }
    }

    fn refuse(&self, code: &str, message: impl Into<String>, about: &str) {
        self.reply(&ServerMessage::error(code, message, Some(about)));
    }

    fn refuse_rooms(&self, e: RoomsError, about: &str) {
        match e {
            RoomsError::NoSuchRoom => self.refuse("room_not_found", "there is no such room", about),
            RoomsError::ShuttingDown => {
                self.refuse("server_shutdown", "the server is shutting down", about)
            }
            // The others answer admin actions and publishing, never a client's room message.
            e @ (RoomsError::Store(_)
            | RoomsError::RoomNotOpen
            | RoomsError::NoSuchUser
            | RoomsError::NotBanned
            | RoomsError::NotLive
            | RoomsError::NoSuchDanmaku
            | RoomsError::LedgerFailed
            | RoomsError::NotPublisher) => {
                tracing::error!(error = %e, "unexpected failure in a room command");
                self.refuse("internal", "something went wrong on the server", about)
            }
        }
    }

    async fn dispatch(&mut self, message: ClientMessage) {
        let about = message.kind();
        match message {
            ClientMessage::Ping { id } => self.reply(&ServerMessage::Pong { id }),
            ClientMessage::JoinRoom { room_id } => {
                self.join(RoomId(room_id), about).await;
            }
            ClientMessage::LeaveRoom => {
                if let Some(room) = self.room.take() {
                    self.app.rooms.leave(room, self.client).await;
                }
            }
            ClientMessage::StartLive { .. } => self.start_live(message, about).await,
            ClientMessage::UpdateRoom {
                ref name,
                ref description,
                layout,
            } => {
                if name.is_some() || description.is_some() {
                    let update = self
                        .app
                        .accounts
                        .update_my_room(&self.who, name.as_deref(), description.as_deref())
                        .await;
                    match update {
                        Ok(room) => self.app.rooms.room_updated(room).await,
                        Err(e) => {
                            let error = ApiError::from(e);
                            return self.refuse(error.code, error.message, about);
                        }
                    }
                }
                if layout.is_some() {
                    self.forward(message, about).await;
                }
            }
            other => self.forward(other, about).await,
        }
    }

    async fn forward(&mut self, message: ClientMessage, about: &str) {
        let Some(room) = self.room else {
            return self.refuse("not_in_room", "join a room first", about);
        };
        if let Err(e) = self
            .app
            .rooms
            .act(room, self.client, &self.link, message)
            .await
        {
            self.refuse_rooms(e, about);
        }
    }

    /// Joins `room`; `false` (after telling the client why) if that failed.
    async fn join(&mut self, room: RoomId, about: &'static str) -> bool {
        if let Some(current) = self.room.take() {
            self.app.rooms.leave(current, self.client).await;
        }
        if let Err(e) = self.ip_allowed() {
            self.refuse(e.code, e.message, about);
            return false;
        }
        let member = Member::new(
            self.client,
            self.who.user.id,
            self.who.user.nickname.clone(),
            self.who.user.kind,
            self.link.clone(),
            self.rtmp_host.clone(),
        );
        match self.app.rooms.join(room, member, about).await {
            Ok(()) => {
                self.room = Some(room);
                true
            }
            Err(e) => {
                self.refuse_rooms(e, about);
                false
            }
        }
    }

    /// A guest's address may be banned (registered users are banned by account instead).
    fn ip_allowed(&self) -> Result<(), ApiError> {
        if self.who.user.kind != UserKind::Guest {
            return Ok(());
        }
        Ok(self.app.ip_bans.check(self.ip)?)
    }

    /// After a new IP ban: a guest in a room whose address it covers leaves the room and is
    /// told why (the connection stays, as after `room_closed`; a new join is refused).
    async fn leave_if_ip_banned(&mut self) {
        let Some(room) = self.room else { return };
        if let Err(e) = self.ip_allowed() {
            self.room = None;
            self.app.rooms.leave(room, self.client).await;
            self.refuse(e.code, e.message, "join_room");
        }
    }

    /// Going live: only a registered host without a stream ban, in their own room.
    async fn start_live(&mut self, message: ClientMessage, about: &'static str) {
        let user = &self.who.user;
        if user.kind == UserKind::Guest {
            return self.refuse("registered_only", "register to go live", about);
        }
        let Some(own) = user.room_id else {
            return self.refuse("no_room", "verify your email to get a room", about);
        };
        match self.app.rooms.ban(user.id, BanScope::Stream).await {
            Ok(Some(ban)) => return self.reply(&ServerMessage::banned(&ban)),
            Ok(None) => {}
            Err(e) => return self.refuse_rooms(e, about),
        }
        // Join (again): the host may be elsewhere, or in a room task that has since closed.
        if self.join(own, about).await {
            self.forward(message, about).await;
        }
    }
}
