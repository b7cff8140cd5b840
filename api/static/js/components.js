// The component catalog (GET /v1/components): every optimizer, regularizer, ... with its
// settings (from the JSON schema) and the paper its defaults come from.

import { get } from "./api.js";
import { errorBox, h } from "./dom.js";

function typeOf(schema) {
  if (!schema) return "";
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map(typeOf).join(" | ");
  if (schema.prefixItems) return `[${schema.prefixItems.map(typeOf).join(", ")}]`;
  if (schema.type === "array") return `list[${typeOf(schema.items)}]`;
  const bounds = [
    schema.exclusiveMinimum !== undefined ? `> ${schema.exclusiveMinimum}` : null,
    schema.minimum !== undefined ? `≥ ${schema.minimum}` : null,
    schema.exclusiveMaximum !== undefined ? `< ${schema.exclusiveMaximum}` : null,
    schema.maximum !== undefined ? `≤ ${schema.maximum}` : null,
  ].filter(Boolean);
  return [schema.type ?? "any", ...bounds].join(" ");
}

function settingsTable(schema) {
  const rows = Object.entries(schema.properties ?? {}).filter(([name]) => name !== "name");
  if (rows.length === 0) return h("p", { class: "muted" }, "no settings");
  return h(
    "table",
    { class: "settings" },
    h("thead", {}, h("tr", {}, ["Setting", "Type", "Default", "Description"].map((c) => h("th", {}, c)))),
    h(
      "tbody",
      {},
      rows.map(([name, prop]) =>
        h(
          "tr",
          {},
          h("td", {}, h("code", {}, name), (schema.required ?? []).includes(name) ? h("span", { class: "badge" }, "required") : null),
          h("td", {}, h("code", {}, typeOf(prop))),
          h("td", {}, h("code", {}, prop.default === undefined ? "" : JSON.stringify(prop.default))),
          h("td", {}, prop.description ?? ""),
        ),
      ),
    ),
  );
}

function entryCard(entry) {
  return h(
    "article",
    { class: "card component", dataset: { kind: entry.kind, name: entry.name } },
    h("h3", {}, h("code", {}, entry.name)),
    h("p", {}, entry.summary ?? ""),
    entry.paper ? h("p", { class: "paper" }, "Paper: ", h("cite", {}, entry.paper)) : null,
    entry.tasks ? h("p", { class: "tasks" }, `Data: ${entry.tasks.join(", ")}`) : null,
    h(
      "details",
      {},
      h("summary", {}, "settings"),
      settingsTable(entry.schema ?? {}),
      h("details", {}, h("summary", {}, "JSON schema"), h("pre", { class: "spec" }, JSON.stringify(entry.schema, null, 2))),
    ),
  );
}

export function renderComponents(view, kind) {
  const list = h("div", { class: "components" }, h("p", { class: "muted" }, "loading…"));
  const tabs = h("nav", { class: "tabs" });
  const search = h("input", { type: "search", placeholder: "filter by name or paper", "aria-label": "filter" });
  view.replaceChildren(h("div", { class: "toolbar" }, h("h1", {}, "Components"), search), tabs, list);

  let entries = [];
  function draw() {
    const needle = search.value.trim().toLowerCase();
    const shown = entries.filter((e) =>
      [e.name, e.summary ?? "", e.paper ?? ""].some((t) => t.toLowerCase().includes(needle)),
    );
    list.replaceChildren(...shown.map(entryCard));
    if (shown.length === 0) list.append(h("p", { class: "muted" }, "nothing matches"));
  }
  search.addEventListener("input", draw);

  get("/v1/components")
    .then((catalog) => {
      const kinds = Object.keys(catalog);
      const current = kinds.includes(kind) ? kind : kinds[0];
      tabs.replaceChildren(
        ...kinds.map((k) =>
          h("a", { href: `#/components/${k}`, class: k === current ? "active" : "" }, `${k} (${catalog[k].length})`),
        ),
      );
      entries = catalog[current] ?? [];
      draw();
    })
    .catch((error) => list.replaceChildren(errorBox(error)));
  return () => {};
}
