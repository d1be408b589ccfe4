// Generated from the Rust types by `stepdesk-api` (crates/stepdesk-api/src/commands.rs).
// Do not edit: run `UPDATE_TS=1 cargo test -p stepdesk-api --test typescript` to regenerate.

export type AddUserParams = { id: string, name?: string, 
/**
 * Saved to the keychain, never shown back.
 */
token?: string, };

export type AttemptView = { attempt: number, started_at: number, ended_at: number, duration_ms: number, error: JsonValue, retry_at: number | null, };

export type AuditEntry = { id: number, 
/**
 * Milliseconds since the epoch.
 */
at: number, origin: Origin, 
/**
 * The command (`sync_user`, `set_token`, ...).
 */
action: string, 
/**
 * The user it concerned, if any.
 */
user_id: string | null, ok: boolean, 
/**
 * Why it failed, in plain words.
 */
error: string | null, };

export type AuditParams = { user_id?: string, limit?: number, };

export type Boot = { id: number, started_at: number, 
/**
 * Set by a clean shutdown; `None` for the running engine and for one that crashed.
 */
ended_at: number | null, 
/**
 * This is the engine answering.
 */
current: boolean, };

export type ById = { id: string, };

export type ByUrl = { url: string, };

export type Change = { 
/**
 * The SQLite table: `runs`, `steps`, `events`, `cron_fires`, a component's
 * (`readwise_users` ...).
 */
table: string, 
/**
 * The changed rows' ids (for `steps`, `step_attempts`, `interruptions` and cron
 * fires: their runs' ids), sorted, without repeats; empty when the table's rows have
 * no known name or were deleted.
 */
ids: Array<string>, 
/**
 * More than [`MAX_IDS`] rows changed: `ids` lists some of them.
 */
truncated: boolean, };

export type ChangeNotice = { 
/**
 * When it was published (ms since the epoch).
 */
at: number, 
/**
 * The tables that changed (`runs`, `steps`, `events`, `readwise_users`, ...).
 */
tables: Array<string>, 
/**
 * Per table, the ids of the changed rows where known.
 */
changes: Array<Change>, };

export type CheckOutcome = "connected" | "rejected" | "missing" | "unreachable";

export type CronFire = { scheduled_at: number, fired_at: number, 
/**
 * Fired more than a minute after its time (missed while Stepdesk was closed).
 */
late: boolean, run_id: string, source: CronFireSource, };

export type CronFireSource = "Schedule" | "RunNow" | "Replay";

export type CronFiresParams = { 
/**
 * The cron function's id.
 */
id: string, limit?: number, };

export type DailySyncDetail = { users: Array<DailySyncUser>, run_id: string, started_at: number, total: number, 
/**
 * Users whose sync for this daily run finished, successfully or not.
 */
done: number, ok: number, failed: number, 
/**
 * The daily sync this one replays (for some or all of its users).
 */
replay_of: string | null, };

export type DailySyncProgress = { run_id: string, started_at: number, total: number, 
/**
 * Users whose sync for this daily run finished, successfully or not.
 */
done: number, ok: number, failed: number, 
/**
 * The daily sync this one replays (for some or all of its users).
 */
replay_of: string | null, };

export type DailySyncUser = { user_id: string, 
/**
 * The fetch run that syncs them for this daily sync (none until it is started).
 */
fetch_run_id: string | null, 
/**
 * That run's status: `Running`, `Completed`, `Failed` or `Cancelled`.
 */
status: string | null, 
/**
 * Why it failed, in the run's own words.
 */
error: JsonValue | null, };

export type Diagnostics = { info: Info, log_dir: string | null, os: string, arch: string, 
/**
 * Runs by status, over all time.
 */
runs_by_status: { [key in string]: JsonValue }, events: number, users: number | null, 
/**
 * The keys' status (never their values), or why it is unknown.
 */
keys: JsonValue, readwise_settings: JsonValue | null, };

export type EventPage = { events: Array<StoredEvent>, next_cursor: string | null, };

export type EventQuery = { 
/**
 * The event name, exactly.
 */
name?: string, 
/**
 * Received at or after (ms since the epoch, or an RFC 3339 time).
 */
from?: number, 
/**
 * Received before (ms since the epoch, or an RFC 3339 time).
 */
to?: number, 
/**
 * Also list Stepdesk's own `inngest/*` events (cron timers, invokes, failures). A
 * `name` filter shows the events of that name either way.
 */
include_internal?: boolean, 
/**
 * The `next_cursor` of the previous page; none (or empty) for the first page.
 */
cursor?: string, 
/**
 * Page size: 1 to [`EVENTS_PAGE`]`.max`, default [`EVENTS_PAGE`]`.default`.
 */
limit?: number, };

