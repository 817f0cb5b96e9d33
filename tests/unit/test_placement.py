"""The memory planner: which plan each served model gets on each card size, overrides, the override setting's
parser, the byte arithmetic behind the choices, and that docs/gpu.md shows the table the planner produces."""

from __future__ import annotations

from pathlib import Path

import pytest

from genmill.domain.placement import (
    CARD_SIZES_GB,
    FOOTPRINTS,
    GB,
    GIB,
    RUNTIME_RESERVE_BYTES,
    Footprint,
    MemoryMode,
    MemoryPlan,
    Quantization,
    override_for,
    parse_memory_overrides,
    plan_for,
    plan_memory,
    plan_table_markdown,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "gpu.md"
GPU, MODEL, GROUP, SEQUENTIAL = (
    MemoryMode.GPU,
    MemoryMode.MODEL_OFFLOAD,
    MemoryMode.GROUP_OFFLOAD,
    MemoryMode.SEQUENTIAL_OFFLOAD,
)
FLUX = ("flux1-dev", "flux1-schnell", "flux1-fill-dev", "flux1-kontext-dev")
WAN21_14B = ("wan2.1-t2v-14b", "wan2.1-i2v-14b", "wan2.1-flf2v-14b")
BIG_I2V = ("wan2.1-i2v-14b", "wan2.1-flf2v-14b", "skyreels-v2-i2v", "hunyuanvideo-i2v-concat")
EXPECTED: dict[str, tuple[MemoryMode, MemoryMode, MemoryMode, MemoryMode]] = {
    **{name: (GROUP, GPU, GPU, GPU) for name in FLUX},
    "wan2.1-t2v-1.3b": (GPU, GPU, GPU, GPU),
    "wan2.1-t2v-14b": (GROUP, GPU, GPU, GPU),
    "wan2.1-i2v-14b": (GROUP, MODEL, GPU, GPU),
    "wan2.1-flf2v-14b": (GROUP, MODEL, GPU, GPU),
    "wan2.2-t2v-a14b": (GROUP, MODEL, GPU, GPU),
    "wan2.2-i2v-a14b": (GROUP, MODEL, GPU, GPU),
    "skyreels-v2-i2v": (GROUP, MODEL, GPU, GPU),
    "hunyuanvideo": (GROUP, MODEL, GPU, GPU),
    "hunyuanvideo-i2v-concat": (GROUP, MODEL, GPU, GPU),
    "hunyuanvideo-i2v-replace": (GROUP, MODEL, GPU, GPU),
    "framepack": (GROUP, GPU, GPU, GPU),
}


def card(gb: int) -> int:
    return gb * GIB


def test_every_served_weight_folder_has_a_footprint_and_an_expectation() -> None:
    assert set(FOOTPRINTS) == set(EXPECTED)
    assert len(FOOTPRINTS) == 15


@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_the_selection_table(model: str) -> None:
    modes = tuple(plan_for(model, card(gb)).mode for gb in CARD_SIZES_GB)
    assert modes == EXPECTED[model]
    for gb in CARD_SIZES_GB:
        plan = plan_for(model, card(gb))
        assert plan.quantization is Quantization.NONE, "nothing is quantised unless asked or nothing else fits"
        assert plan.gpu_peak_bytes(FOOTPRINTS[model]) <= card(gb) - RUNTIME_RESERVE_BYTES, plan.reason


def test_the_headline_cases() -> None:
    assert plan_for("flux1-dev", card(24)).mode is not GPU  # 23.8 GB of transformer alone on a 24 GB card
    assert plan_for("flux1-dev", card(80)).mode is GPU
    assert plan_for("wan2.1-t2v-1.3b", card(24)).mode is GPU
    assert all(plan_for(name, card(24)).mode in (MODEL, GROUP, SEQUENTIAL) for name in WAN21_14B)
    # Wan 2.2's experts are loaded one at a time under model offload: one 28.6 GB expert fits a 48 GB card.
    assert plan_for("wan2.2-t2v-a14b", card(48)).mode is MODEL


def test_video_models_are_tiled_unless_whole_gpu_with_room_to_spare() -> None:
    for name in FOOTPRINTS:
        for gb in CARD_SIZES_GB:
            plan = plan_for(name, card(gb))
            if name in FLUX:
                assert not plan.vae_tiling
            elif plan.mode is not GPU:
                assert plan.vae_tiling, (name, gb)
    assert plan_for("wan2.1-t2v-1.3b", card(24)).vae_tiling  # whole-GPU, but only 5 GB left for the decode
    assert not plan_for("wan2.1-t2v-1.3b", card(80)).vae_tiling
    assert plan_for("wan2.2-t2v-a14b", card(80)).vae_tiling
    assert not plan_for("wan2.2-t2v-a14b", card(141)).vae_tiling


def test_the_reason_says_why_with_the_estimate() -> None:
    plan = plan_for("flux1-dev", card(24))
    assert plan.reason.startswith("group-offload: ")
    assert "estimated peak" in plan.reason and "GB budget" in plan.reason


def test_a_margin_moves_a_model_off_the_whole_gpu_plan() -> None:
    assert plan_for("wan2.1-t2v-14b", card(48)).mode is GPU
    assert plan_for("wan2.1-t2v-14b", card(48), margin_bytes=8 * GB).mode is MODEL
    assert plan_for("wan2.1-t2v-14b", card(48), margin_bytes=20 * GB).mode is GROUP


def test_an_explicit_mode_wins_and_says_what_auto_would_do() -> None:
    plan = plan_for("flux1-dev", card(24), mode=GPU)
    assert (plan.mode, plan.quantization) == (GPU, Quantization.NONE)
    assert "set by the operator" in plan.reason and "automatic: group-offload" in plan.reason
    assert "will likely run out of memory" in plan.reason
    fine = plan_for("flux1-dev", card(141), mode=SEQUENTIAL)
    assert fine.mode is SEQUENTIAL and "run out of memory" not in fine.reason


def test_an_explicit_quantization_picks_the_mode_for_it() -> None:
    plan = plan_for("flux1-dev", card(24), quantization=Quantization.NF4)
    # 23.8 GB of transformer in NF4 is 6.7 GB: the whole pipeline then fits a 24 GB card.
    assert (plan.mode, plan.quantization) == (GPU, Quantization.NF4)
    assert "quantisation set by the operator" in plan.reason and "fine detail" in plan.reason
    both = plan_for("wan2.1-t2v-14b", card(24), mode=GROUP, quantization=Quantization.FP8)
    assert (both.mode, both.quantization) == (GROUP, Quantization.FP8)


def test_bitsandbytes_is_only_planned_with_whole_components() -> None:
    # 57 GB of Wan 2.2 experts in int8 is 29.7 GB: no plan fits 24 GB; the planner stays with model offload.
    plan = plan_for("wan2.2-t2v-a14b", card(24), quantization=Quantization.INT8)
    assert plan.mode in (GPU, MODEL) and "run out of memory" in plan.reason
    forced = plan_for("wan2.2-t2v-a14b", card(24), mode=SEQUENTIAL, quantization=Quantization.NF4)
    assert forced.mode is SEQUENTIAL and "not known to work with sequential-offload" in forced.reason


def test_auto_quantises_only_when_no_full_precision_offload_fits() -> None:
    # A large VAE that group offload keeps resident: only a 4-bit transformer moved whole fits.
    odd = Footprint(transformer=40 * GB, encoders=2 * GB, vae=14 * GB, activations=8 * GB)
    plan = plan_memory(odd, card(24))
    assert (plan.mode, plan.quantization) == (MODEL, Quantization.NF4)
    assert "NF4" in plan.reason


def test_sequential_offload_is_the_last_resort_and_warns_when_even_it_does_not_fit() -> None:
    squeezed = Footprint(transformer=24 * GB, encoders=10 * GB, vae=3 * GB, activations=4 * GB)
    assert plan_memory(squeezed, card(8)).mode is SEQUENTIAL
    hopeless = Footprint(transformer=24 * GB, encoders=10 * GB, vae=1 * GB, activations=30 * GB)
    plan = plan_memory(hopeless, card(24), video=True)
    assert plan.mode is SEQUENTIAL and plan.vae_tiling and "likely run out of memory" in plan.reason


def test_byte_arithmetic_of_each_mode() -> None:
    fp = Footprint(transformer=20 * GB, encoders=10 * GB, vae=1 * GB, activations=4 * GB, transformer_parts=2)
    expected = {
        # mode: (resident, peak, cpu)
        GPU: (31 * GB, 35 * GB, 0),
        MODEL: (0, 14 * GB, 31 * GB),  # one 10 GB expert (ties with the encoders) + activations
        GROUP: (1 * GB, 1 * GB + 1 * GB + 4 * GB, 30 * GB),  # VAE resident, a tenth of 10 GB streamed
        SEQUENTIAL: (0, 4 * GB + 200_000_000, 31 * GB),
    }
    for mode, (resident, peak, cpu) in expected.items():
        plan = MemoryPlan(mode, Quantization.NONE, False, "")
        assert (plan.gpu_resident_bytes(fp), plan.gpu_peak_bytes(fp), plan.cpu_bytes(fp)) == (resident, peak, cpu)


def test_quantisation_shrinks_only_the_transformer() -> None:
    fp = Footprint(transformer=20 * GB, encoders=10 * GB, vae=1 * GB, activations=4 * GB)
    sizes = {q: MemoryPlan(GPU, q, False, "").gpu_resident_bytes(fp) - 11 * GB for q in Quantization}
    assert sizes == {
        Quantization.NONE: 20 * GB,
        Quantization.INT8: 10_400_000_000,
        Quantization.FP8: 10_400_000_000,
        Quantization.NF4: 5_600_000_000,
    }
    model_offload = MemoryPlan(MODEL, Quantization.NF4, False, "")
    assert model_offload.gpu_peak_bytes(fp) == 10 * GB + 4 * GB  # the encoders are now the largest component
    assert model_offload.cpu_bytes(fp) == 5_600_000_000 + 11 * GB


def test_parse_memory_overrides() -> None:
    parsed = parse_memory_overrides(
        " flux1-dev=model-offload, wan2.1-t2v-14b=group-offload+nf4,hunyuanvideo=fp8,framepack=auto,*=gpu ,"
    )
    assert parsed == {
        "flux1-dev": (MODEL, None),
        "wan2.1-t2v-14b": (GROUP, Quantization.NF4),
        "hunyuanvideo": (None, Quantization.FP8),
        "framepack": (None, None),
        "*": (GPU, None),
    }
    assert parse_memory_overrides("") == {}
    assert override_for(parsed, "wan2.1-t2v-14b") == (GROUP, Quantization.NF4)
    assert override_for(parsed, "wan2.1-t2v-1.3b") == (GPU, None)
    assert override_for({}, "flux1-dev") == (None, None)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("flux1-dev=model-offload,wan=fast", "'fast'"),
        ("flux1-dev", "'flux1-dev'"),
        ("flux1-dev=", "'flux1-dev='"),
        ("=gpu", "'=gpu'"),
        ("a=gpu,a=nf4", "a is given twice"),
        ("a=gpu+model-offload", "two memory modes"),
        ("a=nf4+int8", "two quantizations"),
    ],
)
def test_parse_errors_name_the_bad_part(text: str, named: str) -> None:
    with pytest.raises(ValueError, match="memory override") as caught:
        parse_memory_overrides(text)
    assert named in str(caught.value)


def test_the_docs_table_is_the_planners() -> None:
    assert plan_table_markdown() in DOC.read_text(), "regenerate with: python -m genmill.domain.placement"
