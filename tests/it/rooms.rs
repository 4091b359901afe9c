//! Live rooms over real WebSockets: going live, watching, danmaku and gifts, co-streaming, the
//! media plane failing at each step, bad messages, bans, reconnecting hosts and slow clients.
//! The media plane is the scripted one, so each of its calls can be made to fail or hang.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use roommanager::config::Config;
use roommanager::media::scripted::{Behaviour, Call, Gate, ScriptedMedia};
use roommanager::media::MediaError;
use roommanager::model::{Ban, BanScope, UserId};
use roommanager::store::Store;
use serde_json::{json, Value};

use crate::accounts::{guest_token, relaxed, verified_user};
use crate::common::ws::WsClient;
use crate::common::{wait_for, TestServer};

/// Quick settings for room tests: no waiting for recordings, short media timeouts.
fn quick(c: &mut Config) {
    relaxed(c);
    c.rooms.record_delay_secs = 0;
    c.rooms.media_timeout_secs = 2;
    c.rooms.chat_per_window = 1000;
}

pub(crate) struct Site {
    pub(crate) server: TestServer,
    pub(crate) media: Arc<ScriptedMedia>,
}

impl Site {
    pub(crate) async fn start() -> Site {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(adjust: impl FnOnce(&mut Config)) -> Site {
        let media = Arc::new(ScriptedMedia::default());
        let server = TestServer::start_with_media(media.clone(), |c| {
            quick(c);
            adjust(c);
        })
        .await;
        Site { server, media }
    }

    /// Stops the server (as on SIGTERM) and starts it again on the same data, with a fresh
    /// scripted media plane.
    pub(crate) async fn restart(self, adjust: impl FnOnce(&mut Config)) -> Site {
        self.restart_after(|_| {}, adjust).await
    }

    /// Like [`Site::restart`], with `between` run on the data dir while the server is down.
    pub(crate) async fn restart_after(
        self,
        between: impl FnOnce(&std::path::Path),
        adjust: impl FnOnce(&mut Config),
    ) -> Site {
        self.restart_scripted(Arc::new(ScriptedMedia::default()), between, adjust)
            .await
    }

    /// Like [`Site::restart_after`], with `media` (scripted before the server starts, so the
    /// start's own calls follow the script too).
    pub(crate) async fn restart_scripted(
        self,
        media: Arc<ScriptedMedia>,
        between: impl FnOnce(&std::path::Path),
        adjust: impl FnOnce(&mut Config),
    ) -> Site {
        let data = self.server.stop_keep_data().await;
        between(data.path());
        let server = TestServer::start_in_with_media(data, media.clone(), |c| {
            quick(c);
            adjust(c);
        })
        .await;
        Site { server, media }
    }

    /// Like [`Site::restart`], on the same address: browsers on its pages see their
    /// connections drop, then reconnect to the new server.
    pub(crate) async fn restart_in_place(self, adjust: impl FnOnce(&mut Config)) -> Site {
        let bind = self.server.base.trim_start_matches("http://").to_owned();
        let data = self.server.stop_keep_data().await;
        let media = Arc::new(ScriptedMedia::default());
        let server = TestServer::start_bound_in_with_media(&bind, data, media.clone(), |c| {
            quick(c);
            adjust(c);
        })
        .await;
        Site { server, media }
    }

    /// A registered, verified user; returns (user id, session token).
    pub(crate) async fn user(&self, name: &str) -> (u64, String) {
        verified_user(&self.server, name).await
    }

    pub(crate) async fn guest(&self) -> String {
        guest_token(&self.server).await
    }

    pub(crate) async fn ws(&self, token: &str) -> WsClient {
        WsClient::connect(&self.server.base, token).await
    }

    pub(crate) async fn live_rooms(&self) -> Vec<Value> {
        let body: Value = self.server.get("/api/v1/rooms").await.json().await.unwrap();
        body["rooms"].as_array().cloned().unwrap_or_default()
    }

    /// The id of the room a verified user owns.
    pub(crate) fn room_of(&self, user: u64) -> u64 {
        self.server
            .app()
            .store
            .user(UserId(user))
            .expect("the store answers")
            .expect("the user exists")
            .room_id
            .expect("a verified user has a room")
            .0
    }

    /// A host whose room is starting, and stays so until the returned gate opens (the media
    /// plane's `start_distribution` waits at it); with the room id.
    async fn starting_host(&self, name: &str) -> (WsClient, u64, Gate) {
        let gate = Gate::default();
        self.media
            .script(Call::StartDistribution, [Behaviour::Gated(gate.clone())]);
        let (host_id, token) = self.user(name).await;
        let room = self.room_of(host_id);
        let mut host = self.ws(&token).await;
        host.send(json!({"type": "start_live"})).await;
        gate.arrived().await;
        (host, room, gate)
    }

    /// A host who is live, with the room id.
    pub(crate) async fn live_host(&self, name: &str) -> (WsClient, u64) {
        let (_, token) = self.user(name).await;
        let mut host = self.ws(&token).await;
        host.send(json!({"type": "start_live", "title": "Friday jam"}))
            .await;
        let started = host.expect("live_started").await;
        let info_room = started["room_id"].as_u64().expect("room id");
        (host, info_room)
    }
}

pub(crate) async fn join(client: &mut WsClient, room: u64) -> Value {
    client
        .send(json!({"type": "join_room", "room_id": room}))
        .await;
    client.expect("room_info").await
}

#[tokio::test]
async fn a_host_goes_live_viewers_watch_chat_and_the_room_closes_with_a_recording() {
    let site = Site::start().await;
    let (_, host_token) = site.user("host01").await;
    let mut host = site.ws(&host_token).await;
    host.send(json!({"type": "start_live", "title": "Friday jam"}))
        .await;
    let started = host.expect("live_started").await;
    let room = started["room_id"].as_u64().unwrap();
    let watch_url = started["watch_url"].as_str().unwrap().to_owned();
    assert!(
        started["push_url"].as_str().unwrap().starts_with("rtmp://"),
        "{started}"
    );
    assert!(watch_url.ends_with(".m3u8"), "{started}");

    let listed = site.live_rooms().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["room_id"], room);
    assert_eq!(listed[0]["title"], "Friday jam");
    assert_eq!(listed[0]["host"]["nickname"], "host01");
    let page = site.server.get("/").await.text().await.unwrap();
    assert!(
        page.contains("Friday jam"),
        "the home page lists the live room"
    );

