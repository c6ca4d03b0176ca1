// metalab ui: a small dashboard over the JSON API under api/ (see docs/ui.md).
//
// Plain JavaScript, no build step. Pages are chosen by the URL's hash:
//   #/                       the experiments
//   #/experiments/ID?...     the runs of one experiment (where, sort, offset, limit, columns)
//   #/runs/RUN_ID            one run
//   #/compare?ids=A,B,...    2 to 10 runs side by side
//   #/plots/ID?kind=...      the plot builder over one experiment
// Pages that show running runs poll their data (with If-None-Match, so an unchanged
// answer is a bodiless 304) every 2 s while the tab is visible, every 10 s otherwise
// idle, and not at all while it is hidden.
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

// The JSON body of an answer (a text one as {error}); an ApiError unless it is ok.
async function bodyOf(response) {
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

async function api(path, options) {
  return bodyOf(await fetch(path, options));
}

// A GET that sends the ETag of the data shown: null when it has not changed (304).
async function apiIfChanged(path, tag) {
  const headers = tag ? { "If-None-Match": tag } : {};
  const response = await fetch(path, { cache: "no-store", headers });
  if (response.status === 304) return null;
  return { body: await bodyOf(response), tag: response.headers.get("ETag") };
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
  stopWatching();
  crumbs(["experiments", "#/"]); // until the page names where it is
  let page;
  if (parts.length === 0) page = experimentsPage(current);
  else if (parts[0] === "experiments" && parts.length === 2) page = runsPage(current, parts[1], params);
  else if (parts[0] === "runs" && parts.length === 2) page = runPage(current, parts[1]);
  else if (parts[0] === "compare" && parts.length === 1) page = comparePage(current, params);
  else if (parts[0] === "plots" && parts.length === 2) page = plotsPage(current, parts[1], params);
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

// --- live pages -------------------------------------------------------------------

const FAST_POLL = 2000; // while runs are going or the data just changed
const SLOW_POLL = 10000; // otherwise, to notice a new sweep
const live = { timer: null, tick: null, busy: false };

// Poll refresh() while the page is current: it updates the page in place and answers
// whether anything is going on (running runs, data that changed).
function watch(current, refresh) {
  stopWatching();
  const tick = async () => {
    live.timer = null;
    if (!current() || live.busy) return;
    if (document.hidden) return; // resumed when the tab is shown again
    live.busy = true;
    let active = true;
    try {
      active = await refresh();
    } catch (_) {
      active = false; // the page keeps what it shows; the next poll tries again
    } finally {
      live.busy = false;
    }
    if (current() && live.tick === tick) live.timer = setTimeout(tick, active ? FAST_POLL : SLOW_POLL);
  };
  live.tick = tick;
  live.timer = setTimeout(tick, FAST_POLL);
}

function stopWatching() {
  clearTimeout(live.timer);
  live.timer = null;
  live.tick = null;
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && live.tick && live.timer === null && !live.busy) live.tick();
});

// --- the experiments page ---------------------------------------------------------

const STATUSES = ["success", "failed", "running", "cancelled"];

async function experimentsPage(current) {
  crumbs(["experiments"]);
  const first = await apiIfChanged("api/experiments", null);
  if (!current()) return;
  let tag = first.tag;
  const holder = h("div", {}, experimentsTable(first.body));
  show(
    h(
      "div",
      { class: "toolbar" },
      h("h1", { class: "grow" }, "Experiments"),
      h("button", { onclick: route }, "Refresh"),
    ),
    holder,
  );
  const running = (data) => data.experiments.some((e) => e.counts && e.counts.running);
  let shown = first.body;
  watch(current, async () => {
    const next = await apiIfChanged("api/experiments", tag);
    if (!next) return running(shown);
    tag = next.tag;
    shown = next.body;
    holder.replaceChildren(experimentsTable(shown));
    return true;
  });
}

