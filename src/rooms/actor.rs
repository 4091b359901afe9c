//! The room actor: one task per open room, owning all of its state. Commands arrive on an mpsc
//! channel; the slow work (media plane calls, recordings) runs in tasks of its own that report
//! back on the actor's internal channel, so the room keeps serving while they run.
//!
//! States: `Idle` (open, nobody live) → `Starting` → `Live` ⇄ `CoStreaming` → `Closing` → gone.
//! While `Starting`, client commands wait in `deferred` and are handled once the start is
//! decided, so nobody gets half-built answers.
//!
//! This file holds the loop, membership and fan-out; the child modules add `impl RoomActor`
//! blocks by concern (`lifecycle`: live sessions and closing, `costream`, `chat`: chat and
//! moderation), all on the one state this task owns.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::coalesce::Coalescer;
use super::protocol::{
    ClientMessage, DanmakuView, Frame, Person, RoomPhase, ServerMessage, TopGiver,
};
use super::{
    ClientId, ClientLink, Command, Envelope, Member, Queued, RoomSummary, RoomsError, Shared,
};
use crate::files::ImageKind;
use crate::media::{complete_push_url, LiveId, MediaError, MixLayout, StreamCredentials};
use crate::model::{LiveSession, Room, User, UserId, UserKind};

mod chat;
mod costream;
mod lifecycle;

pub(super) use lifecycle::list_recording;

/// Audience changes are announced at most this often (a crowd joining is one event, not many).
const AUDIENCE_EVERY: Duration = Duration::from_millis(500);
/// Commands kept while a room is starting; client messages beyond it are refused.
const MAX_DEFERRED: usize = 4096;

/// Results of the work the actor hands to tasks.
enum Internal {
    Started(Result<Started, MediaError>),
    Connected {
        guest: UserId,
        result: Result<CoStream, MediaError>,
    },
    /// A media call made in passing (stop, layout, end of mix) failed; the host is told.
    MediaFailed(&'static str, MediaError),
    Closed,
}

struct Started {
    session: LiveSession,
    host_stream: StreamCredentials,
    watch_url: String,
}

struct Live {
    session: LiveSession,
    host_stream: StreamCredentials,
    host_watch_url: String,
    started: Instant,
    top_givers: HashMap<UserId, TopGiver>,
    /// Whether the host's picture is arriving at the media plane.
    host_on_air: bool,
    /// The id the next danmaku of this session gets (`DanmakuView::id`).
    next_danmaku: u64,
    /// The danmaku of this session taken back, so one is not deleted twice.
    deleted: HashSet<u64>,
}

struct CoStream {
    guest: Person,
    guest_stream: StreamCredentials,
    mixed: LiveId,
    watch_url: String,
}

/// Per-user chat counter (danmaku, gifts, likes) within the current window.
struct ChatWindow {
    start: Instant,
    count: u32,
}

pub(super) struct RoomActor {
    shared: Arc<Shared>,
    generation: u64,
    room: Room,
    host: Person,
    phase: RoomPhase,
    members: HashMap<ClientId, Member>,
    /// Connections per user in the room, so a departure is O(1) even in a crowd.
    connections: HashMap<UserId, usize>,
    /// The host's connection, when the host is in the room.
    host_client: Option<ClientId>,
    /// When the host left while live: the room closes at this instant unless the host returns.
    host_gone_since: Option<Instant>,
    live: Option<Live>,
    co_stream: Option<CoStream>,
    /// The applicant being connected right now (media calls running).
    connecting: Option<UserId>,
    connect_queue: VecDeque<Person>,
    recent: VecDeque<DanmakuView>,
    chat_windows: HashMap<UserId, ChatWindow>,
    layout: MixLayout,
    deferred: Vec<Command>,
    audience_dirty: bool,
    /// Broadcast events waiting to go out as one frame. It is sent before any member joins or
    /// leaves and before any message to one member, so every member gets each event of its
    /// time in the room exactly once, in order with its own messages.
    coalescer: Coalescer,
    /// Who asked for the shutdown, to tell them when the room is gone.
    shutdown_reply: Option<oneshot::Sender<()>>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    /// When the first chat ban of a member here runs out (unix seconds), if one does.
    next_ban_expiry: Option<u64>,
    /// Since when nobody is in the room; `None` while someone is, and before the first command
    /// (the one the room was opened for) arrived, so a new room never ends before it.
    empty_since: Option<Instant>,
}

impl RoomActor {
    pub(super) fn new(shared: Arc<Shared>, room: Room, owner: User, generation: u64) -> Self {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        RoomActor {
            generation,
            host: Person {
                user_id: owner.id.0,
                nickname: owner.nickname,
            },
            room,
            phase: RoomPhase::Idle,
            members: HashMap::new(),
            connections: HashMap::new(),
            host_client: None,
            host_gone_since: None,
            live: None,
            co_stream: None,
            connecting: None,
            connect_queue: VecDeque::new(),
            recent: VecDeque::new(),
            chat_windows: HashMap::new(),
            layout: MixLayout::default(),
            deferred: Vec::new(),
            audience_dirty: false,
            coalescer: Coalescer::new(Duration::from_millis(shared.config.coalesce_ms)),
            shutdown_reply: None,
            internal_tx,
            internal_rx,
            empty_since: None,
            next_ban_expiry: None,
            shared,
        }
    }

