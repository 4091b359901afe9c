//! Media plane: the interface RoomManager drives to move video, in the three roles of the design.
//!
//! - rtp (ingest): issues credentials for a new stream (`LiveId` + secret `LiveCode`);
//! - distributor: serves a stream to viewers (its watch URL), stops it, checks it, and finds a
//!   live session's recording;
//! - processor: mixes a host and a guest stream into a new stream for co-streaming.
//!
//! Owns: the [`MediaPlane`] trait, its value types and [`MediaError`]. Calls: nothing. The rooms
//! call it; backends implement it: `rtmp` (nginx-rtmp + ffmpeg on this machine, the default),
//! `builtin` (the same with RoomManager's own RTMP listener in place of nginx: `rtmp.rs` with
//! `builtin/`), `http` (the seed's separate services) and `scripted` (in-process, for tests).

pub mod browser;
pub mod builtin;
pub mod ffmpeg;
pub mod http;
pub mod nginx;
mod process;
pub mod rtmp;
pub mod scripted;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A stream's public id, as it appears in push and watch URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LiveId(pub String);

/// The secret that authorises a push to a `LiveId`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LiveCode(pub String);

impl std::fmt::Debug for LiveCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveCode(…)")
    }
}

impl std::fmt::Display for LiveId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a publisher needs to push a stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamCredentials {
    pub live_id: LiveId,
    pub live_code: LiveCode,
    /// The full URL to push to (code included).
    pub push_url: String,
    /// What the media plane files what is recorded under these credentials by, when it can
    /// tell a stream's sessions apart that way (a host's stream id outlives sessions); given
    /// back in [`SessionMedia::recording_tag`].
    #[serde(default)]
    pub recording_tag: Option<String>,
}

/// Fills in the host of a push URL that left it open (`rtmp://:1935/…`: the rtmp backend with no
/// configured public host) with `host`, the name the publisher reached this server by. Other
/// URLs are complete already and come back as they are.
pub fn complete_push_url(url: &str, host: &str) -> String {
    match url.strip_prefix("rtmp://:") {
        Some(rest) => format!("rtmp://{host}:{rest}"),
        None => url.to_owned(),
    }
}

/// How a co-stream's two pictures are laid out in the mix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MixLayout {
    #[default]
    SideBySide,
    PictureInPicture,
}

/// The three streams of a co-stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MixSpec {
    pub host: LiveId,
    pub guest: LiveId,
    pub mixed: LiveId,
    pub layout: MixLayout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    /// Someone is pushing.
    OnAir,
    /// Nothing is being pushed (yet).
    Waiting,
}

/// What the media plane needs to find a live session's recording: the host's stream, the
/// session's window in unix seconds, and the stretches viewers watched a co-stream's mix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMedia {
    pub host: LiveId,
    /// The host credentials' [`StreamCredentials::recording_tag`]: what was recorded under it
    /// is this session's, whenever it started. The window below is for what carries no tag.
    #[serde(default)]
    pub recording_tag: Option<String>,
    pub started_at: u64,
    /// Nothing untagged that starts at or after this instant belongs to the session (a host's
    /// stream id may be used again by the next session).
    pub ended_at: u64,
    /// In time order.
    pub mixes: Vec<MixSpan>,
}

/// A stretch of a live session during which viewers watched the mixed stream `mixed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixSpan {
    pub mixed: LiveId,
    /// Unix seconds.
    pub from: u64,
    pub to: u64,
}

/// A finished recording of a live session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recording {
    pub url: String,
    pub duration_secs: u64,
    /// One frame of it, as a picture (a path on this server or a URL); `None` when the media
    /// plane has none.
    #[serde(default)]
    pub thumbnail_url: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    #[error("the media service refused: {0}")]
    Refused(String),
    #[error("the media service did not answer in time")]
    Timeout,
    #[error("the media service is unreachable: {0}")]
    Unavailable(String),
    #[error("the media service answered nonsense: {0}")]
    BadAnswer(String),
}

/// The media plane as the rooms see it. Every call may fail or hang; callers bound each call
/// with a timeout and retry where the design says so.
#[async_trait]
pub trait MediaPlane: Send + Sync {
    /// rtp: credentials for a new stream of `room` (`purpose` tells host, guest or mix apart).
    async fn new_stream(&self, room: u64, purpose: &str) -> Result<StreamCredentials, MediaError>;
    /// distributor: start serving `live` to viewers; returns its watch URL.
    async fn start_distribution(&self, live: &LiveId) -> Result<String, MediaError>;
    /// distributor: stop serving `live` (and drop its publisher).
    async fn stop_distribution(&self, live: &LiveId) -> Result<(), MediaError>;
    /// distributor: whether `live` is being pushed.
    async fn check_stream(&self, live: &LiveId) -> Result<StreamStatus, MediaError>;
    /// distributor: a live session's recording as viewers saw it (the mix while co-streaming),
    /// once it is ready. May take long (the rtmp backend waits for nginx's files and may
    /// re-encode): each backend bounds its own waits.
    async fn recording(&self, session: &SessionMedia) -> Result<Option<Recording>, MediaError>;
    /// distributor: delete a recording of `stream` (its video and its thumbnail) and whatever
    /// is still kept of its session's co-stream `mixes`. One already gone is not an error, so
    /// a removal can be retried until it succeeds.
    async fn remove_recording(
        &self,
        stream: &LiveId,
        mixes: &[LiveId],
        recording: &Recording,
    ) -> Result<(), MediaError>;
    /// processor: start mixing `spec.host` and `spec.guest` into `spec.mixed`.
    async fn start_mix(&self, spec: &MixSpec) -> Result<(), MediaError>;
    /// processor: change the layout of a running mix.
    async fn update_mix(&self, mixed: &LiveId, layout: MixLayout) -> Result<(), MediaError>;
    /// processor: stop the mix writing `mixed`.
    async fn close_mix(&self, mixed: &LiveId) -> Result<(), MediaError>;
}
