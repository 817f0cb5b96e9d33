"""`POST /v1/images/generations` as a task the API process runs itself (`engine/inline.py`): the price (per
image) is frozen at create, the images are drawn by the model's server, stored here as the task's outputs, and
the task completes with OpenAI's `{created, data: [{url | b64_json}]}` answer."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Protocol

from genmill.backends.base import ServedBy
from genmill.domain.catalog import CatalogEntry
from genmill.domain.records import Account
from genmill.engine.inline import InlineTasks, invalid
from genmill.errors import BackendError, NotFound

IMAGE_TASK_TYPE = "image_generation"
IMAGE_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class ImageModel(Protocol):
    """What draws one image model name (`genmill.models.llm.images.ImageBackend`)."""

    model: str

    def served_by(self) -> ServedBy: ...

    def generate(self, prompt: str, n: int, options: dict[str, Any]) -> list[tuple[bytes, str]]: ...


class ImageEngine:
    def __init__(
        self, inline: InlineTasks, models: Mapping[str, ImageModel], unavailable: Mapping[str, str] | None = None
    ) -> None:
        self.inline = inline
        self.models = dict(models)
        self.unavailable = dict(unavailable or {})

    def listed(self) -> list[tuple[str, ServedBy]]:
        return sorted((name, model.served_by()) for name, model in self.models.items())

    def entry(self, name: object) -> tuple[CatalogEntry, ImageModel]:
        if not isinstance(name, str) or not name:
            raise invalid("required: the image model (GET /v1/models lists them)", "model")
        entry = self.inline.catalog.get(name, IMAGE_TASK_TYPE)
        model = self.models.get(name)
        if entry is None or model is None:
            why = (
                "is not an image model"
                if entry is None
                else f"is not served: {self.unavailable[name]}"
                if name in self.unavailable
                else "has no image server configured (GENMILL_LLM_MODELS)"
            )
            served = ", ".join(sorted(self.models)) or "none"
            raise NotFound(f"model: {name!r} {why} here; served: {served}", detail={"param": "model"})
        return entry, model

    def generate(self, account: Account, body: Mapping[str, Any]) -> dict[str, Any]:
        """Draw the images and answer in OpenAI's shape; the task completes (billed) or fails (released)."""
        entry, model = self.entry(body.get("model"))
        inputs = self.inline.validate(entry, dict(body))
        request = inputs.model_dump(mode="json", exclude_none=True)
        claim = self.inline.open(account, entry, inputs)
        served = model.served_by()
        keeper = self.inline.keep(claim)
        try:
            options = {k: v for k, v in request.items() if k not in ("model", "prompt", "n", "response_format")}
            drawn = model.generate(request["prompt"], int(request["n"]), options)
            urls: list[str] = []
            for image, content_type in drawn:
                ext = IMAGE_EXTENSIONS.get(content_type)
                if ext is None:
                    raise BackendError(f"the image model answered {content_type}, not PNG, JPEG or WebP")
                urls.append(self.inline.save_output(claim.task, image, ext=ext, content_type=content_type))
        except Exception as exc:
            self.inline.fail(claim, exc, served=served)
            raise
        finally:
            keeper.stop()
        created = int(claim.task.created_at.timestamp())
        # the task keeps the stored copies' URLs; the client gets the bytes inline when it asked for b64_json
        self.inline.complete(claim, {"created": created, "data": [{"url": u} for u in urls]}, served=served, logs=[])
        if request["response_format"] == "b64_json":
            return {"created": created, "data": [{"b64_json": base64.b64encode(i).decode("ascii")} for i, _ in drawn]}
        return {"created": created, "data": [{"url": u} for u in urls]}
