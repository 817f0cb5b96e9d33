"""What the Flux backends of one worker share: the lock, the placement and memory plan, the loaded FLUX.1 base
pipelines, and the text encoders and VAE that every FLUX.1 variant ships identically.

Sharing is what makes the memory accounting true: T5-XXL (~9 GiB in bf16) is loaded once for dev, fill, kontext
and redux, and each backend's `residents()` names it with the same key, so the model cache counts it once. The
shared parts are reference-counted by the backends holding them: when the last one unloads, they are dropped.

All Flux backends of a worker run under one memory plan (the first one planned), because their pipelines share
modules: a text encoder cannot be on the GPU for one variant and offloaded for another.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from genmill.backends.base import Resident
from genmill.backends.diffusers_loading import Placement, load_pipeline, weight_bytes
from genmill.backends.loras import LoraState
from genmill.backends.memory_modes import apply_plan
from genmill.domain.placement import Footprint, MemoryMode, MemoryPlan

log = logging.getLogger("genmill.backends.flux")

SHARED_COMPONENTS = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae")
ENCODERS_KEY = "flux:encoders"
PIPELINE_HOOKS = (MemoryMode.MODEL_OFFLOAD, MemoryMode.SEQUENTIAL_OFFLOAD)
"""Modes whose offload hooks belong to a pipeline object: they are moved to the pipeline about to run."""


class FluxShared:
    """State the Flux backends of one worker share; the module docstring says why."""

    def __init__(self, device: str | None = None, *, placement: Placement | None = None) -> None:
        """`placement` says where and how models load; `device` alone ("cpu", "cuda:N") is a shorthand for a
        placement with default memory plans. Neither: the first GPU when there is one."""
        self.lock = threading.RLock()
        self.placement = placement or Placement(device or "auto")
        self.plan: MemoryPlan | None = None
        self.bases: dict[Path, Any] = {}
        self.encoders: dict[str, Any] = {}
        self.loras: dict[int, LoraState] = {}
        self.holders: dict[str, set[int]] = {}
        self._hooked: int | None = None

    # --- planning and accounting -------------------------------------------------------------------------------

    def plan_for(self, names: tuple[str, ...], footprint: Footprint) -> MemoryPlan:
        """The plan every Flux backend of this worker loads under: planned once, from the first footprint."""
        with self.lock:
            if self.plan is None:
                self.plan = self.placement.plan((*names, "flux"), footprint, video=False)
                log.info("Flux memory plan: %s (%s)", self.placement.describe(self.plan), self.plan.reason)
            return self.plan

    def residents(self, parts: dict[str, int], footprint: Footprint) -> tuple[list[Resident], int]:
        """Residents for named parts (`ENCODERS_KEY`, "flux:transformer:<path>", …: bytes at the load dtype) under
        the shared plan, and the working memory a run needs on the GPU on top of them."""
        assert self.plan is not None
        device = self.placement.device
        if not device.startswith("cuda"):
            return [Resident(key, device, nbytes) for key, nbytes in parts.items()], footprint.activations
        if self.plan.mode is MemoryMode.GPU:
            residents = []
            for key, nbytes in parts.items():
                if key.startswith("flux:transformer:"):  # quantisation shrinks the denoiser only
                    nbytes = self.plan.gpu_resident_bytes(Footprint(nbytes, 0, 0, 0))
                residents.append(Resident(key, device, nbytes))
            return residents, footprint.activations
        residents = [Resident(key, "cpu", nbytes) for key, nbytes in parts.items()]
        return residents, self.plan.gpu_peak_bytes(footprint)

    # --- loading -----------------------------------------------------------------------------------------------

    def load(self, class_name: str, path: Path, holder: object, *, share: tuple[str, ...] = ()) -> Any:
        """Load a pipeline from a diffusers folder onto the device, reusing the shared components named in
        `share` once some pipeline has loaded them. Callers hold `lock`."""
        assert self.plan is not None
        reused = {name: self.encoders[name] for name in share if name in self.encoders}
        pipe = load_pipeline(class_name, path, self.placement, self.plan, reuse=reused)
        self._hooked = id(pipe)
        for name in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae"):
            if name in share and getattr(pipe, name, None) is not None:
                self.encoders.setdefault(name, getattr(pipe, name))
        self.hold(holder, ENCODERS_KEY)
        return pipe

    def base(self, path: Path, holder: object) -> Any:
        """The FluxPipeline for a base folder, loaded once for every backend that generates with it."""
        with self.lock:
            if path not in self.bases:
                self.bases[path] = self.load("FluxPipeline", path, holder, share=SHARED_COMPONENTS)
            self.hold(holder, f"base:{path}")
            self.hold(holder, ENCODERS_KEY)
            return self.bases[path]

    def place(self, module: Any) -> Any:
        """A module loaded beside the pipelines (ControlNets, the depth estimator) put where the plan wants it:
        on the device when the pipelines are, else left in CPU RAM for the pipeline's offload hooks."""
        assert self.plan is not None
        device = self.placement.device
        if self.plan.mode is MemoryMode.GPU or not device.startswith("cuda"):
            return module.to(device)
        return module

    def activate(self, pipe: Any) -> None:
        """Before `pipe` runs: under pipeline-level offload, move the offload hooks of the shared modules to this
        pipeline (another Flux pipeline over the same encoders may have installed its own). Callers hold `lock`."""
        if self.plan is None or self.plan.mode not in PIPELINE_HOOKS or self._hooked == id(pipe):
            return
        apply_plan(pipe, self.plan, self.placement.device)
        self._hooked = id(pipe)

    # --- holding and releasing ---------------------------------------------------------------------------------

    def hold(self, holder: object, key: str) -> None:
        self.holders.setdefault(key, set()).add(id(holder))

    def release(self, holder: object) -> None:
        """Forget every shared part `holder` used; parts nobody holds any more are dropped."""
        with self.lock:
            for key, holders in list(self.holders.items()):
                holders.discard(id(holder))
                if holders:
                    continue
                del self.holders[key]
                if key == ENCODERS_KEY:
                    self.encoders.clear()
                elif key.startswith("base:"):
                    pipe = self.bases.pop(Path(key.removeprefix("base:")), None)
                    self.loras.pop(id(getattr(pipe, "transformer", None)), None)
            self._hooked = None

    def forget_loras(self, pipe: Any) -> None:
        self.loras.pop(id(getattr(pipe, "transformer", None)), None)

    def lora_state(self, pipe: Any) -> LoraState:
        return self.loras.setdefault(id(pipe.transformer), LoraState())

    def quiet_loras(self) -> None:
        """Switch every active LoRA off: the text encoders they may patch are shared with every pipeline."""
        for state in self.loras.values():
            state.off()


def parts_bytes(path: Path, element_bytes: int, parts: tuple[str, ...]) -> int:
    """Bytes of some component folders of a diffusers folder, at `element_bytes` per float."""
    return sum(weight_bytes(path / part, element_bytes) for part in parts)
