//! The end of a live session: the room closes (or stops) at once and the host may go live again
//! while the last session's recording is still being fetched; each session gets its own record.
//! With the scripted media plane (gated calls decide the order of events), then with real nginx
//! and ffmpeg: back-to-back sessions of one stream, a co-streamed session whose recording shows
//! the mix where viewers watched it, and a thumbnail per recording.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roommanager::media::scripted::{Behaviour, Call, Gate};
use roommanager::media::MediaError;
use roommanager::model::Record;
use serde_json::{json, Value};
use tokio::process::Child;

use crate::accounts::{relaxed, verified_user};
use crate::common::ws::WsClient;
use crate::common::{wait_for, TestServer};
use crate::media_rtmp::{media_tools_present, probe, push, push_picture, wait_for_picture};
use crate::rooms::{join, Site};

/// The records listed so far, once there are `n`.
async fn records(site: &Site, n: usize) -> Vec<Record> {
    let store = site.server.app().store.clone();
    wait_for(|| async {
        let records = store.records().expect("the store answers");
        (records.len() == n).then_some(records)
    })
    .await
}

/// Closing the room and stopping live do not wait for the recording: the host is live again at
/// once, twice, while the first two sessions' recordings are held at their gates; then each
/// session is listed with its own record.
#[tokio::test]
async fn the_host_goes_live_again_while_the_last_recording_is_fetched() {
    let site = Site::start().await;
    let (first, second) = (Gate::default(), Gate::default());
    site.media.script(
        Call::Recording,
        [
            Behaviour::Gated(first.clone()),
            Behaviour::Gated(second.clone()),
        ],
    );
    let (mut host, room) = site.live_host("again01").await;
    let mut viewer = site.ws(&site.guest().await).await;
    join(&mut viewer, room).await;

    // Closed: the room is gone, and a new one opens for the next start at once.
    host.send(json!({"type": "close_room"})).await;
    host.expect("room_closed").await;
    viewer.expect("room_closed").await;
    first.arrived().await;
    host.send(json!({"type": "start_live", "title": "second"}))
        .await;
    assert_eq!(host.expect("live_started").await["room_id"], room);
    assert_eq!(site.live_rooms().await[0]["title"], "second");
    join(&mut viewer, room).await;

    // Stopped: the same room goes live again at once.
    host.send(json!({"type": "stop_live"})).await;
    viewer.expect("live_stopped").await;
    second.arrived().await;
    host.send(json!({"type": "start_live", "title": "third"}))
        .await;
    host.expect("live_started").await;
    assert_eq!(viewer.expect("live_started").await["title"], "third");
    assert!(
        site.server.app().store.records().unwrap().is_empty(),
        "both recordings are still being fetched"
    );

    // One at a time, so the records are stored (and listed) in the sessions' order.
    first.open();
    records(&site, 1).await;
    second.open();
    let listed = records(&site, 2).await;
    let titles: Vec<&str> = listed.iter().map(|r| r.title.as_str()).collect();
    // A record's title is the room's name and the session's title.
    assert_eq!(
        titles,
        ["again01's room · Friday jam", "again01's room · second"]
    );
    assert_ne!(listed[0].live, listed[1].live, "one record per session");
    for record in &listed {
        let session = site
            .server
            .app()
            .store
            .live_session(record.live)
            .unwrap()
            .expect("the session is stored");
        assert!(session.settled, "{session:?}");
        assert!(
            record
                .url
                .ends_with(&format!("-{}.mp4", session.started_at)),
            "the media plane was asked for this session's own window: {record:?} {session:?}"
        );
    }
    // Each stop came before the next start's first media call.
    let order: Vec<Call> = site.media.calls().into_iter().map(|(c, _)| c).collect();
    let session = [
        Call::NewStream,
        Call::StartDistribution,
        Call::StopDistribution,
        Call::Recording,
    ];
    assert_eq!(order[..4], session, "{order:?}");
    assert_eq!(order[4..8], session, "{order:?}");
    assert_eq!(order[8..], session[..2], "{order:?}");
}

