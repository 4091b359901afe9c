//! Rooms under abuse: one user with many sockets, sessions that end while their sockets are
//! open, bans given while the banned are in a room, disguised danmaku, joins racing a room's
//! idle end, a co-stream start that fails half-way, and sessions a stopped server left without
//! a recording. Each test also shows a well-behaved client still served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roommanager::media::scripted::{Behaviour, Call, Gate};
use roommanager::media::MediaError;
use roommanager::model::{Ban, BanScope, RoomId, StoredDanmaku, UserId};
use roommanager::store::{ChatEntry, Store};
use serde_json::{json, Value};

use crate::accounts::{get_auth, login_token, patch_json, post_json, relaxed};
use crate::common::tools::{self, Tool};
use crate::common::ws::WsClient;
use crate::common::{wait_for, TestServer};
use crate::rooms::{join, Site};

/// The host's connection after going live with `token`, and the room id.
async fn go_live(site: &Site, token: &str) -> (WsClient, u64) {
    let mut host = site.ws(token).await;
    host.send(json!({"type": "start_live", "title": "abuse"}))
        .await;
    let started = host.expect("live_started").await;
    let room = started["room_id"].as_u64().expect("a room id");
    (host, room)
}

/// One guest token opens many sockets: only `rooms.max_connections_per_user` of them get into
/// the room; the audience and the directory count the guest once; other people still join.
#[tokio::test]
async fn one_user_with_many_sockets_counts_once_and_is_capped() {
    let site = Site::start_with(|c| c.rooms.max_connections_per_user = 3).await;
    let (_, host_token) = site.user("cap01").await;
    let (mut host, room) = go_live(&site, &host_token).await;
    let token = site.guest().await;
    let mut admitted = Vec::new();
    for _ in 0..3 {
        let mut socket = site.ws(&token).await;
        let info = join(&mut socket, room).await;
        assert_eq!(info["audience"], 2, "host + one guest: {info}");
        admitted.push(socket);
    }
    let mut refused = Vec::new();
    for _ in 0..12 {
        let mut socket = site.ws(&token).await;
        socket
            .send(json!({"type": "join_room", "room_id": room}))
            .await;
        let error = socket.expect_error_code("too_many_connections").await;
        assert_eq!(error["about"], "join_room", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains('3'),
            "the message says how many: {error}"
        );
        refused.push(socket);
    }
    host.expect_where("audience", |m| m["count"] == 2).await;
    assert_eq!(site.live_rooms().await[0]["audience"], 2);
    for socket in &mut refused {
        socket.sync().await;
    }

    // Someone else still gets in, and is counted.
    let mut other = site.ws(&site.guest().await).await;
    assert_eq!(join(&mut other, room).await["audience"], 3);
    host.expect_where("audience", |m| m["count"] == 3).await;
    assert_eq!(site.live_rooms().await[0]["audience"], 3);

    // The host's own extra connections count once too.
    let mut second_tab = site.ws(&host_token).await;
    assert_eq!(join(&mut second_tab, room).await["audience"], 3);

    // When one of the guest's connections leaves, another may take its place; the count stays.
    let mut leaving = admitted.pop().expect("three admitted");
    leaving.send(json!({"type": "leave_room"})).await;
    leaving.sync().await;
    let mut replacement = refused.pop().expect("refused sockets");
    let info = join(&mut replacement, room).await;
    assert_eq!(info["audience"], 3, "{info}");
    // All of the guest's connections gone: the count drops by one person.
    drop(admitted);
    drop(replacement);
    host.expect_where("audience", |m| m["count"] == 2).await;
    assert_eq!(site.live_rooms().await[0]["audience"], 2);
}

