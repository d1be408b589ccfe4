//! The server → SDK requests of the captures (`stepdesk-inngest/tests/fixtures`), replayed
//! against `/api/inngest` serving the Rust twins of the captured app's functions: each
//! answer must have the status, ops, values, errors and retry headers the official SDKs
//! answered with. Cloud-mode captures are re-signed now with the captures' key (their own
//! signatures are checked at capture time by `stepdesk-inngest`'s sign tests).

mod common;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use serde_json::{json, Value};
use stepdesk_inngest::duration;
use stepdesk_inngest::sign;
use stepdesk_inngest::wire::Op;
use stepdesk_serve::{ServeConfig, Served};
use tower::ServiceExt;

use common::{capture, peers_demo, stand_in, KEY};

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn ops(&self) -> Vec<Op> {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn served(mode_dev: bool, api: &str) -> Router {
    let mut config = ServeConfig::dev(api);
    config.app_id = "peers-demo".into();
    if !mode_dev {
        config.mode = stepdesk_serve::Mode::Cloud;
        config.signing_key = Some(KEY.into());
    }
    Served::new(config, peers_demo()).unwrap().router()
}

async fn send(
    router: &Router,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Answer {
    // The captures' URLs are absolute (`http://127.0.0.1:3939/api/inngest?…`).
    let (host, path) = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(h, p)| (h.to_string(), format!("/{p}")))
        .unwrap_or_else(|| ("127.0.0.1".into(), url.to_string()));
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// Replays a capture's request (its own headers, none of them signatures).
async fn replay(router: &Router, c: &Value) -> Answer {
    let req = &c["request"];
    let headers: Vec<(&str, String)> = req["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("x-inngest-signature"))
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap().to_string()))
        .collect();
    send(
        router,
        req["method"].as_str().unwrap(),
        req["url"].as_str().unwrap(),
        &headers,
        req["body_raw"].as_str().unwrap(),
    )
    .await
}

fn their_header<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    c["response"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .and_then(|h| h[1].as_str())
}

fn their_body(c: &Value) -> Value {
    serde_json::from_str(c["response"]["body_raw"].as_str().unwrap()).unwrap()
}

/// Every answer is an SDK's: `X-Inngest-SDK` and the execution version.
fn assert_sdk_answer(ours: &Answer, what: &str) {
    assert!(
        ours.header("x-inngest-sdk")
            .is_some_and(|v| v.starts_with("stepdesk:v")),
        "{what}: no X-Inngest-SDK in {:?}",
        ours.headers
    );
    assert_eq!(ours.header("x-inngest-req-version"), Some("2"), "{what}");
}

/// The ops must be the SDK's: same ids and opcodes, same user ids, same values and error
/// messages, same waits; a sleep wakes when the SDK's would.
fn assert_same_ops(ours: &[Op], theirs: &[Op], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: {ours:?} vs {theirs:?}");
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(o.id, t.id, "{what}: step id");
        assert_eq!(o.op, t.op, "{what}: opcode");
        assert_eq!(o.user_id(), t.user_id(), "{what}: user id");
        assert_eq!(o.display_name, t.display_name, "{what}: display name");
        match o.op.name() {
            "StepRun" => assert_eq!(o.data, t.data, "{what}: data"),
            "StepError" | "StepFailed" => assert_eq!(
                o.error.as_ref().unwrap()["message"],
                t.error.as_ref().unwrap()["message"],
                "{what}: error"
            ),
            "Sleep" => {
                let now = stepdesk_engine::time::now_ms();
                let ours = duration::sleep_until(o, now).unwrap();
                let theirs = duration::sleep_until(t, now).unwrap();
                assert!(
                    (ours - theirs).abs() < 2_000,
                    "{what}: wakes at {ours}, the SDK's at {theirs}"
                );
            }
            "WaitForEvent" => {
                assert_eq!(o.wait_for_event(), t.wait_for_event(), "{what}: wait");
            }
            _ => assert_eq!(o.name, t.name, "{what}: name"),
        }
    }
}