function experimentsTable(data) {
  const rows = data.experiments.map((e) => {
    const link = h("a", { href: `#/experiments/${enc(e.experiment_id)}` }, e.experiment_id);
    if (e.error) {
      return h("tr", {}, h("td", {}, link), h("td", { colspan: 8, class: "error-type" }, e.error));
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
      h("td", {}, h("a", { href: `#/plots/${enc(e.experiment_id)}` }, "plots")),
    );
  });
  if (!rows.length) return h("p", { class: "muted" }, "This store holds no experiment yet.");
  return h(
    "div",
    { class: "table-wrap" },
    h("table", {}, headerRow(["experiment", "runs", ...STATUSES, "last activity", "tags", ""]), rows),
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
  const runsUrl = `${base}/runs?${query}`;
  const [page, catalog] = await Promise.allSettled([apiIfChanged(runsUrl, null), api(`${base}/fields`)]);
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
  let data = page.value.body;
  let tag = page.value.tag;
  const picker =
    catalog.status === "fulfilled"
      ? columnPicker(catalog.value, data.columns, go)
      : errorBox(catalog.reason);
  if (selection.experiment !== experimentId) {
    selection.experiment = experimentId;
    selection.ids = new Set();
  }
  const compare = h("button", { onclick: () => openCompare() }, "Compare");
  const chosen = h("span", { class: "muted" });
  const selected = () => {
    const n = selection.ids.size;
    compare.disabled = n < MIN_COMPARE || n > MAX_COMPARE;
    compare.title = `select ${MIN_COMPARE} to ${MAX_COMPARE} runs to compare them`;
    chosen.textContent = n ? `${n} selected` : "";
  };
  const openCompare = () => {
    location.hash = `#/compare?ids=${[...selection.ids].map(enc).join(",")}`;
  };
  const plotsHref = `#/plots/${enc(experimentId)}${view.where ? `?where=${enc(view.where)}` : ""}`;
  const pagerBox = h("span", {}, pager(data, go));
  const tableBox = h("div", {}, runsTable(data, go, selected));
  const toolbar = h(
    "div",
    { class: "toolbar" },
    picker,
    h("a", { class: "button", href: csvHref, download: `${experimentId}-runs.csv` }, "Export CSV"),
    h("a", { class: "button", href: plotsHref }, "Plots"),
    compare,
    chosen,
    h("button", { onclick: route }, "Refresh"),
    h("span", { class: "grow" }),
    pagerBox,
  );
  selected();
  show(h("h1", {}, experimentId), form, toolbar, tableBox);
  // On an index a page may bring a lower bound of its total: the exact count comes after.
  let counted = null;
  const withCount = (page) =>
    page.total_exact === false && counted !== null ? { ...page, total: counted, total_exact: true } : page;
  if (data.total_exact === false) {
    const countQuery = new URLSearchParams(view.where ? { where: view.where } : {});
    api(`${base}/runs/count?${countQuery}`).then(
      (found) => {
        if (!current()) return;
        counted = found.total;
        pagerBox.replaceChildren(pager(withCount(data), go));
      },
      () => {},
    );
  }
  const running = () => data.rows.some((row) => row.status === "running");
  watch(current, async () => {
    const next = await apiIfChanged(runsUrl, tag);
    if (!next) return running();
    ({ body: data, tag } = next);
    tableBox.replaceChildren(runsTable(data, go, selected));
    pagerBox.replaceChildren(pager(withCount(data), go));
    return true;
  });
}

const MIN_COMPARE = 2;
const MAX_COMPARE = 10;
const selection = { experiment: null, ids: new Set() }; // kept across pages of one experiment

function sortState(sort, key) {
  if (sort.length !== 1) return null;
  if (sort[0] === key || sort[0] === `${key} asc`) return "asc";
  if (sort[0] === `-${key}` || sort[0] === `${key} desc`) return "desc";
  return null;
}

function runsTable(data, go, selected) {
  const header = h(
    "tr",
    {},
    h("th", { class: "pick" }, ""),
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
      { class: selection.ids.has(row.run_id) ? "picked" : null },
      h(
        "td",
        { class: "pick" },
        h("input", {
          type: "checkbox",
          "aria-label": `select ${row.short_id}`,
          checked: selection.ids.has(row.run_id),
          onchange: (event) => {
            if (event.target.checked) selection.ids.add(row.run_id);
            else selection.ids.delete(row.run_id);
            event.target.closest("tr").classList.toggle("picked", event.target.checked);
            selected();
          },
        }),
      ),
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
    h("span", {}, `${first}–${last} of ${data.total_exact === false ? "≥ " : ""}${data.total}`),
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
  const first = await apiIfChanged(base, null);
  if (!current()) return;
  let run = first.body;
  let tag = first.tag;
  crumbs(
    ["experiments", "#/"],
    [run.experiment_id, `#/experiments/${enc(run.experiment_id)}`],
    [run.short_id],
  );
  // The parts a poll redraws when the run changes; tags, notes and logs keep their state.
  const title = h("h1", { class: "grow mono" });
  const summaryBox = h("div", {});
  const failure = h("div", {});
  const fieldsBox = h("div", { class: "grid" });
  const seriesBox = h("div", {});
  const artifactsBox = h("div", {});
  const logs = run.logs.map((name) => logSection(base, name));
  const logsBox = h("div", {}, logs.length ? logs.map((l) => l.node) : h("p", { class: "muted" }, "none"));
  const fill = async () => {
    title.replaceChildren(run.short_id, " ", h("span", { class: `status status-${run.status}` }, run.status));
    summaryBox.replaceChildren(
      h("h2", {}, "Run"),
      keyValues({
        run_id: run.run_id,
        experiment: run.experiment_id,
        status: run.status,
        started: fmtTime(run.started_at),
        finished: fmtTime(run.finished_at),
        duration: fmtDuration(run.duration_ms),
      }),
    );
    failure.replaceChildren(...(run.error ? errorSection(run.error) : []).filter(Boolean));
    fieldsBox.replaceChildren(
      ...["params", "metrics", "derived"].map((name) => h("div", {}, h("h2", {}, name), keyValues(run[name]))),
    );
    artifactsBox.replaceChildren(...[artifactsSection(base, run.artifacts)].flat());
    if (!Object.keys(run.series).length) {
      seriesBox.replaceChildren();
      return;
    }
    try {
      const data = await api(`${base}/series`);
      const charts = h("div", { class: "charts" }, data.series.map(lineChart));
      if (current()) seriesBox.replaceChildren(h("h2", {}, "Series"), charts);
    } catch (error) {
      seriesBox.replaceChildren(h("h2", {}, "Series"), errorBox(error));
    }
  };
  show(
    h("div", { class: "toolbar" }, title, h("button", { onclick: route }, "Refresh")),
    h("div", { class: "grid" }, summaryBox, h("div", {}, tagsAndNotes(base, run))),
    failure,
    fieldsBox,
    seriesBox,
    h("h2", {}, "Artifacts"),
    artifactsBox,
    h("h2", {}, "Logs"),
    logsBox,
    run.warnings.length ? [h("h2", {}, "Warnings"), h("pre", {}, run.warnings.join("\n"))] : null,
    h("details", {}, h("summary", {}, "Provenance"), keyValues(run.provenance)),
  );
  await fill();
  watch(current, async () => {
    const wasRunning = run.status === "running";
    const next = await apiIfChanged(base, tag);
    if (wasRunning) logs.forEach((l) => l.load()); // follow the logs while the run goes
    if (!next) return wasRunning;
    ({ body: run, tag } = next);
    await fill();
    return true;
  });
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
  const node = h("section", {}, h("div", { class: "toolbar" }, title, note, more, reload), text);
  return { node, load };
}

// --- the compare page -------------------------------------------------------------

async function comparePage(current, params) {
  const ids = (params.get("ids") || "").split(",").filter(Boolean);
  crumbs(["experiments", "#/"], ["compare"]);
  const url = `api/compare?ids=${ids.map(enc).join(",")}`;
  const first = await apiIfChanged(url, null);
  if (!current()) return;
  let data = first.body;
  let tag = first.tag;
  const experimentsShown = [...new Set(data.runs.map((r) => r.experiment_id))];
  if (experimentsShown.length === 1) {
    crumbs(["experiments", "#/"], [experimentsShown[0], `#/experiments/${enc(experimentsShown[0])}`], ["compare"]);
  }
  let onlyDiff = params.get("diff") === "1";
  const toggle = h("input", {
    type: "checkbox",
    checked: onlyDiff,
    onchange: (event) => {
      onlyDiff = event.target.checked;
      tableBox.replaceChildren(compareTable(data, onlyDiff));
    },
  });
  const tableBox = h("div", {}, compareTable(data, onlyDiff));
  const chartsBox = h("div", { class: "charts" }, compareCharts(data));
  show(
    h(
      "div",
      { class: "toolbar" },
      h("h1", { class: "grow" }, `Comparing ${data.runs.length} runs`),
      h("label", {}, toggle, " only differences"),
      h("button", { onclick: route }, "Refresh"),
    ),
    tableBox,
    data.series.length ? [h("h2", {}, "Series"), chartsBox] : null,
  );
  watch(current, async () => {
    const running = data.runs.some((r) => r.status === "running");
    const next = await apiIfChanged(url, tag);
    if (!next) return running;
    ({ body: data, tag } = next);
    tableBox.replaceChildren(compareTable(data, onlyDiff));
    chartsBox.replaceChildren(...compareCharts(data));
    return true;
  });
}

function compareTable(data, onlyDiff) {
  const head = h(
    "tr",
    {},
    h("th", {}, "field"),
    data.runs.map((r, i) =>
      h(
        "th",
        { class: "mono" },
        h("i", { class: "swatch", "data-color": colour(i) }),
        h("a", { href: `#/runs/${enc(r.run_id)}`, title: r.run_id }, r.short_id),
      ),
    ),
  );
  const body = [];
  let group = null;
  for (const row of data.rows) {
    if (onlyDiff && !row.differ) continue;
    if (row.group !== group) {
      group = row.group;
      body.push(h("tr", { class: "group" }, h("th", { colspan: data.runs.length + 1 }, group)));
    }
    body.push(
      h(
        "tr",
        { class: row.differ ? "differ" : null },
        h("td", { class: "mono" }, row.key),
        row.values.map((value) => {
          if (row.key === "status") return h("td", { class: `status status-${value}` }, value);
          if (row.key === "duration_ms") return h("td", { class: "num" }, fmtDuration(value));
          if (row.key === "started_at" || row.key === "finished_at") return h("td", {}, fmtTime(value));
          return cell(row.key, value);
        }),
      ),
    );
  }
  if (!body.length) body.push(h("tr", {}, h("td", { colspan: data.runs.length + 1, class: "muted" }, "These runs do not differ.")));
  const table = h("div", { class: "table-wrap" }, h("table", { class: "compare" }, head, body));
  paintSwatches(table);
  return table;
}

function compareCharts(data) {
  return data.series.map((one) => {
    const lines = [];
    one.runs.forEach((series, i) => {
      if (!series) return;
      lines.push({ label: data.runs[i].short_id, color: colour(i), x: series.steps, y: series.values });
    });
    return xyChart(lines, { mode: "lines", xLabel: "step", yLabel: one.name, title: one.name, width: 480, height: 240 });
  });
}

// --- the plots page ---------------------------------------------------------------

const PLOT_KINDS = {
  scatter: "scatter",
  line: "line",
  hist: "histogram",
  parallel: "parallel coordinates",
  curves: "learning curves",
};
const PLOT_KEYS = ["kind", "x", "y", "color", "agg", "bins", "dims", "metric", "where", "logx"];

async function plotsPage(current, experimentId, params) {
  crumbs(["experiments", "#/"], [experimentId, `#/experiments/${enc(experimentId)}`], ["plots"]);
  const base = `api/experiments/${enc(experimentId)}`;
  const catalog = await api(`${base}/fields`);
  if (!current()) return;
  const numeric = catalog.fields.filter((f) => f.types.some((t) => t === "int" || t === "float" || t === "bool"));
  const keys = [
    ...["duration_ms", "started_at", "finished_at"].map((k) => ({ key: k, label: k })),
    ...numeric.map((f) => ({ key: f.key, label: f.field })),
  ];
  const groupable = [
    { key: "", label: "(none)" },
    { key: "status", label: "status" },
    ...catalog.fields.filter((f) => !f.field.startsWith("metrics.") || f.types.includes("str")).map((f) => ({ key: f.key, label: f.field })),
  ];
  // Learning curves draw series: offer the metrics that have one.
  const metricNames = catalog.series && catalog.series.length
    ? catalog.series
    : catalog.fields.filter((f) => f.field.startsWith("metrics.")).map((f) => f.field.slice(8));
  const state = {};
  for (const key of PLOT_KEYS) state[key] = params.get(key) || "";
  state.kind = PLOT_KINDS[state.kind] ? state.kind : "scatter";
  const firstMetric = numeric.find((f) => f.field.startsWith("metrics."));
  const firstParam = numeric.find((f) => f.field.startsWith("params."));
  if (!state.x) state.x = (firstParam || keys[0]).key;
  if (!state.y) state.y = (firstMetric || keys[0]).key;
  if (!state.agg) state.agg = state.kind === "curves" ? "mean_minmax" : "none";
  if (!state.dims) state.dims = catalog.fields.filter((f) => f.field.startsWith("params.")).slice(0, 4).map((f) => f.key).join(",");
  if (!state.metric && metricNames.length) state.metric = metricNames[0];

  const go = (changes) => {
    const next = { ...state, ...changes };
    const query = new URLSearchParams();
    for (const key of PLOT_KEYS) if (next[key]) query.set(key, next[key]);
    location.hash = `#/plots/${enc(experimentId)}?${query}`;
  };
  const select = (name, options, value) =>
    h(
      "select",
      { name, "aria-label": name },
      options.map((o) => h("option", { value: o.key, selected: o.key === value }, o.label)),
    );
  const labelled = (text, control) => h("label", { class: "field" }, h("span", {}, text), control);
  const kindBox = select("kind", Object.entries(PLOT_KINDS).map(([key, label]) => ({ key, label })), state.kind);
  const xBox = select("x", keys, state.x);
  const yBox = select("y", keys, state.y);
  const colorBox = select("color", groupable, state.color);
  const aggOptions = [
    { key: "none", label: "none (every run)" },
    { key: "mean_minmax", label: "mean, min–max band" },
    { key: "mean_se", label: "mean ± standard error" },
  ];
  const aggBox = select("agg", state.kind === "curves" ? aggOptions.slice(1) : aggOptions, state.agg);
  const binsBox = h("input", { type: "number", min: 1, max: 200, value: state.bins || 20, "aria-label": "bins" });
  const metricBox = h("input", { type: "text", list: "series-names", value: state.metric, "aria-label": "series" });
  const metricList = h("datalist", { id: "series-names" }, metricNames.map((m) => h("option", { value: m })));
  const dimsShown = new Set(state.dims.split(",").filter(Boolean));
  const dimBoxes = catalog.fields
    .filter((f) => f.field.startsWith("params."))
    .map((f) => {
      const box = h("input", { type: "checkbox", value: f.key, checked: dimsShown.has(f.key) });
      return [box, h("label", {}, box, " ", f.field.slice(7))];
    });
  const logBox = h("input", { type: "checkbox", checked: state.logx === "1" });
  const whereBox = h("input", { type: "text", class: "where", value: state.where, placeholder: "filter, e.g. status == \"success\"", "aria-label": "filter" });
  const read = () => ({
    kind: kindBox.value,
    x: xBox.value,
    y: yBox.value,
    color: colorBox.value,
    agg: kindBox.value === "curves" && aggBox.value === "none" ? "mean_minmax" : aggBox.value,
    bins: binsBox.value,
    metric: metricBox.value.trim(),
    dims: dimBoxes.filter(([box]) => box.checked).map(([box]) => box.value).join(","),
    where: whereBox.value.trim(),
    logx: logBox.checked ? "1" : "",
  });
  kindBox.addEventListener("change", () => go({ ...read(), agg: kindBox.value === "curves" ? "mean_minmax" : "none" }));
  const kind = state.kind;
  const controls = [labelled("plot", kindBox)];
  if (kind === "scatter" || kind === "line" || kind === "hist") controls.push(labelled("x", xBox));
  if (kind === "scatter" || kind === "line" || kind === "parallel") controls.push(labelled(kind === "parallel" ? "metric" : "y", yBox));
  if (kind === "curves") controls.push(labelled("series", metricBox), metricList);
  if (kind !== "parallel") controls.push(labelled("colour by", colorBox));
  if (kind === "scatter" || kind === "line" || kind === "curves") controls.push(labelled("aggregate", aggBox));
  if (kind === "hist") controls.push(labelled("bins", binsBox));
  if (kind === "scatter" || kind === "line") controls.push(h("label", { class: "field" }, logBox, " log x"));
  const form = h(
    "form",
    {
      class: "plot-form",
      onsubmit: (event) => {
        event.preventDefault();
        go(read());
      },
    },
    h("div", { class: "toolbar" }, controls),
    kind === "parallel" ? h("div", { class: "toolbar dims" }, h("span", { class: "muted" }, "axes:"), dimBoxes.map(([, label]) => label)) : null,
    h("div", { class: "toolbar" }, h("div", { class: "grow" }, whereBox), h("button", { type: "submit" }, "Plot")),
  );
  const result = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  show(h("h1", {}, `Plots · ${experimentId}`), form, result);

  const query = new URLSearchParams({ kind });
  if (kind === "scatter" || kind === "line" || kind === "hist") query.set("x", state.x);
  if (kind === "scatter" || kind === "line" || kind === "parallel") query.set("y", state.y);
  if (kind !== "parallel" && state.color) query.set("color", state.color);
  if (kind !== "hist" && kind !== "parallel") query.set("agg", state.agg);
  if (kind === "hist") query.set("bins", state.bins || 20);
  if (kind === "parallel") query.set("dims", state.dims);
  if (kind === "curves") query.set("metric", state.metric);
  if (state.where) query.set("where", state.where);
  const url = `${base}/plot?${query}`;
  const draw = (plot) => {
    const notes = [`${plot.runs} runs`];
    if (plot.skipped) notes.push(`${plot.skipped} without a value left out`);
    if (plot.sampled) notes.push(`${plot.points} of ${plot.total} points drawn (a random sample, seed ${plot.seed})`);
    let chart;
    if (!plot.runs) chart = h("p", { class: "muted" }, "No run matches.");
    else if (kind === "hist") chart = histChart(plot);
    else if (kind === "parallel") chart = parallelChart(plot);
    else {
      const lines = plot.groups.map((g, i) => ({
        label: plot.color ? g.label : "",
        color: colour(i),
        x: g.x,
        y: g.y,
        lo: g.lo,
        hi: g.hi,
        n: g.n,
        ids: g.run_ids,
      }));
      const aggregated = plot.agg !== "none";
      chart = xyChart(lines, {
        mode: kind === "scatter" ? "points" : "lines",
        band: aggregated,
        logX: state.logx === "1" && kind !== "curves",
        timeX: plot.time_x,
        xLabel: kind === "curves" ? "step" : plot.x,
        yLabel: kind === "curves" ? state.metric : plot.y,
        width: 760,
        height: 420,
        dots: kind === "scatter" || !aggregated || lines.every((l) => l.x.length <= 60),
      });
    }
    result.replaceChildren(h("p", { class: "muted" }, notes.join(" · ")), chart);
  };
  const failed = (error) => {
    const parts = [errorBox(error)];
    if (error.body && error.body.param === "where" && error.body.column) {
      parts.push(h("div", { class: "caret" }, `${state.where}\n${" ".repeat(error.body.column - 1)}^`));
    }
    result.replaceChildren(...parts);
  };
  let tag = null;
  try {
    const first = await apiIfChanged(url, null);
    if (!current()) return;
    tag = first.tag;
    draw(first.body);
  } catch (error) {
    if (current()) failed(error);
    return;
  }
  watch(current, async () => {
    const next = await apiIfChanged(url, tag);
    if (!next) return false; // plots follow a sweep at the slow pace
    tag = next.tag;
    draw(next.body);
    return false;
  });
}

// --- charts -----------------------------------------------------------------------
//
// Hand-written SVG: axes with ticks, points, lines and bands, a legend, and a <title>
// on every mark for a tooltip.

const PALETTE = [
  "#2f6fdb", "#d9534f", "#1f8a4c", "#b7791f", "#7b4fd0",
  "#16a2b8", "#e83e8c", "#5c6670", "#8a6d3b", "#20c997",
];
const CHART = { width: 560, height: 296, left: 64, right: 16, top: 28, bottom: 40 };

function colour(i) {
  return PALETTE[i % PALETTE.length];
}

// About `count` round values from lo to hi.
function niceTicks(lo, hi, count = 5) {
  const span = hi - lo;
  if (!(span > 0) || !Number.isFinite(span)) return [lo];
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const ratio = raw / magnitude;
  const step = (ratio >= 7.5 ? 10 : ratio >= 3.5 ? 5 : ratio >= 1.5 ? 2 : 1) * magnitude;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Number(v.toPrecision(12)));
  }
  return out;
}

