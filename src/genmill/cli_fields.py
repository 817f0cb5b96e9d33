"""How `genmill run` reads its `key=value` arguments into a task's input (and `--config`). Pure and small, so the
rule documented in docs/sdk.md is the rule tested.

- `key=value`: an integer or decimal number becomes a number (`scale=2`, `guidance=3.5`); `true` and `false`
  become booleans and `null` null; a value starting with `{` or `[` that is valid JSON becomes that JSON;
  anything else is the text as written (`prompt=a red fox`).
- `key=@path`: the local file is uploaded and the field gets its URL (`image=@photo.png`).
- `key:=json`: the value is JSON, always (`seed:=42`, `prompt:='"42"'` for the text "42", `tags:='["a","b"]'`).
- A key with dots nests: `lora.scale=0.8` gives `{"lora": {"scale": 0.8}}`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")


class FieldError(ValueError):
    """An argument that is not `key=value`, `key:=json` or `key=@path` (a usage error: exit code 2)."""


def parse_value(text: str) -> Any:
    if NUMBER.fullmatch(text):
        number = float(text)
        return int(text) if text.lstrip("-").isdigit() else number
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def parse_field(argument: str) -> tuple[str, Any]:
    """One argument as (dotted key, value); a file to upload comes back as a `Path`."""
    raw_json = re.match(r"([^=:]+):=(.*)", argument, re.DOTALL)
    if raw_json:
        key, text = raw_json.groups()
        try:
            value: Any = json.loads(text)
        except ValueError as exc:
            raise FieldError(f"{argument!r}: the value after := is not JSON ({exc})") from exc
    elif "=" in argument:
        key, text = argument.split("=", 1)
        if text.startswith("@"):
            path = Path(text[1:]).expanduser()
            if not path.is_file():
                raise FieldError(f"{argument!r}: no such file {str(path)!r}")
            value = path
        else:
            value = parse_value(text)
    else:
        raise FieldError(f"{argument!r}: expected key=value, key:=json or key=@file")
    if not KEY.fullmatch(key):
        raise FieldError(f"{argument!r}: {key!r} is not a field name (letters, digits, _ and -, dots to nest)")
    return key, value


def parse_fields(arguments: list[str]) -> dict[str, Any]:
    """Every argument into one input object; a key given twice is a usage error rather than a silent overwrite."""
    result: dict[str, Any] = {}
    for argument in arguments:
        key, value = parse_field(argument)
        *parents, leaf = key.split(".")
        target = result
        for part in parents:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise FieldError(f"{argument!r}: {part!r} already has a value that is not an object")
            target = nested
        if leaf in target:
            raise FieldError(f"{argument!r}: {key!r} is given twice")
        target[leaf] = value
    return result


def shorten_blobs(value: Any, limit: int = 512) -> Any:
    """A copy for printing with every long base64-looking string replaced by a note, so a terminal never gets
    megabytes of base64 (a hosted provider may echo inline inputs)."""
    if isinstance(value, str):
        if len(value) > limit and (value.startswith("data:") or re.fullmatch(r"[A-Za-z0-9+/=\s]+", value)):
            return f"<{len(value)} characters of base64 omitted>"
        return value
    if isinstance(value, dict):
        return {k: shorten_blobs(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten_blobs(v, limit) for v in value]
    return value
