//! App: the running RoomManager's parts, wired together once at start.
//!
//! Owns: the validated config, the store handle, the domain services and the background tasks
//! (mail delivery, the accounts purge, the rate limiters' sweep, the recordings' media removal,
//! the viewer peaks' sampling), with the cancellation token and task tracker that shutdown uses.
//! Calls: config, store, metrics, mail, files, downloads, accounts, admin, connections, rooms,
//! records, stats. The web layer
//! receives an `Arc<App>` and reaches every domain part through it. Wires accounts to the
//! connection registry: the end of a session closes its connections.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::hashers::Hashers;
use crate::accounts::{Accounts, SessionEnd, SessionEnds};
use crate::admin::ip_bans::IpBans;
use crate::admin::moderation::Moderation;
use crate::admin::Admins;
use crate::config::Config;
use crate::config::MediaBackend;
use crate::connections::ConnectionCounts;
use crate::downloads::{Downloads, DownloadsError};
use crate::files::Files;
use crate::mail::{MailError, Mailer};
use crate::media::browser::Publishers;
use crate::media::builtin::Sockets;
use crate::media::http::HttpMedia;
use crate::media::rtmp::{PublishNotice, RtmpMedia};
use crate::media::MediaPlane;
use crate::metrics::Metrics;
use crate::model::{TokenHash, UserId};
use crate::records::watch::Watching;
use crate::records::Records;
use crate::rooms::connections::Connections;
use crate::rooms::Rooms;
use crate::site::Site;
use crate::store::{Store, StoreError};