/// `join_room`s racing an idle room's end (here: the room ends the moment its last person
/// leaves) are never lost: each is answered with `room_info`, by the ending room or by the one
/// opened again. Four clients join and leave over and over on a multi-threaded server, so joins
/// keep landing while the room ends (dozens of ends per run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_racing_an_idle_rooms_end_are_never_lost() {
    const ROUNDS: usize = 120;
    const CLIENTS: usize = 4;
    let site = Site::start_with(|c| c.rooms.idle_close_secs = 0).await;
    let (host_id, _) = site.user("idle01").await;
    let room = site.room_of(host_id);
    // Counts the room's ends as the registry shows them (a lower bound: ends between two looks
    // are missed).
    let app = site.server.app().clone();
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = tokio::spawn({
        let watching = watching.clone();
        async move {
            let mut ends = 0usize;
            let mut was_open = false;
            while watching.load(Ordering::Relaxed) {
                let open = app.rooms.open_rooms() > 0;
                if was_open && !open {
                    ends += 1;
                }
                was_open = open;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            ends
        }
    });
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(site.ws(&site.guest().await).await);
    }
    let runs = clients.into_iter().map(|mut client| {
        tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let info = join(&mut client, room).await;
                assert_eq!(info["room_id"], room);
                client.send(json!({"type": "leave_room"})).await;
            }
            client.sync().await;
        })
    });
    for run in runs.collect::<Vec<_>>() {
        run.await.expect("every join was answered");
    }
    watching.store(false, Ordering::Relaxed);
    let ends = watcher.await.expect("the watcher ends");
    assert!(
        ends >= 10,
        "the room ended only {ends} times; the race was not provoked"
    );
    // And a room that stays in use is served as usual.
    let mut viewer = site.ws(&site.guest().await).await;
    assert_eq!(join(&mut viewer, room).await["state"], "idle");
}

/// The scripted media plane's calls from the `from`-th on.
fn calls_since(site: &Site, from: usize) -> Vec<(Call, String)> {
    site.media.calls().into_iter().skip(from).collect()
}

/// The streams a call to `start_mix` named: (guest, mixed), from its `host+guest=mixed`.
fn mix_streams(spec: &str) -> (String, String) {
    let (_, rest) = spec.split_once('+').expect("host+guest=mixed");
    let (guest, mixed) = rest.split_once('=').expect("host+guest=mixed");
    (guest.to_owned(), mixed.to_owned())
}

