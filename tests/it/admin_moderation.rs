//! Moderation of a live room's danmaku, on a real server with the scripted media plane: an
//! admin deletes a danmaku through the API and every member, a later joiner and the
//! recording's replay lose it; the host deletes in their own room over the WebSocket; the room
//! page's cookie endpoints ask for the admin cookie and its CSRF token; bad input is refused.

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{relaxed, send, Reply};
use crate::admin::{admin_token, audit, make_admin, ADMIN_PASSWORD};
use crate::common::wait_for;
use crate::common::ws::WsClient;
use crate::rooms::{join, Site};

/// A danmaku `from` sends, as `host` receives it; returns its id.
async fn said(from: &mut WsClient, host: &mut WsClient, text: &str) -> u64 {
    from.send(json!({"type": "danmaku", "text": text})).await;
    host.expect_where("danmaku", |m| m["text"] == text).await["id"]
        .as_u64()
        .expect("a danmaku has an id")
}

async fn delete_by_api(site: &Site, token: &str, room: u64, id: u64, body: Option<&str>) -> Reply {
    let mut request = reqwest::Client::new()
        .delete(
            site.server
                .url(&format!("/api/v1/admin/rooms/{room}/danmaku/{id}")),
        )
        .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    send(request).await
}

fn texts(danmaku: &Value) -> Vec<&str> {
    danmaku
        .as_array()
        .expect("a list of danmaku")
        .iter()
        .map(|d| d["text"].as_str().expect("a text"))
        .collect()
}

