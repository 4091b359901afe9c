//! Recordings in the store: the records, their comments, the queue of media removals, and the
//! catalogue index that listing and search read.
//!
//! The index keeps, per record, what the catalogue filters and sorts by (host, lower-cased
//! title, start, duration, views), so a listing or a search over 100,000 records never decodes
//! them all; only the records of the page asked for are read. It is loaded when the store opens
//! and kept current by every function that writes a record row: the row is written inside a
//! write transaction ([`write_record`]) and, after the commit, [`Store::refresh_catalogue`]
//! reads the committed rows back into the index. Another store file that changes record rows
//! (the watch statistics) does the same.
//!
//! The index also keeps each host's lower-cased username and nickname, for searches by host;
//! `Store::update_user` refreshes them after every change of a user row, so a new nickname is
//! found at once.
//!
//! Every refresh of record rows, and every refresh of a host whose nickname as the cards show it
//! changed, counts one change after it updated the index ([`Store::catalogue_changes`]): whatever
//! a listed record shows (its row, its host's nickname, the host's account being deleted) changes
//! only through a refresh, so a page built from the catalogue is current for as long as the count
//! it was built at stays.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::accounts::next_id;
use super::codec::{decode, encode};
use super::tables::*;
use super::{Store, StoreError};
use crate::model::{
    AuditEntry, CommentId, LiveSession, LiveSessionId, Record, RecordComment, RecordId,
    RecordRemoval, StoredDanmaku, User, UserId,
};

/// The catalogue's orders; ties go to the newer record (the higher id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOrder {
    /// By start, newest first.
    Newest,
    /// By counted views, most first.
    MostViewed,
    /// By duration, longest first.
    Longest,
}

/// What a catalogue request asks for.
#[derive(Debug, Clone)]
pub struct CatalogueQuery {
    pub order: RecordOrder,
    pub host: Option<UserId>,
    /// Lower-cased text to find in the title, the host's username or the host's nickname.
    pub text: Option<String>,
    pub offset: usize,
    pub limit: usize,
}

/// A record with its host as stored now (`None` if the account is gone).
#[derive(Debug, Clone)]
pub struct Listed {
    pub record: Record,
    pub host: Option<User>,
}

/// One page of the catalogue and how many records matched in all.
#[derive(Debug, Clone)]
pub struct CataloguePage {
    pub records: Vec<Listed>,
    pub total: u64,
}

/// What the catalogue filters and sorts by, for one record.
struct Entry {
    host: UserId,
    title: String,
    started_at: u64,
    duration_secs: u64,
    views: u64,
}

impl Entry {
    fn key(&self, order: RecordOrder) -> u64 {
        match order {
            RecordOrder::Newest => self.started_at,
            RecordOrder::MostViewed => self.views,
            RecordOrder::Longest => self.duration_secs,
        }
    }
}

/// A host of listed records, as a search matches them.
struct Host {
    records: usize,
    /// Lower-cased username and nickname, kept current by `Store::update_user`.
    names: [String; 2],
    /// The nickname as the records' cards show it (`None`: the account is gone).
    shown_as: Option<String>,
}

impl Host {
    fn of(user: Option<&User>, records: usize) -> Host {
        Host {
            records,
            names: match user {
                Some(user) => [
                    user.username.as_deref().unwrap_or_default().to_lowercase(),
                    user.nickname.to_lowercase(),
                ],
                None => Default::default(),
            },
            shown_as: user.map(|u| u.nickname.clone()),
        }
    }
}

/// The in-memory index of every listed record.
#[derive(Default)]
pub(super) struct Catalogue {
    entries: BTreeMap<u64, Entry>,
    /// The hosts with listed records, with their names for searches.
    hosts: HashMap<UserId, Host>,
    /// A refresh after a commit failed: the index is read again whole before it is used.
    stale: bool,
}

