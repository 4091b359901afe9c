//! Statistics in the store: the roll-ups written beside the events they count (logins per hour
//! and per day with who logged in which day, views and watch time per day per recording), and the
//! queries `crate::stats` answers from. A year's question reads a few thousand roll-up rows, never
//! the millions of events behind them. Days are UTC unix days (`unix seconds / 86 400`), ranges
//! inclusive at both ends.

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable, Table, WriteTransaction};
use serde::Deserialize;

use super::codec::decode;
use super::tables::*;
use super::watch::WatchDelta;
use super::{Store, StoreError};
use crate::model::{LoginEvent, LoginKind, Record, RecordId, RecordViewer, User, UserKind};

pub const DAY: u64 = 86_400;
const HOUR: u64 = 3_600;

/// One day of logins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginDay {
    pub day: u64,
    /// Password logins of registered users.
    pub logins: u64,
    /// Guest sessions created.
    pub guests: u64,
    /// Distinct registered users among `logins`.
    pub unique_users: u64,
    /// Registered accounts created that day (still stored).
    pub registrations: u64,
}

/// Logins in one hour of the day (UTC), summed over a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourFigures {
    pub logins: u64,
    pub guests: u64,
}

#[derive(Debug, Clone)]
pub struct LoginFigures {
    /// Every day of the range, oldest first (zeros included).
    pub days: Vec<LoginDay>,
    /// Index = hour of the day.
    pub hours: [HourFigures; 24],
}

/// One day of live sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveDay {
    pub day: u64,
    /// Sessions started that day.
    pub sessions: u64,
    /// Seconds any room was live that day (a session over midnight counts on both days).
    pub live_secs: u64,
    /// The most people in live rooms at once that day (0 when none was sampled).
    pub peak_viewers: u64,
}

/// One day of recordings watched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordDay {
    pub day: u64,
    pub views: u64,
    pub watched_ms: u64,
}

/// A recording with what it drew in a range.
#[derive(Debug, Clone)]
pub struct TopRecord {
    pub record: Record,
    /// The host's nickname (empty if the account is gone).
    pub host: String,
    pub views: u64,
    pub watched_ms: u64,
}

#[derive(Debug, Clone)]
pub struct RecordFigures {
    /// Every day of the range, oldest first (zeros included).
    pub days: Vec<RecordDay>,
    /// Recordings still listed, most viewed in the range first.
    pub by_views: Vec<TopRecord>,
    /// Recordings still listed, most watched (time) in the range first.
    pub by_watch_time: Vec<TopRecord>,
}

/// The login roll-ups, open in a write transaction.
pub(super) struct LoginRollups<'t> {
    hours: Table<'t, u64, (u64, u64)>,
    days: Table<'t, u64, (u64, u64, u64)>,
    day_users: Table<'t, (u64, u64), ()>,
}

impl<'t> LoginRollups<'t> {
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(LoginRollups {
            hours: txn.open_table(LOGIN_HOURS)?,
            days: txn.open_table(LOGIN_DAYS)?,
            day_users: txn.open_table(LOGIN_DAY_USERS)?,
        })
    }

    /// Counts one login event.
    pub(super) fn count(&mut self, event: &LoginEvent) -> Result<(), StoreError> {
        let guest = u64::from(event.kind == LoginKind::Guest);
        let password = 1 - guest;
        let hour = event.at / HOUR;
        let (logins, guests) = self.hours.get(hour)?.map_or((0, 0), |v| v.value());
        self.hours
            .insert(hour, (logins + password, guests + guest))?;
        let day = event.at / DAY;
        let first_of_day =
            password == 1 && self.day_users.insert((day, event.user_id.0), ())?.is_none();
        let (logins, guests, unique) = self.days.get(day)?.map_or((0, 0, 0), |v| v.value());
        self.days.insert(
            day,
            (
                logins + password,
                guests + guest,
                unique + u64::from(first_of_day),
            ),
        )?;
        Ok(())
    }
}

