"""HunyuanVideo through diffusers: `Qubico/hunyuan` and `Qubico/framepack`.

Weights are never downloaded; each backend reads one diffusers-format folder under the models folder:

    hunyuanvideo/              HunyuanVideoPipeline              txt2video, fast-txt2video, txt2video-lora
    hunyuanvideo-i2v-concat/   HunyuanVideoImageToVideoPipeline  img2video-concat (transformer image_condition_type
                               "latent_concat": the image's latents ride along every frame, motion stays free)
    hunyuanvideo-i2v-replace/  HunyuanVideoImageToVideoPipeline  img2video-replace ("token_replace": the first
                               frame's tokens are replaced by the image's, so the clip sticks to it)
    framepack/                 HunyuanVideoFramepackPipeline     framepack img2video
    hunyuan-loras/<lora_type>.safetensors   LoRAs for txt2video-lora

`fast-txt2video` runs the same weights with fewer denoising steps (`FAST_FRACTION`): quicker and cheaper, with less
detail; no distilled "fast" HunyuanVideo is assumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genmill.backends.base import Backend, RunContext, ServedBy
from genmill.backends.loras import resolve_loras
from genmill.backends.toolkit import field_value, load_image, prompt_text
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError
from genmill.models.video.catalog import FRAMEPACK, HUNYUAN
from genmill.models.video.pipeline import Geometry, Job, VideoBackend, VideoShared, Weights, cover

HUNYUAN_540P = Geometry(
    {"540p": {"16:9": (960, 544), "9:16": (544, 960), "1:1": (720, 720)}}, frames=129, fps=24, steps=30
)
"""HunyuanVideo's 540p sizes and native clip: 129 frames at 24 fps."""
HUNYUAN_I2V_720P = Geometry(
    {"720p": {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960)}}, frames=129, fps=24, steps=30
)
"""HunyuanVideo-I2V was trained at 720p."""
FRAMEPACK_GEOMETRY = Geometry(
    {"640": {"16:9": (832, 480), "9:16": (480, 832), "1:1": (640, 640)}}, frames=0, fps=30, steps=25
)
"""FramePack's ~640-pixel buckets at 30 fps; the frame count comes from `duration`."""

FAST_FRACTION = 0.4
"""fast-txt2video: the same weights with 40% of the steps (12 instead of 30)."""
TXT2VIDEO_GUIDANCE = 6.0
"""HunyuanVideo's distilled (embedded) guidance, as its authors run it."""
I2V_GUIDANCE = {"token_replace": 6.0, "latent_concat": 1.0}
"""HunyuanVideo-I2V's guidance by the transformer's `image_condition_type`, as diffusers' own example for
`HunyuanVideoImageToVideoPipeline` runs each checkpoint (the pipeline's EXAMPLE_DOC_STRING in diffusers 0.42,
also in docs/source/en/api/pipelines/hunyuan_video.md): hunyuanvideo-community/HunyuanVideo-I2V (token_replace,
guidance-distilled) at `guidance_scale=6.0`, and hunyuanvideo-community/HunyuanVideo-I2V-33ch (latent_concat) at
`guidance_scale=1.0, true_cfg_scale=1.0`, i.e. neither embedded nor real classifier-free guidance. Running
token_replace at 1.0 switches off the guidance it was distilled with and gives washed-out, prompt-deaf clips."""
I2V_TRUE_CFG = {"token_replace": None, "latent_concat": 1.0}
"""The true CFG scale diffusers' example passes per condition type (None: the pipeline's default); a
negative_prompt still switches on `TRUE_CFG`."""
FRAMEPACK_GUIDANCE = 10.0
"""FramePack's distilled guidance, as its authors run it."""
TRUE_CFG = 1.5
"""Real classifier-free guidance, used only when a negative_prompt is given (two transformer passes per step)."""

I2V_CONDITION = {"img2video-concat": "latent_concat", "img2video-replace": "token_replace"}

