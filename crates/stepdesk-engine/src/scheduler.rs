//! The cron scheduler. Each (function, scheduled time) fires at most once, ever: the fire
//! is recorded in `cron_fires` in the same transaction that creates its run. A fire missed
//! while Stepdesk was closed runs once at start-up, marked late with its scheduled time.
//!
//! Scheduled times are wall-clock times, but a sleep runs on the monotonic clock, which
//! stands still while the machine is suspended: one long sleep until 03:00 on a laptop that
//! sleeps through 03:00 would end hours late. So the scheduler sleeps at most a minute at a
//! time and works out from the wall clock what is due each time it wakes. A fire whose
//! write fails is retried, with a backoff, until it is recorded.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::cron::CronSpec;
use crate::event::{internal, NewEvent};
use crate::function::BoxFuture;
use crate::function::{CancelRule, Function};
use crate::ingest::{add_cancel_rules, insert_event, new_id, NewRun, Wake};
use crate::model::TriggerKind;
use crate::store::{crons, StoreResult};
use crate::time::{now_ms, to_rfc3339};
use crate::EngineInner;

/// A fire that is this much past its time counts as late.
const LATE_AFTER_MS: i64 = 60_000;
/// The longest single sleep: the wall clock is read again at least this often, so a fire
/// comes at most this late after a suspend or a change of the system clock.
const SLICE_MS: i64 = 60_000;
/// Backoff between attempts of a fire (or a start-up read) whose write failed: doubling
/// from the first to the last.
const RETRY_FIRST_MS: i64 = 1_000;
const RETRY_MAX_MS: i64 = 60_000;

/// The wall clock and the timer the scheduler uses: the system's, or a test's.
pub(crate) trait Clock: Send + Sync + 'static {
    /// Now by the wall clock, in ms since the epoch.
    fn now_ms(&self) -> i64;
    /// Sleeps for `d` of monotonic time (which stands still while the machine sleeps).
    fn sleep(&self, d: Duration) -> BoxFuture<()>;
}

struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(d))
    }
}

fn retry_delay_ms(attempts: u32) -> i64 {
    RETRY_FIRST_MS
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(RETRY_MAX_MS)
}

struct Schedule {
    function_id: String,
    spec: CronSpec,
    /// The next scheduled time that has not come due yet.
    next: Option<i64>,
    /// A scheduled time that came due and is not recorded yet.
    owed: Option<Owed>,
}

struct Owed {
    scheduled_at: i64,
    /// Missed while Stepdesk was closed: late whenever it fires.
    missed: bool,
    /// When to (re)try, by the wall clock.
    try_at: i64,
    /// Failed attempts so far.
    failures: u32,
}

/// The last fire owed before now, if any, given the stored state. Creates the state on
/// first sight (no backfill before a cron was first known).
fn startup_state(
    conn: &Connection,
    function_id: &str,
    spec: &CronSpec,
    now: i64,
) -> StoreResult<i64> {
    let anchor = match crons::state(conn, function_id)? {
        Some((cron, anchor)) if cron == spec.text() => anchor,
        _ => {
            crons::set_state(conn, function_id, spec.text(), now)?;
            now
        }
    };
    let last_fire = crons::last_fire(conn, function_id)?;
    Ok(last_fire.map_or(anchor, |f| f.max(anchor)))
}

/// Records a fire and creates its run, unless that fire already happened.
pub(crate) fn fire(
    conn: &Connection,
    function: &Function,
    spec: &CronSpec,
    scheduled_at: i64,
    now: i64,
    late: bool,
    wakes: &mut Vec<Wake>,
) -> StoreResult<Option<String>> {
    let function_id = function.id.as_str();
    let run_id = new_id();
    let inserted = crons::record_fire(conn, function_id, scheduled_at, &run_id, now, late)?;
    if !inserted {
        return Ok(None);
    }
    let event_id = format!("{function_id}@{}", to_rfc3339(scheduled_at));
    let run = CronRun {
        function_id,
        spec,
        scheduled_at,
        now,
        late,
        event_id,
        manual: None,
        cancel: &function.cancel,
    };
    create_cron_run(conn, &run, &run_id)?;
    wakes.push((run_id.clone(), now));
    Ok(Some(run_id))
}

