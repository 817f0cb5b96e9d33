"""PiAPI's model keys: the names `GET /account/active_tasks` groups tasks under and the history filter accepts.

PiAPI's clients know a fixed set of keys (`flux`, `image_toolkit`, `mj`, `music-u`, ...), which are not always a
catalog family's own spelling: families are named with hyphens (`image-toolkit`, `hug-video`), WanX's family is
`wanx` and PiAPI's key `wan`. This is the one place that maps a family to its key, so grouping and filtering
agree. A family PiAPI has no key for (`framepack`, `ace-step`, `echo`) keeps its own name, so its tasks are
still grouped and filterable.
"""

from __future__ import annotations

from collections.abc import Iterable

PIAPI_MODEL_KEYS: frozenset[str] = frozenset(
    {
        "diffrhythm",
        "flux",
        "gpts",
        "hailuo",
        "hug_video",
        "hunyuan",
        "image_toolkit",
        "kling",
        "llm",
        "luma",
        "mj",
        "mmaudio",
        "music-s",
        "music-u",
        "sd",
        "skyreels",
        "trellis",
        "tts",
        "video_toolkit",
        "wan",
    }
)
"""The keys PiAPI's own answers use (underscores, except the two music services)."""

FAMILY_ALIASES: dict[str, str] = {
    "wanx": "wan",
    "midjourney": "mj",
    "gpt": "gpts",
    "gpt-4o-image": "gpts",
    "suno": "music-s",
    "udio": "music-u",
}
"""Families whose PiAPI key is another word, not only another spelling."""


def model_key(family: str) -> str:
    """The PiAPI key of a catalog family: the family itself when it is a key, its underscore spelling when that
    is one (`image-toolkit` → `image_toolkit`), an alias (`wanx` → `wan`), else the family unchanged."""
    if family in PIAPI_MODEL_KEYS:
        return family
    underscored = family.replace("-", "_")
    if underscored in PIAPI_MODEL_KEYS:
        return underscored
    return FAMILY_ALIASES.get(family, family)


def families_for(name: str, families: Iterable[str]) -> set[str]:
    """The families among `families` that a history or cancel filter `name` selects: those whose key is `name`
    and the family spelled `name` itself (so the family names accepted before keys existed still work)."""
    return {family for family in families if family == name or model_key(family) == name}