export type FunctionStats = { function_id: string, 
/**
 * Where the function comes from: absent for Stepdesk's own functions, else the source
 * that synced it (an SDK app's id). An archived function keeps its statistics.
 */
source?: string, day: StatsWindow, week: StatsWindow, };

export type FunctionView = { id: string, name: string, triggers: Array<TriggerView>, retries: number, has_failure_handler: boolean, failure_handler_of?: string, 
/**
 * Where the function comes from: absent for Stepdesk's own functions, else the source
 * that synced it (an SDK app's id).
 */
source?: string, };

export type Info = { name: string, version: string, data_dir: string, 
/**
 * Where the HTTP server listens, if it does.
 */
url: string | null, functions: number, event_key_required: boolean, 
/**
 * Opened with `stepdesk inspect`: nothing can be changed, nothing runs.
 */
read_only: boolean, 
/**
 * When this process started serving (milliseconds since the epoch).
 */
started_at: number, readwise: boolean, };

export type Interruption = { step_id: string, hash: string, 
/**
 * When the interrupted attempt began executing.
 */
started_at: number | null, 
/**
 * The engine start (boot) it was executing in.
 */
boot_id: number | null, 
/**
 * When that boot shut down cleanly; `None` if it crashed or was killed.
 */
stopped_at: number | null, 
/**
 * The start that found it, and when.
 */
resumed_boot_id: number, resumed_at: number, };

export type InvokeParams = { 
/**
 * The function's id.
 */
id: string, data?: { [key in string]: JsonValue }, user?: { [key in string]: JsonValue }, };

export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;

export type KeyChange = { 
/**
 * A note for the user (e.g. a key pinned by `--event-key` stays in effect).
 */
note?: string, event_key: KeyStatus, signing_key: KeyStatus, 
/**
 * Why the keychain could not be read, if it could not.
 */
keychain_error?: string, };

export type KeyName = "event-key" | "signing-key";

export type KeyParams = { name: KeyName, };

export type KeySource = "flag" | "env" | "keychain" | "none";

export type KeyStatus = { 
/**
 * Whether the keychain holds it; `null` when the keychain cannot be read.
 */
stored: boolean | null, 
/**
 * For the event key: whether one is required now, and where it comes from.
 */
in_effect?: boolean, source?: KeySource, };

export type KeysStatus = { event_key: KeyStatus, signing_key: KeyStatus, 
/**
 * Why the keychain could not be read, if it could not.
 */
keychain_error?: string, };

export type LimitParams = { limit?: number, };

export type NoParams = Record<symbol, never>;

export type Origin = "window" | "browser" | "cli" | "http";

export type ReadwiseSettings = { readwise_api_url: string, 
/**
 * `default`, `settings` (stored with the admin API or `stepdesk settings`), or
 * `environment` (READWISE_API_URL or --readwise-url, which win over settings).
 */
source: string, 
/**
 * Set when a stored URL is ignored, saying why (one stored by an older version that
 * allowed plain `http://` to any host).
 */
warning?: string | null, };

export type Removed = { removed: string, };

export type ReplayDailySyncParams = { 
/**
 * The daily sync's run id.
 */
id: string, 
/**
 * Only the users whose sync failed or was cancelled (the default), or all of them.
 */
only_failed?: boolean, };

export type RerunFromParams = { 
/**
 * The run to rerun.
 */
id: string, 
/**
 * The step to execute from (its `hash`): the steps before it are reused.
 */
step: string, 
/**
 * A new input for that step (steps declared with `step.run_with` take one).
 */
input?: JsonValue, };

export type RunCronParams = { 
/**
 * The cron function's id.
 */
id: string, 
/**
 * A past scheduled time to replay (ms since the epoch or RFC 3339); none: run now.
 */
scheduled_at?: number, };

