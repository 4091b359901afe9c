//! Rooms under abuse: one user with many sockets, sessions that end while their sockets are
//! open, bans given while the banned are in a room, disguised danmaku, joins racing a room's
//! idle end, a co-stream start that fails half-way, and sessions a stopped server left without
//! a recording. Each test also shows a well-behaved client still served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roommanager::model::UserId;
use serde_json::json;

use crate::common::ws::WsClient;
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
    const ROUNDS: usize = 200;
    const CLIENTS: usize = 4;
    let site = Site::start_with(|c| c.rooms.idle_close_secs = 0).await;
    let (host_id, _) = site.user("idle01").await;
    let room = room_of(&site, host_id);
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
                tokio::time::sleep(Duration::from_millis(1)).await;
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

/// The id of `user`'s room.
fn room_of(site: &Site, user: u64) -> u64 {
    site.server
        .app()
        .store
        .user(UserId(user))
        .expect("the store answers")
        .expect("the user exists")
        .room_id
        .expect("a verified user has a room")
        .0
}
