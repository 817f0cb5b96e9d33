"""`genmill models` says, for every catalog entry, what would make it run here (or why nothing can)."""

from __future__ import annotations

from pathlib import Path

from genmill.backends.registry import LLM_REASON, TRELLIS_REASON, why_not_served
from genmill.catalog import build_catalog

GENERIC = "no backend for this entry is installed"
BUILTIN_FAMILIES = {"image-toolkit", "video-toolkit", "tts", "echo"}
CHAT_FAMILIES = {"llm", "gpts"}  # answered in the API process by GENMILL_LLM_MODELS, not by a worker's backend


def test_every_model_entry_names_its_weights_or_why_it_cannot_run() -> None:
    for entry in build_catalog():
        if entry.family in BUILTIN_FAMILIES:
            continue  # served by the CPU backends that ship with genmill
        why = why_not_served(entry.model, entry.task_type, Path("weights"))
        assert why != GENERIC, entry.key
        if entry.family in CHAT_FAMILIES:
            assert why == LLM_REASON and "GENMILL_LLM_MODELS" in why, entry.key
            continue
        assert "weights/" in why or "not served" in why or "no backend:" in why or "camera" in why, (entry.key, why)


def test_specific_reasons() -> None:
    trellis = why_not_served("Qubico/trellis", "text-to-3d", Path("weights"))
    assert trellis.startswith("no weights: put trellis-text-xlarge/ under weights/") and TRELLIS_REASON in trellis
    assert "trellis-image-large/" in why_not_served("Qubico/trellis", "image-to-3d")
    assert "wan2.1-flf2v-14b/" in why_not_served("Qubico/wanx", "img2video-14b-keyframe")
    assert "ace-step/" in why_not_served("Qubico/diffrhythm", "txt2audio-full")
    assert "ace-step/" in why_not_served("Qubico/ace-step", "edit")
    assert why_not_served("Qubico/nothing", "x") == GENERIC