    pub(super) async fn run(mut self, mut inbox: mpsc::Receiver<Envelope>) {
        let mut tick = tokio::time::interval(AUDIENCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let flush = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(flush);
        loop {
            // Commands come first and may never pause in a flood: the batch's time is checked
            // here too, not only by its timer.
            self.flush_if_due();
            let due = self.coalescer.due().map(tokio::time::Instant::from_std);
            if let Some(at) = due {
                if flush.deadline() != at {
                    flush.as_mut().reset(at);
                }
            }
            tokio::select! {
                // Commands first: one that arrived before a media result is handled before it,
                // so a client's message sent while the room was starting is answered as such.
                // A command takes microseconds, so the other inputs still get their turn.
                biased;
                envelope = inbox.recv() => {
                    let Some(Envelope { command, taken }) = envelope else { break };
                    if let Some(taken) = taken {
                        // The sender learns the room has it; a room that ends drops what it
                        // has not taken, unacknowledged, and the sender tries a fresh room.
                        let _ = taken.send(());
                    }
                    self.handle(command);
                    if self.members.is_empty() {
                        // Also after the first command, when that was no join.
                        self.empty_since.get_or_insert_with(Instant::now);
                    }
                    if self.idle_over() && inbox.is_empty() {
                        break;
                    }
                }
                Some(event) = self.internal_rx.recv() => {
                    if self.internal(event) {
                        break;
                    }
                }
                () = flush.as_mut(), if due.is_some() => self.flush(),
                _ = tick.tick() => {
                    self.on_tick();
                    if self.idle_over() && inbox.is_empty() {
                        break;
                    }
                }
            }
        }
        // Whatever is still queued is dropped unacknowledged: closing first makes every later
        // send fail too, so each sender goes to the room opened again instead.
        inbox.close();
        self.end();
    }

    // ---- the loop's three inputs ----

    fn handle(&mut self, command: Command) {
        if self.phase == RoomPhase::Starting {
            // Wait for the start to be decided; then these are answered with the whole truth
            // (a shutdown too: it then ends the live session the start created). Bounded, so
            // a client flooding a starting room cannot grow it without limit.
            if self.deferred.len() >= MAX_DEFERRED {
                let busy = |about| {
                    ServerMessage::error(
                        "room_starting",
                        "the room is starting; try again in a moment",
                        Some(about),
                    )
                    .frame()
                };
                self.flush();
                match &command {
                    Command::Act(_, link, message) => {
                        link.send(busy(message.kind()));
                        return;
                    }
                    Command::Join(member, about) => {
                        member.link.send(busy(about));
                        return;
                    }
                    // A leave matters only for someone who is in, or waiting to come in;
                    // those are bounded, so the list stays bounded too.
                    Command::Leave(client) if !self.joined_or_waiting(*client) => return,
                    _ => {}
                }
            }
            self.deferred.push(command);
            return;
        }
        match command {
            Command::Join(member, about) => self.join(member, about),
            Command::Leave(client) => self.leave(client),
            Command::Act(client, link, message) => self.act(client, &link, message),
            Command::RoomUpdated(room) => {
                self.room = room;
                self.broadcast(&ServerMessage::RoomUpdated {
                    name: self.room.name.clone(),
                    description: self.room.description.clone(),
                });
                self.publish();
            }
            Command::StreamState { live_id, on_air } => self.stream_state(&live_id, on_air),
            Command::Banned(user, ban) => self.apply_ban(user, ban),
            Command::Unbanned(user, scope) => self.apply_unban(user, scope),
            Command::Close(reason) => self.close(&reason),
            Command::DeleteDanmaku { id, audit, reply } => {
                let _ = reply.send(self.delete_danmaku(id, Some(audit)));
            }
            Command::PublishTarget(user, reply) => {
                let _ = reply.send(self.publish_target(user));
            }
            Command::Shutdown(reply) => {
                self.shutdown_reply = Some(reply);
                if self.phase != RoomPhase::Closing {
                    self.close("the server is shutting down");
                }
            }
        }
    }

    /// Whether `client` is a member, or has a join waiting while the room starts.
    fn joined_or_waiting(&self, client: ClientId) -> bool {
        self.members.contains_key(&client)
            || self
                .deferred
                .iter()
                .any(|c| matches!(c, Command::Join(m, _) if m.client == client))
    }

    /// Returns `true` when the room is finished.
    fn internal(&mut self, event: Internal) -> bool {
        match event {
            Internal::Started(result) => self.started(result),
            Internal::Connected { guest, result } => self.connected(guest, result),
            Internal::MediaFailed(step, e) => {
                tracing::warn!(room = %self.room.id, step, error = %e, "media plane call failed");
                self.tell_host(&ServerMessage::error(
                    "media_unavailable",
                    format!("the media plane failed to {step}: {e}"),
                    None,
                ));
            }
            Internal::Closed => return true,
        }
        false
    }

    fn on_tick(&mut self) {
        self.expire_bans();
        if self.audience_dirty {
            self.audience_dirty = false;
            self.broadcast(&ServerMessage::Audience {
                count: self.audience(),
            });
            if self.host_client.is_some() {
                let viewers = self.viewers();
                self.send_to_user(UserId(self.host.user_id), &viewers);
            }
            self.publish();
        }
        let grace = Duration::from_secs(self.shared.config.host_grace_secs);
        // While starting, the start is decided first; the grace check runs again after.
        if self.phase != RoomPhase::Starting
            && self
                .host_gone_since
                .is_some_and(|since| since.elapsed() >= grace)
        {
            self.host_gone_since = None;
            self.close("the host left");
        }
    }

    /// Whether the room has been open with nobody in it and nothing live for
    /// `rooms.idle_close_secs`, and so ends.
    fn idle_over(&self) -> bool {
        let idle = Duration::from_secs(self.shared.config.idle_close_secs);
        self.phase == RoomPhase::Idle
            && self.members.is_empty()
            && self
                .empty_since
                .is_some_and(|since| since.elapsed() >= idle)
    }

    // ---- members ----

    /// `about` is the message that asked for the join (`join_room`, or `start_live` joining the
    /// host's own room), for the error that refuses it.
    fn join(&mut self, member: Member, about: &'static str) {
        // Events from before the join are not the newcomer's.
        self.flush();
        if self.phase == RoomPhase::Closing {
            let frame = ServerMessage::RoomClosed {
                room_id: self.room.id.0,
                reason: "the room is closing".to_owned(),
            }
            .frame();
            member.link.send(frame);
            return;
        }
        let client = member.client;
        let is_host = member.user.0 == self.host.user_id;
        if !self.members.contains_key(&client) {
            let held = self.connections.get(&member.user).copied().unwrap_or(0);
            let cap = self.shared.config.max_connections_per_user;
            if held >= cap {
                // One person with many sockets must not crowd the room or inflate its count.
                let refusal = ServerMessage::error(
                    "too_many_connections",
                    format!("you are in this room on {held} connections already; close one first"),
                    Some(about),
                );
                member.link.send(refusal.frame());
                return;
            }
            self.connections.insert(member.user, held + 1);
            if held == 0 {
                self.audience_dirty = true;
            }
        }
        self.note_ban_expiry(member.chat_ban.as_ref().and_then(|b| b.expires_at));
        self.members.insert(client, member);
        self.empty_since = None;
        if is_host {
            self.host_client = Some(client);
            self.host_gone_since = None;
        }
        let info = self.room_info(client);
        self.send_to(client, &info);
        if is_host {
            let viewers = self.viewers();
            self.send_to(client, &viewers);
        }
    }

    /// The audience: people in the room, however many connections each has.
    fn audience(&self) -> usize {
        self.connections.len()
    }

    fn leave(&mut self, client: ClientId) {
        // Events from before the departure are still the leaver's.
        self.flush();
        let Some(member) = self.members.remove(&client) else {
            return;
        };
        if self.members.is_empty() {
            self.empty_since = Some(Instant::now());
        }
        if self.host_client == Some(client) {
            // The host may have another connection in the room; it takes over.
            self.host_client = self
                .members
                .values()
                .find(|m| m.user.0 == self.host.user_id)
                .map(|m| m.client);
            if self.host_client.is_none() && self.live.is_some() {
                self.host_gone_since = Some(Instant::now());
            }
        }
        let user = member.user;
        let still_here = match self.connections.get_mut(&user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                true
            }
            _ => {
                self.connections.remove(&user);
                false
            }
        };
        if !still_here {
            self.audience_dirty = true;
            if self.connecting == Some(user) {
                // Gone while being connected: `connected` then undoes the mix.
                self.connecting = None;
            }
            let waiting = self.connect_queue.len();
            self.connect_queue.retain(|p| p.user_id != user.0);
            if self.connect_queue.len() != waiting {
                self.send_queue();
            }
            if self
                .co_stream
                .as_ref()
                .is_some_and(|c| c.guest.user_id == user.0)
            {
                self.end_co_stream();
            }
        }
    }