/// Replays a dev-mode call capture and checks our answer against the SDK's.
async fn check_call(router: &Router, name: &str) {
    let c = capture(name);
    let ours = replay(router, &c).await;
    let status = c["response"]["status"].as_u64().unwrap() as u16;
    assert_eq!(
        ours.status,
        status,
        "{name}: {}",
        String::from_utf8_lossy(&ours.body)
    );
    assert_sdk_answer(&ours, name);
    // The Python SDK sends no X-Inngest-No-Retry with its ops; Stepdesk answers as JS.
    if let Some(theirs) = their_header(&c, "x-inngest-no-retry") {
        assert_eq!(
            ours.header("x-inngest-no-retry"),
            Some(theirs),
            "{name}: X-Inngest-No-Retry"
        );
    }
    let theirs = their_body(&c);
    match status {
        206 => assert_same_ops(
            &ours.ops(),
            &serde_json::from_value::<Vec<Op>>(theirs).unwrap(),
            name,
        ),
        200 => assert_eq!(ours.json(), theirs, "{name}: result"),
        _ => assert_eq!(ours.json()["message"], theirs["message"], "{name}: error"),
    }
}

#[tokio::test]
async fn call_requests_are_answered_as_the_js_sdk_answers_them() {
    let (api, _) = stand_in().await;
    let router = served(true, &api);
    for name in [
        "js/20_hello_call1_no_steps",
        "js/21_hello_call2_step1_memoized",
        "js/22_hello_call3_both_memoized",
        "js/23_hello_steps_bare_values",
        "js/24_hello_disable_immediate_execution",
        "js/25_hello_run_planned_step_by_stepId",
        "js/28_hello_missing_ctx",
        "js/30_sleep_call1",
        "js/31_sleep_call2_sleep_done",
        "js/32_sleep_call3_done",
        "js/40_wait_call1",
        "js/41_wait_call2_event_arrived",
        "js/42_wait_call2_timeout",
        "js/45_cron_call1",
        "js/50_flaky_attempt0_step_throws",
        "js/51_flaky_attempt0_final_attempt",
        "js/52_flaky_no_max_attempts",
        "js/53_flaky_attempt1_ok",
        "js/54_flaky_step_error_memoized",
        "js/55_flakybody_attempt0",
        "js/56_flakybody_final_attempt",
        "js/57_flakybody_attempt1_ok",
        // With `ctx.fn_id` but no queue item, JS v4 falls back from checkpointing to the
        // plain answer; Stepdesk never checkpoints.
        "js/61_hello_with_fn_id_without_qi_id",
    ] {
        check_call(&router, name).await;
    }
}

#[tokio::test]
async fn call_requests_are_answered_as_the_python_sdk_answers_them() {
    let (api, _) = stand_in().await;
    let mut config = ServeConfig::dev(&api);
    config.app_id = "peers-demo-py".into();
    let router = Served::new(config, peers_demo()).unwrap().router();
    for name in [
        "py/20_hello_call1_no_steps",
        "py/21_hello_call2_step1_memoized",
        "py/22_hello_call3_both_memoized",
        "py/24_hello_disable_immediate_execution",
        "py/30_sleep_call1",
        "py/31_sleep_call2",
        "py/50_flaky_attempt0",
        "py/51_flaky_final_attempt",
    ] {
        check_call(&router, name).await;
    }
}

