// metalab ui: a small dashboard over the JSON API under api/ (see docs/ui.md).
//
// Plain JavaScript, no build step. Pages are chosen by the URL's hash:
//   #/                       the experiments
//   #/experiments/ID?...     the runs of one experiment (where, sort, offset, limit, columns)
//   #/runs/RUN_ID            one run
// Every text from the server goes into the page as text (textContent), never as HTML.
"use strict";

const main = document.getElementById("main");
const info = { write: false };
let renderCount = 0; // a page whose data arrives after the user moved on is dropped

// --- building the page ------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttributes(el, attrs);
  appendAll(el, children);
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttributes(el, attrs);
  appendAll(el, children);
  return el;
}

function setAttributes(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.setAttribute("class", value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function show(...nodes) {
  main.replaceChildren(...nodes.flat(Infinity).filter(Boolean));
}

function crumbs(...items) {
  document.getElementById("crumbs").replaceChildren(
    ...items.map(([text, href]) => (href ? h("a", { href }, text) : h("span", {}, text))),
  );
}

// --- talking to the server --------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `the server answered ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(path, options) {
  const response = await fetch(path, options);
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = { error: text };
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

function errorBox(error) {
  return h("div", { class: "error", role: "alert" }, error.message || String(error));
}

const enc = encodeURIComponent;

// --- showing values ---------------------------------------------------------------

function fmt(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    return String(Number(value.toPrecision(6)));
  }
  if (typeof value === "boolean") return value ? "true" : "false";
  if (Array.isArray(value)) return value.map(fmt).join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function fmtTime(text) {
  return text ? text.replace("T", " ").slice(0, 19) : "";
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let size = n;
  let unit = "B";
  for (const next of units) {
    if (size < 1024) break;
    size /= 1024;
    unit = next;
  }
  return `${size.toFixed(1)} ${unit}`;
}

function cell(column, value) {
  if (column === "started_at" || column === "finished_at") return h("td", {}, fmtTime(value));
  if (column === "duration_ms") return h("td", { class: "num" }, fmtDuration(value));
  if (column === "status") return h("td", { class: `status status-${value}` }, value);
  if (column === "error") return h("td", { class: "error-type" }, fmt(value));
  const numeric = typeof value === "number";
  return h("td", { class: numeric ? "num" : null, title: numeric ? String(value) : null }, fmt(value));
}

function headerRow(names) {
  return h("tr", {}, names.map((name) => h("th", {}, name)));
}

function keyValues(mapping) {
  const keys = Object.keys(mapping || {}).sort();
  if (!keys.length) return h("p", { class: "muted" }, "none");
  return h(
    "table",
    { class: "kv" },
    keys.map((key) =>
      h("tr", {}, h("td", { class: "mono" }, key), h("td", { class: "mono" }, fmt(mapping[key]))),
    ),
  );
}

// --- routing ----------------------------------------------------------------------

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  const count = ++renderCount;
  const current = () => count === renderCount;
  crumbs(["experiments", "#/"]); // until the page names where it is
  let page;
  if (parts.length === 0) page = experimentsPage(current);
  else if (parts[0] === "experiments" && parts.length === 2) page = runsPage(current, parts[1], params);
  else if (parts[0] === "runs" && parts.length === 2) page = runPage(current, parts[1]);
  else page = Promise.resolve(show(h("h1", {}, "No such page"), h("a", { href: "#/" }, "Experiments")));
  page.catch((error) => current() && show(errorBox(error)));
}

async function start() {
  try {
    const about = await api("api/info");
    info.write = about.write;
    document.getElementById("store").textContent =
      `${about.store} · ${about.write ? "read-write" : "read-only"} · metalab ${about.version}`;
  } catch (error) {
    show(errorBox(error));
    return;
  }
  window.addEventListener("hashchange", route);
  route();
}

// --- the experiments page ---------------------------------------------------------

const STATUSES = ["success", "failed", "running", "cancelled"];

async function experimentsPage(current) {
  crumbs(["experiments"]);
  const data = await api("api/experiments");
  if (!current()) return;
  const rows = data.experiments.map((e) => {
    const link = h("a", { href: `#/experiments/${enc(e.experiment_id)}` }, e.experiment_id);
    if (e.error) {
      return h("tr", {}, h("td", {}, link), h("td", { colspan: 7, class: "error-type" }, e.error));
    }
    return h(
      "tr",
      {},
      h("td", {}, link, e.description ? h("div", { class: "muted" }, e.description) : null),
      h("td", { class: "num" }, e.runs),
      STATUSES.map((status) =>
        h("td", { class: e.counts[status] ? `num status-${status}` : "num muted" }, e.counts[status] || 0),
      ),
      h("td", {}, fmtTime(e.last_activity)),
      h("td", {}, e.tags.map((tag) => h("span", { class: "chip" }, tag))),
    );
  });
  show(
    h(
      "div",
      { class: "toolbar" },
      h("h1", { class: "grow" }, "Experiments"),
      h("button", { onclick: route }, "Refresh"),
    ),
    rows.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            {},
            headerRow(["experiment", "runs", ...STATUSES, "last activity", "tags"]),
            rows,
          ),
        )
      : h("p", { class: "muted" }, "This store holds no experiment yet."),
  );
}