    /// Sends to every member, at once or, in a busy room, with the other events of its tick.
    fn broadcast(&mut self, message: &ServerMessage) {
        if let Some(frame) = self.coalescer.offer(message, Instant::now()) {
            self.fan_out(frame);
        }
    }

    /// Sends the waiting batch of events now.
    pub(super) fn flush(&mut self) {
        if let Some(frame) = self.coalescer.take(Instant::now()) {
            self.fan_out(frame);
        }
    }

    fn flush_if_due(&mut self) {
        if self.coalescer.due().is_some_and(|at| at <= Instant::now()) {
            self.flush();
        }
    }

    /// Hands `frame` to every member; members whose queue is full are dropped, never waited
    /// for.
    fn fan_out(&mut self, frame: Frame) {
        let mut behind = false;
        let mut slow = Vec::new();
        for (id, member) in &self.members {
            match member.link.queue(frame.clone()) {
                Queued::CaughtUp => {}
                Queued::Behind => behind = true,
                Queued::Refused => slow.push(*id),
            }
        }
        // Members still holding earlier frames: the room sends faster than they take them.
        self.coalescer.set_busy(behind);
        self.drop_slow(slow);
    }

    fn send_to(&mut self, client: ClientId, message: &ServerMessage) {
        self.send_frame(client, message.frame());
    }

