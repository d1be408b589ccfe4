//! Autodiscovery (`stepdesk dev` only, as in `inngest dev`): apps on the usual local ports
//! and serve paths. An address counts as an app only when a `GET` answers with the
//! `X-Inngest-SDK` header; it is then added and synced. Discovery stops once an app exists,
//! so a busy machine is not probed every few seconds (inngest/inngest#2094).

use std::time::Duration;

use crate::apps::Apps;

/// The dev server's usual ports (inngest-protocol.md §2), and `$PORT` when set.
const PORTS: &[u16] = &[
    80, 443, 3000, 3001, 3002, 3003, 3004, 3005, 3006, 3007, 3008, 3009, 3010, 4321, 5000, 5173,
    8000, 8080, 8081, 8787, 8888, 8910, 8911, 8912, 8913, 8914, 8915,
];

const PATHS: &[&str] = &[
    "/api/inngest",
    "/x/inngest",
    "/.netlify/functions/inngest",
    "/.redwood/functions/inngest",
];

/// Probes once; true when at least one app was found.
pub(crate) async fn discover(apps: &Apps) -> bool {
    let mut ports: Vec<u16> = PORTS.to_vec();
    if let Some(p) = std::env::var("PORT").ok().and_then(|p| p.parse().ok()) {
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let mut found = false;
    for port in ports {
        // A closed port is refused at once on loopback: probe the TCP port first, so the
        // four paths are only asked of something that listens.
        let open = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !open {
            continue;
        }
        for path in PATHS {
            let url = format!("http://127.0.0.1:{port}{path}");
            let is_sdk = apps
                .http()
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.headers().contains_key("x-inngest-sdk"));
            if is_sdk {
                tracing::info!(url, "discovered an app");
                if let Err(e) = apps.add_discovered(&url).await {
                    tracing::warn!(url, error = %e, "cannot add a discovered app");
                }
                found = true;
                break;
            }
        }
    }
    found
}
