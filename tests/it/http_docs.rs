//! Promises of `docs/API.md` and `README.md` checked over real HTTP, one by one: the bearer
//! token wins over the cookie, HLS and recording answers (types, caching, byte ranges),
//! `/healthz` when the store fails, WebP and GIF uploads, exact image sizes after scaling, and
//! the order of the live directory.

use std::io::Cursor;
use std::path::PathBuf;

use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{get_auth, put_bytes, relaxed, send, verified_user, Reply};
use crate::common::tools::{self, Tool};
use crate::common::ws::WsClient;
use crate::common::{wait_for, Process, TestServer};
use crate::rooms::Site;

// ---------------------------------------------------------------------------------------------
// Authentication: the bearer header wins over the session cookie
// ---------------------------------------------------------------------------------------------

/// `GET /api/v1/me` with any of a bearer token and a session cookie.
async fn me_with(server: &TestServer, bearer: Option<&str>, cookie: Option<&str>) -> Reply {
    let mut request = server.client.get(server.url("/api/v1/me"));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(token) = cookie {
        request = request.header("cookie", format!("theme=dark; rm_session={token}"));
    }
    send(request).await
}

#[tokio::test]
async fn a_bearer_token_wins_over_the_session_cookie() {
    let server = TestServer::start_with(relaxed).await;
    let (alice, alice_token) = verified_user(&server, "alice").await;
    let (bruno, bruno_token) = verified_user(&server, "bruno").await;
    assert_ne!(alice, bruno);

    // Each credential alone is someone: the cookie is read when it is alone.
    let by_cookie = me_with(&server, None, Some(&bruno_token))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(by_cookie["user_id"], bruno, "{by_cookie}");
    let by_bearer = me_with(&server, Some(&alice_token), None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(by_bearer["user_id"], alice, "{by_bearer}");

    // Both: the request acts as the bearer's user.
    let both = me_with(&server, Some(&alice_token), Some(&bruno_token))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(both["user_id"], alice, "{both}");
    assert_eq!(both["username"], "alice", "{both}");

    // A change made with both lands on the bearer's profile only.
    let patched = send(
        server
            .client
            .patch(server.url("/api/v1/me"))
            .bearer_auth(&alice_token)
            .header("cookie", format!("rm_session={bruno_token}"))
            .json(&json!({"nickname": "Alice by bearer"})),
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_eq!(patched["user_id"], alice, "{patched}");
    let bruno_me = get_auth(&server, "/api/v1/me", &bruno_token).await.json();
    assert_eq!(bruno_me["nickname"], "bruno", "{bruno_me}");

    // An unknown bearer token does not fall back to the cookie's session.
    let unknown = "0".repeat(64);
    me_with(&server, Some(&unknown), Some(&bruno_token))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");

    // Logging out with both ends the bearer's session, not the cookie's.
    send(
        server
            .client
            .post(server.url("/api/v1/logout"))
            .bearer_auth(&alice_token)
            .header("cookie", format!("rm_session={bruno_token}")),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    me_with(&server, Some(&alice_token), None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
    let still = me_with(&server, None, Some(&bruno_token))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(still["user_id"], bruno, "{still}");
}

// ---------------------------------------------------------------------------------------------
// HLS and recordings (media backend rtmp, nginx not running: the files are written here)
// ---------------------------------------------------------------------------------------------

/// A GET that asks for JSON errors (paths outside `/api` answer HTML to people otherwise).
async fn get_json(server: &TestServer, path: &str, range: Option<&str>) -> Reply {
    let mut request = server
        .client
        .get(server.url(path))
        .header("accept", "application/json");
    if let Some(range) = range {
        request = request.header("range", range);
    }
    send(request).await
}

/// The bytes of a GET, with its status and headers.
pub(crate) async fn get_bytes(
    server: &TestServer,
    path: &str,
    range: Option<&str>,
) -> (Reply, Vec<u8>) {
    let mut request = server.client.get(server.url(path));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let res = request.send().await.expect("GET is answered");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body").to_vec();
    let reply = Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    };
    (reply, bytes)
}

/// The host's standing stream id (`live_id`), from `GET /api/v1/me/push`.
pub(crate) async fn live_id_of(server: &TestServer, token: &str) -> String {
    get_auth(server, "/api/v1/me/push", token)
        .await
        .expect(StatusCode::OK)
        .json()["live_id"]
        .as_str()
        .expect("live_id")
        .to_owned()
}

/// Puts `content` where the rtmp backend keeps a finished recording of `live_id`
/// (`DATA_DIR/media/records/<live id>/`, claimed by a session as `session_<time>.mp4`, its
/// record's `url`); returns the path it is served at.
pub(crate) fn put_recording(server: &TestServer, live_id: &str, content: &[u8]) -> String {
    let dir = server
        .data
        .path()
        .join("media")
        .join("records")
        .join(live_id);
    std::fs::create_dir_all(&dir).expect("create the records folder");
    std::fs::write(dir.join("session_1795714121.mp4"), content).expect("write a recording");
    format!("/records/files/{live_id}/session_1795714121.mp4")
}

/// Where nginx writes a stream's HLS files (`DATA_DIR/media/hls/<app>/<live id>/`).
fn hls_dir(server: &TestServer, app: &str, live_id: &str) -> PathBuf {
    let dir = server
        .data
        .path()
        .join("media")
        .join("hls")
        .join(app)
        .join(live_id);
    std::fs::create_dir_all(&dir).expect("create the HLS folder");
    dir
}

#[tokio::test]
async fn hls_playlists_and_segments_are_served_with_their_types() {
    // Going live with the rtmp backend needs ffmpeg present (nginx is not started here).
    if !tools::require(&[Tool::Ffmpeg]) {
        return;
    }
    let server = TestServer::start_with(relaxed).await;
    let (_, token) = verified_user(&server, "hlshost").await;
    let live_id = live_id_of(&server, &token).await;
    let mut host = WsClient::connect(&server.base, &token).await;
    host.send(json!({"type": "start_live", "title": "HLS"}))
        .await;
    let started = host.expect("live_started").await;
    let watch_url = started["watch_url"].as_str().expect("watch_url").to_owned();
    let playlist = format!("/hls/live/{live_id}/index.m3u8");
    assert_eq!(
        watch_url, playlist,
        "a path, valid from any address: {started}"
    );

    // Nothing written yet: not found.
    get_json(&server, &playlist, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // What nginx-rtmp writes while the host pushes: a playlist and numbered segments.
    let dir = hls_dir(&server, "live", &live_id);
    let m3u8 = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:16\n\
                #EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n16.ts\n#EXTINF:2.000,\n17.ts\n";
    std::fs::write(dir.join("index.m3u8"), m3u8).expect("write the playlist");
    let segment: Vec<u8> = (0..188 * 40)
        .map(|i| if i % 188 == 0 { 0x47 } else { (i % 251) as u8 })
        .collect();
    std::fs::write(dir.join("17.ts"), &segment).expect("write a segment");
    std::fs::write(dir.join("notes.txt"), "not for viewers").expect("write another file");

    let (reply, body) = get_bytes(&server, &playlist, None).await;
    let reply = reply.expect(StatusCode::OK);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(body, m3u8.as_bytes());

    let (reply, body) = get_bytes(&server, &format!("/hls/live/{live_id}/17.ts"), None).await;
    let reply = reply.expect(StatusCode::OK);
    assert_eq!(reply.header("content-type").as_deref(), Some("video/mp2t"));
    assert_ne!(
        reply.header("cache-control").as_deref(),
        Some("no-cache"),
        "segments never change"
    );
    assert_eq!(body, segment);

    // A co-stream's mix is served the same way under `mix`.
    let mix = hls_dir(&server, "mix", "m0mix0test0");
    std::fs::write(mix.join("index.m3u8"), m3u8).expect("write the mix playlist");
    let (reply, _) = get_bytes(&server, "/hls/mix/m0mix0test0/index.m3u8", None).await;
    let reply = reply.expect(StatusCode::OK);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-cache"));

    // Anything else is 404 not_found, even when a file of that name exists.
    for path in [
        format!("/hls/live/{live_id}/notes.txt"),
        format!("/hls/live/{live_id}/16.ts"),
        format!("/hls/live/{live_id}/x.ts"),
        format!("/hls/live/{live_id}/.ts"),
        format!("/hls/live/{live_id}/index.m3u"),
        format!("/hls/other/{live_id}/index.m3u8"),
        format!("/hls/guest/{live_id}/index.m3u8"),
        format!("/hls/live/{live_id}..%2f/index.m3u8"),
        "/hls/live/..%2f..%2f..%2froommanager.redb/index.m3u8".to_owned(),
    ] {
        get_json(&server, &path, None)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn recordings_are_served_whole_and_by_byte_range() {
    let server = TestServer::start_with(relaxed).await;
    let (_, token) = verified_user(&server, "recorder").await;
    let live_id = live_id_of(&server, &token).await;
    let content: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let len = content.len();
    let path = put_recording(&server, &live_id, &content);

    // The whole file.
    let (reply, body) = get_bytes(&server, &path, None).await;
    let reply = reply.expect(StatusCode::OK);
    assert_eq!(reply.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(reply.header("content-type").as_deref(), Some("video/mp4"));
    assert_eq!(reply.header("content-length"), Some(len.to_string()));
    assert!(reply.header("content-range").is_none());
    assert_eq!(body, content);

    // Satisfiable ranges: exactly those bytes, and where they are in the file.
    for (range, first, last) in [
        ("bytes=100-1099", 100, 1099),
        ("bytes=0-0", 0, 0),
        ("bytes=9990-", 9990, 9999),
        ("bytes=-10", 9990, 9999),
        ("bytes=9000-20000", 9000, 9999),
        ("bytes=9999-9999", 9999, 9999),
    ] {
        let (reply, body) = get_bytes(&server, &path, Some(range)).await;
        assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes {first}-{last}/{len}")),
            "{range}"
        );
        assert_eq!(
            reply.header("content-length"),
            Some((last - first + 1).to_string()),
            "{range}"
        );
        assert_eq!(reply.header("accept-ranges").as_deref(), Some("bytes"));
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("video/mp4"),
            "{range}"
        );
        assert_eq!(body, content[first..=last], "{range}");
    }

    // Unsatisfiable: the start is past the end.
    for range in ["bytes=10000-", "bytes=10000-10010", "bytes=20000-30000"] {
        let (reply, body) = get_bytes(&server, &path, Some(range)).await;
        assert_eq!(
            reply.status,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{range}: {}",
            reply.text
        );
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes */{len}")),
            "{range}"
        );
        assert!(body.len() < len, "{range}: no file content in a 416");
    }

    // Another name or stream is not found.
    for path in [
        format!("/records/files/{live_id}/session_1.mp4"),
        format!("/records/files/{live_id}/session_1795714121.flv"),
        format!("/records/files/{live_id}/..%2f..%2froommanager.redb.mp4"),
        "/records/files/nosuchstream/session_1795714121.mp4".to_owned(),
    ] {
        get_json(&server, &path, None)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
}

// ---------------------------------------------------------------------------------------------
// /healthz when the store fails
// ---------------------------------------------------------------------------------------------

/// Makes SIGXFSZ ignored in this test process, and so in the servers it spawns from now on (an
/// ignored signal stays ignored across exec): a file-size limit set on such a server makes its
/// writes fail with EFBIG, as a full disk or a quota would, instead of killing it. Nothing in
/// the tests limits this process, so here the change does nothing.
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to "ignore" installs no handler.
    let previous = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    assert_ne!(previous, libc::SIG_ERR, "ignore SIGXFSZ");
}

/// Limits the size of the files process `pid` writes to `bytes` (`RLIMIT_FSIZE`, soft limit):
/// from then on its writes at or past that offset fail.
fn limit_file_size(pid: u32, bytes: u64) {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls with valid pointers to local structs.
    unsafe {
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut old),
            0,
            "read the file-size limit: {}",
            std::io::Error::last_os_error()
        );
        let new = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: old.rlim_max,
        };
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_FSIZE, &new, std::ptr::null_mut()),
            0,
            "set the file-size limit: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The store fails from outside, as on a full disk: the database file can no longer be written.
/// Every write is refused (`503 store_unavailable`), and `/healthz` must say so.
#[tokio::test]
async fn healthz_is_503_degraded_when_the_store_fails() {
    ignore_file_size_signal();
    let data = tempfile::tempdir().expect("temp dir");
    let mut server = Process::serve(data.path(), "");
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let health = || async {
        let res = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz answers");
        let status = res.status();
        (status, res.json::<Value>().await.expect("healthz is JSON"))
    };
    let new_guest = || async {
        let res = client
            .post(format!("{base}/api/v1/guest"))
            .header("x-rm-csrf", "1")
            .send()
            .await
            .expect("guest answers");
        let status = res.status();
        (status, res.json::<Value>().await.expect("JSON"))
    };

    // Healthy: a write goes through and /healthz is ok.
    let (status, body) = new_guest().await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = health().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["store"]["status"], "ok", "{body}");

    // From now on the database file cannot be written.
    limit_file_size(server.pid(), 0);
    for _ in 0..2 {
        let (status, body) = new_guest().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    }
    for _ in 0..2 {
        assert!(
            server.wait_for_line("store failure").is_some(),
            "the failures are logged"
        );
    }

    let (status, body) = health().await;
    let log = server.log.join("\n");
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "every write fails, yet /healthz says: {body}\nlog:\n{log}"
    );
    assert_eq!(body["status"], "degraded", "{body}");
    assert_ne!(body["store"]["status"], "ok", "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Uploaded images: WebP and GIF, and exact sizes after scaling
// ---------------------------------------------------------------------------------------------

const RED: Rgba<u8> = Rgba([220, 20, 30, 255]);
const BLUE: Rgba<u8> = Rgba([20, 40, 210, 255]);

/// A `width`×`height` picture: red on the left half, blue on the right.
fn halves(width: u32, height: u32) -> RgbaImage {
    RgbaImage::from_fn(width, height, |x, _| if x < width / 2 { RED } else { BLUE })
}

/// `picture` encoded as `format` (WebP lossless, GIF, PNG or JPEG).
fn encode(picture: RgbaImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let image = if format == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(picture).to_rgb8())
    } else {
        DynamicImage::ImageRgba8(picture)
    };
    image.write_to(&mut out, format).expect("encode the image");
    let bytes = out.into_inner();
    assert_eq!(
        image::guess_format(&bytes).expect("a known format"),
        format,
        "the upload really is {format:?}"
    );
    bytes
}

