//! The builtin media backend end to end: RoomManager's own RTMP listener takes real ffmpeg
//! pushes (no nginx), each stream's ffmpeg writes the HLS viewers get and the recording, and the
//! open port holds against slow, hostile and malformed clients.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roommanager::config::{Config, MediaBackend};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::accounts::{relaxed, verified_user};
use crate::common::tools::{self, Tool};
use crate::common::ws::WsClient;
use crate::common::{wait_for, Process, TestServer};
use crate::media_rtmp::{
    a_stream_ban_drops_the_running_push_on, add_stream_ban, assert_accepted, assert_refused,
    go_live, live_and_pushing, pids_mentioning, probe, processes_mentioning, push, push_key,
    push_tracks, rotating_the_key_drops_a_running_push_on, wait_for_picture, wait_for_segment,
    write_flv,
};
use crate::session_end::download;

const PICTURE: &str = "testsrc=size=320x180:rate=30";

/// ffmpeg and ffprobe only: this backend needs no nginx.
pub(crate) fn tools_present() -> bool {
    tools::require(&[Tool::Ffmpeg, Tool::Ffprobe])
}

/// The builtin backend on an ephemeral loopback port.
pub(crate) fn builtin(c: &mut Config) {
    relaxed(c);
    c.media.backend = MediaBackend::Builtin;
    c.media.builtin.rtmp_listen = ([127, 0, 0, 1], 0).into();
    c.rooms.record_delay_secs = 1;
}

/// `host:port` of a push URL.
fn rtmp_address(push_url: &str) -> String {
    let rest = push_url.strip_prefix("rtmp://").expect("an rtmp:// URL");
    rest.split('/').next().expect("an address").to_owned()
}

/// The ffmpeg processes writing streams of this server (their command lines name its data dir).
fn writers(server: &TestServer) -> Vec<String> {
    processes_mentioning(server.data.path().to_str().expect("a UTF-8 temp dir"))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                files_under(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// Waits until `count` recordings are listed; the newest, downloaded into `into`.
async fn recording(server: &TestServer, count: usize, into: &Path) -> PathBuf {
    let record = wait_for(|| async {
        let records = server.app().store.records().unwrap();
        (records.len() == count).then(|| records.into_iter().last().unwrap())
    })
    .await;
    download(server, &record.url, into).await;
    into.to_owned()
}

#[tokio::test]
async fn pushes_with_audio_and_video_video_only_and_audio_only_play_and_are_recorded() {
    if !tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(builtin).await;
    let (_, token) = verified_user(&server, "kindshost").await;
    let mut host = WsClient::connect(&server.base, &token).await;
    let kinds = [(true, true), (true, false), (false, true)];
    for (session, (video, audio)) in kinds.into_iter().enumerate() {
        let seconds = 8;
        host.send(json!({"type": "start_live"})).await;
        let started = host.expect("live_started").await;
        let push_url = started["push_url"].as_str().unwrap().to_owned();
        let watch_url = started["watch_url"].as_str().unwrap().to_owned();
        let mut ffmpeg = push_tracks(
            &push_url,
            seconds,
            video.then_some(PICTURE),
            audio.then_some(440),
        );
        assert_eq!(host.expect("on_air").await["on_air"], true);
        if video {
            wait_for_picture(&server, &watch_url, scratch.path(), (320, 180)).await;
        } else {
            let codec = "stream=codec_name";
            wait_for_segment(&server, &watch_url, scratch.path(), "a:0", codec, "aac").await;
        }
        let status = tokio::time::timeout(Duration::from_secs(seconds + 20), ffmpeg.wait())
            .await
            .expect("the push ends")
            .unwrap();
        assert!(status.success());
        assert_eq!(host.expect("on_air").await["on_air"], false);
        host.send(json!({"type": "close_room"})).await;
        let mp4 = scratch.path().join(format!("{session}.mp4"));
        let mp4 = recording(&server, session + 1, &mp4).await;
        let duration: f64 = probe(&mp4, &[], "format=duration").parse().unwrap();
        assert!(
            (duration - seconds as f64).abs() <= 1.0,
            "video {video}, audio {audio}: {duration:.1} s recorded for a {seconds} s push"
        );
        let streams = probe(&mp4, &[], "stream=codec_type");
        assert_eq!(streams.contains("video"), video, "{streams}");
        assert_eq!(streams.contains("audio"), audio, "{streams}");
    }
}

#[tokio::test]
async fn wrong_code_unknown_stream_wrong_application_and_a_banned_host_are_refused_writing_nothing()
{
    if !tools_present() {
        return;
    }
    let server = TestServer::start_with(builtin).await;
    let (_, token) = verified_user(&server, "refusedhost").await;
    let (banned_id, banned_token) = verified_user(&server, "bannedhost").await;
    let (_host, push_url, _) = go_live(&server.base, &token).await;
    let (_banned, banned_push, _) = go_live(&server.base, &banned_token).await;
    add_stream_ban(&server, banned_id);

    let (base, code) = push_url.split_once("?code=").unwrap();
    let address = rtmp_address(&push_url);
    assert_refused(&server, &format!("{base}?code=x{code}"), "wrong code").await;
    let unknown = format!("rtmp://{address}/live/hnosuchstream?code={code}");
    assert_refused(&server, &unknown, "no such live stream").await;
    let wrong_app = push_url.replace("/live/", "/mix/");
    assert_refused(&server, &wrong_app, "wrong application").await;
    assert_refused(&server, &banned_push, "the host is banned from streaming").await;
    let media = server.data.path().join("media");
    assert_eq!(files_under(&media.join("hls")), Vec::<PathBuf>::new());
    assert_eq!(files_under(&media.join("flv")), Vec::<PathBuf>::new());
    assert_eq!(writers(&server), Vec::<String>::new());
    // The control: the right key is taken.
    assert_accepted(&server, &push_url).await;
}

/// A push whose video is not H.264 (here Sorenson H.263, FLV codec 2) is accepted by its key,
/// then ended as soon as its first frame shows the codec: nothing is written.
#[tokio::test]
async fn a_push_of_another_codec_is_ended_writing_nothing() {
    if !tools_present() {
        return;
    }
    let server = TestServer::start_with(builtin).await;
    let (_, token) = verified_user(&server, "h263host").await;
    let (mut host, push_url, _) = go_live(&server.base, &token).await;
    let mut ffmpeg = tokio::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "quiet",
            "-re",
            "-f",
            "lavfi",
            "-i",
            PICTURE,
        ])
        .args(["-t", "20", "-c:v", "flv1", "-f", "flv", &push_url])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert_eq!(host.expect("on_air").await["on_air"], true);
    assert_eq!(host.expect("on_air").await["on_air"], false);
    let status = tokio::time::timeout(Duration::from_secs(20), ffmpeg.wait())
        .await
        .expect("the push was ended")
        .unwrap();
    assert!(!status.success());
    let media = server.data.path().join("media");
    assert_eq!(files_under(&media.join("hls")), Vec::<PathBuf>::new());
    assert_eq!(files_under(&media.join("flv")), Vec::<PathBuf>::new());
    assert_accepted(&server, &push_url).await;
}