// --- the runs table ---------------------------------------------------------------

function runsHash(experimentId, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(key, value);
  }
  const text = query.toString();
  return `#/experiments/${enc(experimentId)}${text ? `?${text}` : ""}`;
}

async function runsPage(current, experimentId, params) {
  crumbs(["experiments", "#/"], [experimentId]);
  const view = {
    where: params.get("where") || "",
    sort: params.get("sort") || "",
    columns: params.get("columns") || "",
    offset: Number(params.get("offset") || 0),
    limit: Number(params.get("limit") || 50),
  };
  const go = (changes) => {
    location.hash = runsHash(experimentId, { ...view, ...changes });
  };
  const query = new URLSearchParams();
  for (const key of ["where", "sort", "columns"]) if (view[key]) query.set(key, view[key]);
  const base = `api/experiments/${enc(experimentId)}`;
  const csvHref = `${base}/runs.csv?${query}`;
  query.set("offset", view.offset);
  query.set("limit", view.limit);

  const whereBox = h("input", {
    type: "text",
    class: "where",
    value: view.where,
    placeholder: 'filter, e.g. params.lr < 0.01 and status == "success"',
    "aria-label": "filter",
  });
  const form = h(
    "form",
    {
      class: "toolbar",
      onsubmit: (event) => {
        event.preventDefault();
        go({ where: whereBox.value.trim(), offset: 0 });
      },
    },
    h("div", { class: "grow" }, whereBox),
    h("button", { type: "submit" }, "Filter"),
    h("button", { type: "button", onclick: () => go({ where: "", offset: 0 }) }, "Clear"),
  );
  const [page, catalog] = await Promise.allSettled([
    api(`${base}/runs?${query}`),
    api(`${base}/fields`),
  ]);
  if (!current()) return;
  if (page.status === "rejected") {
    const error = page.reason;
    const parts = [h("h1", {}, experimentId), form, errorBox(error)];
    if (error.body && error.body.param === "where" && error.body.column) {
      parts.push(h("div", { class: "caret" }, `${view.where}\n${" ".repeat(error.body.column - 1)}^`));
      show(parts);
      whereBox.focus();
      whereBox.setSelectionRange(error.body.column - 1, view.where.length);
    } else {
      show(parts);
    }
    return;
  }
  const data = page.value;
  const picker =
    catalog.status === "fulfilled"
      ? columnPicker(catalog.value, data.columns, go)
      : errorBox(catalog.reason);
  const toolbar = h(
    "div",
    { class: "toolbar" },
    picker,
    h("a", { class: "button", href: csvHref, download: `${experimentId}-runs.csv` }, "Export CSV"),
    h("button", { onclick: route }, "Refresh"),
    h("span", { class: "grow" }),
    pager(data, go),
  );
  show(h("h1", {}, experimentId), form, toolbar, runsTable(data, go));
}

function sortState(sort, key) {
  if (sort.length !== 1) return null;
  if (sort[0] === key || sort[0] === `${key} asc`) return "asc";
  if (sort[0] === `-${key}` || sort[0] === `${key} desc`) return "desc";
  return null;
}

