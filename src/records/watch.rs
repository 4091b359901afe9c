//! Watch statistics (the design's StatisticService: 更新录像观看信息 / 更新录像观看时长): views and
//! watch time of recordings.
//!
//! Owns: the open views (in memory, bounded), the buffer of what heartbeats added, and the task
//! that writes that buffer to the store in batches. Calls: store.
//!
//! A player starts a view, then sends heartbeats with its position. A heartbeat adds the
//! real time since the previous one, but never more than the position moved forward (a paused
//! player adds nothing) nor more than `records.heartbeat_max_gap_secs`: a client cannot report
//! an hour in a minute. A view is counted once per viewer per `records.view_window_secs`.
//! Everything is added up in memory and written in one transaction per
//! `records.watch_flush_ms` (sooner when `records.watch_flush_batch` viewers are waiting), so a
//! thousand viewers do not mean a thousand transactions a second; the last batch is written at
//! shutdown, so nothing acknowledged is lost.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::RecordsConfig;
use crate::model::{RecordId, UserId};
use crate::store::{unix_now, Store, StoreError, WatchDelta, WatchStats};

/// How often open views nobody heartbeats any more are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// How often a full server looks for idle views to make room for a new one.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("there is no such recording")]
    NoSuchRecord,
    #[error("there is no such view (it ended, or was idle too long): start a new one")]
    NoSuchView,
    #[error("only the recording's host may see its statistics")]
    NotYourRecord,
    #[error("too many people are watching recordings right now; try again in a minute")]
    TooManyViews,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An open view's id, as the player holds it: random, so nobody can heartbeat another's view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewId(pub String);

struct OpenView {
    record: RecordId,
    viewer: UserId,
    last_beat: Instant,
    position_ms: u64,
    watched_ms: u64,
}

type ViewerKey = (RecordId, UserId);

/// What the open views of one viewer of one recording share.
struct Watcher {
    /// Open views of this recording by this viewer.
    views: usize,
    /// Watching is credited up to this instant: several views (tabs) of one viewer together
    /// never earn more than the real time.
    credited_until: Instant,
}

struct Buffer {
    open: HashMap<ViewId, OpenView>,
    /// Each viewer's open views, oldest first (a viewer over the cap loses the oldest).
    by_viewer: HashMap<UserId, VecDeque<ViewId>>,
    /// Per (recording, viewer) with an open view.
    watchers: HashMap<ViewerKey, Watcher>,
    /// When the open views were last swept for idle ones: a full server sweeps at most once
    /// per [`FULL_SWEEP_EVERY`], not at every refused start.
    last_sweep: Instant,
    /// What is not in the store yet.
    pending: HashMap<ViewerKey, WatchDelta>,
    /// Views counted by the batch being written right now (taken from `pending`, not yet
    /// committed): a view starting meanwhile must see them.
    in_flight: HashMap<ViewerKey, u64>,
    /// Completed writes; a view start that read the store before one completed reads again.
    generation: u64,
}

impl Buffer {
    fn new() -> Buffer {
        Buffer {
            open: HashMap::new(),
            by_viewer: HashMap::new(),
            watchers: HashMap::new(),
            last_sweep: Instant::now(),
            pending: HashMap::new(),
            in_flight: HashMap::new(),
            generation: 0,
        }
    }

    fn open_view(&mut self, id: ViewId, view: OpenView) {
        self.by_viewer
            .entry(view.viewer)
            .or_default()
            .push_back(id.clone());
        self.watchers
            .entry((view.record, view.viewer))
            .or_insert(Watcher {
                views: 0,
                credited_until: view.last_beat,
            })
            .views += 1;
        self.open.insert(id, view);
    }

    fn close_view(&mut self, id: &ViewId) {
        let Some(view) = self.open.remove(id) else {
            return;
        };
        if let Some(mine) = self.by_viewer.get_mut(&view.viewer) {
            mine.retain(|v| v != id);
            if mine.is_empty() {
                self.by_viewer.remove(&view.viewer);
            }
        }
        let key = (view.record, view.viewer);
        if let Some(watcher) = self.watchers.get_mut(&key) {
            watcher.views -= 1;
            if watcher.views == 0 {
                self.watchers.remove(&key);
            }
        }
    }

