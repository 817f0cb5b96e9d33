"""Flux image generation with diffusers: `Qubico/flux1-dev`, `Qubico/flux1-schnell`, `Qubico/flux1-dev-advanced`.

Weights are never downloaded: each model reads a diffusers-format folder under a configured models folder
(GENMILL_MODELS_DIR, `genmill-models/` by default):

    flux1-dev/                    FLUX.1-dev       dev and dev-advanced: txt2img, img2img, *-lora
    flux1-schnell/                FLUX.1-schnell   schnell: txt2img, img2img, txt2img-lora
    flux1-fill-dev/               FLUX.1-Fill-dev  dev-advanced: fill-inpaint, fill-outpaint
    flux1-kontext-dev/            FLUX.1-Kontext-dev  dev-advanced: kontext
    flux1-redux-dev/              FLUX.1-Redux-dev (the prior; generation uses flux1-dev)  redux-variation
    flux1-dev-controlnet-<control_type>/   a FluxControlNetModel per control_type  controlnet-lora
                                  (canny, depth, soft_edge, openpose; maps made by `control_maps`)
    depth-anything/               a transformers depth estimator, for control_type depth
    flux-loras/<lora_type>.safetensors   LoRA files named by `lora_settings[].lora_type`

One `FluxBackend` serves one model and one of those weight sets (a "variant"), so that `genmill models` shows
exactly which entries have weights here and why the others do not. The instances of one server share a
`FluxShared`: one lock (one accelerator runs one denoising loop at a time, and LoRA state lives in modules the
pipelines share), the loaded FLUX.1-dev pipeline (dev and dev-advanced use the same weights), and the text
encoders and VAE, which every FLUX.1 variant ships identically, so T5-XXL is held in memory once.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from genmill.backends.base import Availability, Backend, Prefetched, Resident, RunContext
from genmill.backends.diffusers_loading import (
    INSTALL_HINT,
    REQUIRED_PACKAGES,
    folder_footprint,
    read_model_index,
    weight_bytes,
)
from genmill.backends.loras import resolve_loras
from genmill.backends.memory_modes import is_out_of_memory
from genmill.backends.toolkit import (
    StepCancelled,
    StepReporter,
    cancelled_error,
    field_value,
    load_image,
    pick_seed,
    prompt_text,
)
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.placement import Footprint
from genmill.errors import BackendError
from genmill.models.flux.batch import BATCH_KEYS, BATCHED_TASK_TYPES, run_txt2img_batch
from genmill.models.flux.catalog import ADVANCED, DEV, SCHNELL
from genmill.models.flux.control import DEPTH_FOLDER, control_folders, load_controls, run_controlnet, union_problem
from genmill.models.flux.control_maps import CONTROL_TYPES, PoseFinder
from genmill.models.flux.edit import fill_inpaint, fill_outpaint, kontext, redux_variation
from genmill.models.flux.shared import ENCODERS_KEY, SHARED_COMPONENTS, FluxShared, parts_bytes
from genmill.models.flux.tasks import fit_pixels, generation_size, number, positive_int, same_components, save_images


@dataclass(frozen=True)
class ModelSpec:
    folder: str
    weights: str
    max_sequence_length: int


MODELS: dict[str, ModelSpec] = {
    DEV: ModelSpec("flux1-dev", "FLUX.1-dev", 512),
    SCHNELL: ModelSpec("flux1-schnell", "FLUX.1-schnell", 256),  # schnell was trained with 256 T5 tokens
    ADVANCED: ModelSpec("flux1-dev", "FLUX.1-dev", 512),
}


@dataclass(frozen=True)
class Variant:
    """One weight set a backend instance needs, and the task types it serves with them."""

    folder: str | None
    """Its own folder under models_dir; None means the model's base folder (`ModelSpec.folder`)."""
    weights: str
    pipeline_class: str
    task_types: tuple[str, ...]
    needs_base: bool = False
    """Also generates with the model's base FLUX.1 pipeline (redux feeds it image embeddings)."""


