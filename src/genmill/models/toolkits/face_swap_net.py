"""`Qubico/image-toolkit` face swap with a swap network, insightface's inswapper, where the operator supplies it.

inswapper_128 replaces the identity of a 128x128 face crop with the identity of an ArcFace embedding, keeping the
target's pose, expression and lighting: what the classical landmark warp (`faces`) cannot do.
Its weights carry insightface's non-commercial licence, so genmill neither ships nor pulls them: an operator who
accepts it puts two files in `GENMILL_MODELS_DIR/inswapper/`:

    inswapper_128.onnx   the swap network (inputs `target` 1x3x128x128 RGB in [0, 1], `source` 1x512)
    w600k_r50.onnx       the ArcFace recognition model of insightface's buffalo_l pack (112x112 in, 512 out)

The source identity is ArcFace's normalised embedding projected by the matrix inswapper keeps as its last graph
initializer (`emap`), then normalised again. Faces are found and numbered by MediaPipe Face Mesh as in the
classical backend (the same `swap_faces_index` / `target_faces_index` order); five of its landmarks (eye centres,
nose tip, mouth corners) align each face to ArcFace's template by a similarity transform. The swapped crop goes
back through the inverse transform under a feathered mask. Listed before the classical backend, it runs the face
swap entries whenever its files are there.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.backends.toolkit import mediapipe_availability
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError
from genmill.models.toolkits.faces import FACE_MESH_FILES, Face, FaceFinder, run_face_swap
from genmill.models.toolkits.image_catalog import MODEL

FOLDER = "inswapper"
SWAPPER, RECOGNISER = "inswapper_128.onnx", "w600k_r50.onnx"
LICENCE = "insightface's inswapper_128 and buffalo_l weights are for non-commercial use only"

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
"""Where ArcFace's 112x112 crops put the left eye, right eye, nose tip and mouth corners (image left first)."""


def template(size: int) -> NDArray[np.float32]:
    """ArcFace's five points for a `size` crop: scaled for multiples of 112, else scaled from 128 with the
    8-pixel horizontal margin insightface's 128 crops have (inswapper's input)."""
    if size % 112 == 0:
        return ARCFACE_TEMPLATE * (size / 112)
    ratio = size / 128
    points = ARCFACE_TEMPLATE * ratio
    points[:, 0] += 8 * ratio
    return points


def five_points(face: Face) -> NDArray[np.float32]:
    """Eye centres (irises when Face Mesh refined them), nose tip and mouth corners, each pair image-left first."""
    p = face.points
    eyes = [p[468], p[473]] if len(p) >= 478 else [(p[33] + p[133]) / 2, (p[362] + p[263]) / 2]
    eyes.sort(key=lambda point: float(point[0]))
    mouth = sorted([p[61], p[291]], key=lambda point: float(point[0]))
    return np.array([eyes[0], eyes[1], p[1], mouth[0], mouth[1]], dtype=np.float32)


def alignment(points: NDArray[np.float32], size: int) -> NDArray[np.float64]:
    """The 2x3 similarity transform taking the face's five points onto the template of a `size` crop."""
    import cv2

    matrix, _ = cv2.estimateAffinePartial2D(points, template(size), method=cv2.LMEDS)
    if matrix is None:
        raise BackendError("a face could not be aligned", raw_message=f"five points {points.tolist()}")
    return np.asarray(matrix, dtype=np.float64)


def crop(image: NDArray[np.uint8], matrix: NDArray[np.float64], size: int) -> NDArray[np.uint8]:
    import cv2

    return np.asarray(cv2.warpAffine(image, matrix, (size, size), borderValue=(0, 0, 0)), dtype=np.uint8)


def paste(target: NDArray[np.uint8], swapped: NDArray[np.uint8], matrix: NDArray[np.float64]) -> NDArray[np.uint8]:
    """`target` with the swapped crop warped back into place, feathered over its last tenth so no seam shows."""
    import cv2

    size = swapped.shape[0]
    height, width = target.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    back = cv2.warpAffine(swapped, inverse, (width, height), borderValue=(0, 0, 0)).astype(np.float32)
    inset = max(2, size // 10)
    square = np.zeros((size, size), dtype=np.float32)
    square[inset:-inset, inset:-inset] = 1.0
    mask = cv2.warpAffine(square, inverse, (width, height))
    scale = float(np.sqrt(abs(np.linalg.det(inverse[:, :2]))))
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(1.0, inset * scale / 2))[..., None]
    blended = target.astype(np.float32) * (1 - mask) + back * mask
    return np.asarray(np.clip(np.round(blended), 0, 255), dtype=np.uint8)


