//! Image uploads under abuse: decompression bombs against the real binary (its memory read from
//! /proc), the bound on decodes at once, and parallel uploads that must leave exactly one file.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::accounts::{
    get_auth, outbox_texts, put_bytes, relaxed, send, verified_user, Reply, PASSWORD,
};
use crate::accounts_profile::png;
use crate::common::smtp::find_verify_link;
use crate::common::{wait_for, Process, TestServer};

const GIB: u64 = 1024 * 1024 * 1024;

/// A lossless WebP of one colour: a few KB on the wire, `side`² × 4 bytes once decoded. (The
/// image crate's encoder makes 30 KB of 8192×8192; libwebp's `cwebp -z 9` makes 2.6 KB.)
fn single_colour_webp(side: u32) -> Vec<u8> {
    let picture = RgbaImage::from_pixel(side, side, Rgba([200, 30, 60, 255]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(picture)
        .write_to(&mut out, ImageFormat::WebP)
        .expect("encode the WebP");
    let bytes = out.into_inner();
    assert_eq!(image::guess_format(&bytes).ok(), Some(ImageFormat::WebP));
    bytes
}

/// A field of /proc/PID/status in bytes (`VmHWM`: the peak resident size; `VmRSS`: now).
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a number of kB in {line:?}"));
    kib * 1024
}

/// Registers `name` on a server run as the real binary, clicks the emailed link and logs in;
/// returns the session token.
async fn binary_user(client: &reqwest::Client, base: &str, data: &Path, name: &str) -> String {
    let email = format!("{name}@example.com");
    let body = json!({"username": name, "password": PASSWORD, "email": email});
    send(client.post(format!("{base}/api/v1/register")).json(&body))
        .await
        .expect(StatusCode::CREATED);
    let link = wait_for(|| {
        let texts = outbox_texts(data, &email);
        async move { texts.first().and_then(|t| find_verify_link(t)) }
    })
    .await;
    let path = &link[link.find("/verify?").expect("a verification link")..];
    send(client.get(format!("{base}{path}")))
        .await
        .expect(StatusCode::OK);
    let login = json!({"login": name, "password": PASSWORD});
    send(client.post(format!("{base}/api/v1/login")).json(&login))
        .await
        .expect(StatusCode::OK)
        .json()["token"]
        .as_str()
        .expect("a token in the login answer")
        .to_owned()
}

/// Sends one PUT to `url` per body, all at once; returns every answer.
async fn parallel_puts(
    client: &reqwest::Client,
    url: String,
    token: &str,
    bodies: Vec<Vec<u8>>,
) -> Vec<Reply> {
    let mut puts = JoinSet::new();
    for body in bodies {
        let request = client.put(&url).bearer_auth(token).body(body);
        puts.spawn(send(request));
    }
    puts.join_all().await
}

/// An answer to an upload under load: stored, or refused with a code a client can act on.
#[track_caller]
fn stored_or_clearly_refused(reply: &Reply) -> bool {
    match reply.status {
        StatusCode::OK => true,
        StatusCode::PAYLOAD_TOO_LARGE => {
            assert_eq!(reply.code(), "image_too_large", "{}", reply.text);
            false
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            assert_eq!(reply.code(), "server_busy", "{}", reply.text);
            let retry: u64 = reply
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("a Retry-After in seconds: {:?}", reply.headers));
            assert!(retry >= 1, "{retry}");
            false
        }
        other => panic!("neither stored nor clearly refused: {other} {}", reply.text),
    }
}

/// The names of the files in `DATA_DIR/files/{folder}`, partial writes included.
fn stored_files(data: &Path, folder: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("files").join(folder))
        .expect("the upload folder exists")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// The stored name at the end of an image URL (`/files/covers/NAME`).
fn name_of(url: &Value) -> String {
    let url = url
        .as_str()
        .unwrap_or_else(|| panic!("an image URL: {url}"));
    url.rsplit('/').next().expect("a last segment").to_owned()
}

