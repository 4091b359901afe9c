//! Going live without OBS (`/ws/publish`): a client sends the WebM or Matroska bytes a page's
//! MediaRecorder would (here made by a real ffmpeg), RoomManager's own ffmpeg pushes them into
//! the real nginx-rtmp, and viewers get HLS. Also: who may publish, one publisher per stream,
//! the end of a push when its socket closes, and the limits (bad streams, text frames, giant
//! frames, silent sockets, a stalled encoder).

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::accounts::{relaxed, verified_user};
use crate::common::ws::WsClient;
use crate::common::TestServer;
use crate::media_rtmp::{media_tools_present, wait_for_picture};
use crate::rooms::Site;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `/ws/publish?room=…` as `token`; the refusal's HTTP status and body when refused.
async fn open_publish(base: &str, token: &str, room: u64) -> Result<Socket, (u16, Value)> {
    let url = format!(
        "{}/ws/publish?room={room}",
        base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().expect("a WebSocket request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(_)) => Err(refusal(base, token, room).await),
        Err(e) => panic!("the publish handshake failed: {e}"),
    }
}

/// The status and `error` object of a refused publish handshake (the WebSocket client keeps no body,
/// so the same handshake is made again over plain HTTP).
async fn refusal(base: &str, token: &str, room: u64) -> (u16, Value) {
    let res = reqwest::Client::new()
        .get(format!("{base}/ws/publish?room={room}"))
        .bearer_auth(token)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("the server answers");
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body["error"].clone())
}

/// A real ffmpeg writing `seconds` of a test pattern with a tone to its stdout as `format`
/// (`webm`: VP8 + Opus, as Chromium's MediaRecorder makes by default; `matroska`: H.264 + Opus).
fn recorder(format: &str, seconds: u64) -> Child {
    let video: &[&str] = if format == "webm" {
        &["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "500k"]
    } else {
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ]
    };
    Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=320x240:rate=30:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args(video)
        .args(["-g", "30", "-c:a", "libopus", "-f", format, "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg starts")
}

/// Sends what `recorder` writes as binary frames until it ends or the socket is refused.
async fn send_recording(socket: &mut Socket, recorder: &mut Child) {
    let mut out = recorder.stdout.take().expect("stdout is piped");
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let n = out.read(&mut buffer).await.expect("read ffmpeg's output");
        if n == 0 {
            return;
        }
        if socket
            .send(Message::Binary(buffer[..n].to_vec().into()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The next JSON text frame from the server (status or error), `None` once the socket closed.
async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("the server says something within 30 s");
        match frame {
            Some(Ok(Message::Text(text))) => {
                return Some(serde_json::from_str(&text).expect("JSON text frames"))
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Reads until an `error` arrives; returns its code, and checks the socket closes after it.
async fn expect_error(socket: &mut Socket) -> String {
    while let Some(message) = next_json(socket).await {
        if message["type"] == "error" {
            let code = message["code"].as_str().expect("a code").to_owned();
            assert!(next_json(socket).await.is_none(), "closed after the error");
            return code;
        }
    }
    panic!("the socket closed without an error");
}

/// The arguments of the running ffmpeg that pushes `live_id` from a browser upload.
fn push_process(live_id: &str) -> Option<(i32, String)> {
    let out = std::process::Command::new("ps")
        .args(["-eo", "pid=,args="])
        .output()
        .expect("ps runs");
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let l = l.trim();
        (l.contains("pipe:0") && l.contains(live_id)).then(|| {
            let (pid, args) = l.split_once(' ').expect("pid and args");
            (pid.parse().expect("a pid"), args.to_owned())
        })
    })
}

async fn real_media_site(adjust: impl FnOnce(&mut roommanager::config::Config)) -> TestServer {
    TestServer::start_with(|c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
        adjust(c);
    })
    .await
}

/// The host goes live; returns the host's socket, room and the live session's stream id.
async fn go_live(server: &TestServer, token: &str) -> (WsClient, u64, String, String) {
    let mut host = WsClient::connect(&server.base, token).await;
    host.send(json!({"type": "start_live"})).await;
    let started = host.expect("live_started").await;
    let room = started["room_id"].as_u64().expect("a room id");
    let live_id = started["live_id"].as_str().expect("a live id").to_owned();
    let watch_url = started["watch_url"]
        .as_str()
        .expect("a watch url")
        .to_owned();
    (host, room, live_id, watch_url)
}

#[tokio::test]
async fn a_webm_upload_goes_live_for_viewers_and_ends_with_its_socket() {
    if !media_tools_present() {
        return;
    }
    let server = real_media_site(|_| {}).await;
    let (_, token) = verified_user(&server, "camhost").await;
    let (_, stranger) = verified_user(&server, "stranger").await;
    let (mut host, room, live_id, watch_url) = go_live(&server, &token).await;

    let socket = open_publish(&server.base, &token, room)
        .await
        .expect("the host may publish");
    let mut webm = recorder("webm", 60);
    let mut out = webm.stdout.take().expect("stdout is piped");
    let (mut sink, mut stream) = socket.split();
    let sender = tokio::spawn(async move {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            let n = out.read(&mut buffer).await.expect("read ffmpeg's output");
            if n == 0
                || sink
                    .send(Message::Binary(buffer[..n].to_vec().into()))
                    .await
                    .is_err()
            {
                return sink;
            }
        }
    });
    assert_eq!(host.expect("on_air").await["on_air"], true);
    let dir = tempfile::tempdir().unwrap();
    wait_for_picture(&server, &watch_url, dir.path(), (320, 240)).await;
    let (_, args) = push_process(&live_id).expect("the push's ffmpeg runs");
    assert!(args.contains("libx264"), "VP8 is converted: {args}");

    // The page hears how its push goes.
    let status = loop {
        let Some(Ok(Message::Text(text))) = stream.next().await else {
            panic!("the publish socket closed");
        };
        let status: Value = serde_json::from_str(&text).unwrap();
        if status["state"] == "pushing" && status["bytes"].as_u64() > Some(10_000) {
            break status;
        }
    };
    assert_eq!(status["type"], "publish_status");
    assert_eq!(status["dropped"], 0);

    // One browser publisher per stream; only the room's live host may publish to it.
    let (code, body) = open_publish(&server.base, &token, room)
        .await
        .expect_err("refused");
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("already_publishing"))
    );
    let (code, body) = open_publish(&server.base, &stranger, room)
        .await
        .expect_err("refused");
    assert_eq!((code, body["code"].as_str()), (403, Some("not_publisher")));

    // Closing the page's socket ends the push: the room goes off the air.
    sender.abort();
    drop(stream);
    assert_eq!(host.expect("on_air").await["on_air"], false);
    wait_for_gone(&live_id).await;
    // And the host may publish again.
    let mut socket = open_publish(&server.base, &token, room)
        .await
        .expect("publish again");
    let mut again = recorder("webm", 30);
    tokio::spawn(async move { send_recording(&mut socket, &mut again).await });
    assert_eq!(host.expect("on_air").await["on_air"], true);
}

