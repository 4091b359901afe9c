//! Rate limits, kept in memory: "at most N attempts per key within a window" ([`RateLimiter`])
//! and "after a few failures, wait longer after each further one" ([`Backoff`]).
//!
//! Owns: the counters. Calls: nothing. Used by accounts (logins, registrations, mails, guests)
//! with keys made from an account, an email address or a client IP. A restart forgets the
//! counters, which only ever makes the limits more lenient, never locks anyone out.
//!
//! Memory is bounded whatever clients send: a key is a fixed-size digest of what it names, each
//! limiter tracks at most `max_keys` keys, expired entries are dropped by [`RateLimiter::sweep`]
//! (run on a timer) and, when a limiter is full, the entries closest to expiry make room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What a limiter counts under: 16 bytes of a SHA-256, so a megabyte-long name costs what a
/// short one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 16]);

impl Key {
    /// The key of a value made of `parts` (each length-prefixed, so `["ab", "c"]` and
    /// `["a", "bc"]` differ).
    pub fn of(parts: &[&[u8]]) -> Key {
        let mut hash = Sha256::new();
        for part in parts {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        let digest = hash.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Key(key)
    }

    /// The key of a client address. An IPv6 client counts by its /64, the block one subscriber
    /// or machine is usually given, so it cannot dodge a limit by walking through its own
    /// addresses; an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn client(ip: IpAddr) -> Key {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Key::of(&[b"v4", &v4.octets()]),
            IpAddr::V6(v6) => Key::of(&[b"v6/64", &v6.octets()[..8]]),
        }
    }

    /// The key of this key together with `other`, e.g. an account and a client.
    pub fn and(self, other: Key) -> Key {
        Key::of(&[&self.0, &other.0])
    }
}

impl From<&str> for Key {
    fn from(value: &str) -> Key {
        Key::of(&[value.as_bytes()])
    }
}

/// Refused: the caller may try again after this long (whole seconds, at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    fn rounded_up(wait: Duration) -> RetryAfter {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        RetryAfter(Duration::from_secs(secs.max(1)))
    }
}

/// A limiter's per-key state: it can be forgotten once `expires` has passed.
trait Expiring {
    fn expires(&self) -> Instant;
}

/// The per-key states of one limiter, at most `max_keys` of them.
struct Table<V> {
    entries: HashMap<Key, V>,
    max_keys: usize,
}

impl<V: Expiring> Table<V> {
    fn new(max_keys: usize) -> Self {
        Table {
            entries: HashMap::new(),
            max_keys: max_keys.max(1),
        }
    }

    /// The live state of `key`, if any (an expired one is dropped).
    fn live(&mut self, key: Key, now: Instant) -> Option<&mut V> {
        if self.entries.get(&key).is_some_and(|v| v.expires() <= now) {
            self.entries.remove(&key);
        }
        self.entries.get_mut(&key)
    }

    /// The state of `key`, made with `new` if it has none; makes room first when full.
    fn entry(&mut self, key: Key, now: Instant, new: impl FnOnce() -> V) -> &mut V {
        if self.live(key, now).is_none() && self.entries.len() >= self.max_keys {
            self.make_room(now);
        }
        self.entries.entry(key).or_insert_with(new)
    }

    fn sweep(&mut self, now: Instant) {
        self.entries.retain(|_, v| v.expires() > now);
    }

    /// Drops the expired entries and, if that is not enough, the eighth of the entries closest
    /// to expiry (those that would soon be forgotten anyway). Forgetting only ever lets a key
    /// start afresh, and a flood of new keys costs one scan per eighth of the table.
    fn make_room(&mut self, now: Instant) {
        self.sweep(now);
        if self.entries.len() < self.max_keys {
            return;
        }
        let drop = (self.max_keys / 8).max(1);
        let mut expiries: Vec<Instant> = self.entries.values().map(Expiring::expires).collect();
        let (_, threshold, _) = expiries.select_nth_unstable(drop - 1);
        let threshold = *threshold;
        let mut dropped = 0;
        self.entries.retain(|_, v| {
            let forget = dropped < drop && v.expires() <= threshold;
            dropped += usize::from(forget);
            !forget
        });
    }
}

