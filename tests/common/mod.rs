//! Helpers for the end-to-end tests: start the real `stepdesk` binary, talk to it over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `stepdesk serve` process. Killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
}

pub struct Options<'a> {
    pub data_dir: &'a Path,
    pub fixture_log: Option<&'a Path>,
    pub extra_args: &'a [&'a str],
}

impl Server {
    pub fn start(opts: Options<'_>) -> Server {
        Server::start_with_env(opts, &[])
    }

    /// Like [`Server::start`], with extra environment variables (set last, so they can
    /// override the defaults above, e.g. `STEPDESK_LOG`).
    pub fn start_with_env(opts: Options<'_>, env: &[(&str, &str)]) -> Server {
        Server::start_inner(opts, env, Stdio::null())
    }

    /// Like [`Server::start_with_env`], with stderr written to `stderr` (a file, so not a
    /// terminal).
    pub fn start_with_stderr(opts: Options<'_>, env: &[(&str, &str)], stderr: &Path) -> Server {
        let file = std::fs::File::create(stderr).expect("create the stderr file");
        Server::start_inner(opts, env, Stdio::from(file))
    }

    fn start_inner(opts: Options<'_>, env: &[(&str, &str)], stderr: Stdio) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stepdesk"));
        cmd.args(["serve", "--port", "0", "--data-dir"])
            .arg(opts.data_dir)
            .args(opts.extra_args)
            .env("STEPDESK_TEST_FIXTURES", "1")
            .env("STEPDESK_LOG", "info")
            .env_remove("STEPDESK_EVENT_KEY")
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(log) = opts.fixture_log {
            cmd.env("STEPDESK_FIXTURE_LOG", log);
        }
        cmd.envs(env.iter().copied());
        let (child, url) = spawn_listening(cmd);
        Server {
            child,
            url,
            data_dir: opts.data_dir.to_path_buf(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    pub fn simple(data_dir: &Path) -> Server {
        Server::start(Options {
            data_dir,
            fixture_log: None,
            extra_args: &[],
        })
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "stepdesk did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.url)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, events: &Value) -> Vec<String> {
        self.send_with(events, None).await
    }

    /// Sends events with the admin token: an authorized sender, which may hand Stepdesk a
    /// secret (the seed's `apiKey`).
    pub async fn send_authorized(&self, events: &Value) -> Vec<String> {
        let token = self.admin_token();
        self.send_with(events, Some(&token)).await
    }

    async fn send_with(&self, events: &Value, token: Option<&str>) -> Vec<String> {
        let (status, body) = self.post("/e/test-key", events, token).await;
        assert_eq!(status, 200, "{body}");
        body["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    pub async fn runs_of_event(&self, event_id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/events/{event_id}/runs")).await;
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until every given event has at least one run and all its runs have ended.
    pub async fn wait_finished(&self, event_ids: &[String], timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = Vec::new();
            let mut done = true;
            for id in event_ids {
                let runs = self.runs_of_event(id).await;
                if runs.is_empty() || runs.iter().any(|r| r["status"] == "Running") {
                    done = false;
                }
                all.extend(runs);
            }
            if done {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "runs did not finish in {timeout:?}: {all:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns Some, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spawns a `stepdesk` command that prints "Stepdesk is listening on URL" on stdout once it
/// listens (`serve`, `inspect`, the window); returns the child and the URL.
pub fn spawn_listening(mut cmd: Command) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start stepdesk");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Stepdesk is listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("stepdesk did not print its URL within 30 s");
    (child, url)
}

/// Runs `stepdesk ARGS` to completion with extra environment variables and `stdin`.
pub fn run_cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepdesk"))
        .args(args)
        .env_remove("STEPDESK_URL")
        .env_remove("STEPDESK_EVENT_KEY")
        .env_remove("STEPDESK_DATA_DIR")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stepdesk");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.as_bytes()).unwrap();
    drop(pipe);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(90))
        .expect("stepdesk did not finish within 90 s")
        .unwrap()
}

/// The mode bits (`0o777`) of a file or directory.
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Sends one raw HTTP/1.1 `GET path` with this `Host` header; returns the status code.
pub fn get_with_host(url: &str, path: &str, host: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"))
}