function fmtTick(value, time) {
  if (time) return new Date(value * 1000).toISOString().slice(5, 16).replace("T", " ");
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) return value.toExponential(1);
  return fmt(value);
}

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v === null || v === undefined || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - Math.abs(lo || 1) * 0.1, hi + Math.abs(hi || 1) * 0.1];
  return [lo, hi];
}

// A frame: scales, axes with ticks and labels. xs/ys are the values to fit.
function frame(xs, ys, opts) {
  const width = opts.width || CHART.width;
  const height = opts.height || CHART.height;
  const { left, right, top, bottom } = CHART;
  const logX = Boolean(opts.logX);
  const tx = logX ? (x) => (x > 0 ? Math.log10(x) : null) : (x) => x;
  const [x0, x1] = opts.xDomain || extent(xs.map(tx));
  const [y0, y1] = opts.yDomain || extent(ys);
  const px = (x) => {
    const t = tx(x);
    return t === null ? null : left + ((t - x0) / (x1 - x0)) * (width - left - right);
  };
  const py = (y) => height - bottom - ((y - y0) / (y1 - y0)) * (height - top - bottom);
  const marks = [
    s("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }),
    s("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }),
  ];
  const xTicks = logX
    ? niceTicks(x0, x1).filter((t) => Number.isInteger(t)).map((t) => 10 ** t)
    : niceTicks(x0, x1);
  for (const t of xTicks) {
    const x = px(t);
    if (x === null) continue;
    marks.push(s("line", { class: "tick", x1: x, y1: height - bottom, x2: x, y2: height - bottom + 4 }));
    marks.push(s("text", { x, y: height - bottom + 15, "text-anchor": "middle" }, fmtTick(t, opts.timeX)));
  }
  for (const t of niceTicks(y0, y1)) {
    const y = py(t);
    marks.push(s("line", { class: "grid", x1: left, y1: y, x2: width - right, y2: y }));
    marks.push(s("text", { x: left - 5, y: y + 4, "text-anchor": "end" }, fmtTick(t)));
  }
  if (opts.xLabel) {
    marks.push(s("text", { class: "label", x: (left + width - right) / 2, y: height - 4, "text-anchor": "middle" }, opts.xLabel));
  }
  if (opts.yLabel) {
    marks.push(
      // Above the plot area, clear of the tick labels.
      s("text", { class: "label", x: 12, y: top - 12, "text-anchor": "start", transform: null }, opts.yLabel),
    );
  }
  const svgEl = s("svg", {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": opts.title || "chart",
  });
  return { svgEl, marks, px, py, width, height };
}

function legend(items) {
  if (items.length < 2) return null;
  return h(
    "div",
    { class: "legend" },
    items.map(({ label, color }) => h("span", {}, h("i", { class: "swatch", "data-color": color }), label)),
  );
}

// Swatches get their colour from script (the page's CSP forbids inline styles).
function paintSwatches(root) {
  for (const el of root.querySelectorAll("i[data-color]")) el.style.background = el.dataset.color;
}

// lines: [{label, color, x, y, lo?, hi?, n?, ids?}]; opts.mode "lines" or "points".
function xyChart(lines, opts) {
  const xs = lines.flatMap((l) => l.x);
  const ys = lines.flatMap((l) => [...l.y, ...(l.lo || []), ...(l.hi || [])]);
  const f = frame(xs, ys, opts);
  const { px, py } = f;
  const xName = opts.xLabel || "x";
  const yName = opts.yLabel || "y";
  const tip = (l, i) => {
    const parts = [];
    if (lines.length > 1 || l.label) parts.push(l.label);
    if (l.ids && l.ids[i]) parts.push(l.ids[i].slice(0, 8));
    parts.push(`${xName} = ${fmtTick(l.x[i], opts.timeX)}`, `${yName} = ${fmt(l.y[i])}`);
    if (l.lo && l.lo.length) parts.push(`band ${fmt(l.lo[i])} – ${fmt(l.hi[i])}`);
    if (l.n && l.n.length) parts.push(`n = ${l.n[i]}`);
    return parts.join("\n");
  };
  lines.forEach((l) => {
    const color = l.color;
    const banded = opts.band && l.lo && l.lo.length;
    if (banded && opts.mode === "lines") {
      const upper = [];
      const lower = [];
      l.x.forEach((x, i) => {
        const X = px(x);
        if (X === null || l.lo[i] === null) return;
        upper.push(`${X.toFixed(1)},${py(l.hi[i]).toFixed(1)}`);
        lower.push(`${X.toFixed(1)},${py(l.lo[i]).toFixed(1)}`);
      });
      if (upper.length) {
        f.marks.push(s("polygon", { class: "band", points: [...upper, ...lower.reverse()].join(" "), fill: color }));
      }
    }
    if (opts.mode === "lines") {
      let path = "";
      let pen = "M";
      l.x.forEach((x, i) => {
        const X = px(x);
        if (X === null || l.y[i] === null || l.y[i] === undefined) {
          pen = "M"; // a gap breaks the line
          return;
        }
        path += `${pen}${X.toFixed(1)},${py(l.y[i]).toFixed(1)}`;
        pen = "L";
      });
      f.marks.push(s("path", { class: "curve", d: path, stroke: color }, s("title", {}, l.label || "")));
    }
    const dots = opts.mode === "points" || (l.x.length <= 60 && opts.dots !== false);
    l.x.forEach((x, i) => {
      const X = px(x);
      if (X === null || l.y[i] === null || l.y[i] === undefined) return;
      if (banded && opts.mode === "points") {
        f.marks.push(s("line", { class: "whisker", x1: X, x2: X, y1: py(l.lo[i]), y2: py(l.hi[i]), stroke: color }));
      }
      if (dots) {
        f.marks.push(
          s("circle", { class: "dot", cx: X.toFixed(1), cy: py(l.y[i]).toFixed(1), r: opts.mode === "points" ? 3 : 2, fill: color }, s("title", {}, tip(l, i))),
        );
      }
    });
  });
  f.svgEl.append(...f.marks);
  const figure = h(
    "figure",
    { class: "chart" },
    opts.title ? h("figcaption", {}, opts.title, opts.note ? [" ", h("span", { class: "muted" }, opts.note)] : null) : null,
    f.svgEl,
    legend(lines.map((l) => ({ label: l.label, color: l.color }))),
  );
  paintSwatches(figure);
  return figure;
}

function lineChart(series) {
  const drawn = series.downsampled ? `, ${series.steps.length} drawn` : "";
  const note = `${series.points} points${drawn}`;
  if (!series.values.some((v) => v !== null)) {
    return h("figure", { class: "chart" }, h("figcaption", {}, series.name, " ", h("span", { class: "muted" }, note)), h("p", { class: "muted" }, "no numeric points"));
  }
  return xyChart([{ label: "", color: colour(0), x: series.steps, y: series.values }], {
    mode: "lines",
    xLabel: "step",
    yLabel: series.name,
    title: series.name,
    note,
    width: 480,
    height: 230,
  });
}

function histChart(plot) {
  const edges = plot.edges;
  const counts = plot.groups.flatMap((g) => g.counts);
  const f = frame(edges, [0, Math.max(1, ...counts)], {
    xLabel: plot.x,
    yLabel: "runs",
    timeX: plot.time_x,
    yDomain: [0, Math.max(1, ...counts) * 1.05],
    xDomain: [edges[0], edges[edges.length - 1]],
    title: "histogram",
  });
  const k = plot.groups.length;
  plot.groups.forEach((g, gi) => {
    g.counts.forEach((count, b) => {
      if (!count) return;
      const a = f.px(edges[b]);
      const z = f.px(edges[b + 1]);
      const w = (z - a) / k;
      const y = f.py(count);
      const label = `${k > 1 ? `${g.label}\n` : ""}[${fmtTick(edges[b], plot.time_x)}, ${fmtTick(edges[b + 1], plot.time_x)}${b === edges.length - 2 ? "]" : ")"}: ${count} runs`;
      f.marks.push(
        s("rect", { class: "bar", x: (a + gi * w + 0.5).toFixed(1), y: y.toFixed(1), width: Math.max(1, w - 1).toFixed(1), height: (f.py(0) - y).toFixed(1), fill: colour(gi) }, s("title", {}, label)),
      );
    });
  });
  f.svgEl.append(...f.marks);
  const figure = h("figure", { class: "chart" }, f.svgEl, legend(plot.groups.map((g, i) => ({ label: g.label, color: colour(i) }))));
  paintSwatches(figure);
  return figure;
}

function parallelChart(plot) {
  const dims = plot.dimensions;
  const width = Math.max(CHART.width, 130 * dims.length);
  const height = 320;
  const left = 60;
  const right = 60;
  const top = 28;
  const bottom = 20;
  const ax = (i) => left + (i * (width - left - right)) / Math.max(1, dims.length - 1);
  const scale = dims.map((d) => {
    if (!d.numeric) {
      const n = d.categories.length;
      return (v) => (n < 2 ? 0.5 : v / (n - 1));
    }
    const span = d.max_value - d.min_value;
    return (v) => (span > 0 ? (v - d.min_value) / span : 0.5);
  });
  const py = (t) => height - bottom - t * (height - top - bottom);
  const svgEl = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "parallel coordinates" });
  const metric = dims.length - 1;
  const heat = (t) => {
    const r = Math.round(47 + t * (194 - 47));
    const g = Math.round(111 + t * (59 - 111));
    const b = Math.round(219 + t * (48 - 219));
    return `rgb(${r},${g},${b})`;
  };
  plot.rows.forEach((row, ri) => {
    const d = row.map((v, i) => `${i ? "L" : "M"}${ax(i).toFixed(1)},${py(scale[i](v)).toFixed(1)}`).join("");
    const words = dims.map((dim, i) => `${dim.key} = ${dim.numeric ? fmt(row[i]) : fmt(dim.categories[row[i]])}`);
    svgEl.append(
      s("path", { class: "pline", d, stroke: heat(scale[metric](row[metric])) }, s("title", {}, [plot.run_ids[ri].slice(0, 8), ...words].join("\n"))),
    );
  });
  dims.forEach((dim, i) => {
    const x = ax(i);
    svgEl.append(s("line", { class: "paxis", x1: x, x2: x, y1: top, y2: height - bottom }));
    svgEl.append(s("text", { class: "label", x, y: 14, "text-anchor": "middle" }, dim.key));
    const labels = dim.numeric
      ? niceTicks(dim.min_value, dim.max_value, 4).map((t) => [scale[i](t), fmtTick(t)])
      : dim.categories.map((c, k) => [scale[i](k), fmt(c)]);
    for (const [t, text] of labels) {
      if (t < -1e-9 || t > 1 + 1e-9) continue;
      svgEl.append(s("text", { x: x + 4, y: py(t) + 4, "text-anchor": "start" }, text));
    }
  });
  return h("figure", { class: "chart wide" }, svgEl, h("div", { class: "muted" }, `lines coloured by ${dims[metric].key}: blue low, red high`));
}

start();