VARIANTS: dict[str, tuple[str, tuple[str, ...], Weights, Geometry]] = {
    "hunyuan-t2v": (
        HUNYUAN,
        ("txt2video", "fast-txt2video", "txt2video-lora"),
        Weights(
            "hunyuanvideo",
            "a diffusers-format HunyuanVideo folder (hunyuanvideo-community/HunyuanVideo)",
            "HunyuanVideoPipeline",
        ),
        HUNYUAN_540P,
    ),
    "hunyuan-i2v-concat": (
        HUNYUAN,
        ("img2video-concat",),
        Weights(
            "hunyuanvideo-i2v-concat",
            "a diffusers-format HunyuanVideo-I2V folder whose transformer uses image_condition_type latent_concat",
            "HunyuanVideoImageToVideoPipeline",
        ),
        HUNYUAN_I2V_720P,
    ),
    "hunyuan-i2v-replace": (
        HUNYUAN,
        ("img2video-replace",),
        Weights(
            "hunyuanvideo-i2v-replace",
            "a diffusers-format HunyuanVideo-I2V folder whose transformer uses image_condition_type token_replace",
            "HunyuanVideoImageToVideoPipeline",
        ),
        HUNYUAN_I2V_720P,
    ),
    "framepack": (
        FRAMEPACK,
        ("img2video",),
        Weights(
            "framepack",
            "a diffusers-format HunyuanVideoFramepackPipeline folder (FramePackI2V_HY with HunyuanVideo's "
            "encoders and a SigLIP image encoder, saved with save_pretrained)",
            "HunyuanVideoFramepackPipeline",
        ),
        FRAMEPACK_GEOMETRY,
    ),
}


