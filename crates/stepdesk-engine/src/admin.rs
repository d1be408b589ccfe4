//! The admin API: the one Rust API behind the window's commands and the HTTP admin routes.
//! Reads come from read connections; mutations go through the writer like everything else.
//!
//! # Paging
//!
//! Every list that pages ([`AdminApi::runs`], [`AdminApi::events`], and the HTTP routes over
//! them, `/v1/events` included) follows one convention:
//! - `limit`: absent means the list's default; otherwise it must be between 1 and the list's
//!   maximum (runs: default 50, events: default 20, both at most 500; `/v1/events` at most
//!   100), else the request is refused ([`AdminError::BadRequest`], a `400`) naming the
//!   range. Nothing is clamped silently.
//! - `cursor`: absent or empty asks for the first page; otherwise it must be the
//!   `next_cursor` of a previous page of the same list, else the request is refused
//!   ("bad cursor"), never answered with the first page.
//! - every page carries `next_cursor`, the cursor of the page after it, `null` on the last.

use rusqlite::{Connection, Row};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{internal, NewEvent};
use crate::ingest::{insert_event, new_id, start_run, NewRun};
use crate::model::{RunStatus, StepKind, StepStatus, TriggerKind};
use crate::progress;
use crate::scheduler::next_fire;
use crate::store::{boots, events, runs, steps, StoreError};
use crate::time::now_ms;
use crate::{Engine, Trigger};

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Internal(e.to_string())
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct TriggerView {
    /// `Event` or `Cron`.
    pub kind: TriggerKind,
    /// The event name or the cron expression.
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub condition: Option<String>,
    /// For crons: the next fire time (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub next_fire_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct FunctionView {
    pub id: String,
    pub name: String,
    pub triggers: Vec<TriggerView>,
    pub retries: u32,
    pub has_failure_handler: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub failure_handler_of: Option<String>,
    /// Where the function comes from: absent for Stepdesk's own functions, else the source
    /// that synced it (an SDK app's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct RunSummary {
    pub id: String,
    pub function_id: String,
    pub function_name: String,
    pub status: RunStatus,
    pub trigger_kind: TriggerKind,
    pub event_id: Option<String>,
    pub event_name: Option<String>,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// For cron runs: the scheduled time.
    pub cron_scheduled_at: Option<i64>,
    /// A cron fire that ran late (missed while Stepdesk was closed).
    pub late: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct AttemptView {
    pub attempt: u32,
    pub started_at: i64,
    pub ended_at: i64,
    pub duration_ms: i64,
    pub error: Value,
    pub retry_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct StepView {
    pub id: String,
    pub hash: String,
    pub kind: StepKind,
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// When a sleeping step wakes, or a wait/invoke times out, or a retry is due.
    pub wake_at: Option<i64>,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub error: Option<Value>,
    /// Failed attempts, oldest first.
    pub failed_attempts: Vec<AttemptView>,
    /// For a step of a "Rerun from step" before the step it started from: the run whose
    /// result it reuses (it did not execute in this run).
    pub reused_from: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct RunDetail {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub event: Option<Value>,
    pub output: Option<Value>,
    pub error: Option<Value>,
    /// Failed attempts of the function body itself (errors outside steps).
    pub function_attempts: Vec<AttemptView>,
    pub steps: Vec<StepView>,
    pub parent_run_id: Option<String>,
    pub rerun_of: Option<String>,
    /// For a "Rerun from step": the hash of the step it started from.
    pub rerun_from_step: Option<String>,
    /// For a "Rerun from step" with an edited input: that input.
    pub rerun_step_input: Option<Value>,
    /// Step attempts that were executing when Stepdesk stopped (they ran again after the
    /// restart), oldest first.
    pub interruptions: Vec<Interruption>,
}

/// A step attempt cut short by Stepdesk stopping (a crash, a kill, or a shutdown that did
/// not wait for it). The step then ran again when the run resumed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct Interruption {
    pub step_id: String,
    pub hash: String,
    /// When the interrupted attempt began executing.
    pub started_at: Option<i64>,
    /// The engine start (boot) it was executing in.
    pub boot_id: Option<i64>,
    /// When that boot shut down cleanly; `None` if it crashed or was killed.
    pub stopped_at: Option<i64>,
    /// The start that found it, and when.
    pub resumed_boot_id: i64,
    pub resumed_at: i64,
}

/// One start of the engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct Boot {
    pub id: i64,
    pub started_at: i64,
    /// Set by a clean shutdown; `None` for the running engine and for one that crashed.
    pub ended_at: Option<i64>,
    /// This is the engine answering.
    pub current: bool,
}

/// Which runs to list. Every filter is optional; empty text counts as absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ts_rs::TS)]
#[ts(optional_fields)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    pub function_id: Option<String>,
    /// Runs with any of these statuses (none: every status). Accepts one status, several
    /// separated by commas (`"Failed,Cancelled"`, as a query string carries them) or an array.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[ts(as = "Option<Vec<RunStatus>>", optional)]
    pub status: Vec<RunStatus>,
    pub trigger_kind: Option<TriggerKind>,
    /// The triggering event's name, exactly (`inngest/scheduled.timer` for cron runs).
    pub event_name: Option<String>,
    /// Queued at or after (ms since the epoch, or an RFC 3339 time).
    #[serde(default, deserialize_with = "crate::time::de_opt_time")]
    pub from: Option<i64>,
    /// Queued before (ms since the epoch, or an RFC 3339 time).
    #[serde(default, deserialize_with = "crate::time::de_opt_time")]
    pub to: Option<i64>,
    /// The `next_cursor` of the previous page; none (or empty) for the first page.
    pub cursor: Option<String>,
    /// Page size: 1 to [`RUNS_PAGE`]`.max`, default [`RUNS_PAGE`]`.default`.
    pub limit: Option<u32>,
}

