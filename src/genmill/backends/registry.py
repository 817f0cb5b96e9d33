"""Which backends a worker knows: the built-in ones plus third-party plugins from the `genmill.backends` group.

A plugin package declares, in its pyproject.toml,

    [project.entry-points."genmill.backends"]
    my-model = "my_package.backend:make_backend"

where `make_backend` is a zero-argument callable returning a `Backend`. Building the list never loads a model
or imports a heavy library; the worker asks each backend's `availability()` afterwards. A broken plugin is logged
and skipped so that one bad package cannot stop the server.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path

from genmill.backends.base import Backend
from genmill.backends.echo import EchoBackend
from genmill.backends.faces import FaceSwapBackend
from genmill.backends.flux import flux_backends
from genmill.backends.image_toolkit import RealEsrganUpscaleBackend, SelfieBackgroundRemoveBackend
from genmill.backends.segment import SegmentBackend
from genmill.backends.tts_piper import PiperTtsBackend
from genmill.backends.upstream import UpstreamBackend, parse_upstream_models
from genmill.backends.video_toolkit import VideoBackgroundRemoveBackend, VideoFaceSwapBackend, VideoUpscaleBackend
from genmill.catalog import build_catalog
from genmill.domain.catalog import Catalog
from genmill.settings import Settings

ENTRY_POINT_GROUP = "genmill.backends"

log = logging.getLogger("genmill.backends")

MODELS_DIR = Path("genmill-models")
"""Where the weights of the model backends live (one diffusers-format folder per model), relative to the
working directory like the data folder; see docs/backends.md for the layout."""


def model_backends(models_dir: Path = MODELS_DIR) -> list[Backend]:
    """Backends whose weights are folders under `models_dir`: only folders that exist become backends, so a
    server without weights does not list every model it could serve."""
    return flux_backends(models_dir)


def builtin_backends() -> list[Backend]:
    """Fresh instances of the backends that ship with genmill (each reports whether it can run here)."""
    return [
        RealEsrganUpscaleBackend(),
        SelfieBackgroundRemoveBackend(),
        FaceSwapBackend(),
        SegmentBackend(),
        PiperTtsBackend(),
        VideoUpscaleBackend(),
        VideoFaceSwapBackend(),
        VideoBackgroundRemoveBackend(),
        EchoBackend(),
        *model_backends(),
    ]


def upstream_backends(settings: Settings, catalog: Catalog | None = None) -> list[Backend]:
    """The backend forwarding `GENMILL_UPSTREAM_MODELS` to `GENMILL_UPSTREAM_URL`, if any upstream setting is set.

    Built from settings (unlike the built-ins) because it needs the operator's URL and key. Put it after the
    local backends: the first available backend of an entry runs it, so a model this machine can run itself is
    never forwarded. With none of the three settings set it returns nothing, so `genmill models` does not list
    an upstream nobody configured; with some set, the backend's availability names what is missing.
    """
    if not (settings.upstream_url or settings.upstream_api_key or settings.upstream_models):
        return []
    catalog = catalog if catalog is not None else build_catalog(echo_price_credits=settings.echo_price_credits)
    entries, unknown = parse_upstream_models(settings.upstream_models, catalog)
    if unknown:
        log.error("GENMILL_UPSTREAM_MODELS: no catalog entry for %s; ignored", ", ".join(unknown))
    return [
        UpstreamBackend(
            base_url=settings.upstream_url,
            api_key=settings.upstream_api_key,
            entries=entries,
            allow_private=settings.allow_private_urls,
            local_url=settings.base_url(),
            max_output_bytes=max(settings.max_input_bytes, 512 * 1024 * 1024),
            unknown_models=unknown,
        )
    ]


def discover_backends() -> list[Backend]:
    """The built-in backends followed by every plugin backend; a plugin whose name is taken is skipped."""
    backends = builtin_backends()
    names = {backend.name for backend in backends}
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        try:
            factory = point.load()
            backend = factory()
        except Exception:
            log.exception("backend plugin %r (%s) failed to load; skipped", point.name, point.value)
            continue
        if not isinstance(backend, Backend):
            log.error("backend plugin %r returned %r, not a Backend; skipped", point.name, type(backend).__name__)
            continue
        if not backend.name or backend.name in names:
            log.error("backend plugin %r has a missing or duplicate name %r; skipped", point.name, backend.name)
            continue
        names.add(backend.name)
        backends.append(backend)
    return backends
