"""Test backends: small real implementations (Pillow) that let API tests exercise the whole task path
without the native model libraries. Production backends are tested on their own in tests/backends."""

from __future__ import annotations

import io
import threading
from typing import Any

from PIL import Image

from genmill.backends.base import Availability, Backend, RunContext
from genmill.domain.catalog import Catalog, CatalogEntry, TaskInput
from genmill.domain.records import NewTask
from genmill.errors import BackendError
from genmill.store import Store


def png_bytes(width: int, height: int, color: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    image = Image.new("RGB", (width, height), color)
    for x in range(width):
        image.putpixel((x, height // 2), (x * 255 // max(1, width - 1), 255, 0))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def catalog_entry(catalog: Catalog, model: str, task_type: str) -> CatalogEntry:
    """The entry for (model, task_type), failing the test, naming the pair, where the catalog lacks it."""
    found = catalog.get(model, task_type)
    assert found is not None, f"{model}/{task_type} missing"
    return found


class PillowUpscale(Backend):
    """Lanczos resize standing in for Real-ESRGAN in API tests; `gate` lets a test hold a task in processing."""

    name = "test-pillow-upscale"
    entries = (("Qubico/image-toolkit", "upscale"),)

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.loads = 0

    def availability(self) -> Availability:
        return Availability(True)

    def load(self) -> None:
        self.loads += 1

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        self.gate.wait(30)
        source = ctx.read_input(inputs.image, field="image")  # type: ignore[attr-defined]
        image = Image.open(io.BytesIO(source.data))
        scale = int(inputs.scale)  # type: ignore[attr-defined]
        ctx.log(f"resizing {image.width}x{image.height} by {scale}")
        out = image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        out.save(buf, format="PNG")
        return {"image_url": ctx.save_output(buf.getvalue(), ext="png", content_type="image/png")}


class AlwaysFails(Backend):
    name = "test-always-fails"
    entries = (("Qubico/image-toolkit", "background-remove"),)

    def availability(self) -> Availability:
        return Availability(True)

    def load(self) -> None:
        pass

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        ctx.log("about to fail")
        raise BackendError("the segmentation model rejected the image", raw_message="bad tensor shape")


class Missing(Backend):
    name = "test-missing"
    entries = (("Qubico/tts", "zero-shot"),)

    def availability(self) -> Availability:
        return Availability(False, "test backend is never available")

    def load(self) -> None:
        raise AssertionError("never loaded")

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        raise AssertionError("never run")


def task_with_hook(store: Store, account_id: str, name: str = "hook") -> str:
    """A pending upscale task of `account_id` whose webhook goes to `http://127.0.0.1:9/NAME` (secret "s")."""
    config = {"service_mode": "", "webhook_config": {"endpoint": f"http://127.0.0.1:9/{name}", "secret": "s"}}
    new = NewTask(
        account_id=account_id,
        model="Qubico/image-toolkit",
        task_type="upscale",
        family="image-toolkit",
        input={"image": "x", "scale": 2},
        config=config,
        price=1,
        service_mode="",
        retention_seconds=60,
    )
    return store.tasks.create(new)[0].task_id
