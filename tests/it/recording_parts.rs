//! Which recorded parts belong to which live session: a session a crash left behind keeps its
//! whole window when the first retry fails (scripted media plane, two restarts); on the rtmp
//! backend, each recorded part goes to the session it was published under, also when the host
//! reconnects in a session's last second and the next session starts right after; a part
//! that is not ready holds the recording back instead of leaving it out; a publish whose
//! `on_record_done` never comes (or that nginx never reported at all) holds it back only for
//! a short grace, its file on disk taken as it is. nginx's callbacks are
//! played by the test (with nginx's own fields, `clientid` included) over files made by a real
//! ffmpeg, so the order of events is the test's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::StatusCode;
use roommanager::media::scripted::{Behaviour, Call, ScriptedMedia};
use roommanager::media::{MediaError, SessionMedia};
use roommanager::model::{LiveSession, Record, RoomId, StoredDanmaku, UserId};
use roommanager::store::{unix_now, ChatEntry, Store};
use serde_json::json;

use crate::accounts::relaxed;
use crate::common::tools::{self, Tool};
use crate::common::{wait_for, TestServer};
use crate::lan::{hook, live_host};
use crate::media_rtmp::probe;
use crate::rooms::Site;

/// A crash left two sessions of one stream live: a quiet one, then one with a danmaku. The
/// first retry at the next start fails for both (the guessed ends are stored then); the one
/// after must ask for the same windows, reaching to the next session and to that start, never
/// to the guessed ends (the quiet session's would be empty, the other's cut at its danmaku).
#[tokio::test]
async fn a_crash_left_session_keeps_its_window_when_the_first_retry_fails() {
    let site = Site::start().await;
    let (host, _) = site.user("crashhost").await;
    let room = RoomId(site.room_of(host));
    let quiet_start = unix_now() - 300;
    let chatty_start = quiet_start + 100;
    let media = Arc::new(ScriptedMedia::default());
    let down = Behaviour::Fail(MediaError::Unavailable("down".into()));
    media.script(Call::Recording, [down.clone(), down]);
    let leave_live = |data: &Path| {
        let store = Store::open(data).expect("the store opens");
        let start = |title: &str, tag: &str, at| {
            store
                .start_tagged_live_session(
                    room,
                    UserId(host),
                    title.into(),
                    "hcrashed".into(),
                    Some(tag.into()),
                    at,
                )
                .expect("the store takes a session")
        };
        start("quiet", "a", quiet_start);
        let chatty = start("chatty", "b", chatty_start);
        let danmaku = StoredDanmaku {
            live: chatty.id,
            id: 0,
            user_id: UserId(host),
            nickname: "crashhost".into(),
            text: "still here".into(),
            offset_ms: 5_000,
            at: chatty_start + 5,
        };
        store
            .append_chat(&[ChatEntry::Danmaku(danmaku)])
            .expect("the store takes a danmaku");
    };
    let site = site.restart_scripted(media, leave_live, |_| {}).await;
    let first = wait_for(|| async {
        let asked = site.media.recordings_asked();
        (asked.len() == 2).then_some(asked)
    })
    .await;
    let boot = first[1].ended_at;
    assert!(boot >= chatty_start + 100, "{first:?}");
    let window = |tag: &str, started_at, ended_at| SessionMedia {
        host: roommanager::media::LiveId("hcrashed".into()),
        recording_tag: Some(tag.into()),
        started_at,
        ended_at,
        mixes: Vec::new(),
    };
    assert_eq!(
        first,
        [
            window("a", quiet_start, chatty_start),
            window("b", chatty_start, boot)
        ]
    );
    // Both still unsettled, with their guessed ends stored.
    let unsettled = site.server.app().store.unsettled_live_sessions().unwrap();
    let ends: Vec<Option<u64>> = unsettled.iter().map(|s| s.ended_at).collect();
    assert_eq!(ends, [Some(quiet_start), Some(chatty_start + 5)]);

    let site = site.restart(|_| {}).await;
    let records: Vec<Record> = wait_for(|| async {
        let records = site.server.app().store.records().unwrap();
        (records.len() == 2).then_some(records)
    })
    .await;
    let second = site.media.recordings_asked();
    assert_eq!(second[0], window("a", quiet_start, chatty_start));
    let (chatty, again) = (&second[1], second[1].ended_at);
    assert_eq!(*chatty, window("b", chatty_start, again));
    assert!(
        again >= boot,
        "the window reaches to this start: {second:?}"
    );
    let titles: Vec<&str> = records.iter().map(|r| r.title.as_str()).collect();
    assert_eq!(
        titles,
        ["crashhost's room · quiet", "crashhost's room · chatty"]
    );
    assert!(site
        .server
        .app()
        .store
        .unsettled_live_sessions()
        .unwrap()
        .is_empty());
}

