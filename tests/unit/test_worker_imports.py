"""A remote worker loads neither the store nor SQLAlchemy: `genmill worker` on a GPU machine needs only the
runtime, the HTTP transport and the backends (the server's engine and database stay on the server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import genmill

SRC = Path(genmill.__file__).parent.parent

PROBE = """
import sys

def server_side():
    return sorted(
        m for m in sys.modules
        if m == "sqlalchemy" or m.startswith(("sqlalchemy.", "genmill.store", "genmill.engine", "genmill.api"))
    )

import genmill.cli
import genmill.worker.http_transport
import genmill.worker.runtime

assert not server_side(), server_side()
# What `genmill worker` does before it first calls the server: settings, catalog, every configured backend.
# No entry is named "nothing/none", so it stops there (exit 2) without reaching the unroutable server.
code = genmill.cli.main(["worker", "--server", "http://127.0.0.1:9", "--token", "gmw_x", "--models", "nothing/none"])
assert code == 2, code
assert not server_side(), server_side()
print("clean")
"""


def test_the_remote_worker_path_imports_no_store(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH", "")])),
        "GENMILL_MODELS_DIR": str(tmp_path / "models"),
        "GENMILL_DATA_DIR": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("clean"), done.stderr[-3000:]
