//! The builtin backend's streams as HTTP-FLV, for RoomManager's own co-stream mixers: they read
//! the host's and the guest's streams here as they read them from nginx-rtmp on the rtmp
//! backend. It listens on loopback only (`media.builtin.relay_listen`; the config refuses any
//! other address), so nothing on the network reaches it; `GET /<app>/<stream>.flv`.
//!
//! A reader gets the FLV header, the stream's metadata and sequence headers (the H.264
//! decoder configuration, the AAC configuration), the tags since the last keyframe, then the
//! live tags as they come: ffmpeg's probe ends at once instead of waiting for the publisher's
//! next keyframe. What is kept is bounded: the tags since the last keyframe up to half of
//! `media.builtin.queue_bytes` (a longer group drops the cache until the next keyframe; a
//! reader joining meanwhile starts at that keyframe); per reader at most `queue_bytes` waiting.
//! A reader that falls that far behind, or takes nothing for [`WRITE_TIMEOUT`], is dropped
//! (its connection reset), never buffered for. At most [`MAX_READERS`] connections at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::flv::{self, Tracks};
use super::{queue, WRITE_TIMEOUT};

/// Connections to the relay at once (a co-stream's mixer holds two); more are answered 503.
pub const MAX_READERS: usize = 32;
/// The kernel's send buffer per reader (accepted sockets inherit the listener's): fixed, so
/// that what a reader leaves untaken is the queue's business, and the kernel does not grow its
/// buffer to megabytes for a reader that stalls.
const SEND_BUFFER_BYTES: libc::c_int = 128 * 1024;
/// How long a connection has to send its request, and how large the request may be.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_MAX_BYTES: usize = 4096;

/// The streams published now, by `<app>/<stream>`.
pub struct Relay {
    /// std mutex: held only to look a feed up, add or remove one.
    feeds: Mutex<HashMap<String, Arc<Feed>>>,
    queue_bytes: usize,
}

struct Feed {
    /// std mutex: held only to pass one tag on, or to add a reader; never across an `.await`.
    state: Mutex<FeedState>,
}

struct FeedState {
    header: Arc<[u8]>,
    tracks: Tracks,
    metadata: Option<Arc<[u8]>>,
    video_config: Option<Arc<[u8]>>,
    audio_config: Option<Arc<[u8]>>,
    /// The tags since the last video keyframe; empty before the first one and after the group
    /// outgrew `gop_max`.
    gop: Vec<Arc<[u8]>>,
    gop_bytes: usize,
    gop_max: usize,
    readers: Vec<Reader>,
}

struct Reader {
    queue: queue::Sender<Arc<[u8]>>,
    /// Cancelled to drop the reader at once.
    dropped: CancellationToken,
    /// It joined with no keyframe cached: it starts at the next one.
    waits_for_keyframe: bool,
}

/// One tag as the relay sorts it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Metadata,
    VideoConfig,
    AudioConfig,
    Keyframe,
    Other,
}

fn kind(type_id: u8, payload: &[u8]) -> Kind {
    let (first, packet) = (payload.first().copied(), payload.get(1).copied());
    match type_id {
        flv::DATA => Kind::Metadata,
        // H.264 (checked on the way in): packet type 0 is the decoder configuration.
        flv::VIDEO if packet == Some(0) => Kind::VideoConfig,
        flv::VIDEO if first.is_some_and(|f| f >> 4 == 1) => Kind::Keyframe,
        // AAC: packet type 0 is the AudioSpecificConfig.
        flv::AUDIO if packet == Some(0) => Kind::AudioConfig,
        _ => Kind::Other,
    }
}

impl Relay {
    pub fn new(queue_bytes: usize) -> Arc<Relay> {
        Arc::new(Relay {
            feeds: Mutex::new(HashMap::new()),
            queue_bytes,
        })
    }

    /// Offers `<app>/<stream>`, carrying `tracks`, to readers while the returned guard lives.
    pub fn publish(self: &Arc<Self>, app: &str, stream: &str, tracks: Tracks) -> Published {
        let key = format!("{app}/{stream}");
        let feed = Arc::new(Feed {
            state: Mutex::new(FeedState {
                header: flv::header(tracks).into(),
                tracks,
                metadata: None,
                video_config: None,
                audio_config: None,
                gop: Vec::new(),
                gop_bytes: 0,
                gop_max: self.queue_bytes / 2,
                readers: Vec::new(),
            }),
        });
        self.feeds().insert(key.clone(), feed.clone());
        Published {
            relay: self.clone(),
            key,
            feed,
        }
    }

