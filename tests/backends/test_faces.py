"""Face swaps and prompt segmentation on real photographs, with the MediaPipe models bundled in the wheel.

The only photograph of a person shipped by an installed package is matplotlib's Grace Hopper portrait, so the
other pictures are built from it: a mirrored copy with stripes painted across the face (a face that visibly
differs), two portraits side by side (two faces), five in a row (small faces only the full-range detector sees).
Backends that cannot run here are skipped with their own reason.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from tests.backends.memory import image_ref, ready

from genmill.backends.base import Backend
from genmill.backends.registry import builtin_backends
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import INPUT_ERROR_CODE, BackendError, InputRejected
from genmill.models.toolkits.faces import Face, FaceFinder, FaceSwapBackend, parse_indexes
from genmill.models.toolkits.segment import SegmentBackend, grow, parse_prompt
from genmill.testing import MemoryRunContext

pytestmark = pytest.mark.backends

Pixels = np.ndarray[Any, np.dtype[np.int16]]


def bytes_of(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def swapper() -> Iterator[Backend]:
    yield from ready(FaceSwapBackend())


@pytest.fixture(scope="module")
def segmenter() -> Iterator[Backend]:
    yield from ready(SegmentBackend())


@pytest.fixture(scope="module")
def finder(swapper: Backend) -> FaceFinder:
    finder = FaceFinder()
    finder.load()
    return finder


def run(backend: Backend, task_type: str, ctx: MemoryRunContext | None = None, **fields: Any) -> Image.Image:
    """Run one task and decode its PNG output."""
    ctx = ctx or MemoryRunContext()
    entry = CatalogEntry("Qubico/image-toolkit", task_type, TaskInput, price=lambda _: 0, family="image-toolkit")
    started = time.perf_counter()
    output = backend.run(entry, SimpleNamespace(**fields), ctx)  # type: ignore[arg-type]
    print(f"\n{backend.name} {task_type}: {time.perf_counter() - started:.2f}s")
    saved = ctx.outputs[output["image_url"]]
    data, content_type = saved.data, saved.content_type
    assert content_type == "image/png" and data.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(data))


# --- pictures ------------------------------------------------------------------------------------------------


def portrait(width: int = 256, height: int = 300) -> Image.Image:
    """Grace Hopper, as matplotlib (a mediapipe dependency) ships her."""
    matplotlib = pytest.importorskip("matplotlib")
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip(f"matplotlib's sample portrait is missing at {path}")
    with Image.open(path) as image:
        return image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


def striped() -> Image.Image:
    """A face that differs from the portrait: mirrored, with dark stripes painted across it."""
    image = portrait(240, 280).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    draw = ImageDraw.Draw(image)
    for x in range(70, 180, 12):
        draw.line((x, 85, x + 20, 155), fill=(30, 20, 110), width=3)
    return image


def side_by_side(*images: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)))
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width
    return canvas


def plain() -> Image.Image:
    image = Image.new("RGB", (200, 160), (70, 130, 190))
    ImageDraw.Draw(image).rectangle((40, 40, 150, 120), fill=(210, 180, 60))
    return image


def pixels(image: Image.Image) -> Pixels:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def box_of(face: Face, grow_by: float = 0.0) -> tuple[slice, slice]:
    """(rows, columns) of a face's landmark box, enlarged by `grow_by` of its size on each side."""
    left, top, right, bottom = face.box
    pad = face.size * grow_by
    return slice(max(0, int(top - pad)), int(bottom + pad)), slice(max(0, int(left - pad)), int(right + pad))


def change(a: Pixels, b: Pixels, where: tuple[slice, slice] | np.ndarray[Any, Any]) -> float:
    return float(np.abs(a - b)[where].mean())


# --- face-swap -----------------------------------------------------------------------------------------------


def test_face_swap_replaces_the_face_and_leaves_the_rest(swapper: Backend, finder: FaceFinder) -> None:
    target = portrait()
    ctx = MemoryRunContext()
    result = run(swapper, "face-swap", ctx, target_image=image_ref(target, "JPEG"), swap_image=image_ref(striped()))

    assert result.size == target.size and result.mode == "RGB"
    source = pixels(Image.open(io.BytesIO(bytes_of(target, "JPEG"))))
    out = pixels(result)
    (face,) = finder.find(np.asarray(target))
    inner = box_of(face, -0.2)  # the middle of the face: eyes, nose, mouth
    assert change(out, source, inner) > 12, "the face was not replaced"
    outside = np.ones(out.shape[:2], dtype=bool)
    outside[box_of(face, 0.4)] = False
    assert change(out, source, outside) < 0.2, "pixels far from the face changed"
    assert np.array_equal(out[:40], source[:40]) and np.array_equal(out[-40:], source[-40:])
    assert any(line.startswith("target_image: 1 face(s) found") for line in ctx.logs)
    assert any(line.startswith("swap_image: 1 face(s) found") for line in ctx.logs)


