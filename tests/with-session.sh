#!/usr/bin/env bash
# Runs a command the way a desktop session would see the world, on a machine that has none
# (CI: no display, no session bus): a private D-Bus session bus, an unlocked GNOME Keyring
# answering as the Secret Service (org.freedesktop.secrets), and a fresh HOME and XDG
# directories, so no keyring or cache from an earlier run leaks in.
#
#   tests/with-session.sh COMMAND [ARGS...]
#
# The toolchain stays where it was: CARGO_HOME and RUSTUP_HOME are pinned to the caller's.
set -euo pipefail

if [[ "${1:-}" == "--inside" ]]; then
    shift
    # Inside dbus-run-session: start the keyring (it reads its password from stdin, creates
    # login.keyring in the fresh XDG_DATA_HOME and unlocks it), then wait for its bus name.
    printf %s "stepdesk-ci" | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1
    for _ in $(seq 100); do
        if dbus-send --session --print-reply --dest=org.freedesktop.DBus / \
            org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null |
            grep -q "boolean true"; then
            break
        fi
        sleep 0.1
    done
    # Prove the Secret Service works before anything relies on it.
    printf %s "probe" | secret-tool store --label="stepdesk session probe" service stepdesk-session-probe user ci
    if [[ "$(secret-tool lookup service stepdesk-session-probe user ci)" != "probe" ]]; then
        echo "with-session: the Secret Service does not store and return a secret" >&2
        exit 1
    fi
    secret-tool clear service stepdesk-session-probe user ci
    echo "with-session: D-Bus session bus and unlocked Secret Service (gnome-keyring) ready" >&2
    exec "$@"
fi

if [[ $# -eq 0 ]]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/stepdesk-session.XXXXXX")
trap 'rm -rf "$root"' EXIT

export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
export HOME="$root/home"
export XDG_DATA_HOME="$root/home/.local/share"
export XDG_CONFIG_HOME="$root/home/.config"
export XDG_CACHE_HOME="$root/home/.cache"
export XDG_STATE_HOME="$root/home/.local/state"
export XDG_RUNTIME_DIR="$root/runtime"
mkdir -p "$XDG_DATA_HOME" "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME" "$XDG_STATE_HOME"
mkdir -m 700 "$XDG_RUNTIME_DIR"
unset DBUS_SESSION_BUS_ADDRESS

# dbus-run-session stops the bus when the command ends; the keyring daemon exits with it.
# (As root, dbus-daemon's "Failed to set fd limit" warning is harmless.)
dbus-run-session -- "$0" --inside "$@"
