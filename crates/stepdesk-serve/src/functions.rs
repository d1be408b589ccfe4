//! Stepdesk's functions as an Inngest server sees them: composite ids, function configs,
//! and the function ids inside internal events.
//!
//! Inngest names a served function `<app id>-<function id>` everywhere: in `fnId`, in an
//! invoke's `function_id`, and in the `function_id` of `inngest/function.failed`,
//! `.finished` and `.cancelled` events. Stepdesk's functions name each other by their own
//! ids (a failure handler's trigger, `readwise-fetch-books-cancelled`'s expression, a
//! `step.invoke`). So the ids are translated at the boundary, both ways: string literals
//! that are exactly a served function's id, in the expressions of triggers on
//! `inngest/function.*` events, become composite in the configs sent to Inngest; and the
//! composite `data.function_id` of such events becomes the local id again before a body
//! reads it. Bodies and expressions keep working unchanged on either side.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use stepdesk_engine::function::DEFAULT_CANCEL_TIMEOUT;
use stepdesk_engine::{Function, Trigger};
use stepdesk_inngest::duration;
use stepdesk_inngest::serve::function_config;
use stepdesk_inngest::wire::{self, FunctionConfig};

/// The prefix of internal events that name a function in `data.function_id`.
const FUNCTION_EVENTS: &str = "inngest/function.";

/// The served functions' local ids, and how they are named on the Inngest side.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    pub app_id: String,
    pub local: BTreeSet<String>,
}

impl Ids {
    pub fn composite(&self, local: &str) -> String {
        format!("{}-{local}", self.app_id)
    }

    /// The local id of a composite id of this app, if it names a served function.
    pub fn local_of<'a>(&self, composite: &'a str) -> Option<&'a str> {
        composite
            .strip_prefix(self.app_id.as_str())?
            .strip_prefix('-')
            .filter(|id| self.local.contains(*id))
    }

    /// The id to give the Inngest server for a function a body names: composite for a
    /// served one, as is for any other (another app's composite id).
    pub fn outbound(&self, id: &str) -> String {
        if self.local.contains(id) {
            self.composite(id)
        } else {
            id.to_string()
        }
    }

    /// `expression` with every string literal that is exactly a served function's id
    /// replaced by its composite id (both quote styles; CEL has no other way to spell a
    /// literal that needs no escaping, and ids need none).
    pub fn rewrite_expression(&self, expression: &str) -> String {
        let mut out = expression.to_string();
        for id in &self.local {
            for q in ['\'', '"'] {
                out = out.replace(
                    &format!("{q}{id}{q}"),
                    &format!("{q}{}{q}", self.composite(id)),
                );
            }
        }
        out
    }

    /// Turns the composite `data.function_id` of an `inngest/function.*` event of this app
    /// back into the local id.
    pub fn localize_event(&self, event: &mut Value) {
        let is_function_event = event
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.starts_with(FUNCTION_EVENTS));
        if !is_function_event {
            return;
        }
        let Some(id) = event.pointer_mut("/data/function_id") else {
            return;
        };
        if let Some(local) = id.as_str().and_then(|c| self.local_of(c)) {
            *id = Value::String(local.to_string());
        }
    }
}

fn trigger(t: &Trigger, ids: &Ids) -> wire::Trigger {
    match t {
        Trigger::Event { name, expression } => wire::Trigger {
            event: Some(name.clone()),
            expression: expression.as_ref().map(|e| {
                if name.starts_with(FUNCTION_EVENTS) {
                    ids.rewrite_expression(e.source())
                } else {
                    e.source().to_string()
                }
            }),
            ..wire::Trigger::default()
        },
        Trigger::Cron(c) => wire::Trigger::cron(c.text()),
    }
}

