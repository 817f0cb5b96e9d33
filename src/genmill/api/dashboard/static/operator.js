// Operator pages, on the admin API (/admin/..., an operator token as a bearer): accounts and top-ups, keys,
// worker tokens, workers online with what each serves and its GPU memory, queue depth per model, webhook failures.
import { api, credits, formatTime, h, session } from "./core.js";

function table(id, headings, rows) {
  if (!rows.length) return h("p", { id: `${id}-empty` }, "None.");
  return h("table", { id }, h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))), h("tbody", {}, rows));
}

function bytes(n) {
  return `${(Number(n) / 2 ** 30).toFixed(2)} GiB`;
}

function secretNotice(target, label, secret) {
  target.replaceChildren(h("p", { class: "secret" }, `${label} (shown once, copy it now): `, h("code", { class: "new-secret" }, secret)));
}

function renderTokenForm(main, refresh) {
  const token = h("input", { type: "password", id: "operator-token", autocomplete: "off", required: true, size: "40" });
  const error = h("p", { class: "error", id: "operator-error" });
  const form = h("form", { id: "operator-sign-in", class: "sign-in" },
    h("h1", {}, "Operator sign-in"),
    h("p", {}, "An operator token (`genmill admin token create`). It is kept in this tab only."),
    h("label", { for: "operator-token" }, "Operator token "), token, " ", h("button", { type: "submit" }, "Sign in"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.adminToken = token.value.trim();
    try {
      await api("/admin/accounts", { admin: true });
      document.getElementById("nav").hidden = false;
      document.getElementById("sign-out").hidden = false;
      refresh();
    } catch (failure) {
      session.adminToken = "";
      error.textContent = failure.message;
    }
  });
  main.replaceChildren(form);
}

function accountRow(account, refresh, notices) {
  const amount = h("input", { type: "number", min: "1", step: "1", name: "credits", class: "topup-credits", placeholder: "credits" });
  const topup = h("form", { class: "topup" }, amount, " ", h("button", { type: "submit" }, "Top up"));
  topup.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = Number(amount.value);
    if (!Number.isInteger(value) || value <= 0) return;
    topup.querySelector("button").disabled = true;
    try {
      // One Idempotency-Key per top-up: a retried click after a lost answer adds nothing twice.
      await api(`/admin/accounts/${encodeURIComponent(account.account_id)}/topups`, {
        method: "POST", admin: true, body: { credits: value }, headers: { "Idempotency-Key": crypto.randomUUID() } });
      refresh();
    } catch (error) {
      notices.replaceChildren(h("p", { class: "error" }, error.message));
      topup.querySelector("button").disabled = false;
    }
  });
  const toggle = h("button", { type: "button", class: "toggle-enabled" }, account.is_enabled ? "Disable" : "Enable");
  toggle.addEventListener("click", async () => {
    await api(`/admin/accounts/${encodeURIComponent(account.account_id)}`, { method: "PATCH", admin: true, body: { is_enabled: !account.is_enabled } });
    refresh();
  });
  const newKey = h("button", { type: "button", class: "create-key" }, "New key");
  newKey.addEventListener("click", async () => {
    const created = await api(`/admin/accounts/${encodeURIComponent(account.account_id)}/keys`, { method: "POST", admin: true, body: { name: "dashboard" } });
    secretNotice(notices, `API key for ${account.name}`, created.secret);
    refresh(false);
  });
  const c = account.credits;
  return h("tr", { "data-account-id": account.account_id },
    h("td", {}, account.name), h("td", {}, h("code", {}, account.account_id)), h("td", {}, account.is_enabled ? "enabled" : "disabled"),
    h("td", { class: "available" }, credits(c.available)), h("td", {}, credits(c.frozen)), h("td", {}, credits(c.used)),
    h("td", { class: "total" }, credits(c.total)), h("td", {}, String(account.max_concurrency)),
    h("td", {}, topup), h("td", {}, toggle, " ", newKey));
}

function revokeButton(path, refresh) {
  const button = h("button", { type: "button", class: "revoke" }, "Revoke");
  button.addEventListener("click", async () => {
    await api(path, { method: "DELETE", admin: true });
    refresh(false);
  });
  return button;
}

