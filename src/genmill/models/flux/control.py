"""The Flux `controlnet-lora` task: control maps, one FluxControlNetModel per setting, and union ControlNets.

A union ControlNet (InstantX/FLUX.1-dev-Controlnet-Union, Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro) is one
model trained on several control types; its config's `num_mode` is set, and diffusers refuses to run it unless
every call says which type each control image is (`control_mode`). The model cards number the modes: canny 0,
tile 1, depth 2, blur 3, pose 4, gray 5, low quality 6. Union models without a mode embedding (Union-Pro-2.0,
`num_mode` null) and single-type ControlNets get no `control_mode`.

Kept apart from `backend.py` so that the backend module stays about loading and the task dispatch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from genmill.backends.toolkit import StepReporter, field_value
from genmill.domain.catalog import TaskInput
from genmill.errors import BackendError
from genmill.models.flux.control_maps import CONTROL_TYPES, control_map
from genmill.models.flux.tasks import same_components

if TYPE_CHECKING:
    from genmill.backends.base import RunContext
    from genmill.models.flux.backend import FluxBackend

DEPTH_FOLDER = "depth-anything"
"""A transformers depth estimator beside the ControlNets, for control_type depth."""

UNION_MODES: dict[str, int] = {"canny": 0, "depth": 2, "openpose": 4}
"""The union ControlNets' mode for each catalog `control_type` (the model cards' table; openpose is their "pose").
soft_edge has no mode, so a union model cannot serve it."""


def load_controls(backend: FluxBackend, folders: dict[str, Path]) -> tuple[dict[str, Any], tuple[Any, Any] | None]:
    """The ControlNets in `folders` (by control_type), placed as the Flux memory plan says, and the depth estimator
    when there is a depth ControlNet to feed (`depth-anything/` beside them)."""
    if not folders:
        return {}, None
    import diffusers
    import transformers

    # Any-typed handles: these libraries' loaders are untyped, which strict mypy refuses to call.
    controlnet_class: Any = diffusers.FluxControlNetModel
    placement = backend.shared.placement
    dtype = placement.dtypes()[0]
    controlnets = {
        kind: backend.shared.place(controlnet_class.from_pretrained(str(path), dtype=dtype))
        for kind, path in folders.items()
    }
    depth = backend.models_dir / DEPTH_FOLDER
    if "depth" not in folders or not (depth / "config.json").is_file():
        return controlnets, None
    model_class: Any = transformers.AutoModelForDepthEstimation
    processor_class: Any = transformers.AutoImageProcessor
    estimator = model_class.from_pretrained(str(depth)).to(placement.device).eval()
    return controlnets, (estimator, processor_class.from_pretrained(str(depth)))


def control_folders(prefix: Path) -> dict[str, Path]:
    """The ControlNet folders present next to `prefix` (`<models>/flux1-dev-controlnet-`), by control_type."""
    found = {kind: prefix.with_name(prefix.name + kind) for kind in CONTROL_TYPES}
    return {kind: path for kind, path in found.items() if (path / "config.json").is_file()}


def union_modes(folder: Path) -> int | None:
    """A ControlNet folder's `num_mode` (how many control types a union model knows), None for any other model."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("num_mode") if isinstance(config, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def union_problem(kind: str, folder: Path) -> str:
    """Why the ControlNet in `folder` cannot serve `kind` ("" when it can): a union model without that mode."""
    modes = union_modes(folder)
    if modes is None:
        return ""
    mode = UNION_MODES.get(kind)
    if mode is None or mode >= modes:
        return f"{folder.name} holds a union ControlNet, which has no {kind} mode"
    return ""


def control_mode(model: Any, kind: str) -> int | None:
    """The `control_mode` a loaded ControlNet needs for `kind`: its union mode, or None for a single-type model."""
    if getattr(model.config, "num_mode", None) is None:
        return None
    return UNION_MODES[kind]


def run_controlnet(backend: FluxBackend, inputs: TaskInput, ctx: RunContext, reporter: StepReporter) -> Any:
    """controlnet-lora: every setting's control map through its ControlNet, in one FluxControlNetPipeline call."""
    from diffusers import FluxControlNetPipeline

    base = backend._pipes["txt2img"]
    settings = field_value(inputs, "control_net_settings")
    if not isinstance(settings, list) or not settings:
        raise BackendError("control_net_settings: at least one ControlNet setting is required")
    kwargs = backend._common(inputs, ctx, reporter, base)
    size = backend._sized(inputs, base, kwargs, ctx)
    unusable = backend.unusable_controls()
    models, maps, scales, modes = [], [], [], []
    for index, setting in enumerate(settings):
        where = f"control_net_settings[{index}]"
        kind = setting.control_type
        if kind not in backend._controlnets:
            installed = ", ".join(sorted(backend._controlnets))
            why = f" ({unusable[kind]})" if kind in unusable else ""
            raise BackendError(f"{where}.control_type: {kind!r} is not available{why}; installed: {installed}")
        model = backend._controlnets[kind]
        models.append(model)
        modes.append(control_mode(model, kind))
        maps.append(control_map(setting, where, ctx, backend._depth, backend._pose))
        scales.append(float(getattr(setting, "control_strength", 0.5)))
        reporter.check()
    gen = (kwargs["width"], kwargs["height"])
    kwargs["control_image"] = [image.resize(gen, Image.Resampling.LANCZOS) for image in maps]
    kwargs["controlnet_conditioning_scale"] = scales
    if any(mode is not None for mode in modes):
        # A list of models runs as FluxMultiControlNetModel, which takes one mode per control image (None: -1,
        # which a single-type ControlNet ignores).
        kwargs["control_mode"] = modes
        named = [f"{s.control_type} {m}" for s, m in zip(settings, modes, strict=True) if m is not None]
        ctx.log("union ControlNet modes: " + ", ".join(named))
    pipe = same_components(FluxControlNetPipeline, base, controlnet=models)
    backend._loras(base, inputs, ctx, bool(field_value(inputs, "lora_settings")))
    images = backend._generate(pipe, kwargs)
    wanted = [m for m, s in zip(maps, settings, strict=True) if getattr(s, "return_preprocessed_image", False)]
    return images, size, wanted
