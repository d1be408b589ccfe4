//! What the console asks of the engine beyond the lists: function statistics, cron fires
//! ("Run now", "Replay").

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::admin::{AdminApi, AdminError, AdminResult, Started};
use crate::cron::CronSpec;
use crate::ingest::new_id;
use crate::model::RunStatus;
use crate::scheduler::{create_cron_run, CronRun};
use crate::store::{crons, runs, StoreError};
use crate::time::{now_ms, to_rfc3339};

const HOUR_MS: i64 = 3_600_000;

/// Runs counted by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct StatusCounts {
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl StatusCounts {
    fn merge(&mut self, other: &StatusCounts) {
        self.running += other.running;
        self.completed += other.completed;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
    }

    fn add(&mut self, status: RunStatus) {
        match status {
            RunStatus::Running => self.running += 1,
            RunStatus::Completed => self.completed += 1,
            RunStatus::Failed => self.failed += 1,
            RunStatus::Cancelled => self.cancelled += 1,
        }
    }
}

/// One bar of a statistics chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct StatsBucket {
    /// Start of the bucket (ms since the epoch); it lasts [`StatsWindow::bucket_ms`].
    pub start: i64,
    pub counts: StatusCounts,
    /// 95th percentile duration of the runs that finished in the bucket.
    pub p95_ms: Option<i64>,
}

/// A function's runs over a time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct StatsWindow {
    pub from: i64,
    pub to: i64,
    /// Finished runs by the time they ended; running runs by the time they were queued.
    pub counts: StatusCounts,
    /// Durations (start to end; queued to end for a run cancelled before it started) of
    /// the runs that finished in the window.
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub bucket_ms: i64,
    /// The window cut into buckets, oldest first.
    pub series: Vec<StatsBucket>,
}

/// A function's statistics for its page: the last 24 hours (hourly) and 7 days (6-hourly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct FunctionStats {
    pub function_id: String,
    /// Where the function comes from: absent for Stepdesk's own functions, else the source
    /// that synced it (an SDK app's id). An archived function keeps its statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub source: Option<String>,
    pub day: StatsWindow,
    pub week: StatsWindow,
}

/// Who asked for a cron fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub enum CronFireSource {
    /// The scheduler, at (or after, when `late`) its scheduled time.
    Schedule,
    /// "Run now" from the console.
    RunNow,
    /// "Replay" of a past scheduled time from the console.
    Replay,
}

/// One fire of a function's cron.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct CronFire {
    pub scheduled_at: i64,
    pub fired_at: i64,
    /// Fired more than a minute after its time (missed while Stepdesk was closed).
    pub late: bool,
    pub run_id: String,
    pub source: CronFireSource,
}

/// Most cron fires [`AdminApi::cron_fires`] returns.
pub const CRON_FIRES_MAX: u32 = 500;

/// The `p`-th percentile (0..=100) of the values, nearest rank (reorders them).
fn percentile(values: &mut [i64], p: u32) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let rank = (values.len() * p as usize).div_ceil(100).max(1);
    Some(*values.select_nth_unstable(rank - 1).1)
}

/// A function's runs that ended in one hour: counts by status and the durations.
#[derive(Debug, Default)]
struct HourStats {
    counts: StatusCounts,
    durations: Vec<i64>,
}

/// Hours that are over stay as they were: a run's `ended_at` is the time it ended, so no
/// run ends in a past hour later. Their statistics are kept here (per function, for the
/// last week), and [`AdminApi::function_stats`] reads from the index only the hours it
/// does not have yet, which after the first call is the current hour or two. Without it,
/// a week of a function with tens of thousands of runs is 20+ ms of index reading on every
/// refresh of its page.
#[derive(Default)]
pub(crate) struct StatsCache {
    hours: Mutex<HashMap<String, BTreeMap<i64, Arc<HourStats>>>>,
}

/// An hour counts as over this long after its end (a run that ended in it may still be
/// committing).
const SETTLED_MS: i64 = 60_000;

fn floor_to(t: i64, unit: i64) -> i64 {
    t.div_euclid(unit) * unit
}