/// A co-stream whose start fails at any step after the guest got credentials: before the host
/// hears of the failure, the mix is closed and the guest's (and the mix's) one-off streams are
/// ended at the media plane, which revokes their credentials. A co-stream that comes up after
/// the live session ended is revoked the same way. A later co-stream works and keeps its own.
#[tokio::test]
async fn a_co_stream_start_that_fails_half_way_revokes_the_one_off_credentials_at_once() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("revoke01").await;
    let (fan_id, token) = site.user("revokefan01").await;
    let mut fan = site.ws(&token).await;
    join(&mut fan, room).await;
    let refused = || Behaviour::Fail(MediaError::Refused("no".into()));
    let guest_prefix = format!("r{room}-guest-");
    // (the failing call, how, calls of that kind let through before it)
    let cases = [
        (Call::NewStream, refused(), 1),
        (Call::StartMix, refused(), 0),
        (Call::StartMix, Behaviour::Hang, 0),
        (Call::StartDistribution, refused(), 0),
    ];
    for (failing, behaviour, skip) in cases {
        let label = format!("{failing:?} {behaviour:?}");
        let mut script = vec![Behaviour::Succeed; skip];
        script.push(behaviour);
        site.media.script(failing, script);
        let before = site.media.calls().len();
        fan.send(json!({"type": "apply_connect"})).await;
        host.expect("connect_request").await;
        host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
            .await;
        assert_eq!(fan.expect("connect_answer").await["accept"], false);
        assert_eq!(
            host.expect_error("answer_connect").await,
            "media_unavailable"
        );
        // Already done when the failure is told: no waiting here.
        let calls = calls_since(&site, before);
        let revoked: Vec<&str> = calls
            .iter()
            .filter(|(c, _)| *c == Call::StopDistribution)
            .map(|(_, live)| live.as_str())
            .collect();
        match calls.iter().find(|(c, _)| *c == Call::StartMix) {
            Some((_, spec)) => {
                let (guest, mixed) = mix_streams(spec);
                assert!(guest.starts_with(&guest_prefix), "{label}: {spec}");
                assert_eq!(revoked, [mixed.as_str(), guest.as_str()], "{label}");
                let closed = calls
                    .iter()
                    .position(|c| *c == (Call::CloseMix, mixed.clone()));
                let first_revoke = calls.iter().position(|(c, _)| *c == Call::StopDistribution);
                assert!(
                    closed < first_revoke,
                    "{label}: the mix closes first: {calls:?}"
                );
            }
            None => {
                assert_eq!(revoked.len(), 1, "{label}: {calls:?}");
                assert!(revoked[0].starts_with(&guest_prefix), "{label}: {calls:?}");
            }
        }
        assert_eq!(site.live_rooms().await[0]["state"], "live", "{label}");
    }

    // A co-stream that works keeps its credentials until it ends.
    let before = site.media.calls().len();
    fan.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    fan.expect("connect_started").await;
    host.sync().await;
    assert_eq!(site.live_rooms().await[0]["state"], "co_streaming");
    let calls = calls_since(&site, before);
    assert!(
        !calls.iter().any(|(c, _)| *c == Call::StopDistribution),
        "{calls:?}"
    );
    fan.send(json!({"type": "end_connect"})).await;
    fan.expect("connect_ended").await;

    // The live session ends while a co-stream is being set up: it comes up, and is undone and
    // revoked at once.
    let gate = Gate::default();
    site.media
        .script(Call::StartDistribution, [Behaviour::Gated(gate.clone())]);
    wait_for(|| async { (site.media.count(Call::CloseMix) == 4).then_some(()) }).await;
    let before = site.media.calls().len();
    fan.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    gate.arrived().await;
    host.send(json!({"type": "stop_live"})).await;
    fan.expect("live_stopped").await;
    gate.open();
    let (guest, mixed) = calls_since(&site, before)
        .into_iter()
        .find(|(c, _)| *c == Call::StartMix)
        .map(|(_, spec)| mix_streams(&spec))
        .expect("the mix was started");
    wait_for(|| async {
        let revoked: Vec<String> = calls_since(&site, before)
            .into_iter()
            .filter(|(c, _)| *c == Call::StopDistribution)
            .map(|(_, live)| live)
            .collect();
        (revoked.contains(&guest) && revoked.contains(&mixed)).then_some(())
    })
    .await;
    assert!(calls_since(&site, before).contains(&(Call::CloseMix, mixed)));
    fan.expect_none("connect_started", Duration::from_millis(200))
        .await;
}