class SwapNetwork:
    """The two ONNX models in onnxruntime sessions, and inswapper's embedding projection."""

    def __init__(self, folder: Path) -> None:
        import onnx
        import onnxruntime
        from onnx import numpy_helper

        graph = onnx.load(str(folder / SWAPPER)).graph
        self.emap = np.asarray(numpy_helper.to_array(graph.initializer[-1]), dtype=np.float32)
        if self.emap.shape != (512, 512):
            raise BackendError(f"{folder / SWAPPER} is not inswapper_128 (its last initializer is not 512x512)")
        providers = ["CPUExecutionProvider"]
        self.swapper = onnxruntime.InferenceSession(str(folder / SWAPPER), providers=providers)
        self.recogniser = onnxruntime.InferenceSession(str(folder / RECOGNISER), providers=providers)
        names = [i.name for i in self.swapper.get_inputs()]
        self.target_input, self.source_input = names[0], names[1]
        shape = self.swapper.get_inputs()[0].shape
        self.size = int(shape[2]) if isinstance(shape[2], int) else 128
        self.lock = threading.Lock()

    def identity(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.float32]:
        """inswapper's `source`: the face's ArcFace embedding, normalised, projected by `emap`, normalised."""
        aligned = crop(image, alignment(five_points(face), 112), 112).astype(np.float32)
        blob = ((aligned - 127.5) / 127.5).transpose(2, 0, 1)[None]
        name = self.recogniser.get_inputs()[0].name
        embedding = np.asarray(self.recogniser.run(None, {name: blob})[0], dtype=np.float32).reshape(-1)
        embedding /= max(float(np.linalg.norm(embedding)), 1e-6)
        latent = (embedding[None] @ self.emap).astype(np.float32)
        return latent / max(float(np.linalg.norm(latent)), 1e-6)

    def swap(self, target: NDArray[np.uint8], face: Face, identity: NDArray[np.float32]) -> NDArray[np.uint8]:
        matrix = alignment(five_points(face), self.size)
        aligned = crop(target, matrix, self.size)
        blob = (aligned.astype(np.float32) / 255).transpose(2, 0, 1)[None]
        out = self.swapper.run(None, {self.target_input: blob, self.source_input: identity})[0]
        swapped = np.clip(np.asarray(out, dtype=np.float32)[0].transpose(1, 2, 0) * 255, 0, 255).astype(np.uint8)
        return paste(target, swapped, matrix)


class InswapperFaceSwapBackend(Backend):
    """`face-swap` (largest face onto largest face) and `multi-face-swap` (faces paired by index) with inswapper."""

    name = "inswapper-face-swap"
    entries = ((MODEL, "face-swap"), (MODEL, "multi-face-swap"))
    requirements = ("mediapipe", "onnxruntime", "onnx")

    def __init__(self, models_dir: Path) -> None:
        self.path = models_dir / FOLDER
        self._finder = FaceFinder()
        self._network: SwapNetwork | None = None
        self._lock = threading.Lock()

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        return ServedBy("inswapper_128 with ArcFace w600k_r50 (insightface, non-commercial weights)")

    def availability(self) -> Availability:
        missing = [name for name in (SWAPPER, RECOGNISER) if not (self.path / name).is_file()]
        if missing:
            return Availability(
                False,
                f"no swap network: put {' and '.join(missing)} in {self.path}/ to use it ({LICENCE}; the operator "
                "accepts that licence); the classical landmark warp runs meanwhile",
            )
        absent = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
        if absent:
            return Availability(False, f"{', '.join(absent)} not installed: pip install 'genmill[cpu]'")
        return mediapipe_availability(FACE_MESH_FILES, "Face Mesh")

    def load(self) -> None:
        with self._lock:
            if self._network is None:
                self._finder.load()
                try:
                    self._network = SwapNetwork(self.path)
                except (OSError, ValueError, RuntimeError) as exc:
                    message = f"the swap network in {self.path} could not be loaded"
                    raise BackendError(message, raw_message=str(exc)) from exc

    def unload(self) -> None:
        with self._lock:
            self._network = None

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        self.load()
        network = self._network
        assert network is not None

        def swap_pair(
            source: NDArray[np.uint8], swap: Face, target: NDArray[np.uint8], onto: Face
        ) -> NDArray[np.uint8]:
            with network.lock:  # one ONNX session pair, run by one task at a time
                return network.swap(target, onto, network.identity(source, swap))

        return run_face_swap(entry, inputs, ctx, self._finder, swap_pair, how=" (inswapper)")
