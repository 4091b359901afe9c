//! The `rtmp` media backend: nginx with the RTMP module ingests and serves the video, ffmpeg
//! mixes co-streams and turns recordings into MP4, and RoomManager decides every publish.
//!
//! - rtp role: hosts have standing push keys (`live_id` + secret `live_code`, in the store,
//!   rotatable); co-stream guests and mixes get one-off keys. Only streams the rooms asked for
//!   are "active", and nginx's `on_publish` is accepted only for an active stream with its code.
//! - distributor role: viewers watch the HLS that nginx writes under the data dir, served by
//!   RoomManager at `/hls/…`; stopping drops the publisher through nginx's control endpoint;
//!   recordings are nginx's FLV files, remuxed to MP4 on `on_record_done` (and at start, for
//!   files a crash left behind), served at `/records/files/…`. A host's stream id outlives its
//!   sessions, so each activation of a host stream has a recording tag: `on_publish` notes the
//!   publishing connection's (nginx's `clientid`) tag, `on_record_done` files that
//!   connection's recording under it, and a session's recording takes exactly its tag's parts.
//!   A publish whose `on_record_done` never comes (nginx restarted, could not write the file,
//!   or the callback was lost) holds nothing back for long: once the publish has ended its
//!   file is filed and remuxed after [`RECORD_DONE_GRACE`] as if the callback had come.
//! - processor role: one supervised ffmpeg per co-stream (see `ffmpeg.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::builtin::relay::{self, Relay};
use super::builtin::{self, Publishers, Sockets};
use super::ffmpeg::{self, MixJob};
use super::nginx::{self, MediaPaths};
use super::{
    complete_push_url, LiveCode, LiveId, MediaError, MediaPlane, MixLayout, MixSpan, MixSpec,
    Recording, SessionMedia, StreamCredentials, StreamStatus,
};
use crate::config::{BuiltinConfig, RtmpConfig};
use crate::model::{BanScope, PushKey, RoomId, UserId};
use crate::site::Site;
use crate::store::{unix_now, Store, StoreError};

/// How long `recording` waits for nginx to close a session's files and for their MP4 to be
/// ready; a part still unfinished then fails the recording (tried again later), rather than
/// list it without that part.
const RECORDING_WAIT: Duration = Duration::from_secs(30 * 60);
/// How long after a publish ended (its `on_publish_done`, or its stream stopped) its
/// `on_record_done` is waited for. nginx sends it right after `on_publish_done`; when it does
/// not come, the file on disk is taken as the publish's recording.
const RECORD_DONE_GRACE: Duration = Duration::from_secs(10);
/// A recording's thumbnail is taken a third of the way in, but at most this many seconds.
const THUMBNAIL_AT_MOST: f64 = 5.0;
/// Attempts at turning one FLV into MP4 before it is given up on (until its recording is
/// tried again, or the next start).
const REMUX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Host,
    Guest,
    Mix,
}

impl StreamKind {
    /// The nginx application the stream is published to.
    fn app(self) -> &'static str {
        match self {
            StreamKind::Host => "live",
            StreamKind::Guest => "guest",
            StreamKind::Mix => "mix",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Host => "host",
            StreamKind::Guest => "guest",
            StreamKind::Mix => "mix",
        }
    }
}

struct ActiveStream {
    code: String,
    kind: StreamKind,
    room: u64,
    /// The host, for a host stream (stream bans, last-publish notes).
    owner: Option<UserId>,
    /// What this activation's recordings are filed under: host streams only (guests are not
    /// recorded, and a mixed stream is one co-stream's only).
    tag: Option<String>,
    on_air: bool,
    /// nginx's id of the connection that put it on air: an older publish's late
    /// `on_publish_done` (a reconnect) does not take it off.
    publisher: String,
}

/// A publish being recorded: nginx has not told yet that its recording is closed.
struct Recorder {
    stream: String,
    tag: Option<String>,
    /// When the publish was accepted (unix seconds): nginx names its file after that second
    /// or a later one.
    since: u64,
    /// When the publish ended (nginx said so, or its stream was stopped and any publisher
    /// dropped); its `on_record_done` is overdue [`RECORD_DONE_GRACE`] later.
    ended: Option<tokio::time::Instant>,
}

/// What a session's recording takes of one stream's parts: those filed under its tag, and the
/// untagged ones (a crash's leftovers, or older) that nginx started within its window.
struct Claim<'a> {
    stream: &'a str,
    tag: Option<&'a str>,
    window: Range<u64>,
}

impl Claim<'_> {
    fn takes(&self, part: &PartName) -> bool {
        part.stream == self.stream
            && match &part.tag {
                Some(tag) => self.tag == Some(tag.as_str()),
                None => self.window.contains(&part.stamp),
            }
    }

    fn takes_flv(&self, path: &Path) -> bool {
        path.file_name()
            .and_then(|n| n.to_str())
            .and_then(flv_part_name)
            .is_some_and(|part| self.takes(&part))
    }
}

struct Mixer {
    stop: CancellationToken,
    layout: watch::Sender<MixLayout>,
    /// The guest's one-off stream, retired with the mix.
    guest: LiveId,
}

/// nginx's verdict request, answered by [`RtmpMedia::authorize_publish`].
pub struct Publish {
    pub app: String,
    pub name: String,
    pub code: String,
    pub addr: String,
    /// nginx's id of the publishing connection; its `on_record_done` carries it too.
    pub client: String,
}

/// An accepted publish (or its end): which room's which stream.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub room: RoomId,
    pub live_id: LiveId,
    pub kind: StreamKind,
}

/// What `GET /api/v1/me/push` shows a host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushView {
    pub live_id: String,
    pub push_url: String,
    /// OBS: "Server".
    pub server: String,
    /// OBS: "Stream Key".
    pub stream_key: String,
    pub last_publish_at: Option<u64>,
    pub last_publish_addr: Option<String>,
}

/// Who accepts the RTMP pushes and writes their HLS and FLV.
enum Ingest {
    /// nginx with the RTMP module, deciding through `/hooks/rtmp/…`.
    Nginx,
    /// RoomManager's own listener (`builtin`), one ffmpeg per stream; the mixers read the
    /// streams from its relay, at this loopback address.
    Builtin {
        publishers: Arc<Publishers>,
        relay: SocketAddr,
    },
}

/// What happened to a publish, for the rooms (and the metrics and the log), whichever ingest
/// saw it.
#[derive(Debug)]
pub enum PublishNotice {
    Accepted(StreamEvent),
    Refused {
        stream: String,
        app: String,
        addr: String,
        reason: &'static str,
    },
    Ended(StreamEvent),
}

