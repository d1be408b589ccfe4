//! The Markdown section, and writing it into BENCHMARKS.md between its markers.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::bench::{Outcome, Plan};
use crate::fake_proc::{LIST_LIMIT, OTHER_LIMIT, WINDOW};
use crate::sys;

pub const START: &str = "<!-- readwise-bench:start -->";
pub const END: &str = "<!-- readwise-bench:end -->";

/// The time target: within this factor of the floor.
pub const TARGET_RATIO: f64 = 1.5;

pub fn ratio(plan: &Plan, o: &Outcome) -> f64 {
    o.wall.as_secs_f64() / plan.floor().as_secs_f64()
}

pub fn fast_enough(plan: &Plan, o: &Outcome) -> bool {
    ratio(plan, o) <= TARGET_RATIO
}

fn all_synced(plan: &Plan, o: &Outcome) -> bool {
    o.users_ok == plan.users && o.users_wrong.is_empty()
}

pub fn correct(plan: &Plan, o: &Outcome) -> bool {
    o.fake.throttled == 0 && o.fake.max_concurrent <= plan.cap as u64 && all_synced(plan, o)
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "✅"
    } else {
        "❌"
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn thousands(n: impl Into<u128>) -> String {
    let s = n.into().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn section(plan: &Plan, o: &Outcome, argv: &[String]) -> String {
    let mut b = String::new();
    let users = plan.users as u64;
    let floor = plan.floor();
    let requests = plan.expected_requests();
    let per_user = requests as f64 / users as f64;
    let pages_min = plan.books_min.div_ceil(plan.max_page_size);
    let pages_max = plan.books_max.div_ceil(plan.max_page_size);
    let pages = if pages_min == pages_max {
        format!("{pages_min}")
    } else {
        format!("{pages_min}–{pages_max}")
    };
    let cpu = o.cpu_user + o.cpu_sys;
    let wall = o.wall.as_secs_f64();
    let args: Vec<String> = argv.iter().skip(1).map(|a| shell_quote(a)).collect();
    let command = if args.is_empty() {
        "cargo run --release -p stepdesk-bench-readwise".to_string()
    } else {
        format!(
            "cargo run --release -p stepdesk-bench-readwise -- {}",
            args.join(" ")
        )
    };

    let _ = writeln!(b, "## Readwise daily sync (issue #3)\n");
    let _ = writeln!(
        b,
        "A daily sync of {} users ({pages} pages each) against the fake Readwise answering in \
         {} ms with Readwise's per-token limits, at most {} Readwise requests in flight. \
         Written by `stepdesk-bench-readwise`; do not edit by hand.\n",
        thousands(users),
        plan.latency_ms,
        plan.cap
    );
    let _ = writeln!(b, "| | |");
    let _ = writeln!(b, "|---|---|");
    let _ = writeln!(b, "| Command | `{command}` |");
    let _ = writeln!(
        b,
        "| Date | {} |",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(b, "| Machine | {} |", sys::machine());
    let _ = writeln!(b, "| Commit | {} |", sys::git_commit());
    let _ = writeln!(
        b,
        "| Database | temporary directory on {}, `Durability::Full` (fsync per commit), engine `max_concurrent_runs` = {} |",
        o.data_fs, o.engine_max_concurrent_runs
    );
    let _ = writeln!(
        b,
        "| Load average at end (1/5/15 min) | {} |\n",
        sys::load_average()
    );

    let _ = writeln!(b, "### Targets\n");
    let _ = writeln!(b, "| Target (issue #3) | Measured | |");
    let _ = writeln!(b, "|---|---|---|");
    let _ = writeln!(
        b,
        "| Total time within {TARGET_RATIO}× the floor `users × requests per user × {} ms / cap` | \
         {wall:.2} s vs {:.2} s = **{:.2}×** | {} |",
        plan.latency_ms,
        floor.as_secs_f64(),
        ratio(plan, o),
        mark(fast_enough(plan, o))
    );
    let _ = writeln!(
        b,
        "| No `429` received | {} | {} |",
        o.fake.throttled,
        mark(o.fake.throttled == 0)
    );
    let _ = writeln!(
        b,
        "| Requests in flight never above the cap | at most {} seen by the fake (cap {}) | {} |",
        o.fake.max_concurrent,
        plan.cap,
        mark(o.fake.max_concurrent <= plan.cap as u64)
    );
    let _ = writeln!(
        b,
        "| Every user synced, with the right count | {} / {} users `ok` with the fake's count{} | {} |",
        thousands(o.users_ok as u64),
        thousands(users),
        if o.users_wrong.is_empty() {
            String::new()
        } else {
            format!("; wrong: {}", o.users_wrong.join("; "))
        },
        mark(all_synced(plan, o))
    );
    let _ = writeln!(
        b,
        "| Peak memory (reported) | **{}** peak RSS during the sync ({} before it) | |",
        mib(o.peak_rss),
        mib(o.rss_before)
    );
    let _ = writeln!(
        b,
        "| Engine CPU time per user (reported) | **{:.2} ms** | |\n",
        cpu.as_secs_f64() * 1000.0 / users as f64
    );

    let _ = writeln!(b, "### Figures\n");
    let _ = writeln!(b, "| | |");
    let _ = writeln!(b, "|---|---|");
    let _ = writeln!(
        b,
        "| Data | {} users, each with its own token; {}–{} books each ({} in all); the fake serves at most {} per page (the sync asks for 1000), so {pages} pages each |",
        thousands(users),
        plan.books_min,
        plan.books_max,
        thousands(plan.expected_books()),
        plan.max_page_size
    );
    let _ = writeln!(
        b,
        "| Readwise requests | {} expected = {per_user:.2} per user (1 `auth/` + {pages} `books/`, first sync is full); {} received by the fake, {} `401` |",
        thousands(requests),
        thousands(o.fake_requests),
        o.fake.unauthorized
    );
    let _ = writeln!(
        b,
        "| Floor | {} × {per_user:.2} × {} ms / {} = {:.2} s |",
        thousands(users),
        plan.latency_ms,
        plan.cap,
        floor.as_secs_f64()
    );
    if let Some(bl) = &o.baseline {
        let practical = requests as f64 / bl.rate();
        let _ = writeln!(
            b,
            "| Client-only baseline | {} requests (the sync's mix) through a fresh client with the same cap and no engine: {:.2} s = {:.0} requests/s ({:.2} ms per request per slot; the floor assumes {} ms), {} `429`. At that rate the sync's {} requests take {practical:.2} s: the engine's total is **{:.2}×** that. Client CPU {:.3} ms per request |",
            thousands(bl.requests as u64),
            bl.wall.as_secs_f64(),
            bl.rate(),
            plan.cap as f64 * 1000.0 / bl.rate(),
            plan.latency_ms,
            bl.throttled,
            thousands(requests),
            wall / practical,
            bl.cpu.as_secs_f64() * 1000.0 / bl.requests as f64
        );
    }
    let milestones: Vec<String> = o
        .milestones
        .iter()
        .map(|(share, t)| format!("{:.0}% at {:.1} s", share * 100.0, t.as_secs_f64()))
        .collect();
    let _ = writeln!(
        b,
        "| Total time | {wall:.2} s from `sync_all()` until the daily sync's progress shows every user done (polled every 100 ms); the daily-sync run itself (listing users, sending the events in batches of 500) completed at {:.2} s |",
        o.fan_out.as_secs_f64()
    );
    let _ = writeln!(b, "| Progress | {} |", milestones.join(", "));
    if let (Some(&(_, t10)), Some(&(_, t90))) = (
        o.milestones.iter().find(|(s, _)| *s == 0.1),
        o.milestones.iter().find(|(s, _)| *s == 0.9),
    ) {
        let steady = 0.8 * users as f64 / (t90 - t10).as_secs_f64().max(1e-9);
        let ideal = plan.cap as f64 / (per_user * plan.latency_ms as f64 / 1000.0);
        let _ = writeln!(
            b,
            "| Throughput between 10% and 90% | {steady:.0} users/s (the floor's rate: cap / (requests per user × latency) = {ideal:.0} users/s) |"
        );
    }
    let _ = writeln!(
        b,
        "| Memory | peak RSS (`VmHWM`) during the sync {}{}; RSS before the sync (engine started, users added) {}, after it {} |",
        mib(o.peak_rss),
        if o.peak_reset {
            " (reset through `/proc/self/clear_refs` when the sync started)"
        } else {
            " (could not be reset: the peak of the whole process)"
        },
        mib(o.rss_before),
        mib(o.rss_after)
    );
    let client_share = o
        .baseline
        .map(|bl| {
            format!(
                "; the HTTP client's share, from the baseline, about {:.2} ms per user",
                bl.cpu.as_secs_f64() * 1000.0 / bl.requests as f64 * per_user
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        b,
        "| Engine CPU | {:.2} s ({:.2} s user + {:.2} s system) = {:.2} ms per user, {:.2} cores busy on average; the store's writer thread {:.2} s of it{client_share} |",
        cpu.as_secs_f64(),
        o.cpu_user.as_secs_f64(),
        o.cpu_sys.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / users as f64,
        cpu.as_secs_f64() / wall,
        o.writer_cpu.as_secs_f64()
    );
    let _ = writeln!(
        b,
        "| Fake Readwise (separate process, not in the figures above) | {:.2} s CPU = {:.2} ms per user, peak RSS {} |",
        o.fake_cpu.as_secs_f64(),
        o.fake_cpu.as_secs_f64() * 1000.0 / users as f64,
        mib(o.fake.peak_rss)
    );
    let mut runs: Vec<String> = o
        .fetch_runs
        .iter()
        .map(|(s, n)| format!("{} {s}", thousands(*n as u64)))
        .collect();
    runs.sort();
    let _ = writeln!(
        b,
        "| Engine work | `readwise-fetch-books` runs: {}; {} steps stored; {} failed step attempts (retries) |",
        runs.join(", "),
        thousands(o.steps as u64),
        o.failed_attempts
    );
    let (total, done, ok, failed) = o.progress;
    let _ = writeln!(
        b,
        "| Daily sync progress at the end | {done} / {total} done, {ok} ok, {failed} failed |"
    );
    let _ = writeln!(
        b,
        "| Database after the sync | {} (file + WAL) |",
        mib(o.db_bytes)
    );
    let _ = writeln!(
        b,
        "| Setup (not timed) | {:.2} s: fake started with its users, engine started, users added with their tokens |\n",
        o.setup.as_secs_f64()
    );

    let _ = writeln!(b, "How it is measured:\n");
    let _ = writeln!(
        b,
        "- One process runs Stepdesk as the app does: the engine on a fresh SQLite file, the \
         Readwise functions and event gate of `stepdesk-readwise-sync`, the in-memory keychain, \
         and the real `ReadwiseClient` with `max_concurrent_requests` = {} and its per-token \
         limiter at Readwise's limits. The fake Readwise (`readwise-fake`, real HTTP on \
         loopback) runs in a child process with {LIST_LIMIT} `books/` and {OTHER_LIMIT} other \
         requests per token per {} s and {} ms added to every response, so the CPU and memory \
         above are Stepdesk's alone (the fake's own are shown separately).",
        plan.cap,
        WINDOW.as_secs(),
        plan.latency_ms
    );
    let _ = writeln!(
        b,
        "- Readwise serves up to 1000 books per page; 3 pages at that size would be 2,001–3,000 \
         books per user, 25 million rows for 10,000 users. The fake's `max_page_size` knob \
         (here {}) makes small libraries ({}–{} books) take the same {pages} pages, so the \
         request pattern is the issue's while the data stays small.",
        plan.max_page_size, plan.books_min, plan.books_max
    );
    let _ = writeln!(
        b,
        "- Timed: `ReadwiseAdmin::sync_all()` (the `readwise/daily-sync` event) until \
         `daily_syncs()` reports done = total and the daily-sync run has completed. CPU is \
         `getrusage(RUSAGE_SELF)` over that time, all threads of the process (engine, client, \
         SQLite writer and readers, the 100 ms progress polls). Peak memory is `VmHWM`."
    );
    b
}

/// Writes `section` into `path` between the markers, replacing only what is between them
/// (appending the marked section at the end when the markers are absent). Everything else
/// in the file is kept byte for byte.
pub fn write_between_markers(path: &Path, section: &str) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let updated = splice(&existing, section);
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

fn splice(existing: &str, section: &str) -> String {
    let block = format!("{START}\n{}\n{END}", section.trim_end());
    // The first end marker and the start marker closest before it.
    if let Some(e) = existing.find(END) {
        if let Some(s) = existing[..e].rfind(START) {
            let e = e + END.len();
            return format!("{}{block}{}", &existing[..s], &existing[e..]);
        }
    }
    let mut out = existing.to_string();
    if !out.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&block);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_marked_region() {
        let before = format!("# Bench\n\nother\n\n{START}\nold\n{END}\n\n## After\nkept\n");
        let after = splice(&before, "new\n");
        assert_eq!(
            after,
            format!("# Bench\n\nother\n\n{START}\nnew\n{END}\n\n## After\nkept\n")
        );
        // Idempotent.
        assert_eq!(splice(&after, "new\n"), after);
    }

    #[test]
    fn splice_appends_when_absent() {
        assert_eq!(splice("", "x"), format!("{START}\nx\n{END}\n"));
        assert_eq!(splice("a", "x"), format!("a\n\n{START}\nx\n{END}\n"));
        assert_eq!(splice("a\n", "x"), format!("a\n\n{START}\nx\n{END}\n"));
        // A start marker without its end is left alone; the section goes at the end.
        let lone = format!("{START}\nhalf");
        let once = splice(&lone, "x");
        assert_eq!(once, format!("{START}\nhalf\n\n{START}\nx\n{END}\n"));
        assert_eq!(
            splice(&once, "y"),
            format!("{START}\nhalf\n\n{START}\ny\n{END}\n")
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0u64), "0");
        assert_eq!(thousands(999u64), "999");
        assert_eq!(thousands(10_000u64), "10,000");
        assert_eq!(thousands(1_234_567u64), "1,234,567");
    }
}
