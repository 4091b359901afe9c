//! `/metrics` under abuse: invented HTTP methods cannot grow it, and only this machine or a
//! caller with `server.metrics_token` may read it.
//!
//! Callers from other addresses are simulated without leaving 127.0.0.1's rules: the real router
//! is served over in-memory streams whose peer address the test chooses, exactly as the server
//! hands a TCP peer's address to the handlers.

use std::net::SocketAddr;

use axum::serve::{Listener, ListenerExt};
use reqwest::{Method, StatusCode};
use roommanager::app::App;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::common::TestServer;

const TOKEN: &str = "prometheus-scrape-0123456789";

/// Connections handed to the router with a peer address of the test's choosing.
struct FakePeers(mpsc::UnboundedReceiver<(DuplexStream, SocketAddr)>);

impl Listener for FakePeers {
    type Io = DuplexStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (DuplexStream, SocketAddr) {
        match self.0.recv().await {
            Some(connection) => connection,
            // The test is over; nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

/// The app's router, served to callers that appear to come from any address.
struct Remote(mpsc::UnboundedSender<(DuplexStream, SocketAddr)>);

impl Remote {
    fn serve(app: &std::sync::Arc<App>) -> Remote {
        let (connections, incoming) = mpsc::unbounded_channel();
        let router = roommanager::web::router(app.clone());
        // `tap_io` makes the listener's own address type the connection info, as for TCP.
        let listener = FakePeers(incoming).tap_io(|_| {});
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Remote(connections)
    }

    /// `GET /metrics` from `peer`, with an `Authorization` header if given; status and body.
    async fn metrics(&self, peer: &str, authorization: Option<&str>) -> (u16, String) {
        let peer: SocketAddr = peer.parse().expect("a socket address");
        let (mut client, server) = tokio::io::duplex(1 << 20);
        self.0.send((server, peer)).expect("the router is served");
        let mut request =
            "GET /metrics HTTP/1.1\r\nHost: roommanager\r\nConnection: close\r\n".to_owned();
        if let Some(value) = authorization {
            request.push_str(&format!("Authorization: {value}\r\n"));
        }
        request.push_str("\r\n");
        client.write_all(request.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("read");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {head}"));
        (status, body.to_owned())
    }
}

#[track_caller]
fn assert_refused((status, body): (u16, String)) {
    assert_eq!(status, 403, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("token")),
        "{body}"
    );
}

#[track_caller]
fn assert_served((status, body): (u16, String)) {
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("# TYPE roommanager_http_requests_total counter"));
}

#[tokio::test]
async fn metrics_answer_this_machine_and_the_token_holder_only() {
    let server = TestServer::start_with(|c| c.server.metrics_token = TOKEN.to_owned()).await;
    let remote = Remote::serve(server.app());

    // Real loopback, over TCP.
    let res = server.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    // Loopback in every spelling: IPv4, IPv6, and IPv4 on a dual-stack listener.
    for peer in ["127.0.0.1:40000", "[::1]:40000", "[::ffff:127.0.0.1]:40000"] {
        assert_served(remote.metrics(peer, None).await);
    }

    for peer in [
        "203.0.113.7:40000",
        "[2001:db8::7]:40000",
        "[::ffff:203.0.113.7]:40000",
    ] {
        assert_refused(remote.metrics(peer, None).await);
        assert_refused(remote.metrics(peer, Some("Bearer not-the-token")).await);
        assert_refused(remote.metrics(peer, Some(&format!("Basic {TOKEN}"))).await);
        assert_served(remote.metrics(peer, Some(&format!("Bearer {TOKEN}"))).await);
    }
}

#[tokio::test]
async fn without_a_token_configured_no_bearer_opens_metrics_to_others() {
    let server = TestServer::start().await;
    let remote = Remote::serve(server.app());
    for authorization in [None, Some("Bearer "), Some("Bearer x"), Some("Bearer")] {
        assert_refused(remote.metrics("198.51.100.4:5000", authorization).await);
    }
    assert_served(remote.metrics("127.0.0.1:5000", None).await);
}

/// A method token of 8 KB of letters, different for every `seed`.
fn invented_method(seed: u64) -> Method {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let token: Vec<u8> = (0..8 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'A' + (state % 26) as u8
        })
        .collect();
    Method::from_bytes(&token).expect("letters make a valid method token")
}

/// The sum of the `roommanager_http_requests_total` series whose labels contain `labels`.
fn requests_with(text: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("roommanager_http_requests_total{") && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn two_thousand_invented_methods_leave_metrics_small() {
    let server = TestServer::start().await;
    let mut clients = JoinSet::new();
    for worker in 0..8u64 {
        let client = server.client.clone();
        let url = server.url("/");
        clients.spawn(async move {
            for i in 0..250 {
                let method = invented_method(worker * 1000 + i);
                let res = client.request(method, &url).send().await.expect("answered");
                assert!(res.status().is_client_error(), "{}", res.status());
            }
        });
    }
    clients.join_all().await;

    let res = server.get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = server.get("/metrics").await.text().await.expect("body");
    assert!(
        text.len() < 16 * 1024,
        "/metrics is {} bytes:\n{text:.2000}",
        text.len()
    );
    assert_eq!(requests_with(&text, "method=\"OTHER\""), 2000, "{text}");
    assert_eq!(
        requests_with(&text, "method=\"GET\",route=\"/healthz\",status=\"200\""),
        1,
        "{text}"
    );
}