/// The newest segment number in a playlist.
fn last_segment(playlist: &str) -> Option<u64> {
    playlist
        .lines()
        .rev()
        .find_map(|l| l.strip_suffix(".ts")?.parse().ok())
}

async fn playlist(server: &TestServer, watch_url: &str) -> String {
    let res = server
        .client
        .get(server.url(watch_url))
        .send()
        .await
        .unwrap();
    if res.status() == StatusCode::OK {
        res.text().await.unwrap()
    } else {
        String::new()
    }
}

#[tokio::test]
async fn a_killed_pusher_ends_the_live_and_a_quick_reconnect_continues_the_playlist() {
    if !tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(builtin).await;
    let (_, token) = verified_user(&server, "killedhost").await;
    let (mut host, push_url, mut ffmpeg) = live_and_pushing(&server, &token).await;
    let live_id = push_key(&server, &token, false).await["live_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let watch_url = format!("/hls/live/{live_id}/index.m3u8");
    wait_for_picture(&server, &watch_url, scratch.path(), (320, 180)).await;
    let before = last_segment(&playlist(&server, &watch_url).await).expect("a segment");

    ffmpeg.kill().await.unwrap();
    assert_eq!(host.expect("on_air").await["on_air"], false);
    let mut again = push(&push_url, 60, 320, 180, 440);
    assert_eq!(host.expect("on_air").await["on_air"], true);
    let after = wait_for(|| async {
        let text = playlist(&server, &watch_url).await;
        last_segment(&text)
            .filter(|n| *n > before + 1)
            .map(|_| text)
    })
    .await;
    assert!(
        after.contains("#EXT-X-DISCONTINUITY") && !after.contains("#EXT-X-ENDLIST"),
        "the reconnect continues the same playlist, marked as a cut: {after}"
    );
    wait_for_picture(&server, &watch_url, scratch.path(), (320, 180)).await;
    again.kill().await.unwrap();
}

#[tokio::test]
async fn a_second_publisher_on_a_key_is_refused_and_one_ffmpeg_runs() {
    if !tools_present() {
        return;
    }
    let server = TestServer::start_with(builtin).await;
    let (_, token) = verified_user(&server, "twicepush").await;
    let (mut host, push_url, mut first) = live_and_pushing(&server, &token).await;
    wait_for(|| async { (writers(&server).len() == 1).then_some(()) }).await;
    assert_refused(&server, &push_url, "already publishing").await;
    assert_eq!(writers(&server).len(), 1, "{:?}", writers(&server));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first push goes on"
    );
    host.expect_none("on_air", Duration::from_millis(500)).await;
    first.kill().await.unwrap();
}

