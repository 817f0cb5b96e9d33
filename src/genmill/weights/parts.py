"""The shapes of the weight table: a repository's files that go into a folder, and a folder under the models folder
with the catalog entries it serves (`genmill.weights.folders` holds the table, `genmill.weights.sources` looks
things up in it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HUB_URL = "https://huggingface.co"

Entry = tuple[str, str]
"""A catalog entry: (model, task_type)."""


@dataclass(frozen=True)
class RepoPart:
    """The files of one repository that go into a weight folder."""

    repo_id: str
    allow_patterns: tuple[str, ...]
    approx_gb: float
    gated: bool = False
    """The repository asks each user to accept its licence on its page before it serves files."""
    subfolder: str = ""
    """Where in the weight folder its files land ("" = the folder itself), for layouts genmill assembles."""

    @property
    def page(self) -> str:
        """The repository's page: where a gated licence is accepted."""
        return f"{HUB_URL}/{self.repo_id}"


@dataclass(frozen=True)
class WeightSource:
    """One weight folder under the models folder, where it comes from and which catalog entries it serves."""

    folder: str
    family: str
    parts: tuple[RepoPart, ...]
    serves: tuple[Entry, ...]
    model_index: dict[str, Any] | None = field(default=None, compare=False)
    """A model_index.json genmill writes once every part is downloaded (an assembled layout), or None."""
    note: str = ""

    @property
    def approx_gb(self) -> float:
        return sum(part.approx_gb for part in self.parts)

    @property
    def repos(self) -> str:
        return " + ".join(part.repo_id for part in self.parts)
