//! The Readwise sync end to end: the real `stepdesk` binary (CLI and `serve`) against the real
//! Secret Service (gnome-keyring on a private session bus: `make test` sets it up, see
//! tests/with-session.sh) and a fake Readwise (`readwise_fake`) running in the test process.
//!
//! Each test uses its own data directory, fake and keychain service
//! (`STEPDESK_KEYCHAIN_SERVICE`), and deletes its keychain items at the end. Without a Secret
//! Service these tests fail with the setup hint, unless `STEPDESK_SKIP_KEYCHAIN_TESTS=1`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{eventually, Options, Server};
use readwise_fake::{FakeConfig, FakeEndpoint, FakeReadwise, Fault};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

// ---- Harness ---------------------------------------------------------------------------

/// Whether a Secret Service answers; panics with the setup hint when none does (unless
/// `STEPDESK_SKIP_KEYCHAIN_TESTS=1`, then the test is skipped).
async fn keychain_available() -> bool {
    let probe = tokio::task::spawn_blocking(stepdesk_secrets::Secrets::secret_service)
        .await
        .unwrap();
    match probe {
        Ok(_) => true,
        Err(e) if std::env::var("STEPDESK_SKIP_KEYCHAIN_TESTS").is_ok_and(|v| v == "1") => {
            eprintln!("skipping: {e}");
            false
        }
        Err(e) => panic!(
            "these tests need a Secret Service (run them through `make test` or \
             tests/with-session.sh, or set STEPDESK_SKIP_KEYCHAIN_TESTS=1 to skip): {e}"
        ),
    }
}

/// The output of one CLI invocation.
struct Cli {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Cli {
    /// Succeeded, without a panic.
    fn success(self) -> Cli {
        assert!(self.ok, "the command failed: {self:?}");
        self
    }

    /// Failed cleanly: a non-zero exit, a message containing `message` on stderr, no panic.
    fn failure(self, message: &str) -> Cli {
        assert!(!self.ok, "the command should have failed: {self:?}");
        assert!(
            matches!(self.code, Some(c) if c != 0 && c != 101),
            "an ordinary error exit, not a crash or a panic: {self:?}"
        );
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        assert!(
            self.stderr.contains(message),
            "stderr should say `{message}`: {self:?}"
        );
        self
    }
}

static NEXT_SERVICE: AtomicUsize = AtomicUsize::new(0);

/// One test's world: a data directory, a fake Readwise and a keychain service of its own.
struct World {
    _dir: tempfile::TempDir,
    data: PathBuf,
    service: String,
    fake: FakeReadwise,
}

impl World {
    async fn new(config: FakeConfig) -> Option<World> {
        if !keychain_available().await {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let service = format!(
            "stepdesk-test-{}-{}",
            std::process::id(),
            NEXT_SERVICE.fetch_add(1, Ordering::Relaxed)
        );
        let fake = FakeReadwise::start(config).await.unwrap();
        Some(World {
            _dir: dir,
            data,
            service,
            fake,
        })
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STEPDESK_KEYCHAIN_SERVICE", self.service.clone()),
            ("READWISE_API_URL", self.fake.base_url()),
        ]
    }

    /// Starts `stepdesk ARGS --data-dir DATA` with `stdin` written to it (closed when `None`).
    async fn spawn_cli(&self, args: &[&str], stdin: Option<&str>) -> tokio::process::Child {
        self.spawn_cli_env(args, stdin, &[]).await
    }

    /// [`World::spawn_cli`] with extra (or overriding) environment variables.
    async fn spawn_cli_env(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        extra_env: &[(&str, &str)],
    ) -> tokio::process::Child {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_stepdesk"));
        cmd.args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .envs(self.env())
            .envs(extra_env.iter().copied())
            .env("STEPDESK_LOG", "warn")
            .env_remove("STEPDESK_URL")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("run stepdesk");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
        }
        child
    }

    /// Runs `stepdesk ARGS --data-dir DATA` to completion (at most 60 s).
    async fn cli(&self, args: &[&str], stdin: Option<&str>) -> Cli {
        finish(self.spawn_cli(args, stdin).await).await
    }

    /// [`World::cli`] with extra (or overriding) environment variables.
    async fn cli_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Cli {
        finish(self.spawn_cli_env(args, stdin, env).await).await
    }

    /// `stepdesk users add ID --token-stdin` (or without a token), which must succeed.
    async fn add_user(&self, id: &str, token: Option<&str>) {
        self.add_users(&[(id, token)]).await;
    }

    /// Several `stepdesk users add` at once, each of which must succeed.
    async fn add_users(&self, users: &[(&str, Option<&str>)]) {
        let mut children = Vec::new();
        for (id, token) in users {
            children.push(match token {
                Some(t) => {
                    self.spawn_cli(
                        &["users", "add", id, "--token-stdin"],
                        Some(&format!("{t}\n")),
                    )
                    .await
                }
                None => self.spawn_cli(&["users", "add", id], None).await,
            });
        }
        for child in children {
            finish(child).await.success();
        }
    }

    fn server_with(&self, extra_args: &[&str], extra_env: &[(&str, &str)]) -> Server {
        let owned = self.env();
        let mut env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend_from_slice(extra_env);
        Server::start_with_env(
            Options {
                data_dir: &self.data,
                fixture_log: None,
                extra_args,
            },
            &env,
        )
    }

    fn server(&self) -> Server {
        self.server_with(&["--retry-interval", "0.2"], &[])
    }

