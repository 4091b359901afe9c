//! An admin bans a user from the admin pages in a real browser while that user has a room page
//! open in another: the ban (chat, the 1-hour preset) shows on the user's page at once and the
//! next danmaku they send is refused there, without a reload.

use reqwest::StatusCode;
use roommanager::store::unix_now;

use crate::accounts::get_auth;
use crate::admin::{admin_token, make_admin, ADMIN_PASSWORD};
use crate::browser_room::{log_in, send_danmaku, wait_for_line};
use crate::common::webdriver::{self, Browser};
use crate::common::TestServer;
use crate::rooms::Site;

const FAN: &str = "banfan40";
const HOST: &str = "banhost40";

/// Logs `browser` in at `/admin/login` as `name` (with [`ADMIN_PASSWORD`]) by the form.
pub(crate) async fn log_in_admin(browser: &Browser, server: &TestServer, name: &str) {
    browser.goto(&server.url("/admin/login")).await;
    let field = browser
        .find("form[action='/admin/login'] [name='name']")
        .await;
    browser.type_text(&field, name).await;
    let password = browser
        .find("form[action='/admin/login'] [name='password']")
        .await;
    browser.type_text(&password, ADMIN_PASSWORD).await;
    let submit = browser
        .find("form[action='/admin/login'] button[type='submit']")
        .await;
    browser.click(&submit).await;
    browser.wait_for_text("header .who", name).await;
}

#[tokio::test]
async fn an_admin_bans_a_user_in_the_browser_and_their_open_room_page_shows_it() {
    if !webdriver::available() {
        return;
    }
    let site =
        Site::start_with(|c| c.media.watch_origins = vec!["http://scripted".to_owned()]).await;
    make_admin(&site.server, "root");
    let (_host, room) = site.live_host(HOST).await;
    let (fan, fan_token) = site.user(FAN).await;
    let nickname = get_auth(&site.server, "/api/v1/me", &fan_token)
        .await
        .expect(StatusCode::OK)
        .json()["nickname"]
        .as_str()
        .expect("a nickname")
        .to_owned();
    let (admin, user) = tokio::join!(Browser::start(), Browser::start());

    // The user, in their room page, chats.
    log_in(&user, &site.server, FAN).await;
    user.goto(&site.server.url(&format!("/room/{room}"))).await;
    send_danmaku(&user, "before the ban").await;
    wait_for_line(&user, &nickname, "before the ban").await;

    // The admin logs in by the form, finds the user in the list and bans them from their page.
    log_in_admin(&admin, &site.server, "root").await;
    admin
        .goto(&site.server.url(&format!("/admin/users?q={FAN}")))
        .await;
    let link = admin.find(&format!("a[href='/admin/users/{fan}']")).await;
    admin.click(&link).await;
    let chat = admin.find("#ban-form [name='scope'][value='chat']").await;
    admin.click(&chat).await;
    let reason = admin.find("#ban-form [name='reason']").await;
    admin.type_text(&reason, "flooding the chat").await;
    let hour = admin
        .find("#ban-form [name='expiry'] option[value='1h']")
        .await;
    admin.click(&hour).await;
    let before = unix_now();
    let ban = admin.find("#ban-form button[type='submit']").await;
    admin.click(&ban).await;
    admin.wait_for_text("#notice", "Banned").await;
    admin.wait_for_text("#bans", "flooding the chat").await;

    // The user's open page says so at once, and refuses their next danmaku.
    user.wait_for_text("#notice", "You are banned (chat): flooding the chat")
        .await;
    send_danmaku(&user, "after the ban").await;
    user.wait_for_text("#notice", "banned from chatting").await;

    // The ban ends an hour from when it was given.
    let token = admin_token(&site.server.base, "root", ADMIN_PASSWORD).await;
    let detail = get_auth(&site.server, &format!("/api/v1/admin/users/{fan}"), &token)
        .await
        .expect(StatusCode::OK)
        .json();
    let until = detail["bans"][0]["until"].as_u64().expect("an end");
    assert!(
        (before + 3600..=unix_now() + 3600).contains(&until),
        "until {until}, given at {before}: {detail}"
    );
    let lines = user
        .execute("return [...document.querySelectorAll('#danmaku li')].map(l => l.textContent);")
        .await;
    assert!(
        !lines.to_string().contains("after the ban"),
        "the refused danmaku is not shown: {lines}"
    );
}