pub struct RtmpMedia {
    config: RtmpConfig,
    ingest: Ingest,
    store: Store,
    paths: MediaPaths,
    /// `rtmp://HOST:PORT` as publishers reach nginx; `rtmp://:PORT` when no public host is
    /// configured (completed per request: see `media::complete_push_url`).
    public_rtmp: String,
    /// What nginx's callbacks must carry (`?secret=`).
    hook_secret: String,
    /// `rtmp://IP:PORT` as RoomManager's own ffmpeg reaches nginx.
    local_rtmp: String,
    ffprobe: PathBuf,
    /// Why video cannot flow, when it cannot (missing nginx or ffmpeg); shown on /healthz.
    problem: Option<String>,
    /// std mutexes: each held only for a map update (`recorders` also for the renames that
    /// file a recording), never across an `.await`.
    streams: Mutex<HashMap<String, ActiveStream>>,
    mixers: Mutex<HashMap<String, Mixer>>,
    /// Recorded publishes by nginx's connection id, until their recording is closed. Locked
    /// after `streams` when both are needed, and before `remuxing`.
    recorders: Mutex<HashMap<String, Recorder>>,
    /// FLV files being turned into MP4 right now.
    remuxing: Mutex<Vec<PathBuf>>,
    /// FLV files that could not be turned into MP4; kept for the next start.
    given_up: Mutex<Vec<PathBuf>>,
    /// Re-encodes of co-streamed sessions allowed at once (`media.rtmp.max_reencodes`).
    reencodes: Semaphore,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// This media plane itself, for the background work that `&self` methods start.
    me: Weak<RtmpMedia>,
}