    fn send_frame(&mut self, client: ClientId, frame: Frame) {
        // After the room's events before it, as they happened.
        self.flush();
        let failed = self
            .members
            .get(&client)
            .is_some_and(|m| !m.link.send(frame));
        if failed {
            self.drop_slow(vec![client]);
        }
    }

    fn drop_slow(&mut self, slow: Vec<ClientId>) {
        for client in slow {
            if let Some(member) = self.members.get(&client) {
                tracing::info!(room = %self.room.id, user = %member.user, "dropping a client that cannot keep up");
                member.link.close("too_slow");
            }
            self.leave(client);
        }
    }

    fn tell_host(&mut self, message: &ServerMessage) {
        if let Some(host) = self.host_client {
            self.send_to(host, message);
        }
    }

    fn error(&mut self, client: ClientId, code: &str, message: &str, about: &str) {
        self.send_to(client, &ServerMessage::error(code, message, Some(about)));
    }

    // ---- client messages ----

    fn act(&mut self, client: ClientId, link: &ClientLink, message: ClientMessage) {
        let Some(member) = self.members.get(&client).cloned() else {
            let refusal =
                ServerMessage::error("not_in_room", "join the room first", Some(message.kind()));
            link.send(refusal.frame());
            return;
        };
        let is_host = member.user.0 == self.host.user_id;
        let about = message.kind();
        match message {
            ClientMessage::Danmaku { text } => self.danmaku(&member, text),
            ClientMessage::DeleteDanmaku { id } if is_host => {
                if let Err(refused) = self.delete_danmaku(id, None) {
                    let code = match refused {
                        RoomsError::NotLive => "not_live",
                        _ => "danmaku_not_found",
                    };
                    self.error(client, code, &refused.to_string(), about);
                }
            }
            ClientMessage::Gift { gift, count } => self.gift(&member, &gift, count),
            ClientMessage::Like { count } => self.like(&member, count),
            ClientMessage::StartLive { title } if is_host => self.start_live(client, title),
            ClientMessage::StopLive if is_host => self.stop_live(client),
            ClientMessage::CloseRoom if is_host => self.close("the host closed the room"),
            ClientMessage::UpdateRoom { layout, .. } if is_host => self.update_layout(layout),
            ClientMessage::AnswerConnect { user_id, accept } if is_host => {
                self.answer_connect(client, UserId(user_id), accept)
            }
            ClientMessage::ApplyConnect => self.apply_connect(&member),
            ClientMessage::EndConnect => self.end_connect(&member, is_host),
            ClientMessage::StartLive { .. }
            | ClientMessage::DeleteDanmaku { .. }
            | ClientMessage::StopLive
            | ClientMessage::CloseRoom
            | ClientMessage::UpdateRoom { .. }
            | ClientMessage::AnswerConnect { .. } => {
                self.error(
                    client,
                    "host_only",
                    "only the room's host may do this",
                    about,
                );
            }
            // Handled by the connection, never sent to a room.
            ClientMessage::JoinRoom { .. }
            | ClientMessage::LeaveRoom
            | ClientMessage::Ping { .. } => {}
        }
    }

