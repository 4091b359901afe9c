//! Rate limits: "at most N attempts per key within a window", kept in memory.
//!
//! Owns: the counters. Calls: nothing. Used by accounts (logins, registrations, mails) with keys
//! such as an account name or a client IP. A restart forgets the counters, which only ever
//! makes the limits more lenient, never locks anyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Above this many tracked keys, expired windows are swept on the next check.
const SWEEP_ABOVE: usize = 10_000;

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    /// key → (window start, attempts in it). A std mutex: held only for a map update.
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Refused: the caller may try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key`, or refuses it if the key has used up its window.
    pub fn check(&self, key: &str) -> Result<(), RetryAfter> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), RetryAfter> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let (start, count) = windows.entry(key.to_owned()).or_insert((now, 0));
        let elapsed = now.duration_since(*start);
        if elapsed >= self.window {
            *start = now;
            *count = 0;
        }
        if *count >= self.limit {
            let wait = self.window.saturating_sub(now.duration_since(*start));
            return Err(RetryAfter(wait.max(Duration::from_secs(1))));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_refuses_until_the_window_ends() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limiter.check_at("a", t0).is_ok());
        assert!(limiter.check_at("a", t0).is_ok());
        let refused = limiter
            .check_at("a", t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(refused, RetryAfter(Duration::from_secs(50)));
        assert!(limiter.check_at("b", t0).is_ok(), "keys are independent");
        assert!(limiter.check_at("a", t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn retry_after_is_at_least_a_second() {
        let limiter = RateLimiter::new(1, Duration::from_millis(100));
        let t0 = Instant::now();
        limiter.check_at("a", t0).unwrap();
        let refused = limiter
            .check_at("a", t0 + Duration::from_millis(99))
            .unwrap_err();
        assert_eq!(refused, RetryAfter(Duration::from_secs(1)));
    }
}
