"""Song lyrics from the operator's OpenAI-compatible chat model: Udio's and Suno's `generate_lyrics`, and the lyrics
of a `generate_music` whose lyrics the service would have written itself (Udio's lyrics_type generate, Suno's
description mode).

Neither service's own lyrics model runs here, so the backend is a stand-in and `served_by` names the chat model
that writes them. The model is asked for JSON (`{"lyrics_pairs": [{"title", "text"}]}`) with the section markers
Udio and Suno print and ACE-Step sings ([Verse], [Chorus], [Bridge]); an answer that is not that JSON is read as
one song's lyrics, so a small local model that ignores the format still gives usable lyrics.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.backends.openai_compat import OpenAICompatClient, OpenAICompatTarget, message_text
from genmill.backends.toolkit import field_value
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError
from genmill.models.audio.suno_catalog import SUNO
from genmill.models.audio.udio_catalog import UDIO

LYRICS_PAIRS = 2
"""PiAPI's example answers two lyrics for one prompt; so does this backend."""
MAX_LYRICS_TOKENS = 1500
"""Enough for two songs' lyrics; bounds what one task may ask of the operator's model."""

SYSTEM_PROMPT = (
    "You write song lyrics. Answer with JSON only, no other text: "
    '{"lyrics_pairs": [{"title": "...", "text": "..."}]} with exactly {count} item(s). Each text is a complete '
    "song in the language of the request, its sections marked on their own lines as [Verse], [Verse 2], "
    "[Pre-Chorus], [Chorus], [Bridge] or [Outro], short singable lines, no commentary. Titles are two to five words."
)


@dataclass(frozen=True)
class LyricsPair:
    """One song's lyrics as PiAPI answers them."""

    title: str
    text: str

    def as_json(self) -> dict[str, str]:
        return {"title": self.title, "text": self.text}


class LyricsWriter:
    """Asks one OpenAI-compatible chat model for lyrics; the same writer serves generate_lyrics and the music
    entries that need lyrics written."""

    def __init__(self, target: OpenAICompatTarget, *, client: OpenAICompatClient | None = None) -> None:
        self.target = target
        self._client = client or OpenAICompatClient(target, timeout=300.0)

    @property
    def described(self) -> str:
        """The model that writes the lyrics, for `served_by` and the task's logs."""
        return f"{self.target.upstream_model} (OpenAI-compatible chat at {self.target.public_address})"

    def write(self, prompt: str, *, count: int = LYRICS_PAIRS, seed: int | None = None) -> list[LyricsPair]:
        """`count` songs' lyrics about `prompt`; a BackendError names the server when it fails or answers none."""
        body: dict[str, Any] = {
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT.replace("{count}", str(count))},
                {"role": "user", "content": prompt.strip()},
            ],
            "max_tokens": MAX_LYRICS_TOKENS,
            "temperature": 0.9,
        }
        if seed is not None:
            body["seed"] = seed
        pairs = parse_lyrics(message_text(self._client.chat(body)), fallback_title=title_from(prompt))
        if not pairs:
            raise BackendError(f"the lyrics model {self.target.upstream_model} answered no lyrics")
        return pairs[:count]


def parse_lyrics(answer: str, *, fallback_title: str) -> list[LyricsPair]:
    """The pairs in a model's answer: the JSON asked for (also inside a ``` fence), else the whole answer as one
    song's lyrics titled `fallback_title`; [] when the answer is empty."""
    text = answer.strip()
    if not text:
        return []
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            parsed = json.loads(text[start : end + 1])
        except ValueError:
            parsed = None
        items = parsed.get("lyrics_pairs") if isinstance(parsed, dict) else None
        if isinstance(items, list):
            pairs = [
                LyricsPair(str(item.get("title") or fallback_title).strip(), str(item["text"]).strip())
                for item in items
                if isinstance(item, dict) and isinstance(item.get("text"), str) and item["text"].strip()
            ]
            if pairs:
                return pairs
    return [LyricsPair(fallback_title, text.strip("`").strip())]


def title_from(description: str) -> str:
    """A title made from a description's first words (our choice when neither the user nor a model gave one)."""
    words = re.findall(r"[^\W_]+(?:'[^\W_]+)?", description)[:4]
    return " ".join(word.capitalize() for word in words) or "Untitled"


class LyricsBackend(Backend):
    """`generate_lyrics` of Udio and Suno on the operator's chat model: a stand-in for the services' own."""

    name = "lyrics-llm"
    entries = ((UDIO, "generate_lyrics"), (SUNO, "generate_lyrics"))
    requirements = ("httpx",)

    def __init__(self, writer: LyricsWriter) -> None:
        self.writer = writer

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        service = "Udio" if entry.model == UDIO else "Suno"
        return ServedBy(
            f"{self.writer.described} (stand-in for {service}'s lyrics model)",
            stand_in=True,
            limits=("the lyrics come from the configured chat model; their quality is that model's",),
        )

    def availability(self) -> Availability:
        if not (self.writer.target.base_url.strip() and self.writer.target.upstream_model.strip()):
            return Availability(False, "GENMILL_LYRICS_BASE_URL and GENMILL_LYRICS_MODEL must both be set")
        return Availability(True)

    def load(self) -> None:
        """Nothing to load: the model runs on the operator's server."""

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        if entry.key not in self.entries:
            raise BackendError(f"task_type: {self.name} does not run {entry.model} {entry.task_type}")
        prompt = str(field_value(inputs, "prompt", "") or "")
        ctx.log(f"lyrics by {self.writer.described}, standing in for the service's lyrics model")
        ctx.progress(0.1, "writing lyrics")
        pairs = self.writer.write(prompt)
        ctx.progress(1.0, f"{len(pairs)} lyrics written")
        return {"lyrics_pairs": [pair.as_json() for pair in pairs]}