/// Adds what a watch delta brings to the site's per-day roll-up: its view on the day it was
/// counted, its watching on the day of its last heartbeat.
pub(super) fn count_watching(
    days: &mut Table<'_, (u64, u64), (u64, u64)>,
    record: RecordId,
    delta: &WatchDelta,
) -> Result<(), StoreError> {
    if let Some(at) = delta.counted_at {
        add_watch_day(days, (at / DAY, record.0), 1, 0)?;
    }
    if delta.watched_ms > 0 {
        add_watch_day(days, (delta.last_at / DAY, record.0), 0, delta.watched_ms)?;
    }
    Ok(())
}

fn add_watch_day(
    days: &mut Table<'_, (u64, u64), (u64, u64)>,
    key: (u64, u64),
    views: u64,
    watched_ms: u64,
) -> Result<(), StoreError> {
    let (before_views, before_ms) = days.get(key)?.map_or((0, 0), |v| v.value());
    days.insert(key, (before_views + views, before_ms + watched_ms))?;
    Ok(())
}

/// Fills the roll-ups from the events stored before they existed (the schema step 3 → 4): every
/// login event still kept, every recording's views per day, and each viewer's watching on the
/// day of their last heartbeat (when it happened across days is not known any more).
pub(super) fn fill_rollups(txn: &WriteTransaction) -> Result<(), StoreError> {
    {
        let mut rollups = LoginRollups::open(txn)?;
        for entry in txn.open_table(LOGINS)?.iter()? {
            rollups.count(&decode(entry?.1.value(), "login event")?)?;
        }
    }
    let mut days = txn.open_table(WATCH_DAYS)?;
    for entry in txn.open_table(RECORD_DAYS)?.iter()? {
        let (key, views) = entry?;
        let (record, day) = key.value();
        add_watch_day(&mut days, (day, record), views.value(), 0)?;
    }
    for entry in txn.open_table(RECORD_VIEWERS)?.iter()? {
        let viewer: RecordViewer = decode(entry?.1.value(), "record viewer")?;
        add_watch_day(
            &mut days,
            (viewer.last_at / DAY, viewer.record.0),
            0,
            viewer.watched_ms,
        )?;
    }
    Ok(())
}

/// The two fields of a stored live session the statistics need; the rest is skipped unread.
#[derive(Deserialize)]
struct SessionSpan {
    started_at: u64,
    ended_at: Option<u64>,
}

impl Store {
    /// Logins and registrations from `first` to `last` (unix days).
    pub fn login_figures(&self, first: u64, last: u64) -> Result<LoginFigures, StoreError> {
        let txn = self.db.begin_read()?;
        let mut days: Vec<LoginDay> = (first..=last)
            .map(|day| LoginDay {
                day,
                ..LoginDay::default()
            })
            .collect();
        for entry in txn.open_table(LOGIN_DAYS)?.range(first..=last)? {
            let (day, counts) = entry?;
            let (logins, guests, unique_users) = counts.value();
            let row = &mut days[(day.value() - first) as usize];
            (row.logins, row.guests, row.unique_users) = (logins, guests, unique_users);
        }
        let mut hours = [HourFigures::default(); 24];
        let hour_range = first * 24..(last + 1) * 24;
        for entry in txn.open_table(LOGIN_HOURS)?.range(hour_range)? {
            let (hour, counts) = entry?;
            let (logins, guests) = counts.value();
            let slot = &mut hours[(hour.value() % 24) as usize];
            slot.logins += logins;
            slot.guests += guests;
        }
        // Accounts are few next to logins (and guests are purged): reading them all is cheaper
        // than another roll-up to keep right through account deletions.
        for entry in txn.open_table(USERS)?.iter()? {
            let user: User = decode(entry?.1.value(), "user")?;
            let day = user.created_at / DAY;
            if user.kind == UserKind::Registered && (first..=last).contains(&day) {
                days[(day - first) as usize].registrations += 1;
            }
        }
        Ok(LoginFigures { days, hours })
    }

