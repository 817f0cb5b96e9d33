"""The Flux backend through diffusers' real pipelines, on tiny randomly initialised models.

Every model is built from a config (one transformer block, 4-channel VAE, 2-layer CLIP and T5 encoders), saved
with `save_pretrained` into a models folder laid out like production's, and loaded by the backend's own
`from_pretrained` calls; the tokenizers are built from a few words, so nothing touches the network. The images
are noise, but sizes, seeds, batches, progress, cancellation, LoRA switching and every input path are real.
Skipped where the `diffusers` extra is not installed.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

import torch
from tests.backends.memory import after_steps
from tests.backends.tiny_tokenizers import clip_tokenizer, t5_tokenizer

from genmill.backends.registry import model_backends
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError
from genmill.models.flux.backend import FluxBackend, flux_backends
from genmill.models.flux.catalog import ADVANCED, DEV
from genmill.models.flux.control_maps import COCO_NAMES, POSE_COLOURS, coco18, draw_pose, soft_edges
from genmill.models.flux.shared import FluxShared
from genmill.models.flux.tasks import fit_pixels, generation_size, outpaint_canvas, white_mask
from genmill.testing import MemoryRunContext

pytestmark = [
    pytest.mark.backends,
    # diffusers' own FluxControlNetModel still imports FluxPosEmbed from the place it deprecated.
    pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning"),
]

CATALOG = build_catalog()
WORDS = ["a", "red", "fox", "cat", "dog", "on", "green", "grass", "blue", "sky", "photo", "painting", "make", "it"]


# --- tiny models ---------------------------------------------------------------------------------------------


def tiny_text_parts() -> dict[str, Any]:
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tokenizer = clip_tokenizer(WORDS)
    tokenizer_2 = t5_tokenizer(WORDS)
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            projection_dim=32,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            max_position_embeddings=77,
        )
    )
    undeclared: dict[str, Any] = {"decoder_start_token_id": 0}  # kept by transformers, unknown to its types
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            **undeclared,
        )
    )
    return {"tokenizer": tokenizer, "tokenizer_2": tokenizer_2, "text_encoder": clip, "text_encoder_2": t5}


def tiny_transformer(*, guidance: bool, in_channels: int = 16) -> Any:
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=in_channels,
        out_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=guidance,
        axes_dims_rope=(4, 4, 8),
    )


def tiny_vae() -> Any:
    """Four levels like FLUX.1's VAE, so the latent is 8x smaller and sizes round to multiples of 16."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def save_tiny_lora(transformer: Any, folder: Path) -> Path:
    """A LoRA on the tiny transformer's attention, with non-zero weights so that it visibly changes images."""
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    transformer.add_adapter(config, adapter_name="tiny")
    layers = get_peft_model_state_dict(transformer, adapter_name="tiny")
    FluxPipeline.save_lora_weights(folder, transformer_lora_layers=layers, safe_serialization=True)
    transformer.delete_adapters("tiny")
    return folder / "pytorch_lora_weights.safetensors"


def tiny_controlnet(num_mode: int | None = None) -> Any:
    """`num_mode` set makes a union ControlNet (InstantX/Shakker-Labs Union), which needs a control_mode per image."""
    from diffusers import FluxControlNetModel

    return FluxControlNetModel(
        num_mode=num_mode,
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=[4, 4, 8],
    )


def save_tiny_depth_estimator(folder: Path) -> None:
    """Depth Anything's architecture (a DINOv2 backbone and a DPT head) at toy size, with its image processor."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    undeclared: dict[str, Any] = {  # kept by transformers, unknown to its types
        "intermediate_size": 32,
        "out_features": ["stage1", "stage2", "stage3", "stage4"],
    }
    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
        reshape_hidden_states=False,
        **undeclared,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        head_hidden_size=8,
        patch_size=14,
    )
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    size = {"height": 28, "width": 28}
    DPTImageProcessor(size=size, keep_aspect_ratio=True, ensure_multiple_of=14, do_pad=False).save_pretrained(folder)


def build_models(root: Path) -> None:
    """The production layout (see genmill.models.flux.backend) with tiny models in each folder."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxFillPipeline,
        FluxKontextPipeline,
        FluxPipeline,
        FluxPriorReduxPipeline,
    )
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    text = tiny_text_parts()
    vae = tiny_vae()
    scheduler = FlowMatchEulerDiscreteScheduler()
    dev = tiny_transformer(guidance=True)
    FluxPipeline(scheduler=scheduler, vae=vae, transformer=dev, **text).save_pretrained(root / "flux1-dev")
    schnell = tiny_transformer(guidance=False)
    FluxPipeline(scheduler=scheduler, vae=vae, transformer=schnell, **text).save_pretrained(root / "flux1-schnell")
    # The fill transformer also reads the masked image's latents (16) and the 8x8 mask per latent pixel (4 x 64).
    fill = tiny_transformer(guidance=True, in_channels=16 + 16 + 256)
    FluxFillPipeline(scheduler=scheduler, vae=vae, transformer=fill, **text).save_pretrained(root / "flux1-fill-dev")
    kontext = tiny_transformer(guidance=True)
    FluxKontextPipeline(scheduler=scheduler, vae=vae, transformer=kontext, **text).save_pretrained(
        root / "flux1-kontext-dev"
    )
    siglip = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=16,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    )
    FluxPriorReduxPipeline(
        image_encoder=siglip,
        feature_extractor=SiglipImageProcessor(size={"height": 32, "width": 32}),
        image_embedder=ReduxImageEncoder(redux_dim=16, txt_in_features=32),
    ).save_pretrained(root / "flux1-redux-dev")
    for kind in ("canny", "depth", "soft_edge", "openpose"):
        tiny_controlnet().save_pretrained(root / f"flux1-dev-controlnet-{kind}")
    save_tiny_depth_estimator(root / "depth-anything")
    lora = save_tiny_lora(dev, root / "lora-build")
    (root / "flux-loras").mkdir()
    lora.rename(root / "flux-loras" / "tiny-style.safetensors")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genmill-models")
    started = time.perf_counter()
    build_models(root)
    print(f"\ntiny Flux models built in {time.perf_counter() - started:.2f}s")
    return root