/// A std mutex: held only for a map update, never across an `.await`; a panic while holding
/// it leaves counters that are still usable, so a poisoned lock is taken over.
fn lock<V>(table: &Mutex<Table<V>>) -> MutexGuard<'_, Table<V>> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

/// "At most `limit` attempts per key within `window`" (fixed windows from a key's first try).
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    table: Mutex<Table<Window>>,
}

struct Window {
    start: Instant,
    count: u32,
    window: Duration,
}

impl Expiring for Window {
    fn expires(&self) -> Instant {
        self.start + self.window
    }
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            limit,
            window,
            table: Mutex::new(Table::new(max_keys)),
        }
    }

    /// Counts one attempt for `key`, or refuses it if the key has used up its window.
    pub fn check(&self, key: impl Into<Key>) -> Result<(), RetryAfter> {
        self.check_at(key.into(), Instant::now())
    }

    fn check_at(&self, key: Key, now: Instant) -> Result<(), RetryAfter> {
        let window = self.window;
        let mut table = lock(&self.table);
        let entry = table.entry(key, now, || Window {
            start: now,
            count: 0,
            window,
        });
        if entry.count >= self.limit {
            return Err(RetryAfter::rounded_up(entry.expires() - now));
        }
        entry.count += 1;
        Ok(())
    }

    /// Forgets the keys whose window has ended.
    pub fn sweep(&self) {
        lock(&self.table).sweep(Instant::now());
    }

    /// How many keys are tracked now.
    pub fn tracked_keys(&self) -> usize {
        lock(&self.table).entries.len()
    }
}

/// The limits of a login: failures per (account, client) with back-off, and all attempts per
/// client. Users and admins each have their own, under the same `limits.login_*` settings.
pub struct LoginLimits {
    pub failures: Backoff,
    pub per_client: RateLimiter,
}

impl LoginLimits {
    pub fn new(l: &crate::config::LimitsConfig) -> Self {
        let rule = BackoffRule {
            free: l.login_free_failures,
            first: Duration::from_secs(l.login_backoff_secs),
            max: Duration::from_secs(l.login_backoff_max_secs),
            forget: Duration::from_secs(l.login_window_secs),
        };
        LoginLimits {
            failures: Backoff::new(rule, l.max_tracked_keys),
            per_client: RateLimiter::new(
                l.login_per_ip,
                Duration::from_secs(l.login_window_secs),
                l.max_tracked_keys,
            ),
        }
    }

    /// Forgets the keys with nothing left to remember.
    pub fn sweep(&self) {
        self.failures.sweep();
        self.per_client.sweep();
    }

    /// How many keys are tracked now.
    pub fn tracked_keys(&self) -> usize {
        self.failures.tracked_keys() + self.per_client.tracked_keys()
    }
}

/// Failures per key with back-off: the first `free` failures cost nothing; after each further
/// one the key must wait, `first` after the first of them, twice as long after each next one,
/// at most `max`. A success, or `forget` without a failure (once any wait is over), clears it.
pub struct Backoff {
    free: u32,
    first: Duration,
    max: Duration,
    forget: Duration,
    table: Mutex<Table<Failures>>,
}

struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Instant,
    forget: Duration,
}

impl Expiring for Failures {
    fn expires(&self) -> Instant {
        (self.last + self.forget).max(self.blocked_until)
    }
}

/// The settings of a [`Backoff`].
#[derive(Debug, Clone, Copy)]
pub struct BackoffRule {
    pub free: u32,
    pub first: Duration,
    pub max: Duration,
    pub forget: Duration,
}