    let mut guest = site.ws(&site.guest().await).await;
    let info = join(&mut guest, room).await;
    assert_eq!(info["watch_url"], watch_url.as_str());
    assert_eq!(info["state"], "live");
    assert_eq!(
        info["on_air"], false,
        "live, but no picture arrives from the scripted media plane"
    );
    assert_eq!(info["you_are_host"], false);
    assert!(
        info.get("connect_queue").is_none(),
        "only the host sees the queue"
    );
    host.expect_where("audience", |m| m["count"] == 2).await;

    let (_, fan_token) = site.user("fan01").await;
    let mut fan = site.ws(&fan_token).await;
    join(&mut fan, room).await;
    fan.send(json!({"type": "danmaku", "text": "  hello\u{7} 你好  "}))
        .await;
    for client in [&mut host, &mut guest, &mut fan] {
        let d = client.expect("danmaku").await;
        assert_eq!(
            d["text"], "hello 你好",
            "control characters stripped, trimmed"
        );
        assert_eq!(d["nickname"], "fan01");
    }
    fan.send(json!({"type": "gift", "gift": "flower", "count": 3}))
        .await;
    let gift = host.expect("gift").await;
    assert_eq!(
        (gift["value"].as_u64(), gift["icon"].as_str()),
        (Some(15), Some("🌸"))
    );
    fan.send(json!({"type": "like"})).await;
    assert_eq!(guest.expect("like").await["count"], 1);

