//! Just enough HTTP/1.1 and WebSocket (RFC 6455) client for the load generator, on plain tokio
//! sockets. A general client (tungstenite) validates and copies every message; here received
//! bytes are cut into frames in place (`FrameBuffer` while connecting, `frame_head` for the
//! joined viewers' shared buffer), so the client's cost per delivery stays well below the
//! server's.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one HTTP exchange or WebSocket handshake may take.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(60);
/// A viewer's read buffer; it grows only for a frame bigger than this (a long `room_info`).
const READ_BUFFER: usize = 8 * 1024;

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;

fn other(message: impl Into<String>) -> io::Error {
    io::Error::other(message.into())
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); returns status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json_body: Option<&str>,
    bearer: Option<&str>,
) -> io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Accept: application/json\r\nUser-Agent: fanout-bench\r\n"
        );
        if let Some(token) = bearer {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = json_body.unwrap_or("");
        if json_body.is_some() || method == "POST" {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_response(&raw)
    };
    tokio::time::timeout(EXCHANGE_LIMIT, exchange)
        .await
        .map_err(|_| {
            other(format!(
                "{method} {path}: no answer within {EXCHANGE_LIMIT:?}"
            ))
        })?
}

fn parse_response(raw: &[u8]) -> io::Result<(u16, String)> {
    let split = find(raw, b"\r\n\r\n").ok_or_else(|| other("an HTTP answer without headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| other(format!("a strange HTTP status line: {head:.80}")))?;
    let mut body = raw[split + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(data, b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_owned();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else {
            break;
        };
        let start = line_end + 2;
        if size == 0 || start + size > data.len() {
            break;
        }
        out.extend_from_slice(&data[start..start + size]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Opens `GET /ws` (with a bearer token, if any) and completes the WebSocket handshake. Returns
/// the socket and a reader holding whatever frames came along with the handshake's answer.
pub async fn connect(
    addr: SocketAddr,
    bearer: Option<&str>,
) -> io::Result<(TcpStream, FrameBuffer)> {
    let handshake = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(token) = bearer {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut buffer = FrameBuffer::new();
        loop {
            if let Some(end) = find(buffer.pending(), b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer.pending()[..end]).to_string();
                if !head.starts_with("HTTP/1.1 101") {
                    return Err(other(format!(
                        "WebSocket handshake refused: {}",
                        head.lines().next().unwrap_or("")
                    )));
                }
                buffer.consume(end + 4);
                return Ok((stream, buffer));
            }
            if buffer.fill(&mut stream).await? == 0 {
                return Err(other(
                    "the server closed the connection during the handshake",
                ));
            }
        }
    };
    tokio::time::timeout(EXCHANGE_LIMIT, handshake)
        .await
        .map_err(|_| other("WebSocket handshake timed out"))?
}

/// Incoming bytes, cut into WebSocket frames in place.
pub struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// One frame found in a [`FrameBuffer`]: its opcode, FIN bit and where its payload lies.
pub struct FrameAt {
    pub opcode: u8,
    pub fin: bool,
    pub payload: Range<usize>,
}

impl FrameBuffer {
    pub fn new() -> FrameBuffer {
        FrameBuffer {
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// The next complete frame already in the buffer, if any.
    pub fn next_frame(&mut self) -> io::Result<Option<FrameAt>> {
        let head = match frame_head(self.pending())? {
            Head::Complete(head) => head,
            Head::Partial { needs } => {
                // Make room for the whole frame.
                if needs > self.buf.len() - self.start {
                    self.compact(needs);
                }
                return Ok(None);
            }
        };
        let frame = FrameAt {
            opcode: head.opcode,
            fin: head.fin,
            payload: self.start + head.payload.start..self.start + head.payload.end,
        };
        self.start += head.payload.end;
        if self.start == self.end {
            // Everything looked at: the next read starts at the front again. The frame's bytes
            // stay where they are until that read.
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(frame))
    }

    /// The bytes read but not yet looked at (the start of a frame, if any).
    pub fn into_pending(mut self) -> Vec<u8> {
        self.buf.truncate(self.end);
        self.buf.drain(..self.start);
        self.buf
    }

    /// Moves the unread bytes to the front and makes sure `room` bytes fit.
    fn compact(&mut self, room: usize) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < room {
            self.buf.resize(room, 0);
        }
    }

    /// Reads more bytes from `io`; 0 means the connection ended.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> io::Result<usize> {
        if self.end == self.buf.len() {
            let grow = if self.start == 0 { READ_BUFFER } else { 0 };
            self.compact(self.buf.len() + grow);
        }
        let n = io.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// What the front of some received bytes holds.
pub enum Head {
    /// A whole frame; its payload range is relative to the bytes looked at.
    Complete(FrameAt),
    /// The start of a frame, which `needs` bytes in all (a guess while its length is not in).
    Partial { needs: usize },
}

/// The frame at the front of `data`. Server frames are never masked.
pub fn frame_head(data: &[u8]) -> io::Result<Head> {
    if data.len() < 2 {
        return Ok(Head::Partial { needs: 2 });
    }
    if data[1] & 0x80 != 0 {
        return Err(other("the server sent a masked frame"));
    }
    let (len, header) = match data[1] & 0x7f {
        126 if data.len() >= 4 => (u16::from_be_bytes([data[2], data[3]]) as usize, 4),
        127 if data.len() >= 10 => {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(&data[2..10]);
            (u64::from_be_bytes(eight) as usize, 10)
        }
        126 => return Ok(Head::Partial { needs: 4 }),
        127 => return Ok(Head::Partial { needs: 10 }),
        n => (n as usize, 2),
    };
    if len > 64 * 1024 * 1024 {
        return Err(other("a frame of more than 64 MiB"));
    }
    if data.len() < header + len {
        return Ok(Head::Partial {
            needs: header + len,
        });
    }
    Ok(Head::Complete(FrameAt {
        opcode: data[0] & 0x0f,
        fin: data[0] & 0x80 != 0,
        payload: header..header + len,
    }))
}

/// The messages of one text frame: the frame itself when it holds one object, each element
/// when it holds a JSON array (a busy room's merged tick), looked at in place.
pub fn messages(payload: &[u8]) -> Messages<'_> {
    match payload.first() {
        Some(b'[') => Messages {
            rest: &payload[1..payload.len().saturating_sub(1)],
        },
        _ => Messages { rest: payload },
    }
}

pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = &'a [u8];

    /// The next element: up to the first comma outside any string, object or array.
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut end = self.rest.len();
        for (i, &b) in self.rest.iter().enumerate() {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.saturating_sub(1),
                b',' if depth == 0 => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let message = &self.rest[..end];
        self.rest = self.rest.get(end + 1..).unwrap_or_default();
        Some(message)
    }
}

/// Appends one masked client frame (FIN set) to `out`.
pub fn client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// Sends one text message on `stream`.
pub async fn send_text<W: tokio::io::AsyncWrite + Unpin>(
    stream: &mut W,
    text: &str,
) -> io::Result<()> {
    let mut frame = Vec::with_capacity(text.len() + 14);
    client_frame(
        &mut frame,
        OP_TEXT,
        text.as_bytes(),
        [0x5a, 0x17, 0xc3, 0x09],
    );
    stream.write_all(&frame).await
}

/// Decodes standard base64, skipping anything that is not in its alphabet (line breaks).
pub fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
