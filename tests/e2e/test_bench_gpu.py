"""The GPU benchmark runs: `python -m bench.gpu --tiny --device cpu` goes through every measure's code path on tiny
configs and writes them all; without `--tiny` on a machine without CUDA it skips and exits 0.

No figure is asserted (timings depend on the machine; the tiny models measure nothing real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("flux1-dev", "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "hunyuanvideo")
OFFLOAD_MODES = ("model-offload", "group-offload", "sequential-offload")


def bench_gpu(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu", *args], cwd=ROOT, capture_output=True, text=True, timeout=570, env=env
    )


def test_the_tiny_run_writes_every_measure(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    # No time cap: a slow or busy machine must still run every measure (the cap has its own test below).
    run = bench_gpu(
        "--tiny",
        "--device",
        "cpu",
        "--load",
        "--budget-seconds",
        "100000",
        "--scratch",
        str(tmp_path),
        "--out",
        str(out),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["tiny"] is True and results["device"] == "cpu" and results["dtype"] == "float32"
    assert [m["model"] for m in results["models"]] == list(MODELS)
    for model in results["models"]:
        assert "error" not in model, model
        assert model["parameters"] > 0
        for batch in ("1", "2", "4"):
            assert {"s_per_step", "peak_gb", "samples_per_s"} <= set(model["batches"][batch]), model["batches"]
        assert model["batch4_throughput_ratio"] > 0
        assert {"seconds", "gb", "gb_per_s"} <= set(model["load"])
        assert model["modes"]["gpu"]["ratio"] == 1.0
        for mode in OFFLOAD_MODES:
            assert model["modes"][mode]["ratio"] > 0, model["modes"][mode]
        assert {"onload_s", "offload_s", "task_steps"} <= set(model["modes"]["model-offload"])
    assert [g["met"] for g in results["goals"]] == [None] * len(MODELS)  # tiny runs judge no goal
    assert "python -m bench.gpu" in run.stdout and "results written" in run.stdout


def test_an_unaffordable_measure_is_skipped_and_says_why(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    run = bench_gpu("--tiny", "--device", "cpu", "--models", "flux1-dev", "--budget-seconds", "0", "--out", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    model = json.loads(out.read_text())["models"][0]
    assert model["batches"]["1"]["skipped"].startswith("time cap")
    assert model["modes"]["group-offload"]["skipped"].startswith("time cap")


def test_without_cuda_the_full_run_skips() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    run = bench_gpu()
    assert run.returncode == 0
    assert "no CUDA GPU: skipped" in run.stdout


def test_unknown_models_are_refused() -> None:
    run = bench_gpu("--models", "sdxl")
    assert run.returncode == 2 and "unknown model or mode: sdxl" in run.stderr


@pytest.mark.parametrize("name", MODELS)
def test_the_full_size_models_and_inputs_fit_together_on_the_meta_device(name: str) -> None:
    """The published configs, the bf16/fp32 weight placement and the default-size inputs of a full run, checked
    for shapes on the meta device (no memory, no GPU); the parameter counts are the planner's footprints."""
    import torch
    from bench.gpu_models import MODELS as BENCHES
    from bench.gpu_models import random_model

    from genmill.domain.placement import FOOTPRINTS

    bench = BENCHES[name]
    model = random_model(bench, False, "meta", torch.bfloat16)
    inputs = bench.inputs(2, False, "meta", torch.bfloat16)
    with torch.inference_mode():
        out = model(**inputs)[0]
    assert out.shape == inputs["hidden_states"].shape and out.dtype == torch.bfloat16
    parameters = sum(p.numel() for p in model.parameters())
    assert abs(2 * parameters - FOOTPRINTS[name].transformer) / FOOTPRINTS[name].transformer < 0.01
