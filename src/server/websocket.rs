//! The server side of RFC 6455 for `/ws`, written for fan-out: a server frame is unmasked, so a
//! room builds each event's complete frame (header and JSON) once and every member's writer hands
//! those same shared bytes to its socket, a batch at a time with one vectored write. Nothing is
//! framed or copied per connection, and an idle connection holds no buffer: the reader reads
//! into the stack and keeps bytes only while a frame is incomplete.
//!
//! - [`WebSocketUpgrade`]: the handshake (an axum extractor) and the `101` answer;
//! - [`Reader`]: masked client frames, fragmented messages, the message size limit (close 1009),
//!   UTF-8 text (close 1007), control frames;
//! - [`Writer`]: prebuilt frames, pings, the close frame.
//!
//! Calls: hyper (the upgrade), nothing of the app's.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use base64::Engine;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};

/// The GUID every server appends to the client's key (RFC 6455 §1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The longest frame header: 2 bytes, an 8-byte length (a server frame carries no mask).
pub const MAX_HEADER: usize = 10;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// How much one read takes from the socket, into the stack: a client message is usually one
/// read.
const READ_CHUNK: usize = 2048;

/// At most this many frames go into one vectored write (Linux takes up to 1024 slices).
const BATCH_SLICES: usize = 64;

/// Why a handshake is refused.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("a WebSocket handshake is a GET")]
    NotGet,
    #[error("this address only speaks WebSocket: send Connection: upgrade and Upgrade: websocket")]
    NotUpgrade,
    #[error("only WebSocket version 13 is spoken here")]
    Version,
    #[error("the handshake has no Sec-WebSocket-Key")]
    NoKey,
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

/// A checked WebSocket handshake, answered with [`WebSocketUpgrade::on_upgrade`].
pub struct WebSocketUpgrade {
    accept: HeaderValue,
    upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = HandshakeError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HandshakeError> {
        if parts.method != Method::GET {
            return Err(HandshakeError::NotGet);
        }
        let accept = handshake(&parts.headers)?;
        let upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(HandshakeError::NotUpgradable)?;
        Ok(WebSocketUpgrade { accept, upgrade })
    }
}

/// Checks the upgrade headers; the value of `Sec-WebSocket-Accept` for the answer.
fn handshake(headers: &HeaderMap) -> Result<HeaderValue, HandshakeError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(HandshakeError::NotUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(HandshakeError::Version);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(HandshakeError::NoKey)?;
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(GUID);
    let accept = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    Ok(HeaderValue::from_str(&accept).expect("base64 is always a valid header value"))
}

impl WebSocketUpgrade {
    /// The `101 Switching Protocols` answer; once hyper has sent it, `serve` runs on the socket
    /// in a task of its own. `max_message` bounds a client message (in total, over its
    /// fragments).
    pub fn on_upgrade<F, Fut>(self, max_message: usize, serve: F) -> Response<Body>
    where
        F: FnOnce(Reader, Writer) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let upgrade = self.upgrade;
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            serve(Reader::new(read, max_message), Writer::new(write)).await;
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, self.accept);
        response
    }
}

type Io = TokioIo<Upgraded>;

/// A finished frame in `buf`, whose first [`MAX_HEADER`] bytes were left free for its header:
/// the header is written right before the payload, so the payload is never moved.
pub fn finish_frame(mut buf: Vec<u8>, opcode: u8) -> Bytes {
    let len = buf.len() - MAX_HEADER;
    let (header, used) = header(opcode, len);
    let start = MAX_HEADER - used;
    buf[start..MAX_HEADER].copy_from_slice(&header[..used]);
    Bytes::from(buf).slice(start..)
}

/// A text frame of `payload`, with its header in a fresh buffer.
pub fn text_frame(payload: &[u8]) -> Bytes {
    frame(TEXT, payload)
}

/// The opcode of a text frame, for [`finish_frame`].
pub const TEXT_OPCODE: u8 = TEXT;

fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(MAX_HEADER + payload.len());
    buf.resize(MAX_HEADER, 0);
    buf.extend_from_slice(payload);
    finish_frame(buf, opcode)
}

/// The header of an unmasked final frame: its bytes and how many of them are used.
fn header(opcode: u8, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut h = [0u8; MAX_HEADER];
    h[0] = 0x80 | opcode;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// The pong that answers a ping with `payload`.
pub fn pong(payload: &[u8]) -> Bytes {
    frame(PONG, payload)
}

/// What a client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary,
    Ping(Bytes),
    Pong,
    /// The client closes, with its status code if it gave one.
    Close(Option<u16>),
}

/// Why the reader stopped: the close code and reason to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

const PROTOCOL_ERROR: Violation = Violation {
    code: 1002,
    reason: "protocol_error",
};
const NOT_UTF8: Violation = Violation {
    code: 1007,
    reason: "invalid_utf8",
};
const TOO_BIG: Violation = Violation {
    code: 1009,
    reason: "message_too_big",
};

/// Turns the client's bytes into messages; pure, so that it can be tested without a socket.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// The fragments so far of a message whose last frame has not come (opcode and payload).
    partial: Option<(u8, Vec<u8>)>,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Decoder {
            max_message,
            partial: None,
        }
    }

    /// The next message from the front of `buf`, whose frames it removes; `None` until more
    /// bytes are needed.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Incoming>, Violation> {
        loop {
            let Some((fin, opcode, start, len)) = self.head(buf)? else {
                return Ok(None);
            };
            if buf.len() < start + len {
                return Ok(None);
            }
            let mask: [u8; 4] = buf[start - 4..start]
                .try_into()
                .expect("the mask is the 4 bytes before the payload");
            let payload = &mut buf[start..start + len];
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
            let message = self.message(fin, opcode, payload)?;
            buf.drain(..start + len);
            if message.is_some() {
                return Ok(message);
            }
        }
    }

    /// The frame header at the front of `buf`: FIN, opcode, where the payload starts and its
    /// length; `None` while the header is incomplete.
    fn head(&self, buf: &[u8]) -> Result<Option<(bool, u8, usize, usize)>, Violation> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
        if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
            // Reserved bits without an extension, or an unmasked client frame.
            return Err(PROTOCOL_ERROR);
        }
        let control = opcode & 0x8 != 0;
        if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG)
            || (control && (!fin || b1 & 0x7F > 125))
        {
            return Err(PROTOCOL_ERROR);
        }
        let (len, after) = match b1 & 0x7F {
            126 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(None);
                };
                (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(bytes.try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(PROTOCOL_ERROR);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let so_far = self.partial.as_ref().map_or(0, |(_, p)| p.len()) as u64;
        if !control && so_far + len > self.max_message as u64 {
            return Err(TOO_BIG);
        }
        let start = after + 4;
        if buf.len() < start {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| TOO_BIG)?;
        Ok(Some((fin, opcode, start, len)))
    }

    fn message(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
    ) -> Result<Option<Incoming>, Violation> {
        let data = match opcode {
            PING => return Ok(Some(Incoming::Ping(Bytes::copy_from_slice(payload)))),
            PONG => return Ok(Some(Incoming::Pong)),
            CLOSE => return close_code(payload).map(|code| Some(Incoming::Close(code))),
            CONTINUATION => {
                let Some((first, mut data)) = self.partial.take() else {
                    return Err(PROTOCOL_ERROR);
                };
                data.extend_from_slice(payload);
                if !fin {
                    self.partial = Some((first, data));
                    return Ok(None);
                }
                (first, data)
            }
            _ if self.partial.is_some() => return Err(PROTOCOL_ERROR),
            _ if !fin => {
                self.partial = Some((opcode, payload.to_vec()));
                return Ok(None);
            }
            _ => (opcode, payload.to_vec()),
        };
        match data {
            (TEXT, bytes) => String::from_utf8(bytes)
                .map(|text| Some(Incoming::Text(text)))
                .map_err(|_| NOT_UTF8),
            _ => Ok(Some(Incoming::Binary)),
        }
    }
}

