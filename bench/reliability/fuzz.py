"""Schemathesis against the server's own `/openapi.json`, the catalog's real input schemas, and hostile inputs.

Three sources of requests, all sent with an API key and a worker token, all tallied by status:

1. every operation of `/openapi.json`, with schemathesis' positive (schema-valid) and negative (schema-breaking)
   cases, `operation_examples` of each per operation;
2. the create endpoint's body per catalog entry: the OpenAPI spec types `input` as any object, so each entry's
   input schema (`GET /api/v1/models` answers `entry.input_model.model_json_schema()`) becomes an operation of a
   derived spec, which only generates; the bodies go to `POST /api/v1/task`;
3. `hostile.hostile_inputs()`: lone surrogates, NUL, deep nesting, huge numbers, NaN, an absurd `Last-Event-ID`.

So that every schema-valid create is stored (not refused for want of a worker), an idle worker registers every
catalog entry and never claims: tasks stay pending, and GET and history must still read them. Afterwards every
stored task and every history page is read back (a stored row must never make them fail), a task stored without
a 200 is a failure (a retrying client would pay twice), the pending tasks are cancelled, and the audit checks
that nothing was billed twice and the ledger reconciles.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bench.reliability.audit import audit, wait_settled
from bench.reliability.client import Client, Tally
from bench.reliability.deployment import Deployment
from bench.reliability.hostile import CREATE, hostile_inputs
from bench.reliability.scenario import Row, RunContext

ENTRY_PATH = "/__catalog__/{index}"
ANSWER_WITHIN_S = 15


def with_entry_operations(spec: dict[str, Any], models: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of `spec` with one POST operation per catalog entry whose body is that entry's create request: the
    `model` and `task_type` fixed, `input` the entry's JSON schema (its `$defs` moved to the components)."""
    derived: dict[str, Any] = json.loads(json.dumps(spec))
    components = derived.setdefault("components", {}).setdefault("schemas", {})
    for index, entry in enumerate(models):
        prefix = f"#/components/schemas/Entry{index}_"
        schema = json.loads(json.dumps(entry["input_schema"]).replace('"#/$defs/', f'"{prefix}'))
        for name, definition in schema.pop("$defs", {}).items():
            components[f"Entry{index}_{name}"] = definition
        body = {
            "type": "object",
            "required": ["model", "task_type", "input"],
            "properties": {
                "model": {"const": entry["model"]},
                "task_type": {"const": entry["task_type"]},
                "input": schema,
                "config": {"anyOf": [{"$ref": "#/components/schemas/TaskConfig"}, {"type": "null"}]},
            },
        }
        derived["paths"][ENTRY_PATH.format(index=index)] = {
            "post": {
                "operationId": f"create_{index}",
                "summary": f"create {entry['model']} {entry['task_type']}",
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {"200": {"description": "created"}},
            }
        }
    return derived


def negatable_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """Operations with a body or a query string: the others take only strings in their path and headers, which
    schemathesis cannot break (it searches for seconds before it gives up), so they get valid cases only."""
    found = set()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if "requestBody" in operation or any(p.get("in") == "query" for p in operation.get("parameters", [])):
                found.add((method.upper(), path))
    return found


def generate(strategy: Any, examples: int, each: Callable[[Any], None]) -> None:
    """Feed `examples` derandomized (repeatable) examples of `strategy` to `each`, which must not raise."""
    import hypothesis
    from hypothesis import HealthCheck, Phase

    @hypothesis.given(strategy)
    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def probe(example: Any) -> None:
        each(example)

    probe()


