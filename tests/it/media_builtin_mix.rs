//! Co-streaming on the builtin media backend: the mixer reads the host's and the guest's real
//! pushes from the builtin listener's loopback relay (HTTP-FLV) and pushes the mix back into
//! the listener; the relay is reachable from this machine only, bounded, and drops a reader
//! that does not keep up.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use roommanager::config::{Config, ConfigError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::accounts::verified_user;
use crate::common::ws::WsClient;
use crate::common::{spare_port, wait_for, TestServer};
use crate::media_builtin::{builtin, tools_present};
use crate::media_rtmp::{
    guest_ends_co_stream, live_and_pushing, probe, processes_mentioning, push, wait_for_picture,
};
use crate::rooms::join;
use crate::session_end::{live_with_picture, on_stage, recorded, recorded_for};

const HOST_PUSH_SECS: u64 = 40;

#[tokio::test]
async fn a_co_stream_of_two_builtin_pushes_is_mixed_and_recorded() {
    if !tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(builtin).await;
    let data_dir = server.data.path().to_str().unwrap().to_owned();
    let (_, host_token) = verified_user(&server, "mixhost").await;
    let (fan_id, fan_token) = verified_user(&server, "mixfan").await;

    let (mut host, room, host_watch, mut host_push) = live_with_picture(
        &server,
        &host_token,
        "Mixed",
        HOST_PUSH_SECS,
        scratch.path(),
    )
    .await;

    // The fan joins as a guest and pushes a second pattern: the mix is twice as wide.
    let mut viewer = WsClient::connect(&server.base, &fan_token).await;
    join(&mut viewer, room).await;
    let connect = on_stage(&mut host, &mut viewer, fan_id).await;
    let guest_push_url = connect["push_url"].as_str().unwrap().to_owned();
    let mixed_watch = connect["watch_url"].as_str().unwrap().to_owned();
    let mut guest_push = push(&guest_push_url, 60, 640, 360, 880);
    wait_for_picture(&server, &mixed_watch, scratch.path(), (1280, 360)).await;

    // One mixer, reading both streams from the loopback relay, pushing back over RTMP.
    let mixed_id = mixed_watch.rsplit('/').nth(1).unwrap().to_owned();
    let mixers = processes_mentioning(&format!("/mix/{mixed_id}?"));
    assert_eq!(mixers.len(), 1, "one mixer runs: {mixers:?}");
    let guest_id = guest_push_url
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .unwrap();
    assert!(
        mixers[0].contains("-i http://127.0.0.1:")
            && mixers[0].contains(&format!("/guest/{guest_id}.flv")),
        "{mixers:?}"
    );

    // The host switches to picture-in-picture: the mixer restarts with the new layout.
    host.send(json!({"type": "update_room", "layout": "picture_in_picture"}))
        .await;
    wait_for_picture(&server, &mixed_watch, scratch.path(), (1280, 720)).await;

    guest_ends_co_stream(&mut host, &mut viewer, &host_watch).await;
    // The guest's push is dropped with the co-stream, and the mixer is gone.
    let guest_status = tokio::time::timeout(Duration::from_secs(20), guest_push.wait())
        .await
        .expect("the guest's push is dropped when the co-stream ends")
        .unwrap();
    assert!(!guest_status.success());
    wait_for(|| async {
        processes_mentioning(&format!("/mix/{mixed_id}?"))
            .is_empty()
            .then_some(())
    })
    .await;

    // The host pushes to the end and closes: the recording holds the mixed stretch (the
    // largest frame among its parts is the mix's).
    let status = tokio::time::timeout(Duration::from_secs(HOST_PUSH_SECS + 20), host_push.wait())
        .await
        .expect("the host's push ends")
        .unwrap();
    assert!(status.success(), "the host's push failed");
    host.send(json!({"type": "close_room"})).await;
    viewer.expect("room_closed").await;
    let record = recorded(&server, 1).await.remove(0);
    let mp4 = scratch.path().join("record.mp4");
    recorded_for(&server, &record, &mp4, HOST_PUSH_SECS).await;
    assert_eq!(
        probe(&mp4, &["-select_streams", "v:0"], "stream=width,height"),
        "1280,720",
        "the recording is sized for the mix"
    );

    drop(viewer);
    server.stop().await;
    wait_for(|| async { processes_mentioning(&data_dir).is_empty().then_some(()) }).await;
}

/// The relay's address is a loopback one, always: the config refuses any other.
#[test]
fn the_relay_cannot_be_put_on_a_network_address() {
    let mut config = Config::default();
    config.media.builtin.relay_listen = ([0, 0, 0, 0], 9000).into();
    match config.validate() {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "media.builtin.relay_listen"),
        other => panic!("a network address for the relay was taken: {other:?}"),
    }
}

/// The start of an HTTP answer: status line and headers.
async fn answer_head(socket: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut byte))
            .await
            .expect("the relay answers")
            .unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

async fn get(relay: &str, path: &str) -> (TcpStream, String) {
    let mut socket = TcpStream::connect(relay).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {relay}\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let head = answer_head(&mut socket).await;
    (socket, head)
}

/// Linux's `TCP_CLOSE` state (`include/net/tcp_states.h`): what a reset leaves.
const TCP_CLOSE: u8 = 7;