    guest
        .send(json!({"type": "danmaku", "text": "me too"}))
        .await;
    assert_eq!(guest.expect_error("danmaku").await, "registered_only");

    // A late joiner sees the recent danmaku and the top givers.
    let mut late = site.ws(&site.guest().await).await;
    let info = join(&mut late, room).await;
    assert_eq!(info["recent_danmaku"][0]["text"], "hello 你好");
    assert_eq!(info["top_givers"][0]["nickname"], "fan01");
    assert_eq!(info["top_givers"][0]["value"], 15);

    host.send(json!({"type": "close_room"})).await;
    for client in [&mut guest, &mut fan, &mut late] {
        client.expect("room_closed").await;
    }
    let record = wait_for(|| async {
        let records = site.server.app().store.records().unwrap();
        records.into_iter().next()
    })
    .await;
    assert_eq!(
        record.title, "host01's room · Friday jam",
        "the room's name and the live title"
    );
    assert!(record.url.ends_with(".mp4"));
    assert!(site.live_rooms().await.is_empty());
    let danmaku = site.server.app().store.danmaku_of(record.live).unwrap();
    assert_eq!(danmaku.len(), 1, "the danmaku is stored for the replay");
    assert_eq!(danmaku[0].text, "hello 你好");
    let gifts = site.server.app().store.gifts_of(record.live).unwrap();
    assert_eq!((gifts.len(), gifts[0].count, gifts[0].value), (1, 3, 15));
    let order: Vec<Call> = site.media.calls().into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        order,
        [
            Call::NewStream,
            Call::StartDistribution,
            Call::StopDistribution,
            Call::Recording
        ]
    );
}

#[tokio::test]
async fn stop_live_then_start_again() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host02").await;
    let mut viewer = site.ws(&site.guest().await).await;
    join(&mut viewer, room).await;
    host.send(json!({"type": "stop_live"})).await;
    viewer.expect("live_stopped").await;
    assert!(site.live_rooms().await.is_empty());
    host.send(json!({"type": "start_live"})).await;
    let again = host.expect("live_started").await;
    assert_eq!(
        viewer.expect("live_started").await["watch_url"],
        again["watch_url"]
    );
    assert_eq!(site.live_rooms().await.len(), 1);
    assert_eq!(site.media.count(Call::NewStream), 2);
}

#[tokio::test]
async fn room_info_asked_while_starting_waits_for_the_whole_answer() {
    let site = Site::start().await;
    let (mut host, room, gate) = site.starting_host("host03").await;
    // The room is starting: the join reaches it (the pong comes after the reader handed the join
    // on) and waits for the start to be decided.
    let mut viewer = site.ws(&site.guest().await).await;
    viewer
        .send(json!({"type": "join_room", "room_id": room}))
        .await;
    let before = viewer.sync().await;
    assert!(
        before.is_empty(),
        "nothing is answered while starting: {before:?}"
    );
    gate.open();
    let info = viewer.expect("room_info").await;
    assert_eq!(info["state"], "live", "{info}");
    assert!(info["watch_url"].as_str().is_some(), "{info}");
    host.expect("live_started").await;
}

#[tokio::test]
async fn a_failing_media_plane_is_retried_then_reported_and_no_room_stays_half_open() {
    let site = Site::start().await;
    let failure = || Behaviour::Fail(MediaError::Unavailable("down".into()));
    site.media
        .script(Call::NewStream, [failure(), failure(), failure()]);
    let (_, token) = site.user("host04").await;
    let mut host = site.ws(&token).await;
    host.send(json!({"type": "start_live"})).await;
    assert_eq!(host.expect_error("start_live").await, "media_unavailable");
    assert_eq!(site.media.count(Call::NewStream), 3, "three attempts");
    assert!(site.live_rooms().await.is_empty());

    // The distributor fails twice, then works: the start succeeds after retries.
    site.media
        .script(Call::StartDistribution, [failure(), failure()]);
    host.send(json!({"type": "start_live"})).await;
    host.expect("live_started").await;
    assert_eq!(site.media.count(Call::StartDistribution), 3);
    assert_eq!(site.live_rooms().await.len(), 1);
}

