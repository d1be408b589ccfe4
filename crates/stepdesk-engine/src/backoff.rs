//! When to retry a failed attempt.

use std::time::Duration;

use rand::Rng;

/// Inngest's retry table: the delay after the 1st, 2nd, ... failed attempt.
const TABLE_SECS: [i64; 10] = [15, 30, 60, 120, 300, 600, 1200, 2400, 3600, 7200];
const MAX_JITTER_MS: i64 = 30_000;
const CAP_MS: i64 = 7_200_000;

/// The retry policy of an engine.
#[derive(Debug, Clone, Copy)]
pub enum Backoff {
    /// The table above, plus up to 30 s of random jitter, capped at 2 h.
    Table,
    /// A fixed interval (the `--retry-interval` development flag).
    Fixed(Duration),
}

impl Backoff {
    /// Delay in ms after `failed` attempts (1 = the first attempt failed).
    pub fn delay_ms(&self, failed: u32) -> i64 {
        match self {
            Backoff::Fixed(d) => d.as_millis() as i64,
            Backoff::Table => {
                let index = (failed.max(1) as usize - 1).min(TABLE_SECS.len() - 1);
                let base = TABLE_SECS[index] * 1000;
                let jitter = rand::thread_rng().gen_range(0..=MAX_JITTER_MS);
                (base + jitter).min(CAP_MS)
            }
        }
    }
}

/// Clamps a requested retry time to between 1 s and 24 h from now (as Inngest does).
pub fn clamp_retry_at(at: i64, now: i64) -> i64 {
    at.clamp(now + 1_000, now + 24 * 3_600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_table_with_bounded_jitter() {
        let b = Backoff::Table;
        for (failed, base) in [
            (1u32, 15_000i64),
            (2, 30_000),
            (3, 60_000),
            (10, 7_200_000),
            (15, 7_200_000),
        ] {
            for _ in 0..20 {
                let d = b.delay_ms(failed);
                assert!(
                    d >= base.min(CAP_MS) && d <= (base + MAX_JITTER_MS).min(CAP_MS),
                    "{failed}: {d}"
                );
            }
        }
    }

    #[test]
    fn fixed_interval_is_fixed() {
        assert_eq!(Backoff::Fixed(Duration::from_millis(250)).delay_ms(7), 250);
    }

    #[test]
    fn retry_after_is_clamped() {
        assert_eq!(clamp_retry_at(0, 10_000), 11_000);
        assert_eq!(clamp_retry_at(i64::MAX, 0), 86_400_000);
        assert_eq!(clamp_retry_at(50_000, 10_000), 50_000);
    }
}
