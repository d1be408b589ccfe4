//! Makes sure the console's built assets exist before they are embedded.
//!
//! The console is built by `make ui` (Vite) into `ui/dist`, which this crate embeds
//! (`src/ui.rs`) and which the desktop window embeds too (`tauri.conf.json`'s
//! `frontendDist`). A plain `cargo build` on a fresh clone has no `ui/dist` yet: rather than
//! fail, it gets a placeholder page that says how to build the console. `make ui` replaces
//! it with the real build.

use std::path::PathBuf;

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Stepdesk</title></head>
<body>
<h1>Stepdesk</h1>
<p>The console has not been built. Run <code>make ui</code> (or <code>make build</code>),
then rebuild Stepdesk.</p>
</body>
</html>
"#;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dist = manifest.join("../../ui/dist");
    let index = dist.join("index.html");
    if !index.exists() {
        std::fs::create_dir_all(&dist).expect("cannot create ui/dist");
        std::fs::write(&index, PLACEHOLDER).expect("cannot write ui/dist/index.html");
        println!("cargo:warning=ui/dist was missing: embedding a placeholder page; run `make ui` for the console");
    }
    // A directory: Cargo reruns this script (and so re-embeds) when any file under it changes.
    println!("cargo:rerun-if-changed={}", dist.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!(
        "cargo:rustc-env=STEPDESK_UI_DIST={}",
        dist.canonicalize().unwrap_or(dist).display()
    );
}