#[tokio::test]
async fn a_hanging_distributor_times_out_and_the_host_is_told() {
    let site = Site::start_with(|c| c.rooms.media_attempts = 2).await;
    site.media
        .script(Call::StartDistribution, [Behaviour::Hang, Behaviour::Hang]);
    let (_, token) = site.user("host05").await;
    let mut host = site.ws(&token).await;
    host.send(json!({"type": "start_live"})).await;
    assert_eq!(host.expect_error("start_live").await, "media_unavailable");
    assert!(site.live_rooms().await.is_empty());
}

#[tokio::test]
async fn start_live_twice_is_handled_once() {
    let site = Site::start().await;
    let gate = Gate::default();
    site.media
        .script(Call::StartDistribution, [Behaviour::Gated(gate.clone())]);
    let (_, token) = site.user("host06").await;
    let mut host = site.ws(&token).await;
    host.send(json!({"type": "start_live"})).await;
    gate.arrived().await;
    host.send(json!({"type": "start_live"})).await;
    gate.open();
    host.expect("live_started").await;
    assert_eq!(host.expect_error("start_live").await, "already_live");
    assert_eq!(site.media.count(Call::NewStream), 1);
}

#[tokio::test]
async fn co_streaming_switches_everyone_to_the_mix_and_back() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host07").await;
    let host_url = site.live_rooms().await[0]["room_id"].clone();
    assert_eq!(host_url, room);
    let (fan_id, fan_token) = site.user("fan07").await;
    let mut fan = site.ws(&fan_token).await;
    let info = join(&mut fan, room).await;
    let host_watch = info["watch_url"].as_str().unwrap().to_owned();
    let mut viewer = site.ws(&site.guest().await).await;
    join(&mut viewer, room).await;

    viewer.send(json!({"type": "apply_connect"})).await;
    assert_eq!(
        viewer.expect_error("apply_connect").await,
        "registered_only"
    );

    fan.send(json!({"type": "apply_connect"})).await;
    let request = host.expect("connect_request").await;
    assert_eq!(request["user_id"], fan_id);
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    let started = fan.expect("connect_started").await;
    assert!(
        started["push_url"].as_str().unwrap().starts_with("rtmp://"),
        "the guest gets push credentials"
    );
    let mixed = started["watch_url"].as_str().unwrap().to_owned();
    assert_ne!(mixed, host_watch);
    let seen = viewer.expect("connect_started").await;
    assert!(
        seen.get("push_url").is_none(),
        "viewers do not get the guest's credentials"
    );
    assert_eq!(
        viewer.expect("watch_url").await["watch_url"],
        mixed.as_str()
    );
    assert_eq!(host.expect_error("answer_connect").await, "no_such_request");
    assert_eq!(
        site.media.count(Call::StartMix),
        1,
        "the double answer is handled once"
    );
    let (_, spec) = site
        .media
        .calls()
        .into_iter()
        .find(|(c, _)| *c == Call::StartMix)
        .unwrap();
    assert!(
        spec.contains("host") && spec.contains("guest") && spec.contains("mix"),
        "{spec}"
    );
    assert_eq!(site.live_rooms().await[0]["state"], "co_streaming");

    fan.send(json!({"type": "end_connect"})).await;
    let ended = viewer.expect("connect_ended").await;
    assert_eq!(ended["watch_url"], host_watch.as_str());
    assert_eq!(
        viewer.expect("watch_url").await["watch_url"],
        host_watch.as_str()
    );
    wait_for(|| async { (site.media.count(Call::CloseMix) == 1).then_some(()) }).await;
    assert_eq!(site.live_rooms().await[0]["state"], "live");
}

