"""Upscale quality measured on real photographs, the way super-resolution is compared: a photo shrunk 2x or 4x
with bicubic, enlarged back, compared with the original by PSNR and SSIM.

The photographs ship inside installed wheels (scikit-image's astronaut and coffee, matplotlib's Grace Hopper
portrait); centre crops keep the CPU time of Real-ESRGAN x4plus to seconds. What is asserted is what was
measured (docs/backends.md has the full table): the default "photo" mode beats bicubic and Lanczos on both
figures, while the raw GAN output ("photo-sharp") loses PSNR to bicubic, the reason "photo" is the default.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from tests.backends.memory import image_ref, ready

from genmill.backends.base import Backend
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.models.toolkits.upscale import RealEsrganUpscaleBackend
from genmill.testing import MemoryRunContext

pytestmark = pytest.mark.backends

metrics = pytest.importorskip("skimage.metrics")


@pytest.fixture(scope="module")
def upscaler() -> Iterator[Backend]:
    yield from ready(RealEsrganUpscaleBackend())


def photographs() -> dict[str, NDArray[np.uint8]]:
    data = pytest.importorskip("skimage.data")
    matplotlib = pytest.importorskip("matplotlib")
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "grace_hopper": np.asarray(Image.open(hopper).convert("RGB")),
    }


def centre(pixels: NDArray[np.uint8], side: int) -> NDArray[np.uint8]:
    height, width = pixels.shape[:2]
    top, left = (height - side) // 2, (width - side) // 2
    return pixels[top : top + side, left : left + side]


def upscale(backend: Backend, small: Image.Image, scale: int, model: str) -> NDArray[np.uint8]:
    ctx = MemoryRunContext()
    entry = CatalogEntry("Qubico/image-toolkit", "upscale", TaskInput, price=lambda _: 0, family="image-toolkit")
    inputs = SimpleNamespace(image=image_ref(small), scale=scale, upscale_model=model)
    output = backend.run(entry, inputs, ctx)  # type: ignore[arg-type]
    return np.asarray(Image.open(io.BytesIO(ctx.output(output["image_url"]))).convert("RGB"))


def scores(original: NDArray[np.uint8], result: NDArray[np.uint8]) -> tuple[float, float]:
    psnr = float(metrics.peak_signal_noise_ratio(original, result))
    ssim = float(metrics.structural_similarity(original, result, channel_axis=2))
    return psnr, ssim


@pytest.mark.parametrize(("scale", "side"), [(2, 96), (4, 128)])
def test_photo_mode_beats_bicubic_and_lanczos_on_real_photographs(upscaler: Backend, scale: int, side: int) -> None:
    for name, pixels in photographs().items():
        original = centre(pixels, side)
        small = Image.fromarray(original).resize((side // scale, side // scale), Image.Resampling.BICUBIC)
        bicubic = scores(original, np.asarray(small.resize((side, side), Image.Resampling.BICUBIC)))
        lanczos = scores(original, np.asarray(small.resize((side, side), Image.Resampling.LANCZOS)))
        photo = scores(original, upscale(upscaler, small, scale, "photo"))
        print(f"\n{name} x{scale}: bicubic {bicubic}, lanczos {lanczos}, photo {photo}")
        assert photo[0] > max(bicubic[0], lanczos[0]), (name, "PSNR")
        assert photo[1] > max(bicubic[1], lanczos[1]), (name, "SSIM")


def test_raw_gan_output_loses_psnr_to_bicubic(upscaler: Backend) -> None:
    """Why "photo" corrects the network: its raw output invents texture that is not the photograph's."""
    original = centre(photographs()["astronaut"], 128)
    small = Image.fromarray(original).resize((32, 32), Image.Resampling.BICUBIC)
    bicubic = scores(original, np.asarray(small.resize((128, 128), Image.Resampling.BICUBIC)))
    sharp = scores(original, upscale(upscaler, small, 4, "photo-sharp"))
    print(f"\nastronaut x4: bicubic {bicubic}, photo-sharp {sharp}")
    assert sharp[0] < bicubic[0]
