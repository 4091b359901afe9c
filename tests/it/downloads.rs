//! The downloads page over real HTTP: an admin's upload (raw body and page form), the public
//! list and page, the file with ranges and its ETag, the size cap, uploads cut off mid-way,
//! names that try to be paths, admin-only routes, a 2 GB upload through the real binary with
//! its memory watched, and the host's OBS profile.

use std::path::{Path, PathBuf};
use std::time::Instant;

use reqwest::header::{CONTENT_TYPE, COOKIE};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::accounts::{guest_token, relaxed, send, verified_user, Reply};
use crate::admin::{admin_token, audit, make_admin, ADMIN_PASSWORD};
use crate::common::{run_command_with_input, wait_for, Process, TestServer};
use crate::web_hardening::{form_token, no_redirects};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` bytes that are not all alike, so a range from the wrong place shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn downloads_dir(data: &Path) -> PathBuf {
    data.join("downloads")
}

/// The names in the downloads folder, sorted.
fn files_in(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(downloads_dir(data))
        .expect("the downloads folder exists")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// `POST /api/v1/admin/downloads?{query}` with `body`, as the admin `token`.
async fn upload(server: &TestServer, token: &str, query: &str, body: Vec<u8>) -> Reply {
    send(
        server
            .client
            .post(server.url(&format!("/api/v1/admin/downloads?{query}")))
            .bearer_auth(token)
            .body(body),
    )
    .await
}

async fn list(server: &TestServer) -> Value {
    send(server.client.get(server.url("/api/v1/downloads")))
        .await
        .expect(StatusCode::OK)
        .json()
}

/// A GET of `path` with extra headers; the status, headers and body bytes.
async fn fetch(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = server.client.get(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let res = request.send().await.expect("GET");
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.expect("body").to_vec())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// An HTTP/1.1 request whose body the test writes itself, over its own TCP connection: for a
/// body too large to hold, one without a declared length, and a client that goes away.
struct RawRequest {
    stream: TcpStream,
    chunked: bool,
}

impl RawRequest {
    /// Sends the request head; `length` is the declared body length, `None` for chunked.
    async fn start(base: &str, target: &str, token: &str, length: Option<u64>) -> RawRequest {
        let authority = base.strip_prefix("http://").expect("an http base");
        let stream = TcpStream::connect(authority).await.expect("connect");
        let framing = match length {
            Some(n) => format!("Content-Length: {n}"),
            None => "Transfer-Encoding: chunked".to_owned(),
        };
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/octet-stream\r\nConnection: close\r\n{framing}\r\n\r\n"
        );
        let mut request = RawRequest {
            stream,
            chunked: length.is_none(),
        };
        request
            .stream
            .write_all(head.as_bytes())
            .await
            .expect("send the head");
        request
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.chunked {
            let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
            framed.extend_from_slice(bytes);
            framed.extend_from_slice(b"\r\n");
            self.stream.write_all(&framed).await
        } else {
            self.stream.write_all(bytes).await
        }
    }

    /// Ends the body (if chunked) and reads the answer: its status and body.
    async fn answer(mut self) -> (u16, String) {
        if self.chunked {
            self.stream
                .write_all(b"0\r\n\r\n")
                .await
                .expect("end the body");
        }
        self.read_answer().await
    }

    async fn read_answer(mut self) -> (u16, String) {
        let mut raw = Vec::new();
        self.stream
            .read_to_end(&mut raw)
            .await
            .expect("read the answer");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        (status, body)
    }
}

fn error_code(body: &str) -> String {
    // A chunked answer's body is framed; the JSON is inside.
    let start = body
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in {body:?}"));
    let end = body.rfind('}').expect("the JSON's end") + 1;
    let json: Value = serde_json::from_str(&body[start..end]).expect("a JSON error");
    json["error"]["code"]
        .as_str()
        .expect("an error code")
        .to_owned()
}

#[tokio::test]
async fn an_uploaded_file_is_listed_served_whole_and_in_ranges_with_its_etag() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let content = pattern(300_000);
    let sha = hex(&Sha256::digest(&content));

    let created = upload(
        &server,
        &admin,
        "filename=RoomManager%20%E5%AE%A2%E6%88%B7%E7%AB%AF.zip&title=Desktop%20client&version=1.2.0&description=For%20Windows",
        content.clone(),
    )
    .await
    .expect(StatusCode::CREATED)
    .json();
    let id = created["id"].as_u64().expect("an id");
    let url = created["url"].as_str().expect("a url").to_owned();
    assert_eq!(
        url,
        format!("/downloads/{id}/RoomManager%20%E5%AE%A2%E6%88%B7%E7%AB%AF.zip")
    );
    // On disk under its id only.
    assert_eq!(files_in(server.data.path()), vec![id.to_string()]);

    let listed = list(&server).await;
    let entry = &listed["downloads"][0];
    assert_eq!(entry["id"], id, "{listed}");
    assert_eq!(entry["title"], "Desktop client");
    assert_eq!(entry["version"], "1.2.0");
    assert_eq!(entry["description"], "For Windows");
    assert_eq!(entry["filename"], "RoomManager 客户端.zip");
    assert_eq!(entry["size"], 300_000);
    assert_eq!(entry["sha256"], sha.as_str());
    assert_eq!(entry["url"], url.as_str());
    assert!(entry["created_at"]
        .as_u64()
        .is_some_and(|t| t > 1_700_000_000));

    // Whole, as an attachment under its name, with the hash as its strong ETag.
    let (status, headers, body) = fetch(&server, &url, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        hex(&Sha256::digest(&body)),
        sha,
        "the SHA-256 shown is the file's"
    );
    assert_eq!(body, content);
    assert_eq!(header(&headers, "etag"), format!("\"{sha}\""));
    assert_eq!(header(&headers, "accept-ranges"), "bytes");
    assert_eq!(header(&headers, "content-type"), "application/zip");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(
        header(&headers, "content-disposition"),
        "attachment; filename=\"RoomManager ___.zip\"; \
         filename*=UTF-8''RoomManager%20%E5%AE%A2%E6%88%B7%E7%AB%AF.zip"
    );

    // Ranges: the first bytes, the middle, a suffix; one past the end is refused.
    for (range, first, last) in [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=-500", 299_500, 299_999),
        ("bytes=299990-", 299_990, 299_999),
    ] {
        let (status, headers, body) = fetch(&server, &url, &[("range", range)]).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&headers, "content-range"),
            format!("bytes {first}-{last}/300000"),
            "{range}"
        );
        assert_eq!(body, content[first..=last], "{range}");
    }
    let (status, headers, _) = fetch(&server, &url, &[("range", "bytes=300000-")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&headers, "content-range"), "bytes */300000");
    // A range that does not parse is ignored: the whole file.
    let (status, _, body) = fetch(&server, &url, &[("range", "bytes=abc")]).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 300_000));
    // A resumed download of this same file gets its range; of another version, the whole.
    let etag = format!("\"{sha}\"");
    let (status, _, body) = fetch(
        &server,
        &url,
        &[("range", "bytes=0-9"), ("if-range", etag.as_str())],
    )
    .await;
    assert_eq!((status, body.len()), (StatusCode::PARTIAL_CONTENT, 10));
    let (status, _, body) = fetch(
        &server,
        &url,
        &[("range", "bytes=0-9"), ("if-range", "\"another\"")],
    )
    .await;
    assert_eq!((status, body.len()), (StatusCode::OK, 300_000));

    // The client's copy is this one: 304 with no body; another copy: the file.
    let (status, headers, body) = fetch(&server, &url, &[("if-none-match", etag.as_str())]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "etag"), etag);
    let (status, _, _) = fetch(&server, &url, &[("if-none-match", "\"stale\"")]).await;
    assert_eq!(status, StatusCode::OK);

    // The page shows it with its size and hash, for anyone.
    let page = send(server.client.get(server.url("/downloads")))
        .await
        .expect(StatusCode::OK);
    for shown in [
        "Desktop client",
        "1.2.0",
        "For Windows",
        "293.0 KB",
        sha.as_str(),
        &format!("href=\"{url}\""),
    ] {
        assert!(page.text.contains(shown), "{shown} not in:\n{}", page.text);
    }

    // Deleted: gone from the list, the address and the disk; both actions are audited.
    send(
        server
            .client
            .delete(server.url(&format!("/api/v1/admin/downloads/{id}")))
            .bearer_auth(&admin),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(list(&server).await["downloads"], serde_json::json!([]));
    let (status, _, _) = fetch(&server, &url, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(files_in(server.data.path()).is_empty());
    send(
        server
            .client
            .delete(server.url(&format!("/api/v1/admin/downloads/{id}")))
            .bearer_auth(&admin),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "download_not_found");
    let log = audit(&server.base, &admin, "").await;
    let target = format!("download:{id}");
    for (at, action) in [(0, "delete_download"), (1, "add_download")] {
        let entry = &log["entries"][at];
        assert_eq!(entry["action"], action, "{log}");
        assert_eq!(entry["target"], target.as_str(), "{log}");
        assert_eq!(entry["admin"], "root", "{log}");
        assert_eq!(entry["ip"], "127.0.0.1", "{log}");
    }
}

#[tokio::test]
async fn names_are_never_paths_and_a_wrong_name_in_the_address_is_not_found() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let long = "x".repeat(201);
    for bad in [
        "..%2F..%2Fetc%2Fpasswd",
        "a%2Fb",
        "a%5Cb",
        "%2e%2e",
        "..",
        "a%00b",
        "line%0Abreak",
        "",
        long.as_str(),
    ] {
        upload(
            &server,
            &admin,
            &format!("filename={bad}&title=Trick"),
            b"x".to_vec(),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_filename");
    }
    // Other fields are checked before anything is written too.
    for (query, code) in [
        ("filename=a.txt&title=", "invalid_title"),
        ("filename=a.txt", "invalid_query"),
        ("filename=a.txt&title=t&version=1%0A2", "invalid_version"),
    ] {
        upload(&server, &admin, query, b"x".to_vec())
            .await
            .expect_error(StatusCode::BAD_REQUEST, code);
    }
    upload(
        &server,
        &admin,
        "filename=empty.txt&title=Empty",
        Vec::new(),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "empty_upload");
    assert!(files_in(server.data.path()).is_empty());
    assert!(!server.data.path().join("etc").exists());

    // A name that merely looks encoded is a name like any other: shown, served under the id.
    let created = upload(
        &server,
        &admin,
        "filename=%252e%252e&title=Dots",
        b"harmless".to_vec(),
    )
    .await
    .expect(StatusCode::CREATED)
    .json();
    let id = created["id"].as_u64().expect("an id");
    assert_eq!(created["url"], format!("/downloads/{id}/%252e%252e"));
    let (status, _, body) = fetch(&server, &format!("/downloads/{id}/%252e%252e"), &[]).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"harmless"[..])
    );
    assert_eq!(files_in(server.data.path()), vec![id.to_string()]);

    // Any other name for it, or an id that is no number, finds nothing.
    for path in [
        format!("/downloads/{id}/other.zip"),
        format!("/downloads/{id}/.."),
        format!("/downloads/{id}/%2e%2e"),
        format!("/downloads/{id}/..%2F..%2Fetc%2Fpasswd"),
        format!("/downloads/{id}/..%2F{id}"),
        format!("/downloads/{}/%252e%252e", id + 1),
    ] {
        let (status, _, _) = fetch(&server, &path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _, _) = fetch(&server, "/downloads/..%2F..%2Froommanager.redb/x", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_upload_over_the_cap_is_refused_and_leaves_no_file() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.downloads.max_bytes = 1024 * 1024;
    })
    .await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let target = "/api/v1/admin/downloads?filename=big.bin&title=Big";

    // A declared length over the cap is refused before a byte of the body is read.
    let declared = RawRequest::start(&server.base, target, &admin, Some(1024 * 1024 + 1)).await;
    let (status, body) = declared.read_answer().await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), "payload_too_large");

    // Without a declared length, the upload is counted as it arrives, and cut off at the cap.
    let mut streamed = RawRequest::start(&server.base, target, &admin, None).await;
    for _ in 0..16 {
        streamed.send(&pattern(64 * 1024)).await.expect("send");
    }
    streamed.send(b"!").await.expect("send the byte too many");
    let (status, body) = streamed.answer().await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), "payload_too_large");
    assert!(files_in(server.data.path()).is_empty());
    assert_eq!(list(&server).await["downloads"], serde_json::json!([]));

    // The general body limit (1 MiB by default) is no limit here: a file of exactly the cap
    // goes in, streamed or declared.
    let mut exact = RawRequest::start(&server.base, target, &admin, None).await;
    for _ in 0..16 {
        exact.send(&pattern(64 * 1024)).await.expect("send");
    }
    let (status, body) = exact.answer().await;
    assert_eq!(status, 201, "{body}");
    upload(
        &server,
        &admin,
        "filename=b.bin&title=B",
        pattern(1024 * 1024),
    )
    .await
    .expect(StatusCode::CREATED);
    assert_eq!(
        list(&server).await["downloads"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn a_client_that_goes_away_mid_upload_leaves_no_file() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let target = "/api/v1/admin/downloads?filename=cut.bin&title=Cut";
    for declared in [Some(64 * 1024 * 1024), None] {
        let mut request = RawRequest::start(&server.base, target, &admin, declared).await;
        // Enough to be on disk already (the server writes a mebibyte at a time).
        for _ in 0..48 {
            request.send(&pattern(64 * 1024)).await.expect("send");
        }
        let data = server.data.path().to_owned();
        wait_for(|| {
            let started = files_in(&data).iter().any(|n| n.ends_with(".partial"));
            async move { started.then_some(()) }
        })
        .await;
        drop(request);
        wait_for(|| {
            let empty = files_in(&data).is_empty();
            async move { empty.then_some(()) }
        })
        .await;
    }
    assert_eq!(list(&server).await["downloads"], serde_json::json!([]));
    // The server took the next upload as if nothing happened.
    upload(
        &server,
        &admin,
        "filename=ok.txt&title=Fine",
        b"fine".to_vec(),
    )
    .await
    .expect(StatusCode::CREATED);
}

#[tokio::test]
async fn only_admins_reach_the_downloads_admin_routes() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    upload(&server, &admin, "filename=a.txt&title=A", b"a".to_vec())
        .await
        .expect(StatusCode::CREATED);
    let (_, user) = verified_user(&server, "carol").await;
    let guest = guest_token(&server).await;
    let askers: [(&str, Option<&str>, Option<String>); 5] = [
        ("nobody", None, None),
        ("guest bearer", Some(guest.as_str()), None),
        ("user bearer", Some(user.as_str()), None),
        (
            "user cookie",
            None,
            Some(format!("rm_session={user}; rm_admin={user}")),
        ),
        (
            "guest cookie",
            None,
            Some(format!("rm_session={guest}; rm_admin={guest}")),
        ),
    ];
    let routes = [
        (
            true,
            "POST",
            "/api/v1/admin/downloads?filename=b.txt&title=B",
        ),
        (true, "DELETE", "/api/v1/admin/downloads/1"),
        (false, "GET", "/admin/downloads"),
        (false, "POST", "/admin/downloads"),
        (false, "POST", "/admin/downloads/1/delete"),
    ];
    let client = no_redirects();
    for (api, method, path) in routes {
        for (who, bearer, cookie) in &askers {
            let mut request = client
                .request(method.parse().expect("a method"), server.url(path))
                .header("x-rm-csrf", "1")
                .body("b");
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            if let Some(cookie) = cookie {
                request = request.header(COOKIE, cookie);
            }
            let reply = send(request).await;
            if api {
                assert_eq!(
                    reply.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} as {who}"
                );
                assert_eq!(reply.code(), "admin_required", "{method} {path} as {who}");
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::SEE_OTHER,
                    "{method} {path} as {who}"
                );
                assert_eq!(reply.header("location").as_deref(), Some("/admin/login"));
            }
        }
    }
    // Nothing changed; the public list and file are everyone's.
    assert_eq!(
        list(&server).await["downloads"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(files_in(server.data.path()), vec!["1".to_owned()]);
    let (status, _, body) = fetch(&server, "/downloads/1/a.txt", &[]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"a"[..]));
}

/// A multipart form body with these text fields and then the file.
fn multipart(boundary: &str, fields: &[(&str, &str)], filename: &str, file: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"{filename}\"\r\nContent-Type: application/pdf\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[tokio::test]
async fn the_admin_page_uploads_lists_and_deletes_files_by_its_forms() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let session = format!("rm_admin={admin}");
    let client = no_redirects();
    let page = send(
        client
            .get(server.url("/admin/downloads"))
            .header(COOKIE, &session),
    )
    .await
    .expect(StatusCode::OK);
    assert!(page.contains("No files yet."), "{}", page.text);
    let csrf = form_token(&page.text);
    let boundary = "----roommanager-test-boundary";
    let form_type = format!("multipart/form-data; boundary={boundary}");
    let guide = pattern(200_000);
    let post = |body: Vec<u8>| {
        send(
            client
                .post(server.url("/admin/downloads"))
                .header(COOKIE, &session)
                .header(CONTENT_TYPE, &form_type)
                .body(body),
        )
    };

    // A form without its token, or with a path for a name: refused, nothing stored.
    let forged = post(multipart(
        boundary,
        &[("title", "Guide")],
        "guide.pdf",
        &guide,
    ))
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let trick = post(multipart(
        boundary,
        &[("csrf", &csrf), ("title", "Guide")],
        "../guide.pdf",
        &guide,
    ))
    .await;
    assert_eq!(trick.status, StatusCode::BAD_REQUEST, "{}", trick.text);
    assert!(trick.contains("not a path"), "{}", trick.text);
    assert!(files_in(server.data.path()).is_empty());

    let added = post(multipart(
        boundary,
        &[
            ("csrf", &csrf),
            ("title", "How to stream"),
            ("version", "2"),
            ("description", "Step by step, with pictures."),
        ],
        "guide.pdf",
        &guide,
    ))
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text);
    assert_eq!(
        added.header("location").as_deref(),
        Some("/admin/downloads")
    );
    let listed = list(&server).await;
    let entry = &listed["downloads"][0];
    assert_eq!(entry["title"], "How to stream", "{listed}");
    assert_eq!(entry["filename"], "guide.pdf");
    assert_eq!(entry["sha256"], hex(&Sha256::digest(&guide)).as_str());
    let id = entry["id"].as_u64().expect("an id");
    let (_, headers, body) = fetch(&server, "/downloads/1/guide.pdf", &[]).await;
    assert_eq!(body, guide);
    assert_eq!(header(&headers, "content-type"), "application/pdf");

    let page = send(
        client
            .get(server.url("/admin/downloads"))
            .header(COOKIE, &session),
    )
    .await
    .expect(StatusCode::OK);
    assert!(page.contains("How to stream"), "{}", page.text);
    assert!(page.contains("195.3 KB"), "{}", page.text);
    let deleted = send(
        client
            .post(server.url(&format!("/admin/downloads/{id}/delete")))
            .header(COOKIE, &session)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.text);
    assert_eq!(list(&server).await["downloads"], serde_json::json!([]));
    assert!(files_in(server.data.path()).is_empty());
    let log = audit(&server.base, &admin, "").await;
    assert_eq!(log["entries"][0]["action"], "delete_download", "{log}");
    assert_eq!(log["entries"][1]["action"], "add_download", "{log}");
}

#[tokio::test]
async fn the_obs_profile_is_the_hosts_push_settings_with_the_host_it_was_asked_by() {
    let server = TestServer::start_bound("0.0.0.0:0", relaxed).await;
    let (_, host) = verified_user(&server, "hostess").await;
    // Reached by another of this machine's addresses, as a LAN client would.
    let base = server.base.replacen("127.0.0.1", "127.0.0.3", 1);
    let client = no_redirects();
    let push = send(
        client
            .get(format!("{base}/api/v1/me/push"))
            .bearer_auth(&host),
    )
    .await
    .expect(StatusCode::OK)
    .json();
    let server_url = push["server"].as_str().expect("a server").to_owned();
    assert!(server_url.starts_with("rtmp://127.0.0.3:"), "{push}");

    // As the browser asks for it: with the session cookie.
    let reply = send(
        client
            .get(format!("{base}/downloads/obs-profile"))
            .header(COOKIE, format!("rm_session={host}")),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        reply.header("content-disposition").as_deref(),
        Some("attachment; filename=\"service.json\"")
    );
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
    let service = reply.json();
    assert_eq!(service["type"], "rtmp_custom", "{service}");
    assert_eq!(
        service["settings"]["server"],
        server_url.as_str(),
        "{service}"
    );
    assert_eq!(service["settings"]["key"], push["stream_key"], "{service}");

    // The downloads page offers it to the host, and not to someone signed out.
    let page = send(
        client
            .get(format!("{base}/downloads"))
            .header(COOKIE, format!("rm_session={host}")),
    )
    .await
    .expect(StatusCode::OK);
    assert!(page.contains("/downloads/obs-profile"), "{}", page.text);
    let page = send(client.get(format!("{base}/downloads")))
        .await
        .expect(StatusCode::OK);
    assert!(!page.contains("/downloads/obs-profile"), "{}", page.text);

    // Nobody, a guest, an admin: refused, as JSON to a program and as a page to a person.
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let guest = guest_token(&server).await;
    for (who, cookie, status, code) in [
        (
            "nobody",
            String::new(),
            StatusCode::UNAUTHORIZED,
            "not_logged_in",
        ),
        (
            "guest",
            format!("rm_session={guest}"),
            StatusCode::FORBIDDEN,
            "registered_only",
        ),
        (
            "admin",
            format!("rm_session={admin}"),
            StatusCode::UNAUTHORIZED,
            "not_logged_in",
        ),
    ] {
        let mut request = client
            .get(format!("{base}/downloads/obs-profile"))
            .header("accept", "application/json");
        if !cookie.is_empty() {
            request = request.header(COOKIE, &cookie);
        }
        send(request).await.expect_error(status, code);
        let mut page = client.get(format!("{base}/downloads/obs-profile"));
        if !cookie.is_empty() {
            page = page.header(COOKIE, &cookie);
        }
        let page = send(page).await;
        assert_eq!(page.status, status, "{who}");
        assert!(page.contains("<html"), "{who}: {}", page.text);
    }
}

#[tokio::test]
async fn a_start_removes_what_a_crash_left_in_the_downloads_folder() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    upload(
        &server,
        &admin,
        "filename=keep.txt&title=Keep",
        b"kept".to_vec(),
    )
    .await
    .expect(StatusCode::CREATED);
    let data = server.stop_keep_data().await;
    // A partial upload and a file no download lists, as a crash mid-upload or mid-delete
    // leaves them.
    let folder = downloads_dir(data.path());
    std::fs::write(folder.join(".upload-0123.partial"), b"half").expect("write");
    std::fs::write(folder.join("99"), b"orphan").expect("write");
    std::fs::write(folder.join("notes.txt"), b"the admin's own").expect("write");

    let server = TestServer::start_in(data, relaxed).await;
    assert_eq!(files_in(server.data.path()), vec!["1", "notes.txt"]);
    let (status, _, body) = fetch(&server, "/downloads/1/keep.txt", &[]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"kept"[..]));
}

/// The server's resident memory, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kb * 1024
}

#[tokio::test]
async fn a_two_gigabyte_upload_streams_to_disk_without_the_server_growing() {
    const SIZE: u64 = 2 * 1024 * 1024 * 1024;
    const CHUNK: usize = 1024 * 1024;
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("a UTF-8 temp path").to_owned();
    let (status, out, err) = run_command_with_input(
        data.path(),
        &[
            "--data-dir",
            &dir,
            "admin",
            "create",
            "root",
            "--password-stdin",
        ],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    );
    assert!(status.success(), "{out}{err}");
    let process = Process::serve(data.path(), "");
    let admin = admin_token(&process.base, "root", ADMIN_PASSWORD).await;
    let pid = process.pid();
    // Settled after a first small request: what it holds before the upload.
    let idle = rss_bytes(pid);

    let started = Instant::now();
    let mut request = RawRequest::start(
        &process.base,
        "/api/v1/admin/downloads?filename=client-2g.bin&title=Big%20client",
        &admin,
        Some(SIZE),
    )
    .await;
    let mut hash = Sha256::new();
    let mut chunk = pattern(CHUNK);
    let mut peak = idle;
    for i in 0..SIZE / CHUNK as u64 {
        // Each mebibyte differs, so a piece written twice or skipped changes the hash.
        chunk[..8].copy_from_slice(&i.to_le_bytes());
        hash.update(&chunk);
        request.send(&chunk).await.expect("send");
        if i % 64 == 0 {
            peak = peak.max(rss_bytes(pid));
        }
    }
    let (status, body) = request.read_answer().await;
    let elapsed = started.elapsed();
    peak = peak.max(rss_bytes(pid));
    assert_eq!(status, 201, "{body}");
    eprintln!(
        "2 GiB upload: {:.1} s, server RSS idle {} MiB, peak {} MiB",
        elapsed.as_secs_f64(),
        idle >> 20,
        peak >> 20
    );
    assert!(
        peak < idle + 100 * 1024 * 1024,
        "the server grew from {} MiB to {} MiB",
        idle >> 20,
        peak >> 20
    );

    let listed: Value = reqwest::get(format!("{}/api/v1/downloads", process.base))
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    let entry = &listed["downloads"][0];
    assert_eq!(entry["size"], SIZE, "{listed}");
    assert_eq!(entry["sha256"], hex(&hash.finalize()).as_str(), "{listed}");
    let id = entry["id"].as_u64().expect("an id");
    let stored = std::fs::metadata(downloads_dir(data.path()).join(id.to_string()))
        .expect("the stored file");
    assert_eq!(stored.len(), SIZE);
    // Its last bytes, by range, are the last mebibyte sent.
    let tail = reqwest::Client::new()
        .get(format!("{}/downloads/{id}/client-2g.bin", process.base))
        .header("range", "bytes=-16")
        .send()
        .await
        .expect("GET");
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        tail.bytes().await.expect("body").as_ref(),
        &chunk[CHUNK - 16..]
    );
}
