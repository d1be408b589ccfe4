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

/// The window, as the admin API sees it.
struct MainWindow(tauri::AppHandle);

impl stepdesk_api::WindowControl for MainWindow {
    fn focus(&self) {
        use tauri::Manager;
        if let Some(w) = self.0.get_webview_window("main") {
            let _ = w.unminimize();
            let _ = w.show();
            let _ = w.set_focus();
        }
    }
}

/// The live change feed, as Tauri events: `stepdesk://changes` with a
/// [`stepdesk_api::ChangeNotice`] after each committed transaction, `stepdesk://changes-lagged`
/// when the window fell behind (it then refetches everything it shows).
fn forward_changes(app: tauri::AppHandle, engine: stepdesk_engine::Engine) {
    use tauri::Emitter;
    use tokio::sync::broadcast::error::RecvError;
    tauri::async_runtime::spawn(async move {
        // Subscribing starts the feed's publisher, a task: inside the runtime.
        let mut rx = engine.subscribe();
        loop {
            match rx.recv().await {
                Ok(changes) => {
                    let notice = stepdesk_api::ChangeNotice::from(&changes);
                    if let Err(e) = app.emit("stepdesk://changes", notice) {
                        tracing::debug!(error = %e, "cannot send a change notice to the window");
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let _ = app.emit("stepdesk://changes-lagged", ());
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}

/// The console's pages, as the View menu opens them.
const PAGES: [(&str, &str, &str); 7] = [
    ("view-runs", "Runs", "#/runs"),
    ("view-functions", "Functions", "#/functions"),
    ("view-events", "Events", "#/events"),
    ("view-users", "Users", "#/users"),
    ("view-daily-sync", "Daily sync", "#/daily-sync"),
    ("view-settings", "Settings", "#/settings"),
    // Last, so that the shortcuts of the pages before it stay as they were.
    ("view-apps", "Apps", "#/apps"),
];

/// The native menu: File (open the console in a browser, quit), View (the pages, reload),
/// Help (about).
fn menu(app: &tauri::AppHandle) -> tauri::Result<tauri::menu::Menu<tauri::Wry>> {
    use tauri::menu::{AboutMetadata, Menu, MenuItem, PredefinedMenuItem, Submenu};
    let file = Submenu::with_items(
        app,
        "File",
        true,
        &[
            &MenuItem::with_id(app, "open-browser", "Open in browser", true, None::<&str>)?,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, "quit", "Quit", true, Some("CmdOrCtrl+Q"))?,
        ],
    )?;
    let view = Submenu::new(app, "View", true)?;
    for (i, (id, label, _)) in PAGES.iter().enumerate() {
        let accel = format!("CmdOrCtrl+{}", i + 1);
        view.append(&MenuItem::with_id(
            app,
            *id,
            *label,
            true,
            Some(accel.as_str()),
        )?)?;
    }
    view.append(&PredefinedMenuItem::separator(app)?)?;
    view.append(&MenuItem::with_id(
        app,
        "reload",
        "Reload",
        true,
        Some("CmdOrCtrl+R"),
    )?)?;
    let about = AboutMetadata {
        name: Some("Stepdesk".into()),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        comments: Some("A local, durable, Inngest-compatible engine and console".into()),
        ..Default::default()
    };
    let help = Submenu::with_items(
        app,
        "Help",
        true,
        &[&PredefinedMenuItem::about(
            app,
            Some("About Stepdesk"),
            Some(about),
        )?],
    )?;
    Menu::with_items(app, &[&file, &view, &help])
}

fn on_menu(app: &tauri::AppHandle, id: &str, url: &str) {
    use tauri::Manager;
    let window = app.get_webview_window("main");
    match id {
        "quit" => app.exit(0),
        "reload" => {
            if let Some(w) = window {
                let _ = w.eval("window.location.reload()");
            }
        }
        "open-browser" => {
            use tauri_plugin_opener::OpenerExt;
            if let Err(e) = app.opener().open_url(url, None::<&str>) {
                tracing::warn!(error = %e, "cannot open the console in a browser");
            }
        }
        other => {
            if let (Some(w), Some((_, _, route))) =
                (window, PAGES.iter().find(|(page, _, _)| *page == other))
            {
                let _ = w.eval(format!(
                    "window.location.hash = {}",
                    serde_json::json!(route)
                ));
            }
        }
    }
}

/// A second launch on a data directory whose app is running: bring that window to the front
/// through its admin API, and report whether it worked.
fn focus_running(data_dir: &std::path::Path) -> anyhow::Result<bool> {
    let runtime = crate::client::runtime()?;
    runtime.block_on(async {
        let Some(client) = crate::client::Client::running(data_dir).await else {
            return Ok(false);
        };
        let focused = client
            .call(
                reqwest::Method::POST,
                &["api", "admin", "window", "focus"],
                None,
            )
            .await?;
        Ok(focused == serde_json::Value::Bool(true))
    })
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    webkit_workarounds();
    let (data_dir, _log) = crate::server::prepare(&args)?;
    // One app per data directory: a second launch brings the first one's window forward.
    if crate::datadir::is_locked(&data_dir) {
        if focus_running(&data_dir)? {
            println!(
                "Stepdesk is already running on {}; its window was brought to the front",
                data_dir.display()
            );
            return Ok(());
        }
        anyhow::bail!(
            "another Stepdesk is already running on {} without a window (stop it, or use another --data-dir)",
            data_dir.display()
        );
    }
    let started = tauri::async_runtime::block_on(crate::server::start(&args, &data_dir))?;
    let engine = started.engine.clone();
    let apps = started.apps.clone();
    let api = started.api.clone();
    let url = started.url.clone();
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
        // Size and position are remembered between launches (in the app's config directory).
        .plugin(tauri_plugin_window_state::Builder::default().build())
        .plugin(tauri_plugin_opener::init())
        .manage(api.clone())
        .invoke_handler(tauri::generate_handler![admin])
        .menu(menu)
        .on_menu_event(move |app, event| on_menu(app, event.id().as_ref(), &url))
        .build(tauri::generate_context!())
        .context("cannot start the window")?;
    api.attach_window(std::sync::Arc::new(MainWindow(app.handle().clone())));
    forward_changes(app.handle().clone(), engine.clone());
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
        if let Some(apps) = &apps {
            apps.stop();
        }
        engine.shutdown(std::time::Duration::from_secs(10)).await;
    });
    Ok(())
}