/// A host's stream may be the same in every session (the rtmp backend's standing key): a new
/// start waits until the last session's stop is done, so that stop cannot end the new session's
/// stream; it waits for the stop only, never for the recording.
#[tokio::test]
async fn a_new_start_waits_for_the_last_stop_but_not_for_its_recording() {
    let site = Site::start().await;
    let (stop, recording) = (Gate::default(), Gate::default());
    let (mut host, room) = site.live_host("again02").await;
    site.media
        .script(Call::StopDistribution, [Behaviour::Gated(stop.clone())]);
    site.media
        .script(Call::Recording, [Behaviour::Gated(recording.clone())]);
    host.send(json!({"type": "close_room"})).await;
    host.expect("room_closed").await;
    stop.arrived().await;
    host.send(json!({"type": "start_live"})).await;
    host.expect_none("live_started", Duration::from_millis(500))
        .await;
    assert_eq!(
        site.media.count(Call::NewStream),
        1,
        "the new start waits for the last stop"
    );
    stop.open();
    assert_eq!(host.expect("live_started").await["room_id"], room);
    recording.arrived().await;
    recording.open();
    records(&site, 1).await;
}

/// A recording the media plane cannot give is tried again while the server runs (after
/// `rooms.recording_retry_secs`, then twice as long), not only at the next start: after two
/// failures the session is listed, once, and settled.
#[tokio::test]
async fn a_failed_recording_is_tried_again_while_the_server_runs() {
    let site = Site::start_with(|c| c.rooms.recording_retry_secs = 1).await;
    let down = Behaviour::Fail(MediaError::Unavailable("down".into()));
    site.media.script(Call::Recording, [down.clone(), down]);
    let (mut host, _) = site.live_host("retry01").await;
    host.send(json!({"type": "stop_live"})).await;
    host.expect("live_stopped").await;
    let [record] = records(&site, 1).await.try_into().expect("one record");
    let asked = site.media.recordings_asked();
    assert_eq!(
        asked.len(),
        3,
        "two failures, then the recording: {asked:?}"
    );
    assert!(
        asked.iter().all(|a| *a == asked[0]),
        "the same window each time"
    );
    let store = &site.server.app().store;
    let session = store.live_session(record.live).unwrap().expect("stored");
    assert!(session.settled);
}

// ---------------------------------------------------------------------------------------------
// Real nginx and ffmpeg
// ---------------------------------------------------------------------------------------------

/// A server running nginx-rtmp, asking for recordings a second after a session ends.
async fn rtmp_server() -> TestServer {
    TestServer::start_with(|c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
        c.rooms.record_delay_secs = 1;
    })
    .await
}

/// `token`'s host goes live with `title` and pushes a 640x360 test pattern for `seconds`,
/// until the watch URL plays it: the host's socket, the room, the watch URL and the push.
pub(crate) async fn live_with_picture(
    server: &TestServer,
    token: &str,
    title: &str,
    seconds: u64,
    dir: &Path,
) -> (WsClient, u64, String, Child) {
    let mut host = WsClient::connect(&server.base, token).await;
    host.send(json!({"type": "start_live", "title": title}))
        .await;
    let started = host.expect("live_started").await;
    let room = started["room_id"].as_u64().unwrap();
    let watch = started["watch_url"].as_str().unwrap().to_owned();
    let push = push(
        started["push_url"].as_str().unwrap(),
        seconds,
        640,
        360,
        440,
    );
    wait_for_picture(server, &watch, dir, (640, 360)).await;
    (host, room, watch, push)
}

/// The fan (`fan_id`, in the host's room) applies and the host accepts: the fan's
/// `connect_started`, with the guest's push URL and the mix's watch URL.
pub(crate) async fn on_stage(host: &mut WsClient, fan: &mut WsClient, fan_id: u64) -> Value {
    fan.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    fan.expect("connect_started").await
}

