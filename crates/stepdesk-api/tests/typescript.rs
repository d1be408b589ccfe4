//! The console's TypeScript types are generated from the Rust ones. This test fails when the
//! checked-in file (`ui/src/lib/api/generated.ts`) no longer matches them; run it with
//! `UPDATE_TS=1` to regenerate the file.

use std::path::PathBuf;

fn generated_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/lib/api/generated.ts")
}

#[test]
fn the_checked_in_typescript_matches_the_rust_types() {
    let fresh = stepdesk_api::typescript();
    let path = generated_file();
    if std::env::var("UPDATE_TS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != fresh {
        let first_difference = checked_in
            .lines()
            .zip(fresh.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}:\n  checked in: {a}\n  generated:  {b}", i + 1))
            .unwrap_or_else(|| "the files differ in length".into());
        panic!(
            "{} is out of date with the Rust types ({first_difference}).\nRun `UPDATE_TS=1 cargo test -p stepdesk-api --test typescript` and commit the result.",
            path.display()
        );
    }
}

#[test]
fn every_command_is_in_the_typescript_commands_map() {
    let ts = stepdesk_api::typescript();
    for command in stepdesk_api::COMMANDS {
        assert!(
            ts.contains(&format!("  {}: {{ params: ", command.name)),
            "{} is missing from `Commands`",
            command.name
        );
    }
    // Timestamps are numbers, not bigint.
    assert!(!ts.contains("bigint"), "{ts}");
}