/// Uploads `bytes` to `/api/v1/me/avatar` or `/api/v1/me/room/cover`; returns the URL answered.
async fn upload(server: &TestServer, token: &str, cover: bool, bytes: Vec<u8>) -> String {
    let (path, field) = if cover {
        ("/api/v1/me/room/cover", "cover_url")
    } else {
        ("/api/v1/me/avatar", "avatar_url")
    };
    let reply = put_bytes(server, path, bytes, token)
        .await
        .expect(StatusCode::OK)
        .json();
    let url = reply[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field}: {reply}"))
        .to_owned();
    let folder = if cover {
        "/files/covers/"
    } else {
        "/files/avatars/"
    };
    assert!(url.starts_with(folder), "{url}");
    // The profile or room now points at it.
    let (record, field_path) = if cover {
        ("/api/v1/me/room", "cover_url")
    } else {
        ("/api/v1/me", "avatar_url")
    };
    let stored = get_auth(server, record, token).await.json();
    assert_eq!(stored[field_path], url.as_str(), "{stored}");
    url
}

/// Fetches a stored image; checks its content type matches its format; returns it decoded.
async fn stored_image(server: &TestServer, url: &str, format: ImageFormat) -> DynamicImage {
    let (reply, bytes) = get_bytes(server, url, None).await;
    let reply = reply.expect(StatusCode::OK);
    let content_type = match format {
        ImageFormat::Png => "image/png",
        ImageFormat::Jpeg => "image/jpeg",
        other => panic!("images are never stored as {other:?}"),
    };
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some(content_type),
        "{url}"
    );
    let extension = if format == ImageFormat::Png {
        ".png"
    } else {
        ".jpg"
    };
    assert!(url.ends_with(extension), "{url}");
    assert_eq!(
        image::guess_format(&bytes).expect("a known format"),
        format,
        "{url}"
    );
    image::load_from_memory_with_format(&bytes, format).expect("the stored image decodes")
}

