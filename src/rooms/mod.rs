//! Rooms: every open live room is an actor — one tokio task that owns all of the room's state —
//! and [`Rooms`] is the registry that finds or starts them.
//!
//! Owns: the registry (room id → [`RoomHandle`]), the room actors (`actor.rs`), the WebSocket
//! protocol's messages (`protocol.rs`), the directory of live rooms, the chat ledger writer,
//! bans applied to running rooms, and the registry of open connections (`connections.rs`).
//! Calls: store (rooms' records, bans, live sessions, ledgers), media (the media plane trait).
//! The outside talks to a room only through its handle's command channel; replies go back on a
//! oneshot or, for a client, into that client's bounded outgoing queue.

mod actor;
mod coalesce;
pub mod connections;
pub mod protocol;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{GiftConfig, RoomsConfig};
use crate::gzip::{gzip, Compression};
use crate::media::{LiveId, MediaPlane};
use crate::model::{
    AuditEntry, Ban, BanScope, LiveSession, LiveSessionId, Room, RoomId, UserId, UserKind,
};
use crate::store::{unix_now, ChatEntry, Store, StoreError};
use protocol::{ClientMessage, Frame, RoomPhase};

/// Commands waiting for a room task; beyond this, senders wait (back-pressure on clients).
const COMMAND_QUEUE: usize = 1024;
/// Tries at handing a command to a room: one that ended meanwhile is followed by one opened
/// again, which takes it unless a concurrent opener's room ended too.
const DELIVERY_ATTEMPTS: usize = 4;
/// How long shutdown waits for the rooms to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// How long shutdown waits, after that, for the recordings still being fetched; the rest are
/// fetched at the next start.
const RECORDINGS_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RoomsError {
    #[error("there is no such room")]
    NoSuchRoom,
    #[error("the room is not open")]
    RoomNotOpen,
    #[error("there is no such user")]
    NoSuchUser,
    #[error("the user has no ban of that kind in force")]
    NotBanned,
    #[error("the room is not live")]
    NotLive,
    #[error("there is no such danmaku in the room's live session (or it was deleted already)")]
    NoSuchDanmaku,
    #[error("the chat ledger could not be written; see the server's log")]
    LedgerFailed,
    #[error("only the room's live host, or its co-stream guest while on stage, may publish to it")]
    NotPublisher,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One WebSocket connection, as the rooms know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId(pub u64);

/// The way to a client: its bounded queue of outgoing frames and a way to close it. One
/// allocation per connection, and a queue that holds memory only while frames wait in it.
#[derive(Clone)]
pub struct ClientLink(Arc<Link>);

struct Link {
    /// A std mutex: held to push or take frames, never across an `.await`.
    frames: Mutex<VecDeque<Frame>>,
    capacity: usize,
    /// Wakes the writer (the one receiver) when frames arrive.
    queued: Notify,
    /// Wakes whoever waits in [`ClientLink::closing`].
    closed: Notify,
    /// The close frame's code and reason; the first close wins.
    reason: OnceLock<(u16, String)>,
}

/// What became of a frame handed to [`ClientLink::queue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// First in an empty queue: the client had taken every frame before it.
    CaughtUp,
    /// Behind frames the client has not taken yet.
    Behind,
    /// Not queued: the queue is full or the client is closing.
    Refused,
}

/// The receiving end of a [`ClientLink`]: the connection's writer.
pub struct FrameQueue(Arc<Link>);

impl ClientLink {
    /// A link with room for `capacity` frames; the queue is the connection's writer.
    pub fn new(capacity: usize) -> (ClientLink, FrameQueue) {
        let link = Arc::new(Link {
            frames: Mutex::new(VecDeque::new()),
            capacity,
            queued: Notify::new(),
            closed: Notify::new(),
            reason: OnceLock::new(),
        });
        (ClientLink(link.clone()), FrameQueue(link))
    }

