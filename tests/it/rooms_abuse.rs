//! Rooms under abuse: one user with many sockets, sessions that end while their sockets are
//! open, bans given while the banned are in a room, disguised danmaku, joins racing a room's
//! idle end, a co-stream start that fails half-way, and sessions a stopped server left without
//! a recording. Each test also shows a well-behaved client still served.

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
