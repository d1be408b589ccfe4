//! The data directory: who may read it, and the small files Stepdesk keeps there besides the
//! database (`server.json`, the lock, the event-key marker).
//!
//! Everything in it is private to the user that runs Stepdesk: events, run outputs and user
//! ids are in the database and the logs, and the admin token is a file. The directory is
//! created with mode 0700 (an existing one that we own and that holds only Stepdesk's files
//! is tightened to 0700, with a log line; others get a warning), and the process runs with umask 077 (see [`private_umask`]), so every file it
//! creates there is 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Makes every file and directory this process creates private to its user (umask 077).
///
/// Process-wide on purpose: the data directory gets files from code that takes no mode
/// (tracing-appender's log files, SQLite's `-wal` and `-shm`, the lock file), and a umask is
/// the one setting that covers all of them, including the ones a later version adds. Set at
/// the start of `main`, before any thread exists. Nothing Stepdesk writes is meant to be
/// read by other accounts.
pub fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// What [`prepare`] changed, to log once logging runs (it needs the directory first).
#[derive(Debug, Default)]
pub struct Prepared {
    /// Paths that were readable by others and are now private, with their old mode.
    pub tightened: Vec<(PathBuf, u32)>,
    /// Paths readable by others that we could not tighten (not ours), with their mode.
    pub still_open: Vec<(PathBuf, u32)>,
}

impl Prepared {
    /// Logs what was changed; call after logging is set up.
    pub fn log(&self) {
        for (path, mode) in &self.tightened {
            tracing::info!(path = %path.display(), old_mode = %format!("{mode:o}"), "made private: other accounts could read it");
        }
        for (path, mode) in &self.still_open {
            tracing::warn!(path = %path.display(), mode = %format!("{mode:o}"), "other accounts can read this and Stepdesk leaves it as it is (not its own, or it holds more than Stepdesk's files); use a private data directory, or chmod go-rwx");
        }
    }
}

/// Creates the data directory (0700) for a server, or makes an existing one private (if it
/// is ours and holds only Stepdesk's files), and returns its absolute path.
pub fn prepare(data_dir: &Path) -> anyhow::Result<(PathBuf, Prepared)> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    let mut prepared = Prepared::default();
    if holds_only_stepdesk_files(&data_dir) {
        make_private(&data_dir, 0o700, &mut prepared);
    } else {
        // `--data-dir ~` or `/tmp`: not ours to lock down. Our files in it are private anyway.
        report_if_open(&data_dir, &mut prepared);
    }
    // Logs written before this version (or while the umask was looser) are private too.
    let logs = data_dir.join("logs");
    if logs.is_dir() {
        make_private(&logs, 0o700, &mut prepared);
        if let Ok(entries) = std::fs::read_dir(&logs) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    make_private(&entry.path(), 0o600, &mut prepared);
                }
            }
        }
    }
    for name in [LOCK_FILE, SERVER_FILE, EVENT_KEY_MARKER] {
        let path = data_dir.join(name);
        if path.is_file() {
            make_private(&path, 0o600, &mut prepared);
        }
    }
    Ok((data_dir, prepared))
}

/// Whether a directory holds nothing but what Stepdesk puts in a data directory (or
/// nothing): only then is it Stepdesk's to make private.
fn holds_only_stepdesk_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().all(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.starts_with("stepdesk.db")
            || name.starts_with('.') && name.ends_with(".tmp")
            || [
                "logs",
                "admin-token",
                LOCK_FILE,
                SERVER_FILE,
                EVENT_KEY_MARKER,
            ]
            .contains(&name.as_ref())
    })
}

/// Notes `path` in `still_open` if others can read it.
fn report_if_open(path: &Path, prepared: &mut Prepared) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.mode() & 0o777;
            if mode & 0o077 != 0 {
                prepared.still_open.push((path.to_path_buf(), mode));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, prepared);
}

/// Removes group and other permissions from `path` if we own it.
fn make_private(path: &Path, mode: u32, prepared: &mut Prepared) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        let current = meta.mode() & 0o777;
        if current & 0o077 == 0 {
            return;
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let ours = meta.uid() == unsafe { libc::geteuid() };
        if ours && std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).is_ok() {
            prepared.tightened.push((path.to_path_buf(), current));
        } else {
            prepared.still_open.push((path.to_path_buf(), current));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode, prepared);
}

/// For CLI commands that only read: the data directory must exist already. Creating it
/// would hide a typo in `--data-dir` behind a confusing error later ("the admin token is
/// wrong") and leave an empty directory behind.
pub fn require_existing(data_dir: &Path) -> anyhow::Result<PathBuf> {
    if !data_dir.is_dir() {
        anyhow::bail!(
            "no Stepdesk data directory at {}; start `stepdesk serve` there first, or pass the --data-dir (or STEPDESK_DATA_DIR) the server uses",
            data_dir.display()
        );
    }
    data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", data_dir.display()))
}

