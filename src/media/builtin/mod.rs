//! The `builtin` backend's ingest: RoomManager's own RTMP listener, in place of nginx. It
//! speaks the publish side of RTMP only (handshake, chunk streams, the commands ffmpeg and OBS
//! send), decides each publish with the same code as nginx's callbacks
//! ([`RtmpMedia::authorize_publish`]), and hands each accepted stream to one ffmpeg
//! (`writer.rs`) that writes the HLS and the FLV recording where nginx would.
//!
//! The port faces the network before any key is checked, so every connection is bounded: in
//! number (in all and per IP), in time (handshake, then publish, then idle), in memory (one
//! chunk buffered, messages capped at 64 KiB until a publish is accepted and at
//! [`MAX_MESSAGE_BYTES`] after, the queue to ffmpeg capped), and
//! each runs in its own task, so a bug costs that connection only.
//!
//! Two publishers on one stream: the first keeps it, the second is refused (`already
//! publishing`, as nginx-rtmp refuses it), so exactly one ffmpeg writes a stream. A publisher
//! that is ending (its connection closed, its ffmpeg finishing) is waited for instead, so a
//! quick reconnect is not refused; one that has sent no media for [`TAKEOVER_SILENCE_MS`] is
//! dropped for a new publish with the stream's code (a half-dead connection would otherwise
//! hold the stream until the idle timeout).
//!
//! Each stream is also offered to the co-stream mixers over the loopback relay (`relay.rs`).

mod amf;
mod chunk;
mod flv;
mod queue;
pub mod relay;
mod writer;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::amf::Value;
use self::chunk::{ChunkError, Decoder, Message};
use self::flv::Tracks;
use self::relay::{Published, Relay};
use self::writer::{Target, Writer, WriterError};
use super::rtmp::{Publish, PublishNotice, RtmpMedia, StreamEvent, StreamKind};
use crate::config::BuiltinConfig;
use crate::store::unix_now;

