// Compare up to 8 jobs: one metric, every job's curve on the same axes.

import { get } from "./api.js";
import { LineChart } from "./charts.js";
import { FINAL, errorBox, h, isJobId, statusBadge } from "./dom.js";
import { MAX_COMPARE } from "./jobs.js";
import { poll } from "./poll.js";

const REFRESH_MS = 3000;

function chosenIds(params) {
  return (params.get("ids") ?? "").split(",").filter(isJobId).slice(0, MAX_COMPARE);
}

export function renderCompare(view, params) {
  const ids = chosenIds(params);
  const metric = params.get("metric") ?? "val_loss";
  if (ids.length === 0) {
    view.replaceChildren(
      h("h1", {}, "Compare"),
      h("p", { class: "muted" }, `Tick up to ${MAX_COMPARE} jobs in the `, h("a", { href: "#/jobs" }, "jobs table"), " and press “Compare selected”."),
    );
    return () => {};
  }
  const picker = h("select", { "aria-label": "metric" });
  const legend = h("ul", { class: "legend" });
  const message = h("div");
  const chart = new LineChart({ key: "compare", title: metric, yLabel: metric, log: false });
  view.replaceChildren(
    h("div", { class: "toolbar" }, h("h1", {}, "Compare"), h("label", {}, "metric ", picker)),
    message,
    chart.el,
    legend,
  );
  picker.addEventListener("change", () => {
    const next = new URLSearchParams(params);
    next.set("metric", picker.value);
    window.location.hash = `#/compare?${next}`;
  });

  async function refresh() {
    const results = await Promise.all(
      ids.map(async (id) => [await get(`/v1/jobs/${id}`), (await get(`/v1/jobs/${id}/metrics`)).series]),
    );
    const names = new Set(results.flatMap(([, series]) => Object.keys(series)));
    if (names.size && !names.has(metric)) names.add(metric);
    picker.replaceChildren(...[...names].sort().map((n) => h("option", { value: n, selected: n === metric }, n)));
    const lines = results
      .filter(([, series]) => series[metric])
      .map(([job, series]) => ({ key: job.id, label: `${job.name} (${job.id.slice(0, 8)})`, ...series[metric] }));
    chart.update(lines);
    legend.replaceChildren(
      ...results.map(([job]) =>
        h("li", {}, h("a", { href: `#/jobs/${job.id}` }, job.name), " ", statusBadge(job.status), h("code", { class: "muted" }, ` ${job.id.slice(0, 8)}`)),
      ),
    );
    message.replaceChildren();
    return results.some(([job]) => !FINAL.has(job.status));
  }

  const stop = poll(async () => {
    try {
      return await refresh();
    } catch (error) {
      message.replaceChildren(errorBox(error));
      return true;
    }
  }, REFRESH_MS);
  return () => {
    stop();
    chart.destroy();
  };
}
