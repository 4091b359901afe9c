//! Mail in its reader's language, through a real SMTP server (aiosmtpd): the verification mail
//! follows the language the person registered in (English by default), a resend follows the
//! language asked in and keeps it for the account, the admin's resend the account's language, a
//! signed-in user's language switch the mail after it; the admin's test mail is in the admin's
//! language; deleting an account deletes its language with it.

use reqwest::header::{ACCEPT_LANGUAGE, COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{
    app_mailing_to, assert_first_verification, click, get_auth, login_token, send, Reply, PASSWORD,
};
use crate::admin::{admin_token, make_admin, ADMIN_PASSWORD};
use crate::common::smtp::{self, Mail, SmtpServer};
use crate::common::TestServer;
use crate::web_hardening::no_redirects;
use roommanager::model::UserId;

const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Registers `username` over the API with the given `Accept-Language`, if any.
async fn register_in(server: &TestServer, username: &str, accept: Option<&str>) -> Reply {
    let mut request = server
        .client
        .post(server.url("/api/v1/register"))
        .json(&json!({"username": username, "password": PASSWORD, "email": email(username)}));
    if let Some(accept) = accept {
        request = request.header(ACCEPT_LANGUAGE, accept);
    }
    send(request).await
}

/// Registers `username` as [`register_in`] does; its user id.
async fn registered_id(server: &TestServer, username: &str, accept: Option<&str>) -> u64 {
    register_in(server, username, accept)
        .await
        .expect(StatusCode::CREATED)
        .json()["user_id"]
        .as_u64()
        .expect("a user id")
}

fn email(username: &str) -> String {
    format!("{username}@example.com")
}

/// The `n`-th mail (counting from 1) to `username`'s address.
async fn nth_mail(mail: &SmtpServer, username: &str, n: usize) -> Mail {
    mail.wait_for_mails(&email(username), n, WAIT)
        .await
        .swap_remove(n - 1)
}

fn is_chinese(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

async fn server_and_mail() -> Option<(SmtpServer, TestServer)> {
    if !smtp::available() {
        return None;
    }
    let mail = SmtpServer::start();
    let server = app_mailing_to(mail.port, |_| {}).await;
    Some((mail, server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_verification_mail_is_in_the_language_registered_in() {
    let Some((mail, server)) = server_and_mail().await else {
        return;
    };
    register_in(&server, "lin", Some("zh-CN,zh;q=0.9,en;q=0.5"))
        .await
        .expect(StatusCode::CREATED);
    let zh = nth_mail(&mail, "lin", 1).await;
    assert_eq!(zh.subject, "验证 RoomManager 账号“lin”的邮箱");
    assert!(
        zh.text
            .contains("如果“lin”是您的账号，请打开下面的链接确认这个邮箱地址"),
        "{}",
        zh.text
    );
    assert!(zh.text.contains("链接在 "), "{}", zh.text);
    assert!(!zh.text.contains("Hello"), "{}", zh.text);
    assert_first_verification(&click(&server, &zh.verify_link()).await);
    login_token(&server, "lin").await;

    // No Accept-Language, or one the site does not speak: English.
    register_in(&server, "amy", None)
        .await
        .expect(StatusCode::CREATED);
    register_in(&server, "otto", Some("de-DE,fr;q=0.8"))
        .await
        .expect(StatusCode::CREATED);
    for name in ["amy", "otto"] {
        let en = nth_mail(&mail, name, 1).await;
        assert_eq!(
            en.subject,
            format!("Verify your email for the RoomManager account \"{name}\"")
        );
        assert!(en.text.starts_with("Hello,"), "{}", en.text);
        assert!(!is_chinese(&en.text), "{}", en.text);
        assert_first_verification(&click(&server, &en.verify_link()).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_follows_the_language_asked_in_and_the_admin_keeps_it() {
    let Some((mail, server)) = server_and_mail().await else {
        return;
    };
    let user = registered_id(&server, "wei", None).await;
    assert!(!is_chinese(&nth_mail(&mail, "wei", 1).await.subject));

    // The person switched the page to Chinese (the switch's cookie) and asks again.
    let resend = |cookie: &'static str| {
        send(
            server
                .client
                .post(server.url("/api/v1/register/resend"))
                .header(COOKIE, cookie)
                .json(&json!({"username": "wei", "email": email("wei")})),
        )
    };
    resend("lang=zh-CN").await.expect(StatusCode::ACCEPTED);
    let zh = nth_mail(&mail, "wei", 2).await;
    assert_eq!(zh.subject, "验证 RoomManager 账号“wei”的邮箱");
    assert!(zh.text.contains("申请了新的验证链接"), "{}", zh.text);

    // The admin's resend (the admin's page in English) is in the account's language.
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    send(
        server
            .client
            .post(server.url(&format!("/api/v1/admin/users/{user}/resend-verification")))
            .bearer_auth(&admin)
            .header(ACCEPT_LANGUAGE, "en")
            .json(&json!({"reason": "asked by phone"})),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    let by_admin = nth_mail(&mail, "wei", 3).await;
    assert_eq!(by_admin.subject, zh.subject);

    // Asked again in English: English from then on; only the newest link works.
    resend("lang=en").await.expect(StatusCode::ACCEPTED);
    let en = nth_mail(&mail, "wei", 4).await;
    assert_eq!(
        en.subject,
        "Verify your email for the RoomManager account \"wei\""
    );
    assert_first_verification(&click(&server, &en.verify_link()).await);
}

/// The footer's language switch to `tag`, signed in with `token` (its redirect not followed).
async fn switch(server: &TestServer, tag: &str, token: &str) -> Reply {
    send(
        no_redirects()
            .get(server.url(&format!("/lang/{tag}")))
            .bearer_auth(token),
    )
    .await
}

/// The language the admin's user detail says `user`'s mail is written in.
async fn mail_language(server: &TestServer, admin: &str, user: u64) -> Value {
    get_auth(server, &format!("/api/v1/admin/users/{user}"), admin)
        .await
        .expect(StatusCode::OK)
        .json()["language"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_in_switch_changes_the_mail_language_and_deleting_the_account_forgets_it() {
    let Some((mail, server)) = server_and_mail().await else {
        return;
    };
    let user = registered_id(&server, "mei", Some("en-US")).await;
    assert_first_verification(
        &click(&server, &nth_mail(&mail, "mei", 1).await.verify_link()).await,
    );
    let token = login_token(&server, "mei").await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    assert_eq!(mail_language(&server, &admin, user).await, "en");

    // The switch every page's footer links to, signed in: the cookie and the mail language.
    let switched = switch(&server, "zh-CN", &token).await;
    assert_eq!(switched.status, StatusCode::SEE_OTHER, "{}", switched.text);
    assert!(switched
        .header("set-cookie")
        .is_some_and(|c| c.starts_with("lang=zh-CN")));
    assert_eq!(mail_language(&server, &admin, user).await, "zh-CN");
    // An unknown tag clears the cookie and leaves the mail language alone.
    switch(&server, "xx-bogus", &token).await;
    assert_eq!(mail_language(&server, &admin, user).await, "zh-CN");

    // A guest's switch keeps nothing (a guest gets no mail); no session: only the cookie.
    let guest = crate::accounts::guest_token(&server).await;
    let guest_id = get_auth(&server, "/api/v1/me", &guest)
        .await
        .expect(StatusCode::OK)
        .json()["user_id"]
        .as_u64()
        .expect("a guest id");
    switch(&server, "zh-CN", &guest).await;
    assert_eq!(mail_language(&server, &admin, guest_id).await, Value::Null);

    // The account deleted: its language row goes in the same transaction.
    let store = &server.app().store;
    assert_eq!(
        store.user_lang(UserId(user)).expect("readable").as_deref(),
        Some("zh-CN")
    );
    send(
        server
            .client
            .delete(server.url(&format!(
                "/api/v1/admin/users/{user}?recordings=delete&reason=asked"
            )))
            .bearer_auth(&admin),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(store.user_lang(UserId(user)).expect("readable"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_test_mail_follows_the_admin_language() {
    let Some((mail, server)) = server_and_mail().await else {
        return;
    };
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let test_mail = |to: &'static str, accept: &'static str| {
        send(
            server
                .client
                .post(server.url("/api/v1/admin/mail/test"))
                .bearer_auth(&admin)
                .header(ACCEPT_LANGUAGE, accept)
                .json(&json!({ "to": to })),
        )
    };
    test_mail("ops@example.com", "zh-CN")
        .await
        .expect(StatusCode::ACCEPTED);
    let zh = mail.wait_for_mail("ops@example.com", WAIT).await;
    assert_eq!(zh.subject, "RoomManager 测试邮件");
    assert!(
        zh.text.contains("RoomManager 管理员“root”发送这封测试邮件"),
        "{}",
        zh.text
    );
    test_mail("desk@example.com", "en-GB")
        .await
        .expect(StatusCode::ACCEPTED);
    let en = mail.wait_for_mail("desk@example.com", WAIT).await;
    assert_eq!(en.subject, "RoomManager test mail");
    assert!(en.text.contains("admin \"root\""), "{}", en.text);
}
