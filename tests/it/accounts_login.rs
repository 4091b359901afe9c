//! Accounts: login, sessions (bearer and cookie), logout, expiry, guests and rate limits.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{AUTHORIZATION, COOKIE};
use reqwest::StatusCode;
use serde_json::json;

use crate::accounts::{
    get, get_auth, is_token, login, login_token, new_guest, patch_json, post_json, put_bytes,
    register, register_and_verify, relaxed, resend, send, signed_in, Reply, PASSWORD,
};
use crate::accounts_profile::png;
use crate::common::TestServer;
use roommanager::model::LoginKind;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

async fn relaxed_server() -> TestServer {
    TestServer::start_with(relaxed).await
}

/// The cookie's `name=value` and its attributes, lower-cased.
fn cookie_parts(set_cookie: &str) -> (String, Vec<String>) {
    let mut parts = set_cookie.split(';').map(str::trim);
    let pair = parts.next().unwrap_or_default().to_owned();
    (pair, parts.map(str::to_lowercase).collect())
}

#[track_caller]
fn assert_session_cookie(reply: &Reply, token: &str) {
    let (pair, attributes) = cookie_parts(&reply.session_cookie());
    assert_eq!(pair, format!("rm_session={token}"));
    assert!(
        attributes.contains(&"httponly".to_owned()),
        "{attributes:?}"
    );
    assert!(
        attributes.contains(&"samesite=lax".to_owned()),
        "{attributes:?}"
    );
    assert!(attributes.contains(&"path=/".to_owned()), "{attributes:?}");
}

