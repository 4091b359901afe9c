//! Going live from the browser: a WebM or Matroska byte stream, as a page's `MediaRecorder`
//! makes it (or ffmpeg's `-f webm`/`-f matroska` output), piped into one supervised ffmpeg per
//! push that sends it to a room's stream over RTMP, the way OBS would. H.264 video is copied;
//! VP8, VP9 and AV1 are converted to H.264, and audio always becomes AAC (RTMP carries nothing
//! else), so whichever backend runs sees an ordinary push.
//!
//! Owns: each push's ffmpeg and its input queue, bounded in bytes (a stalled ffmpeg ends the
//! push; memory does not grow), the upload rate cap, and the one-publisher-per-stream claims.
//! Calls: `media::process`. The web layer (`web/publish.rs`) feeds it a socket's frames.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::process;
use super::LiveId;
use crate::config::BrowserPublishConfig;

/// The first bytes of every EBML document (WebM and Matroska files start with one).
const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];
/// How far into the stream the video track's codec must have been named: MediaRecorder's first
/// chunk carries the header with the tracks, a few hundred bytes.
const HEAD_LIMIT: usize = 256 * 1024;
/// The upload rate is measured over windows this long.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// What a queued chunk costs besides its bytes (its place in the channel), so a flood of tiny
/// frames is bounded as well as a few big ones.
const CHUNK_OVERHEAD: usize = 64;
/// How long ffmpeg may take to send what it has after its input ends, before it is stopped.
const FINISH_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("going live from the browser is turned off on this server")]
    Disabled,
    #[error("this stream has a publisher already (another page or program); stop it first")]
    AlreadyPublishing,
    #[error("the upload is not a WebM or Matroska stream")]
    NotWebm,
    #[error("the stream's first {HEAD_LIMIT} bytes name no video track (H.264, VP8, VP9 or AV1)")]
    NoVideo,
    #[error("the upload is faster than this server's cap of {max_kbps} kbit/s")]
    TooFast { max_kbps: u64 },
    #[error("the push fell behind: {queued} bytes wait for its encoder (the cap is {max})")]
    TooSlow { queued: usize, max: usize },
    #[error("cannot start ffmpeg ({binary}): {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
}

/// The streams that have a browser publisher now: one per stream.
#[derive(Default)]
pub struct Publishers {
    /// std mutex: held only for a set update, never across an `.await`.
    claimed: Mutex<HashSet<LiveId>>,
}

/// A stream's publisher place; dropping it frees the place.
pub struct Claim {
    publishers: Arc<Publishers>,
    live_id: LiveId,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.publishers.set().remove(&self.live_id);
    }
}

impl Publishers {
    /// Takes `live_id`'s publisher place, unless a browser push holds it.
    pub fn claim(self: &Arc<Self>, live_id: &LiveId) -> Result<Claim, PublishError> {
        if !self.set().insert(live_id.clone()) {
            return Err(PublishError::AlreadyPublishing);
        }
        Ok(Claim {
            publishers: self.clone(),
            live_id: live_id.clone(),
        })
    }