/// Downloads `record` into `file` and checks it lasts `seconds` (within 2 s): its length.
pub(crate) async fn recorded_for(
    server: &TestServer,
    record: &Record,
    file: &Path,
    seconds: u64,
) -> f64 {
    download(server, &record.url, file).await;
    let duration: f64 = probe(file, &[], "format=duration").parse().unwrap();
    assert!(
        (duration - seconds as f64).abs() <= 2.0,
        "{duration:.1} s recorded for {seconds} s pushed: {record:?}"
    );
    duration
}

/// The records, once there are `n`; a recording may be re-encoded, so this waits up to 2 min.
pub(crate) async fn recorded(server: &TestServer, n: usize) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let records = server.app().store.records().expect("the store answers");
        if records.len() == n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} recordings listed within 2 min: {records:?}",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Downloads `url` from the server into `file`; returns the response's content type.
pub(crate) async fn download(server: &TestServer, url: &str, file: &Path) -> String {
    let res = server.get(url).await;
    assert_eq!(res.status(), StatusCode::OK, "{url}");
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    std::fs::write(file, res.bytes().await.unwrap()).unwrap();
    content_type
}

/// The colour (red, green, blue) of the pixel at (`x`, `y`) of the frame `at` seconds into
/// `video`.
fn pixel(video: &Path, at: f64, x: u32, y: u32) -> [u8; 3] {
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-ss",
            &format!("{at:.2}"),
            "-i",
        ])
        .arg(video)
        .args([
            "-frames:v",
            "1",
            "-vf",
            &format!("format=rgb24,crop=1:1:{x}:{y}"),
        ])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .as_slice()
        .try_into()
        .unwrap_or_else(|_| panic!("one pixel, not {} bytes", out.stdout.len()))
}

/// Waits until `push` ends, and that it pushed all along.
async fn pushed(push: &mut tokio::process::Child, seconds: u64) {
    let status = tokio::time::timeout(Duration::from_secs(seconds + 30), push.wait())
        .await
        .expect("the push ends")
        .unwrap();
    assert!(status.success(), "the push failed");
}

/// The thumbnail of `record` is a JPEG 320 pixels wide, served as such.
async fn assert_thumbnail(server: &TestServer, record: &Record, dir: &Path) {
    let url = record
        .thumbnail_url
        .as_deref()
        .unwrap_or_else(|| panic!("no thumbnail: {record:?}"));
    let jpg = dir.join(format!("{}.jpg", record.id));
    assert_eq!(download(server, url, &jpg).await, "image/jpeg");
    let bytes = std::fs::read(&jpg).unwrap();
    assert_eq!(bytes[..2], [0xFF, 0xD8], "a JPEG starts with SOI");
    let size = probe(&jpg, &["-select_streams", "v:0"], "stream=width,height");
    let (width, height) = size.split_once(',').expect("width,height");
    assert_eq!(width, "320", "{url}: {size}");
    assert!(height.parse::<u32>().is_ok_and(|h| h > 0), "{size}");
}