#[tokio::test]
async fn refused_and_queued_applicants() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host08").await;
    let (a_id, a_token) = site.user("fan08a").await;
    let (b_id, b_token) = site.user("fan08b").await;
    let mut a = site.ws(&a_token).await;
    let mut b = site.ws(&b_token).await;
    join(&mut a, room).await;
    join(&mut b, room).await;
    a.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    b.send(json!({"type": "apply_connect"})).await;
    let second = host.expect("connect_request").await;
    let queue: Vec<u64> = second["queue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].as_u64().unwrap())
        .collect();
    assert_eq!(queue, [a_id, b_id], "the host sees both, in order");

    host.send(json!({"type": "answer_connect", "user_id": a_id, "accept": false}))
        .await;
    assert_eq!(a.expect("connect_answer").await["accept"], false);
    host.send(json!({"type": "answer_connect", "user_id": b_id, "accept": true}))
        .await;
    b.expect("connect_started").await;
    // The guest's disconnect ends the co-stream too.
    drop(b);
    assert_eq!(host.expect("connect_ended").await["type"], "connect_ended");
}

#[tokio::test]
async fn a_failing_mixer_refuses_the_guest_and_keeps_the_room_live() {
    let site = Site::start().await;
    site.media.script(
        Call::StartMix,
        [Behaviour::Fail(MediaError::Refused("no".into()))],
    );
    let (mut host, room) = site.live_host("host09").await;
    let (fan_id, token) = site.user("fan09").await;
    let mut fan = site.ws(&token).await;
    join(&mut fan, room).await;
    fan.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    let answer = fan.expect("connect_answer").await;
    assert_eq!(
        (answer["accept"].as_bool(), answer["reason"].as_str()),
        (Some(false), Some("media_unavailable"))
    );
    assert_eq!(
        host.expect_error("answer_connect").await,
        "media_unavailable"
    );
    assert_eq!(site.live_rooms().await[0]["state"], "live");
}

#[tokio::test]
async fn malformed_and_unknown_messages_get_errors_and_the_room_keeps_serving() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host10").await;
    let (_, token) = site.user("fan10").await;
    let mut fan = site.ws(&token).await;
    join(&mut fan, room).await;
    let mut troll = site.ws(&site.guest().await).await;
    join(&mut troll, room).await;
    for junk in [
        "not json",
        "{}",
        "[]",
        r#"{"type": 42}"#,
        r#"{"type": "join_room", "room_id": "seven"}"#,
        r#"{"type": "danmaku"}"#,
        r#"{"type": "gift", "gift": "heart", "count": -1}"#,
        "\u{0}\u{1}\u{2}",
    ] {
        troll.send_text(junk).await;
        assert_eq!(troll.expect("error").await["code"], "bad_message", "{junk}");
    }
    troll.send(json!({"type": "self_destruct"})).await;
    assert_eq!(troll.expect("error").await["code"], "unknown_type");
    troll.send(json!({"type": "close_room"})).await;
    assert_eq!(troll.expect_error("close_room").await, "host_only");
    troll.send(json!({"type": "gift", "gift": "yacht"})).await;
    assert_eq!(troll.expect_error("gift").await, "unknown_gift");
    fan.send(json!({"type": "danmaku", "text": "x".repeat(101)}))
        .await;
    assert_eq!(fan.expect_error("danmaku").await, "danmaku_too_long");
    fan.send(json!({"type": "danmaku", "text": "still here"}))
        .await;
    assert_eq!(host.expect("danmaku").await["text"], "still here");
    assert_eq!(troll.expect("danmaku").await["text"], "still here");
}

