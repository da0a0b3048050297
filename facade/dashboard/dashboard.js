// The Ficus dashboard. It asks for the admin token once, keeps it in this tab's session
// storage (never in the URL, never in a cookie), and polls GET /api/dashboard every two
// seconds. Everything it shows comes from that one answer; every value goes into the page
// as text, never as markup, because shadow samples hold whatever the backends answered.
"use strict";

const TOKEN_KEY = "ficus-admin-token";
const POLL_MS = 2000;
const COLORS = ["#2f6f4f", "#c05621", "#2b6cb0", "#805ad5", "#b83280", "#718096", "#975a16"];

const state = {
  timer: null,
  lastBackends: {},   // route name -> backend, to flash a row whose backend changed
  openSample: null,   // key of the diff sample shown, kept across refreshes
  samples: {},        // key -> sample, from the latest snapshot
  colors: {},         // backend -> colour, stable while the page lives
  failures: 0,
};

// el builds an element: attributes from attrs (class, data-*, title, …; css: style
// properties, set through the CSSOM, which the page's Content-Security-Policy allows where a
// style attribute would not be), children as nodes or text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "onclick") e.addEventListener("click", v);
    else if (k === "css") for (const [p, pv] of Object.entries(v)) e.style.setProperty(p, pv);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function pill(text, kind) { return el("span", { class: "pill " + (kind || "muted") }, text); }

function fill(tbody, rows, columns, emptyText) {
  tbody.replaceChildren(...rows);
  if (rows.length === 0) {
    tbody.append(el("tr", {}, el("td", { colspan: columns, class: "empty" }, emptyText)));
  }
}

function fmtSeconds(s) {
  if (!s) return "–";
  if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms";
  return s.toFixed(2) + " s";
}
function fmtPct(v) { return (100 * (v || 0)).toFixed(2) + "%"; }
function fmtRate(v) { return (v || 0) >= 100 ? v.toFixed(0) : (v || 0).toFixed(1); }
function fmtInt(v) { return Number(v || 0).toLocaleString("en"); }
function ago(t, now) {
  if (!t) return "–";
  const s = Math.max(0, (Date.parse(now) - Date.parse(t)) / 1000);
  if (s < 60) return s.toFixed(0) + " s ago";
  if (s < 3600) return (s / 60).toFixed(0) + " min ago";
  return (s / 3600).toFixed(1) + " h ago";
}
function clock(t) { return t ? new Date(t).toLocaleTimeString("en-GB") : "–"; }
function breakerKind(s) { return s === "closed" ? "ok" : s === "half-open" ? "warn" : "bad"; }

// ---- signing in and polling ----

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function showLogin(message) {
  clearTimeout(state.timer);
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("board").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("status").textContent = "not signed in";
  document.getElementById("token").focus();
}

async function fetchDashboard(tok) {
  const resp = await fetch("/api/dashboard", { headers: { Authorization: "Bearer " + tok }, cache: "no-store" });
  if (resp.status === 401) return { unauthorized: true };
  if (!resp.ok) throw new Error("GET /api/dashboard: " + resp.status);
  return { data: await resp.json() };
}

async function poll() {
  const tok = token();
  if (!tok) return showLogin();
  const status = document.getElementById("status");
  try {
    const got = await fetchDashboard(tok);
    if (got.unauthorized) return showLogin("The facade refused the token (it may have restarted with another one).");
    state.failures = 0;
    render(got.data);
    status.textContent = "live · updated " + clock(got.data.time);
    status.classList.remove("stale");
  } catch (err) {
    state.failures++;
    status.textContent = "cannot reach the facade (" + err.message + "); retrying";
    status.classList.add("stale");
  }
  state.timer = setTimeout(poll, POLL_MS);
}

async function signIn(ev) {
  ev.preventDefault();
  const input = document.getElementById("token");
  const tok = input.value.trim();
  if (!tok) return;
  try {
    const got = await fetchDashboard(tok);
    if (got.unauthorized) {
      document.getElementById("login-error").textContent = "That is not the admin token.";
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, tok);
    input.value = "";
    start();
  } catch (err) {
    document.getElementById("login-error").textContent = "Cannot reach the facade: " + err.message;
  }
}

function start() {
  document.getElementById("login").hidden = true;
  document.getElementById("board").hidden = false;
  document.getElementById("logout").hidden = false;
  clearTimeout(state.timer);
  poll();
}

// ---- rendering ----

function render(d) {
  renderRoutes(d);
  renderBackends(d);
  renderShadow(d);
  renderSystem(d);
}