/// Reads a list of statuses given as one string (possibly comma-separated) or an array.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = String> + Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        Text(String),
    }
    match Option::<OneOrMany<T>>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(OneOrMany::Many(v)) => Ok(v),
        Some(OneOrMany::Text(t)) => t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .collect(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct RunPage {
    pub runs: Vec<RunSummary>,
    pub next_cursor: Option<String>,
    /// How many runs match the filters (on every page; the cursor does not count).
    /// Counted exactly up to [`COUNT_EXACT_UP_TO`] matches, which an index answers in a
    /// few milliseconds even among a million runs. Past that `total_exact` is false and
    /// `total` is an estimate: for a list filtered by time at most, the number of runs
    /// stored in that time range (read from the table's row ids: exact unless runs were
    /// deleted); with other filters, a lower bound ([`COUNT_EXACT_UP_TO`], shown as
    /// "10,000+"). Counting a million index entries exactly takes tens of milliseconds,
    /// too slow for a list that refreshes live.
    pub total: u64,
    pub total_exact: bool,
}

impl runs::RunId for RunSummary {
    fn run_id(&self) -> &str {
        &self.id
    }
}

/// See [`RunPage::total`].
pub const COUNT_EXACT_UP_TO: u64 = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct StoredEvent {
    pub internal_id: String,
    pub id: String,
    pub name: String,
    pub data: Value,
    pub user: Value,
    pub ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub v: Option<String>,
    pub received_at: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ts_rs::TS)]
