//! The recordings catalogue over real HTTP: paging, the three orders, the host filter, search
//! (CJK substrings, Latin case, host names that change), one record with its danmaku, the
//! record's URL answering byte ranges, renaming, and deleting with the media removed (files on
//! the rtmp backend; the http backend's `removeRecords`, retried until it succeeds, also after a
//! restart). Fixtures are listed through the store call the rooms make when a recording is
//! ready (`add_record`); one recording comes through a real live session.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use reqwest::StatusCode;
use roommanager::media::scripted::{Behaviour, Call};
use roommanager::media::MediaError;
use roommanager::model::{Record, RecordId, StoredDanmaku, UserId};
use roommanager::store::{ChatEntry, DB_FILE};
use serde_json::{json, Value};

use crate::accounts::{
    get, get_auth, guest_token, patch_json, relaxed, send, verified_user, Reply,
};
use crate::common::{wait_for, TestServer};
use crate::http_docs::{get_bytes, live_id_of, put_recording};
use crate::rooms::Site;

const T: u64 = 1_795_000_000;

/// Where a listed recording's media is: its stream id at the media plane, its video URL and
/// its thumbnail URL.
pub(crate) struct Media<'a> {
    pub stream: &'a str,
    pub url: &'a str,
    pub thumbnail: Option<&'a str>,
}

/// Lists a recording of `host` the way the rooms do when one is ready (a live session started
/// at `started_at`, ended, then `add_record`), titled `title` alone as if the host had renamed
/// it (the default title starts with the room's name). Without `media` it points at a made-up
/// file.
pub(crate) fn list_recording(
    server: &TestServer,
    host: u64,
    title: &str,
    started_at: u64,
    duration_secs: u64,
    media: Option<Media>,
) -> Record {
    let store = &server.app().store;
    let room = store
        .user(UserId(host))
        .expect("the store answers")
        .expect("the host exists")
        .room_id
        .expect("a verified host has a room");
    let made_up = format!("h{host}x{started_at}");
    let (stream, url, thumbnail) = match media {
        Some(media) => (
            media.stream.to_owned(),
            media.url.to_owned(),
            media.thumbnail.map(str::to_owned),
        ),
        None => (
            made_up.clone(),
            format!("/records/files/{made_up}/a.mp4"),
            None,
        ),
    };
    let session = store
        .start_live_session(room, UserId(host), title.into(), stream, started_at)
        .expect("a live session is stored");
    store
        .end_live_session(session.id, started_at + duration_secs)
        .expect("the session ends");
    let record = store
        .add_record(&session, duration_secs, url, thumbnail)
        .expect("the record is listed");
    store
        .rename_record(record.id, title)
        .expect("the store answers")
        .expect("just listed")
}

/// [`list_recording`] without media; returns the record's id.
pub(crate) fn listed(
    server: &TestServer,
    host: u64,
    title: &str,
    started_at: u64,
    duration_secs: u64,
) -> u64 {
    list_recording(server, host, title, started_at, duration_secs, None)
        .id
        .0
}

/// Sets records' view counts in a stopped server's data dir, as the watch statistics will.
fn set_views(data: &Path, views: &[(u64, u64)]) {
    const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records_v1");
    let db = Database::create(data.join(DB_FILE)).expect("open the stopped server's store");
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(RECORDS).unwrap();
        for (id, count) in views {
            let mut row: Value = {
                let bytes = table.get(id).unwrap().expect("the record exists");
                serde_json::from_slice(bytes.value()).unwrap()
            };
            row["views"] = json!(count);
            table.insert(id, row.to_string().as_bytes()).unwrap();
        }
    }
    txn.commit().unwrap();
}

/// The ids of a record list, after checking its shape and `total`.
#[track_caller]
fn ids(reply: Reply, total: u64) -> Vec<u64> {
    let body = reply.expect(StatusCode::OK).json();
    assert_eq!(body["total"], total, "{body}");
    body["records"]
        .as_array()
        .expect("a records list")
        .iter()
        .map(|r| r["id"].as_u64().expect("an id"))
        .collect()
}

pub(crate) async fn delete(server: &TestServer, path: &str, token: &str) -> Reply {
    send(server.client.delete(server.url(path)).bearer_auth(token)).await
}