impl Catalogue {
    pub(super) fn load(store: &Store) -> Result<Catalogue, StoreError> {
        let txn = store.db.begin_read()?;
        let users = txn.open_table(USERS)?;
        let mut catalogue = Catalogue::default();
        for entry in txn.open_table(RECORDS)?.iter()? {
            catalogue.put(&decode(entry?.1.value(), "record")?, &users)?;
        }
        Ok(catalogue)
    }

    /// Adds or replaces a record's entry; a host new to the index has its names read.
    fn put(
        &mut self,
        record: &Record,
        users: &impl ReadableTable<u64, &'static [u8]>,
    ) -> Result<(), StoreError> {
        self.remove(record.id);
        match self.hosts.get_mut(&record.host) {
            Some(host) => host.records += 1,
            None => {
                let user: Option<User> = users
                    .get(record.host.0)?
                    .map(|v| decode(v.value(), "user"))
                    .transpose()?;
                self.hosts.insert(record.host, Host::of(user.as_ref(), 1));
            }
        }
        self.entries.insert(
            record.id.0,
            Entry {
                host: record.host,
                title: record.title.to_lowercase(),
                started_at: record.started_at,
                duration_secs: record.duration_secs,
                views: record.views,
            },
        );
        Ok(())
    }

    fn remove(&mut self, id: RecordId) {
        let Some(gone) = self.entries.remove(&id.0) else {
            return;
        };
        if let Some(host) = self.hosts.get_mut(&gone.host) {
            host.records -= 1;
            if host.records == 0 {
                self.hosts.remove(&gone.host);
            }
        }
    }

    /// The hosts whose username or nickname contains `text` (lower-cased).
    fn hosts_named(&self, text: &str) -> HashSet<UserId> {
        self.hosts
            .iter()
            .filter(|(_, host)| host.names.iter().any(|name| name.contains(text)))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The ids of the page asked for, in order, and the number of matches.
    fn select(&self, query: &CatalogueQuery, named: &HashSet<UserId>) -> (Vec<RecordId>, usize) {
        let mut hits: Vec<(u64, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| query.host.is_none_or(|h| e.host == h))
            .filter(|(_, e)| {
                query
                    .text
                    .as_ref()
                    .is_none_or(|q| e.title.contains(q.as_str()) || named.contains(&e.host))
            })
            .map(|(id, e)| (e.key(query.order), *id))
            .collect();
        let total = hits.len();
        let end = query.offset.saturating_add(query.limit).min(total);
        if query.offset >= end {
            return (Vec::new(), total);
        }
        // Only the first `end` in order matter: partition them off, then sort just those.
        let descending = |a: &(u64, u64), b: &(u64, u64)| b.cmp(a);
        if end < total {
            hits.select_nth_unstable_by(end, descending);
            hits.truncate(end);
        }
        hits.sort_unstable_by(descending);
        let page = hits[query.offset..end]
            .iter()
            .map(|(_, id)| RecordId(*id))
            .collect();
        (page, total)
    }
}

/// Writes a record row inside `txn`; the caller refreshes the catalogue after the commit.
pub(super) fn write_record(txn: &WriteTransaction, record: &Record) -> Result<(), StoreError> {
    txn.open_table(RECORDS)?
        .insert(record.id.0, encode(record).as_slice())?;
    Ok(())
}

pub(super) fn read_record(
    txn: &WriteTransaction,
    id: RecordId,
) -> Result<Option<Record>, StoreError> {
    let table = txn.open_table(RECORDS)?;
    let found = table.get(id.0)?;
    found.map(|v| decode(v.value(), "record")).transpose()
}

/// A record's default title: the room's name and the live session's title, once each.
fn default_title(session: &LiveSession) -> String {
    let room = session.room_name.trim();
    let title = session.title.trim();
    if room.is_empty() || room == title {
        title.to_owned()
    } else {
        format!("{room} · {title}")
    }
}

impl Store {
    /// Lists a live session's recording for replay, and marks the session settled.
    pub fn add_record(
        &self,
        session: &LiveSession,
        duration_secs: u64,
        url: String,
        thumbnail_url: Option<String>,
    ) -> Result<Record, StoreError> {
        let txn = self.db.begin_write()?;
        let record = Record {
            id: RecordId(next_id(&txn, SEQ_RECORD)?),
            room: session.room,
            host: session.host,
            live: session.id,
            title: default_title(session),
            started_at: session.started_at,
            duration_secs,
            url,
            stream: session.stream.clone(),
            thumbnail_url,
            views: 0,
            unique_viewers: 0,
            watch_secs_total: 0,
            watch_ms_total: 0,
            comments_count: 0,
        };
        write_record(&txn, &record)?;
        super::rooms::settle(&txn, session.id)?;
        txn.commit()?;
        self.refresh_catalogue(&[record.id]);
        Ok(record)
    }

