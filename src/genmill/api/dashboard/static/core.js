// Shared helpers: building DOM nodes (text only, never HTML strings), calling the API with the signed-in key.

const KEY = "genmill.api_key";
const ADMIN = "genmill.admin_token";

export const session = {
  // The key lives in sessionStorage: it is gone when the tab closes, is never sent by the browser on its own
  // (no cookie, so no cross-site request can use it), and only this origin's scripts can read it.
  get key() { return sessionStorage.getItem(KEY) || ""; },
  set key(value) { value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY); },
  get adminToken() { return sessionStorage.getItem(ADMIN) || ""; },
  set adminToken(value) { value ? sessionStorage.setItem(ADMIN, value) : sessionStorage.removeItem(ADMIN); },
};

// h("div", {class: "x", onclick: fn}, "text", child): an element; strings become text nodes, so data never
// becomes markup whatever it holds.
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export class ApiError extends Error {
  constructor(status, message, detail) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

// Calls the API with the account's key (or the operator token with `admin: true`); answers the envelope's data.
export async function api(path, { method = "GET", body, admin = false, signal, headers: extra = {} } = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (admin) headers.Authorization = `Bearer ${session.adminToken}`;
  else headers["X-API-Key"] = session.key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let parsed = null;
  try { parsed = await response.json(); } catch { parsed = null; }
  if (!response.ok || (parsed && typeof parsed.code === "number" && parsed.code >= 400)) {
    const message = (parsed && (parsed.message || parsed.detail)) || `HTTP ${response.status}`;
    throw new ApiError(response.status, typeof message === "string" ? message : JSON.stringify(message), parsed && parsed.detail);
  }
  // The unified API answers an envelope; the admin API answers its objects as they are.
  return parsed && !Array.isArray(parsed) && "code" in parsed && "data" in parsed ? parsed.data : parsed;
}

// Follows a task's Server-Sent Events (GET /api/v1/task/{id}/events) with fetch, since EventSource cannot send
// the X-API-Key header; calls onTask with each snapshot and resumes after Last-Event-ID when the stream drops.
export async function followTask(taskId, onTask, signal) {
  let lastId = "";
  for (let attempt = 0; attempt < 20 && !signal.aborted; attempt += 1) {
    const headers = { "X-API-Key": session.key, Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    let ended = false;
    try {
      const response = await fetch(`/api/v1/task/${encodeURIComponent(taskId)}/events`, { headers, signal });
      if (!response.ok || !response.body) return;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = [];
          for (const line of frame.split("\n")) {
            if (line.startsWith("id:")) lastId = line.slice(3).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
          }
          if (data.length) {
            const task = JSON.parse(data.join("\n"));
            onTask(task);
            if (["completed", "failed", "cancelled"].includes(task.status)) ended = true;
          }
        }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    if (ended) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export function formatTime(rfc3339) {
  if (!rfc3339 || rfc3339.startsWith("0001-")) return "";
  return new Date(rfc3339).toLocaleString();
}

export function credits(n) {
  return `${Number(n || 0).toLocaleString()} credits`;
}

export function usd(n) {
  return `$${(Number(n || 0) / 10_000_000).toFixed(4)}`;
}

export const TERMINAL = ["completed", "failed", "cancelled"];
