//! Call requests too large to send whole (Inngest's `use_api`, inngest-protocol.md §1.8):
//! when a run's state (its events and step results) makes the body larger than
//! [`MAX_REQUEST_BYTES`], the request goes with `events` and `steps` empty and `use_api`
//! set (in `ctx` for JS, at the top level for Python), and the SDK fetches them from
//! `GET /v0/runs/{runId}/batch` and `GET /v0/runs/{runId}/actions`.
//!
//! Those routes serve exactly the state the request would have carried, and only while
//! that request is in flight: the driver holds it here for the request's lifetime. A run
//! with no such request gets `410 Gone`, as from Inngest when the state is gone; so these
//! routes never reveal the results of a run that is not executing right now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

/// Inngest's limit (`consts.MaxSDKRequestBodySize`): 4 MiB.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// A run's offloaded state: its events and its steps' memo.
struct State {
    events: Value,
    steps: Value,
}

/// The offloaded state of every run with such a request in flight.
#[derive(Default)]
pub struct Offloaded {
    runs: Mutex<HashMap<String, (usize, Arc<State>)>>,
}

/// Keeps a run's state served while its request is in flight.
pub(crate) struct Held {
    offloaded: Arc<Offloaded>,
    run_id: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut runs = self.offloaded.lock();
        if let Some((n, _)) = runs.get_mut(&self.run_id) {
            *n -= 1;
            if *n == 0 {
                runs.remove(&self.run_id);
            }
        }
    }
}

impl Offloaded {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (usize, Arc<State>)>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves this state for the run until the returned guard is dropped (the newest state
    /// when several requests of the run are in flight: the memo only grows).
    pub(crate) fn hold(
        self: &Arc<Self>,
        run_id: &str,
        events: Vec<Value>,
        steps: Map<String, Value>,
    ) -> Held {
        let state = Arc::new(State {
            events: Value::Array(events),
            steps: Value::Object(steps),
        });
        let mut runs = self.lock();
        let entry = runs.entry(run_id.to_string()).or_insert((0, state.clone()));
        entry.0 += 1;
        entry.1 = state;
        Held {
            offloaded: self.clone(),
            run_id: run_id.to_string(),
        }
    }

    /// `GET /v0/runs/{runId}/batch`: the run's events.
    pub fn events(&self, run_id: &str) -> Option<Value> {
        self.lock().get(run_id).map(|(_, s)| s.events.clone())
    }

    /// `GET /v0/runs/{runId}/actions`: the steps' memo, as the request's `steps`.
    pub fn steps(&self, run_id: &str) -> Option<Value> {
        self.lock().get(run_id).map(|(_, s)| s.steps.clone())
    }
}
