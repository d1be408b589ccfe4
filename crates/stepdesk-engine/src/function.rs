//! Functions written in Rust and the registry that matches events and crons to them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::cron::CronSpec;
use crate::error::Error;
use crate::event::{internal, Event};
use crate::expr::{quote, Expr, Var, Vars};
use crate::step::{Ctx, MAX_SUSPEND};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// A function body: called once per execution, replaying memoized steps.
pub type Handler = Arc<dyn Fn(Ctx) -> BoxFuture<Result<Value, Error>> + Send + Sync>;

/// Default retries: 4 retries, so 5 attempts (Inngest's default).
pub const DEFAULT_RETRIES: u32 = 4;
/// Most retries a function may ask for.
pub const MAX_RETRIES: u32 = 20;
/// Most cancellation rules a function may have (Inngest's limit).
pub const MAX_CANCEL_RULES: usize = 5;
/// How long a run can be cancelled by a rule without a timeout: a year, as in Inngest.
pub const DEFAULT_CANCEL_TIMEOUT: Duration = MAX_SUSPEND;

/// What starts a function.
// A function has a handful of triggers: the size of the cron variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Trigger {
    /// An event name, exact or with a trailing wildcard (`app/*`, `app/user.*`), and an
    /// optional expression on the event (`event.data.plan == 'pro'`): a run starts only when
    /// it is true.
    Event {
        name: String,
        expression: Option<Expr>,
    },
    /// A cron schedule.
    Cron(CronSpec),
}

impl Trigger {
    /// Whether an event starts a run. An expression that fails counts as false (logged once
    /// per trigger, see [`Expr::matches`]).
    fn matches(&self, name: &str, event: &Value) -> bool {
        match self {
            Trigger::Event {
                name: pattern,
                expression,
            } => {
                let name_ok = match pattern.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => pattern == name,
                };
                name_ok
                    && expression
                        .as_ref()
                        .is_none_or(|e| e.matches(&Vars::event(event), "trigger"))
            }
            Trigger::Cron(_) => false,
        }
    }

    /// An event trigger with an expression (`event` is the event).
    pub fn event_if(name: impl Into<String>, expression: &str) -> Result<Trigger, String> {
        let name = name.into();
        let expr = Expr::parse(expression).map_err(|e| format!("trigger `{name}`: {e}"))?;
        if expr.reads(Var::Async) {
            return Err(format!(
                "trigger `{name}`: {expression:?} reads `async`; a trigger's expression reads only `event`"
            ));
        }
        Ok(Trigger::Event {
            name,
            expression: Some(expr),
        })
    }
}

/// Cancels a run when a matching event arrives (Inngest's `cancelOn`).
#[derive(Debug, Clone)]
pub struct CancelRule {
    /// The event name (exact).
    pub event: String,
    /// An optional condition: `event` is the run's triggering event, `async` the incoming
    /// one (`event.data.userId == async.data.userId`).
    pub expression: Option<Expr>,
    /// How long after the run starts the rule applies.
    pub timeout: Duration,
}

/// A configuration mistake in a function definition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("function `{function}`: {reason}")]
pub struct ConfigError {
    pub function: String,
    pub reason: String,
}

/// A function registered with the engine.
#[derive(Clone)]
pub struct Function {
    pub id: String,
    pub name: String,
    pub triggers: Vec<Trigger>,
    pub retries: u32,
    pub(crate) handler: Handler,
    pub(crate) on_failure: Option<Handler>,
    /// For a failure handler: the function whose failures it handles.
    pub failure_handler_of: Option<String>,
    /// A dotted path into the triggering event (`data.userId`): at most one run per value
    /// runs at a time; a trigger that arrives while one runs starts no second run.
    pub singleton_key: Option<String>,
    /// Events that cancel a running run of this function.
    pub cancel: Vec<CancelRule>,
    /// Where the function comes from: `None` for Stepdesk's own (compiled-in) functions,
    /// else the source that registered it with [`Engine::sync_functions`](crate::Engine::sync_functions)
    /// (an SDK app's id).
    pub source: Option<String>,
    /// The function's configuration as its source sent it (an SDK app's function config),
    /// kept for the console; the engine does not read it.
    pub config: Option<Value>,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("triggers", &self.triggers)
            .field("retries", &self.retries)
            .field("cancel", &self.cancel)
            .finish()
    }
}