function runsTable(data, go) {
  const header = h(
    "tr",
    {},
    h("th", {}, "run"),
    data.columns.map((column) => {
      if (!column.sortable) return h("th", {}, column.name);
      const state = sortState(data.sort, column.key);
      const next = state === "desc" ? column.key : `-${column.key}`;
      return h(
        "th",
        {
          class: "sortable",
          title: `sort by ${column.name}`,
          "aria-sort": state === "asc" ? "ascending" : state === "desc" ? "descending" : null,
          onclick: () => go({ sort: next, offset: 0 }),
        },
        column.name,
        state === "asc" ? " ▲" : state === "desc" ? " ▼" : "",
      );
    }),
  );
  const rows = data.rows.map((row) =>
    h(
      "tr",
      {},
      h(
        "td",
        { class: "mono" },
        h("a", { href: `#/runs/${enc(row.run_id)}`, title: row.run_id }, row.short_id),
      ),
      data.columns.map((column, i) => cell(column.key, row.values[i])),
    ),
  );
  if (!rows.length) return h("p", { class: "muted" }, "No run matches.");
  return h("div", { class: "table-wrap" }, h("table", {}, header, rows));
}

function pager(data, go) {
  const first = data.total ? data.offset + 1 : 0;
  const last = data.offset + data.rows.length;
  const size = h(
    "select",
    { "aria-label": "rows per page", onchange: (event) => go({ limit: event.target.value, offset: 0 }) },
    [25, 50, 100, 200, 500].map((n) =>
      h("option", { value: n, selected: n === data.limit }, `${n} rows`),
    ),
  );
  return h(
    "span",
    { class: "toolbar" },
    h(
      "button",
      { disabled: data.offset === 0, onclick: () => go({ offset: Math.max(0, data.offset - data.limit) }) },
      "‹ Prev",
    ),
    h("span", {}, `${first}–${last} of ${data.total}`),
    h(
      "button",
      { disabled: last >= data.total, onclick: () => go({ offset: data.offset + data.limit }) },
      "Next ›",
    ),
    size,
  );
}

function columnPicker(catalog, shown, go) {
  const chosen = new Set(shown.map((c) => c.key));
  const boxes = [];
  const option = (key, label) => {
    const box = h("input", { type: "checkbox", value: key, checked: chosen.has(key) });
    boxes.push(box);
    return h("label", {}, box, " ", label);
  };
  const groups = { params: [], metrics: [], derived: [] };
  for (const field of catalog.fields) {
    const group = groups[field.field.split(".")[0]];
    if (group) group.push(field);
  }
  const apply = () => {
    const keys = boxes.filter((box) => box.checked).map((box) => box.value);
    go({ columns: keys.join(","), offset: 0 });
  };
  return h(
    "details",
    { class: "columns" },
    h("summary", { class: "button" }, "Columns"),
    h(
      "div",
      {},
      h("h3", {}, "run"),
      catalog.record_fields.map((name) => option(name, name)),
      Object.entries(groups).map(([name, fields]) =>
        fields.length
          ? [
              h("h3", {}, name),
              fields.map((f) =>
                option(f.key, [
                  f.field.slice(name.length + 1),
                  " ",
                  h("span", { class: "muted" }, `${f.types.join("|")} · ${f.count} runs`),
                ]),
              ),
            ]
          : null,
      ),
      h(
        "div",
        { class: "toolbar" },
        h("button", { onclick: apply }, "Apply"),
        h("button", { onclick: () => go({ columns: "", offset: 0 }) }, "Default"),
      ),
    ),
  );
}

// --- the run page -----------------------------------------------------------------

