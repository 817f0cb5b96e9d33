"""The Midjourney stand-in on tiny random FLUX.1 models (built by test_flux's `build_models`) and a tiny BLIP.

The images are noise, but every rule is measured: the grid's quadrants are the four images pixel for pixel, an
upscale is a larger copy of the chosen image, a variation differs from its source, inpainting changes only the
masked pixels, zoom and pan keep the original inside the larger canvas, and the stand-in serves only where the
operator enabled it. Follow-ups get their origin through `MemoryRunContext(origin=...)`, as a worker hands it.
"""

from __future__ import annotations

import io
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.backends.test_flux import build_models, image_ref, picture

from genmill.backends.base import Backend
from genmill.backends.registry import model_backends
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry
from genmill.domain.records import InputFile, OriginTask
from genmill.errors import BackendError, InputRejected
from genmill.models.flux.captions import CAPTION_FOLDER
from genmill.models.flux.midjourney import MidjourneyDescribeBackend, MidjourneyFluxBackend, midjourney_backends
from genmill.models.flux.midjourney_catalog import GRID_ACTIONS, UPSCALED_ACTIONS
from genmill.models.flux.midjourney_images import mask_of, pan_sides, size_for_aspect, zoom_sides
from genmill.models.flux.midjourney_tasks import Settings
from genmill.models.flux.shared import FluxShared
from genmill.testing import MemoryRunContext
from genmill.worker.backendset import BackendSet, StandIns

pytestmark = [
    pytest.mark.backends,
    # test_flux's builders make ControlNets, whose diffusers code imports FluxPosEmbed from its deprecated place.
    pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning"),
]

CATALOG = build_catalog()
SMALL = Settings(side=64, steps=2)


def save_tiny_blip(folder: Path) -> None:
    """BLIP's captioning architecture at toy size, with a BERT word-piece vocabulary written here."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "red", "fox", "on", "grass", "photo", "of"]
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(vocab), bos_token="[DEC]")
    config = BlipConfig(
        text_config={
            "vocab_size": len(words),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "encoder_hidden_size": 16,
            "bos_token_id": words.index("[DEC]"),
            "pad_token_id": 0,
            "sep_token_id": words.index("[SEP]"),
            "eos_token_id": words.index("[SEP]"),
            "max_position_embeddings": 64,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    BlipForConditionalGeneration(config).save_pretrained(folder)
    BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(folder)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mj-models")
    started = time.perf_counter()
    build_models(root)
    save_tiny_blip(root / CAPTION_FOLDER)
    print(f"\ntiny FLUX.1 and BLIP models built in {time.perf_counter() - started:.2f}s")
    return root


@pytest.fixture(scope="module")
def backends(models_dir: Path) -> dict[str, Backend]:
    found = midjourney_backends(models_dir, shared=FluxShared(device="cpu"), settings=SMALL)
    by_name = {backend.name: backend for backend in found}
    for backend in by_name.values():
        availability = backend.availability()
        assert availability.ok, availability.reason
    return by_name


def entry(task_type: str) -> CatalogEntry:
    found = CATALOG.get("midjourney", task_type)
    assert found is not None
    return found


def backend_for(backends: dict[str, Backend], task_type: str) -> Backend:
    (backend,) = [b for b in backends.values() if ("midjourney", task_type) in b.entries]
    return backend


def origin_context(origin: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext]) -> MemoryRunContext:
    """A follow-up's context: `origin` is (task_type, input, output, its context), whose saved files the new task
    may read as a worker's would."""
    kind, origin_input, origin_output, origin_ctx = origin
    record = OriginTask("origin-1", "midjourney", kind, origin_input, origin_output, None, datetime.now(UTC))
    files = {url: InputFile(saved.data, saved.content_type) for url, saved in origin_ctx.outputs.items()}
    return MemoryRunContext(origin=record, files=files)


def run(
    backends: dict[str, Backend],
    task_type: str,
    *,
    origin: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext] | None = None,
    **fields: Any,
) -> tuple[dict[str, Any], MemoryRunContext]:
    """Validate `fields` with the catalog's input model and run the task, a follow-up of `origin` if given."""
    inputs = entry(task_type).input_model.model_validate(fields)
    ctx = MemoryRunContext() if origin is None else origin_context(origin)
    started = time.perf_counter()
    output = backend_for(backends, task_type).run(entry(task_type), inputs, ctx)
    print(f"\nmidjourney {task_type}: {time.perf_counter() - started:.2f}s")
    return output, ctx


def img(ctx: MemoryRunContext, url: str) -> Image.Image:
    return Image.open(io.BytesIO(ctx.output(url))).convert("RGB")