impl RtmpMedia {
    /// Prepares the folders, writes the nginx config and (if managed) starts nginx, and picks
    /// up recordings a crash left unfinished. A missing nginx or ffmpeg is reported, not fatal.
    pub fn start(
        config: &RtmpConfig,
        store: Store,
        data_dir: &Path,
        http: SocketAddr,
        site: &Site,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> std::io::Result<Arc<RtmpMedia>> {
        let paths = MediaPaths::new(data_dir)?;
        let mut problems: Vec<String> = ffmpeg_problem(config).into_iter().collect();
        let hook_secret = hook_secret(config, &paths)?;
        write_private(
            &paths.config_file(),
            &config_text(config, &paths, http, &hook_secret),
        )?;
        let supervise = match config.manage_nginx.then(|| nginx::check(config)) {
            Some(Ok(())) => true,
            Some(Err(problem)) => {
                problems.push(problem);
                false
            }
            None => false,
        };
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        let shared = Shared {
            config,
            store,
            paths,
            site,
            rtmp_listen: config.rtmp_listen,
            tasks,
            shutdown,
        };
        let media = RtmpMedia::new(shared, Ingest::Nginx, hook_secret, problem);
        if supervise {
            let stopped = Arc::downgrade(&media);
            let on_exit = move || {
                if let Some(media) = stopped.upgrade() {
                    media.nginx_exited();
                }
            };
            let nginx = nginx::supervise(
                config.nginx_binary.clone(),
                media.paths.clone(),
                media.shutdown.clone(),
                on_exit,
            );
            media.tasks.spawn(nginx);
        }
        media.remux_leftovers();
        Ok(media)
    }

    /// The `builtin` backend: the same media plane with RoomManager's own RTMP listener in
    /// place of nginx, and its relay for the mixers; what it decides goes to `notices`. A
    /// missing ffmpeg is reported, not fatal.
    #[allow(clippy::too_many_arguments)]
    pub fn start_builtin(
        config: &RtmpConfig,
        listener: &BuiltinConfig,
        sockets: Sockets,
        store: Store,
        data_dir: &Path,
        site: &Site,
        notices: tokio::sync::mpsc::UnboundedSender<PublishNotice>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> std::io::Result<Arc<RtmpMedia>> {
        let paths = MediaPaths::new(data_dir)?;
        sockets.rtmp.set_nonblocking(true)?;
        let rtmp_listen = sockets.rtmp.local_addr()?;
        let relay_addr = sockets.relay.local_addr()?;
        let publishers = Arc::new(Publishers::default());
        let relay = Relay::new(listener.queue_bytes);
        let shared = Shared {
            config,
            store,
            paths,
            site,
            rtmp_listen,
            tasks,
            shutdown,
        };
        // Nothing calls the hooks on this backend: a secret nobody knows keeps them shut.
        let ingest = Ingest::Builtin {
            publishers: publishers.clone(),
            relay: relay_addr,
        };
        let media = RtmpMedia::new(shared, ingest, random_token(40), ffmpeg_problem(config));
        media.tasks.spawn(relay::serve(
            sockets.relay,
            relay.clone(),
            media.tasks.clone(),
            media.shutdown.clone(),
        ));
        let serve = builtin::serve(
            sockets.rtmp,
            builtin::Listener {
                config: listener.clone(),
                media: media.clone(),
                publishers,
                relay,
                notices,
                tasks: media.tasks.clone(),
                shutdown: media.shutdown.clone(),
            },
        );
        media.tasks.spawn(serve);
        media.remux_leftovers();
        Ok(media)
    }

    fn new(
        shared: Shared<'_>,
        ingest: Ingest,
        hook_secret: String,
        problem: Option<String>,
    ) -> Arc<RtmpMedia> {
        if let Some(problem) = &problem {
            tracing::error!("the rtmp media plane cannot carry video: {problem}");
        }
        let config = shared.config;
        let public_host = shared.site.fixed_rtmp_host().unwrap_or_default();
        let port = shared.rtmp_listen.port();
        let local_ip = if shared.rtmp_listen.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            shared.rtmp_listen.ip().to_string()
        };
        Arc::new_cyclic(|me| RtmpMedia {
            ffprobe: config.ffmpeg_binary.with_file_name("ffprobe"),
            hook_secret,
            config: config.clone(),
            ingest,
            store: shared.store,
            paths: shared.paths,
            public_rtmp: format!("rtmp://{public_host}:{port}"),
            local_rtmp: format!("rtmp://{local_ip}:{port}"),
            problem,
            streams: Mutex::new(HashMap::new()),
            mixers: Mutex::new(HashMap::new()),
            recorders: Mutex::new(HashMap::new()),
            remuxing: Mutex::new(Vec::new()),
            given_up: Mutex::new(Vec::new()),
            reencodes: Semaphore::new(config.max_reencodes),
            tasks: shared.tasks,
            shutdown: shared.shutdown,
            me: me.clone(),
        })
    }

    /// The settings shared by both ingests (ffmpeg, HLS lengths).
    pub fn config(&self) -> &RtmpConfig {
        &self.config
    }

    /// The folders the media plane writes.
    pub fn paths(&self) -> &MediaPaths {
        &self.paths
    }

    /// Whether a callback carries the hook secret.
    pub fn is_hook_secret(&self, given: &str) -> bool {
        constant_time_eq(self.hook_secret.as_bytes(), given.as_bytes())
    }

    /// `Err` with the reason when video cannot flow.
    pub fn status(&self) -> Result<(), &str> {
        match &self.problem {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    // ---- push keys ----

    /// The host's standing push key, created on first use. Blocks on the store.
    pub fn push_key(&self, user: UserId) -> Result<PushKey, StoreError> {
        standing_key(&self.store, user)
    }

    /// A new secret code (the `live_id` stays, so viewers' links do not change). The old code
    /// stops working at once, also for a session that is live now.
    pub fn rotate_push_key(&self, user: UserId) -> Result<PushKey, StoreError> {
        let mut key = self.push_key(user)?;
        key.live_code = random_token(24);
        let key = self.store.put_push_key(user, key, |_| false)?;
        if let Some(active) = self.streams().get_mut(&key.live_id) {
            active.code = key.live_code.clone();
        }
        Ok(key)
    }

    /// Drops whoever is pushing to `live_id` right now (after a key rotation: a leaked key
    /// must stop working at once, also for a push already running).
    pub async fn drop_if_on_air(&self, live_id: &str) -> Result<(), MediaError> {
        let app = match self.streams().get(live_id) {
            Some(active) if active.on_air => active.kind.app(),
            _ => return Ok(()),
        };
        self.drop_publisher(app, live_id).await
    }

    /// The push credentials as the host sees them; `host` is the name the host reached this
    /// server by (used when no public host is configured).
    pub fn push_view(&self, key: &PushKey, host: &str) -> PushView {
        let server = complete_push_url(&format!("{}/live", self.public_rtmp), host);
        let stream_key = format!("{}?code={}", key.live_id, key.live_code);
        PushView {
            live_id: key.live_id.clone(),
            push_url: format!("{server}/{stream_key}"),
            server,
            stream_key,
            last_publish_at: key.last_publish_at,
            last_publish_addr: key.last_publish_addr.clone(),
        }
    }

    // ---- nginx's callbacks ----

    /// Decides a publish: only a stream a room asked for, with its current code, in the right
    /// application, by a host without a stream ban. Blocks on the store.
    pub fn authorize_publish(&self, publish: &Publish) -> Result<StreamEvent, &'static str> {
        let (event, owner, tag) = checked_publish(&self.streams(), publish)?;
        if let Some(owner) = owner {
            let bans = self.store.bans_of(owner).map_err(|_| "store unavailable")?;
            let now = unix_now();
            if bans
                .iter()
                .any(|b| b.scope == BanScope::Stream && b.in_force(now))
            {
                return Err("the host is banned from streaming");
            }
            if let Err(e) = self.store.push_published(owner, now, &publish.addr) {
                tracing::warn!(error = %e, "cannot note the publish");
            }
        }
        self.accept_publish(publish, &event, tag)
    }

    /// Whether `publish` names a stream a room asked for, in its application, with its current
    /// code (what [`Self::authorize_publish`] checks first), without accepting it.
    pub fn would_accept(&self, publish: &Publish) -> bool {
        checked_publish(&self.streams(), publish).is_ok()
    }

    /// The last step of [`Self::authorize_publish`], after its store work: the stream may have
    /// been stopped (or its code rotated, or a new session started on it) meanwhile, and a
    /// stop that found it not on air dropped nobody. So it is checked again, and marked on air
    /// and its recorder noted, under the one lock a stop takes.
    fn accept_publish(
        &self,
        publish: &Publish,
        event: &StreamEvent,
        tag: Option<String>,
    ) -> Result<StreamEvent, &'static str> {
        let mut streams = self.streams();
        let (_, _, now_tag) = checked_publish(&streams, publish)?;
        if now_tag != tag {
            return Err("the stream was stopped meanwhile");
        }
        if let Some(active) = streams.get_mut(&publish.name) {
            active.on_air = true;
            active.publisher = publish.client.clone();
        }
        if event.kind != StreamKind::Guest && !publish.client.is_empty() {
            let recorder = Recorder {
                stream: publish.name.clone(),
                tag,
                since: unix_now(),
                ended: None,
            };
            self.recorders().insert(publish.client.clone(), recorder);
        }
        Ok(event.clone())
    }

    /// Publisher `client` of stream `name` stopped: its recording is due (see
    /// [`RECORD_DONE_GRACE`]). The event for the room, if the stream is still one of ours and
    /// this publisher was the one on air.
    pub fn publish_done(&self, name: &str, client: &str) -> Option<StreamEvent> {
        self.end_recorders(|id, _| id == client);
        let mut streams = self.streams();
        let active = streams
            .get_mut(name)
            .filter(|a| client.is_empty() || a.publisher == client)?;
        active.on_air = false;
        Some(StreamEvent {
            room: RoomId(active.room),
            live_id: LiveId(name.to_owned()),
            kind: active.kind,
        })
    }

    /// nginx closed the recording of the publish by connection `client`: it is filed under
    /// that publish's tag (its name carries it from now on, so a restart keeps it) and turned
    /// into MP4 in the background. Paths outside the FLV folder, or not named as nginx names
    /// recordings, are ignored.
    pub fn record_done(&self, path: &str, client: &str) {
        let Some((flv, part)) = self.own_flv(Path::new(path)) else {
            tracing::warn!(
                path,
                "on_record_done for a file outside the recordings folder; ignored"
            );
            return;
        };
        // One lock from the recorder's tag to its removal: a recording waiting for this part
        // sees it recording, then remuxing (listed before the recorder goes), at every moment.
        let mut recorders = self.recorders();
        let tag = recorders
            .get(client)
            .filter(|r| r.stream == part.stream)
            .and_then(|r| r.tag.clone());
        // A file being remuxed already was taken without this callback (nginx restarted).
        if !self.remuxing_list().contains(&flv) {
            let _ = self.start_remux(file_under(flv, &part, tag.as_deref()));
        }
        recorders.remove(client);
    }

    /// Marks the recorders `which` picks as ended, and takes what they left on disk once
    /// their `on_record_done` is overdue.
    fn end_recorders(&self, which: impl Fn(&str, &Recorder) -> bool) {
        let now = tokio::time::Instant::now();
        let mut ended = false;
        for (client, recorder) in self.recorders().iter_mut() {
            if recorder.ended.is_none() && which(client, recorder) {
                recorder.ended = Some(now);
                ended = true;
            }
        }
        let Some(media) = self.me.upgrade().filter(|_| ended) else {
            return;
        };
        self.tasks.spawn(async move {
            tokio::select! {
                () = media.shutdown.cancelled() => {}
                () = tokio::time::sleep(RECORD_DONE_GRACE) => {
                    let now = tokio::time::Instant::now();
                    media.take_overdue(|r| r.ended.is_some_and(|at| at + RECORD_DONE_GRACE <= now));
                }
            }
        });
    }

    /// Files the recordings of the publishes `overdue` picks as `on_record_done` would have,
    /// from the FLV files on disk, and forgets those publishes. A publish's files are the
    /// untagged ones of its stream that nginx started from its acceptance on, up to the next
    /// publish of that stream (two accepted in one second cannot be told apart unless both
    /// are taken now, under one tag: otherwise their files stay for the later one, or
    /// untagged, claimed by time).
    fn take_overdue(&self, overdue: impl Fn(&Recorder) -> bool) {
        let mut recorders = self.recorders();
        let spans: Vec<(String, String, Option<String>, Range<u64>)> = recorders
            .iter()
            .filter(|(_, r)| overdue(r))
            .map(|(client, r)| {
                // A publish accepted in the same second is told apart only when it is taken
                // now too, under the same tag (then either may take the file).
                let until = recorders
                    .iter()
                    .filter(|(other, o)| *other != client && o.stream == r.stream)
                    .filter(|(_, o)| {
                        o.since > r.since || o.since == r.since && (!overdue(o) || o.tag != r.tag)
                    })
                    .map(|(_, o)| o.since)
                    .min()
                    .unwrap_or(u64::MAX);
                (
                    client.clone(),
                    r.stream.clone(),
                    r.tag.clone(),
                    r.since..until,
                )
            })
            .collect();
        if spans.is_empty() {
            return;
        }
        let on_disk = self.flv_files();
        for (client, stream, tag, span) in spans {
            let left = on_disk.iter().filter(|(flv, part)| {
                part.stream == stream
                    && part.tag.is_none()
                    && span.contains(&part.stamp)
                    && !self.remuxing_list().contains(flv)
            });
            for (flv, part) in left {
                tracing::warn!(flv = %flv.display(),
                    "nginx did not report this recording as closed; it is taken as it is");
                let _ = self.start_remux(file_under(flv.clone(), part, tag.as_deref()));
            }
            recorders.remove(&client);
        }
    }

    /// nginx stopped (and is restarted): its publishes are gone without their callbacks, so
    /// nothing is on air, and their recordings are taken as they are on disk, with any other
    /// file it left behind.
    fn nginx_exited(&self) {
        for active in self.streams().values_mut() {
            active.on_air = false;
        }
        self.take_overdue(|_| true);
        self.remux_leftovers();
    }

    fn own_flv(&self, path: &Path) -> Option<(PathBuf, PartName)> {
        let name = path.file_name()?.to_str()?;
        let part = flv_part_name(name)?;
        let dir = std::fs::canonicalize(path.parent()?).ok()?;
        let ours = std::fs::canonicalize(&self.paths.flv).ok()?;
        (dir == ours).then(|| (ours.join(name), part))
    }

    /// The recordings in the FLV folder.
    fn flv_files(&self) -> Vec<(PathBuf, PartName)> {
        let Ok(entries) = std::fs::read_dir(&self.paths.flv) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let part = entry.file_name().to_str().and_then(flv_part_name)?;
                Some((entry.path(), part))
            })
            .collect()
    }

    /// Lists `flv` as being remuxed and remuxes it in the background, unless it is listed
    /// already or gone (remuxed by whoever took it first: a late `on_record_done` of a file
    /// taken without it). A file given up on earlier is tried again. Whether it started.
    fn start_remux(&self, flv: PathBuf) -> bool {
        let Some(media) = self.me.upgrade() else {
            return false;
        };
        let listed = {
            let mut remuxing = self.remuxing_list();
            let listed = !remuxing.contains(&flv) && flv.exists();
            if listed {
                // Listed as remuxing before it leaves the given-up list: a recording waiting
                // for it sees it in one or the other.
                remuxing.push(flv.clone());
            }
            listed
        };
        if !flv.exists() || listed {
            self.given_up_list().retain(|p| p != &flv);
        }
        if !listed {
            return false;
        }
        self.tasks.spawn(async move { media.remux(flv).await });
        true
    }

    /// Remuxes the recordings nginx left in the FLV folder (at start, and when nginx stopped).
    fn remux_leftovers(&self) {
        for (flv, _) in self.flv_files() {
            let file = flv.display().to_string();
            if self.start_remux(flv) {
                tracing::info!(file, "finishing a recording nginx left unfinished");
            }
        }
    }

    /// Turns `flv` (listed in `remuxing` by the caller) into its MP4 part.
    async fn remux(self: Arc<Self>, flv: PathBuf) {
        let Some(part) = flv
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(flv_part_name)
        else {
            self.remuxing_list().retain(|p| p != &flv);
            return;
        };
        let dir = self.paths.records.join(&part.stream);
        let output = dir.join(part.mp4_name());
        let mut pause = Duration::from_secs(2);
        for attempt in 1..=REMUX_ATTEMPTS {
            let result = match tokio::fs::create_dir_all(&dir).await {
                Ok(()) => ffmpeg::remux(&self.config.ffmpeg_binary, &flv, &output).await,
                Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
            };
            match result {
                Ok(()) => {
                    let _ = tokio::fs::remove_file(&flv).await;
                    tracing::info!(mp4 = %output.display(), "recording ready");
                    break;
                }
                Err(e) if attempt == REMUX_ATTEMPTS => {
                    tracing::error!(flv = %flv.display(), error = %e,
                        "a recording could not be turned into MP4; the FLV is kept and tried again with its recording");
                    self.given_up_list().push(flv.clone());
                }
                Err(e) => {
                    tracing::warn!(flv = %flv.display(), attempt, error = %e, "remux failed; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause *= 2;
                }
            }
        }
        self.remuxing_list().retain(|p| p != &flv);
    }

    // ---- serving ----

    /// An HLS file: `app` is `live` or `mix`, `name` a stream, `file` the playlist or a segment.
    pub fn hls_path(&self, app: &str, name: &str, file: &str) -> Option<(PathBuf, &'static str)> {
        if !matches!(app, "live" | "mix") || !is_stream_name(name) {
            return None;
        }
        let content_type = if file == "index.m3u8" {
            "application/vnd.apple.mpegurl"
        } else if file
            .strip_suffix(".ts")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            "video/mp2t"
        } else {
            return None;
        };
        Some((self.paths.hls.join(app).join(name).join(file), content_type))
    }

    /// A finished recording file: its video (`.mp4`) or its thumbnail (`.jpg`).
    pub fn record_path(&self, stream: &str, file: &str) -> Option<PathBuf> {
        let stem = file
            .strip_suffix(".mp4")
            .or_else(|| file.strip_suffix(".jpg"))?;
        let valid = is_stream_name(stream)
            && !stem.is_empty()
            && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        valid.then(|| self.paths.records.join(stream).join(file))
    }

    // ---- helpers ----

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, ActiveStream>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remuxing_list(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.remuxing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn given_up_list(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.given_up.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recorders(&self) -> std::sync::MutexGuard<'_, HashMap<String, Recorder>> {
        self.recorders.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn activate(
        &self,
        live_id: &str,
        code: &str,
        kind: StreamKind,
        room: u64,
        owner: Option<UserId>,
    ) -> Option<String> {
        let tag = (kind == StreamKind::Host).then(|| random_token(12));
        self.streams().insert(
            live_id.to_owned(),
            ActiveStream {
                code: code.to_owned(),
                kind,
                room,
                owner,
                tag: tag.clone(),
                on_air: false,
                publisher: String::new(),
            },
        );
        tag
    }

    fn kind_of(&self, live: &LiveId) -> Option<StreamKind> {
        self.streams().get(&live.0).map(|s| s.kind)
    }

    /// Drops whoever publishes `live` (nginx's control endpoint, or the builtin listener's
    /// connection), e.g. when the room stops.
    async fn drop_publisher(&self, app: &str, name: &str) -> Result<(), MediaError> {
        if let Ingest::Builtin { publishers, .. } = &self.ingest {
            publishers.drop_publisher(name);
            return Ok(());
        }
        let address = format!("127.0.0.1:{}", self.config.control_port);
        let request = format!(
            "GET /control/drop/publisher?app={app}&name={name} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        );
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(&address).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .map_err(|_| MediaError::Timeout)?
            .map_err(|e| MediaError::Unavailable(format!("nginx control: {e}")))?;
        let status_line = String::from_utf8_lossy(&answer);
        let status = status_line.split_whitespace().nth(1).unwrap_or("");
        // 404 means nobody was publishing, which is what we want anyway.
        if status.starts_with('2') || status == "404" {
            Ok(())
        } else {
            Err(MediaError::Refused(format!(
                "nginx control answered {status}"
            )))
        }
    }

    fn watch_url(&self, kind: StreamKind, live: &LiveId) -> String {
        // A path: each viewer resolves it against the address they opened the page with.
        format!("/hls/{}/{}/index.m3u8", kind.app(), live)
    }

    /// The MP4 parts `claim` takes, oldest first, once nginx closed their recordings (or they
    /// were taken without its word: [`RECORD_DONE_GRACE`]) and they were remuxed; parts of
    /// other sessions are not waited for. Parts given up on earlier are remuxed again first.
    /// `Err` when one of them is not ready within [`RECORDING_WAIT`], or could not be remuxed
    /// at all: the recording is then tried again later, never listed without it.
    async fn finished_parts(&self, claim: &Claim<'_>) -> Result<Vec<Part>, MediaError> {
        let deadline = tokio::time::Instant::now() + RECORDING_WAIT;
        let given_up: Vec<PathBuf> = self
            .given_up_list()
            .iter()
            .filter(|p| claim.takes_flv(p))
            .cloned()
            .collect();
        for flv in given_up {
            let _ = self.start_remux(flv);
        }
        loop {
            // In the order a part goes through them (each lists it before the one before lets
            // it go), so a part moving on is never missed between two looks.
            let recording = self
                .recorders()
                .values()
                .any(|r| r.stream == claim.stream && r.tag.as_deref() == claim.tag);
            let remuxing = self.remuxing_list().iter().any(|p| claim.takes_flv(p));
            if self.given_up_list().iter().any(|p| claim.takes_flv(p)) {
                return Err(MediaError::Unavailable(format!(
                    "a recorded part of {} could not be turned into MP4",
                    claim.stream
                )));
            }
            if !recording && !remuxing {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MediaError::Timeout);
            }
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    return Err(MediaError::Unavailable("shutting down".to_owned()));
                }
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        let dir = self.paths.records.join(claim.stream);
        let mut parts: Vec<Part> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = mp4_part_name(claim.stream, e.file_name().to_str()?)?;
                        claim.takes(&name).then(|| Part {
                            stamp: name.stamp,
                            path: e.path(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        parts.sort_by_key(|p| p.stamp);
        Ok(parts)
    }

    /// The host's parts and the mixes' parts joined in time order (the mix where viewers
    /// watched it), re-encoded to one frame size, into `output`.
    async fn join_with_mixes(
        &self,
        session: &SessionMedia,
        host: &[Part],
        mixes: &[(&MixSpan, Part)],
        output: &Path,
    ) -> Result<(), MediaError> {
        let mut probed = Vec::new();
        for part in host.iter().chain(mixes.iter().map(|(_, p)| p)) {
            let probe = ffmpeg::probe(&self.ffprobe, &part.path)
                .await
                .map_err(MediaError::BadAnswer)?;
            probed.push(probe);
        }
        let (host_probes, mix_probes) = probed.split_at(host.len());
        let covered = |part: &Part, probe: &ffmpeg::Probe| Covered {
            file: part.path.clone(),
            origin: part.stamp as f64,
            start: part.stamp as f64,
            end: part.stamp as f64 + probe.duration,
        };
        let host_cover: Vec<Covered> = host
            .iter()
            .zip(host_probes)
            .map(|(p, probe)| covered(p, probe))
            .collect();
        let mix_cover: Vec<Covered> = mixes
            .iter()
            .zip(mix_probes)
            .map(|((span, p), probe)| {
                let mut c = covered(p, probe);
                c.start = c.start.max(span.from as f64);
                c.end = c.end.min(span.to as f64);
                c
            })
            .collect();
        let cuts = timeline(&host_cover, mix_cover);
        if cuts.is_empty() {
            return Err(MediaError::BadAnswer(format!(
                "nothing to join for the session of {} at {}",
                session.host, session.started_at
            )));
        }
        let _slot = reencode_slot(&self.reencodes, session).await;
        let even = |n: u32| (n + 1) & !1;
        let width = probed.iter().map(|p| p.width).max().unwrap_or(0);
        let height = probed.iter().map(|p| p.height).max().unwrap_or(0);
        let audio = probed.iter().all(|p| p.audio);
        ffmpeg::join_cuts(
            &self.config.ffmpeg_binary,
            &cuts,
            (even(width.max(2)), even(height.max(2))),
            audio,
            output,
        )
        .await
        .map_err(MediaError::Unavailable)
    }

    /// A finished recording file as listed: its length, and a thumbnail next to it (a failed
    /// thumbnail is logged, and the recording listed without one).
    async fn listed(&self, host: &LiveId, file: &Path) -> Result<Recording, MediaError> {
        let probe = ffmpeg::probe(&self.ffprobe, file)
            .await
            .map_err(MediaError::BadAnswer)?;
        let name = |path: &Path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned()
        };
        let jpg = file.with_extension("jpg");
        let at = (probe.duration / 3.0).min(THUMBNAIL_AT_MOST);
        let thumbnail_url = match ffmpeg::thumbnail(&self.config.ffmpeg_binary, file, at, &jpg)
            .await
        {
            Ok(()) => Some(format!("/records/files/{host}/{}", name(&jpg))),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "no thumbnail for a recording");
                None
            }
        };
        Ok(Recording {
            // A path, never a host: the record outlives any address the server is reached by.
            url: format!("/records/files/{host}/{}", name(file)),
            duration_secs: probe.duration.round() as u64,
            thumbnail_url,
        })
    }
}

/// What [`RtmpMedia::new`] takes from either start.
struct Shared<'a> {
    config: &'a RtmpConfig,
    store: Store,
    paths: MediaPaths,
    site: &'a Site,
    /// Where publishers reach the ingest (the bound address, for the builtin listener).
    rtmp_listen: SocketAddr,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Why video cannot flow without ffmpeg, if it is missing.
fn ffmpeg_problem(config: &RtmpConfig) -> Option<String> {
    nginx::which(&config.ffmpeg_binary).is_none().then(|| {
        format!(
            "ffmpeg was not found ({}); install it (Debian: apt-get install ffmpeg)",
            config.ffmpeg_binary.display()
        )
    })
}

/// One MP4 part of a stream's recording: when nginx started it (unix seconds) and the file.
#[derive(Debug)]
struct Part {
    stamp: u64,
    path: PathBuf,
}

/// A stretch of wall time (unix seconds) a file shows; the file's second 0 is at `origin`.
#[derive(Debug, Clone, PartialEq)]
struct Covered {
    file: PathBuf,
    origin: f64,
    start: f64,
    end: f64,
}

/// What the recording of a session shows, in order: the host's parts, except where a mix
/// covers the same time (viewers watched the mix then). Mixes are taken in time order and
/// never overlap each other (a later one starts where the earlier ends); slivers under 50 ms
/// are dropped.
fn timeline(host: &[Covered], mut mixes: Vec<Covered>) -> Vec<ffmpeg::Cut> {
    const SLIVER: f64 = 0.05;
    mixes.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut last_end = f64::MIN;
    for mix in &mut mixes {
        mix.start = mix.start.max(last_end);
        last_end = last_end.max(mix.end);
    }
    mixes.retain(|m| m.end - m.start >= SLIVER);
    let mut pieces: Vec<(f64, ffmpeg::Cut)> = Vec::new();
    let mut cut = |source: &Covered, start: f64, end: f64| {
        if end - start >= SLIVER {
            let cut = ffmpeg::Cut {
                file: source.file.clone(),
                from: start - source.origin,
                length: end - start,
            };
            pieces.push((start, cut));
        }
    };
    for part in host {
        let mut at = part.start;
        for mix in mixes
            .iter()
            .filter(|m| m.end > part.start && m.start < part.end)
        {
            cut(part, at, mix.start.max(at));
            at = at.max(mix.end);
        }
        cut(part, at, part.end);
    }
    for mix in &mixes {
        cut(mix, mix.start, mix.end);
    }
    pieces.sort_by(|a, b| a.0.total_cmp(&b.0));
    pieces.into_iter().map(|(_, cut)| cut).collect()
}

#[async_trait]
impl MediaPlane for RtmpMedia {
    async fn new_stream(&self, room: u64, purpose: &str) -> Result<StreamCredentials, MediaError> {
        let (live_id, code, kind, owner) = match purpose {
            "host" => {
                let found = self
                    .store
                    .run(move |store| {
                        let Some(room) = store.room(RoomId(room))? else {
                            return Ok(None);
                        };
                        Ok(Some((room.owner, standing_key(store, room.owner)?)))
                    })
                    .await
                    .map_err(|e| MediaError::Unavailable(e.to_string()))?;
                let (owner, key) =
                    found.ok_or_else(|| MediaError::Refused("no such room".into()))?;
                (key.live_id, key.live_code, StreamKind::Host, Some(owner))
            }
            "guest" => (
                format!("g{}", random_token(10)),
                random_token(24),
                StreamKind::Guest,
                None,
            ),
            "mix" => (
                format!("m{}", random_token(10)),
                random_token(24),
                StreamKind::Mix,
                None,
            ),
            other => {
                return Err(MediaError::Refused(format!(
                    "unknown stream purpose {other:?}"
                )))
            }
        };
        let recording_tag = self.activate(&live_id, &code, kind, room, owner);
        let base = if kind == StreamKind::Mix {
            &self.local_rtmp
        } else {
            &self.public_rtmp
        };
        Ok(StreamCredentials {
            push_url: format!("{base}/{}/{live_id}?code={code}", kind.app()),
            live_id: LiveId(live_id),
            live_code: LiveCode(code),
            recording_tag,
        })
    }

    async fn start_distribution(&self, live: &LiveId) -> Result<String, MediaError> {
        if let Some(problem) = &self.problem {
            return Err(MediaError::Unavailable(problem.clone()));
        }
        let kind = self
            .kind_of(live)
            .ok_or_else(|| MediaError::Refused(format!("unknown stream {live}")))?;
        Ok(self.watch_url(kind, live))
    }

    async fn stop_distribution(&self, live: &LiveId) -> Result<(), MediaError> {
        let Some(active) = self.streams().remove(&live.0) else {
            return Ok(());
        };
        if active.on_air {
            self.drop_publisher(active.kind.app(), &live.0).await?;
        }
        // Nobody publishes it any more; a publish nginx never reported ended (it gave up on
        // our answer, or the callback was lost) must not hold its recording back.
        self.end_recorders(|_, r| r.stream == live.0);
        Ok(())
    }

    async fn check_stream(&self, live: &LiveId) -> Result<StreamStatus, MediaError> {
        let on_air = self.streams().get(&live.0).is_some_and(|s| s.on_air);
        Ok(if on_air {
            StreamStatus::OnAir
        } else {
            StreamStatus::Waiting
        })
    }

    async fn recording(&self, session: &SessionMedia) -> Result<Option<Recording>, MediaError> {
        // A host's stream id stays the same from session to session: a session's parts are
        // those filed under its tag (and untagged ones nginx started within its window), and
        // its recording claims them (they become `session_<start>.mp4`, and are gone as
        // parts), so no other session takes them.
        let host = &session.host;
        let claim = Claim {
            stream: &host.0,
            tag: session.recording_tag.as_deref(),
            window: session.started_at..session.ended_at,
        };
        let parts = self.finished_parts(&claim).await?;
        let mut mix_parts = Vec::new();
        for span in &session.mixes {
            // A mixed stream is one co-stream's only: all of its parts are this session's.
            let claim = Claim {
                stream: &span.mixed.0,
                tag: None,
                window: 0..u64::MAX,
            };
            for part in self.finished_parts(&claim).await? {
                mix_parts.push((span, part));
            }
        }
        let dir = self.paths.records.join(&host.0);
        let file = dir.join(format!("session_{}.mp4", session.started_at));
        if parts.is_empty() && mix_parts.is_empty() {
            // An earlier try may have claimed the parts and stopped before they were listed.
            return match tokio::fs::try_exists(&file).await {
                Ok(true) => self.listed(host, &file).await.map(Some),
                _ => Ok(None),
            };
        }
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            MediaError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        match (parts.as_slice(), mix_parts.is_empty()) {
            ([one], true) => tokio::fs::rename(&one.path, &file)
                .await
                .map_err(|e| MediaError::Unavailable(format!("cannot claim the recording: {e}")))?,
            (many, true) => {
                let paths: Vec<PathBuf> = many.iter().map(|p| p.path.clone()).collect();
                ffmpeg::concat(&self.config.ffmpeg_binary, &paths, &file)
                    .await
                    .map_err(MediaError::Unavailable)?;
            }
            (host_parts, false) => {
                self.join_with_mixes(session, host_parts, &mix_parts, &file)
                    .await?;
            }
        }
        for part in parts.iter().chain(mix_parts.iter().map(|(_, p)| p)) {
            let _ = tokio::fs::remove_file(&part.path).await;
        }
        for span in &session.mixes {
            // Empty by now; one that is not (a part still being written) is left alone.
            let _ = tokio::fs::remove_dir(self.paths.records.join(&span.mixed.0)).await;
        }
        self.listed(host, &file).await.map(Some)
    }

    async fn remove_recording(
        &self,
        stream: &LiveId,
        mixes: &[LiveId],
        recording: &Recording,
    ) -> Result<(), MediaError> {
        for mix in mixes.iter().filter(|m| is_stream_name(&m.0)) {
            // Parts a recording could not claim; a mixed stream is its session's only.
            let dir = self.paths.records.join(&mix.0);
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(MediaError::Unavailable(format!(
                        "cannot remove {}: {e}",
                        dir.display()
                    )))
                }
            }
        }
        let files = std::iter::once(&recording.url).chain(&recording.thumbnail_url);
        for url in files {
            // Only this backend's own files, by the same checks that serve them.
            let path = url
                .strip_prefix(&format!("/records/files/{stream}/"))
                .and_then(|file| self.record_path(&stream.0, file));
            let Some(path) = path else {
                tracing::warn!(url, "not a recording file of this server; left alone");
                continue;
            };
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(MediaError::Unavailable(format!(
                        "cannot remove {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        Ok(())
    }

    async fn start_mix(&self, spec: &MixSpec) -> Result<(), MediaError> {
        if let Some(problem) = &self.problem {
            return Err(MediaError::Unavailable(problem.clone()));
        }
        let code = self
            .streams()
            .get(&spec.mixed.0)
            .map(|s| s.code.clone())
            .ok_or_else(|| MediaError::Refused(format!("unknown mixed stream {}", spec.mixed)))?;
        // Inputs from nginx over RTMP, or from the builtin listener's relay as HTTP-FLV; the
        // mix is pushed back to either over RTMP like any publish.
        let input = |kind: StreamKind, live: &LiveId| match &self.ingest {
            Ingest::Nginx => format!("{}/{}/{live}", self.local_rtmp, kind.app()),
            Ingest::Builtin { relay, .. } => format!("http://{relay}/{}/{live}.flv", kind.app()),
        };
        let job = MixJob {
            ffmpeg: self.config.ffmpeg_binary.clone(),
            host_url: input(StreamKind::Host, &spec.host),
            guest_url: input(StreamKind::Guest, &spec.guest),
            output_url: format!("{}/mix/{}?code={code}", self.local_rtmp, spec.mixed),
        };
        let stop = self.shutdown.child_token();
        let (layout, layouts) = watch::channel(spec.layout);
        self.tasks
            .spawn(ffmpeg::supervise_mixer(job, layouts, stop.clone()));
        let old = self
            .mixers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                spec.mixed.0.clone(),
                Mixer {
                    stop,
                    layout,
                    guest: spec.guest.clone(),
                },
            );
        if let Some(old) = old {
            old.stop.cancel();
        }
        Ok(())
    }

    async fn update_mix(&self, mixed: &LiveId, layout: MixLayout) -> Result<(), MediaError> {
        let mixers = self.mixers.lock().unwrap_or_else(|p| p.into_inner());
        let mixer = mixers
            .get(&mixed.0)
            .ok_or_else(|| MediaError::Refused(format!("no mix {mixed}")))?;
        mixer.layout.send_replace(layout);
        Ok(())
    }

    async fn close_mix(&self, mixed: &LiveId) -> Result<(), MediaError> {
        let mixer = self
            .mixers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&mixed.0);
        if let Some(mixer) = mixer {
            mixer.stop.cancel();
            // The guest's credentials end with the co-stream, and so does a push still running.
            self.stop_distribution(&mixer.guest).await?;
        }
        Ok(())
    }
}

/// The nginx config for this install (also what `roommanager nginx-config` prints).
pub fn config_text(
    config: &RtmpConfig,
    paths: &MediaPaths,
    http: SocketAddr,
    hook_secret: &str,
) -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let as_root = unsafe { libc::geteuid() } == 0;
    nginx::config_text(config, paths, http, hook_secret, as_root)
}

