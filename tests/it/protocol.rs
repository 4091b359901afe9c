//! The WebSocket protocol as `docs/PROTOCOL.md` describes it, one documented behaviour at a time:
//! the error codes of the room messages, refused handshakes, frames the server will not take,
//! close codes and reasons, room updates, the co-stream queue as the host sees it, idle rooms
//! closing and chat bans running out. Real server in-process, scripted media plane, real
//! WebSocket clients.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::{RequestBuilder, StatusCode};
use roommanager::media::scripted::{Behaviour, Call, Gate};
use roommanager::model::{Ban, BanScope, LoginKind, Session, TokenHash, UserId};
use roommanager::store::{unix_now, Store};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::accounts::{email_of, register, send, Reply};
use crate::common::wait_for;
use crate::common::ws::WsClient;
use crate::rooms::{join, Site};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A verified user and the room they own: (user id, token, room id).
async fn owner(site: &Site, name: &str) -> (u64, String, u64) {
    let (id, token) = site.user(name).await;
    let room = site.room_of(id);
    (id, token, room)
}

/// A registered user's connection that has joined `room`.
async fn member(site: &Site, name: &str, room: u64) -> (u64, WsClient) {
    let (id, token) = site.user(name).await;
    let mut client = site.ws(&token).await;
    join(&mut client, room).await;
    (id, client)
}

/// A guest's connection that has joined `room`.
async fn guest_in(site: &Site, room: u64) -> WsClient {
    let mut client = site.ws(&site.guest().await).await;
    join(&mut client, room).await;
    client
}

/// A `GET /ws` with the WebSocket upgrade headers and no session.
fn upgrade(site: &Site) -> RequestBuilder {
    site.server
        .client
        .get(site.server.url("/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
}

/// `GET /api/v1/rooms/{room}`: the room's record with its entry of the open rooms (`live`).
async fn room_view(site: &Site, room: u64) -> Value {
    let res = site.server.get(&format!("/api/v1/rooms/{room}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("JSON")
}

/// The `roommanager_rooms_open` gauge from `/metrics`.
async fn rooms_open_gauge(site: &Site) -> i64 {
    let text = site
        .server
        .get("/metrics")
        .await
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("roommanager_rooms_open "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no roommanager_rooms_open gauge in:\n{text}"))
}

/// Starts a session for `user` straight in the store, as a login would, and returns its token.
/// Needed for an account that cannot log in (an unverified one). Tokens are 64 hex digits,
/// stored as the hex SHA-256 of the token (`src/accounts/secrets.rs`).
fn session_for(store: &Store, user: UserId) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("random bytes");
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hash: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let now = unix_now();
    let session = Session {
        user_id: user,
        created_at: now,
        expires_at: now + 3600,
    };
    store
        .start_session(
            &TokenHash(hash),
            &session,
            LoginKind::Password,
            "127.0.0.1".to_owned(),
        )
        .expect("store a session");
    token
}

fn close_frame(reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: reason.into(),
    }))
}

/// A bare WebSocket client, for the one test that has to look at answers that may be an
/// `error` or not (the harness's client fails on any error it was not told to expect).
struct RawClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: VecDeque<Value>,
}