/// The default backend's start-up lines name its own listener's port for OBS (not nginx's).
#[test]
fn the_start_banner_names_the_builtin_listener() {
    let data = tempfile::tempdir().unwrap();
    let (builtin_port, nginx_port) = (crate::common::spare_port(), crate::common::spare_port());
    let config = format!(
        "[media.builtin]\nrtmp_listen = \"127.0.0.1:{builtin_port}\"\n\
         [media.rtmp]\nmanage_nginx = false\nrtmp_listen = \"127.0.0.1:{nginx_port}\"\n\
         [media]\nbackend = \"builtin\"\n"
    );
    let mut process = Process::serve(data.path(), &config);
    let banner = process.wait_for_line("OBS and ffmpeg push to");
    assert_eq!(
        banner.as_deref().and_then(|l| l.split("push to ").nth(1)),
        Some(format!("rtmp://127.0.0.1:{builtin_port}/live").as_str()),
        "{:?}",
        process.log
    );
}

#[tokio::test]
async fn a_silent_publisher_is_taken_over_by_a_publish_with_the_code() {
    if !tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    // Idle publishers are kept long: only the takeover can free the stream in time.
    let server = TestServer::start_with(|c| {
        builtin(c);
        c.media.builtin.idle_secs = 120;
    })
    .await;
    let (_, token) = verified_user(&server, "halfdead").await;
    let (mut host, push_url, watch_url) = go_live(&server.base, &token).await;
    let stream_key = push_url.rsplit('/').next().unwrap();
    let mut silent = RawRtmp::connect(&rtmp_address(&push_url)).await;
    silent.publish(stream_key).await;
    assert_eq!(host.expect("on_air").await["on_air"], true);
    // The policy's silence (2 s) has to pass; nothing to wait for but time.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (base, _) = push_url.split_once("?code=").unwrap();
    assert_refused(&server, &format!("{base}?code=wrong"), "already publishing").await;
    let mut ffmpeg = push(&push_url, 60, 320, 180, 440);
    assert_eq!(host.expect("on_air").await["on_air"], false);
    assert_eq!(host.expect("on_air").await["on_air"], true);
    assert!(silent.closed().await, "the silent publisher is dropped");
    wait_for_picture(&server, &watch_url, scratch.path(), (320, 180)).await;
    assert_eq!(writers(&server).len(), 1, "{:?}", writers(&server));
    ffmpeg.kill().await.unwrap();
}

#[tokio::test]
async fn rotating_the_key_drops_a_running_builtin_push() {
    if tools_present() {
        rotating_the_key_drops_a_running_push_on(builtin).await;
    }
}

#[tokio::test]
async fn a_stream_ban_drops_the_running_builtin_push() {
    if tools_present() {
        a_stream_ban_drops_the_running_push_on(builtin).await;
    }
}

/// A client that sends one byte a second, from `from`; whether the server closed it within a
/// minute.
async fn drip(from: &str, to: &str) -> bool {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(from.parse().unwrap()).unwrap();
    let Ok(mut stream) = socket.connect(to.parse().unwrap()).await else {
        return true;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut buf = [0u8; 4096];
    let dripping = async {
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => if !matches!(read, Ok(n) if n > 0) { return },
                _ = tick.tick() => if stream.write_all(&[3]).await.is_err() { return },
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), dripping)
        .await
        .is_ok()
}

