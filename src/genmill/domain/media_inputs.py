"""Which values of a validated task input are media sent inline (base64 or a `data:` URI), and where they sit.

The catalog's media field types (`MediaRef`, `OptionalMediaRef`, the toolkits' image and video types in
`genmill.models.schema` and the families' catalogs) carry the `MEDIA_INPUT` marker in their `Annotated`
metadata. Only fields so marked are media: a prompt, a lyric or an unknown extra key is never touched, whatever
it looks like. Pure introspection of pydantic models; nothing is decoded or stored here.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel


@dataclass(frozen=True)
class MediaInputMarker:
    """Marks a field type as a media reference (URL, server path, `data:` URI or base64)."""


MEDIA_INPUT = MediaInputMarker()
"""Put in a media field type's `Annotated[...]` metadata: `Annotated[str, AfterValidator(...), MEDIA_INPUT]`."""

Path = tuple[str | int, ...]
"""Where a value sits in the input as stored (`model_dump` keys and list indexes)."""


@dataclass(frozen=True)
class InlineMedia:
    """One inline media value of the input: its place, its field name as the API names it, and the value."""

    path: Path
    value: str

    @property
    def field(self) -> str:
        """`lora_settings.0.lora_image`: the dotted name an error message uses (after `input.`)."""
        return ".".join(str(part) for part in self.path)


def is_inline(value: str) -> bool:
    """True for base64 or a `data:` URI; False for an http(s) URL, a path on this server and the empty string."""
    ref = value.strip()
    if not ref or ref.startswith("/"):
        return False
    return not ref[:8].lower().startswith(("http://", "https://"))


def inline_media(inputs: BaseModel) -> list[InlineMedia]:
    """Every inline value of a media field in the validated input, nested settings and lists included."""
    return list(_in_model(inputs, ()))


def replace_at(stored: dict[str, Any], path: Path, value: str) -> None:
    """Set the value at `path` of the stored (dumped) input."""
    target: Any = stored
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _in_model(model: BaseModel, path: Path) -> Iterator[InlineMedia]:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name, None)
        yield from _in_value(value, info.annotation, MEDIA_INPUT in info.metadata, (*path, name))


def _in_value(value: Any, annotation: Any, media: bool, path: Path) -> Iterator[InlineMedia]:
    media = media or _marked(annotation)
    if isinstance(value, str):
        if media and is_inline(value):
            yield InlineMedia(path, value)
    elif isinstance(value, BaseModel):
        yield from _in_model(value, path)
    elif isinstance(value, list | tuple):
        item = _item_annotation(annotation)
        for index, element in enumerate(value):
            yield from _in_value(element, item, False, (*path, index))


def _marked(annotation: Any) -> bool:
    """Whether the type is a marked media type, directly or as one member of a union (`MediaRef | None`)."""
    if get_origin(annotation) is Annotated:
        return any(isinstance(meta, MediaInputMarker) for meta in annotation.__metadata__)
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_marked(arg) for arg in get_args(annotation))
    return False


def _item_annotation(annotation: Any) -> Any:
    """The element type of `list[X]` (through `Annotated` and unions); None when it cannot be told."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _item_annotation(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            item = _item_annotation(arg)
            if item is not None:
                return item
        return None
    if origin in (list, tuple):
        args = get_args(annotation)
        return args[0] if args else None
    return None
