"""Midjourney's `describe` on an open captioning model: BLIP (Salesforce/blip-image-captioning-large) through
transformers, loaded from `blip-captioning/` under the models folder.

Midjourney answers describe with four prompts that could have drawn the image; BLIP writes one caption per beam, so
four distinct beams give four descriptions, each suffixed with the image's aspect ratio as Midjourney does
("--ar 3:2"). It is a stand-in (another model), served only where the operator enables `midjourney-flux`.
transformers and torch are imported inside functions only: the registry imports this module without them.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from genmill.errors import BackendError

CAPTION_FOLDER = "blip-captioning"
DESCRIPTIONS = 4
MAX_CAPTION_TOKENS = 40
NUMBERS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣")


def aspect_suffix(width: int, height: int) -> str:
    """Midjourney's `--ar W:H` for an image, reduced to lowest terms."""
    divisor = math.gcd(width, height) or 1
    return f"--ar {width // divisor}:{height // divisor}"


def format_descriptions(captions: list[str], size: tuple[int, int]) -> str:
    """Four numbered prompts in one text, as Midjourney's describe shows them."""
    suffix = aspect_suffix(*size)
    return "\n\n".join(f"{NUMBERS[i]} {caption.strip()} {suffix}" for i, caption in enumerate(captions))


class Captioner:
    """A BLIP captioning model loaded once from a transformers folder, then reused."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        self.path = path
        self.device = device
        self._lock = threading.Lock()
        self._model: Any = None
        self._processor: Any = None

    def ready(self) -> str:
        """ "" when the folder holds a loadable BLIP model, else why not."""
        if not (self.path / "config.json").is_file():
            return f"no captioning weights at {self.path}; put Salesforce/blip-image-captioning-large there"
        return ""

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import transformers

            model_class: Any = transformers.BlipForConditionalGeneration
            processor_class: Any = transformers.BlipProcessor
            try:
                model = model_class.from_pretrained(str(self.path))
                self._processor = processor_class.from_pretrained(str(self.path))
            except (OSError, ValueError, KeyError) as exc:
                raise BackendError(
                    f"the BLIP weights at {self.path} could not be loaded", raw_message=str(exc)
                ) from exc
            self._model = model.to(self.device).eval()

    def unload(self) -> None:
        with self._lock:
            self._model = self._processor = None

    def describe(self, image: Image.Image) -> list[str]:
        """Four distinct captions of `image` (beam search keeps the four best beams)."""
        import torch

        self.load()
        inputs = self._processor(images=image.convert("RGB"), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            ids = self._model.generate(
                **inputs,
                num_beams=DESCRIPTIONS * 2,
                num_return_sequences=DESCRIPTIONS,
                max_new_tokens=MAX_CAPTION_TOKENS,
            )
        captions = [text.strip() for text in self._processor.batch_decode(ids, skip_special_tokens=True)]
        if len(captions) != DESCRIPTIONS:
            raise BackendError(f"the captioning model returned {len(captions)} captions, not {DESCRIPTIONS}")
        return [caption or "an image" for caption in captions]
