"""Midjourney (`model: "midjourney"`) on open models: a stand-in served only where the operator enables it
(GENMILL_STAND_INS=midjourney, or the backend names), saying what it is in `served_by` before anyone pays.

Midjourney's weights are not published, so nothing here is Midjourney. The backends reuse the Flux family's
own backends (`FluxBackend`: loading, placement, the shared encoders, the denoising call) for the weight sets that
exist under the models folder, one stand-in per weight set so that `genmill models` says which task types have
weights here:

    midjourney-flux        flux1-dev/        imagine, reroll, variation, upscale, seed
    midjourney-flux-fill   flux1-fill-dev/   inpaint, outpaint, pan
    midjourney-flux-redux  flux1-redux-dev/ and flux1-dev/   blend
    midjourney-blip        blip-captioning/  describe (`captions.py`)

The task runners are in `midjourney_tasks.py`, the image rules (sizes, grid, canvases) in `midjourney_images.py`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from genmill.backends.base import Availability, Backend, Resident, RunContext, ServedBy
from genmill.backends.diffusers_loading import Placement, weight_bytes
from genmill.backends.toolkit import load_image
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError
from genmill.models.flux.backend import FluxBackend
from genmill.models.flux.captions import CAPTION_FOLDER, Captioner, format_descriptions
from genmill.models.flux.catalog import ADVANCED, DEV
from genmill.models.flux.midjourney_catalog import MODEL
from genmill.models.flux.midjourney_images import mj_output
from genmill.models.flux.midjourney_tasks import RUNNERS, Settings, run_seed
from genmill.models.flux.shared import FluxShared

COMMON_LIMITS = (
    "Midjourney's prompt parameters (--v, --style, --chaos, --sref, ...) are read as plain prompt text",
    "process_mode sets the price, not the speed; bot_id and skip_prompt_check are accepted and ignored",
)
TASK_LIMITS: dict[str, tuple[str, ...]] = {
    "imagine": ("four FLUX.1-dev images of about one megapixel at the aspect ratio, and their 2x2 grid",),
    "reroll": ("four new FLUX.1-dev images of the origin's prompt (or the new one) with a new seed",),
    "variation": ("FLUX.1-dev image-to-image of the chosen image: strength 0.6 for 1-4, 0.75 high_variation, 0.4 low",),
    "upscale": (
        '"1"-"4": the chosen image at 2x; 2x/4x: of an upscaled image; Lanczos resize refined by FLUX.1-dev '
        "image-to-image (strength 0.15-0.35 by index) up to 2048x2048, beyond that Lanczos only",
    ),
    "seed": ("the seed FLUX.1 drew the origin with",),
    "inpaint": ("FLUX.1-Fill-dev repaints the mask's white pixels; every other pixel is kept exactly",),
    "outpaint": ("FLUX.1-Fill-dev paints the new canvas around the image, at most one megapixel",),
    "pan": ("FLUX.1-Fill-dev paints half the image's side more in the direction, at most one megapixel",),
    "blend": ("FLUX.1 Redux embeddings of the images averaged and drawn by FLUX.1-dev; no text prompt",),
    "describe": ("four BLIP captions (the four best beams), not Midjourney's prompt-style descriptions",),
}

WEIGHT_SETS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # backend name: (Flux model, Flux variant, Midjourney task types)
    "midjourney-flux": (DEV, "base", ("imagine", "reroll", "variation", "upscale", "seed")),
    "midjourney-flux-fill": (ADVANCED, "fill", ("inpaint", "outpaint", "pan")),
    "midjourney-flux-redux": (ADVANCED, "redux", ("blend",)),
}
WEIGHTS_NAMES = {"base": "FLUX.1-dev", "fill": "FLUX.1-Fill-dev", "redux": "FLUX.1-Redux-dev + FLUX.1-dev"}


def stand_in(weights: str, task_type: str) -> ServedBy:
    return ServedBy(f"{weights} (stand-in for Midjourney)", True, (*TASK_LIMITS[task_type], *COMMON_LIMITS))


class MidjourneyFluxBackend(Backend):
    """Some Midjourney task types on one Flux weight set, through a `FluxBackend` of that set."""

    def __init__(self, name: str, models_dir: Path, *, shared: FluxShared, settings: Settings | None = None) -> None:
        model, variant, task_types = WEIGHT_SETS[name]
        self.name = name
        self.flux = FluxBackend(model, models_dir, variant=variant, shared=shared)
        self.weights = WEIGHTS_NAMES[variant]
        self.settings = settings or Settings()
        self.entries = tuple((MODEL, task_type) for task_type in task_types)

    @property
    def folder(self) -> Path:
        return self.flux.path

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        return stand_in(self.weights, entry.task_type)

    def availability(self) -> Availability:
        availability = self.flux.availability()
        if availability.ok:
            self.device = self.flux.device
            self.memory_bytes = self.flux.memory_bytes
            self.working_bytes = self.flux.working_bytes
        return availability

    def residents(self) -> list[Resident]:
        return self.flux.residents()

    def memory_note(self) -> str:
        return self.flux.memory_note()

    def load(self) -> None:
        self.flux.load()

    def unload(self) -> None:
        self.flux.unload()

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        if (entry.model, entry.task_type) not in self.entries:
            raise BackendError(f"task_type: {self.name} does not run {entry.model} {entry.task_type}")
        origin = ctx.origin()
        if entry.derived_from is not None and origin is None:
            raise BackendError("origin_task_id: the earlier task was not handed to this worker")
        if entry.task_type == "seed":
            assert origin is not None
            return run_seed(origin)
        return RUNNERS[entry.task_type](self.flux, inputs, ctx, origin, self.settings)


class MidjourneyDescribeBackend(Backend):
    """Midjourney's describe on BLIP captions (`captions.py`)."""

    name = "midjourney-blip"
    entries = ((MODEL, "describe"),)

    def __init__(self, models_dir: Path, placement: Placement | None = None) -> None:
        self.captioner = Captioner(models_dir / CAPTION_FOLDER)
        self.placement = placement or Placement("cpu")

    @property
    def folder(self) -> Path:
        return self.captioner.path

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        return stand_in("BLIP (Salesforce/blip-image-captioning-large)", "describe")

    def availability(self) -> Availability:
        missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed: install genmill[diffusers]")
        why = self.captioner.ready()
        if why:
            return Availability(False, why)
        self.device = self.captioner.device = self.placement.device  # resolving "auto" asks torch: not at build
        self.memory_bytes = weight_bytes(self.captioner.path, 4)
        return Availability(True)

    def load(self) -> None:
        self.captioner.load()

    def unload(self) -> None:
        self.captioner.unload()

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        image = load_image(ctx, inputs, "image_url").convert("RGB")
        ctx.progress(0.1, note="captioning")
        captions = self.captioner.describe(image)
        ctx.log(f"BLIP wrote {len(captions)} descriptions of a {image.width}x{image.height} image")
        ctx.progress(1.0, note="done")
        return mj_output("describe", description=format_descriptions(captions, image.size))


def midjourney_backends(
    models_dir: Path, *, shared: FluxShared | None = None, settings: Settings | None = None
) -> list[Backend]:
    """A Midjourney stand-in for every weight set present under `models_dir` (missing folders are left out, as
    `flux_backends` does), sharing the Flux backends' state so that FLUX.1-dev is loaded once for both."""
    shared = shared or FluxShared()
    found: list[Backend] = []
    for name in WEIGHT_SETS:
        backend = MidjourneyFluxBackend(name, models_dir, shared=shared, settings=settings)
        if backend.folder.is_dir():
            found.append(backend)
    describe = MidjourneyDescribeBackend(models_dir, shared.placement)
    if describe.folder.is_dir():
        found.append(describe)
    return found
