//! A function's config as an SDK syncs it (protocol §1.7), and its validation.
//!
//! Captures: `js/02_put_sync_out_of_band_dev` and `py/02_put_sync_out_of_band_dev`.
//! `retries.attempts` is a retry COUNT (default 4, so 5 attempts; at most 20). Flow control
//! (concurrency, throttle, …) is kept as the raw JSON the SDK sent: Stepdesk stores and shows
//! it, and enforces it later. Fields this crate does not know are kept in `extra`, so a
//! config serializes back to what the SDK sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::null_default;
use crate::duration;

/// Retries when a function says nothing (Inngest's `DefaultRetryCount`).
pub const DEFAULT_RETRIES: u32 = 4;
/// The most retries a function may ask for.
pub const MAX_RETRIES: u32 = 20;
/// The most triggers a function may have.
pub const MAX_TRIGGERS: usize = 10;
/// The most cancel rules a function may have.
pub const MAX_CANCEL_RULES: usize = 5;
/// The longest event name (and cron expression) a trigger may have.
pub const MAX_NAME_LEN: usize = 255;
/// The event an SDK's failure handler is triggered by.
pub const FUNCTION_FAILED_EVENT: &str = "inngest/function.failed";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionConfig {
    /// The composite id `<appName>-<fnId>`; what `?fnId=` carries.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub triggers: Vec<Trigger>,
    /// Always one entry, `"step"`, for serve apps.
    #[serde(default, deserialize_with = "null_default")]
    pub steps: BTreeMap<String, StepConfig>,
    /// A top-level retry count (`N` or `{"attempts": N}`), used when the steps have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Value>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cancel: Vec<CancelRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Value>,
    #[serde(rename = "rateLimit", default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<Value>,
    #[serde(
        rename = "batchEvents",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub batch_events: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub singleton: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Value>,
    /// Everything else the SDK sent (`checkpoint`, new fields), kept as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An event trigger (`event` + optional `expression`) or a cron trigger (`cron` + optional
/// `jitter`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Trigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// A CEL condition on `event`; JS users write it as `if`.
    #[serde(alias = "if", default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// Five fields, with an optional `TZ=` / `CRON_TZ=` prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<StepRuntime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<StepRetries>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepRuntime {
    /// `"http"`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepRetries {
    /// The number of RETRIES (not attempts), despite the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i64>,
}

/// Cancel the run when `event` arrives and `if` holds (`event` = the trigger, `async` = the
/// incoming event), within `timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CancelRule {
    #[serde(default, deserialize_with = "null_default")]
    pub event: String,
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub if_expr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

impl Trigger {
    pub fn event(name: impl Into<String>) -> Trigger {
        Trigger {
            event: Some(name.into()),
            ..Trigger::default()
        }
    }

    pub fn cron(expr: impl Into<String>) -> Trigger {
        Trigger {
            cron: Some(expr.into()),
            ..Trigger::default()
        }
    }
}

