// Stepdesk console. One transport for the admin API: Tauri's `admin` command inside the
// desktop window, the HTTP routes in a browser.
"use strict";

const tauri = window.__TAURI__ && window.__TAURI__.core;

const routes = {
  functions: () => ["GET", "/api/admin/functions"],
  runs: (p) => ["GET", "/api/admin/runs?" + new URLSearchParams(p || {})],
};

async function call(method, params) {
  if (tauri) return tauri.invoke("admin", { method, params: params || null });
  const [verb, url] = routes[method](params);
  const res = await fetch(url, { method: verb });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : "");
const fmtDuration = (ms) => (ms == null ? "" : ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [functions, page] = await Promise.all([call("functions"), call("runs", { limit: 20 })]);
    const fbody = document.querySelector("#functions tbody");
    fbody.replaceChildren();
    for (const f of functions) {
      const tr = document.createElement("tr");
      cell(tr, f.name);
      cell(tr, f.id, "mono");
      cell(tr, f.triggers.map((t) => `${t.kind}: ${t.value}`).join(", "));
      cell(tr, fmtTime(f.triggers.map((t) => t.next_fire_at).find(Boolean)));
      fbody.appendChild(tr);
    }
    if (!functions.length) fbody.innerHTML = '<tr><td colspan="4" class="empty">No functions registered.</td></tr>';
    const rbody = document.querySelector("#runs tbody");
    rbody.replaceChildren();
    for (const r of page.runs) {
      const tr = document.createElement("tr");
      cell(tr, r.id, "mono");
      cell(tr, r.function_name);
      cell(tr, r.status, "status-" + r.status.toLowerCase());
      cell(tr, r.event_name || r.trigger_kind);
      cell(tr, fmtTime(r.queued_at));
      cell(tr, fmtDuration(r.duration_ms));
      rbody.appendChild(tr);
    }
    if (!page.runs.length) rbody.innerHTML = '<tr><td colspan="6" class="empty">No runs yet.</td></tr>';
    status.textContent = "Updated " + new Date().toLocaleTimeString();
    status.className = "";
  } catch (e) {
    status.textContent = "Cannot reach the engine: " + (e.error || e.message || String(e));
    status.className = "error";
  }
}

refresh();
setInterval(refresh, 2000);
