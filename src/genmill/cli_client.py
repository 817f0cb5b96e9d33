"""`genmill run` and `genmill task get|cancel|list|watch`: the SDK (`genmill.client`) from a terminal.

They talk to a server over HTTP only (`--url`/`GENMILL_URL`, `--key`/`GENMILL_API_KEY`), so they need httpx and
rich and nothing of the server. Results go to stdout (saved file paths, task ids, `--json`); progress, logs and
errors go to stderr. Exit codes (docs/sdk.md): 0 completed (or done), 1 the task failed or was cancelled, 2 a
usage error, 3 the server refused the request, 4 the server could not be reached or failed, 5 the wait timed out,
130 interrupted (the task goes on; `genmill task watch ID` follows it again).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from genmill.cli_fields import FieldError, parse_fields, shorten_blobs
from genmill.client import APIError, Client, GenmillClientError, ServerError, Task, TaskStatus, WaitTimeout

EXIT_COMPLETED = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4
EXIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    pass


def _client(args: argparse.Namespace) -> Client:
    client = Client(args.url, args.key)
    if not client.api_key:
        client.close()
        raise UsageError("no API key: pass --key or set GENMILL_API_KEY")
    return client


def _print_json(value: Any) -> None:
    print(json.dumps(shorten_blobs(value), indent=2, ensure_ascii=False))


class Watcher:
    """Shows a waited task on stderr: status, a bar from `detail.progress` and each new log line. On a terminal
    it is a live rich display; elsewhere (pipes, CI) one plain line per change."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.logs_shown = 0
        self.status: TaskStatus | None = None
        self.progress: Progress | None = None
        self.bar: TaskID | None = None

    def __enter__(self) -> Watcher:
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[pct]}"), TimeElapsedColumn(),
                console=self.console, transient=False,
            )  # fmt: skip
            self.progress.start()
            self.bar = self.progress.add_task("waiting", total=100, pct="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, task: Task) -> None:
        for line in task.logs[self.logs_shown :]:
            self.console.print(f"  {line}", markup=False, highlight=False)
        self.logs_shown = max(self.logs_shown, len(task.logs))
        percent = task.progress
        if task.status is TaskStatus.COMPLETED:
            percent = 100.0
        if self.progress is not None and self.bar is not None:
            label = f"{task.task_id[:8]} {task.status.value}"
            completed = percent if percent is not None else 0.0
            pct = f"{percent:.0f}%" if percent is not None else ""
            self.progress.update(self.bar, description=label, completed=completed, pct=pct)
        elif task.status != self.status:
            extra = f" {percent:.0f}%" if percent is not None else ""
            self.console.print(f"task {task.task_id} {task.status.value}{extra}", markup=False, highlight=False)
        self.status = task.status


def _finish(client: Client, task: Task, args: argparse.Namespace, console: Console) -> int:
    """Save the outputs of a completed task into `-o` and print their paths (or the task as JSON)."""
    if task.status is not TaskStatus.COMPLETED:
        error = task.error.message or task.error.raw_message or "no message"
        console.print(f"task {task.task_id} {task.status.value}: {error} (code {task.error.code})", markup=False)
        if args.json:
            _print_json(task.raw)
        return EXIT_TASK_FAILED
    saved: list[Path] = []
    if not args.no_download:
        taken: set[str] = set()
        saved = [client.download(url, args.output, _taken=taken) for url in task.output_urls]
    if args.json:
        _print_json({**task.raw, "saved_files": [str(p) for p in saved]})
    else:
        for path in saved:
            print(path)
        if not saved:
            _print_json(task.output)  # an output without files (lyrics, a caption...) is the result itself
    if saved:
        console.print(f"saved {len(saved)} file(s) into {args.output}", markup=False)
    return EXIT_COMPLETED


def _follow(client: Client, task_id: str, args: argparse.Namespace, console: Console) -> int:
    with Watcher(console) as watcher:
        task = client.wait(task_id, timeout=args.timeout, on_update=watcher.update)
    return _finish(client, task, args, console)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    try:
        inputs = parse_fields(args.fields)
        config = parse_fields(args.config)
    except FieldError as exc:
        raise UsageError(str(exc)) from exc
    with _client(args) as client:
        task = client.create(args.model, args.task_type, inputs, config=config or None, retry=True)
        console.print(f"task {task.task_id} created ({task.status.value})", markup=False, highlight=False)
        if not args.wait:
            if args.json:
                _print_json(task.raw)
            else:
                print(task.task_id)
            return EXIT_COMPLETED
        return _follow(client, task.task_id, args, console)


def cmd_task_get(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as client:
        task = client.get(args.task_id)
    if args.json:
        _print_json(task.raw)
    else:
        progress = f" {task.progress:.0f}%" if task.progress is not None else ""
        print(f"{task.task_id}  {task.status.value}{progress}  {task.model} {task.task_type}")
        for url in task.output_urls:
            print(f"  output: {url}")
        if task.error.code:
            print(f"  error {task.error.code}: {task.error.message}")
    return EXIT_TASK_FAILED if task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED) else EXIT_COMPLETED


def cmd_task_cancel(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as client:
        task = client.cancel(args.task_id)
    print(f"{task.task_id}  {task.status.value}")
    return EXIT_COMPLETED


def cmd_task_list(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as client:
        tasks = list(client.history(model=args.model, status=args.status, limit=args.limit, page_size=50))
    if args.json:
        _print_json([t.raw for t in tasks])
        return EXIT_COMPLETED
    for task in tasks:
        created = str(task.meta.get("created_at", ""))
        print(f"{task.task_id}  {task.status.value:<10}  {created}  {task.model} {task.task_type}")
    return EXIT_COMPLETED


def cmd_task_watch(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as client:
        return _follow(client, args.task_id, args, console)


FAILURES: tuple[tuple[type[BaseException], int, str], ...] = (
    (UsageError, EXIT_USAGE, "error: {exc}"),
    (WaitTimeout, EXIT_TIMEOUT, "error: {exc}; `genmill task watch {exc.task.task_id}` follows it again"),
    (ServerError, EXIT_UNREACHABLE, "error: the server failed: {exc}"),
    (APIError, EXIT_REFUSED, "error: {exc}"),
    (GenmillClientError, EXIT_UNREACHABLE, "error: {exc}"),
    (OSError, EXIT_USAGE, "error: {exc}"),
    (KeyboardInterrupt, EXIT_INTERRUPTED, "interrupted: the task goes on on the server (genmill task watch ID)"),
)
"""What a client command's failure prints and its exit code; the first kind that matches wins (a ServerError is
an APIError, a WaitTimeout a GenmillClientError)."""


def run_command(handler: Callable[[argparse.Namespace, Console], int], args: argparse.Namespace) -> int:
    """Run a client command, mapping what can go wrong onto the documented exit codes."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request on the user's terminal
    console = Console(stderr=True, soft_wrap=True)  # a long message stays one line for grep and logs
    try:
        return handler(args, console)
    except tuple(kind for kind, _, _ in FAILURES) as exc:
        code, message = next((code, message) for kind, code, message in FAILURES if isinstance(exc, kind))
        console.print(message.format(exc=exc), markup=False)
        return code


def _bind(parser: argparse.ArgumentParser, handler: Callable[[argparse.Namespace, Console], int]) -> None:
    parser.set_defaults(func=lambda args: run_command(handler, args))


def _connection(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--url", default=None, help="the server (env GENMILL_URL, default http://127.0.0.1:8000)")
    parser.add_argument("--key", default=None, help="the API key (env GENMILL_API_KEY)")
    return parser


def _results(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("."), help="save output files here (default .)")
    parser.add_argument("--no-download", dest="no_download", action="store_true", help="do not save the outputs")
    parser.add_argument("--json", action="store_true", help="print the task as JSON on stdout")
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")


def add_client_commands(sub: Any) -> None:
    """Register `run` and `task` on the `genmill` command's subparsers."""
    run = _connection(sub.add_parser("run", help="run a task on a server, show its progress, save its outputs"))
    run.add_argument("model", help="e.g. Qubico/image-toolkit")
    run.add_argument("task_type", help="e.g. upscale")
    run.add_argument(
        "fields", nargs="*", metavar="FIELD", help="input fields: key=value, key:=json, key=@file (uploaded)"
    )
    run.add_argument("--config", action="append", default=[], metavar="FIELD", help="a config field, same syntax")
    run.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True, help="wait for the end")
    _results(run)
    _bind(run, cmd_run)

    task = sub.add_parser("task", help="look at, follow and cancel tasks on a server")
    commands = task.add_subparsers(dest="task_command", required=True)
    get = _connection(commands.add_parser("get", help="show a task"))
    get.add_argument("task_id")
    get.add_argument("--json", action="store_true")
    _bind(get, cmd_task_get)
    cancel = _connection(commands.add_parser("cancel", help="cancel a pending or staged task"))
    cancel.add_argument("task_id")
    _bind(cancel, cmd_task_cancel)
    listing = _connection(commands.add_parser("list", help="the account's tasks, newest first"))
    listing.add_argument("--model", default=None)
    listing.add_argument("--status", default=None, choices=[s.value for s in TaskStatus])
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    _bind(listing, cmd_task_list)
    watch = _connection(commands.add_parser("watch", help="follow a task to its end and save its outputs"))
    watch.add_argument("task_id")
    _results(watch)
    _bind(watch, cmd_task_watch)


def main(argv: list[str] | None = None) -> int:
    """`python -m genmill.cli_client run ...`: the same commands without the server's CLI."""
    parser = argparse.ArgumentParser(prog="genmill")
    add_client_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
