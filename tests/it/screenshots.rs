//! The site's main pages as a person sees them, in headless Chromium against the real server
//! with the real media plane (managed nginx-rtmp; the host's picture is an ffmpeg `testsrc2`
//! push): home, the live room with its picture playing and danmaku flying over it (desktop and
//! phone), the host console, the recordings, a replay and the admin dashboard, in English and in
//! Chinese (switched by the footer's link).
//! Every run checks what the pages show: each page loaded with a title, its controls named
//! (labels, button text), no CSP violation, the phone's room page with the video above the chat
//! and no sideways scrolling, visible focus rings, and the dark scheme when the system asks for
//! it. With `RM_SCREENSHOTS=docs/screenshots` it also writes the PNGs that docs/SCREENSHOTS.md
//! lists (unset in CI, so the committed files stay as they are).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use roommanager::store::unix_now;
use serde_json::json;

use crate::accounts::{get_auth, post_json, relaxed, verified_user};
use crate::admin::make_admin;
use crate::browser_admin::log_in_admin;
use crate::browser_room::{log_in, send_danmaku, wait_for_line, wait_js, wait_js_within};
use crate::common::webdriver::{self, Browser};
use crate::common::TestServer;
use crate::http_docs::put_recording;
use crate::media_rtmp::{media_tools_present, push_key, push_picture};
use crate::records::{list_recording, Media};

const HOST: &str = "meilin";
const VIEWER: &str = "leo_w";
const TITLE: &str = "Friday jam 星期五";
/// Typed through WebDriver, so only characters of the Basic Multilingual Plane (no emoji).
const DANMAKU: [&str; 6] = [
    "Hello from Shanghai 你好",
    "这首歌太好听了",
    "What a view!",
    "再来一首 encore",
    "666",
    "Good evening everyone",
];
const LANGS: [&str; 2] = ["en", "zh-CN"];
/// The host's picture: colour bars, a moving gradient and a clock, at 30 fps.
const PICTURE: &str = "testsrc2=size=960x540:rate=30";
/// The replay's length: a real recording of [`PICTURE`].
const REPLAY_SECS: u64 = 30;
const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

