//! Watch statistics in the store: who watched which recording for how long, views per day, and
//! the totals on each record row. Written in batches by `records::watch`.

use redb::{ReadableDatabase, ReadableTable};

use super::codec::{decode, encode};
use super::tables::*;
use super::{Store, StoreError};
use crate::model::{Record, RecordId, RecordViewer, UserId};

/// What a batch of heartbeats and view starts adds for one viewer of one recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchDelta {
    pub watched_ms: u64,
    /// Unix seconds of the view counted in this batch, if one was.
    pub counted_at: Option<u64>,
    pub last_at: u64,
}

/// A recording's statistics as stored.
#[derive(Debug, Clone)]
pub struct WatchStats {
    pub record: Record,
    /// Most recent first.
    pub viewers: Vec<RecordViewer>,
    /// (unix day, views), oldest first.
    pub days: Vec<(u64, u64)>,
}

impl Store {
    /// Adds a batch to the statistics in one transaction and returns the record rows it
    /// changed. Deltas of a recording deleted meanwhile are dropped.
    pub fn add_watching(
        &self,
        batch: &[((RecordId, UserId), WatchDelta)],
    ) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_write()?;
        let mut changed: std::collections::BTreeMap<u64, Record> = Default::default();
        {
            let mut records = txn.open_table(RECORDS)?;
            let mut viewers = txn.open_table(RECORD_VIEWERS)?;
            let mut days = txn.open_table(RECORD_DAYS)?;
            for ((record_id, user), delta) in batch {
                let record = match changed.remove(&record_id.0) {
                    Some(record) => Some(record),
                    None => records
                        .get(record_id.0)?
                        .map(|v| decode::<Record>(v.value(), "record"))
                        .transpose()?,
                };
                let Some(mut record) = record else { continue };
                let key = (record_id.0, user.0);
                let found = viewers
                    .get(key)?
                    .map(|v| decode::<RecordViewer>(v.value(), "record viewer"))
                    .transpose()?;
                let mut viewer = match found {
                    Some(viewer) => viewer,
                    None => {
                        record.unique_viewers += 1;
                        RecordViewer {
                            record: *record_id,
                            user_id: *user,
                            views: 0,
                            watched_ms: 0,
                            first_at: delta.last_at,
                            last_at: delta.last_at,
                            counted_at: 0,
                        }
                    }
                };
                viewer.watched_ms += delta.watched_ms;
                viewer.last_at = viewer.last_at.max(delta.last_at);
                if let Some(at) = delta.counted_at {
                    viewer.views += 1;
                    viewer.counted_at = at;
                    record.views += 1;
                    let day = (record_id.0, at / 86_400);
                    let before = days.get(day)?.map(|v| v.value()).unwrap_or(0);
                    days.insert(day, before + 1)?;
                }
                record.watch_ms_total += delta.watched_ms;
                record.watch_secs_total = record.watch_ms_total / 1000;
                viewers.insert(key, encode(&viewer).as_slice())?;
                changed.insert(record_id.0, record);
            }
            for record in changed.values() {
                records.insert(record.id.0, encode(record).as_slice())?;
            }
        }
        txn.commit()?;
        let ids: Vec<RecordId> = changed.keys().map(|id| RecordId(*id)).collect();
        self.refresh_catalogue(&ids)?;
        Ok(changed.into_values().collect())
    }

    /// What starting a view needs: `None` for an unknown recording, otherwise when the
    /// viewer's last counted view of it was (`None` if never).
    pub fn watch_start_facts(
        &self,
        record: RecordId,
        user: UserId,
    ) -> Result<Option<Option<u64>>, StoreError> {
        let txn = self.db.begin_read()?;
        if txn.open_table(RECORDS)?.get(record.0)?.is_none() {
            return Ok(None);
        }
        let found = txn.open_table(RECORD_VIEWERS)?.get((record.0, user.0))?;
        let viewer = found
            .map(|v| decode::<RecordViewer>(v.value(), "record viewer"))
            .transpose()?;
        Ok(Some(viewer.filter(|v| v.views > 0).map(|v| v.counted_at)))
    }

    /// A recording's statistics, or `None` for an unknown recording.
    pub fn watch_stats(&self, id: RecordId) -> Result<Option<WatchStats>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(record) = txn
            .open_table(RECORDS)?
            .get(id.0)?
            .map(|v| decode::<Record>(v.value(), "record"))
            .transpose()?
        else {
            return Ok(None);
        };
        let mut viewers = Vec::new();
        for entry in txn
            .open_table(RECORD_VIEWERS)?
            .range((id.0, 0)..=(id.0, u64::MAX))?
        {
            viewers.push(decode::<RecordViewer>(entry?.1.value(), "record viewer")?);
        }
        viewers.sort_by(|a, b| b.last_at.cmp(&a.last_at).then(a.user_id.cmp(&b.user_id)));
        let mut days = Vec::new();
        for entry in txn
            .open_table(RECORD_DAYS)?
            .range((id.0, 0)..=(id.0, u64::MAX))?
        {
            let (key, views) = entry?;
            days.push((key.value().1, views.value()));
        }
        Ok(Some(WatchStats {
            record,
            viewers,
            days,
        }))
    }
}
