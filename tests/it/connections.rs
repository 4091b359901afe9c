//! Connections under abuse: silent sockets, slowloris headers, idle keep-alive, WebSockets that
//! never answer pings.
//! Every test also shows a well-behaved client served at the same time.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::ws::WsClient;
use crate::common::{wait_for, TestServer};

/// How long a test waits for the server to close something it should close.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

fn addr(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// A client whose connections come from `source` (any 127.x.y.z reaches the server on
/// 127.0.0.1, each as a client address of its own), one connection per request.
fn client_from(source: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(source))
        .pool_max_idle_per_host(0)
        .build()
        .expect("a reqwest client")
}

/// The value of one series in the server's `/metrics`, 0 when absent. Asked from an address
/// of its own, so that no test's cap on 127.0.0.1 gets in the way.
async fn metric(server: &TestServer, series: &str) -> u64 {
    let res = client_from([127, 0, 0, 9])
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.expect("metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Reads until the server closes the connection (end of file or reset); `false` if it is
/// still open after [`CLOSE_WAIT`]. Everything read is appended to `seen`.
async fn closed_by_server(stream: &mut TcpStream, seen: &mut Vec<u8>) -> bool {
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length`; returns (status, head, body).
async fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).await.expect("read a response");
        assert!(n > 0, "the connection closed before a response");
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let status = head[9..12].parse().expect("a status code");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("a Content-Length");
    while data.len() < head_end + length {
        let n = stream.read(&mut buf).await.expect("read the body");
        assert!(n > 0, "the connection closed in the body");
        data.extend_from_slice(&buf[..n]);
    }
    (status, head, data[head_end..head_end + length].to_vec())
}

/// Lets this process hold `wanted` more descriptors if the hard limit allows; returns how many
/// it may hold.
fn raise_open_files(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    limit.rlim_cur
}

#[tokio::test]
async fn silent_connections_are_closed_at_the_header_deadline_while_a_client_is_served() {
    // Both ends of every connection are in this process; leave room for the other tests.
    let allowed = raise_open_files(2 * 3000 + 2000);
    let silent = 3000.min(allowed.saturating_sub(2000) / 2) as usize;
    assert!(silent >= 500, "only {allowed} open files allowed");
    let server = TestServer::start_with(|c| c.server.header_timeout_secs = 2).await;
    let target = addr(&server);
    let mut sockets = Vec::with_capacity(silent);
    for _ in 0..silent {
        sockets.push(TcpStream::connect(&target).await.expect("connect"));
    }
    let opened = Instant::now();
    let waits: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let closed = closed_by_server(&mut socket, &mut seen).await;
                (closed, seen)
            })
        })
        .collect();
    let all_closed = async {
        for wait in waits {
            let (closed, seen) = wait.await.expect("reader task");
            assert!(closed, "a silent connection is still open");
            assert!(
                seen.is_empty(),
                "a silent connection got an answer: {seen:?}"
            );
        }
    };
    // A normal client asks again and again while the silent ones wait for their deadline.
    let served = async {
        loop {
            let res = server.get("/healthz").await;
            assert_eq!(res.status(), StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        () = all_closed => {}
        never = served => never,
    }
    eprintln!(
        "{silent} silent connections closed {:.2} s after the last was opened",
        opened.elapsed().as_secs_f64()
    );
    assert_eq!(server.get("/healthz").await.status(), StatusCode::OK);
    let dropped = metric(
        &server,
        "roommanager_connections_dropped_total{reason=\"header_timeout\"}",
    )
    .await;
    assert!(dropped >= silent as u64, "{dropped} of {silent}");
    // Only the normal client's connection (and the one asking) stays.
    wait_for(|| async {
        (metric(&server, "roommanager_http_connections").await <= 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_slowloris_client_dribbling_its_headers_is_dropped() {
    let server = TestServer::start_with(|c| c.server.header_timeout_secs = 2).await;
    let mut slow = TcpStream::connect(addr(&server)).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("the request line");
    let started = Instant::now();
    let mut sent = 0;
    // One byte every 100 ms: bytes keep arriving, but the head never ends.
    let closed = loop {
        if slow.write_all(b"a").await.is_err() {
            break true;
        }
        sent += 1;
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut byte)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => panic!("the server answered a request that never ended"),
        }
        if started.elapsed() > CLOSE_WAIT {
            break false;
        }
        // The normal client is served in between.
        if sent % 5 == 0 {
            assert_eq!(server.get("/healthz").await.status(), StatusCode::OK);
        }
    };
    assert!(closed, "still open after {sent} header bytes");
    assert_eq!(
        metric(
            &server,
            "roommanager_connections_dropped_total{reason=\"header_timeout\"}"
        )
        .await,
        1
    );
    assert_eq!(server.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_may_think_longer_than_the_header_deadline() {
    let server = TestServer::start_with(|c| {
        c.server.header_timeout_secs = 1;
        c.server.keepalive_idle_secs = 4;
    })
    .await;
    let mut conn = TcpStream::connect(addr(&server)).await.expect("connect");
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    conn.write_all(request).await.expect("first request");
    let (status, head, _) = read_response(&mut conn).await;
    assert_eq!(status, 200, "{head}");
    // Longer than the header deadline, shorter than the idle one: the connection is still
    // there for the next request.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    conn.write_all(request).await.expect("second request");
    let (status, head, _) = read_response(&mut conn).await;
    assert_eq!(status, 200, "{head}");
    let mut seen = Vec::new();
    assert!(
        closed_by_server(&mut conn, &mut seen).await,
        "the idle connection stays open"
    );
    assert!(seen.is_empty(), "{seen:?}");
    let reason = |r: &str| format!("roommanager_connections_dropped_total{{reason=\"{r}\"}}");
    assert_eq!(metric(&server, &reason("keepalive_idle")).await, 1);
    assert_eq!(metric(&server, &reason("header_timeout")).await, 0);
}

/// A guest's session token, created by `client`.
async fn guest(server: &TestServer, client: &reqwest::Client) -> String {
    let res = client
        .post(server.url("/api/v1/guest"))
        .send()
        .await
        .expect("POST /api/v1/guest");
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("JSON");
    body["token"].as_str().expect("token").to_owned()
}

/// The server's frames after the handshake, from raw bytes: (opcode, payload).
fn server_frames(mut data: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while data.len() >= 2 {
        let opcode = data[0] & 0x0f;
        let (len, start) = match data[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([data[2], data[3]])), 4),
            127 => panic!("no frame this large expected"),
            n => (usize::from(n), 2),
        };
        frames.push((opcode, data[start..start + len].to_vec()));
        data = &data[start + len..];
    }
    frames
}

#[tokio::test]
async fn a_websocket_that_never_answers_pings_is_closed_and_a_live_one_stays() {
    let server = TestServer::start_with(|c| {
        c.rooms.ws_ping_secs = 1;
        c.rooms.ws_idle_secs = 3;
    })
    .await;
    let token = guest(&server, &server.client).await;
    let mut live = WsClient::connect(&server.base, &token).await;
    let mut silent = TcpStream::connect(addr(&server)).await.expect("connect");
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    silent
        .write_all(handshake.as_bytes())
        .await
        .expect("handshake");
    let opened = Instant::now();
    // The silent client reads (it must see the close), but never sends a pong; the live client
    // answers pings as every WebSocket library and browser does.
    let mut seen = Vec::new();
    let (closed, ()) = tokio::join!(
        closed_by_server(&mut silent, &mut seen),
        live.expect_none("error", Duration::from_secs(5)),
    );
    assert!(closed, "the silent WebSocket stays open");
    let at = seen
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a handshake answer");
    assert!(
        seen.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&seen)
    );
    let frames = server_frames(&seen[at + 4..]);
    let pings = frames.iter().filter(|(op, _)| *op == 0x9).count();
    assert!(pings >= 2, "{frames:?}");
    let (op, close) = frames.last().expect("a close frame");
    assert_eq!(*op, 0x8, "{frames:?}");
    assert_eq!(close[..2], 1008u16.to_be_bytes());
    assert_eq!(&close[2..], b"ping_timeout");
    // The live client has outlived the idle time by far, and is still served.
    assert!(opened.elapsed() > Duration::from_secs(4));
    live.expect_none("error", Duration::from_secs(4)).await;
    live.sync().await;
    assert_eq!(
        metric(
            &server,
            "roommanager_connections_dropped_total{reason=\"ping_timeout\"}"
        )
        .await,
        1
    );
}