#[tokio::test]
async fn the_catalogue_pages_sorts_and_filters_by_host() {
    let site = Site::start().await;
    let (ana, _) = site.user("ana01").await;
    let (bo, bo_token) = site.user("bo02").await;
    let s = &site.server;
    let a1 = listed(s, ana, "Morning Yoga", T + 100, 600);
    let a2 = listed(s, ana, "Cello practice", T + 300, 3600);
    let b1 = listed(s, bo, "Late jazz", T + 200, 1800);
    let b2 = listed(s, bo, "Rehearsal", T + 400, 60);
    let a3 = listed(s, ana, "Quiet hour", T + 500, 1200);
    // Views come from the watch statistics; set in the store, read into the index at start.
    let site = site
        .restart_after(
            |data| set_views(data, &[(a1, 50), (a2, 5), (b1, 500), (a3, 5)]),
            |_| {},
        )
        .await;
    let s = &site.server;

    let newest = [a3, b2, a2, b1, a1];
    assert_eq!(ids(get(s, "/api/v1/records").await, 5), newest);
    assert_eq!(ids(get(s, "/api/v1/records?sort=newest").await, 5), newest);
    // Ties (a2 and a3 have 5 views each) go to the newer record.
    assert_eq!(
        ids(get(s, "/api/v1/records?sort=most_viewed").await, 5),
        [b1, a1, a3, a2, b2]
    );
    assert_eq!(
        ids(get(s, "/api/v1/records?sort=longest").await, 5),
        [a2, b1, a3, a1, b2]
    );

    // Every field of an item.
    let body = get(s, "/api/v1/records?per_page=1&sort=most_viewed")
        .await
        .json();
    assert_eq!(
        body["records"][0],
        json!({
            "id": b1, "title": "Late jazz",
            "host": {"user_id": bo, "nickname": "bo02", "avatar_url": null},
            "started_at": T + 200, "duration_secs": 1800, "views": 500,
            "thumbnail_url": null, "url": format!("/records/files/h{bo}x{}/a.mp4", T + 200),
        })
    );

    // Pages of two: full, full, the last one short, then nothing beyond the end.
    for (page, expected) in [(1, &newest[0..2]), (2, &newest[2..4]), (3, &newest[4..])] {
        let path = format!("/api/v1/records?per_page=2&page={page}");
        assert_eq!(ids(get(s, &path).await, 5), expected, "page {page}");
    }
    assert!(ids(get(s, "/api/v1/records?per_page=2&page=4").await, 5).is_empty());
    assert!(ids(get(s, "/api/v1/records?page=9999999").await, 5).is_empty());
    assert_eq!(ids(get(s, "/api/v1/records?per_page=100").await, 5), newest);

    // Bad paging and sorting are refused with a reason, and the catalogue still answers.
    for bad in [
        "per_page=101",
        "per_page=0",
        "per_page=-1",
        "per_page=ten",
        "page=0",
        "page=-3",
        "page=1.5",
        "page=99999999999999999999999",
        "sort=oldest",
        "sort=",
        "host=bo02",
    ] {
        get(s, &format!("/api/v1/records?{bad}"))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
    assert_eq!(ids(get(s, "/api/v1/records").await, 5), newest);

    // One host's records: by filter, by user, and the host's own list.
    let bos = [b2, b1];
    assert_eq!(
        ids(get(s, &format!("/api/v1/records?host={bo}")).await, 2),
        bos
    );
    assert_eq!(
        ids(
            get(s, &format!("/api/v1/records?host={bo}&sort=longest")).await,
            2
        ),
        [b1, b2]
    );
    assert_eq!(
        ids(get(s, &format!("/api/v1/users/{bo}/records")).await, 2),
        bos
    );
    assert_eq!(
        ids(
            get(s, &format!("/api/v1/users/{ana}/records?per_page=2&page=2")).await,
            3
        ),
        [a1]
    );
    assert_eq!(
        ids(get_auth(s, "/api/v1/me/records", &bo_token).await, 2),
        bos
    );
    let guest = guest_token(s).await;
    assert!(ids(get_auth(s, "/api/v1/me/records", &guest).await, 0).is_empty());
    get(s, "/api/v1/me/records")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
    get(s, "/api/v1/users/999999/records")
        .await
        .expect_error(StatusCode::NOT_FOUND, "user_not_found");
    get(s, "/api/v1/users/someone/records")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_path");
}

#[tokio::test]
async fn search_finds_titles_by_substring_and_hosts_by_their_current_names() {
    let site = Site::start().await;
    let (ana, _) = site.user("ana03").await;
    let (bo, bo_token) = site.user("bo04").await;
    let s = &site.server;
    let a1 = listed(s, ana, "Morning Yoga", T + 100, 600);
    let a2 = listed(s, ana, "周五直播", T + 300, 3600);
    let b1 = listed(s, bo, "Late jazz", T + 200, 1800);
    let b2 = listed(s, bo, "直播 rehearsal", T + 400, 60);
    let search = |q: &str| format!("/api/v1/records/search?q={}", urlencode(q));

    // CJK inside longer text, newest first, in the other orders, and paged.
    assert_eq!(ids(get(s, &search("直播")).await, 2), [b2, a2]);
    assert_eq!(ids(get(s, &search("五直")).await, 1), [a2]);
    let longest = format!("{}&sort=longest", search("直播"));
    assert_eq!(ids(get(s, &longest).await, 2), [a2, b2]);
    let second = format!("{}&per_page=1&page=2", search("直播"));
    assert_eq!(ids(get(s, &second).await, 2), [a2]);
    // Latin letters in any case.
    for q in ["yoga", "YOGA", "morning yOGA", "  Yoga "] {
        assert_eq!(ids(get(s, &search(q)).await, 1), [a1], "{q:?}");
    }
    // The host's username and nickname (both "ana03" so far).
    assert_eq!(ids(get(s, &search("ANA0")).await, 2), [a2, a1]);
    // A nickname changed after the recordings is found at once; the username still is.
    patch_json(
        s,
        "/api/v1/me",
        &json!({"nickname": "Zelda Quinn"}),
        &bo_token,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(ids(get(s, &search("zelda")).await, 2), [b2, b1]);
    assert_eq!(ids(get(s, &search("bo04")).await, 2), [b2, b1]);
    let item = get(s, &search("jazz")).await.json();
    assert_eq!(item["records"][0]["host"]["nickname"], "Zelda Quinn");
    // No hits is an empty list.
    let none = get(s, &search("nothing like this"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(none.json(), json!({"records": [], "total": 0}));

    // Empty and oversized searches are refused; the longest allowed one is served.
    for bad in [
        "/api/v1/records/search".to_owned(),
        search(""),
        search("   "),
        search(&"x".repeat(101)),
        search(&"直".repeat(101)),
        format!("{}&per_page=500", search("jazz")),
    ] {
        get(s, &bad)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
    assert!(ids(get(s, &search(&"直".repeat(100))).await, 0).is_empty());
    assert_eq!(ids(get(s, &search("jazz")).await, 1), [b1]);
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn a_live_session_becomes_a_record_with_its_danmaku_for_the_replay() {
    let site = Site::start().await;
    let (mut host, _) = site.live_host("rec05").await;
    let s = &site.server;
    let (fan, fan_token) = site.user("fan05").await;
    host.send(json!({"type": "stop_live"})).await;
    let record = wait_for(|| async { s.app().store.records().unwrap().into_iter().next() }).await;
    let id = record.id.0;
    // The danmaku of the session, as the chat ledger stored them.
    let said = |text: &str, offset_ms: u64| {
        ChatEntry::Danmaku(StoredDanmaku {
            live: record.live,
            id: 0,
            user_id: UserId(fan),
            nickname: "fan05".into(),
            text: text.into(),
            offset_ms,
            at: record.started_at + offset_ms / 1000,
        })
    };
    s.app()
        .store
        .append_chat(&[said("hello 你好", 1500), said("encore!", 42_000)])
        .unwrap();

    let listed = get(s, "/api/v1/records")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(listed["total"], 1);
    let item = &listed["records"][0];
    assert_eq!(
        item["title"], "rec05's room · Friday jam",
        "room name and live title"
    );
    assert_eq!(item["host"]["nickname"], "rec05");
    assert_eq!(item["url"], record.url.as_str());

    let detail = get(s, &format!("/api/v1/records/{id}"))
        .await
        .expect(StatusCode::OK)
        .json();
    for field in [
        "id",
        "title",
        "host",
        "started_at",
        "duration_secs",
        "views",
        "url",
    ] {
        assert_eq!(detail[field], item[field], "{field}");
    }
    assert_eq!(detail["danmaku_count"], 2);
    assert_eq!(detail["comments_count"], 0);
    assert_eq!(detail["watch_secs_total"], 0);
    assert_eq!(detail["room_id"], site.room_of(record.host.0));

    let danmaku = get(s, &format!("/api/v1/records/{id}/danmaku"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        danmaku,
        json!({"danmaku": [
            {"offset_ms": 1500, "nickname": "fan05", "text": "hello 你好", "user_id": fan},
            {"offset_ms": 42000, "nickname": "fan05", "text": "encore!", "user_id": fan},
        ], "next": null})
    );

    // A long session's danmaku come a page at a time, in order, each page bounded.
    let many: Vec<ChatEntry> = (0..2500u64)
        .map(|i| said(&format!("d{i}"), 50_000 + i))
        .collect();
    s.app().store.append_chat(&many).unwrap();
    let mut after: Option<u64> = None;
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let path = match after {
            None => format!("/api/v1/records/{id}/danmaku"),
            Some(cursor) => format!("/api/v1/records/{id}/danmaku?after={cursor}"),
        };
        let page = get(s, &path).await.expect(StatusCode::OK).json();
        let items = page["danmaku"].as_array().expect("danmaku").clone();
        sizes.push(items.len());
        seen.extend(
            items
                .into_iter()
                .map(|d| d["text"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_u64() {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(sizes, [1000, 1000, 502]);
    let expected: Vec<String> = ["hello 你好".to_owned(), "encore!".to_owned()]
        .into_iter()
        .chain((0..2500).map(|i| format!("d{i}")))
        .collect();
    assert_eq!(seen, expected);
    let small = get(s, &format!("/api/v1/records/{id}/danmaku?limit=2"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(small["danmaku"].as_array().map(Vec::len), Some(2));
    assert!(small["next"].is_u64(), "{small}");
    for bad in ["limit=0", "limit=1001", "limit=x", "after=-1", "after=soon"] {
        get(s, &format!("/api/v1/records/{id}/danmaku?{bad}"))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
    let detail = get(s, &format!("/api/v1/records/{id}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(detail["danmaku_count"], 2502);

    for path in ["/api/v1/records/424242", "/api/v1/records/424242/danmaku"] {
        get(s, path)
            .await
            .expect_error(StatusCode::NOT_FOUND, "record_not_found");
    }
    get(s, "/api/v1/records/abc")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_path");
    // Somebody else's list is unchanged by a fan's presence.
    assert!(ids(get_auth(s, "/api/v1/me/records", &fan_token).await, 0).is_empty());
}

#[tokio::test]
async fn the_host_renames_a_record_and_nobody_else_can() {
    let site = Site::start().await;
    let (host, host_token) = site.user("ren06").await;
    let (_, other_token) = site.user("ren07").await;
    let guest = site.guest().await;
    let s = &site.server;
    let id = listed(s, host, "Old name", T, 60);
    let path = format!("/api/v1/records/{id}");
    let rename = |title: &str| json!({ "title": title });

    for token in [&other_token, &guest] {
        patch_json(s, &path, &rename("Mine now"), token)
            .await
            .expect_error(StatusCode::FORBIDDEN, "not_your_record");
    }
    send(s.client.patch(s.url(&path)).json(&rename("Anonymous")))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
    for bad in [
        String::new(),
        "   ".to_owned(),
        "x".repeat(201),
        "evil\u{202E}gpj.exe".to_owned(),
        "zero\u{200B}width".to_owned(),
        "two\nlines".to_owned(),
    ] {
        patch_json(s, &path, &rename(&bad), &host_token)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_title");
    }
    patch_json(s, "/api/v1/records/999999", &rename("Nope"), &host_token)
        .await
        .expect_error(StatusCode::NOT_FOUND, "record_not_found");
    assert_eq!(get(s, &path).await.json()["title"], "Old name");

    let renamed = patch_json(s, &path, &rename("  周末 Session  "), &host_token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(renamed["title"], "周末 Session");
    assert_eq!(get(s, &path).await.json()["title"], "周末 Session");
    let found = get(s, "/api/v1/records/search?q=session").await.json();
    assert_eq!(found["records"][0]["id"], id);
    assert!(ids(get(s, "/api/v1/records/search?q=old").await, 0).is_empty());
    let longest = "y".repeat(200);
    patch_json(s, &path, &rename(&longest), &host_token)
        .await
        .expect(StatusCode::OK);
}

/// rtmp backend (nginx not running: the recording's files are put where it keeps them).
#[tokio::test]
async fn a_record_plays_by_byte_range_and_its_deletion_removes_files_and_comments() {
    let server = TestServer::start_with(relaxed).await;
    let (host, host_token) = verified_user(&server, "del08").await;
    let (_, other_token) = verified_user(&server, "del09").await;
    let stream = live_id_of(&server, &host_token).await;
    let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let video = put_recording(&server, &stream, &content);
    let dir = server
        .data
        .path()
        .join("media")
        .join("records")
        .join(&stream);
    let thumbnail = format!("/records/files/{stream}/session_1795714121.jpg");
    std::fs::write(dir.join("session_1795714121.jpg"), b"\xFF\xD8 a frame").unwrap();
    let media = Media {
        stream: &stream,
        url: &video,
        thumbnail: Some(&thumbnail),
    };
    let id = list_recording(&server, host, "Ranged", T, 10, Some(media))
        .id
        .0;
    let path = format!("/api/v1/records/{id}");

    // The record's URL answers byte ranges: the first bytes, the middle, the end, a bad one.
    let url = get(&server, &path).await.json()["url"]
        .as_str()
        .expect("a url")
        .to_owned();
    assert_eq!(url, video);
    for (range, first, last) in [
        ("bytes=0-99", 0, 99),
        ("bytes=5000-5999", 5000, 5999),
        ("bytes=-100", 9900, 9999),
    ] {
        let (reply, body) = get_bytes(&server, &url, Some(range)).await;
        assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes {first}-{last}/10000")),
        );
        assert_eq!(body, content[first..=last], "{range}");
    }
    let (reply, _) = get_bytes(&server, &url, Some("bytes=20000-")).await;
    assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);

    crate::accounts::post_json(
        &server,
        &format!("{path}/comments"),
        &json!({"text": "nice"}),
        Some(&other_token),
    )
    .await
    .expect(StatusCode::CREATED);

    // Somebody else cannot delete it; nothing changes.
    let guest = guest_token(&server).await;
    for token in [&other_token, &guest] {
        delete(&server, &path, token)
            .await
            .expect_error(StatusCode::FORBIDDEN, "not_your_record");
    }
    assert!(dir.join("session_1795714121.mp4").exists());
    assert_eq!(get(&server, &path).await.json()["comments_count"], 1);

    delete(&server, &path, &host_token)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert!(ids(get(&server, "/api/v1/records").await, 0).is_empty());
    assert!(ids(get(&server, "/api/v1/records/search?q=ranged").await, 0).is_empty());
    assert!(ids(
        get(&server, &format!("/api/v1/users/{host}/records")).await,
        0
    )
    .is_empty());
    for gone in [
        path.clone(),
        format!("{path}/comments"),
        format!("{path}/danmaku"),
    ] {
        get(&server, &gone)
            .await
            .expect_error(StatusCode::NOT_FOUND, "record_not_found");
    }
    let (comments, total) = server
        .app()
        .store
        .record_comments(RecordId(id), 0, 10)
        .unwrap();
    assert!(comments.is_empty() && total == 0, "its comments are gone");
    wait_for(|| async {
        let files = ["session_1795714121.mp4", "session_1795714121.jpg"];
        files.iter().all(|f| !dir.join(f).exists()).then_some(())
    })
    .await;
    wait_for(|| async {
        server
            .app()
            .store
            .record_removals()
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    let (reply, _) = get_bytes(&server, &url, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    delete(&server, &path, &host_token)
        .await
        .expect_error(StatusCode::NOT_FOUND, "record_not_found");
}

/// http backend: the distributor refuses `removeRecords` twice; the record stays unlisted and
/// the removal is retried until the distributor takes it. The session co-streamed: the
/// distributor recorded the mixed stream too, and is told to remove both.
#[tokio::test]
async fn a_refused_media_removal_is_retried_and_the_record_stays_gone() {
    use crate::media_http::{go_live, Fault, Site as HttpSite};
    let site = HttpSite::start().await;
    let (_, token) = site.user("hdel10").await;
    let mut host = site.ws(&token).await;
    let (room, live) = go_live(&site, &mut host).await;
    let (fan_id, fan_token) = site.user("hdelfan10").await;
    let mut fan = site.ws(&fan_token).await;
    crate::rooms::join(&mut fan, room).await;
    fan.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    fan.expect("connect_started").await;
    let mixed = site.fake.bodies("newConnect")[0]["mixed"].clone();
    fan.send(json!({"type": "end_connect"})).await;
    host.expect("connect_ended").await;
    host.send(json!({"type": "close_room"})).await;
    host.expect("room_closed").await;
    site.wait_sessions_finished().await;
    let record = site
        .records()
        .into_iter()
        .next()
        .expect("the recording is listed");
    let s = &site.server;
    site.fake
        .fail("removeRecords", [Fault::Refuse, Fault::Refuse]);
    delete(s, &format!("/api/v1/records/{}", record.id), &token)
        .await
        .expect(StatusCode::NO_CONTENT);
    site.fake.wait_calls("removeRecords", 1).await;
    assert!(
        ids(get(s, "/api/v1/records").await, 0).is_empty(),
        "not listed after a failure"
    );
    let bodies = site.fake.wait_calls("removeRecords", 3).await;
    wait_for(|| async {
        s.app()
            .store
            .record_removals()
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(bodies, vec![json!({"live_ids": [live, mixed]}); 3]);
    let media_steps: Vec<String> = site
        .fake
        .received()
        .into_iter()
        .map(|r| r.step)
        .filter(|step| step == "seekRecord" || step == "removeRecords")
        .collect();
    assert_eq!(
        media_steps,
        [
            "seekRecord",
            "removeRecords",
            "removeRecords",
            "removeRecords"
        ]
    );
    assert!(ids(get(s, "/api/v1/records").await, 0).is_empty());
    assert_eq!(
        site.fake.count("removeRecords"),
        3,
        "nothing more once it succeeded"
    );
}

/// A removal a stopped server left queued is carried out at the next start.
#[tokio::test]
async fn a_media_removal_left_by_a_stopped_server_is_done_at_the_next_start() {
    let site = Site::start().await;
    let (host, token) = site.user("left11").await;
    let id = listed(&site.server, host, "Leftover", T, 30);
    let unavailable = Behaviour::Fail(MediaError::Unavailable("down".into()));
    site.media
        .script(Call::RemoveRecording, vec![unavailable; 50]);
    delete(&site.server, &format!("/api/v1/records/{id}"), &token)
        .await
        .expect(StatusCode::NO_CONTENT);
    // The attempt failed and is stored for a retry.
    let queued = wait_for(|| async {
        let queued = site.server.app().store.record_removals().unwrap();
        queued.iter().all(|r| r.attempts >= 1).then_some(queued)
    })
    .await;
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].last_error.as_deref(),
        Some("the media service is unreachable: down")
    );
    assert!(site.media.count(Call::RemoveRecording) >= 1);

    let site = site.restart(|_| {}).await;
    wait_for(|| async {
        site.server
            .app()
            .store
            .record_removals()
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    let stream = format!("h{host}x{T}");
    assert_eq!(
        site.media.calls(),
        [(
            Call::RemoveRecording,
            format!("{stream}:/records/files/{stream}/a.mp4")
        )]
    );
    assert!(ids(get(&site.server, "/api/v1/records").await, 0).is_empty());
}
