//! Going live from the browser with Chromium's fake camera, against the real server, nginx-rtmp
//! and ffmpeg: the host clicks "Go live with camera" (the page goes live first, then uploads
//! over `/ws/publish`), a guest in a second browser sees the picture play, the host console shows
//! the push and the viewers; the camera's Stop ends the push, a second start resumes it, and
//! stopping the live session takes the room off the air.

use std::time::Duration;

use roommanager::model::UserId;
use serde_json::Value;

use crate::accounts::{relaxed, verified_user};
use crate::browser_room::{log_in, wait_js_within};
use crate::common::webdriver::{self, Browser};
use crate::common::TestServer;
use crate::media_rtmp::media_tools_present;

const HOST: &str = "host80";
/// Room for nginx to cut the first HLS segments and the player to fetch them.
const MEDIA_WAIT: Duration = Duration::from_secs(60);
const HOST_PANEL: &str = ".host-console [data-publish='host']";

/// The host's camera panel's push state, once it is `state`.
async fn wait_for_push_state(browser: &Browser, state: &str) {
    let script =
        format!("return document.querySelector(\"{HOST_PANEL}\").dataset.state === {state:?};");
    wait_js_within(browser, &script, &format!("the push {state}"), MEDIA_WAIT).await;
}

/// Waits until the room's `<video>` plays: enough data for the current frame, and its clock
/// moving on by more than a second.
async fn wait_for_playing(browser: &Browser, who: &str) {
    let position = "const v = document.getElementById('player'); \
                    return v.readyState >= 2 && v.currentTime > 0 ? v.currentTime : null;";
    let first = wait_js_within(
        browser,
        position,
        &format!("{who}'s video playing"),
        MEDIA_WAIT,
    )
    .await
    .as_f64()
    .expect("a position in seconds");
    let later = format!(
        "const v = document.getElementById('player'); \
         return v.readyState >= 2 && v.currentTime > {first} + 1;"
    );
    wait_js_within(
        browser,
        &later,
        &format!("{who}'s video advancing"),
        MEDIA_WAIT,
    )
    .await;
}

#[tokio::test]
async fn a_host_goes_live_with_the_browser_camera_and_a_guest_watches() {
    if !webdriver::available() || !media_tools_present() {
        return;
    }
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
    })
    .await;
    let (host_id, _) = verified_user(&server, HOST).await;
    let room = server
        .app()
        .store
        .user(UserId(host_id))
        .expect("the store answers")
        .expect("the host exists")
        .room_id
        .expect("a verified user has a room")
        .0;
    let room_url = server.url(&format!("/room/{room}"));
    let (a, b) = tokio::join!(Browser::start_with_camera(), Browser::start());

    // The host finds the console through "My room" and goes live with the camera alone.
    log_in(&a, &server, HOST).await;
    let my_room = a.find("header a[href='/studio']").await;
    a.click(&my_room).await;
    a.wait_for_text("#status", "not live").await;
    assert_eq!(a.current_url().await, room_url);
    a.wait_for_text("#push-key", "?code=").await;
    let go = a.find(&format!("{HOST_PANEL} [data-part='start']")).await;
    assert_eq!(
        a.text(&format!("{HOST_PANEL} [data-part='start']")).await,
        "Go live with camera"
    );
    a.click(&go).await;
    a.wait_for_text("#phase", "live").await;
    wait_for_push_state(&a, "pushing").await;
    assert_eq!(
        a.text(&format!("{HOST_PANEL} [data-part='state']")).await,
        "pushing"
    );
    a.wait_for_text("#on-air", "On the air").await;
    let preview = a
        .execute(&format!(
            "return document.querySelector(\"{HOST_PANEL} [data-part='preview']\").srcObject !== null;"
        ))
        .await;
    assert_eq!(preview, true, "the host sees their own picture");

    // A guest (no account) watches the picture the browser sends.
    b.goto(&room_url).await;
    b.wait_for_text("#phase", "live").await;
    wait_for_playing(&b, "the guest").await;
    a.wait_for_text("#viewers", "1 guests").await;

    // Upload health: what reached the server per second, nothing dropped.
    let health = a
        .execute(&format!(
            "const p = (n) => document.querySelector(\"{HOST_PANEL} [data-part='\" + n + \"']\").textContent; \
             return [Number(p('rate')), Number(p('dropped')), \
                     document.querySelector(\"{HOST_PANEL}\").dataset.mime];"
        ))
        .await;
    let rate = health[0].as_f64().unwrap_or_default();
    assert!(rate > 0.0, "a bitrate: {health}");
    assert_eq!(health[1], 0, "{health}");
    eprintln!("browser push: {health}");

    // The camera's Stop ends the push (the room stays live, off the air); a new start resumes
    // with a fresh recorder and socket.
    let stop_camera = a.find(&format!("{HOST_PANEL} [data-part='stop']")).await;
    a.click(&stop_camera).await;
    wait_for_push_state(&a, "stopped").await;
    a.wait_for_text("#on-air", "Not on the air").await;
    assert_eq!(a.text("#phase").await, "live");
    a.click(&go).await;
    wait_for_push_state(&a, "pushing").await;
    a.wait_for_text("#on-air", "On the air").await;

    // Stopping the live session ends the push and takes the room off the air for the guest.
    let stop_live = a.find("#stop").await;
    a.click(&stop_live).await;
    wait_for_push_state(&a, "stopped").await;
    b.wait_for_text("#phase", "offline").await;
    let rooms: Value = server
        .get("/api/v1/rooms")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(rooms["rooms"], serde_json::json!([]));
    for browser in [&a, &b] {
        assert_eq!(browser.csp_violations().await, Vec::<String>::new());
    }
}