impl RawClient {
    async fn connect(base: &str, token: &str) -> RawClient {
        let mut request = format!("{}/ws", base.replacen("http://", "ws://", 1))
            .into_client_request()
            .expect("a WebSocket request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket handshake");
        RawClient {
            socket,
            pending: VecDeque::new(),
        }
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    /// The next message `pick` accepts; the ones before it are skipped.
    async fn next_where(&mut self, pick: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            while let Some(message) = self.pending.pop_front() {
                if pick(&message) {
                    return message;
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("an answer within 20 s")
                .expect("the connection is open")
                .expect("a frame");
            if let Message::Text(text) = frame {
                match serde_json::from_str(&text).expect("JSON") {
                    Value::Array(items) => self.pending.extend(items),
                    one => self.pending.push_back(one),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Error codes of the room messages
// ---------------------------------------------------------------------------------------------

/// `start_live` from an account without a room (its email is not verified) gets `no_room`; the
/// account may still watch, and the refusal does not take it out of the room it is in.
#[tokio::test]
async fn start_live_without_a_room_is_no_room() {
    let site = Site::start().await;
    register(&site.server, "pending30", &email_of("pending30"))
        .await
        .expect(StatusCode::CREATED);
    let store = &site.server.app().store;
    let user = store
        .find_by_login("pending30")
        .expect("the store answers")
        .expect("the account exists");
    assert!(user.room_id.is_none(), "unverified, so no room yet");
    let mut pending = site.ws(&session_for(store, user.id)).await;
    pending.send(json!({"type": "start_live"})).await;
    assert_eq!(pending.expect_error("start_live").await, "no_room");

    let (_, _, room) = owner(&site, "host30").await;
    let info = join(&mut pending, room).await;
    assert_eq!(info["room_id"], room);
    pending
        .send(json!({"type": "start_live", "title": "mine"}))
        .await;
    assert_eq!(pending.expect_error("start_live").await, "no_room");
    // Still in the room: a danmaku is refused for the room's state, not for being outside.
    pending.send(json!({"type": "danmaku", "text": "hi"})).await;
    assert_eq!(pending.expect_error("danmaku").await, "not_live");
}

/// Danmaku, gifts, likes, `apply_connect` and `stop_live` need a live room: `not_live` in an
/// idle room, before the first start and after `stop_live`.
#[tokio::test]
async fn chat_and_stage_in_an_idle_room_are_not_live() {
    let site = Site::start().await;
    let (_, host_token, room) = owner(&site, "host31").await;
    let mut host = site.ws(&host_token).await;
    let info = join(&mut host, room).await;
    assert_eq!(
        (info["state"].as_str(), info["you_are_host"].as_bool()),
        (Some("idle"), Some(true))
    );
    let (_, mut fan) = member(&site, "fan31", room).await;
    let attempts = [
        json!({"type": "danmaku", "text": "anyone?"}),
        json!({"type": "gift", "gift": "heart"}),
        json!({"type": "like", "count": 2}),
        json!({"type": "apply_connect"}),
    ];
    for attempt in &attempts {
        fan.send(attempt.clone()).await;
        let about = attempt["type"].as_str().unwrap();
        assert_eq!(fan.expect_error(about).await, "not_live", "{attempt}");
    }
    host.send(json!({"type": "stop_live"})).await;
    assert_eq!(host.expect_error("stop_live").await, "not_live");

    // Live: the same danmaku is taken. Stopped again: refused again.
    host.send(json!({"type": "start_live"})).await;
    host.expect("live_started").await;
    fan.expect("live_started").await;
    fan.send(json!({"type": "danmaku", "text": "anyone?"}))
        .await;
    assert_eq!(host.expect("danmaku").await["text"], "anyone?");
    host.send(json!({"type": "stop_live"})).await;
    fan.expect("live_stopped").await;
    for attempt in &attempts {
        fan.send(attempt.clone()).await;
        let about = attempt["type"].as_str().unwrap();
        assert_eq!(fan.expect_error(about).await, "not_live", "{attempt}");
    }
    host.send(json!({"type": "stop_live"})).await;
    assert_eq!(host.expect_error("stop_live").await, "not_live");
}

/// A danmaku that is empty once control characters are removed and the text is trimmed gets
/// `empty_danmaku`, and still counts towards the chat rate (it is counted before its text is
/// checked).
#[tokio::test]
async fn an_empty_danmaku_is_refused_and_still_counted() {
    let site = Site::start_with(|c| {
        c.rooms.chat_per_window = 4;
        c.rooms.chat_window_secs = 600;
    })
    .await;
    let (mut host, room) = site.live_host("host32").await;
    let (_, mut fan) = member(&site, "fan32", room).await;
    for blank in ["", "   ", "\n\t\r \u{7}\u{1b}\u{0} "] {
        fan.send(json!({"type": "danmaku", "text": blank})).await;
        assert_eq!(
            fan.expect_error("danmaku").await,
            "empty_danmaku",
            "{blank:?}"
        );
    }
    // Three refused for their text, so one more fits in the window of four, then no more.
    fan.send(json!({"type": "danmaku", "text": " \u{7}ok\n"}))
        .await;
    assert_eq!(host.expect("danmaku").await["text"], "ok");
    assert_eq!(fan.expect("danmaku").await["text"], "ok");
    fan.send(json!({"type": "danmaku", "text": "\t"})).await;
    assert_eq!(fan.expect_error("danmaku").await, "rate_limited");
    // The host's own window is untouched.
    host.send(json!({"type": "danmaku", "text": "\u{7}\n"}))
        .await;
    assert_eq!(host.expect_error("danmaku").await, "empty_danmaku");
}

/// Gift counts must be 1–99 and like counts 1–50, else `bad_count`; the count is checked before
/// who is sending and before the room's state. `count: null` is a malformed message.
#[tokio::test]
async fn counts_out_of_range_are_bad_count() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host33").await;
    let (_, mut fan) = member(&site, "fan33", room).await;
    for count in [0, 100, 1000] {
        fan.send(json!({"type": "gift", "gift": "heart", "count": count}))
            .await;
        assert_eq!(
            fan.expect_error("gift").await,
            "bad_count",
            "gift × {count}"
        );
    }
    for count in [0, 51] {
        fan.send(json!({"type": "like", "count": count})).await;
        assert_eq!(
            fan.expect_error("like").await,
            "bad_count",
            "like × {count}"
        );
    }
    fan.send(json!({"type": "gift", "gift": "heart", "count": 99}))
        .await;
    let gift = host.expect("gift").await;
    assert_eq!(
        (gift["count"].as_u64(), gift["value"].as_u64()),
        (Some(99), Some(99))
    );
    fan.send(json!({"type": "like", "count": 50})).await;
    assert_eq!(host.expect("like").await["count"], 50);
    fan.send(json!({"type": "like", "count": null})).await;
    let malformed = fan.expect_error_code("bad_message").await;
    assert!(malformed.get("about").is_none(), "{malformed}");

    // A guest is refused for the count first, then for being a guest.
    let mut guest = guest_in(&site, room).await;
    guest.send(json!({"type": "like", "count": 0})).await;
    assert_eq!(guest.expect_error("like").await, "bad_count");
    guest
        .send(json!({"type": "gift", "gift": "rocket", "count": 100}))
        .await;
    assert_eq!(guest.expect_error("gift").await, "bad_count");
    guest.send(json!({"type": "like", "count": 1})).await;
    assert_eq!(guest.expect_error("like").await, "registered_only");

    // In an idle room too, the count comes before `not_live`.
    host.send(json!({"type": "stop_live"})).await;
    fan.expect("live_stopped").await;
    fan.send(json!({"type": "like", "count": 51})).await;
    assert_eq!(fan.expect_error("like").await, "bad_count");
    fan.send(json!({"type": "like", "count": 1})).await;
    assert_eq!(fan.expect_error("like").await, "not_live");
}

// ---------------------------------------------------------------------------------------------
// The co-stream queue
// ---------------------------------------------------------------------------------------------

fn ids(people: &Value) -> Vec<u64> {
    people
        .as_array()
        .unwrap_or_else(|| panic!("a list of persons: {people}"))
        .iter()
        .map(|p| p["user_id"].as_u64().expect("user_id"))
        .collect()
}

/// The host cannot apply (`host_cannot_apply`); an applicant applies once (`already_applied`);
/// only the host's connection sees the queue (`room_info.connect_queue`, `connect_queue`); an
/// applicant withdraws with `end_connect` and the host's queue updates.
#[tokio::test]
async fn the_host_sees_the_queue_and_applicants_may_withdraw() {
    let site = Site::start().await;
    let (_, host_token, room) = owner(&site, "host34").await;
    let mut host = site.ws(&host_token).await;
    host.send(json!({"type": "start_live"})).await;
    let info = host.expect("room_info").await;
    assert_eq!(ids(&info["connect_queue"]), Vec::<u64>::new(), "{info}");
    host.expect("live_started").await;

    host.send(json!({"type": "apply_connect"})).await;
    assert_eq!(
        host.expect_error("apply_connect").await,
        "host_cannot_apply"
    );

    let (a, mut fan_a) = member(&site, "fan34a", room).await;
    let (b, mut fan_b) = member(&site, "fan34b", room).await;
    let (c, mut fan_c) = member(&site, "fan34c", room).await;
    for (who, client) in [(a, &mut fan_a), (b, &mut fan_b), (c, &mut fan_c)] {
        client.send(json!({"type": "apply_connect"})).await;
        let request = host
            .expect_where("connect_request", |m| m["user_id"] == who)
            .await;
        assert_eq!(*ids(&request["queue"]).last().unwrap(), who);
    }
    fan_b.send(json!({"type": "apply_connect"})).await;
    assert_eq!(fan_b.expect_error("apply_connect").await, "already_applied");

    // A viewer's picture of the room has no queue.
    let viewer_info = join(&mut site.ws(&site.guest().await).await, room).await;
    assert!(viewer_info.get("connect_queue").is_none(), "{viewer_info}");

    // b withdraws: taken off the queue, no answer to b, the host sees the new queue.
    fan_b.send(json!({"type": "end_connect"})).await;
    let queue = host.expect("connect_queue").await;
    assert_eq!(ids(&queue["queue"]), [a, c], "{queue}");
    let seen_by_b: Vec<Value> = fan_b
        .sync()
        .await
        .into_iter()
        .filter(|m| m["type"] != "audience")
        .collect();
    assert!(
        seen_by_b.is_empty(),
        "no reply to a withdrawal: {seen_by_b:?}"
    );
    host.send(json!({"type": "answer_connect", "user_id": b, "accept": true}))
        .await;
    assert_eq!(host.expect_error("answer_connect").await, "no_such_request");
    // Withdrawn, b may apply again, at the end of the queue.
    fan_b.send(json!({"type": "apply_connect"})).await;
    let again = host
        .expect_where("connect_request", |m| m["user_id"] == b)
        .await;
    assert_eq!(ids(&again["queue"]), [a, c, b]);

    // The host's newest connection is the host's connection: its room_info has the queue, and
    // the queue's changes go to it.
    let mut desk = site.ws(&host_token).await;
    let desk_info = join(&mut desk, room).await;
    assert_eq!(desk_info["you_are_host"], true);
    assert_eq!(ids(&desk_info["connect_queue"]), [a, c, b], "{desk_info}");
    desk.send(json!({"type": "answer_connect", "user_id": a, "accept": false}))
        .await;
    assert_eq!(fan_a.expect("connect_answer").await["accept"], false);
    assert_eq!(ids(&desk.expect("connect_queue").await["queue"]), [c, b]);
    // Leaving the room takes c off the queue too.
    fan_c.send(json!({"type": "leave_room"})).await;
    assert_eq!(ids(&desk.expect("connect_queue").await["queue"]), [b]);
    fan_b.send(json!({"type": "end_connect"})).await;
    assert_eq!(
        ids(&desk.expect("connect_queue").await["queue"]),
        Vec::<u64>::new()
    );
    // Nobody is waiting any more: another end_connect from b has nothing to end.
    fan_b.send(json!({"type": "end_connect"})).await;
    assert_eq!(fan_b.expect_error("end_connect").await, "not_co_streaming");
}

/// One co-stream at a time: accepting another applicant while one is being set up or on stage
/// gets `co_stream_busy`; `end_connect` with no co-stream (none yet, still being set up, or from
/// someone neither on stage nor waiting) gets `not_co_streaming`; applying while being connected
/// or on stage gets `already_applied`.
#[tokio::test]
async fn one_co_stream_at_a_time() {
    // The mix is held at a gate; the timeout must not end it first.
    let site = Site::start_with(|c| c.rooms.media_timeout_secs = 60).await;
    let (mut host, room) = site.live_host("host35").await;
    let (a, mut fan_a) = member(&site, "fan35a", room).await;
    let (b, mut fan_b) = member(&site, "fan35b", room).await;

    host.send(json!({"type": "end_connect"})).await;
    assert_eq!(host.expect_error("end_connect").await, "not_co_streaming");
    fan_b.send(json!({"type": "end_connect"})).await;
    assert_eq!(fan_b.expect_error("end_connect").await, "not_co_streaming");

    fan_a.send(json!({"type": "apply_connect"})).await;
    host.expect_where("connect_request", |m| m["user_id"] == a)
        .await;
    fan_b.send(json!({"type": "apply_connect"})).await;
    host.expect_where("connect_request", |m| m["user_id"] == b)
        .await;

    let gate = Gate::default();
    site.media
        .script(Call::StartMix, [Behaviour::Gated(gate.clone())]);
    host.send(json!({"type": "answer_connect", "user_id": a, "accept": true}))
        .await;
    gate.arrived().await;
    // a is being connected.
    host.send(json!({"type": "answer_connect", "user_id": b, "accept": true}))
        .await;
    assert_eq!(host.expect_error("answer_connect").await, "co_stream_busy");
    host.send(json!({"type": "end_connect"})).await;
    assert_eq!(host.expect_error("end_connect").await, "not_co_streaming");
    fan_a.send(json!({"type": "end_connect"})).await;
    assert_eq!(fan_a.expect_error("end_connect").await, "not_co_streaming");
    fan_a.send(json!({"type": "apply_connect"})).await;
    assert_eq!(fan_a.expect_error("apply_connect").await, "already_applied");

    gate.open();
    let started = host.expect("connect_started").await;
    assert_eq!(started["guest"]["user_id"], a);
    fan_a.expect("connect_started").await;
    fan_b.expect("connect_started").await;
    // a is on stage.
    host.send(json!({"type": "answer_connect", "user_id": b, "accept": true}))
        .await;
    assert_eq!(host.expect_error("answer_connect").await, "co_stream_busy");
    fan_a.send(json!({"type": "apply_connect"})).await;
    assert_eq!(fan_a.expect_error("apply_connect").await, "already_applied");

    // b stayed in the queue through the refusals: once a is off stage, b's turn comes.
    fan_a.send(json!({"type": "end_connect"})).await;
    host.expect("connect_ended").await;
    host.send(json!({"type": "end_connect"})).await;
    assert_eq!(host.expect_error("end_connect").await, "not_co_streaming");
    host.send(json!({"type": "answer_connect", "user_id": b, "accept": true}))
        .await;
    let second = fan_b.expect("connect_started").await;
    assert_eq!(second["guest"]["user_id"], b);
    assert!(second["push_url"].as_str().is_some(), "{second}");
}

// ---------------------------------------------------------------------------------------------
// A starting room's waiting list
// ---------------------------------------------------------------------------------------------

/// How many commands a starting room keeps (`MAX_DEFERRED` in `src/rooms/actor.rs`, "at most
/// 4096 commands wait" in the protocol).
const MAX_WAITING: usize = 4096;

/// A starting room (held there by a gated distributor) whose host has sent `count` layout
/// changes, which wait silently: returns the site, the gate, the host and the room.
async fn starting_room_with_waiting(count: usize) -> (Site, Gate, WsClient, u64) {
    let site = Site::start_with(|c| c.rooms.media_timeout_secs = 60).await;
    let gate = Gate::default();
    site.media
        .script(Call::StartDistribution, [Behaviour::Gated(gate.clone())]);
    let (_, token, room) = owner(&site, "host36").await;
    let mut host = site.ws(&token).await;
    host.send(json!({"type": "start_live"})).await;
    host.expect("room_info").await;
    gate.arrived().await;
    for _ in 0..count {
        host.send(json!({"type": "update_room", "layout": "side_by_side"}))
            .await;
    }
    (site, gate, host, room)
}

/// Room messages beyond the 4096 that wait while a room starts get `room_starting`; the ones
/// that fit are handled once the start is decided, and afterwards the room takes messages again.
#[tokio::test]
async fn a_starting_room_refuses_room_messages_beyond_its_waiting_list() {
    let (site, gate, mut host, room) = starting_room_with_waiting(MAX_WAITING - 1).await;
    // The 4096th waits; the 4097th does not.
    host.send(json!({"type": "danmaku", "text": "fits"})).await;
    host.send(json!({"type": "danmaku", "text": "too many"}))
        .await;
    assert_eq!(host.expect_error("danmaku").await, "room_starting");
    gate.open();
    let started = host.expect("live_started").await;
    assert_eq!(started["room_id"], room);
    // Only the danmaku that fitted is handled (a refused one here would fail `expect`).
    assert_eq!(host.expect("danmaku").await["text"], "fits");
    host.send(json!({"type": "danmaku", "text": "after"})).await;
    assert_eq!(host.expect("danmaku").await["text"], "after");
    let rest: Vec<Value> = host
        .sync()
        .await
        .into_iter()
        .filter(|m| m["type"] == "danmaku")
        .collect();
    assert!(
        rest.is_empty(),
        "the refused danmaku was not handled: {rest:?}"
    );
    assert_eq!(site.live_rooms().await.len(), 1);
}

/// `join_room` is a client message too: with 4096 commands waiting, it should get
/// `room_starting` like any other ("At most 4096 commands wait; client messages beyond that get
/// error room_starting"). A join (and the leave of the previous room that comes with it) is
/// never refused, so a client repeating `join_room` grows the waiting list without bound.
#[tokio::test]
async fn a_starting_room_refuses_joins_beyond_its_waiting_list() {
    let (site, gate, mut host, room) = starting_room_with_waiting(MAX_WAITING).await;
    // The list is full: the host's next room message is refused, so all of the above arrived.
    host.send(json!({"type": "danmaku", "text": "too many"}))
        .await;
    assert_eq!(host.expect_error("danmaku").await, "room_starting");
    let mut late = site.ws(&site.guest().await).await;
    late.send(json!({"type": "join_room", "room_id": room}))
        .await;
    // A room message after the join is refused in any case; the first refusal to arrive shows
    // whether the join before it was refused too.
    late.send(json!({"type": "like"})).await;
    let first = late.expect_error_code("room_starting").await;
    gate.open();
    assert_eq!(
        first["about"], "join_room",
        "the join beyond the waiting list was not refused (it waits for the start); the first \
         refusal answers the message after it: {first}"
    );
    assert_eq!(late.expect_error("like").await, "room_starting");
    host.expect("live_started").await;
}

// ---------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------

/// While the server stops, the rooms close first (`room_closed`, "the server is shutting down")
/// and take no more work: a join, a `start_live` and a room message get `server_shutdown`. When
/// the server is done, every connection closes with 1000 `server_shutdown`.
#[tokio::test]
async fn a_stopping_server_refuses_room_work_and_closes_with_server_shutdown() {
    let site = Site::start_with(|c| c.rooms.media_timeout_secs = 60).await;
    let (mut host, room) = site.live_host("host37").await;
    let mut viewer = guest_in(&site, room).await;
    let (_, other_token, _) = owner(&site, "other37").await;
    let mut other = site.ws(&other_token).await;
    // The room's recording is held at a gate, so the first step of the shutdown (closing the
    // rooms) lasts until the test opens it.
    let gate = Gate::default();
    site.media
        .script(Call::Recording, [Behaviour::Gated(gate.clone())]);
    let Site { server, media } = site;
    let stopping = tokio::spawn(server.stop_keep_data());
    gate.arrived().await;
    for client in [&mut host, &mut viewer] {
        let closed = client.expect("room_closed").await;
        assert_eq!(closed["room_id"], room);
        assert_eq!(closed["reason"], "the server is shutting down");
    }

    other
        .send(json!({"type": "join_room", "room_id": room}))
        .await;
    assert_eq!(other.expect_error("join_room").await, "server_shutdown");
    other.send(json!({"type": "start_live"})).await;
    assert_eq!(other.expect_error("start_live").await, "server_shutdown");
    viewer
        .send(json!({"type": "join_room", "room_id": room}))
        .await;
    assert_eq!(viewer.expect_error("join_room").await, "server_shutdown");
    host.send(json!({"type": "danmaku", "text": "still there?"}))
        .await;
    assert_eq!(host.expect_error("danmaku").await, "server_shutdown");
    let pong = other.sync().await;
    assert!(
        pong.is_empty(),
        "the connection itself still answers: {pong:?}"
    );

    gate.open();
    for client in [&mut host, &mut viewer, &mut other] {
        assert_eq!(
            client.expect_closed().await,
            (1000, "server_shutdown".to_owned())
        );
    }
    stopping.await.expect("the server stopped");
    assert_eq!(media.count(Call::Recording), 1);
}

/// A `start_live` whose join of the own room fails (here: the server is stopping) gets that
/// error only; the start is not attempted and the connection is in no room.
#[tokio::test]
async fn start_live_refused_while_stopping_leaves_the_connection_in_no_room() {
    let site = Site::start_with(|c| c.rooms.media_timeout_secs = 60).await;
    let (_host, _room) = site.live_host("host38").await;
    let (_, token, _) = owner(&site, "other38").await;
    let mut other = site.ws(&token).await;
    let gate = Gate::default();
    site.media
        .script(Call::Recording, [Behaviour::Gated(gate.clone())]);
    let Site { server, .. } = site;
    let stopping = tokio::spawn(server.stop_keep_data());
    gate.arrived().await;
    other.send(json!({"type": "start_live"})).await;
    other.send(json!({"type": "danmaku", "text": "x"})).await;
    assert_eq!(other.expect_error("start_live").await, "server_shutdown");
    // The start was not attempted and the connection is in no room: the only other error is the
    // danmaku's.
    let next = other.expect_error_code("not_in_room").await;
    gate.open();
    assert_eq!(next["about"], "danmaku", "{next}");
    stopping.await.expect("the server stopped");
}

// ---------------------------------------------------------------------------------------------
// Handshakes
// ---------------------------------------------------------------------------------------------

/// A handshake without a session, or with a token that names none (bearer or cookie), is
/// answered 401 `not_logged_in` with the JSON error body; a real session is let in.
#[tokio::test]
async fn a_handshake_without_a_known_session_is_not_logged_in() {
    let site = Site::start().await;
    let refusals: [(&str, RequestBuilder); 5] = [
        ("no token", upgrade(&site)),
        ("unknown bearer", upgrade(&site).bearer_auth("0".repeat(64))),
        (
            "malformed bearer",
            upgrade(&site).bearer_auth("not-a-token"),
        ),
        (
            "unknown cookie",
            upgrade(&site).header("cookie", format!("rm_session={}", "a".repeat(64))),
        ),
        (
            "empty bearer",
            upgrade(&site).header("authorization", "Bearer "),
        ),
    ];
    for (what, request) in refusals {
        let reply = send(request).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "not_logged_in", "{what}: {}", reply.text);
        assert!(
            reply.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {}",
            reply.text
        );
    }
    let token = site.guest().await;
    let accepted = send(upgrade(&site).bearer_auth(&token)).await;
    assert_eq!(accepted.status, StatusCode::SWITCHING_PROTOCOLS);
    let cookie = send(upgrade(&site).header("cookie", format!("rm_session={token}"))).await;
    assert_eq!(cookie.status, StatusCode::SWITCHING_PROTOCOLS);
    // The bearer header wins over the cookie.
    let both = send(
        upgrade(&site)
            .bearer_auth("0".repeat(64))
            .header("cookie", format!("rm_session={token}")),
    )
    .await;
    assert_eq!(both.status, StatusCode::UNAUTHORIZED, "{}", both.text);
    assert_eq!(both.code(), "not_logged_in");
}

/// A handshake with a session whose time is over is answered 401 `session_expired`.
#[tokio::test]
async fn a_handshake_with_an_expired_session_is_session_expired() {
    let site = Site::start_with(|c| c.accounts.session_ttl_secs = 1).await;
    let (_, token) = site.user("finn39").await;
    // Poll until the session's second is over: the handshake is let in until then.
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused: Reply = loop {
        let reply = send(upgrade(&site).bearer_auth(&token)).await;
        if reply.status != StatusCode::SWITCHING_PROTOCOLS {
            break reply;
        }
        assert!(Instant::now() < deadline, "the session never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    assert_eq!(refused.code(), "session_expired", "{}", refused.text);
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        refused.text
    );
}

// ---------------------------------------------------------------------------------------------
// Frames and close codes
// ---------------------------------------------------------------------------------------------

/// A binary frame gets `error` `bad_message` (without `about`), and the connection and its
/// place in the room stay as they were.
#[tokio::test]
async fn a_binary_frame_is_bad_message_and_the_connection_stays_usable() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host40").await;
    let (_, mut fan) = member(&site, "fan40", room).await;
    let danmaku = json!({"type": "danmaku", "text": "binary"}).to_string();
    fan.send_frame(Message::binary(danmaku.into_bytes())).await;
    let error = fan.expect_error_code("bad_message").await;
    assert!(error.get("about").is_none(), "{error}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{error}"
    );
    fan.send_frame(Message::binary(vec![0u8, 159, 146, 150]))
        .await;
    fan.expect_error_code("bad_message").await;
    fan.send(json!({"type": "danmaku", "text": "text"})).await;
    assert_eq!(host.expect("danmaku").await["text"], "text");
    assert_eq!(fan.expect("danmaku").await["text"], "text");
    fan.send(json!({"type": "ping", "id": "still"})).await;
    assert_eq!(fan.expect("pong").await["id"], "still");
}

/// A message of exactly `rooms.max_frame_bytes` bytes is read; one byte more ends that
/// connection without an `error` reply, with the close frame 1009 `message_too_big` (RFC 6455's
/// "message too big"). The room goes on serving the others.
#[tokio::test]
async fn an_oversize_message_ends_only_that_connection() {
    let site = Site::start().await;
    let limit = site.server.app().config.rooms.max_frame_bytes;
    let (mut host, room) = site.live_host("host41").await;
    let (_, mut fan) = member(&site, "fan41", room).await;
    let (_, mut big) = member(&site, "big41", room).await;
    host.expect_where("audience", |m| m["count"] == 3).await;

    let frame = |size: usize| {
        let shell = json!({"type": "danmaku", "text": ""}).to_string();
        let text = "x".repeat(size - shell.len());
        let frame = json!({"type": "danmaku", "text": text}).to_string();
        assert_eq!(frame.len(), size);
        frame
    };
    big.send_text(&frame(limit)).await;
    assert_eq!(
        big.expect_error("danmaku").await,
        "danmaku_too_long",
        "a message at the limit is read"
    );
    big.send_text(&frame(limit + 1)).await;
    assert_eq!(
        big.expect_closed().await,
        (1009, "message_too_big".to_owned())
    );

    host.expect_where("audience", |m| m["count"] == 2).await;
    fan.send(json!({"type": "danmaku", "text": "still on"}))
        .await;
    assert_eq!(host.expect("danmaku").await["text"], "still on");
    assert_eq!(fan.expect("danmaku").await["text"], "still on");
    assert_eq!(site.live_rooms().await[0]["audience"], 2);
}

/// A client that leaves by closing its WebSocket leaves the room, and gets a close frame back
/// (code 1000: "Other close frames use code 1000"), completing the closing handshake.
#[tokio::test]
async fn a_client_that_closes_leaves_the_room_and_gets_a_close_frame() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host42").await;
    let mut viewer = guest_in(&site, room).await;
    host.expect_where("audience", |m| m["count"] == 2).await;
    viewer.send_frame(close_frame("leaving")).await;
    host.expect_where("audience", |m| m["count"] == 1).await;
    let (code, reason) = viewer.expect_closed().await;
    assert_eq!(
        code, 1000,
        "a close frame answers the client's (1006: the server dropped the connection without one)"
    );
    assert!(
        reason == "bye" || reason == "leaving",
        "the documented reason, or the client's echoed: {reason:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Room updates
// ---------------------------------------------------------------------------------------------

/// `update_room` with a name or description changes the sender's own room and, if it is open,
/// everyone in it gets `room_updated` with the full current values; the sender gets nothing else.
#[tokio::test]
async fn renaming_the_room_is_announced_to_everyone_in_it() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host43").await;
    let (_, mut fan) = member(&site, "fan43", room).await;
    let mut viewer = guest_in(&site, room).await;

    host.send(json!({"type": "update_room", "name": "Friday jam", "description": "Live music"}))
        .await;
    for client in [&mut host, &mut fan, &mut viewer] {
        let updated = client.expect("room_updated").await;
        assert_eq!(updated["name"], "Friday jam", "{updated}");
        assert_eq!(updated["description"], "Live music", "{updated}");
    }
    assert_eq!(room_view(&site, room).await["name"], "Friday jam");
    assert_eq!(site.live_rooms().await[0]["name"], "Friday jam");
    let late = join(&mut site.ws(&site.guest().await).await, room).await;
    assert_eq!(
        (late["name"].as_str(), late["description"].as_str()),
        (Some("Friday jam"), Some("Live music"))
    );

    // Only the description: the message still carries both.
    host.send(json!({"type": "update_room", "description": "Live music from the lab"}))
        .await;
    let updated = viewer.expect("room_updated").await;
    assert_eq!(
        (updated["name"].as_str(), updated["description"].as_str()),
        (Some("Friday jam"), Some("Live music from the lab"))
    );
    host.expect("room_updated").await;
    fan.expect("room_updated").await;

    // No fields: nothing happens, no reply.
    host.sync().await;
    host.send(json!({"type": "update_room"})).await;
    let quiet = host.sync().await;
    assert!(
        quiet
            .iter()
            .all(|m| m["type"] == "audience" || m["type"] == "viewers"),
        "no reply: {quiet:?}"
    );
    // Refused names change nothing.
    for name in ["", &"n".repeat(65)] {
        host.send(json!({"type": "update_room", "name": name}))
            .await;
        assert_eq!(host.expect_error("update_room").await, "invalid_room_name");
    }
    fan.expect_none("room_updated", Duration::from_millis(300))
        .await;

    // The fan renames their own room from inside the host's: the host's room hears nothing, and
    // the fan gets no reply (the fan's room is not open).
    fan.send(json!({"type": "update_room", "name": "Fan club"}))
        .await;
    let fan_quiet = fan.sync().await;
    assert!(
        fan_quiet.iter().all(|m| m["type"] != "room_updated"),
        "{fan_quiet:?}"
    );
    host.expect_none("room_updated", Duration::from_millis(300))
        .await;
    assert_eq!(room_view(&site, room).await["name"], "Friday jam");

    // The host renames the room while in another: the own room's members are told, the host
    // (elsewhere) is not.
    let (_, _, fan_room) = owner(&site, "fan43b").await;
    join(&mut host, fan_room).await;
    host.send(json!({"type": "update_room", "name": "Back soon"}))
        .await;
    let updated = viewer.expect("room_updated").await;
    assert_eq!(updated["name"], "Back soon");
    let host_quiet = host.sync().await;
    assert!(
        host_quiet.iter().all(|m| m["type"] != "room_updated"),
        "{host_quiet:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Idle rooms and chat bans over time
// ---------------------------------------------------------------------------------------------

/// A room opened by a join and then left by everyone closes by itself after 30 s, without a
/// message; a room with someone in it stays open. Seen from outside: the room API's `live`
/// entry, the `roommanager_rooms_open` gauge and the registry.
#[tokio::test]
async fn an_idle_room_closes_30_seconds_after_the_last_member_left() {
    let site = Site::start().await;
    let (_, _, room) = owner(&site, "host44").await;
    let (_, _, kept) = owner(&site, "host44b").await;
    let mut first = guest_in(&site, room).await;
    let second = guest_in(&site, room).await;
    let mut stays = guest_in(&site, kept).await;
    wait_for(|| async {
        let view = room_view(&site, room).await;
        (view["live"]["state"] == "idle" && view["live"]["audience"] == 2).then_some(())
    })
    .await;
    assert_eq!(rooms_open_gauge(&site).await, 2);
    assert_eq!(site.server.app().rooms.open_rooms(), 2);

    let left = Instant::now();
    first.send(json!({"type": "leave_room"})).await;
    drop(second); // the other one disconnects
                  // Polled for as long as needed, up to twice the documented time.
    let closed_after = loop {
        let view = room_view(&site, room).await;
        if view["live"].is_null() {
            break left.elapsed();
        }
        assert!(
            left.elapsed() < Duration::from_secs(60),
            "the empty room is still open: {view}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        closed_after >= Duration::from_secs(29),
        "closed after {closed_after:?}, before its 30 s"
    );
    assert_eq!(rooms_open_gauge(&site).await, 1);
    assert_eq!(site.server.app().rooms.open_rooms(), 1);
    // The room with a viewer is still open, and nobody was told anything.
    let view = room_view(&site, kept).await;
    assert_eq!(view["live"]["state"], "idle", "{view}");
    stays
        .expect_none("room_closed", Duration::from_millis(200))
        .await;
    first
        .expect_none("room_closed", Duration::from_millis(200))
        .await;
    // A later join opens it again, idle.
    let info = join(&mut first, room).await;
    assert_eq!(info["state"], "idle");
    wait_for(|| async { (site.server.app().rooms.open_rooms() == 2).then_some(()) }).await;
    assert_eq!(rooms_open_gauge(&site).await, 2);
}

/// A chat ban with an end is checked on every message: `chat_banned` until `expires_at`, then
/// the same member (no new join) may chat.
#[tokio::test]
async fn a_chat_ban_that_runs_out_lets_the_member_chat_again() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host45").await;
    let (muted_id, muted_token) = site.user("muted45").await;
    let now = unix_now();
    let expires_at = now + 3;
    site.server
        .app()
        .store
        .add_ban(
            UserId(muted_id),
            Ban {
                scope: BanScope::Chat,
                reason: "cool down".into(),
                created_at: now,
                expires_at: Some(expires_at),
                lifted_at: None,
            },
            None,
        )
        .expect("store the ban");
    let mut muted = RawClient::connect(&site.server.base, &muted_token).await;
    muted
        .send(json!({"type": "join_room", "room_id": room}))
        .await;
    muted.next_where(|m| m["type"] == "room_info").await;

    let mut refused = 0;
    let mut attempt = 0;
    let accepted = loop {
        attempt += 1;
        let text = format!("attempt {attempt}");
        let sent_at = unix_now();
        muted.send(json!({"type": "danmaku", "text": text})).await;
        let answer = muted
            .next_where(|m| {
                (m["type"] == "error" && m["about"] == "danmaku")
                    || (m["type"] == "danmaku" && m["text"] == text.as_str())
            })
            .await;
        if answer["type"] == "danmaku" {
            break answer;
        }
        assert_eq!(answer["code"], "chat_banned", "{answer}");
        assert!(
            sent_at < expires_at,
            "refused at {sent_at}, after the ban ended at {expires_at}"
        );
        refused += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let now = unix_now();
    assert!(
        now >= expires_at,
        "accepted at {now}, before the ban ended at {expires_at}"
    );
    assert!(refused >= 1, "the ban was in force at first");
    let seen = host
        .expect_where("danmaku", |m| m["user_id"] == muted_id)
        .await;
    assert_eq!(seen["text"], accepted["text"]);
}
