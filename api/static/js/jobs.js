// The jobs table: status filter, live refresh, pick up to 8 jobs to compare.

import { get } from "./api.js";
import { FINAL, duration, errorBox, h, number, statusBadge, time } from "./dom.js";
import { poll } from "./poll.js";

const STATUSES = ["", "queued", "running", "succeeded", "failed", "cancelled"];
export const MAX_COMPARE = 8;
const REFRESH_MS = 3000;

function progressBar(progress) {
  const fraction = progress.fraction ?? 0;
  const label = progress.total ? `${progress.step} / ${progress.total}` : String(progress.step);
  return h(
    "div",
    { class: "progress", title: label },
    h("div", { class: "bar", style: `width: ${(fraction * 100).toFixed(1)}%` }),
    h("span", {}, label),
  );
}

export function renderJobs(view, params) {
  const selected = new Set();
  const filter = h(
    "select",
    { id: "status-filter", "aria-label": "status" },
    STATUSES.map((s) => h("option", { value: s, selected: s === (params.get("status") ?? "") }, s || "all statuses")),
  );
  const compare = h("button", { type: "button", disabled: true }, "Compare selected");
  const body = h("tbody");
  const message = h("div");
  const table = h(
    "table",
    { class: "jobs", id: "jobs-table" },
    h(
      "thead",
      {},
      h("tr", {}, ["", "Name", "Status", "Progress", "Loss", "Val. accuracy", "Created", "Duration"].map((c) => h("th", {}, c))),
    ),
    body,
  );
  view.replaceChildren(
    h("div", { class: "toolbar" }, h("h1", {}, "Jobs"), filter, compare),
    message,
    table,
  );

  function updateCompare() {
    compare.disabled = selected.size < 1;
    compare.textContent = `Compare selected (${selected.size}/${MAX_COMPARE})`;
  }
  compare.addEventListener("click", () => {
    window.location.hash = `#/compare?ids=${[...selected].join(",")}`;
  });
  filter.addEventListener("change", () => {
    const status = filter.value;
    window.location.hash = status ? `#/jobs?status=${status}` : "#/jobs";
  });

  function row(job) {
    const box = h("input", {
      type: "checkbox",
      "aria-label": `select ${job.name}`,
      checked: selected.has(job.id),
      disabled: !selected.has(job.id) && selected.size >= MAX_COMPARE,
      onchange: (event) => {
        if (event.target.checked) selected.add(job.id);
        else selected.delete(job.id);
        updateCompare();
        draw();
      },
    });
    const metrics = job.latest_metrics ?? {};
    return h(
      "tr",
      { dataset: { jobId: job.id, status: job.status } },
      h("td", {}, box),
      h("td", {}, h("a", { href: `#/jobs/${job.id}`, class: "job-link" }, job.name)),
      h(
        "td",
        {},
        statusBadge(job.status),
        job.failure?.reason ? h("span", { class: "muted" }, ` ${job.failure.reason}`) : null,
        job.cancel_requested && !FINAL.has(job.status) ? h("span", { class: "muted" }, " cancelling") : null,
      ),
      h("td", {}, progressBar(job.progress)),
      h("td", { class: "num" }, number(metrics.loss)),
      h("td", { class: "num" }, number(metrics.val_accuracy)),
      h("td", {}, time(job.created_at)),
      h("td", {}, duration(job.started_at, job.finished_at)),
    );
  }

  let latest = [];
  function draw() {
    body.replaceChildren(...latest.map(row));
    if (latest.length === 0) body.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "no jobs")));
    table.dataset.loaded = "true";
  }
  async function refresh() {
    const page = await get("/v1/jobs", { status: params.get("status"), limit: 100 });
    latest = page.jobs;
    message.replaceChildren(
      page.next_cursor ? h("p", { class: "muted" }, "the newest 100 jobs; filter by status to see others") : "",
    );
    draw();
  }
  updateCompare();
  return poll(async () => {
    try {
      await refresh();
    } catch (error) {
      message.replaceChildren(errorBox(error));
    }
  }, REFRESH_MS);
}