/// Live sessions a stopped server left without a recording are finished at the next start and
/// listed: one whose recording was not fetched before the server stopped, and one the server
/// died in the middle of (never ended: it ends at its last sign of life). A session listed
/// before is left alone, one going live after the start is not touched, and a further restart
/// lists nothing twice.
#[tokio::test]
async fn sessions_a_stopped_server_left_without_a_recording_are_listed_at_the_next_start() {
    const STARTED: u64 = 1_795_700_000;
    let site = Site::start().await;
    let (mut listed, _) = site.live_host("left01").await;
    listed.send(json!({"type": "close_room"})).await;
    listed.expect("room_closed").await;
    wait_for(|| async { (site.server.app().store.records().unwrap().len() == 1).then_some(()) })
        .await;
    // The server stops before the recording is fetched: the media plane does not answer.
    site.media.script(Call::Recording, [Behaviour::Hang]);
    let (_stopped, _) = site.live_host("left02").await;
    // A session the server died in, as it leaves it: never ended, one danmaku 42 s in.
    let (crashed_host, _) = site.user("left03").await;
    let store = site.server.app().store.clone();
    let crashed = store
        .start_live_session(
            RoomId(site.room_of(crashed_host)),
            UserId(crashed_host),
            "crashed".into(),
            "r-crashed".into(),
            STARTED,
        )
        .unwrap();
    store
        .append_chat(&[ChatEntry::Danmaku(StoredDanmaku {
            live: crashed.id,
            id: 0,
            user_id: UserId(crashed_host),
            nickname: "left03".into(),
            text: "still here".into(),
            offset_ms: 42_000,
            at: STARTED + 42,
        })])
        .unwrap();
    drop(store);

    let site = site.restart(|_| {}).await;
    let gate = Gate::default();
    site.media
        .script(Call::Recording, [Behaviour::Gated(gate.clone())]);
    // Someone goes live while the leftovers are being finished.
    let (_live, live_room) = site.live_host("left04").await;
    gate.arrived().await;
    gate.open();
    let store = site.server.app().store.clone();
    let records = wait_for(|| async {
        let records = store.records().unwrap();
        (records.len() == 3).then_some(records)
    })
    .await;
    let asked: Vec<String> = site
        .media
        .calls()
        .into_iter()
        .filter(|(c, _)| *c == Call::Recording)
        .map(|(_, live)| live)
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked[0].starts_with("r") && asked[0].contains("-host-"),
        "{asked:?}"
    );
    assert_eq!(asked[1], "r-crashed");
    let titles: Vec<&str> = records.iter().map(|r| r.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "left01's room · Friday jam",
            "left02's room · Friday jam",
            "left03's room · crashed"
        ]
    );
    let ended = store.live_session(crashed.id).unwrap().unwrap();
    assert_eq!(
        ended.ended_at,
        Some(STARTED + 42),
        "ended at its last sign of life"
    );
    assert!(ended.settled);
    // The session that went live after the start is live and untouched.
    let live = site.live_rooms().await;
    assert_eq!((live.len(), &live[0]["room_id"]), (1, &json!(live_room)));
    let unsettled = store.unsettled_live_sessions().unwrap();
    assert_eq!(
        unsettled.len(),
        1,
        "only the running session: {unsettled:?}"
    );
    assert_eq!(unsettled[0].ended_at, None);
    drop(store);

    // The next start has nothing left to finish: the running session is closed by the
    // shutdown and listed then; nothing is listed twice.
    let site = site.restart(|_| {}).await;
    let store = site.server.app().store.clone();
    assert_eq!(store.records().unwrap().len(), 4);
    assert!(store.unsettled_live_sessions().unwrap().is_empty());
    assert_eq!(site.media.count(Call::Recording), 0);
}