    /// Queues a frame. `false` when the client's queue is full or the client is closing: the
    /// caller drops the client rather than wait for it.
    pub fn send(&self, frame: Frame) -> bool {
        self.queue(frame) != Queued::Refused
    }

    /// Queues a frame and says whether the client had taken everything before it.
    pub fn queue(&self, frame: Frame) -> Queued {
        if self.0.reason.get().is_some() {
            return Queued::Refused;
        }
        let was_empty = {
            let mut frames = self.0.frames();
            if frames.len() >= self.0.capacity {
                return Queued::Refused;
            }
            frames.push_back(frame);
            frames.len() == 1
        };
        // The writer takes everything queued before it waits again, so only the first frame
        // of a wait needs to wake it.
        if was_empty {
            self.0.queued.notify_one();
            Queued::CaughtUp
        } else {
            Queued::Behind
        }
    }

    /// Asks the connection to close, telling the client why: code 1008 for a client that
    /// cannot keep up (`too_slow`), 1000 otherwise.
    pub fn close(&self, reason: &str) {
        // Policy violations (a client too slow to read, or silent past its pings) are 1008.
        let code = if matches!(reason, "too_slow" | "ping_timeout") {
            1008
        } else {
            1000
        };
        self.close_with(code, reason);
    }

    /// Asks the connection to close with this close code and reason.
    pub fn close_with(&self, code: u16, reason: &str) {
        let _ = self.0.reason.set((code, reason.to_owned()));
        self.0.closed.notify_waiters();
    }

    /// Completes when someone asked this connection to close.
    pub async fn closing(&self) {
        let closed = self.0.closed.notified();
        tokio::pin!(closed);
        // Registered before the check, so a close between the two is not missed.
        closed.as_mut().enable();
        if self.0.reason.get().is_none() {
            closed.await;
        }
    }

    /// The close frame's code and reason, once someone asked for the close.
    pub fn close_frame(&self) -> Option<(u16, &str)> {
        self.0
            .reason
            .get()
            .map(|(code, reason)| (*code, reason.as_str()))
    }
}

impl Link {
    fn frames(&self) -> std::sync::MutexGuard<'_, VecDeque<Frame>> {
        self.frames.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl FrameQueue {
    /// Waits for frames and takes up to `max` of them, oldest first.
    pub async fn next_batch(&self, max: usize) -> Vec<Frame> {
        loop {
            {
                let mut frames = self.0.frames();
                if !frames.is_empty() {
                    let n = frames.len().min(max);
                    let batch = frames.drain(..n).collect();
                    if frames.is_empty() && frames.capacity() > SPARE_QUEUE {
                        // A burst grew the queue: an idle client keeps no more than a few slots.
                        *frames = VecDeque::new();
                    }
                    return batch;
                }
            }
            // `notify_one` leaves a permit when the writer is not waiting yet: no frame is
            // missed between the look above and this wait.
            self.0.queued.notified().await;
        }
    }
}

/// Slots an emptied queue may keep.
const SPARE_QUEUE: usize = 16;

/// A connected client as a room sees it.
#[derive(Clone)]
pub struct Member {
    pub client: ClientId,
    pub user: UserId,
    pub nickname: String,
    pub kind: UserKind,
    /// The user's chat ban: read at the join, replaced when a ban is given while the member is
    /// in the room (rooms re-check its expiry on use).
    chat_ban: Option<Ban>,
    pub link: ClientLink,
    /// The host for this member's push URLs (the name its connection reached the server by).
    pub rtmp_host: Arc<str>,
}

impl Member {
    pub fn new(
        client: ClientId,
        user: UserId,
        nickname: String,
        kind: UserKind,
        link: ClientLink,
        rtmp_host: Arc<str>,
    ) -> Member {
        Member {
            client,
            user,
            nickname,
            kind,
            chat_ban: None,
            link,
            rtmp_host,
        }
    }
}

/// The open rooms' summaries, and the listing of the live ones built from them, kept until a
/// summary changes: with hundreds of rooms live, building the listing per request cost more than
/// everything else a `GET /api/v1/rooms` does.
#[derive(Default)]
struct Directory {
    rooms: HashMap<RoomId, RoomSummary>,
    /// Counts the changes to `rooms`.
    changes: u64,
    /// The listing and the `changes` it was built at.
    listing: Option<(u64, Arc<LiveListing>)>,
}

impl Directory {
    fn put(&mut self, summary: RoomSummary) {
        self.changes += 1;
        self.rooms.insert(RoomId(summary.room_id), summary);
    }

