"""The rule by which `genmill run` reads `key=value` arguments (docs/sdk.md states the same rule)."""

from __future__ import annotations

from pathlib import Path

import pytest

from genmill.cli_fields import FieldError, parse_fields, shorten_blobs


def test_values_become_numbers_booleans_null_json_or_text() -> None:
    fields = parse_fields(
        [
            "scale=2", "guidance=3.5", "shift=-1e-3", "face=true", "tiling=false", "seed=null",
            "size={\"w\": 4}", "tags=[1, 2]", "prompt=a red fox", "version=007", "broken={not json", "empty=",
        ]
    )  # fmt: skip
    assert fields == {
        "scale": 2, "guidance": 3.5, "shift": -0.001, "face": True, "tiling": False, "seed": None,
        "size": {"w": 4}, "tags": [1, 2], "prompt": "a red fox", "version": "007", "broken": "{not json", "empty": "",
    }  # fmt: skip
    assert isinstance(fields["scale"], int) and isinstance(fields["guidance"], float)


def test_colon_equals_is_always_json_and_dots_nest() -> None:
    assert parse_fields(['prompt:="42"', "seed:=42", "lora.scale=0.8", "lora.name=x", "a=b=c"]) == {
        "prompt": "42",
        "seed": 42,
        "lora": {"scale": 0.8, "name": "x"},
        "a": "b=c",
    }


def test_at_names_a_file_to_upload(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"x")
    assert parse_fields([f"image=@{photo}"]) == {"image": photo}
    with pytest.raises(FieldError, match="no such file"):
        parse_fields([f"image=@{tmp_path / 'missing.png'}"])


@pytest.mark.parametrize(
    ("arguments", "rule"),
    [
        (["prompt"], "expected key=value"),
        (["seed:=4x"], "not JSON"),
        (["=3"], "not a field name"),
        (["a b=3"], "not a field name"),
        (["scale=2", "scale=3"], "given twice"),
        (["lora=1", "lora.scale=2"], "not an object"),
    ],
)
def test_malformed_arguments_are_usage_errors(arguments: list[str], rule: str) -> None:
    with pytest.raises(FieldError, match=rule):
        parse_fields(arguments)


def test_long_base64_is_shortened_for_printing_and_text_is_not() -> None:
    blob = "iVBORw0KGgo" * 100
    prose = "a long prompt, " * 100
    shown = shorten_blobs({"image": blob, "uri": "data:image/png;base64," + blob, "prompt": prose, "n": [1]})
    assert shown == {
        "image": f"<{len(blob)} characters of base64 omitted>",
        "uri": f"<{len(blob) + 22} characters of base64 omitted>",
        "prompt": prose,
        "n": [1],
    }
