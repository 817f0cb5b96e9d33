// The dashboard's entry point: sign-in, navigation between the pages (the URL's #fragment), and the page's
// lifetime (each page gets an AbortSignal that stops its requests and event streams when the user leaves it).
import { api, h, session } from "./core.js";
import { renderCredits } from "./credits.js";
import { renderOperator } from "./operator.js";
import { renderPlayground } from "./playground.js";
import { renderTask, renderTasks } from "./tasks.js";

const main = () => document.getElementById("main");
let current = null;

// Shows `hash`: a new fragment routes through "hashchange", the same one is drawn again here (never both, or the
// second drawing would replace a page the user had started to use).
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function renderSignIn(target) {
  const key = h("input", { type: "password", id: "api-key", name: "api_key", autocomplete: "off", required: true, size: "40" });
  const error = h("p", { class: "error", id: "sign-in-error" });
  const form = h("form", { id: "sign-in", class: "sign-in" },
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste an API key of your account. It is kept in this tab only and sent as the X-API-Key header."),
    h("label", { for: "api-key" }, "API key "), key, " ", h("button", { type: "submit" }, "Sign in"), error,
    h("p", {}, "Operators: ", h("a", { href: "#/operator" }, "sign in with an operator token"), "."));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.key = key.value.trim();
    try {
      await api("/account/info");
      go("#/tasks");
    } catch (failure) {
      session.key = "";
      error.textContent = failure.status === 401 ? "That key was not accepted." : failure.message;
    }
  });
  target.replaceChildren(form);
  key.focus();
}

async function showWho() {
  try {
    const info = await api("/account/info");
    document.getElementById("who").textContent = info.account_name || info.account_id;
  } catch {
    document.getElementById("who").textContent = "";
  }
}

async function route() {
  if (current) current.abort();
  current = new AbortController();
  const { signal } = current;
  const target = main();
  const [path, query] = (location.hash.slice(1) || "/tasks").split("?");
  const params = new URLSearchParams(query || "");
  const signedIn = Boolean(session.key);
  document.getElementById("nav").hidden = !signedIn && !session.adminToken;
  document.getElementById("sign-out").hidden = !signedIn && !session.adminToken;
  if (path === "/operator") {
    await guard(renderOperator(target, signal, params), target);
    return;
  }
  if (!signedIn) {
    renderSignIn(target);
    return;
  }
  showWho();
  const parts = path.split("/").filter(Boolean);
  let page;
  if (parts[0] === "task" && parts[1]) page = renderTask(target, signal, decodeURIComponent(parts[1]));
  else if (parts[0] === "playground") page = renderPlayground(target, signal, params);
  else if (parts[0] === "credits") page = renderCredits(target, signal);
  else page = renderTasks(target, signal, params);
  await guard(page, target);
}

async function guard(page, target) {
  try {
    await page;
  } catch (error) {
    if (error.name === "AbortError") return;
    if (error.status === 401 && !location.hash.startsWith("#/operator")) {
      session.key = "";
      route();
      return;
    }
    target.append(h("p", { class: "error" }, error.message));
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  session.key = "";
  session.adminToken = "";
  go("#/tasks");
});
window.addEventListener("hashchange", route);
route();
