// The account's tasks, live: a filterable list whose unfinished tasks follow their event streams, and one task's
// page with its outputs, progress, logs, input, cost and webhook deliveries.
import { api, append, credits, followTask, formatTime, h, TERMINAL } from "./core.js";
import { gallery } from "./media.js";

const STATUSES = ["pending", "staged", "processing", "completed", "failed", "cancelled"];
const PAGE_SIZE = 20;

function progressOf(task) {
  if (task.status === "completed") return 1;
  return task.detail && typeof task.detail.progress === "number" ? task.detail.progress : null;
}

function statusBadge(task) {
  return h("span", { class: `status status-${task.status}`, "data-status": task.status }, task.status);
}

function progressBar(task) {
  const value = progressOf(task);
  return h("progress", { class: "task-progress", max: "1", value: value === null ? undefined : String(value) });
}

function cost(task) {
  const usage = (task.meta && task.meta.usage) || {};
  if (task.status === "completed") return credits(usage.consume);
  if (TERMINAL.includes(task.status)) return "no charge";
  return `${credits(usage.frozen)} reserved`;
}

function taskCard(task) {
  const note = task.detail && task.detail.note ? task.detail.note : "";
  return h("article", { class: "task-card", "data-task-id": task.task_id, "data-status": task.status },
    h("header", {},
      h("a", { href: `#/task/${encodeURIComponent(task.task_id)}`, class: "task-link" }, `${task.model} · ${task.task_type}`),
      " ", statusBadge(task)),
    h("div", { class: "task-meta" }, formatTime(task.meta && task.meta.created_at), " · ", cost(task), note ? ` · ${note}` : ""),
    TERMINAL.includes(task.status) ? null : progressBar(task),
    task.error && task.error.message ? h("p", { class: "error" }, task.error.message) : null,
    gallery(task.output));
}

function unixSeconds(localValue) {
  return localValue ? String(Math.floor(new Date(localValue).getTime() / 1000)) : "";
}

const FILTERS = ["model", "status", "from", "to"];

export async function renderTasks(main, signal, params) {
  const page = Math.max(1, Number(params.get("page") || 1));
  const modelSelect = h("select", { name: "model", id: "filter-model" }, h("option", { value: "" }, "all models"));
  const statusSelect = h("select", { name: "status", id: "filter-status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  const form = h("form", { class: "filters", id: "task-filters" },
    h("label", {}, "Model ", modelSelect), h("label", {}, "Status ", statusSelect),
    h("label", {}, "From ", h("input", { type: "datetime-local", name: "from", id: "filter-from" })),
    h("label", {}, "To ", h("input", { type: "datetime-local", name: "to", id: "filter-to" })),
    h("button", { type: "submit" }, "Filter"));
  const list = h("section", { id: "task-list", class: "task-list" }, h("p", {}, "Loading…"));
  const pager = h("nav", { class: "pager" });
  main.replaceChildren(h("h1", {}, "Tasks"), form, list, pager);

  for (const name of FILTERS) form.elements[name].value = params.get(name) || "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of FILTERS) if (form.elements[name].value) next.set(name, form.elements[name].value);
    location.hash = `#/tasks?${next}`;
  });

  api("/api/v1/models", { signal }).then((catalog) => {
    const models = [...new Set(catalog.models.map((m) => m.model))].sort();
    for (const model of models) modelSelect.append(h("option", { value: model }, model));
    modelSelect.value = params.get("model") || "";
  }).catch(() => {});

  const query = new URLSearchParams({ page: String(page), page_size: String(PAGE_SIZE) });
  if (params.get("model")) query.set("model", params.get("model"));
  if (params.get("status")) query.set("status", params.get("status"));
  if (params.get("from")) query.set("start_time", unixSeconds(params.get("from")));
  if (params.get("to")) query.set("end_time", unixSeconds(params.get("to")));
  let result;
  try {
    result = await api(`/api/open/tasks/histories?${query}`, { signal });
  } catch (error) {
    list.replaceChildren(h("p", { class: "error" }, error.message));
    return;
  }
  if (!result.data.length) {
    list.replaceChildren(h("p", {}, "No tasks here. Run one from the ", h("a", { href: "#/playground" }, "playground"), "."));
  } else {
    list.replaceChildren(...result.data.map(taskCard));
  }
  for (const task of result.data) {
    if (TERMINAL.includes(task.status)) continue;
    followTask(task.task_id, (fresh) => {
      const card = list.querySelector(`[data-task-id="${CSS.escape(task.task_id)}"]`);
      if (card) card.replaceWith(taskCard(fresh));
    }, signal);
  }
  const pages = Math.max(1, Math.ceil(result.total / PAGE_SIZE));
  const link = (n, text) => {
    const next = new URLSearchParams(params);
    next.set("page", String(n));
    return h("a", { href: `#/tasks?${next}` }, text);
  };
  pager.replaceChildren(page > 1 ? link(page - 1, "← newer") : "", ` page ${page} of ${pages} (${result.total} tasks) `,
    page < pages ? link(page + 1, "older →") : "");
}

