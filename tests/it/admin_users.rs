//! The admin's users list and a user's detail over real HTTP: search (CJK substrings too),
//! filters, sorts and paging with known totals, bad queries refused, the detail's known answers
//! (a login from a known address, bans in force and past, a recording).

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{
    email_of, get_auth, login_token, patch_json, register, send, verified_user, Reply, PASSWORD,
};
use crate::admin::{admin_token, client_from, make_admin, ADMIN_PASSWORD};
use crate::common::{wait_for, TestServer};
use crate::records::list_recording;
use crate::rooms::Site;
use roommanager::model::{Ban, BanScope, UserId};
use roommanager::store::unix_now;

async fn users(server: &TestServer, token: &str, query: &str) -> Reply {
    send(
        reqwest::Client::new()
            .get(server.url(&format!("/api/v1/admin/users{query}")))
            .bearer_auth(token),
    )
    .await
}

/// The usernames (guests: nicknames) a list answer shows, in its order, and its total.
async fn names(server: &TestServer, token: &str, query: &str) -> (Vec<String>, u64) {
    let body = users(server, token, query)
        .await
        .expect(StatusCode::OK)
        .json();
    let listed = body["users"]
        .as_array()
        .expect("a users array")
        .iter()
        .map(|u| {
            u["username"]
                .as_str()
                .or(u["nickname"].as_str())
                .expect("a name")
                .to_owned()
        })
        .collect();
    (listed, body["total"].as_u64().expect("a total"))
}

async fn nickname_of(server: &TestServer, token: &str) -> String {
    let me = get_auth(server, "/api/v1/me", token)
        .await
        .expect(StatusCode::OK)
        .json();
    me["nickname"].as_str().expect("a nickname").to_owned()
}

fn ban(server: &TestServer, user: u64, scope: BanScope, expires_at: Option<u64>) {
    let ban = Ban {
        scope,
        reason: "spam".to_owned(),
        created_at: unix_now(),
        expires_at,
        lifted_at: None,
    };
    server
        .app()
        .store
        .add_ban(UserId(user), ban, None)
        .expect("the ban is stored");
}