/// The stored picture is the uploaded one: red on the left, blue on the right.
#[track_caller]
fn assert_halves(image: &DynamicImage) {
    let rgba = image.to_rgba8();
    let (w, h) = rgba.dimensions();
    let near = |p: &Rgba<u8>, q: Rgba<u8>| p.0.iter().zip(q.0).all(|(a, b)| a.abs_diff(b) < 40);
    let left = rgba.get_pixel(w / 8, h / 2);
    let right = rgba.get_pixel(w - 1 - w / 8, h / 2);
    assert!(near(left, RED), "left is red: {left:?}");
    assert!(near(right, BLUE), "right is blue: {right:?}");
}

#[tokio::test]
async fn webp_and_gif_avatars_and_covers_are_accepted_and_stored_as_png() {
    let server = TestServer::start_with(relaxed).await;
    let (_, token) = verified_user(&server, "webpgif").await;

    // (cover?, format, uploaded size, stored size)
    let cases = [
        (false, ImageFormat::WebP, (64, 48), (64, 48)),
        (false, ImageFormat::WebP, (1024, 512), (512, 256)),
        (false, ImageFormat::Gif, (100, 60), (100, 60)),
        (false, ImageFormat::Gif, (800, 1600), (256, 512)),
        (true, ImageFormat::WebP, (320, 180), (320, 180)),
        (true, ImageFormat::WebP, (1920, 1080), (1280, 720)),
        (true, ImageFormat::Gif, (400, 300), (400, 300)),
        (true, ImageFormat::Gif, (1600, 1600), (720, 720)),
    ];
    for (cover, format, (w, h), stored) in cases {
        let url = upload(&server, &token, cover, encode(halves(w, h), format)).await;
        let image = stored_image(&server, &url, ImageFormat::Png).await;
        assert_eq!(
            (image.width(), image.height()),
            stored,
            "{format:?} {w}×{h} as {}",
            if cover { "cover" } else { "avatar" }
        );
        assert_halves(&image);
    }
}