/// The secret nginx's callbacks must carry: `media.rtmp.hook_secret` when set, else the one
/// generated at first start and kept in the data dir (readable by its owner only). Being on
/// this machine is not enough: behind a reverse proxy on the same machine every request comes
/// from loopback.
pub fn hook_secret(config: &RtmpConfig, paths: &MediaPaths) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if !config.hook_secret.is_empty() {
        return Ok(config.hook_secret.clone());
    }
    let file = paths.hook_secret_file();
    match std::fs::read_to_string(&file) {
        Ok(secret) if secret.trim().len() >= 32 => return Ok(secret.trim().to_owned()),
        Ok(_) => std::fs::remove_file(&file)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = random_token(40);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)?;
    out.write_all(secret.as_bytes())?;
    out.sync_all()?;
    Ok(secret)
}

/// Writes `text` to `path`, readable by its owner only (the nginx config holds the hook secret).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Whether `publish` may go ahead as `streams` stand: the event, the stream's owner and its
/// recording tag.
fn checked_publish(
    streams: &HashMap<String, ActiveStream>,
    publish: &Publish,
) -> Result<(StreamEvent, Option<UserId>, Option<String>), &'static str> {
    let active = streams.get(&publish.name).ok_or("no such live stream")?;
    if !constant_time_eq(active.code.as_bytes(), publish.code.as_bytes()) {
        return Err("wrong code");
    }
    if active.kind.app() != publish.app {
        return Err("wrong application");
    }
    let event = StreamEvent {
        room: RoomId(active.room),
        live_id: LiveId(publish.name.clone()),
        kind: active.kind,
    };
    Ok((event, active.owner, active.tag.clone()))
}