@dataclass
class Fuzzer:
    client: Client
    base_url: str
    key: str
    worker_token: str
    acknowledged: list[str] = field(default_factory=list)
    valid: int = 0
    invalid: int = 0
    no_answer: int = 0
    not_generated: list[str] = field(default_factory=list)

    def _count(self, negative: bool) -> None:
        if negative:
            self.invalid += 1
        else:
            self.valid += 1

    def _note_created(self, status: int, body: bytes) -> None:
        if status == 200:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.acknowledged.append(str(json.loads(body)["data"]["task_id"]))

    def call(self, case: Any, negative: bool) -> None:
        """Send a generated case as schemathesis builds it (its path, query, headers and body)."""
        headers = {"X-API-Key": self.key, "Authorization": f"Bearer {self.worker_token}"}
        try:
            response = case.call(base_url=self.base_url, headers=headers, timeout=ANSWER_WITHIN_S)
        except Exception:  # no answer (a timeout, a reset): not a 5xx, counted apart
            self.no_answer += 1
            return
        self._count(negative)
        self.client.tally.record(case.method, case.formatted_path, response.status_code, response.content)
        if case.method.upper() == "POST" and case.formatted_path == CREATE:
            self._note_created(response.status_code, response.content)

    def create(self, case: Any, negative: bool) -> None:
        """Send a generated catalog-entry body to the create endpoint."""
        body = case.body
        raw = body if isinstance(body, bytes) else None
        try:
            answer = self.client.send(
                "POST", CREATE, self.key, None if raw is not None else body, raw=raw, timeout=ANSWER_WITHIN_S
            )
        except OSError:
            self.no_answer += 1
            return
        self._count(negative)
        self._note_created(answer.status, answer.body)

    def operations(self, operations: list[Any], negatable: set[tuple[str, str]], examples: int) -> None:
        from schemathesis import GenerationMode

        for operation in operations:
            modes = [GenerationMode.POSITIVE]
            if (operation.method.upper(), operation.path) in negatable:
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                negative = mode == GenerationMode.NEGATIVE
                try:
                    generate(
                        operation.as_strategy(generation_mode=mode), examples, partial(self.call, negative=negative)
                    )
                except Exception as exc:  # a schema schemathesis cannot generate for: named, not fatal
                    self.not_generated.append(f"{operation.label} {mode.value}: {type(exc).__name__}")

    def entries(self, entries: list[Any], examples: int, negative_examples: int) -> None:
        """Valid bodies for every entry at once (one example holds one body per entry), then invalid ones per
        entry (slower to generate, so the quick mode has none)."""
        from hypothesis import strategies as st
        from schemathesis import GenerationMode

        def send_all(cases: tuple[Any, ...]) -> None:
            for case in cases:
                self.create(case, False)

        strategies = [op.as_strategy(generation_mode=GenerationMode.POSITIVE) for op in entries]
        generate(st.tuples(*strategies), examples, send_all)
        for op in entries if negative_examples else []:
            try:
                generate(
                    op.as_strategy(generation_mode=GenerationMode.NEGATIVE),
                    negative_examples,
                    partial(self.create, negative=True),
                )
            except Exception as exc:
                self.not_generated.append(f"{op.label} negative: {type(exc).__name__}")

    def hostile(self, finished_task: str) -> list[str]:
        """Send every hostile input; returns what answered 5xx or not at all."""
        failures = []
        for item in hostile_inputs(finished_task):
            try:
                answer = self.client.send(
                    item.method,
                    item.path,
                    None if item.keyless else self.key,
                    raw=item.body,
                    headers=dict(item.headers),
                    timeout=30,
                )
            except OSError as exc:
                failures.append(f"{item.label}: no answer ({type(exc).__name__})")
                continue
            if item.path == CREATE:
                self._note_created(answer.status, answer.body)
            if answer.status >= 500:
                failures.append(f"{item.label}: {answer.status}")
        return failures


