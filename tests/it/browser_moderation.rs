//! Moderation from the room page in two real browsers: an admin signed in at `/admin/login`
//! opens a live room, deletes a viewer's danmaku (it leaves the viewer's page too) and bans the
//! viewer from chat with the inline form (the viewer's next danmaku is refused). The viewer's
//! page shows no admin buttons. The media plane is the scripted one.

use crate::admin::make_admin;
use crate::browser_admin::log_in_admin;
use crate::browser_room::log_in;
use crate::common::wait_for;
use crate::common::webdriver::{self, Browser};
use crate::rooms::Site;

const VIEWER: &str = "fan40";
const RUDE: &str = "a rude line";
const SPAM: &str = "spam spam spam";
const AFTER: &str = "still spamming";

/// Sends `text` from the page's danmaku form.
async fn say(browser: &Browser, text: &str) {
    let input = browser.find("#danmaku-text").await;
    browser.type_text(&input, text).await;
    let send = browser.find("#danmaku-form button[type='submit']").await;
    browser.click(&send).await;
}

/// The line of the danmaku list showing `text`, found by the page's own rendering.
fn line_of(text: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('#danmaku li')).find(li => li.textContent.includes({text:?}))"
    )
}

async fn line_shown(browser: &Browser, text: &str) -> bool {
    let script = format!("return Boolean({});", line_of(text));
    browser.execute(&script).await.as_bool() == Some(true)
}

async fn buttons_on(browser: &Browser, text: &str) -> Vec<String> {
    let script = format!(
        "const li = {}; return li ? Array.from(li.querySelectorAll('button')).map(b => b.textContent) : null;",
        line_of(text)
    );
    let found = browser.execute(&script).await;
    found
        .as_array()
        .map(|labels| {
            labels
                .iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn click_button(browser: &Browser, text: &str, label: &str) {
    let script = format!(
        "const li = {}; Array.from(li.querySelectorAll('button')).find(b => b.textContent === {label:?}).click();",
        line_of(text)
    );
    browser.execute(&script).await;
}

#[tokio::test]
async fn an_admin_deletes_and_bans_from_the_room_page_and_the_viewer_sees_it() {
    if !webdriver::available() {
        return;
    }
    // The scripted media plane's watch URLs are on another origin the pages' policy must allow.
    let site =
        Site::start_with(|c| c.media.watch_origins = vec!["http://scripted".to_owned()]).await;
    make_admin(&site.server, "root");
    site.user(VIEWER).await;
    let (_host, room) = site.live_host("host40").await;
    let room_url = site.server.url(&format!("/room/{room}"));
    let (admin, viewer) = tokio::join!(Browser::start(), Browser::start());

    // The admin signs in at /admin/login, then opens the room (as a guest of the site).
    log_in_admin(&admin, &site.server, "root").await;
    admin.goto(&room_url).await;
    admin.wait_for_text("#phase", "live").await;

    log_in(&viewer, &site.server, VIEWER).await;
    viewer.goto(&room_url).await;
    viewer.wait_for_text("#phase", "live").await;

    // The viewer's danmaku: the admin sees Delete and Ban next to it, the viewer neither.
    say(&viewer, RUDE).await;
    let on_admin = wait_for(|| async {
        let labels = buttons_on(&admin, RUDE).await;
        (!labels.is_empty()).then_some(labels)
    })
    .await;
    assert_eq!(on_admin, ["Delete", "Ban"]);
    wait_for(|| async { line_shown(&viewer, RUDE).await.then_some(()) }).await;
    assert!(buttons_on(&viewer, RUDE).await.is_empty());

    // Delete: the line leaves both pages.
    click_button(&admin, RUDE, "Delete").await;
    for page in [&viewer, &admin] {
        wait_for(|| async { (!line_shown(page, RUDE).await).then_some(()) }).await;
    }

    // Ban with the inline form: the viewer is told, and the next danmaku is refused.
    say(&viewer, SPAM).await;
    wait_for(|| async { (!buttons_on(&admin, SPAM).await.is_empty()).then_some(()) }).await;
    click_button(&admin, SPAM, "Ban").await;
    let reason = admin.find("#danmaku .ban-form [name='reason']").await;
    admin.type_text(&reason, "flooding").await;
    let ban = admin.find("#danmaku .ban-form button[type='submit']").await;
    admin.click(&ban).await;
    admin.wait_for_text("#notice", "banned from chatting").await;
    viewer
        .wait_for_text("#notice", "You are banned (chat): flooding")
        .await;
    say(&viewer, AFTER).await;
    viewer
        .wait_for_text("#notice", "you are banned from chatting")
        .await;
    assert!(
        !line_shown(&admin, AFTER).await,
        "the refused line was never shown"
    );
    let csp = admin.csp_violations().await;
    assert!(csp.is_empty(), "{csp:?}");
}