/// The TCP state of `socket` as the kernel has it (`TCP_CLOSE` once the peer reset it).
fn tcp_state(socket: &TcpStream) -> u8 {
    // SAFETY: `tcp_info` is plain data; the kernel fills at most `len` bytes of it.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let got = libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        assert_eq!(got, 0, "TCP_INFO");
        info.tcpi_state
    }
}

/// FLV tags from the start of a relay's body: (type, first payload bytes).
async fn first_tags(socket: &mut TcpStream, count: usize) -> Vec<(u8, [u8; 2])> {
    let mut header = [0u8; 13];
    socket.read_exact(&mut header).await.unwrap();
    assert_eq!(&header[..3], b"FLV");
    let mut tags = Vec::new();
    for _ in 0..count {
        let mut head = [0u8; 11];
        socket.read_exact(&mut head).await.unwrap();
        let size = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
        let mut payload = vec![0u8; size + 4];
        socket.read_exact(&mut payload).await.unwrap();
        tags.push((head[0], [payload[0], payload[1]]));
    }
    tags
}

#[tokio::test]
async fn the_relay_is_loopback_only_bounded_and_drops_a_slow_reader() {
    if !tools_present() {
        return;
    }
    let port = spare_port();
    let server = TestServer::start_with(|c| {
        builtin(c);
        c.media.builtin.relay_listen = ([127, 0, 0, 1], port).into();
    })
    .await;
    let relay = format!("127.0.0.1:{port}");

    // From this machine's network addresses the port does not answer.
    let others: Vec<_> = roommanager::site::interface_addresses()
        .into_iter()
        .filter(|ip| !ip.is_loopback())
        .collect();
    for ip in &others {
        let tried = TcpStream::connect((*ip, port)).await;
        assert!(tried.is_err(), "the relay answered on {ip}");
    }

    let (_, token) = verified_user(&server, "relayhost").await;
    let (_host, push_url, mut ffmpeg) = live_and_pushing(&server, &token).await;
    let live_id = push_url
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .unwrap()
        .to_owned();
    let path = format!("/live/{live_id}.flv");

    // Bad requests and unknown streams are answered and closed.
    let (_, head) = get(&relay, "/live/nobody.flv").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let mut bad = TcpStream::connect(&relay).await.unwrap();
    bad.write_all(b"POST / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(answer_head(&mut bad).await.starts_with("HTTP/1.1 400"));
    let mut giant = TcpStream::connect(&relay).await.unwrap();
    let _ = giant.write_all(&vec![b'a'; 64 * 1024]).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), giant.read_to_end(&mut rest))
        .await
        .expect("an endless request is closed");

    // A reader starts with the decoder's settings, then a keyframe, whenever it joins.
    // Offered once the first media shows the stream's tracks (a moment after it is on air).
    let (mut good, head) = wait_for(|| async {
        let (socket, head) = get(&relay, &path).await;
        (!head.starts_with("HTTP/1.1 404")).then_some((socket, head))
    })
    .await;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("video/x-flv"),
        "{head}"
    );
    let tags = first_tags(&mut good, 4).await;
    assert_eq!(tags[0].0, 18, "metadata first: {tags:?}");
    assert!(
        tags.contains(&(9, [0x17, 0])),
        "the H.264 configuration: {tags:?}"
    );
    assert!(
        tags.contains(&(8, [0xaf, 0])),
        "the AAC configuration: {tags:?}"
    );
    assert_eq!(
        (tags[3].0, tags[3].1[0] >> 4),
        (9, 1),
        "then a keyframe: {tags:?}"
    );
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = read.clone();
    let reading = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = good.read(&mut buf).await {
            counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    });

    // A reader that takes nothing is reset; the one that reads goes on.
    let slow = TcpSocket::new_v4().unwrap();
    slow.set_recv_buffer_size(2048).unwrap();
    let mut slow = slow.connect(relay.parse().unwrap()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {relay}\r\n\r\n");
    slow.write_all(request.as_bytes()).await.unwrap();
    let dropped_at =
        wait_for(|| async { (tcp_state(&slow) == TCP_CLOSE).then(Instant::now) }).await;
    let before = read.load(std::sync::atomic::Ordering::Relaxed);
    wait_for(|| async {
        (read.load(std::sync::atomic::Ordering::Relaxed) > before + 10_000).then_some(())
    })
    .await;
    assert!(dropped_at.elapsed() < Duration::from_secs(40));

    // More readers than the cap: the one over it is answered 503; the good one goes on.
    let mut idle = Vec::new();
    for _ in 0..roommanager::media::builtin::relay::MAX_READERS {
        idle.push(TcpStream::connect(&relay).await.unwrap());
    }
    let (_, head) = get(&relay, &path).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    drop(idle);
    wait_for(|| async {
        let (_, head) = get(&relay, &path).await;
        head.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
    assert!(!reading.is_finished(), "the reader that keeps up is served");

    // The publisher leaves: its readers' streams end.
    ffmpeg.kill().await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), reading)
        .await
        .expect("a reader's stream ends with its publisher")
        .unwrap();
    let (_, head) = get(&relay, &path).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}