impl FunctionConfig {
    /// The options this function sets that Stepdesk accepts but does not enforce yet (flow
    /// control, idempotency, singleton, timeouts), by their wire names.
    pub fn unenforced(&self) -> Vec<&'static str> {
        [
            ("concurrency", &self.concurrency),
            ("throttle", &self.throttle),
            ("rateLimit", &self.rate_limit),
            ("debounce", &self.debounce),
            ("batchEvents", &self.batch_events),
            ("idempotency", &self.idempotency),
            ("priority", &self.priority),
            ("singleton", &self.singleton),
            ("timeouts", &self.timeouts),
        ]
        .into_iter()
        .filter(|(_, v)| v.as_ref().is_some_and(|v| !v.is_null()))
        .map(|(name, _)| name)
        .collect()
    }

    /// The display name: `name`, or the id when there is none.
    pub fn display_name(&self) -> &str {
        self.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.id)
    }

    /// The `"step"` entry, or the first one.
    fn main_step(&self) -> Option<&StepConfig> {
        self.steps
            .get("step")
            .or_else(|| self.steps.values().next())
    }

    /// The retry count: the step's `retries.attempts`, else the top-level `retries`, else 4;
    /// at most 20.
    pub fn retries(&self) -> u32 {
        let from_step = self.main_step().and_then(|s| s.retries.as_ref()?.attempts);
        let top = || match self.retries.as_ref()? {
            Value::Number(n) => n.as_i64(),
            Value::Object(o) => o.get("attempts")?.as_i64(),
            _ => None,
        };
        match from_step.or_else(top) {
            Some(n) => n.clamp(0, MAX_RETRIES as i64) as u32,
            None => DEFAULT_RETRIES,
        }
    }

    /// Attempts per step (and per discovery): retries + 1. What `ctx.max_attempts` carries.
    pub fn max_attempts(&self) -> u32 {
        self.retries() + 1
    }

    /// The URL to POST call requests to (`…?fnId=<id>&stepId=step`).
    pub fn step_url(&self) -> Option<&str> {
        self.main_step()?.runtime.as_ref()?.url.as_deref()
    }

    /// When this is an SDK's failure handler, the id of the function it handles.
    ///
    /// JS and Python register `onFailure` as a separate function `<id>-failure` triggered by
    /// `inngest/function.failed` with `event.data.function_id == '<id>'`. A user function of
    /// another id with such a trigger is an ordinary function (it runs all the same).
    pub fn failure_of(&self) -> Option<String> {
        let [trigger] = self.triggers.as_slice() else {
            return None;
        };
        if trigger.event.as_deref() != Some(FUNCTION_FAILED_EVENT) {
            return None;
        }
        let expr = trigger.expression.as_deref()?;
        let (lhs, rhs) = expr.split_once("==")?;
        if lhs.trim() != "event.data.function_id" {
            return None;
        }
        let rhs = rhs.trim();
        let target = ['\'', '"'].iter().find_map(|q| {
            rhs.strip_prefix(*q)?
                .strip_suffix(*q)
                .filter(|inner| !inner.contains(*q))
        })?;
        (self.id == format!("{target}-failure")).then(|| target.to_string())
    }

    /// Every problem with this function, one sentence each (without the function's name).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = id_problem(&self.id) {
            out.push(e);
        }
        if self.triggers.is_empty() {
            out.push("no triggers".to_string());
        } else if self.triggers.len() > MAX_TRIGGERS {
            out.push(format!(
                "{} triggers (at most {MAX_TRIGGERS})",
                self.triggers.len()
            ));
        }
        for (i, t) in self.triggers.iter().enumerate() {
            for e in trigger_problems(t) {
                out.push(format!("trigger {}: {e}", i + 1));
            }
        }
        if self.cancel.len() > MAX_CANCEL_RULES {
            out.push(format!(
                "{} cancel rules (at most {MAX_CANCEL_RULES})",
                self.cancel.len()
            ));
        }
        for (i, c) in self.cancel.iter().enumerate() {
            if let Some(e) = event_name_problem(&c.event) {
                out.push(format!("cancel rule {}: {e}", i + 1));
            }
            if let Some(e) = c.timeout.as_deref().and_then(duration_problem) {
                out.push(format!("cancel rule {}: timeout {e}", i + 1));
            }
        }
        // Durations inside the (raw) flow-control settings.
        for (field, value, keys) in [
            ("throttle", &self.throttle, &["period"][..]),
            ("rateLimit", &self.rate_limit, &["period"][..]),
            ("debounce", &self.debounce, &["period", "timeout"][..]),
            ("batchEvents", &self.batch_events, &["timeout"][..]),
            ("timeouts", &self.timeouts, &["start", "finish"][..]),
        ] {
            let Some(Value::Object(o)) = value else {
                continue;
            };
            for key in keys {
                match o.get(*key) {
                    Some(Value::String(s)) => {
                        if let Some(e) = duration_problem(s) {
                            out.push(format!("{field}.{key} {e}"));
                        }
                    }
                    None | Some(Value::Null) => {}
                    Some(other) => {
                        out.push(format!("{field}.{key} must be a duration, not {other}"))
                    }
                }
            }
        }
        out
    }
}

/// A function id may be any text, as on Inngest (`"Send welcome email"`, `"ünïcöde-☃"`),
/// but for control characters (which would reach logs and terminals) and a length limit.
fn id_problem(id: &str) -> Option<String> {
    if id.trim().is_empty() {
        return Some("no id".to_string());
    }
    if id.chars().any(char::is_control) {
        return Some(format!("bad id {id:?}: it contains control characters"));
    }
    if id.chars().count() > MAX_NAME_LEN {
        return Some(format!("bad id: longer than {MAX_NAME_LEN} characters"));
    }
    None
}

