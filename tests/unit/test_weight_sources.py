"""The source table behind `genmill models pull` covers every weight folder the backends read."""

from __future__ import annotations

from pathlib import Path

import pytest

from genmill.backends.registry import why_not_served
from genmill.catalog import build_catalog
from genmill.models.audio import ace_step, musicgen, stable_audio
from genmill.models.flux import backend as flux
from genmill.models.flux.captions import CAPTION_FOLDER
from genmill.models.flux.control import DEPTH_FOLDER
from genmill.models.flux.control_maps import CONTROL_TYPES
from genmill.models.toolkits import face_restore, salient, segment_grounded
from genmill.models.trellis import backend as trellis
from genmill.models.tts import clone as tts_clone
from genmill.models.video import hunyuan, wan
from genmill.weights.sources import UnknownTarget, by_folder, pull_hint, resolve_targets

FAMILIES: dict[str, set[tuple[str, str]]] = {}
for _entry in build_catalog():
    FAMILIES.setdefault(_entry.family, set()).add((_entry.model, _entry.task_type))


def test_every_folder_a_backend_reads_has_a_source() -> None:
    read = {spec.folder for spec in flux.MODELS.values()}
    read |= {variant.folder for variant in flux.VARIANTS.values() if variant.folder}
    read |= {f"{flux.CONTROL_PREFIX}{kind}" for kind in CONTROL_TYPES} | {DEPTH_FOLDER, CAPTION_FOLDER}
    read |= {variant.weights.folder for variant in wan.VARIANTS.values()}
    read |= {weights.folder for _, _, weights, _ in hunyuan.VARIANTS.values()}
    read |= {ace_step.FOLDER, musicgen.FOLDER, stable_audio.FOLDER, tts_clone.FOLDER}
    read |= {variant.folder for variant in trellis.VARIANTS.values()}
    read |= {salient.VITMATTE_FOLDER, segment_grounded.GROUNDING_DINO_FOLDER, segment_grounded.SAM2_FOLDER}
    read |= {face_restore.FOLDER}
    assert read == set(by_folder())


def test_every_entry_that_lacks_weights_names_what_pull_fetches() -> None:
    for entry in build_catalog():
        if why_not_served(entry.model, entry.task_type, Path("nowhere")).startswith("no weights"):
            assert pull_hint(entry.model, entry.task_type, Path("nowhere")), entry.key


def test_targets_resolve_by_folder_family_entry_model_and_catalog_family() -> None:
    def folders(*targets: str) -> list[str]:
        return [source.folder for source in resolve_targets(targets, FAMILIES)]

    assert folders("flux1-schnell") == ["flux1-schnell"]
    assert folders("Qubico/flux1-dev") == ["flux1-dev"]
    assert folders("Qubico/wanx/txt2video-14b") == ["wan2.1-t2v-14b"]
    assert folders("Qubico/flux1-dev-advanced/redux-variation") == ["flux1-dev", "flux1-redux-dev"]
    assert folders("audio") == ["ace-step", "musicgen", "stable-audio-open", "tts-clone"]
    assert folders("Qubico/tts") == ["tts-clone"]
    assert folders("Qubico/ace-step") == folders("Qubico/diffrhythm/txt2audio-full") == ["ace-step"]
    assert folders("framepack", "hunyuan")[-1] == "framepack" and len(folders("hunyuan")) == 4
    assert folders("skyreels") == ["skyreels-v2-i2v"]
    assert folders("Qubico/trellis") == ["trellis-image-large", "trellis-text-xlarge"]
    for bad in ("nothing", "Qubico/wanx/img2video-14b-control-camera"):
        with pytest.raises(UnknownTarget):
            resolve_targets([bad], FAMILIES)


def test_the_hint_names_the_model_when_its_task_types_share_the_folders(tmp_path: Path) -> None:
    hint = pull_hint("Qubico/flux1-dev", "txt2img", tmp_path)
    assert hint == "genmill models pull Qubico/flux1-dev fetches black-forest-labs/FLUX.1-dev, ~34 GB"
    assert pull_hint("Qubico/wanx", "txt2video-1.3b", tmp_path).startswith("genmill models pull Qubico/wanx/txt2video")
    (tmp_path / "flux1-dev").mkdir()
    assert pull_hint("Qubico/flux1-dev", "txt2img", tmp_path) == ""


def test_models_dir_defaults_to_the_folder_genmill_always_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from genmill.backends.registry import MODELS_DIR
    from genmill.settings import Settings

    assert Settings().models_dir == MODELS_DIR == Path("genmill-models")
    monkeypatch.setenv("GENMILL_MODELS_DIR", "/srv/weights")
    assert Settings().models_dir == Path("/srv/weights")


def test_docs_gpu_lists_the_pull_command_of_every_entry() -> None:
    from pathlib import Path

    from genmill.weights.sources import pull_table_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "gpu.md"
    assert pull_table_markdown() in doc.read_text(), "regenerate with: python -m genmill.weights.sources"
