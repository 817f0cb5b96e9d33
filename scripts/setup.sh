#!/usr/bin/env bash
# Set up genmill on a fresh Debian/Ubuntu machine: system libraries for the CPU backends, a virtualenv in
# .venv, and genmill with its CPU backends. `--dev` adds the test and lint tools, the PostgreSQL driver, and the
# diffusers extra (CPU torch) that the Flux tests run on.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="cpu"
if [[ "${1:-}" == "--dev" ]]; then
  extras="cpu,postgres,dev,diffusers"
fi

if [[ "${GENMILL_SKIP_SYSTEM_DEPS:-}" != "1" ]]; then
  bash scripts/install-system-deps.sh
fi

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if [[ ",${extras}," == *",diffusers,"* ]]; then
  # torch first, so the extra's torch==2.13.0 is already met and pip never swaps it for another build. Where a
  # local wheel or PyTorch's CPU index is configured for pip it is used; GENMILL_TORCH_INDEX_URL names the
  # index to take torch from (a CPU or CUDA wheel index). Its small dependencies come with the rest.
  torch_index=()
  if [[ -n "${GENMILL_TORCH_INDEX_URL:-}" ]]; then
    torch_index=(--extra-index-url "${GENMILL_TORCH_INDEX_URL}")
  fi
  .venv/bin/python -m pip install --quiet --no-deps "torch==2.13.0" "${torch_index[@]}"
fi
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
echo "genmill is installed in .venv (extras: ${extras})" >&2
