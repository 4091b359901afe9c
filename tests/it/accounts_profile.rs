//! Accounts: the profile (nickname, avatar), the owner's room record and cover, and the files
//! they are served from.

use std::io::{Read, Write};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{get, get_auth, patch_json, put_bytes, relaxed, send, signed_in, Reply};
use crate::common::TestServer;

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
const METADATA: &str = "secret-metadata-from-the-camera";

// ----- a real PNG, built by hand -----------------------------------------------------------------

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend(kind);
    out.extend(data);
    let crc = crc32(&out[start..]);
    out.extend(crc.to_be_bytes());
}

/// A valid RGB PNG of `width`×`height` (a colour gradient), with a tEXt metadata chunk, its pixels
/// in a zlib stream of stored (uncompressed) deflate blocks.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend([x as u8, y as u8, (x ^ y) as u8]);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend(len.to_le_bytes());
        zlib.extend((!len).to_le_bytes());
        zlib.extend(*block);
    }
    zlib.extend(adler32(&raw).to_be_bytes());

    let mut out = PNG_SIGNATURE.to_vec();
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"tEXt", format!("Comment\0{METADATA}").as_bytes());
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Width and height from a PNG's IHDR, after checking the signature.
#[track_caller]
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24,
        "too short for a PNG: {} bytes",
        bytes.len()
    );
    assert_eq!(bytes[..8], PNG_SIGNATURE, "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    (word(16), word(20))
}

#[test]
fn the_hand_built_png_decodes() {
    let image = image::load_from_memory(&png(300, 200)).expect("a valid PNG");
    assert_eq!((image.width(), image.height()), (300, 200));
}

// ----- helpers ---------------------------------------------------------------------------------

async fn relaxed_server() -> TestServer {
    TestServer::start_with(relaxed).await
}

/// Fetches an uploaded image; checks the file headers and returns the bytes.
async fn fetch_image(server: &TestServer, url: &str, content_type: &str) -> Vec<u8> {
    let res = server
        .client
        .get(server.url(url))
        .send()
        .await
        .expect("GET image");
    assert_eq!(res.status(), StatusCode::OK, "{url}");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().expect("ASCII").to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), content_type, "{url}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{url}");
    let cache = header("cache-control");
    assert!(
        cache.contains("max-age=31536000") && cache.contains("immutable"),
        "{url}: {cache}"
    );
    res.bytes().await.expect("image bytes").to_vec()
}

/// A raw HTTP/1.1 GET with `path` sent exactly as written (no client-side normalisation).
async fn raw_get(server: &TestServer, path: &str) -> (u16, String) {
    let addr = server.base.trim_start_matches("http://").to_owned();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
        stream.write_all(request.as_bytes()).expect("send request");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read answer");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {answer:?}"));
        (status, answer)
    })
    .await
    .expect("raw GET task")
}

fn all_file_names(dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(entry.file_name().to_string_lossy().into_owned());
        if entry.path().is_dir() {
            all_file_names(&entry.path(), out);
        }
    }
}

// ----- profile -------------------------------------------------------------------------------

#[tokio::test]
async fn the_nickname_can_be_changed_within_the_rules() {
    let server = relaxed_server().await;
    let (token, user) = signed_in(&server, "alice").await;

    for nickname in ["Alice 🌸", "小明", "Zoë", "a", &"🌸".repeat(32), "مرحبا"] {
        let me = patch_json(
            &server,
            "/api/v1/me",
            &json!({ "nickname": nickname }),
            &token,
        )
        .await
        .expect(StatusCode::OK)
        .json();
        assert_eq!(me["nickname"], nickname);
        assert_eq!(me["user_id"], user["user_id"]);
        let again = get_auth(&server, "/api/v1/me", &token).await.json();
        assert_eq!(again["nickname"], nickname, "stored");
    }

    for nickname in [
        String::new(),
        "   ".to_owned(),
        "x".repeat(33),
        "🌸".repeat(33),
        "bell\u{7}".to_owned(),
        "new\nline".to_owned(),
        "nul\0".to_owned(),
        "esc\u{1b}[31m".to_owned(),
        "del\u{7f}".to_owned(),
    ] {
        let reply = patch_json(
            &server,
            "/api/v1/me",
            &json!({ "nickname": nickname }),
            &token,
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{nickname:?}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "invalid_nickname", "{nickname:?}");
    }
    for body in [json!({"nickname": 5}), json!({"nickname": ["a"]})] {
        let reply = patch_json(&server, "/api/v1/me", &body, &token).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "bad_json", "{body}");
    }
    // The refused changes left the last good one.
    let me = get_auth(&server, "/api/v1/me", &token).await.json();
    assert_eq!(me["nickname"], "مرحبا");
    // Without a session nothing changes.
    send(
        server
            .client
            .patch(server.url("/api/v1/me"))
            .json(&json!({"nickname": "x"})),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
}