impl Backoff {
    pub fn new(rule: BackoffRule, max_keys: usize) -> Self {
        Self {
            free: rule.free,
            first: rule.first,
            max: rule.max,
            forget: rule.forget,
            table: Mutex::new(Table::new(max_keys)),
        }
    }

    /// Refuses while `key` is waiting after a failure; counts nothing.
    pub fn check(&self, key: Key) -> Result<(), RetryAfter> {
        self.check_at(key, Instant::now())
    }

    /// Notes a failure of `key`.
    pub fn failed(&self, key: Key) {
        self.failed_at(key, Instant::now());
    }

    /// Clears `key`'s failures.
    pub fn succeeded(&self, key: Key) {
        lock(&self.table).entries.remove(&key);
    }

    /// Forgets the keys with nothing left to remember.
    pub fn sweep(&self) {
        lock(&self.table).sweep(Instant::now());
    }

    /// How many keys are tracked now.
    pub fn tracked_keys(&self) -> usize {
        lock(&self.table).entries.len()
    }

    fn check_at(&self, key: Key, now: Instant) -> Result<(), RetryAfter> {
        let mut table = lock(&self.table);
        match table.live(key, now) {
            Some(failures) if failures.blocked_until > now => {
                Err(RetryAfter::rounded_up(failures.blocked_until - now))
            }
            _ => Ok(()),
        }
    }

    fn failed_at(&self, key: Key, now: Instant) {
        let forget = self.forget;
        let mut table = lock(&self.table);
        let failures = table.entry(key, now, || Failures {
            count: 0,
            last: now,
            blocked_until: now,
            forget,
        });
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
        if let Some(beyond) = failures.count.checked_sub(self.free + 1) {
            let wait = self.first.saturating_mul(1 << beyond.min(30)).min(self.max);
            failures.blocked_until = now + wait;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANY: usize = 1000;

    #[test]
    fn allows_the_limit_then_refuses_until_the_window_ends() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60), MANY);
        let t0 = Instant::now();
        assert!(limiter.check_at("a".into(), t0).is_ok());
        assert!(limiter.check_at("a".into(), t0).is_ok());
        let refused = limiter
            .check_at("a".into(), t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(refused, RetryAfter(Duration::from_secs(50)));
        assert!(
            limiter.check_at("b".into(), t0).is_ok(),
            "keys are independent"
        );
        assert!(limiter
            .check_at("a".into(), t0 + Duration::from_secs(60))
            .is_ok());
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        let limiter = RateLimiter::new(1, Duration::from_millis(2500), MANY);
        let t0 = Instant::now();
        limiter.check_at("a".into(), t0).unwrap();
        let early = limiter
            .check_at("a".into(), t0 + Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(early, RetryAfter(Duration::from_secs(3)));
        let late = limiter
            .check_at("a".into(), t0 + Duration::from_millis(2499))
            .unwrap_err();
        assert_eq!(late, RetryAfter(Duration::from_secs(1)));
    }

    #[test]
    fn a_limiter_never_tracks_more_than_its_keys_whatever_arrives() {
        let limiter = RateLimiter::new(3, Duration::from_secs(3600), 64);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let name = format!("{i}-{}", "x".repeat(1000));
            limiter
                .check_at(name.as_str().into(), t0 + Duration::from_millis(i.into()))
                .unwrap();
            assert!(limiter.tracked_keys() <= 64);
        }
        // The newest keys are the ones kept: the last one is still counted.
        let last = format!("9999-{}", "x".repeat(1000));
        let at = t0 + Duration::from_secs(10);
        limiter.check_at(last.as_str().into(), at).unwrap();
        limiter.check_at(last.as_str().into(), at).unwrap();
        assert!(limiter.check_at(last.as_str().into(), at).is_err());
    }

