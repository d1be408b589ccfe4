//! `stepdesk keys`: the engine's event key lives in the OS keychain (the real Secret
//! Service: `make test` runs the suite inside a session bus with an unlocked GNOME Keyring).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

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