async function runPage(current, runId) {
  const base = `api/runs/${enc(runId)}`;
  const run = await api(base);
  if (!current()) return;
  crumbs(
    ["experiments", "#/"],
    [run.experiment_id, `#/experiments/${enc(run.experiment_id)}`],
    [run.short_id],
  );
  const summary = {
    run_id: run.run_id,
    experiment: run.experiment_id,
    status: run.status,
    started: fmtTime(run.started_at),
    finished: fmtTime(run.finished_at),
    duration: fmtDuration(run.duration_ms),
  };
  const charts = h("div", { class: "charts" });
  show(
    h(
      "div",
      { class: "toolbar" },
      h(
        "h1",
        { class: "grow mono" },
        run.short_id,
        " ",
        h("span", { class: `status status-${run.status}` }, run.status),
      ),
      h("button", { onclick: route }, "Refresh"),
    ),
    h(
      "div",
      { class: "grid" },
      h("div", {}, h("h2", {}, "Run"), keyValues(summary)),
      h("div", {}, tagsAndNotes(base, run)),
    ),
    run.error ? errorSection(run.error) : null,
    h(
      "div",
      { class: "grid" },
      ["params", "metrics", "derived"].map((name) => h("div", {}, h("h2", {}, name), keyValues(run[name]))),
    ),
    Object.keys(run.series).length ? [h("h2", {}, "Series"), charts] : null,
    h("h2", {}, "Artifacts"),
    artifactsSection(base, run.artifacts),
    h("h2", {}, "Logs"),
    run.logs.length ? run.logs.map((name) => logSection(base, name)) : h("p", { class: "muted" }, "none"),
    run.warnings.length ? [h("h2", {}, "Warnings"), h("pre", {}, run.warnings.join("\n"))] : null,
    h("details", {}, h("summary", {}, "Provenance"), keyValues(run.provenance)),
  );
  if (Object.keys(run.series).length) {
    try {
      const data = await api(`${base}/series`);
      if (current()) charts.replaceChildren(...data.series.map(lineChart));
    } catch (error) {
      charts.replaceChildren(errorBox(error));
    }
  }
}

function errorSection(error) {
  return [
    h("h2", {}, "Error"),
    h("div", { class: "error" }, h("strong", {}, error.type), ": ", error.message),
    error.traceback
      ? h("details", { open: true }, h("summary", {}, "Traceback"), h("pre", {}, error.traceback))
      : null,
  ];
}

function tagsAndNotes(base, run) {
  const box = h("div", {});
  const render = () => {
    const chips = run.tags.map((tag) =>
      h(
        "span",
        { class: "chip" },
        tag,
        info.write
          ? h("button", { title: `remove ${tag}`, onclick: () => editTags({ remove: [tag] }) }, "×")
          : null,
      ),
    );
    const parts = [h("h2", {}, "Tags"), chips.length ? chips : h("span", { class: "muted" }, "none")];
    if (info.write) {
      const input = h("input", { type: "text", placeholder: "new tag", "aria-label": "new tag" });
      parts.push(
        h(
          "form",
          {
            class: "toolbar",
            onsubmit: (event) => {
              event.preventDefault();
              if (input.value.trim()) editTags({ add: [input.value.trim()] });
            },
          },
          input,
          h("button", { type: "submit" }, "Add tag"),
        ),
      );
    }
    parts.push(h("h2", {}, "Notes"));
    if (info.write) {
      const text = h("textarea", { "aria-label": "notes" });
      text.value = run.notes || "";
      parts.push(
        text,
        h(
          "div",
          { class: "toolbar" },
          h("button", { onclick: () => editNotes(text.value || null) }, "Save notes"),
          h("button", { onclick: () => editNotes(null) }, "Clear"),
        ),
      );
    } else {
      parts.push(run.notes ? h("p", {}, run.notes) : h("p", { class: "muted" }, "none"));
    }
    box.replaceChildren(...parts.flat());
  };
  const editTags = (change) =>
    post(`${base}/tags`, change)
      .then((answer) => {
        run.tags = answer.tags;
        render();
      })
      .catch((error) => box.append(errorBox(error)));
  const editNotes = (notes) =>
    post(`${base}/notes`, { notes })
      .then((answer) => {
        run.notes = answer.notes;
        render();
      })
      .catch((error) => box.append(errorBox(error)));
  render();
  return box;
}

const PREVIEW_BYTES = 1 << 20;

