//! Co-streaming from the browser, against the real server, nginx-rtmp and ffmpeg: the host goes
//! live with Chromium's fake camera, a registered viewer (a second Chromium with a camera) asks to
//! co-stream, the host accepts in the console, the viewer goes on stage with their camera, and
//! every player (host, guest on stage, a guest viewer without a camera) switches to the mix that
//! ffmpeg makes of both pushes; ending the co-stream brings everyone back to the host's stream.
//! Also the host console's push details, shown from the page's load on, a reload included (from
//! `GET /api/v1/me/push`, or, with a media plane without standing keys, from `room_info`).

use std::time::Duration;

use roommanager::model::UserId;
use serde_json::Value;

use crate::accounts::{relaxed, verified_user};
use crate::browser_room::{log_in, wait_js_within};
use crate::common::webdriver::{self, Browser};
use crate::common::TestServer;
use crate::media_rtmp::media_tools_present;
use crate::rooms::{join, Site};

const HOST: &str = "host90";
const COSTAR: &str = "costar90";
/// Room for nginx to cut the first HLS segments, ffmpeg to start the mix and the players to
/// fetch them, on a machine shared with other tests.
const MEDIA_WAIT: Duration = Duration::from_secs(90);
const HOST_PANEL: &str = ".host-console [data-publish='host']";
const GUEST_PANEL: &str = "#guest-push [data-publish='guest']";

/// The room of the verified user `id`.
fn room_of(server: &TestServer, id: u64) -> u64 {
    server
        .app()
        .store
        .user(UserId(id))
        .expect("the store answers")
        .expect("the user exists")
        .room_id
        .expect("a verified user has a room")
        .0
}

/// Waits until the camera panel `panel` reports the push `state`.
async fn wait_for_push_state(browser: &Browser, panel: &str, state: &str) {
    let script = format!("return document.querySelector(\"{panel}\").dataset.state === {state:?};");
    wait_js_within(
        browser,
        &script,
        &format!("{panel}: the push {state}"),
        MEDIA_WAIT,
    )
    .await;
}

/// Waits until the player shows a stream for which `test` (a JS expression over `s`, the
/// player's `data-stream`) holds; that stream.
async fn wait_for_stream(browser: &Browser, test: &str, what: &str) -> String {
    let script = format!(
        "const s = document.getElementById('player').dataset.stream; \
         return s && ({test}) ? s : null;"
    );
    let stream = wait_js_within(browser, &script, what, MEDIA_WAIT).await;
    stream.as_str().expect("a URL").to_owned()
}

/// Waits until the room's `<video>` plays: enough data for the current frame, and its clock
/// moving on by more than a second.
async fn wait_for_playing(browser: &Browser, who: &str) {
    let position = "const v = document.getElementById('player'); \
                    return v.readyState >= 2 && v.currentTime > 0 ? v.currentTime : null;";
    let first = wait_js_within(browser, position, &format!("{who} playing"), MEDIA_WAIT)
        .await
        .as_f64()
        .expect("a position in seconds");
    let later = format!(
        "const v = document.getElementById('player'); \
         return v.readyState >= 2 && v.currentTime > {first} + 1;"
    );
    wait_js_within(browser, &later, &format!("{who} advancing"), MEDIA_WAIT).await;
}

/// The push section of the host console, once it shows `key` (or any key): (server, key).
async fn shown_push(browser: &Browser) -> (String, String) {
    browser.wait_for_text("#push-key", "?code=").await;
    let push = browser.find("#push").await;
    assert!(browser.displayed(&push).await, "the push details are shown");
    (
        browser.text("#push-server").await,
        browser.text("#push-key").await,
    )
}

