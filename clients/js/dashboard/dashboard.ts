// pgactivity dashboard: the organization's activities, live, on @pgactivity/client.
//
// The stream, its resume, backoff and token errors are the client's (ActivityFeed over the
// browser's EventSource, token in ?access_token=); this file only renders. Everything shown
// comes from agents and is untrusted: the DOM is built with createElement/textContent only,
// never innerHTML (and the page's Content-Security-Policy allows no inline script anyway).
// Payloads are printed by an iterative, bounded formatter (json.ts): no recursion on data.
//
// Bundled into src/pgactivity/static/dashboard.js by `npm run build` (committed).

import { type Activity, ActivityFeed, type ActivityFeedState, type StreamEvent } from "../src/index.js";
import { formatJson } from "./json.js";

const TOKEN_KEY = "pgactivity.token";
const MAX_ACTIVITIES = 500;
const STATUS_LABELS: Record<string, string> = { running: "Running", completed: "Completed", failed: "Failed" };

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string | null, text?: unknown): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

interface Row {
  tr: HTMLTableRowElement;
  badge: HTMLElement;
  name: HTMLElement;
  kind: HTMLElement;
  bar: HTMLElement;
  fill: HTMLElement;
  pct: HTMLElement;
  message: HTMLElement;
  session: HTMLElement;
  started: HTMLElement;
  elapsed: HTMLElement;
  detail: HTMLTableRowElement | null;
  shown: Activity | null; // what the row (and its detail) were last filled from
  detailOf: Activity | null;
}

const ui = {
  token: null as string | null,
  feed: null as ActivityFeed | null,
  unsubscribe: null as (() => void) | null,
  state: null as ActivityFeedState | null,
  rows: new Map<string, Row>(),
  expanded: new Set<string>(),
  fresh: new Set<string>(), // ids started since the last render (highlighted once)
  unloadable: new Set<string>(), // truncated fields that GET /api/activities/{id} could not give
  renderQueued: false,
  filters: { status: "", agentType: "", text: "" },
};

// ---- token -----------------------------------------------------------------

const storage = {
  get(): string | null {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  },
  set(value: string): void {
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch {
      // private mode: memory only
    }
  },
  clear(): void {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // ignore
    }
  },
};

/** Reads ?access_token= once and removes it from the address bar (and history). */
function takeTokenFromUrl(): string | null {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("access_token");
  if (token === null) return null;
  url.searchParams.delete("access_token");
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  return token.trim() || null;
}

function activities(): readonly Activity[] {
  return ui.state?.activities ?? [];
}

function showTokenForm(message: string): void {
  $("board").hidden = activities().length === 0;
  $("token-form").hidden = false;
  $("change-token").hidden = true;
  const error = $("token-error");
  error.hidden = !message;
  error.textContent = message;
  $("token-input").focus();
}

function stopFeed(): void {
  ui.unsubscribe?.();
  ui.unsubscribe = null;
}

function useToken(token: string): void {
  const changed = token !== ui.token;
  ui.token = token;
  storage.set(token);
  $("token-form").hidden = true;
  ($("token-input") as HTMLInputElement).value = "";
  $("board").hidden = false;
  $("change-token").hidden = false;
  stopFeed();
  if (changed || !ui.feed) {
    // Another token may be another organization: start from a snapshot.
    ui.feed = new ActivityFeed({
      transport: "eventsource",
      token,
      limit: MAX_ACTIVITIES,
      backoff: { initialMs: 1000, maxMs: 30_000 },
      onEvent: noteFresh,
    });
    ui.state = ui.feed.getState();
    ui.expanded.clear();
    for (const row of ui.rows.values()) {
      row.tr.remove();
      row.detail?.remove();
    }
    ui.rows.clear();
  }
  const feed = ui.feed;
  // The same token again (the form after a refusal): the feed resumes from its last event.
  ui.unsubscribe = feed.subscribe(() => onState(feed));
  onState(feed);
}

function noteFresh(event: StreamEvent): void {
  if (event.type === "agent_started") ui.fresh.add(event.activityId);
}

// ---- connection ------------------------------------------------------------

function setConnection(name: string, label: string): void {
  $("conn").dataset["state"] = name;
  $("conn-label").textContent = label;
  document.documentElement.dataset["connection"] = name;
}

