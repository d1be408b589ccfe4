//! Stepdesk A serves its Rust functions at `/api/inngest`; Stepdesk B, acting as the
//! Inngest server, drives them with its SDK driver (`stepdesk-sdk`), exactly as it drives an
//! app built with an Inngest SDK. Both over real HTTP on loopback, B's engine on a real
//! SQLite file: B syncs A (its `PUT`, A's out-of-band register to B's `/fn/register`), runs
//! A's functions on B's events through run, sleep, wait_for_event, a step retried after a
//! failure, send_event (to B's event API, starting another of A's functions there) and
//! invoke, and a function failing for good with its failure handler. Once unsigned
//! (dev mode), once signed (B with a signing key, A in cloud mode with the same key).

use std::time::Duration;

use serde_json::{json, Value};
use stepdesk_engine::admin::RunDetail;
use stepdesk_engine::{
    Backoff, Engine, EngineConfig, Error, Function, Invoke, StepKind, WaitForEvent,
};
use stepdesk_sdk::{Apps, SdkConfig};
use stepdesk_serve::{Mode, ServeConfig, Served};

const KEY: &str = "signkey-test-0123456789abcdef0123456789abcdef";

/// A's functions.
fn functions() -> Vec<Function> {
    let onboard = Function::builder("onboard")
        .name("Onboard a user")
        .on_event("app/user.created")
        .retries(2)
        .handler(|ctx| async move {
            let user_id = ctx.event.data["userId"].as_str().unwrap_or("").to_string();
            let u = user_id.clone();
            let user: Value = ctx
                .step
                .run("load-user", || async move { Ok(json!({"id": u})) })
                .await?;
            ctx.step
                .sleep("cool-down", Duration::from_millis(1500))
                .await?;
            let approval = ctx
                .step
                .wait_for_event(
                    "approval",
                    WaitForEvent::new("app/approved", Duration::from_secs(3600))
                        .matching("data.userId"),
                )
                .await?;
            let attempt = ctx.attempt;
            let charge: Value = ctx
                .step
                .run("charge", || async move {
                    if attempt == 0 {
                        return Err(Error::retriable("the card processor is busy"));
                    }
                    Ok(json!({"charged": true, "attempt": attempt}))
                })
                .await?;
            let sent = ctx
                .step
                .send_event(
                    "notify",
                    vec![json!({"name": "app/notified", "data": {"userId": user_id}})],
                )
                .await?;
            let score: Value = ctx
                .step
                .invoke(
                    "score",
                    Invoke {
                        function_id: "score".into(),
                        data: json!({"userId": user_id}).as_object().unwrap().clone(),
                        timeout: Duration::from_secs(600),
                    },
                )
                .await?;
            Ok(json!({
                "user": user,
                "approved_by": approval.map(|e| e.data["by"].clone()),
                "charge": charge,
                "sent": sent.len(),
                "score": score,
            }))
        })
        .unwrap();
    let score = Function::builder("score")
        .on_event("app/score")
        .handler(|ctx| async move {
            let id = ctx.event.data["userId"].as_str().unwrap_or("").to_string();
            let s: u32 = ctx.step.run("compute", || async { Ok(42) }).await?;
            Ok(json!({"userId": id, "score": s}))
        })
        .unwrap();
    let notified = Function::builder("notified")
        .on_event("app/notified")
        .handler(|ctx| async move {
            let id = ctx.event.data["userId"].clone();
            let v: Value = ctx
                .step
                .run("note", || async move { Ok(json!({"noted": id})) })
                .await?;
            Ok(v)
        })
        .unwrap();
    let doomed = Function::builder("doomed")
        .on_event("app/doomed")
        .retries(1)
        .on_failure(|ctx| async move { Ok(json!({"handled": ctx.event.data["function_id"]})) })
        .handler(|ctx| async move {
            let v: Value = ctx
                .step
                .run("always-fails", || async {
                    Err::<Value, _>(Error::retriable("the service is down"))
                })
                .await?;
            Ok(v)
        })
        .unwrap();
    vec![onboard, score, notified, doomed]
}

struct B {
    engine: Engine,
    apps: Apps,
    url: String,
    _dir: tempfile::TempDir,
}