@pytest.fixture(scope="session")
def backends(models_dir: Path) -> Iterator[dict[str, FluxBackend]]:
    found = flux_backends(models_dir, shared=FluxShared(device="cpu"))
    by_name = {backend.name: backend for backend in found if isinstance(backend, FluxBackend)}
    for backend in by_name.values():
        availability = backend.availability()
        assert availability.ok, availability.reason
    yield by_name


# --- helpers -------------------------------------------------------------------------------------------------


def run(backend: FluxBackend, task_type: str, *, ctx: MemoryRunContext | None = None, **fields: Any) -> tuple[Any, Any]:
    """Validate `fields` with the catalog's own input model and run the task; returns (output, context)."""
    entry = CATALOG.get(backend.model, task_type)
    assert isinstance(entry, CatalogEntry)
    inputs = entry.input_model.model_validate(fields)
    ctx = ctx or MemoryRunContext()
    started = time.perf_counter()
    output = backend.run(entry, inputs, ctx)
    print(f"\n{backend.name} {task_type}: {time.perf_counter() - started:.2f}s")
    assert only_pngs(ctx)
    return output, ctx


def image_ref(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def only_pngs(ctx: MemoryRunContext) -> bool:
    """Flux saves PNG images and nothing else."""
    return all((saved.ext, saved.content_type) == ("png", "image/png") for saved in ctx.outputs.values())


def level(image: Image.Image, xy: tuple[int, int]) -> int:
    """A one-band image's value at `xy` (Pillow types `getpixel` for every mode at once)."""
    value = image.getpixel(xy)
    assert isinstance(value, int)
    return value


def png(ctx: MemoryRunContext, url: str) -> Image.Image:
    assert only_pngs(ctx)
    return Image.open(io.BytesIO(ctx.output(url)))


def picture(width: int = 48, height: int = 40) -> Image.Image:
    image = Image.new("RGB", (width, height), (40, 90, 160))
    ImageDraw.Draw(image).ellipse((8, 6, 30, 28), fill=(230, 200, 40))
    return image


DEV_FIELDS: dict[str, Any] = {"prompt": "a red fox on green grass", "width": 64, "height": 64, "steps": 3}


# --- availability --------------------------------------------------------------------------------------------


def test_availability_names_the_missing_folder(tmp_path: Path) -> None:
    reason = FluxBackend(DEV, tmp_path).availability().reason
    assert str(tmp_path / "flux1-dev") in reason and "FLUX.1-dev" in reason
    assert flux_backends(tmp_path) == []


def test_availability_refuses_wrong_or_incomplete_folders(tmp_path: Path, models_dir: Path) -> None:
    (tmp_path / "flux1-fill-dev").mkdir()
    (tmp_path / "flux1-fill-dev" / "model_index.json").write_bytes(
        (models_dir / "flux1-dev/model_index.json").read_bytes()
    )
    reason = FluxBackend(ADVANCED, tmp_path, variant="fill").availability().reason
    assert "FluxFillPipeline" in reason
    (tmp_path / "flux1-dev").mkdir()
    (tmp_path / "flux1-dev" / "model_index.json").write_bytes((models_dir / "flux1-dev/model_index.json").read_bytes())
    reason = FluxBackend(DEV, tmp_path).availability().reason
    assert "is incomplete" in reason and "transformer" in reason and "vae" in reason


def test_each_present_folder_becomes_a_backend(backends: dict[str, FluxBackend], models_dir: Path) -> None:
    assert sorted(backends) == [
        "flux1-dev",
        "flux1-dev-advanced",
        "flux1-dev-advanced-controlnet",
        "flux1-dev-advanced-fill",
        "flux1-dev-advanced-kontext",
        "flux1-dev-advanced-redux",
        "flux1-schnell",
    ]
    # Beside them, the Midjourney stand-ins built on the same folders (tests/backends/test_midjourney.py).
    built = {backend.name for backend in model_backends(models_dir)}
    assert built == set(backends) | {"midjourney-flux", "midjourney-flux-fill", "midjourney-flux-redux"}
    served = {key for backend in backends.values() for key in backend.entries}
    flux_entries = {entry.key for entry in CATALOG if entry.family == "flux"}
    assert served <= flux_entries
    assert served == flux_entries


def test_size_rules() -> None:
    assert generation_size(64, 64, 16) == (64, 64)
    assert generation_size(72, 56, 16) == (80, 64)
    assert generation_size(1000, 1000, 16) == (1008, 1008)
    assert fit_pixels(2048, 1024) == (1448, 724)
    assert fit_pixels(800, 600) == (800, 600)


def test_inpaint_mask_and_outpaint_canvas() -> None:
    image = picture()
    ImageDraw.Draw(image).rectangle((0, 0, 9, 9), fill=(255, 255, 255))
    mask = white_mask(image)
    assert mask.getpixel((5, 5)) == 255 and mask.getpixel((20, 20)) == 0
    with pytest.raises(BackendError, match="image: it has no white pixels"):
        white_mask(picture())
    setting = type("S", (), {"outpaint_left": 8, "outpaint_right": 0, "outpaint_top": 4, "outpaint_bottom": 0})()
    canvas, border = outpaint_canvas(picture(), setting)
    assert canvas.size == border.size == (56, 44)
    assert border.getpixel((0, 0)) == 255 and border.getpixel((30, 30)) == 0


# --- txt2img -------------------------------------------------------------------------------------------------


def test_txt2img_size_seed_and_progress(backends: dict[str, FluxBackend]) -> None:
    dev = backends["flux1-dev"]
    first, ctx = run(dev, "txt2img", **DEV_FIELDS, seed=7)
    assert set(first) == {"image_url"}
    assert png(ctx, first["image_url"]).size == (64, 64)
    steps = [note for note in ctx.notes if note.startswith("step ")]
    assert steps == [f"step {i}/3, seed 7" for i in (1, 2, 3)]
    assert ctx.fractions == sorted(ctx.fractions) and ctx.fractions[-1] == 1.0
    again, ctx2 = run(dev, "txt2img", **DEV_FIELDS, seed=7)
    other, ctx3 = run(dev, "txt2img", **DEV_FIELDS, seed=8)
    assert ctx2.outputs[again["image_url"]] == ctx.outputs[first["image_url"]]
    assert ctx3.outputs[other["image_url"]] != ctx.outputs[first["image_url"]]


def test_random_seed_is_reported_and_reproduces(backends: dict[str, FluxBackend]) -> None:
    dev = backends["flux1-dev"]
    output, ctx = run(dev, "txt2img", **DEV_FIELDS)
    seed = int(ctx.notes[-1].rsplit(" ", 1)[1])
    assert any(f"seed {seed}" in line for line in ctx.logs)
    again, ctx2 = run(dev, "txt2img", **DEV_FIELDS, seed=seed)
    assert ctx2.outputs[again["image_url"]] == ctx.outputs[output["image_url"]]


def test_sizes_flux_cannot_generate_are_resized_exactly(backends: dict[str, FluxBackend]) -> None:
    output, ctx = run(backends["flux1-dev"], "txt2img", **{**DEV_FIELDS, "width": 72, "height": 64}, seed=1)
    assert png(ctx, output["image_url"]).size == (72, 64)
    assert any("generating 80x64" in line for line in ctx.logs)


def test_schnell_batch_gives_image_urls(backends: dict[str, FluxBackend]) -> None:
    output, ctx = run(backends["flux1-schnell"], "txt2img", prompt="a cat", width=64, height=64, batch_size=2, seed=3)
    assert set(output) == {"image_urls"} and len(output["image_urls"]) == 2
    first, second = (ctx.outputs[url] for url in output["image_urls"])
    assert first != second
    assert all(png(ctx, url).size == (64, 64) for url in output["image_urls"])
    assert any("ignores it" in line for line in ctx.logs)  # schnell has no guidance input


def test_negative_prompt_uses_true_cfg(backends: dict[str, FluxBackend]) -> None:
    plain, ctx = run(backends["flux1-dev"], "txt2img", **DEV_FIELDS, seed=5)
    negative, ctx2 = run(backends["flux1-dev"], "txt2img", **DEV_FIELDS, seed=5, negative_prompt="blue sky")
    assert any("true CFG" in line for line in ctx2.logs)
    assert ctx.outputs[plain["image_url"]] != ctx2.outputs[negative["image_url"]]


def test_cancellation_stops_between_steps(backends: dict[str, FluxBackend]) -> None:
    ctx = MemoryRunContext(cancel_when=after_steps(1))
    with pytest.raises(BackendError, match="cancelled"):
        run(backends["flux1-dev"], "txt2img", ctx=ctx, **{**DEV_FIELDS, "steps": 20}, seed=1)
    assert [note for note in ctx.notes if note.startswith("step ")] == ["step 1/20, seed 1"]
    assert ctx.outputs == {}


def test_bad_inputs_fail_naming_the_field(backends: dict[str, FluxBackend]) -> None:
    dev = backends["flux1-dev"]
    entry = CATALOG.get(DEV, "txt2img")
    assert entry is not None
    with pytest.raises(BackendError, match="prompt"):
        dev.run(entry, TaskInput.model_validate({"prompt": " ", "steps": 2}), MemoryRunContext())
    kontext = CATALOG.get(ADVANCED, "kontext")
    assert kontext is not None
    with pytest.raises(BackendError, match="task_type"):
        dev.run(kontext, TaskInput.model_validate({"prompt": "x"}), MemoryRunContext())


# --- img2img -------------------------------------------------------------------------------------------------


def test_img2img_keeps_the_input_size_and_seed(backends: dict[str, FluxBackend]) -> None:
    fields: dict[str, Any] = {
        "prompt": "a painting",
        "image": image_ref(picture(48, 40)),
        "steps": 4,
        "denoise": 0.5,
        "seed": 2,
    }
    output, ctx = run(backends["flux1-dev"], "img2img", **fields)
    assert png(ctx, output["image_url"]).size == (48, 40)
    assert [n for n in ctx.notes if n.startswith("step ")] == ["step 1/2, seed 2", "step 2/2, seed 2"]
    again, ctx2 = run(backends["flux1-dev"], "img2img", **fields)
    stronger, ctx3 = run(backends["flux1-dev"], "img2img", **{**fields, "denoise": 1.0})
    assert ctx2.outputs[again["image_url"]] == ctx.outputs[output["image_url"]]
    assert ctx3.outputs[stronger["image_url"]] != ctx.outputs[output["image_url"]]


def test_schnell_img2img_batch(backends: dict[str, FluxBackend]) -> None:
    fields: dict[str, Any] = {"prompt": "a dog", "image": image_ref(picture(32, 32)), "batch_size": 2, "seed": 4}
    output, ctx = run(backends["flux1-schnell"], "img2img", **fields)
    assert len(output["image_urls"]) == 2
    assert all(png(ctx, url).size == (32, 32) for url in output["image_urls"])


# --- LoRA ----------------------------------------------------------------------------------------------------


def test_lora_changes_the_image_and_never_leaks(backends: dict[str, FluxBackend]) -> None:
    dev = backends["flux1-dev-advanced"]
    plain, ctx = run(dev, "txt2img", **DEV_FIELDS, seed=9)
    lora = {"lora_type": "tiny-style", "lora_strength": 1.0}
    styled, ctx2 = run(dev, "txt2img-lora", **DEV_FIELDS, seed=9, lora_settings=[lora])
    muted, ctx3 = run(dev, "txt2img-lora", **DEV_FIELDS, seed=9, lora_settings=[{**lora, "lora_strength": 0.0}])
    after, ctx4 = run(dev, "txt2img", **DEV_FIELDS, seed=9)
    base = ctx.outputs[plain["image_url"]]
    assert ctx2.outputs[styled["image_url"]] != base
    assert ctx3.outputs[muted["image_url"]] == base
    assert ctx4.outputs[after["image_url"]] == base
    assert any("tiny-style x1" in line for line in ctx2.logs)
    image_lora, ctx5 = run(
        dev, "img2img-lora", prompt="a fox", image=image_ref(picture()), steps=2, seed=9, lora_settings=[lora]
    )
    assert png(ctx5, image_lora["image_url"]).size == (48, 40)


def test_unknown_lora_names_the_field(backends: dict[str, FluxBackend]) -> None:
    with pytest.raises(BackendError, match=r"lora_settings\[0\]\.lora_type: no LoRA named 'nope'.*tiny-style"):
        run(backends["flux1-dev"], "txt2img-lora", **DEV_FIELDS, lora_settings=[{"lora_type": "nope"}])
    with pytest.raises(BackendError, match=r"lora_settings\[0\]\.lora_type"):
        run(backends["flux1-dev"], "txt2img-lora", **DEV_FIELDS, lora_settings=[{"lora_type": "../flux1-dev"}])


# --- fill, kontext, redux ------------------------------------------------------------------------------------


def test_fill_inpaint_repaints_white_pixels(backends: dict[str, FluxBackend]) -> None:
    image = picture(48, 40)
    ImageDraw.Draw(image).rectangle((20, 10, 40, 30), fill=(255, 255, 255))
    output, ctx = run(
        backends["flux1-dev-advanced-fill"], "fill-inpaint", prompt="a cat", image=image_ref(image), steps=2
    )
    assert png(ctx, output["image_url"]).size == (48, 40)
    with pytest.raises(BackendError, match="white pixels"):
        run(backends["flux1-dev-advanced-fill"], "fill-inpaint", prompt="a cat", image=image_ref(picture()), steps=2)


def test_fill_outpaint_extends_the_canvas(backends: dict[str, FluxBackend]) -> None:
    setting = {"setting_type": "outpaint", "outpaint_left": 16, "outpaint_bottom": 8}
    output, ctx = run(
        backends["flux1-dev-advanced-fill"],
        "fill-outpaint",
        prompt="green grass",
        image=image_ref(picture(48, 40)),
        steps=2,
        custom_settings=[setting],
    )
    assert png(ctx, output["image_url"]).size == (64, 48)


def test_kontext_edits_to_the_requested_size(backends: dict[str, FluxBackend]) -> None:
    fields: dict[str, Any] = {
        "prompt": "make it blue",
        "image": image_ref(picture()),
        "width": 64,
        "height": 80,
        "steps": 2,
    }
    output, ctx = run(backends["flux1-dev-advanced-kontext"], "kontext", **fields, seed=1)
    assert png(ctx, output["image_url"]).size == (64, 80)
    again, ctx2 = run(backends["flux1-dev-advanced-kontext"], "kontext", **fields, seed=1)
    assert ctx2.outputs[again["image_url"]] == ctx.outputs[output["image_url"]]
    # Kontext was loaded from its own folder but holds the text encoders and VAE FLUX.1-dev loaded first.
    backends["flux1-dev"].load()
    kontext, dev = backends["flux1-dev-advanced-kontext"]._pipes["main"], backends["flux1-dev"]._pipes["txt2img"]
    assert kontext.text_encoder_2 is dev.text_encoder_2 and kontext.vae is dev.vae


def test_redux_variation(backends: dict[str, FluxBackend]) -> None:
    fields: dict[str, Any] = {
        "prompt": "a photo",
        "image": image_ref(picture()),
        "width": 64,
        "height": 64,
        "steps": 2,
        "seed": 3,
    }
    output, ctx = run(backends["flux1-dev-advanced-redux"], "redux-variation", **fields)
    assert png(ctx, output["image_url"]).size == (64, 64)
    other, ctx2 = run(
        backends["flux1-dev-advanced-redux"], "redux-variation", **{**fields, "image": image_ref(picture(32, 32))}
    )
    assert ctx2.outputs[other["image_url"]] != ctx.outputs[output["image_url"]]


# --- ControlNet ----------------------------------------------------------------------------------------------


def test_controlnet_with_canny_and_depth(backends: dict[str, FluxBackend]) -> None:
    control = image_ref(picture(64, 64))
    settings = [
        {"control_type": "canny", "control_image": control, "control_strength": 0.6, "return_preprocessed_image": True},
        {"control_type": "depth", "control_image": control, "control_strength": 0.4},
    ]
    fields = {**DEV_FIELDS, "steps": 2, "seed": 6, "control_net_settings": settings}
    output, ctx = run(backends["flux1-dev-advanced-controlnet"], "controlnet-lora", **fields)
    assert png(ctx, output["image_url"]).size == (64, 64)
    (edges,) = output["preprocessed_image_urls"]
    assert png(ctx, edges).convert("L").getextrema() == (0, 255)  # the disc's outline, on black
    with_lora, ctx2 = run(
        backends["flux1-dev-advanced-controlnet"],
        "controlnet-lora",
        **fields,
        lora_settings=[{"lora_type": "tiny-style"}],
    )
    assert ctx2.outputs[with_lora["image_url"]] != ctx.outputs[output["image_url"]]


def portrait(width: int, height: int) -> Image.Image:
    """Grace Hopper, as matplotlib (a mediapipe dependency) ships her: head and shoulders."""
    matplotlib = pytest.importorskip("matplotlib")
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip(f"matplotlib's sample portrait is missing at {path}")
    with Image.open(path) as image:
        return image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


def test_controlnet_with_soft_edge_and_openpose(backends: dict[str, FluxBackend]) -> None:
    pytest.importorskip("mediapipe")
    square = Image.new("RGB", (64, 64), (20, 20, 20))
    ImageDraw.Draw(square).rectangle((16, 16, 47, 47), fill=(235, 235, 235))
    settings = [
        {"control_type": "soft_edge", "control_image": image_ref(square), "return_preprocessed_image": True},
        {"control_type": "openpose", "control_image": image_ref(portrait(128, 150)), "return_preprocessed_image": True},
    ]
    fields = {**DEV_FIELDS, "steps": 2, "seed": 6, "control_net_settings": settings}
    output, ctx = run(backends["flux1-dev-advanced-controlnet"], "controlnet-lora", **fields)
    assert png(ctx, output["image_url"]).size == (64, 64)
    edges, pose = (png(ctx, url).convert("RGB") for url in output["preprocessed_image_urls"])
    assert edges.size == (64, 64) and level(edges.getchannel("R"), (16, 32)) > 200
    assert edges.getpixel((32, 32)) == (0, 0, 0)
    assert pose.size == (128, 150) and pose.getpixel((0, 0)) == (0, 0, 0)
    colours = {colour for _, colour in pose.getcolors(128 * 150) or []}
    assert POSE_COLOURS[0] in colours and POSE_COLOURS[2] in colours and POSE_COLOURS[5] in colours  # nose, shoulders
    assert any("soft_edge map from a smoothed gradient, not HED/PiDiNet" in line for line in ctx.logs)
    assert any("openpose map from MediaPipe Pose (one person at most)" in line for line in ctx.logs)
    blank = [{"control_type": "openpose", "control_image": image_ref(Image.new("RGB", (64, 64), (128, 128, 128)))}]
    with pytest.raises(BackendError, match=r"control_net_settings\[0\]\.control_image: no person found"):
        run(backends["flux1-dev-advanced-controlnet"], "controlnet-lora", **{**fields, "control_net_settings": blank})


def test_soft_edge_map_is_bright_on_edges_and_dark_elsewhere() -> None:
    square = Image.new("RGB", (96, 96), (0, 0, 0))
    ImageDraw.Draw(square).rectangle((30, 30, 65, 65), fill=(255, 255, 255))
    edges = soft_edges(square).convert("L")
    for border in [(30, 48), (65, 48), (48, 30), (48, 65), (30, 30)]:
        assert level(edges, border) > 200, border
    for dark in [(48, 48), (40, 55), (10, 10), (85, 48), (48, 90)]:
        assert level(edges, dark) < 10, dark
    assert 0 < level(edges, (28, 48)) < 200 < level(edges, (29, 48))  # a soft falloff, not a hard line
    assert soft_edges(Image.new("RGB", (32, 32), (90, 90, 90))).getextrema() == ((0, 0),) * 3


def test_mediapipe_landmarks_become_the_openpose_skeleton() -> None:
    landmarks = [(0.5, 0.5, 0.0)] * 33  # hidden unless set below
    shown = {0: (0.5, 0.2), 2: (0.55, 0.15), 5: (0.45, 0.15), 11: (0.7, 0.4), 12: (0.3, 0.4), 13: (0.8, 0.6)}
    for index, (x, y) in shown.items():
        landmarks[index] = (x, y, 0.9)
    landmarks[15] = (1.3, 0.8, 0.9)  # outside the image
    landmarks[23] = (0.6, 0.8, 0.3)  # not visible enough
    keypoints = coco18(landmarks, 200, 100)
    named = {COCO_NAMES[i]: (round(p[0], 6), round(p[1], 6)) for i, p in enumerate(keypoints) if p is not None}
    assert named == {
        "nose": (100, 20),
        "neck": (100, 40),
        "right_shoulder": (60, 40),
        "left_shoulder": (140, 40),
        "left_elbow": (160, 60),
        "right_eye": (90, 15),
        "left_eye": (110, 15),
    }
    image = draw_pose(keypoints, (200, 100))
    assert image.size == (200, 100) and image.getpixel((5, 95)) == (0, 0, 0)
    for index in range(len(keypoints)):
        if keypoints[index] is not None:
            x, y = keypoints[index] or (0, 0)
            assert image.getpixel((round(x), round(y))) == POSE_COLOURS[index], COCO_NAMES[index]
    # Limb 0 (neck to right shoulder) in colour 0 at 60%; no stick to the unseen left wrist.
    assert image.getpixel((80, 40)) == (153, 0, 0)
    assert image.getpixel((175, 75)) == (0, 0, 0)
    assert max(draw_pose(coco18([(0.5, 0.5, 0.1)] * 33, 64, 64), (64, 64)).getextrema()) == (0, 0)


def test_controlnet_refuses_types_without_weights(tmp_path: Path, models_dir: Path) -> None:
    for folder in ("flux1-dev", "flux1-dev-controlnet-canny"):
        (tmp_path / folder).symlink_to(models_dir / folder)
    backend = FluxBackend(ADVANCED, tmp_path, variant="controlnet", shared=FluxShared(device="cpu"))
    settings = [{"control_type": "openpose", "control_image": image_ref(picture())}]
    with pytest.raises(BackendError, match=r"control_net_settings\[0\]\.control_type: 'openpose' is not available"):
        run(backend, "controlnet-lora", **DEV_FIELDS, control_net_settings=settings)
    (tmp_path / "flux1-dev-controlnet-canny").unlink()
    reason = FluxBackend(ADVANCED, tmp_path, variant="controlnet").availability().reason
    assert "flux1-dev-controlnet-{canny,depth,soft_edge,openpose}" in reason


def test_union_controlnet_gets_its_mode_and_refuses_types_it_lacks(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A union ControlNet (config num_mode set) runs with control_mode = the model cards' index for the task's
    control_type; in a soft_edge folder, which has no union mode, it is reported and refused by field."""
    from diffusers import FluxControlNetPipeline

    (tmp_path / "flux1-dev").symlink_to(models_dir / "flux1-dev")
    torch.manual_seed(1)
    union = tiny_controlnet(num_mode=10)
    for kind in ("canny", "soft_edge"):
        union.save_pretrained(tmp_path / f"flux1-dev-controlnet-{kind}")
    for folder in ("flux1-dev-controlnet-depth", "depth-anything"):  # a single-type ControlNet and its estimator
        (tmp_path / folder).symlink_to(models_dir / folder)
    backend = FluxBackend(ADVANCED, tmp_path, variant="controlnet", shared=FluxShared(device="cpu"))
    availability = backend.availability()
    assert availability.ok and sorted(backend.control_folders()) == ["canny", "depth"]
    assert "soft_edge not served: flux1-dev-controlnet-soft_edge holds a union ControlNet" in availability.reason
    modes: list[Any] = []
    original = FluxControlNetPipeline.__call__

    def spy(pipe: Any, *args: Any, **kwargs: Any) -> Any:
        modes.append(kwargs.get("control_mode"))
        return original(pipe, *args, **kwargs)

    monkeypatch.setattr(FluxControlNetPipeline, "__call__", spy)
    control = image_ref(picture(64, 64))
    settings = [
        {"control_type": "canny", "control_image": control},
        {"control_type": "depth", "control_image": control, "control_strength": 0.3},
    ]
    output, ctx = run(
        backend, "controlnet-lora", **{**DEV_FIELDS, "steps": 2, "seed": 4}, control_net_settings=settings
    )
    assert png(ctx, output["image_url"]).size == (64, 64)
    assert modes == [[0, None]]  # canny is union mode 0; the single-type depth ControlNet gets none
    assert any("union ControlNet modes: canny 0" in line for line in ctx.logs)
    soft = [{"control_type": "soft_edge", "control_image": control}]
    with pytest.raises(
        BackendError,
        match=r"control_net_settings\[0\]\.control_type: 'soft_edge' is not available "
        r"\(flux1-dev-controlnet-soft_edge holds a union ControlNet, which has no soft_edge mode\)",
    ):
        run(backend, "controlnet-lora", **DEV_FIELDS, control_net_settings=soft)
    assert len(modes) == 1


# --- cross-task batching -------------------------------------------------------------------------------------


def validated(backend: FluxBackend, task_type: str, **fields: Any) -> tuple[CatalogEntry, TaskInput]:
    entry = CATALOG.get(backend.model, task_type)
    assert isinstance(entry, CatalogEntry)
    return entry, entry.input_model.model_validate(fields)


def pixels(ctx: MemoryRunContext, url: str) -> Any:
    import numpy as np

    return np.asarray(png(ctx, url).convert("RGB"), dtype=np.int16)


def close(a: Any, b: Any) -> bool:
    """Within one 8-bit level: batched matrix products may round differently (see models/flux/batch.py's docstring)."""
    return bool(a.shape == b.shape and abs(a - b).max() <= 1)


def test_batch_members_get_the_images_they_would_get_alone(backends: dict[str, FluxBackend]) -> None:
    schnell = backends["flux1-schnell"]
    fields: dict[str, Any] = {"width": 64, "height": 64, "batch_size": 2}
    entry, fox = validated(schnell, "txt2img", prompt="a red fox", seed=5, **fields)
    _, sky = validated(schnell, "txt2img", prompt="a blue sky photo", seed=6, **fields)
    ctxs = [MemoryRunContext(), MemoryRunContext()]
    outputs = schnell.run_batch(entry, [fox, sky], list(ctxs))
    alone = [
        run(schnell, "txt2img", prompt=p, seed=s, **fields) for p, s in (("a red fox", 5), ("a blue sky photo", 6))
    ]
    for output, ctx, (single, single_ctx), seed in zip(outputs, ctxs, alone, (5, 6), strict=True):
        assert isinstance(output, dict) and len(output["image_urls"]) == 2
        for batched_url, alone_url in zip(output["image_urls"], single["image_urls"], strict=True):
            assert close(pixels(ctx, batched_url), pixels(single_ctx, alone_url))
        assert [n for n in ctx.notes if n.startswith("step ")] == [f"step {i}/4, seed {seed}" for i in (1, 2, 3, 4)]
        assert ctx.notes[-1] == f"done, seed {seed}" and any("one pipeline call for 2 tasks" in x for x in ctx.logs)
    first, second = outputs
    assert isinstance(first, dict) and isinstance(second, dict)
    images = [pixels(ctxs[0], url) for url in first["image_urls"]] + [pixels(ctxs[1], u) for u in second["image_urls"]]
    assert all(not close(a, b) for i, a in enumerate(images) for b in images[i + 1 :])  # per-image seeds


def test_a_cancelled_member_fails_alone_and_all_cancelled_stops_the_loop(backends: dict[str, FluxBackend]) -> None:
    dev = backends["flux1-dev"]
    entry, one = validated(dev, "txt2img", **{**DEV_FIELDS, "steps": 6}, seed=1)
    _, two = validated(dev, "txt2img", **{**DEV_FIELDS, "steps": 6, "prompt": "a cat"}, seed=2)
    keep, stop = MemoryRunContext(), MemoryRunContext(cancel_when=after_steps(1))
    kept, stopped = dev.run_batch(entry, [one, two], [keep, stop])
    assert isinstance(stopped, BackendError) and "cancelled" in stopped.message and stop.outputs == {}
    assert [n for n in stop.notes if n.startswith("step ")] == ["step 1/6, seed 2"]
    assert isinstance(kept, dict) and [n for n in keep.notes if n.startswith("step ")][-1] == "step 6/6, seed 1"
    single, single_ctx = run(dev, "txt2img", **{**DEV_FIELDS, "steps": 6}, seed=1)
    assert close(pixels(keep, kept["image_url"]), pixels(single_ctx, single["image_url"]))
    both = [MemoryRunContext(cancel_when=after_steps(1)), MemoryRunContext(cancel_when=after_steps(1))]
    results = dev.run_batch(entry, [one, two], list(both))
    assert all(isinstance(r, BackendError) and "cancelled" in r.message for r in results)
    for ctx, seed in zip(both, (1, 2), strict=True):  # both stopped: the loop ended after its first step
        assert [n for n in ctx.notes if n.startswith("step ")] == [f"step 1/6, seed {seed}"] and ctx.outputs == {}


def test_only_txt2img_batches_and_different_loras_never_share_a_call(backends: dict[str, FluxBackend]) -> None:
    dev, advanced = backends["flux1-dev"], backends["flux1-dev-advanced"]
    assert dev.max_batch_size == 4 and {"lora_settings", "width", "steps", "negative_prompt"} <= set(dev.batch_keys)
    assert dev.batches_for(validated(dev, "txt2img", prompt="x")[0])
    assert advanced.batches_for(validated(advanced, "txt2img-lora", prompt="x", lora_settings=[{"lora_type": "a"}])[0])
    assert not dev.batches_for(validated(dev, "img2img", prompt="x", image=image_ref(picture()))[0])
    assert backends["flux1-dev-advanced-controlnet"].max_batch_size == 1
    lora = {"lora_type": "tiny-style", "lora_strength": 1.0}
    entry, styled = validated(advanced, "txt2img-lora", **DEV_FIELDS, seed=9, lora_settings=[lora])
    _, muted = validated(advanced, "txt2img-lora", **DEV_FIELDS, seed=9, lora_settings=[{**lora, "lora_strength": 0.0}])
    ctxs = [MemoryRunContext(), MemoryRunContext()]
    first, second = advanced.run_batch(entry, [styled, muted], list(ctxs))
    assert isinstance(first, dict) and isinstance(second, dict)
    assert not any("one pipeline call" in line for ctx in ctxs for line in ctx.logs)  # two calls, one per LoRA set
    plain, plain_ctx = run(advanced, "txt2img", **DEV_FIELDS, seed=9)
    assert close(pixels(ctxs[1], second["image_url"]), pixels(plain_ctx, plain["image_url"]))  # strength 0 = none
    assert not close(pixels(ctxs[0], first["image_url"]), pixels(plain_ctx, plain["image_url"]))
    # A batch of image tasks still runs, one by one.
    image_entry, image_task = validated(dev, "img2img", prompt="a fox", image=image_ref(picture()), steps=2, seed=3)
    image_ctxs = [MemoryRunContext(), MemoryRunContext()]
    outputs = dev.run_batch(image_entry, [image_task, image_task], list(image_ctxs))
    assert all(isinstance(output, dict) and "image_url" in output for output in outputs)
    assert all(only_pngs(ctx) for ctx in image_ctxs)


def test_the_worker_gathers_txt2img_tasks_into_one_call(models_dir: Path, tmp_path: Path) -> None:
    from genmill.app import Runtime
    from genmill.domain.states import TaskStatus
    from genmill.settings import Settings

    dev = FluxBackend(DEV, models_dir, shared=FluxShared(device="cpu"))
    runtime = Runtime(Settings(data_dir=tmp_path, public_url="http://testserver", workers=1), backends=[dev])
    try:
        account = runtime.store.accounts.create_account("a", credits=10**9, max_concurrency=10)
        fields = {**DEV_FIELDS, "steps": 2}
        texts = [
            runtime.tasks.create_task(account, DEV, "txt2img", {**fields, "seed": seed}, None)[0] for seed in (1, 2, 3)
        ]
        image = {"prompt": "a fox", "image": image_ref(picture()), "steps": 2}
        images = [runtime.tasks.create_task(account, DEV, "img2img", image, None)[0] for _ in range(2)]
        worker = runtime.workers[0]
        assert worker.run_once()
        done = [runtime.store.tasks.get(account.account_id, t.task_id) for t in texts]
        assert all(t.status is TaskStatus.COMPLETED for t in done)
        assert all(
            "ran in a batch of 3 tasks" in t.logs and "one pipeline call for 3 tasks' prompts" in t.logs for t in done
        )
        assert len({t.output["image_url"] for t in done if t.output}) == 3
        assert worker.run_once()  # one img2img task: image tasks are not gathered
        statuses = [runtime.store.tasks.get(account.account_id, t.task_id).status for t in images]
        assert sorted(s.value for s in statuses) == sorted([TaskStatus.COMPLETED.value, TaskStatus.PENDING.value])
    finally:
        runtime.store.close()
