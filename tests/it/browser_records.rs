//! The recordings' pages in a real browser: a real MP4 (made with ffmpeg) listed as a
//! recording, with danmaku stored for its live session. The catalogue lists and finds it; the
//! replay page plays it, seeks, flies each stored danmaku over the picture at its moment (and
//! only then: a seek does not replay what it skipped), hides them with the toggle (remembered),
//! and takes a comment from its form that appears at once, with a time link that seeks. The
//! watching is counted: the beacon of a page going away, the heartbeat of a pause, and a
//! visitor without a session as a viewer of their own. The host renames and deletes it from
//! the page.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roommanager::model::{CommentId, RecordComment, RecordId, StoredDanmaku, UserId};
use roommanager::store::ChatEntry;
use serde_json::Value;

use crate::accounts::{get, get_auth, relaxed, verified_user};
use crate::browser_room::{log_in, wait_js};
use crate::common::tools::{self, Tool};
use crate::common::webdriver::{self, Browser, WAIT};
use crate::common::{wait_for, TestServer};
use crate::http_docs::put_recording;
use crate::record_pages::list_record;

const HOST: &str = "vodhost";
const FAN: &str = "vodfan";
const TITLE: &str = "Sunday replay 周日";
const SECS: u64 = 12;
/// The first danmaku, 2 s into the session; the second, 7 s in, shown as text (not markup).
const EARLY: (u64, &str) = (2_000, "first one 第一");
const LATE: (u64, &str) = (7_000, "<b>late</b> one");
const COMMENT: &str = "what a moment 精彩";
const SHOT: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/rm-replay.png");

/// Where the flying danmaku saying `text` is, relative to the player box: its left and right
/// edges and the box's width, or null while there is none.
fn flying(text: &str) -> String {
    format!(
        "const box = document.querySelector('.player-box').getBoundingClientRect(); \
         const el = [...document.querySelectorAll('#overlay .flying')] \
           .find(e => e.textContent === {text:?}); \
         if (!el) return null; \
         const r = el.getBoundingClientRect(); \
         return [r.left - box.left, r.right - box.left, box.width];"
    )
}

