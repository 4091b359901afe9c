//! Schema versions and the steps between them.
//!
//! `CURRENT` is the version this binary writes. A fresh store is created at `CURRENT` directly;
//! an older store is brought forward one numbered step at a time, all in the caller's single
//! write transaction, so a crash mid-upgrade leaves the old version intact.

use redb::{ReadableTable, WriteTransaction};

use super::codec::{decode, encode};
use super::tables::{LIVES, RECORDS};
use super::StoreError;
use crate::model::{LiveSession, Record};

/// The schema version this build of RoomManager reads and writes.
pub const CURRENT: u64 = 5;

/// `STEPS[i]` upgrades a store from version `i + 1` to `i + 2`.
type Step = fn(&WriteTransaction) -> Result<(), StoreError>;
const STEPS: &[Step] = &[
    records_keep_paths,
    records_keep_streams,
    fill_stats_rollups,
    super::users::fill_last_logins,
];
const _: () = assert!(STEPS.len() as u64 == CURRENT - 1, "one step per version");

/// Runs every step from `from` (at least 1, at most [`CURRENT`]) up to [`CURRENT`].
pub fn upgrade(txn: &WriteTransaction, from: u64) -> Result<(), StoreError> {
    let first = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
    for (step, version) in STEPS.iter().skip(first).zip(from..) {
        step(txn)?;
        tracing::info!(
            from = version,
            to = version + 1,
            "migrated the store schema"
        );
    }
    Ok(())
}

/// 1 → 2: a recording this server serves keeps its path, not a URL with the host it happened to
/// be configured with (`http://localhost:8080/records/files/…` becomes `/records/files/…`), so it
/// plays from wherever the site is opened. Recordings on another service (the http backend's
/// distributor) keep their full URL.
fn records_keep_paths(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut table = txn.open_table(RECORDS)?;
    let mut changed = Vec::new();
    for entry in table.iter()? {
        let (id, bytes) = entry?;
        let mut record: Record = decode(bytes.value(), "record")?;
        if let Some(path) = own_recording_path(&record.url) {
            record.url = path.to_owned();
            changed.push((id.value(), record));
        }
    }
    for (id, record) in changed {
        table.insert(id, encode(&record).as_slice())?;
    }
    Ok(())
}

/// 2 → 3: a record keeps its host stream's id (its session's `stream`), so deleting it can
/// remove its media without looking for the session.
fn records_keep_streams(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut records = txn.open_table(RECORDS)?;
    let lives = txn.open_table(LIVES)?;
    let mut changed = Vec::new();
    for entry in records.iter()? {
        let (id, bytes) = entry?;
        let mut record: Record = decode(bytes.value(), "record")?;
        if !record.stream.is_empty() {
            continue;
        }
        if let Some(session) = lives.get(record.live.0)? {
            let session: LiveSession = decode(session.value(), "live session")?;
            record.stream = session.stream;
            changed.push((id.value(), record));
        }
    }
    for (id, record) in changed {
        records.insert(id, encode(&record).as_slice())?;
    }
    Ok(())
}

/// 3 → 4: the statistics' roll-ups (logins per hour and day, views and watching per day) are
/// filled from the events kept so far; from now on they are written with each event.
fn fill_stats_rollups(txn: &WriteTransaction) -> Result<(), StoreError> {
    super::stats::fill_rollups(txn)
}

/// The path of a URL pointing at this server's own recordings.
fn own_recording_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let path = &rest[rest.find('/')?..];
    path.starts_with("/records/files/").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::own_recording_path;

    #[test]
    fn only_own_recording_urls_lose_their_host() {
        assert_eq!(
            own_recording_path("http://localhost:8080/records/files/h1/session_1.mp4"),
            Some("/records/files/h1/session_1.mp4")
        );
        assert_eq!(
            own_recording_path("https://live.lan/records/files/h1/a.mp4"),
            Some("/records/files/h1/a.mp4")
        );
        for other in [
            "http://distributor.lan/records/h1.mp4",
            "/records/files/h1/a.mp4",
            "http://host-only",
        ] {
            assert_eq!(own_recording_path(other), None, "{other}");
        }
    }
}