/// Builds a [`Function`].
///
/// ```ignore
/// Function::builder("send-welcome")
///     .name("Send welcome email")
///     .on_event("app/user.created")
///     .retries(3)
///     .handler(|ctx| async move {
///         let user: String = ctx.step.run("load-user", || async { Ok("ada".to_string()) }).await?;
///         Ok(serde_json::json!({ "user": user }))
///     })
/// ```
/// The longest function id, in characters (an SDK function's is `<appId>-<fnId>`).
pub const MAX_ID_CHARS: usize = 255;

pub struct FunctionBuilder {
    id: String,
    name: Option<String>,
    triggers: Vec<Trigger>,
    retries: u32,
    on_failure: Option<Handler>,
    singleton_key: Option<String>,
    cancel: Vec<CancelRule>,
    source: Option<String>,
    config: Option<Value>,
    errors: Vec<String>,
}

impl Function {
    pub fn builder(id: impl Into<String>) -> FunctionBuilder {
        FunctionBuilder {
            id: id.into(),
            name: None,
            triggers: Vec::new(),
            retries: DEFAULT_RETRIES,
            on_failure: None,
            singleton_key: None,
            cancel: Vec::new(),
            source: None,
            config: None,
            errors: Vec::new(),
        }
    }

    pub fn max_attempts(&self) -> u32 {
        self.retries + 1
    }

    pub fn crons(&self) -> impl Iterator<Item = &CronSpec> {
        self.triggers.iter().filter_map(|t| match t {
            Trigger::Cron(c) => Some(c),
            _ => None,
        })
    }

    /// The function's configuration as stored and shown (no code, just what it is).
    pub fn config_json(&self) -> Value {
        let triggers: Vec<Value> = self
            .triggers
            .iter()
            .map(|t| match t {
                Trigger::Event { name, expression } => match expression {
                    Some(e) => json!({"event": name, "expression": e.source()}),
                    None => json!({"event": name}),
                },
                Trigger::Cron(c) => json!({"cron": c.text()}),
            })
            .collect();
        let mut config = json!({
            "id": self.id,
            "name": self.name,
            "triggers": triggers,
            "retries": self.retries,
            "has_failure_handler": self.on_failure.is_some(),
            "failure_handler_of": self.failure_handler_of,
            "singleton": self.singleton_key,
            "cancel": self.cancel.iter().map(|c| json!({
                "event": c.event,
                "if": c.expression.as_ref().map(Expr::source),
                "timeout_ms": c.timeout.as_millis() as u64,
            })).collect::<Vec<_>>(),
        });
        // Only for functions that have them, so a Rust function's configuration stays as
        // it always was.
        if let Some(source) = &self.source {
            config["source"] = json!(source);
        }
        if let Some(raw) = &self.config {
            config["config"] = raw.clone();
        }
        config
    }
}

