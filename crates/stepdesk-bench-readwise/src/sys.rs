//! What the benchmark reads about its own process and the machine (Linux).

use std::process::Command;
use std::time::Duration;

/// CPU time (user, system) used so far by this whole process, all threads included, from
/// `getrusage(RUSAGE_SELF)` (microsecond resolution; child processes are not included).
pub fn process_cpu() -> (Duration, Duration) {
    // SAFETY: `getrusage` only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// User + system CPU of this process.
pub fn process_cpu_total() -> Duration {
    let (u, s) = process_cpu();
    u + s
}

/// CPU time (user + system) of this process's live threads named `name`, from
/// `/proc/self/task/*/stat` (clock ticks, 10 ms resolution).
pub fn thread_cpu(name: &str) -> Duration {
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let secs: f64 = std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)
                })
                .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
                .map(|stat| {
                    let Some((_, rest)) = stat.rsplit_once(')') else {
                        return 0.0;
                    };
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    let ticks =
                        |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                    (ticks(11) + ticks(12)) / ticks_per_s
                })
                .sum()
        })
        .unwrap_or(0.0);
    Duration::from_secs_f64(secs)
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS (`echo 5 >
/// /proc/self/clear_refs`, Linux 4.0+), so the peak read later is the peak of what follows.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{cores} cores (nproc), {model}, {:.1} GiB RAM, Linux {kernel}",
        ram_kib as f64 / (1024.0 * 1024.0)
    )
}

/// The 1/5/15-minute load averages: anything else running skews the figures.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" / "))
        .unwrap_or_else(|| "unknown".into())
}

/// The filesystem type holding `path` (from `/proc/self/mounts`, longest matching mount).
pub fn filesystem_of(path: &std::path::Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mount, fstype) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), fstype.to_string()))
        })
        .max()
        .map(|(_, t)| t)
        .unwrap_or_else(|| "unknown".into())
}

pub fn git_commit() -> String {
    let run = |args: &[&str]| {
        // The checkout this binary was built from, wherever it is run.
        Command::new("git")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(sha) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("`{sha}` (with uncommitted changes in the work tree)")
            } else {
                format!("`{sha}`")
            }
        }
        None => "unknown (not a git checkout)".into(),
    }
}
