//! Ops: what an SDK answers a call request with in a 206 (protocol §1.10, §7 point 4).
//!
//! Op names are parsed case-insensitively (`AIGateway` == `AiGateway`); a name this crate
//! does not know is kept as [`Opcode::Unknown`], never an error. SDKs add fields of their
//! own (capture `js/61_hello_with_fn_id_without_qi_id`: `rawArgs`, `promise`, …) and Python
//! sends `"opts": null` (`py/20_hello_call1_no_steps`); both are fine.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::null_default;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Opcode {
    None,
    /// Legacy (v0) step result, `data` possibly pre-wrapped.
    Step,
    StepRun,
    StepError,
    StepPlanned,
    Sleep,
    WaitForEvent,
    InvokeFunction,
    AiGateway,
    Gateway,
    WaitForSignal,
    RunComplete,
    StepFailed,
    SyncRunComplete,
    DiscoveryRequest,
    DeferAdd,
    DeferAbort,
    /// A name this crate does not know, as sent.
    Unknown(String),
}

const NAMES: [(Opcode, &str); 17] = [
    (Opcode::None, "None"),
    (Opcode::Step, "Step"),
    (Opcode::StepRun, "StepRun"),
    (Opcode::StepError, "StepError"),
    (Opcode::StepPlanned, "StepPlanned"),
    (Opcode::Sleep, "Sleep"),
    (Opcode::WaitForEvent, "WaitForEvent"),
    (Opcode::InvokeFunction, "InvokeFunction"),
    (Opcode::AiGateway, "AIGateway"),
    (Opcode::Gateway, "Gateway"),
    (Opcode::WaitForSignal, "WaitForSignal"),
    (Opcode::RunComplete, "RunComplete"),
    (Opcode::StepFailed, "StepFailed"),
    (Opcode::SyncRunComplete, "SyncRunComplete"),
    (Opcode::DiscoveryRequest, "DiscoveryRequest"),
    (Opcode::DeferAdd, "DeferAdd"),
    (Opcode::DeferAbort, "DeferAbort"),
];

impl Opcode {
    /// Reads an op name, ignoring case.
    pub fn parse(name: &str) -> Opcode {
        NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name.trim()))
            .map(|(op, _)| op.clone())
            .unwrap_or_else(|| Opcode::Unknown(name.to_string()))
    }

    /// The canonical name (`"StepRun"`, `"AIGateway"`); an unknown op's name as sent.
    pub fn name(&self) -> &str {
        match self {
            Opcode::Unknown(s) => s,
            known => NAMES
                .iter()
                .find(|(op, _)| op == known)
                .map(|(_, n)| *n)
                .unwrap_or_default(),
        }
    }

    /// Ops applied before the others of the same answer, so a `[WaitForEvent, send]` pair
    /// cannot miss the event it waits for (Inngest's `OpcodeIsPriority`).
    pub fn is_priority(&self) -> bool {
        matches!(
            self,
            Opcode::WaitForEvent | Opcode::DeferAdd | Opcode::DeferAbort
        )
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Opcode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Opcode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Opcode, D::Error> {
        // Go's enum is numbered too; accept a number for the known ones.
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Opcode::parse(&s)),
            Value::Number(n) => Ok(n
                .as_u64()
                .and_then(|i| NAMES.get(i as usize))
                .map(|(op, _)| op.clone())
                .unwrap_or_else(|| Opcode::Unknown(n.to_string()))),
            other => Ok(Opcode::Unknown(other.to_string())),
        }
    }
}

/// The user's own step id and its repeat index.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Userland {
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// The hashed step id.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    pub op: Opcode,
    /// The step's name; for JS `Sleep` the duration, for `WaitForEvent` the event name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        rename = "displayName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opts: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userland: Option<Userland>,
    /// `{"a": start ns, "b": duration ns}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// What a `WaitForEvent` op waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitSpec {
    pub event: String,
    /// A duration; empty or missing expires at once (as Inngest does).
    pub timeout: Option<String>,
    /// CEL over `event` (the run's trigger) and `async` (the incoming event).
    pub if_expr: Option<String>,
}

