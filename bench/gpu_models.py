"""The full-size transformers `python -m bench.gpu` times: published configs (bench/gpu_configs/*.json, each
naming where it came from) built with random bf16 weights straight on the device, and inputs at each model's
default size.

Weights are random because what is measured (time per step, peak memory, offload costs) depends on shapes and
dtypes, not on values; building on the meta device and filling each parameter on the GPU takes seconds where a
CPU initialisation of 28 GB would take minutes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parent / "gpu_configs"
INIT_STD = 0.02


@dataclass(frozen=True)
class ModelBench:
    name: str
    size: str
    """The latent size the inputs stand for, in words (shown in the table)."""
    tiny_size: str
    inputs: Callable[[int, bool, Any, Any], dict[str, Any]]
    """(batch, tiny, device, dtype) -> keyword arguments of the transformer's forward."""

    def spec(self) -> dict[str, Any]:
        return dict(json.loads((CONFIGS / f"{self.name}.json").read_text()))

    def model_class(self) -> Any:
        import diffusers

        return getattr(diffusers, self.spec()["class"])

    def config(self, tiny: bool) -> dict[str, Any]:
        return dict(self.spec()["tiny" if tiny else "config"])


def _randn(shape: tuple[int, ...], device: Any, dtype: Any) -> Any:
    import torch

    return torch.randn(shape, device=device, dtype=dtype)


def flux_inputs(batch: int, tiny: bool, device: Any, dtype: Any) -> dict[str, Any]:
    """1024x1024: a 128x128 latent packed 2x2 into 4096 tokens of 64 channels, plus 512 T5 tokens."""
    import torch

    image_tokens, text_tokens, channels, text_dim, pooled = (16, 8, 16, 32, 16) if tiny else (4096, 512, 64, 4096, 768)
    side = int(image_tokens**0.5)
    img_ids = torch.zeros(side, side, 3, device=device)
    img_ids[..., 1] = torch.arange(side, device=device)[:, None]
    img_ids[..., 2] = torch.arange(side, device=device)[None, :]
    return {
        "hidden_states": _randn((batch, image_tokens, channels), device, dtype),
        "encoder_hidden_states": _randn((batch, text_tokens, text_dim), device, dtype),
        "pooled_projections": _randn((batch, pooled), device, dtype),
        "timestep": torch.full((batch,), 0.5, device=device, dtype=dtype),
        "img_ids": img_ids.reshape(-1, 3).to(dtype),
        "txt_ids": torch.zeros(text_tokens, 3, device=device, dtype=dtype),
        "guidance": torch.full((batch,), 3.5, device=device, dtype=dtype),
        "return_dict": False,
    }


def wan_inputs(batch: int, tiny: bool, device: Any, dtype: Any) -> dict[str, Any]:
    """480p (832x480), 81 frames: a 16 x 21 x 60 x 104 latent (32,760 tokens after 1x2x2 patches), 512 UMT5 tokens."""
    import torch

    latent, text = ((16, 2, 4, 4), (8, 32)) if tiny else ((16, 21, 60, 104), (512, 4096))
    return {
        "hidden_states": _randn((batch, *latent), device, dtype),
        "timestep": torch.full((batch,), 500.0, device=device, dtype=dtype),
        "encoder_hidden_states": _randn((batch, *text), device, dtype),
        "return_dict": False,
    }


def hunyuan_inputs(batch: int, tiny: bool, device: Any, dtype: Any) -> dict[str, Any]:
    """544x960, 33 frames: a 16 x 9 x 68 x 120 latent (18,360 tokens after 1x2x2 patches), 256 Llama tokens. The
    native clip is 129 frames (67,320 tokens); 33 frames keeps batch 4 within the bench's time cap."""
    import torch

    latent, text, pooled = ((4, 1, 8, 8), (12, 16), 8) if tiny else ((16, 9, 68, 120), (256, 4096), 768)
    return {
        "hidden_states": _randn((batch, *latent), device, dtype),
        "timestep": torch.full((batch,), 500.0, device=device, dtype=dtype),
        "encoder_hidden_states": _randn((batch, *text), device, dtype),
        "encoder_attention_mask": torch.ones((batch, text[0]), device=device, dtype=dtype),
        "pooled_projections": _randn((batch, pooled), device, dtype),
        "guidance": torch.full((batch,), 6000.0, device=device, dtype=dtype),
        "return_dict": False,
    }


MODELS: dict[str, ModelBench] = {
    bench.name: bench
    for bench in (
        ModelBench("flux1-dev", "1024x1024 (4096 + 512 tokens)", "4x4 latent", flux_inputs),
        ModelBench("wan2.1-t2v-1.3b", "480p, 81 frames (32,760 tokens)", "2x4x4 latent", wan_inputs),
        ModelBench("wan2.1-t2v-14b", "480p, 81 frames (32,760 tokens)", "2x4x4 latent", wan_inputs),
        ModelBench("hunyuanvideo", "544x960, 33 frames (18,360 tokens)", "1x8x8 latent", hunyuan_inputs),
    )
}


def empty_model(bench: ModelBench, tiny: bool) -> Any:
    """The architecture with its parameters on the meta device (buffers such as rotary tables real, on the CPU)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return bench.model_class().from_config(bench.config(tiny))


def _keeps_fp32(model: Any, name: str) -> bool:
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    return any(part in name.split(".") for part in keep)


def random_model(bench: ModelBench, tiny: bool, device: str, dtype: Any) -> Any:
    """The architecture with random weights allocated directly on `device`, in `dtype` except the modules the
    class keeps in fp32 (as `from_pretrained(torch_dtype=...)` would)."""
    import torch

    model = empty_model(bench, tiny)
    with torch.no_grad():
        for module_name, module in model.named_modules():
            for name, param in list(module._parameters.items()):
                if param is None:
                    continue
                full = f"{module_name}.{name}" if module_name else name
                kind = torch.float32 if _keeps_fp32(model, full) else dtype
                data = torch.empty(param.shape, device=device, dtype=kind).normal_(0.0, INIT_STD)
                module._parameters[name] = torch.nn.Parameter(data, requires_grad=False)
    return model.to(device).eval()


def cpu_copy(bench: ModelBench, tiny: bool, state: dict[str, Any]) -> Any:
    """A fresh model whose weights are the CPU tensors of `state` (shared, not copied): the starting point of each
    offload mode, as a pipeline loaded into CPU memory is."""
    model = empty_model(bench, tiny)
    model.load_state_dict(state, assign=True)
    return model.eval()


def parameter_bytes(model: Any) -> int:
    return int(sum(p.numel() * p.element_size() for p in model.parameters()))
