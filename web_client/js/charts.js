// Small SVG charts for the supervisor desk (line series over time, bars per hour), drawn
// with DOM calls and CSS classes only, so they pass the page's Content-Security-Policy.

const NS = "http://www.w3.org/2000/svg";
const W = 320;
const H = 120;
const PAD = { left: 26, right: 6, top: 8, bottom: 18 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function frame(maxY) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  const bottom = H - PAD.bottom;
  root.append(svg("line", { class: "axis", x1: PAD.left, y1: bottom, x2: W - PAD.right, y2: bottom }));
  root.append(svg("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: bottom }));
  root.append(svg("text", { class: "label", x: 2, y: PAD.top + 8 }, maxY));
  root.append(svg("text", { class: "label", x: 2, y: bottom }, 0));
  return root;
}

function niceMax(values) {
  const max = Math.max(1, ...values);
  if (max <= 5) return max;
  const step = 10 ** Math.floor(Math.log10(max));
  return Math.ceil(max / step) * step;
}

/**
 * series: [{name, points: [[t, y], ...]}]; returns an <svg> with one polyline per series.
 * x runs over the time span of all points; labels show the first and last time.
 */
export function lineChart(series, formatTime) {
  const all = series.flatMap((s) => s.points);
  const maxY = niceMax(all.map((p) => p[1]));
  const root = frame(maxY);
  if (all.length === 0) return root;
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / maxY) * (H - PAD.top - PAD.bottom);
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    root.append(svg("path", { class: `line s${i}`, d }));
    const last = s.points.at(-1);
    root.append(svg("circle", { class: `s${i}`, cx: x(last[0]).toFixed(1), cy: y(last[1]).toFixed(1), r: 2.5 }));
  });
  root.append(svg("text", { class: "label", x: PAD.left, y: H - 4 }, formatTime(t0)));
  root.append(svg("text", { class: "label", x: W - PAD.right - 30, y: H - 4 }, formatTime(t1)));
  return root;
}

/** bars: [{label, value}] drawn left to right; every few labels shown to avoid crowding. */
export function barChart(bars) {
  const maxY = niceMax(bars.map((b) => b.value));
  const root = frame(maxY);
  const n = Math.max(1, bars.length);
  const slot = (W - PAD.left - PAD.right) / n;
  const labelEvery = Math.ceil(n / 8);
  bars.forEach((b, i) => {
    const h = (b.value / maxY) * (H - PAD.top - PAD.bottom);
    const x = PAD.left + i * slot + slot * 0.15;
    const rect = svg("rect", { class: "s0", x: x.toFixed(1), y: (H - PAD.bottom - h).toFixed(1), width: (slot * 0.7).toFixed(1), height: h.toFixed(1) });
    rect.append(svg("title", {}, `${b.label}: ${b.value}`));
    root.append(rect);
    if (i % labelEvery === 0) root.append(svg("text", { class: "label", x: x.toFixed(1), y: H - 4 }, b.label));
  });
  return root;
}
