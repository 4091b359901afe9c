//! The live room page in two real browsers: a host goes live from the host console, a visitor
//! without a session watches as a guest, then logs in, finds the room on the home page, chats,
//! sends a gift and asks to co-stream; the host accepts, then closes the room. The media plane is
//! the scripted one, so every URL the page shows is known.

use std::path::Path;
use std::time::{Duration, Instant};

use roommanager::media::scripted::Call;
use roommanager::model::UserId;
use serde_json::Value;

use crate::accounts::PASSWORD;
use crate::common::webdriver::{self, Browser, WAIT};
use crate::common::TestServer;
use crate::rooms::Site;

const HOST: &str = "host30";
const VIEWER: &str = "fan30";
/// Typed through WebDriver, so only characters of the Basic Multilingual Plane (no emoji).
const TITLE: &str = "Friday jam 星期五";
const HELLO: &str = "hello from the fan 你好";
const HTML: &str = "<img src=x onerror=alert(1)>";
const WELCOME: &str = "welcome 欢迎";
const HOST_SHOT: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/rm-room-host.png");
const VIEWER_SHOT: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/rm-room-viewer.png");

#[tokio::test]
async fn the_room_page_works_for_a_host_a_guest_and_a_viewer_in_real_browsers() {
    if !webdriver::available() {
        return;
    }
    let started = Instant::now();
    // The scripted media plane's watch URLs are on another origin, as an `http` backend's
    // distributor would be: the pages' policy must let the player load from there.
    let site =
        Site::start_with(|c| c.media.watch_origins = vec!["http://scripted".to_owned()]).await;
    let (host_id, _) = site.user(HOST).await;
    site.user(VIEWER).await;
    let room = site
        .server
        .app()
        .store
        .user(UserId(host_id))
        .expect("store")
        .expect("the host exists")
        .room_id
        .expect("a verified user has a room")
        .0;
    let room_path = format!("/room/{room}");
    let room_url = site.server.url(&room_path);
    // What the page shows but a script cannot fail on: collected, asserted at the end.
    let mut defects: Vec<String> = Vec::new();
    let (a, b) = tokio::join!(Browser::start(), Browser::start());

    // 1. The host logs in through the form and goes live from the host console.
    log_in(&a, &site.server, HOST).await;
    a.goto(&room_url).await;
    let console = a.find(".host-console").await;
    assert!(a.displayed(&console).await, "the host sees the console");
    a.wait_for_text("#status", "not live").await;
    assert_eq!(a.text("#phase").await, "offline");
    let title = a.find("#live-title").await;
    a.type_text(&title, TITLE).await;
    let go_live = a.find("#start").await;
    a.click(&go_live).await;
    a.wait_for_text("#phase", "live").await;
    assert_eq!(a.text("#phase").await, "live");
    let host_live = distribution(&site, 0);
    let watch_url = format!("http://scripted/hls/{host_live}/index.m3u8");
    let push = a.find("#push").await;
    assert!(a.displayed(&push).await, "the push details are shown");
    let server = a.text("#push-server").await;
    let key = a.text("#push-key").await;
    assert_eq!(server, "rtmp://scripted/live");
    assert!(key.starts_with(&host_live), "stream key {key:?}");
    assert_eq!(a.text("#push-url").await, format!("{server}/{key}"));
    assert_eq!(a.text("#room-title").await, TITLE);
    assert_eq!(wait_src(&a, &watch_url).await, watch_url);
    check_hidden(&a, "#offline", "the offline cover, host live", &mut defects).await;

    // 2. A visitor with no session: the page makes a guest session itself and watches.
    assert!(b.cookie("rm_session").await.is_none());
    b.goto(&room_url).await;
    b.wait_for_text("#phase", "live").await;
    assert_eq!(b.text("#phase").await, "live");
    let cookie = b
        .cookie("rm_session")
        .await
        .expect("a guest session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert!(b.try_find(".host-console").await.is_none());
    assert_eq!(b.text("#room-title").await, TITLE);
    for browser in [&a, &b] {
        browser.wait_for_text("#audience", "2").await;
        assert_eq!(browser.text("#audience").await, "2");
    }
    assert_eq!(wait_src(&b, &watch_url).await, watch_url);
    assert!(watch_url.ends_with(".m3u8"));
    let link = b.find("#stream-url").await;
    assert_eq!(
        b.attribute(&link, "href").await.as_deref(),
        Some(&*watch_url)
    );
    let input = b.find("#danmaku-text").await;
    assert!(b.attribute(&input, "disabled").await.is_some());
    assert_eq!(
        b.attribute(&input, "placeholder").await.as_deref(),
        Some("Register to chat")
    );
    let send = b.find("#danmaku-form button[type='submit']").await;
    assert!(b.attribute(&send, "disabled").await.is_some());
    check_hidden(
        &b,
        "#offline",
        "the offline cover, guest watching",
        &mut defects,
    )
    .await;

    // Leaving the page leaves the room: the host counts one again.
    b.goto(&site.server.url("/login")).await;
    let guest_left = wait_for_audience(&a, "1").await;
    if !guest_left {
        defects.push(
            "the guest's page, left for /login, stays in the room: its WebSocket stays open \
             (the page is kept in the back/forward cache) and the host still counts it"
                .to_owned(),
        );
    }

    // 7. (While live.) The viewer logs in in the same browser; the home page lists the room.
    log_in(&b, &site.server, VIEWER).await;
    b.goto(&site.server.url("/")).await;
    let card = b.find(&format!("a.room-card[href='{room_path}']")).await;
    let card_text = b.text(&format!("a.room-card[href='{room_path}']")).await;
    assert!(
        card_text.contains(TITLE) && card_text.contains(HOST) && card_text.contains("watching"),
        "card: {card_text:?}"
    );
    b.click(&card).await;
    b.wait_for_text("#phase", "live").await;
    assert_eq!(b.current_url().await, room_url);
    if guest_left {
        assert!(wait_for_audience(&a, "2").await, "the viewer is counted");
    }

    // 3. Danmaku through the form reaches both browsers, as text.
    let input = b.find("#danmaku-text").await;
    assert!(b.attribute(&input, "disabled").await.is_none());
    send_danmaku(&b, HELLO).await;
    for browser in [&a, &b] {
        wait_for_line(browser, VIEWER, HELLO).await;
    }
    send_danmaku(&b, HTML).await;
    for browser in [&a, &b] {
        wait_for_line(browser, VIEWER, HTML).await;
        let images = browser
            .execute("return document.querySelectorAll('#danmaku img').length")
            .await;
        assert_eq!(images, 0, "the danmaku is shown as text, not as an element");
    }
    // The host's danmaku carries the host mark (from the server, not the nickname); the
    // viewer's does not.
    send_danmaku(&a, WELCOME).await;
    for browser in [&a, &b] {
        wait_for_line(browser, HOST, WELCOME).await;
        let marks = browser
            .execute(
                "return [...document.querySelectorAll('#danmaku li:not(.gift-line)')] \
                 .map(l => [l.querySelector('.who').textContent, \
                            l.querySelector('.host-badge')?.textContent ?? null]);",
            )
            .await;
        let marks = marks.as_array().expect("a list of lines");
        assert!(
            marks.contains(&serde_json::json!([HOST, "Host"])),
            "{marks:?}"
        );
        assert!(
            marks.contains(&serde_json::json!([VIEWER, null])),
            "{marks:?}"
        );
    }

    // 4. A gift: a gift line in the host's list.
    let flower = b.find("[data-gift='flower']").await;
    b.click(&flower).await;
    let gift = wait_js(
        &a,
        "const l = [...document.querySelectorAll('#danmaku li.gift-line')].at(-1); \
         return l ? [l.querySelector('.who').textContent, l.lastChild.textContent] : null;",
        "a gift line in the host's danmaku",
    )
    .await;
    assert_eq!(gift, serde_json::json!([VIEWER, " sent 1 × 🌸 Flower"]));

    // 5. Co-streaming: ask, accept, the viewer is on stage, everyone watches the mix.
    let end_connect = a.find("#end-connect").await;
    if a.displayed(&end_connect).await {
        defects.push("\"End co-stream\" is shown to the host before any co-stream".to_owned());
    }
    let apply = b.find("#apply").await;
    b.click(&apply).await;
    a.wait_for_text("#queue li", VIEWER).await;
    let buttons = a
        .execute(
            "return [...document.querySelectorAll('#queue li button')].map(b => b.textContent)",
        )
        .await;
    assert_eq!(buttons, serde_json::json!(["Accept", "Refuse"]));
    assert!(a.text("#queue li").await.starts_with(VIEWER));
    a.wait_for_text("#notice", &format!("{VIEWER} asks to co-stream"))
        .await;
    let accept = a.find("#queue li button").await;
    a.click(&accept).await;
    b.wait_for_text("#guest-push h2", "You are on stage").await;
    let stage = b.find("#guest-push").await;
    assert!(b.displayed(&stage).await);
    let guest_push = b.text("#guest-push-url").await;
    assert!(
        guest_push.starts_with(&format!("rtmp://scripted/live/r{room}-guest-")),
        "guest push URL {guest_push:?}"
    );
    let mixed_url = format!("http://scripted/hls/{}/index.m3u8", distribution(&site, 1));
    assert_ne!(mixed_url, watch_url);
    for browser in [&a, &b] {
        assert_eq!(wait_src(browser, &mixed_url).await, mixed_url);
        let link = browser.find("#stream-url").await;
        assert_eq!(
            browser.attribute(&link, "href").await.as_deref(),
            Some(&*mixed_url)
        );
        browser.wait_for_text("#phase", "co-streaming").await;
        assert_eq!(browser.text("#phase").await, "live · co-streaming");
        let text = browser.text("#notice").await;
        assert_eq!(text, format!("{VIEWER} is on stage with {HOST}"));
    }
    assert!(a.displayed(&end_connect).await, "the host can end it");
    let queue = a.text("#queue").await;
    if queue != "Nobody is asking to co-stream." {
        defects.push(format!(
            "the host's co-stream queue still offers the accepted viewer: {queue:?}"
        ));
    }
    assert!(
        a.try_find("#guest-push").await.is_some() && {
            let section = a.find("#guest-push").await;
            !a.displayed(&section).await
        },
        "the host is not told to push as a guest"
    );
    check_hidden(
        &b,
        "#offline",
        "the offline cover, co-streaming",
        &mut defects,
    )
    .await;
    for browser in [&a, &b] {
        browser.execute("window.scrollTo(0, 0)").await;
    }
    a.screenshot(Path::new(HOST_SHOT)).await;
    b.screenshot(Path::new(VIEWER_SHOT)).await;
    for shot in [HOST_SHOT, VIEWER_SHOT] {
        let bytes = std::fs::read(shot).expect("screenshot written");
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{shot} is a PNG");
    }

    // 6. The host closes the room (confirming the dialog); the viewer is told.
    let close = a.find("#close").await;
    a.click(&close).await;
    let question = a.accept_alert().await;
    assert!(
        question.starts_with("Close the room?"),
        "dialog: {question:?}"
    );
    b.wait_for_text("#status", "The room is closed").await;
    assert_eq!(
        b.text("#status").await,
        "The room is closed: the host closed the room"
    );
    assert_eq!(b.text("#phase").await, "closing");
    let src = b
        .execute("return document.getElementById('player').getAttribute('data-stream')")
        .await;
    assert_eq!(src, Value::Null, "the player stops");
    a.wait_for_text("#status", "The room is closed").await;

    // All of it ran under the pages' Content-Security-Policy without a single violation
    // (hls.js's worker and blob: video, the WebSocket, the guest sign-up included).
    for browser in [&a, &b] {
        assert_eq!(browser.csp_violations().await, Vec::<String>::new());
    }

    drop((a, b));
    site.server.stop().await;
    assert!(
        defects.is_empty(),
        "the room page shows these wrongly:\n{}",
        defects.join("\n")
    );
    eprintln!("room browser test took {:.1?}", started.elapsed());
}

/// Logs `name` in through the login form; done when the header names them.
pub(crate) async fn log_in(browser: &Browser, server: &TestServer, name: &str) {
    browser.goto(&server.url("/login")).await;
    let login = browser.find("form[action='/login'] [name='login']").await;
    browser.type_text(&login, name).await;
    let password = browser
        .find("form[action='/login'] [name='password']")
        .await;
    browser.type_text(&password, PASSWORD).await;
    let submit = browser
        .find("form[action='/login'] button[type='submit']")
        .await;
    browser.click(&submit).await;
    browser.wait_for_text("header a.who", name).await;
}

/// The watch URL the scripted media plane gave for its `n`-th distribution (0: the host's).
fn distribution(site: &Site, n: usize) -> String {
    let calls = site.media.calls();
    let started: Vec<&String> = calls
        .iter()
        .filter(|(c, _)| *c == Call::StartDistribution)
        .map(|(_, live)| live)
        .collect();
    started
        .get(n)
        .unwrap_or_else(|| panic!("distribution {n} never started: {calls:?}"))
        .to_string()
}

pub(crate) async fn send_danmaku(browser: &Browser, text: &str) {
    let input = browser.find("#danmaku-text").await;
    browser.type_text(&input, text).await;
    let send = browser.find("#danmaku-form button[type='submit']").await;
    browser.click(&send).await;
}

/// Waits until the danmaku list has a line from `who` saying exactly `text`.
pub(crate) async fn wait_for_line(browser: &Browser, who: &str, text: &str) {
    let script = "return [...document.querySelectorAll('#danmaku li:not(.gift-line)')] \
                  .map(l => [l.querySelector('.who').textContent, l.lastChild.textContent]);";
    let wanted = serde_json::json!([who, text]);
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = browser.execute(script).await;
        if lines
            .as_array()
            .is_some_and(|lines| lines.contains(&wanted))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no danmaku {wanted} after {WAIT:?}; the list: {lines}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the player plays `url` (its `data-stream`); the stream it has then.
pub(crate) async fn wait_src(browser: &Browser, url: &str) -> Value {
    let script = format!(
        "const s = document.getElementById('player').getAttribute('data-stream'); \
         return s === {url:?} ? s : null;"
    );
    wait_js(browser, &script, &format!("the player's src {url}")).await
}

/// Polls `script` until it answers something other than null, false or ""; that answer.
pub(crate) async fn wait_js(browser: &Browser, script: &str, what: &str) -> Value {
    wait_js_within(browser, script, what, WAIT).await
}

/// Like [`wait_js`], waiting up to `wait` (for what takes a real media plane a while).
pub(crate) async fn wait_js_within(
    browser: &Browser,
    script: &str,
    what: &str,
    wait: Duration,
) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let value = browser.execute(script).await;
        let falsy = matches!(&value, Value::Null | Value::Bool(false)) || value == "";
        if !falsy {
            return value;
        }
        if Instant::now() > deadline {
            panic!(
                "never saw {what} after {wait:?}; page:\n{}",
                browser.page_source().await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to [`WAIT`] for the audience count to read `count`; whether it did.
async fn wait_for_audience(browser: &Browser, count: &str) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if browser.text("#audience").await == count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Records a defect when `css` (which the script hid) is still shown.
async fn check_hidden(browser: &Browser, css: &str, what: &str, defects: &mut Vec<String>) {
    let element = browser.find(css).await;
    let hidden_attr = browser.attribute(&element, "hidden").await.is_some();
    if browser.displayed(&element).await {
        defects.push(format!(
            "{what} ({css}) is displayed although the script set hidden={hidden_attr}"
        ));
    }
}