async fn wait_for_gone(live_id: &str) {
    crate::common::wait_for(|| async { push_process(live_id).is_none().then_some(()) }).await;
}

#[tokio::test]
async fn an_h264_upload_is_copied_not_converted() {
    if !media_tools_present() {
        return;
    }
    let server = real_media_site(|_| {}).await;
    let (_, token) = verified_user(&server, "h264host").await;
    let (mut host, room, live_id, watch_url) = go_live(&server, &token).await;
    let mut socket = open_publish(&server.base, &token, room)
        .await
        .expect("the host may publish");
    let mut mkv = recorder("matroska", 60);
    tokio::spawn(async move { send_recording(&mut socket, &mut mkv).await });
    assert_eq!(host.expect("on_air").await["on_air"], true);
    let dir = tempfile::tempdir().unwrap();
    wait_for_picture(&server, &watch_url, dir.path(), (320, 240)).await;
    let (_, args) = push_process(&live_id).expect("the push's ffmpeg runs");
    assert!(args.contains("-c:v copy"), "H.264 is copied: {args}");
}

#[tokio::test]
async fn a_stalled_encoder_drops_the_upload_instead_of_buffering_it() {
    if !media_tools_present() {
        return;
    }
    let server = real_media_site(|c| {
        c.media.browser.max_frame_bytes = 64 * 1024;
        c.media.browser.queue_bytes = 512 * 1024;
    })
    .await;
    let (_, token) = verified_user(&server, "stallhost").await;
    let (_, room, live_id, _) = go_live(&server, &token).await;
    let mut socket = open_publish(&server.base, &token, room)
        .await
        .expect("the host may publish");
    // A real stream's header starts the push's ffmpeg.
    let mut webm = recorder("webm", 60);
    let mut out = webm.stdout.take().expect("stdout is piped");
    let mut head = vec![0u8; 32 * 1024];
    let n = out.read(&mut head).await.unwrap();
    socket
        .send(Message::Binary(head[..n].to_vec().into()))
        .await
        .unwrap();
    let pid =
        crate::common::wait_for(|| async { push_process(&live_id).map(|(pid, _)| pid) }).await;
    // SAFETY: kill(2) on a process this test found running; no memory effects.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let filler = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    while sent < 64 * 1024 * 1024 {
        if socket
            .send(Message::Binary(filler.clone().into()))
            .await
            .is_err()
        {
            break;
        }
        sent += filler.len();
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(1), socket.next()).await
        {
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["type"] == "error" {
                assert_eq!(message["code"], "too_slow", "{message}");
                break;
            }
        }
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(
        sent < 8 * 1024 * 1024,
        "the upload was dropped long before 8 MiB were buffered (sent {sent} bytes)"
    );
    wait_for_gone(&live_id).await;
}

