"""`Qubico/trellis` with Microsoft's own TRELLIS code and weights, on a CUDA machine that has its extensions.

What runs is the `trellis` package of github.com/microsoft/TRELLIS (MIT) with the published checkpoints
(microsoft/TRELLIS-image-large, microsoft/TRELLIS-text-xlarge): image or text conditioning, the sparse-structure
flow transformer and its decoder, the structured-latent flow transformer, and the Gaussian and mesh decoders;
`to_glb` bakes the Gaussians' colours into the simplified mesh's texture (`model_file`), and the turntable video
puts the Gaussian render beside the mesh's normals (`combined_video`), as Microsoft's demo does.

Why not a package from PyPI: Microsoft does not publish TRELLIS there. `trellis-3d-python` is an unofficial
repackaging: 0.1.10 changes the mesh decoder (6x instead of 4x resolution, a `factor` argument the published
decoder config lacks) and from 0.1.14 it runs other models (a "Tri3DDiT" shape model and TRELLIS.2 texturing)
under TRELLIS's name, so neither runs the model the entry names. Hunyuan3D-2 (`hy3dgen`) is a different model:
it would be a stand-in, and its texturing needs its own CUDA rasteriser too.

Why not on a CPU: the structured-latent stages need `flash_attn` or `xformers` (trellis.modules.sparse.attention
accepts only those two), `spconv` or `torchsparse` (trellis.modules.sparse.conv), and the outputs need
`nvdiffrast` (trellis.renderers.mesh_renderer, trellis.utils.postprocessing_utils) and
`diff_gaussian_rasterization` (trellis.renderers.gaussian_render): CUDA kernels with no CPU path. The parts
genmill adds around Microsoft's code (the DINOv2 and CLIP conditioning loaded from local folders through
transformers instead of torch.hub and the Hub, the input checks, the outputs) are tested on a CPU.
"""

from __future__ import annotations

import importlib.util
import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genmill.backends.audio_io import weights_bytes
from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.backends.toolkit import cancelled_error, encode_png, field_value
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError, InputRejected
from genmill.models.trellis.catalog import MODEL

MAX_SIDE = 1024
"""PiAPI's limit on the input image (the catalog says "at most 1024x1024")."""
MAX_SEED = 2**31 - 1
VIDEO_FRAMES, VIDEO_FPS = 120, 30
"""The turntable: one turn in four seconds."""

CODE_HINT = (
    "install Microsoft's TRELLIS code (git clone https://github.com/microsoft/TRELLIS, run its "
    "setup.sh --basic --xformers --spconv --mipgaussian --nvdiffrast, and put the clone on PYTHONPATH; "
    "docs/backends.md)"
)

EXTENSIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("flash_attn", "xformers"), "trellis.modules.sparse.attention (sparse attention)"),
    (("spconv", "torchsparse"), "trellis.modules.sparse.conv (sparse convolution)"),
    (("nvdiffrast",), "trellis.renderers.mesh_renderer and trellis.utils.postprocessing_utils (mesh rendering)"),
    (("diff_gaussian_rasterization",), "trellis.renderers.gaussian_render (Gaussian splatting)"),
)
"""CUDA extensions TRELLIS's inference imports (any one of each group), and the module that needs them."""

PACKAGES = (
    "torch",
    "transformers",
    "easydict",
    "rembg",
    "utils3d",
    "trimesh",
    "xatlas",
    "pyvista",
    "pymeshfix",
    "igraph",
)
"""Python packages TRELLIS's inference and GLB export import (they install from PyPI; setup.sh --basic)."""


@dataclass(frozen=True)
class Variant:
    """One TRELLIS checkpoint folder and the conditioning model genmill loads beside it."""

    task_type: str
    folder: str
    cond_folder: str
    """Subfolder holding the conditioning model in transformers format (DINOv2 with registers, or CLIP)."""
    pipeline_class: str


VARIANTS = {
    "image-to-3d": Variant("image-to-3d", "trellis-image-large", "dinov2", "TrellisImageTo3DPipeline"),
    "text-to-3d": Variant("text-to-3d", "trellis-text-xlarge", "clip", "TrellisTextTo3DPipeline"),
}
U2NET = "u2net/u2net.onnx"
"""rembg's U^2-Net, which TRELLIS's own preprocessing uses to cut out an opaque input image."""


