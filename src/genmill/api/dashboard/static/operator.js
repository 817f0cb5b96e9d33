// Operator pages: need the admin API (/admin/...), which this build does not have yet.
import { h } from "./core.js";

export async function renderOperator(main) {
  main.replaceChildren(h("h1", {}, "Operator"), h("p", {}, "This server has no admin API yet; use `genmill accounts` and `genmill keys`."));
}
