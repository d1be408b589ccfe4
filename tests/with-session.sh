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
    # Inside dbus-run-session. The keyring is started by D-Bus activation through our own
    # service file (see below), so the first use of org.freedesktop.secrets starts it, and
    # should the daemon ever exit, the next use starts it again, unlocked with the same
    # password: a daemon activated by the system's service file would have a locked login
    # keyring, and every write would need a password prompt that cannot be shown here.
    dbus-send --session --print-reply --dest=org.freedesktop.DBus / \
        org.freedesktop.DBus.StartServiceByName string:org.freedesktop.secrets uint32:0 >/dev/null
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

if [[ "${1:-}" == "--keyring" ]]; then
    # Run by dbus-daemon (service activation): gnome-keyring in the foreground, reading the
    # login keyring's password from stdin (it creates login.keyring in XDG_DATA_HOME the
    # first time and unlocks it).
    echo "with-session: starting gnome-keyring-daemon (pid $$)" >&2
    exec gnome-keyring-daemon --unlock --foreground --components=secrets < <(printf %s "stepdesk-ci")
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
# The session bus reads service files from XDG_DATA_HOME before the system's: ours starts the
# keyring unlocked (see --keyring above).
mkdir -p "$XDG_DATA_HOME/dbus-1/services"
cat >"$XDG_DATA_HOME/dbus-1/services/org.freedesktop.secrets.service" <<EOF
[D-BUS Service]
Name=org.freedesktop.secrets
Exec=$(realpath "$0") --keyring
EOF
unset DBUS_SESSION_BUS_ADDRESS

# dbus-run-session stops the bus when the command ends; the keyring daemon exits with it.
# (As root, dbus-daemon's "Failed to set fd limit" warning is harmless.)
dbus-run-session -- "$0" --inside "$@"
