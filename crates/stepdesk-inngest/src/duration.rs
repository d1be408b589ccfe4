//! Inngest durations, and when a `Sleep` op wakes.
//!
//! Protocol §1.7 and §1.10. SDKs write durations as a run of `<number><unit>` pairs:
//! JS emits compound forms (`"2h30m10s"`, `"1d"`, capture `js/30_sleep_call1`: `"1s"`),
//! Python the largest whole unit (`"1w"`, `"90s"`). Units: `ns`, `us`/`µs`, `ms`, `s`, `m`,
//! `h`, `d` (24 h), `w` (7 d); numbers may have a fraction (`"1.5h"`), as Go's parser allows.
//!
//! A `Sleep` op carries its wake time in different places: JS puts the duration in `name`
//! (no `opts`), Python an ISO time in `name` (capture `py/30_sleep_call1`), other SDKs
//! `opts.duration`. A value of 10 characters or more is tried as a date first. Sleeps are
//! capped at 366 days.
//! Hand-written: the grammar is Go's (`time.ParseDuration` plus `d` and `w`, fractions
//! allowed), which the common crates do not match (humantime has no fractions and reads
//! `M` as months); it is a small loop.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime};
use serde_json::Value;

use crate::wire::Op;

/// The longest sleep Stepdesk schedules, as Inngest does: 366 days.
pub const MAX_SLEEP_MS: i64 = 366 * 24 * 3_600_000;

/// A duration or time that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

fn error(input: &str, reason: impl Into<String>) -> DurationError {
    DurationError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

const NS: u128 = 1;
const US: u128 = 1_000;
const MS: u128 = 1_000_000;
const S: u128 = 1_000_000_000;

fn unit_ns(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => NS,
        "us" | "µs" | "μs" => US,
        "ms" => MS,
        "s" => S,
        "m" => 60 * S,
        "h" => 3_600 * S,
        "d" => 86_400 * S,
        "w" => 7 * 86_400 * S,
        _ => return None,
    })
}

/// Parses an Inngest duration: `"1h30m10s"`, `"2d"`, `"1w"`, `"500ms"`, `"1.5h"`, `"0"`.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(error(input, "it is empty"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." {
            return Err(error(input, "expected a number before each unit"));
        }
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(error(
                input,
                format!("`{number}` has no unit (ns, us, ms, s, m, h, d or w)"),
            ));
        }
        let per = unit_ns(unit).ok_or_else(|| {
            error(
                input,
                format!("unknown unit `{unit}` (ns, us, ms, s, m, h, d or w)"),
            )
        })?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if fraction.contains('.') {
            return Err(error(input, format!("`{number}` is not a number")));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| error(input, "number too large"))?
        };
        let mut part = whole
            .checked_mul(per)
            .ok_or_else(|| error(input, "too long"))?;
        if !fraction.is_empty() {
            // Digits beyond nanosecond precision cannot matter; 18 keeps `value * per` in
            // range for the largest unit.
            let digits = &fraction[..fraction.len().min(18)];
            let scale = 10u128.pow(digits.len() as u32);
            let value: u128 = digits.parse().map_err(|_| error(input, "bad fraction"))?;
            part += value * per / scale;
        }
        total = total
            .checked_add(part)
            .ok_or_else(|| error(input, "too long"))?;
    }
    let secs = u64::try_from(total / S).map_err(|_| error(input, "too long"))?;
    Ok(Duration::new(secs, (total % S) as u32))
}

/// [`parse`], in whole milliseconds (rounded down).
pub fn parse_ms(input: &str) -> Result<i64, DurationError> {
    let d = parse(input)?;
    i64::try_from(d.as_millis()).map_err(|_| error(input, "too long"))
}

/// Formats whole seconds the way the JS SDK does (`"1d2h30m"`, `"90s"` → `"1m30s"`); a
/// sub-second remainder is dropped and zero is `"0s"`. Used for the ops Stepdesk emits.
pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Reads an absolute time: RFC 3339 (`2026-11-27T07:58:48.375Z`, `+01:00`), or an ISO time
/// without an offset, taken as UTC (Python's `datetime.isoformat()` of a naive time).
pub fn parse_time_ms(input: &str) -> Option<i64> {
    let s = input.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

/// When a sleep given as `value` (a duration or a time) started at `now_ms` wakes, capped at
/// [`MAX_SLEEP_MS`] from now. A time in the past wakes now; an empty value is a zero sleep
/// (JS serialises a zero duration as `""`).
pub fn wake_at(value: &str, now_ms: i64) -> Result<i64, DurationError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(now_ms);
    }
    let at = if v.chars().count() >= 10 {
        match parse_time_ms(v) {
            Some(at) => at,
            None => now_ms.saturating_add(parse_ms(v)?),
        }
    } else {
        now_ms.saturating_add(parse_ms(v)?)
    };
    Ok(at.clamp(now_ms, now_ms.saturating_add(MAX_SLEEP_MS)))
}

/// Where a `Sleep` op keeps its value: `opts.duration` when present (Go/Rust SDKs), else
/// `name` (JS duration, Python ISO time).
pub fn sleep_value(op: &Op) -> Option<&str> {
    op.opts
        .as_ref()
        .and_then(|o| o.get("duration"))
        .and_then(Value::as_str)
        .or(op.name.as_deref())
}

