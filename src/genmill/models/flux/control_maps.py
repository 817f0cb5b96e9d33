"""Control maps for the Flux ControlNets: what each `control_type` turns a `control_image` into.

- canny: Canny edges, white on black (numpy).
- depth: relative depth from a transformers depth estimator (the `depth-anything/` folder), near bright.
- soft_edge: a smoothed gradient magnitude (numpy), white on black with a soft falloff. Soft-edge ControlNets were
  trained on HED or PiDiNet maps; no package here ships those networks, so this classical map stands in for them.
- openpose: MediaPipe's pose landmarker, bundled in the `mediapipe` wheel (the legacy `solutions.pose` API, one
  person at most); its 33 landmarks become OpenPose's COCO-18 skeleton, drawn as OpenPose ControlNets were
  trained on: coloured sticks and keypoints on black.

torch and mediapipe are imported inside functions only, so this module loads with numpy and Pillow alone.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from genmill.backends.base import RunContext
from genmill.backends.toolkit import load_image
from genmill.errors import BackendError
from genmill.models.flux.tasks import fit_pixels

CONTROL_TYPES = ("canny", "depth", "soft_edge", "openpose")
"""Every `control_type` the catalog offers; each needs its own ControlNet folder."""

Gray = NDArray[np.float32]


def sobel(gray: Gray) -> tuple[Gray, Gray]:
    """Horizontal and vertical 3x3 Sobel gradients (rows grow downwards), edges replicated."""
    p = np.pad(gray, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return gx, gy


def canny_edges(image: Image.Image, low: float = 100.0, high: float = 200.0) -> Image.Image:
    """Canny edges (white on black), as the canny ControlNets were trained on: Gaussian blur, Sobel gradients
    (L1 magnitude, OpenCV's default, so the usual 100/200 thresholds mean the same), non-maximum suppression
    along the gradient, then hysteresis (weak edges kept where they touch strong ones). Pure numpy, so the
    diffusers extra needs no OpenCV."""
    gray = np.asarray(image.convert("L").filter(ImageFilter.GaussianBlur(1.4)), dtype=np.float32)
    gx, gy = sobel(gray)
    magnitude = np.abs(gx) + np.abs(gy)
    angle = np.rad2deg(np.arctan2(gy, gx)) % 180
    height, width = magnitude.shape
    padded = np.pad(magnitude, 1)

    def at(dy: int, dx: int) -> Any:
        return padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]

    # The two neighbours along the gradient direction for each quantised angle (rows grow downwards).
    directions = [((angle < 22.5) | (angle >= 157.5), (0, 1)), ((angle >= 22.5) & (angle < 67.5), (1, 1))]
    directions += [((angle >= 67.5) & (angle < 112.5), (1, 0)), ((angle >= 112.5) & (angle < 157.5), (1, -1))]
    peak = np.zeros_like(magnitude, dtype=bool)
    for where, (dy, dx) in directions:
        peak |= where & (magnitude >= at(dy, dx)) & (magnitude >= at(-dy, -dx))
    thin = np.where(peak, magnitude, 0)
    weak, edges = thin >= low, thin >= high
    for _ in range(max(height, width)):  # grow strong edges along weak ones until nothing changes
        grown = np.pad(edges, 1)
        near = np.zeros_like(edges)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near |= grown[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        near &= weak
        if (near == edges).all():
            break
        edges = near
    return Image.fromarray((edges * 255).astype(np.uint8), mode="L").convert("RGB")


SOFT_EDGE_FLOOR = 0.12
"""Gradients under this share of the image's strong edges fade to black (texture and JPEG noise)."""
SOFT_EDGE_GAMMA = 0.7
"""Below 1, so that mid-strength edges stay visible, as in HED's thick grey lines."""
SOFT_EDGE_MIN_CONTRAST = 32.0
"""The smallest gradient treated as a full-strength edge (a Sobel step of 8 grey levels), so a nearly flat image
stays dark instead of having its noise stretched to white."""


def soft_edges(image: Image.Image) -> Image.Image:
    """A soft-edge map from a smoothed gradient, standing in for HED/PiDiNet (whose networks are not shipped):
    grayscale, Gaussian blur (sigma grows with the image, so lines keep their share of its width), Sobel gradient
    magnitude, normalised to the strongest edges (the 99.5th percentile, never less than a quarter of the peak),
    then a smoothstep soft threshold and a gamma. White edges on black, a few pixels wide, fading out sideways."""
    gray = image.convert("L")
    sigma = max(1.0, max(gray.size) / 384)
    blurred = np.asarray(gray.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32)
    gx, gy = sobel(blurred)
    magnitude = np.hypot(gx, gy)
    scale = max(float(np.percentile(magnitude, 99.5)), 0.25 * float(magnitude.max()), SOFT_EDGE_MIN_CONTRAST)
    strength = np.clip((magnitude / scale - SOFT_EDGE_FLOOR) / (1 - SOFT_EDGE_FLOOR), 0, 1)
    soft = strength * strength * (3 - 2 * strength)  # smoothstep: no hard cut at the floor
    values = np.round(soft**SOFT_EDGE_GAMMA * 255).astype(np.uint8)
    return Image.fromarray(values, mode="L").convert("RGB")


def depth_map(estimator: tuple[Any, Any], image: Image.Image) -> Image.Image:
    """A depth ControlNet's input from a transformers depth estimator (Depth Anything): relative depth scaled to
    0-255, near bright, at the image's size."""
    import torch

    model, processor = estimator
    with torch.inference_mode():
        inputs = processor(images=image.convert("RGB"), return_tensors="pt").to(model.device)
        result = model(**inputs)
    depth = processor.post_process_depth_estimation(result, target_sizes=[(image.height, image.width)])[0]
    values = depth["predicted_depth"].float().cpu().numpy()
    span = float(values.max() - values.min())
    scaled = (values - values.min()) / span * 255 if span > 0 else np.zeros_like(values)
    return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")


# --- openpose ----------------------------------------------------------------------------------------------------

POSE_FILES = (
    ("pose_landmark", "pose_landmark_cpu.binarypb"),
    ("pose_landmark", "pose_landmark_full.tflite"),
    ("pose_detection", "pose_detection.tflite"),
)
"""The graph and models under mediapipe/modules that `Pose(model_complexity=1)` runs; the wheel ships them (the
lite and heavy landmark models are downloaded on first use, so they are not used)."""

COCO_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
"""OpenPose's COCO-18 keypoints, in its order."""

COCO_FROM_MEDIAPIPE: tuple[int | None, ...] = (0, None, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
"""The MediaPipe Pose landmark for each COCO-18 keypoint; the neck (None) is the midpoint of the shoulders."""

LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
"""OpenPose's 17 body limbs between COCO-18 keypoints, in its drawing order (limb i takes colour i)."""

POSE_COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
"""OpenPose's colour wheel: keypoint i and limb i are drawn in colour i."""

LIMB_SHADE = 0.6
"""Limbs are drawn at 60% of their colour (OpenPose's renderer blends them over black at 0.6), keypoints at full."""

MIN_VISIBILITY = 0.5
"""Landmarks MediaPipe rates less likely than this to be visible (hidden or outside the image) are not drawn."""

Keypoints = list[tuple[float, float] | None]
"""COCO-18 keypoints in pixels (x, y); None where the keypoint is not seen."""


def coco18(landmarks: Sequence[tuple[float, float, float]], width: int, height: int) -> Keypoints:
    """OpenPose's COCO-18 keypoints from MediaPipe's 33 pose landmarks, given as (x, y, visibility) with x and y
    normalised to the image. A landmark counts when its visibility reaches `MIN_VISIBILITY` and it lies inside
    the image; the neck needs both shoulders."""

    def point(index: int) -> tuple[float, float] | None:
        x, y, visibility = landmarks[index]
        if visibility < MIN_VISIBILITY or not (0 <= x <= 1 and 0 <= y <= 1):
            return None
        return x * width, y * height

    keypoints: Keypoints = [None if index is None else point(index) for index in COCO_FROM_MEDIAPIPE]
    right, left = keypoints[2], keypoints[5]
    if right is not None and left is not None:
        keypoints[1] = ((right[0] + left[0]) / 2, (right[1] + left[1]) / 2)
    return keypoints


def draw_pose(keypoints: Keypoints, size: tuple[int, int]) -> Image.Image:
    """The OpenPose skeleton on black at `size`: each limb whose two ends are seen as a filled ellipse (a stick) in
    its colour at `LIMB_SHADE`, then each seen keypoint as a disc in its colour on top. Stick half-width and disc
    radius are 4 px at 512 px (the annotators' working size), scaled with the image's longer side."""
    canvas = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    thickness = max(2.0, 4 * max(size) / 512)
    turns = np.linspace(0, 2 * math.pi, 36, endpoint=False)
    for number, (start, end) in enumerate(LIMBS):
        a, b = keypoints[start], keypoints[end]
        if a is None or b is None:
            continue
        (x0, y0), (x1, y1) = a, b
        half = math.hypot(x1 - x0, y1 - y0) / 2
        angle = math.atan2(y1 - y0, x1 - x0)
        along, across = half * np.cos(turns), thickness * np.sin(turns)
        xs = (x0 + x1) / 2 + along * math.cos(angle) - across * math.sin(angle)
        ys = (y0 + y1) / 2 + along * math.sin(angle) + across * math.cos(angle)
        shade = tuple(int(channel * LIMB_SHADE) for channel in POSE_COLOURS[number])
        draw.polygon([(float(x), float(y)) for x, y in zip(xs, ys, strict=True)], fill=shade)
    for number, keypoint in enumerate(keypoints):
        if keypoint is not None:
            x, y = keypoint
            draw.ellipse((x - thickness, y - thickness, x + thickness, y + thickness), fill=POSE_COLOURS[number])
    return canvas


class PoseFinder:
    """MediaPipe's legacy pose solution on still images, loaded on first use. It finds one person at most (the
    most prominent); MediaPipe graphs take one stream of packets, so calls are serialised."""

    def __init__(self) -> None:
        self._pose: Any = None
        self._lock = threading.Lock()

    def landmarks(self, image: Image.Image) -> list[tuple[float, float, float]] | None:
        """The 33 landmarks (x, y normalised, visibility) of the person found, or None when there is none."""
        with self._lock:
            if self._pose is None:
                from genmill.backends.toolkit import mediapipe_availability

                available = mediapipe_availability(POSE_FILES, "pose")
                if not available.ok:
                    raise BackendError(f"control_type: openpose maps need MediaPipe Pose: {available.reason}")
                from mediapipe.python.solutions.pose import Pose

                self._pose = Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False)
            result = self._pose.process(np.ascontiguousarray(np.asarray(image.convert("RGB"))))
        found = getattr(result, "pose_landmarks", None)
        if found is None:
            return None
        return [(float(p.x), float(p.y), float(p.visibility)) for p in found.landmark]


def openpose_map(finder: PoseFinder, image: Image.Image) -> tuple[Image.Image, int]:
    """The OpenPose map of the person in `image` at its size, and how many of the 18 keypoints were seen."""
    landmarks = finder.landmarks(image)
    keypoints = coco18(landmarks, image.width, image.height) if landmarks else []
    seen = sum(keypoint is not None for keypoint in keypoints)
    if not seen:
        raise BackendError("control_image: no person found for the openpose map (MediaPipe Pose)")
    return draw_pose(keypoints, image.size), seen


def control_map(
    setting: Any, where: str, ctx: RunContext, depth: tuple[Any, Any] | None, pose: PoseFinder | None = None
) -> Image.Image:
    """The control map for one `control_net_settings` entry, derived from its `control_image`."""
    try:
        source = load_image(ctx, setting, "control_image").convert("RGB")
        source = source.resize(fit_pixels(*source.size), Image.Resampling.LANCZOS)
        if setting.control_type == "canny":
            return canny_edges(source)
        if setting.control_type == "soft_edge":
            ctx.log(f"{where}: soft_edge map from a smoothed gradient, not HED/PiDiNet")
            return soft_edges(source)
        if setting.control_type == "openpose":
            found, seen = openpose_map(pose or PoseFinder(), source)
            ctx.log(f"{where}: openpose map from MediaPipe Pose (one person at most), {seen} of 18 keypoints seen")
            return found
    except BackendError as exc:
        raise BackendError(f"{where}.{exc.message}", raw_message=exc.raw_message) from exc
    if depth is None:
        raise BackendError(f"{where}.control_type: depth needs a depth estimator (a depth-anything/ folder)")
    return depth_map(depth, source)
