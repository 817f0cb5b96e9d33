"""`Qubico/image-toolkit` `face-swap` and `multi-face-swap` on a CPU: MediaPipe Face Mesh and classical blending.

No face-swap network ships in any wheel we may install, so the swap is geometric: MediaPipe Face Mesh (bundled in
the `mediapipe` wheel) puts 478 landmarks on every face, a Delaunay triangulation of the target's landmarks
drives a piecewise-affine warp of the swap face onto the target's geometry, its colours are matched to the
target's skin in LAB, and `cv2.seamlessClone` (Poisson blending) inside the slightly eroded convex hull of the
landmarks hides the seam. Identity comes only from the swap face's pixels: expression, pose and the shape of the
jaw stay the target's, and an open mouth or closed eyes are copied as they are.

Faces are numbered left to right by the left edge of their landmark bounding box (top to bottom on a tie), the
order `swap_faces_index` / `target_faces_index` refer to. The face finder is shared with `segment`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.backends.toolkit import (
    cancelled_error,
    encode_png,
    field_value,
    has_alpha,
    load_image,
    mediapipe_availability,
)
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import InputRejected
from genmill.models.toolkits.image_catalog import MODEL

Points = NDArray[np.float32]
"""Landmarks in pixel coordinates, shape (N, 2), columns x and y."""

MAX_FACES = 10
"""Faces Face Mesh looks for in one pass over the whole image (more are found through the detector's crops)."""

FACE_MESH_FILES = (
    ("face_landmark", "face_landmark_front_cpu.binarypb"),
    ("face_landmark", "face_landmark_with_attention.tflite"),
    ("face_detection", "face_detection_short_range.tflite"),
    ("face_detection", "face_detection_full_range_cpu.binarypb"),
    ("face_detection", "face_detection_full_range_sparse.tflite"),
)
"""The graphs and models under mediapipe/modules that `FaceFinder` runs (refined landmarks need the attention
model; faces far from the camera need the full-range detector)."""


@dataclass(frozen=True)
class Face:
    """One face: its Face Mesh landmarks in pixels (468, or 478 with the irises)."""

    points: Points

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the landmarks."""
        low, high = self.points.min(axis=0), self.points.max(axis=0)
        return float(low[0]), float(low[1]), float(high[0]), float(high[1])

    @property
    def size(self) -> float:
        """The longer side of the box: the scale for erosion and feathering."""
        left, top, right, bottom = self.box
        return max(right - left, bottom - top, 1.0)

    def describe(self) -> str:
        left, top, right, bottom = (round(v) for v in self.box)
        return f"{right - left}x{bottom - top} at ({left},{top})"


def _landmarks(result: Any, width: int, height: int) -> list[Points]:
    faces = getattr(result, "multi_face_landmarks", None) or []
    scale = np.array([width, height], dtype=np.float32)
    return [np.array([(p.x, p.y) for p in face.landmark], dtype=np.float32) * scale for face in faces]


class FaceFinder:
    """Face Mesh over the whole image, then over crops around faces that only the full-range detector sees.

    Face Mesh's own detector is the short-range model, which looks at the image shrunk to 128x128 and so misses
    small faces (a row of five people in a wide photo); the full-range detector finds those, and a second Face
    Mesh run on a crop around each of them places the landmarks. MediaPipe graphs take one stream of packets, so
    calls are serialised.
    """

    def __init__(self) -> None:
        self._mesh: Any = None
        self._crop_mesh: Any = None
        self._detector: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._detector is not None:
            return
        with self._lock:
            if self._detector is not None:
                return
            from mediapipe.python.solutions.face_detection import FaceDetection
            from mediapipe.python.solutions.face_mesh import FaceMesh

            self._mesh = FaceMesh(static_image_mode=True, max_num_faces=MAX_FACES, refine_landmarks=True)
            self._crop_mesh = FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)
            self._detector = FaceDetection(model_selection=1, min_detection_confidence=0.5)

    def find(self, rgb: NDArray[np.uint8]) -> list[Face]:
        """Every face found, ordered left to right (then top to bottom)."""
        self.load()
        height, width = rgb.shape[:2]
        image = np.ascontiguousarray(rgb)
        with self._lock:
            faces = [Face(points) for points in _landmarks(self._mesh.process(image), width, height)]
            detections = getattr(self._detector.process(image), "detections", None) or []
            for detection in detections:
                box = detection.location_data.relative_bounding_box
                left, top = box.xmin * width, box.ymin * height
                right, bottom = left + box.width * width, top + box.height * height
                cx, cy = (left + right) / 2, (top + bottom) / 2
                if any(f.box[0] <= cx <= f.box[2] and f.box[1] <= cy <= f.box[3] for f in faces):
                    continue
                found = self._find_in_crop(image, (left, top, right, bottom))
                if found is not None:
                    faces.append(found)
        return sorted(faces, key=lambda f: (round(f.box[0]), round(f.box[1])))

    def _find_in_crop(self, image: NDArray[np.uint8], box: tuple[float, float, float, float]) -> Face | None:
        """Face Mesh on a square around a detected face, enlarged to at least 256 px; None when it sees none."""
        import cv2

        height, width = image.shape[:2]
        left, top, right, bottom = box
        half = max(right - left, bottom - top) * 1.2
        cx, cy = (left + right) / 2, (top + bottom) / 2
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(width, int(cx + half) + 1), min(height, int(cy + half) + 1)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        crop = image[y0:y1, x0:x1]
        scale = max(1.0, 256 / max(crop.shape[:2]))
        if scale > 1.0:
            crop = np.asarray(cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC), np.uint8)
        found = _landmarks(self._crop_mesh.process(np.ascontiguousarray(crop)), crop.shape[1], crop.shape[0])
        if not found:
            return None
        points = (found[0] / scale + np.array([x0, y0], dtype=np.float32)).astype(np.float32)
        px, py = points.mean(axis=0)
        return Face(points) if left <= px <= right and top <= py <= bottom else None


def delaunay(points: Points) -> NDArray[np.int32]:
    """Triangles (index triples) of the Delaunay triangulation of `points`.

    Unlike the Face Mesh tessellation, which leaves the eyes and the mouth open, Delaunay covers the whole
    convex hull, so the warp has no holes.
    """
    import cv2

    low = np.floor(points.min(axis=0)) - 2
    high = np.ceil(points.max(axis=0)) + 2
    subdiv = cv2.Subdiv2D((int(low[0]), int(low[1]), int(high[0] - low[0]) + 1, int(high[1] - low[1]) + 1))
    index: dict[tuple[float, float], int] = {}
    for i, (x, y) in enumerate(points):
        vertex = subdiv.insert((float(x), float(y)))
        vx, vy = subdiv.getVertex(vertex)[0]
        index.setdefault((vx, vy), i)  # a repeated landmark maps to its first index
    triangles = [
        (index[(t[0], t[1])], index[(t[2], t[3])], index[(t[4], t[5])])
        for t in np.asarray(subdiv.getTriangleList(), dtype=np.float32).tolist()
        if (t[0], t[1]) in index and (t[2], t[3]) in index and (t[4], t[5]) in index
    ]
    return np.array(triangles, dtype=np.int32).reshape(-1, 3)


def warp_face(
    source: NDArray[np.uint8], src_points: Points, dst_points: Points, region: tuple[int, int, int, int]
) -> NDArray[np.uint8]:
    """The source face warped piecewise-affinely onto `dst_points`, as an image of `region` (x0, y0, x1, y1).

    Each target pixel is labelled with the triangle it lies in, and one `cv2.remap` samples the source through
    that triangle's affine map: one resampling of the whole face instead of one warp per triangle.
    """
    import cv2

    x0, y0, x1, y1 = region
    local = (dst_points - np.array([x0, y0], dtype=np.float32)).astype(np.float64)
    triangles = delaunay(dst_points)
    corners = local[triangles]  # (T, 3, 2)
    edges = corners[:, 1:] - corners[:, :1]
    area = edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0]
    keep = np.abs(area) > 1e-3  # a flat target triangle covers no pixel and has no affine map
    triangles, corners = triangles[keep], corners[keep]
    # The affine map of each triangle, target -> source: solve [x y 1] @ M = [u v] for its three corners.
    lhs = np.concatenate([corners, np.ones((len(corners), 3, 1))], axis=2)
    affines = np.linalg.solve(lhs, src_points.astype(np.float64)[triangles])  # (T, 3, 2)

    labels = np.full((y1 - y0, x1 - x0), -1, dtype=np.int32)
    for number, triangle in enumerate(np.round(corners * 16).astype(np.int32)):
        cv2.fillConvexPoly(labels, triangle, (number,), lineType=cv2.LINE_8, shift=4)
    ys, xs = np.nonzero(labels >= 0)
    maps = np.full((2, *labels.shape), -1.0, dtype=np.float32)
    chosen = affines[labels[ys, xs]]
    for axis in (0, 1):
        maps[axis, ys, xs] = chosen[:, 0, axis] * xs + chosen[:, 1, axis] * ys + chosen[:, 2, axis]
    warped = cv2.remap(source, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(warped, dtype=np.uint8)


def match_colours(face: NDArray[np.uint8], target: NDArray[np.uint8], mask: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """`face` with each LAB channel's mean and spread inside `mask` moved to `target`'s.

    Poisson blending alone pulls the face's colours towards the target's only near the seam; matching the
    statistics first keeps a pale face from turning blotchy on a tanned head. The spread ratio is bounded so a
    flat, shadowed target cannot blow up the face's contrast.
    """
    import cv2

    inside = mask > 0
    src = cv2.cvtColor(face, cv2.COLOR_RGB2LAB).astype(np.float32)
    dst = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    src_mean, src_std = src[inside].mean(axis=0), src[inside].std(axis=0)
    dst_mean, dst_std = dst[inside].mean(axis=0), dst[inside].std(axis=0)
    ratio = np.clip(dst_std / np.maximum(src_std, 1.0), 0.5, 2.0)
    moved = np.clip((src - src_mean) * ratio + dst_mean, 0, 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(moved, cv2.COLOR_LAB2RGB), dtype=np.uint8)


def hull_mask(shape: tuple[int, int], points: Points) -> NDArray[np.uint8]:
    """A 0/255 mask of the convex hull of `points` (pixel coordinates) in an image of `shape` (height, width)."""
    import cv2

    mask = np.zeros(shape, dtype=np.uint8)
    hull = cv2.convexHull(np.round(points * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, (255,), lineType=cv2.LINE_AA, shift=4)
    return np.where(mask >= 128, 255, 0).astype(np.uint8)


def swap_face(source: NDArray[np.uint8], swap: Face, target: NDArray[np.uint8], onto: Face) -> NDArray[np.uint8]:
    """`target` with the face `onto` replaced by the face `swap` of `source`; pixels away from it are untouched."""
    import cv2

    count = min(len(swap.points), len(onto.points))
    src_points, dst_points = swap.points[:count], onto.points[:count]
    height, width = target.shape[:2]
    margin = int(onto.size * 0.15) + 4
    left, top, right, bottom = onto.box
    region = (
        max(0, int(left) - margin),
        max(0, int(top) - margin),
        min(width, int(right) + margin + 1),
        min(height, int(bottom) + margin + 1),
    )
    x0, y0, x1, y1 = region
    area = target[y0:y1, x0:x1]
    if area.shape[0] < 8 or area.shape[1] < 8:
        return target
    warped = warp_face(source, src_points, dst_points, region)
    hull = hull_mask((area.shape[0], area.shape[1]), dst_points - np.array([x0, y0], dtype=np.float32))
    erode = max(1, round(onto.size * 0.03))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1))
    mask = np.asarray(cv2.erode(hull, kernel), dtype=np.uint8)
    mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = 0, 0, 0, 0  # seamlessClone fails on a mask at the edge
    if int(np.count_nonzero(mask)) < 16:
        return target
    corrected = match_colours(warped, area, mask)
    bx, by, bw, bh = cv2.boundingRect(mask)
    centre = (bx + bw // 2, by + bh // 2)
    try:  # on a copy: seamlessClone overwrites the mask array it is given
        cloned = cv2.seamlessClone(corrected, np.ascontiguousarray(area), mask.copy(), centre, cv2.NORMAL_CLONE)
    except cv2.error:  # a degenerate mask: the colour-matched face, feathered in below, still reads as a swap
        cloned = corrected
    # Feather inside the mask so the last few pixels fade from the clone to the untouched target.
    inner = cv2.erode(mask, kernel)
    alpha = cv2.GaussianBlur(inner.astype(np.float32) / 255, (0, 0), sigmaX=erode)[..., None]
    blended = area.astype(np.float32) * (1 - alpha) + np.asarray(cloned, dtype=np.float32) * alpha
    result = target.copy()
    result[y0:y1, x0:x1] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return result


FACE_SWAP_SERVED_BY = ServedBy(
    "MediaPipe Face Mesh landmarks, piecewise-affine warp and Poisson blending (OpenCV)",
    limits=(
        "a landmark warp with Poisson blending, not a face-swap network: the target's expression, pose and jaw "
        "stay, and identity comes only from the swap face's pixels",
    ),
)
"""What runs face-swap here, said before anyone pays: a geometric swap, since no swap network ships in a wheel."""


def face_index_pairs(inputs: TaskInput) -> tuple[list[int], list[int]]:
    """`swap_faces_index` and `target_faces_index` parsed, checked to pair up one to one."""
    swap_indexes = parse_indexes(field_value(inputs, "swap_faces_index", "0"), "swap_faces_index")
    target_indexes = parse_indexes(field_value(inputs, "target_faces_index", "0"), "target_faces_index")
    if len(swap_indexes) != len(target_indexes):
        raise InputRejected(
            f"swap_faces_index: lists {len(swap_indexes)} faces but target_faces_index lists "
            f"{len(target_indexes)}; they pair up one to one"
        )
    return swap_indexes, target_indexes


def parse_indexes(value: Any, field: str) -> list[int]:
    """`"0,2"` -> [0, 2]; PiAPI sends face indexes as a comma-separated string (an int is accepted too)."""
    text = str(value).strip() if value is not None else "0"
    parts = [part.strip() for part in text.split(",")]
    if not text or not all(part.isdigit() for part in parts):
        raise InputRejected(f'{field}: {value!r} is not a comma-separated list of face indexes such as "0" or "1,0"')
    return [int(part) for part in parts]


def check_indexes(indexes: list[int], faces: list[Face], field: str, image_field: str) -> None:
    for index in indexes:
        if index >= len(faces):
            found = f"{len(faces)} face" + ("" if len(faces) == 1 else "s")
            raise InputRejected(
                f"{field}: face {index} was asked for but {image_field} has {found} "
                f"(indexes 0-{len(faces) - 1}, numbered left to right)"
            )


class FaceSwapBackend(Backend):
    """`face-swap` (the largest face onto the largest face) and `multi-face-swap` (faces paired by index)."""

    name = "mediapipe-face-swap"
    entries = ((MODEL, "face-swap"), (MODEL, "multi-face-swap"))

    def __init__(self) -> None:
        self._finder = FaceFinder()

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        return FACE_SWAP_SERVED_BY

    def availability(self) -> Availability:
        return mediapipe_availability(FACE_MESH_FILES, "Face Mesh")

    def load(self) -> None:
        self._finder.load()

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        self.load()
        return run_face_swap(entry, inputs, ctx, self._finder, swap_face)


SwapPair = Callable[[NDArray[np.uint8], Face, NDArray[np.uint8], Face], NDArray[np.uint8]]
"""Put one face of the swap image onto one face of the (partly swapped) target: (source, swap face, target, onto)."""


def run_face_swap(
    entry: CatalogEntry, inputs: TaskInput, ctx: RunContext, finder: FaceFinder, swap_pair: SwapPair, how: str = ""
) -> dict[str, Any]:
    """A face-swap or multi-face-swap task around `swap_pair`: load both images, find and number the faces, pair
    them (the largest of each, or by index), swap pair by pair, and store the PNG. Shared by the classical warp
    and the swap network, which differ only in `swap_pair`; `how` is added to each swap's log line."""
    multi = entry.task_type == "multi-face-swap"
    if multi:
        swap_indexes, target_indexes = face_index_pairs(inputs)
        repeated = sorted({i for i in target_indexes if target_indexes.count(i) > 1})
        if repeated:
            raise InputRejected(f"target_faces_index: face {repeated[0]} is listed more than once")
    target_image = load_image(ctx, inputs, "target_image")
    swap_image = load_image(ctx, inputs, "swap_image")
    target = np.asarray(target_image.convert("RGB"), dtype=np.uint8)
    source = np.asarray(swap_image.convert("RGB"), dtype=np.uint8)

    found: dict[str, list[Face]] = {}
    for field, pixels in (("swap_image", source), ("target_image", target)):
        if ctx.cancelled():
            raise cancelled_error()
        faces = found[field] = finder.find(pixels)
        listed = "; ".join(f"{i}: {face.describe()}" for i, face in enumerate(faces))
        ctx.log(f"{field}: {len(faces)} face(s) found, left to right" + (f" ({listed})" if faces else ""))
        if not faces:
            raise InputRejected(
                f"{field}: no face was found; faces should be turned towards the camera and at least about "
                "a tenth of the picture's width"
            )
    swaps, targets = found["swap_image"], found["target_image"]
    if multi:
        check_indexes(swap_indexes, swaps, "swap_faces_index", "swap_image")
        check_indexes(target_indexes, targets, "target_faces_index", "target_image")
        pairs = list(zip(swap_indexes, target_indexes, strict=True))
    else:
        pairs = [(_largest(swaps), _largest(targets))]
        if len(targets) > 1 or len(swaps) > 1:
            ctx.log("face-swap uses the largest face of each image; multi-face-swap chooses faces by index")
    ctx.progress(0.3)

    result = target
    for number, (swap_index, target_index) in enumerate(pairs, start=1):
        if ctx.cancelled():
            raise cancelled_error()
        result = swap_pair(source, swaps[swap_index], result, targets[target_index])
        ctx.log(f"swapped swap_image face {swap_index} onto target_image face {target_index}{how}")
        ctx.progress(0.3 + 0.6 * number / len(pairs))

    output = Image.fromarray(result)
    if has_alpha(target_image):
        output.putalpha(target_image.convert("RGBA").getchannel("A"))
    url = ctx.save_output(encode_png(output), ext="png", content_type="image/png")
    ctx.progress(1.0)
    ctx.log(f"done: {output.width}x{output.height} PNG")
    return {"image_url": url}


def _largest(faces: list[Face]) -> int:
    return max(range(len(faces)), key=lambda i: faces[i].size)
