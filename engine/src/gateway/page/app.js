// Gloam status page: polls /_/status every second and renders tiles, charts and tables.
// Plain browser JavaScript, no dependencies; everything it loads comes from the engine.
"use strict";

(function () {
  const POLL_MS = 1000;
  const WINDOW_MS = 5 * 60 * 1000; // what the charts show
  const COLORS = ["#3b6fd8", "#e0803a", "#2aa876", "#c04b9c", "#8a63d2", "#d1a21f",
                  "#1aa3b8", "#d64545", "#6b7a36", "#7a5230"];

  const $ = (id) => document.getElementById(id);
  const fnBody = document.querySelector("#functions tbody");
  const wkBody = document.querySelector("#workers tbody");
  const charts = {
    rate: $("chart-rate"),
    latency: $("chart-latency"),
    tau: $("chart-tau"),
  };

  // name -> {color, rate: [[t, v]], p50: [...], p99: [...], tau: [...], row}
  const series = new Map();
  let prev = null; // {t, completed: Map(name -> count)}
  let firstSample = null; // time of the first poll, for the charts' time axis
  let polls = 0;

  // ---- formatting -------------------------------------------------------------------------

  const intFmt = new Intl.NumberFormat("en-US");
  function fmtInt(n) { return n == null ? "–" : intFmt.format(n); }
  function fmtRate(v) {
    if (v == null || !isFinite(v)) return "–";
    if (v === 0) return "0";
    if (v < 10) return v.toFixed(1);
    return intFmt.format(Math.round(v));
  }
  function fmtMs(v) {
    if (v == null || !isFinite(v)) return "–";
    if (v === 0) return "0";
    if (v < 0.1) return v.toFixed(3);
    if (v < 10) return v.toFixed(2);
    if (v < 1000) return v.toFixed(1);
    return intFmt.format(Math.round(v));
  }
  function fmtAxis(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (a >= 1000) return (v / 1e3).toFixed(1) + "k";
    if (a >= 10) return v.toFixed(0);
    if (a >= 1) return v.toFixed(1).replace(/\.0$/, "");
    return String(+v.toPrecision(2));
  }

  // ---- data -------------------------------------------------------------------------------

  function seriesFor(name) {
    let s = series.get(name);
    if (!s) {
      s = { color: COLORS[series.size % COLORS.length], rate: [], p50: [], p99: [], tau: [], row: null };
      series.set(name, s);
    }
    return s;
  }

  function push(list, t, v) {
    list.push([t, v]);
    while (list.length && list[0][0] < t - WINDOW_MS) list.shift();
  }

  function update(status, t) {
    if (firstSample == null) firstSample = t;
    const completedNow = new Map();
    let totalRate = null;
    const rates = new Map();
    for (const f of status.functions) {
      completedNow.set(f.name, f.completed);
      let r = null;
      if (prev && prev.completed.has(f.name) && t > prev.t) {
        const d = f.completed - prev.completed.get(f.name);
        if (d >= 0) r = d / ((t - prev.t) / 1000);
      }
      rates.set(f.name, r);
      if (r != null) totalRate = (totalRate || 0) + r;
      const s = seriesFor(f.name);
      push(s.rate, t, r);
      push(s.p50, t, f.p50_ms == null ? null : f.p50_ms);
      push(s.p99, t, f.p99_ms == null ? null : f.p99_ms);
      push(s.tau, t, f.tau);
    }
    prev = { t, completed: completedNow };

    const busy = status.workers.filter((w) => w.busy).length;
    const completed = status.functions.reduce((a, f) => a + f.completed, 0);
    const failed = status.functions.reduce((a, f) => a + f.failed, 0);
    $("tile-functions").textContent = fmtInt(status.functions.length);
    $("tile-workers").textContent = fmtInt(busy) + " / " + fmtInt(status.workers.length);
    $("tile-inflight").textContent = fmtInt(status.calls_in_flight);
    $("tile-rate").textContent = fmtRate(totalRate);
    $("tile-completed").textContent = fmtInt(completed);
    $("tile-failed").textContent = fmtInt(failed);

    renderFunctions(status.functions, rates);
    renderWorkers(status.workers);
    renderEngines(status);
    renderLegend(status.functions);
    drawAll(t);
    polls += 1;
    document.body.dataset.polls = String(polls);
  }

  // ---- tables -----------------------------------------------------------------------------

  const FN_FIELDS = ["workers", "running", "queued", "completed", "failed", "restarts",
                     "completed_per_s", "rate", "service_ms", "tau", "p50_ms", "p99_ms", "isolation"];

  function renderFunctions(functions, rates) {
    const present = new Set(functions.map((f) => f.name));
    for (const [name, s] of series) {
      if (!present.has(name) && s.row) { s.row.remove(); s.row = null; }
    }
    let before = null;
    for (let i = functions.length - 1; i >= 0; i--) {
      const f = functions[i];
      const s = seriesFor(f.name);
      if (!s.row) {
        const tr = document.createElement("tr");
        tr.dataset.function = f.name;
        const name = document.createElement("td");
        name.className = "name";
        const sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = s.color;
        name.append(sw, document.createTextNode(f.name));
        tr.append(name);
        for (const field of FN_FIELDS) {
          const td = document.createElement("td");
          td.dataset.field = field;
          tr.append(td);
        }
        s.row = tr;
      }
      const cells = s.row.children;
      const vals = [
        fmtInt(f.workers) + " (" + fmtInt(f.idle) + ")",
        fmtInt(f.running), fmtInt(f.queued), fmtInt(f.completed), fmtInt(f.failed),
        fmtInt(f.restarts || 0), fmtRate(rates.get(f.name)), fmtRate(f.rate), fmtMs(f.service_ms || null), fmtInt(f.tau),
        fmtMs(f.p50_ms), fmtMs(f.p99_ms), f.isolation || "-",
      ];
      for (let j = 0; j < vals.length; j++) {
        if (cells[j + 1].textContent !== vals[j]) cells[j + 1].textContent = vals[j];
      }
      cells[1 + FN_FIELDS.indexOf("completed")].dataset.value = String(f.completed);
      cells[1 + FN_FIELDS.indexOf("failed")].classList.toggle("failed-nonzero", f.failed > 0);
      // Restarts: the last exit's reason on hover; red while the function cannot start.
      const restarts = cells[1 + FN_FIELDS.indexOf("restarts")];
      restarts.title = f.last_exit || "";
      restarts.classList.toggle("failed-nonzero", Boolean(f.unavailable));
      cells[1 + FN_FIELDS.indexOf("isolation")].title = "limits: " + (f.limits || "none");
      s.row.classList.toggle("unavailable", Boolean(f.unavailable));
      // Keep rows in the engine's order (by id) without rebuilding them.
      if (s.row.nextSibling !== before || s.row.parentNode !== fnBody) fnBody.insertBefore(s.row, before);
      before = s.row;
    }
    if (!functions.length) emptyRow(fnBody, 14, "no functions deployed");
    renderProblems(functions);
  }

  // Functions whose workers cannot start, with the launcher's reason (empty: hidden).
  const problemsBox = $("problems");
  function renderProblems(functions) {
    const lines = functions.filter((f) => f.unavailable).map((f) => f.unavailable);
    const key = lines.join("\u0000");
    if (problemsBox.dataset.key === key) return;
    problemsBox.dataset.key = key;
    problemsBox.replaceChildren(...lines.map((text) => {
      const li = document.createElement("li");
      li.textContent = text + " — calls answer 503 FUNCTION_UNAVAILABLE";
      return li;
    }));
    problemsBox.hidden = lines.length === 0;
  }

  function renderWorkers(workers) {
    const frag = document.createDocumentFragment();
    for (const w of workers) {
      const tr = document.createElement("tr");
      tr.dataset.worker = String(w.id);
      const state = document.createElement("span");
      state.className = "badge " + (w.busy ? "busy" : "idle");
      state.textContent = w.busy ? "busy" : "idle";
      const s = series.get(w.function);
      const name = document.createElement("span");
      if (s) {
        const sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = s.color;
        name.append(sw);
      }
      name.append(document.createTextNode(w.function));
      const cells = [String(w.id), name, String(w.pid), w.language || "–", state];
      cells.forEach((c, i) => {
        const td = document.createElement("td");
        if (i === 1) td.className = "name";
        if (typeof c === "string") td.textContent = c; else td.append(c);
        tr.append(td);
      });
      frag.append(tr);
    }
    wkBody.replaceChildren(frag);
    if (!workers.length) emptyRow(wkBody, 5, "no workers connected");
  }

  // A gateway (`gloam gateway`) lists its engines instead of workers.
  function renderEngines(status) {
    const gateway = status.role === "gateway";
    $("engines-section").hidden = !gateway;
    $("workers-section").hidden = gateway;
    if (!gateway) return;
    const body = document.querySelector("#engines tbody");
    const engines = status.engines || [];
    const frag = document.createDocumentFragment();
    for (const e of engines) {
      const tr = document.createElement("tr");
      tr.dataset.engine = String(e.id);
      const state = document.createElement("span");
      state.className = "badge " + (e.state === "serving" ? "idle" : "busy");
      state.textContent = e.state;
      const fns = (e.functions || []).map((f) => f.name + " " + f.outstanding + "/" + f.capacity).join(", ");
      const cells = [String(e.id), e.node, e.addr, state, fmtInt(e.outstanding), fmtInt(e.calls),
        fmtInt(e.failures), fmtInt(Math.round(e.rtt_us)), fns];
      cells.forEach((c, i) => {
        const td = document.createElement("td");
        if (i === 1 || i === 8) td.className = "name";
        if (typeof c === "string") td.textContent = c; else td.append(c);
        tr.append(td);
      });
      frag.append(tr);
    }
    body.replaceChildren(frag);
    if (!engines.length) emptyRow(body, 9, "no engine has joined");
  }

  function emptyRow(tbody, cols, text) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = document.createElement("td");
    td.colSpan = cols;
    td.textContent = text;
    tr.append(td);
    tbody.replaceChildren(tr);
  }

  let legendKey = "";
  function renderLegend(functions) {
    const key = functions.map((f) => f.name).join("\u0000");
    if (key === legendKey) return;
    legendKey = key;
    const legend = $("legend");
    legend.replaceChildren();
    for (const f of functions) {
      const item = document.createElement("span");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = seriesFor(f.name).color;
      item.append(sw, document.createTextNode(f.name));
      legend.append(item);
    }
  }

  // ---- charts -----------------------------------------------------------------------------

  // A round step (1, 2 or 5 times a power of ten) giving about `n` intervals up to `v`.
  function niceStep(v, n) {
    const raw = v / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  // lines: [{color, dash, points: [[t, v|null]]}]
  function drawChart(canvas, lines, now) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);

    let max = 0;
    for (const l of lines) for (const [, v] of l.points) if (v != null && v > max) max = v;
    const step = max > 0 ? niceStep(max, 4) : 0.25;
    const top = max > 0 ? Math.ceil((max * 1.02) / step) * step : 1;
    // The time axis grows with the history, from 30 s up to the whole window.
    const span = Math.min(WINDOW_MS, Math.max(30_000, now - firstSample));
    const tick = span <= 60_000 ? 10_000 : 60_000;
    const pad = { l: 44, r: 10, t: 8, b: 20 };
    const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
    const x = (t) => pad.l + pw * (1 - (now - t) / span);
    const y = (v) => pad.t + ph * (1 - v / top);

    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    ctx.strokeStyle = "#e8ebf0";
    ctx.fillStyle = "#6b7385";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i * step <= top * 1.0001; i++) {
      const v = i * step;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
      ctx.fillText(fmtAxis(v), pad.l - 6, yy);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let d = 0; d <= span; d += tick) {
      const xx = Math.round(x(now - d)) + 0.5;
      ctx.beginPath(); ctx.moveTo(xx, pad.t); ctx.lineTo(xx, pad.t + ph); ctx.stroke();
      const label = d === 0 ? "now" : tick < 60_000 ? "-" + d / 1000 + " s" : "-" + d / 60_000 + " min";
      ctx.fillText(label, Math.min(xx, w - pad.r - 12), pad.t + ph + 5);
    }

    ctx.save();
    ctx.beginPath(); ctx.rect(pad.l, pad.t - 2, pw, ph + 4); ctx.clip();
    ctx.lineWidth = 1.75;
    ctx.lineJoin = "round";
    for (const l of lines) {
      ctx.strokeStyle = l.color;
      ctx.setLineDash(l.dash || []);
      ctx.beginPath();
      let open = false;
      for (const [t, v] of l.points) {
        if (v == null) { open = false; continue; }
        if (open) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
        open = true;
      }
      ctx.stroke();
    }
    ctx.restore();
    if (!max) {
      ctx.fillStyle = "#9aa3b5";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("no data yet", pad.l + pw / 2, pad.t + ph / 2);
    }
  }

  let lastDraw = 0;
  function drawAll(now) {
    lastDraw = now;
    const rate = [], latency = [], tau = [];
    for (const [, s] of series) {
      if (!s.row) continue; // function gone
      rate.push({ color: s.color, points: s.rate });
      latency.push({ color: s.color, points: s.p50 });
      latency.push({ color: s.color, dash: [5, 4], points: s.p99 });
      tau.push({ color: s.color, points: s.tau });
    }
    drawChart(charts.rate, rate, now);
    drawChart(charts.latency, latency, now);
    drawChart(charts.tau, tau, now);
  }
  window.addEventListener("resize", () => { if (lastDraw) drawAll(lastDraw); });

  // ---- polling ----------------------------------------------------------------------------

  function setConn(state, text) {
    $("conn").dataset.state = state;
    $("conn-text").textContent = text;
  }

  async function poll() {
    const started = performance.now();
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), 3 * POLL_MS);
    try {
      const r = await fetch("/_/status", { cache: "no-store", signal: ctrl.signal });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const status = await r.json();
      update(status, Date.now());
      setConn("ok", "live · " + location.host + " · " + new Date().toLocaleTimeString());
    } catch (e) {
      setConn("error", "engine unreachable (" + (e.name === "AbortError" ? "timeout" : e.message) + ")");
    } finally {
      clearTimeout(timer);
      setTimeout(poll, Math.max(0, POLL_MS - (performance.now() - started)));
    }
  }
  poll();
})();
