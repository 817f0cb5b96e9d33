"""One row of the reliability table, the sizes of a run, and what every scenario is handed.

A row says what was done (test, engine, load, faults injected, bad inputs tried) and what came of it: lost tasks,
double completions, ledger difference and 5xx answers (see `audit.py`), plus the scenario's own checks. A row
passes when all four figures are 0 and no check failed; `failures` says why not, `notes` carries what was
measured besides (latencies, sockets left open, which 5xx), and `figures` the scenario's own counts by name
(what the tests assert on, e.g. `generated_5xx` apart from `hostile_5xx`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.reliability.audit import Audit
from bench.reliability.client import Tally


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does; `quick` fits the test suite, `full` is the documented run."""

    operation_examples: int
    entry_examples: int
    entry_negative_examples: int
    overspend_creates: int
    overspend_affordable: int
    race_tasks: int
    crash_tasks: int
    crash_clients: int
    flood_idle: int
    flood_slow: int
    flood_hold_s: float
    drip_interval_s: float
    drip_window_s: float
    outbound_timeout_s: float

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            operation_examples=3,
            entry_examples=1,
            entry_negative_examples=0,
            overspend_creates=50,
            overspend_affordable=10,
            race_tasks=20,
            crash_tasks=40,
            crash_clients=4,
            flood_idle=100,
            flood_slow=20,
            flood_hold_s=15,
            drip_interval_s=1.0,
            drip_window_s=25,
            outbound_timeout_s=3,
        )

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            operation_examples=50,
            entry_examples=10,
            entry_negative_examples=5,
            overspend_creates=50,
            overspend_affordable=10,
            race_tasks=200,
            crash_tasks=300,
            crash_clients=8,
            flood_idle=300,
            flood_slow=100,
            flood_hold_s=60,
            drip_interval_s=2.0,
            drip_window_s=90,
            outbound_timeout_s=15,
        )


@dataclass
class RunContext:
    sizes: Sizes
    workdir: Path
    quick: bool

    def say(self, text: str) -> None:
        print(f"[reliability {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def scratch(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Row:
    test: str
    engine: str
    load: str = ""
    faults: str = "none"
    bad_inputs: str = "none"
    lost_tasks: int | None = None
    double_completions: int | None = None
    ledger_difference: int | None = None
    server_errors: int | None = None
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    started: float = field(default=0.0, repr=False)

    @classmethod
    def begin(cls, test: str, engine: str) -> Row:
        return cls(test, engine, started=time.monotonic())

    @property
    def passed(self) -> bool:
        return not self.failures

    def fail(self, reason: str) -> None:
        self.failures.append(reason)

    def finish(self, tally: Tally, audit: Audit | None, *, server_errors_allowed: bool = False) -> None:
        """Copy the figures in and fail the row for each that is not 0."""
        self.server_errors = tally.five_xx
        if tally.five_xx and not server_errors_allowed:
            self.fail(f"{tally.five_xx} answers were 5xx")
        if audit is not None:
            self.lost_tasks = len(audit.lost)
            self.double_completions = len(audit.double_completions)
            self.ledger_difference = audit.ledger_difference
            self.failures += audit.problems()
        if tally.throttled:
            self.notes.append(f"{tally.throttled} answers were 429 and asked again")
        self.seconds = round(time.monotonic() - self.started, 1)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("started")
        data["passed"] = self.passed
        return data
