// One job: status, curves (live while it runs), spec, events, checkpoints and other artifacts.

import { download, get, post } from "./api.js";
import { LineChart, chartGroup } from "./charts.js";
import { FINAL, bytes, duration, errorBox, h, number, statusBadge, time } from "./dom.js";
import { subscribe } from "./stream.js";

const MIN_GAP_MS = 500; // a busy stream redraws at most twice a second
const TITLES = { loss: "Loss", accuracy: "Accuracy", lr: "Learning rate" };
const ORDER = ["loss", "accuracy", "lr"]; // then the rest, alphabetically

function byImportance(a, b) {
  const rank = (g) => (ORDER.includes(g) ? ORDER.indexOf(g) : ORDER.length);
  return rank(a) - rank(b) || a.localeCompare(b);
}

function summary(job, onCancel) {
  const p = job.progress;
  const facts = [
    ["Status", statusBadge(job.status)],
    ["Attempt", `${job.attempt} of ${job.max_attempts}`],
    ["Progress", p.total ? `${p.step} / ${p.total} steps (${((p.fraction ?? 0) * 100).toFixed(0)}%)` : `${p.step} steps`],
    ["Created", time(job.created_at)],
    ["Ran for", duration(job.started_at, job.finished_at)],
    ["Spec hash", h("code", {}, job.spec_hash.slice(0, 12))],
  ];
  for (const [name, value] of Object.entries(job.latest_metrics ?? {})) facts.push([name, number(value)]);
  return h(
    "div",
    { class: "card" },
    h(
      "div",
      { class: "toolbar" },
      h("h1", {}, job.name),
      FINAL.has(job.status) || job.cancel_requested
        ? null
        : h("button", { type: "button", class: "danger", onclick: onCancel }, "Cancel job"),
    ),
    job.failure ? h("p", { class: "error" }, `${job.failure.reason ?? "failed"}: ${job.failure.message ?? ""}`) : null,
    h("dl", { class: "facts" }, facts.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v)))),
  );
}

function eventsTable(events) {
  return h(
    "table",
    { class: "events" },
    h("thead", {}, h("tr", {}, ["Time", "Attempt", "Kind", "Status", "Detail"].map((c) => h("th", {}, c)))),
    h(
      "tbody",
      {},
      events.map((e) =>
        h(
          "tr",
          {},
          h("td", {}, time(e.created_at)),
          h("td", { class: "num" }, e.attempt),
          h("td", {}, e.kind),
          h("td", {}, e.status ? statusBadge(e.status) : ""),
          h("td", {}, h("code", {}, Object.keys(e.detail).length ? JSON.stringify(e.detail) : "")),
        ),
      ),
    ),
  );
}

/** Checkpoint file name -> step, from the job's checkpoint events. */
function checkpointSteps(events) {
  const steps = new Map();
  for (const e of events) {
    if (e.kind === "checkpoint" && typeof e.detail.name === "string") steps.set(e.detail.name, e.detail.step);
  }
  return steps;
}

function artifactsTable(jobId, artifacts, checkpoints) {
  if (artifacts.length === 0) return h("p", { class: "muted" }, "no artifacts yet");
  return h(
    "table",
    { class: "artifacts" },
    h("thead", {}, h("tr", {}, ["Name", "Size", "Modified", ""].map((c) => h("th", {}, c)))),
    h(
      "tbody",
      {},
      artifacts.map((a) =>
        h(
          "tr",
          {},
          h(
            "td",
            {},
            h("code", {}, a.name),
            checkpoints.has(a.name) ? h("span", { class: "badge" }, `checkpoint, step ${checkpoints.get(a.name)}`) : null,
          ),
          h("td", { class: "num" }, bytes(a.size_bytes)),
          h("td", {}, new Date(a.modified_at * 1000).toLocaleString()),
          h(
            "td",
            {},
            h(
              "button",
              {
                type: "button",
                class: "link",
                onclick: () => download(`/v1/jobs/${jobId}/artifacts/${encodeURIComponent(a.name)}`, a.name),
              },
              "download",
            ),
          ),
        ),
      ),
    ),
  );
}