#[tokio::test]
async fn two_hundred_slow_connections_are_closed_while_a_real_push_is_served() {
    if !tools_present() {
        return;
    }
    let server = TestServer::start_with(|c| {
        builtin(c);
        c.media.builtin.handshake_secs = 3;
        c.media.builtin.publish_secs = 5;
    })
    .await;
    let (_, token) = verified_user(&server, "slowhost").await;
    let (_host, push_url, _) = go_live(&server.base, &token).await;
    let address = rtmp_address(&push_url);
    // From another loopback address: over its per-IP cap they are closed at once, the others
    // at the handshake deadline; the real push comes from 127.0.0.1.
    let slow: Vec<_> = (0..200)
        .map(|_| tokio::spawn(drip_from(address.clone())))
        .collect();
    assert_accepted(&server, &push_url).await;
    for client in slow {
        assert!(client.await.unwrap(), "a slow connection was left open");
    }
    assert_accepted(&server, &push_url).await;
}

async fn drip_from(address: String) -> bool {
    drip("127.0.0.2:0", &address).await
}

// ---- a hand-driven RTMP client, for what ffmpeg never sends ----

fn amf_string(s: &str) -> Vec<u8> {
    let mut out = vec![0x02];
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    out
}

fn amf_number(n: f64) -> Vec<u8> {
    let mut out = vec![0x00];
    out.extend_from_slice(&n.to_be_bytes());
    out
}

fn amf_object(props: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0x03];
    for (key, value) in props {
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&[0, 0, 0x09]);
    out
}

/// A message framed as chunks of 128 bytes (the default size) on chunk stream `csid`.
fn chunks(csid: u8, type_id: u8, timestamp: u32, payload: &[u8]) -> Vec<Vec<u8>> {
    let mut first = vec![csid];
    first.extend_from_slice(&timestamp.min(0xff_fffe).to_be_bytes()[1..]);
    first.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    first.push(type_id);
    first.extend_from_slice(&1u32.to_le_bytes());
    let mut out = Vec::new();
    for (i, piece) in payload.chunks(128).enumerate() {
        let mut chunk = if i == 0 {
            first.clone()
        } else {
            vec![0xc0 | csid]
        };
        chunk.extend_from_slice(piece);
        out.push(chunk);
    }
    if payload.is_empty() {
        out.push(first);
    }
    out
}

struct RawRtmp {
    socket: TcpStream,
}

impl RawRtmp {
    /// Connected, past the handshake.
    async fn connect(address: &str) -> RawRtmp {
        let mut socket = TcpStream::connect(address).await.unwrap();
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[7u8; 1536]);
        socket.write_all(&c0c1).await.unwrap();
        let mut s = vec![0u8; 1 + 2 * 1536];
        socket.read_exact(&mut s).await.unwrap();
        assert_eq!(s[0], 3);
        assert_eq!(&s[1 + 1536..], &c0c1[1..], "S2 echoes C1");
        socket.write_all(&s[1..1 + 1536]).await.unwrap();
        RawRtmp { socket }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.unwrap();
    }

    async fn command(&mut self, values: &[Vec<u8>]) {
        let payload = values.concat();
        for chunk in chunks(3, 20, 0, &payload) {
            self.send(&chunk).await;
        }
    }

    /// Reads until `needle` shows up in what the server sent.
    async fn read_until(&mut self, needle: &[u8]) {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(needle.len()).any(|w| w == needle) {
            let n = tokio::time::timeout(Duration::from_secs(10), self.socket.read(&mut buf))
                .await
                .expect("the server answers")
                .unwrap();
            assert!(n > 0, "closed before {:?}", String::from_utf8_lossy(needle));
            seen.extend_from_slice(&buf[..n]);
        }
    }

    /// connect, createStream and publish `stream_key` in app `live`, as ffmpeg does them.
    async fn publish(&mut self, stream_key: &str) {
        let app = amf_object(&[("app", amf_string("live"))]);
        self.command(&[amf_string("connect"), amf_number(1.0), app])
            .await;
        self.read_until(b"NetConnection.Connect.Success").await;
        self.command(&[amf_string("createStream"), amf_number(2.0), vec![0x05]])
            .await;
        let publish = [
            amf_string("publish"),
            amf_number(3.0),
            vec![0x05],
            amf_string(stream_key),
            amf_string("live"),
        ];
        for chunk in chunks(8, 20, 0, &publish.concat()) {
            self.send(&chunk).await;
        }
        self.read_until(b"NetStream.Publish.Start").await;
    }

    /// Whether the server closes the connection within 10 s (reading, and ignoring, what it
    /// sends).
    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let reading = async {
            loop {
                match self.socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), reading)
            .await
            .is_ok()
    }
}

