//! Records: the catalogue of recordings (listing, search, one record, its danmaku), renaming and
//! deleting them, and the worker that removes a deleted record's media. Comments are in
//! `comments.rs`.
//!
//! Owns: the catalogue's rules (paging, orders, search text), who may rename or delete a record,
//! and the media-removal retries. Calls: store (records, comments, removals, the catalogue
//! index), media (`remove_recording`), limits (the comment rate), accounts' validation rules
//! (titles), text and model. Never sees HTTP: callers pass plain values and get
//! [`RecordsError`] back.

pub mod comments;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::limits::{RateLimiter, RetryAfter};
use crate::media::{LiveId, MediaPlane, Recording};
use crate::model::{AuditEntry, Record, RecordId, RecordRemoval, StoredDanmaku, User, UserId};
use crate::store::{
    unix_now, CataloguePage, CatalogueQuery, Listed, RecordOrder, Store, StoreError,
};

/// A page holds this many items unless the client asks for another number.
pub const DEFAULT_PER_PAGE: usize = 24;
/// The most items a page may hold.
pub const MAX_PER_PAGE: usize = 100;
/// The most danmaku one answer of a record's danmaku holds (the page asks for the rest).
pub const MAX_DANMAKU_PAGE: usize = 1000;
/// The longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 100;
/// The first retry of a failed media removal waits this long; each further one twice as long…
const REMOVAL_FIRST_RETRY_SECS: u64 = 1;
/// …up to this.
const REMOVAL_MAX_RETRY_SECS: u64 = 600;
/// The worker looks at the queue (and sweeps the comment limiter) at least this often.
const WORKER_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("There is no such recording.")]
    NotFound,
    #[error("There is no such user.")]
    UserNotFound,
    #[error("There is no such comment on this recording.")]
    CommentNotFound,
    #[error("Only the host of this recording may do that.")]
    NotYourRecord,
    #[error("Only the comment's author or the recording's host may delete it.")]
    NotYourComment,
    #[error("Guests can only watch; register to comment.")]
    RegisteredOnly,
    #[error("Verify your email before you comment.")]
    NotVerified,
    #[error("You are banned from chatting.")]
    ChatBanned,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidTitle(String),
    #[error("A comment needs some text.")]
    EmptyComment,
    #[error("A comment has at most {0} characters.")]
    CommentTooLong(usize),
    #[error("A comment may not hide or reorder its text; U+{:04X} is not allowed here.", u32::from(*.0))]
    InvisibleCharacters(char),
    #[error("{0}")]
    InvalidPosition(String),
    #[error("You are commenting too fast; try again in {} seconds.", .0.as_secs())]
    RateLimited(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RetryAfter> for RecordsError {
    fn from(retry: RetryAfter) -> Self {
        RecordsError::RateLimited(retry.0)
    }
}

pub type Result<T> = std::result::Result<T, RecordsError>;

/// Which page of a list: `page` counts from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: usize,
    pub per_page: usize,
}

impl Paging {
    /// Reads `page` and `per_page` as a client sent them (absent: the first page of
    /// [`DEFAULT_PER_PAGE`]).
    pub fn parse(page: Option<&str>, per_page: Option<&str>) -> Result<Paging> {
        let number = |name: &str, value: Option<&str>, default: usize, max: usize| {
            let Some(value) = value else {
                return Ok(default);
            };
            match value.trim().parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(RecordsError::InvalidQuery(format!(
                    "`{name}` is a whole number from 1 to {max}; {value:?} is not"
                ))),
            }
        };
        Ok(Paging {
            page: number("page", page, 1, usize::MAX / MAX_PER_PAGE)?,
            per_page: number("per_page", per_page, DEFAULT_PER_PAGE, MAX_PER_PAGE)?,
        })
    }

    pub fn offset(self) -> usize {
        (self.page - 1) * self.per_page
    }

    /// The previous and the next page's numbers, where there are such pages, for this page
    /// showing `on_page` of `total` items.
    pub fn neighbours(self, on_page: usize, total: u64) -> (Option<usize>, Option<usize>) {
        let shown = (self.offset() + on_page) as u64;
        (
            (self.page > 1).then(|| self.page - 1),
            (shown < total).then_some(self.page + 1),
        )
    }
}