// ---------------------------------------------------------------------------------------------
// The rtmp backend, with nginx's callbacks played by the test
// ---------------------------------------------------------------------------------------------

/// The rtmp backend without nginx: the test plays nginx's part.
struct Nginx {
    server: TestServer,
    secret: String,
}

impl Nginx {
    async fn start_in(data: tempfile::TempDir) -> Nginx {
        let server = TestServer::start_in(data, |c| {
            relaxed(c);
            c.rooms.record_delay_secs = 0;
        })
        .await;
        let secret = std::fs::read_to_string(server.data.path().join("nginx/conf/hook.secret"))
            .expect("a hook secret is generated at first start");
        Nginx { server, secret }
    }

    fn flv_dir(&self) -> PathBuf {
        self.server.data.path().join("media/flv")
    }

    /// nginx accepted a publish to `live` by connection `client`.
    async fn publish(&self, live: &str, code: &str, client: u32) {
        let form = format!("app=live&name={live}&code={code}&addr=127.0.0.1&clientid={client}");
        let status = hook(&self.server, "on_publish", Some(&self.secret), &form).await;
        assert_eq!(status, StatusCode::OK);
    }

    /// Connection `client`'s publish to `live` ended.
    async fn publish_done(&self, live: &str, client: u32) {
        let form = format!("app=live&name={live}&clientid={client}&call=publish_done");
        let status = hook(&self.server, "on_publish_done", Some(&self.secret), &form).await;
        assert_eq!(status, StatusCode::OK);
    }

    /// nginx closed the recording `file` of connection `client`'s publish to `live`.
    async fn record_done(&self, live: &str, file: &Path, client: u32) {
        let path = file.to_str().expect("a UTF-8 path");
        let form = format!(
            "app=live&name={live}&clientid={client}&call=record_done&path={}",
            form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
        );
        let status = hook(&self.server, "on_record_done", Some(&self.secret), &form).await;
        assert_eq!(status, StatusCode::OK);
    }

    /// The live session of `live` started last.
    fn session(&self, live: &str) -> LiveSession {
        let store = &self.server.app().store;
        let sessions = store.unsettled_live_sessions().unwrap();
        let id = sessions
            .iter()
            .rev()
            .find(|s| s.stream == live)
            .expect("a session of the stream")
            .id;
        store.live_session(id).unwrap().expect("the session")
    }