/// The tags of an FLV file: (type, timestamp, payload).
fn flv_tags(bytes: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
    let mut tags = Vec::new();
    let mut at = 13;
    while at + 11 <= bytes.len() {
        let size = u32::from_be_bytes([0, bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let stamp =
            u32::from_be_bytes([bytes[at + 7], bytes[at + 4], bytes[at + 5], bytes[at + 6]]);
        let payload = bytes[at + 11..at + 11 + size].to_vec();
        tags.push((bytes[at], stamp, payload));
        at += 11 + size + 4;
    }
    tags
}

#[tokio::test]
async fn malformed_input_closes_that_connection_only_and_interleaved_chunks_play() {
    if !tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(builtin).await;
    let (_, token) = verified_user(&server, "rawhost").await;
    let (mut host, push_url, watch_url) = go_live(&server.base, &token).await;
    let address = rtmp_address(&push_url);
    let stream_key = push_url.rsplit('/').next().unwrap().to_owned();

    // Chunk size 2^31-1.
    let mut raw = RawRtmp::connect(&address).await;
    raw.send(&chunks(2, 1, 0, &0x7fff_ffffu32.to_be_bytes()).concat())
        .await;
    assert!(
        raw.closed().await,
        "a 2^31-1 chunk size closes the connection"
    );
    // A 16 MiB message (the most a header can announce): closed once its header is read, long
    // before it could be buffered.
    let mut raw = RawRtmp::connect(&address).await;
    let mut header = vec![6u8, 0, 0, 0];
    header.extend_from_slice(&((16u32 << 20) - 1).to_be_bytes()[1..]);
    header.extend_from_slice(&[9, 1, 0, 0, 0]);
    header.extend_from_slice(&[0x17; 128]);
    raw.send(&header).await;
    assert!(raw.closed().await, "a 16 MiB message closes the connection");
    // Random bytes after the handshake, and instead of it.
    let mut noise = vec![0u8; 4096];
    let mut seed = 0x1234_5678_9abc_def1u64;
    for b in &mut noise {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    let mut raw = RawRtmp::connect(&address).await;
    raw.send(&noise).await;
    assert!(raw.closed().await, "random bytes close the connection");
    let mut stream = TcpStream::connect(&address).await.unwrap();
    noise[0] = 0x47;
    stream.write_all(&noise[..1537]).await.unwrap();
    let mut raw = RawRtmp { socket: stream };
    assert!(
        raw.closed().await,
        "a handshake that is not RTMP closes the connection"
    );

    // A publish by hand: an empty @setDataFrame, then real H.264 and AAC from an FLV, its
    // audio chunks sent between the chunks of its video messages (as OBS does).
    let flv = scratch.path().join("source.flv");
    write_flv(&flv, 8, true);
    let tags = flv_tags(&std::fs::read(&flv).unwrap());
    let mut raw = RawRtmp::connect(&address).await;
    raw.publish(&stream_key).await;
    assert_eq!(host.expect("on_air").await["on_air"], true);
    raw.send(&chunks(4, 18, 0, &amf_string("@setDataFrame")).concat())
        .await;
    let mut held_audio: Vec<Vec<u8>> = Vec::new();
    let started_at = Instant::now();
    for (type_id, stamp, payload) in tags.iter().filter(|t| t.0 == 8 || t.0 == 9) {
        // Real time, roughly, so the stream is live rather than a burst.
        let due = started_at + Duration::from_millis(u64::from(*stamp));
        tokio::time::sleep_until(due.into()).await;
        if *type_id == 8 {
            held_audio.extend(chunks(4, 8, *stamp, payload));
            continue;
        }
        for chunk in chunks(6, 9, *stamp, payload) {
            raw.send(&chunk).await;
            if let Some(audio) = (!held_audio.is_empty()).then(|| held_audio.remove(0)) {
                raw.send(&audio).await;
            }
        }
        for audio in held_audio.drain(..) {
            raw.send(&audio).await;
        }
    }
    wait_for_picture(&server, &watch_url, scratch.path(), (320, 180)).await;
    let codec = "stream=codec_name";
    wait_for_segment(&server, &watch_url, scratch.path(), "a:0", codec, "aac").await;
    // A publisher's 16 MiB message is refused too (media may be up to 8 MiB).
    raw.send(&header).await;
    assert!(
        raw.closed().await,
        "a 16 MiB media message closes the publish"
    );
    assert_eq!(host.expect("on_air").await["on_air"], false);

    // The server stayed up, and a real push is served.
    let health: Value = server.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["media"]["status"], "ok", "{health}");
    assert_accepted(&server, &push_url).await;
}

/// The stream's ffmpeg stops reading (SIGSTOP) while its publisher floods: the publisher is
/// dropped once `media.builtin.queue_bytes` wait, not after memory grew, and the next push is
/// served.
#[tokio::test]
async fn a_stalled_ffmpeg_drops_its_publisher_before_its_queue_grows() {
    if !tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(|c| {
        builtin(c);
        c.media.builtin.queue_bytes = 8 * 1024 * 1024;
    })
    .await;
    let (_, token) = verified_user(&server, "stallhost").await;
    let (mut host, push_url, _) = go_live(&server.base, &token).await;
    let address = rtmp_address(&push_url);
    let flv = scratch.path().join("source.flv");
    write_flv(&flv, 2, true);
    let mut raw = RawRtmp::connect(&address).await;
    raw.publish(push_url.rsplit('/').next().unwrap()).await;
    assert_eq!(host.expect("on_air").await["on_air"], true);
    let mut last = 0;
    for (type_id, stamp, payload) in flv_tags(&std::fs::read(&flv).unwrap()) {
        raw.send(&chunks(6, type_id, stamp, &payload).concat())
            .await;
        last = stamp;
    }
    let data = server.data.path().to_str().unwrap().to_owned();
    let pid = wait_for(|| async { pids_mentioning(&data).first().copied() }).await;
    let pid = i32::try_from(pid).unwrap();
    // SAFETY: kill(2) on a process this test found running; no memory effects.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let mut frame = vec![0x27, 1, 0, 0, 0];
    frame.resize(1024 * 1024, 0);
    let mut sent = 0usize;
    while sent < 64 * 1024 * 1024 {
        last += 33;
        let bytes = chunks(6, 9, last, &frame).concat();
        let write = raw.socket.write_all(&bytes);
        if !matches!(
            tokio::time::timeout(Duration::from_secs(10), write).await,
            Ok(Ok(()))
        ) {
            break;
        }
        sent += frame.len();
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(
        sent < 24 * 1024 * 1024,
        "the publisher was dropped before much more than the 8 MiB queue was sent ({sent} bytes)"
    );
    assert_eq!(host.expect("on_air").await["on_air"], false);
    assert_accepted(&server, &push_url).await;
}

/// SIGTERM while a host pushes to the real binary: it exits leaving no ffmpeg behind, and the
/// session's recording is finished (listed at the next start at the latest) with the length
/// that was pushed.
#[tokio::test]
async fn sigterm_leaves_no_ffmpeg_and_finishes_the_recording() {
    if !tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let setup = TestServer::start_with(builtin).await;
    let (_, token) = verified_user(&setup, "termhost").await;
    let data = setup.stop_keep_data().await;
    let data_text = data.path().to_str().unwrap().to_owned();
    let config = format!(
        "[media]\nbackend = \"builtin\"\n[media.builtin]\nrtmp_listen = \"127.0.0.1:{}\"\n\
         [rooms]\nrecord_delay_secs = 1\n",
        crate::common::spare_port()
    );
    let mut process = Process::serve(data.path(), &config);
    let (mut host, push_url, _) = go_live(&process.base, &token).await;
    let mut ffmpeg = push(&push_url, 60, 320, 180, 440);
    assert_eq!(host.expect("on_air").await["on_air"], true);
    let on_air = Instant::now();
    let hls = data.path().join("media/hls/live");
    wait_for(|| async {
        let segments = files_under(&hls)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "ts"))
            .count();
        (segments >= 2).then_some(())
    })
    .await;
    let pushed = on_air.elapsed().as_secs_f64();
    process.signal("-TERM");
    let status = process
        .wait_exit(Duration::from_secs(30))
        .expect("RoomManager exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert_eq!(processes_mentioning(&data_text), Vec::<String>::new());
    let _ = ffmpeg.kill().await;

    let server = TestServer::start_in(data, builtin).await;
    let mp4 = recording(&server, 1, &scratch.path().join("term.mp4")).await;
    let duration: f64 = probe(&mp4, &[], "format=duration").parse().unwrap();
    assert!(
        (duration - pushed).abs() <= 2.0,
        "{duration:.1} s recorded for about {pushed:.1} s pushed"
    );
}