#[tokio::test]
async fn unknown_steps_and_functions_are_retriable_errors() {
    let (api, _) = stand_in().await;
    let router = served(true, &api);
    // The SDK waits 10 s for the step before giving up; Stepdesk knows at once.
    let c = capture("js/26_hello_unknown_stepId");
    let ours = replay(&router, &c).await;
    assert_eq!(ours.status, 500);
    assert_sdk_answer(&ours, "unknown step");
    assert_eq!(ours.header("x-inngest-no-retry"), Some("false"));
    let (o, t) = (ours.json(), their_body(&c));
    assert_eq!(o["requestedStep"], t["requestedStep"]);
    assert_eq!(o["foundSteps"][0]["id"], t["foundSteps"][0]["id"]);
    assert_eq!(o["totalFoundSteps"], t["totalFoundSteps"]);
    assert!(o["error"]
        .as_str()
        .unwrap()
        .starts_with("Could not find step"));
    let c = capture("js/27_hello_unknown_fnId");
    let ours = replay(&router, &c).await;
    assert_eq!(ours.status, 500);
    assert_sdk_answer(&ours, "unknown function");
    assert_eq!(ours.json()["message"], their_body(&c)["message"]);
    // A body that is not a call request is refused for good, naming the problem.
    let ours = send(
        &router,
        "POST",
        "/api/inngest?fnId=peers-demo-hello&stepId=step",
        &[],
        "{not json",
    )
    .await;
    assert_eq!(ours.status, 400);
    assert_eq!(ours.header("x-inngest-no-retry"), Some("true"));
    assert!(ours.json()["message"]
        .as_str()
        .unwrap()
        .contains("does not parse"));
    let ours = send(&router, "POST", "/api/inngest?stepId=step", &[], "{}").await;
    assert_eq!(ours.status, 400);
    assert!(ours.json()["message"].as_str().unwrap().contains("fnId"));
    // A run whose event is no event.
    let ours = send(
        &router,
        "POST",
        "/api/inngest?fnId=peers-demo-hello&stepId=step",
        &[],
        r#"{"event":{"data":{}},"events":[{"data":{}}],"steps":{},"ctx":{"run_id":"r"}}"#,
    )
    .await;
    assert_eq!(ours.status, 400);
    assert!(
        ours.json()["message"].as_str().unwrap().contains("name"),
        "{}",
        ours.json()
    );
}

#[tokio::test]
async fn a_state_too_large_for_the_request_is_fetched_from_the_api() {
    let c = capture("js/63_hello_use_api");
    let (api, stand_in) = stand_in().await;
    for r in c["dev_server_requests"].as_array().unwrap() {
        let body = r["response"]["body"].clone();
        if r["path"].as_str().unwrap().ends_with("/batch") {
            *stand_in.batch.lock().unwrap() = body;
        } else {
            *stand_in.actions.lock().unwrap() = body;
        }
    }
    let router = served(true, &api);
    check_call(&router, "js/63_hello_use_api").await;
    let paths: Vec<String> = stand_in.received().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/v0/runs/01JRUNCHKPT000000000000001/batch",
            "/v0/runs/01JRUNCHKPT000000000000001/actions"
        ]
    );
}

