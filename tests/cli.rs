//! The `stepdesk` command line end to end, against the real binary: finding the running
//! server (`server.json`), `sync` (progress, URL-encoded ids, data directories that do not
//! exist or belong to another server), `settings` through the running server, `--host` and
//! `--allow-host`, start-up errors, the data directory's permissions, and the fixtures'
//! defaults.
//!
//! The `sync` test needs a Secret Service for the user's token (run it through `make test`
//! or tests/with-session.sh, or set STEPDESK_SKIP_KEYCHAIN_TESTS=1 to skip it).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{get_with_host, run_cli, Options, Server};
use readwise_fake::{FakeConfig, FakeReadwise};
use serde_json::{json, Value};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Failed cleanly (an error exit, not a panic) with `message` on stderr.
#[track_caller]
fn assert_fails_with(out: &Output, message: &str) {
    assert!(!out.status.success(), "should fail: {}", show(out));
    assert_ne!(out.status.code(), Some(101), "a panic: {}", show(out));
    assert!(
        text(&out.stderr).contains(message),
        "stderr should say `{message}`: {}",
        show(out)
    );
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(out.status.success(), "should succeed: {}", show(out));
}

fn with_data_dir<'a>(args: &[&'a str], dir: &'a Path) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.push("--data-dir");
    v.push(dir.to_str().unwrap());
    v
}

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
            "this test needs a Secret Service (run it through `make test` or \
             tests/with-session.sh, or set STEPDESK_SKIP_KEYCHAIN_TESTS=1 to skip): {e}"
        ),
    }
}

// ---- server.json and `stepdesk sync` ----------------------------------------------------

// Several threads: the fake Readwise runs in this runtime while the CLI runs are awaited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_finds_a_port_0_server_through_server_json_and_shows_progress() {
    if !keychain_available().await {
        return;
    }
    let fake = FakeReadwise::start(FakeConfig::unlimited()).await.unwrap();
    fake.add_user("tok-ada", 1500);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = format!("stepdesk-test-cli-{}", std::process::id());
    let base_url = fake.base_url();
    let env = [
        ("STEPDESK_KEYCHAIN_SERVICE", service.as_str()),
        ("READWISE_API_URL", base_url.as_str()),
        ("STEPDESK_LOG", "warn"),
    ];
    assert_ok(&run_cli(
        &with_data_dir(&["users", "add", "ada", "--token-stdin"], &data),
        &env,
        "tok-ada\n",
    ));

    let mut server = Server::start_with_env(
        Options {
            data_dir: &data,
            fixture_log: None,
            extra_args: &["--retry-interval", "0.2"],
        },
        &env,
    );
    // The CLI's support action is in the audit trail, with origin CLI.
    let (status, audit) = server.get("/api/admin/audit?user_id=ada").await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit.as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "add_user" && e["origin"] == "cli" && e["ok"] == true),
        "{audit}"
    );
    // The server records where it listens, privately.
    let file: Value =
        serde_json::from_slice(&std::fs::read(data.join("server.json")).unwrap()).unwrap();
    assert_eq!(file["url"], server.url.as_str());
    assert_eq!(file["pid"], server.child.id());
    #[cfg(unix)]
    assert_eq!(common::mode(&data.join("server.json")), 0o600);

    // No --url, no STEPDESK_URL: the CLI finds the --port 0 server.
    let out = run_cli(
        &with_data_dir(&["sync", "ada", "--timeout", "60"], &data),
        &env,
        "",
    );
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("ada: 1500 books (full sync"),
        "{}",
        show(&out)
    );
    // Progress on stderr: the run's state with the pages and books fetched.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ada: completed, 2 pages fetched, 1500 of 1500 books"),
        "{}",
        show(&out)
    );

    let out = run_cli(
        &with_data_dir(&["sync", "--all", "--timeout", "60"], &data),
        &env,
        "",
    );
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("1 of 1 users synced, 0 failed"),
        "{}",
        show(&out)
    );
    assert!(
        text(&out.stderr).contains("daily sync: 1 of 1 users done (1 ok, 0 failed)"),
        "{}",
        show(&out)
    );

    // A clean exit removes the file.
    assert!(server.terminate().success());
    assert!(!data.join("server.json").exists());

    // A killed server leaves it behind; the CLI notices that its process is gone.
    let mut server = Server::start_with_env(
        Options {
            data_dir: &data,
            fixture_log: None,
            extra_args: &[],
        },
        &env,
    );
    server.kill();
    assert!(data.join("server.json").exists());
    let out = run_cli(
        &with_data_dir(&["sync", "ada", "--timeout", "5"], &data),
        &env,
        "",
    );
    assert_fails_with(&out, "is no longer running");

    let _ = std::process::Command::new("secret-tool")
        .args([
            "clear",
            "service",
            &service,
            "username",
            "readwise-token:ada",
        ])
        .status();
}