#[tokio::test]
async fn the_replay_page_plays_seeks_replays_danmaku_and_takes_comments_in_a_real_browser() {
    if !webdriver::available() || !tools::require(&[Tool::Ffmpeg]) {
        return;
    }
    let started = Instant::now();
    let server = TestServer::start_with(relaxed).await;
    let (host, host_token) = verified_user(&server, HOST).await;
    let (fan, fan_token) = verified_user(&server, FAN).await;

    // A real H.264 MP4, where the rtmp backend keeps recordings, listed for the host.
    let made = tempfile::tempdir().expect("temp dir");
    let mp4 = made.path().join("replay.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-f", "lavfi"])
        .args(["-i", "testsrc=size=320x180:rate=25"])
        .args(["-t", &SECS.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-pix_fmt", "yuv420p", "-movflags", "+faststart"])
        .arg(&mp4)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg made the MP4");
    let bytes = std::fs::read(&mp4).expect("read the MP4");
    let url = put_recording(&server, "vod1", &bytes);
    let record = list_record(&server, host, TITLE, 1_795_714_121, SECS, &url);
    let id = record.id.0;
    let store = server.app().store.clone();
    let danmaku = [EARLY, LATE].map(|(offset_ms, text)| {
        ChatEntry::Danmaku(StoredDanmaku {
            live: record.live,
            id: 0,
            user_id: UserId(fan),
            nickname: FAN.to_owned(),
            text: text.to_owned(),
            offset_ms,
            at: record.started_at + offset_ms / 1000,
        })
    });
    store.append_chat(&danmaku).expect("store the danmaku");

    let b = Browser::start().await;
    log_in(&b, &server, FAN).await;

    // 1. The catalogue lists it (title, host); the search finds it, and finds nothing else.
    b.goto(&server.url("/")).await;
    let nav = b.find("header nav a[href='/records']").await;
    b.click(&nav).await;
    let card = format!("a.record-card[href='/records/{id}']");
    b.wait_for_text(&card, TITLE).await;
    assert!(b.text(&card).await.contains(HOST));
    let search = b.find("input[name='q']").await;
    b.type_text(&search, "SUNDAY").await;
    let go = b.find("form[role='search'] button[type='submit']").await;
    b.click(&go).await;
    b.wait_for_text("[role='status']", "1 recording found")
        .await;
    assert!(b.current_url().await.contains("q=SUNDAY"));
    let search = b.find("input[name='q']").await;
    b.clear(&search).await;
    b.type_text(&search, "no such thing").await;
    let go = b.find("form[role='search'] button[type='submit']").await;
    b.click(&go).await;
    b.wait_for_text(".record-list", "No recording matches")
        .await;
    assert!(b.try_find(&card).await.is_none());

    // 2. The replay page plays the recording: time advances.
    b.goto(&server.url("/records")).await;
    let card_link = b.find(&card).await;
    b.click(&card_link).await;
    b.wait_for_text("#record-title", TITLE).await;
    assert_eq!(b.text("#record-host").await, HOST);
    wait_js(
        &b,
        "return document.getElementById('player').dataset.danmaku === '2'",
        "the danmaku loaded",
    )
    .await;
    b.execute("const v = document.getElementById('player'); v.muted = true; v.play();")
        .await;

    // 3. The first danmaku flies over the picture from the moment it was sent: absent before
    //    2 s of video, then inside the player box, moving right to left.
    let mut seen_before = false;
    let deadline = Instant::now() + WAIT;
    let (at, first_place) = loop {
        let (time, place) = now_and(&b, &flying(EARLY.1)).await;
        if place.is_null() {
            assert!(time < 2.0 + 1.0, "no danmaku at {time} s");
            seen_before |= time < 2.0;
        } else {
            break (time, place);
        }
        assert!(Instant::now() < deadline, "the danmaku never flew");
        tokio::time::sleep(Duration::from_millis(40)).await;
    };
    assert!(
        seen_before,
        "the page was watched before the danmaku's moment"
    );
    assert!(at >= 2.0, "shown at {at} s, before its 2 s offset");
    let left = |place: &Value| place[0].as_f64().expect("a left edge");
    let width = first_place[2].as_f64().expect("the box's width");
    let moved = wait_js(
        &b,
        &format!(
            "const p = (() => {{ {} }})(); return p && p[0] < {} && p[1] > 0 && p[0] < {width} ? p : null;",
            flying(EARLY.1),
            left(&first_place) - 20.0
        ),
        "the danmaku moving left over the picture",
    )
    .await;
    assert!(left(&moved) < left(&first_place));
    b.screenshot(Path::new(SHOT)).await;

    // 4. The toggle hides them, and the choice outlives a reload.
    let toggle = b.find("#danmaku-toggle").await;
    b.click(&toggle).await;
    let overlay = b.find("#overlay").await;
    assert!(!b.displayed(&overlay).await, "hidden by the toggle");
    b.goto(&server.url(&format!("/records/{id}"))).await;
    let toggle = b.find("#danmaku-toggle").await;
    assert_eq!(
        b.execute("return document.getElementById('danmaku-toggle').checked")
            .await,
        Value::Bool(false)
    );
    let overlay = b.find("#overlay").await;
    assert!(!b.displayed(&overlay).await, "still hidden after a reload");
    b.click(&toggle).await;
    assert!(b.displayed(&overlay).await);
    // The first page was watched for 2 s and more and never paused: only its beacon, sent as
    // the page went away, can have reported that time.
    let beaconed = wait_for(|| async {
        let stats = stats(&server, id, &host_token).await;
        (stats["viewers"][0]["watched_secs"].as_u64() >= Some(1)).then_some(stats)
    })
    .await;
    assert_eq!(
        (&beaconed["views"], &beaconed["viewers"][0]["user_id"]),
        (&Value::from(1), &Value::from(fan)),
        "{beaconed}"
    );

    // 5. Seeking (the video is fetched by byte range): to 6.5 s, which it reaches and plays
    //    on from. The early danmaku is not replayed in a burst; the late one flies at 7 s.
    wait_js(
        &b,
        "return document.getElementById('player').readyState >= 1",
        "the video's metadata",
    )
    .await;
    b.execute(
        "const v = document.getElementById('player'); v.muted = true; v.currentTime = 6.5; \
         v.play();",
    )
    .await;
    let sought = wait_js(
        &b,
        "const v = document.getElementById('player'); \
         return !v.seeking && v.currentTime >= 6.5 ? v.currentTime : null;",
        "the seek done",
    )
    .await;
    assert!(sought.as_f64().expect("a time") < 8.0, "at {sought} s");
    let late = wait_js(&b, &flying(LATE.1), "the late danmaku").await;
    assert!(late.is_array());
    let (time, early) = now_and(&b, &flying(EARLY.1)).await;
    assert!(early.is_null(), "the early danmaku again at {time} s");
    let markup = b
        .execute("return document.querySelectorAll('#overlay b').length")
        .await;
    assert_eq!(markup, 0, "danmaku are text, not markup");
    // Back to 1.5 s: the screen is cleared, and the early one flies again at its moment.
    b.execute("document.getElementById('player').currentTime = 1.5;")
        .await;
    let again = wait_js(
        &b,
        &format!(
            "const v = document.getElementById('player'); \
             const p = (() => {{ {} }})(); return p ? v.currentTime : null;",
            flying(EARLY.1)
        ),
        "the early danmaku after seeking back",
    )
    .await;
    let again = again.as_f64().expect("a time");
    assert!((2.0..4.0).contains(&again), "flew again at {again} s");
    assert!(
        b.execute(&flying(LATE.1)).await.is_null(),
        "the late one was cleared by the seek"
    );

    // 6. A comment from the form, at the current time: in the list at once, and in the API.
    b.execute("document.getElementById('player').pause()").await;
    let position_ms = (b
        .execute("return document.getElementById('player').currentTime")
        .await
        .as_f64()
        .expect("a time")
        * 1000.0)
        .round() as u64;
    let text = b.find("#comment-text").await;
    b.type_text(&text, COMMENT).await;
    let at_now = b.find("#comment-at").await;
    b.click(&at_now).await;
    let send = b.find("#comment-form button[type='submit']").await;
    b.click(&send).await;
    b.wait_for_text("#comments li", COMMENT).await;
    assert_eq!(b.text("#comments-total").await, "1");
    let listed = get_auth(
        &server,
        &format!("/api/v1/records/{id}/comments"),
        &fan_token,
    )
    .await
    .json();
    assert_eq!(listed["total"], 1, "{listed}");
    let comment = &listed["comments"][0];
    assert_eq!(comment["text"], COMMENT);
    assert_eq!(comment["author"]["user_id"], fan);
    assert_eq!(comment["position_ms"], position_ms, "{listed}");
    let mark = b
        .find(&format!(
            "#timeline .mark[data-comment='{}']",
            comment["id"]
        ))
        .await;
    assert!(b.displayed(&mark).await, "a mark on the timeline");

    // 7. Its time link seeks there.
    b.execute("const v = document.getElementById('player'); v.pause(); v.currentTime = 1;")
        .await;
    wait_js(
        &b,
        "const v = document.getElementById('player'); return !v.seeking && v.currentTime < 2",
        "the video back at 1 s",
    )
    .await;
    let link = b.find("#comments li a.at").await;
    assert_eq!(
        b.attribute(&link, "data-ms").await,
        Some(position_ms.to_string())
    );
    b.click(&link).await;
    let there = wait_js(
        &b,
        &format!(
            "const v = document.getElementById('player'); \
             return !v.seeking && v.currentTime >= {} ? v.currentTime : null",
            position_ms as f64 / 1000.0 - 0.05
        ),
        "the video at the comment's time",
    )
    .await;
    assert!(there.as_f64().expect("a time") < position_ms as f64 / 1000.0 + 2.0);

    // 8. More comments than a page holds (20): "Load more" brings the rest, and the author
    //    deletes theirs.
    for i in 0..20 {
        store
            .add_record_comment(RecordComment {
                id: CommentId(0),
                record: RecordId(id),
                author: UserId(host),
                nickname: HOST.to_owned(),
                text: format!("newer {i}"),
                position_ms: None,
                created_at: record.started_at + 100 + i,
            })
            .expect("store a comment")
            .expect("the recording is listed");
    }
    b.goto(&server.url(&format!("/records/{id}"))).await;
    b.wait_for_text("#comments-total", "21").await;
    let count = "return document.querySelectorAll('#comments li').length";
    wait_js(
        &b,
        "return document.querySelectorAll('#comments li').length === 20",
        "20 comments",
    )
    .await;
    assert!(
        !b.text("#comments").await.contains(COMMENT),
        "on the next page"
    );
    let more = b.find("#more").await;
    assert!(b.displayed(&more).await);
    b.click(&more).await;
    b.wait_for_text("#comments li:last-child", COMMENT).await;
    assert_eq!(b.execute(count).await, 21);
    assert!(!b.displayed(&more).await, "nothing more to load");
    let remove = b.find("#comments li:last-child .delete-comment").await;
    b.click(&remove).await;
    assert_eq!(b.accept_alert().await, "Delete this comment?");
    b.wait_for_text("#comments-total", "20").await;
    assert!(!b.text("#comments").await.contains(COMMENT));
    let listed = get_auth(
        &server,
        &format!("/api/v1/records/{id}/comments"),
        &fan_token,
    )
    .await
    .json();
    assert_eq!(listed["total"], 20, "{listed}");
    // Only the author's own comment had a delete button (the others are the host's).
    assert_eq!(
        b.execute("return document.querySelectorAll('.delete-comment').length")
            .await,
        0
    );

    // 9. A visitor without a session: the page makes a guest session at the first play, so
    //    the view counts for a second viewer; the pause reports the time watched.
    let before = stats(&server, id, &host_token).await;
    b.goto(&server.url("/logout")).await;
    let out = b.find("form[action='/logout'] button[type='submit']").await;
    b.click(&out).await;
    b.wait_for_text("header nav", "Log in").await;
    assert!(b.cookie("rm_session").await.is_none(), "signed out");
    b.goto(&server.url(&format!("/records/{id}"))).await;
    b.find("#comment-why").await;
    b.execute("const v = document.getElementById('player'); v.muted = true; v.play();")
        .await;
    wait_js(
        &b,
        "return document.getElementById('player').currentTime > 1.5",
        "the visitor's video playing",
    )
    .await;
    b.execute("document.getElementById('player').pause()").await;
    assert!(b.cookie("rm_session").await.is_some(), "a guest session");
    let counted = wait_for(|| async {
        let stats = stats(&server, id, &host_token).await;
        let total = stats["watch_secs_total"].as_u64();
        (stats["unique_viewers"] == 2 && total > before["watch_secs_total"].as_u64())
            .then_some(stats)
    })
    .await;
    assert_eq!(counted["views"], 2, "{counted}");
    // The catalogue shows the count.
    let catalogue = get(&server, "/records?sort=most_viewed").await;
    assert!(
        catalogue
            .text
            .contains("<span class=\"record-views\">2</span> views"),
        "{}",
        catalogue.text
    );

    // 10. The host renames the recording from its page, then deletes it.
    log_in(&b, &server, HOST).await;
    b.goto(&server.url(&format!("/records/{id}"))).await;
    let rename = b.find("#rename").await;
    b.click(&rename).await;
    let title = b.find("#rename-title").await;
    b.clear(&title).await;
    b.type_text(&title, "Renamed 改名").await;
    let save = b.find("#rename-form button[type='submit']").await;
    b.click(&save).await;
    b.wait_for_text("#record-title", "Renamed 改名").await;
    let renamed = get(&server, &format!("/api/v1/records/{id}")).await.json();
    assert_eq!(renamed["title"], "Renamed 改名");
    let delete = b.find("#delete").await;
    b.click(&delete).await;
    assert!(b.accept_alert().await.starts_with("Delete this recording"));
    b.wait_for_text("h1#host-name", HOST).await;
    assert_eq!(b.current_url().await, server.url(&format!("/users/{host}")));
    assert!(
        b.try_find(&card).await.is_none(),
        "gone from the host's page"
    );
    let gone = get(&server, &format!("/records/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // All of it ran under the pages' Content-Security-Policy.
    assert_eq!(b.csp_violations().await, Vec::<String>::new());
    drop(b);
    server.stop().await;
    eprintln!("replay browser test took {:.1?}", started.elapsed());
}

/// The host's statistics of recording `id`.
async fn stats(server: &TestServer, id: u64, host_token: &str) -> Value {
    get_auth(server, &format!("/api/v1/records/{id}/stats"), host_token)
        .await
        .expect(StatusCode::OK)
        .json()
}

/// The video's current time and the answer of `script`, read at the same moment.
async fn now_and(browser: &Browser, script: &str) -> (f64, Value) {
    let both = browser
        .execute(&format!(
            "const t = document.getElementById('player').currentTime; \
             const p = (() => {{ {script} }})(); return [t, p];"
        ))
        .await;
    (both[0].as_f64().expect("a time"), both[1].clone())
}
