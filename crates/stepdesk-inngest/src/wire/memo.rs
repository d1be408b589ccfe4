//! How each kind of step result is kept in a call request's `steps` map (protocol §7 point 3).
//!
//! | step | memo |
//! |---|---|
//! | `step.run` done (`StepRun`) | `{"data": x}` |
//! | step failed for good (`StepFailed`) | `{"error": e}` |
//! | `sleep` | `null` |
//! | `waitForEvent` | the bare event, or `null` on timeout |
//! | `invoke` | `{"data": result}` or `{"error": e}` |
//! | rerun with edited input | `{"input": [...]}` |
//!
//! Reading a memo back (Stepdesk as an SDK) follows the JS SDK's `stepSchema`: an object with
//! exactly `data` (or `error`, or `input`), optionally with a matching `type`, is that
//! wrapper; anything else, `null` and bare events included, is the data itself. Captures:
//! `js/21_…` (`{"data":…,"type":"data"}`), `js/23_hello_steps_bare_values` (bare values),
//! `js/31_sleep_call2_sleep_done` (`null`), `js/41_wait_call2_event_arrived`,
//! `js/54_flaky_step_error_memoized` (`{"error":…,"type":"error"}`).

use serde_json::{json, Map, Value};

use super::op::{Op, Opcode};

/// A memoized step result, as an SDK reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum StepMemo {
    /// The step's value (a `step.run` result, a matched event, `null` for a sleep).
    Data(Value),
    /// The step failed for good; the SDK throws this error into the function.
    Error(Value),
    /// A rerun with edited input: the step's arguments.
    Input(Value),
}

impl StepMemo {
    /// `{"data": value}`: a finished `step.run`, or a finished `invoke`.
    pub fn data(value: Value) -> Value {
        json!({ "data": value })
    }

    /// `{"error": error}`: a step that failed for good, or a failed `invoke`.
    pub fn error(error: Value) -> Value {
        json!({ "error": error })
    }

    /// `null`: a sleep that has ended.
    pub fn sleep() -> Value {
        Value::Null
    }

    /// The matched event as is, or `null` when the wait timed out.
    pub fn wait(event: Option<Value>) -> Value {
        event.unwrap_or(Value::Null)
    }

    /// The memo of an `invoke` whose child run did not finish in time.
    pub fn invoke_timeout() -> Value {
        StepMemo::error(json!({
            "name": "InngestInvokeTimeoutError",
            "message": "Timed out waiting for invoked function to complete",
        }))
    }

    /// `{"input": args}`: a rerun of a step with edited arguments.
    pub fn input(args: Vec<Value>) -> Value {
        json!({ "input": args })
    }

    /// The memo a step op leaves, when it leaves one: `StepRun` → `{"data"}` (a missing
    /// `data` is `null`), `StepFailed` → `{"error"}`, legacy `Step` → its `data` as sent.
    /// Other ops are memoized later (sleep end, event, invoke result) or not at all.
    pub fn for_op(op: &Op) -> Option<Value> {
        match op.op {
            Opcode::StepRun => Some(StepMemo::data(op.data.clone().unwrap_or(Value::Null))),
            Opcode::StepFailed => {
                Some(StepMemo::error(op.error.clone().unwrap_or_else(
                    || json!({"name": "Error", "message": "the step failed"}),
                )))
            }
            Opcode::Step => Some(op.data.clone().unwrap_or(Value::Null)),
            _ => None,
        }
    }

    /// Reads a memo the way the JS SDK does (see the module comment).
    pub fn parse(value: &Value) -> StepMemo {
        if let Value::Object(o) = value {
            for (key, make) in [
                ("data", StepMemo::Data as fn(Value) -> StepMemo),
                ("error", StepMemo::Error),
                ("input", StepMemo::Input),
            ] {
                if let Some(inner) = wrapped(o, key) {
                    return make(inner.clone());
                }
            }
        }
        StepMemo::Data(value.clone())
    }

    /// The memo's JSON form (`{"data"}`, `{"error"}`, `{"input"}`).
    pub fn to_value(&self) -> Value {
        match self {
            StepMemo::Data(v) => StepMemo::data(v.clone()),
            StepMemo::Error(e) => StepMemo::error(e.clone()),
            StepMemo::Input(i) => json!({ "input": i }),
        }
    }
}

