"""What a value must be to cross the API boundary, and how a stored value is made safe to show again.

A JSON `\\u` escape can carry a lone UTF-16 surrogate (`"\\udc00"`): Python holds it as a string, but it cannot be
encoded as UTF-8, so SQLite stores it and every later answer that includes it fails, while PostgreSQL refuses it,
and NUL, in the middle of the transaction. An integer beyond a signed 64-bit one overflows the database's integers;
JSON nested a few hundred levels deep overflows the serialisers. The API therefore refuses all of these at the door
(a 400 that names the field and the rule, before anything is stored or billed), and the store scrubs whatever
reaches it some other way (a row written before these rules, a backend's output) so that a stored row can always be
shown. Pure: the API middleware, the store's JSON codec and the tests share these rules.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_JSON_DEPTH = 64
"""Containers (objects and arrays) nested in a JSON body, the body itself counting as the first level. No catalog
input comes near it; the serialisers genmill uses fail somewhere between 250 and 1,000."""

REPLACEMENT = "\ufffd"
"""What the store shows in place of a character it cannot hold (U+FFFD, like `errors="replace"`)."""

NUL_RULE = "contains a NUL character (U+0000)"
DEPTH_RULE = f"nested deeper than {MAX_JSON_DEPTH} levels"
INT64_RULE = f"integer out of range: must be from {INT64_MIN} to {INT64_MAX} (a signed 64-bit integer)"
FINITE_RULE = "not a finite number (NaN and Infinity are not JSON)"

_UNSAFE = re.compile("[\x00\ud800-\udfff]")
"""NUL, or any surrogate code point: in a Python string every surrogate is a lone one (a valid pair is a single
character), and none of them can be encoded as UTF-8."""


def text_rule(value: str) -> str | None:
    """The rule `value` breaks (NUL, a lone surrogate), or None when it may be stored and shown."""
    found = _UNSAFE.search(value)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return NUL_RULE
    return f"contains a lone UTF-16 surrogate (U+{ord(char):04X}), which is not valid Unicode"


def int64_rule(value: int) -> str | None:
    """The rule an integer breaks when the database cannot hold it, or None."""
    return None if INT64_MIN <= value <= INT64_MAX else INT64_RULE


@dataclass(frozen=True)
class Violation:
    """Which field of a request breaks which rule; reads as `input.payload: contains a NUL character (U+0000)`."""

    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"


class _Refused:
    """Stands in, while decoding, for a number the server cannot hold, so the check can name its field."""

    __slots__ = ("rule",)

    def __init__(self, rule: str) -> None:
        self.rule = rule


_INT64_DIGITS = len(str(INT64_MIN))


def _parse_int(text: str) -> int | _Refused:
    # Longer than any int64 is refused without converting (Python refuses past 4,300 digits with a ValueError).
    if len(text) > _INT64_DIGITS:
        return _Refused(INT64_RULE)
    value = int(text)
    return value if int64_rule(value) is None else _Refused(INT64_RULE)


def _parse_constant(_name: str) -> _Refused:
    return _Refused(FINITE_RULE)


def loads_request_json(data: bytes | str) -> Any:
    """Decode a request body as the API will, except that out-of-range integers and NaN/Infinity are kept as
    markers for `json_violation` to report with their field. Raises ValueError for text that is not JSON and
    RecursionError for nesting too deep even to decode (both are 400s)."""
    return json.loads(data, parse_int=_parse_int, parse_constant=_parse_constant)


def json_violation(value: Any, *, max_depth: int = MAX_JSON_DEPTH, check_text: bool = True) -> Violation | None:
    """The first rule a decoded JSON body breaks, with its field (`input.images[2]`), or None.

    Iterative, so a deep body is measured rather than overflowing the stack; field paths are built only for
    containers and for the answer, since most bodies break nothing. `check_text=False` skips the string checks,
    for a caller that knows from the raw text that no string can break them (`may_hold_unsafe_text`).
    """
    # Each item: a container, its nesting level, its path as a chain of (parent chain, key) pairs. The body sits
    # in a wrapper at level 0, so that a bare string or number is checked like any member.
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [((value,), 0, ())]
    while stack:
        container, level, path = stack.pop()
        if level > max_depth:
            return Violation(_render(path), DEPTH_RULE)
        pairs = container.items() if type(container) is dict else enumerate(container)
        for key, child in pairs:
            if check_text and type(key) is str and _UNSAFE.search(key):
                return Violation(_render(path), f"a key {text_rule(key)}")
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, level + 1, (path, key) if level else ()))
            elif kind is str:
                if check_text and _UNSAFE.search(child):
                    return Violation(_render((path, key) if level else ()), text_rule(child) or "")
            elif kind is int:
                if not INT64_MIN <= child <= INT64_MAX:
                    return Violation(_render((path, key) if level else ()), INT64_RULE)
            elif kind is float:
                if not math.isfinite(child):
                    return Violation(_render((path, key) if level else ()), FINITE_RULE)
            elif kind is _Refused:
                return Violation(_render((path, key) if level else ()), child.rule)
    return None


_MAYBE_UNSAFE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")


def may_hold_unsafe_text(raw: bytes) -> bool:
    """Whether a string decoded from this JSON text could hold NUL or a lone surrogate. In UTF-8 JSON they can only
    come from a `\\u0000` or `\\uD800`-`\\uDFFF` escape or from the bytes of an encoded surrogate (`ED A0`-`ED BF`);
    a raw NUL is not JSON. False lets the check skip every string of a large body (an escaped pair, an emoji, makes
    it True, and the exact check then runs)."""
    if json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):
        return True
    return _MAYBE_UNSAFE.search(raw) is not None


_SHOWN_PARTS = 8


def _render(path: tuple[Any, ...]) -> str:
    """`input.images[2]`; a path deeper than a few parts is cut (`input.payload[0][0]…`), a body's own is `body`."""
    parts: list[str] = []
    while path:
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    parts.reverse()
    shown = "".join(parts[:_SHOWN_PARTS]) + ("…" if len(parts) > _SHOWN_PARTS else "")
    return shown.lstrip(".") or "body"


def scrub_text(value: str) -> str:
    """`value` with NUL and lone surrogates replaced by U+FFFD (unchanged, and not copied, when it has none)."""
    return _UNSAFE.sub(REPLACEMENT, value) if _UNSAFE.search(value) else value


def scrub_json(value: Any) -> Any:
    """A JSON value that any database can store and any answer can encode: strings scrubbed (keys too), NaN and
    Infinity as null. For the store's slow path only: callers first check cheaply whether anything needs it."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub_text(k) if isinstance(k, str) else k: scrub_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