VARIANTS: dict[str, Variant] = {
    "base": Variant(None, "", "FluxPipeline", ("txt2img", "img2img", "txt2img-lora", "img2img-lora")),
    "fill": Variant("flux1-fill-dev", "FLUX.1-Fill-dev", "FluxFillPipeline", ("fill-inpaint", "fill-outpaint")),
    "kontext": Variant("flux1-kontext-dev", "FLUX.1-Kontext-dev", "FluxKontextPipeline", ("kontext",)),
    "redux": Variant(
        "flux1-redux-dev", "FLUX.1-Redux-dev", "FluxPriorReduxPipeline", ("redux-variation",), needs_base=True
    ),
    "controlnet": Variant(None, "", "FluxPipeline", ("controlnet-lora",)),
}
ADVANCED_ONLY = ("fill", "kontext", "redux", "controlnet")

CONTROL_PREFIX = "flux1-dev-controlnet-"

log = logging.getLogger("genmill.backends.flux")


class FluxBackend(Backend):
    """One Flux model with one weight set (see `VARIANTS`), generating through diffusers' own pipelines."""

    def __init__(
        self,
        model: str,
        models_dir: Path,
        *,
        variant: str = "base",
        shared: FluxShared | None = None,
        true_cfg_scale: float = 1.5,
        max_batch_size: int = 4,
    ) -> None:
        """`models_dir` holds the weight folders named in the module docstring; `shared` is the state shared
        with the other Flux backends of this server (a private one when None); `true_cfg_scale` is the real
        classifier-free guidance used when a task gives a negative_prompt (Flux's own guidance is distilled
        and cannot use one; true CFG runs the transformer twice per step, and 1.0 ignores negative prompts);
        `max_batch_size` is how many txt2img tasks the base variant runs in one pipeline call (`batch`)."""
        if model not in MODELS:
            raise ValueError(f"unknown Flux model {model!r}; choose one of {sorted(MODELS)}")
        if variant not in VARIANTS or (variant in ADVANCED_ONLY and model != ADVANCED):
            raise ValueError(f"variant {variant!r} is not offered for {model}")
        self.model = model
        self.spec = MODELS[model]
        self.variant = VARIANTS[variant]
        self.models_dir = models_dir
        self.loras_dir = models_dir / "flux-loras"
        self.base_path = models_dir / self.spec.folder
        self.path = models_dir / (self.variant.folder or self.spec.folder)
        self.shared = shared or FluxShared()
        self.true_cfg_scale = true_cfg_scale
        self.name = model.split("/", 1)[1] + ("" if variant == "base" else f"-{variant}")
        task_types = self.variant.task_types
        if variant == "base" and model != ADVANCED:
            task_types = tuple(t for t in task_types if t != "img2img-lora")
        self.entries = tuple((model, task_type) for task_type in task_types)
        self.max_batch_size = max(1, max_batch_size) if variant == "base" else 1
        self.batch_keys = BATCH_KEYS
        self._pipes: dict[str, Any] = {}
        self._controlnets: dict[str, Any] = {}
        self._depth: tuple[Any, Any] | None = None
        self._pose = PoseFinder()
        self._residents: list[Resident] = []

    def control_folders(self) -> dict[str, Path]:
        """The usable ControlNet folders present, by control_type (controlnet variant only); a union ControlNet
        in the folder of a type it has no mode for is left out (`unusable_controls` says why)."""
        if self.variant is not VARIANTS["controlnet"]:
            return {}
        found = control_folders(self.models_dir / CONTROL_PREFIX)
        return {kind: path for kind, path in found.items() if not union_problem(kind, path)}

    def unusable_controls(self) -> dict[str, str]:
        """ControlNet folders present that cannot serve their control_type, with the reason, by control_type."""
        if self.variant is not VARIANTS["controlnet"]:
            return {}
        problems = {
            kind: union_problem(kind, path) for kind, path in control_folders(self.models_dir / CONTROL_PREFIX).items()
        }
        return {kind: why for kind, why in problems.items() if why}

    # --- availability and loading -----------------------------------------------------------------------------

    def availability(self) -> Availability:
        missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed: {INSTALL_HINT}")
        needed = [(self.path, self.variant.weights or self.spec.weights, self.variant.pipeline_class)]
        if self.variant.needs_base:
            needed.append((self.base_path, self.spec.weights, "FluxPipeline"))
        for path, weights, class_name in needed:
            if not (path / "model_index.json").is_file():
                return Availability(
                    False,
                    f"weights for {self.model} not found at {path}; put a diffusers-format {weights} folder there",
                )
            found, missing = read_model_index(path)
            if class_name != "FluxPipeline" and found != class_name:
                return Availability(False, f"{path} holds a {found}, not a {class_name} ({weights})")
            if missing:
                return Availability(False, f"{path} is incomplete: its {', '.join(missing)} folder(s) are missing")
        if self.variant is VARIANTS["controlnet"] and not self.control_folders():
            return Availability(
                False,
                f"no ControlNet weights at {self.models_dir}/{CONTROL_PREFIX}{{{','.join(CONTROL_TYPES)}}}; "
                "put a diffusers-format FluxControlNetModel folder there",
            )
        self._account()
        return Availability(True, "; ".join(f"{k} not served: {why}" for k, why in self.unusable_controls().items()))

    def _account(self) -> None:
        """Plan this backend's memory and say what it holds: the shared encoders and VAE once for every Flux
        backend, each transformer once per folder, and this variant's own extras (Redux prior, ControlNets)."""
        placement = self.shared.placement
        element = placement.dtypes()[0].itemsize
        generator = self.base_path if self.variant.needs_base or self.variant.folder is None else self.path
        footprint = folder_footprint(generator, element)
        self.shared.plan_for((self.name, self.variant.folder or self.spec.folder), footprint)
        parts = {
            ENCODERS_KEY: footprint.encoders + footprint.vae,
            f"flux:transformer:{generator}": footprint.transformer,
        }
        if self.variant.needs_base:  # the Redux prior's image encoder and embedder
            parts[f"flux:redux:{self.path}"] = parts_bytes(self.path, element, ("image_encoder", "image_embedder"))
        for path in self.control_folders().values():
            parts[f"flux:controlnet:{path}"] = weight_bytes(path, element)
        if "depth" in self.control_folders():
            parts[f"flux:depth:{self.models_dir / DEPTH_FOLDER}"] = weight_bytes(self.models_dir / DEPTH_FOLDER, 4)
        extra = sum(parts.values()) - footprint.encoders - footprint.vae - footprint.transformer
        whole = Footprint(footprint.transformer + extra, footprint.encoders, footprint.vae, footprint.activations)
        self._residents, self.working_bytes = self.shared.residents(parts, whole)
        self.device = placement.device
        self.memory_bytes = sum(r.nbytes for r in self._residents if r.device == self.device)

    def residents(self) -> list[Resident]:
        return list(self._residents)

    def memory_note(self) -> str:
        return self.shared.placement.describe(self.shared.plan)

    def load(self) -> None:
        if self.shared.plan is None and not self.availability().ok:  # loaded without asking first (tools, tests)
            raise BackendError(self.availability().reason)
        with self.shared.lock:
            if self._pipes:
                return
            from diffusers import FluxImg2ImgPipeline

            kind = self.variant.pipeline_class
            if kind == "FluxPipeline":
                base = self.shared.base(self.path, self)
                pipes = {"txt2img": base, "img2img": same_components(FluxImg2ImgPipeline, base)}
            elif kind == "FluxPriorReduxPipeline":
                base = self.shared.base(self.base_path, self)
                text = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
                pipes = {"txt2img": base, "prior": self.shared.load(kind, self.path, self, share=text)}
            else:
                pipes = {"main": self.shared.load(kind, self.path, self, share=SHARED_COMPONENTS)}
            self._controlnets, self._depth = load_controls(self, self.control_folders())
            for pipe in pipes.values():
                pipe.set_progress_bar_config(disable=True)
            self._pipes = pipes

    def unload(self) -> None:
        """Drop this backend's pipelines and models; shared parts go when no other Flux backend holds them."""
        with self.shared.lock:
            if "main" in self._pipes:  # fill/kontext own their transformer; the base's goes in `release`
                self.shared.forget_loras(self._pipes["main"])
            self._pipes, self._controlnets, self._depth = {}, {}, None
            self.shared.release(self)

    # --- running ----------------------------------------------------------------------------------------------

    def batches_for(self, entry: CatalogEntry) -> bool:
        """Only txt2img gathers batches: the other task types carry per-task images and run one by one."""
        return self.max_batch_size > 1 and entry.task_type in BATCHED_TASK_TYPES

    def run_batch(
        self, entry: CatalogEntry, inputs: list[TaskInput], ctxs: list[RunContext]
    ) -> list[dict[str, Any] | Exception]:
        if entry.task_type in BATCHED_TASK_TYPES and (entry.model, entry.task_type) in self.entries:
            return run_txt2img_batch(self, entry, inputs, ctxs)
        return super().run_batch(entry, inputs, ctxs)

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        task_type = entry.task_type
        if (entry.model, task_type) not in self.entries:
            raise BackendError(f"task_type: {self.name} does not run {entry.model} {task_type}")
        if task_type in BATCHED_TASK_TYPES:  # a batch of one: a task's images never depend on its batch mates
            (result,) = run_txt2img_batch(self, entry, [inputs], [ctx])
            if isinstance(result, Exception):
                raise result
            return result
        seed = pick_seed(inputs)
        reporter = StepReporter(ctx, seed)
        reporter.check()
        self.load()
        ctx.log(f"{self.model} {task_type}, seed {seed}")
        runner = TASK_RUNNERS[task_type.removesuffix("-lora")]
        refs: list[tuple[str, object]] = [("image", field_value(inputs, "image"))]
        for index, setting in enumerate(field_value(inputs, "control_net_settings") or []):
            refs.append((f"control_net_settings[{index}].control_image", getattr(setting, "control_image", None)))
        ctx = Prefetched(ctx, refs)  # fetch input URLs now, not while holding the accelerator
        with self.shared.lock:
            reporter.check()
            started = time.perf_counter()
            try:
                images, size, *extra = runner(self, inputs, ctx, reporter, task_type.endswith("-lora"))
            except StepCancelled:
                raise cancelled_error() from None
            ctx.log(f"generated {len(images)} image(s) in {time.perf_counter() - started:.1f}s")
        output = save_images(images, size, ctx)
        if extra and extra[0]:
            output["preprocessed_image_urls"] = [save_images([m], m.size, ctx)["image_url"] for m in extra[0]]
        ctx.progress(1.0, note=f"done, seed {seed}")
        return output

    def _common(
        self, inputs: TaskInput, ctx: RunContext, reporter: StepReporter, pipe: Any, *, negatives: bool = True
    ) -> dict[str, Any]:
        """The pipeline arguments every Flux task shares: prompt, steps, guidance, seed, batch, progress."""
        import torch

        max_steps = 10 if self.model == SCHNELL else 50
        default_steps = 4 if self.model == SCHNELL else 28
        kwargs: dict[str, Any] = {
            "prompt": prompt_text(inputs),
            "num_inference_steps": positive_int(inputs, "steps", default_steps, max_steps),
            "guidance_scale": number(inputs, "guidance_scale", 3.5, 1.5, 5.0),
            "num_images_per_prompt": positive_int(inputs, "batch_size", 1, 4),
            "generator": torch.Generator("cpu").manual_seed(reporter.seed),
            "max_sequence_length": self.spec.max_sequence_length,
            "callback_on_step_end": reporter,
            "output_type": "pil",
        }
        if not getattr(pipe.transformer.config, "guidance_embeds", True) and field_value(inputs, "guidance_scale"):
            ctx.log(f"guidance_scale: {self.spec.weights} is guidance-distilled and ignores it")
        negative = field_value(inputs, "negative_prompt", "")
        if negative:
            accepts = negatives and "negative_prompt" in inspect.signature(pipe.__call__).parameters
            if accepts and self.true_cfg_scale > 1:
                kwargs.update(negative_prompt=negative, true_cfg_scale=self.true_cfg_scale)
                ctx.log(f"negative_prompt: applied with true CFG scale {self.true_cfg_scale:g} (two passes per step)")
            else:
                ctx.log("negative_prompt: not supported for this task type here; ignored")
        return kwargs

    def _loras(self, pipe: Any, inputs: TaskInput, ctx: RunContext, use: bool) -> None:
        if use:
            choices = resolve_loras(field_value(inputs, "lora_settings"), self.loras_dir)
            self.shared.quiet_loras()
            self.shared.lora_state(pipe).apply(pipe, choices, ctx)
        else:
            self.shared.quiet_loras()

    def _generate(self, pipe: Any, kwargs: dict[str, Any]) -> list[Image.Image]:
        self.shared.activate(pipe)
        try:
            result = pipe(**kwargs)
        except (StepCancelled, BackendError):
            raise
        except (ValueError, RuntimeError) as exc:  # diffusers' input checks; torch's shape errors
            if is_out_of_memory(exc):
                raise  # the worker frees memory and retries; not the inputs' fault
            raise BackendError("the Flux pipeline could not run these inputs", raw_message=f"{exc}") from exc
        return list(result.images)

    def _sized(self, inputs: TaskInput, pipe: Any, kwargs: dict[str, Any], ctx: RunContext) -> tuple[int, int]:
        width = positive_int(inputs, "width", 1024, 2048)
        height = positive_int(inputs, "height", 1024, 2048)
        if width * height > 1_048_576:
            raise BackendError(f"width*height: {width}x{height} is more than 1,048,576 pixels")
        kwargs["width"], kwargs["height"] = generation_size(width, height, pipe.vae_scale_factor * 2)
        if (kwargs["width"], kwargs["height"]) != (width, height):
            ctx.log(f"generating {kwargs['width']}x{kwargs['height']}, resized to {width}x{height}")
        return width, height

    def _input_image(self, inputs: TaskInput, ctx: RunContext) -> Image.Image:
        image = load_image(ctx, inputs, "image").convert("RGB")
        size = fit_pixels(*image.size)
        if size != image.size:
            ctx.log(f"image: {image.width}x{image.height} scaled to {size[0]}x{size[1]} (at most 1,048,576 pixels)")
            image = image.resize(size, Image.Resampling.LANCZOS)
        return image

    def _img2img(self, inputs: TaskInput, ctx: RunContext, reporter: StepReporter, lora: bool) -> Any:
        pipe = self._pipes["img2img"]
        kwargs = self._common(inputs, ctx, reporter, pipe)
        image = self._input_image(inputs, ctx)
        kwargs["width"], kwargs["height"] = generation_size(*image.size, pipe.vae_scale_factor * 2)
        kwargs["image"] = image.resize((kwargs["width"], kwargs["height"]), Image.Resampling.LANCZOS)
        kwargs["strength"] = number(inputs, "denoise", 0.7, 0.01, 1.0)
        self._loras(pipe, inputs, ctx, lora)
        return self._generate(pipe, kwargs), image.size