    #[test]
    fn the_sweep_forgets_ended_windows() {
        let limiter = RateLimiter::new(1, Duration::from_secs(60), MANY);
        let t0 = Instant::now();
        for i in 0..100u32 {
            limiter.check_at(Key::of(&[&i.to_le_bytes()]), t0).unwrap();
        }
        assert_eq!(limiter.tracked_keys(), 100);
        lock(&limiter.table).sweep(t0 + Duration::from_secs(59));
        assert_eq!(limiter.tracked_keys(), 100);
        lock(&limiter.table).sweep(t0 + Duration::from_secs(60));
        assert_eq!(limiter.tracked_keys(), 0);
    }

    fn rule() -> BackoffRule {
        BackoffRule {
            free: 3,
            first: Duration::from_secs(5),
            max: Duration::from_secs(40),
            forget: Duration::from_secs(900),
        }
    }

    #[test]
    fn backoff_doubles_after_the_free_failures_up_to_the_cap() {
        let backoff = Backoff::new(rule(), MANY);
        let key = Key::from("olga");
        let mut now = Instant::now();
        for _ in 0..3 {
            backoff.check_at(key, now).unwrap();
            backoff.failed_at(key, now);
        }
        let mut waits = Vec::new();
        for _ in 0..6 {
            backoff.check_at(key, now).unwrap();
            backoff.failed_at(key, now);
            let RetryAfter(wait) = backoff.check_at(key, now).unwrap_err();
            waits.push(wait.as_secs());
            now += wait;
        }
        assert_eq!(waits, [5, 10, 20, 40, 40, 40]);
    }

    #[test]
    fn backoff_is_per_key_and_cleared_by_a_success_or_by_time() {
        let backoff = Backoff::new(rule(), MANY);
        let stranger = Key::from("olga").and(Key::client([127, 0, 0, 2].into()));
        let owner = Key::from("olga").and(Key::client([127, 0, 0, 1].into()));
        let t0 = Instant::now();
        for _ in 0..10 {
            backoff.failed_at(stranger, t0);
        }
        assert!(backoff.check_at(stranger, t0).is_err());
        assert!(backoff.check_at(owner, t0).is_ok(), "another client");

        backoff.succeeded(stranger);
        assert!(backoff.check_at(stranger, t0).is_ok());

        for _ in 0..4 {
            backoff.failed_at(owner, t0);
        }
        assert!(backoff.check_at(owner, t0).is_err());
        let later = t0 + Duration::from_secs(900);
        assert!(backoff.check_at(owner, later).is_ok());
        assert_eq!(backoff.tracked_keys(), 0, "forgotten, not just let through");
        backoff.failed_at(owner, later);
        assert!(
            backoff.check_at(owner, later).is_ok(),
            "counting starts afresh"
        );
    }

    #[test]
    fn a_full_backoff_stays_bounded_and_still_blocks() {
        let backoff = Backoff::new(rule(), 16);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let at = t0 + Duration::from_millis(i.into());
            backoff.failed_at(Key::of(&[&i.to_le_bytes()]), at);
            assert!(backoff.tracked_keys() <= 16);
        }
        let blocked = Key::from("blocked");
        let at = t0 + Duration::from_secs(2);
        for _ in 0..4 {
            backoff.failed_at(blocked, at);
        }
        assert!(backoff.tracked_keys() <= 16);
        assert!(backoff.check_at(blocked, at).is_err());
    }

    #[test]
    fn client_keys_group_ipv6_by_64_and_unmap_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            Key::client(ip("2001:db8:1:2::1")),
            Key::client(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Key::client(ip("2001:db8:1:2::1")),
            Key::client(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Key::client(ip("::ffff:127.0.0.1")),
            Key::client(ip("127.0.0.1"))
        );
        assert_ne!(Key::client(ip("127.0.0.1")), Key::client(ip("127.0.0.2")));
        assert_ne!(Key::of(&[b"ab", b"c"]), Key::of(&[b"a", b"bc"]));
    }
}