/// A cron run to create.
pub(crate) struct CronRun<'a> {
    pub function_id: &'a str,
    pub spec: &'a CronSpec,
    pub scheduled_at: i64,
    pub now: i64,
    pub late: bool,
    /// The `inngest/scheduled.timer` event's own id.
    pub event_id: String,
    /// For a fire asked for by hand: `run_now` or `replay` (in the event's data).
    pub manual: Option<&'static str>,
    /// The function's cancellation rules.
    pub cancel: &'a [CancelRule],
}

/// Stores a cron's `inngest/scheduled.timer` event and creates its run (runnable now).
pub(crate) fn create_cron_run(conn: &Connection, c: &CronRun<'_>, run_id: &str) -> StoreResult<()> {
    let mut data = Map::new();
    data.insert("cron".into(), Value::String(c.spec.text().to_string()));
    data.insert(
        "scheduledAt".into(),
        Value::String(to_rfc3339(c.scheduled_at)),
    );
    data.insert("fireAt".into(), Value::String(to_rfc3339(c.now)));
    data.insert("late".into(), Value::Bool(c.late));
    if let Some(manual) = c.manual {
        data.insert("manual".into(), Value::String(manual.into()));
    }
    let mut event = NewEvent::internal(internal::SCHEDULED_TIMER, data);
    event.id = Some(c.event_id.clone());
    let (event_internal_id, _, event_json) = insert_event(conn, event, c.now)?;
    let run = NewRun {
        function_id: c.function_id,
        trigger_kind: TriggerKind::Cron,
        event_internal_id: &event_internal_id,
        event_name: internal::SCHEDULED_TIMER,
        now: c.now,
        cron_scheduled_at: Some(c.scheduled_at),
        late: c.late,
        parent: None,
        rerun_of: None,
        runnable: true,
        not_before: None,
    };
    crate::store::runs::insert(conn, &run, run_id)?;
    add_cancel_rules(conn, c.cancel, &event_json, run_id, c.now)
}

/// Fires one scheduled time. `Err` if the fire could not be written (it is to be retried);
/// `Ok` once it is recorded, now or before.
async fn fire_and_wake(
    engine: &Arc<EngineInner>,
    function_id: &str,
    spec: &CronSpec,
    scheduled_at: i64,
    now: i64,
    late: bool,
) -> Result<(), ()> {
    let Some(f) = engine.registry().get(function_id).cloned() else {
        // Archived by a sync since the schedules were made: the scheduler drops the
        // schedule when it sees the change.
        tracing::debug!(function = %function_id, "cron of a function no longer registered; not fired");
        return Ok(());
    };
    let s = spec.clone();
    let result = engine
        .store
        .write(move |c| {
            let mut wakes = Vec::new();
            let run = fire(c, &f, &s, scheduled_at, now, late, &mut wakes)?;
            Ok((run, wakes))
        })
        .await;
    match result {
        Ok((Some(run_id), wakes)) => {
            tracing::info!(function = %function_id, scheduled_at = %to_rfc3339(scheduled_at), late, run_id = %run_id, "cron fired");
            engine.dispatcher.wake_all(wakes);
            Ok(())
        }
        Ok((None, _)) => {
            tracing::debug!(function = %function_id, "cron fire already recorded");
            Ok(())
        }
        Err(e) => {
            tracing::error!(function = %function_id, scheduled_at = %to_rfc3339(scheduled_at), error = %e, "cron fire failed; will retry");
            Err(())
        }
    }
}

/// Runs the cron schedules until shutdown.
pub(crate) async fn run(engine: Arc<EngineInner>, shutdown: watch::Receiver<bool>) {
    run_with(engine, shutdown, Arc::new(SystemClock)).await
}

/// The crons of a registry: (function id, spec), in registry order.
fn crons_of(registry: &crate::Registry) -> Vec<(String, CronSpec)> {
    registry
        .all()
        .iter()
        .flat_map(|f| f.crons().map(|spec| (f.id.clone(), spec.clone())))
        .collect()
}

/// How a schedule starts.
#[derive(Clone, Copy, PartialEq)]
enum Start {
    /// At start-up: one late fire for what was missed while Stepdesk was closed.
    Boot,
    /// Added by a sync while running: nothing is owed from before, even if the same cron
    /// was known once (its function was archived meanwhile, or had another cron).
    Added,
}