#[tokio::test]
async fn login_answers_a_token_the_user_and_a_session_cookie() {
    let server = relaxed_server().await;
    register_and_verify(&server, "alice").await;
    let reply = login(&server, "alice", PASSWORD)
        .await
        .expect(StatusCode::OK);
    let body = reply.json();
    let token = body["token"].as_str().expect("token");
    assert!(is_token(token), "64 hex characters: {token}");
    let expires_at = body["expires_at"].as_u64().expect("expires_at");
    assert!(
        expires_at > now() + 29 * 24 * 3600,
        "30 days by default: {body}"
    );
    let user = &body["user"];
    assert_eq!(user["kind"], "registered");
    assert_eq!(user["username"], "alice");
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["verified"], true);
    assert!(user["user_id"].as_u64().is_some(), "{user}");
    assert!(user["room_id"].as_u64().is_some(), "{user}");
    assert!(
        user["nickname"].as_str().is_some_and(|n| !n.is_empty()),
        "{user}"
    );
    assert!(user["avatar_url"].is_null(), "{user}");
    let created = user["created_at"].as_u64().expect("created_at");
    assert!(created.abs_diff(now()) < 120, "{user}");
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    assert!(
        !reply.text.contains("argon2"),
        "no hash leaks: {}",
        reply.text
    );
    assert_session_cookie(&reply, token);

    // The same user through a bearer token and through the cookie.
    let me = get_auth(&server, "/api/v1/me", token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(me.json(), *user);
    let by_cookie = send(
        server
            .client
            .get(server.url("/api/v1/me"))
            .header(COOKIE, format!("rm_session={token}")),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(by_cookie.json()["user_id"], user["user_id"]);
}

#[tokio::test]
async fn login_accepts_username_or_email_in_any_letter_case() {
    let server = relaxed_server().await;
    register_and_verify(&server, "bella").await;
    for name in [
        "bella",
        "BELLA",
        "Bella",
        "bella@example.com",
        "BELLA@Example.COM",
    ] {
        let reply = login(&server, name, PASSWORD).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.text);
        assert_eq!(reply.json()["user"]["username"], "bella", "{name}");
    }
    for body in [
        json!({"username": "bella", "password": PASSWORD}),
        json!({"email": "Bella@example.com", "password": PASSWORD}),
    ] {
        let reply = post_json(&server, "/api/v1/login", &body, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{body}: {}", reply.text);
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let server = relaxed_server().await;
    register_and_verify(&server, "cleo").await;
    let wrong = login(&server, "cleo", "wrong password")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let unknown = login(&server, "nobody", "wrong password")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let unknown_email = login(&server, "nobody@example.com", PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(wrong.json(), unknown.json(), "nothing tells them apart");
    assert_eq!(wrong.json(), unknown_email.json());
    assert!(wrong
        .set_cookies()
        .iter()
        .all(|c| !c.starts_with("rm_session=") || c.starts_with("rm_session=;")));
    // The password is compared exactly.
    login(&server, "cleo", &PASSWORD.to_uppercase())
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn an_unverified_account_cannot_log_in() {
    let server = relaxed_server().await;
    register(&server, "dina", "dina@example.com")
        .await
        .expect(StatusCode::CREATED);
    login(&server, "dina", PASSWORD)
        .await
        .expect_error(StatusCode::FORBIDDEN, "email_not_verified");
    login(&server, "dina@example.com", PASSWORD)
        .await
        .expect_error(StatusCode::FORBIDDEN, "email_not_verified");
}

#[tokio::test]
async fn bad_login_requests_get_clear_errors() {
    let server = relaxed_server().await;
    for body in [
        json!({"password": PASSWORD}),
        json!({"login": "x"}),
        json!({"login": 1, "password": PASSWORD}),
        json!({"login": "x", "password": true}),
    ] {
        let reply = post_json(&server, "/api/v1/login", &body, None).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "bad_json", "{body}");
    }
    crate::accounts::post_raw(
        &server,
        "/api/v1/login",
        Some("application/json"),
        "{\"login\":",
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_json");
    crate::accounts::post_raw(&server, "/api/v1/login", None, "login=x&password=y")
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
}

#[tokio::test]
async fn requests_without_a_valid_session_are_not_logged_in() {
    let server = relaxed_server().await;
    get(&server, "/api/v1/me")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
    get_auth(&server, "/api/v1/me", &"0".repeat(64))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
    get_auth(&server, "/api/v1/me", "garbage")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
    send(
        server
            .client
            .get(server.url("/api/v1/me"))
            .header(AUTHORIZATION, "Basic YWxpY2U6cGFzcw=="),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
    send(
        server
            .client
            .get(server.url("/api/v1/me"))
            .header(COOKIE, "rm_session=nonsense"),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
}

#[tokio::test]
async fn after_logout_the_token_is_refused() {
    let server = relaxed_server().await;
    register_and_verify(&server, "eve").await;
    let token = login_token(&server, "eve").await;
    let other = login_token(&server, "eve").await;
    assert_ne!(token, other, "each login is a new session");

    let reply = post_json(&server, "/api/v1/logout", &json!({}), Some(&token))
        .await
        .expect(StatusCode::NO_CONTENT);
    let (pair, attributes) = cookie_parts(&reply.session_cookie());
    assert!(
        pair == "rm_session="
            || attributes.contains(&"max-age=0".to_owned())
            || attributes.iter().any(|a| a.starts_with("expires=")),
        "the cookie is cleared: {pair} {attributes:?}"
    );
    get_auth(&server, "/api/v1/me", &token)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
    // Only that session ended.
    get_auth(&server, "/api/v1/me", &other)
        .await
        .expect(StatusCode::OK);

    // Logging out twice, or without a session, is fine.
    send(
        server
            .client
            .post(server.url("/api/v1/logout"))
            .bearer_auth(&token),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    send(server.client.post(server.url("/api/v1/logout")))
        .await
        .expect(StatusCode::NO_CONTENT);

    // Logging out with the cookie (and the header that shows it is not a cross-site form) ends
    // the cookie's session.
    send(
        server
            .client
            .post(server.url("/api/v1/logout"))
            .header(COOKIE, format!("rm_session={other}"))
            .header("x-rm-csrf", "1"),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    get_auth(&server, "/api/v1/me", &other)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
}

#[tokio::test]
async fn an_expired_session_is_refused_as_expired() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.accounts.session_ttl_secs = 1;
    })
    .await;
    register_and_verify(&server, "finn").await;
    let reply = login(&server, "finn", PASSWORD)
        .await
        .expect(StatusCode::OK);
    let token = reply.json()["token"].as_str().expect("token").to_owned();
    let expires_at = reply.json()["expires_at"].as_u64().expect("expires_at");
    assert!(
        expires_at <= now() + 2,
        "expires after the configured second"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await; // the session's lifetime must pass
    get_auth(&server, "/api/v1/me", &token)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_expired");
    // Logging in again is possible.
    login(&server, "finn", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

// ----- guests ----------------------------------------------------------------------------------

#[tokio::test]
async fn a_guest_gets_a_session_and_can_only_watch() {
    let server = relaxed_server().await;
    let reply = new_guest(&server).await.expect(StatusCode::CREATED);
    let body = reply.json();
    let token = body["token"].as_str().expect("token").to_owned();
    assert!(is_token(&token), "{token}");
    assert!(
        body["expires_at"].as_u64().is_some_and(|t| t > now()),
        "{body}"
    );
    let user = &body["user"];
    assert_eq!(user["kind"], "guest");
    assert!(
        user["nickname"]
            .as_str()
            .is_some_and(|n| n.starts_with("Guest-")),
        "{user}"
    );
    assert!(user["username"].is_null(), "{user}");
    assert!(user["email"].is_null(), "{user}");
    assert!(user["room_id"].is_null(), "{user}");
    assert_session_cookie(&reply, &token);

    let me = get_auth(&server, "/api/v1/me", &token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(me["kind"], "guest");
    assert_eq!(me["user_id"], user["user_id"]);

    patch_json(
        &server,
        "/api/v1/me",
        &json!({"nickname": "Sneaky"}),
        &token,
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "registered_only");
    put_bytes(&server, "/api/v1/me/avatar", png(8, 8), &token)
        .await
        .expect_error(StatusCode::FORBIDDEN, "registered_only");
    get_auth(&server, "/api/v1/me/room", &token)
        .await
        .expect_error(StatusCode::FORBIDDEN, "registered_only");
    patch_json(&server, "/api/v1/me/room", &json!({"name": "Mine"}), &token)
        .await
        .expect_error(StatusCode::FORBIDDEN, "registered_only");
    put_bytes(&server, "/api/v1/me/room/cover", png(8, 8), &token)
        .await
        .expect_error(StatusCode::FORBIDDEN, "registered_only");

    // Every guest is a different user.
    let second = new_guest(&server).await.expect(StatusCode::CREATED).json();
    assert_ne!(second["user"]["user_id"], user["user_id"]);
    assert_ne!(second["token"], body["token"]);
}

#[tokio::test]
async fn idle_guests_are_purged() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.accounts.guest_idle_secs = 1;
    })
    .await;
    let token = new_guest(&server).await.expect(StatusCode::CREATED).json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    get_auth(&server, "/api/v1/me", &token)
        .await
        .expect(StatusCode::OK);
    // A registered user is never purged.
    let (user_token, _) = signed_in(&server, "gwen").await;

    // The purge runs periodically: look now and then (each look is a use, so not too often).
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let reply = get_auth(&server, "/api/v1/me", &token).await;
        if reply.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert!(
            Instant::now() < deadline,
            "the idle guest was not purged within 25 s"
        );
    }
    get_auth(&server, "/api/v1/me", &user_token)
        .await
        .expect(StatusCode::OK);
}

// ----- rate limits -----------------------------------------------------------------------------

/// Asserts a 429 `rate_limited` answer with a `Retry-After` of 1 to `window_secs` seconds.
#[track_caller]
pub(crate) fn assert_rate_limited(reply: &Reply, window_secs: u64) {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.text
    );
    assert_eq!(reply.code(), "rate_limited");
    let retry_after: u64 = reply
        .header("retry-after")
        .expect("a Retry-After header")
        .trim()
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=window_secs).contains(&retry_after),
        "Retry-After {retry_after} within the window of {window_secs} s"
    );
}

/// Failed logins back off per account and client; `accounts_abuse` shows another client is not
/// affected.
#[tokio::test]
async fn repeated_failures_for_one_account_make_the_client_wait() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.limits.login_free_failures = 3;
        c.limits.login_backoff_secs = 600;
        c.limits.login_backoff_max_secs = 600;
    })
    .await;
    register_and_verify(&server, "hugo").await;
    register_and_verify(&server, "iris").await;
    for _ in 0..4 {
        login(&server, "hugo", "wrong password")
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Even the right password waits now, also when the account is named by its email.
    assert_rate_limited(&login(&server, "hugo", PASSWORD).await, 600);
    assert_rate_limited(&login(&server, "HUGO@example.com", PASSWORD).await, 600);
    assert_rate_limited(&login(&server, "hugo", "wrong password").await, 600);
    // Other accounts are not affected.
    login(&server, "iris", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn too_many_logins_from_one_address_are_rate_limited() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.limits.login_per_ip = 3;
        c.limits.login_window_secs = 300;
    })
    .await;
    register_and_verify(&server, "jack").await;
    for name in ["nobody1", "nobody2", "nobody3"] {
        login(&server, name, PASSWORD)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    assert_rate_limited(&login(&server, "jack", PASSWORD).await, 300);
}