#[tokio::test]
async fn banned_users_cannot_chat_or_go_live() {
    let site = Site::start().await;
    let (_, room) = {
        let (host, room) = site.live_host("host11").await;
        (host, room)
    };
    let (muted_id, muted_token) = site.user("muted11").await;
    let (streamer_id, streamer_token) = site.user("nostream11").await;
    let rooms = &site.server.app().rooms;
    let ban = |scope| Ban {
        scope,
        reason: "rude".into(),
        created_at: 0,
        expires_at: None,
        lifted_at: None,
    };
    rooms
        .add_ban(UserId(muted_id), ban(BanScope::Chat), None)
        .await
        .unwrap();
    rooms
        .add_ban(UserId(streamer_id), ban(BanScope::Stream), None)
        .await
        .unwrap();

    let mut muted = site.ws(&muted_token).await;
    join(&mut muted, room).await;
    muted.send(json!({"type": "danmaku", "text": "hi"})).await;
    assert_eq!(muted.expect_error("danmaku").await, "chat_banned");
    muted.send(json!({"type": "apply_connect"})).await;
    assert_eq!(muted.expect_error("apply_connect").await, "chat_banned");

    let mut streamer = site.ws(&streamer_token).await;
    streamer.send(json!({"type": "start_live"})).await;
    let banned = streamer.expect("banned").await;
    assert_eq!(
        (banned["scope"].as_str(), banned["reason"].as_str()),
        (Some("stream"), Some("rude"))
    );
    let (_, guest_token) = (0, site.guest().await);
    let mut guest = site.ws(&guest_token).await;
    guest.send(json!({"type": "start_live"})).await;
    assert_eq!(guest.expect_error("start_live").await, "registered_only");
}

#[tokio::test]
async fn a_host_who_reconnects_within_the_grace_period_keeps_the_room() {
    let site = Site::start_with(|c| c.rooms.host_grace_secs = 3).await;
    let (_, token) = site.user("host12").await;
    let mut host = site.ws(&token).await;
    host.send(json!({"type": "start_live"})).await;
    let room = host.expect("live_started").await["room_id"]
        .as_u64()
        .unwrap();
    let mut viewer = site.ws(&site.guest().await).await;
    join(&mut viewer, room).await;
    drop(host);
    // The room noticed the host leaving.
    viewer.expect_where("audience", |m| m["count"] == 1).await;
    let mut back = site.ws(&token).await;
    let info = join(&mut back, room).await;
    assert_eq!(
        (info["state"].as_str(), info["you_are_host"].as_bool()),
        (Some("live"), Some(true))
    );
    viewer
        .expect_none("room_closed", Duration::from_secs(4))
        .await;
    back.send(json!({"type": "stop_live"})).await;
    viewer.expect("live_stopped").await;

    // Gone for longer than the grace period: the room closes itself.
    back.send(json!({"type": "start_live"})).await;
    back.expect("live_started").await;
    drop(back);
    let closed = viewer.expect("room_closed").await;
    assert_eq!(closed["reason"], "the host left", "{closed}");
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_dropped_and_the_others_keep_receiving() {
    let site = Site::start_with(|c| {
        c.rooms.client_queue = 4;
        c.rooms.danmaku_max_chars = 8000;
        c.rooms.max_frame_bytes = 65536;
        c.rooms.recent_danmaku = 1;
        c.rooms.chat_per_window = 100_000;
    })
    .await;
    let (mut host, room) = site.live_host("host13").await;
    // A tiny receive buffer: the kernel holds little for a client that reads nothing, so the
    // server's queue for it overflows whatever the machine's default buffer sizes.
    let mut stalled =
        WsClient::connect_with_receive_buffer(&site.server.base, &site.guest().await, 4096).await;
    join(&mut stalled, room).await;
    let (_, token) = site.user("talker13").await;
    let mut talker = site.ws(&token).await;
    join(&mut talker, room).await;
    let text = "字".repeat(8000);
    // `stalled` reads nothing; the host and the talker read everything.
    let mut dropped = false;
    for round in 0..1500 {
        talker.send(json!({"type": "danmaku", "text": text})).await;
        assert_eq!(
            talker.expect("danmaku").await["text"]
                .as_str()
                .map(str::len),
            Some(24000)
        );
        host.expect("danmaku").await;
        if round % 20 == 19 {
            let audience = site.live_rooms().await[0]["audience"].as_u64().unwrap();
            if audience == 2 {
                dropped = true;
                break;
            }
        }
    }
    assert!(dropped, "the stalled client was never dropped");
    // Reading again, the client drains what piled up in the kernel, then finds the close frame.
    stalled.set_receive_buffer(4 << 20);
    assert_eq!(stalled.expect_closed().await, (1008, "too_slow".into()));
    talker
        .send(json!({"type": "danmaku", "text": "after"}))
        .await;
    assert_eq!(host.expect("danmaku").await["text"], "after");
}

#[tokio::test]
async fn shutting_down_closes_every_room_and_asks_for_the_recordings() {
    let site = Site::start().await;
    let (_host_a, _) = site.live_host("host14a").await;
    let (_host_b, room_b) = site.live_host("host14b").await;
    let mut viewer = site.ws(&site.guest().await).await;
    join(&mut viewer, room_b).await;
    let media = site.media.clone();
    let data = site.server.stop_keep_data().await;
    assert_eq!(viewer.expect("room_closed").await["room_id"], room_b);
    assert_eq!(media.count(Call::Recording), 2);
    let store = Store::open(data.path()).expect("the store was closed cleanly");
    assert_eq!(store.records().unwrap().len(), 2);
}

#[tokio::test]
async fn a_host_can_go_live_again_on_the_same_connection_after_closing() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host16").await;
    host.send(json!({"type": "close_room"})).await;
    wait_for(|| async { (site.media.count(Call::Recording) == 1).then_some(()) }).await;
    host.send(json!({"type": "danmaku", "text": "anyone?"}))
        .await;
    assert_eq!(host.expect_error("danmaku").await, "not_in_room");
    host.send(json!({"type": "start_live"})).await;
    assert_eq!(host.expect("live_started").await["room_id"], room);
    assert_eq!(site.live_rooms().await.len(), 1);
}

