"""GPU benchmark of the diffusion transformers genmill serves, and of each memory mode, at full size.

    .venv/bin/python -m bench.gpu [--models flux1-dev,wan2.1-t2v-14b] [--budget-seconds 480] [--load] [--out F]
    .venv/bin/python -m bench.gpu --tiny --device cpu     # the same code path on tiny configs (the test suite)

For each model (bench/gpu_models.py: published configs, random bf16 weights made on the GPU), at its default
latent size and with CUDA-synchronised timing after warm-up steps:

1. seconds per denoising step (one transformer forward) and peak GPU memory (`max_memory_allocated`) at batch
   1, 2 and 4; the figure is batch-4 throughput / batch-1 throughput (goal: >= 2.0 on an H100-class card);
2. with `--load`: the weights saved once as safetensors on local disk, then `from_pretrained` onto the GPU timed
   (the file was just written, so this is a page-cache load: disk speed is not in it);
3. each memory mode on the transformer alone (what dominates a task; the text encoders and VAE run once):
   `model-offload` (whole model copied in for the task and out after; the figure spreads the two copies over
   `--task-steps` steps), `group-offload` (genmill's block streaming with CUDA streams) and
   `sequential-offload` (accelerate's leaf hooks, as `enable_sequential_cpu_offload` sets them up), each as
   s/step / the whole-GPU s/step measured in the same run.

A measure the time cap (`--budget-seconds`, sized for one 10-minute device command) cannot afford is skipped and
says so; one that fails (out of memory) is recorded and the run continues. Without a CUDA GPU it prints
"no CUDA GPU: skipped" and exits 0, unless `--tiny --device cpu` is given.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.gpu_models import MODELS, ModelBench, cpu_copy, parameter_bytes, random_model

BATCHES = (1, 2, 4)
MODES = ("gpu", "model-offload", "group-offload", "sequential-offload")
BATCH_GOAL = 2.0
GB = 1e9


class Budget:
    """The run's time cap: each measure asks whether its estimated cost still fits."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def allows(self, estimate: float) -> bool:
        return self.left() > estimate


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: str) -> float | None:
    """Peak bytes allocated on the GPU since the last reset; None on the CPU (no allocator statistics there)."""
    import torch

    return round(torch.cuda.max_memory_allocated(device) / GB, 2) if device.startswith("cuda") else None


def seconds_per_step(model: Any, kwargs: dict[str, Any], device: str, warmup: int, steps: int) -> float:
    import torch

    with torch.inference_mode():
        for _ in range(warmup):
            model(**kwargs)
        sync(device)
        began = time.perf_counter()
        for _ in range(steps):
            model(**kwargs)
        sync(device)
    return (time.perf_counter() - began) / steps


