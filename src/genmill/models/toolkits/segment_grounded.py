"""`Qubico/image-toolkit` `segment` for any words: GroundingDINO finds what each phrase names, SAM 2 cuts it out.

Both models are native transformers classes (`GroundingDinoForObjectDetection`, `Sam2Model`) whose weights live
in the models folder: `grounding-dino/` (IDEA-Research/grounding-dino-base, with its processor and tokenizer) and
`sam2/` (facebook/sam2.1-hiera-large in transformers format). The prompt is read as comma-separated phrases
("red mug, the cat's collar"); GroundingDINO boxes every object each phrase names, SAM 2 turns each box into a
mask, and the union is the answer. negative_prompt phrases are found the same way and taken away; segment_factor
grows or shrinks the edge (`segment.finish_segment`, shared with the MediaPipe backend).

SAM 2's own image processor needs torchvision, which genmill does not install, so the image is prepared here as
that processor does: resized to the model's square input (1024 for the published checkpoints), scaled to 0..1
and normalised with the mean and std of `sam2/preprocessor_config.json`; boxes are given in that square's
coordinates and the low-resolution mask logits are resized back to the image and thresholded at 0.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genmill.backends.audio_io import best_device, weights_bytes
from genmill.backends.base import Availability, Backend, Resident, RunContext, ServedBy
from genmill.backends.toolkit import cancelled_error
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError, InputRejected
from genmill.models.toolkits.image_catalog import MODEL
from genmill.models.toolkits.salient import IMAGENET_MEAN, IMAGENET_STD, load_input_image
from genmill.models.toolkits.segment import Mask, SegmentBackend, SegmentRequest, finish_segment

GROUNDING_DINO_FOLDER = "grounding-dino"
SAM2_FOLDER = "sam2"
REQUIRED_PACKAGES = ("torch", "transformers")
INSTALL_HINT = "pip install 'genmill[diffusers]' (install torch==2.13.0 first, see docs/backends.md)"
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
"""A published folder keeps its image processor's settings in preprocessor_config.json; transformers 5 saves
them inside processor_config.json."""
Box = tuple[float, float, float, float]

log = logging.getLogger("genmill.backends.segment_grounded")


def split_phrases(text: str) -> list[str]:
    """Comma-, semicolon- or line-separated phrases, lowercased and deduplicated ("Cat, red mug" -> cat, red mug);
    GroundingDINO is prompted with one phrase at a time, so each box belongs to the phrase that found it."""
    phrases = [" ".join(part.lower().split()).strip(" .") for part in re.split(r"[,;\n]", text)]
    return list(dict.fromkeys(phrase for phrase in phrases if phrase))


def model_type(folder: Path) -> str:
    try:
        return str(json.loads((folder / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError, AttributeError):
        return ""


class GroundedSegmentBackend(Backend):
    """`segment` with a prompt of any words: GroundingDINO boxes, SAM 2 masks."""

    name = "grounding-dino-sam2-segment"
    entries = ((MODEL, "segment"),)
    requirements = ("torch", "transformers")

    def __init__(
        self,
        detector: Path,
        segmenter: Path,
        *,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        max_objects: int = 16,
    ) -> None:
        """`detector` and `segmenter` are the GroundingDINO and SAM 2 folders; a box counts when its score is at
        least `box_threshold` (GroundingDINO's published defaults: 0.35 box, 0.25 text); at most `max_objects`
        boxes per phrase, the highest scoring, are cut out."""
        self.detector_path = detector
        self.segmenter_path = segmenter
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.max_objects = max_objects
        self._detector: Any = None
        self._processor: Any = None
        self._sam: Any = None
        self._sam_mean = IMAGENET_MEAN
        self._sam_std = IMAGENET_STD
        self._lock = threading.Lock()

    def availability(self) -> Availability:
        missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed: {INSTALL_HINT}")
        if model_type(self.detector_path) != "grounding-dino":
            return Availability(False, f"no GroundingDINO model (config.json) in {self.detector_path}")
        if not any((self.detector_path / name).is_file() for name in PROCESSOR_FILES):
            return Availability(False, f"{self.detector_path} has no processor (preprocessor_config.json)")
        if not any((self.detector_path / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
            return Availability(False, f"{self.detector_path} has no tokenizer (tokenizer.json or vocab.txt)")
        if model_type(self.segmenter_path) not in ("sam2", "sam2_video"):
            return Availability(False, f"no SAM 2 model (config.json) in {self.segmenter_path}")
        self.device = best_device()
        return Availability(True)

    def residents(self) -> list[Resident]:
        held = weights_bytes(self.detector_path) + weights_bytes(self.segmenter_path)
        return [Resident(f"backend:{self.name}", self.device, held)]

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        return ServedBy(f"GroundingDINO ({self.detector_path.name}/) + SAM 2 ({self.segmenter_path.name}/)")

    def load(self) -> None:
        with self._lock:
            if self._sam is not None:
                return
            import transformers

            detector_class: Any = transformers.GroundingDinoForObjectDetection
            processor_class: Any = transformers.GroundingDinoProcessor
            sam_class: Any = transformers.Sam2Model
            started = time.perf_counter()
            try:
                detector = detector_class.from_pretrained(str(self.detector_path))
                processor = processor_class.from_pretrained(str(self.detector_path))
                sam = sam_class.from_pretrained(str(self.segmenter_path))
            except (OSError, ValueError, KeyError) as exc:
                raise BackendError(
                    f"the GroundingDINO or SAM 2 weights at {self.detector_path} / {self.segmenter_path} could "
                    "not be loaded",
                    raw_message=str(exc),
                ) from exc
            self._sam_mean, self._sam_std = self._normalisation()
            self.device = best_device()
            self._detector = detector.to(self.device).eval()
            self._processor = processor
            self._sam = sam.to(self.device).eval()
            log.info("loaded GroundingDINO + SAM 2 on %s in %.1fs", self.device, time.perf_counter() - started)

    def unload(self) -> None:
        with self._lock:
            self._detector = self._processor = self._sam = None

    def _normalisation(self) -> tuple[Any, Any]:
        """SAM 2's image mean and std from its preprocessor_config.json (ImageNet's when absent)."""
        try:
            config = json.loads((self.segmenter_path / "preprocessor_config.json").read_text())
            return (
                np.asarray(config.get("image_mean", IMAGENET_MEAN), dtype=np.float32),
                np.asarray(config.get("image_std", IMAGENET_STD), dtype=np.float32),
            )
        except (OSError, ValueError, AttributeError):
            return IMAGENET_MEAN, IMAGENET_STD

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        request = SegmentRequest.read(inputs)
        wanted = split_phrases(request.prompt)
        unwanted = split_phrases(request.negative_prompt)
        if not wanted:
            raise InputRejected('prompt: name what to cut out, e.g. "cat" or "shirt, shoes"')
        image = load_input_image(ctx, inputs, "image").convert("RGB")
        self.load()
        with self._lock:
            found = self._boxes(image, wanted, "prompt", ctx)
            if not any(found.values()):
                quoted = ", ".join(f"'{phrase}'" for phrase in wanted)
                raise InputRejected(f"prompt: nothing matching {quoted} was found in the image")
            removed_boxes = self._boxes(image, unwanted, "negative_prompt", ctx) if unwanted else {}
            kept = [box for boxes in found.values() for box in boxes]
            taken = [box for boxes in removed_boxes.values() for box in boxes]
            if ctx.cancelled():
                raise cancelled_error()
            masks = self._masks(image, kept + taken)
        ctx.progress(0.8)
        mask = np.bitwise_or.reduce(masks[: len(kept)])
        removed = masks[len(kept) :]
        names = [phrase for phrase, boxes in removed_boxes.items() if boxes]
        return finish_segment(ctx, image, mask, removed, request, names)

    def _boxes(self, image: Image.Image, phrases: list[str], field: str, ctx: RunContext) -> dict[str, list[Box]]:
        """Each phrase's boxes in image pixels, best first (logged per phrase)."""
        import torch

        width, height = image.size
        found: dict[str, list[Box]] = {}
        for phrase in phrases:
            if ctx.cancelled():
                raise cancelled_error()
            encoded = self._processor(images=image, text=f"{phrase}.", return_tensors="pt").to(self.device)
            with torch.inference_mode():
                outputs = self._detector(**encoded)
            result = self._processor.post_process_grounded_object_detection(
                outputs,
                encoded["input_ids"],
                threshold=self.box_threshold,
                text_threshold=self.text_threshold,
                target_sizes=[(height, width)],
            )[0]
            order = torch.argsort(result["scores"], descending=True)[: self.max_objects]
            boxes: list[Box] = []
            for x0, y0, x1, y1 in result["boxes"][order].float().cpu().tolist():
                x0, x1 = sorted((min(max(x0, 0.0), width), min(max(x1, 0.0), width)))
                y0, y1 = sorted((min(max(y0, 0.0), height), min(max(y1, 0.0), height)))
                if x1 - x0 >= 1 and y1 - y0 >= 1:
                    boxes.append((x0, y0, x1, y1))
            found[phrase] = boxes
            ctx.log(f"{field} '{phrase}': {len(boxes)} found")
        return found

    def _masks(self, image: Image.Image, boxes: list[Box]) -> list[Mask]:
        """One 0/255 mask per box, from SAM 2 on the image prepared as its processor would."""
        import torch
        import torch.nn.functional as functional

        side = int(self._sam.config.prompt_encoder_config.image_size)
        width, height = image.size
        square = image.resize((side, side), Image.Resampling.BILINEAR)
        pixels = (np.asarray(square, dtype=np.float32) / 255.0 - self._sam_mean) / self._sam_std
        pixel_values = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))[None]).to(self.device)
        scale = np.array([side / width, side / height, side / width, side / height], dtype=np.float32)
        input_boxes = torch.from_numpy(np.asarray(boxes, dtype=np.float32) * scale)[None].to(self.device)
        dtype = next(self._sam.parameters()).dtype
        with torch.inference_mode():
            outputs = self._sam(pixel_values=pixel_values.to(dtype), input_boxes=input_boxes, multimask_output=False)
            logits = outputs.pred_masks[0, :, 0:1].float()  # (boxes, 1, h, w)
            full = functional.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        inside = (full[:, 0] > 0).cpu().numpy()
        return [np.where(one, 255, 0).astype(np.uint8) for one in inside]


def segment_backends(models_dir: Path) -> list[Backend]:
    """The segment backends, best first: GroundingDINO + SAM 2 when either folder exists (its availability names
    the one missing), then MediaPipe's fixed vocabulary; the first available one serves the entry."""
    backends: list[Backend] = []
    detector, segmenter = models_dir / GROUNDING_DINO_FOLDER, models_dir / SAM2_FOLDER
    if detector.is_dir() or segmenter.is_dir():
        backends.append(GroundedSegmentBackend(detector, segmenter))
    backends.append(SegmentBackend())
    return backends
