// The Brama status page: polls api/connections, listens to events, renders in place.
//
// Everything derived (sparklines of recent calls, time left open) is computed here from the
// polled totals, so the server does one snapshot read per poll and nothing per call.
// Untrusted text (identifiers, metadata, reasons) only ever goes through textContent.
"use strict";

(() => {
  const POLL_MS = Number(document.body.dataset.pollMs) || 1000;
  const HISTORY = 40; // sparkline buckets, one per poll interval
  const BAR = 3; // pixels per bucket (a 2-pixel bar and a gap)
  const MAX_LOG = 200; // events kept in the log
  const SPARK_W = BAR * HISTORY;
  const SPARK_H = 22;
  const SVG = "http://www.w3.org/2000/svg";
  const REFRESH_ON = new Set([
    "state_change", "connection_registered", "connection_unregistered",
    "connection_removed", "cleanup", "failure", "circuit_reset",
  ]);

  const body = document.querySelector("#connections tbody");
  const rows = new Map(); // key -> row record
  let clock = { server: 0, local: 0 }; // server time (s) seen at local time (ms)
  let polling = false;
  let pollAgain = false;

  const keyOf = (c) => `${c.scope ?? ""}\u0000${c.identifier}`;
  const serverNow = () => clock.server + (performance.now() - clock.local) / 1000;
  const bucketNow = () => Math.floor(performance.now() / POLL_MS);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function percent(rate) {
    return rate === null || rate === undefined ? "—" : `${(100 * rate).toFixed(1)} %`;
  }

  function seconds(value) {
    if (value >= 3600) return `${(value / 3600).toFixed(1)} h`;
    if (value >= 120) return `${(value / 60).toFixed(1)} min`;
    return `${value.toFixed(1)} s`;
  }

  // -- rows --

  function makeRow(c) {
    const tr = el("tr");
    tr.dataset.key = keyOf(c);
    tr.dataset.connection = c.identifier;
    tr.dataset.scope = c.scope ?? "";
    const cells = {
      name: el("td", "name"),
      scope: el("td", "scope", c.scope ?? "—"),
      state: el("td", "state"),
      failures: el("td", "failures num"),
      rate: el("td", "rate num"),
      window: el("td", "window num"),
      openFor: el("td", "open-for num"),
      spark: el("td", "spark-cell"),
      totals: el("td", "totals"),
    };
    cells.name.append(el("span", "", c.identifier), el("small", "", c.type));
    cells.state.append(el("span", "badge"));
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", SPARK_W);
    svg.setAttribute("height", SPARK_H);
    svg.setAttribute("viewBox", `0 0 ${SPARK_W} ${SPARK_H}`);
    svg.setAttribute("role", "img");
    cells.spark.append(svg);
    for (const cell of Object.values(cells)) tr.append(cell);
    return { tr, cells, svg, history: [], last: null, status: c };
  }

  function record(row, c) {
    // Add the calls since the last poll to the current bucket of the sparkline.
    const totals = { ok: c.total_successes, fail: c.total_failures, rej: c.rejected_calls };
    const now = bucketNow();
    const history = row.history;
    if (row.last !== null) {
      const delta = {};
      for (const k of ["ok", "fail", "rej"]) delta[k] = Math.max(0, totals[k] - row.last[k]);
      let tail = history[history.length - 1];
      if (!tail || tail.t !== now) {
        tail = { t: now, ok: 0, fail: 0, rej: 0 };
        history.push(tail);
      }
      tail.ok += delta.ok;
      tail.fail += delta.fail;
      tail.rej += delta.rej;
      while (history.length && history[0].t <= now - HISTORY) history.shift();
    }
    row.last = totals;
  }

  function drawSpark(row) {
    const svg = row.svg;
    const now = bucketNow();
    let peak = 1;
    for (const b of row.history) peak = Math.max(peak, b.ok + b.fail + b.rej);
    svg.replaceChildren();
    const base = document.createElementNS(SVG, "rect");
    base.setAttribute("class", "base");
    base.setAttribute("x", 0);
    base.setAttribute("y", SPARK_H - 1);
    base.setAttribute("width", SPARK_W);
    base.setAttribute("height", 1);
    svg.append(base);
    let calls = 0;
    for (const b of row.history) {
      const x = SPARK_W - BAR * (now - b.t + 1);
      if (x < 0) continue;
      let y = SPARK_H - 1;
      for (const part of ["ok", "fail", "rej"]) {
        if (!b[part]) continue;
        const h = Math.max(1, Math.round(((SPARK_H - 1) * b[part]) / peak));
        y -= h;
        const bar = document.createElementNS(SVG, "rect");
        bar.setAttribute("class", part);
        bar.setAttribute("x", x);
        bar.setAttribute("y", y);
        bar.setAttribute("width", 2);
        bar.setAttribute("height", h);
        svg.append(bar);
      }
      calls += b.ok + b.fail + b.rej;
    }
    row.cells.spark.title = `${calls} calls in the last ${seconds((HISTORY * POLL_MS) / 1000)}`;
    svg.setAttribute("aria-label", row.cells.spark.title);
  }

  // The rate policies' window: the rates once known, else how many calls it holds so far.
  function windowRates(c) {
    const parts = [];
    if (c.failure_rate !== null) parts.push(`failed ${percent(c.failure_rate)}`);
    if (c.slow_call_rate !== null) parts.push(`slow ${percent(c.slow_call_rate)}`);
    if (parts.length) return parts.join(" · ");
    return c.calls_in_window > 0 ? `${c.calls_in_window} calls` : "";
  }

  function openFor(c) {
    if (c.state === "open") {
      if (c.open_until === null) return c.expiry_disabled ? "until reset" : "—";
      return seconds(Math.max(0, c.open_until - serverNow()));
    }
    if (c.state === "half_open") return "trial calls";
    return "";
  }

  function update(row, c) {
    row.status = c;
    row.tr.dataset.state = c.state;
    row.cells.state.firstChild.textContent = c.state.replace("_", "-");
    row.cells.failures.textContent = `${c.failure_count} / ${c.max_attempts}`;
    row.cells.rate.textContent = percent(c.success_rate);
    row.cells.window.textContent = windowRates(c);
    row.cells.window.title = c.calls_in_window > 0 ? `${c.calls_in_window} calls in the window` : "";
    row.cells.openFor.textContent = openFor(c);
    const change = c.last_change;
    row.cells.state.title = change ? `last change by ${change.origin}` : "";
    const reason = c.last_failure_reason === null ? "" : `last failure: ${c.last_failure_reason}`;
    row.cells.name.title = [reason, `metadata: ${JSON.stringify(c.metadata)}`]
      .filter(Boolean).join("\n");
    const totals = row.cells.totals;
    totals.replaceChildren(
      el("span", "ok", `✓ ${c.total_successes}`),
      el("span", "fail", `✗ ${c.total_failures}`),
      el("span", "rej", `⊘ ${c.rejected_calls}`),
    );
    record(row, c);
    drawSpark(row);
  }

  function render(data) {
    const seen = new Set();
    const sorted = [...data.connections].sort((a, b) =>
      (a.scope ?? "").localeCompare(b.scope ?? "") || a.identifier.localeCompare(b.identifier));
    let previous = null;
    for (const c of sorted) {
      const key = keyOf(c);
      seen.add(key);
      let row = rows.get(key);
      if (!row) {
        row = makeRow(c);
        rows.set(key, row);
      }
      update(row, c);
      // Keep the table in order, moving only rows that are out of place.
      const wanted = previous ? previous.nextSibling : body.firstChild;
      if (wanted !== row.tr) body.insertBefore(row.tr, wanted);
      previous = row.tr;
    }
    for (const [key, row] of rows) {
      if (!seen.has(key)) {
        row.tr.remove();
        rows.delete(key);
      }
    }
    document.getElementById("empty").hidden = sorted.length > 0 || !data.running;
    const count = (state) => sorted.filter((c) => c.state === state).length;
    const summary = data.running
      ? `${sorted.length} connection${sorted.length === 1 ? "" : "s"} · ` +
        `${count("open")} open · ${count("half_open")} half-open · ${count("closed")} closed`
      : "this Brama system is stopped";
    const fleet = data.fleet;
    const where = fleet ? `fleet ${fleet.namespace} on ${fleet.backend} · ` : "";
    const down = fleet && !fleet.available
      ? ` · backend unavailable (${fleet.error}): last known state` : "";
    const line = document.getElementById("summary");
    line.textContent = where + summary + down;
    line.classList.toggle("down", Boolean(down));
  }

  async function poll() {
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    try {
      const response = await fetch("api/connections", { cache: "no-store" });
      if (!response.ok) throw new Error(`api/connections answered ${response.status}`);
      const data = await response.json();
      clock = { server: data.now, local: performance.now() };
      render(data);
    } catch (error) {
      document.getElementById("summary").textContent = `cannot reach the server (${error.message})`;
    } finally {
      polling = false;
      if (pollAgain) {
        pollAgain = false;
        poll();
      }
    }
  }

  // Countdowns move between polls, from the server's clock.
  function tick() {
    for (const row of rows.values()) {
      if (row.status.state === "open") row.cells.openFor.textContent = openFor(row.status);
    }
  }

  // -- events --

  const log = document.getElementById("events");

  function logLine(className, when, type, text) {
    const li = el("li", className);
    li.append(el("time", "", when), el("span", "type", type), el("span", "what", text));
    log.prepend(li);
    while (log.childElementCount > MAX_LOG) log.lastElementChild.remove();
  }

  function describe(e) {
    const who = e.scope ? `${e.scope}/${e.connection}` : e.connection;
    const d = e.data || {};
    const parts = [who];
    if (d.previous_state !== undefined && d.new_state !== undefined) {
      parts.push(`${d.previous_state} → ${d.new_state}`);
    }
    if (d.failure_count !== undefined) parts.push(`failures ${d.failure_count}`);
    if (d.reason !== undefined && d.reason !== null) parts.push(`reason ${d.reason}`);
    if (Array.isArray(d.removed)) parts.push(`removed ${d.removed.length}`);
    if (typeof d.origin === "string") parts.push(`by ${d.origin}`);
    return parts.join(" · ");
  }

  function classOf(type) {
    if (type === "circuit_opened") return "opened";
    if (type === "circuit_closed" || type === "circuit_reset") return "closed";
    if (type === "circuit_half_opened") return "half";
    return "";
  }

  function listen() {
    const live = document.getElementById("live");
    const source = new EventSource("events");
    source.onopen = () => {
      live.textContent = "live";
      live.className = "live on";
    };
    source.onerror = () => {
      live.textContent = "reconnecting…";
      live.className = "live off";
    };
    source.onmessage = (message) => {
      const e = JSON.parse(message.data);
      const when = new Date(e.timestamp * 1000).toLocaleTimeString();
      logLine(classOf(e.event), when, e.event, describe(e));
      if (REFRESH_ON.has(e.event) || e.event.startsWith("circuit_")) poll();
    };
    source.addEventListener("dropped", (message) => {
      const info = JSON.parse(message.data);
      logLine("notice", new Date().toLocaleTimeString(), "dropped",
        `${info.dropped} events lost: this page fell behind the stream`);
    });
  }

  poll();
  setInterval(poll, POLL_MS);
  setInterval(tick, 200);
  listen();
})();