#[tokio::test]
async fn the_users_list_searches_filters_sorts_and_pages() {
    let site = Site::start().await;
    let server = &site.server;
    make_admin(server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;

    let (_, alice) = verified_user(server, "alice").await;
    patch_json(
        server,
        "/api/v1/me",
        &json!({"nickname": "小明同学"}),
        &alice,
    )
    .await
    .expect(StatusCode::OK);
    let (_bob_ws, _) = site.live_host("bob").await;
    register(server, "carol", &email_of("carol"))
        .await
        .expect(StatusCode::CREATED);
    let (dave, _) = verified_user(server, "dave").await;
    ban(server, dave, BanScope::Chat, None);
    let (erin, _) = verified_user(server, "erin").await;
    ban(server, erin, BanScope::Stream, Some(unix_now() - 60));
    let g1 = nickname_of(server, &site.guest().await).await;
    let g2 = nickname_of(server, &site.guest().await).await;

    let everyone = vec![
        g2.clone(),
        g1.clone(),
        "erin".to_owned(),
        "dave".to_owned(),
        "carol".to_owned(),
        "bob".to_owned(),
        "alice".to_owned(),
    ];
    assert_eq!(names(server, &admin, "").await, (everyone.clone(), 7));
    let mut oldest = everyone.clone();
    oldest.reverse();
    assert_eq!(names(server, &admin, "?sort=oldest").await, (oldest, 7));

    // Search: a CJK substring of a nickname, a username in other case, an email's domain.
    assert_eq!(
        names(server, &admin, "?q=明同").await,
        (vec!["alice".to_owned()], 1)
    );
    assert_eq!(
        names(server, &admin, "?q=DAV").await,
        (vec!["dave".to_owned()], 1)
    );
    let (found, total) = names(server, &admin, "?q=EXAMPLE.com").await;
    assert_eq!((found.len(), total), (5, 5), "{found:?}");
    assert_eq!(names(server, &admin, "?q=nobody-here").await, (vec![], 0));

    let filtered = |filter: &str, expected: &[&str]| {
        let expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        let query = format!("?filter={filter}");
        let admin = admin.clone();
        async move {
            let (found, total) = names(server, &admin, &query).await;
            assert_eq!(found, expected, "{query}");
            assert_eq!(total, expected.len() as u64, "{query}");
        }
    };
    filtered("verified", &["erin", "dave", "bob", "alice"]).await;
    filtered("unverified", &["carol"]).await;
    filtered("guests", &[&g2, &g1]).await;
    filtered("banned", &["dave"]).await;
    filtered("live", &["bob"]).await;
    let banned = users(server, &admin, "?filter=banned").await.json();
    assert_eq!(banned["users"][0]["bans"][0]["scope"], "chat");
    assert_eq!(banned["users"][0]["bans"][0]["until"], Value::Null);

    // Last login: alice logs in again once the second of every other login is over (logins
    // are kept to the second), so she leads; carol never logged in, so she is last.
    let latest = users(server, &admin, "?per_page=100").await.json()["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["last_login_at"].as_u64())
        .max()
        .expect("some logins");
    wait_for(|| async { (unix_now() > latest).then_some(()) }).await;
    login_token(server, "alice").await;
    let (by_login, _) = names(server, &admin, "?sort=last_login").await;
    assert_eq!(by_login.first().map(String::as_str), Some("alice"));
    assert_eq!(by_login.last().map(String::as_str), Some("carol"));
    let listed = users(server, &admin, "?q=alice").await.json();
    assert!(listed["users"][0]["last_login_at"].as_u64().is_some());

    // Paging, with and without a filter.
    assert_eq!(
        names(server, &admin, "?per_page=3&page=2").await,
        (everyone[3..6].to_vec(), 7)
    );
    assert_eq!(
        names(server, &admin, "?per_page=3&page=3").await,
        (everyone[6..].to_vec(), 7)
    );
    assert_eq!(
        names(server, &admin, "?per_page=3&page=9").await,
        (vec![], 7)
    );
    assert_eq!(
        names(server, &admin, "?filter=verified&per_page=2&page=2").await,
        (vec!["bob".to_owned(), "alice".to_owned()], 4)
    );

    // Bad queries are refused by name; the admin is still served afterwards.
    let long = "x".repeat(300);
    for bad in [
        "?filter=everyone",
        "?sort=alphabetical",
        "?per_page=0",
        "?per_page=1000",
        "?page=-1",
        &format!("?q={long}"),
    ] {
        users(server, &admin, bad)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
    assert_eq!(names(server, &admin, "?per_page=1").await.1, 7);
}

#[tokio::test]
async fn a_users_detail_shows_last_login_room_recordings_bans_and_logins() {
    let server = TestServer::start_with(crate::accounts::relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let (frank, _) = verified_user(&server, "frank").await;
    let started = unix_now() - 3_600;
    list_recording(&server, frank, "Sunday set", started, 600, None);
    ban(&server, frank, BanScope::Chat, Some(unix_now() - 60));
    ban(&server, frank, BanScope::Stream, Some(unix_now() + 3_600));
    // A login from a known address.
    send(
        client_from([127, 0, 0, 9])
            .post(server.url("/api/v1/login"))
            .json(&json!({"login": "frank", "password": PASSWORD})),
    )
    .await
    .expect(StatusCode::OK);

    let detail = send(
        reqwest::Client::new()
            .get(server.url(&format!("/api/v1/admin/users/{frank}")))
            .bearer_auth(&admin),
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_eq!(detail["user"]["username"], "frank");
    assert_eq!(detail["user"]["verified"], true);
    assert_eq!(detail["last_login_ip"], "127.0.0.9");
    let logins = detail["logins"].as_array().expect("logins");
    assert_eq!(
        logins.len(),
        2,
        "the sign-up's login and this one: {logins:?}"
    );
    assert_eq!(logins[0]["ip"], "127.0.0.9");
    assert_eq!(logins[0]["kind"], "password");
    assert_eq!(detail["user"]["last_login_at"], logins[0]["at"]);
    let room = server
        .app()
        .store
        .user(UserId(frank))
        .expect("the store answers")
        .expect("frank exists")
        .room_id
        .expect("a verified user has a room");
    assert_eq!(detail["room"]["room_id"], room.0);
    assert_eq!(detail["recordings"][0]["title"], "Sunday set");
    assert_eq!(detail["recordings"][0]["duration_secs"], 600);
    // Every ban in the detail; only the one in force in the list.
    let scopes: Vec<&str> = detail["bans"]
        .as_array()
        .expect("bans")
        .iter()
        .map(|b| b["scope"].as_str().expect("a scope"))
        .collect();
    assert_eq!(scopes, ["chat", "stream"]);
    let listed = users(&server, &admin, "?q=frank").await.json();
    assert_eq!(listed["users"][0]["bans"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["users"][0]["bans"][0]["scope"], "stream");

    for (path, status, code) in [
        (
            "/api/v1/admin/users/999999",
            StatusCode::NOT_FOUND,
            "user_not_found",
        ),
        (
            "/api/v1/admin/users/frank",
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
    ] {
        send(
            reqwest::Client::new()
                .get(server.url(path))
                .bearer_auth(&admin),
        )
        .await
        .expect_error(status, code);
    }
}

/// An admin page, by the `rm_admin` cookie as a browser sends it.
pub async fn admin_page(server: &TestServer, token: &str, path: &str) -> Reply {
    send(
        reqwest::Client::new()
            .get(server.url(path))
            .header(COOKIE, format!("rm_admin={token}")),
    )
    .await
}

#[tokio::test]
async fn the_users_pages_search_and_show_a_user_without_javascript() {
    let server = TestServer::start_with(crate::accounts::relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let (grace, token) = verified_user(&server, "grace").await;
    patch_json(
        &server,
        "/api/v1/me",
        &json!({"nickname": "李小龙"}),
        &token,
    )
    .await
    .expect(StatusCode::OK);
    verified_user(&server, "heidi").await;
    list_recording(&server, grace, "Grace live", unix_now() - 60, 30, None);
    ban(&server, grace, BanScope::Chat, None);

    let dashboard = admin_page(&server, &admin, "/admin")
        .await
        .expect(StatusCode::OK);
    assert!(
        dashboard.contains("href=\"/admin/users\""),
        "the nav links the users"
    );
    let found = admin_page(
        &server,
        &admin,
        "/admin/users?q=%E5%B0%8F%E9%BE%99&filter=banned",
    )
    .await
    .expect(StatusCode::OK);
    assert!(found.contains("<p>1 user</p>"));
    assert!(found.contains(&format!("href=\"/admin/users/{grace}\"")));
    assert!(found.contains("李小龙"));
    assert!(!found.contains("heidi"));
    let paged = admin_page(&server, &admin, "/admin/users?per_page=1")
        .await
        .expect(StatusCode::OK);
    assert!(
        paged.contains("heidi") && !paged.contains("grace"),
        "newest first"
    );
    assert!(
        paged.contains("page=2&amp;per_page=1"),
        "a link to the next page"
    );

    let shown = admin_page(&server, &admin, &format!("/admin/users/{grace}"))
        .await
        .expect(StatusCode::OK);
    for text in [
        "grace",
        "李小龙",
        "Grace live",
        "spam",
        "until lifted",
        "127.0.0.1",
    ] {
        assert!(shown.contains(text), "the detail shows {text}");
    }
    admin_page(&server, &admin, "/admin/users/999999")
        .await
        .expect(StatusCode::NOT_FOUND);
    admin_page(&server, &admin, "/admin/users?filter=everyone")
        .await
        .expect(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_admin_marks_an_email_verified_or_resends_its_link_and_the_audit_says_so() {
    let server = TestServer::start_with(|c| {
        crate::accounts::relaxed(c);
        c.limits.resend_per_ip = 3;
    })
    .await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let registered = |name: &'static str| {
        let server = &server;
        async move {
            register(server, name, &email_of(name))
                .await
                .expect(StatusCode::CREATED)
                .json()["user_id"]
                .as_u64()
                .expect("a user id")
        }
    };
    let ivan = registered("ivan").await;
    let judy = registered("judy").await;
    let action = |id: u64, what: &str, body: Value| {
        send(
            reqwest::Client::new()
                .post(server.url(&format!("/api/v1/admin/users/{id}/{what}")))
                .bearer_auth(&admin)
                .json(&body),
        )
    };

    // Unverified: no login. Marked verified by the API: the login works, the room exists.
    crate::accounts::login(&server, "ivan", PASSWORD)
        .await
        .expect_error(StatusCode::FORBIDDEN, "email_not_verified");
    action(ivan, "verify", json!({"reason": "no mail on this LAN"}))
        .await
        .expect(StatusCode::NO_CONTENT);
    login_token(&server, "ivan").await;
    let detail = send(
        reqwest::Client::new()
            .get(server.url(&format!("/api/v1/admin/users/{ivan}")))
            .bearer_auth(&admin),
    )
    .await
    .json();
    assert_eq!(detail["user"]["verified"], true);
    assert!(detail["room"]["room_id"].as_u64().is_some());
    // The old link is used up: a click says "already verified".
    action(ivan, "verify", json!({}))
        .await
        .expect_error(StatusCode::CONFLICT, "already_verified");
    action(ivan, "resend-verification", json!({}))
        .await
        .expect_error(StatusCode::CONFLICT, "already_verified");

    // Resend: a second link goes out; it verifies judy.
    action(judy, "resend-verification", json!({"reason": "lost it"}))
        .await
        .expect(StatusCode::ACCEPTED);
    let links = crate::accounts::outbox_links(&server, &email_of("judy"), 2).await;
    crate::accounts::click(&server, &links[1])
        .await
        .expect(StatusCode::OK);
    login_token(&server, "judy").await;

    // Guests, unknown ids and long reasons are refused; the resend limit applies to admins.
    let guest = crate::accounts::new_guest(&server)
        .await
        .expect(StatusCode::CREATED)
        .json()["user"]["user_id"]
        .as_u64()
        .expect("a guest id");
    for id in [guest, 999_999] {
        action(id, "verify", json!({}))
            .await
            .expect_error(StatusCode::NOT_FOUND, "unknown_account");
    }
    let kate = registered("kate").await;
    action(kate, "verify", json!({"reason": "x".repeat(501)}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_reason");
    action(kate, "resend-verification", json!({}))
        .await
        .expect(StatusCode::ACCEPTED);
    action(kate, "resend-verification", json!({}))
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");

    // The page's form, with its CSRF token; without one it is refused.
    let session = format!("rm_admin={admin}");
    let page = admin_page(&server, &admin, &format!("/admin/users/{kate}"))
        .await
        .expect(StatusCode::OK);
    assert!(page.contains("Mark the email verified"));
    let csrf = crate::web_hardening::form_token(&page.text);
    let url = server.url(&format!("/admin/users/{kate}/verify"));
    crate::web_hardening::post_form_at(url.clone(), &session, "reason=ok")
        .await
        .expect(StatusCode::FORBIDDEN);
    let done =
        crate::web_hardening::post_form_at(url, &session, &format!("csrf={csrf}&reason=by+form"))
            .await
            .expect(StatusCode::SEE_OTHER);
    assert_eq!(
        done.header("location").as_deref(),
        Some(&*format!("/admin/users/{kate}"))
    );
    login_token(&server, "kate").await;

    let log = crate::admin::audit(&server.base, &admin, "").await;
    let actions: Vec<(&str, &str, &str)> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().expect("an action"),
                e["target"].as_str().expect("a target"),
                e["reason"].as_str().expect("a reason"),
            )
        })
        .filter(|(action, ..)| *action != "create_admin")
        .collect();
    let (ivan_t, judy_t, kate_t) = (
        format!("user:{ivan}"),
        format!("user:{judy}"),
        format!("user:{kate}"),
    );
    assert_eq!(
        actions,
        [
            ("mark_verified", kate_t.as_str(), "by form"),
            ("resend_verification", kate_t.as_str(), ""),
            ("resend_verification", judy_t.as_str(), "lost it"),
            ("mark_verified", ivan_t.as_str(), "no mail on this LAN"),
        ]
    );
}

#[tokio::test]
async fn deleting_an_account_ends_its_sessions_and_keeps_or_deletes_its_recordings() {
    let site = Site::start().await;
    let server = &site.server;
    make_admin(server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let delete = |id: u64, query: &str| {
        send(
            reqwest::Client::new()
                .delete(server.url(&format!("/api/v1/admin/users/{id}{query}")))
                .bearer_auth(&admin),
        )
    };
    let record_status =
        |id: u64| async move { server.get(&format!("/api/v1/records/{id}")).await.status() };

    let (liam, liam_token) = site.user("liam").await;
    let kept = list_recording(server, liam, "Kept set", unix_now() - 600, 60, None)
        .id
        .0;
    let mut socket = site.ws(&liam_token).await;
    socket.sync().await;
    delete(liam, "?recordings=bogus")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    delete(liam, "?reason=left%20the%20club")
        .await
        .expect(StatusCode::NO_CONTENT);
    socket.expect_closed().await;
    get_auth(server, "/api/v1/me", &liam_token)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(
        record_status(kept).await,
        StatusCode::OK,
        "kept when not asked"
    );
    delete(liam, "")
        .await
        .expect_error(StatusCode::NOT_FOUND, "user_not_found");
    // The name and email are free again.
    register(server, "liam", &email_of("liam"))
        .await
        .expect(StatusCode::CREATED);

    let (mia, mia_token) = site.user("mia").await;
    let gone = list_recording(server, mia, "Gone set", unix_now() - 600, 60, None)
        .id
        .0;
    delete(mia, "?recordings=delete&reason=spam")
        .await
        .expect(StatusCode::NO_CONTENT);
    get_auth(server, "/api/v1/me", &mia_token)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(record_status(gone).await, StatusCode::NOT_FOUND);
    users(server, &admin, "?q=mia").await.expect(StatusCode::OK);
    assert_eq!(names(server, &admin, "?q=mia").await.1, 0);

    let log = crate::admin::audit(&server.base, &admin, "").await;
    let entries: Vec<(String, String)> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .take(3)
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["target"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("delete_user".to_owned(), format!("user:{mia}")),
            ("delete_record".to_owned(), format!("record:{gone}")),
            ("delete_user".to_owned(), format!("user:{liam}")),
        ]
    );

    // The page's form, with its CSRF token.
    let (nick, _) = site.user("nick").await;
    let session = format!("rm_admin={admin}");
    let page = admin_page(server, &admin, &format!("/admin/users/{nick}"))
        .await
        .expect(StatusCode::OK);
    let csrf = crate::web_hardening::form_token(&page.text);
    let url = server.url(&format!("/admin/users/{nick}/delete"));
    crate::web_hardening::post_form_at(url.clone(), &session, "recordings=keep")
        .await
        .expect(StatusCode::FORBIDDEN);
    crate::web_hardening::post_form_at(url, &session, &format!("csrf={csrf}&recordings=keep"))
        .await
        .expect(StatusCode::SEE_OTHER);
    assert_eq!(names(server, &admin, "?q=nick").await.1, 0);
}
