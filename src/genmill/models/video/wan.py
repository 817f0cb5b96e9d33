"""Wan-family video through diffusers: `Qubico/wanx`, `Qubico/skyreels` and `Qubico/hug-video` (AI Hug).

Weights are never downloaded; each backend reads one diffusers-format folder under the models folder:

    wan2.1-t2v-1.3b/     WanPipeline               txt2video-1.3b
    wan2.1-t2v-14b/      WanPipeline               txt2video-14b, txt2video-14b-lora
    wan2.1-i2v-14b/      WanImageToVideoPipeline   img2video-14b, img2video-14b-lora; hug-video image_to_video
    wan2.1-flf2v-14b/    WanImageToVideoPipeline   img2video-14b-keyframe (first and last frame)
    wan2.2-t2v-a14b/     WanPipeline               wan22-txt2video-14b
    wan2.2-i2v-a14b/     WanImageToVideoPipeline   wan22-img2video-14b
    skyreels-v2-i2v/     SkyReelsV2ImageToVideoPipeline  skyreels img2video
    wan-loras/<lora_type>.safetensors   LoRAs for the *-lora task types

`img2video-14b-control-camera` has no backend that can run it: diffusers ships no camera-controlled Wan
pipeline, so `UnservedBackend` lists it with that reason instead of approximating it. AI Hug has no dedicated
open model either; it is the Wan image-to-video model with a fixed prompt, and every task's logs say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genmill.backends.base import Backend, RunContext, ServedBy, UnservedBackend
from genmill.backends.loras import resolve_loras
from genmill.backends.toolkit import field_value, load_image, prompt_text
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.models.video.catalog import HUG_VIDEO, SKYREELS
from genmill.models.video.pipeline import Geometry, Job, VideoBackend, VideoShared, Weights, cover
from genmill.models.video.wanx_catalog import MODEL as WANX

WAN21 = Geometry({"480p": {"16:9": (832, 480), "9:16": (480, 832)}}, frames=85, fps=16, steps=30)
"""The catalog's Wan 2.1 clips: 85 frames at 480p; Wan 2.1 was trained at 16 fps."""
WAN21_FLF2V = Geometry({"720p": {"16:9": (1280, 720), "9:16": (720, 1280)}}, frames=81, fps=16, steps=30)
"""Wan2.1-FLF2V-14B-720P is a 720p model: its model card runs it at 1280*720 with Wan's default 81 frames at 16 fps
(generate.py's `--size 1280*720`, `frame_num` 81, `sample_fps` 16); at 480p it runs off its training size."""
WAN22 = Geometry(
    {"720p": {"16:9": (1280, 720), "9:16": (720, 1280)}, "480p": {"16:9": (832, 480), "9:16": (480, 832)}},
    frames=81,
    fps=16,
    steps=40,
)
"""Wan 2.2 A14B: 81 frames at 16 fps, 720p or 480p (`video_resolution`)."""
SKYREELS_540P = Geometry(
    {"540p": {"16:9": (960, 544), "9:16": (544, 960), "1:1": (720, 720)}}, frames=97, fps=24, steps=30
)
"""SkyReels-V2-I2V-540P: 97 frames at 24 fps."""

HUG_PROMPT = (
    "The two people in the photo turn towards each other and share a warm, gentle hug, "
    "smiling, natural movement, the camera stays still."
)
HUG_NOTE = (
    "AI Hug: there is no open hug model, so this is the Wan 2.1 image-to-video model animating the photo "
    "with a fixed hug prompt"
)
CAMERA_REASON = (
    "diffusers has no camera-controlled Wan pipeline (Wan2.1-Fun-Control-Camera), so camera movements cannot be "
    "applied here; this task type is not served"
)


@dataclass(frozen=True)
class WanVariant:
    model: str
    task_types: tuple[str, ...]
    weights: Weights
    geometry: Geometry
    kind: str
    """"t2v", "i2v", "keyframe", "skyreels" or "hug": which inputs the pipeline gets."""


def _weights(folder: str, repo: str, pipeline_class: str) -> Weights:
    return Weights(folder, f"a diffusers-format folder of {repo}", pipeline_class)