#[tokio::test]
async fn the_main_pages_in_both_languages_on_a_desktop_and_a_phone() {
    if !webdriver::available() || !media_tools_present() {
        return;
    }
    let server = &TestServer::start_with(|c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
        c.rooms.chat_per_window = 1000;
    })
    .await;
    make_admin(server, "root");
    let (host_id, host_token) = verified_user(server, HOST).await;
    let (_, viewer_token) = verified_user(server, VIEWER).await;
    let room = get_auth(server, "/api/v1/me/room", &host_token)
        .await
        .json()["room_id"]
        .as_u64()
        .expect("the host's room");
    let room_path = format!("/room/{room}");
    let push_url = push_key(server, &host_token, false).await["push_url"]
        .as_str()
        .expect("the host's push URL")
        .to_owned();
    let day = 24 * 3600;
    let now = unix_now();
    list_recording(
        server,
        host_id,
        "Street food tour",
        now - 3 * day,
        2710,
        None,
    );
    list_recording(server, host_id, "周末钢琴练习", now - 2 * day, 1520, None);
    let replay = list_recording(
        server,
        host_id,
        TITLE,
        now - day,
        REPLAY_SECS,
        Some(Media {
            stream: "replay",
            url: &put_recording(server, "replay", &replay_mp4()),
            thumbnail: None,
        }),
    )
    .id;
    for (text, at) in [("The solo at 0:12!", 12_000), ("太好听了，下周见", 21_000)] {
        let body = json!({"text": text, "position_ms": at});
        let path = format!("/api/v1/records/{replay}/comments");
        post_json(server, &path, &body, Some(&viewer_token))
            .await
            .expect(reqwest::StatusCode::CREATED);
    }

    let (host, viewer) = tokio::join!(Browser::start(), Browser::start());
    for browser in [&host, &viewer] {
        browser.set_viewport(DESKTOP.0, DESKTOP.1, false).await;
    }
    log_in(&host, server, HOST).await;
    log_in(&viewer, server, VIEWER).await;

    let mut problems = Vec::new();
    // The last pass's push, kept running for the admin dashboard's live room.
    let mut on_air = None;
    for lang in LANGS {
        for browser in [&host, &viewer] {
            browser.goto(&server.url(&format!("/lang/{lang}"))).await;
        }

        // The host goes live from the host console, which then shows where to push; an ffmpeg
        // pushes there as OBS would (until the pass ends: the room stays live after the last).
        host.goto(&server.url(&room_path)).await;
        let title = host.find("#live-title").await;
        host.type_text(&title, TITLE).await;
        let start = host.find("#start").await;
        host.click(&start).await;
        wait_js(
            &host,
            "return document.getElementById('push-key').textContent !== '' || null;",
            "the stream key on the host console",
        )
        .await;
        let mut pushing = push_picture(&push_url, 900, PICTURE, 440);
        wait_playing(&host).await;
        // The console from its heading down to the push server and key (the live picture has
        // its own shot).
        host.execute(
            "const c = document.querySelector('.host-console'); \
             window.scrollTo(0, c.getBoundingClientRect().top + window.scrollY - 16);",
        )
        .await;
        page_done(&host, lang, &format!("studio-{lang}"), &mut problems).await;

        viewer.goto(&server.url("/")).await;
        viewer
            .find(&format!("a.room-card[href='{room_path}']"))
            .await;
        wait_js(
            &viewer,
            "return document.querySelectorAll('.record-card').length >= 3 || null;",
            "three recordings on the home page",
        )
        .await;
        page_done(&viewer, lang, &format!("home-{lang}"), &mut problems).await;

        viewer.goto(&server.url(&room_path)).await;
        wait_playing(&viewer).await;
        fly_danmaku(&viewer, &DANMAKU).await;
        page_done(&viewer, lang, &format!("room-{lang}"), &mut problems).await;

        viewer.set_viewport(PHONE.0, PHONE.1, true).await;
        viewer.goto(&server.url(&room_path)).await;
        wait_playing(&viewer).await;
        fly_danmaku(&viewer, &DANMAKU[..3]).await;
        let layout = viewer
            .execute(
                "window.scrollTo(0, 0); \
                 const v = document.getElementById('player-box').getBoundingClientRect(); \
                 const c = document.querySelector('aside.chat').getBoundingClientRect(); \
                 return {videoBottom: v.bottom, chatTop: c.top, videoWidth: v.width, \
                         pageWidth: document.documentElement.scrollWidth};",
            )
            .await;
        let at = |key: &str| {
            layout[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} is a number: {layout}"))
        };
        assert!(
            at("videoBottom") <= at("chatTop"),
            "on a phone the video is above the chat: {layout}"
        );
        assert!(
            at("pageWidth") <= f64::from(PHONE.0),
            "nothing scrolls sideways on a phone: {layout}"
        );
        assert!(
            at("videoWidth") > f64::from(PHONE.0) * 0.9,
            "the video takes the phone's width: {layout}"
        );
        page_done(&viewer, lang, &format!("room-phone-{lang}"), &mut problems).await;
        viewer.set_viewport(DESKTOP.0, DESKTOP.1, false).await;

        viewer.goto(&server.url("/records")).await;
        wait_js(
            &viewer,
            "return document.querySelectorAll('.record-card').length >= 3 || null;",
            "three recordings on /records",
        )
        .await;
        page_done(&viewer, lang, &format!("records-{lang}"), &mut problems).await;

        viewer
            .goto(&server.url(&format!("/records/{replay}")))
            .await;
        wait_js(
            &viewer,
            "return document.querySelectorAll('#comments li').length >= 2 || null;",
            "the comments of the replay",
        )
        .await;
        viewer
            .execute(
                "const v = document.querySelector('#player'); \
                 v.muted = true; v.currentTime = 12; v.play();",
            )
            .await;
        // Played a moment, then paused: a paused video straight after a seek keeps the
        // browser's loading spinner over the picture.
        wait_js(
            &viewer,
            "const v = document.querySelector('#player'); \
             if (v.currentTime < 12.5) return null; v.pause(); return true;",
            "the replay playing from 0:12",
        )
        .await;
        page_done(&viewer, lang, &format!("replay-{lang}"), &mut problems).await;

        // Off the air until the next language's pass (the room stays live after the last one,
        // for the dashboard).
        if lang != LANGS[LANGS.len() - 1] {
            let stop = host.find("#stop").await;
            host.click(&stop).await;
            wait_js(
                &host,
                "return !document.getElementById('player').dataset.stream || null;",
                "the room off the air",
            )
            .await;
            let _ = pushing.kill().await;
        } else {
            on_air = Some(pushing);
        }
    }

    // The admin dashboard, seen by the viewer's browser logged in as an admin too (after the
    // room pages, which show an admin the moderation buttons).
    log_in_admin(&viewer, server, "root").await;
    for lang in LANGS {
        viewer.goto(&server.url(&format!("/lang/{lang}"))).await;
        viewer.goto(&server.url("/admin")).await;
        viewer.find("#live-rooms").await;
        assert_eq!(viewer.text("#live-rooms").await, "1", "one room is live");
        page_done(&viewer, lang, &format!("admin-{lang}"), &mut problems).await;
    }

    // Keyboard focus is visible: a focused field draws the focus ring.
    viewer.goto(&server.url("/records")).await;
    let search = viewer.find("input[name='q']").await;
    viewer.click(&search).await;
    let ring = viewer
        .execute(
            "const s = getComputedStyle(document.activeElement); \
             return [document.activeElement.name, s.outlineStyle, parseFloat(s.outlineWidth)];",
        )
        .await;
    assert_eq!(ring[0], "q", "{ring}");
    assert_ne!(ring[1], "none", "a focus ring: {ring}");
    assert!(
        ring[2].as_f64().is_some_and(|width| width >= 2.0),
        "a visible focus ring: {ring}"
    );

    // Light by default; dark when the system prefers it.
    let light = page_colours(&viewer).await;
    assert!(light.0 > 0.8 && light.1 < 0.2, "light page: {light:?}");
    viewer.prefer_color_scheme("dark").await;
    viewer.goto(&server.url("/")).await;
    viewer
        .find(&format!("a.room-card[href='{room_path}']"))
        .await;
    let dark = page_colours(&viewer).await;
    assert!(dark.0 < 0.1 && dark.1 > 0.6, "dark page: {dark:?}");
    page_done(&viewer, "zh-CN", "home-dark-zh-CN", &mut problems).await;
    // The pages that show the live room are done; it may go off the air.
    drop(on_air);

    assert!(problems.is_empty(), "{problems:#?}");
    for browser in [&host, &viewer] {
        let violations = browser.csp_violations().await;
        assert!(violations.is_empty(), "{violations:?}");
    }
}