#[ts(optional_fields)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// The event name, exactly.
    pub name: Option<String>,
    /// Received at or after (ms since the epoch, or an RFC 3339 time).
    #[serde(default, deserialize_with = "crate::time::de_opt_time")]
    pub from: Option<i64>,
    /// Received before (ms since the epoch, or an RFC 3339 time).
    #[serde(default, deserialize_with = "crate::time::de_opt_time")]
    pub to: Option<i64>,
    /// Also list Stepdesk's own `inngest/*` events (cron timers, invokes, failures). A
    /// `name` filter shows the events of that name either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[ts(as = "Option<bool>", optional)]
    pub include_internal: bool,
    /// The `next_cursor` of the previous page; none (or empty) for the first page.
    pub cursor: Option<String>,
    /// Page size: 1 to [`EVENTS_PAGE`]`.max`, default [`EVENTS_PAGE`]`.default`.
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct Started {
    pub run_id: String,
    pub event_id: String,
}

/// A paged list's page size when none is asked for, and the largest allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize {
    pub default: u32,
    pub max: u32,
}

/// [`AdminApi::runs`]' page sizes.
pub const RUNS_PAGE: PageSize = PageSize {
    default: 50,
    max: 500,
};
/// [`AdminApi::events`]' page sizes.
pub const EVENTS_PAGE: PageSize = PageSize {
    default: 20,
    max: 500,
};

impl PageSize {
    /// The page size to use for a requested `limit` (see the module's paging convention).
    pub fn limit(self, limit: Option<u32>) -> AdminResult<u32> {
        match limit {
            None => Ok(self.default),
            Some(l) if (1..=self.max).contains(&l) => Ok(l),
            Some(l) => Err(AdminError::BadRequest(format!(
                "`limit` must be between 1 and {} (default {}), not {l}",
                self.max, self.default
            ))),
        }
    }
}

/// A page cursor as the lists give it out (the id of the last item on the previous page),
/// checked: absent or empty is the first page; anything else that is not one of our ids
/// is refused rather than answered with the first page.
pub fn page_cursor(cursor: Option<String>) -> AdminResult<Option<String>> {
    match cursor.filter(|c| !c.is_empty()) {
        None => Ok(None),
        // Ids are ULIDs, compared as text: write the cursor back the way ids are written.
        // (Decoding alone lets through text that overflows 128 bits: it must round-trip.)
        Some(c) => match ulid::Ulid::from_string(&c)
            .map(|id| id.to_string())
            .ok()
            .filter(|id| id.eq_ignore_ascii_case(&c))
        {
            Some(id) => Ok(Some(id)),
            None => Err(AdminError::BadRequest(
                "bad cursor: pass the `next_cursor` of the previous page, or none for the first"
                    .into(),
            )),
        },
    }
}

/// Admin operations over an engine.
#[derive(Clone)]
pub struct AdminApi {
    pub(crate) engine: Engine,
}

fn parse_json(text: Option<String>) -> Option<Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

impl AdminApi {
    pub(crate) fn new(engine: Engine) -> AdminApi {
        AdminApi { engine }
    }

    /// A function's name: also for an archived function (its runs stay), else its id.
    fn function_name(&self, id: &str) -> String {
        let registry = self.engine.inner.registry();
        registry
            .get(id)
            .map(|f| f.name.clone())
            .or_else(|| registry.archived(id).map(|a| a.name.clone()))
            .unwrap_or_else(|| id.to_string())
    }

    pub(crate) fn summary(&self, r: &Row<'_>) -> rusqlite::Result<RunSummary> {
        let function_id: String = r.get(1)?;
        let started_at: Option<i64> = r.get(7)?;
        let ended_at: Option<i64> = r.get(8)?;
        Ok(RunSummary {
            id: r.get(0)?,
            function_name: self.function_name(&function_id),
            function_id,
            status: r.get(2)?,
            trigger_kind: r.get(3)?,
            event_id: r.get(4)?,
            event_name: r.get(5)?,
            queued_at: r.get(6)?,
            started_at,
            ended_at,
            duration_ms: started_at.zip(ended_at).map(|(s, e)| e - s),
            cron_scheduled_at: r.get(9)?,
            late: r.get(10)?,
        })
    }