/// The largest RTMP message accepted (a keyframe of a high-bitrate 4K stream is far below);
/// a bigger one closes the connection as soon as its header announces it.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// The largest message before a publish is accepted: commands are a few hundred bytes, and
/// nobody unauthenticated gets to make RoomManager buffer megabytes.
const COMMAND_MAX_BYTES: usize = 64 * 1024;
/// The chunk size RoomManager sends with (its messages are small).
const OUT_CHUNK_SIZE: usize = 4096;
/// The acknowledgement window RoomManager announces.
const WINDOW: u32 = 2_500_000;
/// How long one write to a peer (a publisher, a relay reader) may take: a peer that never reads
/// must not hold a task.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a publish waits for the previous publisher of its stream to finish ending.
const ENDING_WAIT: Duration = Duration::from_secs(5);
/// Media buffered before the FLV header can be written, while it is not known yet whether
/// both audio and video come: this many milliseconds of stream at most.
const TRACKS_WAIT_MS: u32 = 1000;
/// A publisher that has sent no media for this long is taken for half dead (its connection
/// still open, nothing coming): a new publish with the stream's code takes over from it
/// instead of being refused until `media.builtin.idle_secs` drops it.
const TAKEOVER_SILENCE_MS: u64 = 2000;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error("closed by the peer")]
    Closed,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0} deadline passed")]
    Deadline(&'static str),
    #[error("protocol error: {0}")]
    Chunk(#[from] ChunkError),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("publish refused: {0}")]
    Refused(&'static str),
    #[error("the publisher was dropped")]
    Dropped,
    #[error("the publisher stopped publishing")]
    Unpublished,
    #[error("refused: {0}; only H.264 video and AAC audio are accepted")]
    Codec(String),
    #[error("{0}")]
    Writer(#[from] WriterError),
}

/// The publishers on air, by stream: who, and how to drop them.
#[derive(Default)]
pub struct Publishers {
    slots: Mutex<HashMap<String, Slot>>,
    /// The last recording stamp given out per stream: two publishes in one second must not
    /// write the same file.
    stamps: Mutex<HashMap<String, u64>>,
}

struct Slot {
    client: String,
    /// Cancelled to drop the publisher; also once it is ending by itself.
    drop: CancellationToken,
    /// Cancelled once its ffmpeg finished and the slot is free.
    gone: CancellationToken,
    /// When it last sent media (unix milliseconds; its acceptance before the first).
    last_media: Arc<AtomicU64>,
}

impl Publishers {
    /// Drops whoever publishes `stream` (a stop, a key rotation, a ban).
    pub fn drop_publisher(&self, stream: &str) {
        if let Some(slot) = self.slots().get(stream) {
            slot.drop.cancel();
        }
    }

    /// Takes `stream` for `client`; when someone has it, `Err` with the token of its end if it
    /// is ending anyway, `Err(None)` if it is live.
    fn claim(
        &self,
        stream: &str,
        client: &str,
        drop: &CancellationToken,
        last_media: &Arc<AtomicU64>,
    ) -> Result<(), Option<CancellationToken>> {
        let mut slots = self.slots();
        if let Some(slot) = slots.get(stream) {
            return Err(slot.drop.is_cancelled().then(|| slot.gone.clone()));
        }
        last_media.store(unix_millis(), Ordering::Relaxed);
        slots.insert(
            stream.to_owned(),
            Slot {
                client: client.to_owned(),
                drop: drop.clone(),
                gone: CancellationToken::new(),
                last_media: last_media.clone(),
            },
        );
        Ok(())
    }

    /// Drops the publisher of `stream` if it sent no media for [`TAKEOVER_SILENCE_MS`]: the
    /// token of its end, once its ffmpeg finished.
    fn drop_if_silent(&self, stream: &str) -> Option<CancellationToken> {
        let slots = self.slots();
        let slot = slots.get(stream)?;
        let silent = unix_millis().saturating_sub(slot.last_media.load(Ordering::Relaxed));
        if silent < TAKEOVER_SILENCE_MS {
            return None;
        }
        tracing::info!(
            stream,
            client = slot.client,
            silent_ms = silent,
            "a silent publisher is replaced by a new publish"
        );
        slot.drop.cancel();
        Some(slot.gone.clone())
    }

    fn release(&self, stream: &str, client: &str) {
        let mut slots = self.slots();
        if slots.get(stream).is_some_and(|s| s.client == client) {
            if let Some(slot) = slots.remove(stream) {
                slot.gone.cancel();
            }
        }
    }

    fn next_stamp(&self, stream: &str) -> u64 {
        let mut stamps = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = stamps.get(stream).map_or(0, |s| s + 1).max(unix_now());
        stamps.insert(stream.to_owned(), stamp);
        stamp
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The builtin backend's two listening sockets: RTMP for publishers, and the loopback relay
/// the mixers read from.
pub struct Sockets {
    pub rtmp: std::net::TcpListener,
    pub relay: std::net::TcpListener,
}

/// What the listener needs.
pub struct Listener {
    pub config: BuiltinConfig,
    pub media: Arc<RtmpMedia>,
    pub publishers: Arc<Publishers>,
    /// The streams offered to the mixers.
    pub relay: Arc<Relay>,
    pub notices: UnboundedSender<PublishNotice>,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
}

/// Connections open now, in all and per IP.
#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A connection's place in [`Counts`], given back when it ends (also by a panic).
struct Admitted {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

fn admit(counts: &Arc<Mutex<Counts>>, ip: IpAddr, config: &BuiltinConfig) -> Option<Admitted> {
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    let of_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
    if c.total >= config.max_connections || of_ip >= config.max_connections_per_ip {
        return None;
    }
    c.total += 1;
    c.per_ip.insert(ip, of_ip + 1);
    Some(Admitted {
        counts: counts.clone(),
        ip,
    })
}

/// Accepts RTMP connections on `socket` until shutdown, each in its own task.
pub async fn serve(socket: std::net::TcpListener, listener: Listener) {
    let tcp = match TcpListener::from_std(socket) {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::error!(error = %e, "the builtin RTMP listener cannot start");
            return;
        }
    };
    if let Ok(addr) = tcp.local_addr() {
        tracing::info!(%addr, "builtin RTMP listener ready");
    }
    let listener = Arc::new(listener);
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut next_client = 0u64;
    loop {
        let (socket, peer) = tokio::select! {
            () = listener.shutdown.cancelled() => return,
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: pause rather than spin.
                    tracing::warn!(error = %e, "cannot accept an RTMP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = admit(&counts, peer.ip(), &listener.config) else {
            tracing::debug!(%peer, "RTMP connection refused: media.builtin connection caps");
            continue;
        };
        // The replies to `connect` are several small writes: with Nagle's algorithm each
        // waits for the peer's delayed acknowledgement, and the publish starts tens of
        // milliseconds later (as nginx does, no delay).
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        next_client += 1;
        let session = Session {
            listener: listener.clone(),
            client: format!("b{next_client}"),
            peer,
            drop: listener.shutdown.child_token(),
            socket,
            decoder: Decoder::new(COMMAND_MAX_BYTES),
            received: 0,
            acked: 0,
            window: 0,
            app: String::new(),
            carried: false,
            last_media: Arc::new(AtomicU64::new(0)),
        };
        listener.tasks.spawn(async move {
            let _admitted = admitted;
            session.run().await;
        });
    }
}

/// One RTMP connection.
struct Session {
    listener: Arc<Listener>,
    /// This connection's id, as nginx's `clientid`: recorders and the on-air publisher go by it.
    client: String,
    peer: SocketAddr,
    /// Cancelled to drop this connection (a stop, a key rotation, shutdown).
    drop: CancellationToken,
    socket: TcpStream,
    decoder: Decoder,
    received: u64,
    acked: u64,
    /// The peer's acknowledgement window (0: it asked for none).
    window: u32,
    /// The application of `connect`.
    app: String,
    /// Whether a publish was accepted (and its media carried).
    carried: bool,
    /// When its publish last carried media (unix milliseconds), for a takeover.
    last_media: Arc<AtomicU64>,
}

/// An accepted publish, until it ends; ending it (also by a panic) takes the stream off air
/// and frees it for the next publisher.
struct OnAir {
    listener: Arc<Listener>,
    stream: String,
    client: String,
    ended: bool,
}

impl OnAir {
    fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if let Some(event) = self.listener.media.publish_done(&self.stream, &self.client) {
            let _ = self.listener.notices.send(PublishNotice::Ended(event));
        }
    }
}

impl Drop for OnAir {
    fn drop(&mut self) {
        self.end();
        self.listener.publishers.release(&self.stream, &self.client);
    }
}

/// What `publish` asked for.
struct PublishRequest {
    name: String,
    code: String,
    /// Its message stream, where the answers go.
    stream_id: u32,
}

impl Session {
    async fn run(mut self) {
        let start = Instant::now();
        let config = &self.listener.config;
        let handshake_by = start + Duration::from_secs(config.handshake_secs);
        let publish_by = start + Duration::from_secs(config.publish_secs);
        let result = async {
            self.handshake(handshake_by).await?;
            let request = self.until_publish(publish_by).await?;
            self.publish(request).await
        }
        .await;
        let (client, peer) = (&self.client, self.peer);
        // Before a publish is accepted only at debug level: anyone can open connections (and
        // refusals are logged where they are decided).
        match result {
            Err(e @ (SessionEnd::Codec(_) | SessionEnd::Writer(_))) => {
                tracing::warn!(client, %peer, "RTMP publisher ended: {e}");
            }
            Err(e) if self.carried => tracing::info!(client, %peer, "RTMP publisher ended: {e}"),
            Err(e) => tracing::debug!(client, %peer, "RTMP connection ended: {e}"),
            Ok(()) => {}
        }
    }

    /// The simple handshake: C0+C1 in, S0+S1+S2 out (S2 echoes C1), C2 in.
    async fn handshake(&mut self, by: Instant) -> Result<(), SessionEnd> {
        let mut c0c1 = vec![0u8; 1 + chunk::HANDSHAKE_LEN];
        self.read_exact(&mut c0c1, by, "handshake").await?;
        if c0c1[0] != chunk::VERSION {
            return Err(SessionEnd::Protocol("not RTMP version 3"));
        }
        let mut reply = Vec::with_capacity(1 + 2 * chunk::HANDSHAKE_LEN);
        reply.push(chunk::VERSION);
        // S1: time and zero (a zero version tells the peer this is the simple handshake).
        reply.extend_from_slice(&[0; 8]);
        let mut random = vec![0u8; chunk::HANDSHAKE_LEN - 8];
        getrandom::fill(&mut random)
            .expect("the operating system's random source is always available");
        reply.extend_from_slice(&random);
        reply.extend_from_slice(&c0c1[1..]);
        self.write(&reply).await?;
        let mut c2 = vec![0u8; chunk::HANDSHAKE_LEN];
        self.read_exact(&mut c2, by, "handshake").await
    }

    async fn read_exact(
        &mut self,
        buf: &mut [u8],
        by: Instant,
        what: &'static str,
    ) -> Result<(), SessionEnd> {
        tokio::select! {
            () = self.drop.cancelled() => Err(SessionEnd::Dropped),
            read = tokio::time::timeout_at(by, self.socket.read_exact(buf)) => {
                read.map_err(|_| SessionEnd::Deadline(what))?.map(drop).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof { SessionEnd::Closed } else { e.into() }
                })
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SessionEnd> {
        tokio::time::timeout(WRITE_TIMEOUT, self.socket.write_all(bytes))
            .await
            .map_err(|_| SessionEnd::Deadline("write"))?
            .map_err(SessionEnd::Io)
    }

    async fn send(&mut self, csid: u8, message: Message) -> Result<(), SessionEnd> {
        self.write(&chunk::encode(csid, &message, OUT_CHUNK_SIZE))
            .await
    }

    /// The next message from the peer, read by `by`; protocol control is handled on the way.
    async fn message(&mut self, by: Instant, what: &'static str) -> Result<Message, SessionEnd> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(message) = self.decoder.next()? {
                if message.type_id == 5 {
                    self.window = be_u32(&message.payload);
                }
                return Ok(message);
            }
            let n = tokio::select! {
                () = self.drop.cancelled() => return Err(SessionEnd::Dropped),
                read = tokio::time::timeout_at(by, self.socket.read(&mut buf)) => {
                    read.map_err(|_| SessionEnd::Deadline(what))??
                }
            };
            if n == 0 {
                return Err(SessionEnd::Closed);
            }
            self.decoder.feed(&buf[..n]);
            self.received += n as u64;
            if self.window > 0 && self.received - self.acked >= u64::from(self.window) {
                self.acked = self.received;
                // The sequence number wraps, as the protocol says.
                let ack = control(3, (self.received as u32).to_be_bytes().to_vec());
                self.send(2, ack).await?;
            }
        }
    }

    /// Answers the commands before `publish` (connect, releaseStream, FCPublish,
    /// createStream); returns what `publish` asks for.
    async fn until_publish(&mut self, by: Instant) -> Result<PublishRequest, SessionEnd> {
        loop {
            let message = self.message(by, "publish").await?;
            let Some(values) = command(&message) else {
                continue;
            };
            let name = values.first().and_then(Value::as_str).unwrap_or_default();
            let txn = values.get(1).and_then(Value::as_number).unwrap_or(0.0);
            match name {
                "connect" => {
                    let app = values.get(2).and_then(|o| o.get("app"));
                    self.app = app
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .trim_end_matches('/')
                        .to_owned();
                    self.send(2, control(5, WINDOW.to_be_bytes().to_vec()))
                        .await?;
                    let mut bandwidth = WINDOW.to_be_bytes().to_vec();
                    bandwidth.push(2);
                    self.send(2, control(6, bandwidth)).await?;
                    let size = u32::try_from(OUT_CHUNK_SIZE).unwrap_or(4096);
                    self.send(2, control(1, size.to_be_bytes().to_vec()))
                        .await?;
                    let result = [
                        Value::String("_result".into()),
                        Value::Number(txn),
                        amf::object(&[
                            ("fmsVer", Value::String("FMS/3,0,1,123".into())),
                            ("capabilities", Value::Number(31.0)),
                        ]),
                        amf::object(&[
                            ("level", Value::String("status".into())),
                            (
                                "code",
                                Value::String("NetConnection.Connect.Success".into()),
                            ),
                            ("description", Value::String("Connection succeeded.".into())),
                            ("objectEncoding", Value::Number(0.0)),
                        ]),
                    ];
                    self.send(3, amf_message(0, &result)).await?;
                }
                "createStream" => {
                    let result = [
                        Value::String("_result".into()),
                        Value::Number(txn),
                        Value::Null,
                        Value::Number(1.0),
                    ];
                    self.send(3, amf_message(0, &result)).await?;
                }
                "releaseStream" | "FCPublish" => {
                    let result = [
                        Value::String("_result".into()),
                        Value::Number(txn),
                        Value::Null,
                        Value::Undefined,
                    ];
                    self.send(3, amf_message(0, &result)).await?;
                }
                "publish" => {
                    let full = values.get(3).and_then(Value::as_str).unwrap_or_default();
                    let (name, query) = full.split_once('?').unwrap_or((full, ""));
                    let code = form_urlencoded::parse(query.as_bytes())
                        .find(|(k, _)| k == "code")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    return Ok(PublishRequest {
                        name: name.to_owned(),
                        code,
                        stream_id: message.stream_id,
                    });
                }
                "deleteStream" | "closeStream" => return Err(SessionEnd::Unpublished),
                _ => {}
            }
        }
    }

    /// Decides the publish as nginx's `on_publish` would be, answers it, and if accepted
    /// carries the stream to its ffmpeg until it ends.
    async fn publish(&mut self, request: PublishRequest) -> Result<(), SessionEnd> {
        let listener = self.listener.clone();
        let decided = self.decide(&request).await;
        let (event, mut on_air) = match decided {
            Ok(accepted) => accepted,
            Err(reason) => {
                tracing::debug!(client = self.client, "publish refused: {reason}");
                let _ = listener.notices.send(PublishNotice::Refused {
                    stream: request.name.clone(),
                    app: self.app.clone(),
                    addr: self.peer.ip().to_string(),
                    reason,
                });
                let status = on_status(
                    "error",
                    "NetStream.Publish.BadName",
                    &format!("publish refused: {reason}"),
                );
                self.send(5, amf_message(request.stream_id, &status))
                    .await?;
                return Err(SessionEnd::Refused(reason));
            }
        };
        self.carried = true;
        self.decoder.allow_messages_up_to(MAX_MESSAGE_BYTES);
        let status = on_status(
            "status",
            "NetStream.Publish.Start",
            &format!("{} is now published", request.name),
        );
        let sent = self.send(5, amf_message(request.stream_id, &status)).await;
        let mut writer = None;
        let result = match sent {
            Ok(()) => self.carry(&event, &mut writer).await,
            Err(e) => Err(e),
        };
        // Off air for the rooms at once; the stream is free once its ffmpeg is done.
        on_air.end();
        if let Some(writer) = writer {
            let flv = writer.finish().await;
            listener
                .media
                .record_done(&flv.to_string_lossy(), &self.client);
        }
        drop(on_air);
        result
    }

    /// The verdict on `request`: the stream's on-air guard, or why it is refused.
    async fn decide(
        &mut self,
        request: &PublishRequest,
    ) -> Result<(StreamEvent, OnAir), &'static str> {
        let listener = &self.listener;
        let publishers = &listener.publishers;
        let publish = Publish {
            app: self.app.clone(),
            name: request.name.clone(),
            code: request.code.clone(),
            addr: self.peer.ip().to_string(),
            client: self.client.clone(),
        };
        let claim = || publishers.claim(&request.name, &self.client, &self.drop, &self.last_media);
        if let Err(ending) = claim() {
            let gone = match ending {
                Some(gone) => gone,
                // Only a publisher that could publish anyway may knock a silent one off.
                None if listener.media.would_accept(&publish) => publishers
                    .drop_if_silent(&request.name)
                    .ok_or("already publishing")?,
                None => return Err("already publishing"),
            };
            let _ = tokio::time::timeout(ENDING_WAIT, gone.cancelled()).await;
            claim().map_err(|_| "already publishing")?;
        }
        let mut on_air = OnAir {
            listener: listener.clone(),
            stream: request.name.clone(),
            client: self.client.clone(),
            // Not on air yet: a refusal frees the stream and takes nothing off air.
            ended: true,
        };
        let media = listener.media.clone();
        let verdict = tokio::task::spawn_blocking(move || media.authorize_publish(&publish))
            .await
            .map_err(|_| "the decision failed")?;
        let event = verdict?;
        on_air.ended = false;
        let _ = listener
            .notices
            .send(PublishNotice::Accepted(event.clone()));
        Ok((event, on_air))
    }

    /// Carries an accepted publish's media to its ffmpeg (started once the tracks are known)
    /// until the publisher stops, is dropped, or goes idle.
    async fn carry(
        &mut self,
        event: &StreamEvent,
        writer: &mut Option<Writer>,
    ) -> Result<(), SessionEnd> {
        let idle = Duration::from_secs(self.listener.config.idle_secs);
        let queue_bytes = self.listener.config.queue_bytes;
        let mut pending: Vec<(u8, u32, Vec<u8>)> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut tracks: Option<Tracks> = None;
        // The stream as the mixers read it; gone (their connections ended) when this returns.
        let mut published: Option<Published> = None;
        let mut seen = Tracks {
            audio: false,
            video: false,
        };
        loop {
            let message = self.message(Instant::now() + idle, "idle").await?;
            let (type_id, payload) = match message.type_id {
                flv::AUDIO | flv::VIDEO if !message.payload.is_empty() => {
                    if let Some(why) = flv::unsupported_codec(message.type_id, &message.payload) {
                        return Err(SessionEnd::Codec(why));
                    }
                    seen.audio |= message.type_id == flv::AUDIO;
                    seen.video |= message.type_id == flv::VIDEO;
                    self.last_media.store(unix_millis(), Ordering::Relaxed);
                    (message.type_id, message.payload)
                }
                15 | flv::DATA => {
                    let body = match message.type_id {
                        15 => message.payload.get(1..).unwrap_or_default(),
                        _ => &message.payload[..],
                    };
                    let Some(data) = flv::data_payload(body) else {
                        continue;
                    };
                    if tracks.is_none() {
                        tracks = flv::announced(data);
                    }
                    (flv::DATA, data.to_vec())
                }
                17 | 20 => {
                    let name = command(&message)
                        .and_then(|v| v.first().and_then(Value::as_str).map(str::to_owned));
                    if matches!(
                        name.as_deref(),
                        Some("FCUnpublish" | "deleteStream" | "closeStream")
                    ) {
                        return Err(SessionEnd::Unpublished);
                    }
                    continue;
                }
                _ => continue,
            };
            pending_bytes += payload.len();
            pending.push((type_id, message.timestamp, payload));
            if tracks.is_none() {
                let first_stamp = pending.first().map_or(0, |p| p.1);
                let waited = message.timestamp.wrapping_sub(first_stamp) >= TRACKS_WAIT_MS;
                if seen.audio && seen.video || waited || pending_bytes >= queue_bytes / 2 {
                    tracks = Some(seen);
                }
            }
            let Some(tracks) = tracks.filter(|t| t.audio || t.video) else {
                continue;
            };
            if published.is_none() {
                *writer = self.start_writer(event, tracks)?;
                let relay = &self.listener.relay;
                published = Some(relay.publish(&self.app, &event.live_id.0, tracks));
            }
            for (type_id, stamp, payload) in pending.drain(..) {
                let tag: Arc<[u8]> = flv::tag(type_id, stamp, &payload).into();
                if let Some(writer) = writer.as_ref() {
                    writer.send(tag.clone())?;
                }
                if let Some(published) = &published {
                    published.tag(type_id, &payload, &tag);
                }
            }
            pending_bytes = 0;
        }
    }

    /// The stream's ffmpeg with the FLV header sent; none for a guest's stream (only its
    /// co-stream's mixer reads it, from the relay).
    fn start_writer(
        &self,
        event: &StreamEvent,
        tracks: Tracks,
    ) -> Result<Option<Writer>, SessionEnd> {
        if event.kind == StreamKind::Guest {
            return Ok(None);
        }
        let media = &self.listener.media;
        let target = Target {
            app: &self.app,
            stream: &event.live_id.0,
            stamp: self.listener.publishers.next_stamp(&event.live_id.0),
        };
        let writer = Writer::start(
            media.config(),
            media.paths(),
            &target,
            self.listener.config.queue_bytes,
        )?;
        writer.send(flv::header(tracks).into())?;
        Ok(Some(writer))
    }
}

/// A command message's values (AMF0, or AMF3's wrapper around AMF0).
fn command(message: &Message) -> Option<Vec<Value>> {
    let body = match message.type_id {
        20 => &message.payload[..],
        17 => message.payload.get(1..)?,
        _ => return None,
    };
    amf::decode_all(body).ok()
}

fn control(type_id: u8, payload: Vec<u8>) -> Message {
    Message {
        type_id,
        stream_id: 0,
        timestamp: 0,
        payload,
    }
}

fn amf_message(stream_id: u32, values: &[Value]) -> Message {
    Message {
        type_id: 20,
        stream_id,
        timestamp: 0,
        payload: amf::encode(values),
    }
}

fn on_status(level: &str, code: &str, description: &str) -> [Value; 4] {
    [
        Value::String("onStatus".into()),
        Value::Number(0.0),
        Value::Null,
        amf::object(&[
            ("level", Value::String(level.into())),
            ("code", Value::String(code.into())),
            ("description", Value::String(description.into())),
        ]),
    ]
}

fn be_u32(b: &[u8]) -> u32 {
    match b {
        [w, x, y, z, ..] => u32::from_be_bytes([*w, *x, *y, *z]),
        _ => 0,
    }
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
