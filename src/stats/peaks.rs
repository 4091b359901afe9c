//! The day's peak of people in live rooms at once, sampled while the server runs: nothing else
//! remembers how many watched together, as audiences live only in the room actors.
//!
//! Owns: the sampling loop and the in-memory peak of the current day. Calls: store (the
//! `viewer_peaks_v1` roll-up). The count comes from a closure, so this module does not know rooms.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{unix_now, Store};

/// How often the people in live rooms are counted: a crowd that comes and goes between two
/// samples is not seen, which a daily chart can bear.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

const DAY: u64 = 86_400;

/// Counts people in live rooms every [`SAMPLE_EVERY`] until shutdown and stores the day's peak
/// whenever it rises. The store is written only on a new peak, so a steady day costs no writes.
pub async fn run(store: Store, viewers_now: impl Fn() -> usize, shutdown: CancellationToken) {
    // (day, highest count written that day); the store keeps the higher one across restarts.
    let mut known = (0, 0);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
        let now = unix_now();
        let viewers = viewers_now() as u64;
        if known.0 != now / DAY {
            known = (now / DAY, 0);
        }
        if viewers <= known.1 {
            continue;
        }
        known.1 = viewers;
        if let Err(e) = store.run(move |s| s.raise_viewer_peak(viewers, now)).await {
            tracing::warn!(error = %e, viewers, "cannot store the day's viewer peak");
        }
    }
}