/// A close frame's status code; a reason must be UTF-8, and a code one a peer may send.
fn close_code(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(PROTOCOL_ERROR),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if std::str::from_utf8(reason).is_err() {
                return Err(NOT_UTF8);
            }
            match code {
                1000..=1003 | 1007..=1011 | 3000..=4999 => Ok(Some(code)),
                _ => Err(PROTOCOL_ERROR),
            }
        }
    }
}

/// The reading half of a connection.
pub struct Reader {
    io: ReadHalf<Io>,
    decoder: Decoder,
    /// Bytes of a frame not yet complete; empty (and unallocated) between messages.
    buf: Vec<u8>,
}

/// How reading ended.
#[derive(Debug)]
pub enum ReadError {
    /// The socket failed or the client went without a close frame.
    Gone,
    /// The client broke the protocol or a limit: close with this.
    Violation(Violation),
}

impl Reader {
    fn new(io: ReadHalf<Io>, max_message: usize) -> Self {
        Reader {
            io,
            decoder: Decoder::new(max_message),
            buf: Vec::new(),
        }
    }

    /// The client's next message.
    pub async fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(message)) => {
                    if self.buf.is_empty() {
                        // A long message grew the buffer; an idle connection keeps none.
                        self.buf = Vec::new();
                    }
                    return Ok(message);
                }
                Ok(None) => {}
                Err(violation) => return Err(ReadError::Violation(violation)),
            }
            let read = std::future::poll_fn(|cx| {
                // On the stack of this poll, not in the connection's state.
                let mut chunk = [0u8; READ_CHUNK];
                let mut chunk = ReadBuf::new(&mut chunk);
                match Pin::new(&mut self.io).poll_read(cx, &mut chunk) {
                    Poll::Ready(Ok(())) => {
                        self.buf.extend_from_slice(chunk.filled());
                        Poll::Ready(Ok(chunk.filled().len()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match read {
                Ok(0) | Err(_) => return Err(ReadError::Gone),
                Ok(_) => {}
            }
        }
    }
}

/// The writing half of a connection: writes complete frames as they are. Frames are queued,
/// then written by [`Writer::flush`], which may be given up at any point (the connection's task
/// also reads and waits for other things meanwhile) and picks up where it stopped.
pub struct Writer {
    io: WriteHalf<Io>,
    /// The frames being written. Empty (and unallocated) between batches.
    pending: Vec<Bytes>,
    /// Frames of `pending` written in full, and bytes written of the next one.
    done: usize,
    offset: usize,
}

impl Writer {
    fn new(io: WriteHalf<Io>) -> Self {
        Writer {
            io,
            pending: Vec::new(),
            done: 0,
            offset: 0,
        }
    }

    /// Adds whole `frames` to what [`Writer::flush`] writes.
    pub fn queue(&mut self, frames: Vec<Bytes>) {
        if self.pending.is_empty() {
            self.pending = frames;
        } else {
            self.pending.extend(frames);
        }
    }

    pub fn queue_ping(&mut self) {
        self.pending.push(Bytes::from_static(&[0x80 | PING, 0]));
    }

    /// Whether queued frames wait for [`Writer::flush`].
    pub fn is_writing(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the queued frames with as few system calls as the socket allows.
    pub async fn flush(&mut self) -> io::Result<()> {
        let upto = self.pending.len();
        std::future::poll_fn(|cx| self.poll_write(cx, upto)).await
    }

    /// Writes `pending` up to frame `upto` (exclusive), then forgets the batch. The slices are
    /// built on the stack of each poll, so a connection waiting for its socket holds none.
    fn poll_write(&mut self, cx: &mut std::task::Context<'_>, upto: usize) -> Poll<io::Result<()>> {
        while self.done < upto {
            let mut slices = [IoSlice::new(&[]); BATCH_SLICES];
            let n = (upto - self.done).min(BATCH_SLICES);
            for (i, slice) in slices[..n].iter_mut().enumerate() {
                let frame = &self.pending[self.done + i];
                let skip = if i == 0 { self.offset } else { 0 };
                *slice = IoSlice::new(&frame[skip..]);
            }
            let mut written = match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => written,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            while written > 0 {
                let left = self.pending[self.done].len() - self.offset;
                if written >= left {
                    written -= left;
                    self.done += 1;
                    self.offset = 0;
                } else {
                    self.offset += written;
                    written = 0;
                }
            }
        }
        self.pending = Vec::new();
        self.done = 0;
        self.offset = 0;
        Poll::Ready(Ok(()))
    }

    /// Finishes a frame cut short, sends the close frame with `code` and `reason` and ends the
    /// sending side. Frames not begun are dropped.
    pub async fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        if self.offset > 0 {
            let upto = self.done + 1;
            std::future::poll_fn(|cx| self.poll_write(cx, upto)).await?;
        }
        self.pending = Vec::new();
        self.done = 0;
        // A control frame carries at most 125 bytes: the code and 123 of the reason.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        self.io.write_all(&frame(CLOSE, &payload)).await?;
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame.
    fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    fn decode_all(max: usize, bytes: &[u8]) -> Result<Vec<Incoming>, Violation> {
        let mut decoder = Decoder::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        // Byte by byte: a frame split anywhere must decode the same.
        for byte in bytes {
            buf.push(*byte);
            while let Some(message) = decoder.decode(&mut buf)? {
                out.push(message);
            }
        }
        assert!(buf.is_empty(), "bytes left over: {buf:?}");
        Ok(out)
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(handshake(&headers).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert!(matches!(handshake(&headers), Err(HandshakeError::Version)));
        headers.remove(header::UPGRADE);
        assert!(matches!(
            handshake(&headers),
            Err(HandshakeError::NotUpgrade)
        ));
    }

    #[test]
    fn masked_frames_of_every_length_form_decode() {
        for len in [0, 1, 125, 126, 65535, 65536] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            assert_eq!(text.len(), len);
            let got = decode_all(1 << 20, &client(true, TEXT, text.as_bytes())).unwrap();
            assert_eq!(got, vec![Incoming::Text(text)], "length {len}");
        }
    }

    #[test]
    fn server_frames_use_the_shortest_length_form() {
        for (len, head) in [(125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let frame = text_frame(&vec![b'a'; len]);
            assert_eq!(frame.len(), head + len);
            assert_eq!(frame[0], 0x81);
            let mut as_client = frame.to_vec();
            // The same frame from a client: mask bit set, an all-zero mask.
            as_client[1] |= 0x80;
            as_client.splice(head..head, [0u8; 4]);
            let got = decode_all(1 << 20, &as_client).unwrap();
            assert_eq!(got, vec![Incoming::Text("a".repeat(len))]);
        }
    }

    #[test]
    fn unmasked_client_frames_are_refused() {
        let mut frame = client(true, TEXT, b"hi");
        frame[1] &= 0x7F;
        frame.drain(2..6);
        assert_eq!(decode_all(100, &frame), Err(PROTOCOL_ERROR));
    }

    #[test]
    fn fragments_make_one_message_and_control_frames_may_come_between() {
        let mut bytes = client(false, TEXT, b"hel");
        bytes.extend(client(true, PING, b"p"));
        bytes.extend(client(false, CONTINUATION, b"lo "));
        bytes.extend(client(true, CONTINUATION, b"there"));
        bytes.extend(client(true, BINARY, &[0, 159]));
        assert_eq!(
            decode_all(100, &bytes).unwrap(),
            vec![
                Incoming::Ping(Bytes::from_static(b"p")),
                Incoming::Text("hello there".into()),
                Incoming::Binary
            ]
        );
        // A continuation with nothing to continue, and a new message inside a fragmented one.
        assert_eq!(
            decode_all(100, &client(true, CONTINUATION, b"x")),
            Err(PROTOCOL_ERROR)
        );
        let mut bytes = client(false, TEXT, b"a");
        bytes.extend(client(true, TEXT, b"b"));
        assert_eq!(decode_all(100, &bytes), Err(PROTOCOL_ERROR));
    }

    #[test]
    fn bad_opcodes_and_reserved_bits_are_protocol_errors() {
        for opcode in [0x3, 0x7, 0xB, 0xF] {
            assert_eq!(
                decode_all(100, &client(true, opcode, b"")),
                Err(PROTOCOL_ERROR)
            );
        }
        let mut frame = client(true, TEXT, b"x");
        frame[0] |= 0x40;
        assert_eq!(decode_all(100, &frame), Err(PROTOCOL_ERROR));
    }

    #[test]
    fn control_frames_over_125_bytes_or_fragmented_are_refused() {
        assert_eq!(
            decode_all(1000, &client(true, PING, &[0; 126])),
            Err(PROTOCOL_ERROR)
        );
        assert_eq!(
            decode_all(1000, &client(false, PING, b"")),
            Err(PROTOCOL_ERROR)
        );
        let got = decode_all(1000, &client(true, PING, &[7; 125])).unwrap();
        assert_eq!(got, vec![Incoming::Ping(Bytes::from(vec![7; 125]))]);
    }

    #[test]
    fn a_message_over_the_limit_is_too_big_even_in_fragments() {
        assert_eq!(
            decode_all(10, &client(true, TEXT, &[b'a'; 10]))
                .unwrap()
                .len(),
            1
        );
        // Refused from its header, before its payload arrives.
        let mut decoder = Decoder::new(10);
        let mut head = client(true, TEXT, &[b'a'; 11]);
        head.truncate(2);
        assert_eq!(decoder.decode(&mut head), Err(TOO_BIG));
        let mut bytes = client(false, TEXT, &[b'a'; 6]);
        bytes.extend(client(true, CONTINUATION, &[b'a'; 5]));
        assert_eq!(decode_all(10, &bytes), Err(TOO_BIG));
        let mut huge = vec![0x81, 0xFF];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(Decoder::new(10).decode(&mut huge), Err(PROTOCOL_ERROR));
    }

    #[test]
    fn text_must_be_utf8_even_when_split_inside_a_character() {
        assert_eq!(
            decode_all(100, &client(true, TEXT, &[0xC3, 0x28])),
            Err(NOT_UTF8)
        );
        let mut bytes = client(false, TEXT, &[0xC3]);
        bytes.extend(client(true, CONTINUATION, &[0xA9]));
        assert_eq!(
            decode_all(100, &bytes).unwrap(),
            vec![Incoming::Text("é".into())]
        );
    }

    #[test]
    fn close_frames_carry_a_valid_code_and_utf8_reason() {
        let close = |payload: &[u8]| decode_all(100, &client(true, CLOSE, payload));
        assert_eq!(close(b"").unwrap(), vec![Incoming::Close(None)]);
        assert_eq!(
            close(&[0x03, 0xE8]).unwrap(),
            vec![Incoming::Close(Some(1000))]
        );
        assert_eq!(close(&[0x03]), Err(PROTOCOL_ERROR));
        // 1005 and 1006 are never sent; 999 is not a close code.
        assert_eq!(close(&[0x03, 0xED]), Err(PROTOCOL_ERROR));
        assert_eq!(close(&[0x03, 0xE7]), Err(PROTOCOL_ERROR));
        assert_eq!(close(&[0x03, 0xE8, 0xFF]), Err(NOT_UTF8));
    }
}