#[tokio::test]
async fn a_png_avatar_is_scaled_stored_and_served() {
    let server = relaxed_server().await;
    let (token, _) = signed_in(&server, "bruno").await;

    let reply = put_bytes(&server, "/api/v1/me/avatar", png(600, 300), &token)
        .await
        .expect(StatusCode::OK);
    let url = reply.json()["avatar_url"]
        .as_str()
        .expect("avatar_url")
        .to_owned();
    assert!(
        url.starts_with("/files/avatars/") && url.ends_with(".png"),
        "{url}"
    );

    let bytes = fetch_image(&server, &url, "image/png").await;
    // Scaled to fit in 512×512, keeping the 2:1 aspect ratio.
    assert_eq!(png_size(&bytes), (512, 256), "scaled down to fit the box");
    let decoded = image::load_from_memory(&bytes).expect("the stored avatar decodes");
    assert_eq!((decoded.width(), decoded.height()), (512, 256));
    assert!(
        !String::from_utf8_lossy(&bytes).contains(METADATA),
        "metadata is dropped"
    );

    let me = get_auth(&server, "/api/v1/me", &token).await.json();
    assert_eq!(me["avatar_url"], url.as_str());

    // A new upload gets a new name (names are never reused).
    let second = put_bytes(&server, "/api/v1/me/avatar", png(40, 40), &token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_ne!(second["avatar_url"], url.as_str());
    let small = fetch_image(
        &server,
        second["avatar_url"].as_str().expect("url"),
        "image/png",
    )
    .await;
    assert_eq!(png_size(&small), (40, 40), "small images keep their size");
}

#[tokio::test]
async fn a_jpeg_avatar_is_stored_as_jpeg() {
    let server = relaxed_server().await;
    let (token, _) = signed_in(&server, "carla").await;
    let picture =
        image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(picture)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .expect("encode JPEG");
    let url = put_bytes(&server, "/api/v1/me/avatar", jpeg, &token)
        .await
        .expect(StatusCode::OK)
        .json()["avatar_url"]
        .as_str()
        .expect("avatar_url")
        .to_owned();
    let bytes = fetch_image(&server, &url, "image/jpeg").await;
    assert_eq!(bytes[..3], [0xff, 0xd8, 0xff], "JPEG signature");
    let decoded = image::load_from_memory(&bytes).expect("decodes");
    assert_eq!((decoded.width(), decoded.height()), (64, 48));
}

#[tokio::test]
async fn uploads_that_are_not_images_are_refused() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.uploads.max_image_bytes = 64 * 1024;
    })
    .await;
    let (token, _) = signed_in(&server, "dario").await;
    let avatar = "/api/v1/me/avatar";

    // A text file renamed .png: the name and the declared type do not matter, the bytes do.
    let text_file = send(
        server
            .client
            .put(server.url(avatar))
            .bearer_auth(&token)
            .header("content-type", "image/png")
            .header("content-disposition", "attachment; filename=\"notes.png\"")
            .body("These are my notes, not a picture.\n".repeat(20)),
    )
    .await;
    text_file.expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image");

    // A PNG signature followed by garbage.
    let mut fake = PNG_SIGNATURE.to_vec();
    fake.extend((0..2000u32).map(|i| (i * 7 % 251) as u8));
    put_bytes(&server, avatar, fake, &token)
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image");

    // A real PNG cut short.
    let mut truncated = png(64, 64);
    truncated.truncate(truncated.len() / 2);
    put_bytes(&server, avatar, truncated, &token)
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image");

    // Other formats are not accepted: SVG (XML that can carry scripts).
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec();
    put_bytes(&server, avatar, svg, &token)
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image");

    // An image absurdly large in pixels (a tiny file claiming 100000×100000).
    put_bytes(&server, avatar, absurd_png(), &token)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large");

    // Over uploads.max_image_bytes: a valid PNG of ~90 KB against a 64 KiB limit.
    let big = png(150, 200);
    assert!(big.len() > 64 * 1024);
    put_bytes(&server, avatar, big, &token)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    put_bytes(&server, avatar, Vec::new(), &token)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "empty_upload");

    // Nothing was stored.
    let me = get_auth(&server, "/api/v1/me", &token).await.json();
    assert!(me["avatar_url"].is_null(), "{me}");
}