/// `o[key]` when `o` is exactly `{key}` or `{key, "type": key}`.
fn wrapped<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let inner = o.get(key)?;
    let others_ok = o
        .iter()
        .all(|(k, v)| k == key || (k == "type" && v.as_str() == Some(key)));
    others_ok.then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps_of(capture: &str) -> Map<String, Value> {
        let c: Value = serde_json::from_str(capture).unwrap();
        let body: Value = serde_json::from_str(c["request"]["body_raw"].as_str().unwrap()).unwrap();
        body["steps"].as_object().unwrap().clone()
    }

    #[test]
    fn writes_each_kind_of_memo() {
        assert_eq!(StepMemo::data(json!(1)), json!({"data": 1}));
        assert_eq!(
            StepMemo::error(json!({"message": "x"})),
            json!({"error": {"message": "x"}})
        );
        assert_eq!(StepMemo::sleep(), Value::Null);
        assert_eq!(StepMemo::wait(None), Value::Null);
        assert_eq!(
            StepMemo::wait(Some(json!({"name": "e"}))),
            json!({"name": "e"})
        );
        assert_eq!(
            StepMemo::input(vec![json!(1), json!("a")]),
            json!({"input": [1, "a"]})
        );
        assert_eq!(
            StepMemo::invoke_timeout()["error"]["name"],
            "InngestInvokeTimeoutError"
        );
    }

    #[test]
    fn memo_of_the_captured_ops() {
        let c: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/js/20_hello_call1_no_steps.json"
        ))
        .unwrap();
        let ops: Vec<Op> =
            serde_json::from_str(c["response"]["body_raw"].as_str().unwrap()).unwrap();
        // The memo the next call of the capture series (js/22) carried for this step.
        assert_eq!(
            StepMemo::for_op(&ops[0]),
            Some(json!({"data": {"greeting": "hello world"}}))
        );
        let c: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/py/51_flaky_final_attempt.json"
        ))
        .unwrap();
        let ops: Vec<Op> =
            serde_json::from_str(c["response"]["body_raw"].as_str().unwrap()).unwrap();
        assert_eq!(
            StepMemo::for_op(&ops[0]).unwrap()["error"]["name"],
            "ValueError"
        );
        assert_eq!(
            StepMemo::for_op(&Op::new(Opcode::StepRun, "x")),
            Some(json!({"data": null}))
        );
        assert_eq!(StepMemo::for_op(&Op::new(Opcode::Sleep, "x")), None);
    }

    #[test]
    fn reads_memos_like_the_js_sdk() {
        let s = steps_of(include_str!(
            "../../tests/fixtures/js/21_hello_call2_step1_memoized.json"
        ));
        assert_eq!(
            StepMemo::parse(&s["efec2b2037910199abcc3c58998255afa3066709"]),
            StepMemo::Data(json!({"greeting": "hello world"}))
        );
        let s = steps_of(include_str!(
            "../../tests/fixtures/js/23_hello_steps_bare_values.json"
        ));
        for v in s.values() {
            assert_eq!(StepMemo::parse(v), StepMemo::Data(v.clone()));
        }
        let s = steps_of(include_str!(
            "../../tests/fixtures/js/31_sleep_call2_sleep_done.json"
        ));
        assert_eq!(
            StepMemo::parse(&s["daaad336276d15594d0e765f96c17cd746bf4971"]),
            StepMemo::Data(Value::Null)
        );
        let s = steps_of(include_str!(
            "../../tests/fixtures/js/54_flaky_step_error_memoized.json"
        ));
        assert_eq!(
            StepMemo::parse(s.values().next().unwrap()),
            StepMemo::Error(json!({"message": "boom on attempt 0", "name": "Error"}))
        );
        // A bare event has `data` beside other keys: it is the data itself.
        let event =
            json!({"name": "demo/approved", "data": {"id": "abc"}, "id": "e", "ts": 1, "user": {}});
        assert_eq!(StepMemo::parse(&event), StepMemo::Data(event.clone()));
        assert_eq!(
            StepMemo::parse(&json!({"input": [1]})),
            StepMemo::Input(json!([1]))
        );
        // A mismatched type is not a wrapper.
        let odd = json!({"data": 1, "type": "error"});
        assert_eq!(StepMemo::parse(&odd), StepMemo::Data(odd.clone()));
        for m in [
            StepMemo::Data(json!(1)),
            StepMemo::Error(json!({"m": 1})),
            StepMemo::Input(json!([])),
        ] {
            assert_eq!(StepMemo::parse(&m.to_value()), m);
        }
    }
}
