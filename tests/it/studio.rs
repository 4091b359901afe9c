//! The host's path over plain HTTP and WebSockets: "My room" in the header, `/studio` sending a
//! host to their room (the host console) and anyone else to a notice, the home page with the live
//! rooms and the latest recordings, and the host-only `viewers` list (with its cap).

use reqwest::header::{COOKIE, LOCATION};
use reqwest::StatusCode;
use roommanager::model::RoomId;
use serde_json::{json, Value};

use crate::accounts::{send, Reply};
use crate::common::ws::WsClient;
use crate::common::{run_command, write_file, TestServer};
use crate::record_pages::list_record;
use crate::rooms::{join, Site};

/// `path` as a browser with the session cookie `token` (none: no cookie) asks for it, without
/// following redirects.
async fn page(server: &TestServer, path: &str, token: Option<&str>) -> Reply {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let mut request = client.get(server.url(path));
    if let Some(token) = token {
        request = request.header(COOKIE, format!("rm_session={token}"));
    }
    send(request).await
}

const MY_ROOM: &str = "<a href=\"/studio\">My room</a>";

#[tokio::test]
async fn studio_sends_a_host_to_their_room_and_anyone_else_to_a_notice() {
    let site = Site::start().await;
    let (host, token) = site.user("host70").await;
    let room = site.room_of(host);

    let to_room = page(&site.server, "/studio", Some(&token)).await;
    assert_eq!(to_room.status, StatusCode::SEE_OTHER, "{}", to_room.text);
    assert_eq!(
        to_room.header(LOCATION.as_str()).as_deref(),
        Some(&*format!("/room/{room}"))
    );
    // Where it leads: the room page with the host console.
    let console = page(&site.server, &format!("/room/{room}"), Some(&token)).await;
    assert_eq!(console.status, StatusCode::OK);
    assert!(console.contains("class=\"card host-console\""));
    assert!(console.contains(MY_ROOM), "the header links to it");

    // A guest has no room: a notice that says how to get one, and no "My room" link.
    let guest = site.guest().await;
    let notice = page(&site.server, "/studio", Some(&guest)).await;
    assert_eq!(notice.status, StatusCode::OK, "{}", notice.text);
    assert!(notice.contains("<title>No room yet"), "{}", notice.text);
    assert!(notice.contains("Going live needs a room of your own"));
    assert!(notice.contains("href=\"/register\""));
    assert!(!notice.contains(MY_ROOM));

    // Nobody signed in: the login page first; a stale cookie is nobody.
    for token in [None, Some("not-a-session")] {
        let login = page(&site.server, "/studio", token).await;
        assert_eq!(login.status, StatusCode::SEE_OTHER);
        assert_eq!(login.header(LOCATION.as_str()).as_deref(), Some("/login"));
        let home = page(&site.server, "/", token).await;
        assert_eq!(home.status, StatusCode::OK);
        assert!(!home.contains(MY_ROOM));
        assert!(home.contains("href=\"/login\""));
    }
    let home = page(&site.server, "/", Some(&token)).await;
    for link in [
        "<a href=\"/\">Live now</a>",
        "<a href=\"/records\">Recordings</a>",
        MY_ROOM,
        "<a href=\"/me\" class=\"who\" title=\"Me\">host70</a>",
        "<a href=\"/logout\">Log out</a>",
    ] {
        assert!(home.contains(link), "{link} in {}", home.text);
    }
}

#[tokio::test]
async fn the_home_page_lists_the_live_rooms_and_the_latest_recordings() {
    let site = Site::start().await;
    let (_host, room) = site.live_host("host71").await;
    let host_id = site
        .server
        .app()
        .store
        .room(RoomId(room))
        .expect("the store answers")
        .expect("the room exists")
        .owner
        .0;
    let older = list_record(
        &site.server,
        host_id,
        "Dawn set 清晨",
        1_795_714_121,
        60,
        "/r/1.mp4",
    );
    let newer = list_record(
        &site.server,
        host_id,
        "<b>Night</b> walk",
        1_795_800_521,
        90,
        "/r/2.mp4",
    );

    let home = page(&site.server, "/", None).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.contains(&format!("href=\"/room/{room}\"")),
        "{}",
        home.text
    );
    assert!(home.contains("Friday jam"));
    assert!(home.contains("Latest recordings"));
    let newest_first = [newer.id.0, older.id.0].map(|id| {
        home.text
            .find(&format!("href=\"/records/{id}\""))
            .unwrap_or_else(|| panic!("record {id} on the home page: {}", home.text))
    });
    assert!(newest_first[0] < newest_first[1], "newest first");
    assert!(
        home.contains("&#60;b&#62;Night&#60;/b&#62; walk"),
        "escaped"
    );
    assert!(home.contains("<script src=\"/assets/home.js\" defer></script>"));
    let script = page(&site.server, "/assets/home.js", None).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(
        script.contains("/api/v1/rooms"),
        "it refreshes from the API"
    );
}