export type RunDetail = { event: JsonValue | null, output: JsonValue | null, error: JsonValue | null, 
/**
 * Failed attempts of the function body itself (errors outside steps).
 */
function_attempts: Array<AttemptView>, steps: Array<StepView>, parent_run_id: string | null, rerun_of: string | null, 
/**
 * For a "Rerun from step": the hash of the step it started from.
 */
rerun_from_step: string | null, 
/**
 * For a "Rerun from step" with an edited input: that input.
 */
rerun_step_input: JsonValue | null, 
/**
 * Step attempts that were executing when Stepdesk stopped (they ran again after the
 * restart), oldest first.
 */
interruptions: Array<Interruption>, id: string, function_id: string, function_name: string, status: RunStatus, trigger_kind: TriggerKind, event_id: string | null, event_name: string | null, queued_at: number, started_at: number | null, ended_at: number | null, duration_ms: number | null, 
/**
 * For cron runs: the scheduled time.
 */
cron_scheduled_at: number | null, 
/**
 * A cron fire that ran late (missed while Stepdesk was closed).
 */
late: boolean, };

export type RunPage = { runs: Array<RunSummary>, next_cursor: string | null, 
/**
 * How many runs match the filters (on every page; the cursor does not count).
 * Counted exactly up to [`COUNT_EXACT_UP_TO`] matches, which an index answers in a
 * few milliseconds even among a million runs. Past that `total_exact` is false and
 * `total` is an estimate: for a list filtered by time at most, the number of runs
 * stored in that time range (read from the table's row ids: exact unless runs were
 * deleted); with other filters, a lower bound ([`COUNT_EXACT_UP_TO`], shown as
 * "10,000+"). Counting a million index entries exactly takes tens of milliseconds,
 * too slow for a list that refreshes live.
 */
total: number, total_exact: boolean, };

export type RunQuery = { function_id?: string, 
/**
 * Runs with any of these statuses (none: every status). Accepts one status, several
 * separated by commas (`"Failed,Cancelled"`, as a query string carries them) or an array.
 */
status?: Array<RunStatus>, trigger_kind?: TriggerKind, 
/**
 * The triggering event's name, exactly (`inngest/scheduled.timer` for cron runs).
 */
event_name?: string, 
/**
 * Queued at or after (ms since the epoch, or an RFC 3339 time).
 */
from?: number, 
/**
 * Queued before (ms since the epoch, or an RFC 3339 time).
 */
to?: number, 
/**
 * The `next_cursor` of the previous page; none (or empty) for the first page.
 */
cursor?: string, 
/**
 * Page size: 1 to [`RUNS_PAGE`]`.max`, default [`RUNS_PAGE`]`.default`.
 */
limit?: number, };

export type RunStatus = "Running" | "Completed" | "Failed" | "Cancelled";

export type RunSummary = { id: string, function_id: string, function_name: string, status: RunStatus, trigger_kind: TriggerKind, event_id: string | null, event_name: string | null, queued_at: number, started_at: number | null, ended_at: number | null, duration_ms: number | null, 
/**
 * For cron runs: the scheduled time.
 */
cron_scheduled_at: number | null, 
/**
 * A cron fire that ran late (missed while Stepdesk was closed).
 */
late: boolean, };

export type SdkApp = { url: string, 
/**
 * Its `appName`, once it has registered.
 */
app_id: string | null, 
/**
 * How it was added: `flag` (-u), `discovered`, `added` (admin/console) or `registered`
 * (it synced itself).
 */
origin: string, sdk: string | null, framework: string | null, app_version: string | null, 
/**
 * Its functions' ids, as last registered.
 */
functions: Array<string>, 
/**
 * The last sync's or poll's error, in plain words; None when it answered.
 */
error: string | null, added_at: number, synced_at: number | null, checked_at: number | null, };

export type SearchParams = { 
/**
 * Words to find (the last one may be the start of a word).
 */
q: string, limit?: number, };

export type SearchResult = { runs: Array<RunSummary>, 
/**
 * Runs changed but not indexed yet (not searchable for a moment).
 */
pending: number, };

export type SendEventsParams = { events: JsonValue, };

export type SentEvents = { ids: Array<string>, };

export type SetKeyParams = { name: KeyName, 
/**
 * Write-only.
 */
value: string, };

export type SetTokenParams = { id: string, token: string, };

export type SettingsParams = { 
/**
 * A URL, or `null` to go back to the default. Required (`{}` is refused): an explicit
 * `deserialize_with` keeps serde from treating the missing field as `null`.
 */
readwise_api_url: string | null, };

export type Started = { run_id: string, event_id: string, };

export type StatsBucket = { 
/**
 * Start of the bucket (ms since the epoch); it lasts [`StatsWindow::bucket_ms`].
 */
start: number, counts: StatusCounts, 
/**
 * 95th percentile duration of the runs that finished in the bucket.
 */
p95_ms: number | null, };

