fn main() {
    // Declaring the app's commands makes Tauri generate an `allow-<command>` permission for
    // each, and then only commands a capability grants can be called: without this manifest
    // every app command is callable from any window, whatever the capability says.
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .capabilities_path_pattern("src-tauri/capabilities/**/*")
            .app_manifest(tauri_build::AppManifest::new().commands(&["admin"])),
    )
    .expect("tauri build script failed");
}
