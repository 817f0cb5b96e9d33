"""Zero-shot text to speech: `Qubico/tts` `zero-shot` (F5-TTS voice cloning from a reference clip).

Priced at $0.025 per 1,000 characters of `gen_text`, proportionally, rounded up to a whole credit.
"""

from __future__ import annotations

from pydantic import Field

from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry
from genmill.models.schema import OptionalMediaRef, TaskInput, per_unit

MODEL = "Qubico/tts"
FAMILY = "tts"

MAX_GEN_TEXT = 10_000
USD_PER_1000_CHARS = 0.025


class ZeroShot(TaskInput):
    gen_text: str = Field(
        ..., min_length=1, max_length=MAX_GEN_TEXT, description="Text to speak (at most 10,000 characters)."
    )
    ref_audio: OptionalMediaRef = Field(
        "",
        description="Reference voice: URL or base64 audio, ideally 3-30 seconds of clear speech. A deployment "
        "that serves no voice-cloning model refuses it when the task is created (GET /api/v1/models, served_by).",
    )
    ref_text: str = Field(
        "",
        description="Transcript of ref_audio. PiAPI transcribes it when empty; a deployment with no speech "
        "recogniser requires it with ref_audio and refuses the task when it is created (served_by says which).",
    )


def tts_price(inputs: ZeroShot) -> int:
    return per_unit(USD_PER_1000_CHARS, len(inputs.gen_text), per=1000)


ENTRIES: list[CatalogEntry] = [
    CatalogEntry(
        model=MODEL,
        task_type="zero-shot",
        input_model=ZeroShot,
        price=tts_price,
        family=FAMILY,
        # Audio outputs are kept as long as images (3 days).
        retention=IMAGE_RETENTION,
        description="Speak gen_text in the voice of ref_audio ($0.025 per 1,000 characters).",
    ),
]