#[tokio::test]
async fn images_over_the_limit_are_scaled_to_exactly_fit_the_box() {
    let server = TestServer::start_with(relaxed).await;
    let (_, token) = verified_user(&server, "scaler").await;

    // Avatars fit in 512×512 and covers in 1280×720, keeping the aspect ratio; JPEG stays JPEG,
    // everything else becomes PNG.
    let cases = [
        (false, ImageFormat::Png, (1024, 1024), (512, 512)),
        (false, ImageFormat::Png, (2000, 1000), (512, 256)),
        (false, ImageFormat::Png, (600, 1200), (256, 512)),
        (false, ImageFormat::Png, (513, 513), (512, 512)),
        (false, ImageFormat::Png, (512, 512), (512, 512)),
        (false, ImageFormat::Jpeg, (1024, 768), (512, 384)),
        (true, ImageFormat::Png, (2560, 1440), (1280, 720)),
        (true, ImageFormat::Png, (1600, 400), (1280, 320)),
        (true, ImageFormat::Png, (1440, 1080), (960, 720)),
        (true, ImageFormat::Png, (1000, 1000), (720, 720)),
        (true, ImageFormat::Png, (1280, 720), (1280, 720)),
        (true, ImageFormat::Jpeg, (1920, 1080), (1280, 720)),
    ];
    for (cover, format, (w, h), stored) in cases {
        let url = upload(&server, &token, cover, encode(halves(w, h), format)).await;
        let kept = if format == ImageFormat::Jpeg {
            ImageFormat::Jpeg
        } else {
            ImageFormat::Png
        };
        let image = stored_image(&server, &url, kept).await;
        assert_eq!(
            (image.width(), image.height()),
            stored,
            "{format:?} {w}×{h} as {}",
            if cover { "cover" } else { "avatar" }
        );
        assert_halves(&image);
    }
}