/// `flv` filed under `tag`: renamed to carry it, unless it carries one already. A file that
/// cannot be renamed stays as it is, claimed by its time then; one that is gone was taken
/// already.
fn file_under(flv: PathBuf, part: &PartName, tag: Option<&str>) -> PathBuf {
    let Some(tag) = tag.filter(|_| part.tag.is_none()) else {
        return flv;
    };
    let tagged = flv.with_file_name(format!("{}-{}-{tag}.flv", part.stream, part.stamp));
    match std::fs::rename(&flv, &tagged) {
        Ok(()) => tagged,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(flv = %flv.display(), error = %e,
                    "cannot tag a recording; it is claimed by its start time");
            }
            flv
        }
    }
}

fn standing_key(store: &Store, user: UserId) -> Result<PushKey, StoreError> {
    if let Some(key) = store.push_key(user)? {
        return Ok(key);
    }
    store.put_push_key(user, new_push_key(), |_| true)
}

fn new_push_key() -> PushKey {
    PushKey {
        live_id: format!("h{}", random_token(10)),
        live_code: random_token(24),
        created_at: unix_now(),
        last_publish_at: None,
        last_publish_addr: None,
    }
}

/// Lower-case letters and digits, `len` of them.
fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the operating system's random source is always available");
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn is_stream_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A slot for one re-encode: x264 takes every core it gets, so sessions ending together
/// re-encode one after the other (`media.rtmp.max_reencodes` at once).
async fn reencode_slot<'a>(gate: &'a Semaphore, session: &SessionMedia) -> SemaphorePermit<'a> {
    if let Ok(slot) = gate.try_acquire() {
        return slot;
    }
    tracing::info!(host = %session.host, started_at = session.started_at,
        "a co-streamed recording waits for a re-encode slot (media.rtmp.max_reencodes)");
    gate.acquire()
        .await
        .expect("the re-encode semaphore is never closed")
}