function renderRoutes(d) {
  document.getElementById("generation").textContent = "config generation " + d.generation;
  const r = d.reload || {};
  const reload = document.getElementById("reload");
  const verdict = r.ok ? pill("last reload accepted", "ok") : pill("last reload rejected: the previous config keeps serving", "bad");
  reload.replaceChildren(verdict, " ", el("span", { class: "muted" }, clock(r.time) + (r.path ? " · " + r.path : "")));
  if (!r.ok && r.errors) reload.append(el("pre", { "data-testid": "reload-errors" }, r.errors.join("\n")));

  const promo = {};
  for (const p of d.promotion || []) promo[p.route] = p;
  const rows = (d.routes || []).map((rt) => {
    const m = rt.match || {};
    const match = [m.path, (m.methods || []).join(","), Object.entries(m.headers || {}).map(([k, v]) => k + "=" + v).join(" ")]
      .filter(Boolean).join(" ");
    const shadow = rt.shadow ? [el("span", { class: "backend" }, rt.shadow.to), " ", rt.diff_rate !== undefined ? pill("diffs " + fmtPct(rt.diff_rate), rt.diff_rate > 0.01 ? "bad" : "ok") : ""] : "–";
    let canary = "–";
    if (rt.canary) {
      canary = [el("span", { class: "backend" }, rt.canary.to), " " + rt.canary.percent + "%", rt.canary.sticky ? " sticky " + rt.canary.sticky : ""];
      if (rt.rolled_back) {
        canary.push(" ", pill("rolled back: " + rt.rolled_back.gate, "bad"));
        // Not written to config.yaml (share_error says why): other facades still send it traffic.
        if (rt.rolled_back.shared === false) canary.push(" ", pill("this facade only", "warn"));
      }
    }
    const p = promo[rt.name];
    let stage = rt.stage ? pill(rt.stage, "warn") : pill("full", "muted");
    const stageCell = [stage];
    if (p) {
      const failed = (p.gates || []).filter((g) => !g.ok).map((g) => g.gate);
      stageCell.push(" → " + p.next + " ", failed.length ? pill("waiting: " + failed.join(", "), "muted") : pill("gates hold", "ok"));
    }
    const breakers = Object.entries(rt.breakers || {}).sort().map(([b, s]) => pill(b + " " + s, breakerKind(s)));
    const changed = state.lastBackends[rt.name] !== undefined && state.lastBackends[rt.name] !== rt.to;
    state.lastBackends[rt.name] = rt.to;
    return el("tr", { class: changed ? "changed" : null, "data-route": rt.name },
      el("td", {}, rt.name), el("td", { class: "mono" }, match),
      el("td", { class: "backend", "data-testid": "route-backend" }, rt.to),
      el("td", {}, rt.fallback || "–"), el("td", {}, shadow), el("td", {}, canary), el("td", {}, stageCell),
      el("td", {}, breakers));
  });
  fill(document.querySelector("#routes tbody"), rows, 8, "no routes");
}

function colorOf(name) {
  if (!state.colors[name]) state.colors[name] = COLORS[Object.keys(state.colors).length % COLORS.length];
  return state.colors[name];
}

function renderBackends(d) {
  const rows = (d.backends || []).map((b) => {
    const t = b.last_minute || {};
    const health = b.health === "healthy" ? pill("healthy", "ok") : b.health === "unhealthy" ? pill("unhealthy", "bad") : pill(b.health, "muted");
    return el("tr", { "data-backend": b.name },
      el("td", { title: b.url }, el("span", { class: "backend" }, b.name), " ", el("span", { class: "mono muted" }, b.url)),
      el("td", {}, pill(b.breaker, breakerKind(b.breaker))), el("td", {}, health),
      el("td", { class: "num" }, fmtRate(t.rate)),
      el("td", { class: "num" }, t.errors ? el("span", { class: "error" }, fmtPct(t.error_rate)) : fmtPct(t.error_rate)),
      el("td", { class: "num" }, fmtSeconds(t.p50)), el("td", { class: "num" }, fmtSeconds(t.p90)), el("td", { class: "num" }, fmtSeconds(t.p99)),
      el("td", { class: "num" }, b.in_flight), el("td", { class: "num" }, b.queue_depth));
  });
  fill(document.querySelector("#backends tbody"), rows, 10, "no backends");

  const interval = parseFloat(d.interval) || 2; // "2s"
  const series = (d.backends || []).map((b) => ({ name: b.name, color: colorOf(b.name), points: b.history || [] }));
  const end = Date.parse(d.time);
  drawChart(document.getElementById("chart-rate"), series, end, [{ value: (p) => p.requests / interval }]);
  drawChart(document.getElementById("chart-latency"), series, end, [
    { value: (p) => (p.requests ? p.p99 * 1000 : null) },
    { value: (p) => (p.requests ? p.p50 * 1000 : null), dash: [2, 3] },
  ]);
  document.getElementById("legend").replaceChildren(...series.map((s) => el("span", { css: { "--c": s.color } }, s.name)));
}