export type StatsWindow = { from: number, to: number, 
/**
 * Finished runs by the time they ended; running runs by the time they were queued.
 */
counts: StatusCounts, 
/**
 * Durations (start to end; queued to end for a run cancelled before it started) of
 * the runs that finished in the window.
 */
p50_ms: number | null, p95_ms: number | null, bucket_ms: number, 
/**
 * The window cut into buckets, oldest first.
 */
series: Array<StatsBucket>, };

export type StatusCounts = { running: number, completed: number, failed: number, cancelled: number, };

export type StepKind = "Run" | "Sleep" | "WaitForEvent" | "Invoke" | "SendEvent";

export type StepStatus = "Running" | "Completed" | "Failed" | "Retrying" | "Sleeping" | "Waiting" | "Invoking" | "Interrupted";

export type StepView = { id: string, hash: string, kind: StepKind, status: StepStatus, attempts: number, started_at: number | null, ended_at: number | null, duration_ms: number | null, 
/**
 * When a sleeping step wakes, or a wait/invoke times out, or a retry is due.
 */
wake_at: number | null, input: JsonValue | null, output: JsonValue | null, error: JsonValue | null, 
/**
 * Failed attempts, oldest first.
 */
failed_attempts: Array<AttemptView>, 
/**
 * For a step of a "Rerun from step" before the step it started from: the run whose
 * result it reuses (it did not execute in this run).
 */
reused_from: string | null, };

export type StoredEvent = { internal_id: string, id: string, name: string, data: JsonValue, user: JsonValue, ts: number, v?: string, received_at: number, };

export type SyncRecord = { at: number | null, status: SyncStatus, book_count: number | null, error: string | null, run_id: string | null, 
/**
 * The daily sync that requested it, if any.
 */
daily_sync_run_id: string | null, };

export type SyncRequested = { event_id: string, user_id: string | null, };

export type SyncStatus = "running" | "ok" | "failed" | "cancelled";

export type TokenCheck = { user_id: string, 
/**
 * What the check found.
 */
status: CheckOutcome, 
/**
 * The user's token status after the check (unchanged when `status` is `unreachable`).
 */
token_status: TokenStatus, detail: string | null, checked_at: number, };

export type TokenStatus = "unchecked" | "connected" | "missing" | "rejected";

export type TriggerKind = "Event" | "Cron" | "Invoke" | "Rerun";

export type TriggerView = { 
/**
 * `Event` or `Cron`.
 */
kind: TriggerKind, 
/**
 * The event name or the cron expression.
 */
value: string, condition?: string, 
/**
 * For crons: the next fire time (ms since the epoch).
 */
next_fire_at?: number, };

export type User = { id: string, display_name: string, token_status: TokenStatus, token_checked_at: number | null, created_at: number, last_sync: SyncRecord | null, last_full_sync_at: number | null, 
/**
 * Readwise's own book count at the last sync.
 */
readwise_total: number | null, 
/**
 * Books stored here for the user.
 */
stored_books: number, 
/**
 * Newest `updated` time seen (incremental syncs ask for books updated after it).
 */
watermark: string | null, };

export type UserDetail = { user: User, 
/**
 * Their sync runs, newest first.
 */
runs: Array<RunSummary>, 
/**
 * Support actions on them, newest first.
 */
audit: Array<AuditEntry>, };

