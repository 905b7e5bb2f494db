// Race view: the field's state from GET /live/sessions/{id}, then live updates from its
// server-sent events (`state`: the whole field, `cars`: rows that changed). No build step.
"use strict";

const sessionId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
const api = `/live/sessions/${encodeURIComponent(sessionId)}`;
const view = { cars: new Map(), info: null, selected: null };

// Number formats: tests/server/live compares what the page shows with the API through the same rules.
const fmt = {
  time: (t) => (t === null || t === undefined ? "–" : t.toFixed(3)),
  pct: (p) => (p === null || p === undefined ? "–" : (100 * p).toFixed(1) + "%"),
  health: (h) => (h === null || h === undefined ? "–" : (100 * h).toFixed(0) + "%"),
  signed: (s) => (s === null || s === undefined ? "–" : (s >= 0 ? "+" : "") + s.toFixed(3)),
};

function raceOrder(a, b) {
  return b.last_lap - a.last_lap || a.last_lap_end_s - b.last_lap_end_s;
}

function cell(row, key, text, cls) {
  const td = document.createElement("td");
  td.dataset.k = key;
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function renderTable() {
  const body = document.querySelector("#field tbody");
  const rows = [...view.cars.values()].sort(raceOrder);
  body.replaceChildren();
  for (const car of rows) {
    const tr = document.createElement("tr");
    tr.dataset.car = car.car;
    if (car.car === view.selected) tr.classList.add("selected");
    const next = car.next_lap;
    const prev = car.previous;
    cell(tr, "position", car.position ?? "–");
    cell(tr, "car", car.car, "car");
    cell(tr, "last_lap", String(car.last_lap));
    cell(tr, "last_lap_time", fmt.time(car.last_lap_time_s), car.pit_in ? "pit" : "");
    cell(tr, "tyre", `${car.compound.slice(0, 1)} ${Math.round(car.tyre_life)}`);
    cell(tr, "p10", fmt.time(next && next.expected_lap_time.p10_s), "num");
    cell(tr, "p50", fmt.time(next && next.expected_lap_time.p50_s), "num");
    cell(tr, "p90", fmt.time(next && next.expected_lap_time.p90_s), "num");
    const judged = prev && prev.inside !== null;
    cell(tr, "actual", judged ? `${fmt.time(prev.actual_s)} ${prev.inside ? "✓" : "✗"}` : "–",
      "num " + (judged ? (prev.inside ? "inside" : "outside") : ""));
    cell(tr, "bad_lap_risk", fmt.pct(next && next.bad_lap_risk),
      "num" + (next && next.bad_lap_risk > 0.5 ? " risk-high" : ""));
    cell(tr, "tire_health", fmt.health(next && next.tire_health), "num");
    cell(tr, "traffic_cost", fmt.signed(next && next.traffic_cost_s), "num");
    if (!next && car.no_prediction) tr.title = car.no_prediction;
    tr.addEventListener("click", () => { view.selected = car.car; render(); });
    body.appendChild(tr);
  }
}

function renderHeader(summary) {
  const info = view.info;
  if (info) {
    document.getElementById("circuit").textContent = info.circuit;
    document.getElementById("session").textContent = info.session_id;
    document.getElementById("race-laps").textContent = ` / ${info.race_laps}`;
  }
  const leader = [...view.cars.values()].sort(raceOrder)[0];
  document.getElementById("lap").textContent = leader ? String(leader.last_lap) : "–";
  if (summary) {
    const hit = summary.hit_rate;
    document.getElementById("hit-share").textContent = hit.share === null ? "–" : fmt.pct(hit.share);
    document.getElementById("hit-count").textContent = `(${hit.inside} of ${hit.judged})`;
    document.getElementById("laps-ingested").textContent = String(summary.laps_ingested);
    document.getElementById("predictions-made").textContent = String(summary.predictions_made);
  }
}

function svgEl(name, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function renderChart() {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  const car = view.cars.get(view.selected);
  document.getElementById("chart-car").textContent = car ? car.car : "–";
  if (!car) return;
  // Points: the corridor predicted after lap L is drawn at lap L + 1, next to that lap's actual time.
  const bands = car.corridors.map((c) => ({ lap: c.lap + 1, ...c.expected_lap_time }));
  const actual = car.laps.filter((p) => p.lap_time_s !== null);
  const judged = new Map(car.corridors.filter((c) => c.inside !== null).map((c) => [c.lap + 1, c.inside]));
  // y range from the corridors' P50 (robust to pit and safety-car laps), widened to hold the bands.
  const centre = bands.map((b) => b.p50_s).sort((a, b) => a - b);
  const mid = centre.length ? centre[Math.floor(centre.length / 2)] : (actual[0] || {}).lap_time_s || 90;
  let lo = mid - 3, hi = mid + 3;
  for (const b of bands) { lo = Math.min(lo, b.p10_s - 0.5); hi = Math.max(hi, b.p90_s + 0.5); }
  lo = Math.max(lo, mid - 8); hi = Math.min(hi, mid + 12);
  const laps = [...bands.map((b) => b.lap), ...actual.map((p) => p.lap)];
  const x0 = Math.min(...laps, 1), x1 = Math.max(...laps, (view.info && view.info.race_laps) || 2);
  const W = 800, H = 420, L = 52, R = 10, T = 10, B = 28;
  const x = (lap) => L + ((lap - x0) / Math.max(1, x1 - x0)) * (W - L - R);
  const y = (t) => T + (1 - (Math.min(hi, Math.max(lo, t)) - lo) / (hi - lo)) * (H - T - B);
  svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  svg.appendChild(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  const step = Math.max(1, Math.round((hi - lo) / 6));
  for (let t = Math.ceil(lo); t <= hi; t += step) {
    svg.appendChild(svgEl("line", { x1: L, y1: y(t), x2: W - R, y2: y(t), class: "axis", "stroke-dasharray": "2 4" }));
    const label = svgEl("text", { x: 4, y: y(t) + 4 }); label.textContent = t.toFixed(0); svg.appendChild(label);
  }
  const lapStep = Math.max(1, Math.ceil((x1 - x0) / 12));
  for (let lap = x0; lap <= x1; lap += lapStep) {
    const label = svgEl("text", { x: x(lap) - 6, y: H - 8 }); label.textContent = String(lap); svg.appendChild(label);
  }
  if (bands.length) {
    const upper = bands.map((b) => `${x(b.lap)},${y(b.p90_s)}`);
    const lower = bands.slice().reverse().map((b) => `${x(b.lap)},${y(b.p10_s)}`);
    svg.appendChild(svgEl("polygon", { points: [...upper, ...lower].join(" "), class: "band" }));
    svg.appendChild(svgEl("polyline", { points: bands.map((b) => `${x(b.lap)},${y(b.p50_s)}`).join(" "), class: "p50" }));
  }
  for (const p of actual) {
    const inside = judged.get(p.lap);
    const dot = svgEl("circle", { cx: x(p.lap), cy: y(p.lap_time_s), r: 4,
      class: inside === undefined ? "axis" : inside ? "in" : "out" });
    dot.dataset.lap = String(p.lap);
    svg.appendChild(dot);
  }
}

function render(summary) {
  if (!view.selected && view.cars.size) view.selected = [...view.cars.values()].sort(raceOrder)[0].car;
  renderTable();
  renderHeader(summary);
  renderChart();
  document.body.dataset.updated = String(Date.now());
}

function applyState(state, replace) {
  view.info = state.session;
  if (replace) view.cars.clear();
  for (const car of state.cars) view.cars.set(car.car, car);
  render(state);
}

function connect() {
  const link = document.getElementById("link");
  const events = new EventSource(`${api}/stream`);
  events.addEventListener("open", () => { link.textContent = "live"; link.className = "link up"; });
  events.addEventListener("error", () => { link.textContent = "reconnecting"; link.className = "link down"; });
  events.addEventListener("state", (e) => applyState(JSON.parse(e.data), true));
  events.addEventListener("cars", (e) => applyState(JSON.parse(e.data), false));
}

connect();
