//! A WebSocket test client speaking RoomManager's protocol over a real connection.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for an expected message before failing.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Messages received but not yet looked at (a frame may carry an array of several).
    pending: VecDeque<Value>,
    /// The close frame's reason, once the server closed the connection.
    pub closed: Option<String>,
}

impl WsClient {
    /// Connects to `base`'s `/ws` with a bearer token.
    pub async fn connect(base: &str, token: &str) -> WsClient {
        Self::try_connect(base, token)
            .await
            .expect("WebSocket handshake")
    }

    pub async fn try_connect(
        base: &str,
        token: &str,
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(WsClient {
            socket,
            pending: VecDeque::new(),
            closed: None,
        })
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .await
            .expect("send a WebSocket message");
    }

    /// The next message, or `None` if the connection closed or nothing came within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        if let Some(message) = self.pending.pop_front() {
            return Some(message);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??;
            match frame.ok()? {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).expect("server sends JSON");
                    match value {
                        Value::Array(items) => self.pending.extend(items),
                        one => self.pending.push_back(one),
                    }
                    if let Some(message) = self.pending.pop_front() {
                        return Some(message);
                    }
                }
                Message::Close(frame) => {
                    self.closed = Some(frame.map(|f| f.reason.to_string()).unwrap_or_default());
                    return None;
                }
                _ => {}
            }
        }
    }

    /// Waits for the next message of `kind`, skipping others.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(message) if message["type"] == kind => return message,
                Some(_) => {}
                None => panic!("no {kind} message arrived (closed: {:?})", self.closed),
            }
        }
    }

    /// Waits for an `error` answering a message of type `about`; returns its code.
    pub async fn expect_error(&mut self, about: &str) -> String {
        loop {
            let error = self.expect("error").await;
            if error["about"] == about || about.is_empty() {
                return error["code"].as_str().unwrap_or_default().to_owned();
            }
        }
    }

    /// Asserts that no message of `kind` arrives within `wait` (other messages are skipped).
    pub async fn expect_none(&mut self, kind: &str, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(message) if message["type"] == kind => {
                    panic!("unexpected {kind}: {message}")
                }
                Some(_) => {}
                None => return,
            }
        }
    }

    /// A round trip: sends a ping and waits for its pong, so everything the server sent before
    /// has arrived. Returns the messages that came before the pong.
    pub async fn sync(&mut self) -> Vec<Value> {
        let id = format!("sync-{}", rand_id());
        self.send(serde_json::json!({"type": "ping", "id": id}))
            .await;
        let mut before = Vec::new();
        loop {
            let message = self
                .next_within(WAIT)
                .await
                .unwrap_or_else(|| panic!("no pong (closed: {:?})", self.closed));
            if message["type"] == "pong" && message["id"] == id.as_str() {
                return before;
            }
            before.push(message);
        }
    }

    /// Waits until the server closes the connection; returns the close reason.
    pub async fn expect_closed(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "the server did not close the connection");
            if self.next_within(left).await.is_none() && self.closed.is_none() {
                return String::new();
            }
        }
        self.closed.clone().unwrap_or_default()
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