    /// Browser pushes running now.
    pub fn count(&self) -> usize {
        self.set().len()
    }

    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<LiveId>> {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the page is told about its push, once a second (`publish_status`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct PushStatus {
    /// `waiting` (for the stream's header), `pushing`, or `stopped`.
    pub state: &'static str,
    /// Bytes received from the page so far.
    pub bytes: u64,
    /// Bytes received that never reached ffmpeg (it had ended).
    pub dropped: u64,
}

/// The video in the upload, as its track header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// Copied as it is.
    H264,
    /// Converted to H.264.
    Other,
}

/// The video codec named in the first bytes of a WebM/Matroska stream, when they name one.
pub fn sniff_video(head: &[u8]) -> Option<VideoCodec> {
    let names = |id: &[u8]| head.windows(id.len()).any(|w| w == id);
    if names(b"V_MPEG4/ISO/AVC") {
        Some(VideoCodec::H264)
    } else if [&b"V_VP8"[..], b"V_VP9", b"V_AV1"]
        .iter()
        .any(|id| names(id))
    {
        Some(VideoCodec::Other)
    } else {
        None
    }
}

/// ffmpeg's arguments for a push of `video` to `url`.
pub fn push_args(video: VideoCodec, url: &str, config: &BrowserPublishConfig) -> Vec<String> {
    let mut args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        // A live upload: take the first second for the stream's layout, not the default five.
        "-analyzeduration",
        "1000000",
        "-f",
        "matroska",
        "-i",
        "pipe:0",
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
    ]
    .map(str::to_owned)
    .to_vec();
    match video {
        VideoCodec::H264 => args.extend(["-c:v", "copy"].map(str::to_owned)),
        VideoCodec::Other => {
            let kbps = config.video_kbps;
            args.extend(
                [
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                    "-tune",
                    "zerolatency",
                    "-pix_fmt",
                    "yuv420p",
                    // A keyframe every 2 s: the HLS fragments are cut there.
                    "-force_key_frames",
                    "expr:gte(t,n_forced*2)",
                ]
                .map(str::to_owned),
            );
            args.extend([
                "-b:v".to_owned(),
                format!("{kbps}k"),
                "-maxrate".to_owned(),
                format!("{kbps}k"),
                "-bufsize".to_owned(),
                format!("{}k", kbps * 2),
            ]);
        }
    }
    args.extend(["-c:a", "aac", "-b:a", "128k", "-ar", "44100", "-f", "flv"].map(str::to_owned));
    args.push(url.to_owned());
    args
}

/// One browser push: the bytes so far, and once the header named the video, its ffmpeg.
pub struct BrowserPush {
    config: BrowserPublishConfig,
    url: String,
    /// The stream's first bytes, kept until they name the video track.
    head: Vec<u8>,
    running: Option<Running>,
    bytes: u64,
    dropped: u64,
    window: (Instant, u64),
    stopped: bool,
}

struct Running {
    chunks: mpsc::UnboundedSender<Bytes>,
    /// Bytes (plus each chunk's overhead) sent to the feeder and not yet written to ffmpeg.
    queued: Arc<AtomicUsize>,
    /// ffmpeg's end: why it ended (its error output, or how it exited); taken once heard.
    ended: Option<oneshot::Receiver<String>>,
    kill: CancellationToken,
}

impl BrowserPush {
    pub fn new(config: BrowserPublishConfig, url: String) -> BrowserPush {
        BrowserPush {
            config,
            url,
            head: Vec::new(),
            running: None,
            bytes: 0,
            dropped: 0,
            window: (Instant::now(), 0),
            stopped: false,
        }
    }

    /// Takes the next chunk of the upload: keeps it until the header names the video, starts
    /// ffmpeg then, and queues it for ffmpeg after.
    pub fn accept(&mut self, chunk: Bytes) -> Result<(), PublishError> {
        let len = chunk.len() as u64;
        self.bytes += len;
        self.check_rate(len)?;
        if let Some(running) = &self.running {
            let cost = chunk.len() + CHUNK_OVERHEAD;
            let queued = running.queued.load(Ordering::Acquire);
            if queued + cost > self.config.queue_bytes {
                return Err(PublishError::TooSlow {
                    queued,
                    max: self.config.queue_bytes,
                });
            }
            running.queued.fetch_add(cost, Ordering::AcqRel);
            if running.chunks.send(chunk).is_err() {
                // ffmpeg has ended; `ended` tells the caller why.
                running.queued.fetch_sub(cost, Ordering::AcqRel);
                self.dropped += len;
            }
            return Ok(());
        }
        self.head.extend_from_slice(&chunk);
        if self.head.len() >= EBML_MAGIC.len() && self.head[..EBML_MAGIC.len()] != EBML_MAGIC {
            return Err(PublishError::NotWebm);
        }
        match sniff_video(&self.head) {
            Some(video) => {
                let head = Bytes::from(std::mem::take(&mut self.head));
                self.start(video, head)
            }
            None if self.head.len() > HEAD_LIMIT => Err(PublishError::NoVideo),
            None => Ok(()),
        }
    }