def arr(image: Image.Image) -> Any:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = float(((arr(a) - arr(b)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def imagined(backends: dict[str, Backend]) -> tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext]:
    fields: dict[str, Any] = {"prompt": "a red fox on green grass", "aspect_ratio": "16:9"}
    output, ctx = run(backends, "imagine", **fields)
    return "imagine", fields, output, ctx


@pytest.fixture(scope="module")
def upscaled(
    backends: dict[str, Backend], imagined: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext]
) -> tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext]:
    fields: dict[str, Any] = {"origin_task_id": "origin-1", "index": "2"}
    output, ctx = run(backends, "upscale", origin=imagined, **fields)
    return "upscale", fields, output, ctx


# --- the image rules -----------------------------------------------------------------------------------------


def test_sizes_canvases_and_masks() -> None:
    assert size_for_aspect("1:1", 1024, 16) == (1024, 1024)
    width, height = size_for_aspect("16:9", 1024, 16)
    assert abs(width / height - 16 / 9) < 0.02 and abs(width * height - 1024**2) / 1024**2 < 0.02
    assert size_for_aspect("1:8", 64, 16) == (16, 176)
    zoom = zoom_sides(100, 60, "2", "")
    assert (zoom.outpaint_left + zoom.outpaint_right, zoom.outpaint_top + zoom.outpaint_bottom) == (100, 60)
    square = zoom_sides(100, 60, "1", "")
    assert (square.outpaint_left + square.outpaint_right, square.outpaint_top + square.outpaint_bottom) == (0, 40)
    shaped = zoom_sides(100, 100, "1.5", "2:1")
    assert (100 + shaped.outpaint_left + shaped.outpaint_right) == 2 * (
        100 + shaped.outpaint_top + shaped.outpaint_bottom
    )
    with pytest.raises(InputRejected, match="zoom_ratio"):
        zoom_sides(100, 100, "1", "1:1")
    assert pan_sides(100, 60, "left").outpaint_left == 50 and pan_sides(100, 60, "down").outpaint_bottom == 30
    with pytest.raises(InputRejected, match="mask"):
        mask_of(Image.new("RGB", (8, 8), "black"), (8, 8))


# --- imagine, reroll ---------------------------------------------------------------------------------------------


def test_imagine_draws_four_images_whose_grid_quadrants_are_those_images(
    imagined: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext],
) -> None:
    _, _, output, ctx = imagined
    images = [img(ctx, url) for url in output["image_urls"]]
    assert len(images) == 4 and output["temporary_image_urls"] == output["image_urls"]
    width, height = images[0].size
    assert (width, height) == size_for_aspect("16:9", 64, 16) == (80, 48)  # aspect_ratio honoured
    sheet = img(ctx, output["image_url"])
    assert sheet.size == (2 * width, 2 * height)
    for index, image in enumerate(images):
        x, y = (index % 2) * width, (index // 2) * height
        quadrant = sheet.crop((x, y, x + width, y + height))
        assert np.array_equal(arr(quadrant), arr(image)) and psnr(quadrant, image) == float("inf")
    assert len({image.tobytes() for image in images}) == 4  # four different images, not one copied
    assert output["discord_image_url"] == "" and output["intermediate_image_urls"] == []
    assert output["task_progress"] == 100 and output["error_messages"] == [] and output["message"] == ""
    assert isinstance(output["seed"], int) and output["prompt"] == "a red fox on green grass"
    assert output["actions"] == list(GRID_ACTIONS)
    assert ctx.fractions[-1] == 1.0


def test_reroll_draws_the_origins_prompt_again_with_a_new_seed(
    backends: dict[str, Backend], imagined: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext]
) -> None:
    output, ctx = run(backends, "reroll", origin=imagined, origin_task_id="origin-1", aspect_ratio="2:3")
    assert output["prompt"] == "a red fox on green grass" and output["seed"] != imagined[2]["seed"]
    first = img(ctx, output["image_urls"][0])
    assert first.width < first.height and len(output["image_urls"]) == 4
    assert output["actions"] == list(GRID_ACTIONS)


# --- upscale, variation, seed --------------------------------------------------------------------------------


def test_upscale_is_the_chosen_image_at_twice_the_size_refined_by_flux(
    imagined: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext],
    upscaled: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext],
) -> None:
    """The refined path's pixels cannot resemble the source here (a random VAE does not reconstruct images), so
    this checks what it reads and makes; the next test measures the pixels on the Lanczos path."""
    _, _, grid_output, grid_ctx = imagined
    _, _, output, ctx = upscaled
    chosen = img(grid_ctx, grid_output["image_urls"][1])
    big = img(ctx, output["image_url"])
    assert big.size == (chosen.width * 2, chosen.height * 2)
    assert ctx.inputs_read == [("origin_task_id", grid_output["image_urls"][1])]
    assert any("refined at strength 0.25" in line for line in ctx.logs)
    assert output["image_urls"] == [output["image_url"]] and output["actions"] == list(UPSCALED_ACTIONS)
    assert output["prompt"] == "a red fox on green grass"