    /// Closes the open views without a heartbeat for `idle`.
    fn forget_idle(&mut self, idle: Duration) {
        let gone: Vec<ViewId> = self
            .open
            .iter()
            .filter(|(_, v)| v.last_beat.elapsed() >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.close_view(id);
        }
        self.last_sweep = Instant::now();
    }
}

/// The watch statistics service.
pub struct Watching {
    config: RecordsConfig,
    store: Store,
    /// A std mutex: held only for map updates, never across an `.await`.
    buffer: Mutex<Buffer>,
    /// Wakes the writer early when the buffer is large.
    full: Notify,
    /// One write at a time (the writer's and a statistics reader's).
    writing: tokio::sync::Mutex<()>,
    heartbeats: AtomicU64,
    writes: AtomicU64,
}

impl Watching {
    pub fn new(config: RecordsConfig, store: Store) -> Arc<Watching> {
        Arc::new(Watching {
            config,
            store,
            buffer: Mutex::new(Buffer::new()),
            full: Notify::new(),
            writing: tokio::sync::Mutex::new(()),
            heartbeats: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        })
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a view of `record` by `viewer`; it counts as a view unless the viewer's last
    /// counted view of it is less than `records.view_window_secs` old.
    pub async fn start(&self, record: RecordId, viewer: UserId) -> Result<ViewId, WatchError> {
        let key = (record, viewer);
        loop {
            let generation = self.buffer().generation;
            let stored = self
                .store
                .run(move |s| s.watch_start_facts(record, viewer))
                .await?;
            let Some(stored_counted_at) = stored else {
                return Err(WatchError::NoSuchRecord);
            };
            let now = unix_now();
            let mut buffer = self.buffer();
            if buffer.generation != generation {
                // A batch was committed after the store was read: read it again.
                continue;
            }
            if buffer.open.len() >= self.config.max_open_views {
                if buffer.last_sweep.elapsed() >= FULL_SWEEP_EVERY {
                    buffer.forget_idle(Duration::from_secs(self.config.view_idle_secs));
                }
                if buffer.open.len() >= self.config.max_open_views {
                    return Err(WatchError::TooManyViews);
                }
            }
            let last_counted = buffer
                .pending
                .get(&key)
                .and_then(|d| d.counted_at)
                .or_else(|| buffer.in_flight.get(&key).copied())
                .or(stored_counted_at);
            let counts = last_counted.is_none_or(|at| now >= at + self.config.view_window_secs);
            let delta = buffer.pending.entry(key).or_default();
            delta.last_at = now;
            if counts {
                delta.counted_at = Some(now);
            }
            let id = ViewId(random_id());
            let over = buffer
                .by_viewer
                .get(&viewer)
                .filter(|mine| mine.len() >= self.config.max_views_per_viewer)
                .and_then(|mine| mine.front().cloned());
            if let Some(oldest) = over {
                buffer.close_view(&oldest);
            }
            buffer.open_view(
                id.clone(),
                OpenView {
                    record,
                    viewer,
                    last_beat: Instant::now(),
                    position_ms: 0,
                    watched_ms: 0,
                },
            );
            let wake = buffer.pending.len() >= self.config.watch_flush_batch;
            drop(buffer);
            if wake {
                self.full.notify_one();
            }
            return Ok(id);
        }
    }

    /// A heartbeat of `viewer`'s view `id` at `position_ms`; returns the view's watched
    /// seconds so far.
    pub fn heartbeat(
        &self,
        record: RecordId,
        id: &ViewId,
        viewer: UserId,
        position_ms: u64,
    ) -> Result<u64, WatchError> {
        let now = Instant::now();
        let mut guard = self.buffer();
        let buffer = &mut *guard;
        let view = buffer
            .open
            .get_mut(id)
            .filter(|v| v.viewer == viewer && v.record == record)
            .ok_or(WatchError::NoSuchView)?;
        let watcher = buffer
            .watchers
            .get_mut(&(record, viewer))
            .expect("every open view has its watcher entry (open_view/close_view keep both)");
        // Real time since this view's last heartbeat, less what another view of the same
        // viewer was credited for meanwhile.
        let since = view.last_beat.max(watcher.credited_until);
        let elapsed = now.saturating_duration_since(since).as_millis() as u64;
        let forward = position_ms.saturating_sub(view.position_ms);
        let moved_back = position_ms < view.position_ms;
        // After a seek back the position says nothing; the real time still bounds it.
        let progress = if moved_back { elapsed } else { forward };
        let added = elapsed
            .min(progress)
            .min(self.config.heartbeat_max_gap_secs * 1000);
        view.last_beat = now;
        view.position_ms = position_ms;
        view.watched_ms += added;
        if added > 0 {
            watcher.credited_until = now;
        }
        let watched_secs = view.watched_ms / 1000;
        let delta = buffer.pending.entry((record, viewer)).or_default();
        delta.watched_ms += added;
        delta.last_at = unix_now();
        let wake = buffer.pending.len() >= self.config.watch_flush_batch;
        drop(guard);
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
        if wake {
            self.full.notify_one();
        }
        Ok(watched_secs)
    }

    /// The statistics of `record` for `asker`, its host, with everything buffered written
    /// first so the figures include the last heartbeat. Who asks is checked before anything
    /// is written or read in bulk.
    pub async fn stats(&self, record: RecordId, asker: UserId) -> Result<WatchStats, WatchError> {
        let host = self
            .store
            .run(move |s| s.record(record))
            .await?
            .ok_or(WatchError::NoSuchRecord)?
            .host;
        if host != asker {
            return Err(WatchError::NotYourRecord);
        }
        self.write().await?;
        self.store
            .run(move |s| s.watch_stats(record))
            .await?
            .ok_or(WatchError::NoSuchRecord)
    }

    /// Open views, heartbeats received and batches written, for `/metrics`.
    pub fn figures(&self) -> (usize, u64, u64) {
        (
            self.buffer().open.len(),
            self.heartbeats.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }

    /// Writes the buffer every `records.watch_flush_ms` (or sooner when it is full) until
    /// `shutdown`, then once more.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let every = Duration::from_millis(self.config.watch_flush_ms);
        let mut last_sweep = Instant::now();
        loop {
            let stopping = tokio::select! {
                () = shutdown.cancelled() => true,
                () = tokio::time::sleep(every) => false,
                () = self.full.notified() => false,
            };
            if let Err(e) = self.write().await {
                tracing::error!(error = %e, "cannot store watch statistics; kept for the next try");
            }
            if stopping {
                return;
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.buffer()
                    .forget_idle(Duration::from_secs(self.config.view_idle_secs));
                last_sweep = Instant::now();
            }
        }
    }

    /// Writes what is buffered in one transaction. On failure the batch goes back into the
    /// buffer, merged with what arrived meanwhile.
    async fn write(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.writing.lock().await;
        let batch: Vec<(ViewerKey, WatchDelta)> = {
            let mut buffer = self.buffer();
            if buffer.pending.is_empty() {
                return Ok(());
            }
            let batch: Vec<_> = std::mem::take(&mut buffer.pending).into_iter().collect();
            buffer.in_flight = batch
                .iter()
                .filter_map(|(key, delta)| delta.counted_at.map(|at| (*key, at)))
                .collect();
            batch
        };
        let rows: Vec<_> = batch
            .iter()
            .map(|((record, user), delta)| ((*record, *user), delta.clone()))
            .collect();
        let result = self.store.run(move |s| s.add_watching(&rows)).await;
        let mut buffer = self.buffer();
        buffer.in_flight.clear();
        buffer.generation += 1;
        match result {
            Ok(_) => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                for (key, delta) in batch {
                    let merged = buffer.pending.entry(key).or_default();
                    merged.watched_ms += delta.watched_ms;
                    merged.last_at = merged.last_at.max(delta.last_at);
                    // A view counted again meanwhile supersedes this one.
                    merged.counted_at = merged.counted_at.or(delta.counted_at);
                }
                Err(e)
            }
        }
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .expect("the OS random source is available on every supported system");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
