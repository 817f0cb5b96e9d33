"""Which values of a task's output name files, across the shapes of PiAPI's services.

Qubico's own models put files under keys ending in `_url` or `_urls` (`image_url`, `video_url`, `image_urls`). The
other services PiAPI fronts use other keys for the same thing: Luma `video.url`, `thumbnail.url`, `last_frame.url`;
Kling `works[].video.resource`, `resource_without_watermark`, `cover.resource`; Suno `clips.<id>.audio_url`;
Midjourney `image_url`, `image_urls`, `temporary_image_urls`, `discord_image_url`, `intermediate_image_urls`.
One rule covers them all: a string under a key that is `url`/`urls`, ends in `_url`/`_urls`, or is `resource` or
starts with `resource_`, directly or as an item of a list under such a key. Anything else (ids, prompts, numbers,
a `status`) is not a file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def is_file_key(key: str) -> bool:
    """Whether a string under `key` names a file (see the module's rule)."""
    name = key.lower()
    return name in ("url", "urls", "resource") or name.endswith(("_url", "_urls")) or name.startswith("resource_")


def file_refs(value: Any, path: str = "", key: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) of every file reference in `value`, depth first, in order; `path` reads like
    `works[0].video.resource`. The same string may come more than once, under different paths."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from file_refs(v, f"{path}.{k}" if path else str(k), str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from file_refs(v, f"{path}[{i}]", key)
    elif isinstance(value, str) and value and is_file_key(key):
        yield path, value