#[tokio::test]
async fn an_admin_deletes_a_danmaku_and_members_latecomers_and_the_replay_lose_it() {
    let site = Site::start_with(relaxed).await;
    make_admin(&site.server, "root");
    let admin = admin_token(&site.server.base, "root", ADMIN_PASSWORD).await;
    let (mut host, room) = site.live_host("mhost1").await;
    let (_, fan_token) = site.user("mfan1").await;
    let mut fan = site.ws(&fan_token).await;
    join(&mut fan, room).await;
    let mut guest = site.ws(&site.guest().await).await;
    join(&mut guest, room).await;

    let kept = said(&mut fan, &mut host, "keep me").await;
    let rude = said(&mut fan, &mut host, "delete me, I am rude").await;
    assert_ne!(kept, rude, "each danmaku has its own id");
    for member in [&mut fan, &mut guest] {
        let seen = member.expect_where("danmaku", |m| m["id"] == rude).await;
        assert_eq!(seen["text"], "delete me, I am rude");
    }

    // A user's token is no admin's; a reason too long, or a body that is not JSON, is refused:
    // nobody hears of a deletion.
    let (_, user) = site.user("mnosy1").await;
    delete_by_api(&site, &user, room, rude, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "admin_required");
    let long = json!({ "reason": "x".repeat(501) }).to_string();
    delete_by_api(&site, &admin, room, rude, Some(&long))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_reason");
    delete_by_api(&site, &admin, room, rude, Some("{not json"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_json");
    host.sync().await;
    host.expect_none("danmaku_deleted", std::time::Duration::from_millis(200))
        .await;

    delete_by_api(&site, &admin, room, rude, Some(r#"{"reason":"rude"}"#))
        .await
        .expect(StatusCode::NO_CONTENT);
    for member in [&mut host, &mut fan, &mut guest] {
        assert_eq!(member.expect("danmaku_deleted").await["id"], rude);
    }
    let mut late = site.ws(&site.guest().await).await;
    let info = join(&mut late, room).await;
    assert_eq!(texts(&info["recent_danmaku"]), ["keep me"], "{info}");
    assert_eq!(info["recent_danmaku"][0]["id"], kept);

    // Twice, an id never given, or a room that is not live: 404 with a code that says which.
    for id in [rude, 0, 999] {
        delete_by_api(&site, &admin, room, id, None)
            .await
            .expect_error(StatusCode::NOT_FOUND, "danmaku_not_found");
    }
    let (idle_host, _) = site.user("midle1").await;
    delete_by_api(&site, &admin, site.room_of(idle_host), 1, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "room_not_live");

    let log = audit(&site.server.base, &admin, "").await;
    let entry = &log["entries"][0];
    assert_eq!(
        (
            &entry["admin"],
            &entry["action"],
            &entry["reason"],
            &entry["ip"]
        ),
        (
            &json!("root"),
            &json!("delete_danmaku"),
            &json!("rude"),
            &json!("127.0.0.1")
        ),
        "{log}"
    );
    assert_eq!(
        entry["target"],
        format!("room:{room} danmaku:{rude} \"delete me, I am rude\""),
        "the room, the danmaku and what it said: {log}"
    );

    // The recording's replay and count no longer include it.
    host.send(json!({"type": "close_room"})).await;
    fan.expect("room_closed").await;
    let record = wait_for(|| async {
        let records = site
            .server
            .app()
            .store
            .records()
            .expect("the store answers");
        records.into_iter().next()
    })
    .await
    .id
    .0;
    let replay = site
        .server
        .get(&format!("/api/v1/records/{record}/danmaku"))
        .await;
    let replay: Value = replay.json().await.expect("JSON");
    assert_eq!(texts(&replay["danmaku"]), ["keep me"], "{replay}");
    let detail: Value = site
        .server
        .get(&format!("/api/v1/records/{record}"))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(detail["danmaku_count"], 1, "{detail}");
}

#[tokio::test]
async fn the_host_deletes_danmaku_in_their_own_room_and_nobody_else_may() {
    let site = Site::start_with(relaxed).await;
    let (mut host, room) = site.live_host("mhost2").await;
    let (_, fan_token) = site.user("mfan2").await;
    let mut fan = site.ws(&fan_token).await;
    join(&mut fan, room).await;
    let id = said(&mut fan, &mut host, "oops").await;

    fan.send(json!({"type": "delete_danmaku", "id": id})).await;
    assert_eq!(fan.expect_error("delete_danmaku").await, "host_only");
    host.send(json!({"type": "delete_danmaku", "id": id})).await;
    for member in [&mut host, &mut fan] {
        assert_eq!(member.expect("danmaku_deleted").await["id"], id);
    }
    host.send(json!({"type": "delete_danmaku", "id": id})).await;
    assert_eq!(
        host.expect_error("delete_danmaku").await,
        "danmaku_not_found"
    );
    // The room chats on: ids keep counting up.
    let next = said(&mut fan, &mut host, "sorry").await;
    assert!(next > id, "{next} after {id}");
}

/// The room page's view of the admin: the CSRF token `GET /admin/session.json` gives.
async fn page_session(site: &Site, cookie: &str) -> Reply {
    send(
        reqwest::Client::new()
            .get(site.server.url("/admin/session.json"))
            .header(COOKIE, cookie),
    )
    .await
}

async fn page_post(
    site: &Site,
    cookie: &str,
    csrf: Option<&str>,
    path: &str,
    body: Value,
) -> Reply {
    let mut request = reqwest::Client::new()
        .post(site.server.url(path))
        .header(COOKIE, cookie)
        .json(&body);
    if let Some(token) = csrf {
        request = request.header("x-rm-csrf", token);
    }
    send(request).await
}

#[tokio::test]
async fn the_room_page_acts_with_the_admin_cookie_and_its_csrf_token_only() {
    let site = Site::start_with(relaxed).await;
    make_admin(&site.server, "root");
    let admin = admin_token(&site.server.base, "root", ADMIN_PASSWORD).await;
    let cookie = format!("rm_admin={admin}");
    let (mut host, room) = site.live_host("mhost3").await;
    let (fan_id, fan_token) = site.user("mfan3").await;
    let mut fan = site.ws(&fan_token).await;
    join(&mut fan, room).await;

    // A user's session is no admin's, even planted in the admin cookie.
    for who in [
        format!("rm_session={fan_token}"),
        format!("rm_admin={fan_token}"),
    ] {
        page_session(&site, &who)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "admin_required");
    }
    let session = page_session(&site, &cookie).await.expect(StatusCode::OK);
    assert_eq!(session.header("cache-control").as_deref(), Some("no-store"));
    let session = session.json();
    assert_eq!(session["name"], "root", "{session}");
    let csrf = session["csrf"].as_str().expect("a CSRF token").to_owned();

    let id = said(&mut fan, &mut host, "spam spam").await;
    let delete = format!("/admin/moderation/rooms/{room}/danmaku/{id}/delete");
    let ban = format!("/admin/moderation/users/{fan_id}/bans");
    let ban_body = json!({"scope": "chat", "reason": "spam", "until": null});
    // Without the token, or with the JSON API's `1`, or another browser's: refused, nothing done.
    for wrong in [None, Some("1"), Some(&"0".repeat(64)[..])] {
        page_post(&site, &cookie, wrong, &delete, json!({}))
            .await
            .expect_error(StatusCode::FORBIDDEN, "csrf");
        page_post(&site, &cookie, wrong, &ban, ban_body.clone())
            .await
            .expect_error(StatusCode::FORBIDDEN, "csrf");
    }
    // The admin JSON API takes no cookie.
    send(
        reqwest::Client::new()
            .delete(
                site.server
                    .url(&format!("/api/v1/admin/rooms/{room}/danmaku/{id}")),
            )
            .header(COOKIE, &cookie)
            .header("x-rm-csrf", &csrf),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "admin_required");
    fan.sync().await;
    fan.expect_none("danmaku_deleted", std::time::Duration::from_millis(200))
        .await;
    fan.expect_none("banned", std::time::Duration::from_millis(1))
        .await;

    page_post(
        &site,
        &cookie,
        Some(&csrf),
        &delete,
        json!({"reason": "spam"}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    for member in [&mut host, &mut fan] {
        assert_eq!(member.expect("danmaku_deleted").await["id"], id);
    }
    page_post(&site, &cookie, Some(&csrf), &ban, ban_body)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(fan.expect("banned").await["scope"], "chat");
    fan.send(json!({"type": "danmaku", "text": "more spam"}))
        .await;
    assert_eq!(fan.expect_error("danmaku").await, "chat_banned");

    let log = audit(&site.server.base, &admin, "").await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().expect("an action"))
        .collect();
    assert_eq!(actions[..2], ["ban", "delete_danmaku"], "{log}");
}