T2V, I2V = "WanPipeline", "WanImageToVideoPipeline"
VARIANTS: dict[str, WanVariant] = {
    "wan21-t2v-1.3b": WanVariant(
        WANX, ("txt2video-1.3b",), _weights("wan2.1-t2v-1.3b", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", T2V), WAN21, "t2v"
    ),
    "wan21-t2v-14b": WanVariant(
        WANX,
        ("txt2video-14b", "txt2video-14b-lora"),
        _weights("wan2.1-t2v-14b", "Wan-AI/Wan2.1-T2V-14B-Diffusers", T2V),
        WAN21,
        "t2v",
    ),
    "wan21-i2v-14b": WanVariant(
        WANX,
        ("img2video-14b", "img2video-14b-lora"),
        _weights("wan2.1-i2v-14b", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", I2V),
        WAN21,
        "i2v",
    ),
    "wan21-flf2v-14b": WanVariant(
        WANX,
        ("img2video-14b-keyframe",),
        _weights("wan2.1-flf2v-14b", "Wan-AI/Wan2.1-FLF2V-14B-720P-Diffusers", I2V),
        WAN21_FLF2V,
        "keyframe",
    ),
    "wan22-t2v-a14b": WanVariant(
        WANX,
        ("wan22-txt2video-14b",),
        _weights("wan2.2-t2v-a14b", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", T2V),
        WAN22,
        "t2v",
    ),
    "wan22-i2v-a14b": WanVariant(
        WANX,
        ("wan22-img2video-14b",),
        _weights("wan2.2-i2v-a14b", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", I2V),
        WAN22,
        "i2v",
    ),
    "skyreels-v2-i2v": WanVariant(
        SKYREELS,
        ("img2video",),
        _weights("skyreels-v2-i2v", "Skywork/SkyReels-V2-I2V-14B-540P-Diffusers", "SkyReelsV2ImageToVideoPipeline"),
        SKYREELS_540P,
        "skyreels",
    ),
    "hug-wan21-i2v": WanVariant(
        HUG_VIDEO,
        ("image_to_video",),
        _weights("wan2.1-i2v-14b", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", I2V),
        WAN21,
        "hug",
    ),
}

MEDIA = {"t2v": (), "i2v": ("image",), "keyframe": ("first_frame", "last_frame"), "skyreels": ("image",)}


class WanBackend(VideoBackend):
    """One Wan-family model with one weight folder (see `VARIANTS`)."""

    label = "Wan"
    fp32_parts = ("vae", "image_encoder")
    """diffusers runs the Wan VAE and CLIP image encoder in float32 under a bf16 transformer: in bf16 they lose
    detail (the VAE) and conditioning accuracy (the encoder)."""

    def __init__(
        self,
        variant: str,
        models_dir: Path,
        *,
        geometry: Geometry | None = None,
        shared: VideoShared | None = None,
    ) -> None:
        """`geometry` replaces the variant's clip sizes, frame count, rate and steps (a smaller GPU, or tests)."""
        spec = VARIANTS[variant]
        super().__init__(
            spec.model,
            spec.task_types,
            spec.weights,
            models_dir,
            geometry or spec.geometry,
            shared=shared,
            loras_folder="wan-loras",
            name=variant,
        )
        self.kind = spec.kind
        self.media_fields = MEDIA.get(spec.kind, ("image_url",))
        if spec.kind == "skyreels":
            self.label = "SkyReels"

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        """The weights' own model; for AI Hug, which has no open model, a stand-in: Wan image-to-video with a
        fixed prompt."""
        runs = f"{self.label} ({self.weights.folder}, {self.weights.pipeline_class})"
        if self.kind == "hug":
            return ServedBy(
                runs,
                stand_in=True,
                limits=("Wan 2.1 image-to-video animates the photo with a fixed hug prompt; no hug model runs",),
            )
        return ServedBy(runs)

    def check(self) -> str:
        if self.kind == "keyframe":
            if self.transformer_config().get("pos_embed_seq_len") is None:
                return (
                    f"{self.path} is an image-to-video model without first-last-frame training; "
                    "put Wan2.1-FLF2V-14B there"
                )
            if not (self.path / "image_encoder").is_dir():
                return f"{self.path} has no image_encoder, which the first-last-frame model needs"
        return ""

    def job(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext, pipe: Any) -> Job:
        geometry = self.geometry
        resolution = str(field_value(inputs, "video_resolution", "") or next(iter(geometry.sizes)))
        notes: list[str] = []
        if self.kind == "hug":
            prompt, negative = HUG_PROMPT, ""
            notes.append(HUG_NOTE)
        else:
            prompt, negative = prompt_text(inputs), str(field_value(inputs, "negative_prompt", "") or "")
        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "num_inference_steps": geometry.steps,
            "num_frames": geometry.frames,
        }
        if negative:
            kwargs["negative_prompt"] = negative
        if self.kind == "skyreels":
            kwargs["guidance_scale"] = float(field_value(inputs, "guidance_scale", 3.5))
        if self.kind == "t2v":
            width, height = geometry.size(resolution, str(field_value(inputs, "aspect_ratio", "16:9")))
        elif self.kind == "hug":
            image = load_image(ctx, inputs, "image_url").convert("RGB")
            width, height = geometry.nearest(*image.size)
            kwargs["image"] = cover(image, width, height)
        else:
            first = "first_frame" if self.kind == "keyframe" else "image"
            image = load_image(ctx, inputs, first).convert("RGB")
            width, height = geometry.size(resolution, str(field_value(inputs, "aspect_ratio", "16:9")))
            kwargs["image"] = cover(image, width, height)
            if self.kind == "keyframe":
                kwargs["last_image"] = cover(load_image(ctx, inputs, "last_frame").convert("RGB"), width, height)
        kwargs.update(width=width, height=height)
        loras = None
        if entry.task_type.endswith("-lora"):
            assert self.loras_dir is not None
            loras = resolve_loras(field_value(inputs, "lora_settings"), self.loras_dir)
        return Job(kwargs, geometry.frames, geometry.fps, geometry.steps, loras, notes)


def wan_backends(models_dir: Path, *, shared: VideoShared | None = None) -> list[Backend]:
    """A backend for every Wan-family variant whose folder exists under `models_dir`, and, when any Wan
    image-to-video weights are present, the unserved camera-control entry with its reason."""
    shared = shared or VideoShared()
    backends: list[Backend] = [
        WanBackend(variant, models_dir, shared=shared)
        for variant, spec in VARIANTS.items()
        if (models_dir / spec.weights.folder).is_dir()
    ]
    if any(isinstance(b, WanBackend) and b.model == WANX for b in backends):
        backends.append(
            UnservedBackend("wan21-control-camera", ((WANX, "img2video-14b-control-camera"),), CAMERA_REASON)
        )
    return backends
