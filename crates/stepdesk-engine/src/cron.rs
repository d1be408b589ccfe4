//! Cron schedules: five-field expressions with an optional `TZ=` (or `CRON_TZ=`) prefix.

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// A parsed cron trigger.
#[derive(Debug, Clone)]
pub struct CronSpec {
    text: String,
    cron: Cron,
    tz: Tz,
}

impl CronSpec {
    pub fn parse(text: &str) -> Result<CronSpec, String> {
        let trimmed = text.trim();
        let (tz, expr) = match trimmed.split_once(char::is_whitespace) {
            Some((first, rest)) if first.starts_with("TZ=") || first.starts_with("CRON_TZ=") => {
                let name = first.split_once('=').map(|(_, n)| n).unwrap_or_default();
                let tz: Tz = name
                    .parse()
                    .map_err(|_| format!("cron `{text}`: unknown time zone `{name}`"))?;
                (tz, rest.trim())
            }
            _ => (Tz::UTC, trimmed),
        };
        if expr.split_whitespace().count() != 5 {
            return Err(format!(
                "cron `{text}`: expected five fields (minute hour day-of-month month day-of-week)"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| format!("cron `{text}`: {e}"))?;
        Ok(CronSpec {
            text: trimmed.to_string(),
            cron,
            tz,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// `ms` in the schedule's time zone, truncated to the second. croner keeps the
    /// sub-second part of its starting point, so without this a scheduled time would carry
    /// the milliseconds of the moment it was computed (and one fire would get a different
    /// `scheduled_at` each time it is computed, breaking exactly-once across restarts).
    fn whole_seconds(&self, ms: i64) -> Option<chrono::DateTime<Tz>> {
        Utc.timestamp_opt(ms.div_euclid(1000), 0)
            .single()
            .map(|t| t.with_timezone(&self.tz))
    }

    /// The first scheduled time strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start = self.whole_seconds(after_ms)?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The last scheduled time at or before `at_ms`.
    pub fn last_at_or_before(&self, at_ms: i64) -> Option<i64> {
        let start = self.whole_seconds(at_ms)?;
        self.cron
            .find_previous_occurrence(&start, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn daily_at_three_utc() {
        let c = CronSpec::parse("0 3 * * *").unwrap();
        assert_eq!(
            c.next_after(ms("2026-01-01T02:59:59Z")),
            Some(ms("2026-01-01T03:00:00Z"))
        );
        assert_eq!(
            c.next_after(ms("2026-01-01T03:00:00Z")),
            Some(ms("2026-01-02T03:00:00Z"))
        );
        assert_eq!(
            c.last_at_or_before(ms("2026-01-05T10:00:00Z")),
            Some(ms("2026-01-05T03:00:00Z"))
        );
        assert_eq!(
            c.last_at_or_before(ms("2026-01-05T03:00:00Z")),
            Some(ms("2026-01-05T03:00:00Z"))
        );
    }

    #[test]
    fn scheduled_times_have_no_milliseconds() {
        let c = CronSpec::parse("* * * * *").unwrap();
        assert_eq!(
            c.next_after(ms("2026-01-01T10:00:59.999Z")),
            Some(ms("2026-01-01T10:01:00Z"))
        );
        assert_eq!(
            c.next_after(ms("2026-01-01T10:01:00.500Z")),
            Some(ms("2026-01-01T10:02:00Z"))
        );
        assert_eq!(
            c.last_at_or_before(ms("2026-01-01T10:00:30.123Z")),
            Some(ms("2026-01-01T10:00:00Z"))
        );
        assert_eq!(
            c.last_at_or_before(ms("2026-01-01T10:00:00.999Z")),
            Some(ms("2026-01-01T10:00:00Z"))
        );
    }

    #[test]
    fn honours_the_time_zone_prefix() {
        let c = CronSpec::parse("TZ=Europe/Paris 0 9 * * *").unwrap();
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(
            c.next_after(ms("2026-01-10T00:00:00Z")),
            Some(ms("2026-01-10T08:00:00Z"))
        );
        assert_eq!(
            c.next_after(ms("2026-07-10T00:00:00Z")),
            Some(ms("2026-07-10T07:00:00Z"))
        );
        let c = CronSpec::parse("CRON_TZ=America/New_York 30 2 * * 1").unwrap();
        assert_eq!(c.time_zone(), chrono_tz::America::New_York);
    }

    #[test]
    fn rejects_bad_expressions() {
        for bad in [
            "",
            "* * * *",
            "0 0 0 * * *",
            "61 * * * *",
            "TZ=Mars/Base 0 3 * * *",
        ] {
            assert!(CronSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