#[tokio::test]
async fn twelve_image_bombs_at_once_leave_the_real_server_small_and_serving() {
    let bomb = single_colour_webp(8192);
    // 256 MiB of pixels from at most 32 KiB: over 8,000 times its size.
    assert!(
        bomb.len() <= 32 * 1024,
        "an 8192×8192 bomb of {} bytes is not tiny",
        bomb.len()
    );
    let data = tempfile::tempdir().expect("temp dir");
    let server = Process::serve(data.path(), "");
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let attacker = binary_user(&client, &base, data.path(), "mallory").await;
    let neighbour = binary_user(&client, &base, data.path(), "nadia").await;
    let before = status_bytes(server.pid(), "VmHWM");

    let url = format!("{base}/api/v1/me/avatar");
    let answers = parallel_puts(&client, url.clone(), &attacker, vec![bomb; 12]).await;
    for reply in &answers {
        assert!(!stored_or_clearly_refused(reply), "a bomb was stored");
        if reply.status == StatusCode::PAYLOAD_TOO_LARGE {
            assert!(reply.text.contains("8192×8192"), "{}", reply.text);
        }
    }

    let peak = status_bytes(server.pid(), "VmHWM");
    let now = status_bytes(server.pid(), "VmRSS");
    eprintln!(
        "image bombs: peak RSS {} MiB (before {} MiB), now {} MiB",
        peak >> 20,
        before >> 20,
        now >> 20
    );
    assert!(peak < GIB, "peak RSS {peak} bytes");

    let stored = send(client.put(&url).bearer_auth(&neighbour).body(png(600, 300)))
        .await
        .expect(StatusCode::OK)
        .json();
    let image = send(client.get(format!(
        "{base}{}",
        stored["avatar_url"].as_str().expect("avatar_url")
    )))
    .await
    .expect(StatusCode::OK);
    assert_eq!(image.header("content-type").as_deref(), Some("image/png"));
    let me = send(
        client
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(&attacker),
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert!(me["avatar_url"].is_null(), "{me}");
}

#[tokio::test]
async fn twelve_of_the_largest_allowed_images_at_once_are_decoded_two_at_a_time() {
    // 4096×4096 is the most pixels accepted: each decodes to 64 MiB, so this is the most memory
    // uploads can make the server use. Two slots, as on a two-core machine, so the bound is the
    // same wherever the test runs.
    let largest = single_colour_webp(4096);
    assert!(largest.len() <= 8 * 1024, "{} bytes", largest.len());
    let data = tempfile::tempdir().expect("temp dir");
    let server = Process::serve(data.path(), "[uploads]\ndecode_slots = 2\n");
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let uploader = binary_user(&client, &base, data.path(), "olga").await;
    let neighbour = binary_user(&client, &base, data.path(), "pavel").await;

    let url = format!("{base}/api/v1/me/avatar");
    let answers = parallel_puts(&client, url.clone(), &uploader, vec![largest; 12]).await;
    let stored = answers
        .iter()
        .filter(|r| stored_or_clearly_refused(r))
        .count();
    // Slots are free when the first uploads arrive, so they are decoded, not refused.
    assert!(stored >= 1, "none of the 12 was stored");

    let peak = status_bytes(server.pid(), "VmHWM");
    eprintln!(
        "largest allowed images: {stored} of 12 stored, peak RSS {} MiB",
        peak >> 20
    );
    assert!(peak < GIB, "peak RSS {peak} bytes");

    let me = send(
        client
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(&uploader),
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_eq!(
        stored_files(data.path(), "avatars"),
        vec![name_of(&me["avatar_url"])],
        "one file, the one the profile points at"
    );
    send(client.put(&url).bearer_auth(&neighbour).body(png(64, 64)))
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn with_every_decode_slot_taken_an_upload_gets_503_and_retry_after() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.uploads.decode_slots = 1;
        c.uploads.decode_wait_ms = 200;
    })
    .await;
    let (_, token) = verified_user(&server, "quinn").await;
    let held = server
        .app()
        .files
        .decode_slot()
        .await
        .expect("the only slot is free");

    let refused = put_bytes(&server, "/api/v1/me/avatar", png(40, 40), &token)
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "server_busy");
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    let me = get_auth(&server, "/api/v1/me", &token).await.json();
    assert!(me["avatar_url"].is_null(), "{me}");
    assert!(stored_files(server.data.path(), "avatars").is_empty());

    drop(held);
    put_bytes(&server, "/api/v1/me/avatar", png(40, 40), &token)
        .await
        .expect(StatusCode::OK);
}

/// Uploads one image, then eight different ones at once, to `path`; returns the server and the
/// user's token once all are answered.
async fn eight_at_once(path: &str, username: &str) -> (TestServer, String) {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        // Every upload waits for its turn: this test is about files, not about the busy answer.
        c.uploads.decode_wait_ms = 60_000;
    })
    .await;
    let (_, token) = verified_user(&server, username).await;
    put_bytes(&server, path, png(20, 20), &token)
        .await
        .expect(StatusCode::OK);
    let bodies = (0..8).map(|i| png(30 + i, 30)).collect();
    let answers = parallel_puts(&server.client, server.url(path), &token, bodies).await;
    for reply in answers {
        reply.expect(StatusCode::OK);
    }
    (server, token)
}

#[tokio::test]
async fn eight_covers_at_once_leave_one_file_the_one_the_room_shows() {
    let (server, token) = eight_at_once("/api/v1/me/room/cover", "rosa").await;
    let room = get_auth(&server, "/api/v1/me/room", &token).await.json();
    assert_eq!(
        stored_files(server.data.path(), "covers"),
        vec![name_of(&room["cover_url"])],
        "{room}"
    );
    send(
        server
            .client
            .get(server.url(room["cover_url"].as_str().expect("cover_url"))),
    )
    .await
    .expect(StatusCode::OK);
}

#[tokio::test]
async fn eight_avatars_at_once_leave_one_file_the_one_the_profile_shows() {
    let (server, token) = eight_at_once("/api/v1/me/avatar", "sven").await;
    let me = get_auth(&server, "/api/v1/me", &token).await.json();
    assert_eq!(
        stored_files(server.data.path(), "avatars"),
        vec![name_of(&me["avatar_url"])],
        "{me}"
    );
}

/// A held decode slot is let go when its upload is refused, so refusals never leak slots.
#[tokio::test]
async fn refused_uploads_give_their_slot_back() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.uploads.decode_slots = 1;
        c.uploads.decode_wait_ms = 0;
    })
    .await;
    let (_, token) = verified_user(&server, "tomas").await;
    // One pixel over the limit of 4096×4096.
    let too_large = single_colour_webp(4097);
    for _ in 0..3 {
        put_bytes(
            &server,
            "/api/v1/me/avatar",
            b"not an image".to_vec(),
            &token,
        )
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image");
        put_bytes(&server, "/api/v1/me/avatar", too_large.clone(), &token)
            .await
            .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large");
    }
    // With no wait configured, a slot still held would be refused at once.
    let slot = server.app().files.decode_slot().await;
    assert!(slot.is_ok(), "the only slot is free again");
    drop(slot);
    put_bytes(&server, "/api/v1/me/avatar", png(40, 40), &token)
        .await
        .expect(StatusCode::OK);
}