/// Starts a schedule: reads (or, for [`Start::Added`], resets) its stored state, retrying
/// until that works. `None` if the engine shuts down meanwhile.
async fn start_schedule(
    engine: &Arc<EngineInner>,
    clock: &Arc<dyn Clock>,
    shutdown: &mut watch::Receiver<bool>,
    function_id: String,
    spec: CronSpec,
    how: Start,
) -> Option<Schedule> {
    let mut failures = 0;
    let last = loop {
        let now = clock.now_ms();
        let (f, sp) = (function_id.clone(), spec.clone());
        let read = engine
            .store
            .write(move |c| match how {
                Start::Boot => startup_state(c, &f, &sp, now),
                Start::Added => {
                    crons::set_state(c, &f, sp.text(), now)?;
                    Ok(now)
                }
            })
            .await;
        match read {
            Ok(last) => break last,
            Err(e) => {
                failures += 1;
                tracing::error!(function = %function_id, error = %e, "cannot read the cron state; will retry");
                let wait = Duration::from_millis(retry_delay_ms(failures) as u64);
                tokio::select! {
                    _ = clock.sleep(wait) => {}
                    _ = shutdown.changed() => return None,
                }
            }
        }
    };
    let now = clock.now_ms();
    let owed = spec
        .last_at_or_before(now)
        .filter(|&t| t > last)
        .map(|missed| Owed {
            scheduled_at: missed,
            missed: true,
            try_at: now,
            failures: 0,
        });
    let next = spec.next_after(now);
    Some(Schedule {
        function_id,
        spec,
        next,
        owed,
    })
}

/// Brings the schedules in line with the registry after a sync: a cron still there keeps
/// its schedule as it is (so it neither fires twice nor skips a fire), a new one starts
/// with nothing owed, a removed one stops. `false` if the engine shuts down meanwhile.
async fn reschedule(
    engine: &Arc<EngineInner>,
    clock: &Arc<dyn Clock>,
    shutdown: &mut watch::Receiver<bool>,
    schedules: &mut Vec<Schedule>,
) -> bool {
    let wanted = crons_of(&engine.registry());
    let mut old = std::mem::take(schedules);
    for (function_id, spec) in wanted {
        let kept = old
            .iter()
            .position(|s| s.function_id == function_id && s.spec.text() == spec.text());
        match kept {
            Some(i) => schedules.push(old.swap_remove(i)),
            None => {
                tracing::info!(function = %function_id, cron = %spec.text(), "cron scheduled");
                match start_schedule(engine, clock, shutdown, function_id, spec, Start::Added).await
                {
                    Some(s) => schedules.push(s),
                    None => return false,
                }
            }
        }
    }
    for s in old {
        tracing::info!(function = %s.function_id, cron = %s.spec.text(), "cron unscheduled");
    }
    true
}

async fn run_with(
    engine: Arc<EngineInner>,
    mut shutdown: watch::Receiver<bool>,
    clock: Arc<dyn Clock>,
) {
    // Subscribed before the registry is read, so no sync is missed.
    let mut changes = engine.registry_changed.subscribe();
    changes.borrow_and_update();
    let mut schedules: Vec<Schedule> = Vec::new();
    // Catch up: at most one late fire per schedule for what was missed while closed.
    for (function_id, spec) in crons_of(&engine.registry()) {
        match start_schedule(
            &engine,
            &clock,
            &mut shutdown,
            function_id,
            spec,
            Start::Boot,
        )
        .await
        {
            Some(s) => schedules.push(s),
            None => return,
        }
    }
    loop {
        let now = clock.now_ms();
        for s in &mut schedules {
            if let Some(next) = s.next.filter(|&t| t <= now) {
                // Due by the wall clock. After a suspend several times may have passed:
                // one fire, for the last of them (as at start-up), which also takes the
                // place of an earlier fire still owed.
                let at = s.spec.last_at_or_before(now).unwrap_or(next).max(next);
                s.owed = Some(Owed {
                    scheduled_at: at,
                    missed: false,
                    try_at: now,
                    failures: 0,
                });
                s.next = s.spec.next_after(now);
            }
            // A retry time far ahead means the clock went back: try now.
            let Some(owed) = s
                .owed
                .as_mut()
                .filter(|o| o.try_at <= now || o.try_at > now + RETRY_MAX_MS)
            else {
                continue;
            };
            let late = owed.missed || now - owed.scheduled_at > LATE_AFTER_MS;
            match fire_and_wake(
                &engine,
                &s.function_id,
                &s.spec,
                owed.scheduled_at,
                now,
                late,
            )
            .await
            {
                Ok(()) => s.owed = None,
                Err(()) => {
                    owed.failures += 1;
                    owed.try_at = clock.now_ms() + retry_delay_ms(owed.failures);
                }
            }
        }
        let wake = schedules
            .iter()
            .flat_map(|s| [s.next, s.owed.as_ref().map(|o| o.try_at)])
            .flatten()
            .min();
        // With no cron, nothing to sleep for: only a sync (or the shutdown) wakes it.
        let sleep = match wake {
            Some(wake) => {
                let wait = (wake - clock.now_ms()).clamp(0, SLICE_MS) as u64;
                clock.sleep(Duration::from_millis(wait))
            }
            None => Box::pin(std::future::pending()),
        };
        tokio::select! {
            _ = sleep => {}
            _ = shutdown.changed() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                changes.borrow_and_update();
                if !reschedule(&engine, &clock, &mut shutdown, &mut schedules).await {
                    return;
                }
            }
        }
    }
}

