"""Inputs a schema-driven generator does not make, each one a way issue 13 found to get a 500 or a stuck task.

JSON text, not Python objects, because several are not representable otherwise: a lone UTF-16 surrogate
(`"\\udc00"` is valid JSON escaping but no valid Unicode), NaN and Infinity (Python's JSON reader, and so the
server's, accepts them), nesting deeper than a serializer recurses, integers of hundreds of digits.
"""

from __future__ import annotations

from dataclasses import dataclass

CREATE = "/api/v1/task"


@dataclass(frozen=True)
class Hostile:
    label: str
    method: str
    path: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    keyless: bool = False


def _echo(input_json: str, config: str = "") -> bytes:
    extra = f',"config":{config}' if config else ""
    return ('{"model":"genmill/echo","task_type":"echo","input":' + input_json + extra + "}").encode()


def _nested(depth: int) -> bytes:
    return _echo('{"payload":' + "[" * depth + "]" * depth + "}")


def hostile_inputs(finished_task: str) -> list[Hostile]:
    """Sent with the fuzzing account's key (unless `keyless`). `finished_task` is one of its completed tasks, so
    that its event stream ends at once."""
    events = f"/api/v1/task/{finished_task}/events"
    return [
        Hostile("lone surrogate in input", "POST", CREATE, _echo('{"payload":"\\udc00"}')),
        Hostile(
            "lone surrogate in webhook secret",
            "POST",
            CREATE,
            _echo("{}", '{"webhook_config":{"endpoint":"http://127.0.0.1:9/h","secret":"\\ud800"}}'),
        ),
        Hostile("lone surrogate in model", "POST", CREATE, b'{"model":"\\udc00","task_type":"echo","input":{}}'),
        Hostile("NUL in input", "POST", CREATE, _echo('{"payload":"a\\u0000b"}')),
        Hostile("NUL in model", "POST", CREATE, b'{"model":"genmill/echo\\u0000","task_type":"echo","input":{}}'),
        Hostile("NUL in task path", "GET", "/api/v1/task/%00"),
        Hostile("NUL in files path, no key", "GET", "/files/%00", keyless=True),
        Hostile("NUL in history query", "GET", "/api/open/tasks/histories?model=%00"),
        Hostile("nesting 300", "POST", CREATE, _nested(300)),
        Hostile("nesting 900", "POST", CREATE, _nested(900)),
        Hostile("nesting 1500", "POST", CREATE, _nested(1500)),
        Hostile("NaN in input", "POST", CREATE, _echo('{"payload":NaN}')),
        Hostile("Infinity in input", "POST", CREATE, _echo('{"payload":[Infinity,-Infinity]}')),
        Hostile("400-digit integer in input", "POST", CREATE, _echo('{"payload":' + "9" * 400 + "}")),
        Hostile("sleep_ms 10**20", "POST", CREATE, _echo('{"sleep_ms":100000000000000000000}')),
        Hostile("history page 10**19", "GET", "/api/open/tasks/histories?page=10000000000000000000"),
        Hostile("cancel-many before 10**19", "DELETE", "/api/v1/tasks?created_before=10000000000000000000"),
        Hostile("Last-Event-ID 10**23", "GET", events, headers=(("Last-Event-ID", "99999999999999999999999"),)),
        Hostile("Last-Event-ID negative", "GET", events, headers=(("Last-Event-ID", "-5"),)),
        Hostile(
            "lone surrogate in upload name",
            "POST",
            "/api/ephemeral_resource",
            b'{"file_name":"\\udc00.png","file_data":"iVBORw0KGgo="}',
        ),
        Hostile("empty body", "POST", CREATE, b""),
        Hostile("JSON array body", "POST", CREATE, b"[]"),
    ]