/// Reads `sort` as a client sent it (absent: newest first).
pub fn parse_order(sort: Option<&str>) -> Result<RecordOrder> {
    match sort {
        None | Some("newest") => Ok(RecordOrder::Newest),
        Some("most_viewed") => Ok(RecordOrder::MostViewed),
        Some("longest") => Ok(RecordOrder::Longest),
        Some(other) => Err(RecordsError::InvalidQuery(format!(
            "`sort` is newest, most_viewed or longest; {other:?} is not"
        ))),
    }
}

/// One record with what its page shows besides the catalogue's fields.
#[derive(Debug, Clone)]
pub struct RecordDetail {
    pub listed: Listed,
    pub danmaku_count: u64,
}

pub struct Records {
    store: Store,
    media: Arc<dyn MediaPlane>,
    /// Comments per user, at the danmaku's rate (`rooms.chat_per_window` per
    /// `rooms.chat_window_secs`).
    comment_rate: RateLimiter,
    media_timeout: Duration,
    /// Wakes the removal worker when a record was deleted.
    removals_queued: Notify,
}

impl Records {
    pub fn new(config: &Config, store: Store, media: Arc<dyn MediaPlane>) -> Records {
        let rooms = &config.rooms;
        Records {
            store,
            media,
            comment_rate: RateLimiter::new(
                rooms.chat_per_window,
                Duration::from_secs(rooms.chat_window_secs),
                config.limits.max_tracked_keys,
            ),
            media_timeout: Duration::from_secs(rooms.media_timeout_secs),
            removals_queued: Notify::new(),
        }
    }

    /// A page of the catalogue: every record, or one host's (`host`), in `order`.
    pub async fn list(
        &self,
        order: RecordOrder,
        host: Option<UserId>,
        paging: Paging,
    ) -> Result<CataloguePage> {
        self.query(order, host, None, paging).await
    }

    /// The catalogue's change count: it moves whenever something a listed record shows (title,
    /// thumbnail, date, duration, views, its host's nickname or account) may have changed. Taken
    /// before a listing is read, it says how long what was read stays current.
    pub fn changes(&self) -> u64 {
        self.store.catalogue_changes()
    }

    /// One host's records, newest first; the host must exist.
    pub async fn of_user(&self, user: UserId, paging: Paging) -> Result<CataloguePage> {
        if self.store.run(move |s| s.user(user)).await?.is_none() {
            return Err(RecordsError::UserNotFound);
        }
        self.list(RecordOrder::Newest, Some(user), paging).await
    }

    /// Records whose title, host username or host nickname contains `text` (case-insensitive;
    /// substrings, so CJK words are found inside longer text), in `order`.
    pub async fn search(
        &self,
        text: &str,
        order: RecordOrder,
        paging: Paging,
    ) -> Result<CataloguePage> {
        let text = text.trim();
        if text.is_empty() {
            return Err(RecordsError::InvalidQuery(
                "say what to search for: `q` is empty".to_owned(),
            ));
        }
        let count = text.chars().count();
        if count > MAX_QUERY_CHARS {
            return Err(RecordsError::InvalidQuery(format!(
                "a search has at most {MAX_QUERY_CHARS} characters; this one has {count}"
            )));
        }
        self.query(order, None, Some(text.to_lowercase()), paging)
            .await
    }

    async fn query(
        &self,
        order: RecordOrder,
        host: Option<UserId>,
        text: Option<String>,
        paging: Paging,
    ) -> Result<CataloguePage> {
        let query = CatalogueQuery {
            order,
            host,
            text,
            offset: paging.offset(),
            limit: paging.per_page,
        };
        Ok(self.store.run(move |s| s.catalogue(&query)).await?)
    }

    /// One record with its host and its danmaku count.
    pub async fn get(&self, id: RecordId) -> Result<RecordDetail> {
        self.store
            .run(move |s| {
                let Some(record) = s.record(id)? else {
                    return Ok(None);
                };
                let host = s.user(record.host)?;
                let danmaku_count = s.danmaku_count(record.live)?;
                Ok(Some(RecordDetail {
                    listed: Listed { record, host },
                    danmaku_count,
                }))
            })
            .await?
            .ok_or(RecordsError::NotFound)
    }

    /// The danmaku of a record's live session, in order, to replay over the video.
    pub async fn danmaku(
        &self,
        id: RecordId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<StoredDanmaku>, Option<u64>)> {
        self.store
            .run(move |s| match s.record(id)? {
                Some(record) => s.danmaku_page(record.live, after, limit).map(Some),
                None => Ok(None),
            })
            .await?
            .ok_or(RecordsError::NotFound)
    }

    async fn record(&self, id: RecordId) -> Result<Record> {
        self.store
            .run(move |s| s.record(id))
            .await?
            .ok_or(RecordsError::NotFound)
    }

