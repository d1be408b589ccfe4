//! Latency distributions and number formatting.

use std::time::Duration;

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dist {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Dist {
    pub fn of(samples: &[Duration]) -> Dist {
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        if us.is_empty() {
            return Dist::default();
        }
        us.sort_by(|a, b| a.total_cmp(b));
        Dist {
            n: us.len(),
            p50: percentile(&us, 0.50),
            p90: percentile(&us, 0.90),
            p99: percentile(&us, 0.99),
            max: *us.last().expect("not empty"),
        }
    }

    /// `p50 / p90 / p99 / max` in milliseconds.
    pub fn row(&self) -> String {
        format!(
            "{} | {} | {} | {}",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

/// A rate with thousands separators.
pub fn rate(per_s: f64) -> String {
    thousands(per_s.round() as u64)
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    let mut out = digits[..head].to_string();
    for group in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).expect("ascii digits"));
    }
    out
}

pub fn pct(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

pub fn mark(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let d = Dist::of(&samples);
        assert_eq!(d.p50, 50.0);
        assert_eq!(d.p90, 90.0);
        assert_eq!(d.p99, 99.0);
        assert_eq!(d.max, 100.0);
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(0), "0");
        assert_eq!(ms(1500.0), "1.500 ms");
    }
}
