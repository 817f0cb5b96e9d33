"""Open-vocabulary segment: the real GroundingDINO and SAM 2 loading and running code on tiny random models.

The models are built from configs at toy sizes and go through save_pretrained/from_pretrained like the published
folders (grounding-dino/, sam2/). Random weights give random boxes and masks, so these tests check plumbing:
the output is an RGBA PNG of the input's size whose alpha is a 0/255 mask, each phrase is detected on its own,
negative_prompt takes its masks away, segment_factor moves the edge, and refusals are InputRejected.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageDraw
from tests.backends.memory import image_ref

from genmill.backends.base import Backend
from genmill.backends.registry import builtin_backends
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import INPUT_ERROR_CODE, InputRejected
from genmill.models.toolkits.segment_grounded import GroundedSegmentBackend, segment_backends, split_phrases
from genmill.testing import MemoryRunContext

pytestmark = pytest.mark.backends

ENTRY = CatalogEntry("Qubico/image-toolkit", "segment", TaskInput, price=lambda _: 0, family="image-toolkit")
WORDS = ["a", "the", "red", "cat", "mug", "dog", "shoes", "collar", "table", "blue", "box"]
SAM_SIDE = 256


def save_tiny_grounding_dino(folder: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "'", *WORDS]
    tokenizer = transformers.BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})
    backbone = transformers.SwinConfig(
        embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, image_size=64,
        out_features=["stage2", "stage3", "stage4"],
    )  # fmt: skip
    text = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64,
    )  # fmt: skip
    config = transformers.GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2,
        num_queries=20, num_feature_levels=4, max_text_len=64, encoder_n_points=2, decoder_n_points=2,
    )  # fmt: skip
    pytest.importorskip("torch").manual_seed(0)
    transformers.GroundingDinoForObjectDetection(config).eval().save_pretrained(folder)
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 192})
    transformers.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def save_tiny_sam2(folder: Path) -> None:
    transformers = pytest.importorskip("transformers")
    side = SAM_SIDE
    backbone = transformers.Sam2HieraDetConfig(
        hidden_size=16, num_attention_heads=1, image_size=[side, side], blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[8, 4, 4, 4], global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
    )  # fmt: skip
    vision = transformers.Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
        backbone_feature_sizes=[[side // 4] * 2, [side // 8] * 2, [side // 16] * 2], fpn_hidden_size=32,
    )  # fmt: skip
    config = transformers.Sam2Config(
        vision_config=vision,
        prompt_encoder_config=transformers.Sam2PromptEncoderConfig(hidden_size=32, image_size=side, patch_size=16),
        mask_decoder_config=transformers.Sam2MaskDecoderConfig(
            hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32
        ),
    )
    pytest.importorskip("torch").manual_seed(1)
    transformers.Sam2Model(config).eval().save_pretrained(folder)
    settings = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "size": {"height": side}}
    (folder / "preprocessor_config.json").write_text(json.dumps(settings))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    save_tiny_grounding_dino(folder / "grounding-dino")
    save_tiny_sam2(folder / "sam2")
    return folder


@pytest.fixture(scope="module")
def segmenter(models_dir: Path) -> Backend:
    # Random weights score boxes near 0.5 at best: every box counts, so each phrase finds something.
    backend = GroundedSegmentBackend(models_dir / "grounding-dino", models_dir / "sam2", box_threshold=0.0)
    availability = backend.availability()
    if not availability.ok:
        pytest.skip(availability.reason)
    backend.load()
    return backend


def picture() -> Image.Image:
    image = Image.new("RGB", (160, 120), (200, 200, 190))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 20, 80, 90), fill=(180, 30, 30))
    draw.rectangle((90, 40, 150, 110), fill=(30, 40, 180))
    return image


def segment(backend: Backend, prompt: str, negative: str = "", factor: int = 0, **extra: Any) -> NDArray[np.bool_]:
    ctx = extra.pop("ctx", None) or MemoryRunContext()
    image = extra.pop("image", None) or picture()
    inputs = SimpleNamespace(image=image_ref(image), prompt=prompt, negative_prompt=negative, segment_factor=factor)
    output = backend.run(ENTRY, inputs, ctx)  # type: ignore[arg-type]
    saved = ctx.outputs[output["image_url"]]
    data, content_type = saved.data, saved.content_type
    assert content_type == "image/png"
    result = Image.open(io.BytesIO(data))
    assert result.mode == "RGBA" and result.size == image.size
    assert np.array_equal(np.asarray(result.convert("RGB")), np.asarray(image)), "segment keeps the colours"
    alpha = np.asarray(result.getchannel("A"))
    assert set(np.unique(alpha)) <= {0, 255}, "the alpha is a hard mask"
    return alpha > 0


def test_split_phrases() -> None:
    assert split_phrases("Red mug, the cat's collar;  SHOES.\ncat, red mug") == [
        "red mug",
        "the cat's collar",
        "shoes",
        "cat",
    ]
    assert split_phrases(" , ;") == []


def test_any_words_give_a_mask_of_the_image_size(segmenter: Backend) -> None:
    ctx = MemoryRunContext()
    mask = segment(segmenter, "red mug, blue box", ctx=ctx)
    assert mask.any()
    assert any(line.startswith("prompt 'red mug': ") for line in ctx.logs)
    assert any(line.startswith("prompt 'blue box': ") for line in ctx.logs)


def test_negative_prompt_takes_its_masks_away(segmenter: Backend) -> None:
    kept = segment(segmenter, "cat")
    taken = segment(segmenter, "dog")
    without = segment(segmenter, "cat", negative="dog") if (kept & ~taken).any() else None
    if without is None:
        pytest.skip("the random masks of 'cat' lie inside those of 'dog'")
    assert np.array_equal(without, kept & ~taken)


def test_segment_factor_moves_the_edge(segmenter: Backend) -> None:
    areas = [segment(segmenter, "cat", factor=factor).mean() for factor in (-2, 0, 3)]
    assert areas == sorted(areas) and len(set(areas)) == 3, areas


def test_nothing_found_is_rejected(models_dir: Path) -> None:
    strict = GroundedSegmentBackend(models_dir / "grounding-dino", models_dir / "sam2", box_threshold=1.01)
    assert strict.availability().ok
    ctx = MemoryRunContext()
    with pytest.raises(InputRejected, match=r"^prompt: nothing matching 'cat', 'dog' was found") as caught:
        segment(strict, "cat, dog", ctx=ctx)
    assert caught.value.code == INPUT_ERROR_CODE and not ctx.outputs


def test_bad_inputs_are_rejected_naming_the_field(segmenter: Backend) -> None:
    with pytest.raises(InputRejected, match=r"^prompt: "):
        segment(segmenter, " , ")
    with pytest.raises(InputRejected, match=r"^segment_factor: "):
        segment(segmenter, "cat", factor=999)


def test_served_by_and_the_registry_order(models_dir: Path, tmp_path: Path) -> None:
    backends = segment_backends(models_dir)
    assert [b.name for b in backends] == ["grounding-dino-sam2-segment", "mediapipe-segment"]
    assert backends[0].served_by(ENTRY).model == "GroundingDINO (grounding-dino/) + SAM 2 (sam2/)"
    fallback = backends[1].served_by(ENTRY)
    assert fallback.model.startswith("MediaPipe (person, face, hand, background only)") and fallback.limits
    assert [b.name for b in segment_backends(tmp_path)] == ["mediapipe-segment"]
    (tmp_path / "sam2").mkdir()
    only_sam = segment_backends(tmp_path)[0]
    assert not only_sam.availability().ok and "GroundingDINO" in only_sam.availability().reason
    names = [b.name for b in builtin_backends(models_dir) if ("Qubico/image-toolkit", "segment") in b.entries]
    assert names == ["grounding-dino-sam2-segment", "mediapipe-segment"]
