//! The web side's smaller holes, closed: the security headers on every answer, byte ranges by
//! RFC 9110, and path parameters that do not parse answered in the error shape. Each refusal
//! comes with a well-behaved request that is still served.

use reqwest::header::COOKIE;
use reqwest::StatusCode;

use crate::accounts::{get_auth, relaxed, send, verified_user, Reply};
use crate::common::{run_command, write_file, TestServer};

/// A client that shows redirects instead of following them, as a test of forms needs.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client")
}

fn session_cookie(token: &str) -> String {
    format!("rm_session={token}")
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
        ("API not found", get("/api/v1/nothing")),
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
    let live_id = get_auth(&server, "/api/v1/me/push", &token).await.json()["live_id"]
        .as_str()
        .expect("live_id")
        .to_owned();
    // Where the rtmp backend keeps a finished recording (as in `http_docs`).
    let dir = server
        .data
        .path()
        .join("media")
        .join("records")
        .join(&live_id);
    std::fs::create_dir_all(&dir).expect("create the records folder");
    let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let len = content.len();
    std::fs::write(dir.join("session_1795714121.mp4"), &content).expect("write a recording");
    let path = format!("/records/files/{live_id}/session_1795714121.mp4");

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