    fn remove(&mut self, room: RoomId) {
        if self.rooms.remove(&room).is_some() {
            self.changes += 1;
        }
    }

    /// The rooms that are live now, most watched first.
    fn live(&self) -> Vec<&RoomSummary> {
        let mut rooms: Vec<&RoomSummary> = self
            .rooms
            .values()
            .filter(|r| matches!(r.state, RoomPhase::Live | RoomPhase::CoStreaming))
            .collect();
        rooms.sort_by(|a, b| b.audience.cmp(&a.audience).then(a.room_id.cmp(&b.room_id)));
        rooms
    }
}

/// The rooms live now as `GET /api/v1/rooms` sends them: `{"rooms": […]}`, and the same gzipped
/// for clients that take it (a tenth of the bytes). One listing stands for one state of the
/// directory: it is replaced, never changed, so a page built from `rooms` may be kept for as long
/// as [`Rooms::live_listing`] hands out this same `Arc`.
pub struct LiveListing {
    /// The summaries the answers were made of, most watched first.
    pub rooms: Vec<RoomSummary>,
    pub json: bytes::Bytes,
    pub gzip: bytes::Bytes,
}

impl LiveListing {
    fn of(rooms: Vec<RoomSummary>) -> LiveListing {
        #[derive(serde::Serialize)]
        struct Listing<'a> {
            rooms: &'a [RoomSummary],
        }
        let json = serde_json::to_vec(&Listing { rooms: &rooms })
            .expect("a summary is strings and numbers, which always serialize");
        let gzip = gzip(&json, Compression::fast());
        LiveListing {
            rooms,
            json: json.into(),
            gzip: gzip.into(),
        }
    }
}

/// A live room as the directory lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomSummary {
    pub room_id: u64,
    pub name: String,
    pub description: String,
    pub host: protocol::Person,
    pub title: Option<String>,
    pub cover_url: Option<String>,
    pub state: RoomPhase,
    pub audience: usize,
    pub started_at: Option<u64>,
}

/// A stream of a live room that one of its people may push to: the host's, or the co-stream
/// guest's while on stage.
#[derive(Debug, Clone)]
pub struct PublishTarget {
    /// `host` or `guest`.
    pub stream: &'static str,
    pub live_id: LiveId,
    /// As the media plane handed it out (its host may be left open: `media::complete_push_url`).
    pub push_url: String,
}

