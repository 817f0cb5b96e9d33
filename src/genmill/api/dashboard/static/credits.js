// Credits and usage over time: the balances, and a chart of the credits the account's tasks consumed per day
// (per hour within the last two days), drawn as inline SVG from the task history.
import { api, credits, h, session, usd } from "./core.js";

const MAX_PAGES = 10;

async function consumedTasks(signal) {
  const tasks = [];
  for (let page = 1; page <= MAX_PAGES; page += 1) {
    const result = await api(`/api/open/tasks/histories?page=${page}&page_size=100&status=completed`, { signal });
    tasks.push(...result.data);
    if (tasks.length >= result.total || !result.data.length) break;
  }
  return tasks;
}

function buckets(tasks) {
  const times = tasks.map((t) => new Date(t.meta.ended_at).getTime()).filter((t) => t > 0);
  if (!times.length) return { hourly: true, bars: [] };
  const span = Date.now() - Math.min(...times);
  const hourly = span < 2 * 86_400_000;
  const size = hourly ? 3_600_000 : 86_400_000;
  const sums = new Map();
  for (const task of tasks) {
    const at = new Date(task.meta.ended_at).getTime();
    const start = Math.floor(at / size) * size;
    sums.set(start, (sums.get(start) || 0) + Number((task.meta.usage && task.meta.usage.consume) || 0));
  }
  const first = Math.min(...sums.keys());
  const last = Math.floor(Date.now() / size) * size;
  const bars = [];
  for (let at = first; at <= last && bars.length < 60; at += size) bars.push({ at, value: sums.get(at) || 0 });
  return { hourly, bars: bars.slice(-60) };
}

function chart({ hourly, bars }) {
  if (!bars.length) return h("p", { id: "usage-chart-empty" }, "No credits used yet.");
  const width = 640;
  const height = 200;
  const pad = 30;
  const top = Math.max(1, ...bars.map((b) => b.value));
  const step = (width - pad * 2) / bars.length;
  const svg = h("svg:svg", { viewBox: `0 0 ${width} ${height + 40}`, class: "chart", id: "usage-chart", role: "img",
    "aria-label": `credits used per ${hourly ? "hour" : "day"}` });
  svg.append(h("svg:line", { x1: pad, y1: height, x2: width - pad, y2: height, class: "axis" }));
  svg.append(h("svg:text", { x: pad, y: 14, class: "label" }, `${top.toLocaleString()} credits`));
  bars.forEach((bar, i) => {
    const barHeight = Math.round(((height - 24) * bar.value) / top);
    const rect = h("svg:rect", { x: (pad + i * step + 1).toFixed(1), y: height - barHeight, width: Math.max(1, step - 2).toFixed(1),
      height: barHeight, class: "bar", "data-value": bar.value });
    rect.append(h("svg:title", {}, `${new Date(bar.at).toLocaleString()}: ${bar.value.toLocaleString()} credits`));
    svg.append(rect);
  });
  const fmt = (at) => (hourly ? new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : new Date(at).toLocaleDateString());
  svg.append(h("svg:text", { x: pad, y: height + 18, class: "label" }, fmt(bars[0].at)));
  svg.append(h("svg:text", { x: width - pad, y: height + 18, class: "label", "text-anchor": "end" }, fmt(bars[bars.length - 1].at)));
  return svg;
}

export async function renderCredits(main, signal) {
  main.replaceChildren(h("h1", {}, "Credits and usage"), h("p", {}, "Loading…"));
  const info = await api("/account/info", { signal });
  const pack = info.credit_pack_info;
  const balance = (label, value, id) => h("div", { class: "balance" }, h("span", {}, label), h("strong", { id }, credits(value)));
  const tasks = await consumedTasks(signal);
  const key = session.key;
  main.replaceChildren(
    h("h1", {}, "Credits and usage"),
    h("p", {}, `Account ${info.account_name || info.account_id} · plan ${info.plan || "—"} · available ${usd(pack.available_credits)}`),
    h("div", { class: "balances" },
      balance("available", pack.available_credits, "credits-available"),
      balance("reserved by running tasks", pack.frozen_credits, "credits-frozen"),
      balance("used", pack.used_credits, "credits-used"),
      balance("total", pack.total_credits, "credits-total")),
    h("h2", {}, "Credits used"), chart(buckets(tasks)),
    h("h2", {}, "Keys"),
    h("p", {}, "Signed in with the key ending ", h("code", {}, key.slice(-4)),
      ". Keys are created and revoked by the operator (`genmill keys`, or the Operator page)."));
}