    fn check_rate(&mut self, len: u64) -> Result<(), PublishError> {
        let (since, bytes) = &mut self.window;
        if since.elapsed() >= RATE_WINDOW {
            *since = Instant::now();
            *bytes = 0;
        }
        *bytes += len;
        let allowed = self.config.max_kbps * 1000 / 8 * RATE_WINDOW.as_secs();
        if *bytes > allowed {
            return Err(PublishError::TooFast {
                max_kbps: self.config.max_kbps,
            });
        }
        Ok(())
    }

    fn start(&mut self, video: VideoCodec, head: Bytes) -> Result<(), PublishError> {
        let binary = &self.config.ffmpeg_binary;
        let mut command = Command::new(binary);
        command
            .args(push_args(video, &self.url, &self.config))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        process::die_with_parent(&mut command);
        let mut child = command.spawn().map_err(|source| PublishError::Spawn {
            binary: binary.display().to_string(),
            source,
        })?;
        let stdin = child
            .stdin
            .take()
            .expect("stdin was asked for as a pipe just above");
        let (chunks, incoming) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let (end_tx, ended) = oneshot::channel();
        let kill = CancellationToken::new();
        tokio::spawn(feed(stdin, incoming, queued.clone()));
        let stop = kill.clone();
        tokio::spawn(async move {
            let why = tokio::select! {
                status = child.wait() => {
                    let tail = process::read_stderr(&mut child).await;
                    match status {
                        Ok(status) if tail.is_empty() => format!("ffmpeg exited ({status})"),
                        Ok(_) => tail,
                        Err(e) => format!("cannot wait for ffmpeg: {e}"),
                    }
                }
                () = stop.cancelled() => {
                    process::stop(&mut child, process::SIGTERM, FINISH_GRACE).await;
                    "stopped".to_owned()
                }
            };
            let _ = end_tx.send(why);
        });
        tracing::info!(video = ?video, "browser push started its ffmpeg");
        let running = Running {
            chunks,
            queued,
            ended: Some(ended),
            kill,
        };
        running
            .queued
            .fetch_add(head.len() + CHUNK_OVERHEAD, Ordering::AcqRel);
        // The feeder holds the receiver until the sender is dropped: this cannot fail.
        let _ = running.chunks.send(head);
        self.running = Some(running);
        Ok(())
    }

    pub fn status(&self) -> PushStatus {
        let state = match (&self.running, self.stopped) {
            (_, true) => "stopped",
            (None, false) => "waiting",
            (Some(_), false) => "pushing",
        };
        PushStatus {
            state,
            bytes: self.bytes,
            dropped: self.dropped,
        }
    }

    /// Resolves when the push's ffmpeg ends by itself, with why; never before it started.
    /// Cancel-safe: a call dropped before it resolved leaves the end to the next.
    pub async fn ended(&mut self) -> String {
        let Some(ended) = self.running.as_mut().and_then(|r| r.ended.as_mut()) else {
            return std::future::pending().await;
        };
        let why = ended
            .await
            .unwrap_or_else(|_| "the push's supervisor ended".to_owned());
        if let Some(running) = self.running.as_mut() {
            running.ended = None;
        }
        why
    }