#[tokio::test]
async fn a_crowd_joining_is_announced_in_a_few_audience_events() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host17").await;
    let mut crowd = Vec::new();
    for _ in 0..30 {
        let mut viewer = site.ws(&site.guest().await).await;
        viewer
            .send(json!({"type": "join_room", "room_id": room}))
            .await;
        crowd.push(viewer);
    }
    let mut counts = Vec::new();
    loop {
        let audience = host.expect("audience").await;
        let count = audience["count"].as_u64().unwrap();
        counts.push(count);
        if count == 31 {
            break;
        }
    }
    assert!(
        counts.len() < 30,
        "one event per join instead of coalesced: {counts:?}"
    );
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
}

/// A crowd that arrives within one tick (here: while the room is starting, so every join is
/// at the room before the first tick after the start) is announced in exactly one event.
#[tokio::test]
async fn a_crowd_joining_within_a_tick_is_one_audience_event() {
    let site = Site::start().await;
    let (mut host, room, gate) = site.starting_host("host20").await;
    // The host's own arrival is announced first, on its own tick.
    assert_eq!(host.expect("audience").await["count"], 1);
    let mut crowd = Vec::new();
    for _ in 0..30 {
        let mut viewer = site.ws(&site.guest().await).await;
        viewer
            .send(json!({"type": "join_room", "room_id": room}))
            .await;
        assert!(viewer.sync().await.is_empty());
        crowd.push(viewer);
    }
    gate.open();
    host.expect("live_started").await;
    assert_eq!(host.expect("audience").await["count"], 31);
    host.expect_none("audience", Duration::from_secs(2)).await;
    for viewer in &mut crowd {
        viewer.expect("room_info").await;
    }
}

#[tokio::test]
async fn ws_needs_a_session_and_refuses_other_sites() {
    let site = Site::start().await;
    assert!(WsClient::try_connect(&site.server.base, &"0".repeat(64))
        .await
        .is_err());
    let res = site
        .server
        .client
        .get(site.server.url("/ws"))
        .header("origin", "http://evil.example")
        .header("accept", "application/json")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "cross_origin", "{body}");
}