/** Every admin command: its params and result types, kind and REST route. */
export interface Commands {
  info: { params: NoParams; result: Info; kind: "read"; method: "GET"; path: "/api/admin/info" };
  functions: { params: NoParams; result: Array<FunctionView>; kind: "read"; method: "GET"; path: "/api/admin/functions" };
  runs: { params: RunQuery; result: RunPage; kind: "read"; method: "GET"; path: "/api/admin/runs" };
  run: { params: ById; result: RunDetail; kind: "read"; method: "GET"; path: "/api/admin/runs/{id}" };
  invoke: { params: InvokeParams; result: Started; kind: "write"; method: "POST"; path: "/api/admin/functions/{id}/invoke" };
  cancel: { params: ById; result: RunSummary; kind: "write"; method: "POST"; path: "/api/admin/runs/{id}/cancel" };
  rerun: { params: ById; result: Started; kind: "write"; method: "POST"; path: "/api/admin/runs/{id}/rerun" };
  rerun_from: { params: RerunFromParams; result: Started; kind: "write"; method: "POST"; path: "/api/admin/runs/{id}/rerun-from" };
  search_runs: { params: SearchParams; result: SearchResult; kind: "read"; method: "GET"; path: "/api/admin/search" };
  function_stats: { params: ById; result: FunctionStats; kind: "read"; method: "GET"; path: "/api/admin/functions/{id}/stats" };
  cron_fires: { params: CronFiresParams; result: Array<CronFire>; kind: "read"; method: "GET"; path: "/api/admin/functions/{id}/cron-fires" };
  run_cron: { params: RunCronParams; result: Started; kind: "write"; method: "POST"; path: "/api/admin/functions/{id}/run-cron" };
  boots: { params: LimitParams; result: Array<Boot>; kind: "read"; method: "GET"; path: "/api/admin/boots" };
  apps: { params: NoParams; result: Array<SdkApp>; kind: "read"; method: "GET"; path: "/api/admin/apps" };
  add_app: { params: ByUrl; result: SdkApp; kind: "write"; method: "POST"; path: "/api/admin/apps" };
  sync_app: { params: ByUrl; result: SdkApp; kind: "write"; method: "POST"; path: "/api/admin/apps/sync" };
  remove_app: { params: ByUrl; result: SdkApp; kind: "write"; method: "POST"; path: "/api/admin/apps/remove" };
  events: { params: EventQuery; result: EventPage; kind: "read"; method: "GET"; path: "/api/admin/events" };
  event: { params: ById; result: StoredEvent; kind: "read"; method: "GET"; path: "/api/admin/events/{id}" };
  event_runs: { params: ById; result: Array<RunSummary>; kind: "read"; method: "GET"; path: "/api/admin/events/{id}/runs" };
  send_events: { params: SendEventsParams; result: SentEvents; kind: "write"; method: "POST"; path: "/api/admin/events" };
  replay_event: { params: ById; result: SentEvents; kind: "write"; method: "POST"; path: "/api/admin/events/{id}/replay" };
  users: { params: NoParams; result: Array<User>; kind: "read"; method: "GET"; path: "/api/admin/users" };
  user: { params: ById; result: User; kind: "read"; method: "GET"; path: "/api/admin/users/{id}" };
  user_page: { params: ById; result: UserDetail; kind: "read"; method: "GET"; path: "/api/admin/users/{id}/page" };
  add_user: { params: AddUserParams; result: User; kind: "write"; method: "POST"; path: "/api/admin/users" };
  set_token: { params: SetTokenParams; result: User; kind: "write"; method: "PUT"; path: "/api/admin/users/{id}/token" };
  remove_user: { params: ById; result: Removed; kind: "write"; method: "DELETE"; path: "/api/admin/users/{id}" };
  check_user: { params: ById; result: TokenCheck; kind: "write"; method: "POST"; path: "/api/admin/users/{id}/check" };
  sync_user: { params: ById; result: SyncRequested; kind: "write"; method: "POST"; path: "/api/admin/users/{id}/sync" };
  daily_syncs: { params: LimitParams; result: Array<DailySyncProgress>; kind: "read"; method: "GET"; path: "/api/admin/daily-syncs" };
  daily_sync: { params: ById; result: DailySyncDetail; kind: "read"; method: "GET"; path: "/api/admin/daily-syncs/{id}" };
  replay_daily_sync: { params: ReplayDailySyncParams; result: SyncRequested; kind: "write"; method: "POST"; path: "/api/admin/daily-syncs/{id}/replay" };
  start_daily_sync: { params: NoParams; result: SyncRequested; kind: "write"; method: "POST"; path: "/api/admin/daily-syncs" };
  event_types: { params: NoParams; result: JsonValue; kind: "read"; method: "GET"; path: "/api/admin/event-types" };
  settings: { params: NoParams; result: ReadwiseSettings; kind: "read"; method: "GET"; path: "/api/admin/settings" };
  set_settings: { params: SettingsParams; result: ReadwiseSettings; kind: "write"; method: "PUT"; path: "/api/admin/settings" };
  audit: { params: AuditParams; result: Array<AuditEntry>; kind: "read"; method: "GET"; path: "/api/admin/audit" };
  keys: { params: NoParams; result: KeysStatus; kind: "read"; method: "GET"; path: "/api/admin/keys" };
  set_key: { params: SetKeyParams; result: KeyChange; kind: "write"; method: "PUT"; path: "/api/admin/keys/{name}" };
  remove_key: { params: KeyParams; result: KeyChange; kind: "write"; method: "DELETE"; path: "/api/admin/keys/{name}" };
  focus_window: { params: NoParams; result: boolean; kind: "write"; method: "POST"; path: "/api/admin/window/focus" };
  diagnostics: { params: NoParams; result: Diagnostics; kind: "read"; method: "GET"; path: "/api/admin/diagnostics" };
}

