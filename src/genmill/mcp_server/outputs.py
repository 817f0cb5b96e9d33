"""Which files a finished task produced, and what kind each is, read from the task's `output` alone.

Outputs differ by model (`image_url`, `image_urls`, `audio_url`, `video_url`, nested lists in Suno/Udio songs),
so every http(s) URL found anywhere in `output` counts, named by the path of keys that led to it. The kind comes
from the URL's extension here and from the served Content-Type once fetched.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_EXTRA_TYPES = {
    ".webp": "image/webp",
    ".wav": "audio/wav",
    ".glb": "model/gltf-binary",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
}


@dataclass(frozen=True)
class OutputFile:
    field: str
    """Where in `output` the URL was: `image_url`, `image_urls[1]`, `songs[0].audio_url`."""
    url: str
    mime_type: str
    """Guessed from the extension; `application/octet-stream` when it says nothing."""

    @property
    def kind(self) -> str:
        """`image`, `audio`, `video` or `file`."""
        major = self.mime_type.split("/")[0]
        return major if major in {"image", "audio", "video"} else "file"

    @property
    def name(self) -> str:
        return urlsplit(self.url).path.rsplit("/", 1)[-1] or self.field


def output_files(output: Any) -> list[OutputFile]:
    """Every http(s) URL in a task's output, in document order, each once."""
    found: list[OutputFile] = []
    seen: set[str] = set()

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            if value.startswith(("http://", "https://")) and value not in seen:
                seen.add(value)
                found.append(OutputFile(path or "output", value, guess_mime_type(value)))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    walk(output, "")
    return found


def guess_mime_type(url: str) -> str:
    path = urlsplit(url).path.lower()
    suffix = "." + path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else ""
    if suffix in _EXTRA_TYPES:
        return _EXTRA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"