/// Waits until the room page's player plays the live picture: a frame shown and its clock
/// running, with a second of it played (hls.js needs the playlist's first fragments first).
async fn wait_playing(browser: &Browser) {
    wait_js_within(
        browser,
        "const p = document.getElementById('player'); \
         return p.dataset.stream && p.readyState >= 2 && p.videoWidth > 0 \
           && p.currentTime > 1 || null;",
        "the live picture playing",
        std::time::Duration::from_secs(60),
    )
    .await;
}

/// Sends `lines` as danmaku and waits until at least as many fly over the video, inside it.
async fn fly_danmaku(browser: &Browser, lines: &[&str]) {
    for line in lines {
        send_danmaku(browser, line).await;
        wait_for_line(browser, VIEWER, line).await;
    }
    // All of them over the picture, the first past its middle: they are spread across it.
    let script = format!(
        "const box = document.getElementById('player-box').getBoundingClientRect(); \
         const flying = [...document.querySelectorAll('#overlay .flying')]; \
         const over = flying.filter(f => {{ \
           const r = f.getBoundingClientRect(); \
           return r.top >= box.top && r.bottom <= box.bottom && r.left < box.right; }}); \
         const first = flying[0]?.getBoundingClientRect(); \
         return over.length >= {} && first.left < box.left + box.width / 2 || null;",
        lines.len()
    );
    wait_js(browser, &script, "danmaku flying over the video").await;
}