/// A recorded part's name: its stream, when nginx started it (unix seconds), and the tag it
/// is filed under, if any.
#[derive(Debug, PartialEq, Eq)]
struct PartName {
    stream: String,
    stamp: u64,
    tag: Option<String>,
}

impl PartName {
    /// `<time>.mp4`, or `<time>_<tag>.mp4`, in its stream's folder.
    fn mp4_name(&self) -> String {
        match &self.tag {
            Some(tag) => format!("{}_{tag}.mp4", self.stamp),
            None => format!("{}.mp4", self.stamp),
        }
    }
}

/// `<stream>-<unix time>.flv` as nginx's `record_unique on` names files, or with `-<tag>`
/// appended once `on_record_done` filed it under its tag.
fn flv_part_name(file: &str) -> Option<PartName> {
    let stem = file.strip_suffix(".flv")?;
    let mut pieces = stem.split('-');
    let (stream, stamp, tag) = (pieces.next()?, pieces.next()?, pieces.next());
    let valid = pieces.next().is_none()
        && is_stream_name(stream)
        && tag.is_none_or(is_stream_name)
        && stamp.bytes().all(|b| b.is_ascii_digit());
    Some(PartName {
        stream: stream.to_owned(),
        stamp: stamp.parse().ok().filter(|_| valid)?,
        tag: tag.map(str::to_owned),
    })
}