enum Command {
    /// A client enters; the `&str` is the message that asked for it (for a refusal's `about`).
    Join(Member, &'static str),
    Leave(ClientId),
    /// A room message from a client; the link lets the room answer one that is not a member
    /// (for instance after the room it was in closed).
    Act(ClientId, ClientLink, ClientMessage),
    RoomUpdated(Room),
    /// The media plane saw a stream of this room start or stop being pushed.
    StreamState {
        live_id: String,
        on_air: bool,
    },
    /// A ban was given to a user: it applies at once to their members and, for a stream ban
    /// of the host, to the live session.
    Banned(UserId, Ban),
    /// A user's bans of this scope were lifted: members get `unbanned` and may act again.
    Unbanned(UserId, BanScope),
    /// An admin closes the room; members are told the reason.
    Close(String),
    /// An admin deletes a danmaku of the live session; the reply, when the room found it,
    /// completes once the ledger dropped it and stored the audit entry.
    DeleteDanmaku {
        id: u64,
        audit: AuditEntry,
        reply: oneshot::Sender<Result<oneshot::Receiver<()>, RoomsError>>,
    },
    /// Where `UserId` may push a picture into this room right now, if anywhere.
    PublishTarget(UserId, oneshot::Sender<Option<PublishTarget>>),
    Shutdown(oneshot::Sender<()>),
}

/// A command on its way to a room, with a way to learn that the room took it.
struct Envelope {
    command: Command,
    taken: Option<oneshot::Sender<()>>,
}

/// The cheap, cloneable way to talk to one room's task.
#[derive(Clone)]
pub struct RoomHandle {
    commands: mpsc::Sender<Envelope>,
}

impl RoomHandle {
    /// Sends without waiting for the room to take it: for news a room that ends meanwhile
    /// does not need.
    async fn send(&self, command: Command) -> bool {
        let envelope = Envelope {
            command,
            taken: None,
        };
        self.commands.send(envelope).await.is_ok()
    }

    /// Sends and waits until the room took the command; `false` when the room ended first
    /// (then it never will).
    async fn deliver(&self, command: Command) -> bool {
        let (taken, took) = oneshot::channel();
        let envelope = Envelope {
            command,
            taken: Some(taken),
        };
        self.commands.send(envelope).await.is_ok() && took.await.is_ok()
    }
}

/// Everything a room task needs besides its own state.
struct Shared {
    store: Store,
    media: Arc<dyn MediaPlane>,
    config: RoomsConfig,
    gifts: Vec<GiftConfig>,
    chat: mpsc::UnboundedSender<LedgerLine>,
    /// std mutexes: each held only for a map update, never across an `.await`.
    registry: Mutex<HashMap<RoomId, (u64, RoomHandle)>>,
    directory: Mutex<Directory>,
    /// Counts the bans given and lifted; a join that sees it change re-checks its member's
    /// chat ban.
    bans_given: AtomicU64,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// The ends of live sessions: each stop part, then its recording.
    finishing: TaskTracker,
    /// Cancelled when shutdown stops waiting for recordings.
    abandon_recordings: CancellationToken,
    /// Per room, the live session whose stop part is running and the token its end cancels.
    /// A std mutex: held only for a map update, never across an `.await`.
    stops: Mutex<HashMap<RoomId, (LiveSessionId, CancellationToken)>>,
}

/// A line on its way to the chat ledger's writer, and who waits for it to be stored.
struct LedgerLine {
    entry: ChatEntry,
    stored: Option<oneshot::Sender<()>>,
}

impl Shared {
    /// Hands `entry` to the ledger's writer; `stored` (if any) hears when it is in the store.
    fn ledger(&self, entry: ChatEntry, stored: Option<oneshot::Sender<()>>) {
        // The writer runs until the app's shutdown, after every room closed.
        let _ = self.chat.send(LedgerLine { entry, stored });
    }

    /// Registers the stop part of `session` in `room`; returns the token its end cancels.
    fn stopping(&self, room: RoomId, session: LiveSessionId) -> CancellationToken {
        let done = CancellationToken::new();
        self.stops_map().insert(room, (session, done.clone()));
        done
    }

    /// The stop part of `session` is done.
    fn stopped(&self, room: RoomId, session: LiveSessionId) {
        let mut stops = self.stops_map();
        if stops.get(&room).is_some_and(|(s, _)| *s == session) {
            stops.remove(&room);
        }
    }

    /// The stop part still running in `room`, if any: a new start waits for it.
    fn previous_stop(&self, room: RoomId) -> Option<CancellationToken> {
        self.stops_map().get(&room).map(|(_, done)| done.clone())
    }

