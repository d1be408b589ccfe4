// The desktop app's native behaviour under Xvfb: one app per data directory (a second
// launch brings the first window forward and exits), and the window's size and position
// remembered between launches. No WebDriver: the real binary, and X11's own tools.
//
// Run it with a display, e.g. `make test-window` (which wraps it in xvfb-run).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import path from "node:path";

import {
  stepdeskBin,
  cleanEnv,
  freePort,
  tempDir,
  removeDir,
  waitFor,
  stopChild,
} from "../support/stepdesk.mjs";

let home; // a private HOME, so the window-state file is ours
let dataDir;

before(() => {
  assert.ok(process.env.DISPLAY, "the native window test needs a display: run it under xvfb-run");
  home = tempDir("stepdesk-native-home-");
  dataDir = tempDir("stepdesk-native-data-");
});

after(() => {
  removeDir(home);
  removeDir(dataDir);
});

function env(port) {
  return cleanEnv({
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, ".config"),
    STEPDESK_DATA_DIR: dataDir,
    STEPDESK_PORT: String(port),
  });
}

/** Starts the app (the window); resolves once it prints its URL. */
async function launch(port) {
  const child = spawn(stepdeskBin(), [], { env: env(port), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (out += d));
  await waitFor("the app to listen", () => {
    if (child.exitCode !== null) throw new Error(`the app exited:\n${out}`);
    return out.includes("Stepdesk is listening on");
  }, { timeoutMs: 60000 });
  return { child, output: () => out };
}

/** The Stepdesk window's geometry, from xwininfo (null while there is none). */
function geometry() {
  let info;
  try {
    info = execFileSync("xwininfo", ["-name", "Stepdesk"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return null;
  }
  const num = (label) => Number(info.match(new RegExp(`${label}:\\s+(-?\\d+)`))?.[1]);
  return { width: num("Width"), height: num("Height"), x: num("Absolute upper-left X"), y: num("Absolute upper-left Y") };
}

function stateFile() {
  return path.join(home, ".config", "dev.stepdesk.app", ".window-state.json");
}

test("a second launch on the same data directory brings the first window forward and exits", async () => {
  const port = await freePort();
  const first = await launch(port);
  try {
    await waitFor("the window", () => geometry() !== null, { timeoutMs: 30000 });
    const second = spawn(stepdeskBin(), [], { env: env(await freePort()), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    second.stdout.setEncoding("utf8").on("data", (d) => (out += d));
    second.stderr.setEncoding("utf8").on("data", (d) => (out += d));
    const code = await new Promise((resolve) => second.on("exit", resolve));
    assert.equal(code, 0, out);
    assert.match(out, /already running on .*; its window was brought to the front/);
    // The first app is still there and serving.
    assert.equal(first.child.exitCode, null);
    const res = await fetch(`http://127.0.0.1:${port}/health`);
    assert.equal(res.status, 200);
  } finally {
    await stopChild(first.child, { graceMs: 10000 });
  }
});

test("the window's size and position are remembered between launches", async () => {
  // A size saved by an earlier session is restored...
  mkdirSync(path.dirname(stateFile()), { recursive: true });
  writeFileSync(
    stateFile(),
    JSON.stringify({
      main: { width: 930, height: 610, x: 140, y: 90, prev_x: 140, prev_y: 90, maximized: false, visible: true, decorated: true, fullscreen: false },
    }),
  );
  const app = await launch(await freePort());
  try {
    const size = await waitFor("the restored window", () => {
      const g = geometry();
      return g && g.width === 930 && g.height === 610 && g;
    }, { timeoutMs: 30000 });
    // No window manager runs under Xvfb, so the window is where the app put it.
    assert.deepEqual(size, { width: 930, height: 610, x: 140, y: 90 });
  } finally {
    await stopChild(app.child, { graceMs: 10000 });
  }
  // ...and the state is saved again when the app closes.
  assert.ok(existsSync(stateFile()), "the window state is saved on exit");
  const saved = JSON.parse(readFileSync(stateFile(), "utf8"));
  assert.equal(saved.main.width, 930);
  assert.equal(saved.main.height, 610);
  assert.deepEqual([saved.main.x, saved.main.y], [140, 90]);
});
