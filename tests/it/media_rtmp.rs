//! Real video end to end: RoomManager runs nginx-rtmp, real ffmpeg pushes test patterns, the
//! HLS that viewers get decodes, co-streaming mixes two pictures side by side, and a closed
//! room leaves an MP4 recording of the right length.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roommanager::config::Config;
use roommanager::model::{Ban, BanScope, UserId};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::accounts::{relaxed, verified_user};
use crate::admin::{admin_token, make_admin, ADMIN_PASSWORD};
use crate::common::tools::{self, Tool};
use crate::common::webdriver::{self, Browser};
use crate::common::ws::WsClient;
use crate::common::TestServer;
use crate::session_end::download;

/// Seconds the host pushes in all; the recording must be this long, within 2 s.
const HOST_PUSH_SECS: u64 = 50;

/// Whether nginx with the RTMP module, ffmpeg and ffprobe are here (see [`tools::require`]).
pub(crate) fn media_tools_present() -> bool {
    tools::require(&[Tool::Nginx, Tool::RtmpModule, Tool::Ffmpeg, Tool::Ffprobe])
}

/// An ffmpeg pushing a test pattern with a tone, `width`x`height` at 30 fps with a keyframe
/// every second, for `seconds`.
pub(crate) fn push(url: &str, seconds: u64, width: u32, height: u32, tone_hz: u32) -> Child {
    let pattern = format!("testsrc=size={width}x{height}:rate=30");
    push_picture(url, seconds, &pattern, tone_hz)
}

/// An ffmpeg pushing `picture` (an ffmpeg lavfi source, e.g. `color=c=red:size=320x240:rate=30`)
/// with a tone, with a keyframe every second, for `seconds`.
pub(crate) fn push_picture(url: &str, seconds: u64, picture: &str, tone_hz: u32) -> Child {
    push_picture_keyframes(url, seconds, picture, tone_hz, 30)
}

/// Like [`push_picture`], with a keyframe every `gop` frames (`-g`).
pub(crate) fn push_picture_keyframes(
    url: &str,
    seconds: u64,
    picture: &str,
    tone_hz: u32,
    gop: u32,
) -> Child {
    push_tracks_keyframes(url, seconds, Some(picture), Some(tone_hz), gop)
}

/// An ffmpeg pushing `picture` (H.264, a keyframe every second) and/or a tone of `tone_hz`
/// (AAC) for `seconds`: either may be left out.
pub(crate) fn push_tracks(
    url: &str,
    seconds: u64,
    picture: Option<&str>,
    tone_hz: Option<u32>,
) -> Child {
    push_tracks_keyframes(url, seconds, picture, tone_hz, 30)
}

/// Like [`push_tracks`], with a keyframe every `gop` frames.
fn push_tracks_keyframes(
    url: &str,
    seconds: u64,
    picture: Option<&str>,
    tone_hz: Option<u32>,
    gop: u32,
) -> Child {
    let mut command = Command::new("ffmpeg");
    command.args(["-nostdin", "-loglevel", "error", "-re"]);
    if let Some(picture) = picture {
        command.args(["-f", "lavfi", "-i"]).arg(picture);
    }
    if let Some(tone_hz) = tone_hz {
        command
            .args(["-f", "lavfi", "-i"])
            .arg(format!("sine=frequency={tone_hz}:sample_rate=44100"));
    }
    command.args(["-t", &seconds.to_string()]);
    if picture.is_some() {
        command.args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            &gop.to_string(),
            "-pix_fmt",
            "yuv420p",
        ]);
    }
    if tone_hz.is_some() {
        command.args(["-c:a", "aac", "-b:a", "64k"]);
    }
    command
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run ffmpeg")
}

/// Writes `seconds` of test pattern (H.264, a keyframe every second), with a tone (AAC) if
/// `tone`, to the FLV file `flv`.
pub(crate) fn write_flv(flv: &Path, seconds: u64, tone: bool) {
    let mut command = std::process::Command::new("ffmpeg");
    command.args(["-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"]);
    command.arg("testsrc=size=320x180:rate=30");
    if tone {
        command.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]);
        command.args(["-c:a", "aac"]);
    }
    command.args(["-t", &seconds.to_string(), "-c:v", "libx264", "-preset"]);
    command.args(["ultrafast", "-g", "30", "-pix_fmt", "yuv420p", "-f", "flv"]);
    assert!(command.arg(flv).status().unwrap().success());
}