export function renderJob(view, jobId) {
  const head = h("div", {}, h("p", { class: "muted" }, "loading…"));
  const charts = h("div", { class: "charts", id: "charts" });
  const spec = h("pre", { class: "spec" });
  const submitted = h("pre", { class: "spec" });
  const events = h("div");
  const artifacts = h("div");
  const page = h(
    "div",
    { class: "job", dataset: { jobId } },
    h("p", {}, h("a", { href: "#/jobs" }, "← all jobs")),
    head,
    h("section", {}, h("h2", {}, "Curves"), charts),
    h(
      "section",
      { class: "columns" },
      h("div", {}, h("h2", {}, "Resolved spec"), spec, h("details", {}, h("summary", {}, "as submitted"), submitted)),
      h("div", {}, h("h2", {}, "Checkpoints and artifacts"), artifacts, h("h2", {}, "Events"), events),
    ),
  );
  view.replaceChildren(page);

  const byGroup = new Map();
  let series = {}; // name -> {steps, values}, grown by incremental reads
  let lastStep = null;
  let attempt = null;

  function merge(fresh) {
    for (const [name, s] of Object.entries(fresh)) {
      const known = (series[name] ??= { steps: [], values: [] });
      known.steps.push(...s.steps);
      known.values.push(...s.values);
      if (s.steps.length) lastStep = Math.max(lastStep ?? 0, s.steps[s.steps.length - 1]); // sorted
    }
  }

  function drawCurves() {
    const groups = new Map();
    for (const name of Object.keys(series).sort()) {
      const group = chartGroup(name);
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push({ key: name, label: name, ...series[name] });
    }
    for (const group of [...groups.keys()].sort(byImportance)) {
      const lines = groups.get(group);
      if (!byGroup.has(group)) {
        const chart = new LineChart({ key: group, title: TITLES[group] ?? group, yLabel: group, log: false });
        byGroup.set(group, chart);
        charts.append(chart.el);
      }
      byGroup.get(group).update(lines);
    }
  }

  async function cancel() {
    await post(`/v1/jobs/${jobId}/cancel`);
  }

  async function refresh() {
    let [job, metrics, history, files] = await Promise.all([
      get(`/v1/jobs/${jobId}`),
      // A batch of points and the progress are written in one transaction, so every step
      // up to lastStep is complete: asking for later steps only never misses a point.
      get(`/v1/jobs/${jobId}/metrics`, { after_step: lastStep }),
      get(`/v1/jobs/${jobId}/events/history`),
      get(`/v1/jobs/${jobId}/artifacts`),
    ]);
    if (attempt !== null && job.attempt !== attempt) {
      // A retry resumes from a checkpoint and rewrites later steps: read every point again.
      series = {};
      lastStep = null;
      metrics = await get(`/v1/jobs/${jobId}/metrics`);
    }
    attempt = job.attempt;
    page.dataset.status = job.status;
    head.replaceChildren(summary(job, () => cancel().catch((e) => head.append(errorBox(e)))));
    spec.textContent = JSON.stringify(job.resolved_spec, null, 2);
    submitted.textContent = JSON.stringify(job.spec, null, 2);
    merge(metrics.series);
    drawCurves();
    events.replaceChildren(eventsTable(history));
    artifacts.replaceChildren(artifactsTable(jobId, files, checkpointSteps(history)));
    page.dataset.loaded = "true";
  }

  // Redraw on every streamed event, coalesced: one refresh at a time, one more queued.
  let running = false;
  let pending = false;
  let stopped = false;
  async function update() {
    if (running) {
      pending = true;
      return;
    }
    running = true;
    try {
      do {
        pending = false;
        const started = Date.now();
        try {
          await refresh();
        } catch (error) {
          head.replaceChildren(errorBox(error));
        }
        const wait = MIN_GAP_MS - (Date.now() - started);
        if (pending && wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      } while (pending && !stopped);
    } finally {
      running = false;
    }
  }

  let stopStream = () => {};
  update().then(() => {
    if (stopped || FINAL.has(page.dataset.status) || !page.dataset.status) return;
    page.dataset.live = "stream";
    let ended = false; // the job's final status came: the server ends the stream after it
    stopStream = subscribe(`/v1/jobs/${jobId}/events`, {
      onEvent: ({ event, data }) => {
        ended ||= event === "status" && FINAL.has(data.status);
        update();
      },
      onEnd: async () => !stopped && !ended, // cut short (a proxy): reconnect
      onError: (error) => head.replaceChildren(errorBox(error)),
    });
  });
  return () => {
    stopped = true;
    stopStream();
    for (const chart of byGroup.values()) chart.destroy();
  };
}