export async function renderOperator(main, signal) {
  if (!session.adminToken) {
    renderTokenForm(main, () => renderOperator(main, signal));
    return;
  }
  const notices = h("div", { id: "operator-notices" });
  const refresh = (clear = true) => {
    if (clear) notices.replaceChildren();
    return draw();
  };
  const body = h("div", { id: "operator" }, h("p", {}, "Loading…"));
  main.replaceChildren(h("h1", {}, "Operator"), notices, body);

  async function draw() {
    let accounts, keys, tokens, workers, queue, failures;
    try {
      [accounts, keys, tokens, workers, queue, failures] = await Promise.all([
        api("/admin/accounts", { admin: true, signal }), api("/admin/keys", { admin: true, signal }),
        api("/admin/worker-tokens", { admin: true, signal }), api("/admin/workers", { admin: true, signal }),
        api("/admin/queue", { admin: true, signal }), api("/admin/webhooks/failures", { admin: true, signal })]);
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        session.adminToken = "";
        renderOperator(main, signal);
        return;
      }
      throw error;
    }
    const names = Object.fromEntries(accounts.map((a) => [a.account_id, a.name]));
    const newAccount = h("form", { id: "create-account", class: "inline-form" },
      h("input", { name: "name", placeholder: "name", required: true }), " ",
      h("input", { name: "credits", type: "number", min: "0", step: "1", placeholder: "credits" }), " ",
      h("button", { type: "submit" }, "Create account"));
    newAccount.addEventListener("submit", async (event) => {
      event.preventDefault();
      await api("/admin/accounts", { method: "POST", admin: true,
        body: { name: newAccount.elements.name.value, credits: Number(newAccount.elements.credits.value || 0) } });
      refresh();
    });
    const newToken = h("form", { id: "create-worker-token", class: "inline-form" },
      h("input", { name: "name", placeholder: "worker name" }), " ",
      h("select", { name: "account_id" }, h("option", { value: "" }, "public pool"),
        accounts.map((a) => h("option", { value: a.account_id }, `private pool of ${a.name}`))), " ",
      h("button", { type: "submit" }, "Create worker token"));
    newToken.addEventListener("submit", async (event) => {
      event.preventDefault();
      const created = await api("/admin/worker-tokens", { method: "POST", admin: true,
        body: { name: newToken.elements.name.value, account_id: newToken.elements.account_id.value || null } });
      secretNotice(notices, "Worker token", created.secret);
      refresh(false);
    });
    const local = workers.in_process;
    body.replaceChildren(
      h("h2", {}, "Accounts"), newAccount,
      table("accounts", ["name", "id", "state", "available", "reserved", "used", "total", "concurrency", "top up", ""],
        accounts.map((a) => accountRow(a, refresh, notices))),
      h("h2", {}, "Workers online"),
      h("p", { id: "in-process-workers" }, `This process: ${local.slots} worker slot(s); loaded: ${local.loaded_backends.join(", ") || "nothing"}; `,
        `GPU memory in use: ${Object.entries(local.memory_used_bytes).map(([d, n]) => `${d} ${bytes(n)}`).join(", ") || "none"}`),
      h("p", {}, `Serves: ${local.capabilities.map((c) => `${c.model}/${c.task_type}`).join(", ") || "nothing"}`),
      h("h3", {}, "Remote workers"),
      table("remote-workers", ["name", "pool", "serves", "last seen"], workers.remote.map((w) => h("tr", {},
        h("td", {}, w.name || w.worker_id), h("td", {}, w.pool), h("td", {}, w.capabilities.map((c) => `${c.model}/${c.task_type}`).join(", ")),
        h("td", {}, formatTime(w.last_seen_at))))),
      h("h2", {}, "Queue"),
      table("queue", ["model", "task type", "pool", "status", "tasks"], queue.map((q) => h("tr", {},
        h("td", {}, q.model), h("td", {}, q.task_type), h("td", {}, q.pool), h("td", {}, q.status), h("td", {}, String(q.count))))),
      h("h2", {}, "API keys"),
      table("keys", ["account", "name", "prefix", "created", "revoked", ""], keys.map((k) => h("tr", { "data-key-id": k.key_id },
        h("td", {}, names[k.account_id] || k.account_id), h("td", {}, k.name), h("td", {}, h("code", {}, k.prefix)),
        h("td", {}, formatTime(k.created_at)), h("td", {}, k.revoked_at ? formatTime(k.revoked_at) : ""),
        h("td", {}, k.revoked_at ? "" : revokeButton(`/admin/keys/${encodeURIComponent(k.key_id)}`, refresh))))),
      h("h2", {}, "Worker tokens"), newToken,
      table("worker-tokens", ["name", "pool", "prefix", "created", "revoked", ""], tokens.map((t) => h("tr", {},
        h("td", {}, t.name), h("td", {}, names[t.pool] ? `private: ${names[t.pool]}` : t.pool), h("td", {}, h("code", {}, t.prefix)),
        h("td", {}, formatTime(t.created_at)), h("td", {}, t.revoked_at ? formatTime(t.revoked_at) : ""),
        h("td", {}, t.revoked_at ? "" : revokeButton(`/admin/worker-tokens/${encodeURIComponent(t.token_id)}`, refresh))))),
      h("h2", {}, "Webhook failures"),
      table("webhook-failures", ["task", "account", "endpoint", "state", "attempts", "last answer"], failures.map((f) => h("tr", {},
        h("td", {}, h("code", {}, f.task_id)), h("td", {}, names[f.account_id] || f.account_id), h("td", {}, f.endpoint),
        h("td", {}, f.state), h("td", {}, String(f.attempts)), h("td", {}, `${f.last_status_code ?? ""} ${f.last_error || ""}`.trim())))));
  }
  await draw();
}
