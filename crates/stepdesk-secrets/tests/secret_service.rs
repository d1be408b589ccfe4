//! Against the real Secret Service (gnome-keyring). `make test` runs the suite inside
//! `dbus-run-session` with an unlocked gnome-keyring; without one these tests fail with the
//! setup hint unless `STEPDESK_SKIP_KEYCHAIN_TESTS=1` is set (for quick runs of `cargo test`).

use stepdesk_secrets::{Secrets, SecretsError};

fn keychain() -> Option<Secrets> {
    match Secrets::secret_service() {
        Ok(s) => Some(s),
        Err(e) if std::env::var("STEPDESK_SKIP_KEYCHAIN_TESTS").is_ok_and(|v| v == "1") => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn round_trips_through_gnome_keyring() {
    let Some(s) = keychain() else { return };
    assert_eq!(s.kind(), "secret-service");
    let key = format!("test-secret-{}", std::process::id());
    s.set(&key, "value-1").await.unwrap();
    assert_eq!(s.get(&key).await.unwrap().as_deref(), Some("value-1"));
    // A second handle (another connection) sees the same item.
    let other = Secrets::secret_service().unwrap();
    assert_eq!(other.get(&key).await.unwrap().as_deref(), Some("value-1"));
    assert!(s.delete(&key).await.unwrap());
    assert_eq!(other.get(&key).await.unwrap(), None);
}

#[test]
fn no_session_bus_is_a_clear_error() {
    // Run the check in a child process whose environment has no session bus.
    if std::env::var("STEPDESK_SECRETS_CHILD").is_ok() {
        let e = Secrets::secret_service().unwrap_err();
        assert!(matches!(e, SecretsError::Unavailable { .. }));
        assert!(e.to_string().contains("dbus-run-session"));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["no_session_bus_is_a_clear_error", "--exact", "--nocapture"])
        .env("STEPDESK_SECRETS_CHILD", "1")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
