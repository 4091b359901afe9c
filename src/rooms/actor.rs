//! The room actor: one task per open room, owning all of its state. Commands arrive on an mpsc
//! channel; the slow work (media plane calls, recordings) runs in tasks of its own that report
//! back on the actor's internal channel, so the room keeps serving while they run.
//!
//! States: `Idle` (open, nobody live) → `Starting` → `Live` ⇄ `CoStreaming` → `Closing` → gone.
//! While `Starting`, client commands wait in `deferred` and are handled once the start is
//! decided, so nobody gets half-built answers.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::protocol::{
    ClientMessage, DanmakuView, Frame, Person, RoomPhase, ServerMessage, TopGiver,
};
use super::{ClientId, ClientLink, Command, Envelope, Member, RoomSummary, Shared};
use crate::files::ImageKind;
use crate::media::{
    complete_push_url, LiveId, MediaError, MixLayout, MixSpan, MixSpec, SessionMedia,
    StreamCredentials,
};
use crate::model::{
    Ban, BanScope, CoStreamSpan, GiftEntry, LiveSession, Room, StoredDanmaku, User, UserId,
    UserKind,
};
use crate::store::{unix_now, ChatEntry};
use crate::text::LineProblem;

/// Audience changes are announced at most this often (a crowd joining is one event, not many).
const AUDIENCE_EVERY: Duration = Duration::from_millis(500);
/// Commands kept while a room is starting; client messages beyond it are refused.
const MAX_DEFERRED: usize = 4096;
/// Tries at a session's recording during one run (the first included).
const RECORDING_ATTEMPTS: u32 = 8;
/// The longest pause between two tries at a recording.
const RECORDING_RETRY_MAX: Duration = Duration::from_secs(3600);

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
    /// Who asked for the shutdown, to tell them when the room is gone.
    shutdown_reply: Option<oneshot::Sender<()>>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    /// Since when nobody is in the room; `None` while someone is, and before the first command
    /// (the one the room was opened for) arrived, so a new room never ends before it.
    empty_since: Option<Instant>,
}

impl RoomActor {
    pub(super) fn new(shared: Arc<Shared>, room: Room, owner: User, generation: u64) -> Self {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        RoomActor {
            shared,
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
            shutdown_reply: None,
            internal_tx,
            internal_rx,
            empty_since: None,
        }
    }