    /// The user's token as stored in the keychain, read with `secret-tool`.
    async fn keychain_token(&self, user: &str) -> Option<String> {
        let out = tokio::process::Command::new("secret-tool")
            .args(["lookup", "service", &self.service, "username"])
            .arg(format!("readwise-token:{user}"))
            .output()
            .await
            .expect("secret-tool (apt install libsecret-tools)");
        let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !value.is_empty()).then_some(value)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Every item this test stored lives under its own service name.
        let _ = std::process::Command::new("secret-tool")
            .args(["clear", "service", &self.service])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

async fn finish(child: tokio::process::Child) -> Cli {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("a stepdesk command did not finish in 60 s")
        .unwrap();
    Cli {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn post_raw(server: &Server, path: &str, body: &str, auth: Option<&str>) -> (u16, Value) {
    let mut req = server
        .client
        .post(format!("{}{path}", server.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// `POST /api/inngest/trigger-readwise`, which must answer 202; the event id.
async fn trigger(server: &Server, body: Value) -> String {
    let token = server.admin_token();
    let (status, res) = server
        .post("/api/inngest/trigger-readwise", &body, Some(&token))
        .await;
    assert_eq!(status, 202, "{res}");
    res["eventId"].as_str().expect("eventId").to_string()
}

/// The one run an event started, once it has ended.
async fn finished_run(server: &Server, event_id: &str, timeout: Duration) -> Value {
    let runs = server.wait_finished(&[event_id.to_string()], timeout).await;
    assert_eq!(runs.len(), 1, "one run per event: {runs:?}");
    runs.into_iter().next().unwrap()
}

async fn run_detail(server: &Server, run_id: &str) -> Value {
    let (status, body) = server.get(&format!("/api/admin/runs/{run_id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn user(server: &Server, id: &str) -> Value {
    let (status, body) = server.get(&format!("/api/admin/users/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn step_ids(detail: &Value) -> Vec<String> {
    detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn step<'a>(detail: &'a Value, id: &str) -> &'a Value {
    detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}: {detail}"))
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                hits.push(path);
            }
        }
    }
    hits
}

// ---- 1. The CLI ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_adds_lists_checks_syncs_and_removes_users() {
    let Some(w) = World::new(FakeConfig::default()).await else {
        return;
    };
    let token = "rw-cli-token-1";
    w.fake.add_user(token, 1500);

    let out = w
        .cli(
            &["users", "add", "u1", "--name", "Ada", "--token-stdin"],
            Some(&format!("{token}\n")),
        )
        .await
        .success();
    // Never checked yet: `unchecked`, not `connected`.
    assert!(
        out.stdout.contains("added u1 (Ada), token unchecked"),
        "{out:?}"
    );
    assert!(out.stdout.contains("stepdesk users check u1"), "{out:?}");
    assert!(!out.stdout.contains(token) && !out.stderr.contains(token));
    assert_eq!(w.keychain_token("u1").await.as_deref(), Some(token));

    let out = w.cli(&["users", "list", "--json"], None).await.success();
    let users: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
    assert_eq!(users[0]["id"], "u1");
    assert_eq!(users[0]["display_name"], "Ada");
    assert_eq!(users[0]["token_status"], "unchecked");
    assert_eq!(users[0]["stored_books"], 0);
    assert!(users[0]["last_sync"].is_null());

    // Readwise down (503): not judged, and the status stays `unchecked`.
    w.fake.fail_next(token, 1, 503);
    let out = w.cli(&["users", "check", "u1"], None).await.failure(
        "Readwise could not be reached, so the token of user u1 was not judged; its status stays `unchecked`",
    );
    assert!(out.stdout.contains("u1: unreachable ("), "{out:?}");
    assert!(!out.stderr.contains("not usable"), "{out:?}");
    let out = w.cli(&["users", "list", "--json"], None).await.success();
    let users: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(users[0]["token_status"], "unchecked");

    let out = w.cli(&["users", "check", "u1"], None).await.success();
    assert!(out.stdout.contains("u1: connected"), "{out:?}");
    assert_eq!(w.fake.requests(token, FakeEndpoint::Auth), 2);

    // Bad input: clear messages, non-zero exits, nothing stored.
    w.cli(&["users", "add", "u3", "--token-stdin"], Some(""))
        .await
        .failure("no token given on standard input");
    w.cli(
        &["users", "add", "u4", "--token-stdin"],
        Some("two words\n"),
    )
    .await
    .failure("without spaces");
    w.cli(&["users", "check", "nobody"], None)
        .await
        .failure("no user `nobody`");
    for bad in ["a/b", "fuzz/../x", "a%FF"] {
        w.cli(&["users", "add", bad], None)
            .await
            .failure("a user id must be 1-128 characters of letters, digits and");
    }
    // Plain http to a host that is not this machine would send tokens unencrypted.
    w.cli(
        &[
            "users",
            "list",
            "--readwise-url",
            "http://readwise.example/api/v2/",
        ],
        None,
    )
    .await
    .failure("must use https://");
    w.cli_env(
        &["users", "list"],
        None,
        &[("READWISE_API_URL", "http://192.0.2.10:8000/api/v2/")],
    )
    .await
    .failure("must use https://");
    w.cli_env(
        &[
            "settings",
            "set-readwise-url",
            "http://readwise.example/api/v2/",
        ],
        None,
        &[("READWISE_API_URL", "")],
    )
    .await
    .failure("must use https://");
    w.cli(&["sync"], None).await.failure("--all");
    w.cli(&["sync", "u1", "--all"], None)
        .await
        .failure("cannot be used with");
    let out = w.cli(&["users", "list", "--json"], None).await.success();
    let users: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");

    // `sync` goes through the running server.
    let server = w.server();
    w.cli(&["sync", "nobody", "--url", &server.url], None)
        .await
        .failure("no user `nobody`");
    let out = w
        .cli(
            &["sync", "u1", "--url", &server.url, "--timeout", "60"],
            None,
        )
        .await
        .success();
    assert!(out.stdout.contains("u1: 1500 books (full sync"), "{out:?}");
    let out = w
        .cli(
            &["sync", "--all", "--url", &server.url, "--timeout", "60"],
            None,
        )
        .await
        .success();
    assert!(
        out.stdout.contains("1 of 1 users synced, 0 failed"),
        "{out:?}"
    );

    // The table: a header, one row per user with its token, last sync and book count.
    let out = w.cli(&["users", "list"], None).await.success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "NAME", "TOKEN", "LAST", "SYNC", "(UTC)", "STATUS", "BOOKS"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row.len(),
        7,
        "id, name, token, date, time, status, books: {row:?}"
    );
    assert_eq!(row[..3], ["u1", "Ada", "connected"]);
    assert!(row[3].starts_with("20") && row[4].len() == 8, "{row:?}");
    assert_eq!(row[5..], ["ok", "1500"]);

    // Readwise forgets the token: `check` says so and fails.
    w.fake.remove_token(token);
    let out = w
        .cli(&["users", "check", "u1"], None)
        .await
        .failure("Readwise rejected the token of user u1; store a new one with `stepdesk users add u1 --token-stdin`");
    assert!(
        out.stdout
            .contains("u1: rejected (Readwise rejected the token for user u1)"),
        "{out:?}"
    );
    assert_eq!(user(&server, "u1").await["token_status"], "rejected");

    // Remove: the row, the books and the keychain entry go.
    let out = w.cli(&["users", "remove", "u1"], None).await.success();
    assert!(out.stdout.contains("removed u1"), "{out:?}");
    assert_eq!(w.keychain_token("u1").await, None);
    let out = w.cli(&["users", "list", "--json"], None).await.success();
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!([])
    );
    let (status, body) = server.get("/api/admin/users/u1").await;
    assert_eq!(status, 404, "{body}");
    w.cli(&["users", "check", "u1"], None)
        .await
        .failure("no user `u1`");
    w.cli(&["users", "remove", "u1"], None)
        .await
        .failure("no user `u1`");
    let conn = rusqlite::Connection::open(w.data.join("stepdesk.db")).unwrap();
    let books: i64 = conn
        .query_row("SELECT count(*) FROM readwise_books", [], |r| r.get(0))
        .unwrap();
    assert_eq!(books, 0, "the user's books are removed with them");
}

// ---- 2. Full and incremental syncs through the seed route ------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_route_syncs_fully_then_incrementally_and_falls_back_when_books_vanish() {
    let Some(w) = World::new(FakeConfig::default()).await else {
        return;
    };
    let token = "rw-seed-token-2";
    w.fake.add_user(token, 2500);
    w.add_user("u1", Some(token)).await;
    let server = w.server();

    // First sync: full, one step per page of 1000.
    let event = trigger(&server, json!({"userId": "u1"})).await;
    let run = finished_run(&server, &event, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Completed", "{run}");
    assert_eq!(run["function_id"], "readwise-fetch-books");
    assert_eq!(run["output"]["bookCount"], 2500, "{run}");
    assert_eq!(run["output"]["mode"], "full");
    let run_id = run["run_id"].as_str().unwrap();
    let u = user(&server, "u1").await;
    assert_eq!(u["stored_books"], 2500, "{u}");
    assert_eq!(u["readwise_total"], 2500);
    assert_eq!(u["token_status"], "connected");
    assert_eq!(u["last_sync"]["status"], "ok");
    assert_eq!(u["last_sync"]["book_count"], 2500);
    assert_eq!(u["last_sync"]["run_id"], run_id);
    let detail = run_detail(&server, run_id).await;
    assert_eq!(
        step_ids(&detail),
        [
            "load-user",
            "check-token",
            "fetch-page-1",
            "fetch-page-2",
            "fetch-page-3",
            "record-sync-result"
        ]
    );
    for s in detail["steps"].as_array().unwrap() {
        assert_eq!(s["status"], "Completed", "{s}");
    }
    assert_eq!(step(&detail, "fetch-page-3")["output"]["books"], 500);
    assert_eq!(w.fake.requests(token, FakeEndpoint::Books), 3);
    assert_eq!(w.fake.stats().throttled, 0);

    // Five books change: the next sync asks only for them, and the count still matches.
    let touched = w.fake.touch_books(token, 5);
    assert_eq!(touched.len(), 5);
    let event = trigger(&server, json!({"userId": "u1"})).await;
    let run = finished_run(&server, &event, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Completed", "{run}");
    assert_eq!(run["output"]["mode"], "incremental", "{run}");
    assert_eq!(run["output"]["bookCount"], 2500);
    assert_eq!(run["output"]["readwiseTotal"], 2500);
    let detail = run_detail(&server, run["run_id"].as_str().unwrap()).await;
    assert_eq!(
        step_ids(&detail),
        [
            "load-user",
            "check-token",
            "fetch-updated-page-1",
            "count-books",
            "record-sync-result"
        ]
    );
    // The five touched books, and at most the newest one already stored: `updated__gt` is
    // sent in whole seconds, so a sync may fetch a book of the watermark's second again.
    let fetched = step(&detail, "fetch-updated-page-1")["output"]["books"]
        .as_u64()
        .unwrap();
    assert!((5..=6).contains(&fetched), "{detail}");
    assert_eq!(user(&server, "u1").await["stored_books"], 2500);

    // 500 books are deleted in Readwise: an incremental listing cannot see that, the count
    // check does, and a full listing prunes them.
    let remaining: Vec<Value> = w.fake.books(token).into_iter().take(2000).collect();
    w.fake.set_books(token, remaining);
    assert_eq!(w.fake.book_count(token), Some(2000));
    let event = trigger(&server, json!({"userId": "u1"})).await;
    let run = finished_run(&server, &event, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Completed", "{run}");
    assert_eq!(run["output"]["mode"], "full", "{run}");
    assert_eq!(run["output"]["bookCount"], 2000);
    assert_eq!(run["output"]["removed"], 500);
    let detail = run_detail(&server, run["run_id"].as_str().unwrap()).await;
    assert_eq!(
        step_ids(&detail),
        [
            "load-user",
            "check-token",
            "fetch-updated-page-1",
            "count-books",
            "fetch-page-1",
            "fetch-page-2",
            "record-sync-result"
        ]
    );
    assert_eq!(step(&detail, "count-books")["output"]["readwise"], 2000);
    assert_eq!(step(&detail, "count-books")["output"]["stored"], 2500);
    let u = user(&server, "u1").await;
    assert_eq!(u["stored_books"], 2000, "{u}");
    assert_eq!(u["readwise_total"], 2000);
    assert_eq!(u["last_sync"]["book_count"], 2000);
    // The stored ids are exactly Readwise's.
    let conn = rusqlite::Connection::open(w.data.join("stepdesk.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT book_id FROM readwise_books WHERE user_id = 'u1' ORDER BY book_id")
        .unwrap();
    let stored: Vec<i64> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<i64> = w
        .fake
        .books(token)
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(stored, expected);
    assert_eq!(
        w.fake.stats().throttled,
        0,
        "the client stays under the limit"
    );
}

// ---- 3. The seed's routes: errors, the schedule trigger, the update handler -----------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_routes_answer_json_errors_and_trigger_the_daily_sync() {
    let Some(w) = World::new(FakeConfig::default()).await else {
        return;
    };
    let token = "rw-routes-token-3";
    w.fake.add_user(token, 300);
    w.add_user("u1", Some(token)).await;
    let server = w.server();
    let admin = server.admin_token();
    let bearer = format!("Bearer {admin}");
    let error_of = |body: &Value| body["error"].as_str().unwrap_or_default().to_string();

    for path in [
        "/api/inngest/trigger-readwise",
        "/api/inngest/trigger-schedule",
        "/api/readwise",
    ] {
        let body = r#"{"userId":"u1"}"#;
        let (status, res) = post_raw(&server, path, body, None).await;
        assert_eq!(status, 401, "{path}: {res}");
        assert!(error_of(&res).contains("Authorization: Bearer"), "{res}");
        let (status, res) = post_raw(&server, path, body, Some("Bearer wrong-token")).await;
        assert_eq!(status, 401, "{path}: {res}");
        assert!(error_of(&res).contains("wrong"), "{res}");
        let (status, res) = post_raw(&server, path, body, Some(&format!("Token {admin}"))).await;
        assert_eq!(status, 401, "{path}: {res}");
    }

    let cases: [(&str, u16, &str); 7] = [
        (r#"{"userId":"nobody"}"#, 404, "no user `nobody`"),
        ("{not json", 400, "not valid JSON"),
        ("", 400, "not valid JSON"),
        ("[1]", 400, "JSON object"),
        ("{}", 400, "userId"),
        (r#"{"userId":5}"#, 400, "userId"),
        (r#"{"userId":"u1","apiKey":7}"#, 400, "apiKey"),
    ];
    for (body, want, text) in cases {
        let (status, res) = post_raw(
            &server,
            "/api/inngest/trigger-readwise",
            body,
            Some(&bearer),
        )
        .await;
        assert_eq!(status, want, "{body}: {res}");
        assert!(error_of(&res).contains(text), "{body}: {res}");
    }
    // No refused request stored an event.
    let (_, events) = server.get("/v1/events?name=readwise/fetch-books").await;
    assert_eq!(events["data"], json!([]), "{events}");

    // The schedule trigger reaches the daily sync, which syncs every connected user.
    let (status, res) = post_raw(&server, "/api/inngest/trigger-schedule", "", Some(&bearer)).await;
    assert_eq!(status, 202, "{res}");
    let event = res["eventId"].as_str().unwrap().to_string();
    let run = finished_run(&server, &event, Duration::from_secs(30)).await;
    assert_eq!(run["function_id"], "readwise-daily-sync", "{run}");
    assert_eq!(run["status"], "Completed", "{run}");
    assert_eq!(run["output"]["users"], 1, "{run}");
    let daily_run = run["run_id"].as_str().unwrap().to_string();
    let progress = eventually(Duration::from_secs(30), "the daily sync to finish", || {
        let server = &server;
        let daily_run = daily_run.clone();
        async move {
            let (_, syncs) = server.get("/api/admin/daily-syncs").await;
            let p = syncs
                .as_array()?
                .iter()
                .find(|s| s["run_id"] == daily_run.as_str())?
                .clone();
            (p["done"] == p["total"]).then_some(p)
        }
    })
    .await;
    assert_eq!(progress["total"], 1, "{progress}");
    assert_eq!(progress["ok"], 1, "{progress}");
    let u = user(&server, "u1").await;
    assert_eq!(u["stored_books"], 300, "{u}");
    assert_eq!(u["last_sync"]["daily_sync_run_id"], daily_run.as_str());

    // The update handler.
    let (status, res) = post_raw(
        &server,
        "/api/readwise",
        r#"{"userId":"u1","bookCount":42,"syncTime":"2026-01-31T03:00:00Z"}"#,
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["success"], true);
    let u = user(&server, "u1").await;
    assert_eq!(u["last_sync"]["book_count"], 42, "{u}");
    assert_eq!(u["last_sync"]["at"], 1_769_828_400_000_i64, "{u}");
    assert_eq!(u["last_sync"]["status"], "ok");
    let cases: [(&str, u16, &str); 5] = [
        (
            r#"{"userId":"nobody","bookCount":1,"syncTime":"2026-01-31T03:00:00Z"}"#,
            404,
            "no user `nobody`",
        ),
        (
            r#"{"userId":"u1","bookCount":1,"syncTime":"yesterday"}"#,
            400,
            "syncTime",
        ),
        (
            r#"{"userId":"u1","bookCount":"many","syncTime":"2026-01-31T03:00:00Z"}"#,
            400,
            "bookCount",
        ),
        (
            r#"{"userId":"u1","bookCount":-1,"syncTime":"2026-01-31T03:00:00Z"}"#,
            400,
            "bookCount",
        ),
        (r#"{"userId":"u1","bookCount":1}"#, 400, "syncTime"),
    ];
    for (body, want, text) in cases {
        let (status, res) = post_raw(&server, "/api/readwise", body, Some(&bearer)).await;
        assert_eq!(status, want, "{body}: {res}");
        assert!(error_of(&res).contains(text), "{body}: {res}");
    }
    assert_eq!(user(&server, "u1").await["last_sync"]["book_count"], 42);

    // A user called `sync-all` is not shadowed by a route: it can be shown and removed, and
    // the daily sync starts at POST /api/admin/daily-syncs.
    let (status, res) = server
        .post("/api/admin/users", &json!({"id": "sync-all"}), Some(&admin))
        .await;
    assert_eq!(status, 201, "{res}");
    let u = user(&server, "sync-all").await;
    assert_eq!(u["id"], "sync-all", "{u}");
    assert_eq!(u["token_status"], "missing", "{u}");
    let (status, res) = post_raw(&server, "/api/admin/users/sync-all", "", Some(&bearer)).await;
    assert_eq!(status, 405, "the old daily-sync route is gone: {res}");
    let (status, res) = post_raw(&server, "/api/admin/daily-syncs", "", Some(&bearer)).await;
    assert_eq!(status, 202, "{res}");
    let run = finished_run(
        &server,
        res["event_id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run["function_id"], "readwise-daily-sync", "{run}");
    let res = server
        .client
        .delete(format!("{}/api/admin/users/sync-all", server.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let (status, res) = server.get("/api/admin/users/sync-all").await;
    assert_eq!(status, 404, "{res}");
    // Ids outside the safe set are refused with the rule.
    let (status, res) = server
        .post("/api/admin/users", &json!({"id": "a/b"}), Some(&admin))
        .await;
    assert_eq!(status, 400, "{res}");
    assert!(error_of(&res).contains("1-128 characters"), "{res}");
}

// ---- 4. The seed's payload with apiKey ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_payload_api_key_goes_to_the_keychain_and_out_of_the_event() {
    let Some(w) = World::new(FakeConfig::default()).await else {
        return;
    };
    let token = "rw-payload-token-4";
    w.fake.add_user(token, 1200);
    w.add_user("u2", None).await;
    let server = w.server();
    assert_eq!(user(&server, "u2").await["token_status"], "missing");
    assert_eq!(w.keychain_token("u2").await, None);

    // From an anonymous sender (any key works, as no event key is set): refused, and
    // nothing changes, so no local process or web page can replace a user's token.
    let seed = json!({"name": "readwise/fetch-books", "data": {"userId": "u2", "apiKey": token}});
    let (status, res) = server.post("/e/any-key", &seed, None).await;
    assert_eq!(status, 401, "{res}");
    assert!(
        res["error"].as_str().unwrap().contains("admin token"),
        "{res}"
    );
    assert!(!res.to_string().contains(token), "{res}");
    assert_eq!(w.keychain_token("u2").await, None);
    assert_eq!(user(&server, "u2").await["token_status"], "missing");

    // From an authorized sender (the admin token), the seed's payload works.
    let ids = server.send_authorized(&seed).await;
    assert_eq!(w.keychain_token("u2").await.as_deref(), Some(token));
    let (status, event) = server.get(&format!("/v1/events/{}", ids[0])).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["data"]["data"], json!({"userId": "u2"}), "{event}");
    let run = finished_run(&server, &ids[0], Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Completed", "{run}");
    assert_eq!(run["output"]["bookCount"], 1200, "{run}");
    let u = user(&server, "u2").await;
    assert_eq!(u["token_status"], "connected", "{u}");
    assert_eq!(u["stored_books"], 1200);
    let detail = run_detail(&server, run["run_id"].as_str().unwrap()).await;
    assert_eq!(detail["event"]["data"], json!({"userId": "u2"}), "{detail}");

    // Unknown user (from an authorized sender: an anonymous one learns nothing about which
    // users exist): refused at the door, naming the field and not echoing the key.
    let admin = server.admin_token();
    let (status, res) = server
        .post(
            "/e/key",
            &json!({"name": "readwise/fetch-books", "data": {"userId": "ghost", "apiKey": "rw-ghost-key"}}),
            Some(&admin),
        )
        .await;
    assert_eq!(status, 400, "{res}");
    let error = res["error"].as_str().unwrap();
    assert!(error.contains("data.userId"), "{res}");
    assert!(!error.contains("rw-ghost-key"), "{res}");
    assert_eq!(w.keychain_token("ghost").await, None);
    let (status, res) = server
        .post(
            "/e/key",
            &json!({"name": "readwise/fetch-books", "data": {"user": "u2"}}),
            None,
        )
        .await;
    assert_eq!(status, 400, "{res}");
    assert!(
        res["error"].as_str().unwrap().contains("data.userId"),
        "{res}"
    );
    let (_, events) = server.get("/v1/events?name=readwise/fetch-books").await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1, "{events}");
}

// ---- 5. No token anywhere on disk -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_known_token_never_reaches_the_database_wal_or_logs() {
    let Some(w) = World::new(FakeConfig::default()).await else {
        return;
    };
    let token = "rw-tok-7f3a9c-KNOWN";
    w.fake.add_user(token, 1500);
    // Path 1: the CLI.
    w.add_user("u1", Some(token)).await;
    let mut server = w.server_with(&["--retry-interval", "0.2"], &[("STEPDESK_LOG", "debug")]);

    // A full sync, with a failed attempt on the way (its error is stored too).
    w.fake.fail_next(token, 1, 503);
    let event = trigger(&server, json!({"userId": "u1"})).await;
    let run = finished_run(&server, &event, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Completed", "{run}");
    assert_eq!(run["output"]["bookCount"], 1500);
    // Path 2: the seed payload's apiKey on the event API.
    let ids = server
        .send_authorized(
            &json!({"name": "readwise/fetch-books", "data": {"userId": "u1", "apiKey": token}}),
        )
        .await;
    let run = finished_run(&server, &ids[0], Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Completed", "{run}");
    // Path 3: the seed route's apiKey.
    let event = trigger(&server, json!({"userId": "u1", "apiKey": token})).await;
    let run = finished_run(&server, &event, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Completed", "{run}");
    // A rejected token: its error is stored and logged.
    w.fake.fail_next(token, 1, 401);
    let event = trigger(&server, json!({"userId": "u1"})).await;
    let run = finished_run(&server, &event, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Failed", "{run}");
    assert_eq!(w.keychain_token("u1").await.as_deref(), Some(token));

    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");

    // The search finds what is there...
    let probe_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        probe_dir.path().join("probe.bin"),
        format!("\0\0prefix{token}suffix\0"),
    )
    .unwrap();
    assert_eq!(
        files_containing(probe_dir.path(), token.as_bytes()).len(),
        1
    );
    let db = w.data.join("stepdesk.db");
    assert!(
        files_containing(&w.data, b"readwise-fetch-books").contains(&db),
        "the database holds the runs"
    );
    let logs: Vec<PathBuf> = std::fs::read_dir(w.data.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!logs.is_empty(), "the server logged to a file");
    let log_hits = files_containing(&w.data.join("logs"), b"Readwise request");
    assert!(
        !log_hits.is_empty(),
        "debug logs of Readwise requests were written"
    );
    // ...and no file in the data directory (database, WAL, SHM, logs) holds the token.
    let hits = files_containing(&w.data, token.as_bytes());
    assert!(hits.is_empty(), "the token was found in {hits:?}");
    // Nor a distinctive part of it.
    let hits = files_containing(&w.data, b"7f3a9c-KNOWN");
    assert!(hits.is_empty(), "part of the token was found in {hits:?}");
}

// ---- 5b. A token under another key spelling is refused, and stored nowhere --------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_under_another_key_spelling_is_refused_and_stored_nowhere() {
    let Some(w) = World::new(FakeConfig::default()).await else {
        return;
    };
    let token = "rw-tok-real-5b";
    let stray = "rw-tok-9d2e4b-STRAY";
    w.fake.add_user(token, 10);
    w.fake.add_user(stray, 10);
    w.add_user("u1", Some(token)).await;
    let mut server = w.server_with(&["--retry-interval", "0.2"], &[("STEPDESK_LOG", "debug")]);
    let admin = format!("Bearer {}", server.admin_token());

    for key in [
        "apikey",
        "api_key",
        "API_KEY",
        "api-key",
        "ApiKey",
        "apiToken",
        "token",
        "access_token",
    ] {
        let mut data = serde_json::Map::new();
        data.insert("userId".into(), json!("u1"));
        data.insert(key.into(), json!(stray));
        let event = json!({"name": "readwise/fetch-books", "data": data});
        let (status, res) = server.post("/e/key", &event, None).await;
        assert_eq!(status, 400, "{key}: {res}");
        let error = res["error"].as_str().unwrap();
        assert!(error.contains(&format!("`data.{key}`")), "{key}: {res}");
        assert!(error.contains("`data.apiKey`"), "{key}: {res}");
        assert!(!res.to_string().contains(stray), "{key}: {res}");
        // In a batch with a good event, nothing is stored either.
        let good = json!({"name": "readwise/fetch-books", "data": {"userId": "u1"}});
        let (status, res) = server.post("/e/key", &json!([good, event]), None).await;
        assert_eq!(status, 400, "{key}: {res}");
        assert!(!res.to_string().contains(stray), "{key}: {res}");
        // The seed route accepts only `userId` and `apiKey`.
        let (status, res) = post_raw(
            &server,
            "/api/inngest/trigger-readwise",
            &json!({"userId": "u1", key: stray}).to_string(),
            Some(&admin),
        )
        .await;
        assert_eq!(status, 400, "{key}: {res}");
        assert!(!res.to_string().contains(stray), "{key}: {res}");
    }
    let (_, events) = server.get("/v1/events?name=readwise/fetch-books").await;
    assert_eq!(events["data"], json!([]), "nothing was stored: {events}");
    assert_eq!(w.keychain_token("u1").await.as_deref(), Some(token));
    assert_eq!(w.fake.requests(stray, FakeEndpoint::Auth), 0);

    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(
        std::fs::read_dir(w.data.join("logs"))
            .unwrap()
            .next()
            .is_some(),
        "the server logged to a file"
    );
    let hits = files_containing(&w.data, stray.as_bytes());
    assert!(hits.is_empty(), "the stray token was found in {hits:?}");
    let hits = files_containing(&w.data, b"9d2e4b-STRAY");
    assert!(
        hits.is_empty(),
        "part of the stray token was found in {hits:?}"
    );
}

// ---- 6. Readwise faults, end to end ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readwise_faults_fail_or_retry_runs_as_they_should() {
    let Some(w) = World::new(FakeConfig::default()).await else {
        return;
    };
    let tokens: HashMap<&str, &str> = [
        ("rejected", "rw-fault-401"),
        ("server-error", "rw-fault-5xx"),
        ("throttled", "rw-fault-429"),
        ("malformed", "rw-fault-html"),
    ]
    .into_iter()
    .collect();
    for (id, token) in &tokens {
        w.fake.add_user(token, 2500);
        w.add_user(id, Some(token)).await;
    }
    let server = w.server();

    // 401: Readwise no longer knows the token.
    w.fake.remove_token(tokens["rejected"]);
    // 503 on the second page only (the first books request is answered normally).
    let t = tokens["server-error"];
    w.fake
        .inject(t, Some(FakeEndpoint::Books), Fault::Slow(Duration::ZERO), 1);
    w.fake
        .inject(t, Some(FakeEndpoint::Books), Fault::Status(503), 1);
    // 429 with Retry-After: 2 on the second page.
    let t = tokens["throttled"];
    w.fake
        .inject(t, Some(FakeEndpoint::Books), Fault::Slow(Duration::ZERO), 1);
    w.fake.inject(
        t,
        Some(FakeEndpoint::Books),
        Fault::Throttle {
            retry_after_secs: 2,
            header: true,
        },
        1,
    );
    // An HTML page instead of JSON on the first page.
    w.fake.inject(
        tokens["malformed"],
        Some(FakeEndpoint::Books),
        Fault::Malformed,
        1,
    );

    let mut events = HashMap::new();
    for id in tokens.keys() {
        events.insert(*id, trigger(&server, json!({"userId": id})).await);
    }

    // Rejected: the run fails at once with the plain message, and the failure handler
    // records it on the user.
    let run = finished_run(&server, &events["rejected"], Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Failed", "{run}");
    let message = "Readwise rejected the token for user rejected";
    assert_eq!(run["error"]["message"], message, "{run}");
    let detail = run_detail(&server, run["run_id"].as_str().unwrap()).await;
    let check = step(&detail, "check-token");
    assert_eq!(check["attempts"], 1, "not retried: {check}");
    assert!(
        !step_ids(&detail)
            .iter()
            .any(|s| s.starts_with("fetch-page")),
        "{detail}"
    );
    let u = eventually(
        Duration::from_secs(30),
        "the failure to be recorded",
        || {
            let server = &server;
            async move {
                let u = user(server, "rejected").await;
                (u["last_sync"]["status"] == "failed").then_some(u)
            }
        },
    )
    .await;
    assert_eq!(u["token_status"], "rejected", "{u}");
    assert_eq!(u["last_sync"]["error"], message, "{u}");
    assert_eq!(u["last_sync"]["run_id"], run["run_id"]);
    assert_eq!(u["stored_books"], 0);

    // 5xx: the page step retries and the run completes with every book.
    let run = finished_run(&server, &events["server-error"], Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Completed", "{run}");
    assert_eq!(run["output"]["bookCount"], 2500);
    let detail = run_detail(&server, run["run_id"].as_str().unwrap()).await;
    assert_eq!(step(&detail, "fetch-page-1")["failed_attempts"], json!([]));
    let page2 = step(&detail, "fetch-page-2");
    assert_eq!(page2["status"], "Completed");
    let failed = page2["failed_attempts"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{page2}");
    assert!(
        failed[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{page2}"
    );
    assert_eq!(user(&server, "server-error").await["stored_books"], 2500);

    // 429: retried no earlier than Retry-After says, then completes.
    let run = finished_run(&server, &events["throttled"], Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Completed", "{run}");
    assert_eq!(run["output"]["bookCount"], 2500);
    let detail = run_detail(&server, run["run_id"].as_str().unwrap()).await;
    let page2 = step(&detail, "fetch-page-2");
    let failed = page2["failed_attempts"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{page2}");
    let ended = failed[0]["ended_at"].as_i64().unwrap();
    let retry_at = failed[0]["retry_at"].as_i64().unwrap();
    assert!(
        retry_at - ended >= 1500,
        "the retry waits for Retry-After (2 s), not --retry-interval: {page2}"
    );
    assert!(page2["ended_at"].as_i64().unwrap() >= retry_at, "{page2}");
    assert_eq!(w.fake.throttled_for(tokens["throttled"]), 1);
    assert_eq!(user(&server, "throttled").await["stored_books"], 2500);

    // Malformed: retried, then completes; the error names the endpoint.
    let run = finished_run(&server, &events["malformed"], Duration::from_secs(60)).await;
    assert_eq!(run["status"], "Completed", "{run}");
    assert_eq!(run["output"]["bookCount"], 2500);
    let detail = run_detail(&server, run["run_id"].as_str().unwrap()).await;
    let page1 = step(&detail, "fetch-page-1");
    let failed = page1["failed_attempts"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{page1}");
    let error = failed[0]["error"]["message"].as_str().unwrap();
    assert!(
        error.contains("malformed") && error.contains("books"),
        "{page1}"
    );
    assert_eq!(user(&server, "malformed").await["stored_books"], 2500);

    // Only the injected 429 was seen: the client's limiter provoked none.
    assert_eq!(w.fake.stats().throttled, 1);
}

// ---- 7. SIGKILL during a daily sync of 50 users ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daily_sync_of_50_users_survives_a_kill_and_syncs_each_user_exactly_once() {
    const USERS: usize = 50;
    let Some(w) = World::new(FakeConfig {
        latency: Duration::from_millis(40),
        ..FakeConfig::default()
    })
    .await
    else {
        return;
    };
    let ids: Vec<String> = (0..USERS).map(|i| format!("user-{i:02}")).collect();
    let token_of = |id: &str| format!("rw-daily-{id}");
    for id in &ids {
        w.fake.add_user(&token_of(id), 1200);
    }
    // Through the CLI, several at a time.
    let tokens: Vec<String> = ids.iter().map(|id| token_of(id)).collect();
    let users: Vec<(&str, Option<&str>)> = ids
        .iter()
        .zip(&tokens)
        .map(|(id, t)| (id.as_str(), Some(t.as_str())))
        .collect();
    for chunk in users.chunks(10) {
        w.add_users(chunk).await;
    }

    // Two Readwise requests in flight at once: the sync takes a few seconds.
    let args = ["--retry-interval", "0.2", "--readwise-concurrency", "2"];
    let mut server = w.server_with(&args, &[]);
    let admin = server.admin_token();
    let (status, res) = server
        .post("/api/inngest/trigger-schedule", &json!({}), Some(&admin))
        .await;
    assert_eq!(status, 202, "{res}");
    let event = res["eventId"].as_str().unwrap().to_string();

    let progress = |server: &Server| {
        let client = server.client.clone();
        let url = server.url.clone();
        async move {
            let syncs: Value = client
                .get(format!("{url}/api/admin/daily-syncs"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            syncs.as_array()?.first().cloned()
        }
    };
    // Kill it once some users are synced, but not all.
    let at_kill = eventually(Duration::from_secs(60), "some users to be synced", || {
        let p = progress(&server);
        async move {
            let p = p.await?;
            let done = p["done"].as_i64()?;
            (done >= 10).then_some(p)
        }
    })
    .await;
    server.kill();
    let done_at_kill = at_kill["done"].as_i64().unwrap();
    assert_eq!(at_kill["total"], USERS, "{at_kill}");
    assert!(
        done_at_kill < USERS as i64,
        "the kill came too late to test anything: {at_kill}"
    );
    let daily_run = at_kill["run_id"].as_str().unwrap().to_string();
    let conn = rusqlite::Connection::open(w.data.join("stepdesk.db")).unwrap();
    let interrupted: i64 = conn
        .query_row(
            "SELECT count(*) FROM runs WHERE function_id = 'readwise-fetch-books' AND status = 'Running'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    eprintln!(
        "killed with {done_at_kill} of {USERS} users synced, {interrupted} fetch runs running"
    );
    assert!(interrupted > 0, "no fetch run was interrupted by the kill");

    // Restart: the rest finishes.
    let server = w.server_with(&args, &[]);
    let finished = eventually(Duration::from_secs(90), "every user to be synced", || {
        let p = progress(&server);
        async move {
            let p = p.await?;
            (p["done"] == p["total"]).then_some(p)
        }
    })
    .await;
    assert_eq!(finished["run_id"], daily_run.as_str());
    assert_eq!(finished["total"], USERS, "{finished}");
    assert_eq!(finished["ok"], USERS, "{finished}");
    assert_eq!(finished["failed"], 0, "{finished}");
    let daily = finished_run(&server, &event, Duration::from_secs(30)).await;
    assert_eq!(daily["run_id"], daily_run.as_str());
    assert_eq!(daily["status"], "Completed", "{daily}");

    let (status, users) = server.get("/api/admin/users").await;
    assert_eq!(status, 200);
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), USERS);
    for u in users {
        let id = u["id"].as_str().unwrap();
        let total = w.fake.book_count(&token_of(id)).unwrap();
        assert_eq!(u["stored_books"], total, "{u}");
        assert_eq!(u["readwise_total"], total, "{u}");
        assert_eq!(u["last_sync"]["status"], "ok", "{u}");
        assert_eq!(
            u["last_sync"]["daily_sync_run_id"],
            daily_run.as_str(),
            "{u}"
        );
    }

    // Exactly one fetch run per user for this daily sync, each completed.
    let (status, page) = server
        .get("/api/admin/runs?function_id=readwise-fetch-books&limit=500")
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page["next_cursor"].is_null(), "{page}");
    let runs = page["runs"].as_array().unwrap();
    let mut per_user: HashMap<String, usize> = HashMap::new();
    for r in runs {
        let detail = run_detail(&server, r["id"].as_str().unwrap()).await;
        assert_eq!(detail["status"], "Completed", "{detail}");
        let data = &detail["event"]["data"];
        assert_eq!(data["dailySyncRunId"], daily_run.as_str(), "{detail}");
        *per_user
            .entry(data["userId"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_user.len(), USERS, "{per_user:?}");
    assert!(per_user.values().all(|&n| n == 1), "{per_user:?}");
    assert_eq!(w.fake.stats().throttled, 0);
}
