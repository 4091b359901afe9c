//! Merging a busy room's broadcast events into one frame (as Bilibili's goim does): when events
//! come faster than one per tick and members have not yet taken the frames before (the room is
//! under load), those of a tick go out together, one frame holding a JSON array of the
//! messages, built once and shared by every member. Each member's writer then wakes and writes
//! once per tick instead of once per event. Otherwise every event goes out at once, as a single
//! object: a room whose members keep up pays no tick of latency, however often it chats.
//!
//! The room decides when the batch must go out before its tick (a member joins or leaves, a
//! member gets a message of its own); this type only keeps the batch.

use std::time::{Duration, Instant};

use super::protocol::{Frame, ServerMessage};
use crate::server::websocket::MAX_HEADER;

/// A batch this large goes out before its tick: a merged frame stays small for any client.
const MAX_BATCH_BYTES: usize = 32 * 1024;

pub struct Coalescer {
    /// Zero: never merge.
    tick: Duration,
    /// When the last frame went out.
    last_sent: Option<Instant>,
    /// Whether some member still held earlier frames when the last frame was handed out.
    busy: bool,
    /// `MAX_HEADER` bytes left for the frame's header, `[`, then the messages separated by
    /// commas; unallocated while empty.
    batch: Vec<u8>,
    messages: usize,
}

impl Coalescer {
    pub fn new(tick: Duration) -> Coalescer {
        Coalescer {
            tick,
            last_sent: None,
            busy: false,
            batch: Vec::new(),
            messages: 0,
        }
    }

    /// The frame to send now for `message`; `None` when it joined the batch, which goes out at
    /// [`Coalescer::due`] (or earlier through [`Coalescer::take`]).
    pub fn offer(&mut self, message: &ServerMessage, now: Instant) -> Option<Frame> {
        let quiet = !self.busy
            || self
                .last_sent
                .is_none_or(|last| now.saturating_duration_since(last) >= self.tick);
        if self.messages == 0 && quiet {
            self.last_sent = Some(now);
            return Some(message.frame());
        }
        if self.messages == 0 {
            self.batch.resize(MAX_HEADER, 0);
            self.batch.push(b'[');
        } else {
            self.batch.push(b',');
        }
        message.write_json(&mut self.batch);
        self.messages += 1;
        if self.batch.len() >= MAX_BATCH_BYTES {
            return self.take(now);
        }
        None
    }

    /// Notes whether the frame just handed out found members still holding earlier ones.
    pub fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    /// When the batch is due, if there is one: a tick after the previous frame, so a busy room
    /// sends at most one frame per tick.
    pub fn due(&self) -> Option<Instant> {
        let last = self.last_sent?;
        (self.messages > 0).then(|| last + self.tick)
    }

    /// The batch as one frame, now: a single message as itself, several as a JSON array.
    pub fn take(&mut self, now: Instant) -> Option<Frame> {
        if self.messages == 0 {
            return None;
        }
        let mut batch = std::mem::take(&mut self.batch);
        if self.messages == 1 {
            batch.remove(MAX_HEADER);
        } else {
            batch.push(b']');
        }
        self.messages = 0;
        self.last_sent = Some(now);
        Some(Frame::finish(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frame: &Frame) -> String {
        String::from_utf8(frame.payload().to_vec()).expect("JSON is UTF-8")
    }

    fn audience(count: usize) -> ServerMessage {
        ServerMessage::Audience { count }
    }

    #[test]
    fn a_quiet_room_sends_each_event_at_once_and_a_busy_one_merges_a_tick() {
        let tick = Duration::from_millis(20);
        let mut c = Coalescer::new(tick);
        let t0 = Instant::now();
        let first = c
            .offer(&audience(1), t0)
            .expect("the first event goes at once");
        assert_eq!(text(&first), r#"{"type":"audience","count":1}"#);
        c.set_busy(true);
        assert!(c.offer(&audience(2), t0 + tick / 4).is_none());
        assert!(c.offer(&audience(3), t0 + tick / 2).is_none());
        assert_eq!(c.due(), Some(t0 + tick));
        let merged = c.take(t0 + tick).expect("two waiting");
        assert_eq!(
            text(&merged),
            r#"[{"type":"audience","count":2},{"type":"audience","count":3}]"#
        );
        assert_eq!(c.due(), None);
        // One event in a tick is sent as itself, a tick after the frame before it.
        assert!(c.offer(&audience(4), t0 + tick + tick / 2).is_none());
        let single = c.take(t0 + 2 * tick).expect("one waiting");
        assert_eq!(text(&single), r#"{"type":"audience","count":4}"#);
        // Quiet again: at once.
        assert!(c.offer(&audience(5), t0 + 4 * tick).is_some());
    }

    #[test]
    fn members_that_keep_up_get_every_event_at_once_however_often() {
        let tick = Duration::from_millis(20);
        let mut c = Coalescer::new(tick);
        let t0 = Instant::now();
        for n in 0..10 {
            assert!(c.offer(&audience(n), t0 + tick / 10 * n as u32).is_some());
            c.set_busy(false);
        }
        assert_eq!(c.due(), None);
        c.set_busy(true);
        assert!(
            c.offer(&audience(10), t0 + tick).is_none(),
            "behind: merged"
        );
    }

    #[test]
    fn a_zero_tick_never_merges() {
        let mut c = Coalescer::new(Duration::ZERO);
        c.set_busy(true);
        let t0 = Instant::now();
        for n in 0..10 {
            assert!(c.offer(&audience(n), t0).is_some());
        }
        assert_eq!(c.due(), None);
    }

    #[test]
    fn a_large_batch_goes_out_before_its_tick() {
        let mut c = Coalescer::new(Duration::from_millis(50));
        let t0 = Instant::now();
        assert!(c.offer(&audience(0), t0).is_some());
        c.set_busy(true);
        let mut sent = None;
        for n in 1..10_000 {
            if let Some(frame) = c.offer(&audience(n), t0) {
                sent = Some(frame);
                break;
            }
        }
        let frame = sent.expect("the batch outgrew its limit");
        assert!(frame.payload().len() >= MAX_BATCH_BYTES);
        let parsed: serde_json::Value = serde_json::from_slice(frame.payload()).expect("JSON");
        assert!(parsed.as_array().is_some_and(|a| a.len() > 1));
    }
}
