//! The call request: the body POSTed to an SDK's step URL to run a function (protocol §1.8).
//!
//! Stepdesk sends it (driving SDK apps) and receives it (serving its own functions to an
//! Inngest server), so it serializes and deserializes. Sent as JCS bytes
//! ([`CallRequest::to_body`]). Captures: `js/20_hello_call1_no_steps` (first call,
//! `version: -1`), `js/21_…` (a memoized step and the stack), `js/28_hello_missing_ctx`
//! (no `ctx` at all: read with defaults), `js/50_flaky_…` (`max_attempts`).
//!
//! `ctx.fn_id` is omitted when `None`: the JS v4 SDK switches to async checkpointing when it
//! is present (§1.13, §7 point 9), which needs the `/v1/checkpoint` endpoint.
//! The top-level `use_api` is always written: Python's model requires it
//! (capture `py/23_hello_without_top_level_use_api`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::null_default;
use crate::stepid;

fn minus_one() -> i64 {
    -1
}

fn discovery() -> String {
    stepid::DISCOVERY.to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRequest {
    /// The triggering event, `events[0]`: `{name, data, user, id, ts, v?}`.
    #[serde(default)]
    pub event: Value,
    /// Every event of the run (several for a batch).
    #[serde(default, deserialize_with = "null_default")]
    pub events: Vec<Value>,
    /// Memoized step results by hashed step id (see [`super::StepMemo`]).
    #[serde(default, deserialize_with = "null_default")]
    pub steps: Map<String, Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub ctx: CallCtx,
    /// `-1` until the SDK has answered with `X-Inngest-Req-Version`, then that value.
    #[serde(default = "minus_one")]
    pub version: i64,
    /// State too large for the body: the SDK fetches it from `/v0/runs/{id}/…`.
    #[serde(default)]
    pub use_api: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCtx {
    /// Leave `None` (see the module comment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fn_id: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub run_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub env: String,
    /// `"step"` for discovery, else the hashed id of the targeted step.
    #[serde(default = "discovery")]
    pub step_id: String,
    /// Zero-based attempt of this queue item (per step; resets for each new step).
    #[serde(default)]
    pub attempt: u32,
    /// Retries + 1. Without it the JS SDK never knows an attempt is the last and never
    /// reports `StepFailed` (capture `js/52_flaky_no_max_attempts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, deserialize_with = "null_default")]
    pub stack: CallStack,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qi_id: Option<String>,
    /// Set while a parallel group is in flight: the SDK plans steps instead of running one.
    #[serde(default)]
    pub disable_immediate_execution: bool,
    #[serde(default)]
    pub use_api: bool,
}

impl Default for CallCtx {
    fn default() -> CallCtx {
        CallCtx {
            fn_id: None,
            run_id: String::new(),
            env: String::new(),
            step_id: discovery(),
            attempt: 0,
            max_attempts: None,
            stack: CallStack::default(),
            qi_id: None,
            disable_immediate_execution: false,
            use_api: false,
        }
    }
}

/// The hashed ids of the memoized steps, in the order they completed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CallStack {
    #[serde(default, deserialize_with = "null_default")]
    pub stack: Vec<String>,
    /// The position after the step that scheduled this request.
    #[serde(default)]
    pub current: u32,
}

impl CallStack {
    /// A stack of `ids` with `current` at its end.
    pub fn of(ids: Vec<String>) -> CallStack {
        CallStack {
            current: ids.len() as u32,
            stack: ids,
        }
    }
}

impl CallRequest {
    /// A request for the run of `events` (the first is `event`), with no memo yet.
    pub fn new(events: Vec<Value>, ctx: CallCtx) -> CallRequest {
        CallRequest {
            event: events.first().cloned().unwrap_or(Value::Null),
            events,
            steps: Map::new(),
            ctx,
            version: -1,
            use_api: false,
        }
    }

    /// Reads a call request body.
    pub fn parse(body: &[u8]) -> Result<CallRequest, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The bytes to send: JCS, as the SDKs verify signatures against.
    pub fn to_body(&self) -> Vec<u8> {
        crate::jcs::canonical_of(self).expect("a CallRequest serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request_of(capture: &str) -> (CallRequest, String) {
        let c: Value = serde_json::from_str(capture).unwrap();
        let raw = c["request"]["body_raw"].as_str().unwrap().to_string();
        (CallRequest::parse(raw.as_bytes()).unwrap(), raw)
    }

    #[test]
    fn round_trips_the_captured_bodies_byte_for_byte() {
        for capture in [
            include_str!("../../tests/fixtures/js/20_hello_call1_no_steps.json"),
            include_str!("../../tests/fixtures/js/21_hello_call2_step1_memoized.json"),
            include_str!("../../tests/fixtures/js/31_sleep_call2_sleep_done.json"),
            include_str!("../../tests/fixtures/js/50_flaky_attempt0_step_throws.json"),
            include_str!(
                "../../tests/fixtures/js/60_hello_with_fn_id_and_qi_id_checkpointing.json"
            ),
            include_str!("../../tests/fixtures/js/63_hello_use_api.json"),
            include_str!("../../tests/fixtures/py/20_hello_call1_no_steps.json"),
        ] {
            let (req, raw) = request_of(capture);
            assert_eq!(String::from_utf8(req.to_body()).unwrap(), raw);
        }
    }

    #[test]
    fn reads_the_fields() {
        let (req, _) = request_of(include_str!(
            "../../tests/fixtures/js/21_hello_call2_step1_memoized.json"
        ));
        assert_eq!(req.version, 2);
        assert_eq!(req.event["name"], "demo/hello");
        assert_eq!(req.events.len(), 1);
        assert_eq!(req.ctx.run_id, "01JRUNHE110000000000000001");
        assert_eq!(req.ctx.step_id, "step");
        assert_eq!(
            req.ctx.stack,
            CallStack::of(vec!["efec2b2037910199abcc3c58998255afa3066709".into()])
        );
        assert_eq!(req.ctx.fn_id, None);
        assert_eq!(req.ctx.max_attempts, None);
        let (req, _) = request_of(include_str!(
            "../../tests/fixtures/js/60_hello_with_fn_id_and_qi_id_checkpointing.json"
        ));
        assert_eq!(
            req.ctx.fn_id.as_deref(),
            Some("6f1d6c2e-0000-4000-8000-000000000001")
        );
        assert_eq!(req.ctx.qi_id.as_deref(), Some("qi-1"));
        let (req, _) = request_of(include_str!(
            "../../tests/fixtures/js/50_flaky_attempt0_step_throws.json"
        ));
        assert_eq!(req.ctx.max_attempts, Some(3));
    }

    #[test]
    fn a_body_without_ctx_gets_defaults() {
        let (req, _) = request_of(include_str!(
            "../../tests/fixtures/js/28_hello_missing_ctx.json"
        ));
        assert_eq!(req.ctx, CallCtx::default());
        assert_eq!(req.ctx.step_id, "step");
        assert!(!req.use_api);
        let bare =
            CallRequest::parse(br#"{"event":{"name":"x"},"ctx":null,"steps":null,"events":null}"#)
                .unwrap();
        assert_eq!(bare.version, -1);
        assert!(bare.steps.is_empty());
    }

    #[test]
    fn omits_fn_id_and_keeps_use_api() {
        let mut ctx = CallCtx {
            run_id: "r".into(),
            max_attempts: Some(5),
            ..CallCtx::default()
        };
        let req = CallRequest::new(vec![json!({"name": "e", "data": {}})], ctx.clone());
        let v: Value = serde_json::from_slice(&req.to_body()).unwrap();
        assert!(v["ctx"].get("fn_id").is_none());
        assert!(v["ctx"].get("qi_id").is_none());
        assert_eq!(v["ctx"]["max_attempts"], 5);
        assert_eq!(v["use_api"], false);
        assert_eq!(v["version"], -1);
        assert_eq!(v["event"], v["events"][0]);
        ctx.fn_id = Some("f".into());
        let v = serde_json::to_value(CallRequest::new(vec![], ctx)).unwrap();
        assert_eq!(v["ctx"]["fn_id"], "f");
    }
}