fn wrap<F, Fut, T>(f: F) -> Handler
where
    F: Fn(Ctx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, Error>> + Send + 'static,
    T: Serialize + 'static,
{
    Arc::new(move |ctx| {
        let fut = f(ctx);
        Box::pin(async move {
            let out = fut.await?;
            serde_json::to_value(out).map_err(|e| {
                Error::non_retriable(format!("the function's output is not JSON: {e}"))
            })
        })
    })
}

impl FunctionBuilder {
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Trigger on an event name (`app/*` wildcards allowed).
    pub fn on_event(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.check_event_name(&name);
        self.triggers.push(Trigger::Event {
            name,
            expression: None,
        });
        self
    }

    /// Trigger on an event name when an expression on the event is true, as Inngest's
    /// trigger `if`/`expression`: `.on_event_if("app/user.created", "event.data.plan == 'pro'")`.
    /// The expression reads `event`; a bad one makes [`FunctionBuilder::handler`] fail.
    pub fn on_event_if(mut self, name: impl Into<String>, expression: &str) -> Self {
        let name = name.into();
        self.check_event_name(&name);
        match Trigger::event_if(name, expression) {
            Ok(t) => self.triggers.push(t),
            Err(e) => self.errors.push(e),
        }
        self
    }

    fn check_event_name(&mut self, name: &str) {
        if name.is_empty() {
            self.errors.push("an event trigger needs a name".into());
        } else if let Some(pos) = name.find('*') {
            let ok = pos == name.len() - 1 && (name.ends_with("/*") || name.ends_with(".*"));
            if !ok {
                self.errors.push(format!(
                    "`{name}`: a wildcard must be the last segment, as in `app/*` or `app/user.*`"
                ));
            }
        }
    }

    /// Cancels a running run when `event` arrives (Inngest's `cancelOn`), optionally only
    /// when `expression` is true: `event` in it is the run's triggering event, `async` the
    /// incoming one (`event.data.userId == async.data.userId`). Only events received after
    /// the run started cancel it, for `timeout` after its start (default and at most a year).
    pub fn cancel_on(
        mut self,
        event: impl Into<String>,
        expression: Option<&str>,
        timeout: Option<Duration>,
    ) -> Self {
        let event = event.into();
        if event.is_empty() {
            self.errors
                .push("a cancellation needs an event name".into());
        } else if event.contains('*') {
            self.errors.push(format!(
                "cancel on `{event}`: a cancellation event is an exact name, without wildcards"
            ));
        }
        let timeout = timeout.unwrap_or(DEFAULT_CANCEL_TIMEOUT);
        if timeout > MAX_SUSPEND {
            self.errors.push(format!(
                "cancel on `{event}`: the timeout is longer than a year"
            ));
        }
        let expression = match expression.map(Expr::parse).transpose() {
            Ok(e) => e,
            Err(e) => {
                self.errors.push(format!("cancel on `{event}`: {e}"));
                None
            }
        };
        self.cancel.push(CancelRule {
            event,
            expression,
            timeout,
        });
        if self.cancel.len() == MAX_CANCEL_RULES + 1 {
            self.errors.push(format!(
                "at most {MAX_CANCEL_RULES} cancellation rules are allowed"
            ));
        }
        self
    }

    /// Trigger on a cron schedule: five fields, optionally prefixed by `TZ=Area/City `.
    pub fn on_cron(mut self, expression: &str) -> Self {
        match CronSpec::parse(expression) {
            Ok(spec) => self.triggers.push(Trigger::Cron(spec)),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// At most one run at a time per value of this event field (e.g. `data.userId`).
    /// Triggers that arrive while a run for the same value is running start no run.
    pub fn singleton(mut self, key_path: impl Into<String>) -> Self {
        let key = key_path.into();
        if key.is_empty() {
            self.errors
                .push("a singleton key needs a field path such as `data.userId`".into());
        }
        self.singleton_key = Some(key);
        self
    }

    /// Where the function comes from (see [`Function::source`]). [`Engine::sync_functions`](crate::Engine::sync_functions)
    /// sets it to the source it syncs.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The configuration as the function's source sent it, shown in the console (see
    /// [`Function::config`]).
    pub fn config(mut self, config: Value) -> Self {
        self.config = Some(config);
        self
    }

    /// Number of retries after the first attempt (default 4, at most 20).
    pub fn retries(mut self, retries: u32) -> Self {
        if retries > MAX_RETRIES {
            self.errors.push(format!(
                "retries is {retries}; at most {MAX_RETRIES} are allowed"
            ));
        }
        self.retries = retries;
        self
    }

    /// A function to run once this one has failed for good. It receives the
    /// `inngest/function.failed` event, whose data holds `function_id`, `run_id`, `error`
    /// and the original `event`.
    pub fn on_failure<F, Fut, T>(mut self, f: F) -> Self
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
        T: Serialize + 'static,
    {
        self.on_failure = Some(wrap(f));
        self
    }

    /// The function body. Finishes the definition.
    pub fn handler<F, Fut, T>(self, f: F) -> Result<Function, ConfigError>
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
        T: Serialize + 'static,
    {
        let mut errors = self.errors;
        // Any text, as an Inngest function id may be (an SDK app's `"Send welcome email"`),
        // but no control characters (logs, terminals) and not blank.
        let id_ok = !self.id.trim().is_empty()
            && self.id.chars().count() <= MAX_ID_CHARS
            && !self.id.chars().any(char::is_control);
        if !id_ok {
            errors.push(format!(
                "the id must be 1-{MAX_ID_CHARS} characters, not blank, without control characters"
            ));
        }
        if self.triggers.is_empty() {
            errors.push("a function needs at least one event or cron trigger".into());
        }
        if let Some(reason) = errors.into_iter().next() {
            return Err(ConfigError {
                function: self.id,
                reason,
            });
        }
        Ok(Function {
            name: self.name.unwrap_or_else(|| self.id.clone()),
            id: self.id,
            triggers: self.triggers,
            retries: self.retries,
            handler: wrap(f),
            on_failure: self.on_failure,
            failure_handler_of: None,
            singleton_key: self.singleton_key,
            cancel: self.cancel,
            source: self.source,
            config: self.config,
        })
    }
}

/// A function that a sync of its source no longer has: it matches no event and no cron,
/// and its runs stay (an in-flight one fails when it next executes).
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedFunction {
    pub id: String,
    pub name: String,
    pub source: Option<String>,
}

/// What [`Engine::sync_functions`](crate::Engine::sync_functions) changed, by function id
/// (failure handlers included), each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// New to the source (or back after being archived).
    pub added: Vec<String>,
    /// The source had them, with another configuration.
    pub updated: Vec<String>,
    /// The source no longer has them.
    pub archived: Vec<String>,
    /// Whether any function was added, updated or archived. The new functions replace the
    /// old ones even when nothing changed (their handlers may differ).
    pub changed: bool,
}

/// All registered functions, indexed for event matching, and the archived ones.
///
/// A registry does not change once built: a sync builds a new one and the engine swaps it
/// in whole, so whoever holds one sees every function of a sync or none.
pub struct Registry {
    functions: Vec<Arc<Function>>,
    by_id: HashMap<String, usize>,
    by_event: HashMap<String, Vec<usize>>,
    wildcards: Vec<usize>,
    archived: HashMap<String, ArchivedFunction>,
}

/// Adds to each function that has a failure handler that handler, as a function
/// `<id>-failure` triggered by `inngest/function.failed` events of its function.
fn expand(functions: Vec<Function>) -> Result<Vec<Function>, ConfigError> {
    let mut all = Vec::new();
    for f in functions {
        if let Some(handler) = f.on_failure.clone() {
            // Inngest's own trigger for a failure handler.
            let trigger = Trigger::event_if(
                internal::FUNCTION_FAILED,
                &format!("event.data.function_id == {}", quote(&f.id)),
            )
            .map_err(|reason| ConfigError {
                function: f.id.clone(),
                reason,
            })?;
            all.push(Function {
                id: format!("{}-failure", f.id),
                name: format!("{} (failure handler)", f.name),
                triggers: vec![trigger],
                retries: 0,
                handler,
                on_failure: None,
                failure_handler_of: Some(f.id.clone()),
                singleton_key: None,
                cancel: Vec::new(),
                source: f.source.clone(),
                config: None,
            });
        }
        all.push(f);
    }
    Ok(all)
}

/// Who owns a function id, for an error message.
fn owner(source: Option<&str>) -> String {
    match source {
        None => "Stepdesk's own functions".to_string(),
        Some(s) => format!("source `{s}`"),
    }
}

impl Registry {
    /// Builds the registry; each failure handler becomes a function `<id>-failure` triggered by
    /// `inngest/function.failed` events of its function.
    pub fn new(functions: Vec<Function>) -> Result<Registry, ConfigError> {
        let all = expand(functions)?.into_iter().map(Arc::new).collect();
        Registry::index(all, HashMap::new())
    }

    fn index(
        all: Vec<Arc<Function>>,
        mut archived: HashMap<String, ArchivedFunction>,
    ) -> Result<Registry, ConfigError> {
        let mut registry = Registry {
            functions: Vec::new(),
            by_id: HashMap::new(),
            by_event: HashMap::new(),
            wildcards: Vec::new(),
            archived: HashMap::new(),
        };
        for f in all {
            if let Some(&other) = registry.by_id.get(&f.id) {
                let other = registry.functions[other].source.as_deref();
                return Err(ConfigError {
                    reason: if other == f.source.as_deref() {
                        "another function has the same id".into()
                    } else {
                        format!("the id is taken by {}", owner(other))
                    },
                    function: f.id.clone(),
                });
            }
            archived.remove(&f.id);
            let index = registry.functions.len();
            registry.by_id.insert(f.id.clone(), index);
            for t in &f.triggers {
                if let Trigger::Event { name, .. } = t {
                    if name.ends_with('*') {
                        registry.wildcards.push(index);
                    } else {
                        registry
                            .by_event
                            .entry(name.clone())
                            .or_default()
                            .push(index);
                    }
                }
            }
            registry.functions.push(f);
        }
        registry.archived = archived;
        Ok(registry)
    }

    /// This registry with `archived` known as archived (those registered are left out).
    pub(crate) fn with_archived(mut self, archived: Vec<ArchivedFunction>) -> Registry {
        for a in archived {
            if !self.by_id.contains_key(&a.id) {
                self.archived.insert(a.id.clone(), a);
            }
        }
        self
    }

    /// A new registry in which `source`'s functions are `functions` (their `source` set to
    /// it): the source's functions missing from them are archived. Refuses a function id
    /// that another source (or Stepdesk's own functions) has.
    pub(crate) fn with_source(
        &self,
        source: &str,
        functions: Vec<Function>,
    ) -> Result<(Registry, SyncReport), ConfigError> {
        if source.is_empty() {
            return Err(ConfigError {
                function: String::new(),
                reason: "a source needs a name (an app id)".into(),
            });
        }
        let mine = |f: &Function| f.source.as_deref() == Some(source);
        let mut new: Vec<Function> = functions;
        for f in &mut new {
            f.source = Some(source.to_string());
        }
        let new = expand(new)?;
        for f in &new {
            if let Some(existing) = self.get(&f.id).filter(|e| !mine(e)) {
                return Err(ConfigError {
                    function: f.id.clone(),
                    reason: format!(
                        "source `{source}` cannot register it: the id is taken by {}",
                        owner(existing.source.as_deref())
                    ),
                });
            }
        }
        let mut report = SyncReport::default();
        for f in &new {
            match self.get(&f.id) {
                None => report.added.push(f.id.clone()),
                Some(old) if old.config_json() != f.config_json() => {
                    report.updated.push(f.id.clone())
                }
                Some(_) => {}
            }
        }
        let mut archived = self.archived.clone();
        for old in self.functions.iter().filter(|f| mine(f)) {
            if !new.iter().any(|f| f.id == old.id) {
                report.archived.push(old.id.clone());
                archived.insert(
                    old.id.clone(),
                    ArchivedFunction {
                        id: old.id.clone(),
                        name: old.name.clone(),
                        source: old.source.clone(),
                    },
                );
            }
        }
        report.added.sort();
        report.updated.sort();
        report.archived.sort();
        report.changed =
            !(report.added.is_empty() && report.updated.is_empty() && report.archived.is_empty());
        let all = self
            .functions
            .iter()
            .filter(|f| !mine(f))
            .cloned()
            .chain(new.into_iter().map(Arc::new))
            .collect();
        Ok((Registry::index(all, archived)?, report))
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Function>> {
        self.by_id.get(id).map(|&i| &self.functions[i])
    }

    /// A function a sync of its source archived (not one that is registered).
    pub fn archived(&self, id: &str) -> Option<&ArchivedFunction> {
        self.archived.get(id)
    }

    /// Why a function id has no registered function, for an error message.
    pub fn missing(&self, id: &str) -> String {
        match self.archived(id) {
            Some(ArchivedFunction {
                source: Some(source),
                ..
            }) => format!("function `{id}` is archived: its source `{source}` no longer has it"),
            Some(_) => format!("function `{id}` is archived"),
            None => format!("function `{id}` is no longer registered"),
        }
    }

    pub fn all(&self) -> &[Arc<Function>] {
        &self.functions
    }

    /// Functions an event triggers, each once.
    pub fn matching(&self, event: &Event, event_json: &Value) -> Vec<&Arc<Function>> {
        let mut out: Vec<usize> = Vec::new();
        let exact = self.by_event.get(&event.name).into_iter().flatten();
        for &i in exact.chain(self.wildcards.iter()) {
            if !out.contains(&i)
                && self.functions[i]
                    .triggers
                    .iter()
                    .any(|t| t.matches(&event.name, event_json))
            {
                out.push(i);
            }
        }
        out.into_iter().map(|i| &self.functions[i]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn noop(id: &str) -> FunctionBuilder {
        Function::builder(id)
    }

    fn build(b: FunctionBuilder) -> Result<Function, ConfigError> {
        b.handler(|_ctx| async { Ok(()) })
    }

    #[test]
    fn an_id_is_any_text_without_control_characters() {
        for ok in [
            "a",
            "Send welcome email",
            "ünïcöde-☃",
            "weird.Fn_ID:v2",
            &"x".repeat(255),
        ] {
            assert!(build(noop(ok).on_event("e")).is_ok(), "{ok:?}");
        }
        for bad in ["", "   ", "tab\there", "nl\n", &"x".repeat(256)] {
            let err = build(noop(bad).on_event("e")).expect_err(bad);
            assert!(err.reason.contains("1-255 characters"), "{bad:?}: {err}");
        }
    }

    fn event(name: &str, data: Value) -> (Event, Value) {
        let e = Event {
            name: name.into(),
            data: data.as_object().cloned().unwrap_or_default(),
            user: Map::new(),
            id: "x".into(),
            ts: 0,
            v: None,
        };
        let j = serde_json::to_value(&e).unwrap();
        (e, j)
    }

    #[test]
    fn matches_exact_names_and_wildcards() {
        let reg = Registry::new(vec![
            build(noop("exact").on_event("app/user.created")).unwrap(),
            build(noop("all-app").on_event("app/*")).unwrap(),
            build(noop("users").on_event("app/user.*")).unwrap(),
            build(noop("other").on_event("billing/paid")).unwrap(),
        ])
        .unwrap();
        let (e, j) = event("app/user.created", json!({}));
        let mut ids: Vec<_> = reg.matching(&e, &j).iter().map(|f| f.id.clone()).collect();
        ids.sort();
        assert_eq!(ids, vec!["all-app", "exact", "users"]);
        let (e, j) = event("app/order.placed", json!({}));
        let ids: Vec<_> = reg.matching(&e, &j).iter().map(|f| f.id.clone()).collect();
        assert_eq!(ids, vec!["all-app"]);
        let (e, j) = event("apple/x", json!({}));
        assert!(reg.matching(&e, &j).is_empty());
    }

    #[test]
    fn failure_handlers_match_only_their_function() {
        let reg = Registry::new(vec![
            noop("a")
                .on_event("x")
                .on_failure(|_c| async { Ok(()) })
                .handler(|_c| async { Ok(()) })
                .unwrap(),
            build(noop("b").on_event("y")).unwrap(),
        ])
        .unwrap();
        assert!(reg.get("a-failure").is_some());
        let (e, j) = event(internal::FUNCTION_FAILED, json!({"function_id": "a"}));
        let ids: Vec<_> = reg.matching(&e, &j).iter().map(|f| f.id.clone()).collect();
        assert_eq!(ids, vec!["a-failure"]);
        let (e, j) = event(internal::FUNCTION_FAILED, json!({"function_id": "b"}));
        assert!(reg.matching(&e, &j).is_empty());
    }

    #[test]
    fn rejects_bad_definitions() {
        let cases = [
            (build(noop("")), "id"),
            (build(noop("x")), "at least one"),
            (build(noop("x").on_event("a").retries(21)), "at most 20"),
            (build(noop("x").on_event("a/*/b")), "wildcard"),
            (build(noop("x").on_cron("61 * * * *")), "cron"),
        ];
        for (result, expected) in cases {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        let dup = Registry::new(vec![
            build(noop("x").on_event("a")).unwrap(),
            build(noop("x").on_event("b")).unwrap(),
        ]);
        assert!(dup.is_err());
    }

    #[test]
    fn trigger_expressions_filter_events() {
        let reg = Registry::new(vec![
            build(noop("pro").on_event_if("app/user.created", "event.data.plan == 'pro'")).unwrap(),
            build(noop("big").on_event_if("app/*", "event.data.seats >= 10")).unwrap(),
        ])
        .unwrap();
        let ids = |data: Value| {
            let (e, j) = event("app/user.created", data);
            let mut ids: Vec<_> = reg.matching(&e, &j).iter().map(|f| f.id.clone()).collect();
            ids.sort();
            ids
        };
        assert_eq!(
            ids(json!({"plan": "pro", "seats": 10.0})),
            vec!["big", "pro"]
        );
        assert_eq!(
            ids(json!({"plan": "free", "seats": 3})),
            Vec::<String>::new()
        );
        // A missing field is null, and a failing expression is no match, not a panic.
        assert_eq!(ids(json!({})), Vec::<String>::new());
        assert_eq!(ids(json!({"plan": "pro", "seats": "many"})), vec!["pro"]);
        let f = reg.get("pro").unwrap();
        assert_eq!(
            f.config_json()["triggers"][0]["expression"],
            json!("event.data.plan == 'pro'")
        );
    }

    #[test]
    fn bad_expressions_and_cancel_rules_fail_the_build() {
        let cases = [
            (
                build(noop("x").on_event_if("a", "event.data.plan = 'pro'")),
                "trigger `a`: expression `event.data.plan = 'pro'`: syntax error",
            ),
            (
                build(noop("x").on_event_if("a", "evnt.data.plan == 'pro'")),
                "unknown name `evnt`",
            ),
            (
                build(noop("x").on_event_if("a", "async.data.id == event.data.id")),
                "reads only `event`",
            ),
            (
                build(
                    noop("x")
                        .on_event("a")
                        .cancel_on("b", Some("event.data.id =="), None),
                ),
                "cancel on `b`: expression `event.data.id ==`: syntax error",
            ),
            (
                build(noop("x").on_event("a").cancel_on("b/*", None, None)),
                "without wildcards",
            ),
            (
                build(noop("x").on_event("a").cancel_on(
                    "b",
                    None,
                    Some(Duration::from_secs(400 * 24 * 3600)),
                )),
                "longer than a year",
            ),
            (
                build((0..6).fold(noop("x").on_event("a"), |b, i| {
                    b.cancel_on(format!("c{i}"), None, None)
                })),
                "at most 5 cancellation rules",
            ),
        ];
        for (result, expected) in cases {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        let ok = build(noop("x").on_event("a").cancel_on(
            "app/user.deleted",
            Some("event.data.userId == async.data.userId"),
            Some(Duration::from_secs(3600)),
        ))
        .unwrap();
        assert_eq!(
            ok.config_json()["cancel"],
            json!([{"event": "app/user.deleted", "if": "event.data.userId == async.data.userId", "timeout_ms": 3_600_000}])
        );
    }

    #[test]
    fn defaults_to_four_retries() {
        let f = build(noop("x").on_event("a")).unwrap();
        assert_eq!(f.retries, 4);
        assert_eq!(f.max_attempts(), 5);
    }
}