    /// Renames a record: only its host may.
    pub async fn rename(&self, who: &User, id: RecordId, title: &str) -> Result<Record> {
        let record = self.record(id).await?;
        if record.host != who.id {
            return Err(RecordsError::NotYourRecord);
        }
        let title =
            crate::accounts::validate::record_title(title).map_err(RecordsError::InvalidTitle)?;
        self.store
            .run(move |s| s.rename_record(id, &title))
            .await?
            .ok_or(RecordsError::NotFound)
    }

    /// Deletes a record as its host.
    pub async fn delete_as_host(&self, who: &User, id: RecordId) -> Result<()> {
        let record = self.record(id).await?;
        if record.host != who.id {
            return Err(RecordsError::NotYourRecord);
        }
        self.delete(id, None).await
    }

    /// Deletes a record as an admin (who may delete any); `audit` is written in the same
    /// transaction as the delete.
    pub async fn delete_as_admin(&self, id: RecordId, audit: AuditEntry) -> Result<()> {
        self.delete(id, Some(audit)).await
    }

    /// Deletes a record with its comments and queues the removal of its media, which the
    /// worker carries out (and retries). The callers above have checked the right to.
    async fn delete(&self, id: RecordId, audit: Option<AuditEntry>) -> Result<()> {
        self.store
            .run(move |s| s.delete_record(id, unix_now(), audit.as_ref()))
            .await?
            .ok_or(RecordsError::NotFound)?;
        self.removals_queued.notify_one();
        Ok(())
    }

    /// The removal worker: removes the media of deleted records, retrying failures with
    /// doubling pauses (also the removals a stopped server left), until `shutdown`. Sweeps the
    /// comment limiter on the way.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = self.remove_due() => next,
            };
            self.comment_rate.sweep();
            let pause = next.map_or(WORKER_AT_LEAST_EVERY, |at| {
                Duration::from_secs(at.saturating_sub(unix_now())).min(WORKER_AT_LEAST_EVERY)
            });
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.removals_queued.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Tries every removal that is due; returns when the next one is (unix seconds).
    async fn remove_due(&self) -> Option<u64> {
        let queued = match self.store.run(|s| s.record_removals()).await {
            Ok(queued) => queued,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the media removal queue");
                return Some(unix_now() + REMOVAL_FIRST_RETRY_SECS * 10);
            }
        };
        let mut next: Option<u64> = None;
        for mut removal in queued {
            if removal.next_attempt_at > unix_now() {
                next =
                    Some(next.map_or(removal.next_attempt_at, |n| n.min(removal.next_attempt_at)));
                continue;
            }
            let record = removal.record;
            match self.remove_media(&removal).await {
                Ok(()) => {
                    tracing::info!(record = %record, "recording media removed");
                    if let Err(e) = self.store.run(move |s| s.record_removal_done(record)).await {
                        tracing::error!(record = %record, error = %e, "cannot forget a done removal");
                    }
                }
                Err(problem) => {
                    removal.attempts += 1;
                    let exponent = removal.attempts.saturating_sub(1).min(20);
                    let pause = (REMOVAL_FIRST_RETRY_SECS << exponent).min(REMOVAL_MAX_RETRY_SECS);
                    removal.next_attempt_at = unix_now() + pause;
                    tracing::warn!(record = %record, attempts = removal.attempts, retry_in = pause, error = %problem, "cannot remove a recording's media; retrying later");
                    removal.last_error = Some(problem);
                    let at = removal.next_attempt_at;
                    next = Some(next.map_or(at, |n| n.min(at)));
                    if let Err(e) = self
                        .store
                        .run(move |s| s.record_removal_failed(&removal))
                        .await
                    {
                        tracing::error!(record = %record, error = %e, "cannot store a removal's retry");
                    }
                }
            }
        }
        next
    }

    async fn remove_media(&self, removal: &RecordRemoval) -> std::result::Result<(), String> {
        let stream = LiveId(removal.stream.clone());
        let mixes: Vec<LiveId> = removal.mixes.iter().cloned().map(LiveId).collect();
        let recording = Recording {
            url: removal.url.clone(),
            duration_secs: removal.duration_secs,
            thumbnail_url: removal.thumbnail_url.clone(),
        };
        match tokio::time::timeout(
            self.media_timeout,
            self.media.remove_recording(&stream, &mixes, &recording),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the media plane did not answer in time".to_owned()),
        }
    }
}