#[test]
fn read_only_commands_do_not_create_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    for args in [
        vec!["sync", "ada"],
        vec!["sync", "--all", "--url", "http://127.0.0.1:9"],
        vec!["admin-token"],
        vec!["settings", "show"],
    ] {
        let out = run_cli(&with_data_dir(&args, &missing), &[], "");
        assert_fails_with(&out, "no Stepdesk data directory at");
        assert_fails_with(&out, "--data-dir");
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
}

#[tokio::test]
async fn a_refused_admin_token_names_the_servers_data_directory() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let server = Server::simple(a.path());
    // Another data directory, with its own admin token.
    assert_ok(&run_cli(
        &with_data_dir(&["admin-token"], b.path()),
        &[],
        "",
    ));
    let out = run_cli(
        &with_data_dir(&["sync", "ada", "--url", &server.url], b.path()),
        &[],
        "",
    );
    let theirs = a.path().canonicalize().unwrap();
    assert_fails_with(
        &out,
        &format!("it uses the data directory {}", theirs.display()),
    );
    let (status, info) = server.get("/api/admin/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["data_dir"], theirs.to_str().unwrap());
}

#[tokio::test]
async fn sync_encodes_the_user_id_in_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::simple(dir.path());
    for id in ["a/b", "x?y", "p%2Fq"] {
        let out = run_cli(
            &with_data_dir(&["sync", id, "--url", &server.url], dir.path()),
            &[],
            "",
        );
        // One path segment, so the users route answers (about that user), not the router.
        assert!(!out.status.success(), "{}", show(&out));
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains("no such route") && !stderr.contains("not allowed"),
            "{id}: {}",
            show(&out)
        );
    }
}

// ---- settings through the running server ----------------------------------------------

#[tokio::test]
async fn settings_changes_reach_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        Options {
            data_dir: dir.path(),
            fixture_log: None,
            extra_args: &[],
        },
        &[("STEPDESK_KEYCHAIN_SERVICE", "stepdesk-test-cli-settings")],
    );
    let env = [("READWISE_API_URL", "")];
    let other = "http://127.0.0.1:9/api/v2/";
    let out = run_cli(
        &with_data_dir(&["settings", "set-readwise-url", other], dir.path()),
        &env,
        "",
    );
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains(&format!("readwise_api_url = {other} (settings)")),
        "{}",
        show(&out)
    );
    let (status, settings) = server.get("/api/admin/settings").await;
    assert_eq!(status, 200);
    assert_eq!(settings["readwise_api_url"], other, "{settings}");
    assert_eq!(settings["source"], "settings");

    let out = run_cli(&with_data_dir(&["settings", "show"], dir.path()), &env, "");
    assert!(
        text(&out.stdout).contains(&format!("readwise_api_url = {other} (settings)")),
        "{}",
        show(&out)
    );
    let out = run_cli(
        &with_data_dir(&["settings", "reset-readwise-url"], dir.path()),
        &env,
        "",
    );
    assert_ok(&out);
    let (_, settings) = server.get("/api/admin/settings").await;
    assert_eq!(settings["readwise_api_url"], "https://readwise.io/api/v2/");
    assert_eq!(settings["source"], "default");

    // A setting written to the database behind the server's back (an older CLI, a script)
    // is not what the server uses, so it is not what the server reports either.
    let db = rusqlite::Connection::open(dir.path().join("stepdesk.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "INSERT INTO readwise_settings (key, value) VALUES ('readwise.api_url', ?1)",
        [other],
    )
    .unwrap();
    let (_, settings) = server.get("/api/admin/settings").await;
    assert_eq!(settings["readwise_api_url"], "https://readwise.io/api/v2/");
    assert_eq!(settings["source"], "default", "{settings}");
}

// ---- --host, --allow-host, start-up errors ----------------------------------------------

fn start_serve(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    Server::start_with_env(
        Options {
            data_dir: data,
            fixture_log: None,
            extra_args: args,
        },
        env,
    )
}