/// The admin token of an existing data directory (never creates one).
pub fn read_admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = stepdesk_engine::secrets::admin_token_path(data_dir);
    let token = std::fs::read_to_string(&path)
        .with_context(|| {
            format!(
                "cannot read the admin token {} (a data directory gets one when `stepdesk serve` first starts there)",
                path.display()
            )
        })?
        .trim()
        .to_string();
    anyhow::ensure!(!token.is_empty(), "{} is empty", path.display());
    Ok(token)
}

/// Writes `contents` to `path` as a private file (0600), atomically: readers see the old
/// file or the new one, never half of one.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

// ---- The lock --------------------------------------------------------------------------

pub const LOCK_FILE: &str = "stepdesk.lock";

/// Holds the data directory's lock: one engine per data directory, or runs would execute
/// twice. Released when the process exits (however it exits).
pub fn lock(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join(LOCK_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another Stepdesk is already running on {} (one engine per data directory); stop it or use another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Whether another process holds the data directory's lock (a Stepdesk runs there). Takes
/// and releases the lock when free.
pub fn is_locked(data_dir: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .write(true)
        .open(data_dir.join(LOCK_FILE))
    else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

// ---- server.json: where the server of this data directory listens ----------------------

pub const SERVER_FILE: &str = "server.json";

/// The contents of `server.json`, written by a server once it listens so that the CLI
/// (`stepdesk sync`, `settings`, `keys`) finds it, even on a `--port 0` port.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerFile {
    pub url: String,
    pub pid: u32,
}

/// Removes `server.json` when dropped (a clean exit). After a SIGKILL the file stays; readers
/// then see that its pid is gone, or that nothing answers at its URL.
pub struct ServerFileGuard {
    path: PathBuf,
}

impl Drop for ServerFileGuard {
    fn drop(&mut self) {
        // Only our own: the lock makes another server here impossible, but be exact anyway.
        if read_server_file(self.path.parent().unwrap_or(Path::new(".")))
            .is_some_and(|f| f.pid == std::process::id())
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Records that this process serves `url` for `data_dir`.
pub fn write_server_file(data_dir: &Path, url: &str) -> anyhow::Result<ServerFileGuard> {
    let path = data_dir.join(SERVER_FILE);
    let file = ServerFile {
        url: url.to_string(),
        pid: std::process::id(),
    };
    write_private(&path, &serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(ServerFileGuard { path })
}

/// `server.json` as written, if it exists and parses.
pub fn read_server_file(data_dir: &Path) -> Option<ServerFile> {
    let text = std::fs::read(data_dir.join(SERVER_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Whether a process with this id exists (a zombie or another user's process counts).
pub fn pid_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

// ---- The event-key marker ----------------------------------------------------------------

/// Present when this data directory's event key is kept in the keychain.
///
/// Why it exists: when the keychain cannot be reached at start-up (no session bus, no
/// Secret Service), Stepdesk cannot ask it whether an event key is stored, and starting
/// without one would accept events with any key. The marker says that one is, so `serve`
/// refuses to start instead. It never holds the key. `stepdesk keys set|remove event-key`
/// and every start with a readable keychain keep it up to date.
pub const EVENT_KEY_MARKER: &str = "event-key-in-keychain";

pub fn event_key_marker(data_dir: &Path) -> PathBuf {
    data_dir.join(EVENT_KEY_MARKER)
}

/// Records whether the keychain holds this data directory's event key.
pub fn set_event_key_marker(data_dir: &Path, stored: bool) -> std::io::Result<()> {
    let path = event_key_marker(data_dir);
    if stored {
        if path.is_file() {
            return Ok(());
        }
        write_private(
            &path,
            b"The event key of this Stepdesk data directory is kept in the OS keychain (never here).\n\
              While this file exists, `stepdesk serve` refuses to start when it cannot read the keychain.\n\
              `stepdesk keys remove event-key` removes the key and this file.\n",
        )
    } else {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_pid_is_not_alive() {
        assert!(pid_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn private_files_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn only_a_directory_of_our_own_files_is_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let open =
            |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours");
        std::fs::create_dir(&ours).unwrap();
        std::fs::write(ours.join("stepdesk.db"), "").unwrap();
        std::fs::create_dir(ours.join("logs")).unwrap();
        open(&ours);
        let (_, prepared) = prepare(&ours).unwrap();
        assert_eq!(mode(&ours), 0o700);
        assert_eq!(
            prepared.tightened.len(),
            2,
            "the directory and logs/: {prepared:?}"
        );

        // A home directory or /tmp given as --data-dir: warned about, left alone.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::write(shared.join("notes.txt"), "").unwrap();
        open(&shared);
        let (_, prepared) = prepare(&shared).unwrap();
        assert_eq!(mode(&shared), 0o755);
        assert!(prepared.tightened.is_empty());
        assert_eq!(prepared.still_open.len(), 1, "{prepared:?}");
    }

    #[test]
    fn the_marker_comes_and_goes() {
        let dir = tempfile::tempdir().unwrap();
        set_event_key_marker(dir.path(), false).unwrap();
        set_event_key_marker(dir.path(), true).unwrap();
        assert!(event_key_marker(dir.path()).is_file());
        set_event_key_marker(dir.path(), true).unwrap();
        set_event_key_marker(dir.path(), false).unwrap();
        assert!(!event_key_marker(dir.path()).exists());
    }
}
