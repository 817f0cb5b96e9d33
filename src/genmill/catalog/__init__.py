"""The Qubico model catalog: every (model, task_type) pair genmill accepts, one module per model family.

Each module exposes `ENTRIES`; `build_catalog()` indexes them all. Backends say which entries they can run.
"""

from __future__ import annotations

from genmill.catalog import audio, echo, flux, image_toolkit, trellis, tts, video_models, video_toolkit, wanx
from genmill.domain.catalog import Catalog, CatalogEntry

MODULES = (flux, image_toolkit, video_toolkit, tts, trellis, wanx, video_models, audio, echo)


def all_entries() -> list[CatalogEntry]:
    return [entry for module in MODULES for entry in module.ENTRIES]


def build_catalog(*, echo_price_credits: int = 0) -> Catalog:
    """A fresh catalog of every entry; raises ValueError if two modules define the same pair.

    `echo_price_credits` meters the `genmill/echo` diagnostic model (free by default), e.g. to exercise billing.
    """
    entries = all_entries()
    if echo_price_credits:
        entries = [e for e in entries if e.model != echo.MODEL] + [echo.echo_entry(price_credits=echo_price_credits)]
    return Catalog(entries)


__all__ = ["all_entries", "build_catalog"]