// drawChart draws the last minutes (up to ten) of every series on a canvas: one line per backend
// and per measure, a y axis from 0 to a round maximum, and the minutes along the bottom.
function drawChart(canvas, series, end, measures) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 400, h = canvas.clientHeight || 150;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const left = 44, right = 8, top = 8, bottom = 18;
  // The axis covers the history there is: two minutes at least, ten (all the facade keeps)
  // at most, so a facade that just started does not draw its first seconds as a sliver.
  let first = end;
  for (const s of series) if (s.points.length) first = Math.min(first, Date.parse(s.points[0].time));
  const minutes = Math.min(10, Math.max(2, Math.ceil((end - first) / 60000)));
  const span = minutes * 60 * 1000, start = end - span;
  let max = 0;
  for (const s of series) for (const p of s.points) for (const m of measures) {
    const v = m.value(p);
    if (v !== null && v > max) max = v;
  }
  max = niceMax(max);
  const x = (t) => left + ((t - start) / span) * (w - left - right);
  const y = (v) => top + (1 - v / max) * (h - top - bottom);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#65706a"; g.strokeStyle = "#dfe3dc"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4, yy = y(v);
    g.beginPath(); g.moveTo(left, yy); g.lineTo(w - right, yy); g.stroke();
    g.fillText(v >= 10 ? v.toFixed(0) : v.toFixed(v >= 1 ? 1 : 2), 4, yy + 4);
  }
  const every = minutes > 5 ? 2 : 1;
  for (let m = minutes % every; m <= minutes; m += every) {
    const xx = x(start + m * 60000);
    g.fillText(m === minutes ? "now" : "-" + (minutes - m) + "m", m === minutes ? xx - 22 : xx - 10, h - 4);
  }
  for (const s of series) {
    for (const m of measures) {
      g.strokeStyle = s.color; g.lineWidth = 1.6; g.setLineDash(m.dash || []);
      g.beginPath();
      let pen = false;
      const alone = []; // points with no drawn neighbour get a dot, or they would not show
      s.points.forEach((p, i) => {
        const t = Date.parse(p.time), v = m.value(p);
        if (t < start || v === null) { pen = false; return; }
        if (pen) g.lineTo(x(t), y(v)); else g.moveTo(x(t), y(v));
        const next = s.points[i + 1];
        if (!pen && (!next || m.value(next) === null)) alone.push([x(t), y(v)]);
        pen = true;
      });
      g.stroke();
      g.fillStyle = s.color;
      for (const [px, py] of alone) { g.beginPath(); g.arc(px, py, 2.5, 0, 2 * Math.PI); g.fill(); }
    }
  }
  g.setLineDash([]);
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const k of [1, 2, 2.5, 5, 10]) if (v <= k * p) return k * p;
  return 10 * p;
}

function sampleKey(s) { return s.route + " " + s.time + " " + s.request_id; }