/// A function's statistics: past hours from `cache`, the others read from the index.
fn read_stats(
    c: &Connection,
    cache: &StatsCache,
    function_id: &str,
    now: i64,
) -> Result<FunctionStats, StoreError> {
    const SIX_HOURS: i64 = 6 * HOUR_MS;
    // Windows aligned to whole buckets: the last of each is the current, partial one.
    let day_from = floor_to(now, HOUR_MS) - 23 * HOUR_MS;
    let week_from = floor_to(now, SIX_HOURS) - 27 * SIX_HOURS;
    let first_hour = week_from.min(day_from);
    let current_hour = floor_to(now, HOUR_MS);
    let mut hours: BTreeMap<i64, Arc<HourStats>> = BTreeMap::new();
    {
        let mut cached = cache.hours.lock().expect("stats cache lock");
        let kept = cached.entry(function_id.to_string()).or_default();
        kept.retain(|&h, _| h >= first_hour);
        hours.extend(kept.iter().map(|(h, s)| (*h, s.clone())));
    }
    // Read from the first hour missing on.
    let mut scan_from = first_hour;
    while scan_from <= current_hour && hours.contains_key(&scan_from) {
        scan_from += HOUR_MS;
    }
    let mut fresh: BTreeMap<i64, HourStats> = BTreeMap::new();
    for (ended, status, duration) in runs::ended_between(c, function_id, scan_from, now)? {
        let h = fresh.entry(floor_to(ended, HOUR_MS)).or_default();
        h.counts.add(status);
        h.durations.push(duration);
    }
    {
        let mut cached = cache.hours.lock().expect("stats cache lock");
        let kept = cached.entry(function_id.to_string()).or_default();
        let mut hour = scan_from;
        while hour <= current_hour {
            let stats = Arc::new(fresh.remove(&hour).unwrap_or_default());
            if hour + HOUR_MS + SETTLED_MS <= now {
                kept.insert(hour, stats.clone());
            }
            hours.insert(hour, stats);
            hour += HOUR_MS;
        }
    }
    // Running runs by the time they were queued.
    let running = runs::running_queued_since(c, function_id, first_hour)?;
    let window = |from: i64, bucket_ms: i64| {
        let buckets = ((now - from) / bucket_ms + 1) as usize;
        let mut counts = StatusCounts::default();
        let mut all = Vec::new();
        let mut series: Vec<StatsBucket> = (0..buckets)
            .map(|i| StatsBucket {
                start: from + i as i64 * bucket_ms,
                counts: StatusCounts::default(),
                p95_ms: None,
            })
            .collect();
        for (i, bucket) in series.iter_mut().enumerate() {
            let start = from + i as i64 * bucket_ms;
            let mut durations = Vec::new();
            for (_, h) in hours.range(start..start + bucket_ms) {
                bucket.counts.merge(&h.counts);
                durations.extend_from_slice(&h.durations);
            }
            counts.merge(&bucket.counts);
            bucket.p95_ms = percentile(&mut durations, 95);
            all.extend(durations);
        }
        let slot = |at: i64| (((at - from) / bucket_ms) as usize).min(buckets - 1);
        for &queued in running.iter().filter(|&&q| q >= from && q <= now) {
            counts.running += 1;
            series[slot(queued)].counts.running += 1;
        }
        StatsWindow {
            from,
            to: now,
            counts,
            p50_ms: percentile(&mut all, 50),
            p95_ms: percentile(&mut all, 95),
            bucket_ms,
            series,
        }
    };
    Ok(FunctionStats {
        function_id: function_id.to_string(),
        source: None,
        day: window(day_from, HOUR_MS),
        week: window(week_from, SIX_HOURS),
    })
}

impl AdminApi {
    /// A function's run counts by status, p50/p95 durations and a chart series, over the
    /// last 24 hours (hourly buckets) and 7 days (6-hourly).
    pub async fn function_stats(&self, function_id: &str) -> AdminResult<FunctionStats> {
        let source = self.known_function(function_id)?;
        let id = function_id.to_string();
        let engine = self.engine.clone();
        let stats = self
            .engine
            .inner
            .store
            .read(move |c| read_stats(c, &engine.inner.stats, &id, now_ms()))
            .await?;
        Ok(FunctionStats { source, ..stats })
    }

    /// A registered or archived function's source (archived ones keep their history).
    fn known_function(&self, function_id: &str) -> AdminResult<Option<String>> {
        let registry = self.engine.inner.registry();
        match (registry.get(function_id), registry.archived(function_id)) {
            (Some(f), _) => Ok(f.source.clone()),
            (None, Some(a)) => Ok(a.source.clone()),
            (None, None) => Err(AdminError::NotFound(format!("no function `{function_id}`"))),
        }
    }