/// With the rtmp backend: a server stopped while it was turning a session's recording into MP4
/// left the FLV file and a session without a record. The next start remuxes the file, lists
/// the recording with its length, and serves it.
#[tokio::test]
async fn a_recording_a_stopped_server_was_remuxing_is_listed_and_served_at_the_next_start() {
    const STARTED: u64 = 1_795_700_000;
    if !tools::require(&[Tool::Ffmpeg, Tool::Ffprobe]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let flv_dir = data.path().join("media").join("flv");
    std::fs::create_dir_all(&flv_dir).unwrap();
    let flv = flv_dir.join(format!("hleft1-{STARTED}.flv"));
    let made = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-f", "lavfi"])
        .args(["-i", "testsrc=size=320x180:rate=30", "-t", "3"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-f", "flv"])
        .arg(&flv)
        .status()
        .unwrap();
    assert!(made.success());
    let store = Store::open(data.path()).unwrap();
    let session = store
        .start_live_session(
            RoomId(1),
            UserId(1),
            "remuxing".into(),
            "hleft1".into(),
            STARTED,
        )
        .unwrap();
    store.end_live_session(session.id, STARTED + 3).unwrap();
    store.close().unwrap();

    let server = TestServer::start_in(data, relaxed).await;
    let store = server.app().store.clone();
    let record = wait_for(|| async { store.records().unwrap().into_iter().next() }).await;
    assert_eq!(
        (record.live, record.title.as_str()),
        (session.id, "remuxing")
    );
    assert_eq!(record.duration_secs, 3);
    assert!(
        record
            .url
            .ends_with(&format!("/records/files/hleft1/session_{STARTED}.mp4")),
        "{}",
        record.url
    );
    assert!(!flv.exists(), "the FLV was turned into the MP4");
    assert!(record.url.starts_with("/records/files/"), "{}", record.url);
    let served = server
        .client
        .get(server.url(&record.url))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), reqwest::StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "video/mp4");
    assert!(served.bytes().await.unwrap().len() > 1000);
    let ended = store.live_session(session.id).unwrap().unwrap();
    assert_eq!(
        ended.ended_at,
        Some(STARTED + 3),
        "an ended session keeps its end"
    );
    assert!(ended.settled);
}

/// Renames the user of `token` through `PATCH /api/v1/me`; the answer's status and body.
async fn rename(site: &Site, token: &str, nickname: &str) -> (reqwest::StatusCode, Value) {
    let reply = patch_json(
        &site.server,
        "/api/v1/me",
        &json!({ "nickname": nickname }),
        token,
    )
    .await;
    (reply.status, reply.json())
}

/// Danmaku and nicknames that hide or reorder text (bidi overrides and isolates, zero-width
/// and other invisible characters, variation selectors or tags on their own, text of nothing
/// visible) are refused with a clear code. The host's danmaku carry `is_host`, so a viewer who
/// takes the host's nickname is told apart. Honest text, emoji sequences included, goes through.
#[tokio::test]
async fn disguised_danmaku_are_refused_and_the_host_is_marked_in_chat() {
    let site = Site::start().await;
    let (_, host_token) = site.user("marked01").await;
    let (mut host, room) = go_live(&site, &host_token).await;
    let (faker_id, faker_token) = site.user("faker01").await;
    for bad in [
        "marked01\u{202E}",
        "\u{2066}marked01\u{2069}",
        "marked\u{200B}01",
        "\u{3164}",
    ] {
        let (status, body) = rename(&site, &faker_token, bad).await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(body["error"]["code"], "invalid_nickname", "{bad:?}");
    }
    // Nicknames are not unique: the faker may take the host's exact nickname.
    let (status, _) = rename(&site, &faker_token, "marked01").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let mut faker = site.ws(&faker_token).await;
    join(&mut faker, room).await;

    for bad in [
        "\u{202E}olleh",
        "evil\u{202E}gpj.exe",
        "\u{2066}hidden\u{2069}",
        "\u{200B}",
        "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}",
        "\u{200F}hi",
        "\u{FE0F}\u{FE0F}",
        "hi\u{E0068}\u{E0069}",
        "\u{2800}\u{2800}\u{2800}",
        "a\u{200D}b",
    ] {
        faker.send(json!({"type": "danmaku", "text": bad})).await;
        let error = faker.expect_error_code("invisible_characters").await;
        assert_eq!(error["about"], "danmaku", "{bad:?}");
        assert!(
            error["message"].as_str().unwrap().contains("U+"),
            "the message names the character: {error}"
        );
    }
    let seen = host.sync().await;
    assert!(
        !seen.iter().any(|m| m["type"] == "danmaku"),
        "nothing disguised reached the room: {seen:?}"
    );

    faker
        .send(json!({"type": "danmaku", "text": "I am the host, send gifts"}))
        .await;
    let from_faker = host.expect("danmaku").await;
    assert_eq!(
        (
            &from_faker["nickname"],
            &from_faker["user_id"],
            &from_faker["is_host"]
        ),
        (&json!("marked01"), &json!(faker_id), &json!(false))
    );
    host.send(json!({"type": "danmaku", "text": "welcome"}))
        .await;
    let from_host = faker
        .expect_where("danmaku", |m| m["text"] == "welcome")
        .await;
    assert_eq!(
        (&from_host["nickname"], &from_host["is_host"]),
        (&json!("marked01"), &json!(true))
    );
    let honest = "❤\u{FE0F} 👨\u{200D}👩\u{200D}👧 می\u{200C}خواهم 🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}";
    faker.send(json!({"type": "danmaku", "text": honest})).await;
    assert_eq!(
        host.expect_where("danmaku", |m| m["text"] == honest).await["is_host"],
        false
    );

    // Late joiners see the mark in the recent danmaku too.
    let mut late = site.ws(&site.guest().await).await;
    let recent = join(&mut late, room).await["recent_danmaku"].clone();
    let marks: Vec<(&str, bool)> = recent
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["text"].as_str().unwrap(), d["is_host"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        marks,
        [
            ("I am the host, send gifts", false),
            ("welcome", true),
            (honest, false)
        ]
    );
}

/// Logging out ends the session's open sockets at once, in a room or not, with close code 4001
/// and reason `logged_out`: they can no longer chat or rename the room. The same user's other
/// session, and everyone else, carry on.
#[tokio::test]
async fn logging_out_closes_that_sessions_sockets_at_once() {
    let site = Site::start().await;
    let (_, host_token) = site.user("out01").await;
    let (mut host, room) = go_live(&site, &host_token).await;
    let (_, leaving) = site.user("out02").await;
    let staying = login_token(&site.server, "out02").await;
    let mut in_room = site.ws(&leaving).await;
    join(&mut in_room, room).await;
    let mut idle = site.ws(&leaving).await;
    idle.sync().await;
    let mut other_device = site.ws(&staying).await;
    join(&mut other_device, room).await;
    in_room
        .send(json!({"type": "danmaku", "text": "before"}))
        .await;
    host.expect_where("danmaku", |m| m["text"] == "before")
        .await;

    let reply = post_json(&site.server, "/api/v1/logout", &json!({}), Some(&leaving)).await;
    assert_eq!(reply.status, reqwest::StatusCode::NO_CONTENT);
    assert_eq!(in_room.expect_closed().await, (4001, "logged_out".into()));
    assert_eq!(idle.expect_closed().await, (4001, "logged_out".into()));
    assert!(
        WsClient::try_connect(&site.server.base, &leaving)
            .await
            .is_err(),
        "the token opens no new socket"
    );

    other_device
        .send(json!({"type": "danmaku", "text": "after"}))
        .await;
    host.expect_where("danmaku", |m| m["text"] == "after").await;
    other_device
        .send(json!({"type": "update_room", "name": "still mine"}))
        .await;
    other_device.sync().await;
    assert_eq!(
        get_auth(&site.server, "/api/v1/me/room", &staying)
            .await
            .json()["name"],
        "still mine"
    );
    // out02 is still in the room, counted once: host, out02 and the newcomer.
    let mut newcomer = site.ws(&site.guest().await).await;
    assert_eq!(join(&mut newcomer, room).await["audience"], 3);
}

/// A session found expired (at its next request) ends its open sockets too, with reason
/// `session_expired`.
#[tokio::test]
async fn an_expired_session_closes_its_sockets_when_noticed() {
    let site = Site::start_with(|c| c.accounts.session_ttl_secs = 2).await;
    let token = site.guest().await;
    let mut socket = site.ws(&token).await;
    socket.sync().await;
    wait_for(|| async {
        let reply = get_auth(&site.server, "/api/v1/me", &token).await;
        (reply.status == reqwest::StatusCode::UNAUTHORIZED).then(|| reply.code())
    })
    .await;
    assert_eq!(
        socket.expect_closed().await,
        (4001, "session_expired".into())
    );
    let fresh = site.guest().await;
    site.ws(&fresh).await.sync().await;
}

/// The guest purge deletes idle guests (and would end their sockets), but a guest with an
/// open connection is not idle: watching for longer than `accounts.guest_idle_secs` is fine.
#[tokio::test]
async fn the_guest_purge_spares_connected_guests() {
    let site = Site::start_with(|c| c.accounts.guest_idle_secs = 2).await;
    let (mut host, room) = site.live_host("purge01").await;
    let watching = site.guest().await;
    let mut viewer = site.ws(&watching).await;
    join(&mut viewer, room).await;
    let watching_id = get_auth(&site.server, "/api/v1/me", &watching).await.json()["user_id"]
        .as_u64()
        .unwrap();
    let gone = site.guest().await;
    let gone_id = get_auth(&site.server, "/api/v1/me", &gone).await.json()["user_id"]
        .as_u64()
        .unwrap();
    let store = site.server.app().store.clone();
    wait_for(|| async { store.user(UserId(gone_id)).unwrap().is_none().then_some(()) }).await;
    assert!(store.user(UserId(watching_id)).unwrap().is_some());
    viewer.sync().await;
    host.send(json!({"type": "danmaku", "text": "still watching?"}))
        .await;
    viewer.expect("danmaku").await;
    // Once it leaves, it is idle like any other.
    drop(viewer);
    wait_for(|| async {
        store
            .user(UserId(watching_id))
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

fn ban(scope: BanScope, reason: &str) -> Ban {
    Ban {
        scope,
        reason: reason.into(),
        created_at: 0,
        expires_at: None,
        lifted_at: None,
    }
}

/// A chat ban given while the user is in a room applies at once, without rejoining: they are
/// told (`banned`), taken off the stage and the co-stream queue, and their next danmaku, gift,
/// like or request is refused; their socket stays. A stream ban of a live host closes the room
/// at once and ends the session (its recording is asked for); going live again is refused.
/// Others carry on.
#[tokio::test]
async fn a_new_ban_applies_at_once_to_the_rooms() {
    let site = Site::start().await;
    let (host_id, host_token) = site.user("ban01").await;
    let (mut host, room) = go_live(&site, &host_token).await;
    let (fan_id, fan_token) = site.user("banfan01").await;
    let (waiting_id, waiting_token) = site.user("banfan02").await;
    let mut fan = site.ws(&fan_token).await;
    let mut waiting = site.ws(&waiting_token).await;
    join(&mut fan, room).await;
    join(&mut waiting, room).await;
    fan.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    fan.expect("connect_started").await;
    waiting.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;

    let rooms = &site.server.app().rooms;
    rooms
        .add_ban(UserId(fan_id), ban(BanScope::Chat, "spam"), None)
        .await
        .unwrap();
    let told = fan.expect("banned").await;
    assert_eq!(
        (&told["scope"], &told["reason"]),
        (&json!("chat"), &json!("spam"))
    );
    assert_eq!(
        waiting.expect("connect_ended").await["type"],
        "connect_ended"
    );
    for refused in [
        json!({"type": "danmaku", "text": "hi"}),
        json!({"type": "gift", "gift": "heart"}),
        json!({"type": "like"}),
        json!({"type": "apply_connect"}),
    ] {
        let about = refused["type"].as_str().unwrap().to_owned();
        fan.send(refused).await;
        assert_eq!(fan.expect_error(&about).await, "chat_banned", "{about}");
    }
    assert_eq!(
        site.live_rooms().await[0]["audience"],
        3,
        "the socket stays"
    );

    rooms
        .add_ban(UserId(waiting_id), ban(BanScope::Chat, "spam too"), None)
        .await
        .unwrap();
    waiting.expect("banned").await;
    let queue = host
        .expect_where("connect_queue", |m| m["queue"] == json!([]))
        .await;
    assert_eq!(queue["queue"], json!([]));

    // Someone else still chats.
    let (_, other_token) = site.user("banfan03").await;
    let mut other = site.ws(&other_token).await;
    join(&mut other, room).await;
    other.send(json!({"type": "danmaku", "text": "fine"})).await;
    host.expect_where("danmaku", |m| m["text"] == "fine").await;

    // A stream ban closes the live room at once.
    let recordings = site.media.count(Call::Recording);
    rooms
        .add_ban(UserId(host_id), ban(BanScope::Stream, "copyright"), None)
        .await
        .unwrap();
    let told = host.expect("banned").await;
    assert_eq!(
        (&told["scope"], &told["reason"]),
        (&json!("stream"), &json!("copyright"))
    );
    let closed = other.expect("room_closed").await;
    assert_eq!(closed["reason"], "the host is banned from streaming");
    assert!(site.live_rooms().await.is_empty());
    wait_for(|| async { (site.media.count(Call::Recording) == recordings + 1).then_some(()) })
        .await;
    host.expect("room_closed").await;
    host.send(json!({"type": "start_live"})).await;
    assert_eq!(host.expect("banned").await["scope"], "stream");
    for client in [&mut fan, &mut waiting] {
        client.expect("room_closed").await;
    }

    // Another host goes live as usual.
    let (_, next) = go_live(&site, &other_token).await;
    assert_eq!(site.live_rooms().await[0]["room_id"], next);
}