// ---------------------------------------------------------------------------------------------
// The live directory's order
// ---------------------------------------------------------------------------------------------

/// A guest watching `room`.
async fn viewer(site: &Site, room: u64) -> WsClient {
    let mut client = site.ws(&site.guest().await).await;
    client
        .send(json!({"type": "join_room", "room_id": room}))
        .await;
    let info = client.expect("room_info").await;
    assert_eq!(info["room_id"], room, "{info}");
    client
}

/// Polls `GET /api/v1/rooms` until it lists exactly `expected` as (room id, audience), in order.
async fn directory_becomes(site: &Site, expected: &[(u64, u64)]) -> Vec<Value> {
    let last = std::sync::Mutex::new(Vec::new());
    wait_for(|| async {
        let rooms = site.live_rooms().await;
        let seen: Vec<(u64, u64)> = rooms
            .iter()
            .map(|r| {
                (
                    r["room_id"].as_u64().expect("room_id"),
                    r["audience"].as_u64().expect("audience"),
                )
            })
            .collect();
        let mut last = last.lock().expect("not poisoned");
        if *last != seen {
            eprintln!("directory: {seen:?} (waiting for {expected:?})");
            *last = seen.clone();
        }
        (seen == expected).then_some(rooms)
    })
    .await
}

#[tokio::test]
async fn the_directory_lists_live_rooms_most_watched_first_ties_by_room_id() {
    let site = Site::start().await;
    let server = &site.server;
    // Four hosts; their rooms in room-id order.
    let mut hosts = Vec::new();
    for name in ["dirhost1", "dirhost2", "dirhost3", "dirhost4"] {
        let (_, token) = site.user(name).await;
        let room = get_auth(server, "/api/v1/me/room", &token)
            .await
            .expect(StatusCode::OK)
            .json()["room_id"]
            .as_u64()
            .expect("room_id");
        hosts.push((room, token));
    }
    hosts.sort_by_key(|(room, _)| *room);
    let rooms: Vec<u64> = hosts.iter().map(|(room, _)| *room).collect();

    // They go live in reverse room-id order, so the start order is not the id order.
    let mut host_links = Vec::new();
    for (room, token) in hosts.iter().rev() {
        let mut host = site.ws(token).await;
        host.send(json!({"type": "start_live", "title": format!("room {room}")}))
            .await;
        let started = host.expect("live_started").await;
        assert_eq!(started["room_id"], *room, "{started}");
        host_links.push(host);
    }
    // A fifth room is open (its host is in it) but not live: it is not listed.
    let (_, idle_token) = site.user("dirhost5").await;
    let idle_room = get_auth(server, "/api/v1/me/room", &idle_token)
        .await
        .json()["room_id"]
        .as_u64()
        .expect("room_id");
    let mut idle_host = site.ws(&idle_token).await;
    idle_host
        .send(json!({"type": "join_room", "room_id": idle_room}))
        .await;
    assert_eq!(idle_host.expect("room_info").await["state"], "idle");
    let mut idle_viewers = Vec::new();
    for _ in 0..3 {
        idle_viewers.push(viewer(&site, idle_room).await);
    }

    // Audiences (the host counts): rooms[1] 3, rooms[3] 2, rooms[2] 2, rooms[0] 1. The later
    // room of the tie gets its viewer first.
    let mut viewers = Vec::new();
    viewers.push(viewer(&site, rooms[3]).await);
    viewers.push(viewer(&site, rooms[2]).await);
    let leaving = vec![viewer(&site, rooms[1]).await, viewer(&site, rooms[1]).await];
    let listed = directory_becomes(
        &site,
        &[(rooms[1], 3), (rooms[2], 2), (rooms[3], 2), (rooms[0], 1)],
    )
    .await;
    for room in &listed {
        assert_eq!(room["state"], "live", "{room}");
        assert!(room["started_at"].as_u64().is_some(), "{room}");
        assert_ne!(room["room_id"], idle_room, "{room}");
    }

    // The most watched room loses its viewers: it falls behind the room with the lower id.
    drop(leaving);
    directory_becomes(
        &site,
        &[(rooms[2], 2), (rooms[3], 2), (rooms[0], 1), (rooms[1], 1)],
    )
    .await;

    // The least watched one gains three: it leads.
    for _ in 0..3 {
        viewers.push(viewer(&site, rooms[0]).await);
    }
    directory_becomes(
        &site,
        &[(rooms[0], 4), (rooms[2], 2), (rooms[3], 2), (rooms[1], 1)],
    )
    .await;
    drop(idle_viewers);
    drop(viewers);
    drop(host_links);
}