/// What an `InvokeFunction` op invokes.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeSpec {
    /// The composite id `<app>-<fn>`.
    pub function_id: String,
    /// `{"data": …, "user"?: …, "v"?: …}`.
    pub payload: Value,
    pub timeout: Option<String>,
}

impl Op {
    /// A bare op of kind `op` for step `id`.
    pub fn new(op: Opcode, id: impl Into<String>) -> Op {
        Op {
            id: id.into(),
            op,
            name: None,
            display_name: None,
            opts: None,
            data: None,
            error: None,
            userland: None,
            timing: None,
            metadata: None,
        }
    }

    fn opt_str(&self, key: &str) -> Option<&str> {
        self.opts.as_ref()?.get(key)?.as_str()
    }

    /// The user's step id: `userland.id`, else `displayName`, else `name`.
    pub fn user_id(&self) -> Option<&str> {
        self.userland
            .as_ref()
            .map(|u| u.id.as_str())
            .filter(|s| !s.is_empty())
            .or(self.display_name.as_deref())
            .or(self.name.as_deref())
    }

    /// For a `WaitForEvent` op: the event (JS/Python put it in `name`, the spec and the Rust
    /// SDK in `opts.event`), `opts.timeout` and `opts.if`.
    pub fn wait_for_event(&self) -> Option<WaitSpec> {
        if self.op != Opcode::WaitForEvent {
            return None;
        }
        let event = self.opt_str("event").or(self.name.as_deref())?;
        Some(WaitSpec {
            event: event.to_string(),
            timeout: self.opt_str("timeout").map(str::to_string),
            if_expr: self.opt_str("if").map(str::to_string),
        })
    }

    /// For an `InvokeFunction` op: `opts.function_id`, `opts.payload`, `opts.timeout`.
    pub fn invoke(&self) -> Option<InvokeSpec> {
        if self.op != Opcode::InvokeFunction {
            return None;
        }
        Some(InvokeSpec {
            function_id: self.opt_str("function_id")?.to_string(),
            payload: self
                .opts
                .as_ref()?
                .get("payload")
                .cloned()
                .unwrap_or(Value::Null),
            timeout: self.opt_str("timeout").map(str::to_string),
        })
    }
}