/// The config Inngest gets for `f`: its triggers, retries, cancel rules and singleton key,
/// with the one step URL `<serve_url>?fnId=<composite id>&stepId=step`.
pub(crate) fn config_of(f: &Function, ids: &Ids, serve_url: &str) -> FunctionConfig {
    let triggers = f.triggers.iter().map(|t| trigger(t, ids)).collect();
    let mut config = function_config(
        &ids.app_id,
        serve_url,
        &f.id,
        &f.name,
        triggers,
        Some(f.retries),
    );
    config.cancel = f
        .cancel
        .iter()
        .map(|c| wire::CancelRule {
            event: c.event.clone(),
            if_expr: c.expression.as_ref().map(|e| e.source().to_string()),
            // No timeout is Inngest's default (as long as the run); Stepdesk's default says
            // the same thing.
            timeout: (c.timeout != DEFAULT_CANCEL_TIMEOUT).then(|| duration::format(c.timeout)),
        })
        .collect();
    if let Some(key) = &f.singleton_key {
        // Stepdesk runs one run per key at a time and queues the others behind it (it does
        // not drop them, as Inngest's `singleton` does): Inngest's concurrency limit of 1
        // per key.
        let key = key.strip_prefix("event.").unwrap_or(key);
        config.concurrency = Some(json!([{"limit": 1, "key": format!("event.{key}")}]));
    }
    config
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use stepdesk_engine::Registry;

    use super::*;

    fn ids() -> Ids {
        Ids {
            app_id: "stepdesk".into(),
            local: ["readwise-fetch-books", "hello"]
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }

    #[test]
    fn ids_translate_both_ways() {
        let ids = ids();
        assert_eq!(ids.composite("hello"), "stepdesk-hello");
        assert_eq!(ids.local_of("stepdesk-hello"), Some("hello"));
        assert_eq!(ids.local_of("stepdesk-other"), None);
        assert_eq!(ids.local_of("other-hello"), None);
        assert_eq!(ids.outbound("hello"), "stepdesk-hello");
        assert_eq!(ids.outbound("js-app-fn"), "js-app-fn");
        assert_eq!(
            ids.rewrite_expression(
                "event.data.function_id == 'readwise-fetch-books' || event.data.function_id == \"hello\" || event.data.x == 'hello-world'"
            ),
            "event.data.function_id == 'stepdesk-readwise-fetch-books' || event.data.function_id == \"stepdesk-hello\" || event.data.x == 'hello-world'"
        );
        let mut failed =
            json!({"name": "inngest/function.failed", "data": {"function_id": "stepdesk-hello"}});
        ids.localize_event(&mut failed);
        assert_eq!(failed["data"]["function_id"], "hello");
        let mut user = json!({"name": "app/x", "data": {"function_id": "stepdesk-hello"}});
        ids.localize_event(&mut user);
        assert_eq!(user["data"]["function_id"], "stepdesk-hello");
    }

    #[test]
    fn configs_carry_triggers_retries_cancel_and_the_singleton_as_concurrency() {
        let f = Function::builder("hello")
            .name("Hello")
            .on_event_if("app/hello", "event.data.plan == 'pro'")
            .on_cron("TZ=Europe/Paris 0 9 * * *")
            .retries(2)
            .singleton("data.userId")
            .cancel_on(
                "app/cancel",
                Some("event.data.id == async.data.id"),
                Some(Duration::from_secs(3600)),
            )
            .cancel_on("app/stop", None, None)
            .on_failure(|_ctx| async { Ok(()) })
            .handler(|_ctx| async { Ok(()) })
            .unwrap();
        let registry = Registry::new(vec![f]).unwrap();
        let url = "http://127.0.0.1:3000/api/inngest";
        let hello = config_of(registry.get("hello").unwrap(), &ids(), url);
        let v = serde_json::to_value(&hello).unwrap();
        assert_eq!(v["id"], "stepdesk-hello");
        assert_eq!(v["name"], "Hello");
        assert_eq!(
            v["triggers"],
            json!([{"event": "app/hello", "expression": "event.data.plan == 'pro'"},
                   {"cron": "TZ=Europe/Paris 0 9 * * *"}])
        );
        assert_eq!(v["steps"]["step"]["retries"]["attempts"], 2);
        assert_eq!(
            v["steps"]["step"]["runtime"]["url"],
            "http://127.0.0.1:3000/api/inngest?fnId=stepdesk-hello&stepId=step"
        );
        assert_eq!(
            v["cancel"],
            json!([{"event": "app/cancel", "if": "event.data.id == async.data.id", "timeout": "1h"},
                   {"event": "app/stop"}])
        );
        assert_eq!(
            v["concurrency"],
            json!([{"limit": 1, "key": "event.data.userId"}])
        );
        assert!(v.get("singleton").is_none());
        assert!(hello.problems().is_empty(), "{:?}", hello.problems());
        // The failure handler is its own function, triggered by this one's failures under
        // its composite id.
        let mut ids = ids();
        ids.local.insert("hello-failure".into());
        let failure = config_of(registry.get("hello-failure").unwrap(), &ids, url);
        assert_eq!(failure.id, "stepdesk-hello-failure");
        assert_eq!(
            serde_json::to_value(&failure.triggers).unwrap(),
            json!([{"event": "inngest/function.failed", "expression": "event.data.function_id == 'stepdesk-hello'"}])
        );
        assert_eq!(failure.failure_of().as_deref(), Some("stepdesk-hello"));
    }
}