    /// A new reader of `key`: its queue, already holding the start, and its drop token.
    fn subscribe(&self, key: &str) -> Option<(queue::Receiver<Arc<[u8]>>, CancellationToken)> {
        let feed = self.feeds().get(key).cloned()?;
        let mut state = feed.state();
        let (queue, receiver) = queue::bounded(self.queue_bytes);
        let start = [&state.metadata, &state.video_config, &state.audio_config];
        let start = std::iter::once(&state.header)
            .chain(start.into_iter().flatten())
            .chain(&state.gop);
        for tag in start {
            // The cache is at most half the queue: the start always fits.
            queue.send(tag.clone()).ok()?;
        }
        let dropped = CancellationToken::new();
        let waits_for_keyframe = state.tracks.video && state.gop.is_empty();
        state.readers.push(Reader {
            queue,
            dropped: dropped.clone(),
            waits_for_keyframe,
        });
        Some((receiver, dropped))
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Feed>>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Feed {
    fn state(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stream offered to readers; dropping it ends their connections.
pub struct Published {
    relay: Arc<Relay>,
    key: String,
    feed: Arc<Feed>,
}

impl Published {
    /// Passes one tag (`tag`, framed from `type_id` and `payload`) on and keeps what a later
    /// reader needs.
    pub fn tag(&self, type_id: u8, payload: &[u8], tag: &Arc<[u8]>) {
        let mut state = self.feed.state();
        let kind = kind(type_id, payload);
        match kind {
            Kind::Metadata => state.metadata = Some(tag.clone()),
            Kind::VideoConfig => state.video_config = Some(tag.clone()),
            Kind::AudioConfig => state.audio_config = Some(tag.clone()),
            Kind::Keyframe => {
                state.gop.clear();
                state.gop_bytes = 0;
            }
            Kind::Other => {}
        }
        let cached = matches!(kind, Kind::Keyframe | Kind::Other) && {
            let after_keyframe = kind == Kind::Keyframe || !state.gop.is_empty();
            after_keyframe && state.gop_bytes + tag.len() <= state.gop_max
        };
        if cached {
            state.gop_bytes += tag.len();
            state.gop.push(tag.clone());
        } else if kind == Kind::Other {
            state.gop.clear();
            state.gop_bytes = 0;
        }
        state.readers.retain_mut(|reader| {
            if reader.waits_for_keyframe {
                if matches!(kind, Kind::Other) {
                    return true;
                }
                reader.waits_for_keyframe = kind != Kind::Keyframe;
            }
            let sent = reader.queue.send(tag.clone());
            if sent.is_err() {
                reader.dropped.cancel();
            }
            sent.is_ok()
        });
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        let mut feeds = self.relay.feeds();
        if feeds
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.feed))
        {
            feeds.remove(&self.key);
        }
    }
}

/// Answers readers on `socket` until shutdown, each connection in its own task.
pub async fn serve(
    socket: std::net::TcpListener,
    relay: Arc<Relay>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    if let Err(e) = limit_send_buffer(&socket) {
        tracing::warn!(error = %e, "the relay's send buffers keep the system's size");
    }
    let tcp = match socket
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(socket))
    {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::error!(error = %e, "the builtin media relay cannot start");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_READERS));
    loop {
        let mut socket = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = tcp.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a relay connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // A tag goes out as soon as it comes, not held for the reader's acknowledgement.
        let _ = socket.set_nodelay(true);
        let slot = slots.clone().try_acquire_owned();
        let (relay, shutdown) = (relay.clone(), shutdown.clone());
        tasks.spawn(async move {
            let Ok(_slot) = slot else {
                let _ = reply(&mut socket, "503 Service Unavailable").await;
                return;
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = answer(socket, &relay) => {}
            }
        });
    }
}

fn limit_send_buffer(socket: &std::net::TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is the listener's own, open for the call; the option's value is
    // a `c_int` that lives across it.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&SEND_BUFFER_BYTES as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One reader: its request, then the stream until it ends or the reader is dropped.
async fn answer(mut socket: TcpStream, relay: &Relay) {
    let Some(path) = request_path(&mut socket).await else {
        let _ = reply(&mut socket, "400 Bad Request").await;
        return;
    };
    let key = path.strip_prefix('/').and_then(|p| p.strip_suffix(".flv"));
    let Some((mut queue, dropped)) = key.and_then(|key| relay.subscribe(key)) else {
        let _ = reply(&mut socket, "404 Not Found").await;
        return;
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nCache-Control: no-cache\r\n\
                Connection: close\r\n\r\n";
    if write(&mut socket, head.as_bytes()).await.is_err() {
        return;
    }
    let ended = loop {
        let next = tokio::select! {
            () = dropped.cancelled() => break false,
            next = queue.recv() => next,
        };
        let Some((tag, _room)) = next else {
            break true;
        };
        if write(&mut socket, &tag).await.is_err() {
            break false;
        }
    };
    if !ended {
        // Reset rather than leave what a dropped reader did not take in the kernel's buffers.
        let _ = socket.set_zero_linger();
    }
}

/// The path of a `GET` request read within [`REQUEST_TIMEOUT`]; `None` for anything else.
async fn request_path(socket: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let reading = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.ok()?;
            if n == 0 || head.len() + n > REQUEST_MAX_BYTES {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, reading)
        .await
        .ok()??;
    let line = head.split(|b| *b == b'\r').next()?;
    let mut words = std::str::from_utf8(line).ok()?.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some("GET"), Some(path), Some(version)) if version.starts_with("HTTP/1.") => {
            Some(path.to_owned())
        }
        _ => None,
    }
}

async fn reply(socket: &mut TcpStream, status: &str) -> Result<(), ()> {
    let text = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    write(socket, text.as_bytes()).await
}

async fn write(socket: &mut TcpStream, bytes: &[u8]) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
