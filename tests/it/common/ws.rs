//! A WebSocket test client speaking RoomManager's protocol over a real connection.
//!
//! Every message received is kept in an inbox, in arrival order, until a test takes it: waiting
//! for one kind never throws the others away. An `error` that the test never asked for fails
//! it: `expect`, `sync` and `expect_none` refuse to pass over one, and a client dropped with an
//! error still in its inbox panics.

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
    /// Messages received and not yet taken by the test, oldest first.
    inbox: VecDeque<Value>,
    /// The close frame (code, reason), once the server closed the connection.
    pub closed: Option<(u16, String)>,
    /// Frames that carried several messages (a JSON array: a busy room's merged tick).
    pub merged_frames: usize,
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
        Self::try_connect_with(base, token, &[]).await
    }

    /// Like [`WsClient::try_connect`], with more handshake headers (e.g. `X-Forwarded-For`).
    pub async fn try_connect_with(
        base: &str,
        token: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let mut request = request(base, token)?;
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, value.parse().expect("header value"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self::over(socket))
    }

    /// Connects with the socket's kernel receive buffer set to `bytes` (`SO_RCVBUF`), for a
    /// client that stops reading and must be seen as slow at once.
    pub async fn connect_with_receive_buffer(base: &str, token: &str, bytes: u32) -> WsClient {
        let addr: std::net::SocketAddr = base
            .trim_start_matches("http://")
            .parse()
            .expect("the base is http://IP:PORT");
        let tcp = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        tcp.set_recv_buffer_size(bytes).expect("set SO_RCVBUF");
        let stream = tcp.connect(addr).await.expect("connect");
        let request = request(base, token).expect("a WebSocket request");
        let (socket, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .expect("WebSocket handshake");
        Self::over(socket)
    }

    /// Sets the socket's kernel receive buffer (`SO_RCVBUF`) to `bytes`: a client that stalled
    /// on purpose drains what piled up quickly once it reads again.
    pub fn set_receive_buffer(&self, bytes: u32) {
        use std::os::fd::AsRawFd;
        let MaybeTlsStream::Plain(tcp) = self.socket.get_ref() else {
            panic!("the test client speaks plain TCP");
        };
        let size = libc::c_int::try_from(bytes).expect("a buffer size that fits a C int");
        // SAFETY: a valid socket descriptor and an int-sized option value that outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                tcp.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
    }

    fn over(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        WsClient {
            socket,
            inbox: VecDeque::new(),
            closed: None,
            merged_frames: 0,
        }
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

    /// Sends a raw frame (binary, oversize, …) as it is.
    pub async fn send_frame(&mut self, frame: Message) {
        self.socket
            .send(frame)
            .await
            .expect("send a WebSocket frame");
    }

    /// Reads frames into the inbox until one arrives; `false` once the connection is closed or
    /// `deadline` passed.
    async fn receive(&mut self, deadline: tokio::time::Instant) -> bool {
        if self.closed.is_some() {
            return false;
        }
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) => {
                    self.closed.get_or_insert((1006, String::new()));
                    return false;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).expect("server sends JSON");
                    match value {
                        Value::Array(items) => {
                            self.merged_frames += 1;
                            self.inbox.extend(items);
                        }
                        one => self.inbox.push_back(one),
                    }
                    return true;
                }
                Message::Close(frame) => {
                    self.closed = Some(
                        frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new())),
                    );
                    return false;
                }
                _ => {}
            }
        }
    }

    /// Takes the first message in the inbox that `wanted` accepts, reading more until one comes
    /// or `wait` passes; the messages before it that `stale` accepts go too. An `error` the
    /// test did not ask for fails at once.
    async fn take(
        &mut self,
        wanted: impl Fn(&Value) -> bool,
        stale: impl Fn(&Value) -> bool,
        wait: Duration,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut looked = 0;
        loop {
            while looked < self.inbox.len() {
                let seen = &self.inbox[looked];
                if wanted(seen) {
                    let found = self.inbox.remove(looked);
                    let mut index = 0;
                    self.inbox.retain(|m| {
                        index += 1;
                        index > looked || !stale(m)
                    });
                    return found;
                }
                assert!(seen["type"] != "error", "unexpected error message: {seen}");
                looked += 1;
            }
            if !self.receive(deadline).await {
                return None;
            }
        }
    }

    /// Whether a message that `matches` has arrived already (and is still in the inbox), without
    /// reading more.
    pub fn received(&self, matches: impl Fn(&Value) -> bool) -> bool {
        self.inbox.iter().any(matches)
    }

    /// The next message of `kind`; other messages stay in the inbox for later.
    pub async fn expect(&mut self, kind: &str) -> Value {
        self.expect_where(kind, |_| true).await
    }

    /// The first message of `kind` that `matches`; messages of that kind before it are the
    /// states the test waits through (e.g. an audience count on its way up) and are dropped.
    pub async fn expect_where(&mut self, kind: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let found = self
            .take(
                |m| m["type"] == kind && matches(m),
                |m| m["type"] == kind,
                WAIT,
            )
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no matching {kind} message arrived (closed: {:?}; inbox: {:?})",
                    self.closed, self.inbox
                )
            });
        found
    }

    /// Waits for the `error` answering a message of type `about`; returns its code.
    pub async fn expect_error(&mut self, about: &str) -> String {
        assert!(!about.is_empty(), "name the message the error answers");
        let found = self
            .take(
                |m| m["type"] == "error" && m["about"] == about,
                |_| false,
                WAIT,
            )
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no error about {about} arrived (closed: {:?}; inbox: {:?})",
                    self.closed, self.inbox
                )
            });
        found["code"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits for an `error` with this code, whatever it answers; returns it whole.
    pub async fn expect_error_code(&mut self, code: &str) -> Value {
        self.take(
            |m| m["type"] == "error" && m["code"] == code,
            |_| false,
            WAIT,
        )
        .await
        .unwrap_or_else(|| {
            panic!(
                "no {code} error arrived (closed: {:?}; inbox: {:?})",
                self.closed, self.inbox
            )
        })
    }

    /// Asserts that no message of `kind` arrives within `wait` while the connection stays open.
    pub async fn expect_none(&mut self, kind: &str, wait: Duration) {
        if let Some(message) = self.take(|m| m["type"] == kind, |_| false, wait).await {
            panic!("unexpected {kind}: {message}");
        }
        assert!(
            self.closed.is_none(),
            "the connection closed while waiting for no {kind}: {:?}",
            self.closed
        );
    }

    /// A round trip: sends a ping and waits for its pong, so everything the server sent before
    /// has arrived. Takes and returns everything in the inbox (none of it may be an error).
    pub async fn sync(&mut self) -> Vec<Value> {
        let id = format!("sync-{}", rand_id());
        self.send(serde_json::json!({"type": "ping", "id": id}))
            .await;
        let wanted = id.clone();
        self.take(
            |m| m["type"] == "pong" && m["id"] == wanted.as_str(),
            |_| false,
            WAIT,
        )
        .await
        .unwrap_or_else(|| panic!("no pong (closed: {:?})", self.closed));
        self.inbox.drain(..).collect()
    }

    /// Waits until the server closes the connection; returns the close code and reason. Any
    /// messages still unread are dropped, except errors, which fail the test.
    pub async fn expect_closed(&mut self) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.receive(deadline).await {}
        let closed = self
            .closed
            .clone()
            .unwrap_or_else(|| panic!("the server did not close the connection"));
        let unread: Vec<Value> = self.inbox.drain(..).collect();
        assert!(
            !unread.iter().any(|m| m["type"] == "error"),
            "unexpected error before the close: {unread:?}"
        );
        closed
    }
}

impl Drop for WsClient {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Some(error) = self.inbox.iter().find(|m| m["type"] == "error") {
            panic!("an error message no test asked for: {error}");
        }
    }
}

/// The `/ws` upgrade request for `base`, authenticated with a bearer token.
fn request(
    base: &str,
    token: &str,
) -> Result<
    tokio_tungstenite::tungstenite::handshake::client::Request,
    tokio_tungstenite::tungstenite::Error,
> {
    let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    Ok(request)
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