    /// Live sessions from `first` to `last` (unix days); a session still live counts up to `now`.
    pub fn live_days(&self, first: u64, last: u64, now: u64) -> Result<Vec<LiveDay>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut days: Vec<LiveDay> = (first..=last)
            .map(|day| LiveDay {
                day,
                ..LiveDay::default()
            })
            .collect();
        let (range_start, range_end) = (first * DAY, (last + 1) * DAY);
        for entry in txn.open_table(LIVES)?.iter()? {
            let span: SessionSpan = decode(entry?.1.value(), "live session")?;
            let start_day = span.started_at / DAY;
            if (first..=last).contains(&start_day) {
                days[(start_day - first) as usize].sessions += 1;
            }
            let end = span.ended_at.unwrap_or(now).max(span.started_at);
            let (mut from, to) = (span.started_at.max(range_start), end.min(range_end));
            while from < to {
                let day_end = (from / DAY + 1) * DAY;
                let upto = day_end.min(to);
                days[(from / DAY - first) as usize].live_secs += upto - from;
                from = upto;
            }
        }
        for entry in txn.open_table(VIEWER_PEAKS)?.range(first..=last)? {
            let (day, peak) = entry?;
            days[(day.value() - first) as usize].peak_viewers = peak.value().0;
        }
        Ok(days)
    }

    /// Keeps `viewers` as the peak of the day holding `at` if it is higher than the one stored.
    /// Returns whether it was.
    pub fn raise_viewer_peak(&self, viewers: u64, at: u64) -> Result<bool, StoreError> {
        let day = at / DAY;
        let txn = self.db.begin_write()?;
        let raised = {
            let mut peaks = txn.open_table(VIEWER_PEAKS)?;
            let before = peaks.get(day)?.map_or(0, |v| v.value().0);
            let raised = viewers > before;
            if raised {
                peaks.insert(day, (viewers, at))?;
            }
            raised
        };
        if raised {
            txn.commit()?;
        }
        Ok(raised)
    }

    /// Recordings watched from `first` to `last` (unix days), with the `top` recordings by views
    /// and by watch time in that range.
    pub fn record_figures(
        &self,
        first: u64,
        last: u64,
        top: usize,
    ) -> Result<RecordFigures, StoreError> {
        let txn = self.db.begin_read()?;
        let mut days: Vec<RecordDay> = (first..=last)
            .map(|day| RecordDay {
                day,
                ..RecordDay::default()
            })
            .collect();
        let mut per_record: HashMap<u64, (u64, u64)> = HashMap::new();
        for entry in txn
            .open_table(WATCH_DAYS)?
            .range((first, 0)..=(last, u64::MAX))?
        {
            let (key, counts) = entry?;
            let ((day, record), (views, watched_ms)) = (key.value(), counts.value());
            let row = &mut days[(day - first) as usize];
            row.views += views;
            row.watched_ms += watched_ms;
            let sum = per_record.entry(record).or_default();
            sum.0 += views;
            sum.1 += watched_ms;
        }
        let mut ranked: Vec<(u64, (u64, u64))> = per_record.into_iter().collect();
        let records = txn.open_table(RECORDS)?;
        let users = txn.open_table(USERS)?;
        // The best `top` that are still listed: a deleted recording's views stay in the days.
        let mut pick = |key: fn(&(u64, (u64, u64))) -> u64| -> Result<Vec<TopRecord>, StoreError> {
            ranked.sort_by(|a, b| key(b).cmp(&key(a)).then(a.0.cmp(&b.0)));
            let mut out = Vec::new();
            for &(id, (views, watched_ms)) in ranked.iter().filter(|r| key(r) > 0) {
                if out.len() == top {
                    break;
                }
                let Some(row) = records.get(id)? else {
                    continue;
                };
                let record: Record = decode(row.value(), "record")?;
                let host = match users.get(record.host.0)? {
                    Some(user) => decode::<User>(user.value(), "user")?.nickname,
                    None => String::new(),
                };
                out.push(TopRecord {
                    record,
                    host,
                    views,
                    watched_ms,
                });
            }
            Ok(out)
        };
        let by_views = pick(|r| r.1 .0)?;
        let by_watch_time = pick(|r| r.1 .1)?;
        Ok(RecordFigures {
            days,
            by_views,
            by_watch_time,
        })
    }
}