def guarded(device: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one measure; an exception (out of memory above all) becomes its recorded result, and memory is freed
    so that the next measure starts clean."""
    from genmill.backends.memory_modes import is_out_of_memory, release_memory

    try:
        return measure()
    except Exception as exc:
        kind = "out of memory" if is_out_of_memory(exc) else type(exc).__name__
        return {"error": f"{kind}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
    finally:
        gc.collect()
        release_memory(device)


def skipped(why: str) -> dict[str, Any]:
    return {"skipped": why}


def measure_batches(bench: ModelBench, model: Any, args: argparse.Namespace, dtype: Any, budget: Budget) -> Any:
    results: dict[str, Any] = {}
    step1 = 0.0
    for batch in BATCHES:
        estimate = step1 * batch * (args.warmup + args.steps) * 1.5
        if not budget.allows(estimate + 5):
            results[str(batch)] = skipped(f"time cap: about {estimate:.0f} s needed, {budget.left():.0f} s left")
            continue

        def one(batch: int = batch) -> dict[str, Any]:
            inputs = bench.inputs(batch, args.tiny, args.device, dtype)
            reset_peak(args.device)
            seconds = seconds_per_step(model, inputs, args.device, args.warmup, args.steps)
            return {"s_per_step": seconds, "peak_gb": peak_gb(args.device), "samples_per_s": batch / seconds}

        results[str(batch)] = guarded(args.device, one)
        step1 = step1 or results[str(batch)].get("s_per_step", 0.0)
    return results


def measure_load(bench: ModelBench, model: Any, args: argparse.Namespace, dtype: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="genmill-bench-gpu-", dir=args.scratch) as folder:
        model.save_pretrained(folder, safe_serialization=True)
        size = sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))
        declared = declared_bytes(Path(folder), dtype)
        sync(args.device)
        before = allocated_bytes(args.device)
        began = time.perf_counter()
        loaded = bench.model_class().from_pretrained(folder, torch_dtype=dtype).to(args.device)
        sync(args.device)
        seconds = time.perf_counter() - began
        held = allocated_bytes(args.device) - before
        del loaded
    result: dict[str, Any] = {"seconds": seconds, "gb": round(size / GB, 2), "gb_per_s": size / GB / seconds}
    if declared is not None and held > 0:
        # What the model cache counts for this folder (read from the headers) against what the load really holds.
        result.update(
            declared_gb=round(declared / GB, 3), held_gb=round(held / GB, 3), declared_over_held=declared / held
        )
    return result


def declared_bytes(folder: Path, dtype: Any) -> int | None:
    """The bytes genmill's model cache declares for these weights (safetensors headers, no tensor read)."""
    try:
        from genmill.backends.diffusers_loading import weight_bytes
    except ImportError:  # a machine without genmill's own dependencies: the comparison is left out
        return None
    return weight_bytes(folder, dtype.itemsize)


def allocated_bytes(device: str) -> int:
    import torch

    return int(torch.cuda.memory_allocated(device)) if device.startswith("cuda") else 0


def measure_mode(
    mode: str, bench: ModelBench, state: dict[str, Any], args: argparse.Namespace, dtype: Any
) -> dict[str, Any]:
    """One offload mode on a fresh copy of the transformer whose weights start in CPU memory."""
    import torch

    from genmill.backends.memory_modes import group_offload_denoiser

    model = cpu_copy(bench, args.tiny, state)
    inputs = bench.inputs(1, args.tiny, args.device, dtype)
    reset_peak(args.device)
    result: dict[str, Any] = {}
    began = time.perf_counter()
    if mode == "model-offload":
        model.to(args.device)
        sync(args.device)
        result["onload_s"] = time.perf_counter() - began
    elif mode == "group-offload":
        group_offload_denoiser(model, args.device, use_stream=args.device.startswith("cuda"))
        result["setup_s"] = time.perf_counter() - began
    else:
        from accelerate import cpu_offload

        cpu_offload(model, torch.device(args.device), offload_buffers=len(model._parameters) > 0)
        result["setup_s"] = time.perf_counter() - began
    steps = args.steps if mode != "sequential-offload" else 1
    result["s_per_step"] = seconds_per_step(model, inputs, args.device, 1, steps)
    result["peak_gb"] = peak_gb(args.device)
    if mode == "model-offload":
        began = time.perf_counter()
        model.to("cpu")
        sync(args.device)
        result["offload_s"] = time.perf_counter() - began
        result["task_steps"] = args.task_steps
    return result


def mode_ratio(mode: str, result: dict[str, Any], gpu_step: float, task_steps: int) -> float | None:
    if "s_per_step" not in result or not gpu_step:
        return None
    if mode == "model-offload":
        copies = result["onload_s"] + result["offload_s"]
        return float((copies + task_steps * result["s_per_step"]) / (task_steps * gpu_step))
    return float(result["s_per_step"] / gpu_step)


def measure_model(bench: ModelBench, args: argparse.Namespace, dtype: Any, budget: Budget) -> dict[str, Any]:
    from genmill.backends.memory_modes import release_memory

    out: dict[str, Any] = {"model": bench.name, "size": bench.tiny_size if args.tiny else bench.size}
    began = time.perf_counter()
    try:
        model = random_model(bench, args.tiny, args.device, dtype)
    except Exception as exc:
        out["error"] = f"building the model failed: {type(exc).__name__}: {str(exc)[:300]}"
        release_memory(args.device)
        return out
    sync(args.device)
    out["build_s"] = time.perf_counter() - began
    weights = parameter_bytes(model)
    out["parameters"] = int(sum(p.numel() for p in model.parameters()))
    out["weights_gb"] = round(weights / GB, 2)
    out["batches"] = measure_batches(bench, model, args, dtype, budget)
    per_batch = {b: out["batches"][str(b)].get("samples_per_s") for b in BATCHES}
    out["batch4_throughput_ratio"] = per_batch[4] / per_batch[1] if per_batch[1] and per_batch[4] else None
    gpu_step = out["batches"]["1"].get("s_per_step", 0.0)
    if not args.load:
        out["load"] = skipped("not asked (--load)")
    elif budget.allows(weights / GB / 0.5 + 10):
        out["load"] = guarded(args.device, partial(measure_load, bench, model, args, dtype))
    else:
        out["load"] = skipped("time cap")
    state = {name: tensor.to("cpu") for name, tensor in model.state_dict().items()}
    del model
    release_memory(args.device)
    out["modes"] = {"gpu": {"s_per_step": gpu_step, "peak_gb": out["batches"]["1"].get("peak_gb"), "ratio": 1.0}}
    # Rough costs: host-device copies at a few GB/s, a streamed step a few times a resident one.
    estimates = {
        "model-offload": 2 * weights / GB / 3 + gpu_step * (args.steps + 1),
        "group-offload": weights / GB / 3 + 4 * gpu_step * (args.steps + 1),
        "sequential-offload": 2 * weights / GB / 2 + 10 * gpu_step,
    }
    for mode in MODES[1:]:
        if mode not in args.modes:
            out["modes"][mode] = skipped("not asked (--modes)")
        elif not budget.allows(estimates[mode] + 5):
            out["modes"][mode] = skipped(f"time cap: about {estimates[mode]:.0f} s needed, {budget.left():.0f} s left")
        else:
            result = guarded(args.device, partial(measure_mode, mode, bench, state, args, dtype))
            result["ratio"] = mode_ratio(mode, result, gpu_step, args.task_steps)
            out["modes"][mode] = result
    del state
    release_memory(args.device)
    return out


def goals(models: list[dict[str, Any]], tiny: bool) -> list[dict[str, Any]]:
    return [
        {
            "goal": f"{m['model']}: batch-4 throughput / batch-1 throughput",
            "target": BATCH_GOAL,
            "measured": m.get("batch4_throughput_ratio"),
            "met": None if tiny or m.get("batch4_throughput_ratio") is None else m["batch4_throughput_ratio"] >= 2.0,
        }
        for m in models
    ]


def machine(device: str) -> dict[str, Any]:
    import diffusers
    import torch

    from bench.common import machine_facts

    facts = {k: v for k, v in machine_facts().items() if k not in ("packages", "servers")}
    facts.update(torch=torch.__version__, diffusers=diffusers.__version__, cuda=torch.version.cuda)
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        facts.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / GB, 1))
    return facts


