//! One paging convention on every paged HTTP list (`/v1/events`, `/api/admin/runs`,
//! `/api/admin/events`): a `limit` outside the list's range and a cursor that is not one are
//! `400`s with a JSON error, and each page names the next one in `next_cursor`.

use std::time::Duration;

use serde_json::{json, Value};
use stepdesk_engine::{Durability, Engine, EngineConfig, Function};
use stepdesk_server::{router, serve, ServerConfig};

struct Server {
    base: String,
    engine: Engine,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path());
        config.durability = Durability::Normal;
        let noop = Function::builder("noop")
            .on_event("app/page")
            .handler(|_ctx| async { Ok(json!(null)) })
            .unwrap();
        let engine = Engine::start(config, vec![noop]).await.unwrap();
        let app = router(
            stepdesk_api::Api::builder(engine.clone())
                .build()
                .await
                .expect("the admin API"),
            ServerConfig::local("test-admin-token"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, async {
            let _ = stopped.await;
        }));
        Server {
            base,
            engine,
            stop: Some(stop),
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = tokio::time::timeout(
            Duration::from_secs(15),
            reqwest::get(format!("{}{path}", self.base)),
        )
        .await
        .expect("an answer within 15 s")
        .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.engine.shutdown(Duration::from_secs(5)).await;
    }
}

/// The items of a page of each list.
fn items<'a>(path: &str, page: &'a Value) -> &'a Vec<Value> {
    let field = if path.starts_with("/v1/") {
        "data"
    } else if path.contains("/runs") {
        "runs"
    } else {
        "events"
    };
    page[field].as_array().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_paged_list_validates_limit_and_cursor_and_names_the_next_page_alike() {
    let server = Server::start().await;
    let batch: Vec<Value> = (0..7)
        .map(|i| json!({"name": "app/page", "data": {"i": i}}))
        .collect();
    let sent = reqwest::Client::new()
        .post(format!("{}/e/key", server.base))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);

    for (path, max) in [
        ("/v1/events?name=app/page", 100),
        ("/api/admin/events?name=app/page", 500),
        ("/api/admin/runs?function_id=noop", 500),
    ] {
        for bad in ["0".to_string(), (max + 1).to_string()] {
            let (status, body) = server.get(&format!("{path}&limit={bad}")).await;
            assert_eq!(status, 400, "{path} limit={bad}: {body}");
            assert_eq!(body["status"], 400);
            let message = body["error"].as_str().unwrap();
            assert!(
                message.contains(&format!("between 1 and {max}")),
                "{path}: {message}"
            );
        }
        let (status, body) = server.get(&format!("{path}&cursor=garbage")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("bad cursor"),
            "{body}"
        );

        // Paging end to end: every item once, `next_cursor` null on the last page.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10 {
            let url = match &cursor {
                Some(c) => format!("{path}&limit=3&cursor={c}"),
                None => format!("{path}&limit=3"),
            };
            let (status, page) = server.get(&url).await;
            assert_eq!(status, 200, "{url}: {page}");
            let page_items = items(path, &page);
            assert!(page_items.len() <= 3);
            seen.extend(page_items.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => {
                    assert!(page["next_cursor"].is_null(), "{page}");
                    break;
                }
            }
        }
        assert_eq!(seen.len(), 7, "{path}: {seen:?}");
    }
    server.stop().await;
}
