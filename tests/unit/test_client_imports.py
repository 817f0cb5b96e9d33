"""The SDK and `genmill run` need only httpx and rich: importing and using them loads nothing of the server
(pydantic, SQLAlchemy, FastAPI, the store, the engine...), so `pip install httpx rich` is enough for a client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import genmill

SRC = Path(genmill.__file__).parent.parent

PROBE = """
import sys

SERVER = ("sqlalchemy", "fastapi", "starlette", "uvicorn", "pydantic", "pydantic_settings", "PIL", "numpy",
          "genmill.settings", "genmill.errors", "genmill.domain", "genmill.store", "genmill.engine", "genmill.api",
          "genmill.app", "genmill.backends", "genmill.models", "genmill.worker", "genmill.net")

def server_side():
    return sorted(m for m in sys.modules if any(m == s or m.startswith(s + ".") for s in SERVER))

import genmill.client
import genmill.cli_client
from genmill.client import Client, verify_webhook

# A command that runs end to end without a server: it fails to connect (exit 4) after building everything.
code = genmill.cli_client.main(["task", "list", "--url", "http://127.0.0.1:9", "--key", "gm_x"])
assert code == 4, code
assert not server_side(), server_side()
print("clean")
"""


def test_the_client_and_its_commands_import_nothing_of_the_server(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("clean"), done.stdout + done.stderr[-3000:]