TaskRunner = Callable[[FluxBackend, TaskInput, RunContext, StepReporter, bool], Any]
TASK_RUNNERS: dict[str, TaskRunner] = {
    "img2img": FluxBackend._img2img,
    "fill-inpaint": fill_inpaint,
    "fill-outpaint": fill_outpaint,
    "kontext": kontext,
    "redux-variation": redux_variation,
    "controlnet": lambda backend, inputs, ctx, reporter, lora: run_controlnet(backend, inputs, ctx, reporter),
}
"""The task types `run` serves one by one (txt2img goes through the batch path), by task type without "-lora"."""


def flux_backends(models_dir: Path, *, shared: FluxShared | None = None) -> list[Backend]:
    """A backend for every Flux model and variant whose weight folder exists under `models_dir`.

    Missing folders are left out rather than listed as unavailable, so a server without Flux weights does not
    report a dozen Flux backends; a folder that exists but cannot be used (no diffusers, wrong pipeline class)
    is listed, and its `availability()` says why.
    """
    shared = shared or FluxShared()
    backends: list[Backend] = []
    for model in (DEV, SCHNELL, ADVANCED):
        for variant in ("base", *(ADVANCED_ONLY if model == ADVANCED else ())):
            backend = FluxBackend(model, models_dir, variant=variant, shared=shared)
            if backend.path.is_dir() if variant != "controlnet" else backend.control_folders():
                backends.append(backend)
    return backends