fn event_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        Some("no event name".to_string())
    } else if name.chars().count() > MAX_NAME_LEN {
        Some(format!(
            "event name longer than {MAX_NAME_LEN} characters ({})",
            name.chars().count()
        ))
    } else {
        None
    }
}

fn duration_problem(s: &str) -> Option<String> {
    duration::parse(s)
        .err()
        .map(|e| format!("`{s}` is not a duration: {}", e.reason))
}

fn trigger_problems(t: &Trigger) -> Vec<String> {
    let mut out = Vec::new();
    match (&t.event, &t.cron) {
        (Some(_), Some(_)) => out.push("has both an event and a cron".to_string()),
        (None, None) => out.push("has neither an event nor a cron".to_string()),
        (Some(event), None) => {
            out.extend(event_name_problem(event));
            if t.jitter.is_some() {
                out.push("jitter is only for cron triggers".to_string());
            }
        }
        (None, Some(cron)) => {
            out.extend(cron_problem(cron));
            if let Some(j) = &t.jitter {
                match duration::parse(j) {
                    Err(e) => out.push(format!("jitter `{j}` is not a duration: {}", e.reason)),
                    Ok(d) if d.as_secs() < 1 || d.as_secs() > 300 => {
                        out.push(format!("jitter `{j}` must be between 1s and 5m"))
                    }
                    Ok(_) => {}
                }
            }
        }
    }
    out
}

