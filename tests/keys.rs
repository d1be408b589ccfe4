//! `stepdesk keys`: the engine's event key lives in the OS keychain (the real Secret
//! Service: `make test` runs the suite inside a session bus with an unlocked GNOME Keyring).
//! Changes reach a running server; a key that cannot be read stops `serve` from starting.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{run_cli, Options, Server};
use serde_json::{json, Value};

fn stepdesk(service: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stepdesk"));
    cmd.env("STEPDESK_KEYCHAIN_SERVICE", service)
        .env_remove("STEPDESK_EVENT_KEY");
    cmd
}

fn run_with_stdin(service: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = stepdesk(service)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_event_key_comes_from_the_keychain() {
    let service = format!("stepdesk-test-keys-{}", std::process::id());
    let out = run_with_stdin(&service, &["keys", "set", "event-key"], "ek-test-123\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = stepdesk(&service)
        .args(["keys", "status"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.contains("engine:event-key     set"), "{status}");
    assert!(
        !status.contains("ek-test-123"),
        "the value is never printed"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut server = stepdesk(&service)
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("Stepdesk is listening on ")
        .unwrap()
        .to_string();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let send = |key: &str| {
        client
            .post(format!("{url}/e/{key}"))
            .body(r#"{"name":"app/x"}"#)
            .send()
    };
    assert_eq!(send("wrong").await.unwrap().status().as_u16(), 401);
    assert_eq!(send("ek-test-123").await.unwrap().status().as_u16(), 200);
    let _ = server.kill();
    let _ = server.wait();

    let out = stepdesk(&service)
        .args(["keys", "remove", "event-key"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let again = stepdesk(&service)
        .args(["keys", "remove", "event-key"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not set"));
    let empty = run_with_stdin(&service, &["keys", "set", "signing-key"], "  \n");
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("standard input"));
}

#[test]
fn without_a_keychain_the_keys_command_says_how_to_get_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_stepdesk"))
        .args(["keys", "status"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no Secret Service") && stderr.contains("gnome-keyring-daemon --unlock"),
        "{stderr}"
    );
}

fn show(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `stepdesk ARGS --data-dir DIR` with this keychain service (and more environment).
fn keys_cli(
    service: &str,
    dir: &Path,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--data-dir", dir.to_str().unwrap()]);
    let mut vars = vec![("STEPDESK_KEYCHAIN_SERVICE", service)];
    vars.extend_from_slice(env);
    run_cli(&all, &vars, stdin)
}

/// A fresh, empty runtime directory: no session bus socket in it.
fn no_bus(dir: &Path) -> Vec<(&'static str, String)> {
    let runtime = dir.join("no-bus-runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    vec![("XDG_RUNTIME_DIR", runtime.to_str().unwrap().to_string())]
}

/// `stepdesk serve` without a session bus; returns its output once it exits, or the child
/// if it is still running after 5 s (it started).
fn serve_without_bus(
    service: &str,
    data: &Path,
    args: &[&str],
) -> Result<std::process::Output, std::process::Child> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stepdesk"));
    cmd.args(["serve", "--port", "0", "--data-dir"])
        .arg(data)
        .args(args)
        .env("STEPDESK_KEYCHAIN_SERVICE", service)
        .env_remove("STEPDESK_EVENT_KEY")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .envs(no_bus(data.parent().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            return Ok(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(child)
}

#[tokio::test]
async fn an_unreadable_keychain_never_means_no_event_key() {
    let service = format!("stepdesk-test-keys-closed-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = keys_cli(
        &service,
        &data,
        &["keys", "set", "event-key"],
        "ek-stored\n",
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));

    // The key is stored, the keychain cannot be reached: no start, and why and how to fix.
    let out = serve_without_bus(&service, &data, &[]).expect("serve should refuse to start");
    assert!(!out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "an event key for this data directory is stored in the OS keychain, but the keychain cannot be read",
        "--event-key",
        "unlock your keyring",
        "stepdesk keys remove event-key",
    ] {
        assert!(stderr.contains(needle), "`{needle}`: {}", show(&out));
    }
    assert!(!stderr.contains("ek-stored"));
    assert!(!data.join("server.json").exists());

    // --event-key makes the keychain unnecessary.
    let mut child = serve_without_bus(&service, &data, &["--event-key", "ek-flag"])
        .expect_err("serve with --event-key should start");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("Stepdesk is listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let client = reqwest::Client::new();
    let send = |key: &str| {
        client
            .post(format!("{url}/e/{key}"))
            .body(r#"{"name":"app/x"}"#)
            .send()
    };
    assert_eq!(send("anything").await.unwrap().status().as_u16(), 401);
    assert_eq!(send("ek-flag").await.unwrap().status().as_u16(), 200);
    let keys: Value = client
        .get(format!("{url}/api/admin/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys["event_key"]["source"], "flag", "{keys}");
    assert_eq!(keys["event_key"]["in_effect"], true);
    assert!(keys["event_key"]["stored"].is_null(), "unknown: {keys}");
    assert!(keys["keychain_error"].is_string(), "{keys}");
    let _ = child.kill();
    let _ = child.wait();

    // A data directory whose server once read the key from the keychain remembers it too.
    let other = dir.path().join("other");
    let mut server = Server::start_with_env(
        Options {
            data_dir: &other,
            fixture_log: None,
            extra_args: &[],
        },
        &[("STEPDESK_KEYCHAIN_SERVICE", &service)],
    );
    server.kill();
    let out = serve_without_bus(&service, &other, &[]).expect("serve should refuse to start");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the keychain cannot be read"),
        "{}",
        show(&out)
    );

    // Once the key is removed, no keychain means no key: Stepdesk starts, open.
    let out = keys_cli(&service, &data, &["keys", "remove", "event-key"], "", &[]);
    assert!(out.status.success(), "{}", show(&out));
    let mut child =
        serve_without_bus(&service, &data, &[]).expect_err("serve should start without a key");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn key_changes_reach_the_running_server() {
    let service = format!("stepdesk-test-keys-live-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("STEPDESK_KEYCHAIN_SERVICE", service.as_str())];
    let start = |args: &'static [&'static str]| {
        Server::start_with_env(
            Options {
                data_dir: &data,
                fixture_log: None,
                extra_args: args,
            },
            &env,
        )
    };
    let mut server = start(&[]);
    let token = server.admin_token();
    let event = json!({"name": "app/x"});
    assert_eq!(server.post("/e/anything", &event, None).await.0, 200);

    let out = keys_cli(
        &service,
        &data,
        &["keys", "set", "event-key"],
        "ek-live\n",
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("through the server at"),
        "{}",
        show(&out)
    );
    // In effect at once.
    assert_eq!(server.post("/e/anything", &event, None).await.0, 401);
    assert_eq!(server.post("/e/ek-live", &event, None).await.0, 200);
    let (status, keys) = server.get("/api/admin/keys").await;
    assert_eq!(status, 200);
    assert_eq!(
        keys["event_key"],
        json!({"stored": true, "in_effect": true, "source": "keychain"})
    );
    assert_eq!(keys["signing_key"], json!({"stored": false}));
    assert!(!keys.to_string().contains("ek-live"));
    let out = keys_cli(&service, &data, &["keys", "status"], "", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("engine:event-key     set"),
        "{}",
        show(&out)
    );
    assert!(
        stdout.contains("requires the event key from the keychain"),
        "{}",
        show(&out)
    );

    let out = keys_cli(&service, &data, &["keys", "remove", "event-key"], "", &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(server.post("/e/anything", &event, None).await.0, 200);
    let (_, keys) = server.get("/api/admin/keys").await;
    assert_eq!(
        keys["event_key"],
        json!({"stored": false, "in_effect": false, "source": "none"})
    );
    let out = keys_cli(&service, &data, &["keys", "remove", "event-key"], "", &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not set"),
        "{}",
        show(&out)
    );

    // The routes: mutations need the admin token; bad names and bodies are 4xx with JSON.
    let url = server.url.clone();
    let http = reqwest::Client::new();
    let put = |path: &str, body: Value, token: Option<&str>| {
        let mut req = http.put(format!("{url}{path}")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let res = put("/api/admin/keys/event-key", json!({"value": "k"}), None)
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 401);
    for (path, body, status) in [
        ("/api/admin/keys/event-key", json!({"value": ""}), 400),
        ("/api/admin/keys/event-key", json!({"value": "a b"}), 400),
        ("/api/admin/keys/event-key", json!({"key": "k"}), 400),
        // An unknown key name is a bad parameter, named with the ones that exist.
        ("/api/admin/keys/nope", json!({"value": "k"}), 400),
    ] {
        let res = put(path, body.clone(), Some(&token)).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path} {body}");
        let answer: Value = res.json().await.unwrap();
        assert!(answer["error"].is_string(), "{answer}");
        assert!(
            !answer.to_string().contains("a b"),
            "never echoes a key: {answer}"
        );
    }
    let res = put(
        "/api/admin/keys/signing-key",
        json!({"value": "sk-1"}),
        Some(&token),
    )
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    server.kill();

    // A key pinned by --event-key stays in effect; the keychain entry still changes.
    let server = start(&["--event-key", "ek-pinned"]);
    let out = keys_cli(
        &service,
        &data,
        &["keys", "set", "event-key"],
        "ek-new\n",
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--event-key stays in effect"),
        "{}",
        show(&out)
    );
    assert_eq!(server.post("/e/ek-new", &event, None).await.0, 401);
    assert_eq!(server.post("/e/ek-pinned", &event, None).await.0, 200);
    let (_, keys) = server.get("/api/admin/keys").await;
    assert_eq!(
        keys["event_key"],
        json!({"stored": true, "in_effect": true, "source": "flag"})
    );
    for key in ["event-key", "signing-key"] {
        let _ = keys_cli(&service, &data, &["keys", "remove", key], "", &[]);
    }
}