    /// Ends the push: ffmpeg gets the end of its input and [`FINISH_GRACE`] to send what it
    /// has, then it is stopped.
    pub async fn stop(&mut self) {
        self.stopped = true;
        let Some(running) = self.running.take() else {
            return;
        };
        let Running {
            chunks,
            ended,
            kill,
            ..
        } = running;
        drop(chunks);
        let Some(ended) = ended else {
            return;
        };
        if tokio::time::timeout(FINISH_GRACE, ended).await.is_err() {
            kill.cancel();
        }
    }
}

/// Writes the queued chunks into ffmpeg's input until the push ends or ffmpeg stops reading.
async fn feed(
    mut stdin: ChildStdin,
    mut chunks: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(chunk) = chunks.recv().await {
        let cost = chunk.len() + CHUNK_OVERHEAD;
        let written = stdin.write_all(&chunk).await;
        queued.fetch_sub(cost, Ordering::AcqRel);
        if written.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_names_the_video() {
        let mut head = EBML_MAGIC.to_vec();
        assert_eq!(sniff_video(&head), None);
        head.extend_from_slice(b"\x86\x8fV_MPEG4/ISO/AVC");
        assert_eq!(sniff_video(&head), Some(VideoCodec::H264));
        assert_eq!(sniff_video(b"\x86\x85V_VP8"), Some(VideoCodec::Other));
        assert_eq!(sniff_video(b"\x86\x85A_OPUS"), None);
    }

    #[test]
    fn h264_is_copied_and_the_rest_converted() {
        let config = BrowserPublishConfig::default();
        let copy = push_args(VideoCodec::H264, "rtmp://h/live/k?code=c", &config);
        assert!(copy.windows(2).any(|w| w == ["-c:v", "copy"]));
        assert_eq!(
            copy.last().map(String::as_str),
            Some("rtmp://h/live/k?code=c")
        );
        let convert = push_args(VideoCodec::Other, "rtmp://h/live/k", &config);
        assert!(convert.windows(2).any(|w| w == ["-c:v", "libx264"]));
        assert!(convert.windows(2).any(|w| w == ["-b:v", "2500k"]));
    }

    #[tokio::test]
    async fn a_stream_that_is_not_webm_or_names_no_video_is_refused() {
        let config = BrowserPublishConfig::default();
        let mut push = BrowserPush::new(config.clone(), "rtmp://h/live/k".into());
        let refused = push.accept(Bytes::from_static(b"GIF89a......"));
        assert!(matches!(refused, Err(PublishError::NotWebm)));

        let mut push = BrowserPush::new(config, "rtmp://h/live/k".into());
        push.accept(Bytes::from(EBML_MAGIC.to_vec())).unwrap();
        let filler = Bytes::from(vec![0u8; 64 * 1024]);
        let mut last = Ok(());
        for _ in 0..5 {
            last = push.accept(filler.clone());
        }
        assert!(matches!(last, Err(PublishError::NoVideo)));
        assert_eq!(push.status().state, "waiting");
    }

    #[test]
    fn an_upload_over_the_rate_cap_is_refused() {
        let config = BrowserPublishConfig {
            max_kbps: 80,
            ..BrowserPublishConfig::default()
        };
        // 80 kbit/s over 5 s is 50,000 bytes.
        let mut push = BrowserPush::new(config, "rtmp://h/live/k".into());
        let mut head = EBML_MAGIC.to_vec();
        head.resize(40_000, 0);
        push.accept(Bytes::from(head)).unwrap();
        let refused = push.accept(Bytes::from(vec![0u8; 20_000]));
        assert!(matches!(
            refused,
            Err(PublishError::TooFast { max_kbps: 80 })
        ));
    }

    #[test]
    fn a_stream_has_one_browser_publisher_at_a_time() {
        let publishers = Arc::new(Publishers::default());
        let stream = LiveId("abc".into());
        let first = publishers.claim(&stream).unwrap();
        assert!(matches!(
            publishers.claim(&stream),
            Err(PublishError::AlreadyPublishing)
        ));
        assert!(publishers.claim(&LiveId("other".into())).is_ok());
        drop(first);
        assert!(publishers.claim(&stream).is_ok());
    }
}