    pub(super) async fn run(mut self, mut inbox: mpsc::Receiver<Envelope>) {
        let mut tick = tokio::time::interval(AUDIENCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
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
        if self.audience_dirty {
            self.audience_dirty = false;
            self.broadcast(&ServerMessage::Audience {
                count: self.audience(),
            });
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
        self.members.insert(client, member);
        self.empty_since = None;
        if is_host {
            self.host_client = Some(client);
            self.host_gone_since = None;
        }
        let info = self.room_info(client);
        self.send_to(client, &info);
    }

    /// The audience: people in the room, however many connections each has.
    fn audience(&self) -> usize {
        self.connections.len()
    }

    fn leave(&mut self, client: ClientId) {
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

    /// Sends to every member; members whose queue is full are dropped, never waited for.
    fn broadcast(&mut self, message: &ServerMessage) {
        let frame = message.frame();
        let slow: Vec<ClientId> = self
            .members
            .iter()
            .filter(|(_, m)| !m.link.send(frame.clone()))
            .map(|(id, _)| *id)
            .collect();
        self.drop_slow(slow);
    }

    fn send_to(&mut self, client: ClientId, message: &ServerMessage) {
        self.send_frame(client, message.frame());
    }

    fn send_frame(&mut self, client: ClientId, frame: Frame) {
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

    /// Common checks for danmaku, gifts, likes: who may chat, whether the room is live, rate.
    fn may_chat(&mut self, member: &Member, about: &str) -> bool {
        let client = member.client;
        if member.kind == UserKind::Guest {
            self.error(
                client,
                "registered_only",
                "guests can watch; register to chat",
                about,
            );
            return false;
        }
        if member
            .chat_ban
            .as_ref()
            .is_some_and(|b| b.in_force(unix_now()))
        {
            self.error(client, "chat_banned", "you are banned from chatting", about);
            return false;
        }
        if !matches!(self.phase, RoomPhase::Live | RoomPhase::CoStreaming) {
            self.error(client, "not_live", "the room is not live", about);
            return false;
        }
        let limit = self.shared.config.chat_per_window;
        let window = Duration::from_secs(self.shared.config.chat_window_secs);
        let now = Instant::now();
        let counter = self.chat_windows.entry(member.user).or_insert(ChatWindow {
            start: now,
            count: 0,
        });
        if now.duration_since(counter.start) >= window {
            *counter = ChatWindow {
                start: now,
                count: 0,
            };
        }
        if counter.count >= limit {
            self.error(
                client,
                "rate_limited",
                "you are sending too fast; wait a moment",
                about,
            );
            return false;
        }
        counter.count += 1;
        true
    }

    fn danmaku(&mut self, member: &Member, text: String) {
        if !self.may_chat(member, "danmaku") {
            return;
        }
        let text = match crate::text::chat_line(&text, self.shared.config.danmaku_max_chars) {
            Ok(text) => text,
            Err(LineProblem::Empty) => {
                return self.error(
                    member.client,
                    "empty_danmaku",
                    "a danmaku needs some text",
                    "danmaku",
                )
            }
            Err(LineProblem::TooLong(max)) => {
                let message = format!("a danmaku has at most {max} characters");
                return self.error(member.client, "danmaku_too_long", &message, "danmaku");
            }
            Err(LineProblem::Disguised(c)) => {
                let message = format!(
                    "a danmaku may not hide or reorder its text; U+{:04X} is not allowed here",
                    u32::from(c)
                );
                return self.error(member.client, "invisible_characters", &message, "danmaku");
            }
        };
        let Some(live) = &self.live else { return };
        let offset_ms = live.started.elapsed().as_millis() as u64;
        let view = DanmakuView {
            user_id: member.user.0,
            nickname: member.nickname.clone(),
            is_host: member.user.0 == self.host.user_id,
            text,
            offset_ms,
        };
        let _ = self.shared.chat.send(ChatEntry::Danmaku(StoredDanmaku {
            live: live.session.id,
            user_id: member.user,
            nickname: view.nickname.clone(),
            text: view.text.clone(),
            offset_ms,
            at: unix_now(),
        }));
        self.recent.push_back(view.clone());
        while self.recent.len() > self.shared.config.recent_danmaku {
            self.recent.pop_front();
        }
        self.broadcast(&ServerMessage::Danmaku(view));
    }

    fn gift(&mut self, member: &Member, gift_id: &str, count: u32) {
        let Some(gift) = self.shared.gifts.iter().find(|g| g.id == gift_id).cloned() else {
            return self.error(
                member.client,
                "unknown_gift",
                "there is no such gift",
                "gift",
            );
        };
        if !(1..=99).contains(&count) {
            return self.error(member.client, "bad_count", "send 1 to 99 at a time", "gift");
        }
        if !self.may_chat(member, "gift") {
            return;
        }
        let Some(live) = &mut self.live else { return };
        let value = gift.value * u64::from(count);
        let _ = self.shared.chat.send(ChatEntry::Gift(GiftEntry {
            live: live.session.id,
            room: self.room.id,
            giver: member.user,
            gift: gift.id.clone(),
            count,
            value,
            at: unix_now(),
        }));
        let giver = live.top_givers.entry(member.user).or_insert(TopGiver {
            user_id: member.user.0,
            nickname: member.nickname.clone(),
            value: 0,
        });
        giver.value += value;
        self.broadcast(&ServerMessage::Gift {
            user_id: member.user.0,
            nickname: member.nickname.clone(),
            gift: gift.id,
            name: gift.name,
            icon: gift.icon,
            count,
            value,
        });
    }

    fn like(&mut self, member: &Member, count: u32) {
        if !(1..=50).contains(&count) {
            return self.error(
                member.client,
                "bad_count",
                "send 1 to 50 likes at a time",
                "like",
            );
        }
        if !self.may_chat(member, "like") {
            return;
        }
        self.broadcast(&ServerMessage::Like {
            user_id: member.user.0,
            count,
        });
    }

    /// A ban given just now (`Rooms::add_ban`), applied at once.
    fn apply_ban(&mut self, user: UserId, ban: Ban) {
        if !ban.in_force(unix_now()) {
            return;
        }
        let notice = ServerMessage::Banned {
            scope: match ban.scope {
                BanScope::Chat => "chat",
                BanScope::Stream => "stream",
            }
            .to_owned(),
            reason: ban.reason.clone(),
        };
        match ban.scope {
            BanScope::Chat => {
                let mut here = false;
                for member in self.members.values_mut().filter(|m| m.user == user) {
                    member.chat_ban = Some(ban.clone());
                    here = true;
                }
                if !here {
                    return;
                }
                self.send_to_user(user, &notice);
                // A chat ban covers co-streaming too: off the queue, off the stage.
                let waiting = self.connect_queue.len();
                self.connect_queue.retain(|p| p.user_id != user.0);
                if self.connect_queue.len() != waiting {
                    self.send_queue();
                }
                if self.connecting == Some(user) {
                    // `connected` then discards the co-stream being set up.
                    self.connecting = None;
                }
                if self
                    .co_stream
                    .as_ref()
                    .is_some_and(|c| c.guest.user_id == user.0)
                {
                    self.end_co_stream();
                }
            }
            BanScope::Stream if user.0 == self.host.user_id => {
                self.send_to_user(user, &notice);
                if matches!(self.phase, RoomPhase::Live | RoomPhase::CoStreaming) {
                    self.close("the host is banned from streaming");
                }
            }
            BanScope::Stream => {}
        }
    }

    // ---- live sessions ----

    fn start_live(&mut self, client: ClientId, title: Option<String>) {
        match self.phase {
            RoomPhase::Idle => {}
            RoomPhase::Live | RoomPhase::CoStreaming => {
                return self.error(
                    client,
                    "already_live",
                    "the room is live already",
                    "start_live",
                )
            }
            RoomPhase::Starting => {
                return self.error(
                    client,
                    "already_starting",
                    "the room is starting",
                    "start_live",
                )
            }
            RoomPhase::Closing => {
                return self.error(client, "room_closing", "the room is closing", "start_live")
            }
        }
        let title = title
            .map(|t| {
                t.chars()
                    .filter(|c| !c.is_control())
                    .take(100)
                    .collect::<String>()
            })
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| self.room.name.clone());
        self.phase = RoomPhase::Starting;
        let shared = self.shared.clone();
        let room = self.room.id;
        let host = UserId(self.host.user_id);
        let previous = self.shared.previous_stop(room);
        self.spawn(async move {
            // A host's stream id may be the same as last session's (the rtmp backend's standing
            // key): the last session's stop must not deactivate this one's stream.
            if let Some(previous) = previous {
                previous.cancelled().await;
            }
            Internal::Started(start_sequence(&shared, room.0, host, title).await)
        });
    }

    fn started(&mut self, result: Result<Started, MediaError>) {
        match result {
            Ok(started) => {
                self.phase = RoomPhase::Live;
                let room_id = self.room.id.0;
                let title = Some(started.session.title.clone());
                self.broadcast_except_host(&ServerMessage::LiveStarted {
                    room_id,
                    watch_url: started.watch_url.clone(),
                    title: title.clone(),
                    push_url: None,
                    live_id: None,
                });
                let push_url = self
                    .host_client
                    .and_then(|c| self.members.get(&c))
                    .map(|m| complete_push_url(&started.host_stream.push_url, &m.rtmp_host));
                self.tell_host(&ServerMessage::LiveStarted {
                    room_id,
                    watch_url: started.watch_url.clone(),
                    title,
                    push_url,
                    live_id: Some(started.host_stream.live_id.0.clone()),
                });
                tracing::info!(room = %self.room.id, live = %started.session.id, "live");
                self.recent.clear();
                self.live = Some(Live {
                    session: started.session,
                    host_stream: started.host_stream,
                    host_watch_url: started.watch_url,
                    started: Instant::now(),
                    top_givers: HashMap::new(),
                    host_on_air: false,
                });
            }
            Err(e) => {
                self.phase = RoomPhase::Idle;
                tracing::warn!(room = %self.room.id, error = %e, "could not go live");
                self.tell_host(&ServerMessage::error(
                    "media_unavailable",
                    format!("could not go live: {e}"),
                    Some("start_live"),
                ));
            }
        }
        self.publish();
        for command in std::mem::take(&mut self.deferred) {
            self.handle(command);
        }
    }

    fn stop_live(&mut self, client: ClientId) {
        if !matches!(self.phase, RoomPhase::Live | RoomPhase::CoStreaming) {
            return self.error(client, "not_live", "the room is not live", "stop_live");
        }
        self.finish_live();
        self.phase = RoomPhase::Idle;
        self.broadcast(&ServerMessage::LiveStopped {
            room_id: self.room.id.0,
        });
        self.publish();
    }

    /// Ends the live session in two parts, in the background. The stop part closes the mix,
    /// stops the distributions and stores the end (the instant the host stopped); the next start
    /// in this room waits for it (`Shared::previous_stop`). The recording part then waits the
    /// configured delay and asks for the recording, however long the media plane takes; nothing
    /// waits for it but a shutdown (bounded). Returns the token the stop part's end cancels.
    fn finish_live(&mut self) -> Option<CancellationToken> {
        let co_stream = self.co_stream.take();
        self.connect_queue.clear();
        self.connecting = None;
        let mut live = self.live.take()?;
        let ended_at = unix_now();
        live.session.ended_at = Some(ended_at);
        let stopped = self.shared.stopping(self.room.id, live.session.id);
        let shared = self.shared.clone();
        let done = stopped.clone();
        let delay = Duration::from_secs(shared.config.record_delay_secs);
        self.shared.finishing.spawn(async move {
            let stop_done = done.drop_guard();
            if let Some(co) = co_stream {
                let _ = call(&shared, shared.media.close_mix(&co.mixed)).await;
                let _ = call(&shared, shared.media.stop_distribution(&co.mixed)).await;
            }
            let host_live = live.host_stream.live_id.clone();
            if let Err(e) = call(&shared, shared.media.stop_distribution(&host_live)).await {
                tracing::warn!(error = %e, "stopping the distribution failed");
            }
            let id = live.session.id;
            if let Err(e) = shared
                .store
                .run(move |s| s.end_live_session(id, ended_at))
                .await
            {
                tracing::error!(error = %e, "cannot record the end of a live session");
            }
            shared.stopped(live.session.room, id);
            drop(stop_done);
            let recording = async {
                tokio::time::sleep(delay).await;
                list_recording(&shared, live.session, ended_at).await;
            };
            tokio::select! {
                () = recording => {}
                () = shared.abandon_recordings.cancelled() => {
                    tracing::warn!(session = %id, "shutdown came first; the recording is fetched at the next start");
                }
            }
        });
        Some(stopped)
    }

    /// Closes the room: everyone is told, the room leaves the registry at once (so the host can
    /// open it again and go live), and the task ends when the live session's stop part is done.
    /// The recording goes on in the background.
    fn close(&mut self, reason: &str) {
        if self.phase == RoomPhase::Closing {
            return;
        }
        self.phase = RoomPhase::Closing;
        self.broadcast(&ServerMessage::RoomClosed {
            room_id: self.room.id.0,
            reason: reason.to_owned(),
        });
        self.members.clear();
        self.connections.clear();
        self.host_client = None;
        // The stop is registered before the room leaves the registry, so a start in the room
        // opened again always finds it.
        let stopped = self.finish_live();
        self.unlist();
        let internal = self.internal_tx.clone();
        tracing::info!(room = %self.room.id, reason, "room closing");
        self.shared.tasks.spawn(async move {
            if let Some(stopped) = stopped {
                stopped.cancelled().await;
            }
            let _ = internal.send(Internal::Closed);
        });
    }

    // ---- co-streaming ----

    fn apply_connect(&mut self, member: &Member) {
        let client = member.client;
        if member.user.0 == self.host.user_id {
            return self.error(
                client,
                "host_cannot_apply",
                "the host is on stage already",
                "apply_connect",
            );
        }
        if member.kind == UserKind::Guest {
            return self.error(
                client,
                "registered_only",
                "register to co-stream",
                "apply_connect",
            );
        }
        if member
            .chat_ban
            .as_ref()
            .is_some_and(|b| b.in_force(unix_now()))
        {
            return self.error(
                client,
                "chat_banned",
                "you are banned from interacting",
                "apply_connect",
            );
        }
        if !matches!(self.phase, RoomPhase::Live | RoomPhase::CoStreaming) {
            return self.error(client, "not_live", "the room is not live", "apply_connect");
        }
        let on_stage = self
            .co_stream
            .as_ref()
            .is_some_and(|c| c.guest.user_id == member.user.0)
            || self.connecting == Some(member.user);
        if on_stage
            || self
                .connect_queue
                .iter()
                .any(|p| p.user_id == member.user.0)
        {
            return self.error(
                client,
                "already_applied",
                "you are already waiting or on stage",
                "apply_connect",
            );
        }
        self.connect_queue.push_back(Person {
            user_id: member.user.0,
            nickname: member.nickname.clone(),
        });
        let queue: Vec<Person> = self.connect_queue.iter().cloned().collect();
        self.tell_host(&ServerMessage::ConnectRequest {
            user_id: member.user.0,
            nickname: member.nickname.clone(),
            queue,
        });
    }

    fn answer_connect(&mut self, client: ClientId, guest: UserId, accept: bool) {
        let Some(position) = self.connect_queue.iter().position(|p| p.user_id == guest.0) else {
            return self.error(
                client,
                "no_such_request",
                "that user is not waiting to co-stream",
                "answer_connect",
            );
        };
        if accept && (self.co_stream.is_some() || self.connecting.is_some()) {
            return self.error(
                client,
                "co_stream_busy",
                "end the current co-stream first",
                "answer_connect",
            );
        }
        if accept && self.phase != RoomPhase::Live {
            return self.error(client, "not_live", "the room is not live", "answer_connect");
        }
        let applicant = self
            .connect_queue
            .remove(position)
            .expect("position came from the queue");
        self.send_queue();
        if !accept {
            self.send_to_user(
                guest,
                &ServerMessage::ConnectAnswer {
                    accept: false,
                    reason: None,
                },
            );
            return;
        }
        let Some(live) = &self.live else { return };
        self.connecting = Some(guest);
        let shared = self.shared.clone();
        let host = live.host_stream.live_id.clone();
        let room = self.room.id.0;
        let layout = self.layout;
        self.spawn(async move {
            let result = connect_sequence(&shared, room, host, layout, applicant).await;
            Internal::Connected { guest, result }
        });
    }

    fn connected(&mut self, guest: UserId, result: Result<CoStream, MediaError>) {
        if self.connecting != Some(guest) {
            // The live session ended, or the applicant left, meanwhile.
            if let Ok(co) = result {
                self.discard_co_stream(co);
            }
            return;
        }
        self.connecting = None;
        match result {
            Ok(co) if self.phase == RoomPhase::Live => {
                self.phase = RoomPhase::CoStreaming;
                let host = self.host.clone();
                let everyone = ServerMessage::ConnectStarted {
                    host: host.clone(),
                    guest: co.guest.clone(),
                    watch_url: co.watch_url.clone(),
                    push_url: None,
                };
                let frame = everyone.frame();
                // The guest's push URL names the server as each of its connections reached it.
                let clients: Vec<(ClientId, Option<Arc<str>>)> = self
                    .members
                    .values()
                    .map(|m| (m.client, (m.user == guest).then(|| m.rtmp_host.clone())))
                    .collect();
                for (client, guest_host) in clients {
                    let frame = match guest_host {
                        Some(rtmp_host) => ServerMessage::ConnectStarted {
                            host: host.clone(),
                            guest: co.guest.clone(),
                            watch_url: co.watch_url.clone(),
                            push_url: Some(complete_push_url(
                                &co.guest_stream.push_url,
                                &rtmp_host,
                            )),
                        }
                        .frame(),
                        None => frame.clone(),
                    };
                    self.send_frame(client, frame);
                }
                self.broadcast(&ServerMessage::WatchUrl {
                    watch_url: co.watch_url.clone(),
                });
                self.note_co_stream(&co.mixed, None);
                self.co_stream = Some(co);
                self.publish();
            }
            Ok(co) => self.discard_co_stream(co),
            Err(e) => {
                self.send_to_user(
                    guest,
                    &ServerMessage::ConnectAnswer {
                        accept: false,
                        reason: Some("media_unavailable".to_owned()),
                    },
                );
                self.tell_host(&ServerMessage::error(
                    "media_unavailable",
                    format!("could not start the co-stream: {e}"),
                    Some("answer_connect"),
                ));
            }
        }
    }

    fn end_connect(&mut self, member: &Member, is_host: bool) {
        let is_guest = self
            .co_stream
            .as_ref()
            .is_some_and(|c| c.guest.user_id == member.user.0);
        if !is_host && !is_guest {
            // A waiting applicant may withdraw.
            let before = self.connect_queue.len();
            self.connect_queue.retain(|p| p.user_id != member.user.0);
            if self.connect_queue.len() == before {
                self.error(
                    member.client,
                    "not_co_streaming",
                    "there is no co-stream of yours to end",
                    "end_connect",
                );
            } else {
                self.send_queue();
            }
            return;
        }
        if self.co_stream.is_none() {
            return self.error(
                member.client,
                "not_co_streaming",
                "there is no co-stream to end",
                "end_connect",
            );
        }
        self.end_co_stream();
    }

    /// Back to the host's own picture: everyone is told at once; the mix is closed meanwhile.
    fn end_co_stream(&mut self) {
        let Some(co) = self.co_stream.take() else {
            return;
        };
        if self.phase == RoomPhase::CoStreaming {
            self.phase = RoomPhase::Live;
        }
        if let Some(live) = &self.live {
            let watch_url = live.host_watch_url.clone();
            self.broadcast(&ServerMessage::ConnectEnded {
                watch_url: watch_url.clone(),
            });
            self.broadcast(&ServerMessage::WatchUrl { watch_url });
        }
        self.note_co_stream(&co.mixed, Some(unix_now()));
        self.undo_mix(co);
        self.publish();
    }

    /// Notes in the live session, here and in the store (so a crash keeps it too), that
    /// viewers watch the mix `mixed` from now on (`to` is `None`), or stopped at `to`.
    fn note_co_stream(&mut self, mixed: &LiveId, to: Option<u64>) {
        let Some(live) = &mut self.live else { return };
        let from = live
            .session
            .co_streams
            .iter()
            .find(|s| s.mixed == mixed.0)
            .map_or_else(unix_now, |s| s.from);
        let span = CoStreamSpan {
            mixed: mixed.0.clone(),
            from,
            to,
        };
        live.session.note_co_stream(span.clone());
        let id = live.session.id;
        let store = self.shared.store.clone();
        self.shared.tasks.spawn(async move {
            if let Err(e) = store.run(move |s| s.note_co_stream(id, span)).await {
                tracing::error!(session = %id, error = %e, "cannot note a co-stream");
            }
        });
    }

    fn undo_mix(&mut self, co: CoStream) {
        let shared = self.shared.clone();
        self.spawn_optional(async move {
            // Both steps are tried even if the first fails, so nothing keeps running.
            let closed = call(&shared, shared.media.close_mix(&co.mixed)).await;
            let stopped = call(&shared, shared.media.stop_distribution(&co.mixed)).await;
            match (closed, stopped) {
                (Err(e), _) => Some(Internal::MediaFailed("close the mix", e)),
                (_, Err(e)) => Some(Internal::MediaFailed("stop the mixed stream", e)),
                _ => None,
            }
        });
    }

    /// A co-stream that came up when nobody wanted it any more: the mix is closed and both
    /// one-off streams are revoked, with nobody to tell.
    fn discard_co_stream(&self, co: CoStream) {
        let shared = self.shared.clone();
        self.shared.tasks.spawn(async move {
            let _ = call(&shared, shared.media.close_mix(&co.mixed)).await;
            revoke(&shared, [&co.mixed, &co.guest_stream.live_id]).await;
        });
    }

    fn update_layout(&mut self, layout: Option<MixLayout>) {
        let Some(layout) = layout else { return };
        self.layout = layout;
        let Some(co) = &self.co_stream else { return };
        let shared = self.shared.clone();
        let mixed = co.mixed.clone();
        self.spawn_optional(async move {
            call(&shared, shared.media.update_mix(&mixed, layout))
                .await
                .err()
                .map(|e| Internal::MediaFailed("change the layout", e))
        });
    }

    /// Tells the host who is waiting to co-stream now.
    fn send_queue(&mut self) {
        let queue = self.connect_queue.iter().cloned().collect();
        self.tell_host(&ServerMessage::ConnectQueue { queue });
    }

    /// A push to one of this room's streams started or stopped.
    fn stream_state(&mut self, live_id: &str, on_air: bool) {
        let stream = match (&mut self.live, &self.co_stream) {
            (Some(live), _) if live.host_stream.live_id.0 == live_id => {
                live.host_on_air = on_air;
                "host"
            }
            (_, Some(co)) if co.guest_stream.live_id.0 == live_id => "guest",
            (_, Some(co)) if co.mixed.0 == live_id => "mix",
            _ => return,
        };
        self.broadcast(&ServerMessage::OnAir {
            stream: stream.to_owned(),
            on_air,
        });
        self.publish();
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
            .insert(self.room.id, summary);
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
                .remove(&self.room.id);
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

/// One media plane call, bounded by the configured timeout.
async fn call<T>(
    shared: &Shared,
    work: impl Future<Output = Result<T, MediaError>>,
) -> Result<T, MediaError> {
    let limit = Duration::from_secs(shared.config.media_timeout_secs);
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or(Err(MediaError::Timeout))
}

/// A media step retried with doubling pauses (1 s, 2 s, …) up to the configured attempts.
async fn with_retries<T, F, Fut>(shared: &Shared, step: &str, mut work: F) -> Result<T, MediaError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MediaError>>,
{
    let attempts = shared.config.media_attempts.max(1);
    let mut pause = Duration::from_secs(1);
    for attempt in 1..=attempts {
        match call(shared, work()).await {
            Ok(value) => return Ok(value),
            Err(e) if attempt == attempts => return Err(e),
            Err(e) => {
                tracing::warn!(step, attempt, error = %e, "media plane call failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    Err(MediaError::Timeout)
}

/// What the media plane needs to find `session`'s recording; `until` ends its window (and a
/// co-stream still open in the record).
fn session_media(session: &LiveSession, until: u64) -> SessionMedia {
    SessionMedia {
        host: LiveId(session.stream.clone()),
        recording_tag: session.recording_tag.clone(),
        started_at: session.started_at,
        ended_at: until,
        mixes: session
            .co_streams
            .iter()
            .map(|span| MixSpan {
                mixed: LiveId(span.mixed.clone()),
                from: span.from,
                to: span.to.unwrap_or(until).min(until),
            })
            .collect(),
    }
}

/// Asks the media plane for a live session's recording (the parts of the host's stream that
/// start before `until`, and its co-streams' mixes) and lists it for replay; a session the
/// media plane has no recording of is settled as such. A failure is tried again in the
/// background (see [`retry_recording`]); what never succeeds is left to the next start.
pub(super) async fn list_recording(shared: &Arc<Shared>, session: LiveSession, until: u64) {
    if !try_recording(shared, &session, until).await {
        shared
            .tasks
            .spawn(retry_recording(shared.clone(), session, until));
    }
}

/// One try at [`list_recording`]; `false` when it is worth trying again.
async fn try_recording(shared: &Shared, session: &LiveSession, until: u64) -> bool {
    let media = session_media(session, until);
    let live = media.host.clone();
    let id = session.id;
    let stored = match shared.media.recording(&media).await {
        Ok(Some(recording)) => {
            let session = session.clone();
            shared
                .store
                .run(move |s| {
                    s.add_record(
                        &session,
                        recording.duration_secs,
                        recording.url,
                        recording.thumbnail_url,
                    )
                })
                .await
                .map(|record| tracing::info!(record = %record.id, live = %live, "recording listed"))
        }
        Ok(None) => {
            tracing::warn!(live = %live, "the media plane has no recording");
            shared.store.run(move |s| s.settle_live_session(id)).await
        }
        Err(e) => {
            tracing::warn!(session = %id, live = %live, error = %e, "cannot fetch the recording");
            return false;
        }
    };
    match stored {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(session = %id, error = %e, "cannot list a recording");
            false
        }
    }
}

/// Tries a failed recording again during the run: after `rooms.recording_retry_secs`, then
/// twice as long each time up to an hour, [`RECORDING_ATTEMPTS`] tries in all. Shutdown ends
/// the wait (a try in progress gets the recordings' grace); the session stays unsettled, for
/// the next start.
async fn retry_recording(shared: Arc<Shared>, session: LiveSession, until: u64) {
    let mut pause = Duration::from_secs(shared.config.recording_retry_secs);
    for attempt in 2..=RECORDING_ATTEMPTS {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        tracing::info!(session = %session.id, attempt, "trying the recording again");
        let listed = tokio::select! {
            listed = try_recording(&shared, &session, until) => listed,
            () = shared.abandon_recordings.cancelled() => return,
        };
        if listed {
            return;
        }
        pause = (pause * 2).min(RECORDING_RETRY_MAX);
    }
    tracing::error!(session = %session.id, "the recording failed {RECORDING_ATTEMPTS} times; tried again at the next start");
}

/// Credentials from the rtp role, distribution from the distributor, then the live session in
/// the store. A failure after the distributor started stops it again, so nothing half-open stays.
async fn start_sequence(
    shared: &Shared,
    room: u64,
    host: UserId,
    title: String,
) -> Result<Started, MediaError> {
    // Taken before the stream is activated, so every part of the recording starts after it.
    let started_at = unix_now();
    let host_stream = with_retries(shared, "new_stream", || {
        shared.media.new_stream(room, "host")
    })
    .await?;
    let live_id = host_stream.live_id.clone();
    let watch_url = with_retries(shared, "start_distribution", || {
        shared.media.start_distribution(&live_id)
    })
    .await?;
    let stream = live_id.0.clone();
    let tag = host_stream.recording_tag.clone();
    let stored = shared
        .store
        .run(move |s| {
            let room = crate::model::RoomId(room);
            s.start_tagged_live_session(room, host, title, stream, tag, started_at)
        })
        .await;
    match stored {
        Ok(session) => Ok(Started {
            session,
            host_stream,
            watch_url,
        }),
        Err(e) => {
            let _ = call(shared, shared.media.stop_distribution(&live_id)).await;
            Err(MediaError::Unavailable(format!(
                "cannot record the live session: {e}"
            )))
        }
    }
}

/// Guest credentials and a mixed stream id from the rtp role, the mix from the processor, and
/// the mixed stream from the distributor. If a later step fails, it undoes what it started and
/// revokes the one-off credentials it was given before it returns, so nobody can push to them.
async fn connect_sequence(
    shared: &Shared,
    room: u64,
    host: LiveId,
    layout: MixLayout,
    guest: Person,
) -> Result<CoStream, MediaError> {
    let guest_stream = call(shared, shared.media.new_stream(room, "guest")).await?;
    let guest_live = guest_stream.live_id.clone();
    let mixed = match call(shared, shared.media.new_stream(room, "mix")).await {
        Ok(credentials) => credentials.live_id,
        Err(e) => {
            revoke(shared, [&guest_live]).await;
            return Err(e);
        }
    };
    let spec = MixSpec {
        host,
        guest: guest_live.clone(),
        mixed: mixed.clone(),
        layout,
    };
    let started = match call(shared, shared.media.start_mix(&spec)).await {
        Ok(()) => call(shared, shared.media.start_distribution(&mixed)).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(watch_url) => Ok(CoStream {
            guest,
            guest_stream,
            mixed,
            watch_url,
        }),
        Err(e) => {
            // A timeout may mean the mix did start: close it to be sure.
            let _ = call(shared, shared.media.close_mix(&mixed)).await;
            revoke(shared, [&mixed, &guest_live]).await;
            Err(e)
        }
    }
}

/// Ends one-off streams (a co-stream's guest and mix) at the media plane, which makes their
/// credentials stop working. Each is tried; a failure is logged.
async fn revoke<'a>(shared: &Shared, streams: impl IntoIterator<Item = &'a LiveId>) {
    for live in streams {
        if let Err(e) = call(shared, shared.media.stop_distribution(live)).await {
            tracing::warn!(live = %live, error = %e, "cannot revoke a one-off stream");
        }
    }
}