def test_upscale_past_the_refine_limit_is_lanczos_of_the_chosen_image(
    models_dir: Path, imagined: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext]
) -> None:
    lanczos_only = Settings(side=64, steps=2, refine_max_pixels=0)
    backend = MidjourneyFluxBackend(
        "midjourney-flux", models_dir, shared=FluxShared(device="cpu"), settings=lanczos_only
    )
    _, _, grid_output, grid_ctx = imagined
    output, ctx = run({"lanczos": backend}, "upscale", origin=imagined, origin_task_id="origin-1", index="4")
    chosen = img(grid_ctx, grid_output["image_urls"][3])
    big = img(ctx, output["image_url"])
    assert big.size == (chosen.width * 2, chosen.height * 2)
    measured = psnr(big.resize(chosen.size, Image.Resampling.LANCZOS), chosen)
    others = [
        psnr(big.resize(chosen.size, Image.Resampling.LANCZOS), img(grid_ctx, u)) for u in grid_output["image_urls"][:3]
    ]
    print(
        f"\nupscale (Lanczos): PSNR to the chosen image {measured:.1f} dB, to the others {[f'{o:.1f}' for o in others]}"
    )
    assert measured > 30 and all(measured > other + 10 for other in others)


def test_variation_differs_from_its_source(
    backends: dict[str, Backend],
    imagined: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext],
    upscaled: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext],
) -> None:
    output, ctx = run(backends, "variation", origin=imagined, origin_task_id="origin-1", index="3")
    source = img(imagined[3], imagined[2]["image_urls"][2])
    variations = [img(ctx, url) for url in output["image_urls"]]
    assert len(variations) == 4 and all(v.size == source.size for v in variations)
    diffs = [float(np.abs(arr(v) - arr(source)).mean()) for v in variations]
    print(f"\nvariation: mean absolute difference to the source {[f'{d:.1f}' for d in diffs]}")
    assert all(d > 1.0 for d in diffs) and output["prompt"] == "a red fox on green grass"
    strong, _ = run(backends, "variation", origin=upscaled, origin_task_id="origin-1", index="high_variation")
    assert len(strong["image_urls"]) == 4 and strong["prompt"] == "a red fox on green grass"
    square, square_ctx = run(
        backends, "variation", origin=imagined, origin_task_id="origin-1", index="1", aspect_ratio="1:1"
    )
    assert img(square_ctx, square["image_urls"][0]).size == (64, 64)


def test_seed_returns_the_origins_seed_without_drawing(
    backends: dict[str, Backend], imagined: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext]
) -> None:
    output, ctx = run(backends, "seed", origin=imagined, origin_task_id="origin-1")
    assert output["seed"] == imagined[2]["seed"] and ctx.outputs == {} and output["actions"] == []


def test_follow_ups_refuse_the_wrong_kind_of_origin(
    backends: dict[str, Backend],
    imagined: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext],
    upscaled: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext],
) -> None:
    with pytest.raises(InputRejected, match="index: 2x works on an upscaled image"):
        run(backends, "upscale", origin=imagined, origin_task_id="origin-1", index="2x")
    with pytest.raises(InputRejected, match='index: "1" picks an image of a grid'):
        run(backends, "variation", origin=upscaled, origin_task_id="origin-1", index="1")
    with pytest.raises(InputRejected, match="upscale one of its images first"):
        run(backends, "pan", origin=imagined, origin_task_id="origin-1", direction="up")
    with pytest.raises(BackendError, match="origin_task_id"):
        run(backends, "upscale", origin_task_id="origin-1", index="1")


# --- inpaint, outpaint, pan ----------------------------------------------------------------------------------