    /// The records, once there are `n` (within a minute: a recording may wait out the
    /// grace for a callback that never comes, then remux).
    async fn records(&self, n: usize) -> Vec<Record> {
        let store = self.server.app().store.clone();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let records = store.records().expect("the store answers");
            if records.len() == n {
                return records;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} records, not {n}",
                records.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// A recording as nginx writes it: `seconds` of a test pattern, as FLV, named `name`.
fn flv(dir: &Path, name: &str, seconds: u64) -> PathBuf {
    let file = dir.join(name);
    let made = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x180:rate=30")
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-f", "flv"])
        .arg(&file)
        .status()
        .expect("run ffmpeg");
    assert!(made.success());
    file
}

/// How long `record`'s video is, from the file the server serves.
async fn duration(server: &TestServer, record: &Record, scratch: &Path) -> f64 {
    let res = server.get(&record.url).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", record.url);
    let mp4 = scratch.join(format!("{}.mp4", record.id));
    std::fs::write(&mp4, res.bytes().await.unwrap()).unwrap();
    probe(&mp4, &[], "format=duration").parse().unwrap()
}

/// Session A: a part, then the host reconnects and nginx starts the second part in A's very
/// last second. Session B starts at once and nginx names B's part with a second inside A's
/// window (clocks are seconds). A's recording waits for its unfinished part meanwhile; then A
/// gets exactly its two parts (2 s + 3 s) and B exactly its own (4 s).
#[tokio::test]
async fn each_part_goes_to_the_session_it_was_published_under() {
    if !tools::require(&[Tool::Ffmpeg, Tool::Ffprobe]) {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let nginx = Nginx::start_in(tempfile::tempdir().unwrap()).await;
    let (mut host, live, code) = live_host(&nginx.server, "parthost").await;
    nginx.publish(&live, &code, 11).await;
    host.expect("on_air").await;
    let a = nginx.session(&live);
    let first = flv(&nginx.flv_dir(), &format!("{live}-{}.flv", a.started_at), 2);
    nginx.record_done(&live, &first, 11).await;
    nginx.publish(&live, &code, 12).await;
    // A lasts into a second second, so B's part below is inside A's window.
    wait_for(|| async { (unix_now() > a.started_at).then_some(()) }).await;
    host.send(json!({"type": "stop_live"})).await;
    host.expect("live_stopped").await;
    let ended = wait_for(|| async { nginx.session(&live).ended_at }).await;
    let reconnect = flv(&nginx.flv_dir(), &format!("{live}-{ended}.flv"), 3);

    host.send(json!({"type": "start_live", "title": "B"})).await;
    host.expect("live_started").await;
    nginx.publish(&live, &code, 13).await;
    let b_part = flv(&nginx.flv_dir(), &format!("{live}-{}.flv", a.started_at), 4);
    nginx.record_done(&live, &b_part, 13).await;
    host.expect_none("live_stopped", std::time::Duration::from_millis(300))
        .await;
    assert!(
        nginx.server.app().store.records().unwrap().is_empty(),
        "A waits for its reconnect's part"
    );
    nginx.record_done(&live, &reconnect, 12).await;
    let [record_a] = nginx.records(1).await.try_into().expect("one record");
    assert_eq!(record_a.live, a.id);
    let length = duration(&nginx.server, &record_a, scratch.path()).await;
    assert!((length - 5.0).abs() < 1.0, "A: {length:.1} s, not 2 + 3");

    host.send(json!({"type": "stop_live"})).await;
    host.expect("live_stopped").await;
    let records = nginx.records(2).await;
    let length = duration(&nginx.server, &records[1], scratch.path()).await;
    assert!((length - 4.0).abs() < 1.0, "B: {length:.1} s, not its 4");
}

/// A part that cannot be remuxed holds its session's recording back: nothing is listed (not
/// the rest without it), the session stays unsettled, and the next start, where the part is
/// remuxed again (whole this time), lists the whole recording.
#[tokio::test]
async fn a_part_not_ready_holds_the_recording_back_until_the_next_start() {
    if !tools::require(&[Tool::Ffmpeg, Tool::Ffprobe]) {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let nginx = Nginx::start_in(tempfile::tempdir().unwrap()).await;
    let (mut host, live, code) = live_host(&nginx.server, "heldhost").await;
    nginx.publish(&live, &code, 21).await;
    let session = nginx.session(&live);
    let start = session.started_at;
    let good = flv(&nginx.flv_dir(), &format!("{live}-{start}.flv"), 2);
    nginx.record_done(&live, &good, 21).await;
    nginx.publish(&live, &code, 22).await;
    let broken = nginx.flv_dir().join(format!("{live}-{}.flv", start + 1));
    std::fs::write(&broken, b"not a video").unwrap();
    nginx.record_done(&live, &broken, 22).await;
    host.send(json!({"type": "stop_live"})).await;
    host.expect("live_stopped").await;
    let rooms = &nginx.server.app().rooms;
    wait_for(|| async { (rooms.sessions_finishing() == 0).then_some(()) }).await;
    let store = &nginx.server.app().store;
    assert!(
        store.records().unwrap().is_empty(),
        "not listed without a part"
    );
    assert!(!store.live_session(session.id).unwrap().unwrap().settled);

    let data = nginx.server.stop_keep_data().await;
    let flv_dir = data.path().join("media/flv");
    let kept: Vec<PathBuf> = std::fs::read_dir(&flv_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let [kept] = kept.as_slice() else {
        panic!("the broken part is kept, filed under its session: {kept:?}");
    };
    let name = kept.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with(&format!("{live}-{}-", start + 1)),
        "{name}"
    );
    flv(&flv_dir, &name, 3);
    let nginx = Nginx::start_in(data).await;
    let [record] = nginx.records(1).await.try_into().expect("one record");
    assert_eq!(record.live, session.id);
    let length = duration(&nginx.server, &record, scratch.path()).await;
    assert!((length - 5.0).abs() < 1.0, "{length:.1} s, not 2 + 3");
}

/// Two publishes of one session whose recordings nginx never reports closed: one nginx gave up
/// on (it stopped waiting for the verdict RoomManager then gave: no file, no callback ever),
/// and one whose `on_record_done` is lost (its `on_publish_done` comes, its file is on disk).
/// Neither holds the session's recording for long: it is listed after the grace, with the
/// file on disk in it, and the session is settled.
#[tokio::test]
async fn a_publish_without_its_record_done_holds_the_recording_back_only_briefly() {
    if !tools::require(&[Tool::Ffmpeg, Tool::Ffprobe]) {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let nginx = Nginx::start_in(tempfile::tempdir().unwrap()).await;
    let (mut host, live, code) = live_host(&nginx.server, "losthost").await;
    nginx.publish(&live, &code, 31).await;
    host.expect("on_air").await;
    nginx.publish(&live, &code, 32).await;
    let session = nginx.session(&live);
    // nginx names the file after a second at or after the publish it accepted.
    let lost = flv(&nginx.flv_dir(), &format!("{live}-{}.flv", unix_now()), 3);
    nginx.publish_done(&live, 32).await;
    host.expect_where("on_air", |m| m["on_air"] == false).await;
    host.send(json!({"type": "stop_live"})).await;
    host.expect("live_stopped").await;

    let [record] = nginx.records(1).await.try_into().expect("one record");
    assert_eq!(record.live, session.id);
    let length = duration(&nginx.server, &record, scratch.path()).await;
    assert!(
        (length - 3.0).abs() < 1.0,
        "{length:.1} s, not the 3 on disk"
    );
    assert!(!lost.exists(), "the FLV was taken");
    let store = &nginx.server.app().store;
    assert!(store.live_session(session.id).unwrap().unwrap().settled);
}

/// A host reconnects and the first connection's `on_publish_done` comes after the second's
/// `on_publish`: the stream stays on air (a stop must still drop the live publisher, and its
/// recording is not taken while nginx writes it); the second one's end takes it off, once.
#[tokio::test]
async fn a_late_publish_done_of_a_replaced_connection_leaves_the_stream_on_air() {
    let nginx = Nginx::start_in(tempfile::tempdir().unwrap()).await;
    let (mut host, live, code) = live_host(&nginx.server, "latehost").await;
    for client in [51, 52] {
        nginx.publish(&live, &code, client).await;
        assert_eq!(host.expect("on_air").await["on_air"], true);
    }
    nginx.publish_done(&live, 51).await;
    nginx.publish_done(&live, 52).await;
    assert_eq!(host.expect("on_air").await["on_air"], false);
    host.expect_none("on_air", std::time::Duration::from_millis(500))
        .await;
}