/// How long shutdown waits for background tasks to notice it.
const TASKS_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown waits for the last request handlers to let go of the app.
const STORE_RELEASE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("cannot prepare the media folders under {path}: {source}")]
    Media {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen for RTMP on {addr} (media.builtin.rtmp_listen): {source}")]
    RtmpListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for the mixers on {addr} (media.builtin.relay_listen): {source}")]
    RelayListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the password hashing threads: {0}")]
    Hashing(std::io::Error),
    #[error("cannot create the upload folders under {path}: {source}")]
    Files {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot prepare the downloads folder under {path}: {source}")]
    Downloads {
        path: std::path::PathBuf,
        source: DownloadsError,
    },
}

/// Where the media plane comes from.
enum MediaChoice {
    /// The configured backend.
    Configured,
    Given(Arc<dyn MediaPlane>),
}

pub struct App {
    pub config: Config,
    pub store: Store,
    pub metrics: Metrics,
    pub accounts: Arc<Accounts>,
    pub admins: Arc<Admins>,
    /// The IP bans in force, which guests' sessions and joins are checked against.
    pub ip_bans: Arc<IpBans>,
    /// What admins do to users, rooms and recordings (bans, closes, deletes).
    pub moderation: Moderation,
    pub rooms: Arc<Rooms>,
    pub records: Arc<Records>,
    pub watching: Arc<Watching>,
    /// Every open WebSocket connection, by session and by user.
    pub sockets: Arc<Connections>,
    /// The rtmp backend, when it is the media plane (its callbacks and files need it).
    pub rtmp: Option<Arc<RtmpMedia>>,
    pub files: Arc<Files>,
    pub downloads: Arc<Downloads>,
    /// Delivers queued mail; the admin's mail page reads and adds to its queue.
    pub mailer: Arc<Mailer>,
    /// The streams being pushed from a browser now (one publisher each).
    pub publishers: Arc<Publishers>,
    /// Where the server is reached from: the host in the URLs it hands out.
    pub site: Site,
    /// Open connections per client address (`server.max_connections_per_ip`).
    pub connections: Arc<ConnectionCounts>,
    pub started: Instant,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl App {
    /// Opens the store in the configured data dir, builds the parts around it (the configured
    /// media backend among them) and starts the background tasks. `http_addr` is where the HTTP
    /// server listens (the bound address), for the media plane's callbacks and the URLs handed
    /// out. Must be called inside a tokio runtime.
    pub fn open(config: Config, http_addr: SocketAddr) -> Result<Arc<App>, AppError> {
        Self::build(config, http_addr, MediaChoice::Configured)
    }

    /// Like [`App::open`], with the given media plane (tests pass a scripted one).
    pub fn open_with_media(
        config: Config,
        http_addr: SocketAddr,
        media: Arc<dyn MediaPlane>,
    ) -> Result<Arc<App>, AppError> {
        Self::build(config, http_addr, MediaChoice::Given(media))
    }

    fn build(
        config: Config,
        http_addr: SocketAddr,
        media: MediaChoice,
    ) -> Result<Arc<App>, AppError> {
        let site = Site::new(&config, http_addr);
        let data_dir = config.storage.data_dir.clone();
        let store = Store::open(&data_dir)?;
        let files =
            Arc::new(
                Files::new(&data_dir, &config.uploads).map_err(|source| AppError::Files {
                    path: data_dir.clone(),
                    source,
                })?,
            );
        let downloads = Arc::new(
            Downloads::open(&data_dir, &config.downloads, store.clone()).map_err(|source| {
                AppError::Downloads {
                    path: data_dir.clone(),
                    source,
                }
            })?,
        );
        let mailer = Arc::new(Mailer::new(
            &config.email,
            &config.limits,
            &data_dir,
            store.clone(),
        )?);
        let sockets = Arc::new(Connections::default());
        let hashers = Arc::new(Hashers::start().map_err(AppError::Hashing)?);
        let accounts = Arc::new(Accounts::new(
            &config,
            store.clone(),
            mailer.clone(),
            files.clone(),
            sockets.clone(),
            hashers.clone(),
        ));
        let admins = Arc::new(Admins::new(&config, store.clone(), hashers));
        let ip_bans = Arc::new(IpBans::load(&config, store.clone())?);
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut rtmp = None;
        let mut notices = None;
        let media: Arc<dyn MediaPlane> = match media {
            MediaChoice::Given(media) => media,
            MediaChoice::Configured => match config.media.backend {
                MediaBackend::Http => Arc::new(HttpMedia::new(&config.media.http)),
                backend @ (MediaBackend::Rtmp | MediaBackend::Builtin) => {
                    let started = if backend == MediaBackend::Rtmp {
                        RtmpMedia::start(
                            &config.media.rtmp,
                            store.clone(),
                            &data_dir,
                            http_addr,
                            &site,
                            tasks.clone(),
                            shutdown.clone(),
                        )
                    } else {
                        let addr = config.media.builtin.rtmp_listen;
                        let rtmp = std::net::TcpListener::bind(addr)
                            .map_err(|source| AppError::RtmpListen { addr, source })?;
                        let addr = config.media.builtin.relay_listen;
                        let relay = std::net::TcpListener::bind(addr)
                            .map_err(|source| AppError::RelayListen { addr, source })?;
                        let (tell, told) = tokio::sync::mpsc::unbounded_channel();
                        notices = Some(told);
                        RtmpMedia::start_builtin(
                            &config.media.rtmp,
                            &config.media.builtin,
                            Sockets { rtmp, relay },
                            store.clone(),
                            &data_dir,
                            &site,
                            tell,
                            tasks.clone(),
                            shutdown.clone(),
                        )
                    };
                    let started = started.map_err(|source| AppError::Media {
                        path: data_dir.clone(),
                        source,
                    })?;
                    rtmp = Some(started.clone());
                    started
                }
            },
        };
        tasks.spawn(mailer.clone().run(shutdown.clone()));
        tasks.spawn(accounts.clone().run_purge(shutdown.clone()));
        // Read before the server takes requests, so no session of this run is among them.
        let leftovers = store.unsettled_live_sessions()?;
        tasks.spawn(accounts.clone().run_limiter_sweep(shutdown.clone()));
        tasks.spawn(admins.clone().run_limiter_sweep(shutdown.clone()));
        let records = Arc::new(Records::new(&config, store.clone(), media.clone()));
        tasks.spawn(records.clone().run(shutdown.clone()));
        let rooms = Arc::new(Rooms::new(
            store.clone(),
            media,
            config.rooms.clone(),
            config.gifts.clone(),
            leftovers,
            tasks.clone(),
            shutdown.clone(),
        ));
        let counted = rooms.clone();
        tasks.spawn(crate::stats::peaks::run(
            store.clone(),
            move || counted.viewers_now(),
            shutdown.clone(),
        ));
        let watching = Watching::new(config.records.clone(), store.clone());
        tasks.spawn(watching.clone().run(shutdown.clone()));
        let connections = ConnectionCounts::new(config.server.max_connections_per_ip);
        let moderation = Moderation::new(
            store.clone(),
            accounts.clone(),
            rooms.clone(),
            records.clone(),
        );
        let app = Arc::new(App {
            connections,
            config,
            store,
            metrics: Metrics::default(),
            accounts,
            admins,
            ip_bans,
            moderation,
            rooms,
            records,
            watching,
            sockets,
            rtmp,
            files,
            downloads,
            mailer,
            publishers: Arc::default(),
            site,
            started: Instant::now(),
            shutdown,
            tasks,
        });
        if let Some(notices) = notices {
            app.tasks
                .spawn(forward_notices(Arc::downgrade(&app), notices));
        }
        Ok(app)
    }

    /// What became of a publish, whichever ingest decided it: counted, logged, and told to
    /// its room.
    pub async fn publish_notice(&self, notice: PublishNotice) {
        match notice {
            PublishNotice::Accepted(event) => {
                tracing::info!(room = %event.room, stream = %event.live_id, kind = event.kind.name(), "publish accepted");
                self.metrics.publish_decided("accepted");
                self.rooms
                    .stream_state(event.room, event.live_id.0, true)
                    .await;
            }
            PublishNotice::Refused {
                stream,
                app,
                addr,
                reason,
            } => {
                tracing::warn!(stream, app, addr, reason, "publish refused");
                self.metrics.publish_decided(reason);
            }
            PublishNotice::Ended(event) => {
                tracing::info!(room = %event.room, stream = %event.live_id, "publish ended");
                self.rooms
                    .stream_state(event.room, event.live_id.0, false)
                    .await;
            }
        }
    }

    /// Runs `work` as part of the app: shutdown waits for it (WebSocket connections, which
    /// the HTTP server's graceful shutdown does not wait for).
    pub fn track<F: std::future::Future>(
        &self,
        work: F,
    ) -> impl std::future::Future<Output = F::Output> {
        self.tasks.track_future(work)
    }

    /// Completes when the app begins to shut down.
    pub async fn stopping(&self) {
        self.shutdown.cancelled().await;
    }

    /// The first step of shutdown, while the HTTP server still answers (the media plane's
    /// callbacks need it): every room closes and asks for its recording.
    pub async fn close_rooms(&self) {
        self.rooms.shutdown().await;
    }

    /// Closes every room (if not done yet), stops the background tasks, then closes the store.
    /// Called once, after the server stopped accepting connections.
    pub async fn close(self: Arc<App>) {
        self.rooms.shutdown().await;
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(TASKS_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
        // Connection tasks that just finished may still be dropping their handles for a moment.
        let mut app = self;
        let deadline = Instant::now() + STORE_RELEASE;
        let app = loop {
            match Arc::try_unwrap(app) {
                Ok(app) => break Some(app),
                Err(shared) if Instant::now() < deadline => {
                    app = shared;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => break None,
            }
        };
        match app {
            Some(app) => {
                // The services hold store handles too; drop them first so the close is the last.
                drop(app.accounts);
                drop(app.admins);
                drop(app.ip_bans);
                drop(app.rooms);
                drop(app.records);
                drop(app.downloads);
                drop(app.watching);
                drop(app.rtmp);
                match app.store.close() {
                    Ok(()) => tracing::info!("store closed"),
                    Err(e) => tracing::error!(error = %e, "closing the store failed"),
                }
            }
            // Something still holds the app (a connection forced closed at the end of the grace
            // period); the store closes when its last handle drops, and every commit is durable.
            None => tracing::warn!("requests still unwinding; the store closes when they end"),
        }
    }
}

/// The connection registry hears from accounts when sessions end.
impl SessionEnds for Connections {
    fn session_ended(&self, session: &TokenHash, why: SessionEnd) {
        self.close_session(session, why.reason());
    }

    fn user_gone(&self, user: UserId, why: SessionEnd) {
        self.close_user(user, why.reason());
    }

    fn active_users(&self) -> HashSet<UserId> {
        self.users()
    }
}

/// Hands the builtin listener's notices to the app, in order, until the listener is gone.
async fn forward_notices(
    app: std::sync::Weak<App>,
    mut notices: tokio::sync::mpsc::UnboundedReceiver<PublishNotice>,
) {
    while let Some(notice) = notices.recv().await {
        let Some(app) = app.upgrade() else { return };
        app.publish_notice(notice).await;
    }
}