    fn stops_map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<RoomId, (LiveSessionId, CancellationToken)>> {
        self.stops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Rooms {
    shared: Arc<Shared>,
    next_task: AtomicU64,
}

impl Rooms {
    /// Starts the chat ledger writer and the finishing of `leftovers`, the live sessions a
    /// stopped server left unsettled (read before anyone could go live again); rooms start on
    /// demand.
    pub fn new(
        store: Store,
        media: Arc<dyn MediaPlane>,
        config: RoomsConfig,
        gifts: Vec<GiftConfig>,
        leftovers: Vec<LiveSession>,
        tasks: TaskTracker,
        app_shutdown: CancellationToken,
    ) -> Rooms {
        let (chat, ledger) = mpsc::unbounded_channel();
        tasks.spawn(write_chat(store.clone(), ledger, app_shutdown.clone()));
        let shared = Arc::new(Shared {
            store,
            media,
            config,
            gifts,
            chat,
            registry: Mutex::new(HashMap::new()),
            directory: Mutex::new(Directory::default()),
            bans_given: AtomicU64::new(0),
            tasks,
            shutdown: CancellationToken::new(),
            finishing: TaskTracker::new(),
            abandon_recordings: CancellationToken::new(),
            stops: Mutex::new(HashMap::new()),
        });
        shared
            .tasks
            .spawn(finish_leftovers(shared.clone(), leftovers, app_shutdown));
        Rooms {
            shared,
            next_task: AtomicU64::new(1),
        }
    }

    /// The handle of `room`'s task, starting the task if the room is not open.
    async fn open(&self, room_id: RoomId) -> Result<RoomHandle, RoomsError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(RoomsError::ShuttingDown);
        }
        if let Some((_, handle)) = self.registry().get(&room_id) {
            if !handle.commands.is_closed() {
                return Ok(handle.clone());
            }
        }
        let room = self
            .shared
            .store
            .run(move |s| s.room(room_id))
            .await?
            .ok_or(RoomsError::NoSuchRoom)?;
        let owner = self
            .shared
            .store
            .run(move |s| s.user(room.owner))
            .await?
            .ok_or(RoomsError::NoSuchRoom)?;
        let mut registry = self.registry();
        if let Some((_, handle)) = registry.get(&room_id) {
            if !handle.commands.is_closed() {
                return Ok(handle.clone());
            }
        }
        let (commands, inbox) = mpsc::channel(COMMAND_QUEUE);
        let handle = RoomHandle { commands };
        let generation = self.next_task.fetch_add(1, Ordering::Relaxed);
        registry.insert(room_id, (generation, handle.clone()));
        let actor = actor::RoomActor::new(self.shared.clone(), room, owner, generation);
        self.shared.tasks.spawn(actor.run(inbox));
        Ok(handle)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, (u64, RoomHandle)>> {
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers a command to `room`, starting its task if needed. A room that ends while the
    /// command is on its way (an idle room closing) never takes it; the command then goes to
    /// the room opened again. A new room cannot end before it took its first command, so a
    /// retry lands unless the server is shutting down.
    async fn command(&self, room: RoomId, make: impl Fn() -> Command) -> Result<(), RoomsError> {
        for _ in 0..DELIVERY_ATTEMPTS {
            let handle = self.open(room).await?;
            if handle.deliver(make()).await {
                return Ok(());
            }
        }
        Err(RoomsError::ShuttingDown)
    }

    /// Sends `member` into `room`, with the user's chat ban. The room answers the client
    /// itself: `room_info`, or an `error` about `about` when it refuses (too many connections
    /// of that user).
    pub async fn join(
        &self,
        room: RoomId,
        mut member: Member,
        about: &'static str,
    ) -> Result<(), RoomsError> {
        let bans_before = self.shared.bans_given.load(Ordering::SeqCst);
        let user = member.user;
        member.chat_ban = self.chat_ban(user).await?;
        self.command(room, || Command::Join(member.clone(), about))
            .await?;
        // A ban given after the read above may have reached the room before this member did;
        // one given after this check reaches the room after it (the room took the join).
        if self.shared.bans_given.load(Ordering::SeqCst) != bans_before {
            let command = match self.chat_ban(user).await? {
                Some(ban) => Command::Banned(user, ban),
                // Only a member that came in with a ban hears of its end.
                None => Command::Unbanned(user, BanScope::Chat),
            };
            self.tell_if_open(room, command).await;
        }
        Ok(())
    }

    /// Tells an open room that a client left (or disconnected); a closed room needs no word.
    pub async fn leave(&self, room: RoomId, client: ClientId) {
        self.tell_if_open(room, Command::Leave(client)).await;
    }

    /// Hands a client's room message to the room it is in.
    pub async fn act(
        &self,
        room: RoomId,
        client: ClientId,
        link: &ClientLink,
        message: ClientMessage,
    ) -> Result<(), RoomsError> {
        self.command(room, || Command::Act(client, link.clone(), message.clone()))
            .await
    }

    /// Tells an open room that its record changed (name, description, cover).
    pub async fn room_updated(&self, room: Room) {
        self.tell_if_open(room.id, Command::RoomUpdated(room)).await;
    }

    /// Tells an open room that one of its streams went on or off the air.
    pub async fn stream_state(&self, room: RoomId, live_id: String, on_air: bool) {
        self.tell_if_open(room, Command::StreamState { live_id, on_air })
            .await;
    }

    /// Where `user` may push a picture into `room` now: the room's live host, or its co-stream
    /// guest while on stage. A room that is not open has nobody live.
    pub async fn publish_target(
        &self,
        room: RoomId,
        user: UserId,
    ) -> Result<PublishTarget, RoomsError> {
        let handle = self.registry().get(&room).map(|(_, h)| h.clone());
        let handle = handle.ok_or(RoomsError::NotPublisher)?;
        let (reply, answer) = oneshot::channel();
        if !handle.send(Command::PublishTarget(user, reply)).await {
            return Err(RoomsError::NotPublisher);
        }
        answer.await.ok().flatten().ok_or(RoomsError::NotPublisher)
    }

    /// Sends `command` to `room`'s task if it is running; a room that is not open needs no word.
    async fn tell_if_open(&self, room: RoomId, command: Command) {
        let handle = self.registry().get(&room).map(|(_, h)| h.clone());
        if let Some(handle) = handle {
            handle.send(command).await;
        }
    }

    /// A chat ban of `user` in force now, if any.
    async fn chat_ban(&self, user: UserId) -> Result<Option<Ban>, RoomsError> {
        self.ban(user, BanScope::Chat).await
    }

    /// Gives `user` a ban and applies it at once. A chat ban reaches every open room: the
    /// user's members there get `banned` and their next danmaku, gift, like or co-stream
    /// request is refused (a co-stream of theirs ends); their connections stay. A stream ban
    /// closes the user's room if it is live (the media plane drops the push) and refuses
    /// going live from then on.
    /// `audit` is the admin's entry, stored with the ban.
    pub async fn add_ban(
        &self,
        user: UserId,
        ban: Ban,
        audit: Option<AuditEntry>,
    ) -> Result<(), RoomsError> {
        let stored = ban.clone();
        let added = self
            .shared
            .store
            .run(move |s| s.add_ban(user, stored, audit.as_ref()))
            .await?;
        if !added {
            return Err(RoomsError::NoSuchUser);
        }
        self.shared.bans_given.fetch_add(1, Ordering::SeqCst);
        self.tell_every_room(|| Command::Banned(user, ban.clone()))
            .await;
        Ok(())
    }

    /// Lifts `user`'s bans of `scope` in force (kept in the store, marked lifted) and tells
    /// every open room: the user's members there get `unbanned` and may chat (or go live)
    /// again without rejoining.
    pub async fn lift_bans(
        &self,
        user: UserId,
        scope: BanScope,
        audit: AuditEntry,
    ) -> Result<(), RoomsError> {
        let lifted = self
            .shared
            .store
            .run(move |s| s.lift_bans(user, scope, unix_now(), &audit))
            .await?;
        match lifted {
            None => return Err(RoomsError::NoSuchUser),
            Some(0) => return Err(RoomsError::NotBanned),
            Some(_) => {}
        }
        self.shared.bans_given.fetch_add(1, Ordering::SeqCst);
        self.tell_every_room(|| Command::Unbanned(user, scope))
            .await;
        Ok(())
    }

    /// Closes an open room for an admin: its members get `room_closed` with `reason`, a live
    /// session ends, and the room leaves the directory. The audit entry is stored once the room
    /// took the command.
    pub async fn force_close(
        &self,
        room: RoomId,
        reason: String,
        audit: AuditEntry,
    ) -> Result<(), RoomsError> {
        let handle = self.registry().get(&room).map(|(_, h)| h.clone());
        let Some(handle) = handle else {
            return Err(RoomsError::RoomNotOpen);
        };
        if !handle.deliver(Command::Close(reason)).await {
            return Err(RoomsError::RoomNotOpen);
        }
        self.shared.store.run(move |s| s.add_audit(&audit)).await?;
        Ok(())
    }

    /// Deletes danmaku `id` of `room`'s live session for an admin: it leaves the room's recent
    /// list, every member gets `danmaku_deleted`, and the ledger drops it (so the recording's
    /// replay never shows it) and stores `audit`, completed with an excerpt of its text. Returns
    /// once all of that is stored.
    pub async fn delete_danmaku(
        &self,
        room: RoomId,
        id: u64,
        audit: AuditEntry,
    ) -> Result<(), RoomsError> {
        let handle = self.registry().get(&room).map(|(_, h)| h.clone());
        let Some(handle) = handle else {
            return Err(RoomsError::NotLive);
        };
        let (reply, answer) = oneshot::channel();
        if !handle
            .send(Command::DeleteDanmaku { id, audit, reply })
            .await
        {
            return Err(RoomsError::NotLive);
        }
        // A room that ended before answering had nothing live any more.
        let stored = answer.await.map_err(|_| RoomsError::NotLive)??;
        stored.await.map_err(|_| RoomsError::LedgerFailed)
    }

    async fn tell_every_room(&self, command: impl Fn() -> Command) {
        let handles: Vec<RoomHandle> = self.registry().values().map(|(_, h)| h.clone()).collect();
        for handle in handles {
            handle.send(command()).await;
        }
    }

    pub async fn ban(&self, user: UserId, scope: BanScope) -> Result<Option<Ban>, RoomsError> {
        let bans = self.shared.store.run(move |s| s.bans_of(user)).await?;
        let now = unix_now();
        Ok(bans
            .into_iter()
            .find(|b| b.scope == scope && b.in_force(now)))
    }

    /// The rooms that are live now, most watched first.
    pub fn live_rooms(&self) -> Vec<RoomSummary> {
        let directory = self
            .shared
            .directory
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        directory.live().into_iter().cloned().collect()
    }

    /// `live_rooms` as `GET /api/v1/rooms` sends it, built again only after a room changed.
    pub fn live_listing(&self) -> Arc<LiveListing> {
        let (changes, rooms) = {
            let directory = self
                .shared
                .directory
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match &directory.listing {
                Some((at, listing)) if *at == directory.changes => return listing.clone(),
                _ => (
                    directory.changes,
                    directory.live().into_iter().cloned().collect::<Vec<_>>(),
                ),
            }
        };
        // Built outside the lock: the rooms publishing their summaries do not wait for it.
        let listing = Arc::new(LiveListing::of(rooms));
        let mut directory = self
            .shared
            .directory
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if directory.changes == changes {
            directory.listing = Some((changes, listing.clone()));
        }
        listing
    }

    /// Everyone in a live room now (hosts and co-hosts included).
    pub fn viewers_now(&self) -> usize {
        let directory = self
            .shared
            .directory
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        directory.live().iter().map(|r| r.audience).sum()
    }

    pub fn live_room(&self, room: RoomId) -> Option<RoomSummary> {
        self.shared
            .directory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rooms
            .get(&room)
            .cloned()
    }

    pub fn open_rooms(&self) -> usize {
        self.registry().len()
    }

    /// Live sessions whose end is still being worked on (stopping, or fetching the recording).
    pub fn sessions_finishing(&self) -> usize {
        self.shared.finishing.len()
    }

    /// Closes every room (live sessions end, recordings are asked for), within a bound; the
    /// recordings not fetched by then are left for the next start.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        let handles: Vec<RoomHandle> = self.registry().values().map(|(_, h)| h.clone()).collect();
        let mut waits = Vec::new();
        for handle in handles {
            let (reply, done) = oneshot::channel();
            if handle.send(Command::Shutdown(reply)).await {
                waits.push(done);
            }
        }
        let all = async {
            for done in waits {
                let _ = done.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!("some rooms did not finish closing in time");
        }
        self.shared.finishing.close();
        let recordings = self.shared.finishing.wait();
        if tokio::time::timeout(RECORDINGS_GRACE, recordings)
            .await
            .is_err()
        {
            tracing::warn!("some recordings were not fetched in time");
        }
        self.shared.abandon_recordings.cancel();
    }
}

/// Finishes the live sessions a stopped server left unsettled: one stopped while live is
/// ended at its last sign of life, then each one's recording is asked for and listed, as if its
/// room had just closed. Runs once, at start, one session after the other; a recording that
/// fails is tried again in the background, and what shutdown interrupts is left for the next
/// start.
async fn finish_leftovers(
    shared: Arc<Shared>,
    sessions: Vec<LiveSession>,
    shutdown: CancellationToken,
) {
    let boot = unix_now();
    let work = async {
        for session in sessions {
            let id = session.id;
            tracing::info!(session = %id, "finishing a live session an earlier run left unfinished");
            let ended = shared
                .store
                .run(move |s| s.end_abandoned_live_session(id, boot))
                .await;
            let (ended, until) = match ended {
                Ok(Some(ended)) => ended,
                Ok(None) => continue,
                Err(e) => {
                    return tracing::error!(error = %e, "cannot end an unfinished live session")
                }
            };
            actor::list_recording(&shared, ended, until).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown.cancelled() => {}
    }
}

/// Writes danmaku and gifts to the store in batches, so a busy room costs one transaction per
/// burst rather than one per message. At shutdown (after the rooms closed) it writes what is
/// left and ends.
async fn write_chat(
    store: Store,
    mut ledger: mpsc::UnboundedReceiver<LedgerLine>,
    shutdown: CancellationToken,
) {
    const BATCH: usize = 512;
    loop {
        let first = tokio::select! {
            line = ledger.recv() => line,
            () = shutdown.cancelled() => ledger.try_recv().ok(),
        };
        let Some(first) = first else { return };
        let mut lines = vec![first];
        while lines.len() < BATCH {
            match ledger.try_recv() {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        let size = lines.len();
        let (batch, waiting): (Vec<ChatEntry>, Vec<Option<oneshot::Sender<()>>>) =
            lines.into_iter().map(|l| (l.entry, l.stored)).unzip();
        match store.run(move |s| s.append_chat(&batch)).await {
            Ok(()) => {
                for stored in waiting.into_iter().flatten() {
                    let _ = stored.send(());
                }
            }
            // Whoever waits hears of it when their sender is dropped here.
            Err(e) => tracing::error!(error = %e, entries = size, "cannot store danmaku and gifts"),
        }
    }
}