/// Checks a cron expression the way the engine parses it (`stepdesk_engine::cron`): five
/// fields, an optional `TZ=`/`CRON_TZ=` prefix naming an IANA zone.
fn cron_problem(text: &str) -> Option<String> {
    use croner::parser::{CronParser, Seconds};
    if text.chars().count() > MAX_NAME_LEN {
        return Some(format!("cron longer than {MAX_NAME_LEN} characters"));
    }
    let trimmed = text.trim();
    let expr = match trimmed.split_once(char::is_whitespace) {
        Some((first, rest)) if first.starts_with("TZ=") || first.starts_with("CRON_TZ=") => {
            let zone = first.split_once('=').map(|(_, z)| z).unwrap_or_default();
            if zone.parse::<chrono_tz::Tz>().is_err() {
                return Some(format!("bad cron `{text}`: unknown time zone `{zone}`"));
            }
            rest.trim()
        }
        _ => trimmed,
    };
    if expr.split_whitespace().count() != 5 {
        return Some(format!(
            "bad cron `{text}`: expected five fields (minute hour day-of-month month day-of-week)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(expr)
        .err()
        .map(|e| format!("bad cron `{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Value) -> FunctionConfig {
        serde_json::from_value(v).unwrap()
    }

    fn valid() -> Value {
        json!({"id": "app-f", "name": "F", "triggers": [{"event": "app/x"}],
               "steps": {"step": {"id": "step", "name": "step",
                  "runtime": {"type": "http", "url": "http://h/api/inngest?fnId=app-f&stepId=step"}}}})
    }

    #[test]
    fn retries_is_a_count_with_default_and_cap() {
        let mut v = valid();
        assert_eq!(config(v.clone()).retries(), 4);
        assert_eq!(config(v.clone()).max_attempts(), 5);
        v["steps"]["step"]["retries"] = json!({"attempts": 0});
        assert_eq!(config(v.clone()).retries(), 0);
        assert_eq!(config(v.clone()).max_attempts(), 1);
        v["steps"]["step"]["retries"] = json!({"attempts": 50});
        assert_eq!(config(v.clone()).retries(), 20);
        v["steps"]["step"]["retries"] = json!({"attempts": -3});
        assert_eq!(config(v.clone()).retries(), 0);
        // The top-level fallback, as a number or an object.
        v["steps"]["step"]["retries"] = Value::Null;
        v["retries"] = json!(7);
        assert_eq!(config(v.clone()).retries(), 7);
        v["retries"] = json!({"attempts": 2});
        assert_eq!(config(v.clone()).retries(), 2);
        // The step's value wins over the top level.
        v["steps"]["step"]["retries"] = json!({"attempts": 1});
        assert_eq!(config(v).retries(), 1);
    }

    #[test]
    fn step_url_prefers_the_step_entry() {
        let f = config(valid());
        assert_eq!(
            f.step_url(),
            Some("http://h/api/inngest?fnId=app-f&stepId=step")
        );
        let mut v = valid();
        v["steps"] = json!({"other": {"runtime": {"url": "http://o/"}}});
        assert_eq!(config(v).step_url(), Some("http://o/"));
        let mut v = valid();
        v["steps"] = Value::Null;
        assert_eq!(config(v).step_url(), None);
    }

    #[test]
    fn recognises_an_sdk_failure_handler() {
        // The shape inngest-js registers for `onFailure` (its own tests use this exact form).
        let handler = config(json!({
            "id": "testclient-testfn-failure", "name": "testfn (failure)",
            "triggers": [{"event": "inngest/function.failed",
                          "expression": "event.data.function_id == 'testclient-testfn'"}],
            "steps": {"step": {"runtime": {"url": "http://h/?fnId=testclient-testfn-failure&stepId=step"},
                               "retries": {"attempts": 1}}}}));
        assert_eq!(handler.failure_of().as_deref(), Some("testclient-testfn"));
        let mut dq = handler.clone();
        dq.triggers[0].expression = Some("event.data.function_id == \"testclient-testfn\"".into());
        assert_eq!(dq.failure_of().as_deref(), Some("testclient-testfn"));
        // Another id, another event, another expression, or two triggers: not a handler.
        let mut other = handler.clone();
        other.id = "my-own-handler".into();
        assert_eq!(other.failure_of(), None);
        let mut other = handler.clone();
        other.triggers[0].event = Some("inngest/function.finished".into());
        assert_eq!(other.failure_of(), None);
        let mut other = handler.clone();
        other.triggers[0].expression = Some("event.data.function_id != 'testclient-testfn'".into());
        assert_eq!(other.failure_of(), None);
        let mut other = handler.clone();
        other.triggers.push(Trigger::event("x"));
        assert_eq!(other.failure_of(), None);
        assert_eq!(config(valid()).failure_of(), None);
    }

    #[test]
    fn keeps_flow_control_and_unknown_fields_as_sent() {
        let v = json!({
            "id": "app-f", "name": "F",
            "triggers": [{"event": "app/x", "expression": "event.data.plan == 'pro'"},
                         {"cron": "TZ=Europe/Paris 0 9 * * *", "jitter": "30s"}],
            "steps": {"step": {"id": "step", "name": "step",
                "runtime": {"type": "http", "url": "http://h/?fnId=app-f&stepId=step"},
                "retries": {"attempts": 3}}},
            "concurrency": [{"limit": 5, "key": "event.data.userId", "scope": "fn"}],
            "throttle": {"limit": 10, "period": "1m", "burst": 2},
            "rateLimit": {"limit": 1, "period": "4h", "key": "event.data.userId"},
            "debounce": {"period": "30s", "timeout": "5m"},
            "batchEvents": {"maxSize": 100, "timeout": "5s"},
            "idempotency": "event.data.orderId",
            "priority": {"run": "event.data.plan == 'enterprise' ? 120 : 0"},
            "cancel": [{"event": "app/user.deleted", "if": "event.data.userId == async.data.userId", "timeout": "24h"}],
            "singleton": {"key": "event.data.userId", "mode": "skip"},
            "timeouts": {"start": "10s", "finish": "1h"},
            "checkpoint": {"batch_steps": 0, "batch_interval": "3s", "max_runtime": "0s"}
        });
        let f = config(v.clone());
        assert_eq!(f.concurrency, Some(v["concurrency"].clone()));
        assert_eq!(f.rate_limit, Some(v["rateLimit"].clone()));
        assert_eq!(f.batch_events, Some(v["batchEvents"].clone()));
        assert_eq!(
            f.cancel[0].if_expr.as_deref(),
            Some("event.data.userId == async.data.userId")
        );
        assert_eq!(f.extra.get("checkpoint"), Some(&v["checkpoint"]));
        assert_eq!(f.retries(), 3);
        assert!(f.problems().is_empty(), "{:?}", f.problems());
        assert_eq!(serde_json::to_value(&f).unwrap(), v);
    }

    #[test]
    fn an_if_on_a_trigger_is_its_expression() {
        let f = config(json!({"id": "a", "triggers": [{"event": "e", "if": "event.data.x == 1"}]}));
        assert_eq!(
            f.triggers[0].expression.as_deref(),
            Some("event.data.x == 1")
        );
    }

    #[test]
    fn the_options_not_enforced_are_named() {
        let f = config(json!({"id": "a", "triggers": [{"event": "e"}],
            "idempotency": "event.data.user", "concurrency": [{"limit": 1}], "priority": null,
            "timeouts": {"finish": "3s"}}));
        assert_eq!(f.unenforced(), ["concurrency", "idempotency", "timeouts"]);
        let plain = config(json!({"id": "a", "triggers": [{"event": "e"}]}));
        assert!(plain.unenforced().is_empty());
    }

    #[test]
    fn each_problem_gets_its_sentence() {
        let long = "x".repeat(256);
        let cases: Vec<(Value, &str)> = vec![
            (json!({"id": "", "triggers": [{"event": "e"}]}), "no id"),
            (
                json!({"id": "line\nbreak", "triggers": [{"event": "e"}]}),
                "bad id \"line\\nbreak\": it contains control characters",
            ),
            (
                json!({"id": "x".repeat(256), "triggers": [{"event": "e"}]}),
                "bad id: longer than 255 characters",
            ),
            (json!({"id": "a", "triggers": []}), "no triggers"),
            (json!({"id": "a", "triggers": null}), "no triggers"),
            (
                json!({"id": "a", "triggers": vec![json!({"event": "e"}); 11]}),
                "11 triggers (at most 10)",
            ),
            (
                json!({"id": "a", "triggers": [{"event": long}]}),
                "trigger 1: event name longer than 255",
            ),
            (
                json!({"id": "a", "triggers": [{"event": ""}]}),
                "trigger 1: no event name",
            ),
            (
                json!({"id": "a", "triggers": [{}]}),
                "trigger 1: has neither an event nor a cron",
            ),
            (
                json!({"id": "a", "triggers": [{"event": "e", "cron": "* * * * *"}]}),
                "trigger 1: has both",
            ),
            (
                json!({"id": "a", "triggers": [{"cron": "* * *"}]}),
                "trigger 1: bad cron `* * *`: expected five fields",
            ),
            (
                json!({"id": "a", "triggers": [{"cron": "61 * * * *"}]}),
                "trigger 1: bad cron `61 * * * *`",
            ),
            (
                json!({"id": "a", "triggers": [{"cron": "TZ=Mars/Base 0 9 * * *"}]}),
                "unknown time zone `Mars/Base`",
            ),
            (
                json!({"id": "a", "triggers": [{"cron": "0 9 * * *", "jitter": "10m"}]}),
                "jitter `10m` must be between 1s and 5m",
            ),
            (
                json!({"id": "a", "triggers": [{"cron": "0 9 * * *", "jitter": "soon"}]}),
                "jitter `soon` is not a duration",
            ),
            (
                json!({"id": "a", "triggers": [{"event": "e"}], "cancel": vec![json!({"event": "c"}); 6]}),
                "6 cancel rules (at most 5)",
            ),
            (
                json!({"id": "a", "triggers": [{"event": "e"}], "cancel": [{"event": "c", "timeout": "1 day"}]}),
                "cancel rule 1: timeout `1 day` is not a duration",
            ),
            (
                json!({"id": "a", "triggers": [{"event": "e"}], "cancel": [{"timeout": "1d"}]}),
                "cancel rule 1: no event name",
            ),
            (
                json!({"id": "a", "triggers": [{"event": "e"}], "throttle": {"limit": 1, "period": "1q"}}),
                "throttle.period `1q` is not a duration",
            ),
            (
                json!({"id": "a", "triggers": [{"event": "e"}], "debounce": {"period": 30}}),
                "debounce.period must be a duration, not 30",
            ),
        ];
        for (v, expected) in cases {
            let problems = config(v.clone()).problems();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(expected) || p.contains(expected)),
                "{v}: expected `{expected}` in {problems:?}"
            );
        }
    }
}
