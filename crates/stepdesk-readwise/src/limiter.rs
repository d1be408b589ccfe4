//! The client-side rate limiter: per token, at most `limit` requests in any sliding window.
//!
//! A slot is taken just before a request is sent and stays "in flight" until its response
//! has been read; only then does its window start. Readwise counts a request when it
//! arrives, which lies between the two, so for any two requests `limit` apart the server
//! sees them at least one window apart, whatever the latency: the limiter cannot provoke a
//! `429` by counting too early. After a `429` the token's bucket is closed for the
//! `Retry-After` time, so concurrent callers with the same token wait instead of piling up
//! more `429`s.
//!
//! Buckets are keyed by a keyed hash of the token (`RandomState`, random per process), never
//! by the token itself.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Endpoint, MAX_RETRY_AFTER};
use crate::token::Token;

/// Sweep idle buckets every this many acquisitions.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug, Default)]
struct Window {
    /// `None`: in flight; `Some(t)`: completed at `t`.
    entries: Vec<(u64, Option<Instant>)>,
    blocked_until: Option<Instant>,
}

impl Window {
    fn prune(&mut self, now: Instant, window: Duration) {
        self.entries
            .retain(|(_, done)| done.is_none_or(|t| now.duration_since(t) < window));
        if self.blocked_until.is_some_and(|b| b <= now) {
            self.blocked_until = None;
        }
    }

    fn is_idle(&self) -> bool {
        self.entries.is_empty() && self.blocked_until.is_none()
    }
}

#[derive(Debug, Default)]
struct Buckets {
    list: Window,
    other: Window,
}

impl Buckets {
    fn get(&mut self, endpoint: Endpoint) -> &mut Window {
        if endpoint.is_list() {
            &mut self.list
        } else {
            &mut self.other
        }
    }
}

#[derive(Debug, Default)]
struct State {
    buckets: HashMap<u64, Buckets>,
    next_id: u64,
    acquisitions: u64,
}

#[derive(Debug)]
pub(crate) struct Limiter {
    list_limit: usize,
    other_limit: usize,
    window: Duration,
    hasher: std::collections::hash_map::RandomState,
    state: Arc<Mutex<State>>,
}

