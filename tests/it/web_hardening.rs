//! The web side's smaller holes, closed: cross-site requests in a visitor's name (the API's
//! JSON-or-header rule, form tokens bound to the session, guest sign-ups that would replace a
//! session), the security headers on every answer, byte ranges by RFC 9110, and path parameters
//! that do not parse answered in the error shape. Each refusal comes with a well-behaved request
//! that is still served.

use reqwest::header::{CONTENT_TYPE, COOKIE};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::json;

use crate::accounts::{
    get_auth, login_token, new_guest, register_and_verify, relaxed, send, verified_user, Reply,
    PASSWORD,
};
use crate::accounts_profile::png;
use crate::common::{run_command, write_file, TestServer};
use crate::http_docs::{live_id_of, put_recording};

const FORM: &str = "application/x-www-form-urlencoded";

/// A client that shows redirects instead of following them, as a test of forms needs.
pub(crate) fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client")
}

fn session_cookie(token: &str) -> String {
    format!("rm_session={token}")
}

async fn nickname(server: &TestServer, token: &str) -> String {
    get_auth(server, "/api/v1/me", token).await.json()["nickname"]
        .as_str()
        .expect("a nickname")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// The API: cookie-authenticated changes need JSON or the X-RM-CSRF header
// ---------------------------------------------------------------------------------------------

/// What a form (or a CORS-simple `fetch`) of another site can send with the visitor's cookie.
fn cross_site(request: RequestBuilder, token: &str, content_type: &str) -> RequestBuilder {
    request
        .header(COOKIE, session_cookie(token))
        .header(CONTENT_TYPE, content_type)
}

#[tokio::test]
async fn cookie_authenticated_api_changes_need_json_or_the_header() {
    let server = TestServer::start_with(relaxed).await;
    let (_, token) = verified_user(&server, "alice").await;
    let url = |path: &str| server.url(path);
    let client = &server.client;
    let push_before = get_auth(&server, "/api/v1/me/push", &token).await.json();

    // Every way a page of another site could send these in alice's name is refused.
    let multipart = "multipart/form-data; boundary=x";
    let attempts = [
        client.patch(url("/api/v1/me")).body("nickname=Hacked"),
        client
            .patch(url("/api/v1/me"))
            .body(r#"{"nickname":"Hacked"}"#),
        client.post(url("/api/v1/me/push/rotate")).body(""),
        client.post(url("/api/v1/logout")).body(""),
        client.put(url("/api/v1/me/avatar")).body(png(8, 8)),
        client.put(url("/api/v1/me/room/cover")).body(png(8, 8)),
        client
            .patch(url("/api/v1/me/room"))
            .body(r#"{"name":"Hacked"}"#),
    ];
    for request in attempts {
        for content_type in [
            FORM,
            "text/plain",
            "text/plain; application/json",
            multipart,
        ] {
            let attempt = cross_site(
                request.try_clone().expect("a plain body"),
                &token,
                content_type,
            );
            send(attempt)
                .await
                .expect_error(StatusCode::FORBIDDEN, "csrf");
        }
    }
    let reply = send(cross_site(client.post(url("/api/v1/logout")), &token, FORM)).await;
    let message = reply.json()["error"]["message"].to_string();
    assert!(
        message.contains("X-RM-CSRF"),
        "the message says what to send: {message}"
    );
    assert!(reply.set_cookies().is_empty(), "{:?}", reply.set_cookies());

    // Nothing of that changed anything: same nickname, same push code, the session lives.
    let me = get_auth(&server, "/api/v1/me", &token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(me["nickname"], "alice");
    assert!(me["avatar_url"].is_null(), "{me}");
    let push_after = get_auth(&server, "/api/v1/me/push", &token).await.json();
    assert_eq!(push_after["push_url"], push_before["push_url"]);
    let room = get_auth(&server, "/api/v1/me/room", &token).await.json();
    assert!(
        room["cover_url"].is_null() && room["name"] != "Hacked",
        "{room}"
    );

    // The site's own scripts: JSON, or the header with any body, and the cookie works.
    let renamed = send(
        client
            .patch(url("/api/v1/me"))
            .header(COOKIE, session_cookie(&token))
            .json(&json!({"nickname": "Alice by cookie"})),
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_eq!(renamed["nickname"], "Alice by cookie");
    let uploaded = send(
        client
            .put(url("/api/v1/me/avatar"))
            .header(COOKIE, session_cookie(&token))
            .header("x-rm-csrf", "1")
            .header(CONTENT_TYPE, "image/png")
            .body(png(8, 8)),
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert!(uploaded["avatar_url"].as_str().is_some(), "{uploaded}");
    let rotated = send(
        client
            .post(url("/api/v1/me/push/rotate"))
            .header(COOKIE, session_cookie(&token))
            .header("X-RM-CSRF", "yes"),
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_ne!(rotated["push_url"], push_before["push_url"]);

    // A program with a bearer token needs neither.
    send(
        client
            .put(url("/api/v1/me/room/cover"))
            .bearer_auth(&token)
            .header(CONTENT_TYPE, "image/png")
            .body(png(16, 9)),
    )
    .await
    .expect(StatusCode::OK);

    // Logging out by cookie with the header ends the session.
    send(
        client
            .post(url("/api/v1/logout"))
            .header(COOKIE, session_cookie(&token))
            .header("x-rm-csrf", "1"),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    get_auth(&server, "/api/v1/me", &token)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
}

#[tokio::test]
async fn a_guest_sign_up_cannot_replace_a_session_cross_site() {
    let server = TestServer::start_with(relaxed).await;
    let (_, token) = verified_user(&server, "bruno").await;
    let guest = || server.client.post(server.url("/api/v1/guest"));

    // A form of another site: its POST carries no SameSite=Lax cookie, but the browser would
    // take the new session cookie from the answer. Refused, with no cookie set.
    for request in [
        guest(),
        guest().header(CONTENT_TYPE, FORM).body("x=1"),
        guest().header(CONTENT_TYPE, "text/plain").body("{}"),
        cross_site(guest(), &token, FORM),
    ] {
        let reply = send(request)
            .await
            .expect_error(StatusCode::FORBIDDEN, "csrf");
        assert!(reply.set_cookies().is_empty(), "{:?}", reply.set_cookies());
    }

    // With the header but a live session: refused unless asked for explicitly.
    let signed_in = send(
        guest()
            .header(COOKIE, session_cookie(&token))
            .header("x-rm-csrf", "1"),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "already_signed_in");
    assert!(signed_in.set_cookies().is_empty());
    send(guest().bearer_auth(&token))
        .await
        .expect_error(StatusCode::CONFLICT, "already_signed_in");
    assert_eq!(
        nickname(&server, &token).await,
        "bruno",
        "bruno's session lives"
    );
    let replaced = send(
        server
            .client
            .post(server.url("/api/v1/guest?replace=true"))
            .header(COOKIE, session_cookie(&token))
            .header("x-rm-csrf", "1"),
    )
    .await
    .expect(StatusCode::CREATED);
    assert!(replaced.session_cookie().starts_with("rm_session="));
    assert_eq!(replaced.json()["user"]["kind"], "guest");

    // A stale cookie is no session: the room page's own request makes a guest.
    let stale = send(
        guest()
            .header(COOKIE, session_cookie(&"0".repeat(64)))
            .header("x-rm-csrf", "1"),
    )
    .await
    .expect(StatusCode::CREATED);
    assert_eq!(stale.json()["user"]["kind"], "guest");
    // Programs: the header, or a JSON body.
    new_guest(&server).await.expect(StatusCode::CREATED);
    send(guest().json(&json!({})))
        .await
        .expect(StatusCode::CREATED);
}

// ---------------------------------------------------------------------------------------------
// Page forms: the token is an HMAC bound to the session
// ---------------------------------------------------------------------------------------------

/// The `csrf` field of the first form on a page.
pub(crate) fn form_token(page: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let at = page.find(marker).expect("a form with a csrf field") + marker.len();
    page[at..]
        .split('"')
        .next()
        .expect("a closing quote")
        .to_owned()
}

/// The value a `Set-Cookie` gives to cookie `name`.
pub(crate) fn cookie_value(reply: &Reply, name: &str) -> Option<String> {
    reply.set_cookies().iter().find_map(|c| {
        let pair = c.split(';').next()?;
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// A page form POST with these cookies and fields (values are URL-safe already).
async fn post_form(server: &TestServer, path: &str, cookies: &str, fields: &str) -> Reply {
    post_form_at(server.url(path), cookies, fields).await
}

/// Like [`post_form`], to a full URL (a server in a child process).
pub(crate) async fn post_form_at(url: String, cookies: &str, fields: &str) -> Reply {
    let mut request = no_redirects()
        .post(url)
        .header(CONTENT_TYPE, FORM)
        .body(fields.to_owned());
    if !cookies.is_empty() {
        request = request.header(COOKIE, cookies);
    }
    send(request).await
}

#[track_caller]
fn assert_csrf_page(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(
        reply.contains("did not come from this site"),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn a_form_token_is_bound_to_its_session() {
    let server = TestServer::start_with(relaxed).await;
    let (_, alice) = verified_user(&server, "alice").await;
    let (_, bruno) = verified_user(&server, "bruno").await;
    let page = |token: String| {
        let server = &server;
        async move {
            send(
                no_redirects()
                    .get(server.url("/me"))
                    .header(COOKIE, session_cookie(&token)),
            )
            .await
            .expect(StatusCode::OK)
        }
    };
    let alice_page = page(alice.clone()).await;
    let alice_form = form_token(&alice_page.text);
    let bruno_form = form_token(&page(bruno.clone()).await.text);
    assert_ne!(alice_form, bruno_form);
    assert_ne!(alice_form, alice, "the token is not the session token");
    assert!(
        cookie_value(&alice_page, "rm_csrf").is_none(),
        "a session needs no other cookie"
    );
    // The same session always gets the same token (open tabs keep working).
    assert_eq!(form_token(&page(alice.clone()).await.text), alice_form);

    // Alice's token in bruno's browser does nothing.
    let stolen = post_form(
        &server,
        "/me/profile",
        &session_cookie(&bruno),
        &format!("csrf={alice_form}&nickname=Hacked"),
    )
    .await;
    assert_csrf_page(&stolen);
    assert_eq!(nickname(&server, &bruno).await, "bruno");

    // In alice's own browser it works.
    let saved = post_form(
        &server,
        "/me/profile",
        &session_cookie(&alice),
        &format!("csrf={alice_form}&nickname=Alice2"),
    )
    .await
    .expect(StatusCode::SEE_OTHER);
    assert_eq!(
        saved.header("location").as_deref(),
        Some("/me?done=profile")
    );
    assert_eq!(nickname(&server, &alice).await, "Alice2");

    // After a new login the old session's token is refused, the new session's accepted.
    let fresh = login_token(&server, "alice").await;
    assert_csrf_page(
        &post_form(
            &server,
            "/me/profile",
            &session_cookie(&fresh),
            &format!("csrf={alice_form}&nickname=Stale"),
        )
        .await,
    );
    let fresh_form = form_token(&page(fresh.clone()).await.text);
    post_form(
        &server,
        "/me/profile",
        &session_cookie(&fresh),
        &format!("csrf={fresh_form}&nickname=Fresh"),
    )
    .await
    .expect(StatusCode::SEE_OTHER);
    assert_eq!(nickname(&server, &fresh).await, "Fresh");
}

#[tokio::test]
async fn a_planted_csrf_cookie_does_not_help() {
    let server = TestServer::start_with(relaxed).await;
    register_and_verify(&server, "carol").await;
    let (_, victim) = verified_user(&server, "dora").await;
    let planted = "ab".repeat(32);

    // The old double submit: cookie and field equal. Refused, signed in or not.
    let login_fields = format!("csrf={planted}&login=carol&password=correct+horse");
    assert_csrf_page(
        &post_form(
            &server,
            "/login",
            &format!("rm_csrf={planted}"),
            &login_fields,
        )
        .await,
    );
    assert_csrf_page(
        &post_form(
            &server,
            "/me/profile",
            &format!("rm_csrf={planted}; {}", session_cookie(&victim)),
            &format!("csrf={planted}&nickname=Hacked"),
        )
        .await,
    );

    // A pair the server really issued, to a browser without a session: the attacker fetches
    // it, plants the cookie in the victim's browser and submits the token. The victim is
    // signed in, so the token that counts is bound to their session: refused.
    let issued = send(no_redirects().get(server.url("/login")))
        .await
        .expect(StatusCode::OK);
    let pre_session = cookie_value(&issued, "rm_csrf").expect("a pre-session cookie");
    let issued_token = form_token(&issued.text);
    assert_ne!(issued_token, pre_session, "the token is not the cookie");
    let pre_attributes = issued
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("rm_csrf="))
        .expect("the cookie")
        .to_lowercase();
    assert!(
        pre_attributes.contains("httponly") && pre_attributes.contains("samesite=strict"),
        "{pre_attributes}"
    );
    for cookies in [
        format!("rm_csrf={pre_session}; {}", session_cookie(&victim)),
        format!("{}; rm_csrf={pre_session}", session_cookie(&victim)),
    ] {
        assert_csrf_page(
            &post_form(
                &server,
                "/me/profile",
                &cookies,
                &format!("csrf={issued_token}&nickname=Hacked"),
            )
            .await,
        );
    }
    assert_eq!(nickname(&server, &victim).await, "dora");

    // The browser it was issued to, without a session, logs in with it.
    let logged_in = post_form(
        &server,
        "/login",
        &format!("rm_csrf={pre_session}"),
        &format!(
            "csrf={issued_token}&login=carol&password={}",
            PASSWORD.replace(' ', "+")
        ),
    )
    .await
    .expect(StatusCode::SEE_OTHER);
    assert!(logged_in.session_cookie().starts_with("rm_session="));
}

// ---------------------------------------------------------------------------------------------
// Security headers on every answer
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.media.watch_origins = vec!["http://media.lan:8090".to_owned()];
    })
    .await;
    let (_, token) = verified_user(&server, "erin").await;
    let room = get_auth(&server, "/api/v1/me", &token).await.json()["room_id"]
        .as_u64()
        .expect("a room");
    let client = no_redirects();
    let get = |path: &str| client.get(server.url(path));
    let answers = [
        ("home page", get("/")),
        ("login page", get("/login")),
        ("room page", get(&format!("/room/{room}"))),
        (
            "profile page",
            get("/me").header(COOKIE, session_cookie(&token)),
        ),
        ("redirect", get("/me")),
        ("error page", get("/no/such/page")),
        ("API answer", get("/api/v1/rooms")),
        ("API error", get("/api/v1/me")),
        ("asset", get("/assets/room.js")),
        ("stylesheet", get("/assets/style.css")),
        ("health", get("/healthz")),
        ("refusal", client.post(server.url("/api/v1/guest"))),
    ];
    for (what, request) in answers {
        let reply = send(request).await;
        assert_eq!(
            reply.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(
            reply.header("referrer-policy").as_deref(),
            Some("same-origin"),
            "{what}"
        );
        let policy = reply.header("content-security-policy").unwrap_or_default();
        let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
        for wanted in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "frame-ancestors 'none'",
            "media-src 'self' blob: http://media.lan:8090",
            "connect-src 'self' http://media.lan:8090",
        ] {
            assert!(
                directives.contains(&wanted),
                "{what}: {wanted:?} not in {policy:?}"
            );
        }
        assert!(
            !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"),
            "{policy}"
        );
        // Pages hold no inline script the policy would block: every script is a file.
        if reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
        {
            let html = reply.text.to_lowercase();
            for script in html.split("<script").skip(1) {
                let tag = script.split('>').next().unwrap_or_default();
                assert!(
                    tag.contains("src=\"/assets/"),
                    "{what}: inline <script{tag}>"
                );
            }
            for handler in [
                " onclick=",
                " onload=",
                " onerror=",
                " onsubmit=",
                "javascript:",
            ] {
                assert!(!html.contains(handler), "{what}: {handler}");
            }
        }
    }
}

#[test]
fn a_watch_origin_that_is_not_an_origin_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_file(
        dir.path(),
        "bad.toml",
        "[media]\nwatch_origins = [\"http://cdn.lan; script-src *\"]\n",
    );
    let (status, _, err) = run_command(
        dir.path(),
        &[
            "check-config",
            "--config",
            config.to_str().expect("UTF-8 path"),
        ],
    );
    assert!(!status.success());
    assert!(err.contains("media.watch_origins"), "{err}");
    let good = write_file(
        dir.path(),
        "good.toml",
        "[media]\nwatch_origins = [\"http://192.168.1.20:8090\"]\n",
    );
    let (status, out, err) = run_command(
        dir.path(),
        &[
            "check-config",
            "--config",
            good.to_str().expect("UTF-8 path"),
        ],
    );
    assert!(status.success(), "{err}");
    assert!(out.contains("http://192.168.1.20:8090"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Byte ranges (RFC 9110 §14)
// ---------------------------------------------------------------------------------------------

/// A GET of `path` with the raw `Range` header value; the reply and its bytes.
async fn ranged(server: &TestServer, path: &str, range: &[u8]) -> (Reply, Vec<u8>) {
    let value = reqwest::header::HeaderValue::from_bytes(range).expect("a header value");
    let res = server
        .client
        .get(server.url(path))
        .header("range", value)
        .send()
        .await
        .expect("GET is answered");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body").to_vec();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        Reply {
            status,
            headers,
            text,
        },
        bytes,
    )
}

#[tokio::test]
async fn byte_ranges_follow_rfc_9110() {
    let server = TestServer::start_with(relaxed).await;
    let (_, token) = verified_user(&server, "ranger").await;
    let live_id = live_id_of(&server, &token).await;
    let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let len = content.len();
    let path = put_recording(&server, &live_id, &content);

    // Ignored: the whole file, 200, no Content-Range.
    let ignored: [&[u8]; 13] = [
        b"items=0-99",
        b"pages=1",
        b"bytes",
        b"bytes=",
        b"bytes=abc",
        b"bytes=5-1",
        b"bytes=+1-2",
        b"bytes=1-2-3",
        b"bytes=0-99,x",
        b"0-99",
        b"bytes=0-1,5-6",
        b"bytes=-5,0-0",
        b"bytes=\xff-\xfe",
    ];
    for range in ignored {
        let (reply, body) = ranged(&server, &path, range).await;
        let shown = String::from_utf8_lossy(range);
        assert_eq!(reply.status, StatusCode::OK, "{shown}");
        assert!(reply.header("content-range").is_none(), "{shown}");
        assert_eq!(
            reply.header("content-length"),
            Some(len.to_string()),
            "{shown}"
        );
        assert_eq!(body, content, "{shown}");
    }

    // Served as one part, clamped to the file.
    for (range, first, last) in [
        ("bytes=9000-20000", 9000, 9999),
        ("bytes=0-99999999999999999999999", 0, 9999),
        ("bytes=-10", 9990, 9999),
        ("bytes=-20000", 0, 9999),
        ("bytes=9999-", 9999, 9999),
        ("BYTES=100-199", 100, 199),
        ("bytes=100-199,", 100, 199),
    ] {
        let (reply, body) = ranged(&server, &path, range.as_bytes()).await;
        assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes {first}-{last}/{len}")),
            "{range}"
        );
        assert_eq!(body, content[first..=last], "{range}");
    }

    // Unsatisfiable: nothing of the file overlaps. 416 with the file's length.
    for range in [
        "bytes=10000-",
        "bytes=10000-10001",
        "bytes=99999999999999999999999-",
        "bytes=-0",
        "bytes=10000-10001, 20000-",
    ] {
        let (reply, body) = ranged(&server, &path, range.as_bytes()).await;
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes */{len}")),
            "{range}"
        );
        assert!(body.is_empty(), "{range}");
    }
}

// ---------------------------------------------------------------------------------------------
// Path parameters that do not parse
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_path_parameters_get_the_error_shape() {
    let server = TestServer::start_with(relaxed).await;
    let (_, token) = verified_user(&server, "paula").await;
    let room = get_auth(&server, "/api/v1/me", &token).await.json()["room_id"]
        .as_u64()
        .expect("a room");
    let json_get = |path: String| {
        send(
            server
                .client
                .get(server.url(&path))
                .header("accept", "application/json"),
        )
    };
    let long = "9".repeat(5000);
    for path in [
        "/api/v1/rooms/abc".to_owned(),
        "/api/v1/rooms/%FF".to_owned(),
        "/api/v1/rooms/-1".to_owned(),
        "/api/v1/rooms/1.5".to_owned(),
        format!("/api/v1/rooms/{long}"),
        "/files/avatars/%FF%FE".to_owned(),
        "/hls/live/%C3%28/index.m3u8".to_owned(),
        "/records/files/%FF/session_1.mp4".to_owned(),
        "/assets/%FF.js".to_owned(),
        "/room/abc".to_owned(),
    ] {
        let reply = json_get(path.clone())
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_path");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.starts_with("the address is not valid"),
            "{path}: {message}"
        );
        assert!(
            message.len() < 200,
            "{path}: the message stays short: {message}"
        );
    }
    let not_a_number = json_get("/api/v1/rooms/abc".to_owned()).await;
    assert!(
        not_a_number
            .text
            .contains("\\\"abc\\\" is not a valid number"),
        "{}",
        not_a_number.text
    );

    // A person gets the same as a page.
    for path in ["/room/abc", "/room/%FF", "/files/covers/%FF"] {
        let reply = send(server.client.get(server.url(path))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{path}"
        );
        assert!(
            reply.contains("the address is not valid"),
            "{path}: {}",
            reply.text
        );
    }

    // Well-formed addresses are served as before.
    json_get(format!("/api/v1/rooms/{room}"))
        .await
        .expect(StatusCode::OK);
    json_get("/api/v1/rooms/999999".to_owned())
        .await
        .expect_error(StatusCode::NOT_FOUND, "room_not_found");
    let page = send(server.client.get(server.url(&format!("/room/{room}")))).await;
    assert_eq!(page.status, StatusCode::OK);
}
