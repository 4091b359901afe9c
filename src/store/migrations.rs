//! Schema versions and the steps between them.
//!
//! `CURRENT` is the version this binary writes. A fresh store is created at `CURRENT` directly;
//! an older store is brought forward one numbered step at a time, all in the caller's single
//! write transaction, so a crash mid-upgrade leaves the old version intact.

use redb::WriteTransaction;

use super::StoreError;

/// The schema version this build of RoomManager reads and writes.
pub const CURRENT: u64 = 1;

/// `STEPS[i]` upgrades a store from version `i + 1` to `i + 2`.
type Step = fn(&WriteTransaction) -> Result<(), StoreError>;
const STEPS: &[Step] = &[];
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