/// A PNG whose header claims 100000×100000 pixels, with one tiny IDAT.
fn absurd_png() -> Vec<u8> {
    let mut out = PNG_SIGNATURE.to_vec();
    let mut header = Vec::new();
    header.extend(100_000u32.to_be_bytes());
    header.extend(100_000u32.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

#[tokio::test]
async fn the_stored_file_name_is_generated_by_the_server() {
    let server = relaxed_server().await;
    let (token, _) = signed_in(&server, "elena").await;
    let reply = send(
        server
            .client
            .put(server.url("/api/v1/me/avatar"))
            .bearer_auth(&token)
            .header("content-type", "image/png")
            .header(
                "content-disposition",
                "attachment; filename=\"../../evil.png\"",
            )
            .body(png(32, 32)),
    )
    .await
    .expect(StatusCode::OK);
    let url = reply.json()["avatar_url"]
        .as_str()
        .expect("avatar_url")
        .to_owned();
    let name = url
        .strip_prefix("/files/avatars/")
        .expect("under /files/avatars/");
    assert!(!url.contains("evil") && !name.contains(".."), "{url}");
    assert!(
        !name.contains('/') && !name.contains('\\') && !name.contains('%'),
        "{url}"
    );
    let stored = fetch_image(&server, &url, "image/png").await;
    assert_eq!(
        png_size(&stored),
        (32, 32),
        "the uploaded picture, unscaled"
    );

    let mut names = Vec::new();
    all_file_names(server.data.path(), &mut names);
    if let Some(parent) = server.data.path().parent() {
        assert!(!parent.join("evil.png").exists());
    }
    assert!(!names.iter().any(|n| n.contains("evil")), "{names:?}");
}

#[tokio::test]
async fn path_tricks_under_files_find_nothing() {
    let server = relaxed_server().await;
    let (token, _) = signed_in(&server, "fabio").await;
    put_bytes(&server, "/api/v1/me/avatar", png(16, 16), &token)
        .await
        .expect(StatusCode::OK);
    let secret = "TOP-SECRET-CONTENT";
    std::fs::write(server.data.path().join("secret.txt"), secret).expect("write secret");

    let mut paths = vec![
        "/files/avatars/..%2f..%2fCargo.toml".to_owned(),
        "/files/avatars/%2e%2e/x".to_owned(),
        "/files/avatars/%2e%2e%2fsecret.txt".to_owned(),
        "/files/../Cargo.toml".to_owned(),
        "/files/avatars/../../Cargo.toml".to_owned(),
        "/files/avatars/%2fetc%2fpasswd".to_owned(),
        "/files/avatars//etc/passwd".to_owned(),
        "/files/avatars/..%5c..%5csecret.txt".to_owned(),
        "/files/avatars/".to_owned(),
        "/files/avatars/nope.png".to_owned(),
        "/files/secret.txt".to_owned(),
        "/files/covers/..%2fsecret.txt".to_owned(),
        "/files/avatars/%00.png".to_owned(),
    ];
    for depth in 1..=4 {
        let up = "..%2f".repeat(depth);
        paths.push(format!("/files/avatars/{up}secret.txt"));
        paths.push(format!("/files/avatars/{up}roommanager.redb"));
        paths.push(format!("/files/covers/{up}secret.txt"));
    }
    for path in &paths {
        let (status, answer) = raw_get(&server, path).await;
        assert_eq!(status, 404, "{path}: {answer}");
        assert!(
            !answer.contains(secret) && !answer.contains("[package]") && !answer.contains("root:"),
            "{path} leaks a file: {answer}"
        );
    }
    // Through an ordinary client too.
    let reply = get(&server, "/files/avatars/..%2f..%2fCargo.toml").await;
    reply.expect_error(StatusCode::NOT_FOUND, "not_found");
}

// ----- the room record ---------------------------------------------------------------------------

#[tokio::test]
async fn the_owner_reads_and_changes_the_room() {
    let server = relaxed_server().await;
    let (token, user) = signed_in(&server, "gino").await;
    let room = get_auth(&server, "/api/v1/me/room", &token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(room["room_id"], user["room_id"], "{room}");
    assert_eq!(room["owner_id"], user["user_id"], "{room}");
    assert!(
        room["name"].as_str().is_some_and(|n| !n.is_empty()),
        "{room}"
    );
    assert_eq!(room["description"], "");
    assert!(room["cover_url"].is_null(), "{room}");

    let changed = patch_json(
        &server,
        "/api/v1/me/room",
        &json!({"name": "Friday jam 🎸", "description": "Live music\nfrom the lab"}),
        &token,
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_eq!(changed["name"], "Friday jam 🎸");
    assert_eq!(changed["description"], "Live music\nfrom the lab");
    assert_eq!(changed["room_id"], room["room_id"]);

    // Both fields are optional: one changes, the other stays.
    let renamed = patch_json(
        &server,
        "/api/v1/me/room",
        &json!({"name": "Saturday"}),
        &token,
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_eq!(renamed["description"], "Live music\nfrom the lab");
    let described = patch_json(
        &server,
        "/api/v1/me/room",
        &json!({"description": ""}),
        &token,
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_eq!(described["name"], "Saturday");
    assert_eq!(described["description"], "");
    patch_json(
        &server,
        "/api/v1/me/room",
        &json!({"name": "x".repeat(64)}),
        &token,
    )
    .await
    .expect(StatusCode::OK);
    patch_json(
        &server,
        "/api/v1/me/room",
        &json!({"description": "d".repeat(1000)}),
        &token,
    )
    .await
    .expect(StatusCode::OK);

    let bad: [(Value, &str); 8] = [
        (json!({"name": ""}), "invalid_room_name"),
        (json!({"name": "n".repeat(65)}), "invalid_room_name"),
        (json!({"name": "two\nlines"}), "invalid_room_name"),
        (json!({"name": "bell\u{7}"}), "invalid_room_name"),
        (
            json!({"description": "d".repeat(1001)}),
            "invalid_description",
        ),
        (json!({"description": "esc\u{1b}"}), "invalid_description"),
        (json!({"description": "nul\0"}), "invalid_description"),
        (json!({"name": 3}), "bad_json"),
    ];
    for (body, code) in bad {
        let reply = patch_json(&server, "/api/v1/me/room", &body, &token).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), code, "{body}");
    }
    let stored = get_auth(&server, "/api/v1/me/room", &token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(stored["name"], "x".repeat(64));
    assert_eq!(stored["description"], "d".repeat(1000));
}

#[tokio::test]
async fn a_room_cover_is_scaled_stored_and_served() {
    let server = relaxed_server().await;
    let (token, _) = signed_in(&server, "hana").await;
    let reply: Reply = put_bytes(&server, "/api/v1/me/room/cover", png(1600, 400), &token)
        .await
        .expect(StatusCode::OK);
    let url = reply.json()["cover_url"]
        .as_str()
        .expect("cover_url")
        .to_owned();
    assert!(url.starts_with("/files/covers/"), "{url}");
    let bytes = fetch_image(&server, &url, "image/png").await;
    // Scaled to fit in 1280×720, keeping the 4:1 aspect ratio: the width is the limit.
    assert_eq!(png_size(&bytes), (1280, 320), "scaled down to fit the box");
    let decoded = image::load_from_memory(&bytes).expect("the stored cover decodes");
    assert_eq!((decoded.width(), decoded.height()), (1280, 320));
    assert!(
        !String::from_utf8_lossy(&bytes).contains(METADATA),
        "metadata is dropped"
    );

    let room = get_auth(&server, "/api/v1/me/room", &token).await.json();
    assert_eq!(room["cover_url"], url.as_str());

    put_bytes(
        &server,
        "/api/v1/me/room/cover",
        b"not an image at all".to_vec(),
        &token,
    )
    .await
    .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image");
    let room = get_auth(&server, "/api/v1/me/room", &token).await.json();
    assert_eq!(
        room["cover_url"],
        url.as_str(),
        "a refused upload changes nothing"
    );
}