/// A part of `stream` as named in its folder (see [`PartName::mp4_name`]).
fn mp4_part_name(stream: &str, file: &str) -> Option<PartName> {
    let stem = file.strip_suffix(".mp4")?;
    let (stamp, tag) = match stem.split_once('_') {
        Some((stamp, tag)) => (stamp, Some(tag)),
        None => (stem, None),
    };
    let valid = tag.is_none_or(is_stream_name) && stamp.bytes().all(|b| b.is_ascii_digit());
    Some(PartName {
        stream: stream.to_owned(),
        stamp: stamp.parse().ok().filter(|_| valid)?,
        tag: tag.map(str::to_owned),
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_co_streamed_session_shows_the_host_then_the_mix_then_the_host() {
        let covered = |file: &str, start: f64, end: f64| Covered {
            file: file.into(),
            origin: start,
            start,
            end,
        };
        let cut = |file: &str, from: f64, length: f64| ffmpeg::Cut {
            file: file.into(),
            from,
            length,
        };
        // The host pushes 100..160 in one part; the mixer ran 110..130 and, restarted (its
        // second part named a second early), 129..140.
        let host = [covered("h", 100.0, 160.0)];
        let mixes = vec![covered("m2", 129.0, 140.0), covered("m1", 110.0, 130.0)];
        assert_eq!(
            timeline(&host, mixes),
            [
                cut("h", 0.0, 10.0),
                cut("m1", 0.0, 20.0),
                cut("m2", 1.0, 10.0),
                cut("h", 40.0, 20.0),
            ]
        );
        // Without a mix, the host's parts as they are.
        let host = [covered("a", 10.0, 20.0), covered("b", 30.0, 35.0)];
        assert_eq!(
            timeline(&host, Vec::new()),
            [cut("a", 0.0, 10.0), cut("b", 0.0, 5.0)]
        );
    }

    #[test]
    fn recorded_file_names_are_parsed_strictly() {
        let part = |tag: Option<&str>| PartName {
            stream: "habc123".into(),
            stamp: 1795714121,
            tag: tag.map(Into::into),
        };
        assert_eq!(flv_part_name("habc123-1795714121.flv"), Some(part(None)));
        assert_eq!(
            flv_part_name("habc123-1795714121-t9x.flv"),
            Some(part(Some("t9x")))
        );
        assert_eq!(part(Some("t9x")).mp4_name(), "1795714121_t9x.mp4");
        for name in ["1795714121.mp4", "1795714121_t9x.mp4"] {
            let parsed = mp4_part_name("habc123", name).expect(name);
            assert_eq!(parsed.mp4_name(), name);
        }
        for bad in [
            "x.flv",
            "../a-1.flv",
            "a-b.flv",
            "a-1.mp4",
            "-1.flv",
            "a b-1.flv",
            "a-1-t.x.flv",
            "a-1-t-u.flv",
            "a-1-.flv",
        ] {
            assert_eq!(flv_part_name(bad), None, "{bad}");
        }
        for bad in ["session_1795714121.mp4", "1_.mp4", "x.mp4", "1_a b.mp4"] {
            assert_eq!(mp4_part_name("a", bad), None, "{bad}");
        }
    }

    #[test]
    fn a_session_claims_its_tag_and_untagged_parts_in_its_window_only() {
        let claim = Claim {
            stream: "h1",
            tag: Some("a"),
            window: 100..200,
        };
        let part = |stream: &str, stamp, tag: Option<&str>| PartName {
            stream: stream.into(),
            stamp,
            tag: tag.map(Into::into),
        };
        // Its own tag, whenever nginx started the part (a reconnect in its last second too).
        assert!(claim.takes(&part("h1", 200, Some("a"))));
        assert!(claim.takes(&part("h1", 99, Some("a"))));
        // The next session's part, started in this session's last second, is not this one's.
        assert!(!claim.takes(&part("h1", 150, Some("b"))));
        // Untagged (a crash's leftovers): by the window.
        assert!(claim.takes(&part("h1", 100, None)));
        assert!(!claim.takes(&part("h1", 200, None)));
        assert!(!claim.takes(&part("h2", 150, Some("a"))));
    }

    /// A stop that comes while a publish is being decided (after its check, during its store
    /// work) finds the stream not on air and drops nobody; the publish must then be refused,
    /// not accepted for a stream nobody stops again. So must one whose stream was stopped and
    /// activated again for a new session meanwhile (its recording would go to the old one).
    #[tokio::test]
    async fn a_publish_whose_stream_is_stopped_while_it_is_decided_is_refused() {
        let data = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(data.path()).expect("a fresh store opens");
        let mut config = crate::config::Config::default();
        config.media.rtmp.manage_nginx = false;
        let http = SocketAddr::from(([127, 0, 0, 1], 9));
        let site = Site::new(&config, http);
        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let media = RtmpMedia::start(
            &config.media.rtmp,
            store,
            data.path(),
            http,
            &site,
            tasks,
            shutdown,
        )
        .expect("the media plane starts without nginx");
        let publish = |live: &LiveId, code: &str, client: &str| Publish {
            app: "live".into(),
            name: live.0.clone(),
            code: code.into(),
            addr: "127.0.0.1".into(),
            client: client.into(),
        };
        let live = LiveId("hrace".into());
        let decide = |publish: &Publish, between: &dyn Fn()| {
            let (event, _, tag) = checked_publish(&media.streams(), publish)?;
            between();
            media.accept_publish(publish, &event, tag)
        };

        // Control: nothing in between; on air and recorded.
        media.activate(&live.0, "c0de", StreamKind::Host, 1, None);
        assert!(decide(&publish(&live, "c0de", "1"), &|| {}).is_ok());
        assert_eq!(
            media.check_stream(&live).await.unwrap(),
            StreamStatus::OnAir
        );
        assert!(media.recorders().contains_key("1"));

        // What `stop_distribution` does under the lock (the drop it then asks nginx for is
        // not this test's business: nobody is on air in the cases below).
        let stop = || {
            media.streams().remove(&live.0);
        };
        stop();
        media.activate(&live.0, "c0de", StreamKind::Host, 1, None);
        let refused = decide(&publish(&live, "c0de", "2"), &stop);
        assert_eq!(refused.err(), Some("no such live stream"));
        let restarted = || {
            stop();
            media.activate(&live.0, "c0de", StreamKind::Host, 1, None);
        };
        media.activate(&live.0, "c0de", StreamKind::Host, 1, None);
        let refused = decide(&publish(&live, "c0de", "3"), &restarted);
        assert_eq!(refused.err(), Some("the stream was stopped meanwhile"));
        assert_eq!(
            media.check_stream(&live).await.unwrap(),
            StreamStatus::Waiting
        );
        assert!(!media.recorders().contains_key("2") && !media.recorders().contains_key("3"));
    }

    /// With one re-encode allowed, a second co-streamed session waits until the first is
    /// done; with two, both run.
    #[tokio::test]
    async fn re_encodes_wait_for_a_free_slot() {
        let session = |started_at| SessionMedia {
            host: LiveId("h1".into()),
            recording_tag: None,
            started_at,
            ended_at: started_at + 10,
            mixes: Vec::new(),
        };
        let (a, b, c) = (session(1), session(2), session(3));
        let gate = Semaphore::new(1);
        let first = reencode_slot(&gate, &a).await;
        let mut second = std::pin::pin!(reencode_slot(&gate, &b));
        let waited = tokio::time::timeout(Duration::from_millis(100), second.as_mut()).await;
        assert!(waited.is_err(), "the second re-encode must wait");
        drop(first);
        let _second = second.await;
        let two = Semaphore::new(2);
        let _a = reencode_slot(&two, &a).await;
        let both = tokio::time::timeout(Duration::from_secs(5), reencode_slot(&two, &c)).await;
        assert!(both.is_ok(), "two slots: both run");
    }
}
