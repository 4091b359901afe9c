//! Connections under abuse: silent sockets, slowloris headers, idle keep-alive, WebSockets that
//! never answer pings, the per-IP connection cap, and X-Forwarded-For from trusted proxies only.
//! Every test also shows a well-behaved client served at the same time.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use roommanager::config::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::accounts::relaxed;
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
pub(crate) async fn metric(server: &TestServer, series: &str) -> u64 {
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
    let server = TestServer::start_with(|c| {
        c.server.header_timeout_secs = 2;
        // The cap would refuse most of them; this test is about the header deadline alone.
        c.server.max_connections_per_ip = 0;
    })
    .await;
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
        .header("x-rm-csrf", "1")
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

#[tokio::test]
async fn the_per_ip_cap_refuses_one_more_connection_and_frees_a_slot_when_one_closes() {
    let server = TestServer::start_with(|c| c.server.max_connections_per_ip = 3).await;
    // Another address, for the set-up and for the client that must be served all along.
    let other = client_from([127, 0, 0, 2]);
    let token = guest(&server, &other).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(WsClient::connect(&server.base, &token).await);
    }
    // The fourth WebSocket from 127.0.0.1.
    let refused = WsClient::try_connect(&server.base, &token).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(answer)) = refused else {
        panic!("the fourth connection was not refused with an HTTP answer");
    };
    assert_eq!(answer.status(), 429);
    let body: Value =
        serde_json::from_slice(answer.body().as_deref().unwrap_or_default()).expect("JSON");
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
    // Plain HTTP, as a program and as a browser.
    let capped = client_from([127, 0, 0, 1]);
    let res = capped
        .get(server.url("/api/v1/rooms"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()[RETRY_AFTER], "1");
    assert_eq!(res.headers()[CONNECTION], "close");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 connections"),
        "{body}"
    );
    let page = capped.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // Everyone else, and the connections already open, are served.
    let res = other.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for socket in &mut sockets {
        socket.sync().await;
    }
    // One closes: its place is free again (once the server has seen it close).
    drop(sockets.pop());
    let again = wait_for(|| async { WsClient::try_connect(&server.base, &token).await.ok() }).await;
    sockets.push(again);
    for socket in &mut sockets {
        socket.sync().await;
    }
    let refusals = metric(
        &server,
        "roommanager_connections_dropped_total{reason=\"per_ip_cap\"}",
    )
    .await;
    assert!(refusals >= 3, "{refusals}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_cap_counts_each_forwarded_client() {
    let server = TestServer::start_with(|c| {
        c.server.max_connections_per_ip = 2;
        c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let token = guest(&server, &server.client).await;
    let via = |client: &'static str| [("x-forwarded-for", client)];
    let mut first = Vec::new();
    for _ in 0..2 {
        let ws = WsClient::try_connect_with(&server.base, &token, &via("203.0.113.9"))
            .await
            .expect("within the cap");
        first.push(ws);
    }
    let refused = WsClient::try_connect_with(&server.base, &token, &via("203.0.113.9")).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(answer)) = refused else {
        panic!("the third WebSocket of 203.0.113.9 was not refused with an HTTP answer");
    };
    assert_eq!(answer.status(), 429);
    let body: Value =
        serde_json::from_slice(answer.body().as_deref().unwrap_or_default()).expect("JSON");
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
    // Another client behind the same proxy is served; the proxy itself (127.0.0.1, four
    // connections open now) is not capped.
    let mut second = WsClient::try_connect_with(&server.base, &token, &via("203.0.113.10"))
        .await
        .expect("another client of the proxy");
    second.sync().await;
    assert_eq!(server.get("/healthz").await.status(), StatusCode::OK);
    // A WebSocket holds its client's place until it closes.
    drop(first.pop());
    let mut again = wait_for(|| async {
        WsClient::try_connect_with(&server.base, &token, &via("203.0.113.9"))
            .await
            .ok()
    })
    .await;
    again.sync().await;
    first[0].sync().await;
}

/// Failed logins with `forwarded` as X-Forwarded-For (none when empty); the statuses in order.
async fn failed_logins(server: &TestServer, forwarded: &str, times: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..times {
        let mut req = server
            .client
            .post(server.url("/api/v1/login"))
            .json(&json!({"login": "nobody", "password": "wrong password"}));
        if !forwarded.is_empty() {
            req = req.header("x-forwarded-for", forwarded);
        }
        statuses.push(
            req.send()
                .await
                .expect("POST /api/v1/login")
                .status()
                .as_u16(),
        );
    }
    statuses
}

fn two_logins_per_ip(c: &mut Config) {
    relaxed(c);
    c.limits.login_per_ip = 2;
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_when_a_trusted_proxy_sends_it() {
    let proxied = TestServer::start_with(|c| {
        two_logins_per_ip(c);
        c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    assert_eq!(
        failed_logins(&proxied, "198.51.100.1", 3).await,
        [401, 401, 429]
    );
    // What a client writes left of the address the proxy appended counts for nothing.
    assert_eq!(
        failed_logins(&proxied, "198.51.100.7, 198.51.100.1", 1).await,
        [429]
    );
    // Trusted hops on the right are skipped.
    assert_eq!(
        failed_logins(&proxied, "198.51.100.1, 127.0.0.1", 1).await,
        [429]
    );
    // Another client of the proxy has a budget of its own.
    assert_eq!(failed_logins(&proxied, "198.51.100.2", 2).await, [401, 401]);
    assert_eq!(
        failed_logins(&proxied, "[2001:db8::5]:4711", 1).await,
        [401]
    );
    // Without the header, or with one no proxy would write, the client is the proxy itself.
    assert_eq!(failed_logins(&proxied, "", 1).await, [401]);
    assert_eq!(
        failed_logins(&proxied, "not an address", 2).await,
        [401, 429]
    );

    // The same requests to a server that trusts no proxy: the header is ignored.
    let direct = TestServer::start_with(two_logins_per_ip).await;
    let mut statuses = Vec::new();
    for forwarded in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        statuses.extend(failed_logins(&direct, forwarded, 1).await);
    }
    assert_eq!(statuses, [401, 401, 429]);
}

#[tokio::test]
async fn an_ipv4_mapped_peer_is_its_ipv4_address() {
    // A dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1; the trusted proxy is listed as
    // 127.0.0.1 and must still be recognised.
    let server = TestServer::start_bound("[::]:0", |c| {
        two_logins_per_ip(c);
        c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    assert_eq!(failed_logins(&server, "198.51.100.1", 2).await, [401, 401]);
    assert_eq!(failed_logins(&server, "198.51.100.2", 2).await, [401, 401]);
    assert_eq!(failed_logins(&server, "198.51.100.1", 1).await, [429]);
}