#[tokio::test]
async fn introspection_sync_probe_and_methods_in_dev_mode() {
    let (api, stand_in) = stand_in().await;
    let router = served(true, &api);
    let ours = replay(&router, &capture("js/01_get_introspection_dev")).await;
    assert_eq!(ours.status, 200);
    assert_sdk_answer(&ours, "GET");
    let v = ours.json();
    assert_eq!(v["mode"], "dev");
    assert_eq!(v["function_count"], 6);
    assert_eq!(v["schema_version"], "2024-05-24");
    assert!(v.get("app_id").is_none(), "unauthenticated: no details");

    // Out-of-band: the functions go to {api}/fn/register, the PUT says how it went.
    let c = capture("js/02_put_sync_out_of_band_dev");
    let ours = replay(&router, &c).await;
    assert_eq!(ours.status, 200);
    assert_sdk_answer(&ours, "PUT");
    assert_eq!(ours.header("x-inngest-sync-kind"), Some("out_of_band"));
    assert_eq!(
        ours.json(),
        json!({"message": "Successfully registered", "modified": true})
    );
    let got = stand_in.received();
    assert_eq!(got.len(), 1);
    let register = &got[0];
    assert_eq!(register.header("x-inngest-sync-kind"), Some("out_of_band"));
    assert_eq!(register.header("authorization"), None, "dev mode: no key");
    let theirs: Value =
        serde_json::from_str(c["dev_server_requests"][0]["body_raw"].as_str().unwrap()).unwrap();
    assert_eq!(register.body["appName"], "peers-demo");
    assert_eq!(register.body["url"], "http://127.0.0.1:3939/api/inngest");
    let ours_ids: Vec<&str> = register.body["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    let mut their_ids: Vec<&str> = theirs["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    their_ids.sort();
    assert_eq!(ours_ids, their_ids, "the same composite ids");
    // Each function's step URL and triggers are the SDK's.
    for theirs in theirs["functions"].as_array().unwrap() {
        let ours = register.body["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == theirs["id"])
            .unwrap();
        assert_eq!(ours["triggers"], theirs["triggers"], "{}", theirs["id"]);
        assert_eq!(
            ours["steps"]["step"]["runtime"], theirs["steps"]["step"]["runtime"],
            "{}",
            theirs["id"]
        );
    }
    // A deploy id is passed on; a failed register is a 500 that says why.
    *stand_in.register_reply.lock().unwrap() =
        (400, json!({"error": "no functions allowed", "status": 400}));
    let ours = send(&router, "PUT", "/api/inngest?deployId=abc", &[], "").await;
    assert_eq!(ours.status, 500);
    assert_eq!(ours.json()["modified"], false);
    assert!(ours.json()["message"]
        .as_str()
        .unwrap()
        .contains("no functions allowed"));
    assert_eq!(
        stand_in.received()[1].query.as_deref(),
        Some("deployId=abc")
    );
    // A server of the other kind is refused.
    let ours = send(
        &router,
        "PUT",
        "/api/inngest",
        &[("x-inngest-server-kind", "cloud".into())],
        "",
    )
    .await;
    assert_eq!(ours.status, 400);
    assert_eq!(ours.json()["code"], "server_kind_mismatch");
    assert_eq!(stand_in.received().len(), 2, "nothing registered");

    // In-band: the registration is the answer (dev mode: unsigned is fine).
    let c = capture("js/03_put_sync_in_band_dev");
    let ours = replay(&router, &c).await;
    assert_eq!(ours.status, 200);
    assert_eq!(ours.header("x-inngest-sync-kind"), Some("in_band"));
    let v = ours.json();
    assert_eq!(v["app_id"], "peers-demo");
    assert_eq!(v["functions"].as_array().unwrap().len(), 6);
    assert_eq!(v["url"], c["request"]["body_json"]["url"]);
    assert_eq!(stand_in.received().len(), 2, "in band: no callback");

    // The trust probe, an unknown probe, another method.
    let ours = send(&router, "POST", "/api/inngest?probe=trust", &[], "{}").await;
    assert_eq!((ours.status, ours.body.len()), (200, 0));
    assert_sdk_answer(&ours, "probe");
    let ours = send(&router, "POST", "/api/inngest?probe=nope", &[], "{}").await;
    assert_eq!(ours.status, 400);
    let ours = send(&router, "DELETE", "/api/inngest", &[], "").await;
    assert_eq!(ours.status, 405);
    assert_sdk_answer(&ours, "DELETE");
    assert_eq!(ours.header("allow"), Some("GET, PUT, POST"));
}

fn signed(body: &str, key: &str, at: i64) -> String {
    sign::signature_header(&sign::verified_bytes(body.as_bytes()), key, at)
}

fn now() -> i64 {
    stepdesk_engine::time::now_ms() / 1000
}

/// The response signature: HMAC of the raw answer under the key, at the time it says.
fn assert_signed_answer(ours: &Answer, key: &str) {
    let header = ours.header("x-inngest-signature").expect("a signed answer");
    let (t, s) = sign::parse_header(header).unwrap();
    assert!((now() - t).abs() <= 5);
    assert_eq!(s, sign::signature(&ours.body, key, t));
}

#[tokio::test]
async fn signatures_are_checked_as_the_cloud_captures_show() {
    let (api, _) = stand_in().await;
    let router = served(false, &api);
    let good = capture("js/72_cloud_post_signed_canonical");
    let url = good["request"]["url"].as_str().unwrap();
    let body = good["request"]["body_raw"].as_str().unwrap();
    let ct = ("content-type", "application/json".to_string());

    // Good: the canonical body signed now.
    let ours = send(
        &router,
        "POST",
        url,
        &[
            ct.clone(),
            ("x-inngest-signature", signed(body, KEY, now())),
        ],
        body,
    )
    .await;
    assert_eq!(ours.status, 206);
    assert_same_ops(
        &ours.ops(),
        &serde_json::from_value::<Vec<Op>>(their_body(&good)).unwrap(),
        "72",
    );
    assert_signed_answer(&ours, KEY);

    // The same body sent with whitespace and other key order: signed over its raw bytes it
    // fails (js/73), signed over its canonical form it passes (js/74).
    let raw = capture("js/73_cloud_post_raw_noncanonical_signed_raw");
    let raw_body = raw["request"]["body_raw"].as_str().unwrap();
    let over_raw = sign::signature_header(raw_body.as_bytes(), KEY, now());
    let ours = send(
        &router,
        "POST",
        url,
        &[ct.clone(), ("x-inngest-signature", over_raw)],
        raw_body,
    )
    .await;
    assert_eq!(ours.status, 401);
    assert_eq!(ours.json(), their_body(&raw));
    let ours = send(
        &router,
        "POST",
        url,
        &[
            ct.clone(),
            ("x-inngest-signature", signed(raw_body, KEY, now())),
        ],
        raw_body,
    )
    .await;
    assert_eq!(ours.status, 206);

    // Bad, expired, missing: 401 {"message":"Unauthorized"} without the SDK headers (js/75-77).
    let wrong_key = "signkey-test-00000000000000000000000000000000";
    let tampered = body.replace("world", "wOrld");
    for (name, sig, sent) in [
        (
            "js/75_cloud_post_bad_signature",
            Some(signed(body, wrong_key, now())),
            body.to_string(),
        ),
        (
            "js/75_cloud_post_bad_signature",
            Some(signed(body, KEY, now())),
            tampered,
        ),
        (
            "js/76_cloud_post_expired_signature",
            Some(signed(body, KEY, now() - 600)),
            body.to_string(),
        ),
        (
            "js/76_cloud_post_expired_signature",
            Some(signed(body, KEY, now() + 600)),
            body.to_string(),
        ),
        ("js/77_cloud_post_no_signature", None, body.to_string()),
        (
            "js/77_cloud_post_no_signature",
            Some("t=1&s=zz".to_string()),
            body.to_string(),
        ),
    ] {
        let c = capture(name);
        let mut headers = vec![ct.clone()];
        if let Some(s) = sig {
            headers.push(("x-inngest-signature", s));
        }
        let ours = send(&router, "POST", url, &headers, &sent).await;
        assert_eq!(ours.status, 401, "{name}");
        assert_eq!(ours.json(), their_body(&c), "{name}");
        assert_eq!(ours.header("x-inngest-sdk-handled"), Some("true"));
        assert!(
            ours.header("x-inngest-sdk").is_none(),
            "{name}: a prober learns nothing"
        );
        assert!(ours.header("x-inngest-signature").is_none());
    }
    // Within five minutes either way is accepted.
    let ours = send(
        &router,
        "POST",
        url,
        &[
            ct.clone(),
            ("x-inngest-signature", signed(body, KEY, now() - 290)),
        ],
        body,
    )
    .await;
    assert_eq!(ours.status, 206);
}

#[tokio::test]
async fn the_fallback_key_verifies_and_signs_its_answers() {
    let (api, _) = stand_in().await;
    let new_key = "signkey-test-abcdef0123456789";
    let mut config = ServeConfig::dev(&api);
    config.app_id = "peers-demo".into();
    config.mode = stepdesk_serve::Mode::Cloud;
    config.signing_key = Some(new_key.into());
    config.signing_key_fallback = Some(KEY.into());
    let router = Served::new(config, peers_demo()).unwrap().router();
    let c = capture("js/72_cloud_post_signed_canonical");
    let url = c["request"]["url"].as_str().unwrap();
    let body = c["request"]["body_raw"].as_str().unwrap();
    for key in [new_key, KEY] {
        let ours = send(
            &router,
            "POST",
            url,
            &[("x-inngest-signature", signed(body, key, now()))],
            body,
        )
        .await;
        assert_eq!(ours.status, 206, "signed with {key}");
        assert_signed_answer(&ours, key);
    }
}

#[tokio::test]
async fn cloud_introspection_sync_and_probe() {
    let (api, stand_in) = stand_in().await;
    let router = served(false, &api);
    // Unsigned: the unauthenticated form; signed: the app's details (js/71), signed.
    let ours = send(&router, "GET", "/api/inngest", &[], "").await;
    assert_eq!(ours.status, 200);
    assert_eq!(ours.json()["mode"], "cloud");
    assert!(ours.json().get("app_id").is_none());
    let ours = send(
        &router,
        "GET",
        "/api/inngest",
        &[("x-inngest-signature", signed("", KEY, now()))],
        "",
    )
    .await;
    assert_eq!(ours.status, 200);
    let v = ours.json();
    let js = their_body(&capture("js/71_cloud_get_signed"));
    assert_eq!(v["authentication_succeeded"], true);
    assert_eq!(v["app_id"], js["app_id"]);
    assert_eq!(v["signing_key_hash"], js["signing_key_hash"]);
    assert_eq!(v["function_count"], js["function_count"]);
    assert_signed_answer(&ours, KEY);
    let ours = send(
        &router,
        "GET",
        "/api/inngest",
        &[("x-inngest-signature", signed("", KEY, now() - 900))],
        "",
    )
    .await;
    assert_eq!(ours.json()["authentication_succeeded"], false);

    // Out-of-band, unsigned (js/78): allowed, registered with the hashed key.
    let c = capture("js/78_cloud_put_unsigned_out_of_band");
    let ours = replay(&router, &c).await;
    assert_eq!(ours.status, 200);
    assert_eq!(ours.json()["message"], their_body(&c)["message"]);
    let register = stand_in.received().pop().unwrap();
    assert_eq!(
        register.header("authorization"),
        c["dev_server_requests"][0]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "Authorization")
            .and_then(|h| h[1].as_str())
    );
    // A PUT with a bad signature is refused.
    let ours = send(
        &router,
        "PUT",
        "/api/inngest",
        &[("x-inngest-signature", signed("", KEY, now() - 900))],
        "",
    )
    .await;
    assert_eq!(ours.status, 401);

    // In-band: signed (js/79) → the registration, signed; unsigned → 401.
    let c = capture("js/79_cloud_put_in_band_signed");
    let body = c["request"]["body_raw"].as_str().unwrap();
    let ours = send(
        &router,
        "PUT",
        "/api/inngest",
        &[
            ("x-inngest-sync-kind", "in_band".into()),
            ("x-inngest-signature", signed(body, KEY, now())),
        ],
        body,
    )
    .await;
    assert_eq!(ours.status, 200);
    assert_eq!(ours.header("x-inngest-sync-kind"), Some("in_band"));
    let v = ours.json();
    assert_eq!(v["inspection"]["authentication_succeeded"], true);
    let theirs = their_body(&c);
    let ids = |v: &Value| {
        let mut ids: Vec<String> = v["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&v), ids(&theirs));
    assert_signed_answer(&ours, KEY);
    let ours = send(
        &router,
        "PUT",
        "/api/inngest",
        &[("x-inngest-sync-kind", "in_band".into())],
        body,
    )
    .await;
    assert_eq!(ours.status, 401);

    // The trust probe (js/81): signed → 200, empty, signed; unsigned → 401.
    let c = capture("js/81_cloud_trust_probe_signed");
    let body = c["request"]["body_raw"].as_str().unwrap();
    let ours = send(
        &router,
        "POST",
        "/api/inngest?probe=trust",
        &[("x-inngest-signature", signed(body, KEY, now()))],
        body,
    )
    .await;
    assert_eq!((ours.status, ours.body.len()), (200, 0));
    assert_signed_answer(&ours, KEY);
    let ours = send(&router, "POST", "/api/inngest?probe=trust", &[], body).await;
    assert_eq!(ours.status, 401);
}

#[tokio::test]
async fn the_register_falls_back_to_the_fallback_key_when_the_first_is_refused() {
    let (api, stand_in) = stand_in().await;
    let old_key = "signkey-test-abcdef0123456789";
    let mut config = ServeConfig::dev(&api);
    config.mode = stepdesk_serve::Mode::Cloud;
    config.signing_key = Some(KEY.into());
    config.signing_key_fallback = Some(old_key.into());
    let served = Served::new(config, peers_demo()).unwrap();
    let first = sign::bearer(KEY).unwrap();
    stand_in.refused_bearers.lock().unwrap().push(first.clone());
    assert_eq!(
        served.sync("http://127.0.0.1:1/api/inngest").await,
        Ok(true)
    );
    let auths: Vec<String> = stand_in
        .received()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(
        auths,
        [
            format!("Bearer {first}"),
            format!("Bearer {}", sign::bearer(old_key).unwrap())
        ]
    );
}
