"""Closed-loop HTTP throughput and latency with wrk (the Debian package), driven by generated Lua scripts."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

MARK = "BENCHJSON "

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    "MARK", summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
""".replace("MARK", MARK)


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def post_script(path: str, body: bytes, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    lines.append(f"wrk.path = {_lua_string(path)}")
    return "\n".join(lines) + "\n" + _DONE


def get_ids_script(prefix: str, ids_file: Path, headers: dict[str, str]) -> str:
    """GET `prefix + id` for ids drawn at random from a file of one id per line."""
    head = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items())
    return f"""{head}
local ids = {{}}
for line in io.lines({_lua_string(str(ids_file))}) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", {_lua_string(prefix)} .. ids[math.random(#ids)])
end
{_DONE}"""


def run(url: str, script: str, *, duration: float, connections: int, threads: int = 1) -> dict[str, Any]:
    """Run wrk against `url` and return requests/s, p50/p90/p99/max in ms and error counts."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        script_path = f.name
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--timeout",
                "30s",
                "-s",
                script_path,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 120,
        )
    finally:
        Path(script_path).unlink(missing_ok=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    raw = json.loads(line[len(MARK) :])
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 3),
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": round(raw["p50_us"] / 1000, 3),
        "p90_ms": round(raw["p90_us"] / 1000, 3),
        "p99_ms": round(raw["p99_us"] / 1000, 3),
        "max_ms": round(raw["max_us"] / 1000, 3),
        "non_2xx": raw["non_2xx"],
        "errors": raw["socket_errors"],
        "connections": connections,
    }
