"""Face restoration for `upscale`'s `face_enhance`: GFPGAN v1.4, run from its ONNX export with onnxruntime.

The PyPI `gfpgan` package needs basicsr and facexlib, which need a torchvision that loads beside genmill's torch;
the network itself needs none of them once exported, so genmill runs the published ONNX export (facefusion's
`gfpgan_1.4.onnx`: `input` 1x3x512x512 RGB in [-1, 1], one output of the same shape and range) and does the
face handling itself, as GFPGAN's own pipeline does around its network:

1. faces are found by MediaPipe Face Mesh (`faces.FaceFinder`) on the image before upscaling,
   and five of their landmarks (eye centres, nose tip, mouth corners; `face_swap_net.five_points`) are scaled to
   the upscaled image;
2. each face is aligned to the FFHQ 512 template by a similarity transform from those five points;
3. GFPGAN restores the 512x512 crop;
4. the crop goes back through the inverse transform under a feathered mask (`face_swap_net.paste`).

The restorer runs on the upscaled image, as GFPGAN's pipeline restores faces after its background upsampler.
Its weights are a folder under GENMILL_MODELS_DIR (`face-restore/gfpgan_1.4.onnx`, `genmill models pull
face-restore`); without them `face_enhance: true` is refused at create, never ignored.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from genmill.backends.toolkit import mediapipe_availability
from genmill.errors import BackendError
from genmill.models.toolkits.face_swap_net import crop, five_points, paste
from genmill.models.toolkits.faces import FACE_MESH_FILES, FaceFinder

FOLDER = "face-restore"
RESTORER_FILE = "gfpgan_1.4.onnx"
RESTORER_LABEL = "GFPGAN v1.4 face restoration (ONNX, onnxruntime)"
LICENCE = (
    "GFPGAN v1.4 is Apache-2.0 (TencentARC) with StyleGAN2-derived parts under NVIDIA's licence, trained on FFHQ; "
    "check it fits commercial use"
)
NOT_INSTALLED = "no face restorer is installed on this server"
"""Why `face_enhance: true` is refused where the restorer cannot run."""

FFHQ_512_TEMPLATE = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float32,
)
"""Where FFHQ-aligned 512x512 crops (GFPGAN's training data) put the left eye, right eye, nose tip and mouth
corners, image left first."""


def restorer_problem(models_dir: Path | None) -> str:
    """Why the face restorer cannot run here ("" when it can): its weights, onnxruntime, MediaPipe's Face Mesh."""
    if models_dir is None or not (models_dir / FOLDER / RESTORER_FILE).is_file():
        where = f"{models_dir / FOLDER}/" if models_dir is not None else f"{FOLDER}/ in GENMILL_MODELS_DIR"
        return f"{NOT_INSTALLED}: put {RESTORER_FILE} in {where} (genmill models pull face-restore)"
    if importlib.util.find_spec("onnxruntime") is None:
        return f"{NOT_INSTALLED}: onnxruntime is not installed (pip install 'genmill[cpu]')"
    faces = mediapipe_availability(FACE_MESH_FILES, "Face Mesh")
    return "" if faces.ok else f"{NOT_INSTALLED}: {faces.reason}"


def ffhq_alignment(points: NDArray[np.float32], size: int) -> NDArray[np.float64]:
    """The 2x3 similarity transform taking a face's five points onto the FFHQ template of a `size` crop."""
    import cv2

    matrix, _ = cv2.estimateAffinePartial2D(points, FFHQ_512_TEMPLATE * (size / 512), method=cv2.LMEDS)
    if matrix is None:
        raise BackendError("a face could not be aligned", raw_message=f"five points {points.tolist()}")
    return np.asarray(matrix, dtype=np.float64)


class FaceRestorer:
    """GFPGAN in an onnxruntime session, and the face finder that places its crops; `restore` is thread-safe."""

    def __init__(self, path: Path) -> None:
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a bad or truncated file
            raise BackendError(f"the face restorer {path} could not be loaded", raw_message=str(exc)) from exc
        first = self.session.get_inputs()[0]
        shape = first.shape
        if len(shape) != 4 or shape[1] != 3:
            raise BackendError(f"{path} is not a face restorer (input {first.name} has shape {shape})")
        self.input_name = first.name
        self.size = int(shape[2]) if isinstance(shape[2], int) else 512
        self.finder = FaceFinder()
        self.finder.load()
        self.lock = threading.Lock()

    def find(self, rgb: NDArray[np.uint8], scale: tuple[float, float]) -> list[NDArray[np.float32]]:
        """The five points of every face in `rgb`, multiplied by `scale` (where they lie in the upscaled image)."""
        factor = np.array(scale, dtype=np.float32)
        return [five_points(face) * factor for face in self.finder.find(rgb)]

    def restore_face(self, image: NDArray[np.uint8], points: NDArray[np.float32]) -> NDArray[np.uint8]:
        """`image` with the face at `points` restored and pasted back."""
        matrix = ffhq_alignment(points, self.size)
        aligned = crop(image, matrix, self.size)
        blob = (aligned.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        with self.lock:
            out = self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})[0]
        restored = np.asarray(out, dtype=np.float32)[0].transpose(1, 2, 0)
        pixels = np.clip(np.round((np.clip(restored, -1.0, 1.0) + 1.0) * 127.5), 0, 255).astype(np.uint8)
        return paste(image, pixels, matrix)
