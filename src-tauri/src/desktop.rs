//! The desktop window: the same engine and HTTP server as `serve`, plus a Tauri window whose
//! UI calls the admin API through one command, `admin`.

use anyhow::Context;
use serde_json::Value;
use stepdesk_api::{Api, CallCtx, Origin};

use crate::cli::ServeArgs;

/// The window's single command: any admin command by name (the registry in `stepdesk-api`,
/// the same one the HTTP routes serve). An error is `{error, status}`, as over HTTP.
#[tauri::command]
async fn admin(
    state: tauri::State<'_, Api>,
    method: String,
    params: Option<Value>,
) -> Result<Value, Value> {
    state
        .call(
            &method,
            params.unwrap_or(Value::Null),
            CallCtx {
                origin: Origin::Window,
            },
        )
        .await
        .map_err(|e| e.to_json())
}

/// Safer defaults for WebKitGTK on machines without GPU acceleration (Xvfb, VMs): without
/// them the window can come up blank. Only set when the user has not chosen otherwise.
fn webkit_workarounds() {
    for (k, v) in [
        ("WEBKIT_DISABLE_COMPOSITING_MODE", "1"),
        ("WEBKIT_DISABLE_DMABUF_RENDERER", "1"),
    ] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, so that they close the window and stop the engine
/// like closing the window by hand does. The handlers are installed before this returns: a
/// signal that arrives while the window is still being built is not lost.
#[cfg(unix)]
fn shutdown_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut int, mut term) = tauri::async_runtime::block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    webkit_workarounds();
    let (data_dir, _log) = crate::server::prepare(&args)?;
    let started = tauri::async_runtime::block_on(crate::server::start(&args, &data_dir))?;
    let engine = started.engine.clone();
    let signals = shutdown_signals().context("cannot listen for Ctrl-C and SIGTERM")?;
    // Where the CLI finds this server; removed when the window closes.
    let server_file = crate::datadir::write_server_file(&data_dir, &started.url)?;
    tracing::info!(url = %started.url, "Stepdesk is listening (desktop)");
    println!("Stepdesk is listening on {}", started.url);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tauri::async_runtime::spawn(stepdesk_server::serve(
        started.listener,
        started.router,
        async {
            let _ = stop_rx.await;
        },
    ));

    let app = tauri::Builder::default()
        .manage(started.api.clone())
        .invoke_handler(tauri::generate_handler![admin])
        .build(tauri::generate_context!())
        .context("cannot start the window")?;
    let handle = app.handle().clone();
    tauri::async_runtime::spawn(async move {
        signals.await;
        tracing::info!("shutting down");
        handle.exit(0);
    });
    let code = app.run_return(|_handle, event| {
        if let tauri::RunEvent::Exit = event {
            tracing::info!("window closed; shutting down");
        }
    });
    tracing::debug!(code, "window event loop ended");
    let _ = stop_tx.send(());
    tauri::async_runtime::block_on(async {
        let _ = server.await;
        drop(server_file);
        engine.shutdown(std::time::Duration::from_secs(10)).await;
    });
    Ok(())
}
