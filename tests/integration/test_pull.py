"""`genmill models pull` end to end: the real command in a subprocess, the real huggingface_hub client, and a
loopback Hub (tests/hub_server.py) serving tiny repositories under the repository ids of genmill's source table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.hub_server import Hub, serve_hub

from genmill.weights.sources import FRAMEPACK_MODEL_INDEX

SRC = Path(__file__).resolve().parents[2] / "src"
MUSICGEN = "facebook/musicgen-small"
FLUX_DEV = "black-forest-labs/FLUX.1-dev"


@pytest.fixture
def hub() -> Iterator[Hub]:
    with serve_hub(Hub()) as running:
        yield running


def genmill(*args: str, hub: Hub, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m genmill.cli ARGS` against the loopback Hub, online, with its own HF_HOME and no token."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GENMILL_", "HUGGING"))}
    environ.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(home / "hf-home"),
        PYTHONPATH=os.pathsep.join([str(SRC), environ.get("PYTHONPATH", "")]),
        NO_PROXY="127.0.0.1",
        **(env or {}),
    )
    return subprocess.run(
        [sys.executable, "-m", "genmill.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=home,
        timeout=120,
    )


def musicgen_repo(hub: Hub, tmp_path: Path) -> bytes:
    """A MusicGen-shaped repository with a weights file and a legacy `pytorch_model.bin` genmill must not fetch.

    The weights are larger than huggingface_hub's 10 MiB read chunk so that a cut after the first chunk leaves
    bytes on disk for the client to resume from."""
    weights = os.urandom(12 * 1024 * 1024)
    folder = tmp_path / "musicgen-src"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "musicgen"}')
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "pytorch_model.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    (folder / "README.md").write_text("tiny")
    hub.add_folder(MUSICGEN, folder)
    return weights


def test_pull_fetches_only_the_allowed_files_and_resumes_a_cut_transfer(hub: Hub, tmp_path: Path) -> None:
    weights = musicgen_repo(hub, tmp_path)
    cut = 10 * 1024 * 1024 + 17
    hub.cuts[(MUSICGEN, "model.safetensors")] = cut
    models = tmp_path / "models"

    # TQDM_POSITION=-1 makes huggingface_hub draw its progress bars without a terminal, as it does in one.
    done = genmill(
        "models",
        "pull",
        "musicgen",
        "--models-dir",
        str(models),
        hub=hub,
        home=tmp_path,
        env={"TQDM_POSITION": "-1"},
    )

    assert done.returncode == 0, done.stderr
    assert "12.6M/12.6M" in done.stderr  # the progress bar of model.safetensors
    assert "HTTP Request" not in done.stderr
    assert (models / "musicgen" / "model.safetensors").read_bytes() == weights
    assert (models / "musicgen" / "config.json").is_file()
    assert not (models / "musicgen" / "pytorch_model.bin").exists()
    assert not (models / ".pulling").exists()
    assert not [s for s in hub.seen if s.path.endswith(("pytorch_model.bin", "README.md"))]
    gets = hub.requested(MUSICGEN, "model.safetensors")
    # The client writes whole 10 MiB read chunks, so it resumes after the last one it received before the cut.
    assert [g.range for g in gets] == [None, f"bytes={10 * 1024 * 1024}-"]

    # A second pull finds every file recorded as downloaded at the same commit and fetches nothing.
    before = len(hub.seen)
    again = genmill("models", "pull", "musicgen", "--models-dir", str(models), hub=hub, home=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not [s for s in hub.seen[before:] if "/resolve/" in s.path]


def test_a_failed_pull_keeps_its_files_out_of_sight_and_the_next_run_continues(hub: Hub, tmp_path: Path) -> None:
    weights = musicgen_repo(hub, tmp_path)
    hub.repos[MUSICGEN]["tokenizer.json"] = b"{}"
    hub.broken.add((MUSICGEN, "model.safetensors"))  # fetched after config.json, before tokenizer.json
    models = tmp_path / "models"

    failed = genmill("models", "pull", "musicgen", "--models-dir", str(models), hub=hub, home=tmp_path)

    assert failed.returncode == 1
    assert (
        "facebook/musicgen-small/model.safetensors" in failed.stderr and "run the same command again" in failed.stderr
    )
    assert not (models / "musicgen").exists()  # nothing the backends would take for weights
    assert (models / ".pulling" / "musicgen" / "config.json").is_file()

    hub.broken.clear()
    before = len(hub.seen)
    done = genmill("models", "pull", "musicgen", "--models-dir", str(models), hub=hub, home=tmp_path)

    assert done.returncode == 0, done.stderr
    assert (models / "musicgen" / "model.safetensors").read_bytes() == weights
    fetched = {s.path.rsplit("/", 1)[-1] for s in hub.seen[before:] if s.method == "GET" and "/resolve/" in s.path}
    assert fetched == {"model.safetensors", "tokenizer.json"}  # config.json was kept from the failed run
    assert not (models / ".pulling").exists()


def test_a_gated_repository_names_its_licence_page_and_the_token(hub: Hub, tmp_path: Path) -> None:
    folder = tmp_path / "flux-src"
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    (folder / "transformer" / "config.json").write_text("{}")
    hub.add_folder(FLUX_DEV, folder)
    hub.gated[FLUX_DEV] = "hf_accepted"
    models = tmp_path / "models"

    refused = genmill("models", "pull", "Qubico/flux1-dev", "--models-dir", str(models), hub=hub, home=tmp_path)

    assert refused.returncode == 1
    assert "https://huggingface.co/black-forest-labs/FLUX.1-dev" in refused.stderr
    assert "--token" in refused.stderr and "HF_TOKEN" in refused.stderr
    assert not (models / "flux1-dev").exists() and not (models / ".pulling").exists()
    assert not [s for s in hub.seen if "/resolve/" in s.path]

    accepted = genmill(
        "models", "pull", "flux1-dev", "--token", "hf_accepted", "--models-dir", str(models), hub=hub, home=tmp_path
    )
    assert accepted.returncode == 0, accepted.stderr
    assert (models / "flux1-dev" / "transformer" / "config.json").is_file()


def test_framepack_is_assembled_from_three_repositories(hub: Hub, tmp_path: Path) -> None:
    files = {
        "lllyasviel/FramePackI2V_HY": ["config.json", "diffusion_pytorch_model.safetensors", "README.md"],
        "hunyuanvideo-community/HunyuanVideo": [
            "model_index.json",
            "transformer/config.json",
            "vae/config.json",
            "text_encoder/config.json",
            "tokenizer/tokenizer.json",
            "scheduler/scheduler_config.json",
        ],
        "lllyasviel/flux_redux_bfl": [
            "image_encoder/config.json",
            "feature_extractor/preprocessor_config.json",
            "x.bin",
        ],
    }
    for repo, names in files.items():
        hub.repos[repo] = {name: f"{repo}/{name}".encode() for name in names}
    models = tmp_path / "models"

    done = genmill("models", "pull", "Qubico/framepack", "--models-dir", str(models), hub=hub, home=tmp_path)

    assert done.returncode == 0, done.stderr
    framepack = models / "framepack"
    assert (framepack / "transformer" / "config.json").read_bytes() == b"lllyasviel/FramePackI2V_HY/config.json"
    assert (framepack / "vae" / "config.json").is_file() and (framepack / "image_encoder" / "config.json").is_file()
    assert json.loads((framepack / "model_index.json").read_text()) == FRAMEPACK_MODEL_INDEX
    fetched = {s.path for s in hub.seen if s.method == "GET" and "/resolve/" in s.path}
    assert not [p for p in fetched if p.endswith(("README.md", "x.bin", "HunyuanVideo/model_index.json"))]
    assert not [p for p in fetched if "HunyuanVideo/resolve" in p and "/transformer/" in p]


def test_dry_run_and_bad_targets_need_no_network(hub: Hub, tmp_path: Path) -> None:
    dry = genmill("models", "pull", "flux", "Qubico/wanx/txt2video-14b", "--dry-run", hub=hub, home=tmp_path)
    assert dry.returncode == 0, dry.stderr
    for expected in (
        "black-forest-labs/FLUX.1-dev",
        "transformer/*",
        "Wan-AI/Wan2.1-T2V-14B-Diffusers",
        "https://huggingface.co/black-forest-labs/FLUX.1-Fill-dev",
        "flux1-dev-controlnet-openpose",
    ):
        assert expected in dry.stderr
    assert "flux1-dev.safetensors" not in dry.stderr
    bad = genmill("models", "pull", "Qubico/no-such-model", hub=hub, home=tmp_path)
    assert bad.returncode == 2 and "no-such-model" in bad.stderr
    assert hub.seen == []


def test_genmill_models_reads_GENMILL_MODELS_DIR(hub: Hub, tmp_path: Path) -> None:
    listing = genmill("models", hub=hub, home=tmp_path, env={"GENMILL_MODELS_DIR": str(tmp_path / "weights")})
    assert listing.returncode == 0, listing.stderr
    (line,) = [line for line in listing.stdout.splitlines() if "Qubico/flux1-schnell  txt2img " in line + " "]
    assert f"under {tmp_path / 'weights'}/" in line
    assert "genmill models pull Qubico/flux1-schnell fetches black-forest-labs/FLUX.1-schnell, ~34 GB" in line


@pytest.mark.backends
def test_a_pulled_tiny_flux_model_is_served_by_the_flux_backend(hub: Hub, tmp_path: Path) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from tests.backends.test_flux import tiny_text_parts, tiny_transformer, tiny_vae

    from genmill.models.flux.backend import FluxBackend
    from genmill.models.flux.catalog import DEV
    from genmill.models.flux.shared import FluxShared

    source = tmp_path / "flux-src"
    FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(),
        transformer=tiny_transformer(guidance=True),
        **tiny_text_parts(),
    ).save_pretrained(source)
    (source / "flux1-dev.safetensors").write_bytes(os.urandom(2 * 1024 * 1024))  # the single-file checkpoint
    (source / "ae.safetensors").write_bytes(os.urandom(1024))
    hub.add_folder(FLUX_DEV, source)
    models = tmp_path / "models"

    done = genmill(
        "models", "pull", "Qubico/flux1-dev", hub=hub, home=tmp_path, env={"GENMILL_MODELS_DIR": str(models)}
    )

    assert done.returncode == 0, done.stderr
    assert not [s for s in hub.seen if s.path.endswith(("/flux1-dev.safetensors", "/ae.safetensors"))]
    availability = FluxBackend(DEV, models, shared=FluxShared(device="cpu")).availability()
    assert availability.ok, availability.reason
    listing = genmill("models", hub=hub, home=tmp_path, env={"GENMILL_MODELS_DIR": str(models)})
    # Served, with where it runs: no GPU here, so the CPU, where memory modes mean nothing.
    assert "available  Qubico/flux1-dev  txt2img  (cpu)" in listing.stdout.splitlines()