    /// All registered functions, with their triggers, next cron fire and source (archived
    /// functions are not listed; their runs are).
    pub fn functions(&self) -> Vec<FunctionView> {
        let registry = self.engine.inner.registry();
        registry
            .all()
            .iter()
            .map(|f| FunctionView {
                id: f.id.clone(),
                name: f.name.clone(),
                triggers: f
                    .triggers
                    .iter()
                    .map(|t| match t {
                        Trigger::Event { name, expression } => TriggerView {
                            kind: TriggerKind::Event,
                            value: name.clone(),
                            condition: expression.as_ref().map(|e| e.source().to_string()),
                            next_fire_at: None,
                        },
                        Trigger::Cron(spec) => TriggerView {
                            kind: TriggerKind::Cron,
                            value: spec.text().to_string(),
                            condition: None,
                            next_fire_at: next_fire(spec),
                        },
                    })
                    .collect(),
                retries: f.retries,
                // An SDK app registers its failure handlers as functions of their own.
                has_failure_handler: f.on_failure.is_some()
                    || registry
                        .all()
                        .iter()
                        .any(|g| g.failure_handler_of.as_deref() == Some(f.id.as_str())),
                failure_handler_of: f.failure_handler_of.clone(),
                source: f.source.clone(),
            })
            .collect()
    }

