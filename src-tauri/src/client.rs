//! Talking to a running Stepdesk from the CLI: finding it (`server.json` in the data
//! directory) and calling its admin API with the data directory's admin token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use serde_json::Value;

use crate::datadir;

/// Where the CLI looks when neither `--url` nor `STEPDESK_URL` nor `server.json` says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8288";

/// An admin API client for the server of one data directory.
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    token: String,
    data_dir: PathBuf,
    /// Where the URL came from, for error messages.
    origin: String,
}

/// `server.json` names a server that is gone: why, for a note.
fn stale_note(data_dir: &Path, file: &datadir::ServerFile) -> String {
    format!(
        "ignoring {}: the server that wrote it (pid {}) is no longer running",
        data_dir.join(datadir::SERVER_FILE).display(),
        file.pid
    )
}

impl Client {
    /// A client for `url`. `data_dir` must exist (see [`datadir::require_existing`]).
    pub fn new(url: &str, origin: &str, data_dir: &Path) -> anyhow::Result<Client> {
        let mut base = reqwest::Url::parse(url.trim()).map_err(|e| {
            anyhow::anyhow!("`{url}` is not a URL ({e}); give one like {DEFAULT_URL}")
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!("`{url}` is not an http(s) URL; give one like {DEFAULT_URL}");
        }
        // Segments are appended to the path: drop a trailing slash so none is doubled.
        if base.path().ends_with('/') {
            let path = base.path().trim_end_matches('/').to_string();
            base.set_path(&path);
        }
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            base,
            token: datadir::read_admin_token(data_dir)?,
            data_dir: data_dir.to_path_buf(),
            origin: origin.to_string(),
        })
    }

    /// The server to use: `--url` / `STEPDESK_URL`, else the one `server.json` names (if
    /// its process still runs), else [`DEFAULT_URL`]. Notes go to stderr.
    pub fn resolve(url: Option<&str>, data_dir: &Path) -> anyhow::Result<Client> {
        if let Some(url) = url.filter(|u| !u.trim().is_empty()) {
            return Client::new(url, "--url / STEPDESK_URL", data_dir);
        }
        match datadir::read_server_file(data_dir) {
            Some(f) if datadir::pid_alive(f.pid) => Client::new(
                &f.url,
                &format!("{}", data_dir.join(datadir::SERVER_FILE).display()),
                data_dir,
            ),
            Some(f) => {
                eprintln!("stepdesk: {}", stale_note(data_dir, &f));
                Client::new(DEFAULT_URL, "the default URL", data_dir)
            }
            None => Client::new(DEFAULT_URL, "the default URL", data_dir),
        }
    }

    /// The server of `data_dir` if one is running and answers, else `None` (then the CLI
    /// acts on the data directory itself). A `server.json` left by a killed server is
    /// recognized by its dead pid, by nothing answering at its URL, or by a server there
    /// that serves another data directory.
    pub async fn running(data_dir: &Path) -> Option<Client> {
        let file = datadir::read_server_file(data_dir)?;
        if !datadir::pid_alive(file.pid) {
            tracing::debug!("{}", stale_note(data_dir, &file));
            return None;
        }
        let client = Client::new(&file.url, "server.json", data_dir).ok()?;
        let info = client.get(&["api", "admin", "info"]).await.ok()?;
        let same = match info["data_dir"].as_str() {
            Some(theirs) => same_dir(Path::new(theirs), data_dir),
            // An older server: its pid is alive and it answers at the recorded URL.
            None => true,
        };
        same.then_some(client)
    }

    /// The server's URL, as people write it (no trailing slash).
    pub fn url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    fn endpoint(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        // Each segment is percent-encoded: a user id with `/`, `?` or `%` stays one segment.
        url.path_segments_mut()
            .expect("checked in Client::new")
            .pop_if_empty()
            .extend(segments);
        url
    }

    pub async fn get(&self, segments: &[&str]) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, segments, None).await
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, self.endpoint(segments))
            .bearer_auth(&self.token)
            // The audit trail records support actions as coming from the CLI.
            .header("x-stepdesk-client", "cli");
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow::anyhow!(
                    "Stepdesk is not running at {} (from {}); start it with `stepdesk serve`, or pass --url",
                    self.url(),
                    self.origin
                )
            } else {
                anyhow::anyhow!("request to {} failed: {e}", self.url())
            }
        })?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let error = body["error"]
            .as_str()
            .unwrap_or(status.as_str())
            .to_string();
        if status == reqwest::StatusCode::UNAUTHORIZED && error.contains("admin token is wrong") {
            bail!("{}", self.wrong_token().await);
        }
        bail!("{error}");
    }

    /// Why the server refused this data directory's admin token: it is another data
    /// directory's server.
    async fn wrong_token(&self) -> String {
        let theirs = self
            .http
            .get(self.endpoint(&["api", "admin", "info"]))
            .send()
            .await
            .ok();
        let theirs = match theirs {
            Some(r) => r.json::<Value>().await.ok(),
            None => None,
        };
        let theirs = theirs
            .as_ref()
            .and_then(|i| i["data_dir"].as_str())
            .map(str::to_string);
        match theirs {
            Some(dir) => format!(
                "the server at {} refused the admin token of {}: it uses the data directory {dir}. Pass --data-dir {dir} to talk to it, or --url with the address of the server of {}",
                self.url(),
                self.data_dir.display(),
                self.data_dir.display()
            ),
            None => format!(
                "the server at {} refused the admin token of {}: it uses another data directory. Pass the --data-dir it was started with, or --url with the address of the server of {}",
                self.url(),
                self.data_dir.display(),
                self.data_dir.display()
            ),
        }
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A small runtime for one CLI command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin-token"), "t").unwrap();
        let c = Client::new("http://127.0.0.1:9/", "test", dir.path()).unwrap();
        assert_eq!(
            c.endpoint(&["api", "admin", "users", "a/b?c#d%e f", "sync"])
                .as_str(),
            "http://127.0.0.1:9/api/admin/users/a%2Fb%3Fc%23d%25e%20f/sync"
        );
        let c = Client::new("http://127.0.0.1:9/prefix/", "test", dir.path()).unwrap();
        assert_eq!(
            c.endpoint(&["health"]).as_str(),
            "http://127.0.0.1:9/prefix/health"
        );
        assert!(Client::new("ftp://x", "test", dir.path()).is_err());
        assert!(Client::new("not a url", "test", dir.path()).is_err());
    }
}
