"""The Qubico model catalog: every (model, task_type) pair genmill accepts, assembled from the model families.

Each family keeps its catalog schema beside its backends (`genmill.models.<family>`); every schema module exposes
`ENTRIES`, and `build_catalog()` indexes them all, in the order of `MODULES`. Backends say which entries they can
run.
"""

from __future__ import annotations

from genmill.domain.catalog import Catalog, CatalogEntry
from genmill.models.audio import catalog as audio
from genmill.models.audio import suno_catalog as suno
from genmill.models.audio import udio_catalog as udio
from genmill.models.echo import catalog as echo
from genmill.models.flux import catalog as flux
from genmill.models.flux import midjourney_catalog as midjourney
from genmill.models.llm import catalog as llm
from genmill.models.llm import image_catalog as llm_images
from genmill.models.llm.config import parse_image_prices, parse_prices
from genmill.models.toolkits import image_catalog as image_toolkit
from genmill.models.toolkits import video_catalog as video_toolkit
from genmill.models.trellis import catalog as trellis
from genmill.models.tts import catalog as tts
from genmill.models.video import catalog as video_models
from genmill.models.video import hailuo_catalog as hailuo
from genmill.models.video import kling_catalog as kling
from genmill.models.video import luma_catalog as luma
from genmill.models.video import wanx_catalog as wanx

MODULES = (
    flux,
    midjourney,
    image_toolkit,
    video_toolkit,
    tts,
    trellis,
    wanx,
    video_models,
    kling,
    hailuo,
    luma,
    audio,
    udio,
    suno,
    llm,
    llm_images,
    echo,
)


def all_entries() -> list[CatalogEntry]:
    return [entry for module in MODULES for entry in module.ENTRIES]


def build_catalog(
    *, echo_price_credits: int = 0, llm_prices: str = "", llm_max_tokens: int = llm.DEFAULT_MAX_TOKENS
) -> Catalog:
    """A fresh catalog of every entry; raises ValueError if two modules define the same pair.

    `echo_price_credits` meters the `genmill/echo` diagnostic model (free by default), e.g. to exercise billing.
    `llm_prices` (GENMILL_LLM_PRICES) and `llm_max_tokens` (GENMILL_LLM_MAX_TOKENS) price the chat models.
    """
    entries = all_entries()
    if llm_prices or llm_max_tokens != llm.DEFAULT_MAX_TOKENS:
        chat = llm.llm_entries(parse_prices(llm_prices), max_tokens=llm_max_tokens)
        images = llm_images.image_entries(parse_image_prices(llm_prices))
        entries = [e for e in entries if e.family not in (llm.FAMILY, llm_images.FAMILY)] + chat + images
    if echo_price_credits:
        entries = [e for e in entries if e.model != echo.MODEL] + echo.echo_entries(price_credits=echo_price_credits)
    return Catalog(entries)


__all__ = ["all_entries", "build_catalog"]