    fn send_to_user(&mut self, user: UserId, message: &ServerMessage) {
        let frame = message.frame();
        let clients: Vec<ClientId> = self
            .members
            .values()
            .filter(|m| m.user == user)
            .map(|m| m.client)
            .collect();
        for client in clients {
            self.send_frame(client, frame.clone());
        }
    }

    fn broadcast_except_host(&mut self, message: &ServerMessage) {
        let frame = message.frame();
        let clients: Vec<ClientId> = self
            .members
            .keys()
            .filter(|c| Some(**c) != self.host_client)
            .copied()
            .collect();
        for client in clients {
            self.send_frame(client, frame.clone());
        }
    }

    // ---- views ----

    fn room_info(&self, client: ClientId) -> ServerMessage {
        let you_are_host = self.host_client == Some(client);
        let watch_url = match (&self.co_stream, &self.live) {
            (Some(co), _) => Some(co.watch_url.clone()),
            (None, Some(live)) => Some(live.host_watch_url.clone()),
            _ => None,
        };
        let mut top_givers: Vec<TopGiver> = self
            .live
            .as_ref()
            .map(|l| l.top_givers.values().cloned().collect())
            .unwrap_or_default();
        top_givers.sort_by(|a, b| b.value.cmp(&a.value).then(a.user_id.cmp(&b.user_id)));
        top_givers.truncate(10);
        ServerMessage::RoomInfo {
            room_id: self.room.id.0,
            name: self.room.name.clone(),
            description: self.room.description.clone(),
            host: self.host.clone(),
            state: self.phase,
            on_air: self.live.as_ref().is_some_and(|l| l.host_on_air),
            watch_url,
            title: self.live.as_ref().map(|l| l.session.title.clone()),
            live_started_at: self.live.as_ref().map(|l| l.session.started_at),
            audience: self.audience(),
            top_givers,
            recent_danmaku: self.recent.iter().cloned().collect(),
            co_stream: self.co_stream.as_ref().map(|c| c.guest.clone()),
            connect_queue: you_are_host.then(|| self.connect_queue.iter().cloned().collect()),
            you_are_host,
            push_url: self
                .live
                .as_ref()
                .filter(|_| you_are_host)
                .and_then(|live| {
                    let member = self.members.get(&client)?;
                    Some(complete_push_url(
                        &live.host_stream.push_url,
                        &member.rtmp_host,
                    ))
                }),
        }
    }

