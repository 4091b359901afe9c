//! Watch statistics in the store: who watched which recording for how long, views per day, and
//! the totals on each record row. Written in batches by `records::watch`.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::codec::{decode, encode};
use super::records::{read_record, write_record};
use super::stats::count_watching;
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
            let mut viewers = txn.open_table(RECORD_VIEWERS)?;
            let mut days = txn.open_table(RECORD_DAYS)?;
            let mut site_days = txn.open_table(WATCH_DAYS)?;
            for ((record_id, user), delta) in batch {
                let record = match changed.remove(&record_id.0) {
                    Some(record) => Some(record),
                    None => read_record(&txn, *record_id)?,
                };
                let Some(mut record) = record else { continue };
                count_watching(&mut site_days, *record_id, delta)?;
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
        }
        for record in changed.values() {
            write_record(&txn, record)?;
        }
        txn.commit()?;
        let ids: Vec<RecordId> = changed.keys().map(|id| RecordId(*id)).collect();
        self.refresh_catalogue(&ids);
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

/// Removes a recording's statistics inside the transaction that deletes the recording.
pub(super) fn remove_watching(txn: &WriteTransaction, id: RecordId) -> Result<(), StoreError> {
    let all = (id.0, 0)..=(id.0, u64::MAX);
    txn.open_table(RECORD_VIEWERS)?
        .retain_in(all.clone(), |_, _| false)?;
    txn.open_table(RECORD_DAYS)?.retain_in(all, |_, _| false)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RoomId;

    #[test]
    fn deleting_a_record_takes_its_statistics_and_late_batches_bring_nothing_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let session = store
            .start_live_session(RoomId(1), UserId(1), "t".into(), "s".into(), 1_000)
            .expect("session");
        let record = store
            .add_record(&session, 60, "/records/files/s/a.mp4".into(), None)
            .expect("record");
        let delta = WatchDelta {
            watched_ms: 5_000,
            counted_at: Some(86_400 * 3),
            last_at: 86_400 * 3,
        };
        store
            .add_watching(&[((record.id, UserId(2)), delta.clone())])
            .expect("batch");
        let stats = store.watch_stats(record.id).expect("read").expect("stats");
        assert_eq!((stats.viewers.len(), stats.days), (1, vec![(3, 1)]));

        store.delete_record(record.id, 2_000, None).expect("delete");
        let txn = store.db.begin_read().expect("read");
        let all = (record.id.0, 0)..=(record.id.0, u64::MAX);
        let viewers = txn.open_table(RECORD_VIEWERS).expect("viewers");
        let days = txn.open_table(RECORD_DAYS).expect("days");
        assert_eq!(viewers.range(all.clone()).expect("range").count(), 0);
        assert_eq!(days.range(all.clone()).expect("range").count(), 0);
        drop((viewers, days, txn));

        // A batch buffered before the delete and written after it is dropped.
        let changed = store
            .add_watching(&[((record.id, UserId(3)), delta)])
            .expect("late batch");
        assert!(changed.is_empty());
        assert!(store.watch_stats(record.id).expect("read").is_none());
        let txn = store.db.begin_read().expect("read");
        let viewers = txn.open_table(RECORD_VIEWERS).expect("viewers");
        assert_eq!(viewers.range(all).expect("range").count(), 0);
    }
}
