"""LoRA adapters for the diffusers backends (Flux, Wan, HunyuanVideo): which file a `lora_settings[].lora_type`
names in a family's LoRA folder, and which adapters one transformer holds and has switched on.

torch and diffusers are never imported here: the pipeline the adapters load into is handed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genmill.backends.base import RunContext
from genmill.errors import BackendError

LORA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""A `lora_type` is a file name inside the LoRA folder, never a path (no slashes, no leading dot)."""


@dataclass(frozen=True)
class LoraChoice:
    name: str
    adapter: str
    path: Path
    strength: float


def resolve_loras(settings: Any, loras_dir: Path) -> list[LoraChoice]:
    """Map `lora_settings[].lora_type` to LoRA files in `loras_dir`: `<lora_type>.safetensors`, or a folder
    `<lora_type>/` holding diffusers' `pytorch_lora_weights.safetensors`."""
    if not isinstance(settings, list) or not settings:
        raise BackendError("lora_settings: at least one {lora_type, lora_strength} entry is required")
    choices: list[LoraChoice] = []
    for index, setting in enumerate(settings):
        where = f"lora_settings[{index}]"
        name = getattr(setting, "lora_type", None)
        if not isinstance(name, str) or not LORA_NAME.match(name) or ".." in name:
            raise BackendError(f"{where}.lora_type: {name!r} is not a LoRA name (letters, digits, '.', '_', '-')")
        strength = getattr(setting, "lora_strength", 1.0)
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength <= 2:
            raise BackendError(f"{where}.lora_strength: must be a number from 0 to 2, got {strength!r}")
        if getattr(setting, "lora_image", ""):
            raise BackendError(f"{where}.lora_image: LoRA reference images are not supported by this server")
        path = loras_dir / f"{name}.safetensors"
        if not path.is_file():
            path = loras_dir / name / "pytorch_lora_weights.safetensors"
        if not path.is_file():
            available = sorted(p.stem for p in loras_dir.glob("*.safetensors")) if loras_dir.is_dir() else []
            raise BackendError(
                f"{where}.lora_type: no LoRA named {name!r} on this server"
                + (f" (available: {', '.join(available)})" if available else f" (none installed in {loras_dir})")
            )
        if any(choice.name == name for choice in choices):
            raise BackendError(f"{where}.lora_type: {name!r} is listed twice")
        adapter = "lora_" + re.sub(r"\W", "_", name)
        choices.append(LoraChoice(name=name, adapter=adapter, path=path, strength=float(strength)))
    return choices


class LoraState:
    """Which LoRA adapters sit in one transformer, and which are switched on.

    Adapters stay loaded between tasks (loading a LoRA costs seconds) and are switched off for tasks that ask
    for none, so a LoRA never leaks into a later task. At most `keep` adapters stay resident.
    """

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self.loaded: list[str] = []
        self.pipe: Any = None
        """The pipeline the adapters were switched on through (it owns the patched modules)."""

    @property
    def active(self) -> bool:
        return self.pipe is not None

    def off(self) -> None:
        if self.pipe is not None:
            self.pipe.disable_lora()
            self.pipe = None

    def apply(self, pipe: Any, choices: list[LoraChoice], ctx: RunContext) -> None:
        """Load what is missing and switch on exactly `choices` at their strengths."""
        wanted = [choice.adapter for choice in choices]
        stale = [name for name in self.loaded if name not in wanted]
        if len(self.loaded) + len(wanted) > self.keep and stale:
            pipe.delete_adapters(stale)
            self.loaded = [name for name in self.loaded if name not in stale]
        for choice in choices:
            if choice.adapter not in self.loaded:
                ctx.log(f"loading LoRA {choice.name}")
                try:
                    pipe.load_lora_weights(str(choice.path), adapter_name=choice.adapter)
                except (ValueError, KeyError, RuntimeError, OSError) as exc:
                    raise BackendError(
                        f"lora_settings: the LoRA {choice.name!r} does not fit this model",
                        raw_message=f"{type(exc).__name__}: {exc}",
                    ) from exc
                self.loaded.append(choice.adapter)
        pipe.enable_lora()
        pipe.set_adapters(wanted, adapter_weights=[choice.strength for choice in choices])
        self.pipe = pipe
        ctx.log("LoRA: " + ", ".join(f"{choice.name} x{choice.strength:g}" for choice in choices))
