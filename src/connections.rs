//! Open connections per client IP address: a count per address, and a [`Slot`] that holds one
//! place and gives it back when dropped, so a connection that ends in any way frees its place.
//!
//! Owns: the counts. Calls: nothing. The server takes a slot per accepted connection; the web
//! layer takes one per request (and WebSocket) that a trusted proxy forwards.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct ConnectionCounts {
    /// At most this many open at once per address; 0 means no cap.
    max: usize,
    /// A std mutex: held only for one map update, never across an `.await`. Only addresses with
    /// an open connection have an entry, so the map is as large as the set of connected clients.
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One place taken for an address.
pub struct Slot {
    counts: Arc<ConnectionCounts>,
    ip: IpAddr,
}

impl ConnectionCounts {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The cap this counter enforces (0: none).
    pub fn max(&self) -> usize {
        self.max
    }

    /// Takes a place for `ip`, or `None` when it already has the maximum open.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_default();
        if self.max != 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_slot_frees_its_place_and_addresses_count_apart() {
        let counts = ConnectionCounts::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = counts.try_open(a).unwrap();
        let _second = counts.try_open("::ffff:10.0.0.1".parse().unwrap()).unwrap();
        assert!(
            counts.try_open(a).is_none(),
            "the mapped address is the same client"
        );
        let _other = counts.try_open(b).unwrap();
        drop(first);
        assert!(counts.try_open(a).is_some());
    }

    #[test]
    fn zero_means_no_cap() {
        let counts = ConnectionCounts::new(0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..1000).map(|_| counts.try_open(ip).unwrap()).collect();
        drop(slots);
        assert!(counts.open.lock().unwrap().is_empty());
    }
}