/// When the `Sleep` op `op`, received at `now_ms`, wakes (ms since the epoch).
pub fn sleep_until(op: &Op, now_ms: i64) -> Result<i64, DurationError> {
    let value =
        sleep_value(op).ok_or_else(|| error("", "the Sleep op has no name or opts.duration"))?;
    wake_at(value, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        parse_ms(s).unwrap()
    }

    #[test]
    fn parses_single_and_compound_durations() {
        assert_eq!(ms("1s"), 1_000);
        assert_eq!(ms("90s"), 90_000);
        assert_eq!(ms("1h30m10s"), 5_410_000);
        assert_eq!(ms("2h30m10s"), 9_010_000);
        assert_eq!(ms("1d"), 86_400_000);
        assert_eq!(ms("1w"), 604_800_000);
        assert_eq!(ms("1w2d"), 9 * 86_400_000);
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("1.5h"), 5_400_000);
        assert_eq!(ms("0"), 0);
        assert_eq!(parse("1500us").unwrap(), Duration::from_micros(1500));
        assert_eq!(parse("1500µs").unwrap(), Duration::from_micros(1500));
        assert_eq!(parse("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse("0.5w").unwrap(), Duration::from_secs(302_400));
        assert_eq!(
            parse("1.123456789012345678901234567w").unwrap().as_secs(),
            679_466
        );
    }

    #[test]
    fn rejects_bad_durations_with_a_reason() {
        for bad in [
            "",
            "h",
            "10",
            "1x",
            "1h30",
            "1..5h",
            "-1h",
            "1 h",
            "99999999999999999999999w",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(!e.reason.is_empty(), "{bad}");
        }
        assert!(parse("1y")
            .unwrap_err()
            .to_string()
            .contains("unknown unit `y`"));
    }

    #[test]
    fn formats_like_the_js_sdk() {
        assert_eq!(format(Duration::from_secs(1)), "1s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(
            format(Duration::from_secs(86_400 + 2 * 3_600 + 30 * 60)),
            "1d2h30m"
        );
        assert_eq!(format(Duration::from_secs(604_800)), "1w");
        assert_eq!(format(Duration::ZERO), "0s");
        for s in [5u64, 61, 3_601, 90_061, 700_000] {
            assert_eq!(parse(&format(Duration::from_secs(s))).unwrap().as_secs(), s);
        }
    }

    #[test]
    fn wake_at_reads_dates_and_durations() {
        let now = 1_795_766_328_375; // 2026-11-27T07:58:48.375Z
        assert_eq!(wake_at("1s", now).unwrap(), now + 1_000);
        assert_eq!(wake_at("", now).unwrap(), now);
        // A long compound duration is tried as a date, then read as a duration.
        assert_eq!(wake_at("1h30m10s5ms", now).unwrap(), now + 5_410_005);
        assert_eq!(
            wake_at("2026-11-27T08:00:00Z", now).unwrap(),
            1_795_766_400_000
        );
        assert_eq!(
            wake_at("2026-11-27T09:00:00+01:00", now).unwrap(),
            1_795_766_400_000
        );
        assert_eq!(
            wake_at("2026-11-27T08:00:00", now).unwrap(),
            1_795_766_400_000
        );
        // In the past: now. Too far: 366 days.
        assert_eq!(wake_at("2020-01-01T00:00:00Z", now).unwrap(), now);
        assert_eq!(wake_at("400d", now).unwrap(), now + MAX_SLEEP_MS);
        assert_eq!(
            wake_at("2099-01-01T00:00:00Z", now).unwrap(),
            now + MAX_SLEEP_MS
        );
        assert!(wake_at("next tuesday", now).is_err());
    }

    fn op_of(capture: &str) -> Op {
        let c: Value = serde_json::from_str(capture).unwrap();
        let body: Value =
            serde_json::from_str(c["response"]["body_raw"].as_str().unwrap()).unwrap();
        serde_json::from_value(body[0].clone()).unwrap()
    }

    #[test]
    fn sleep_until_reads_each_sdks_op() {
        let now = 1_795_766_327_375;
        // JS: the duration in `name`, `opts` empty.
        let js = op_of(include_str!("../tests/fixtures/js/30_sleep_call1.json"));
        assert_eq!(js.name.as_deref(), Some("1s"));
        assert_eq!(sleep_until(&js, now).unwrap(), now + 1_000);
        // Python: an ISO time in `name`, `opts` null.
        let py = op_of(include_str!("../tests/fixtures/py/30_sleep_call1.json"));
        assert_eq!(sleep_until(&py, now).unwrap(), 1_795_766_328_375);
        // Others: `opts.duration` wins over `name` (which then holds the step id).
        let mut other = js.clone();
        other.name = Some("wait".into());
        other.opts = Some(serde_json::json!({"duration": "2m"}));
        assert_eq!(sleep_until(&other, now).unwrap(), now + 120_000);
        other.opts = None;
        other.name = None;
        assert!(sleep_until(&other, now).is_err());
    }
}