    fn cron_of(&self, function_id: &str) -> AdminResult<Vec<CronSpec>> {
        let registry = self.engine.inner.registry();
        let Some(f) = registry.get(function_id) else {
            return Err(AdminError::NotFound(match registry.archived(function_id) {
                Some(_) => registry.missing(function_id),
                None => format!("no function `{function_id}`"),
            }));
        };
        let crons: Vec<CronSpec> = f.crons().cloned().collect();
        if crons.is_empty() {
            return Err(AdminError::BadRequest(format!(
                "function `{function_id}` has no cron trigger"
            )));
        }
        Ok(crons)
    }

    /// A cron function's latest fires, newest first: the scheduler's and those asked for by
    /// hand. `limit`: 1 to [`CRON_FIRES_MAX`].
    pub async fn cron_fires(&self, function_id: &str, limit: u32) -> AdminResult<Vec<CronFire>> {
        self.cron_of(function_id)?;
        if !(1..=CRON_FIRES_MAX).contains(&limit) {
            return Err(AdminError::BadRequest(format!(
                "`limit` must be between 1 and {CRON_FIRES_MAX}, not {limit}"
            )));
        }
        let id = function_id.to_string();
        Ok(self
            .engine
            .inner
            .store
            .read(move |c| {
                Ok(crons::latest(c, &id, limit)?
                    .into_iter()
                    .map(|(scheduled_at, fired_at, late, run_id, kind)| CronFire {
                        scheduled_at,
                        fired_at,
                        late,
                        run_id,
                        source: match kind.as_str() {
                            "run_now" => CronFireSource::RunNow,
                            "replay" => CronFireSource::Replay,
                            _ => CronFireSource::Schedule,
                        },
                    })
                    .collect())
            })
            .await?)
    }

    /// Fires a cron function by hand: with no time, "Run now" (a fire for now, not late);
    /// with a past scheduled time of its cron, "Replay" (a new run for that time, even if
    /// it already fired). Neither takes the scheduler's once-per-time record, so the
    /// scheduler still fires each time exactly once.
    pub async fn run_cron(
        &self,
        function_id: &str,
        scheduled_at: Option<i64>,
    ) -> AdminResult<Started> {
        let crons = self.cron_of(function_id)?;
        let now = now_ms();
        let (spec, at, kind) = match scheduled_at {
            None => (crons[0].clone(), now, "run_now"),
            Some(t) if t > now => {
                return Err(AdminError::BadRequest(format!(
                    "{} is in the future: only a past scheduled time can be replayed",
                    to_rfc3339(t)
                )))
            }
            Some(t) => match crons.iter().find(|c| c.last_at_or_before(t) == Some(t)) {
                Some(spec) => (spec.clone(), t, "replay"),
                None => {
                    return Err(AdminError::BadRequest(format!(
                        "{} is not a scheduled time of `{}`",
                        to_rfc3339(t),
                        crons
                            .iter()
                            .map(|c| c.text().to_string())
                            .collect::<Vec<_>>()
                            .join("`, `")
                    )))
                }
            },
        };
        let function_id = function_id.to_string();
        let cancel = self
            .engine
            .inner
            .registry()
            .get(&function_id)
            .map(|f| f.cancel.clone())
            .unwrap_or_default();
        let started = self
            .engine
            .write_and_wake(move |c| {
                let now = now_ms();
                let run_id = new_id();
                let run = CronRun {
                    function_id: &function_id,
                    spec: &spec,
                    scheduled_at: at,
                    now,
                    late: false,
                    // Unique, so the sender-id dedupe never takes a replay for a repeat.
                    event_id: format!("{function_id}@{}#{kind}-{run_id}", to_rfc3339(at)),
                    manual: Some(kind),
                    cancel: &cancel,
                };
                create_cron_run(c, &run, &run_id)?;
                crons::record_manual(c, &run_id, &function_id, at, now, kind)?;
                let event_id = runs::event_id(c, &run_id)?.unwrap_or_default();
                Ok((
                    Started {
                        run_id: run_id.clone(),
                        event_id,
                    },
                    vec![(run_id, now)],
                ))
            })
            .await?;
        Ok(started)
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        assert_eq!(percentile(&mut [], 50), None);
        assert_eq!(percentile(&mut [7], 95), Some(7));
        let mut v: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 50), Some(50));
        assert_eq!(percentile(&mut v, 95), Some(95));
        assert_eq!(percentile(&mut [3, 1, 2], 50), Some(2));
    }
}