def run_fuzz(ctx: RunContext, dep: Deployment) -> Row:
    import schemathesis
    from schemathesis.core.result import Ok

    row = Row.begin("schemathesis + hostile inputs", dep.engine)
    tally = Tally()
    client = dep.client(tally)
    owner = dep.new_account("fuzz", credits=10**13)
    with dep.store() as store:
        token, _ = store.workers.create_token("fuzz-idle")
    models = client.send("GET", "/api/v1/models").data()["models"]
    everything = [{"model": m["model"], "task_type": m["task_type"]} for m in models]
    idle = client.send(
        "POST",
        "/api/v1/workers/register",
        body={"name": "fuzz-idle", "capabilities": everything},
        headers={"Authorization": f"Bearer {token}"},
    )
    if idle.status != 200:
        raise RuntimeError(f"could not register the idle worker: {idle.status} {idle.body[:200]!r}")
    fuzzer = Fuzzer(client, dep.url, owner.key, token)
    spec = client.send("GET", "/openapi.json").json()
    schema = schemathesis.openapi.from_dict(with_entry_operations(spec, models))
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    entries = [op for op in operations if op.path.startswith("/__catalog__/")]
    plain = [op for op in operations if op not in entries]
    sizes = ctx.sizes
    fuzzer.operations(plain, negatable_operations(spec), sizes.operation_examples)
    fuzzer.entries(entries, sizes.entry_examples, sizes.entry_negative_examples)
    ctx.say(f"  schemathesis: {fuzzer.valid} valid, {fuzzer.invalid} invalid cases")

    generated_5xx = tally.five_xx
    finished = client.send(
        "POST",
        CREATE,
        owner.key,
        {"model": "genmill/echo", "task_type": "echo", "input": {}},
        headers={"Prefer": "wait=30"},
    )
    finished_id = str(finished.data()["task_id"]) if finished.status == 200 else "none"
    fuzzer.acknowledged.append(finished_id)
    hostile_failures = fuzzer.hostile(finished_id)

    hostile_5xx = tally.five_xx - generated_5xx
    stored = list(dep.tasks_of(owner.account_id))
    unanswered = set(stored) - set(fuzzer.acknowledged)
    if unanswered:
        row.fail(
            f"{len(unanswered)} tasks were stored (and their credits frozen) although their create was not answered 200"
        )
    reads = read_back(client, owner.key, stored)
    read_back_5xx = tally.five_xx - generated_5xx - hostile_5xx
    row.figures = {
        "generated_5xx": generated_5xx,
        "hostile_5xx": hostile_5xx,
        "read_back_5xx": read_back_5xx,
        "stored_unanswered": len(unanswered),
    }
    client.send("DELETE", f"/api/v1/tasks?created_before={int(time.time()) + 3600}", owner.key)
    wait_settled(dep.database_url, stored, timeout_s=120)
    result = audit(dep.database_url, fuzzer.acknowledged, [owner.account_id])
    hostile_count = len(hostile_inputs(finished_id))
    row.load = (
        f"{tally.requests} requests: {fuzzer.valid} valid and {fuzzer.invalid} invalid generated cases over "
        f"{len(plain)} operations and {len(entries)} catalog input schemas, {hostile_count} hostile, {reads} reads back"
    )
    row.bad_inputs = (
        f"{fuzzer.invalid} schema-breaking cases; {hostile_count} hostile: lone surrogates, NUL, nesting 300 to 1500, "
        "NaN, Infinity, 400-digit and 10**19 numbers, bad Last-Event-ID"
    )
    row.finish(tally, result)
    row.notes.append(
        f"5xx answers: {generated_5xx} to generated cases, {hostile_5xx} to hostile inputs, {read_back_5xx} to "
        "reading the stored tasks back"
    )
    row.notes += [f"hostile input answered {f}" for f in hostile_failures]
    row.notes += [f"server error: {e}" for e in dict.fromkeys(tally.server_errors)][:12]
    if fuzzer.no_answer:
        row.notes.append(f"{fuzzer.no_answer} generated requests got no answer within {ANSWER_WITHIN_S} s")
    if fuzzer.not_generated:
        row.notes.append(f"not generated: {'; '.join(fuzzer.not_generated[:5])}")
    return row


def read_back(client: Client, key: str, task_ids: list[str]) -> int:
    """GET every stored task and every page of the history; returns how many reads were made."""
    reads = 0
    for task_id in task_ids:
        client.send("GET", f"/api/v1/task/{task_id}", key)
        reads += 1
    for page in range(1, len(task_ids) // 100 + 2):  # every page, even after one that failed
        client.send("GET", f"/api/open/tasks/histories?page={page}&page_size=100", key)
        reads += 1
    return reads