function onState(feed: ActivityFeed): void {
  if (feed !== ui.feed) return;
  const previous = ui.state;
  const state = feed.getState();
  ui.state = state;
  if (!previous || previous.status !== state.status || previous.error !== state.error) showStatus(state);
  scheduleRender();
}

function showStatus(state: ActivityFeedState): void {
  switch (state.status) {
    case "connecting":
      setConnection("connecting", "Connecting…");
      break;
    case "live":
      setConnection("live", "Live");
      break;
    case "reconnecting":
      setConnection("reconnecting", "Reconnecting…");
      break;
    case "closed":
      setConnection("idle", "Not connected");
      break;
    case "failed": {
      const error = state.error;
      stopFeed();
      if (error && (error.status === 401 || error.status === 403 || error.code === "unauthorized")) {
        setConnection("unauthorized", "Unauthorized");
        storage.clear();
        showTokenForm(`The server refused this token${error.message ? `: ${error.message}` : "."}`);
      } else {
        setConnection("error", "Error");
        showTokenForm(error?.message || "The server refused the request.");
      }
      break;
    }
  }
}

// ---- rendering -------------------------------------------------------------

function scheduleRender(): void {
  if (ui.renderQueued) return;
  ui.renderQueued = true;
  requestAnimationFrame(() => {
    ui.renderQueued = false;
    render();
  });
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

function parseTime(iso: unknown): number | null {
  if (typeof iso !== "string") return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
}

function formatStarted(iso: string | null): string {
  const ms = parseTime(iso);
  if (ms === null) return "—";
  const date = new Date(ms);
  return date.toDateString() === new Date().toDateString() ? timeFormat.format(date) : dateFormat.format(date);
}

function formatDuration(ms: number): string {
  const clamped = Math.max(0, ms);
  if (clamped < 1000) return `${Math.round(clamped)}ms`;
  const seconds = clamped / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${String(minutes % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

function duration(a: Activity): string {
  const start = parseTime(a.createdAt);
  if (start === null) return "—";
  const end = a.status === "running" ? Date.now() : (parseTime(a.completedAt) ?? parseTime(a.updatedAt));
  return end === null ? "—" : formatDuration(end - start);
}

function percent(a: Activity): number | null {
  if (a.status === "completed") return 100;
  return typeof a.progress === "number" && Number.isFinite(a.progress) ? Math.min(100, Math.max(0, a.progress)) : null;
}

function createRow(id: string): Row {
  const tr = el("tr", "activity");
  tr.dataset["id"] = id;
  const badge = el("span", "badge");
  const name = el("div", "cell-main");
  const kind = el("div", "cell-sub");
  const fill = el("div", "fill");
  const bar = el("div", "bar");
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  bar.append(fill);
  const pct = el("span", "pct");
  const progress = el("div", "progress");
  progress.append(bar, pct);
  const message = el("div", "message");
  const session = el("div", "session mono");
  const started = el("td", "started");
  const elapsed = el("td", "duration");
  const cell = (...children: Node[]) => {
    const td = el("td");
    td.append(...children);
    return td;
  };
  const sessionCell = cell(session);
  sessionCell.className = "session-cell";
  tr.append(cell(badge), cell(name, kind), cell(progress), cell(message), sessionCell, started, elapsed);
  tr.addEventListener("click", () => {
    if (window.getSelection && String(window.getSelection()).length) return; // selecting text, not toggling
    if (ui.expanded.has(id)) ui.expanded.delete(id);
    else {
      ui.expanded.add(id);
      // Fields a snapshot left out (too large for its budget) come from GET /api/activities/{id}.
      if (ui.state?.activities.find((a) => a.id === id)?.truncated?.length) loadWhole(id);
    }
    scheduleRender();
  });
  return { tr, badge, name, kind, bar, fill, pct, message, session, started, elapsed, detail: null, shown: null, detailOf: null };
}

function loadWhole(id: string): void {
  const feed = ui.feed;
  if (!feed) return;
  ui.unloadable.delete(id);
  const failed = () => {
    ui.unloadable.add(id);
    const row = ui.rows.get(id);
    if (row) row.detailOf = null; // redraw the detail
    scheduleRender();
  };
  feed.load(id).then((a) => {
    if (a?.truncated?.length) failed();
  }, failed);
}

function fillRow(row: Row, a: Activity): void {
  const status = STATUS_LABELS[a.status] ? a.status : "running";
  row.tr.dataset["status"] = status;
  row.badge.className = `badge ${status}`;
  row.badge.textContent = STATUS_LABELS[status] ?? status;

  row.name.textContent = a.agentName || a.agentType || "—";
  row.name.title = a.agentName || "";
  row.kind.textContent = [a.agentType, a.category].filter(Boolean).join(" · ");

  const pct = percent(a);
  row.fill.className = `fill ${status}`;
  row.fill.style.width = `${pct ?? 0}%`;
  row.pct.textContent = pct === null ? "—" : `${pct}%`;
  if (pct === null) row.bar.removeAttribute("aria-valuenow");
  else row.bar.setAttribute("aria-valuenow", String(pct));

  const text = status === "failed" && a.error ? a.error : a.message;
  row.message.textContent = text || "—";
  row.message.title = text || "";
  row.message.className = status === "failed" ? "message failed" : "message";

  row.session.textContent = a.sessionId || "—";
  row.session.title = a.sessionId || "";
  row.started.textContent = formatStarted(a.createdAt);
  const ms = parseTime(a.createdAt);
  row.started.title = ms === null ? "" : fullFormat.format(new Date(ms));
  row.elapsed.textContent = duration(a);
  row.shown = a;
}

function detailRow(row: Row, a: Activity): HTMLTableRowElement {
  if (!row.detail) {
    row.detail = el("tr", "detail");
    row.detail.dataset["id"] = a.id;
  }
  const td = el("td");
  td.colSpan = 7;
  const grid = el("dl", "detail-grid");
  const fields: [string, string | null][] = [
    ["Activity", a.id], ["Session", a.sessionId], ["Agent type", a.agentType], ["Category", a.category],
    ["Created", a.createdAt], ["Updated", a.updatedAt], ["Completed", a.completedAt], ["Status", a.status],
  ];
  for (const [label, value] of fields) grid.append(el("dt", null, label), el("dd", "mono", value ?? "—"));
  const blocks = el("div", "detail-json");
  const truncated = new Set<string>(a.truncated ?? []);
  const sections: [string, string, unknown][] = [["Input", "inputData", a.inputData], ["Metadata", "metadata", a.metadata], ["Output", "outputData", a.outputData]];
  if (a.error || truncated.has("error")) sections.push(["Error", "error", a.error]);
  for (const [label, field, value] of sections) {
    const block = el("div");
    let text: string;
    if (truncated.has(field)) text = ui.unloadable.has(a.id) ? "Not shown: too large for the snapshot, and it could not be fetched." : "Loading…";
    else if (value === null || value === undefined) text = "—";
    else text = typeof value === "string" ? value : formatJson(value);
    block.append(el("h3", null, label), el("pre", "mono", text));
    blocks.append(block);
  }
  td.append(grid, blocks);
  row.detail.replaceChildren(td);
  row.detailOf = a;
  return row.detail;
}

function matches(a: Activity): boolean {
  const f = ui.filters;
  if (f.status && a.status !== f.status) return false;
  if (f.agentType && a.agentType !== f.agentType) return false;
  if (f.text) {
    const haystack = [a.agentName, a.agentType, a.message, a.error, a.sessionId, a.category, a.id].filter(Boolean).join("\n").toLowerCase();
    if (!haystack.includes(f.text)) return false;
  }
  return true;
}

function renderAgentTypes(all: readonly Activity[]): void {
  const select = $<HTMLSelectElement>("filter-agent");
  const types = [...new Set(all.map((a) => a.agentType).filter(Boolean))].sort();
  if (ui.filters.agentType && !types.includes(ui.filters.agentType)) types.push(ui.filters.agentType);
  const current = [...select.options].slice(1).map((o) => o.value);
  if (current.length === types.length && current.every((t, i) => t === types[i])) return;
  const all_ = el("option", null, "All");
  all_.value = "";
  const options = [all_];
  for (const type of types) {
    const option = el("option", null, type);
    option.value = type;
    options.push(option);
  }
  select.replaceChildren(...options);
  select.value = ui.filters.agentType;
}

function render(): void {
  const state = ui.state;
  const all = activities();
  const counts: Record<string, number> = { running: 0, completed: 0, failed: 0 };
  for (const a of all) if (a.status in counts) counts[a.status]! += 1;
  $("count-all").textContent = String(all.length);
  for (const status of Object.keys(counts)) $(`count-${status}`).textContent = String(counts[status]);
  for (const button of document.querySelectorAll<HTMLElement>(".stat")) {
    button.setAttribute("aria-pressed", String((button.dataset["status"] ?? "") === ui.filters.status));
  }
  renderAgentTypes(all);

  const organization = state?.organizationId;
  if (organization) {
    $("org").hidden = false;
    $("org-name").textContent = organization;
    $("org-name").title = organization;
  }
  const seq = state?.lastEventId ?? null;
  $("last-seq").textContent = seq === null ? "–" : `#${seq}`;
  document.documentElement.dataset["lastSeq"] = seq === null ? "" : String(seq);
  document.documentElement.dataset["snapshots"] = String(ui.feed?.store.snapshots ?? 0);

  const visible = all.filter(matches); // already newest first
  // Rows are kept for visible activities only; they are cheap to rebuild.
  const shown = new Set(visible.map((a) => a.id));
  for (const [id, row] of ui.rows) {
    if (!shown.has(id)) {
      row.tr.remove();
      row.detail?.remove();
      ui.rows.delete(id);
    }
  }
  const known = new Set(all.map((a) => a.id));
  for (const id of ui.expanded) if (!known.has(id)) ui.expanded.delete(id);
  const tbody = $("rows");
  let index = 0;
  const place = (node: Element) => {
    const at = tbody.children[index];
    if (at !== node) tbody.insertBefore(node, at ?? null);
    index += 1;
  };
  for (const a of visible) {
    let row = ui.rows.get(a.id);
    if (!row) {
      row = createRow(a.id);
      ui.rows.set(a.id, row);
    }
    if (row.shown !== a) fillRow(row, a); // activities are immutable: a changed one is a new object
    if (ui.fresh.has(a.id)) {
      const tr = row.tr;
      tr.classList.add("fresh");
      setTimeout(() => tr.classList.remove("fresh"), 1700);
    }
    place(row.tr);
    row.tr.setAttribute("aria-expanded", String(ui.expanded.has(a.id)));
    if (ui.expanded.has(a.id)) place(row.detailOf === a && row.detail ? row.detail : detailRow(row, a));
    else if (row.detail) {
      row.detail.remove();
      row.detail = null;
      row.detailOf = null;
    }
  }
  ui.fresh.clear();
  while (tbody.children.length > index) tbody.lastElementChild?.remove();

  const empty = $("empty");
  empty.hidden = visible.length > 0;
  empty.textContent = all.length ? "No activity matches the filters." : "No activities yet. They appear here as agents report them.";
  $("shown").textContent = visible.length === all.length ? `${all.length} activities` : `${visible.length} of ${all.length} activities`;
}

function tick(): void {
  for (const row of ui.rows.values()) {
    const a = row.shown;
    if (a && a.status === "running") row.elapsed.textContent = duration(a);
  }
}

// ---- wiring ----------------------------------------------------------------

function setFilter(name: "status" | "agentType" | "text", value: string): void {
  ui.filters[name] = value;
  if (name === "status") $<HTMLSelectElement>("filter-status").value = value;
  scheduleRender();
}

function init(): void {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $<HTMLInputElement>("token-input").value.trim();
    if (token) useToken(token);
  });
  $("change-token").addEventListener("click", () => {
    stopFeed();
    storage.clear();
    setConnection("idle", "Not connected");
    showTokenForm("");
  });
  $("filter-status").addEventListener("change", (e) => setFilter("status", (e.target as HTMLSelectElement).value));
  $("filter-agent").addEventListener("change", (e) => setFilter("agentType", (e.target as HTMLSelectElement).value));
  $("filter-text").addEventListener("input", (e) => setFilter("text", (e.target as HTMLInputElement).value.trim().toLowerCase()));
  for (const button of document.querySelectorAll<HTMLElement>(".stat")) {
    button.addEventListener("click", () => setFilter("status", button.dataset["status"] || ""));
  }
  window.addEventListener("online", () => ui.feed?.retryNow());
  setInterval(tick, 1000);

  const token = takeTokenFromUrl() || storage.get();
  render();
  if (token) useToken(token);
  else showTokenForm("");
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