/// The next time each cron of a function fires (for the functions list).
pub fn next_fire(spec: &CronSpec) -> Option<i64> {
    spec.next_after(now_ms())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::executor::Dispatcher;
    use crate::store::{Durability, Store};
    use crate::{EngineConfig, Function, Registry};

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    type SleepRequest = (Duration, oneshot::Sender<i64>);

    /// A wall clock the test sets, and a timer that hands each sleep to the test: the test
    /// sees how long the scheduler asked to sleep and says what the wall clock reads when
    /// it wakes (which may be much later than the sleep, as after a suspend).
    struct TestClock {
        now: Arc<AtomicI64>,
        sleeps: mpsc::UnboundedSender<SleepRequest>,
    }

    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.now.load(Ordering::SeqCst)
        }

        fn sleep(&self, d: Duration) -> BoxFuture<()> {
            let (wake, woken) = oneshot::channel();
            let _ = self.sleeps.send((d, wake));
            let now = self.now.clone();
            Box::pin(async move {
                match woken.await {
                    Ok(t) => now.store(t, Ordering::SeqCst),
                    // The test is over.
                    Err(_) => std::future::pending().await,
                }
            })
        }
    }

    struct Harness {
        engine: Arc<EngineInner>,
        sleeps: mpsc::UnboundedReceiver<SleepRequest>,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        /// A scheduler with one daily cron at 03:00 UTC, on a new database, started with
        /// the wall clock at `start`.
        async fn start(start: &str) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            // Writes fail fast when the database is locked.
            let store = Store::open_with_busy_timeout(
                &dir.path().join("s.db"),
                Durability::Normal,
                Duration::from_millis(50),
            )
            .unwrap();
            let nightly = Function::builder("nightly")
                .on_cron("0 3 * * *")
                .handler(|_ctx| async move { Ok(serde_json::json!(null)) })
                .unwrap();
            let engine = Arc::new(EngineInner::new(
                store,
                Arc::new(Registry::new(vec![nightly]).unwrap()),
                Arc::new(Dispatcher::default()),
                EngineConfig::new(dir.path()),
                Vec::new(),
                0,
                false,
            ));
            let (tx, sleeps) = mpsc::unbounded_channel();
            let clock = Arc::new(TestClock {
                now: Arc::new(AtomicI64::new(ms(start))),
                sleeps: tx,
            });
            let task = tokio::spawn(run_with(engine.clone(), engine.shutdown.subscribe(), clock));
            Harness {
                engine,
                sleeps,
                task,
                _dir: dir,
            }
        }

        /// The scheduler's next sleep: it has done everything that was due.
        async fn next_sleep(&mut self) -> SleepRequest {
            tokio::time::timeout(Duration::from_secs(15), self.sleeps.recv())
                .await
                .expect("the scheduler sleeps again within 15 s")
                .expect("the scheduler is running")
        }

        /// (scheduled_at, late) of every recorded fire, and the number of runs.
        async fn fires(&self) -> (Vec<(i64, bool)>, i64) {
            self.engine
                .store
                .read(|c| {
                    let mut stmt = c.prepare(
                        "SELECT scheduled_at, late FROM cron_fires ORDER BY scheduled_at",
                    )?;
                    let fires = stmt
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<Result<Vec<_>, _>>()?;
                    let runs = c.query_row(
                        "SELECT count(*) FROM runs WHERE cron_scheduled_at IS NOT NULL",
                        [],
                        |r| r.get(0),
                    )?;
                    Ok((fires, runs))
                })
                .await
                .unwrap()
        }

        async fn stop(self) {
            let _ = self.engine.shutdown.send(true);
            tokio::time::timeout(Duration::from_secs(15), self.task)
                .await
                .expect("the scheduler stops")
                .unwrap();
            self.engine.store.close();
        }
    }

    #[tokio::test]
    async fn a_fire_is_found_by_the_wall_clock_after_a_suspend() {
        let mut h = Harness::start("2026-01-01T02:00:00Z").await;
        // The fire is an hour away, but the scheduler sleeps a minute at most.
        let (d, wake) = h.next_sleep().await;
        assert_eq!(d, Duration::from_secs(60));
        // The machine is suspended during that minute and wakes at 09:01: the monotonic
        // clock moved a minute, the wall clock seven hours.
        wake.send(ms("2026-01-01T09:01:00Z")).unwrap();
        let (d, wake) = h.next_sleep().await;
        assert!(d <= Duration::from_secs(60), "{d:?}");
        assert_eq!(
            h.fires().await,
            (vec![(ms("2026-01-01T03:00:00Z"), true)], 1),
            "03:00 fired on waking, marked late"
        );
        // And only once.
        wake.send(ms("2026-01-01T09:02:00Z")).unwrap();
        let (_, _wake) = h.next_sleep().await;
        assert_eq!(h.fires().await.0.len(), 1);
        h.stop().await;
    }

    #[tokio::test]
    async fn a_fire_whose_write_fails_is_retried_until_it_is_recorded_once() {
        let mut h = Harness::start("2026-01-01T02:59:30Z").await;
        let (d, wake) = h.next_sleep().await;
        assert_eq!(d, Duration::from_secs(30));
        // Another process holds the write lock at 03:00: the fire's write fails.
        let other = rusqlite::Connection::open(h.engine.store.path()).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        wake.send(ms("2026-01-01T03:00:00Z")).unwrap();
        let (d, wake) = h.next_sleep().await;
        assert_eq!(d, Duration::from_secs(1), "retried after a second");
        assert_eq!(h.fires().await, (vec![], 0));
        // Still locked: the next retry backs off.
        wake.send(ms("2026-01-01T03:00:01Z")).unwrap();
        let (d, wake) = h.next_sleep().await;
        assert_eq!(d, Duration::from_secs(2), "then after two");
        assert_eq!(h.fires().await, (vec![], 0));
        // The lock is released: the retry records the fire, once.
        other.execute_batch("ROLLBACK").unwrap();
        wake.send(ms("2026-01-01T03:00:03Z")).unwrap();
        let (d, wake) = h.next_sleep().await;
        assert_eq!(d, Duration::from_secs(60), "nothing is owed any more");
        assert_eq!(
            h.fires().await,
            (vec![(ms("2026-01-01T03:00:00Z"), false)], 1)
        );
        wake.send(ms("2026-01-01T03:01:03Z")).unwrap();
        let (_, _wake) = h.next_sleep().await;
        assert_eq!(h.fires().await.0.len(), 1);
        h.stop().await;
    }

    impl Harness {
        /// Scheduled times fired for one function.
        async fn fires_of(&self, function_id: &str) -> Vec<i64> {
            let id = function_id.to_string();
            self.engine
                .store
                .read(move |c| {
                    let mut stmt = c.prepare(
                        "SELECT scheduled_at FROM cron_fires WHERE function_id = ?1 ORDER BY scheduled_at",
                    )?;
                    let fires = stmt
                        .query_map([id], |r| r.get(0))?
                        .collect::<Result<Vec<i64>, _>>()?;
                    Ok(fires)
                })
                .await
                .unwrap()
        }

        async fn anchor_of(&self, function_id: &str) -> Option<i64> {
            let id = function_id.to_string();
            self.engine
                .store
                .read(move |c| Ok(crons::state(c, &id)?.map(|(_, anchor)| anchor)))
                .await
                .unwrap()
        }

        async fn sync(&self, functions: Vec<Function>) -> crate::SyncReport {
            crate::Engine {
                inner: self.engine.clone(),
            }
            .sync_functions("app", functions)
            .await
            .unwrap()
        }
    }

    fn cron_fn(id: &str, cron: &str) -> Function {
        Function::builder(id)
            .on_cron(cron)
            .handler(|_ctx| async move { Ok(serde_json::json!(null)) })
            .unwrap()
    }

    #[tokio::test]
    async fn crons_follow_syncs_without_double_fires() {
        let mut h = Harness::start("2026-01-01T02:59:00Z").await;
        let (d, stale) = h.next_sleep().await;
        assert_eq!(d, Duration::from_secs(60), "the nightly cron at 03:00");
        // A sync adds a cron every five minutes: the scheduler wakes and reschedules.
        let report = h.sync(vec![cron_fn("app-five", "*/5 * * * *")]).await;
        assert_eq!(report.added, ["app-five"]);
        drop(stale);
        let (d, wake) = h.next_sleep().await;
        assert_eq!(d, Duration::from_secs(60));
        assert_eq!(
            h.anchor_of("app-five").await,
            Some(ms("2026-01-01T02:59:00Z")),
            "nothing is owed from before the sync"
        );
        wake.send(ms("2026-01-01T03:00:00Z")).unwrap();
        let (_, wake) = h.next_sleep().await;
        assert_eq!(h.fires_of("app-five").await, [ms("2026-01-01T03:00:00Z")]);
        assert_eq!(h.fires_of("nightly").await, [ms("2026-01-01T03:00:00Z")]);

        // A resync with the same cron keeps its schedule as it was.
        wake.send(ms("2026-01-01T03:02:30Z")).unwrap();
        let (_, stale) = h.next_sleep().await;
        let report = h.sync(vec![cron_fn("app-five", "*/5 * * * *")]).await;
        assert!(!report.changed, "{report:?}");
        drop(stale);
        let (d, wake) = h.next_sleep().await;
        assert_eq!(d, Duration::from_secs(60));
        assert_eq!(
            h.anchor_of("app-five").await,
            Some(ms("2026-01-01T02:59:00Z")),
            "the unchanged cron was not started again"
        );
        wake.send(ms("2026-01-01T03:05:00Z")).unwrap();
        let (_, stale) = h.next_sleep().await;
        assert_eq!(
            h.fires_of("app-five").await,
            [ms("2026-01-01T03:00:00Z"), ms("2026-01-01T03:05:00Z")],
            "each time fired once"
        );

        // Another cron for the function: the old one stops, the new one fires.
        let report = h.sync(vec![cron_fn("app-five", "7 * * * *")]).await;
        assert_eq!(report.updated, ["app-five"]);
        drop(stale);
        let (d, wake) = h.next_sleep().await;
        assert_eq!(d, Duration::from_secs(60), "03:07 is two minutes away");
        wake.send(ms("2026-01-01T03:06:00Z")).unwrap();
        let (d, wake) = h.next_sleep().await;
        assert_eq!(d, Duration::from_secs(60));
        wake.send(ms("2026-01-01T03:07:00Z")).unwrap();
        let (_, wake) = h.next_sleep().await;
        wake.send(ms("2026-01-01T03:10:00Z")).unwrap();
        let (_, stale) = h.next_sleep().await;
        assert_eq!(
            h.fires_of("app-five").await,
            [
                ms("2026-01-01T03:00:00Z"),
                ms("2026-01-01T03:05:00Z"),
                ms("2026-01-01T03:07:00Z"),
            ],
            "03:10 belonged to the old cron"
        );

        // The function is archived: its cron stops; the other cron goes on.
        let report = h.sync(vec![]).await;
        assert_eq!(report.archived, ["app-five"]);
        drop(stale);
        let (_, wake) = h.next_sleep().await;
        wake.send(ms("2026-01-01T04:07:00Z")).unwrap();
        let (_, wake) = h.next_sleep().await;
        wake.send(ms("2026-01-02T03:00:00Z")).unwrap();
        let (_, _wake) = h.next_sleep().await;
        assert_eq!(
            h.fires_of("app-five").await.len(),
            3,
            "no fire after archiving"
        );
        assert_eq!(
            h.fires_of("nightly").await,
            [ms("2026-01-01T03:00:00Z"), ms("2026-01-02T03:00:00Z")]
        );
        h.stop().await;
    }
}
