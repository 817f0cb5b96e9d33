"""Which backends a worker knows: the built-in ones plus third-party plugins from the `genmill.backends` group.

The built-in backends are the model families' (`genmill.models`); this is the one place that constructs them, in
the order the worker tries them, and hands the families what they share (one `FluxShared`, one `VideoShared`,
the placement, the models folder), so that no family has to import another to be built.

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
from genmill.backends.diffusers_loading import Placement
from genmill.backends.openai_compat import OpenAICompatTarget
from genmill.backends.upstream import UpstreamBackend, parse_upstream_models
from genmill.catalog import build_catalog
from genmill.domain.catalog import Catalog
from genmill.models.audio.backends import audio_backends
from genmill.models.echo.backend import EchoBackend
from genmill.models.flux.backend import flux_backends
from genmill.models.flux.midjourney import midjourney_backends
from genmill.models.flux.shared import FluxShared
from genmill.models.llm.catalog import TASK_TYPE as CHAT_TASK_TYPE
from genmill.models.llm.chat import ChatBackend, OpenAICompatChat
from genmill.models.llm.config import parse_model_settings
from genmill.models.llm.image_catalog import FAMILY as IMAGE_FAMILY
from genmill.models.llm.image_catalog import IMAGE_TASK_TYPE
from genmill.models.llm.images import ImageBackend, ImageChat, OpenAICompatImages
from genmill.models.llm.local import TransformersChat
from genmill.models.toolkits.background import background_backends
from genmill.models.toolkits.face_swap_net import InswapperFaceSwapBackend
from genmill.models.toolkits.faces import FaceSwapBackend
from genmill.models.toolkits.realesrgan import DEFAULT_UPSCALE, GpuChoice, UpscaleChoice
from genmill.models.toolkits.segment_grounded import segment_backends
from genmill.models.toolkits.upscale import RealEsrganUpscaleBackend
from genmill.models.toolkits.video_background import VideoBackgroundRemoveBackend
from genmill.models.toolkits.video_face_swap import VideoFaceSwapBackend
from genmill.models.toolkits.video_upscale import VideoUpscaleBackend
from genmill.models.trellis.backend import trellis_backends
from genmill.models.tts.clone import tts_backends
from genmill.models.tts.f5_tts import f5_tts_backends
from genmill.models.video.hunyuan import hunyuan_backends
from genmill.models.video.pipeline import VideoShared
from genmill.models.video.services import UPSTREAM_ONLY, VIDEO_SERVICE_WEIGHTS, service_backends
from genmill.models.video.wan import CAMERA_REASON, wan_backends
from genmill.settings import Settings
from genmill.worker.backendset import StandIns

ENTRY_POINT_GROUP = "genmill.backends"

log = logging.getLogger("genmill.backends")

MODELS_DIR: Path = Settings.model_fields["models_dir"].default
"""The default of GENMILL_MODELS_DIR, read from the setting (`Settings.models_dir`) so that it is written once:
where the model backends' weights live, one folder per weight set, relative to the working directory like the
data folder (docs/weights.md). The functions below default to it for tools and tests; the server, `genmill
worker` and `genmill models` pass the configured folder (`configured_backends`)."""


def video_backends(models_dir: Path, *, placement: Placement | None = None) -> list[Backend]:
    """Every video backend whose weight folder exists under `models_dir`, sharing one lock, one placement and one
    set of loaded pipelines. Built here rather than in `genmill.models.video.pipeline`, which Wan and
    HunyuanVideo build on: the runner they share need not know them."""
    shared = VideoShared(placement=placement)
    return [
        *wan_backends(models_dir, shared=shared),
        *hunyuan_backends(models_dir, shared=shared),
        *service_backends(models_dir, shared=shared),
    ]


def model_backends(
    models_dir: Path = MODELS_DIR, placement: Placement | None = None, *, lyrics: OpenAICompatTarget | None = None
) -> list[Backend]:
    """Backends whose weights are folders under `models_dir`: only folders that exist become backends, so a
    server without weights does not list every model it could serve. `placement` is where and how the diffusers
    backends load (GENMILL_DEVICE, GENMILL_MEMORY_MODES); None: the first GPU, memory modes by card size.
    `lyrics` is the chat model that writes Udio's and Suno's lyrics (GENMILL_LYRICS_*), if any."""
    placement = placement or Placement()
    flux_shared = FluxShared(placement=placement)  # one FLUX.1-dev and one set of encoders for both
    return [
        *flux_backends(models_dir, shared=flux_shared),
        *midjourney_backends(models_dir, shared=flux_shared),
        *video_backends(models_dir, placement=placement),
        *audio_backends(models_dir, placement=placement, lyrics=lyrics),
        *f5_tts_backends(models_dir),
        *trellis_backends(models_dir),
    ]


TRELLIS_REASON = (
    "and Microsoft's TRELLIS code with its CUDA extensions (flash-attn or xformers, spconv, nvdiffrast, "
    "diff-gaussian-rasterization; a CUDA GPU is required), or forward it with GENMILL_UPSTREAM_MODELS=Qubico/trellis"
)
"""What TRELLIS needs besides its weights: it has no CPU path (genmill.models.trellis.backend says why)."""

_MJ_STAND_IN = "with GENMILL_STAND_INS=midjourney"

_WEIGHTS_NEEDED: dict[str, str] = {
    # `model/task_type` first, then `model`: the weight folders each entry's backend reads (docs/backends.md).
    "Qubico/flux1-dev": "flux1-dev/ (FLUX.1-dev, diffusers format)",
    "Qubico/flux1-schnell": "flux1-schnell/ (FLUX.1-schnell)",
    "Qubico/flux1-dev-advanced": "flux1-dev/, flux1-fill-dev/, flux1-kontext-dev/, flux1-redux-dev/ or "
    "flux1-dev-controlnet-<type>/, by task type",
    "Qubico/wanx/txt2video-1.3b": "wan2.1-t2v-1.3b/",
    "Qubico/wanx/txt2video-14b": "wan2.1-t2v-14b/",
    "Qubico/wanx/txt2video-14b-lora": "wan2.1-t2v-14b/ and wan-loras/",
    "Qubico/wanx/img2video-14b": "wan2.1-i2v-14b/",
    "Qubico/wanx/img2video-14b-lora": "wan2.1-i2v-14b/ and wan-loras/",
    "Qubico/wanx/img2video-14b-keyframe": "wan2.1-flf2v-14b/ (Wan first-last-frame)",
    "Qubico/wanx/wan22-txt2video-14b": "wan2.2-t2v-a14b/",
    "Qubico/wanx/wan22-img2video-14b": "wan2.2-i2v-a14b/",
    "Qubico/hug-video": "wan2.1-i2v-14b/ (a stand-in: Wan image-to-video, with GENMILL_STAND_INS=hug-wan21-i2v)",
    "Qubico/skyreels": "skyreels-v2-i2v/",
    "Qubico/hunyuan": "hunyuanvideo/ (and hunyuan-loras/ for txt2video-lora)",
    "Qubico/hunyuan/img2video-concat": "hunyuanvideo-i2v-concat/",
    "Qubico/hunyuan/img2video-replace": "hunyuanvideo-i2v-replace/",
    "Qubico/framepack": "framepack/ (HunyuanVideo FramePack)",
    "Qubico/ace-step": "ace-step/ (ACE-Step 1.5, diffusers AceStepPipeline format)",
    "Qubico/diffrhythm": "ace-step/ (ACE-Step stands in for DiffRhythm, with GENMILL_STAND_INS=ace-step)",
    "Qubico/mmaudio": "stable-audio-open/ (Stable Audio Open stands in for MMAudio, with "
    "GENMILL_STAND_INS=stable-audio-open)",
    "midjourney": f"flux1-dev/ (FLUX.1 stands in for Midjourney, {_MJ_STAND_IN})",
    "midjourney/blend": f"flux1-dev/ and flux1-redux-dev/ (FLUX.1 Redux stands in for the blend, {_MJ_STAND_IN})",
    "midjourney/inpaint": f"flux1-fill-dev/ (FLUX.1 Fill stands in for Midjourney, {_MJ_STAND_IN})",
    "midjourney/outpaint": f"flux1-fill-dev/ (FLUX.1 Fill stands in for Midjourney, {_MJ_STAND_IN})",
    "midjourney/pan": f"flux1-fill-dev/ (FLUX.1 Fill stands in for Midjourney, {_MJ_STAND_IN})",
    "midjourney/describe": f"blip-captioning/ (BLIP captions stand in for the describe, {_MJ_STAND_IN})",
    "music-u": "ace-step/ (ACE-Step stands in for Udio, with GENMILL_STAND_INS=ace-step)",
    "music-s": "ace-step/ (ACE-Step stands in for Suno, with GENMILL_STAND_INS=ace-step)",
    **VIDEO_SERVICE_WEIGHTS,
}
LYRICS_REASON = (
    "no backend: no lyrics model is configured; set GENMILL_LYRICS_BASE_URL and GENMILL_LYRICS_MODEL to an "
    "OpenAI-compatible chat model (a stand-in for the service's own lyrics model, with "
    "GENMILL_STAND_INS=lyrics-llm; docs/music-services.md)"
)


LLM_REASON = (
    "not served by workers: the OpenAI-compatible API (/v1/chat/completions, /v1/images/generations) answers it "
    "when GENMILL_LLM_MODELS configures it (docs/api.md)"
)


def why_not_served(model: str, task_type: str, models_dir: Path = MODELS_DIR) -> str:
    """Why no backend is listed for a catalog entry at all (when one is listed, its availability says why)."""
    if task_type in (CHAT_TASK_TYPE, IMAGE_TASK_TYPE):
        return LLM_REASON
    if model == "Qubico/trellis":
        checkpoint = "trellis-image-large/" if task_type == "image-to-3d" else "trellis-text-xlarge/"
        return f"no weights: put {checkpoint} under {models_dir}/ {TRELLIS_REASON} (docs/backends.md)"
    if model in ("music-u", "music-s") and task_type == "generate_lyrics":
        return LYRICS_REASON
    if (model, task_type) == ("Qubico/wanx", "img2video-14b-control-camera"):
        return CAMERA_REASON
    if f"{model}/{task_type}" in UPSTREAM_ONLY:
        return UPSTREAM_ONLY[f"{model}/{task_type}"]
    folder = _WEIGHTS_NEEDED.get(f"{model}/{task_type}") or _WEIGHTS_NEEDED.get(model)
    if folder:
        return f"no weights: put {folder} under {models_dir}/ and install genmill[diffusers] (docs/backends.md)"
    return "no backend for this entry is installed"


def builtin_backends(
    models_dir: Path = MODELS_DIR,
    placement: Placement | None = None,
    *,
    realesrgan_gpuid: GpuChoice = "auto",
    upscale: UpscaleChoice = DEFAULT_UPSCALE,
    lyrics: OpenAICompatTarget | None = None,
) -> list[Backend]:
    """Fresh instances of the backends that ship with genmill (each reports whether it can run here); the model
    backends read their weights under `models_dir` (GENMILL_MODELS_DIR) and load as `placement` says,
    Real-ESRGAN runs on `realesrgan_gpuid` (GENMILL_REALESRGAN_GPUID) with the networks `upscale` names
    (GENMILL_UPSCALE_MODEL, GENMILL_VIDEO_UPSCALE). Callers pass what they read from settings."""
    return [
        RealEsrganUpscaleBackend(upscale.model, gpuid=realesrgan_gpuid, models_dir=models_dir),
        *background_backends(models_dir),
        InswapperFaceSwapBackend(models_dir),  # before the classical warp: the swap network runs where it is installed
        FaceSwapBackend(),
        *segment_backends(models_dir),
        *tts_backends(models_dir),  # Dia voice cloning where its weights are, then Piper's fixed voice
        VideoUpscaleBackend(upscale.video, model=upscale.model, gpuid=realesrgan_gpuid),
        VideoFaceSwapBackend(),
        VideoBackgroundRemoveBackend(),
        EchoBackend(),
        *model_backends(models_dir, placement, lyrics=lyrics),
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


def discover_backends(
    models_dir: Path = MODELS_DIR,
    placement: Placement | None = None,
    *,
    realesrgan_gpuid: GpuChoice = "auto",
    upscale: UpscaleChoice = DEFAULT_UPSCALE,
    lyrics: OpenAICompatTarget | None = None,
) -> list[Backend]:
    """The built-in backends followed by every plugin backend; a plugin whose name is taken is skipped."""
    backends = builtin_backends(
        models_dir, placement, realesrgan_gpuid=realesrgan_gpuid, upscale=upscale, lyrics=lyrics
    )
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


def configured_backends(settings: Settings, catalog: Catalog, device: str | None = None) -> list[Backend]:
    """Every backend a worker process offers, built as the settings say (models folder, placement on `device` or
    the first of GENMILL_DEVICE, Real-ESRGAN's GPU and network), upstream providers last: the one place the
    server, `genmill worker` and `genmill models` build them, so the three never disagree."""
    local = discover_backends(
        settings.models_dir,
        settings.placement(device),
        realesrgan_gpuid=settings.realesrgan_gpuid,
        upscale=UpscaleChoice.from_settings(settings),
        lyrics=lyrics_target(settings),
    )
    return [*local, *upstream_backends(settings, catalog)]


def lyrics_target(settings: Settings) -> OpenAICompatTarget | None:
    """The chat model that writes Udio's and Suno's lyrics (GENMILL_LYRICS_BASE_URL, _MODEL, _API_KEY); None when
    neither address nor model is set. With one of them set, the lyrics backend is listed and says what is missing."""
    if not (settings.lyrics_base_url.strip() or settings.lyrics_model.strip()):
        return None
    return OpenAICompatTarget(settings.lyrics_base_url, settings.lyrics_model, settings.lyrics_api_key)


def chat_backends(settings: Settings, catalog: Catalog) -> tuple[list[ChatBackend], list[ImageBackend], dict[str, str]]:
    """The chat and image models of GENMILL_LLM_MODELS that can answer here, and why each other one cannot.

    What a name is comes from its catalog entry: an Images API model (`image_generation`), an image in chat
    (gpt-4o-image), or a chat model. A name with no such entry (not PiAPI's and not priced in GENMILL_LLM_PRICES)
    stops the server: it could not be billed. A backend that is unavailable, or a stand-in GENMILL_STAND_INS does
    not enable, is left out (its calls are refused before anyone pays) with its reason. Nothing is loaded or
    contacted."""
    chats: list[ChatBackend] = []
    images: list[ImageBackend] = []
    refused: dict[str, str] = {}
    policy: StandIns = settings.stand_in_policy()
    for name, item in parse_model_settings(settings.llm_models).items():
        entry = catalog.get(name, IMAGE_TASK_TYPE) or catalog.get(name, CHAT_TASK_TYPE)
        if entry is None:
            raise ValueError(f"GENMILL_LLM_MODELS: {name!r} has no price; add it to GENMILL_LLM_PRICES")
        backend: ChatBackend | ImageBackend
        if item.base_url is not None:
            target = OpenAICompatTarget(item.base_url, item.model or name, item.api_key)
            if entry.family == IMAGE_FAMILY:
                drawn = OpenAICompatImages(name, target, timeout=item.timeout, stand_in=item.stand_in)
                backend = drawn if entry.task_type == IMAGE_TASK_TYPE else ImageChat(name, drawn)
            else:
                backend = OpenAICompatChat(name, target, timeout=item.timeout, stand_in=item.stand_in)
        elif entry.family == IMAGE_FAMILY:
            refused[name] = f"{name} is an image model: give the base_url of a server of OpenAI's Images API"
            continue
        else:
            assert item.path is not None
            stand_in = True if item.stand_in is None else item.stand_in
            backend = TransformersChat(name, item.path, device=item.device, stand_in=stand_in)
        available = backend.availability()
        served = backend.served_by()
        if not available.ok:
            refused[name] = available.reason
        elif served.stand_in and not policy.allows("llm", entry):
            refused[name] = (
                f"{name} would be answered by {served.model}, another model: a stand-in, which GENMILL_STAND_INS "
                f"does not enable (add {name} or llm to it)"
            )
        elif isinstance(backend, ImageBackend):
            images.append(backend)
        else:
            chats.append(backend)
    return chats, images, refused