def test_inpaint_changes_only_the_masked_region(
    backends: dict[str, Backend], upscaled: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext]
) -> None:
    source = img(upscaled[3], upscaled[2]["image_url"])
    mask = Image.new("RGB", source.size, "black")
    box = (source.width // 4, source.height // 4, source.width // 2, source.height // 2)
    ImageDraw.Draw(mask).rectangle(box, fill="white")
    output, ctx = run(
        backends, "inpaint", origin=upscaled, origin_task_id="origin-1", mask=image_ref(mask), prompt="a hat"
    )
    inside = arr(mask)[..., 0] > 128
    for url in output["image_urls"]:
        painted = arr(img(ctx, url))
        changed = np.abs(painted - arr(source)).sum(axis=-1) > 0
        assert not changed[~inside].any()  # every pixel outside the mask is the source's
        assert changed[inside].mean() > 0.5  # most pixels inside were repainted
    assert output["prompt"] == "a hat" and output["actions"] == list(GRID_ACTIONS)


def test_outpaint_and_pan_keep_the_image_inside_a_larger_canvas(
    backends: dict[str, Backend], upscaled: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext]
) -> None:
    source = img(upscaled[3], upscaled[2]["image_url"])
    zoomed, ctx = run(backends, "outpaint", origin=upscaled, origin_task_id="origin-1", zoom_ratio="2")
    first = img(ctx, zoomed["image_urls"][0])
    assert first.size == (source.width * 2, source.height * 2) and len(zoomed["image_urls"]) == 4
    left, top = source.width // 2, source.height // 2
    assert np.array_equal(arr(first.crop((left, top, left + source.width, top + source.height))), arr(source))
    panned, ctx = run(backends, "pan", origin=upscaled, origin_task_id="origin-1", direction="left")
    first = img(ctx, panned["image_urls"][0])
    grow = first.width - source.width
    assert first.height == source.height and grow == round(source.width * 0.5)
    assert np.array_equal(arr(first.crop((grow, 0, first.width, first.height))), arr(source))


# --- blend, describe -----------------------------------------------------------------------------------------


def test_blend_draws_four_images_in_the_chosen_shape(backends: dict[str, Backend]) -> None:
    refs = [image_ref(picture()), image_ref(picture(40, 56).rotate(90, expand=True))]
    output, ctx = run(backends, "blend", image_urls=refs, dimension="portrait")
    images = [img(ctx, url) for url in output["image_urls"]]
    assert len(images) == 4 and images[0].width < images[0].height
    assert img(ctx, output["image_url"]).size == (images[0].width * 2, images[0].height * 2)


def test_describe_writes_four_descriptions(backends: dict[str, Backend]) -> None:
    output, ctx = run(backends, "describe", image_url=image_ref(picture(60, 40)))
    lines = output["description"].split("\n\n")
    assert len(lines) == 4 and all(line.endswith("--ar 3:2") for line in lines)
    assert [line.split(" ", 1)[0] for line in lines] == ["1️⃣", "2️⃣", "3️⃣", "4️⃣"]
    assert output["image_url"] == "" and output["actions"] == [] and ctx.outputs == {}


# --- serving -------------------------------------------------------------------------------------------------


def test_the_stand_in_serves_only_where_the_operator_enabled_it(models_dir: Path) -> None:
    found = model_backends(models_dir)
    names = {b.name for b in found}
    assert {"midjourney-flux", "midjourney-flux-fill", "midjourney-flux-redux", "midjourney-blip"} <= names
    mj = [b for b in found if b.name.startswith("midjourney")]
    keys = [("midjourney", t) for t in CATALOG.task_types("midjourney")]
    refused = BackendSet(mj, CATALOG)
    assert not any(refused.can_run(*key) for key in keys)
    assert "GENMILL_STAND_INS=midjourney-flux" in refused.refused[("midjourney", "imagine")]
    enabled = BackendSet(mj, CATALOG, stand_ins=StandIns.parse("midjourney"))
    assert all(enabled.can_run(*key) for key in keys)
    for key in keys:
        served = enabled.backend_for(*key).served_by(entry(key[1]))
        assert served.stand_in and "stand-in for Midjourney" in served.model and served.limits
    assert "FLUX.1-Fill-dev" in enabled.backend_for("midjourney", "pan").served_by(entry("pan")).model
    assert "BLIP" in enabled.backend_for("midjourney", "describe").served_by(entry("describe")).model


def test_missing_folders_leave_no_backend(tmp_path: Path) -> None:
    assert midjourney_backends(tmp_path) == []
    assert "blip-image-captioning" in MidjourneyDescribeBackend(tmp_path).availability().reason


def test_large_origins_are_painted_at_the_canvas_limit(
    models_dir: Path, upscaled: tuple[str, dict[str, Any], dict[str, Any], MemoryRunContext]
) -> None:
    limited = Settings(side=64, steps=2, canvas_max_pixels=4096)
    backend = MidjourneyFluxBackend(
        "midjourney-flux-fill", models_dir, shared=FluxShared(device="cpu"), settings=limited
    )
    _, _, origin_output, origin_ctx = upscaled
    output, ctx = run({"limited": backend}, "pan", origin=upscaled, origin_task_id="origin-1", direction="up")
    width, height = img(ctx, output["image_urls"][0]).size
    source = img(origin_ctx, origin_output["image_url"])
    assert width * height <= 4096 and abs(width / height - source.width / (source.height * 1.5)) < 0.05
