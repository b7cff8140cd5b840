// Line charts on uPlot (vendored from npm, MIT; see vendor/uplot/LICENSE).
//
// After every draw the figure gets data-points='{"<series key>": <points drawn>, ...}',
// counted from the data uPlot holds, so tests and curious users can check what is on screen.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h } from "./dom.js";

export const PALETTE = [
  "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
];

const HEIGHT = 260;

function isNumber(v) {
  return typeof v === "number" && Number.isFinite(v);
}

// Axis labels: plain decimals, or exponents for tiny or huge values (learning rates).
function tick(v) {
  if (v === null || v === undefined) return ""; // a log axis leaves some ticks unlabelled
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a < 1e-2 || a >= 1e5 ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

/** A chart in a <figure>: title, a log-scale toggle, the plot. Append `el` before `update`. */
export class LineChart {
  constructor({ key, title, yLabel = "", log = false }) {
    this.key = key;
    this.yLabel = yLabel;
    this.log = log;
    this.series = [];
    this.plot = null;
    this.area = h("div", { class: "plot" });
    this.empty = h("p", { class: "muted empty" }, "no points yet");
    const toggle = h("input", {
      type: "checkbox",
      class: "log-toggle",
      checked: log,
      onchange: (event) => this.setLog(event.target.checked),
    });
    this.el = h(
      "figure",
      { class: "chart", dataset: { chart: key, points: "{}" } },
      h("figcaption", {}, h("span", { class: "title" }, title), h("label", { class: "toggle" }, toggle, " log scale")),
      this.empty,
      this.area,
    );
    this.resize = new ResizeObserver(() => {
      if (this.plot) this.plot.setSize({ width: this.width(), height: HEIGHT });
    });
    this.resize.observe(this.area);
  }

  width() {
    return Math.max(300, this.area.clientWidth || this.el.clientWidth || 600);
  }

  /** series: [{key, label, steps, values}]; same keys in the same order redraw in place. */
  update(series) {
    const sameShape =
      this.plot &&
      series.length === this.series.length &&
      series.every((s, i) => s.key === this.series[i].key);
    this.series = series;
    this.empty.hidden = series.some((s) => s.steps.length > 0);
    if (sameShape) this.plot.setData(this.data());
    else this.rebuild();
  }

  setLog(log) {
    this.log = log;
    this.rebuild();
  }

  data() {
    if (this.series.length === 0) return [[]];
    // A log axis cannot show zero or negative values: those points are left out, not faked.
    const keep = (v) => (isNumber(v) && (!this.log || v > 0) ? v : null);
    const tables = this.series.map((s) => [s.steps, s.values.map(keep)]);
    return uPlot.join(tables);
  }

  rebuild() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
    if (this.series.length === 0) return;
    const options = {
      width: this.width(),
      height: HEIGHT,
      scales: { x: { time: false }, y: { distr: this.log ? 3 : 1 } },
      axes: [{ label: "step" }, { label: this.yLabel, size: 60, values: (_u, ticks) => ticks.map(tick) }],
      series: [
        { label: "step" },
        ...this.series.map((s, i) => ({
          label: s.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: true,
          points: { show: s.steps.length < 60 },
        })),
      ],
      cursor: { drag: { x: true, y: false } },
      hooks: { draw: [(u) => this.recordDrawn(u)] },
    };
    this.plot = new uPlot(options, this.data(), this.area);
  }

  recordDrawn(u) {
    const counts = {};
    this.series.forEach((s, i) => {
      counts[s.key] = u.data[i + 1].filter(isNumber).length;
    });
    this.el.dataset.points = JSON.stringify(counts);
    this.el.dataset.drawn = "true";
  }

  destroy() {
    this.resize.disconnect();
    if (this.plot) this.plot.destroy();
  }
}

/** Which chart a metric belongs on: losses together, accuracies together, the rest alone. */
export function chartGroup(name) {
  if (name.endsWith("loss")) return "loss";
  if (name.endsWith("accuracy")) return "accuracy";
  return name;
}