#[tokio::test]
async fn the_room_api_shows_one_room_with_its_live_state() {
    let site = Site::start().await;
    let (_host, room) = site.live_host("host15").await;
    let body: Value = site
        .server
        .get(&format!("/api/v1/rooms/{room}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["room_id"], room);
    assert_eq!(body["live"]["state"], "live");
    let missing = site.server.get("/api/v1/rooms/999").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "room_not_found", "{body}");
}

#[tokio::test]
async fn chat_is_rate_limited_per_user_and_leaving_lowers_the_audience() {
    let site = Site::start_with(|c| {
        c.rooms.chat_per_window = 3;
        c.rooms.chat_window_secs = 60;
    })
    .await;
    let (mut host, room) = site.live_host("host18").await;
    let (_, token) = site.user("chatty18").await;
    let mut chatty = site.ws(&token).await;
    join(&mut chatty, room).await;
    for n in 0..3 {
        chatty
            .send(json!({"type": "danmaku", "text": format!("msg {n}")}))
            .await;
        chatty.expect("danmaku").await;
    }
    chatty.send(json!({"type": "like"})).await;
    assert_eq!(chatty.expect_error("like").await, "rate_limited");
    host.send(json!({"type": "danmaku", "text": "the host is not limited by others"}))
        .await;
    host.expect("danmaku").await;

    host.expect_where("audience", |m| m["count"] == 2).await;
    chatty.send(json!({"type": "leave_room"})).await;
    host.expect_where("audience", |m| m["count"] == 1).await;
    chatty
        .send(json!({"type": "danmaku", "text": "still here?"}))
        .await;
    assert_eq!(chatty.expect_error("danmaku").await, "not_in_room");
}

/// Each media step of a co-stream failing: the guest is refused, the host told, the room stays
/// live; a failure while ending a co-stream or closing is reported and nothing stays half-done.
#[tokio::test]
async fn every_co_stream_and_close_step_may_fail() {
    let site = Site::start().await;
    let failure = || Behaviour::Fail(MediaError::Refused("no".into()));
    let (mut host, room) = site.live_host("host19").await;
    let (fan_id, token) = site.user("fan19").await;
    let mut fan = site.ws(&token).await;
    join(&mut fan, room).await;
    // The co-stream asks for guest credentials, mix credentials (both NewStream), the mix,
    // then the mixed stream's distribution.
    let steps: [(Call, usize); 3] = [
        (Call::NewStream, 1),
        (Call::StartMix, 0),
        (Call::StartDistribution, 0),
    ];
    for (call, skip) in steps {
        let mut script = vec![Behaviour::Succeed; skip];
        script.push(failure());
        site.media.script(call, script);
        fan.send(json!({"type": "apply_connect"})).await;
        host.expect("connect_request").await;
        host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
            .await;
        let answer = fan.expect("connect_answer").await;
        assert_eq!(answer["accept"], false, "{call:?}");
        assert_eq!(
            host.expect_error("answer_connect").await,
            "media_unavailable"
        );
        assert_eq!(site.live_rooms().await[0]["state"], "live", "{call:?}");
    }
    // A failing close of the mix at the end of a co-stream is reported to the host.
    site.media.script(Call::CloseMix, [failure()]);
    fan.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    fan.expect("connect_started").await;
    host.send(json!({"type": "end_connect"})).await;
    fan.expect("connect_ended").await;
    let error = host.expect_error_code("media_unavailable").await;
    assert!(
        error["message"].as_str().unwrap().contains("close"),
        "{error}"
    );
    // Closing with a failing distributor and a failing recording still closes the room.
    site.media.script(Call::StopDistribution, [failure()]);
    site.media.script(Call::Recording, [failure()]);
    host.send(json!({"type": "close_room"})).await;
    fan.expect("room_closed").await;
    wait_for(|| async { (site.media.count(Call::Recording) == 1).then_some(()) }).await;
    assert!(site.live_rooms().await.is_empty());
    assert!(
        site.server.app().store.records().unwrap().is_empty(),
        "no recording, no record"
    );
}