    /// Every record, oldest first.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECORDS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            out.push(decode(entry?.1.value(), "record")?);
        }
        Ok(out)
    }

    pub fn record(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read()?;
        let found = txn.open_table(RECORDS)?.get(id.0)?;
        found.map(|v| decode(v.value(), "record")).transpose()
    }

    /// Brings the catalogue's entries for `ids` in line with their committed rows (an entry
    /// whose row is gone is dropped). Reading under the index's lock orders refreshes, so the
    /// last one to run, which follows the last commit, leaves the index as stored. Called after
    /// a commit, it cannot fail the write that committed: a failure marks the index stale, and
    /// the next catalogue query reads it again whole.
    pub(super) fn refresh_catalogue(&self, ids: &[RecordId]) {
        let mut catalogue = self
            .catalogue
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let refreshed = (|| -> Result<(), StoreError> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(RECORDS)?;
            let users = txn.open_table(USERS)?;
            for id in ids {
                match table.get(id.0)? {
                    Some(row) => catalogue.put(&decode(row.value(), "record")?, &users)?,
                    None => catalogue.remove(*id),
                }
            }
            Ok(())
        })();
        if let Err(e) = refreshed {
            tracing::error!(error = %e, "cannot update the catalogue index; it is read again whole");
            catalogue.stale = true;
        }
        self.count_catalogue_change();
    }

    /// Counts a change while the index's write lock is still held, so a reader that sees the
    /// new count reads the index (and the rows, committed before) as they are after it.
    fn count_catalogue_change(&self) {
        self.catalogue_changes.fetch_add(1, Ordering::Release);
    }

    /// How many times the catalogue changed since the store opened. A reader takes it before
    /// reading the catalogue: what it then reads is at least as new as the count.
    pub fn catalogue_changes(&self) -> u64 {
        self.catalogue_changes.load(Ordering::Acquire)
    }

    /// Brings a host's names in the index in line with their account (a nickname changed, or the
    /// account was deleted: then the names are empty, as the records' cards show them), and
    /// counts a change when the cards' nickname changed: most user writes (a login, `last_seen`)
    /// change nothing a card shows. The row is read under the index's lock, so of two refreshes
    /// racing the later read wins.
    pub(super) fn refresh_host_names(&self, user: UserId) {
        let mut catalogue = self
            .catalogue
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !catalogue.hosts.contains_key(&user) {
            return;
        }
        let read = (|| -> Result<Option<User>, StoreError> {
            let txn = self.db.begin_read()?;
            let users = txn.open_table(USERS)?;
            let found = users.get(user.0)?;
            found.map(|v| decode(v.value(), "user")).transpose()
        })();
        let changed = match read {
            Ok(found) => catalogue.hosts.get_mut(&user).is_some_and(|host| {
                let now = Host::of(found.as_ref(), host.records);
                let changed = now.shown_as != host.shown_as;
                *host = now;
                changed
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot update a host's names in the catalogue index; it is read again whole");
                catalogue.stale = true;
                true
            }
        };
        if changed {
            self.count_catalogue_change();
        }
    }

    /// Reads the catalogue's index again whole if a refresh failed. The load runs under the
    /// write lock, so no refresh of a later commit can be overwritten by an older snapshot, and
    /// requests arriving meanwhile wait for it rather than each loading their own.
    fn reload_stale_catalogue(&self) -> Result<(), StoreError> {
        let stale = self
            .catalogue
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .stale;
        if stale {
            let mut catalogue = self
                .catalogue
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if catalogue.stale {
                *catalogue = Catalogue::load(self)?;
            }
        }
        Ok(())
    }

    /// One page of the catalogue, from the index, with the page's records and hosts read.
    pub fn catalogue(&self, query: &CatalogueQuery) -> Result<CataloguePage, StoreError> {
        self.reload_stale_catalogue()?;
        let txn = self.db.begin_read()?;
        let users = txn.open_table(USERS)?;
        let read_user = |id: UserId| -> Result<Option<User>, StoreError> {
            let found = users.get(id.0)?;
            found.map(|v| decode(v.value(), "user")).transpose()
        };
        let (ids, total) = {
            let catalogue = self
                .catalogue
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let named = match &query.text {
                Some(q) => catalogue.hosts_named(q),
                None => HashSet::new(),
            };
            catalogue.select(query, &named)
        };
        let records_table = txn.open_table(RECORDS)?;
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            // A record deleted since the index was read is left out of the page.
            let Some(row) = records_table.get(id.0)? else {
                continue;
            };
            let record: Record = decode(row.value(), "record")?;
            let host = read_user(record.host)?;
            records.push(Listed { record, host });
        }
        Ok(CataloguePage {
            records,
            total: total as u64,
        })
    }

    /// Renames a record; `None` if there is no such record.
    pub fn rename_record(&self, id: RecordId, title: &str) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_write()?;
        let Some(mut record) = read_record(&txn, id)? else {
            return Ok(None);
        };
        record.title = title.to_owned();
        write_record(&txn, &record)?;
        txn.commit()?;
        self.refresh_catalogue(&[id]);
        Ok(Some(record))
    }

    /// Deletes a record and its comments, and queues the removal of its media, in one
    /// transaction with `audit` (an admin's delete); returns the record, or `None` if there was
    /// none.
    pub fn delete_record(
        &self,
        id: RecordId,
        now: u64,
        audit: Option<&AuditEntry>,
    ) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_write()?;
        let Some(record) = read_record(&txn, id)? else {
            return Ok(None);
        };
        txn.open_table(RECORDS)?.remove(id.0)?;
        {
            let mut comments = txn.open_table(RECORD_COMMENTS)?;
            let keys: Vec<(u64, u64)> = comments
                .range((id.0, 0)..=(id.0, u64::MAX))?
                .map(|entry| entry.map(|(key, _)| key.value()))
                .collect::<Result<_, _>>()?;
            for key in keys {
                comments.remove(key)?;
            }
        }
        super::watch::remove_watching(&txn, id)?;
        let mixes = match txn.open_table(LIVES)?.get(record.live.0)? {
            Some(row) => decode::<LiveSession>(row.value(), "live session")?
                .co_streams
                .into_iter()
                .map(|span| span.mixed)
                .collect(),
            None => Vec::new(),
        };
        let removal = RecordRemoval {
            record: id,
            stream: record.stream.clone(),
            mixes,
            url: record.url.clone(),
            thumbnail_url: record.thumbnail_url.clone(),
            duration_secs: record.duration_secs,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
        };
        txn.open_table(RECORD_REMOVALS)?
            .insert(id.0, encode(&removal).as_slice())?;
        if let Some(entry) = audit {
            super::admin::write_audit(&txn, entry)?;
        }
        txn.commit()?;
        self.refresh_catalogue(&[id]);
        Ok(Some(record))
    }

    /// Every queued media removal.
    pub fn record_removals(&self) -> Result<Vec<RecordRemoval>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for entry in txn.open_table(RECORD_REMOVALS)?.iter()? {
            out.push(decode(entry?.1.value(), "record removal")?);
        }
        Ok(out)
    }

    /// The media of a deleted record is gone: forget its removal.
    pub fn record_removal_done(&self, record: RecordId) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(RECORD_REMOVALS)?.remove(record.0)?;
        txn.commit()?;
        Ok(())
    }

    /// Stores a removal as it stands after a failed attempt.
    pub fn record_removal_failed(&self, removal: &RecordRemoval) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(RECORD_REMOVALS)?
            .insert(removal.record.0, encode(removal).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// How many danmaku a live session has.
    pub fn danmaku_count(&self, live: LiveSessionId) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        if let Some(count) = txn.open_table(DANMAKU_COUNTS)?.get(live.0)? {
            return Ok(count.value());
        }
        let table = txn.open_table(DANMAKU)?;
        let mut count = 0;
        for entry in table.range((live.0, 0)..=(live.0, u64::MAX))? {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    /// Up to `limit` danmaku of a live session after the cursor `after` (from an earlier page),
    /// in the order they were sent, and the cursor of the next page when there is more.
    pub fn danmaku_page(
        &self,
        live: LiveSessionId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<StoredDanmaku>, Option<u64>), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DANMAKU)?;
        let first = after.map_or(0, |cursor| cursor.saturating_add(1));
        let mut page = Vec::new();
        let mut last = None;
        for entry in table.range((live.0, first)..=(live.0, u64::MAX))? {
            let (key, value) = entry?;
            if page.len() == limit {
                return Ok((page, last));
            }
            page.push(decode(value.value(), "danmaku")?);
            last = Some(key.value().1);
        }
        Ok((page, None))
    }

    /// A page of a record's comments, newest first, and how many it has.
    pub fn record_comments(
        &self,
        record: RecordId,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<RecordComment>, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECORD_COMMENTS)?;
        let range = (record.0, 0)..=(record.0, u64::MAX);
        let total = table.range(range.clone())?.count() as u64;
        let mut out = Vec::new();
        for entry in table.range(range)?.rev().skip(offset).take(limit) {
            out.push(decode(entry?.1.value(), "comment")?);
        }
        Ok((out, total))
    }

    pub fn record_comment(
        &self,
        record: RecordId,
        id: CommentId,
    ) -> Result<Option<RecordComment>, StoreError> {
        let txn = self.db.begin_read()?;
        let found = txn.open_table(RECORD_COMMENTS)?.get((record.0, id.0))?;
        found.map(|v| decode(v.value(), "comment")).transpose()
    }

    /// Adds a comment (its `id` is given here) and counts it on the record, in one
    /// transaction; `None` if the record is gone.
    pub fn add_record_comment(
        &self,
        mut comment: RecordComment,
    ) -> Result<Option<RecordComment>, StoreError> {
        let txn = self.db.begin_write()?;
        let Some(mut record) = read_record(&txn, comment.record)? else {
            return Ok(None);
        };
        comment.id = CommentId(next_id(&txn, SEQ_COMMENT)?);
        txn.open_table(RECORD_COMMENTS)?.insert(
            (comment.record.0, comment.id.0),
            encode(&comment).as_slice(),
        )?;
        record.comments_count += 1;
        write_record(&txn, &record)?;
        txn.commit()?;
        // The catalogue does not carry the comment count; no refresh needed.
        Ok(Some(comment))
    }

    /// Deletes a comment and uncounts it, in one transaction; whether there was one.
    pub fn delete_record_comment(
        &self,
        record: RecordId,
        id: CommentId,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let removed = txn
            .open_table(RECORD_COMMENTS)?
            .remove((record.0, id.0))?
            .is_some();
        if !removed {
            return Ok(false);
        }
        if let Some(mut row) = read_record(&txn, record)? {
            row.comments_count = row.comments_count.saturating_sub(1);
            write_record(&txn, &row)?;
        }
        txn.commit()?;
        Ok(true)
    }
}