#[tokio::test]
async fn too_many_registrations_from_one_address_are_rate_limited() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.limits.register_per_ip = 2;
        c.limits.register_window_secs = 1200;
    })
    .await;
    register(&server, "kai", "kai@example.com")
        .await
        .expect(StatusCode::CREATED);
    register(&server, "lia", "lia@example.com")
        .await
        .expect(StatusCode::CREATED);
    let reply = register(&server, "max", "max@example.com").await;
    assert_rate_limited(&reply, 1200);
    // The refused registration created nothing.
    login(&server, "max", PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn too_many_mails_to_one_address_are_rate_limited() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.limits.email_per_address = 2;
        c.limits.email_window_secs = 900;
    })
    .await;
    register(&server, "nia", "nia@example.com")
        .await
        .expect(StatusCode::CREATED);
    resend(&server, "nia", "nia@example.com")
        .await
        .expect(StatusCode::ACCEPTED);
    assert_rate_limited(&resend(&server, "nia", "nia@example.com").await, 900);
    // Another address still gets its mail.
    register(&server, "oto", "oto@example.com")
        .await
        .expect(StatusCode::CREATED);
    resend(&server, "oto", "oto@example.com")
        .await
        .expect(StatusCode::ACCEPTED);
    let links = crate::accounts::outbox_links(&server, "nia@example.com", 2).await;
    assert_eq!(links.len(), 2, "no third mail to nia");
}

/// Every successful login and guest creation is recorded for the statistics pages; failed
/// logins are not.
#[tokio::test]
async fn logins_and_guests_are_recorded_for_statistics() {
    let server = relaxed_server().await;
    let since = now();
    register_and_verify(&server, "statsuser").await;
    login_token(&server, "statsuser").await;
    login(&server, "statsuser", "wrong password").await;
    let guest = post_json(&server, "/api/v1/guest", &json!({}), None).await;
    let guest_id = guest.json()["user"]["user_id"].as_u64().unwrap();
    let events = server.app().store.logins_since(since).unwrap();
    let kinds: Vec<(LoginKind, u64)> = events.iter().map(|e| (e.kind, e.user_id.0)).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!(kinds[0].0, LoginKind::Password);
    assert_eq!(kinds[1], (LoginKind::Guest, guest_id));
    assert!(events.iter().all(|e| e.at >= since && e.at <= now()));
}