#[tokio::test]
async fn the_host_console_shows_the_push_details_from_the_start_and_after_a_reload() {
    if !webdriver::available() {
        return;
    }
    let server = TestServer::start_with(relaxed).await;
    let (host_id, token) = verified_user(&server, HOST).await;
    let room_url = server.url(&format!("/room/{}", room_of(&server, host_id)));
    let expected: Value = reqwest::Client::new()
        .get(server.url("/api/v1/me/push"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("JSON");
    let expected = (
        expected["server"].as_str().expect("a server").to_owned(),
        expected["stream_key"].as_str().expect("a key").to_owned(),
    );
    let browser = Browser::start().await;
    log_in(&browser, &server, HOST).await;
    browser.goto(&room_url).await;
    browser.wait_for_text("#status", "not live").await;
    assert_eq!(shown_push(&browser).await, expected, "before going live");

    // Live (an OBS user reads the key now), then the page reloaded: the key is still there.
    let start = browser.find("#start").await;
    browser.click(&start).await;
    browser.wait_for_text("#phase", "live").await;
    browser.execute("location.reload()").await;
    browser.wait_for_text("#phase", "live").await;
    assert_eq!(shown_push(&browser).await, expected, "after a reload");
    assert_eq!(browser.csp_violations().await, Vec::<String>::new());
}

/// With a media plane that hands out push URLs only when the room goes live (the scripted one,
/// like the `http` backend), the host's `room_info` carries it, so a reload keeps it on the
/// console; nobody else's `room_info` does.
#[tokio::test]
async fn a_reloaded_console_keeps_the_push_url_of_the_live_session() {
    if !webdriver::available() {
        return;
    }
    // The page may play the scripted plane's (unreachable) watch URLs.
    let site =
        Site::start_with(|c| c.media.watch_origins = vec!["http://scripted".to_owned()]).await;
    let (host_id, _) = site.user(HOST).await;
    let room = site.room_of(host_id);
    let browser = Browser::start().await;
    log_in(&browser, &site.server, HOST).await;
    browser
        .goto(&site.server.url(&format!("/room/{room}")))
        .await;
    browser.wait_for_text("#status", "not live").await;
    let push = browser.find("#push").await;
    assert!(
        !browser.displayed(&push).await,
        "no push URL before going live"
    );
    let start = browser.find("#start").await;
    browser.click(&start).await;
    let live = shown_push(&browser).await;
    assert!(live.0.starts_with("rtmp://scripted/live"), "{live:?}");

    browser.execute("location.reload()").await;
    browser.wait_for_text("#phase", "live").await;
    assert_eq!(shown_push(&browser).await, live, "after a reload");

    let viewer = site.guest().await;
    let mut viewer = site.ws(&viewer).await;
    let info = join(&mut viewer, room).await;
    assert_eq!(info["state"], "live");
    assert_eq!(
        info.get("push_url"),
        None,
        "a viewer never sees the push code"
    );
    assert_eq!(browser.csp_violations().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_viewer_goes_on_stage_with_the_browser_camera_and_every_player_switches_to_the_mix() {
    if !webdriver::available() || !media_tools_present() {
        return;
    }
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
    })
    .await;
    let (host_id, _) = verified_user(&server, HOST).await;
    verified_user(&server, COSTAR).await;
    let room_url = server.url(&format!("/room/{}", room_of(&server, host_id)));
    let (a, b, c) = tokio::join!(
        Browser::start_with_camera(),
        Browser::start_with_camera(),
        Browser::start()
    );

    // The host goes live with the camera.
    log_in(&a, &server, HOST).await;
    a.goto(&room_url).await;
    a.wait_for_text("#status", "not live").await;
    let go = a.find(&format!("{HOST_PANEL} [data-part='start']")).await;
    a.click(&go).await;
    wait_for_push_state(&a, HOST_PANEL, "pushing").await;
    let host_stream = wait_for_stream(&a, "s.startsWith('/hls/live/')", "the host's stream").await;

    // A registered viewer asks to co-stream; a guest viewer watches.
    log_in(&b, &server, COSTAR).await;
    b.goto(&room_url).await;
    b.wait_for_text("#phase", "live").await;
    c.goto(&room_url).await;
    c.wait_for_text("#phase", "live").await;
    let apply = b.find("#apply").await;
    b.click(&apply).await;

    // The host accepts in the console.
    a.wait_for_text("#queue li", COSTAR).await;
    let accept = a.find("#queue li button").await;
    assert_eq!(a.text("#queue li button").await, "Accept");
    a.click(&accept).await;

    // The viewer is on stage and goes on with the camera.
    b.wait_for_text("#guest-push h2", "You are on stage").await;
    let on_stage = b.find(&format!("{GUEST_PANEL} [data-part='start']")).await;
    assert_eq!(
        b.text(&format!("{GUEST_PANEL} [data-part='start']")).await,
        "Go on stage with camera"
    );
    b.click(&on_stage).await;
    wait_for_push_state(&b, GUEST_PANEL, "pushing").await;

    // Every player switches to the mix; the guest viewer's plays.
    let mix = wait_for_stream(&c, "s.startsWith('/hls/mix/')", "the mix at the viewer").await;
    for (browser, who) in [(&a, "the host"), (&b, "the guest on stage")] {
        let test = format!("s === {mix:?}");
        wait_for_stream(browser, &test, &format!("the mix at {who}")).await;
        browser.wait_for_text("#phase", "co-streaming").await;
    }
    wait_for_playing(&c, "the viewer's mix").await;
    assert_eq!(
        a.text(&format!("{HOST_PANEL} [data-part='state']")).await,
        "pushing",
        "the host's own push goes on"
    );

    // The host ends the co-stream: everyone is back on the host's stream, the guest's camera
    // push ends.
    let end = a.find("#end-connect").await;
    a.click(&end).await;
    for (browser, who) in [(&a, "the host"), (&b, "the guest"), (&c, "the viewer")] {
        let test = format!("s === {host_stream:?}");
        wait_for_stream(browser, &test, &format!("the host's stream at {who}")).await;
    }
    wait_for_push_state(&b, GUEST_PANEL, "stopped").await;
    wait_for_playing(&c, "the viewer's host stream").await;
    for browser in [&a, &b, &c] {
        assert_eq!(browser.csp_violations().await, Vec::<String>::new());
    }
}