/// ffprobe's answer about a file: `entries` like "stream=width" or "format=duration".
pub(crate) fn probe(file: &Path, select: &[&str], entries: &str) -> String {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error"])
        .args(select)
        .args(["-show_entries", entries, "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits until the newest segment of `watch_url`'s playlist decodes to a picture of `size`
/// (width, height); fails with what it last saw if that does not happen within 40 s.
pub(crate) async fn wait_for_picture(
    server: &TestServer,
    watch_url: &str,
    dir: &Path,
    size: (u32, u32),
) {
    let want = format!("{},{}", size.0, size.1);
    wait_for_segment(server, watch_url, dir, "v:0", "stream=width,height", &want).await;
}

/// Waits until ffprobe reads `want` as the `entries` of stream `stream` (e.g. "a:0") of the
/// newest segment of `watch_url`'s playlist; fails with what it last saw if that does not
/// happen within 40 s.
pub(crate) async fn wait_for_segment(
    server: &TestServer,
    watch_url: &str,
    dir: &Path,
    stream: &str,
    entries: &str,
    want: &str,
) {
    assert!(
        watch_url.starts_with("/hls/"),
        "a path, not a URL with a host: {watch_url}"
    );
    let watch_url = &server.url(watch_url);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last = String::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "{watch_url} never showed {entries} {want} in {stream}; last: {last}"
        );
        let res = server.client.get(watch_url).send().await.unwrap();
        last = format!("status {}", res.status());
        if res.status() == StatusCode::OK {
            let playlist = res.text().await.unwrap();
            if let Some(segment) = playlist.lines().rev().find(|l| l.ends_with(".ts")) {
                let base = watch_url.rsplit_once('/').unwrap().0;
                let res = server
                    .client
                    .get(format!("{base}/{segment}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                assert_eq!(res.headers()["content-type"], "video/mp2t");
                let file = dir.join(format!("seg-{}.ts", rand_suffix()));
                std::fs::write(&file, res.bytes().await.unwrap()).unwrap();
                let found = probe(&file, &["-select_streams", stream], entries);
                // MPEG-TS lists the stream under its program too: the first line is the stream.
                last = found.lines().next().unwrap_or("nothing").to_owned();
                if found.lines().next() == Some(want) {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A first-time visitor opens the room page in headless Chromium: the video element plays the
/// host's picture (its width is the pushed width and its clock runs), and nothing the page does
/// breaks its Content-Security-Policy.
async fn assert_plays_in_a_browser(server: &TestServer, room: u64, width: u64) {
    let browser = Browser::start().await;
    browser.goto(&format!("{}/room/{room}", server.base)).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let state = browser
            .execute("const p = document.getElementById('player'); return [p.videoWidth, p.currentTime, p.src, p.paused, p.readyState, p.networkState, p.error && p.error.message, p.buffered.length ? p.buffered.end(0) : -1, p.muted];")
            .await;
        if state[0].as_u64() == Some(width) && state[1].as_f64().is_some_and(|t| t > 1.0) {
            // hls.js's worker, its blob: video and the WebSocket all within the page's policy.
            assert_eq!(browser.csp_violations().await, Vec::<String>::new());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the room page never played the stream: {state}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The pids of running processes whose command line contains `needle`.
pub(crate) fn pids_mentioning(needle: &str) -> Vec<u32> {
    let out = std::process::Command::new("ps")
        .args(["-eo", "pid=,args="])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle) && !l.contains("ps -eo"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub(crate) async fn push_key(server: &TestServer, token: &str, rotate: bool) -> Value {
    let request = if rotate {
        server.client.post(server.url("/api/v1/me/push/rotate"))
    } else {
        server.client.get(server.url("/api/v1/me/push"))
    };
    let res = request.bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// How many publishes RoomManager decided with `outcome` ("accepted" or a refusal's reason),
/// from its `/metrics`.
pub(crate) async fn publishes(server: &TestServer, outcome: &str) -> u64 {
    let text = server.get("/metrics").await.text().await.unwrap();
    let series = format!("roommanager_rtmp_publishes_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |n| n.parse().unwrap())
}

/// A push to `url` is accepted, then stopped again. Each refusal below is preceded by one such
/// positive control: nginx listens, the hook answers, and this very push works with the right key.
pub(crate) async fn assert_accepted(server: &TestServer, url: &str) {
    let accepted = publishes(server, "accepted").await;
    let mut control = push(url, 30, 320, 180, 440);
    let deadline = Instant::now() + Duration::from_secs(20);
    while publishes(server, "accepted").await == accepted {
        assert!(
            Instant::now() < deadline,
            "the control push to {url} was never accepted"
        );
        if let Some(status) = control.try_wait().unwrap() {
            panic!("the control push to {url} ended: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    control.kill().await.unwrap();
}

/// A push to `url` that RoomManager refuses for `reason`: ffmpeg gives up quickly, and the
/// refusal is counted under that reason.
pub(crate) async fn assert_refused(server: &TestServer, url: &str, reason: &str) {
    let refused = publishes(server, reason).await;
    let mut ffmpeg = push(url, 5, 320, 180, 440);
    let status = tokio::time::timeout(Duration::from_secs(20), ffmpeg.wait())
        .await
        .expect("a refused push ends quickly")
        .unwrap();
    assert!(!status.success(), "the push to {url} was accepted");
    assert_eq!(
        publishes(server, reason).await,
        refused + 1,
        "the push to {url} was refused for {reason:?}"
    );
}

pub(crate) fn processes_mentioning(needle: &str) -> Vec<String> {
    let out = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle) && !l.contains("ps -eo"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn real_video_flows_from_push_to_hls_to_mix_to_recording() {
    if !media_tools_present() || !webdriver::available() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
        c.rooms.record_delay_secs = 1;
        c.rooms.chat_per_window = 1000;
    })
    .await;
    let data_dir = server.data.path().to_str().unwrap().to_owned();
    let (_, host_token) = verified_user(&server, "rtmphost").await;
    let (fan_id, fan_token) = verified_user(&server, "rtmpfan").await;
    let (banned_id, banned_token) = verified_user(&server, "rtmpbanned").await;
    let (_, checker_token) = verified_user(&server, "rtmpchecker").await;

    // Push keys: the rotated-away code is kept to try it later. The refusals are tried on
    // another host's stream, so their accepted control pushes stay out of this host's recording.
    let first = push_key(&server, &checker_token, false).await;
    let key = push_key(&server, &checker_token, true).await;
    assert_eq!(
        key["live_id"], first["live_id"],
        "rotating keeps the stream id"
    );
    assert_ne!(key["push_url"], first["push_url"]);
    let checker_push = key["push_url"].as_str().unwrap().to_owned();
    assert!(
        checker_push.starts_with("rtmp://127.0.0.1:"),
        "{checker_push}"
    );
    assert_eq!(
        format!(
            "{}/{}",
            key["server"].as_str().unwrap(),
            key["stream_key"].as_str().unwrap()
        ),
        checker_push
    );
    let push_url = push_key(&server, &host_token, false).await["push_url"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut host = WsClient::connect(&server.base, &host_token).await;
    host.send(json!({"type": "start_live", "title": "Test pattern"}))
        .await;
    let started = host.expect("live_started").await;
    let room = started["room_id"].as_u64().unwrap();
    let host_watch = started["watch_url"].as_str().unwrap().to_owned();
    assert_eq!(started["push_url"], push_url.as_str());

    let mut viewer = WsClient::connect(&server.base, &fan_token).await;
    viewer
        .send(json!({"type": "join_room", "room_id": room}))
        .await;
    assert_eq!(viewer.expect("room_info").await["on_air"], false);

    // Refused pushes: a wrong code, the rotated-away code, and a host banned while live.
    let mut checker = WsClient::connect(&server.base, &checker_token).await;
    checker.send(json!({"type": "start_live"})).await;
    checker.expect("live_started").await;
    let (base, _) = checker_push.split_once("?code=").unwrap();
    let wrong = format!("{base}?code=wrong");
    assert_accepted(&server, &checker_push).await;
    assert_refused(&server, &wrong, "wrong code").await;
    assert_accepted(&server, &checker_push).await;
    assert_refused(&server, first["push_url"].as_str().unwrap(), "wrong code").await;
    let banned_key = push_key(&server, &banned_token, false).await;
    let banned_push = banned_key["push_url"].as_str().unwrap();
    let mut banned = WsClient::connect(&server.base, &banned_token).await;
    banned.send(json!({"type": "start_live"})).await;
    banned.expect("live_started").await;
    assert_accepted(&server, banned_push).await;
    add_stream_ban(&server, banned_id);
    assert_refused(&server, banned_push, "the host is banned from streaming").await;

    // The host's picture: HLS becomes playable and decodes; viewers see it on the air.
    let pushed_at = Instant::now();
    let mut host_push = push(&push_url, HOST_PUSH_SECS, 640, 360, 440);
    let on_air = viewer.expect("on_air").await;
    assert_eq!(
        (on_air["stream"].as_str(), on_air["on_air"].as_bool()),
        (Some("host"), Some(true))
    );
    wait_for_picture(&server, &host_watch, scratch.path(), (640, 360)).await;
    assert_plays_in_a_browser(&server, room, 640).await;

    // Co-streaming: the guest pushes a second pattern; the mix is twice as wide.
    viewer.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    let connect = viewer.expect("connect_started").await;
    let guest_push_url = connect["push_url"].as_str().unwrap().to_owned();
    let mixed_watch = connect["watch_url"].as_str().unwrap().to_owned();
    assert_eq!(
        viewer.expect("watch_url").await["watch_url"],
        mixed_watch.as_str()
    );
    let mut guest_push = push(&guest_push_url, 40, 640, 360, 880);
    wait_for_picture(&server, &mixed_watch, scratch.path(), (1280, 360)).await;
    // This test's mixer is the one writing its mixed stream (other servers may run here too).
    let mixed_id = mixed_watch.rsplit('/').nth(1).unwrap().to_owned();
    let mixer_args = |layout: &str| {
        processes_mentioning(&format!("/mix/{mixed_id}?"))
            .into_iter()
            .filter(|args| args.contains(layout))
            .collect::<Vec<_>>()
    };
    let mixers = mixer_args("hstack=inputs=2");
    assert_eq!(mixers.len(), 1, "one mixer runs: {mixers:?}");

    // The host switches to picture-in-picture: the mixer restarts with the new layout.
    host.send(json!({"type": "update_room", "layout": "picture_in_picture"}))
        .await;
    wait_for_picture(&server, &mixed_watch, scratch.path(), (1280, 720)).await;
    assert!(mixer_args("hstack=inputs=2").is_empty());

    // A mixer that dies while the co-stream lasts is started again.
    let dead = pids_mentioning(&format!("/mix/{mixed_id}?"));
    assert_eq!(dead.len(), 1, "one mixer runs");
    let killed = std::process::Command::new("kill")
        .args(["-9", &dead[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let restart_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now_running = pids_mentioning(&format!("/mix/{mixed_id}?"));
        if now_running.len() == 1 && now_running[0] != dead[0] {
            break;
        }
        assert!(
            Instant::now() < restart_deadline,
            "the mixer was not restarted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    guest_ends_co_stream(&mut host, &mut viewer, &host_watch).await;
    let _ = guest_push.kill().await;

    // The host pushes to the end, then closes: the recording is listed, with the right length.
    let status = tokio::time::timeout(Duration::from_secs(HOST_PUSH_SECS + 20), host_push.wait())
        .await
        .expect("the host's push ends")
        .unwrap();
    assert!(status.success(), "the host's push failed");
    let pushed_for = pushed_at.elapsed();
    host.send(json!({"type": "close_room"})).await;
    viewer.expect("room_closed").await;
    let closed_at = Instant::now();
    let record = loop {
        let records = server.app().store.records().unwrap();
        if let Some(record) = records
            .into_iter()
            .find(|r| r.title.ends_with(" · Test pattern"))
        {
            break record;
        }
        assert!(
            closed_at.elapsed() < Duration::from_secs(90),
            "no recording listed within 90 s (the server waits up to 90 s for it)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mp4 = scratch.path().join("record.mp4");
    download(&server, &record.url, &mp4).await;
    let duration: f64 = probe(&mp4, &[], "format=duration").parse().unwrap();
    assert!(
        (duration - HOST_PUSH_SECS as f64).abs() <= 2.0,
        "recording is {duration:.1} s, the push was {HOST_PUSH_SECS} s (took {pushed_for:?})"
    );
    assert!(
        record.duration_secs.abs_diff(HOST_PUSH_SECS) <= 2,
        "{record:?}"
    );
    let ranged = server
        .client
        .get(server.url(&record.url))
        .header("range", "bytes=100-1099")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes().await.unwrap().len(), 1000);

    // Nothing is left running once RoomManager stops.
    drop(banned);
    drop(checker);
    server.stop().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = processes_mentioning(&data_dir)
            .into_iter()
            .chain(processes_mentioning(&format!("/mix/{mixed_id}?")))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// With nginx and ffmpeg missing, the site still works; `/healthz` and going live say why
/// there is no video.
#[tokio::test]
async fn missing_media_tools_are_reported_and_the_rest_works() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
        c.media.rtmp.nginx_binary = "/nonexistent/nginx".into();
        c.media.rtmp.ffmpeg_binary = "/nonexistent/ffmpeg".into();
        c.rooms.media_attempts = 1;
    })
    .await;
    let health: Value = server.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["media"]["status"], "unavailable", "{health}");
    let problem = health["media"]["problem"].as_str().unwrap();
    assert!(
        problem.contains("nginx") && problem.contains("ffmpeg"),
        "{problem}"
    );
    assert_eq!(server.get("/").await.status(), StatusCode::OK);
    let (_, token) = verified_user(&server, "notools").await;
    let mut host = WsClient::connect(&server.base, &token).await;
    host.send(json!({"type": "start_live"})).await;
    let error = host.expect("error").await;
    assert_eq!(error["code"], "media_unavailable");
    assert!(
        error["message"].as_str().unwrap().contains("nginx"),
        "{error}"
    );
}

/// A recording that a crash left as FLV is turned into MP4 at the next start.
#[tokio::test]
async fn a_recording_left_by_a_crash_is_finished_at_the_next_start() {
    if !media_tools_present() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let flv_dir = data.path().join("media").join("flv");
    std::fs::create_dir_all(&flv_dir).unwrap();
    let flv = flv_dir.join("hcrashed1-1795700000.flv");
    write_flv(&flv, 3, false);
    let server = TestServer::start_in(data, relaxed).await;
    let mp4 = server
        .data
        .path()
        .join("media/records/hcrashed1/1795700000.mp4");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !mp4.exists() || flv.exists() {
        assert!(
            Instant::now() < deadline,
            "the leftover FLV was not remuxed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let duration: f64 = probe(&mp4, &[], "format=duration").parse().unwrap();
    assert!((duration - 3.0).abs() < 0.5, "{duration}");
}

/// nginx dies with RoomManager, even with `kill -9`, so a restart gets the RTMP port again.
#[tokio::test]
async fn after_kill_9_no_nginx_is_left_and_a_restart_takes_the_rtmp_port_again() {
    if !media_tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rtmp_port = crate::common::spare_port();
    let config = format!(
        "[media.rtmp]\nrtmp_listen = \"127.0.0.1:{rtmp_port}\"\ncontrol_port = {}\n",
        crate::common::spare_port()
    );
    let data = dir.path().join("data");
    let data_text = data.to_str().unwrap().to_owned();
    let rtmp_answers = || std::net::TcpStream::connect(("127.0.0.1", rtmp_port)).is_ok();
    let wait_until = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    let mut first = crate::common::Process::serve(&data, &config);
    wait_until("nginx never listened", &rtmp_answers);
    first.signal("-KILL");
    first.wait_exit(Duration::from_secs(20)).expect("killed");
    wait_until("nginx outlived a killed RoomManager", &|| {
        processes_mentioning(&data_text).is_empty() && !rtmp_answers()
    });

    let second = crate::common::Process::serve(&data, &config);
    wait_until("the restarted nginx never listened", &rtmp_answers);
    let health: Value = reqwest::get(format!("{}/healthz", second.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["media"]["status"], "ok", "{health}");
}

/// A host's stream id is the same every session; each recording holds its own session only.
#[tokio::test]
async fn each_session_of_a_host_gets_its_own_recording() {
    if !media_tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
        c.rooms.record_delay_secs = 1;
    })
    .await;
    let (_, token) = verified_user(&server, "twicehost").await;
    let mut host = WsClient::connect(&server.base, &token).await;
    for (session, seconds) in [(1usize, 4u64), (2, 7)] {
        host.send(json!({"type": "start_live", "title": format!("Session {session}")}))
            .await;
        let push_url = host.expect("live_started").await["push_url"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut ffmpeg = push(&push_url, seconds, 320, 180, 440);
        let status = tokio::time::timeout(Duration::from_secs(seconds + 20), ffmpeg.wait())
            .await
            .expect("the push ends")
            .unwrap();
        assert!(status.success());
        host.send(json!({"type": "close_room"})).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let record = loop {
            let records = server.app().store.records().unwrap();
            if records.len() == session {
                break records.into_iter().last().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "session {session} was not listed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let res = server
            .client
            .get(server.url(&record.url))
            .send()
            .await
            .unwrap();
        let mp4 = scratch.path().join(format!("{session}.mp4"));
        std::fs::write(&mp4, res.bytes().await.unwrap()).unwrap();
        let duration: f64 = probe(&mp4, &[], "format=duration").parse().unwrap();
        assert!(
            (duration - seconds as f64).abs() <= 2.0,
            "session {session}: {duration:.1} s recorded for a {seconds} s push"
        );
    }
}

/// nginx dies mid-push (and is restarted): the publish it never reported ended is filed under
/// its session and remuxed at once, not left until RoomManager's next start; the host pushes
/// again, and the session's recording holds the cut part and the new one.
#[tokio::test]
async fn a_push_cut_by_an_nginx_restart_is_kept_in_the_recording() {
    if !media_tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
        c.rooms.record_delay_secs = 1;
    })
    .await;
    let (_, token) = verified_user(&server, "cuthost").await;
    let mut host = WsClient::connect(&server.base, &token).await;
    host.send(json!({"type": "start_live"})).await;
    let push_url = host.expect("live_started").await["push_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let live = push_url
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let mut cut = push(&push_url, 60, 320, 180, 440);
    assert_eq!(host.expect("on_air").await["on_air"], true);
    let flv_dir = server.data.path().join("media/flv");
    let recorded = || -> u64 {
        std::fs::read_dir(&flv_dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&live))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while recorded() < 100_000 {
        assert!(Instant::now() < deadline, "nginx never recorded the push");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nginx_dir = server.data.path().join("nginx");
    let nginx = pids_mentioning(nginx_dir.to_str().unwrap());
    let [pid] = nginx.as_slice() else {
        panic!("one nginx: {nginx:?}");
    };
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // Remuxed now, under the session's tag: `<start>_<tag>.mp4`.
    let parts = server.data.path().join("media/records").join(&live);
    let deadline = Instant::now() + Duration::from_secs(30);
    let part = loop {
        let tagged = std::fs::read_dir(&parts).ok().and_then(|entries| {
            entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.ends_with(".mp4") && name.contains('_') && !name.starts_with("session_")
            })
        });
        if let Some(part) = tagged.filter(|_| recorded() == 0) {
            break part;
        }
        assert!(
            Instant::now() < deadline,
            "the cut recording was not remuxed while the server runs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cut_secs: f64 = probe(&part, &[], "format=duration").parse().unwrap();
    let _ = cut.kill().await;

    let rtmp = server.app().config.media.rtmp.rtmp_listen;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(rtmp).is_err() {
        assert!(Instant::now() < deadline, "nginx was not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again = push(&push_url, 3, 320, 180, 440);
    let status = tokio::time::timeout(Duration::from_secs(30), again.wait())
        .await
        .expect("the second push ends")
        .unwrap();
    assert!(
        status.success(),
        "the second push went through the restarted nginx"
    );
    host.send(json!({"type": "stop_live"})).await;
    host.expect("live_stopped").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        if let Some(record) = server.app().store.records().unwrap().pop() {
            break record;
        }
        assert!(Instant::now() < deadline, "the session was not listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let res = server.get(&record.url).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mp4 = scratch.path().join("session.mp4");
    std::fs::write(&mp4, res.bytes().await.unwrap()).unwrap();
    let total: f64 = probe(&mp4, &[], "format=duration").parse().unwrap();
    assert!(
        (total - (cut_secs + 3.0)).abs() <= 1.5,
        "{total:.1} s recorded for {cut_secs:.1} s cut + 3 s"
    );
}

/// A stream ban for `user`, straight into the store (the room stays open: the media plane's
/// own check is what refuses the next push).
pub(crate) fn add_stream_ban(server: &TestServer, user: u64) {
    let ban = Ban {
        scope: BanScope::Stream,
        reason: "test".into(),
        created_at: 0,
        expires_at: None,
        lifted_at: None,
    };
    server.app().store.add_ban(UserId(user), ban, None).unwrap();
}

/// `token`'s host goes live on the server at `base`: the host's socket, its push URL and its
/// watch URL.
pub(crate) async fn go_live(base: &str, token: &str) -> (WsClient, String, String) {
    let mut host = WsClient::connect(base, token).await;
    host.send(json!({"type": "start_live"})).await;
    let started = host.expect("live_started").await;
    let url = |key: &str| started[key].as_str().unwrap().to_owned();
    (host, url("push_url"), url("watch_url"))
}

/// `token`'s host goes live and pushes a real picture until it is on the air: the host's
/// socket, the push URL and the running push.
pub(crate) async fn live_and_pushing(
    server: &TestServer,
    token: &str,
) -> (WsClient, String, Child) {
    let (mut host, push_url, _) = go_live(&server.base, token).await;
    let ffmpeg = push(&push_url, 60, 320, 180, 440);
    assert_eq!(host.expect("on_air").await["on_air"], true);
    (host, push_url, ffmpeg)
}

/// The rtmp backend with its managed nginx.
fn with_nginx(c: &mut Config) {
    relaxed(c);
    c.media.rtmp.manage_nginx = true;
}

#[tokio::test]
async fn rotating_the_key_drops_a_running_push() {
    if media_tools_present() {
        rotating_the_key_drops_a_running_push_on(with_nginx).await;
    }
}

/// Rotating a leaked key stops a push that is already running with it (on the media backend
/// `setup` configures).
pub(crate) async fn rotating_the_key_drops_a_running_push_on(setup: fn(&mut Config)) {
    let server = TestServer::start_with(setup).await;
    let (_, token) = verified_user(&server, "leakyhost").await;
    let (mut host, push_url, mut ffmpeg) = live_and_pushing(&server, &token).await;
    let rotated = push_key(&server, &token, true).await;
    assert_eq!(host.expect("on_air").await["on_air"], false);
    tokio::time::timeout(Duration::from_secs(20), ffmpeg.wait())
        .await
        .expect("the push with the old key was dropped")
        .unwrap();
    assert_accepted(&server, rotated["push_url"].as_str().unwrap()).await;
    assert_refused(&server, &push_url, "wrong code").await;
}

#[tokio::test]
async fn a_stream_ban_drops_the_running_push_and_refuses_the_next_until_lifted() {
    if media_tools_present() {
        a_stream_ban_drops_the_running_push_on(with_nginx).await;
    }
}

/// An admin's stream ban while the host pushes: the room closes, the media plane drops the
/// running push, a new push with the same key is refused and going live again is refused for
/// the ban; lifting it lets the host push again (on the backend `setup` configures).
pub(crate) async fn a_stream_ban_drops_the_running_push_on(setup: fn(&mut Config)) {
    let server = TestServer::start_with(setup).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let (host_id, token) = verified_user(&server, "unrulyhost").await;
    let (mut host, push_url, mut ffmpeg) = live_and_pushing(&server, &token).await;

    let res = server
        .client
        .post(server.url(&format!("/api/v1/admin/users/{host_id}/bans")))
        .bearer_auth(&admin)
        .json(&json!({"scope": "stream", "reason": "pirated football"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let banned = host.expect("banned").await;
    assert_eq!(banned["scope"], "stream");
    assert_eq!(banned["reason"], "pirated football");
    let closed = host.expect("room_closed").await;
    assert_eq!(closed["reason"], "the host is banned from streaming");
    tokio::time::timeout(Duration::from_secs(20), ffmpeg.wait())
        .await
        .expect("the banned host's running push was dropped")
        .unwrap();
    // The key's stream ended with the room, and the host cannot start another while banned.
    assert_refused(&server, &push_url, "no such live stream").await;
    let mut host = WsClient::connect(&server.base, &token).await;
    host.send(json!({"type": "start_live"})).await;
    assert_eq!(host.expect("banned").await["scope"], "stream");

    let res = server
        .client
        .delete(server.url(&format!("/api/v1/admin/users/{host_id}/bans/stream")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let mut host = WsClient::connect(&server.base, &token).await;
    host.send(json!({"type": "start_live"})).await;
    let push_url = host.expect("live_started").await["push_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_accepted(&server, &push_url).await;
}

/// The guest ends the co-stream: the host hears `connect_ended` with its own picture's URL, and
/// after the mix's URL came and went, the last `watch_url` it gets is that picture's again.
pub(crate) async fn guest_ends_co_stream(
    host: &mut WsClient,
    guest: &mut WsClient,
    host_watch: &str,
) {
    guest.send(json!({"type": "end_connect"})).await;
    assert_eq!(host.expect("connect_ended").await["watch_url"], host_watch);
    host.expect_where("watch_url", |m| m["watch_url"] == host_watch)
        .await;
}
