"""`Qubico/image-toolkit` `segment` on a CPU: the prompt words MediaPipe's bundled models can answer.

This is the fallback where the open-vocabulary backend (`segment_grounded`: GroundingDINO + SAM 2, weights in the
models folder) is not set up. It understands a fixed vocabulary and says so: "person" (selfie segmentation),
"background" (its complement), "face" (the convex hull of Face Mesh landmarks) and "hand" (the hull of the hand
landmarks, widened to cover the fingers), each with a few synonyms. The legacy MediaPipe solutions have no hair,
clothes or object model, so any other word fails the task (`InputRejected`) rather than being guessed or skipped.

The answer is the input image as an RGBA PNG whose alpha is the mask (255 inside, 0 outside): the segmented
image, with the mask recoverable from its alpha channel.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.backends.toolkit import cancelled_error, encode_png, field_value, has_alpha, mediapipe_availability
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import InputRejected
from genmill.models.toolkits.faces import FACE_MESH_FILES, FaceFinder, hull_mask
from genmill.models.toolkits.image_catalog import MODEL
from genmill.models.toolkits.salient import load_input_image

Mask = NDArray[np.uint8]
"""A 0/255 mask with the image's height and width."""

SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": (
        "person", "persons", "people", "human", "humans", "body", "bodies", "man", "men", "woman", "women",
        "boy", "boys", "girl", "girls", "child", "children", "kid", "kids", "figure", "figures", "selfie",
    ),
    "face": ("face", "faces"),
    "hand": ("hand", "hands", "fist", "fists", "palm", "palms"),
    "background": ("background", "backgrounds", "backdrop", "surroundings"),
}  # fmt: skip
"""Prompt words (matched case-insensitively) -> the mask that answers them."""

WORD_CLASS = {word: name for name, words in SYNONYMS.items() for word in words}
SUPPORTED = ", ".join(SYNONYMS)

SEGMENT_FILES = (
    *FACE_MESH_FILES,
    ("selfie_segmentation", "selfie_segmentation_cpu.binarypb"),
    ("selfie_segmentation", "selfie_segmentation.tflite"),
    ("hand_landmark", "hand_landmark_tracking_cpu.binarypb"),
    ("hand_landmark", "hand_landmark_full.tflite"),
    ("palm_detection", "palm_detection_full.tflite"),
)

MAX_HANDS = 6
HAND_WIDEN = 0.12
"""Hand landmarks run along the middle of the fingers; the hull is widened by this share of the hand's size."""


def parse_prompt(text: str) -> tuple[list[str], list[str]]:
    """(classes named, terms not understood) in a comma-separated prompt such as "person, Hands".

    Each term is read by its head noun: "the woman's face" is a face, "left hand" a hand, and in "face of the
    man" the part before "of" counts.
    """
    classes: list[str] = []
    unknown: list[str] = []
    for term in re.split(r"[,;+&/\n]|\band\b|\bor\b", text.lower()):
        words = re.findall(r"[a-z]+", term.split(" of ", 1)[0])
        if not words:
            continue
        named = [WORD_CLASS[word] for word in words if word in WORD_CLASS]
        if named:
            if named[-1] not in classes:
                classes.append(named[-1])
        else:
            unknown.append(term.strip())
    return classes, unknown


def unsupported(terms: list[str]) -> str:
    quoted = ", ".join(f"'{term}'" for term in terms)
    return f"{quoted} {'is' if len(terms) == 1 else 'are'} not supported"


