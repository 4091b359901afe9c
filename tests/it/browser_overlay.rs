//! The live room page's player in headless Chromium: danmaku flying over the video (lanes, the
//! viewer's own marked, deletions, the toggle and opacity kept in localStorage, the whole box
//! full screen), gifts popping over it, what guests are offered, the player following a
//! co-stream without a reload, and a dropped connection coming back by itself. The host and the
//! co-stream guest are WebSocket clients; the media plane is the scripted one.

use serde_json::{json, Value};

use crate::browser_room::{log_in, send_danmaku, wait_for_line, wait_js, wait_src};
use crate::common::webdriver::{self, Browser};
use crate::rooms::{join, Site};

const HOST: &str = "host40";
const VIEWER: &str = "fan40";
const STAGE: &str = "stage40";
/// Typed through WebDriver, so only characters of the Basic Multilingual Plane (no emoji).
const HELLO: &str = "flying hello 飞";
const DOOMED: &str = "soon deleted 删";
const QUIET: &str = "not over the picture";
const AFTER: &str = "back again 回来了";
/// WebDriver's key for the left arrow.
const ARROW_LEFT: &str = "\u{E012}";

/// The scripted media plane's watch URLs are on another origin, which the pages' policy must let
/// the player load from.
fn watch_origin(c: &mut roommanager::config::Config) {
    c.media.watch_origins = vec!["http://scripted".to_owned()];
}

/// The flying danmaku saying `text` (null while there is none): whether the player box holds
/// it, whether it is the viewer's own, its rectangle and the video's.
fn flight(text: &str) -> String {
    format!(
        "const el = [...document.querySelectorAll('#overlay .flying')] \
           .find(e => e.textContent === {text:?}); \
         if (!el) return null; \
         const r = el.getBoundingClientRect(); \
         const v = document.getElementById('player').getBoundingClientRect(); \
         return {{in_box: document.getElementById('player-box').contains(el), \
                  mine: el.classList.contains('mine'), \
                  left: r.left, right: r.right, top: r.top, bottom: r.bottom, \
                  video: [v.left, v.top, v.right, v.bottom]}};"
    )
}