function renderShadow(d) {
  const box = document.getElementById("shadow");
  state.samples = {};
  const routes = (d.shadow || []).map((r) => {
    const figures = el("div", { class: "figures" },
      el("span", {}, "route ", el("b", {}, r.route), " → candidate ", el("b", {}, r.candidate)),
      el("span", {}, "diff rate ", el("b", { "data-testid": "diff-rate" }, fmtPct(r.diff_rate))),
      el("span", {}, "compared ", el("b", {}, fmtInt(r.samples))),
      el("span", {}, "matches ", el("b", {}, fmtInt(r.matches))),
      el("span", {}, "differences ", el("b", {}, fmtInt(r.differences))),
      el("span", {}, "lag ", el("b", {}, fmtInt(r.lag))),
      el("span", {}, "errors ", el("b", {}, fmtInt(r.errors))),
      el("span", {}, "dropped ", el("b", {}, fmtInt(r.dropped))));
    const endpoints = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "endpoint"), el("th", { class: "num" }, "samples"),
      el("th", { class: "num" }, "differences"), el("th", { class: "num" }, "lag"), el("th", { class: "num" }, "errors"), el("th", {}, "fields that differ most"))),
      el("tbody", {}, (r.endpoints || []).map((e) => el("tr", {}, el("td", { class: "mono" }, e.endpoint), el("td", { class: "num" }, fmtInt(e.samples)),
        el("td", { class: "num" }, fmtInt(e.differences)), el("td", { class: "num" }, fmtInt(e.lag)), el("td", { class: "num" }, fmtInt(e.errors)),
        el("td", { class: "mono" }, (e.top_fields || []).slice(0, 4).map((f) => f.field + " ×" + f.count).join(", "))))));
    const recent = (r.recent || []).map((s) => {
      const key = sampleKey(s);
      state.samples[key] = s;
      const open = state.openSample === key;
      return el("li", {}, el("button", { type: "button", class: open ? "open" : null, "data-testid": "diff-sample", "data-key": key,
        onclick: () => { state.openSample = state.openSample === key ? null : key; renderDiff(); renderShadowButtons(); } },
        el("span", { class: "mono" }, s.request.method + " " + s.request.path),
        el("span", {}, s.primary.backend + " " + (s.primary.status || "–") + " · " + s.candidate.backend + " " + (s.candidate.status || s.candidate.error || "–")),
        el("span", { class: "when" }, clock(s.time) + (s.rechecked ? " · rechecked" : ""))));
    });
    return el("div", { class: "route-shadow", "data-shadow-route": r.route }, figures, endpoints,
      recent.length ? [el("h3", {}, "Latest differences (click one to see it)"), el("ul", { class: "samples" }, recent)] : el("p", { class: "empty" }, "no differences seen"));
  });
  box.replaceChildren(...(routes.length ? routes : [el("p", { class: "empty" }, "No route has a shadow. Add one to a route in config.yaml (shadow: { to: BACKEND }) to compare a candidate on live traffic.")]));
  if (state.openSample && !state.samples[state.openSample]) state.openSample = null; // it scrolled out of the report
  renderDiff();
}

function renderShadowButtons() {
  for (const b of document.querySelectorAll("[data-testid=diff-sample]")) b.classList.toggle("open", b.dataset.key === state.openSample);
}

function pretty(body) {
  if (!body) return "";
  try { return JSON.stringify(JSON.parse(body), null, 2); } catch { return body; }
}

// renderDiff shows the open sample: what differs, as diff lines (− the primary's value,
// + the candidate's, under the field), then both answers whole.
function renderDiff() {
  const box = document.getElementById("diff");
  const s = state.samples[state.openSample];
  if (!s) { box.hidden = true; box.replaceChildren(); return; }
  const lines = [];
  for (const d of s.differences || []) {
    const where = d.part + (d.path ? " " + d.path : "") + "  (" + d.kind + ")" + (d.note ? " " + d.note : "");
    lines.push(el("div", { class: "at" }, "@@ " + where));
    if (d.a !== undefined) lines.push(el("div", { class: "del" }, "- " + s.primary.backend + ": " + d.a));
    if (d.b !== undefined) lines.push(el("div", { class: "add" }, "+ " + s.candidate.backend + ": " + d.b));
  }
  if (s.omitted) lines.push(el("div", { class: "at" }, "… and " + s.omitted + " more differences"));
  const side = (label, r) => el("div", {},
    el("h4", {}, label + ": " + r.backend + " · " + (r.status || "no answer") + " · " + fmtSeconds(r.seconds)),
    el("pre", {}, r.error ? r.error : pretty(r.body)));
  box.replaceChildren(
    el("h3", {}, s.request.method + " " + s.request.path),
    el("div", { class: "facts" }, el("span", {}, "endpoint " + s.endpoint), el("span", {}, "request id " + s.request_id),
      el("span", {}, "at " + clock(s.time)), s.rechecked ? el("span", {}, "re-checked after the route's recheck delay: still different") : null),
    el("div", { class: "lines", "data-testid": "diff-lines" }, lines),
    el("div", { class: "bodies" }, side("primary", s.primary), side("candidate", s.candidate)),
    el("p", {}, el("button", { type: "button", onclick: () => { state.openSample = null; renderDiff(); renderShadowButtons(); } }, "Close")));
  box.hidden = false;
}