    /// The host's list of who is watching. Built only when the audience changed (at most every
    /// `AUDIENCE_EVERY`), and capped, so a crowd costs one bounded message.
    fn viewers(&self) -> ServerMessage {
        let host = UserId(self.host.user_id);
        let mut seen = HashSet::new();
        let mut people = Vec::new();
        let mut guests = 0;
        for member in self.members.values() {
            if member.user == host || !seen.insert(member.user) {
                continue;
            }
            match member.kind {
                UserKind::Guest => guests += 1,
                UserKind::Registered => people.push(Person {
                    user_id: member.user.0,
                    nickname: member.nickname.clone(),
                }),
            }
        }
        let order =
            |a: &Person, b: &Person| a.nickname.cmp(&b.nickname).then(a.user_id.cmp(&b.user_id));
        let listed = self.shared.config.viewers_listed;
        let more = people.len().saturating_sub(listed);
        if more > 0 {
            people.select_nth_unstable_by(listed, order);
            people.truncate(listed);
        }
        people.sort_by(order);
        ServerMessage::Viewers {
            people,
            more,
            guests,
        }
    }

    /// Updates this room's entry in the directory (a closing room has none: it left it).
    fn publish(&self) {
        if self.phase == RoomPhase::Closing {
            return;
        }
        let summary = RoomSummary {
            room_id: self.room.id.0,
            name: self.room.name.clone(),
            description: self.room.description.clone(),
            host: self.host.clone(),
            title: self.live.as_ref().map(|l| l.session.title.clone()),
            cover_url: self.room.cover.as_deref().map(|c| ImageKind::Cover.url(c)),
            state: self.phase,
            audience: self.audience(),
            started_at: self.live.as_ref().map(|l| l.session.started_at),
        };
        self.shared
            .directory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(summary);
    }

    /// Takes the room out of the registry and the directory, unless a newer task of the same
    /// room took its place already.
    fn unlist(&self) {
        let mut registry = self
            .shared
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if registry
            .get(&self.room.id)
            .is_some_and(|(g, _)| *g == self.generation)
        {
            registry.remove(&self.room.id);
            self.shared
                .directory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(self.room.id);
        }
    }

    fn end(mut self) {
        self.unlist();
        if let Some(reply) = self.shutdown_reply.take() {
            let _ = reply.send(());
        }
        tracing::debug!(room = %self.room.id, "room task ended");
    }

    fn spawn(&self, work: impl Future<Output = Internal> + Send + 'static) {
        let internal = self.internal_tx.clone();
        self.shared.tasks.spawn(async move {
            let _ = internal.send(work.await);
        });
    }

    fn spawn_optional(&self, work: impl Future<Output = Option<Internal>> + Send + 'static) {
        let internal = self.internal_tx.clone();
        self.shared.tasks.spawn(async move {
            if let Some(event) = work.await {
                let _ = internal.send(event);
            }
        });
    }
}
