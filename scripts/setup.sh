#!/usr/bin/env bash
# Set up genmill on a fresh Debian/Ubuntu machine: system libraries for the CPU backends, a virtualenv in
# .venv, and genmill with its CPU backends. `--dev` adds the test and lint tools and the PostgreSQL driver.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="cpu"
if [[ "${1:-}" == "--dev" ]]; then
  extras="cpu,postgres,dev"
fi

if [[ "${GENMILL_SKIP_SYSTEM_DEPS:-}" != "1" ]]; then
  bash scripts/install-system-deps.sh
fi

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
echo "genmill is installed in .venv (extras: ${extras})" >&2