    /// Runs, newest first, filtered and paginated by cursor, with the number of runs that
    /// match the filters (see [`RunPage::total`]).
    pub async fn runs(&self, q: RunQuery) -> AdminResult<RunPage> {
        let limit = RUNS_PAGE.limit(q.limit)? as usize;
        let cursor = page_cursor(q.cursor.clone())?;
        if let (Some(from), Some(to)) = (q.from, q.to) {
            if from > to {
                return Err(AdminError::BadRequest("`from` is after `to`".into()));
            }
        }
        let filter = runs::RunFilter::new(q);
        let this = self.clone();
        let (mut runs, total, total_exact) = self
            .engine
            .inner
            .store
            .read(move |c| {
                let runs = runs::list(c, &filter, cursor.as_deref(), limit + 1, |r| {
                    this.summary(r)
                })?;
                let (total, exact) = filter.count(c)?;
                Ok((runs, total, exact))
            })
            .await?;
        let next_cursor = if runs.len() > limit {
            runs.truncate(limit);
            runs.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok(RunPage {
            runs,
            next_cursor,
            total,
            total_exact,
        })
    }

    /// One run with its event, output, error and every step's attempts.
    pub async fn run(&self, run_id: &str) -> AdminResult<RunDetail> {
        let this = self.clone();
        let id = run_id.to_string();
        let detail = self
            .engine
            .inner
            .store
            .read(move |c| this.read_run(c, &id))
            .await?;
        detail.ok_or_else(|| AdminError::NotFound(format!("no run `{run_id}`")))
    }

    fn read_run(&self, c: &Connection, id: &str) -> Result<Option<RunDetail>, StoreError> {
        let head = runs::detail(c, id, |r| {
            Ok((
                self.summary(r)?,
                r.get::<_, Option<String>>(11)?,
                r.get::<_, Option<String>>(12)?,
                r.get::<_, Option<String>>(13)?,
                r.get::<_, Option<String>>(14)?,
                r.get::<_, Option<String>>(15)?,
                r.get::<_, Option<String>>(16)?,
                r.get::<_, Option<String>>(17)?,
            ))
        })?;
        let Some((
            summary,
            event,
            output,
            error,
            parent_run_id,
            rerun_of,
            rerun_from_step,
            rerun_step_input,
        )) = head
        else {
            return Ok(None);
        };
        let attempts: Vec<(String, AttemptView)> = steps::attempts(c, id)?
            .into_iter()
            .map(|(hash, attempt, started_at, ended_at, error, retry_at)| {
                (
                    hash,
                    AttemptView {
                        attempt,
                        started_at,
                        ended_at,
                        duration_ms: ended_at - started_at,
                        error: parse_json(error).unwrap_or(Value::Null),
                        retry_at,
                    },
                )
            })
            .collect();
        let steps = steps::of_run(c, id)?
            .into_iter()
            .map(|s| StepView {
                failed_attempts: attempts
                    .iter()
                    .filter(|(h, _)| *h == s.hash)
                    .map(|(_, a)| a.clone())
                    .collect(),
                id: s.step_id,
                hash: s.hash,
                kind: s.kind,
                status: s.status,
                attempts: s.attempts,
                started_at: s.started_at,
                ended_at: s.ended_at,
                duration_ms: s.started_at.zip(s.ended_at).map(|(s, e)| e - s),
                wake_at: s.wake_at,
                input: parse_json(s.input),
                output: parse_json(s.output),
                error: parse_json(s.error),
                reused_from: s.reused_from,
            })
            .collect();
        let interruptions = boots::interruptions(c, id)?;
        let function_attempts = attempts
            .iter()
            .filter(|(h, _)| h == progress::FUNCTION_ATTEMPT_HASH)
            .map(|(_, a)| a.clone())
            .collect();
        Ok(Some(RunDetail {
            summary,
            event: parse_json(event),
            output: parse_json(output),
            error: parse_json(error),
            function_attempts,
            steps,
            parent_run_id,
            rerun_of,
            rerun_from_step,
            rerun_step_input: parse_json(rerun_step_input),
            interruptions,
        }))
    }

    /// The engine's latest starts, newest first (at most `limit`, 1 to 500).
    pub async fn boots(&self, limit: u32) -> AdminResult<Vec<Boot>> {
        if !(1..=500).contains(&limit) {
            return Err(AdminError::BadRequest(format!(
                "`limit` must be between 1 and 500, not {limit}"
            )));
        }
        let current = self.engine.inner.boot_id;
        Ok(self
            .engine
            .inner
            .store
            .read(move |c| boots::latest(c, limit, current))
            .await?)
    }

    /// Starts a function now with this payload ("Test function"). The run receives an
    /// `inngest/function.invoked` event carrying `data` and `user`.
    pub async fn invoke(
        &self,
        function_id: &str,
        data: Map<String, Value>,
        user: Map<String, Value>,
    ) -> AdminResult<Started> {
        let registry = self.engine.inner.registry();
        let Some(function) = registry.get(function_id).cloned() else {
            return Err(AdminError::NotFound(match registry.archived(function_id) {
                Some(_) => registry.missing(function_id),
                None => format!("no function `{function_id}`"),
            }));
        };
        let mut event = NewEvent::internal(internal::FUNCTION_INVOKED, data);
        event.user = user;
        // The admin API is only reachable with the admin token (or from the window).
        let admission = crate::Admission {
            invoked_function: Some(function_id.to_string()),
            sender: crate::Sender::Trusted,
        };
        let gate_error = |e| match e {
            crate::GateError::Refused(r) => AdminError::BadRequest(r),
            crate::GateError::Unauthorized(r) => AdminError::BadRequest(r),
            crate::GateError::Unavailable(r) => AdminError::Internal(r),
        };
        let mut work = crate::GateWork::default();
        let mut event = self
            .engine
            .admit(event, &admission, &mut work)
            .await
            .map_err(gate_error)?;
        event.data.insert(
            "_inngest".into(),
            serde_json::json!({"fn_id": function_id, "source": "admin"}),
        );
        let started = self
            .engine
            .commit_admitted(work, move |c| {
                let now = now_ms();
                let (event_id, _, json) = insert_event(c, event, now)?;
                let run_id = new_id();
                let run = NewRun {
                    function_id: &function.id,
                    trigger_kind: TriggerKind::Invoke,
                    event_internal_id: &event_id,
                    event_name: internal::FUNCTION_INVOKED,
                    now,
                    cron_scheduled_at: None,
                    late: false,
                    parent: None,
                    rerun_of: None,
                    runnable: true,
                    not_before: None,
                };
                let mut wakes = Vec::new();
                start_run(c, &function, &json, run, &run_id, &mut wakes)?;
                Ok((Started { run_id, event_id }, wakes))
            })
            .await
            .map_err(|e| match e {
                crate::CommitError::Gate(e) => gate_error(e),
                crate::CommitError::Store(e) => AdminError::from(e),
            })?;
        Ok(started)
    }

    /// Cancels a running run.
    pub async fn cancel(&self, run_id: &str) -> AdminResult<RunSummary> {
        let inner = self.engine.inner.clone();
        let id = run_id.to_string();
        let (found, cancelled) = self
            .engine
            .write_and_wake(move |c| {
                let found = runs::status(c, &id)?.is_some();
                let mut wakes = Vec::new();
                let registry = inner.registry();
                let cancelled = progress::cancel_run(c, &registry, &id, now_ms(), &mut wakes)?;
                Ok(((found, cancelled), wakes))
            })
            .await?;
        if !found {
            return Err(AdminError::NotFound(format!("no run `{run_id}`")));
        }
        let detail = self.run(run_id).await?;
        if !cancelled {
            return Err(AdminError::Conflict(format!(
                "run `{run_id}` is {}, not running",
                detail.summary.status
            )));
        }
        Ok(detail.summary)
    }

    /// Starts a new run of the same function with the same event.
    pub async fn rerun(&self, run_id: &str) -> AdminResult<Started> {
        self.start_rerun(run_id, None).await
    }

    /// "Rerun from step": a new run of the same function with the same event, whose steps
    /// before `step_hash` (in the order the run reached them) reuse the original run's
    /// results without executing again; that step and everything after it execute. With
    /// `step_input`, that step (a `step.run_with`) receives this input instead of its own.
    pub async fn rerun_from(
        &self,
        run_id: &str,
        step_hash: &str,
        step_input: Option<Value>,
    ) -> AdminResult<Started> {
        self.start_rerun(
            run_id,
            Some(RerunFrom {
                hash: step_hash.to_string(),
                input: step_input,
            }),
        )
        .await
    }

    async fn start_rerun(&self, run_id: &str, from: Option<RerunFrom>) -> AdminResult<Started> {
        let id = run_id.to_string();
        let original = self
            .engine
            .inner
            .store
            .read(move |c| runs::origin(c, &id))
            .await?;
        let Some((function_id, Some(event_id))) = original else {
            return Err(AdminError::NotFound(format!("no run `{run_id}`")));
        };
        let registry = self.engine.inner.registry();
        let Some(function) = registry.get(&function_id).cloned() else {
            return Err(AdminError::Conflict(registry.missing(&function_id)));
        };
        let original_id = run_id.to_string();
        let started = self
            .engine
            .write_and_wake(move |c| {
                let now = now_ms();
                let new_run = new_id();
                // Checked inside the write, so the steps copied are the ones checked.
                let reuse = match &from {
                    Some(from) => Some(steps_before(c, &original_id, from)?),
                    None => None,
                };
                let payload = events::payload(c, &event_id)?.ok_or_else(|| {
                    StoreError::Other(format!("the run's event `{event_id}` is gone"))
                })?;
                let json: Value = serde_json::from_str(&payload)?;
                let event_name = json["name"].as_str().unwrap_or_default().to_string();
                let run = NewRun {
                    function_id: &function.id,
                    trigger_kind: TriggerKind::Rerun,
                    event_internal_id: &event_id,
                    event_name: &event_name,
                    now,
                    cron_scheduled_at: None,
                    late: false,
                    parent: None,
                    rerun_of: Some(&original_id),
                    runnable: true,
                    not_before: None,
                };
                let mut wakes = Vec::new();
                start_run(c, &function, &json, run, &new_run, &mut wakes)?;
                if let (Some(from), Some(seq)) = (&from, reuse) {
                    runs::mark_rerun_from(
                        c,
                        &new_run,
                        &from.hash,
                        from.input.as_ref().map(Value::to_string).as_deref(),
                    )?;
                    steps::copy_finished_before(c, &original_id, &new_run, seq)?;
                }
                Ok((
                    Started {
                        run_id: new_run,
                        event_id,
                    },
                    wakes,
                ))
            })
            .await
            .map_err(|e| match e {
                StoreError::Other(m) if m.starts_with(REFUSED) => {
                    AdminError::BadRequest(m[REFUSED.len()..].to_string())
                }
                e => e.into(),
            })?;
        Ok(started)
    }

    /// Stored events, newest first.
    pub async fn events(&self, q: EventQuery) -> AdminResult<EventPage> {
        let limit = EVENTS_PAGE.limit(q.limit)? as usize;
        let cursor = page_cursor(q.cursor)?;
        if let (Some(from), Some(to)) = (q.from, q.to) {
            if from > to {
                return Err(AdminError::BadRequest("`from` is after `to`".into()));
            }
        }
        let filter = events::EventFilter {
            name: q.name,
            include_internal: q.include_internal,
            from: q.from,
            to: q.to,
            cursor,
            rows: limit + 1,
        };
        let mut events = self
            .engine
            .inner
            .store
            .read(move |c| {
                events::list(c, &filter)?
                    .into_iter()
                    .map(|(id, payload, received_at)| stored_event(id, &payload, received_at))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let next_cursor = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.internal_id.clone())
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    /// One stored event, by internal id.
    pub async fn event(&self, internal_id: &str) -> AdminResult<StoredEvent> {
        let id = internal_id.to_string();
        let found = self
            .engine
            .inner
            .store
            .read(move |c| {
                events::get(c, &id)?
                    .map(|(i, p, r)| stored_event(i, &p, r))
                    .transpose()
            })
            .await?;
        found.ok_or_else(|| AdminError::NotFound(format!("no event `{internal_id}`")))
    }

    /// The runs an event started.
    pub async fn event_runs(&self, internal_id: &str) -> AdminResult<Vec<RunSummary>> {
        self.event(internal_id).await?;
        let this = self.clone();
        let id = internal_id.to_string();
        Ok(self
            .engine
            .inner
            .store
            .read(move |c| runs::by_event(c, &id, |r| this.summary(r)))
            .await?)
    }
}

/// Where a "Rerun from step" starts.
struct RerunFrom {
    hash: String,
    input: Option<Value>,
}

/// Marks a write refused for a reason the caller gave (a `400`), not a store failure.
const REFUSED: &str = "refused: ";

/// The `seq` of the step a rerun starts from, after checking it can start there.
fn steps_before(c: &Connection, run_id: &str, from: &RerunFrom) -> Result<i64, StoreError> {
    let step = steps::find(c, run_id, &from.hash)?;
    let refuse = |m: String| Err(StoreError::Other(format!("{REFUSED}{m}")));
    let Some((seq, step_id, kind, input)) = step else {
        return refuse(format!(
            "run `{run_id}` has no step with hash `{}`",
            from.hash
        ));
    };
    if from.input.is_some() && (kind != StepKind::Run || input.is_none()) {
        return refuse(format!(
            "step `{step_id}` takes no input: only a `step.run_with` step's input can be edited"
        ));
    }
    Ok(seq)
}

fn stored_event(
    internal_id: String,
    payload: &str,
    received_at: i64,
) -> Result<StoredEvent, StoreError> {
    let v: Value = serde_json::from_str(payload)?;
    Ok(StoredEvent {
        internal_id,
        id: v["id"].as_str().unwrap_or_default().to_string(),
        name: v["name"].as_str().unwrap_or_default().to_string(),
        data: v.get("data").cloned().unwrap_or(Value::Object(Map::new())),
        user: v.get("user").cloned().unwrap_or(Value::Object(Map::new())),
        ts: v["ts"].as_i64().unwrap_or_default(),
        v: v.get("v").and_then(|x| x.as_str()).map(str::to_string),
        received_at,
    })
}