class HunyuanBackend(VideoBackend):
    """One HunyuanVideo model with one weight folder (see `VARIANTS`)."""

    label = "HunyuanVideo"

    def __init__(
        self,
        variant: str,
        models_dir: Path,
        *,
        geometry: Geometry | None = None,
        shared: VideoShared | None = None,
        latent_window_size: int = 9,
    ) -> None:
        """`geometry` replaces the clip sizes, frame count, rate and steps (a smaller GPU, or tests);
        `latent_window_size` is FramePack's section length in latent frames (9 as its authors run it)."""
        model, task_types, weights, default = VARIANTS[variant]
        super().__init__(
            model,
            task_types,
            weights,
            models_dir,
            geometry or default,
            shared=shared,
            loras_folder="hunyuan-loras",
            name=variant,
        )
        self.variant = variant
        self.latent_window_size = latent_window_size
        if variant == "framepack":
            self.label = "FramePack"
            self.media_fields = ("start_image", "end_image")
        elif variant != "hunyuan-t2v":
            self.media_fields = ("image",)

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        """The weights' own model; fast-txt2video is the same model with fewer steps, not a distilled one."""
        runs = f"{self.label} ({self.weights.folder}, {self.weights.pipeline_class})"
        if entry.task_type == "fast-txt2video":
            steps = self.geometry.steps
            fast = max(1, round(steps * FAST_FRACTION))
            return ServedBy(
                runs,
                limits=(
                    f"the full HunyuanVideo with {fast} of its {steps} denoising steps, not a distilled fast model",
                ),
            )
        return ServedBy(runs)

    def check(self) -> str:
        wanted = I2V_CONDITION.get(self.entries[0][1])
        if wanted is None:
            return ""
        found = self.transformer_config().get("image_condition_type")
        if found != wanted:
            return f"{self.path} has a transformer with image_condition_type {found!r}, not {wanted!r}"
        return ""

    def prepare(self, pipe: Any) -> None:
        if self.device.startswith("cuda"):  # a 720p, 129-frame clip does not fit the VAE decoder in one piece
            pipe.vae.enable_tiling()

    def job(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext, pipe: Any) -> Job:
        geometry = self.geometry
        task_type = entry.task_type
        kwargs: dict[str, Any] = {"prompt": prompt_text(inputs), "num_inference_steps": geometry.steps}
        notes: list[str] = []
        negative = str(field_value(inputs, "negative_prompt", "") or "")
        if negative:
            kwargs.update(negative_prompt=negative, true_cfg_scale=TRUE_CFG)
            notes.append(f"negative_prompt: applied with true CFG scale {TRUE_CFG:g} (two passes per step)")
        if self.variant == "framepack":
            return self._framepack(inputs, ctx, pipe, kwargs, notes)
        width, height = geometry.size(next(iter(geometry.sizes)), str(field_value(inputs, "aspect_ratio", "16:9")))
        kwargs.update(width=width, height=height, num_frames=geometry.frames)
        loras = None
        if task_type == "fast-txt2video":
            kwargs["num_inference_steps"] = max(1, round(geometry.steps * FAST_FRACTION))
            notes.append(f"fast: {kwargs['num_inference_steps']} denoising steps instead of {geometry.steps}")
        if task_type in I2V_CONDITION:
            image = load_image(ctx, inputs, "image").convert("RGB")
            condition = I2V_CONDITION[task_type]
            kwargs.update(image=cover(image, width, height), guidance_scale=I2V_GUIDANCE[condition])
            true_cfg = I2V_TRUE_CFG[condition]
            if true_cfg is not None and "true_cfg_scale" not in kwargs:
                kwargs["true_cfg_scale"] = true_cfg
            if task_type == "img2video-concat":  # the pipeline drops the decoded frames of the image's own latent
                kwargs["num_frames"] += int(pipe.vae_scale_factor_temporal)
            notes.append(f"image conditioning: {condition}, guidance {I2V_GUIDANCE[condition]:g}")
        else:
            kwargs["guidance_scale"] = TXT2VIDEO_GUIDANCE
        if task_type.endswith("-lora"):
            assert self.loras_dir is not None
            loras = resolve_loras(field_value(inputs, "lora_settings"), self.loras_dir)
        return Job(kwargs, geometry.frames, geometry.fps, kwargs["num_inference_steps"], loras, notes)

    def _framepack(
        self, inputs: TaskInput, ctx: RunContext, pipe: Any, kwargs: dict[str, Any], notes: list[str]
    ) -> Job:
        geometry = self.geometry
        duration = field_value(inputs, "duration", 10)
        if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= 30:
            raise BackendError(f"duration: must be a whole number of seconds from 1 to 30, got {duration!r}")
        frames = duration * geometry.fps
        start = load_image(ctx, inputs, "start_image").convert("RGB")
        width, height = geometry.nearest(*start.size)
        kwargs.update(width=width, height=height, num_frames=frames, image=cover(start, width, height))
        kwargs.update(guidance_scale=FRAMEPACK_GUIDANCE, latent_window_size=self.latent_window_size)
        if field_value(inputs, "end_image", ""):
            end = load_image(ctx, inputs, "end_image").convert("RGB")
            kwargs["last_image"] = cover(end, width, height)
            notes.append("end_image: the clip ends on it")
        # The pipeline denoises the clip in sections of (window - 1) * 4 + 1 frames, each with the full schedule.
        window = (self.latent_window_size - 1) * int(pipe.vae_scale_factor_temporal) + 1
        sections = max(1, (frames + window - 1) // window)
        notes.append(f"{sections} section(s) of {geometry.steps} steps")
        return Job(kwargs, frames, geometry.fps, sections * geometry.steps, None, notes)


def hunyuan_backends(models_dir: Path, *, shared: VideoShared | None = None) -> list[Backend]:
    """A backend for every HunyuanVideo variant whose folder exists under `models_dir`."""
    shared = shared or VideoShared()
    return [
        HunyuanBackend(variant, models_dir, shared=shared)
        for variant, (_, _, weights, _) in VARIANTS.items()
        if (models_dir / weights.folder).is_dir()
    ]