#[tokio::test]
async fn bad_uploads_and_silent_sockets_end_the_push_with_a_reason() {
    let site = Site::start_with(|c| {
        relaxed(c);
        c.media.browser.max_frame_bytes = 64 * 1024;
        c.media.browser.idle_secs = 1;
    })
    .await;
    let server = &site.server;
    let (_, token) = verified_user(server, "badhost").await;
    let (_, room, _, _) = go_live(server, &token).await;

    let mut socket = open_publish(&server.base, &token, room)
        .await
        .expect("the host may publish");
    socket
        .send(Message::Binary(b"GIF89a not a video".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(expect_error(&mut socket).await, "bad_stream");

    let mut socket = open_publish(&server.base, &token, room)
        .await
        .expect("the host may publish");
    socket.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(expect_error(&mut socket).await, "bad_message");

    let mut socket = open_publish(&server.base, &token, room)
        .await
        .expect("the host may publish");
    assert_eq!(expect_error(&mut socket).await, "idle");

    // A frame over media.browser.max_frame_bytes closes the socket at the WebSocket layer.
    let mut socket = open_publish(&server.base, &token, room)
        .await
        .expect("the host may publish");
    let _ = socket
        .send(Message::Binary(vec![0x1A; 65 * 1024].into()))
        .await;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
            Ok(_) => break None,
            Err(_) => panic!("a giant frame must end the socket"),
        }
    };
    assert!(
        matches!(closed, None | Some(CloseCode::Size)),
        "closed with {closed:?}"
    );

    // Still served: a host that behaves can open a push again.
    let mut socket = open_publish(&server.base, &token, room)
        .await
        .expect("the host may publish");
    let status = next_json(&mut socket).await.expect("a status");
    assert_eq!(status["state"], "waiting");
}

#[tokio::test]
async fn only_a_live_host_or_a_guest_on_stage_may_publish() {
    let site = Site::start_with(|c| {
        relaxed(c);
    })
    .await;
    let server = &site.server;
    let (host_id, token) = verified_user(server, "idlehost").await;
    let room = site.room_of(host_id);
    let (code, body) = open_publish(&server.base, &token, room)
        .await
        .expect_err("refused");
    assert_eq!(
        (code, body["code"].as_str()),
        (403, Some("not_publisher")),
        "not live yet"
    );
    let (code, _) = open_publish(&server.base, "not-a-token", room)
        .await
        .expect_err("refused");
    assert_eq!(code, 401);
    let (code, body) = open_publish(&server.base, &token, 999_999)
        .await
        .expect_err("refused");
    assert_eq!((code, body["code"].as_str()), (403, Some("not_publisher")));

    let (mut host, room, _, _) = go_live(server, &token).await;
    let (guest_id, guest_token) = verified_user(server, "stageguest").await;
    let (code, _) = open_publish(&server.base, &guest_token, room)
        .await
        .expect_err("refused");
    assert_eq!(code, 403, "not on stage yet");
    let mut guest = WsClient::connect(&server.base, &guest_token).await;
    crate::rooms::join(&mut guest, room).await;
    guest.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": guest_id, "accept": true}))
        .await;
    guest.expect("connect_started").await;
    let mut socket = open_publish(&server.base, &guest_token, room)
        .await
        .expect("the guest on stage may publish");
    assert_eq!(
        next_json(&mut socket).await.expect("a status")["state"],
        "waiting"
    );

    // Logging out ends the push.
    let res = server
        .client
        .post(server.url("/api/v1/logout"))
        .bearer_auth(&guest_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(expect_error(&mut socket).await, "session_ended");
}

#[tokio::test]
async fn publishing_can_be_turned_off() {
    let site = Site::start_with(|c| {
        relaxed(c);
        c.media.browser.enabled = false;
    })
    .await;
    let (_, token) = verified_user(&site.server, "offhost").await;
    let (_, room, _, _) = go_live(&site.server, &token).await;
    let (code, body) = open_publish(&site.server.base, &token, room)
        .await
        .expect_err("refused");
    assert_eq!(
        (code, body["code"].as_str()),
        (403, Some("publish_disabled"))
    );
}