def grow(mask: Mask, pixels: int) -> Mask:
    """`mask` dilated (pixels > 0) or eroded (pixels < 0) by a Euclidean distance, in one pass at any size.

    The image border does not count as outside, so a person cut off by the frame still reaches the edge.
    """
    import cv2

    if pixels > 0:
        distance = cv2.distanceTransform(
            np.where(mask > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
        )
        return np.where(distance <= pixels, 255, 0).astype(np.uint8)
    if pixels < 0:
        distance = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        return np.where(distance > -pixels, 255, 0).astype(np.uint8)
    return mask


@dataclass(frozen=True)
class SegmentRequest:
    """A segment task's text inputs, checked: what to keep, what to take away, and how far to move the edge."""

    prompt: str
    negative_prompt: str
    segment_factor: int

    @classmethod
    def read(cls, inputs: TaskInput) -> SegmentRequest:
        prompt = field_value(inputs, "prompt", "")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputRejected('prompt: name what to cut out, e.g. "cat" or "shirt, shoes"')
        negative = field_value(inputs, "negative_prompt", "") or ""
        if not isinstance(negative, str):
            raise InputRejected(f"negative_prompt: must be text, got {type(negative).__name__}")
        factor = field_value(inputs, "segment_factor", 0) or 0
        if isinstance(factor, bool) or not isinstance(factor, int) or not -256 <= factor <= 256:
            raise InputRejected(f"segment_factor: must be an integer from -256 to 256, got {factor!r}")
        return cls(prompt.strip(), negative.strip(), factor)


def finish_segment(
    ctx: RunContext,
    image: Image.Image,
    mask: Mask,
    removed: list[Mask],
    request: SegmentRequest,
    removed_names: list[str],
) -> dict[str, Any]:
    """Grow or shrink `mask` by segment_factor, take away the negative prompt's masks, and save the image as an
    RGBA PNG whose alpha is the mask (times any alpha the image had)."""
    if request.segment_factor:
        mask = grow(mask, request.segment_factor)
        if not mask.any():
            raise InputRejected(f"segment_factor: shrinking by {-request.segment_factor} px leaves nothing of the mask")
    for taken in removed:
        mask = np.where(taken > 0, 0, mask).astype(np.uint8)
    if not mask.any():
        raise InputRejected(f"negative_prompt: removing {', '.join(removed_names)} leaves nothing of the mask")
    ctx.progress(0.9)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    alpha = mask
    if has_alpha(image):
        source = np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.uint16)
        alpha = (source * mask // 255).astype(np.uint8)
    output = Image.fromarray(rgb)
    output.putalpha(Image.fromarray(alpha))
    url = ctx.save_output(encode_png(output), ext="png", content_type="image/png")
    ctx.progress(1.0)
    ctx.log(f"done: {output.width}x{output.height} RGBA PNG, {float((mask > 0).mean()):.1%} of the image kept")
    return {"image_url": url}


class SegmentBackend(Backend):
    """`segment`: person, background, face and hand masks from MediaPipe, combined as the prompts say."""

    name = "mediapipe-segment"
    entries = ((MODEL, "segment"),)

    def __init__(self) -> None:
        self._faces = FaceFinder()
        self._selfie: Any = None
        self._hands: Any = None
        self._lock = threading.Lock()

    def availability(self) -> Availability:
        return mediapipe_availability(SEGMENT_FILES, "segmentation and landmark")

    def load(self) -> None:
        self._faces.load()
        if self._hands is not None:
            return
        with self._lock:
            if self._hands is not None:
                return
            from mediapipe.python.solutions.hands import Hands
            from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation

            self._selfie = SelfieSegmentation(model_selection=0)
            self._hands = Hands(static_image_mode=True, max_num_hands=MAX_HANDS, model_complexity=1)

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        return ServedBy(
            f"MediaPipe ({SUPPORTED} only)",
            limits=(
                f"prompt words: {SUPPORTED} and their synonyms only; any other word fails (put grounding-dino/ "
                "and sam2/ in the models folder for any words)",
            ),
        )

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        self.load()
        request = SegmentRequest.read(inputs)
        wanted = self._classes(request.prompt, "prompt")
        unwanted = self._classes(request.negative_prompt, "negative_prompt") if request.negative_prompt else []
        image = load_input_image(ctx, inputs, "image")
        rgb = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
        cache: dict[str, Mask | None] = {}

        def mask_of(name: str) -> Mask | None:
            if name not in cache:
                if ctx.cancelled():
                    raise cancelled_error()
                cache[name] = self._mask(name, rgb, ctx)
            return cache[name]

        found = [mask for mask in (mask_of(name) for name in wanted) if mask is not None]
        if not found:
            raise InputRejected(f"prompt: no {' or '.join(wanted)} was found in the image")
        removed = [mask for mask in (mask_of(name) for name in unwanted) if mask is not None]
        return finish_segment(ctx, image, np.bitwise_or.reduce(found), removed, request, unwanted)

    @staticmethod
    def _classes(text: str, field: str) -> list[str]:
        """The vocabulary classes a prompt names; every term must be one this backend can segment."""
        classes, unknown = parse_prompt(text)
        if unknown:
            raise InputRejected(f"{field}: this server can segment {SUPPORTED}; {unsupported(unknown)}")
        if not classes:
            raise InputRejected(f"{field}: name what to cut out; this server can segment {SUPPORTED}")
        return classes

    def _mask(self, name: str, rgb: NDArray[np.uint8], ctx: RunContext) -> Mask | None:
        """The 0/255 mask for one class, or None when the image has none of it (logged either way)."""
        height, width = rgb.shape[:2]
        mask: Mask | None = None
        count = ""
        if name in ("person", "background"):
            mask = self._person(rgb)
            if name == "background":  # with no person in it, the whole image is background
                mask = np.full((height, width), 255, np.uint8) if mask is None else (255 - mask).astype(np.uint8)
        elif name == "face":
            faces = self._faces.find(rgb)
            count = f"{len(faces)} found, "
            if faces:
                mask = np.bitwise_or.reduce([hull_mask((height, width), face.points) for face in faces])
        elif name == "hand":
            mask, found = self._hand_mask(rgb)
            count = f"{found} found, "
        if mask is not None and not mask.any():
            mask = None
        share = 0.0 if mask is None else float((mask > 0).mean())
        ctx.log(f"{name}: {count}{share:.1%} of the image")
        return mask

    def _person(self, rgb: NDArray[np.uint8]) -> Mask | None:
        """Selfie segmentation at confidence 0.5; None when under 0.1% of the image is a person."""
        with self._lock:
            result = self._selfie.process(rgb)
        confidence = getattr(result, "segmentation_mask", None)
        if confidence is None:
            return None
        mask = np.where(np.asarray(confidence) > 0.5, 255, 0).astype(np.uint8)
        return mask if float((mask > 0).mean()) >= 0.001 else None

    def _hand_mask(self, rgb: NDArray[np.uint8]) -> tuple[Mask | None, int]:
        """The union of the widened hulls of every hand found, and how many were found."""
        height, width = rgb.shape[:2]
        with self._lock:
            result = self._hands.process(rgb)
        hands = getattr(result, "multi_hand_landmarks", None) or []
        if not hands:
            return None, 0
        mask = np.zeros((height, width), dtype=np.uint8)
        scale = np.array([width, height], dtype=np.float32)
        for hand in hands:
            points = np.array([(p.x, p.y) for p in hand.landmark], dtype=np.float32) * scale
            extent = float((points.max(axis=0) - points.min(axis=0)).max())
            widened = grow(hull_mask((height, width), points), max(1, round(extent * HAND_WIDEN)))
            mask = np.maximum(mask, widened)
        return mask, len(hands)
