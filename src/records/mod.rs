//! Records: recordings after the live, as replays.
pub mod watch;