function artifactsSection(base, artifacts) {
  if (!artifacts.length) return h("p", { class: "muted" }, "none");
  const preview = h("div", { class: "preview" });
  const showPreview = async (event, artifact, href) => {
    event.preventDefault();
    if (artifact.media_type.startsWith("image/")) {
      preview.replaceChildren(h("h3", {}, artifact.name), h("img", { src: href, alt: artifact.name }));
      return;
    }
    if (artifact.size_bytes > PREVIEW_BYTES) {
      const size = fmtBytes(artifact.size_bytes);
      const note = `${artifact.name} is ${size}: download it to read it.`;
      preview.replaceChildren(h("p", { class: "muted" }, note));
      return;
    }
    try {
      const response = await fetch(href);
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
      let text = await response.text();
      if (artifact.media_type === "application/json") {
        try {
          text = JSON.stringify(JSON.parse(text), null, 2);
        } catch (_) {
          // not valid JSON after all: shown as it is
        }
      }
      preview.replaceChildren(h("h3", {}, artifact.name), h("pre", {}, text));
    } catch (error) {
      preview.replaceChildren(errorBox(error));
    }
  };
  const rows = artifacts.map((artifact) => {
    const href = `${base}/artifacts/${enc(artifact.name)}`;
    return h(
      "tr",
      {},
      h("td", { class: "mono" }, artifact.name),
      h("td", {}, artifact.kind),
      h("td", {}, artifact.format),
      h("td", { class: "num" }, fmtBytes(artifact.size_bytes)),
      h("td", { class: "mono", title: artifact.sha256 }, artifact.sha256.slice(0, 12)),
      h(
        "td",
        {},
        h("a", { href: `${href}?download=1`, download: "" }, "download"),
        artifact.inline
          ? [" · ", h("a", { href: "#", onclick: (event) => showPreview(event, artifact, href) }, "preview")]
          : null,
      ),
    );
  });
  return [
    h(
      "div",
      { class: "table-wrap" },
      h("table", {}, headerRow(["name", "kind", "format", "size", "sha256", ""]), rows),
    ),
    preview,
  ];
}

function logSection(base, name) {
  let tail = 200;
  const text = h("pre", {}, "…");
  const note = h("span", { class: "muted" });
  const more = h("button", { onclick: () => { tail *= 4; load(); } }, "More lines");
  const load = async () => {
    try {
      const log = await api(`${base}/logs/${enc(name)}?tail=${tail}`);
      text.textContent = log.text || "(empty)";
      note.textContent = `last ${Math.min(log.tail, log.lines)} of ${log.lines} lines`;
      more.disabled = log.tail >= log.lines;
      text.scrollTop = text.scrollHeight;
    } catch (error) {
      text.replaceChildren(errorBox(error));
    }
  };
  load();
  const reload = h("button", { onclick: load }, "Reload");
  const title = h("strong", { class: "mono" }, name);
  return h("section", {}, h("div", { class: "toolbar" }, title, note, more, reload), text);
}

// --- charts -----------------------------------------------------------------------

const CHART = { width: 480, height: 220, left: 64, right: 12, top: 10, bottom: 26 };

function lineChart(series) {
  const points = series.steps.map((step, i) => [step, series.values[i]]).filter(([, v]) => v !== null);
  const drawn = series.downsampled ? `, ${series.steps.length} drawn` : "";
  const caption = h(
    "figcaption",
    {},
    series.name,
    " ",
    h("span", { class: "muted" }, `${series.points} points${drawn}`),
  );
  if (!points.length) {
    return h("figure", { class: "chart" }, caption, h("p", { class: "muted" }, "no numeric points"));
  }
  const xs = points.map(([x]) => x);
  const ys = points.map(([, y]) => y);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.1, y1 + Math.abs(y1 || 1) * 0.1];
  const { width, height, left, right, top, bottom } = CHART;
  const px = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - right);
  const py = (y) => height - bottom - ((y - y0) / (y1 - y0)) * (height - top - bottom);
  // A gap (a point that is no number) breaks the line.
  let path = "";
  let pen = "M";
  series.steps.forEach((step, i) => {
    const value = series.values[i];
    if (value === null) {
      pen = "M";
      return;
    }
    path += `${pen}${px(step).toFixed(1)},${py(value).toFixed(1)}`;
    pen = "L";
  });
  const label = (x, y, text, anchor) => s("text", { x, y, "text-anchor": anchor }, text);
  const svgEl = s(
    "svg",
    {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `${series.name} by step`,
    },
    s("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }),
    s("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }),
    label(left - 4, top + 8, fmt(y1), "end"),
    label(left - 4, height - bottom, fmt(y0), "end"),
    label(left, height - 8, fmt(x0), "start"),
    label(width - right, height - 8, `step ${fmt(x1)}`, "end"),
    s("path", { class: "curve", d: path }),
  );
  return h("figure", { class: "chart" }, caption, svgEl);
}

start();
