"""The Qubico model catalog: every (model, task_type) pair genmill accepts, one module per model family.

Each module exposes `ENTRIES`; `build_catalog()` indexes them all. Backends say which entries they can run.
"""

from __future__ import annotations

from genmill.catalog import audio, echo, flux, image_toolkit, trellis, tts, video_models, video_toolkit, wanx
from genmill.domain.catalog import Catalog, CatalogEntry

MODULES = (flux, image_toolkit, video_toolkit, tts, trellis, wanx, video_models, audio, echo)


def all_entries() -> list[CatalogEntry]:
    return [entry for module in MODULES for entry in module.ENTRIES]


def build_catalog() -> Catalog:
    """A fresh catalog of every entry; raises ValueError if two modules define the same pair."""
    return Catalog(all_entries())


__all__ = ["all_entries", "build_catalog"]