def _fmt(value: Any, suffix: str = "") -> str:
    return "" if value is None else f"{value:.3g}{suffix}" if isinstance(value, float) else str(value)


def _cell(result: dict[str, Any], key: str, suffix: str = "") -> str:
    return _fmt(result.get(key), suffix) or result.get("skipped", "") or result.get("error", "")[:40]


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"python -m bench.gpu on {results['machine'].get('gpu', results['device'])}")
    for column in ("model", "size", "s/step b1", "b4/b1 throughput", "peak GB b1", *(f"{m} x" for m in MODES[1:])):
        table.add_column(column)
    for m in results["models"]:
        if "error" in m:
            table.add_row(m["model"], m["size"], m["error"][:60])
            continue
        b1 = m["batches"]["1"]
        modes = [_cell(m["modes"][mode], "ratio", "x") for mode in MODES[1:]]
        row = [_cell(b1, "s_per_step"), _fmt(m["batch4_throughput_ratio"], "x"), _cell(b1, "peak_gb"), *modes]
        table.add_row(m["model"], m["size"], *row)
    Console(width=150).print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--modes", default=",".join(MODES[1:]), help="offload modes to time (gpu is always measured)")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (cpu only with --tiny)")
    ap.add_argument("--tiny", action="store_true", help="tiny configs through the same code path")
    ap.add_argument("--budget-seconds", type=float, default=480.0, help="time cap of the whole run")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before each timing")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per measure")
    ap.add_argument("--task-steps", type=int, default=30, help="steps a task runs (spreads model-offload copies)")
    ap.add_argument("--load", action="store_true", help="also time from_pretrained of saved random weights")
    ap.add_argument("--scratch", default=None, help="folder for --load's safetensors (default: the temp folder)")
    ap.add_argument("--out", type=Path, default=None, help="results file (default bench/results/gpu-DATE.json)")
    args = ap.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS] + [m for m in args.modes if m not in MODES]
    if unknown:
        ap.error(f"unknown model or mode: {', '.join(unknown)}")
    return args


def cuda_usable(device: str) -> bool:
    try:
        import diffusers  # noqa: F401
        import torch
    except ImportError:
        return False
    return device.startswith("cuda") and torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not cuda_usable(args.device) and not (args.tiny and args.device == "cpu"):
        print("no CUDA GPU: skipped")
        return 0
    from genmill.backends.memory_modes import compute_dtypes

    dtype = compute_dtypes(args.device)[0]
    budget = Budget(args.budget_seconds)
    began = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python -m bench.gpu", *(argv if argv is not None else sys.argv[1:])]),
        "device": args.device,
        "dtype": str(dtype).removeprefix("torch."),
        "tiny": args.tiny,
        "machine": machine(args.device),
        "settings": {k: getattr(args, k) for k in ("warmup", "steps", "task_steps", "budget_seconds", "load")},
        "models": [],
    }
    for name in args.models:
        print(f"[bench.gpu] {name} ({budget.left():.0f} s of the time cap left)", flush=True)
        results["models"].append(measure_model(MODELS[name], args, dtype, budget))
    results["goals"] = goals(results["models"], args.tiny)
    results["wall_seconds"] = round(time.perf_counter() - began, 1)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.out or ROOT / "bench" / "results" / f"gpu-{stamp}{'-tiny' if args.tiny else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"[bench.gpu] results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