/// Push, stop, go live again at once and push again: two records of the same stream, each as
/// long as its own push, each with a thumbnail (the first session's recording does not wait
/// for, or take, the second session's file, which is still being written).
#[tokio::test]
async fn back_to_back_sessions_of_one_stream_get_their_own_recordings_and_thumbnails() {
    if !media_tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = rtmp_server().await;
    let (_, token) = verified_user(&server, "b2bhost").await;
    let mut host = WsClient::connect(&server.base, &token).await;
    let pushes = [("first", 5u64), ("second", 9u64)];
    for (title, seconds) in pushes {
        host.send(json!({"type": "start_live", "title": title}))
            .await;
        let push_url = host.expect("live_started").await["push_url"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut ffmpeg = push(&push_url, seconds, 320, 180, 440);
        pushed(&mut ffmpeg, seconds).await;
        host.send(json!({"type": "stop_live"})).await;
        host.expect("live_stopped").await;
    }
    let records = recorded(&server, 2).await;
    for (record, (title, seconds)) in records.iter().zip(pushes) {
        assert_eq!(record.title, format!("b2bhost's room · {title}"));
        let mp4 = scratch.path().join(format!("{title}.mp4"));
        assert_eq!(download(&server, &record.url, &mp4).await, "video/mp4");
        let duration: f64 = probe(&mp4, &[], "format=duration").parse().unwrap();
        assert!(
            (duration - seconds as f64).abs() <= 2.0,
            "{title}: {duration:.1} s recorded for a {seconds} s push"
        );
        assert!(record.duration_secs.abs_diff(seconds) <= 2, "{record:?}");
        assert_thumbnail(&server, record, scratch.path()).await;
    }
}

/// A co-streamed session's recording is what viewers saw: the host alone (a test pattern,
/// centred on a canvas as wide as the mix), then the side-by-side mix with the guest's red
/// picture on the right, then the host alone again; as long as the whole session, with sound.
#[tokio::test]
async fn a_co_streamed_session_is_recorded_as_viewers_saw_it() {
    const HOST_SECS: u64 = 32;
    const GUEST_SECS: u64 = 12;
    if !media_tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = rtmp_server().await;
    let (_, host_token) = verified_user(&server, "mixhost").await;
    let (fan_id, fan_token) = verified_user(&server, "mixfan").await;
    let (mut host, room, _, mut host_push) =
        live_with_picture(&server, &host_token, "Duet", HOST_SECS, scratch.path()).await;

    // The fan co-streams a red picture until its push ends; then the co-stream ends.
    let mut fan = WsClient::connect(&server.base, &fan_token).await;
    join(&mut fan, room).await;
    let connect = on_stage(&mut host, &mut fan, fan_id).await;
    let mixed_watch = connect["watch_url"].as_str().unwrap().to_owned();
    let mut guest_push = push_picture(
        connect["push_url"].as_str().unwrap(),
        GUEST_SECS,
        "color=c=red:size=320x240:rate=30",
        880,
    );
    wait_for_picture(&server, &mixed_watch, scratch.path(), (1280, 360)).await;
    pushed(&mut guest_push, GUEST_SECS).await;
    fan.send(json!({"type": "end_connect"})).await;
    host.expect("connect_ended").await;

    // The host alone to the end of its push, then stop.
    pushed(&mut host_push, HOST_SECS).await;
    host.send(json!({"type": "stop_live"})).await;
    host.expect("live_stopped").await;

    let record = recorded(&server, 1).await.remove(0);
    let session = server
        .app()
        .store
        .live_session(record.live)
        .unwrap()
        .expect("the session is stored");
    let [span] = session.co_streams.as_slice() else {
        panic!("one co-stream noted: {session:?}");
    };
    let to = span.to.expect("the co-stream's end is noted");
    let mp4 = scratch.path().join("duet.mp4");
    let duration = recorded_for(&server, &record, &mp4, HOST_SECS).await;
    assert_eq!(
        probe(&mp4, &["-select_streams", "v:0"], "stream=width,height"),
        "1280,360",
        "one frame size, the mix's"
    );
    assert_eq!(
        probe(&mp4, &["-select_streams", "a:0"], "stream=codec_type"),
        "audio"
    );
    // Right of the host's centred picture: black pad while the host is alone, the guest's red
    // in the mix. The mix's middle is a few seconds after its start (the mixer waits for the
    // guest's first keyframe), the recording starts with the host's push, a second at most
    // after the session.
    let is_black = |[r, g, b]: [u8; 3]| r < 40 && g < 40 && b < 40;
    let is_red = |[r, g, b]: [u8; 3]| r > 180 && g < 80 && b < 80;
    let mix_middle = (span.from + to) as f64 / 2.0 - session.started_at as f64 + 2.0;
    let start = pixel(&mp4, 1.0, 1100, 180);
    let middle = pixel(&mp4, mix_middle, 1100, 180);
    let end = pixel(&mp4, duration - 1.5, 1100, 180);
    assert!(is_black(start), "the start is the host alone: {start:?}");
    assert!(
        is_red(middle),
        "{mix_middle:.1} s in is the mix: {middle:?}"
    );
    assert!(is_black(end), "the end is the host alone again: {end:?}");
    assert_thumbnail(&server, &record, scratch.path()).await;
}
