//! Local credentials kept in the data directory.
//!
//! The admin token guards Stepdesk's mutating routes on this machine. It is a local,
//! per-installation credential (like a Jupyter token), generated on first start and kept
//! in `admin-token` (mode 0600) next to the database; it is never written to the database
//! or to logs.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-token")
}

/// Reads the admin token, creating it on first use.
pub fn load_or_create_admin_token(data_dir: &Path) -> std::io::Result<String> {
    let path = admin_token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        // An empty file (a crash while it was created by an older version): replace it.
        Ok(_) => std::fs::remove_file(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = format!("sdk_admin_{}", hex::encode(bytes));
    // Write a private temporary file, then link it into place: the token file appears
    // complete or not at all, and if another process created one meanwhile, theirs wins.
    let tmp = data_dir.join(format!(".admin-token.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(token),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let theirs = std::fs::read_to_string(&path)?.trim().to_string();
            if theirs.is_empty() {
                return Err(std::io::Error::other(format!(
                    "{} is empty",
                    path.display()
                )));
            }
            Ok(theirs)
        }
        Err(e) => Err(e),
    }
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_admin_token(dir.path()).unwrap();
        let b = load_or_create_admin_token(dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.len() > 40);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(admin_token_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