/// The `viewers` message that matches `pred`.
async fn viewers(host: &mut WsClient, pred: impl Fn(&Value) -> bool) -> Value {
    host.expect_where("viewers", pred).await
}

fn names(viewers: &Value) -> Vec<&str> {
    viewers["people"]
        .as_array()
        .expect("a list of people")
        .iter()
        .map(|p| p["nickname"].as_str().expect("a nickname"))
        .collect()
}

#[tokio::test]
async fn the_host_sees_who_is_watching_and_nobody_else_does() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("host72").await;
    // On joining, the host gets the list: nobody else yet.
    let first = host.expect("viewers").await;
    assert_eq!(
        first,
        json!({"type": "viewers", "people": [], "more": 0, "guests": 0})
    );

    let (fan_id, fan_token) = site.user("fan72").await;
    let mut fan = site.ws(&fan_token).await;
    join(&mut fan, room).await;
    let guest_token = site.guest().await;
    let mut guest = site.ws(&guest_token).await;
    join(&mut guest, room).await;
    let seen = viewers(&mut host, |v| {
        v["guests"] == 1 && !v["people"].as_array().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        seen["people"],
        json!([{"user_id": fan_id, "nickname": "fan72"}]),
        "{seen}"
    );
    assert_eq!(seen["more"], 0);

    // The others get the audience, never the list.
    for other in [&mut fan, &mut guest] {
        other.expect_where("audience", |a| a["count"] == 3).await;
        let inbox = other.sync().await;
        assert!(inbox.iter().all(|m| m["type"] != "viewers"), "{inbox:?}");
    }

    fan.send(json!({"type": "leave_room"})).await;
    let after = viewers(&mut host, |v| v["people"] == json!([])).await;
    assert_eq!(after["guests"], 1);
    drop(guest);
    viewers(&mut host, |v| v["guests"] == 0).await;
    let inbox = fan.sync().await;
    assert!(inbox.iter().all(|m| m["type"] != "viewers"), "{inbox:?}");
}

#[tokio::test]
async fn the_viewers_list_is_capped_and_counts_the_rest() {
    let site = Site::start_with(|c| c.rooms.viewers_listed = 2).await;
    let (mut host, room) = site.live_host("host73").await;
    let mut fans = Vec::new();
    for name in ["fan73c", "fan73a", "fan73d", "fan73b"] {
        let (_, token) = site.user(name).await;
        let mut fan = site.ws(&token).await;
        join(&mut fan, room).await;
        fans.push(fan);
    }
    let seen = viewers(&mut host, |v| v["more"] == 2).await;
    assert_eq!(
        names(&seen),
        ["fan73a", "fan73b"],
        "the first two by name: {seen}"
    );
    // The list follows the room: one listed person leaves, the next one by name moves up.
    fans[1].send(json!({"type": "leave_room"})).await;
    let seen = viewers(&mut host, |v| v["more"] == 1).await;
    assert_eq!(names(&seen), ["fan73b", "fan73c"], "{seen}");
}

#[test]
fn a_viewers_list_of_no_names_is_refused_by_the_config_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (value, ok) in [("0", false), ("1001", false), ("1", true)] {
        let path = write_file(
            dir.path(),
            "site.toml",
            &format!("[rooms]\nviewers_listed = {value}\n"),
        );
        let path = path.to_str().expect("a UTF-8 temp path");
        let (status, out, err) = run_command(dir.path(), &["check-config", "--config", path]);
        assert_eq!(status.success(), ok, "{value}: {out}{err}");
        if !ok {
            assert!(err.contains("rooms.viewers_listed"), "{err}");
        }
    }
}