/// Puts the priority ops (`WaitForEvent`, defers) first, keeping the order otherwise.
pub fn priority_first(ops: &mut [Op]) {
    ops.sort_by_key(|op| !op.op.is_priority());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops_of(capture: &str) -> Vec<Op> {
        let c: Value = serde_json::from_str(capture).unwrap();
        serde_json::from_str(c["response"]["body_raw"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn op_names_ignore_case_and_unknown_ones_are_kept() {
        assert_eq!(Opcode::parse("AIGateway"), Opcode::AiGateway);
        assert_eq!(Opcode::parse("AiGateway"), Opcode::AiGateway);
        assert_eq!(Opcode::parse("steprun"), Opcode::StepRun);
        assert_eq!(Opcode::parse("STEPFAILED"), Opcode::StepFailed);
        assert_eq!(
            Opcode::parse("StepNotFound"),
            Opcode::Unknown("StepNotFound".into())
        );
        assert_eq!(Opcode::AiGateway.name(), "AIGateway");
        let op: Op = serde_json::from_value(json!({"id": "x", "op": "Teleport"})).unwrap();
        assert_eq!(op.op, Opcode::Unknown("Teleport".into()));
        assert_eq!(
            serde_json::to_value(&op).unwrap(),
            json!({"id": "x", "op": "Teleport"})
        );
        let op: Op = serde_json::from_value(json!({"id": "x", "op": 2})).unwrap();
        assert_eq!(op.op, Opcode::StepRun);
    }

    #[test]
    fn reads_the_captured_ops() {
        let run = &ops_of(include_str!(
            "../../tests/fixtures/js/20_hello_call1_no_steps.json"
        ))[0];
        assert_eq!(run.op, Opcode::StepRun);
        assert_eq!(run.id, "efec2b2037910199abcc3c58998255afa3066709");
        assert_eq!(run.data, Some(json!({"greeting": "hello world"})));
        assert_eq!(run.user_id(), Some("first-step"));
        let py = &ops_of(include_str!(
            "../../tests/fixtures/py/20_hello_call1_no_steps.json"
        ))[0];
        assert_eq!(py.op, Opcode::StepRun);
        assert_eq!(py.opts, None);
        assert_eq!(
            py.userland,
            Some(Userland {
                id: "first-step".into(),
                index: None
            })
        );
        let planned = &ops_of(include_str!(
            "../../tests/fixtures/js/24_hello_disable_immediate_execution.json"
        ))[0];
        assert_eq!(planned.op, Opcode::StepPlanned);
        let err = &ops_of(include_str!(
            "../../tests/fixtures/js/50_flaky_attempt0_step_throws.json"
        ))[0];
        assert_eq!(err.op, Opcode::StepError);
        assert_eq!(err.error.as_ref().unwrap()["message"], "boom on attempt 0");
        let junk = &ops_of(include_str!(
            "../../tests/fixtures/js/61_hello_with_fn_id_without_qi_id.json"
        ))[0];
        assert_eq!(junk.op, Opcode::StepRun);
        let done = &ops_of(include_str!(
            "../../tests/fixtures/js/60_hello_with_fn_id_and_qi_id_checkpointing.json"
        ))[0];
        assert_eq!(done.op, Opcode::RunComplete);
        assert_eq!(done.id, crate::stepid::hash("complete"));
    }

    #[test]
    fn wait_for_event_reads_name_or_opts() {
        let wait = &ops_of(include_str!("../../tests/fixtures/js/40_wait_call1.json"))[0];
        assert_eq!(
            wait.wait_for_event(),
            Some(WaitSpec {
                event: "demo/approved".into(),
                timeout: Some("1h".into()),
                if_expr: Some("event.data.id == async.data.id".into()),
            })
        );
        let rust_sdk: Op = serde_json::from_value(json!({
            "id": "h", "op": "WaitForEvent", "name": "wait-approval",
            "opts": {"event": "demo/approved", "timeout": "2h"}}))
        .unwrap();
        assert_eq!(rust_sdk.wait_for_event().unwrap().event, "demo/approved");
        assert_eq!(rust_sdk.wait_for_event().unwrap().if_expr, None);
        assert_eq!(Op::new(Opcode::StepRun, "x").wait_for_event(), None);
    }

    #[test]
    fn invoke_reads_its_opts() {
        let op: Op = serde_json::from_value(json!({
            "id": "h", "op": "InvokeFunction", "name": "call-child",
            "opts": {"function_id": "app-child", "payload": {"data": {"x": 1}}, "timeout": "1h"}}))
        .unwrap();
        assert_eq!(
            op.invoke(),
            Some(InvokeSpec {
                function_id: "app-child".into(),
                payload: json!({"data": {"x": 1}}),
                timeout: Some("1h".into()),
            })
        );
        let no_fn: Op =
            serde_json::from_value(json!({"id": "h", "op": "InvokeFunction", "opts": {}})).unwrap();
        assert_eq!(no_fn.invoke(), None);
    }

    #[test]
    fn priority_ops_go_first_and_the_rest_keep_their_order() {
        let mut ops = vec![
            Op::new(Opcode::StepPlanned, "a"),
            Op::new(Opcode::Sleep, "b"),
            Op::new(Opcode::WaitForEvent, "c"),
            Op::new(Opcode::StepPlanned, "d"),
            Op::new(Opcode::DeferAdd, "e"),
        ];
        priority_first(&mut ops);
        let ids: Vec<&str> = ops.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["c", "e", "a", "b", "d"]);
    }
}
