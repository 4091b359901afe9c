//! Bans that act at once and force-closing rooms, through the admin API on a real server with
//! the scripted media plane: a chat ban and its lift reach members already in a running room,
//! a timed ban runs out inside one, a stream ban closes a live room, an admin closes a room with
//! a reason; each action is in the audit log, and bad requests are refused.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{relaxed, send, Reply};
use crate::admin::{admin_token, audit, make_admin, ADMIN_PASSWORD};
use crate::common::wait_for;
use crate::common::ws::WsClient;
use crate::rooms::{join, Site};

struct Admin {
    base: String,
    token: String,
}

impl Admin {
    async fn of(site: &Site) -> Admin {
        make_admin(&site.server, "root");
        let base = site.server.base.clone();
        let token = admin_token(&base, "root", ADMIN_PASSWORD).await;
        Admin { base, token }
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        send(
            reqwest::Client::new()
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    async fn delete(&self, path: &str) -> Reply {
        send(
            reqwest::Client::new()
                .delete(format!("{}{path}", self.base))
                .bearer_auth(&self.token),
        )
        .await
    }

    async fn get(&self, path: &str) -> Value {
        send(
            reqwest::Client::new()
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.token),
        )
        .await
        .expect(StatusCode::OK)
        .json()
    }

    /// The newest audit entry of `action`.
    async fn last_audit(&self, action: &str) -> Value {
        let entries = audit(&self.base, &self.token, "").await;
        entries["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["action"] == action)
            .cloned()
            .unwrap_or_else(|| panic!("an audit entry {action} in {entries}"))
    }
}

/// A host live in their room, with their user id.
async fn live(site: &Site, name: &str) -> (u64, WsClient, u64) {
    let (id, token) = site.user(name).await;
    let mut host = site.ws(&token).await;
    host.send(json!({"type": "start_live", "title": "jam"}))
        .await;
    let room = host.expect("live_started").await["room_id"]
        .as_u64()
        .expect("a room id");
    (id, host, room)
}

/// A viewer who joined `room`, with their user id.
async fn viewer(site: &Site, name: &str, room: u64) -> (u64, WsClient) {
    let (id, token) = site.user(name).await;
    let mut client = site.ws(&token).await;
    join(&mut client, room).await;
    (id, client)
}

async fn chat_passes(from: &mut WsClient, host: &mut WsClient, text: &str) {
    from.send(json!({"type": "danmaku", "text": text})).await;
    host.expect_where("danmaku", |m| m["text"] == text).await;
}

#[tokio::test]
async fn a_chat_ban_and_its_lift_reach_members_in_a_running_room_at_once() {
    let site = Site::start_with(relaxed).await;
    let admin = Admin::of(&site).await;
    let (_, mut host, room) = live(&site, "bhost1").await;
    let (fan_id, mut fan) = viewer(&site, "bfan1", room).await;
    let (_, mut other) = viewer(&site, "bother1", room).await;

    let bans = format!("/api/v1/admin/users/{fan_id}/bans");
    admin
        .post(&bans, json!({"scope": "chat", "reason": "spam"}))
        .await
        .expect(StatusCode::CREATED);
    let told = fan.expect("banned").await;
    assert_eq!(
        (&told["scope"], &told["reason"], &told["until"]),
        (&json!("chat"), &json!("spam"), &Value::Null)
    );
    fan.send(json!({"type": "danmaku", "text": "still here"}))
        .await;
    assert_eq!(fan.expect_error("danmaku").await, "chat_banned");
    chat_passes(&mut other, &mut host, "others chat on").await;

    admin
        .delete(&format!("{bans}/chat?reason=appeal"))
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(fan.expect("unbanned").await["scope"], "chat");
    chat_passes(&mut fan, &mut host, "back without rejoining").await;
    other
        .expect_none("unbanned", std::time::Duration::from_millis(300))
        .await;

    // Lifting again finds nothing in force; the history stays.
    admin
        .delete(&format!("{bans}/chat"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_banned");

    let given = admin.last_audit("ban").await;
    assert_eq!(
        (
            &given["admin"],
            &given["target"],
            &given["reason"],
            &given["ip"]
        ),
        (
            &json!("root"),
            &json!(format!("user:{fan_id}:chat")),
            &json!("spam"),
            &json!("127.0.0.1")
        )
    );
    let lifted = admin.last_audit("unban").await;
    assert_eq!(
        (&lifted["target"], &lifted["reason"]),
        (&json!(format!("user:{fan_id}:chat")), &json!("appeal"))
    );
}

#[tokio::test]
async fn bad_ban_requests_are_refused_and_a_good_one_still_works() {
    let site = Site::start_with(relaxed).await;
    let admin = Admin::of(&site).await;
    let (fan_id, _) = site.user("bfan2").await;
    let bans = format!("/api/v1/admin/users/{fan_id}/bans");
    let cases = [
        (
            json!({"scope": "chat", "reason": "x", "until": 1}),
            StatusCode::BAD_REQUEST,
            "invalid_until",
        ),
        (
            json!({"scope": "chat", "reason": "  "}),
            StatusCode::BAD_REQUEST,
            "invalid_reason",
        ),
        (
            json!({"scope": "chat", "reason": "x".repeat(100_000)}),
            StatusCode::BAD_REQUEST,
            "invalid_reason",
        ),
    ];
    for (body, status, code) in cases {
        admin.post(&bans, body).await.expect_error(status, code);
    }
    admin
        .post(&bans, json!({"scope": "everything", "reason": "x"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_json");
    admin
        .post(
            "/api/v1/admin/users/999999/bans",
            json!({"scope": "chat", "reason": "x"}),
        )
        .await
        .expect_error(StatusCode::NOT_FOUND, "user_not_found");
    admin
        .delete(&format!("{bans}/everything"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_scope");
    let entries = audit(&admin.base, &admin.token, "").await;
    assert!(
        !entries["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "ban"),
        "nothing refused is in the audit log: {entries}"
    );

    admin
        .post(&bans, json!({"scope": "chat", "reason": "fine"}))
        .await
        .expect(StatusCode::CREATED);
}

#[tokio::test]
async fn a_timed_ban_runs_out_inside_a_running_room() {
    let site = Site::start_with(relaxed).await;
    let admin = Admin::of(&site).await;
    let (_, mut host, room) = live(&site, "bhost3").await;
    let (fan_id, mut fan) = viewer(&site, "bfan3", room).await;
    let until = roommanager::store::unix_now() + 2;
    admin
        .post(
            &format!("/api/v1/admin/users/{fan_id}/bans"),
            json!({"scope": "chat", "reason": "cool off", "until": until}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(fan.expect("banned").await["until"], until);
    fan.send(json!({"type": "danmaku", "text": "too soon"}))
        .await;
    assert_eq!(fan.expect_error("danmaku").await, "chat_banned");

    // The room tells the member when the ban runs out; nobody rejoins, nothing restarts.
    assert_eq!(fan.expect("unbanned").await["scope"], "chat");
    assert!(roommanager::store::unix_now() >= until);
    chat_passes(&mut fan, &mut host, "after the break").await;
}

#[tokio::test]
async fn a_stream_ban_closes_the_live_room_and_leaves_the_directory() {
    let site = Site::start_with(relaxed).await;
    let admin = Admin::of(&site).await;
    let (host_id, mut host, room) = live(&site, "bhost4").await;
    let (_, mut fan) = viewer(&site, "bfan4", room).await;
    let (_, mut other_host, other_room) = live(&site, "bhost5").await;
    assert_eq!(site.live_rooms().await.len(), 2);

    admin
        .post(
            &format!("/api/v1/admin/users/{host_id}/bans"),
            json!({"scope": "stream", "reason": "copyright"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(host.expect("banned").await["scope"], "stream");
    let closed = fan.expect("room_closed").await;
    assert_eq!(closed["room_id"], room);
    let listed = site.live_rooms().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["room_id"], other_room);
    host.expect("room_closed").await;
    host.send(json!({"type": "start_live"})).await;
    assert_eq!(host.expect("banned").await["reason"], "copyright");
    other_host
        .expect_none("room_closed", std::time::Duration::from_millis(300))
        .await;

    admin
        .delete(&format!("/api/v1/admin/users/{host_id}/bans/stream"))
        .await
        .expect(StatusCode::NO_CONTENT);
    host.send(json!({"type": "start_live"})).await;
    host.expect("live_started").await;
}

#[tokio::test]
async fn an_admin_closes_a_room_with_a_reason_its_members_see() {
    let site = Site::start_with(relaxed).await;
    let admin = Admin::of(&site).await;
    let (host_id, mut host, room) = live(&site, "bhost6").await;
    let (_, mut fan) = viewer(&site, "bfan6", room).await;
    let (_, mut other_host, other_room) = live(&site, "bhost7").await;

    // The count follows the joins within a tick.
    let listed = wait_for(|| async {
        let rooms = admin.get("/api/v1/admin/rooms").await;
        rooms["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .find(|r| r["room_id"] == room && r["audience"] == 2)
            .cloned()
    })
    .await;
    assert_eq!(listed["host"]["user_id"], host_id);
    assert_eq!(listed["co_streaming"], false);
    assert!(listed["since"].as_u64().is_some());

    let close = format!("/api/v1/admin/rooms/{room}/close");
    admin
        .post(&close, json!({"reason": ""}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_reason");
    admin
        .post(&close, json!({"reason": "maintenance"}))
        .await
        .expect(StatusCode::NO_CONTENT);
    for client in [&mut fan, &mut host] {
        let closed = client.expect("room_closed").await;
        assert_eq!(closed["reason"], "maintenance");
    }
    let rooms = admin.get("/api/v1/admin/rooms").await;
    assert_eq!(rooms["rooms"].as_array().expect("rooms").len(), 1);
    assert_eq!(rooms["rooms"][0]["room_id"], other_room);
    other_host
        .expect_none("room_closed", std::time::Duration::from_millis(300))
        .await;
    admin
        .post(&close, json!({"reason": "again"}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "room_not_open");

    let entry = admin.last_audit("close_room").await;
    assert_eq!(
        (&entry["target"], &entry["reason"]),
        (&json!(format!("room:{room}")), &json!("maintenance"))
    );
}

#[tokio::test]
async fn deleting_a_live_hosts_account_closes_the_room_first() {
    let site = Site::start_with(relaxed).await;
    let admin = Admin::of(&site).await;
    let (host_id, _host, room) = live(&site, "bhost8").await;
    let (_, mut fan) = viewer(&site, "bfan8", room).await;
    admin
        .delete(&format!(
            "/api/v1/admin/users/{host_id}?recordings=keep&reason=gone"
        ))
        .await
        .expect(StatusCode::NO_CONTENT);
    let closed = fan.expect("room_closed").await;
    assert_eq!(closed["reason"], "the host's account was deleted");
    let rooms = admin.get("/api/v1/admin/rooms").await;
    assert_eq!(rooms["rooms"], json!([]));
    let entry = admin.last_audit("close_room").await;
    assert_eq!(
        (&entry["target"], &entry["reason"]),
        (&json!(format!("room:{room}")), &json!("gone"))
    );
}
