//! Secrets in the OS keychain, and nowhere else.
//!
//! Stepdesk keeps API keys (each user's Readwise token, the engine's event and signing keys)
//! only in the Secret Service (GNOME Keyring, KWallet) through `keyring-core` and its zbus
//! store. There is no file fallback: when no Secret Service is reachable, Stepdesk says so
//! and explains how to start one.
//!
//! The keychain API is blocking (D-Bus round trips), so the async methods run it on
//! tokio's blocking pool and never stall the runtime.

use std::sync::Arc;

use keyring_core::{CredentialStore, Entry};

/// The keychain "service" under which Stepdesk's items are stored, unless overridden by
/// `STEPDESK_KEYCHAIN_SERVICE` (handy to keep a development build apart from real data).
pub const DEFAULT_SERVICE: &str = "dev.stepdesk.app";

/// How to get a Secret Service on a machine without one, shown in errors.
pub const HOW_TO_START: &str = "Stepdesk keeps API keys only in the OS keychain (Secret Service) and found none. \
On a desktop, unlock your keyring (GNOME Keyring or KWallet). On a headless machine, run Stepdesk inside a \
session bus with an unlocked keyring, for example:\n  \
dbus-run-session -- sh -c 'printf %s \"$KEYRING_PASSWORD\" | gnome-keyring-daemon --unlock --components=secrets >/dev/null; stepdesk serve'";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("no Secret Service is available ({detail}).\n{HOW_TO_START}")]
    Unavailable { detail: String },
    #[error("the keychain refused the operation on `{key}`: {detail}")]
    Keychain { key: String, detail: String },
    #[error("invalid secret name `{0}`")]
    BadKey(String),
}

pub type SecretsResult<T> = Result<T, SecretsError>;

/// A handle to the keychain. Cheap to clone.
#[derive(Clone)]
pub struct Secrets {
    store: Arc<CredentialStore>,
    service: Arc<str>,
    kind: &'static str,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("service", &self.service)
            .field("kind", &self.kind)
            .finish()
    }
}

fn service_name() -> String {
    std::env::var("STEPDESK_KEYCHAIN_SERVICE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE.to_string())
}

impl Secrets {
    /// Connects to the Secret Service on the session bus.
    pub fn secret_service() -> SecretsResult<Secrets> {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none()
            && std::env::var_os("XDG_RUNTIME_DIR").is_none()
        {
            return Err(SecretsError::Unavailable {
                detail: "there is no D-Bus session bus".into(),
            });
        }
        let store = zbus_secret_service_keyring_store::Store::new().map_err(|e| {
            SecretsError::Unavailable {
                detail: e.to_string(),
            }
        })?;
        let secrets = Secrets {
            store,
            service: service_name().into(),
            kind: "secret-service",
        };
        // Connecting can succeed with no usable keyring behind it: probe once.
        secrets
            .get_blocking("stepdesk-probe")
            .map_err(|e| match e {
                SecretsError::Keychain { detail, .. } => SecretsError::Unavailable { detail },
                other => other,
            })?;
        Ok(secrets)
    }

    /// An in-memory keychain for unit tests.
    pub fn in_memory() -> Secrets {
        let store = keyring_core::mock::Store::new().expect("the mock store always builds");
        Secrets {
            store,
            service: service_name().into(),
            kind: "in-memory",
        }
    }

    /// `secret-service` or `in-memory`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn entry(&self, key: &str) -> SecretsResult<Entry> {
        if key.is_empty() || key.len() > 256 {
            return Err(SecretsError::BadKey(key.to_string()));
        }
        Entry::new_in_store(&self.store, &self.service, key).map_err(|e| keychain_error(key, e))
    }

    pub fn set_blocking(&self, key: &str, value: &str) -> SecretsResult<()> {
        self.entry(key)?
            .set_password(value)
            .map_err(|e| keychain_error(key, e))
    }

    pub fn get_blocking(&self, key: &str) -> SecretsResult<Option<String>> {
        match self.entry(key)?.get_password() {
            Ok(v) => Ok(Some(v)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(keychain_error(key, e)),
        }
    }

    /// Deletes a secret; false if there was none.
    pub fn delete_blocking(&self, key: &str) -> SecretsResult<bool> {
        match self.entry(key)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(keychain_error(key, e)),
        }
    }

    pub async fn set(&self, key: &str, value: &str) -> SecretsResult<()> {
        let (this, key, value) = (self.clone(), key.to_string(), value.to_string());
        blocking(move || this.set_blocking(&key, &value)).await
    }

    pub async fn get(&self, key: &str) -> SecretsResult<Option<String>> {
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.get_blocking(&key)).await
    }

    pub async fn delete(&self, key: &str) -> SecretsResult<bool> {
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.delete_blocking(&key)).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> SecretsResult<T> + Send + 'static,
) -> SecretsResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SecretsError::Keychain {
            key: String::new(),
            detail: format!("keychain task failed: {e}"),
        })?
}

fn keychain_error(key: &str, e: keyring_core::Error) -> SecretsError {
    // keyring-core errors carry no secret values; BadEncoding would carry bytes, so drop them.
    let detail = match e {
        keyring_core::Error::BadEncoding(_) => "the stored value is not UTF-8".to_string(),
        keyring_core::Error::BadDataFormat(_, _) => "the stored value has a bad format".to_string(),
        other => other.to_string(),
    };
    SecretsError::Keychain {
        key: key.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_reads_and_deletes() {
        let s = Secrets::in_memory();
        assert_eq!(s.get("readwise:u1").await.unwrap(), None);
        s.set("readwise:u1", "tok-123").await.unwrap();
        assert_eq!(
            s.get("readwise:u1").await.unwrap().as_deref(),
            Some("tok-123")
        );
        s.set("readwise:u1", "tok-456").await.unwrap();
        assert_eq!(
            s.get("readwise:u1").await.unwrap().as_deref(),
            Some("tok-456")
        );
        assert!(s.delete("readwise:u1").await.unwrap());
        assert!(!s.delete("readwise:u1").await.unwrap());
        assert_eq!(s.get("readwise:u1").await.unwrap(), None);
        assert!(matches!(s.get("").await, Err(SecretsError::BadKey(_))));
    }

    #[test]
    fn unavailable_error_explains_how_to_start_one() {
        let e = SecretsError::Unavailable {
            detail: "no bus".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("gnome-keyring-daemon --unlock"), "{msg}");
        assert!(msg.contains("no bus"));
    }
}
