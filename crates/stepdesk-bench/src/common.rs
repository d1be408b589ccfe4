//! Shared pieces: an in-process server on a temp data dir, realistic events, raw SQLite.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::Connection;
use stepdesk_engine::{Durability, Engine, EngineConfig, Function, Store};
use stepdesk_server::ServerConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A real engine and axum server on 127.0.0.1, random port, fresh temp data dir.
pub struct Server {
    pub engine: Engine,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(functions: Vec<Function>) -> Result<Server> {
        let dir = tempfile::tempdir().context("temp data dir")?;
        let engine = Engine::start(EngineConfig::new(dir.path()), functions).await?;
        let router = stepdesk_server::router(
            stepdesk_api::Api::builder(engine.clone())
                .build()
                .await
                .expect("the admin API"),
            ServerConfig::local("bench-admin-token"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(stepdesk_server::serve(listener, router, async move {
            let _ = stopped.await;
        }));
        Ok(Server {
            engine,
            addr,
            dir,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the server and the engine (which checkpoints the WAL into the database).
    pub async fn stop(mut self) -> Result<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        self.engine
            .shutdown(std::time::Duration::from_secs(10))
            .await;
        Ok(self.dir)
    }
}

/// A keep-alive HTTP/1.1 client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .expect("http client")
}

/// Event `data` of about 250 bytes, shaped like a real order event.
pub fn order_data(i: u64) -> String {
    let c = (i * 7919) % 100_000;
    let tier = ["free", "pro", "gold", "enterprise"][(i % 4) as usize];
    let s1 = (i * 31) % 10_000;
    let s2 = (i * 17 + 5) % 10_000;
    let q1 = 1 + i % 3;
    let p1 = 499 + (i * 13) % 9_000;
    let p2 = 999 + (i * 29) % 20_000;
    let total = q1 * p1 + p2;
    format!(
        r#"{{"order_id":"ord_{i:010}","customer":{{"id":"cus_{c:06}","email":"customer{c}@example.com","tier":"{tier}"}},"items":[{{"sku":"SKU-{s1:04}","qty":{q1},"price_cents":{p1}}},{{"sku":"SKU-{s2:04}","qty":1,"price_cents":{p2}}}],"currency":"EUR","total_cents":{total},"source":"checkout-web"}}"#
    )
}

/// One event as a sender posts it.
pub fn event_json(name: &str, i: u64) -> String {
    format!(
        r#"{{"name":"{name}","data":{},"user":{{"ip":"203.0.113.{}"}}}}"#,
        order_data(i),
        i % 250
    )
}

/// The stored `payload` column for an event, as the engine writes it.
pub fn stored_payload(name: &str, i: u64, id: &str, ts: i64) -> String {
    format!(
        r#"{{"data":{},"id":"{id}","name":"{name}","ts":{ts},"user":{{"ip":"203.0.113.{}"}}}}"#,
        order_data(i),
        i % 250
    )
}

/// Creates Stepdesk's schema in a fresh file (through the real store), then opens a plain
/// connection on it with the store's pragmas (WAL, `synchronous=FULL`).
pub fn raw_connection(path: &Path) -> Result<Connection> {
    let store = Store::open(path, Durability::Full)?;
    store.close();
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

pub const INSERT_EVENT: &str =
    "INSERT INTO events (internal_id, event_id, name, ts, received_at, payload)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// CPU time (user + system) used so far by this process, or by its threads named `thread`.
pub fn cpu_time(thread: Option<&str>) -> std::time::Duration {
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let parse = |stat: &str| -> f64 {
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return 0.0;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / ticks_per_s
    };
    let secs = match thread {
        None => std::fs::read_to_string("/proc/self/stat")
            .map(|s| parse(&s))
            .unwrap_or(0.0),
        Some(name) => std::fs::read_dir("/proc/self/task")
            .map(|dir| {
                dir.flatten()
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|c| c.trim() == name)
                    })
                    .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
                    .map(|s| parse(&s))
                    .sum()
            })
            .unwrap_or(0.0),
    };
    std::time::Duration::from_secs_f64(secs)
}

/// CPU used by the process and by the store's writer thread over a stretch of time.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// Process CPU seconds per wall second (2.0 = both cores busy).
    pub process_cores: f64,
    /// The writer thread's CPU seconds per wall second (1.0 = always busy).
    pub writer: f64,
    /// Process CPU time per event (or per unit of work), in microseconds.
    pub per_unit_us: f64,
    /// The writer thread's share of that.
    pub writer_per_unit_us: f64,
}

pub struct CpuMeter {
    wall: std::time::Instant,
    process: std::time::Duration,
    writer: std::time::Duration,
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        CpuMeter {
            wall: std::time::Instant::now(),
            process: cpu_time(None),
            writer: cpu_time(Some("stepdesk-writer")),
        }
    }

    pub fn stop(&self, units: u64) -> CpuUse {
        let wall = self.wall.elapsed().as_secs_f64();
        let process = (cpu_time(None) - self.process).as_secs_f64();
        let writer = cpu_time(Some("stepdesk-writer"))
            .saturating_sub(self.writer)
            .as_secs_f64();
        CpuUse {
            process_cores: process / wall,
            writer: writer / wall,
            per_unit_us: process * 1e6 / units.max(1) as f64,
            writer_per_unit_us: writer * 1e6 / units.max(1) as f64,
        }
    }
}