/// Stepdesk B: the engine, the SDK apps' registry and driver, the event API and the SDK
/// routes, as `stepdesk serve` assembles them.
async fn start_b(signing_key: Option<&str>) -> B {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.backoff = Backoff::Fixed(Duration::from_millis(200));
    let store = config.open_store().await.unwrap();
    let sdk = SdkConfig {
        poll: false,
        poll_interval: Duration::from_secs(3600),
        signing_key: signing_key.map(str::to_string),
        ..SdkConfig::default()
    };
    let (apps, stored) = Apps::open(store.clone(), sdk).await.unwrap();
    let engine = Engine::builder(config)
        .store(store)
        .functions_from_store(move |_| async move { Ok(stored) })
        .start()
        .await
        .unwrap();
    apps.attach(engine.clone());
    let api = stepdesk_api::Api::builder(engine.clone())
        .build()
        .await
        .unwrap();
    let mut server = stepdesk_server::ServerConfig::local("admin-token");
    server.extra_routes = Some(stepdesk_sdk::routes::router(
        apps.clone(),
        engine.clone(),
        "admin-token".into(),
    ));
    let router = stepdesk_server::router(api, server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(stepdesk_server::serve(
        listener,
        router,
        std::future::pending(),
    ));
    B {
        engine,
        apps,
        url,
        _dir: dir,
    }
}

/// Stepdesk A: the serve endpoint only, pointed at B.
async fn start_a(b: &B, signed: bool) -> String {
    let mut config = ServeConfig::dev(&b.url);
    if signed {
        config.mode = Mode::Cloud;
        config.signing_key = Some(KEY.into());
        config.event_key = Some("any-key".into());
    }
    let served = Served::new(config, functions()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/inngest", listener.local_addr().unwrap());
    let router = served.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

async fn send(engine: &Engine, name: &str, data: Value) {
    let body = json!({"name": name, "data": data}).to_string();
    let events = stepdesk_engine::event::parse_events(body.as_bytes()).unwrap();
    engine.send_events(events).await.unwrap();
}

/// The only run of `function` on B, once `done` says it is as wanted.
async fn wait_run(engine: &Engine, function: &str, done: impl Fn(&RunDetail) -> bool) -> RunDetail {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = None;
    loop {
        let page = engine
            .admin()
            .runs(serde_json::from_value(json!({"function_id": function})).unwrap())
            .await
            .unwrap();
        if let Some(r) = page.runs.first() {
            let d = engine.admin().run(&r.id).await.unwrap();
            if done(&d) {
                return d;
            }
            last = Some(d);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{function}: not there in time: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status(d: &RunDetail) -> String {
    serde_json::to_value(d.summary.status)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

async fn stepdesk_drives_stepdesk(signed: bool) {
    let b = start_b(signed.then_some(KEY)).await;
    let a = start_a(&b, signed).await;

    // B syncs A: A registers its functions with B, under their composite ids.
    let app = b.apps.add(&a).await.unwrap();
    assert_eq!(app.error, None, "{app:?}");
    assert_eq!(app.app_id.as_deref(), Some("stepdesk"));
    let registry = b.engine.registry();
    for id in [
        "stepdesk-onboard",
        "stepdesk-score",
        "stepdesk-notified",
        "stepdesk-doomed",
        "stepdesk-doomed-failure",
    ] {
        assert!(registry.get(id).is_some(), "{id} is not registered on B");
    }

    // A run through every kind of step.
    send(&b.engine, "app/user.created", json!({"userId": "u1"})).await;
    let waiting = wait_run(&b.engine, "stepdesk-onboard", |d| {
        d.steps.iter().any(|s| s.kind == StepKind::WaitForEvent)
    })
    .await;
    let sleep = waiting.steps.iter().find(|s| s.id == "cool-down").unwrap();
    assert_eq!(sleep.kind, StepKind::Sleep);
    // An event for another user does not resume it; the right one does.
    send(
        &b.engine,
        "app/approved",
        json!({"userId": "u2", "by": "nobody"}),
    )
    .await;
    send(
        &b.engine,
        "app/approved",
        json!({"userId": "u1", "by": "ops"}),
    )
    .await;
    let done = wait_run(&b.engine, "stepdesk-onboard", |d| status(d) != "Running").await;
    assert_eq!(status(&done), "Completed", "{done:#?}");
    assert_eq!(
        done.output,
        Some(json!({
            "user": {"id": "u1"},
            "approved_by": "ops",
            "charge": {"charged": true, "attempt": 1},
            "sent": 1,
            "score": {"userId": "u1", "score": 42},
        }))
    );
    let steps: Vec<(&str, StepKind)> = done.steps.iter().map(|s| (s.id.as_str(), s.kind)).collect();
    assert_eq!(
        steps,
        [
            ("load-user", StepKind::Run),
            ("cool-down", StepKind::Sleep),
            ("approval", StepKind::WaitForEvent),
            ("charge", StepKind::Run),
            // Sent by the served function itself (`opts.type: step.sendEvent`).
            ("notify", StepKind::SendEvent),
            ("score", StepKind::Invoke),
        ]
    );
    // The sleep lasted (B woke it, not A).
    let slept = done.steps[1].ended_at.unwrap() - done.steps[1].started_at.unwrap();
    assert!(slept >= 1_400, "slept {slept} ms");
    // The charge failed once and was retried by B.
    let charge = &done.steps[3];
    assert_eq!(charge.failed_attempts.len(), 1, "{charge:#?}");
    assert_eq!(
        charge.failed_attempts[0].error["message"],
        "the card processor is busy"
    );
    // The event A sent reached B's event API and started A's other function there.
    let notified = wait_run(&b.engine, "stepdesk-notified", |d| status(d) != "Running").await;
    assert_eq!(notified.output, Some(json!({"noted": "u1"})));

    // A function failing for good, and its failure handler told about it by A's own id.
    send(&b.engine, "app/doomed", json!({})).await;
    let doomed = wait_run(&b.engine, "stepdesk-doomed", |d| status(d) != "Running").await;
    assert_eq!(status(&doomed), "Failed", "{doomed:#?}");
    assert_eq!(doomed.steps[0].attempts, 2, "{doomed:#?}");
    let handled = wait_run(&b.engine, "stepdesk-doomed-failure", |d| {
        status(d) != "Running"
    })
    .await;
    assert_eq!(
        handled.output,
        Some(json!({"handled": "doomed"})),
        "{handled:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stepdesk_drives_another_stepdesks_rust_functions() {
    stepdesk_drives_stepdesk(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_signed_as_inngest_cloud_does() {
    stepdesk_drives_stepdesk(true).await;
}