fn num(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

async fn flying_count(browser: &Browser) -> Value {
    browser
        .execute("return document.querySelectorAll('#overlay .flying').length")
        .await
}

#[tokio::test]
async fn a_viewers_danmaku_fly_over_the_live_video_and_the_settings_are_kept() {
    if !webdriver::available() {
        return;
    }
    let site = Site::start_with(watch_origin).await;
    let (mut host, room) = site.live_host(HOST).await;
    site.user(VIEWER).await;
    let room_url = site.server.url(&format!("/room/{room}"));
    let b = Browser::start().await;
    log_in(&b, &site.server, VIEWER).await;
    b.goto(&room_url).await;
    b.wait_for_text("#phase", "live").await;
    host.expect_where("audience", |m| m["count"] == 2).await;

    // 1. The viewer's danmaku: in the side list, and flying inside the player box, over the
    //    video's rectangle, marked as the viewer's own, right to left.
    send_danmaku(&b, HELLO).await;
    host.expect_where("danmaku", |m| m["text"] == HELLO).await;
    wait_for_line(&b, VIEWER, HELLO).await;
    let first = wait_js(
        &b,
        &format!(
            "const f = (() => {{ {} }})(); return f && f.left < f.video[2] - 1 ? f : null;",
            flight(HELLO)
        ),
        "the danmaku coming in over the picture",
    )
    .await;
    assert_eq!(first["in_box"], true, "{first}");
    assert_eq!(first["mine"], true, "the viewer's own is marked: {first}");
    let video = first["video"].as_array().expect("the video's rectangle");
    let video: Vec<f64> = video.iter().filter_map(Value::as_f64).collect();
    assert!(
        num(&first, "top") >= video[1] && num(&first, "bottom") <= video[3],
        "inside the picture's height: {first}"
    );
    assert!(num(&first, "right") > video[0], "{first}");
    let moved = wait_js(
        &b,
        &format!(
            "const f = (() => {{ {} }})(); return f && f.left < {} ? f : null;",
            flight(HELLO),
            num(&first, "left") - 20.0
        ),
        "the danmaku moving left",
    )
    .await;
    assert!(num(&moved, "left") < num(&first, "left"));

    // 2. The host's danmaku is not marked as the viewer's; deleted, it leaves the picture and
    //    the list.
    host.send(json!({"type": "danmaku", "text": DOOMED})).await;
    let doomed = host.expect_where("danmaku", |m| m["text"] == DOOMED).await;
    let flying = wait_js(&b, &flight(DOOMED), "the host's danmaku flying").await;
    assert_eq!(flying["mine"], false, "{flying}");
    host.send(json!({"type": "delete_danmaku", "id": doomed["id"]}))
        .await;
    host.expect("danmaku_deleted").await;
    // Both go in the same step, long before the flight would have ended by itself.
    wait_js(
        &b,
        &format!(
            "return ![...document.querySelectorAll('#danmaku li')] \
               .some(l => l.lastChild.textContent === {DOOMED:?});"
        ),
        "the deleted danmaku gone from the list",
    )
    .await;
    assert_eq!(
        b.execute(&flight(DOOMED)).await,
        Value::Null,
        "the deleted danmaku still flies"
    );

    // 3. A gift pops up over the picture, besides its line in the list.
    let flower = b.find("[data-gift='flower']").await;
    b.click(&flower).await;
    host.expect("gift").await;
    let pop = b
        .wait_for_text("#player-box #gift-show .gift-pop", "1 × Flower")
        .await;
    assert!(
        pop.contains('🌸') && pop.contains(&format!("{VIEWER} · 1 × Flower")),
        "{pop:?}"
    );

    // 4. Opacity, by the keyboard on the slider: applied to the overlay, kept over a reload.
    let opacity = b.find("#danmaku-opacity").await;
    b.type_text(&opacity, &ARROW_LEFT.repeat(3)).await;
    let overlay_opacity = "return [document.getElementById('danmaku-opacity').value, \
                           getComputedStyle(document.getElementById('overlay')).opacity]";
    assert_eq!(b.execute(overlay_opacity).await, json!(["70", "0.7"]));
    b.goto(&room_url).await;
    b.wait_for_text("#phase", "live").await;
    assert_eq!(b.execute(overlay_opacity).await, json!(["70", "0.7"]));

    // 5. The toggle: off, a new danmaku reaches the list but not the picture, also after a
    //    reload; on again, they fly.
    let toggle = b.find("#danmaku-toggle").await;
    b.click(&toggle).await;
    host.send(json!({"type": "danmaku", "text": QUIET})).await;
    wait_for_line(&b, HOST, QUIET).await;
    assert_eq!(flying_count(&b).await, 0);
    b.goto(&room_url).await;
    b.wait_for_text("#phase", "live").await;
    assert_eq!(
        b.execute("return document.getElementById('danmaku-toggle').checked")
            .await,
        false
    );
    host.send(json!({"type": "danmaku", "text": AFTER})).await;
    wait_for_line(&b, HOST, AFTER).await;
    assert_eq!(flying_count(&b).await, 0, "still off after a reload");
    let toggle = b.find("#danmaku-toggle").await;
    b.click(&toggle).await;
    host.send(json!({"type": "danmaku", "text": HELLO})).await;
    wait_js(&b, &flight(HELLO), "danmaku flying again").await;

    // 6. A flood: every one reaches the list; over the picture, as many as the 8 rows take
    //    fly, never overlapping, the rest are left out; once the rows have room, one flies again.
    for n in 0..20 {
        host.send(json!({"type": "danmaku", "text": format!("flood {n}")}))
            .await;
    }
    wait_for_line(&b, HOST, "flood 19").await;
    let flood = b
        .execute(
            "const lines = [...document.querySelectorAll('#danmaku li')] \
               .filter(l => l.lastChild.textContent.startsWith('flood ')).length; \
             const all = [...document.querySelectorAll('#overlay .flying')]; \
             const r = all.map(e => e.getBoundingClientRect()); \
             let overlaps = 0; \
             for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++) { \
               const a = r[i], c = r[j]; \
               if (a.left < c.right && c.left < a.right && a.top < c.bottom && c.top < a.bottom) overlaps++; \
             } \
             return [lines, all.filter(e => e.textContent.startsWith('flood ')).length, overlaps];",
        )
        .await;
    let flying_flood = flood[1].as_u64().expect("a count");
    assert_eq!(flood[0], 20, "the list has them all: {flood}");
    assert!((1..=8).contains(&flying_flood), "{flood}");
    assert_eq!(flood[2], 0, "overlapping danmaku: {flood}");
    // Past the middle, any danmaku is over half way across: every row has room again.
    wait_js(
        &b,
        "const o = document.getElementById('overlay').getBoundingClientRect(); \
         const middle = o.left + o.width / 2; \
         return [...document.querySelectorAll('#overlay .flying')].every(e => \
           e.getBoundingClientRect().left <= middle);",
        "the flood past the middle",
    )
    .await;
    host.send(json!({"type": "danmaku", "text": QUIET})).await;
    wait_js(&b, &flight(QUIET), "a danmaku flying after the flood").await;

    // 7. Full screen takes the whole player box, danmaku included, not the bare video.
    let full = b.find("#fullscreen").await;
    b.click(&full).await;
    let fullscreen = wait_js(
        &b,
        "const f = document.fullscreenElement; \
         return f ? [f.id, f.contains(document.getElementById('overlay'))] : null;",
        "the player box full screen",
    )
    .await;
    assert_eq!(fullscreen, json!(["player-box", true]));
    let full = b.find("#fullscreen").await;
    b.click(&full).await;
    wait_js(
        &b,
        "return document.fullscreenElement === null",
        "full screen left",
    )
    .await;

    assert_eq!(b.csp_violations().await, Vec::<String>::new());
    drop(b);
    site.server.stop().await;
}

#[tokio::test]
async fn guests_are_invited_to_register_and_registered_viewers_get_every_button() {
    if !webdriver::available() {
        return;
    }
    let site = Site::start().await;
    let (host_id, _) = site.user(HOST).await;
    site.user(VIEWER).await;
    let room_url = site.server.url(&format!("/room/{}", site.room_of(host_id)));
    let refused_buttons = "return ['#like', '#apply', '[data-gift]'] \
                           .filter(css => document.querySelector(css)).length";
    let b = Browser::start().await;

    // A visitor without a session, then the guest session the page made for them: only what a
    // guest may do, and the way to more.
    for visit in ["a visitor", "a guest"] {
        b.goto(&room_url).await;
        b.wait_for_text("#status", "not live").await;
        assert_eq!(b.execute(refused_buttons).await, 0, "{visit}");
        let prompt = b.find("#register-prompt").await;
        assert!(b.displayed(&prompt).await, "{visit}");
        assert!(b
            .text("#register-prompt")
            .await
            .contains("to chat, send gifts and co-stream"));
        let links = b
            .execute(
                "return [...document.querySelectorAll('#register-prompt a')] \
                 .map(a => a.getAttribute('href'))",
            )
            .await;
        assert_eq!(links, json!(["/register", "/login"]), "{visit}");
        if visit == "a visitor" {
            // The page starts a guest session for watching; the reload comes with it.
            b.wait_for_text("#audience", "1").await;
            assert!(b.cookie("rm_session").await.is_some());
        }
    }

    // A registered viewer: Like, every gift, and asking to co-stream; no invitation.
    log_in(&b, &site.server, VIEWER).await;
    b.goto(&room_url).await;
    b.wait_for_text("#status", "not live").await;
    let buttons = b
        .execute(
            "return [!!document.getElementById('like'), !!document.getElementById('apply'), \
             document.querySelectorAll('[data-gift]').length, \
             !!document.getElementById('register-prompt')]",
        )
        .await;
    let gifts = site.server.app().config.gifts.len();
    assert_eq!(buttons, json!([true, true, gifts, false]));
    assert_eq!(b.csp_violations().await, Vec::<String>::new());
    drop(b);
    site.server.stop().await;
}

#[tokio::test]
async fn the_player_follows_the_co_stream_and_a_dropped_connection_comes_back() {
    if !webdriver::available() {
        return;
    }
    let site = Site::start_with(watch_origin).await;
    let (_, host_token) = site.user(HOST).await;
    site.user(VIEWER).await;
    let (stage_id, stage_token) = site.user(STAGE).await;
    let mut host = site.ws(&host_token).await;
    host.send(json!({"type": "start_live"})).await;
    let started = host.expect("live_started").await;
    let room = started["room_id"].as_u64().expect("a room id");
    let own = started["watch_url"]
        .as_str()
        .expect("a watch URL")
        .to_owned();
    let room_url = site.server.url(&format!("/room/{room}"));
    let b = Browser::start().await;
    log_in(&b, &site.server, VIEWER).await;
    b.goto(&room_url).await;
    wait_src(&b, &own).await;
    // Gone if the page were loaded again.
    b.execute("window.rmSamePage = true").await;

    // 1. Someone joins: the audience count follows. They go on stage: the player switches to
    //    the mix; the co-stream ends: back to the host's stream, on the same page.
    let mut stage = site.ws(&stage_token).await;
    join(&mut stage, room).await;
    b.wait_for_text("#audience", "3").await;
    stage.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": stage_id, "accept": true}))
        .await;
    let mixed = host.expect("connect_started").await["watch_url"]
        .as_str()
        .expect("the mix's URL")
        .to_owned();
    assert_ne!(mixed, own);
    wait_src(&b, &mixed).await;
    b.wait_for_text("#phase", "co-streaming").await;
    stage.send(json!({"type": "end_connect"})).await;
    host.expect("connect_ended").await;
    wait_src(&b, &own).await;
    assert_eq!(b.execute("return window.rmSamePage === true").await, true);
    assert_eq!(b.current_url().await, room_url);
    drop((host, stage));

    // 2. The server restarts on the same address: the page says the connection is lost and
    //    when it tries again, then that it is back, and rejoins the room by itself.
    let (site, noticed) = tokio::join!(
        site.restart_in_place(watch_origin),
        b.wait_for_text("#connection", "Connection lost, reconnecting in")
    );
    assert!(noticed.ends_with(" s…"), "{noticed:?}");
    b.wait_for_text("#connection", "Reconnected").await;
    wait_js(
        &b,
        "return document.getElementById('connection').hidden",
        "the note gone after a while",
    )
    .await;

    // 3. It works again: the host goes live anew, the viewer's danmaku reaches the host.
    let mut host = site.ws(&host_token).await;
    host.send(json!({"type": "start_live"})).await;
    host.expect("live_started").await;
    b.wait_for_text("#phase", "live").await;
    send_danmaku(&b, AFTER).await;
    let d = host.expect_where("danmaku", |m| m["text"] == AFTER).await;
    assert_eq!(d["nickname"], VIEWER);
    wait_for_line(&b, VIEWER, AFTER).await;
    assert_eq!(b.execute("return window.rmSamePage === true").await, true);

    assert_eq!(b.csp_violations().await, Vec::<String>::new());
    drop(b);
    site.server.stop().await;
}
