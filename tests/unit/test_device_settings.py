"""Device and memory settings: a bad value stops the server at start with the setting's name, and the settings
reach the placement every diffusers backend loads through."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from genmill.domain.placement import MemoryMode, Quantization
from genmill.settings import Settings
from genmill.worker.model_cache import AUTO

MIB = 1024 * 1024


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3"])
def test_devices_accepted(device: str) -> None:
    assert Settings(device=device).device == device


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:", "mps:0", "auto,cuda:1", "cuda:0,"])
def test_unknown_devices_are_refused_naming_the_setting(device: str) -> None:
    with pytest.raises(ValidationError, match="device"):
        Settings(device=device)


def test_memory_modes_typos_are_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="memory_modes"):
        Settings(memory_modes="flux1-dev=fast")


def test_settings_reach_the_placement_and_the_budgets() -> None:
    settings = Settings(
        device="cpu", memory_modes="flux1-dev=model-offload+nf4", gpu_memory_margin_mb=512, gpu_memory_budget_mb=0
    )
    placement = settings.placement()
    assert placement.device == "cpu" and placement.margin_bytes == 512 * MIB
    assert placement.overrides["flux1-dev"] == (MemoryMode.MODEL_OFFLOAD, Quantization.NF4)
    assert settings.memory_budgets() == {"cpu": 0, "cuda": AUTO}
    assert Settings(gpu_memory_budget_mb=20_000).memory_budgets()["cuda"] == 20_000 * MIB
    assert Settings(device="cuda").placement().device == "cuda:0"


def test_a_device_list_names_each_device_once() -> None:
    assert Settings(device="cuda:0,cuda:1").devices() == ["cuda:0", "cuda:1"]
    assert Settings(device="cuda").devices() == ["cuda:0"]
    with pytest.raises(ValidationError, match="names a device twice"):
        Settings(device="cuda,cuda:0")


def test_the_memory_note_says_device_mode_quantisation_and_tiling() -> None:
    from genmill.backends.diffusers_loading import Placement
    from genmill.domain.placement import MemoryPlan

    plan = MemoryPlan(MemoryMode.MODEL_OFFLOAD, Quantization.NF4, True, "asked for")
    assert Placement("cuda:1").describe(plan) == "cuda:1, model-offload, nf4 transformer, tiled VAE"
    assert Placement("cpu").describe(plan) == "cpu"
    assert Placement("cuda:0").describe(None) == ""