class Dinov2Prenorm:
    """DINOv2 with registers through transformers, answering TRELLIS's call `model(image, is_training=True)` with
    the `x_prenorm` tokens (class token, 4 registers, patches; the last block's output before the final norm),
    which TRELLIS layer-normalises itself. facebook/dinov2-with-registers-large holds the weights of the torch.hub
    model `dinov2_vitl14_reg` that TRELLIS names, converted, so nothing is fetched while loading."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, image: Any, is_training: bool = True) -> dict[str, Any]:
        out = self.model(pixel_values=image, output_hidden_states=True)
        return {"x_prenorm": out.hidden_states[-1]}

    def eval(self) -> Dinov2Prenorm:
        self.model.eval()
        return self

    def to(self, device: Any) -> Dinov2Prenorm:
        self.model.to(device)
        return self

    def parameters(self) -> Any:
        return self.model.parameters()


def load_dinov2(folder: Path) -> Dinov2Prenorm:
    """The image conditioning model from a transformers folder (Dinov2WithRegistersModel)."""
    import transformers

    model_class: Any = transformers.Dinov2WithRegistersModel
    return Dinov2Prenorm(model_class.from_pretrained(str(folder))).eval()


def image_normalize(image: Any) -> Any:
    """The ImageNet normalisation TRELLIS applies before DINOv2 (torchvision's Normalize, without torchvision)."""
    import torch

    mean = torch.tensor([0.485, 0.456, 0.406], device=image.device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=image.device).view(1, 3, 1, 1)
    return (image - mean) / std


def read_image(ctx: RunContext, inputs: TaskInput) -> Image.Image:
    """The `image` input decoded, refusing anything over 1024x1024 before its pixels are decoded."""
    ref = field_value(inputs, "image")
    if not isinstance(ref, str) or not ref.strip():
        raise InputRejected("image: an image URL or base64 string is required")
    data = ctx.read_input(ref, field="image").data
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width > MAX_SIDE or height > MAX_SIDE:
            raise InputRejected(f"image: {width}x{height} is larger than {MAX_SIDE}x{MAX_SIDE}")
        image.load()
    except InputRejected:
        raise
    except Exception as exc:
        raise InputRejected("image: not a decodable image (PNG, JPEG or WebP)", raw_message=str(exc)) from exc
    return image


def has_transparency(image: Image.Image) -> bool:
    """Whether any pixel is not fully opaque: TRELLIS then uses the alpha channel as the cut-out."""
    if "A" not in image.getbands() and "transparency" not in image.info:
        return False
    alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    return bool((alpha < 255).any())


def sampler_params(inputs: TaskInput, stage: str) -> dict[str, Any]:
    """`ss_*` / `slat_*` inputs as the sampler parameters TRELLIS's `run` takes (steps, cfg_strength)."""
    steps = field_value(inputs, f"{stage}_sampling_steps", 12)
    strength = field_value(inputs, f"{stage}_guidance_strength", 7.5 if stage == "ss" else 3.0)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 50:
        raise InputRejected(f"{stage}_sampling_steps: must be an integer from 1 to 50, got {steps!r}")
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength <= 10:
        raise InputRejected(f"{stage}_guidance_strength: must be a number from 0 to 10, got {strength!r}")
    return {"steps": steps, "cfg_strength": float(strength)}


def task_seed(inputs: TaskInput) -> int:
    """The catalog's seed: 0 (the default) draws one, logged so the result can be reproduced."""
    import secrets

    seed = field_value(inputs, "seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputRejected(f"seed: must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return seed or secrets.randbelow(MAX_SEED) + 1


class TrellisBackend(Backend):
    """One TRELLIS checkpoint (image or text) on one CUDA device."""

    requirements = ("trellis (github.com/microsoft/TRELLIS)", *PACKAGES)

    def __init__(self, variant: Variant, models_dir: Path) -> None:
        self.variant = variant
        self.path = models_dir / variant.folder
        self.name = f"trellis-{variant.task_type}"
        self.entries = ((MODEL, variant.task_type),)
        self.device = "cuda:0"
        self.memory_bytes = weights_bytes(self.path) * 2  # fp16 checkpoints run in fp32 on load
        self.working_bytes = 8 * 1024**3
        self._pipeline: Any = None
        self._lock = threading.Lock()

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        limits: tuple[str, ...] = ()
        if self.variant.task_type == "image-to-3d" and not self.can_cut_out():
            limits = (f"image must have a transparent background: no U^2-Net cut-out model at {self.path / U2NET}",)
        return ServedBy(f"TRELLIS ({self.variant.folder}, Microsoft's code and weights)", limits=limits)

    def can_cut_out(self) -> bool:
        """Whether opaque images can be cut out (rembg's U^2-Net is in the folder, where TRELLIS's rembg reads it)."""
        return (self.path / U2NET).is_file()

    def availability(self) -> Availability:
        if not (self.path / "pipeline.json").is_file():
            return Availability(False, f"no TRELLIS checkpoint at {self.path} (pipeline.json and ckpts/)")
        if pipeline_name(self.path) != self.variant.pipeline_class:
            return Availability(False, f"{self.path}/pipeline.json does not name {self.variant.pipeline_class}")
        if not (self.path / self.variant.cond_folder / "config.json").is_file():
            return Availability(False, f"no conditioning model at {self.path / self.variant.cond_folder}")
        reason = code_problem()
        if reason:
            return Availability(False, reason)
        return Availability(True)

    def load(self) -> None:
        with self._lock:
            if self._pipeline is not None:
                return
            try:
                self._pipeline = load_pipeline(self.variant, self.path)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise BackendError(
                    f"the TRELLIS weights at {self.path} could not be loaded", raw_message=str(exc)
                ) from exc

    def unload(self) -> None:
        with self._lock:
            self._pipeline = None

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        seed = task_seed(inputs)
        params = {"sparse_structure_sampler_params": sampler_params(inputs, "ss")}
        params["slat_sampler_params"] = sampler_params(inputs, "slat")
        output: dict[str, Any] = {}
        if self.variant.task_type == "image-to-3d":
            image = read_image(ctx, inputs)
            if not self.can_cut_out() and not has_transparency(image):
                raise InputRejected(
                    "image: must have a transparent background here (no background-removal model is installed "
                    "for TRELLIS); send a PNG with the object cut out"
                )
            self.load()
            cutout = self._pipeline.preprocess_image(image)
            output["no_background_image"] = ctx.save_output(encode_png(cutout), ext="png", content_type="image/png")
            prompt: Any = cutout
        else:
            prompt = str(field_value(inputs, "prompt", "")).strip()
            if not prompt:
                raise InputRejected("prompt: must not be empty")
            self.load()
        ctx.log(f"seed {seed}")
        ctx.progress(0.1, "sampling")
        if ctx.cancelled():
            raise cancelled_error()
        with self._lock:
            kwargs = {"seed": seed, "formats": ["gaussian", "mesh"], **params}
            if self.variant.task_type == "image-to-3d":
                kwargs["preprocess_image"] = False
            result = self._pipeline.run(prompt, **kwargs)
            ctx.progress(0.6, "rendering the turntable")
            video = turntable(result)
            ctx.progress(0.8, "baking the GLB texture")
            glb = export_glb(result)
        from genmill.backends.video_io import encode_mp4

        output["model_file"] = ctx.save_output(glb, ext="glb", content_type="model/gltf-binary")
        output["combined_video"] = ctx.save_output(
            encode_mp4(video, VIDEO_FPS, ctx), ext="mp4", content_type="video/mp4"
        )
        ctx.progress(1.0)
        ctx.log(f"done: GLB of {len(glb)} bytes, {len(video)}-frame turntable")
        return output


def code_problem() -> str:
    """Why Microsoft's TRELLIS code cannot run here, naming each missing piece; "" when it can."""
    spec = importlib.util.find_spec("trellis")
    if spec is None:
        return f"the trellis package is not installed: {CODE_HINT}"
    origin = Path(spec.origin or "").parent
    if (origin / "dinov2").is_dir() or (origin / "shape3d").is_dir():
        return (
            "the installed trellis package is trellis-3d-python, an unofficial repackaging that does not run "
            f"microsoft/TRELLIS's weights as published; uninstall it and {CODE_HINT}"
        )
    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed (TRELLIS imports them): {CODE_HINT}"
    absent = [
        f"{' or '.join(names)} (needed by {module})"
        for names, module in EXTENSIONS
        if all(importlib.util.find_spec(name) is None for name in names)
    ]
    import torch

    if not torch.cuda.is_available():
        needs = "; ".join(f"{' or '.join(names)} for {module}" for names, module in EXTENSIONS)
        return f"TRELLIS needs a CUDA GPU: its CUDA-only extensions have no CPU path ({needs})"
    if absent:
        return f"CUDA extensions missing: {'; '.join(absent)}; a CUDA machine with them installed runs TRELLIS"
    return ""


def load_pipeline(variant: Variant, path: Path) -> Any:
    """Microsoft's pipeline from `path`, its conditioning model from `path/cond_folder` instead of the network."""
    import importlib

    pipelines: Any = importlib.import_module("trellis.pipelines")
    base: Any = importlib.import_module("trellis.pipelines.base")
    samplers: Any = pipelines.samplers
    loaded = base.Pipeline.from_pretrained(str(path))
    pipeline = getattr(pipelines, variant.pipeline_class)()  # without models: an empty shell to fill
    pipeline.__dict__ = loaded.__dict__
    args = loaded._pretrained_args
    for stage in ("sparse_structure_sampler", "slat_sampler"):
        config = args[stage]
        setattr(pipeline, stage, getattr(samplers, config["name"])(**config["args"]))
        setattr(pipeline, f"{stage}_params", config["params"])
    pipeline.slat_normalization = args["slat_normalization"]
    cond = path / variant.cond_folder
    if variant.task_type == "image-to-3d":
        import os

        os.environ["U2NET_HOME"] = str((path / U2NET).parent)  # rembg reads its model from there
        pipeline.models["image_cond_model"] = load_dinov2(cond)
        pipeline.image_cond_model_transform = image_normalize
        pipeline.cuda()
    else:
        import transformers

        pipeline.cuda()
        model: Any = transformers.CLIPTextModel.from_pretrained(str(cond))
        tokenizer: Any = transformers.AutoTokenizer.from_pretrained(str(cond))
        pipeline.text_cond_model = {"model": model.eval().cuda(), "tokenizer": tokenizer}
        pipeline.text_cond_model["null_cond"] = pipeline.encode_text([""])
    return pipeline


def turntable(result: dict[str, Any]) -> Any:
    """The Gaussians' colour render beside the mesh's normals, frame by frame (uint8, frames x H x 2W x 3)."""
    import importlib

    render: Any = importlib.import_module("trellis.utils.render_utils")
    colour = render.render_video(result["gaussian"][0], num_frames=VIDEO_FRAMES)["color"]
    normals = render.render_video(result["mesh"][0], num_frames=VIDEO_FRAMES)["normal"]
    return np.stack([np.concatenate([c, n], axis=1) for c, n in zip(colour, normals, strict=True)]).astype(np.uint8)


def export_glb(result: dict[str, Any]) -> bytes:
    """The textured GLB: the mesh simplified by 95% with the Gaussians' colours baked into a 1024 texture."""
    import importlib

    post: Any = importlib.import_module("trellis.utils.postprocessing_utils")
    glb = post.to_glb(result["gaussian"][0], result["mesh"][0], simplify=0.95, texture_size=1024, verbose=False)
    data = glb.export(file_type="glb")
    return bytes(data)


def trellis_backends(models_dir: Path) -> list[Backend]:
    """A backend for each TRELLIS checkpoint folder present under `models_dir`."""
    return [TrellisBackend(v, models_dir) for v in VARIANTS.values() if (models_dir / v.folder).is_dir()]


def pipeline_name(path: Path) -> str:
    """The pipeline class a checkpoint folder's pipeline.json names ("" when unreadable)."""
    try:
        return str(json.loads((path / "pipeline.json").read_text()).get("name", ""))
    except (OSError, ValueError, AttributeError):
        return ""