function renderSystem(d) {
  const sys = d.system;
  const now = d.time;
  const none = "The facade was started without a system reader (ficus serve facade has one).";
  // Outboxes
  fill(document.querySelector("#outboxes tbody"), ((sys && sys.outboxes) || []).map((o) =>
    el("tr", { "data-database": o.database }, el("td", {}, o.database),
      el("td", { class: "num" }, o.error ? "–" : o.backlog > 0 ? el("b", {}, fmtInt(o.backlog)) : "0"),
      el("td", {}, o.error ? el("span", { class: "error" }, o.error) : o.oldest ? ago(o.oldest, now) : "nothing waiting"))),
  3, sys ? "no databases" : none);

  // Sagas
  const sg = sys && sys.sagas;
  const counts = document.getElementById("saga-counts");
  if (!sg) counts.replaceChildren(el("span", { class: "empty" }, sys ? "no saga table" : none));
  else if (sg.error) counts.replaceChildren(el("span", { class: "error" }, sg.error));
  else {
    const order = ["stuck", "compensating", "running", "placed", "cancelled"];
    const kinds = { stuck: "bad", compensating: "warn", running: "warn", placed: "ok", cancelled: "muted" };
    counts.replaceChildren(...order.map((st) => pill(st + " " + fmtInt(sg.counts[st] || 0), (sg.counts[st] || 0) > 0 ? kinds[st] : "muted")));
  }
  const rows = ((sg && sg.active) || []).map((s) => el("tr", { "data-saga-state": s.state },
    el("td", { class: "mono", title: s.order }, s.order.slice(0, 13) + "…"),
    el("td", {}, pill(s.state, s.state === "stuck" ? "bad" : "warn")), el("td", {}, s.step || "–"),
    el("td", { class: "num" }, s.attempts), el("td", {}, [s.reason, s.error].filter(Boolean).join(" · ") || "–"),
    el("td", {}, ago(s.updated, now))));
  if (sg && sg.more) rows.push(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "more unfinished sagas: ficus sagas list")));
  fill(document.querySelector("#sagas tbody"), rows, 6, "no saga is unfinished: none stuck, compensating or running");

  // Migrations
  const box = document.getElementById("migrations");
  const migs = (sys && sys.migrations) || [];
  box.replaceChildren(...(migs.length ? migs.map((m) => renderMigration(m, now)) : [el("p", { class: "empty" }, sys ? "No data migration yet: ficus migrate CAPABILITY backfill starts one." : none)]));

  const errs = (sys && sys.errors) || [];
  document.getElementById("panel-system-errors").hidden = errs.length === 0;
  document.getElementById("system-errors").replaceChildren(...errs.map((e) => el("li", {}, e)));
}

function renderMigration(m, now) {
  const tables = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "table"), el("th", {}, "backfill"), el("th", { class: "num" }, "rows"))),
    el("tbody", {}, (m.tables || []).map((t) => {
      const pct = t.expected > 0 ? Math.min(100, (100 * t.copied) / t.expected) : t.done ? 100 : 0;
      return el("tr", {}, el("td", { class: "mono" }, t.table),
        el("td", {}, el("div", { class: "bar", title: pct.toFixed(0) + "%" }, el("i", { css: { width: pct.toFixed(1) + "%" } }))),
        el("td", { class: "num" }, fmtInt(t.copied) + " / " + fmtInt(t.expected) + (t.done ? " ✓" : "")));
    })));
  const v = m.verify;
  const verify = v ? (v.differences === 0 ? pill("verify clean · " + ago(v.at, now), "ok") : pill("verify: " + fmtInt(v.differences) + " differ · " + ago(v.at, now), "bad")) : pill("not verified yet", "muted");
  const sync = m.synced_at ? "sync applied stream " + m.synced_to + " · " + ago(m.synced_at, now) + " · lag " + fmtSeconds(m.lag) : "sync: no event applied yet (from stream " + m.sync_from + ")";
  return el("div", { class: "migration", "data-migration": m.capability + " " + m.direction },
    el("h3", {}, m.capability + " · " + m.direction + " → " + m.target + " database"),
    tables,
    el("div", { class: "facts" },
      el("span", {}, m.backfill_done ? pill("backfill done", "ok") : pill("backfill not finished", "warn")),
      el("span", {}, sync), el("span", {}, m.running ? pill("running: " + m.running, "warn") : pill("idle", "muted")),
      el("span", {}, verify),
      v ? el("span", { class: "mono" }, v.summary) : null));
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login-form").addEventListener("submit", signIn);
  document.getElementById("logout").addEventListener("click", () => showLogin("Signed out."));
  if (token()) start(); else showLogin();
});