/** The registry at run time: kind and REST route of each command. */
export const COMMANDS = {
  info: { kind: "read", method: "GET", path: "/api/admin/info" },
  functions: { kind: "read", method: "GET", path: "/api/admin/functions" },
  runs: { kind: "read", method: "GET", path: "/api/admin/runs" },
  run: { kind: "read", method: "GET", path: "/api/admin/runs/{id}" },
  invoke: { kind: "write", method: "POST", path: "/api/admin/functions/{id}/invoke" },
  cancel: { kind: "write", method: "POST", path: "/api/admin/runs/{id}/cancel" },
  rerun: { kind: "write", method: "POST", path: "/api/admin/runs/{id}/rerun" },
  rerun_from: { kind: "write", method: "POST", path: "/api/admin/runs/{id}/rerun-from" },
  search_runs: { kind: "read", method: "GET", path: "/api/admin/search" },
  function_stats: { kind: "read", method: "GET", path: "/api/admin/functions/{id}/stats" },
  cron_fires: { kind: "read", method: "GET", path: "/api/admin/functions/{id}/cron-fires" },
  run_cron: { kind: "write", method: "POST", path: "/api/admin/functions/{id}/run-cron" },
  boots: { kind: "read", method: "GET", path: "/api/admin/boots" },
  apps: { kind: "read", method: "GET", path: "/api/admin/apps" },
  add_app: { kind: "write", method: "POST", path: "/api/admin/apps" },
  sync_app: { kind: "write", method: "POST", path: "/api/admin/apps/sync" },
  remove_app: { kind: "write", method: "POST", path: "/api/admin/apps/remove" },
  events: { kind: "read", method: "GET", path: "/api/admin/events" },
  event: { kind: "read", method: "GET", path: "/api/admin/events/{id}" },
  event_runs: { kind: "read", method: "GET", path: "/api/admin/events/{id}/runs" },
  send_events: { kind: "write", method: "POST", path: "/api/admin/events" },
  replay_event: { kind: "write", method: "POST", path: "/api/admin/events/{id}/replay" },
  users: { kind: "read", method: "GET", path: "/api/admin/users" },
  user: { kind: "read", method: "GET", path: "/api/admin/users/{id}" },
  user_page: { kind: "read", method: "GET", path: "/api/admin/users/{id}/page" },
  add_user: { kind: "write", method: "POST", path: "/api/admin/users" },
  set_token: { kind: "write", method: "PUT", path: "/api/admin/users/{id}/token" },
  remove_user: { kind: "write", method: "DELETE", path: "/api/admin/users/{id}" },
  check_user: { kind: "write", method: "POST", path: "/api/admin/users/{id}/check" },
  sync_user: { kind: "write", method: "POST", path: "/api/admin/users/{id}/sync" },
  daily_syncs: { kind: "read", method: "GET", path: "/api/admin/daily-syncs" },
  daily_sync: { kind: "read", method: "GET", path: "/api/admin/daily-syncs/{id}" },
  replay_daily_sync: { kind: "write", method: "POST", path: "/api/admin/daily-syncs/{id}/replay" },
  start_daily_sync: { kind: "write", method: "POST", path: "/api/admin/daily-syncs" },
  event_types: { kind: "read", method: "GET", path: "/api/admin/event-types" },
  settings: { kind: "read", method: "GET", path: "/api/admin/settings" },
  set_settings: { kind: "write", method: "PUT", path: "/api/admin/settings" },
  audit: { kind: "read", method: "GET", path: "/api/admin/audit" },
  keys: { kind: "read", method: "GET", path: "/api/admin/keys" },
  set_key: { kind: "write", method: "PUT", path: "/api/admin/keys/{name}" },
  remove_key: { kind: "write", method: "DELETE", path: "/api/admin/keys/{name}" },
  focus_window: { kind: "write", method: "POST", path: "/api/admin/window/focus" },
  diagnostics: { kind: "read", method: "GET", path: "/api/admin/diagnostics" },
} as const;

export type CommandName = keyof Commands;
