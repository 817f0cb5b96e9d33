// The playground: a form for any catalog entry, generated from its input JSON schema (GET /api/v1/models), with
// files uploaded from the browser (POST /api/ephemeral_resource) and the price quoted before submitting
// (POST /api/v1/price, the same rules as the create).
import { api, credits, h, usd } from "./core.js";

const MEDIA_FIELD = /(image|audio|video|mask|file|face|ref_|_url$|^url$|glb|model_file|song|voice|clip)/i;

function resolve(schema, root) {
  if (!schema) return {};
  if (schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return { ...resolve((root.$defs || {})[name], root), ...Object.fromEntries(Object.entries(schema).filter(([k]) => k !== "$ref")) };
  }
  const options = schema.anyOf || schema.oneOf;
  if (options) {
    const concrete = options.filter((o) => o.type !== "null");
    if (concrete.length === 1) return { ...resolve(concrete[0], root), ...schema, anyOf: undefined, oneOf: undefined, nullable: true };
  }
  if (schema.allOf && schema.allOf.length === 1) return { ...resolve(schema.allOf[0], root), ...schema, allOf: undefined };
  return schema;
}

function readFileAsDataUrl(file) {
  return new Promise((resolveRead, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolveRead(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// One field of the form: its control, and how its value is read back (undefined: leave it to the default).
function field(name, raw, root, required, onChange) {
  const schema = resolve(raw, root);
  const id = `field-${name}`;
  const label = h("label", { for: id }, schema.title || name, required ? h("span", { class: "required", title: "required" }, " *") : "");
  const help = schema.description ? h("small", { class: "help" }, schema.description) : null;
  let control;
  let read;
  let extra = null;
  const hasDefault = Object.prototype.hasOwnProperty.call(schema, "default");
  if (Array.isArray(schema.enum)) {
    control = h("select", { id, name }, required || hasDefault ? null : h("option", { value: "" }, "—"),
      schema.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
    if (hasDefault) control.value = JSON.stringify(schema.default);
    read = () => (control.value === "" ? undefined : JSON.parse(control.value));
  } else if (schema.type === "boolean") {
    control = h("input", { id, name, type: "checkbox" });
    control.checked = Boolean(schema.default);
    read = () => control.checked;
  } else if (schema.type === "integer" || schema.type === "number") {
    control = h("input", { id, name, type: "number", min: schema.minimum ?? schema.exclusiveMinimum, max: schema.maximum ?? schema.exclusiveMaximum,
      step: schema.type === "integer" ? "1" : "any" });
    if (hasDefault && schema.default !== null) control.value = String(schema.default);
    read = () => (control.value === "" ? undefined : Number(control.value));
  } else if (schema.type === "string") {
    const long = (schema.maxLength || 0) > 200 || /prompt|text|lyrics|description/i.test(name);
    control = long ? h("textarea", { id, name, rows: "3" }) : h("input", { id, name, type: "text" });
    if (hasDefault && schema.default !== null) control.value = String(schema.default);
    read = () => (control.value === "" ? undefined : control.value);
    if (MEDIA_FIELD.test(name)) {
      const status = h("span", { class: "upload-status", id: `upload-status-${name}` });
      const picker = h("input", { type: "file", id: `upload-${name}`, "data-field": name });
      picker.addEventListener("change", async () => {
        const file = picker.files && picker.files[0];
        if (!file) return;
        status.textContent = `uploading ${file.name}…`;
        try {
          const data = await readFileAsDataUrl(file);
          const uploaded = await api("/api/ephemeral_resource", { method: "POST", body: { file_name: file.name, file_data: data } });
          control.value = uploaded.url;
          status.textContent = `uploaded ${file.name}`;
          status.dataset.uploaded = "true";
          onChange();
        } catch (error) {
          status.textContent = `upload failed: ${error.message}`;
        }
      });
      extra = h("div", { class: "upload" }, "or upload a file: ", picker, " ", status);
    }
  } else {
    // Arrays and objects: JSON, as the API takes them.
    control = h("textarea", { id, name, rows: "3", placeholder: "JSON" });
    if (hasDefault && schema.default !== null) control.value = JSON.stringify(schema.default);
    read = () => {
      if (control.value.trim() === "") return undefined;
      try { return JSON.parse(control.value); } catch { throw new Error(`${name}: not valid JSON`); }
    };
  }
  control.addEventListener("input", onChange);
  control.addEventListener("change", onChange);
  return { name, read, element: h("div", { class: "field" }, label, control, extra, help) };
}

function entryLabel(entry) {
  const state = entry.available ? "" : " (not served here)";
  return `${entry.model} · ${entry.task_type}${state}`;
}

export async function renderPlayground(main, signal, params) {
  const catalog = await api("/api/v1/models", { signal });
  const entries = [...catalog.models].sort((a, b) => Number(b.available) - Number(a.available) || a.model.localeCompare(b.model));
  const picker = h("select", { id: "entry-select" },
    entries.map((e, i) => h("option", { value: String(i) }, entryLabel(e))));
  const wanted = entries.findIndex((e) => e.model === params.get("model") && e.task_type === params.get("task_type"));
  if (wanted >= 0) picker.value = String(wanted);
  const holder = h("div", { id: "entry-form" });
  main.replaceChildren(h("h1", {}, "Playground"), h("label", {}, "Model and task ", picker), holder);
  const show = () => {
    const entry = entries[Number(picker.value)];
    holder.replaceChildren(entryForm(entry, signal));
  };
  picker.addEventListener("change", () => {
    const entry = entries[Number(picker.value)];
    history.replaceState(null, "", `#/playground?${new URLSearchParams({ model: entry.model, task_type: entry.task_type })}`);
    show();
  });
  show();
}

function entryForm(entry, signal) {
  const schema = entry.input_schema || {};
  const required = new Set(schema.required || []);
  const price = h("p", { id: "price", class: "price" }, "Price: …");
  const message = h("p", { id: "submit-message", class: "error" });
  let timer = null;
  const fields = [];
  const collect = () => {
    const input = {};
    for (const f of fields) {
      const value = f.read();
      if (value !== undefined) input[f.name] = value;
    }
    return { model: entry.model, task_type: entry.task_type, input };
  };
  const quote = async () => {
    let body;
    try { body = collect(); } catch (error) { price.textContent = error.message; return; }
    const missing = [...required].filter((name) => !(name in body.input));
    if (missing.length) {
      price.textContent = `Price: fill in ${missing.join(", ")}`;
      delete price.dataset.credits;
      return;
    }
    try {
      const answer = await api("/api/v1/price", { method: "POST", body, signal });
      price.textContent = `Price: ${credits(answer.price_credits)} (${usd(answer.price_credits)})${answer.available ? "" : ` — not served here: ${answer.reason}`}`;
      price.dataset.credits = String(answer.price_credits);
    } catch (error) {
      price.textContent = `Price: ${error.message}`;
      delete price.dataset.credits;
    }
  };
  const changed = () => { clearTimeout(timer); timer = setTimeout(quote, 250); };
  for (const [name, raw] of Object.entries(schema.properties || {})) fields.push(field(name, raw, schema, required.has(name), changed));
  const submit = h("button", { type: "submit", id: "run-task" }, "Run");
  const form = h("form", { id: "playground-form", class: "playground" },
    entry.description ? h("p", { class: "help" }, entry.description) : null,
    entry.served_by ? h("p", { class: "served-by" }, `Served by ${entry.served_by.model}${entry.served_by.stand_in ? " (a stand-in)" : ""}`) : null,
    entry.available ? null : h("p", { class: "error" }, `Not served here: ${entry.reason || "no worker serves it"}`),
    fields.map((f) => f.element), price, submit, message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    submit.disabled = true;
    try {
      const task = await api("/api/v1/task", { method: "POST", body: collect() });
      location.hash = `#/task/${encodeURIComponent(task.task_id)}`;
    } catch (error) {
      message.textContent = error.message;
    } finally {
      submit.disabled = false;
    }
  });
  quote();
  return form;
}