function jsonBlock(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

function deliveriesTable(deliveries) {
  if (!deliveries || !deliveries.length) return h("p", {}, "No webhook deliveries.");
  const rows = deliveries.map((d) => h("tr", { "data-state": d.state },
    h("td", {}, `${d.event} (${d.task_status})`), h("td", {}, d.endpoint), h("td", {}, d.state),
    h("td", {}, String(d.attempts)),
    h("td", {}, (d.history || []).map((a) => `${formatTime(a.attempted_at)}: ${a.status_code ?? "—"} ${a.latency_ms ?? ""} ms ${a.error || ""}`.trim()).join("; "))));
  return h("table", { class: "deliveries" },
    h("thead", {}, h("tr", {}, ["event", "endpoint", "state", "attempts", "each attempt"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
}

export async function renderTask(main, signal, taskId) {
  const body = h("div", { id: "task-detail" }, h("p", {}, "Loading…"));
  main.replaceChildren(h("p", {}, h("a", { href: "#/tasks" }, "← all tasks")), body);
  const draw = (task, deliveries) => {
    const detail = task.detail || {};
    const servedBy = detail.served_by ? JSON.stringify(detail.served_by) : "";
    body.replaceChildren();
    append(body, [
      h("h1", {}, `${task.model} · ${task.task_type} `, statusBadge(task)),
      h("p", { class: "task-id" }, "Task ", h("code", {}, task.task_id)),
      TERMINAL.includes(task.status) ? null : progressBar(task),
      detail.note ? h("p", {}, detail.note) : null,
      task.error && task.error.message ? h("p", { class: "error" }, `${task.error.code}: ${task.error.message}`) : null,
      h("dl", { class: "facts" },
        h("dt", {}, "Cost"), h("dd", { id: "task-cost" }, cost(task)),
        h("dt", {}, "Created"), h("dd", {}, formatTime(task.meta.created_at)),
        h("dt", {}, "Started"), h("dd", {}, formatTime(task.meta.started_at)),
        h("dt", {}, "Ended"), h("dd", {}, formatTime(task.meta.ended_at)),
        servedBy ? [h("dt", {}, "Served by"), h("dd", {}, servedBy)] : null),
      h("h2", {}, "Output"),
      gallery(task.output) || h("p", {}, TERMINAL.includes(task.status) ? "No files." : "Not ready yet."),
      task.output ? jsonBlock(task.output) : null,
      h("h2", {}, "Logs"), h("pre", { class: "logs", id: "task-logs" }, (task.logs || []).join("\n")),
      h("h2", {}, "Input"), jsonBlock(task.input),
      h("h2", {}, "Webhook deliveries"), deliveriesTable(deliveries)]);
  };
  let task;
  try {
    task = await api(`/api/v1/task/${encodeURIComponent(taskId)}`, { signal });
  } catch (error) {
    body.replaceChildren(h("p", { class: "error" }, error.message));
    return;
  }
  const loadDeliveries = () => api(`/api/v1/task/${encodeURIComponent(taskId)}/webhooks`, { signal })
    .then((d) => d.deliveries).catch(() => []);
  let deliveries = await loadDeliveries();
  draw(task, deliveries);
  if (!TERMINAL.includes(task.status)) {
    await followTask(taskId, (fresh) => { task = fresh; draw(task, deliveries); }, signal);
    deliveries = await loadDeliveries();
    if (!signal.aborted) draw(task, deliveries);
  }
}