/// Checks the page as loaded, in `lang`, with a title and every control named; notes what is
/// wrong under `name` and, when asked, saves the screenshot `name`.png.
async fn page_done(browser: &Browser, lang: &str, name: &str, problems: &mut Vec<String>) {
    let found = browser.execute(AUDIT).await;
    let found: Vec<String> = serde_json::from_value(found["problems"].clone())
        .unwrap_or_else(|e| panic!("the audit of {name} answers a list: {e}"));
    let lang_of_page = browser
        .execute("return document.documentElement.lang;")
        .await;
    if lang_of_page != lang {
        problems.push(format!("{name}: <html lang={lang_of_page}>, not {lang}"));
    }
    problems.extend(found.into_iter().map(|p| format!("{name}: {p}")));
    if let Some(dir) = shots_dir() {
        save(browser, &dir, name).await;
    }
}

/// What makes a page unusable without a mouse or a screen: no title, no `<main>`, a form
/// control without a label, a button or link without a name, a description pointing nowhere.
const AUDIT: &str = r#"
const problems = [];
if (!document.title.trim()) problems.push("no <title>");
if (!document.querySelector("main h1")) problems.push("no heading in <main>");
const visible = (e) => e.getClientRects().length > 0;
for (const c of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
  const named = c.labels.length > 0 || c.getAttribute("aria-label") || c.getAttribute("aria-labelledby");
  if (!named && visible(c)) problems.push("no label: " + c.outerHTML.slice(0, 100));
}
for (const b of document.querySelectorAll("button, a[href]")) {
  const named = b.textContent.trim() || b.getAttribute("aria-label") || b.getAttribute("title")
    || b.querySelector("img[alt]:not([alt=''])");
  if (!named && visible(b)) problems.push("no name: " + b.outerHTML.slice(0, 100));
}
for (const c of document.querySelectorAll("[aria-describedby]")) {
  for (const id of c.getAttribute("aria-describedby").split(/\s+/)) {
    if (!document.getElementById(id)) problems.push("describedby nothing: " + id);
  }
}
return {problems};
"#;

/// The relative luminance (0 black, 1 white) of the page's background and of its text.
async fn page_colours(browser: &Browser) -> (f64, f64) {
    let answer = browser
        .execute(
            "const lum = (c) => { const [r, g, b] = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3) \
               .map(v => { v = v / 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); \
               return 0.2126 * r + 0.7152 * g + 0.0722 * b; }; \
             const s = getComputedStyle(document.documentElement); \
             return [lum(s.backgroundColor), lum(getComputedStyle(document.body).color)];",
        )
        .await;
    let of = |i: usize| {
        answer[i]
            .as_f64()
            .unwrap_or_else(|| panic!("a luminance: {answer}"))
    };
    (of(0), of(1))
}

/// Where to write the PNGs: `RM_SCREENSHOTS`, relative to the repository.
fn shots_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("RM_SCREENSHOTS")?;
    Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir))
}

/// Saves the viewport as `dir/name.png`, made small: desktop shots scaled to 960 pixels wide,
/// every shot reduced to a 128-colour palette by ffmpeg.
async fn save(browser: &Browser, dir: &std::path::Path, name: &str) {
    std::fs::create_dir_all(dir).expect("the screenshots folder can be made");
    let raw = dir.join(format!("{name}.raw.png"));
    browser.screenshot(&raw).await;
    let out = dir.join(format!("{name}.png"));
    let filter = "scale='min(960,iw)':-1:flags=lanczos,split[a][b];\
                  [a]palettegen=max_colors=128:stats_mode=full[p];[b][p]paletteuse=dither=none";
    let status = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-i"])
        .arg(&raw)
        .args(["-vf", filter])
        .arg(&out)
        .stdin(Stdio::null())
        .status()
        .expect("ffmpeg runs (RM_SCREENSHOTS needs it)");
    assert!(status.success(), "ffmpeg made {name}.png");
    std::fs::remove_file(&raw).expect("the full-size shot can be removed");
}

/// A real H.264/AAC MP4 of [`PICTURE`] and a tone, [`REPLAY_SECS`] long, as the rtmp backend
/// leaves a finished recording.
fn replay_mp4() -> Vec<u8> {
    let made = tempfile::tempdir().expect("temp dir");
    let mp4 = made.path().join("replay.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            PICTURE,
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &REPLAY_SECS.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-movflags", "+faststart"])
        .arg(&mp4)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg made the replay's MP4");
    std::fs::read(&mp4).expect("read the MP4")
}