def test_face_swap_with_itself_changes_little(swapper: Backend, finder: FaceFinder) -> None:
    target = portrait()
    result = run(swapper, "face-swap", target_image=image_ref(target), swap_image=image_ref(target))

    (face,) = finder.find(np.asarray(target))
    assert change(pixels(result), pixels(target), box_of(face)) < 2.0


def test_face_swap_keeps_the_target_size_when_the_swap_image_is_larger(swapper: Backend) -> None:
    target = portrait(200, 234)
    result = run(swapper, "face-swap", target_image=image_ref(target), swap_image=image_ref(portrait(512, 600)))
    assert result.size == (200, 234)


def test_faces_are_numbered_left_to_right_even_when_small(finder: FaceFinder) -> None:
    row = side_by_side(*[portrait(200, 234)] * 5)  # 1000x234: Face Mesh's own detector misses all five
    faces = finder.find(np.asarray(row))
    assert len(faces) == 5
    lefts = [face.box[0] for face in faces]
    assert lefts == sorted(lefts)
    assert [int(left // 200) for left in lefts] == [0, 1, 2, 3, 4]


def test_multi_face_swap_changes_only_the_chosen_target_face(swapper: Backend, finder: FaceFinder) -> None:
    target = side_by_side(portrait(), portrait().transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    before = pixels(target)
    ctx = MemoryRunContext()
    result = run(
        swapper,
        "multi-face-swap",
        ctx,
        target_image=image_ref(target),
        swap_image=image_ref(striped()),
        swap_faces_index="0",
        target_faces_index="1",
    )

    after = pixels(result)
    left, right = finder.find(np.asarray(target))
    assert left.box[2] < 256 < right.box[0]
    assert np.array_equal(after[:, :256], before[:, :256]), "face 0 (left) must stay as it was"
    assert change(after, before, box_of(right, -0.2)) > 12, "face 1 (right) was not replaced"
    assert any(line.startswith("target_image: 2 face(s) found") for line in ctx.logs)
    assert "swapped swap_image face 0 onto target_image face 1" in ctx.logs


def test_multi_face_swap_picks_the_swap_face_by_index(swapper: Backend, finder: FaceFinder) -> None:
    target = portrait(240, 280)
    swap = side_by_side(target, striped())  # face 0 is the target itself, face 1 the striped one
    (face,) = finder.find(np.asarray(target))
    changes = {}
    for index in ("0", "1"):
        result = run(
            swapper,
            "multi-face-swap",
            target_image=image_ref(target),
            swap_image=image_ref(swap),
            swap_faces_index=index,
            target_faces_index="0",
        )
        changes[index] = change(pixels(result), pixels(target), box_of(face, -0.2))
    # Face 0 is the same portrait, found with landmarks a pixel or so off: a little change, far less than face 1's.
    assert changes["1"] > max(12.0, 2.5 * changes["0"]), changes


def test_face_swap_fails_without_a_face(swapper: Backend) -> None:
    ctx = MemoryRunContext()
    with pytest.raises(InputRejected, match=r"^swap_image: no face was found"):
        run(swapper, "face-swap", ctx, target_image=image_ref(portrait()), swap_image=image_ref(plain()))
    assert not ctx.outputs
    with pytest.raises(InputRejected, match=r"^target_image: no face was found"):
        run(swapper, "face-swap", target_image=image_ref(plain()), swap_image=image_ref(portrait()))


@pytest.mark.parametrize(
    ("swap_index", "target_index", "error"),
    [
        ("0", "2", r"^target_faces_index: face 2 was asked for but target_image has 2 faces \(indexes 0-1"),
        ("1", "0", r"^swap_faces_index: face 1 was asked for but swap_image has 1 face \(indexes 0-0"),
        ("0,0", "1", r"^swap_faces_index: lists 2 faces but target_faces_index lists 1"),
        ("0,0", "1,1", r"^target_faces_index: face 1 is listed more than once"),
        ("0", "one", r"^target_faces_index: 'one' is not a comma-separated list"),
    ],
)
def test_multi_face_swap_refuses_bad_indexes(swapper: Backend, swap_index: str, target_index: str, error: str) -> None:
    target = side_by_side(portrait(), portrait())
    with pytest.raises(InputRejected, match=error):
        run(
            swapper,
            "multi-face-swap",
            target_image=image_ref(target),
            swap_image=image_ref(striped()),
            swap_faces_index=swap_index,
            target_faces_index=target_index,
        )


def test_parse_indexes() -> None:
    assert parse_indexes("0", "f") == [0]
    assert parse_indexes(" 1, 0 ,2", "f") == [1, 0, 2]
    assert parse_indexes(3, "f") == [3]
    with pytest.raises(BackendError, match=r"^f: "):
        parse_indexes("1,", "f")
    with pytest.raises(BackendError, match=r"^f: "):
        parse_indexes("-1", "f")


# --- segment -------------------------------------------------------------------------------------------------


def segment(backend: Backend, image: Image.Image, prompt: str, negative: str = "", factor: int = 0) -> Any:
    """The alpha channel of a segment result, as booleans (inside the mask)."""
    result = run(
        backend, "segment", image=image_ref(image), prompt=prompt, negative_prompt=negative, segment_factor=factor
    )
    assert result.mode == "RGBA" and result.size == image.size
    assert np.array_equal(pixels(result), pixels(image)), "segment keeps the image's colours"
    return np.asarray(result.getchannel("A")) > 127


def test_segment_person_covers_the_person_not_the_corners(segmenter: Backend) -> None:
    mask = segment(segmenter, portrait(), "Person")
    assert mask[110:290, 110:150].all()  # the middle of the face, neck and chest
    assert not mask[:40, :30].any() and not mask[:40, -30:].any()
    assert 0.3 < mask.mean() < 0.8


def test_segment_face_is_inside_and_smaller_than_the_person(segmenter: Backend) -> None:
    image = portrait()
    person = segment(segmenter, image, "people")
    face = segment(segmenter, image, "the woman's face")
    assert 0.03 < face.mean() < person.mean() / 2
    assert (face & ~person).mean() < 0.005
    assert face[100:150, 110:150].all()  # between the eyes and the mouth
    assert not face[250:].any()  # nothing below the chin


def test_segment_negative_prompt_removes_the_face(segmenter: Backend) -> None:
    image = portrait()
    person = segment(segmenter, image, "person")
    without = segment(segmenter, image, "person", negative="faces")
    assert not without[100:150, 110:150].any()
    assert without[240:290, 60:200].mean() > 0.95  # the shoulders stay
    assert without.mean() < person.mean() - 0.03


def test_segment_factor_grows_and_shrinks_the_mask(segmenter: Backend) -> None:
    image = portrait()
    areas = [segment(segmenter, image, "face", factor=factor).mean() for factor in (-12, -4, 0, 4, 12)]
    assert areas == sorted(areas) and len(set(areas)) == 5, areas


def test_segment_background_is_the_complement_of_the_person(segmenter: Backend) -> None:
    image = portrait()
    person = segment(segmenter, image, "person")
    background = segment(segmenter, image, "background")
    assert np.array_equal(background, ~person)


def test_segment_refuses_prompts_it_cannot_answer(segmenter: Backend) -> None:
    ctx = MemoryRunContext()
    with pytest.raises(BackendError) as caught:
        run(segmenter, "segment", ctx, image=image_ref(portrait()), prompt="Cat", negative_prompt="", segment_factor=0)
    assert str(caught.value) == "prompt: this server can segment person, face, hand, background; 'cat' is not supported"
    assert not ctx.outputs
    with pytest.raises(BackendError, match=r"^prompt: no hand was found"):
        run(segmenter, "segment", image=image_ref(portrait()), prompt="hands", negative_prompt="", segment_factor=0)
    with pytest.raises(BackendError, match=r"^prompt: no face was found"):
        run(segmenter, "segment", image=image_ref(plain()), prompt="face", negative_prompt="", segment_factor=0)


def test_segment_refuses_unsupported_words_next_to_supported_ones(segmenter: Backend) -> None:
    """Half an answer would be charged as a whole one: a word it cannot segment fails the task, either field."""
    for prompt, negative, field in (("face, hat", "", "prompt"), ("person", "hat", "negative_prompt")):
        ctx = MemoryRunContext()
        with pytest.raises(InputRejected) as caught:
            run(segmenter, "segment", ctx, image=image_ref(portrait()), prompt=prompt, negative_prompt=negative,
                segment_factor=0)  # fmt: skip
        assert (
            str(caught.value)
            == f"{field}: this server can segment person, face, hand, background; 'hat' is not supported"
        )
        assert caught.value.code == INPUT_ERROR_CODE and not ctx.outputs


def test_parse_prompt_reads_head_nouns_case_insensitively() -> None:
    assert parse_prompt("The woman's FACE, left hands; cat") == (["face", "hand"], ["cat"])
    assert parse_prompt("face of the man and people") == (["face", "person"], [])
    assert parse_prompt("hair, clothes") == ([], ["hair", "clothes"])


def test_grow_moves_the_mask_edge_by_whole_pixels() -> None:
    mask = np.zeros((50, 50), dtype=np.uint8)
    mask[20:30, 20:30] = 255
    assert int((grow(mask, 2) > 0).sum()) == 14 * 14 - 4 * 3  # a 14x14 square with corners at distance > 2 cut
    assert int((grow(mask, -2) > 0).sum()) == 6 * 6
    assert np.array_equal(grow(mask, 0), mask)


# --- registry ------------------------------------------------------------------------------------------------


def test_builtin_backends_serve_the_face_and_segment_entries() -> None:
    by_entry = {entry: backend for backend in builtin_backends() for entry in backend.entries}
    for task_type in ("face-swap", "multi-face-swap", "segment"):
        backend = by_entry[("Qubico/image-toolkit", task_type)]
        availability = backend.availability()
        assert availability.ok or availability.reason
