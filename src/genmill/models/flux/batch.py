"""Cross-task batching for Flux `txt2img` and `txt2img-lora`: several tasks' prompts in one pipeline call.

The worker gathers pending tasks of one entry whose `BATCH_KEYS` inputs are equal (`Backend.batch_keys`) and hands
them to `FluxBackend.run_batch`. Everything that shapes the denoising loop must be the same for one call (size,
steps, guidance, images per prompt, negative prompt, LoRAs); what differs per task is its prompt and its seed.

Seeds: image j of a task is drawn from its own `torch.Generator` seeded `seed + j`, and a task run alone goes
through the very same code with a batch of one, so a task's images do not depend on its batch mates. Batched
matrix products may round differently from unbatched ones (float32 on a CPU: about 1e-6), which can move an
8-bit pixel by at most one level; the tests hold a batch member to that tolerance against the same task alone.

Progress is reported to every task at every step; a task cancelled mid-loop is dropped from reporting and
answered with the cancellation error, and when every task of the call is cancelled the loop stops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image

from genmill.backends.toolkit import StepCancelled, StepReporter, cancelled_error, field_value, pick_seed
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.records import OriginTask
from genmill.models.flux.tasks import save_images

if TYPE_CHECKING:
    from genmill.backends.base import RunContext
    from genmill.domain.records import InputFile
    from genmill.models.flux.backend import FluxBackend

BATCHED_TASK_TYPES = ("txt2img", "txt2img-lora")
"""The Flux task types that batch: one FluxPipeline call serves any number of prompts. The others take an image
or ControlNet inputs per task and run one by one."""

BATCH_KEYS = ("width", "height", "steps", "guidance_scale", "batch_size", "negative_prompt", "lora_settings")
"""The txt2img inputs that must be equal for tasks to share one pipeline call (the catalog's DevTxt2Img,
SchnellTxt2Img and their -lora forms: everything but prompt and seed)."""


@dataclass
class Member:
    """One task of a batch and what the batch learned about it."""

    index: int
    inputs: TaskInput
    ctx: RunContext
    seed: int
    reporter: StepReporter
    kwargs: dict[str, Any] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)
    cancelled: bool = False


class BatchReporter:
    """The pipeline's `callback_on_step_end` for a batch: each member's own `StepReporter` (progress, logs, its
    seed in the note) until that member is cancelled; the loop stops once every member is."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members

    def __call__(self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        for member in self.members:
            if member.cancelled:
                continue
            try:
                member.reporter(pipe, step, timestep, tensors)
            except StepCancelled:
                member.cancelled = True
        if all(member.cancelled for member in self.members):
            raise StepCancelled
        return {}


class FanOut:
    """The context for work done once for the whole batch (switching LoRAs): its log lines go to every member's
    task log; anything else is the first member's."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.first = members[0].ctx
        self.task_id = self.first.task_id

    def log(self, line: str) -> None:
        for member in self.members:
            member.ctx.log(line)

    def progress(self, fraction: float, note: str = "") -> None:
        self.first.progress(fraction, note)

    def read_input(self, ref: str, *, field: str) -> InputFile:
        return self.first.read_input(ref, field=field)

    def save_output(self, data: bytes, *, ext: str, content_type: str) -> str:
        return self.first.save_output(data, ext=ext, content_type=content_type)

    def cancelled(self) -> bool:
        return all(member.ctx.cancelled() for member in self.members)

    def origin(self) -> OriginTask | None:
        return None  # batched entries (txt2img) are never derived operations

    def remember(self, key: str, value: Any) -> None:
        self.first.remember(key, value)


def batch_signature(inputs: TaskInput) -> str:
    """The validated values of `BATCH_KEYS`; tasks batch only when these are equal (the worker matched the raw
    inputs already, this guards callers that did not)."""
    return repr([field_value(inputs, key) for key in BATCH_KEYS])


def run_txt2img_batch(
    backend: FluxBackend, entry: CatalogEntry, inputs: list[TaskInput], ctxs: list[RunContext]
) -> list[dict[str, Any] | Exception]:
    """Run txt2img tasks with one pipeline call per group of equal `BATCH_KEYS`; one output or error per task."""
    results: list[dict[str, Any] | Exception] = [RuntimeError("not run")] * len(inputs)
    groups: dict[str, list[Member]] = {}
    for index, (one, ctx) in enumerate(zip(inputs, ctxs, strict=True)):
        try:
            seed = pick_seed(one)
            reporter = StepReporter(ctx, seed)
            reporter.check()
        except Exception as exc:
            results[index] = exc
            continue
        ctx.log(f"{backend.model} {entry.task_type}, seed {seed}")
        groups.setdefault(batch_signature(one), []).append(Member(index, one, ctx, seed, reporter))
    if groups:
        backend.load()
    for group in groups.values():
        _run_group(backend, entry, group, results)
    return results


def _run_group(
    backend: FluxBackend, entry: CatalogEntry, group: list[Member], results: list[dict[str, Any] | Exception]
) -> None:
    import torch

    lora = entry.task_type.endswith("-lora")
    with backend.shared.lock:
        pipe = backend._pipes["txt2img"]
        members: list[Member] = []
        for member in group:
            try:
                member.reporter.check()
                member.kwargs = backend._common(member.inputs, member.ctx, member.reporter, pipe)
                member.size = backend._sized(member.inputs, pipe, member.kwargs, member.ctx)
                members.append(member)
            except Exception as exc:
                results[member.index] = exc
        if not members:
            return
        try:
            backend._loras(pipe, members[0].inputs, FanOut(members), lora)
        except Exception as exc:
            for member in members:
                results[member.index] = exc
            return
        count = int(members[0].kwargs["num_images_per_prompt"])
        kwargs = dict(members[0].kwargs)
        kwargs["prompt"] = [member.kwargs["prompt"] for member in members]
        kwargs["generator"] = [
            torch.Generator("cpu").manual_seed(member.seed + image) for member in members for image in range(count)
        ]
        if "negative_prompt" in kwargs:
            kwargs["negative_prompt"] = [kwargs["negative_prompt"]] * len(members)
        kwargs["callback_on_step_end"] = BatchReporter(members)
        if len(members) > 1:
            for member in members:
                member.ctx.log(f"one pipeline call for {len(members)} tasks' prompts")
        started = time.perf_counter()
        try:
            images = backend._generate(pipe, kwargs)
        except StepCancelled:
            for member in members:
                results[member.index] = cancelled_error()
            return
        except Exception as exc:
            for member in members:
                results[member.index] = exc
            return
        elapsed = time.perf_counter() - started
    for position, member in enumerate(members):
        mine: list[Image.Image] = images[position * count : (position + 1) * count]
        if member.cancelled or member.ctx.cancelled():
            results[member.index] = cancelled_error()
            continue
        try:
            member.ctx.log(f"generated {len(mine)} image(s) in {elapsed:.1f}s")
            output = save_images(mine, member.size, member.ctx)
            member.ctx.progress(1.0, note=f"done, seed {member.seed}")
            results[member.index] = output
        except Exception as exc:
            results[member.index] = exc