#[tokio::test]
async fn host_names_and_allowed_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_serve(dir.path(), &["--host", "localhost"], &[]);
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let port = server.url.rsplit(':').next().unwrap().to_string();
    assert_eq!(
        get_with_host(&server.url, "/health", &format!("localhost:{port}")),
        200
    );
    assert_eq!(get_with_host(&server.url, "/health", "box.example"), 403);
    drop(server);

    let server = start_serve(
        dir.path(),
        &["--allow-host", "Box.Example", "--allow-host", "[fd00::5]"],
        &[("STEPDESK_ALLOW_HOSTS", "ignored.example")],
    );
    assert_eq!(
        get_with_host(&server.url, "/health", &format!("box.example:{port}")),
        200
    );
    assert_eq!(get_with_host(&server.url, "/health", "[fd00::5]:80"), 200);
    assert_eq!(get_with_host(&server.url, "/health", "other.example"), 403);
    // The flag wins over the environment variable, as for every flag.
    assert_eq!(
        get_with_host(&server.url, "/health", "ignored.example"),
        403
    );
    drop(server);

    let server = start_serve(
        dir.path(),
        &[],
        &[("STEPDESK_ALLOW_HOSTS", "a.example, b.example")],
    );
    assert_eq!(get_with_host(&server.url, "/health", "a.example"), 200);
    assert_eq!(get_with_host(&server.url, "/health", "b.example:1"), 200);
    assert_eq!(get_with_host(&server.url, "/health", "c.example"), 403);
}

#[test]
fn bad_settings_fail_at_start_up_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["serve", "--port", "0"];
        all.extend_from_slice(args);
        run_cli(&with_data_dir(&all, dir.path()), env, "")
    };
    assert_fails_with(&serve(&["--event-key", ""], &[]), "--event-key is empty");
    assert_fails_with(
        &serve(&[], &[("STEPDESK_EVENT_KEY", "")]),
        "STEPDESK_EVENT_KEY is empty",
    );
    assert_fails_with(
        &serve(&["--event-key", "two words"], &[]),
        "must not contain spaces",
    );
    assert_fails_with(
        &serve(&["--host", "no-such-host.invalid"], &[]),
        "cannot be resolved",
    );
    assert_fails_with(
        &serve(&["--allow-host", "box.example:8288"], &[]),
        "without a scheme, port or path",
    );
}

// ---- File permissions -------------------------------------------------------------------

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_files_are_private() {
    use common::mode;
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new").join("data");
    let mut server = Server::simple(&data);
    server.send(&json!({"name": "test/noop"})).await;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("logs")), 0o700);
    for name in ["stepdesk.lock", "server.json", "admin-token", "stepdesk.db"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    for name in ["stepdesk.db-wal", "stepdesk.db-shm"] {
        if data.join(name).exists() {
            assert_eq!(mode(&data.join(name)), 0o600, "{name}");
        }
    }
    let logs: Vec<_> = std::fs::read_dir(data.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!logs.is_empty());
    for log in &logs {
        assert_eq!(mode(log), 0o600, "{}", log.display());
    }
    assert!(server.terminate().success());

    // An existing directory that others can read is made private at start-up, and said so.
    let open = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    open(&data, 0o755).unwrap();
    open(&logs[0], 0o644).unwrap();
    open(&data.join("stepdesk.lock"), 0o644).unwrap();
    let mut server = Server::simple(&data);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&logs[0]), 0o600);
    assert_eq!(mode(&data.join("stepdesk.lock")), 0o600);
    assert!(server.terminate().success());
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(
        log.contains("made private") && log.contains("old_mode=755"),
        "{log}"
    );
}

/// A SIGTERM that comes as soon as the server says it is listening (a script that stops it
/// once it is up) stops it cleanly: the signal handlers are in place before that line.
#[tokio::test]
async fn a_server_stopped_as_soon_as_it_listens_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..5 {
        let mut server = Server::simple(&dir.path().join("data"));
        let status = server.terminate();
        assert!(status.success(), "round {round}: {status:?}");
    }
}

// ---- Fixtures -------------------------------------------------------------------------

#[tokio::test]
async fn fixtures_have_usable_defaults() {
    let dir = tempfile::tempdir().unwrap();
    // No STEPDESK_FIXTURE_LOG: the fixtures work on their own.
    let server = start_serve(dir.path(), &["--retry-interval", "0.05"], &[]);
    let flaky = server.send(&json!({"name": "test/flaky"})).await;
    let twice = server
        .send(&json!({"name": "test/flaky", "data": {"fail_times": 1}}))
        .await;
    let wait = server
        .send(&json!({"name": "test/wait", "data": {"key": "k-1"}}))
        .await;
    // The wait has not timed out by itself (its default timeout is minutes, not 1 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resume = server
        .send(&json!({"name": "test/resume", "data": {"key": "k-1"}}))
        .await;

    let runs = server.wait_finished(&flaky, Duration::from_secs(30)).await;
    assert_eq!(runs[0]["status"], "Completed", "{runs:?}");
    assert_eq!(runs[0]["output"]["succeeded_on_attempt"], 3, "{runs:?}");
    let runs = server.wait_finished(&twice, Duration::from_secs(30)).await;
    assert_eq!(runs[0]["output"]["succeeded_on_attempt"], 2, "{runs:?}");
    let runs = server.wait_finished(&wait, Duration::from_secs(30)).await;
    assert_eq!(
        runs[0]["output"]["resumed_by"],
        resume[0].as_str(),
        "{runs:?}"
    );
}