/// A taken slot; dropping it (after the response, or when the request is abandoned) starts
/// its window.
#[derive(Debug)]
pub(crate) struct Slot {
    state: Option<(Arc<Mutex<State>>, u64, Endpoint, u64)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((state, key, endpoint, id)) = self.state.take() {
            let now = Instant::now();
            let mut st = lock(&state);
            if let Some(b) = st.buckets.get_mut(&key) {
                if let Some(e) = b.get(endpoint).entries.iter_mut().find(|e| e.0 == id) {
                    e.1 = Some(now);
                }
            }
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Limiter {
    pub fn new(list_limit: u32, other_limit: u32, window: Duration) -> Self {
        Self {
            list_limit: list_limit as usize,
            other_limit: other_limit as usize,
            window,
            hasher: Default::default(),
            state: Default::default(),
        }
    }

    pub fn key(&self, token: &Token) -> u64 {
        self.hasher.hash_one(token.expose_secret())
    }

    fn limit(&self, endpoint: Endpoint) -> usize {
        if endpoint.is_list() {
            self.list_limit
        } else {
            self.other_limit
        }
    }

    /// How long until a slot may be free (zero: try now). Takes nothing.
    pub fn wait_hint(&self, key: u64, endpoint: Endpoint) -> Duration {
        let limit = self.limit(endpoint);
        if limit == 0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut st = lock(&self.state);
        match st.buckets.get_mut(&key) {
            Some(b) => self
                .wait_for(b.get(endpoint), limit, now)
                .unwrap_or_default(),
            None => Duration::ZERO,
        }
    }

    /// `None` when a slot is free now, else how long to wait before trying again.
    fn wait_for(&self, w: &mut Window, limit: usize, now: Instant) -> Option<Duration> {
        w.prune(now, self.window);
        if let Some(b) = w.blocked_until {
            return Some(
                b.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            );
        }
        if w.entries.len() < limit {
            return None;
        }
        let earliest_free = w
            .entries
            .iter()
            .filter_map(|(_, done)| *done)
            // A window too long for an `Instant` never frees the slot: poll.
            .filter_map(|t| t.checked_add(self.window))
            .map(|free| free.saturating_duration_since(now))
            .min();
        // Every slot in flight: poll until one completes.
        let poll = (self.window / 50).clamp(Duration::from_millis(5), Duration::from_millis(200));
        Some(earliest_free.unwrap_or(poll).max(Duration::from_millis(1)))
    }

    /// Takes a slot now, or says how long to wait.
    pub fn try_acquire(&self, key: u64, endpoint: Endpoint) -> Result<Slot, Duration> {
        let limit = self.limit(endpoint);
        if limit == 0 {
            return Ok(Slot { state: None });
        }
        let now = Instant::now();
        let mut st = lock(&self.state);
        st.acquisitions += 1;
        if st.acquisitions >= SWEEP_EVERY {
            st.acquisitions = 0;
            let window = self.window;
            st.buckets.retain(|_, b| {
                b.list.prune(now, window);
                b.other.prune(now, window);
                !(b.list.is_idle() && b.other.is_idle())
            });
        }
        let id = st.next_id;
        let w = st.buckets.entry(key).or_default().get(endpoint);
        if let Some(wait) = self.wait_for(w, limit, now) {
            return Err(wait);
        }
        w.entries.push((id, None));
        st.next_id += 1;
        Ok(Slot {
            state: Some((self.state.clone(), key, endpoint, id)),
        })
    }

    /// Closes the token's bucket for `d` (after a `429`), at most [`MAX_RETRY_AFTER`]: the
    /// wait comes from the server, and `Instant + Duration` panics on overflow.
    pub fn block_for(&self, key: u64, endpoint: Endpoint, d: Duration) {
        if self.limit(endpoint) == 0 {
            return;
        }
        let now = Instant::now();
        let d = d.min(MAX_RETRY_AFTER);
        let Some(until) = now.checked_add(d) else {
            return;
        };
        let mut st = lock(&self.state);
        let w = st.buckets.entry(key).or_default().get(endpoint);
        w.blocked_until = Some(w.blocked_until.map_or(until, |b| b.max(until)));
    }

    #[cfg(test)]
    fn bucket_count(&self) -> usize {
        lock(&self.state).buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hashes_not_tokens() {
        let l = Limiter::new(3, 3, Duration::from_secs(1));
        let a = Token::new("token-a-aaaaaaaaaaaa");
        assert_eq!(l.key(&a), l.key(&a.clone()));
        assert_ne!(l.key(&a), l.key(&Token::new("token-b-bbbbbbbbbbbb")));
        let _slot = l.try_acquire(l.key(&a), Endpoint::Books).unwrap();
        let dump = format!("{:?}", l);
        assert!(!dump.contains("token-a"), "{dump}");
    }

    #[test]
    fn window_counts_from_completion() {
        let window = Duration::from_millis(300);
        let l = Limiter::new(2, 100, window);
        let k = 42;
        let s1 = l.try_acquire(k, Endpoint::Books).unwrap();
        let s2 = l.try_acquire(k, Endpoint::Books).unwrap();
        // Both in flight: full, and the wait is a short poll.
        let wait = l.try_acquire(k, Endpoint::Books).unwrap_err();
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        // The other class has its own budget.
        drop(l.try_acquire(k, Endpoint::Auth).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        drop(s1);
        drop(s2);
        // Now the window runs from completion: close to the whole window remains.
        let wait = l.try_acquire(k, Endpoint::Books).unwrap_err();
        assert!(wait > Duration::from_millis(250), "{wait:?}");
        std::thread::sleep(wait);
        assert!(l.try_acquire(k, Endpoint::Books).is_ok());
    }

    #[test]
    fn block_for_closes_the_bucket() {
        let l = Limiter::new(20, 240, Duration::from_secs(60));
        l.block_for(7, Endpoint::Books, Duration::from_millis(100));
        let wait = l.try_acquire(7, Endpoint::Books).unwrap_err();
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(100));
        assert!(l.try_acquire(7, Endpoint::Auth).is_ok());
        assert_eq!(l.wait_hint(8, Endpoint::Books), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(110));
        assert!(l.try_acquire(7, Endpoint::Books).is_ok());
    }

    #[test]
    fn huge_blocks_do_not_overflow() {
        let l = Limiter::new(20, 240, Duration::from_secs(60));
        l.block_for(7, Endpoint::Books, Duration::MAX);
        l.block_for(7, Endpoint::Books, Duration::from_secs(u64::MAX));
        let wait = l.try_acquire(7, Endpoint::Books).unwrap_err();
        assert!(
            wait > Duration::from_secs(23 * 3600) && wait <= MAX_RETRY_AFTER,
            "{wait:?}"
        );
        let hint = l.wait_hint(7, Endpoint::Books);
        assert!(
            hint <= wait && hint > Duration::from_secs(23 * 3600),
            "{hint:?}"
        );
        // A window no `Instant` can hold: a full bucket polls instead of overflowing.
        let l = Limiter::new(1, 1, Duration::MAX);
        drop(l.try_acquire(1, Endpoint::Books).unwrap());
        let wait = l.try_acquire(1, Endpoint::Books).unwrap_err();
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
    }

    #[test]
    fn zero_limit_disables() {
        let l = Limiter::new(0, 0, Duration::from_secs(60));
        for _ in 0..100 {
            drop(l.try_acquire(1, Endpoint::Books).unwrap());
        }
        l.block_for(1, Endpoint::Books, Duration::from_secs(10));
        assert!(l.try_acquire(1, Endpoint::Books).is_ok());
    }

    #[test]
    fn idle_buckets_are_swept() {
        let l = Limiter::new(5, 5, Duration::from_millis(1));
        for k in 0..SWEEP_EVERY {
            drop(l.try_acquire(k, Endpoint::Books).unwrap());
        }
        std::thread::sleep(Duration::from_millis(5));
        for k in SWEEP_EVERY..2 * SWEEP_EVERY {
            drop(l.try_acquire(k, Endpoint::Auth).unwrap());
        }
        // The sweep at the 8192nd acquisition removed the first 4096 (expired) buckets.
        assert!(
            l.bucket_count() <= SWEEP_EVERY as usize,
            "{}",
            l.bucket_count()
        );
    }
}
