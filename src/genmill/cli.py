"""The `genmill` command: serve, keys, accounts, models (and models pull), db, workers, admin.

Commands that print a secret print it alone on the last line of stdout so scripts can capture it with
`tail -n 1`; everything else a command says goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genmill.cli_admin import add_admin_commands
from genmill.errors import GenmillError
from genmill.logs import configure_logging, filter_native_noise, log_format_from_env, quiet_third_party
from genmill.mcp_server import add_mcp_command
from genmill.settings import Settings

if TYPE_CHECKING:
    from genmill.backends.base import ServedBy


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "data_dir", "workers", "processes"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "no_workers", False):
        overrides["workers"] = 0
    return Settings(**overrides)


def _store(settings: Settings) -> Any:
    from genmill.store import Store
    from genmill.store.migrate import upgrade

    url = settings.resolved_database_url()
    upgrade(url)
    return Store.from_url(url)


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from genmill.httpserver import ServerLimits, limit_malloc_arenas
    from genmill.processes import default_processes, processes_problem

    settings = _settings(args)
    dialect = make_url(settings.resolved_database_url()).get_backend_name()
    count = settings.processes or default_processes(dialect)
    problem = processes_problem(count, dialect)
    if problem:
        _say(problem)
        return 2
    limit_malloc_arenas()  # while this is the only thread; the API processes of --processes inherit it
    # genmill's own lines (access log, task transitions) follow the flag as uvicorn's do: `--log-level warning`
    # keeps only what needs attention, and spares a busy server a formatted line per request and per transition.
    logging.getLogger().setLevel(args.log_level.upper())
    limits = ServerLimits(
        keep_alive_seconds=settings.keep_alive_seconds,
        header_timeout_seconds=settings.header_timeout_seconds,
        max_connections=settings.max_connections,
    )
    where = f"http://{settings.host}:{settings.port} (data in {settings.data_dir})"
    if count == 1:
        from genmill.app import create_app
        from genmill.httpserver import serve

        filter_native_noise()
        app = create_app(settings)
        _say(f"genmill serving on {where}")
        serve(app, host=settings.host, port=settings.port, log_level=args.log_level, limits=limits)
        return 0
    from genmill.processes import serve_processes

    _say(f"genmill serving on {where} with {count} API processes")
    # Each API process filters its own native noise (filter_native_noise starts a thread, and the supervisor
    # forks only while it has none).
    return serve_processes(settings, count, limits, args.log_level, before_serving=filter_native_noise)


def cmd_keys_create(args: argparse.Namespace) -> int:
    store = _store(_settings(args))
    if args.account:
        account = store.accounts.get(args.account)
        if args.credits:
            account = store.accounts.topup(account.account_id, args.credits)
    else:
        account = store.accounts.create_account(
            args.name or "default", credits=args.credits, max_concurrency=args.max_concurrency
        )
    plaintext, key = store.accounts.create_key(account.account_id, args.name or "")
    _say(
        f"account {account.account_id} ({account.name}): {account.balances.available} credits available, "
        f"max {account.max_concurrency} concurrent tasks"
    )
    _say(f"key {key.key_id} created; it is shown once, store it now:")
    print(plaintext)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    store = _store(_settings(args))
    for key in store.accounts.list_keys():
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        print(f"{key.key_id}  {key.prefix}…  account={key.account_id}  name={key.name!r}  {state}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    _store(_settings(args)).accounts.revoke_key(args.key_id)
    _say(f"key {args.key_id} revoked")
    return 0


def cmd_accounts_list(args: argparse.Namespace) -> int:
    for a in _store(_settings(args)).accounts.list_accounts():
        b = a.balances
        print(
            f"{a.account_id}  {a.name!r}  available={b.available} frozen={b.frozen} used={b.used} "
            f"total={b.total} max_concurrency={a.max_concurrency}"
        )
    return 0


def cmd_accounts_topup(args: argparse.Namespace) -> int:
    account = _store(_settings(args)).accounts.topup(args.account, args.credits)
    print(f"{account.account_id}: {account.balances.available} credits available")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from genmill.store.migrate import upgrade

    settings = _settings(args)
    upgrade(settings.resolved_database_url())
    _say("database is at the latest schema")
    return 0


def _models_dir(args: argparse.Namespace | None, settings: Settings) -> Path:
    value = getattr(args, "models_dir", None)
    return Path(value) if value else settings.models_dir


def served_mark(served: ServedBy | None) -> str:
    """`genmill models`' note of what runs an entry: `[stand-in: MusicGen (...)]` and `[limits: ...]`."""
    if served is None:
        return ""
    marks = [f"[stand-in: {served.model}]"] if served.stand_in else []
    if served.limits:
        marks.append(f"[limits: {'; '.join(served.limits)}]")
    return "  " + "  ".join(marks) if marks else ""


def cmd_models(args: argparse.Namespace) -> int:
    from genmill.backends.registry import configured_backends, why_not_served
    from genmill.catalog import build_catalog
    from genmill.weights.sources import pull_hint
    from genmill.worker.backendset import BackendSet

    settings = Settings()
    models_dir = _models_dir(args, settings)
    catalog = build_catalog()
    backends = BackendSet(
        configured_backends(settings.model_copy(update={"models_dir": models_dir}), catalog),
        catalog,
        stand_ins=settings.stand_in_policy(),
    )
    for entry in sorted(catalog, key=lambda e: e.key):
        if backends.can_run(entry.model, entry.task_type):
            note = backends.backend_for(entry.model, entry.task_type).memory_note()
            mark = served_mark(backends.served_by(entry.model, entry.task_type))
            print(f"available  {entry.model}  {entry.task_type}{mark}" + (f"  ({note})" if note else ""))
        else:
            why = backends.why_not(entry.model, entry.task_type) or why_not_served(
                entry.model, entry.task_type, models_dir
            )
            hint = pull_hint(entry.model, entry.task_type, models_dir)
            print(f"missing    {entry.model}  {entry.task_type}  ({why}{'; ' + hint if hint else ''})")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from genmill.weights.pull import pull_command

    models_dir = _models_dir(args, Settings())
    return pull_command(args.targets, models_dir=models_dir, token=args.token, dry_run=args.dry_run, say=_say)


def cmd_worker(args: argparse.Namespace) -> int:
    """A remote worker: the same Worker and backends as the in-process pool, over the HTTP worker protocol."""
    import signal
    import socket
    import threading

    from genmill.backends.registry import configured_backends
    from genmill.catalog import build_catalog
    from genmill.worker.backendset import BackendSet
    from genmill.worker.http_transport import HttpTransport
    from genmill.worker.runtime import Worker

    filter_native_noise()
    settings = Settings(device=args.device) if args.device else Settings()
    server = args.server or settings.server_url
    token = args.token or settings.worker_token
    if not server or not token:
        _say("genmill worker needs --server and --token (or GENMILL_SERVER_URL and GENMILL_WORKER_TOKEN)")
        return 2
    if args.concurrency < 1:
        _say("--concurrency must be at least 1")
        return 2
    logging.getLogger("httpx").setLevel(logging.WARNING)
    catalog = build_catalog()
    enabled = {b.strip() for b in settings.backends.split(",") if b.strip()} or None
    backends = BackendSet(
        configured_backends(settings, catalog),
        catalog,
        enabled=enabled,
        stand_ins=settings.stand_in_policy(),
        memory_budgets=settings.memory_budgets(),
        memory_margin_bytes=settings.gpu_memory_margin_mb * 1024 * 1024,
    )
    capabilities = backends.capabilities()
    if args.models:
        wanted = {m.strip() for m in args.models.split(",") if m.strip()}
        capabilities = [c for c in capabilities if f"{c[0]}/{c[1]}" in wanted or c[0] in wanted]
    if not capabilities:
        for status in backends.statuses:
            if not status.available:
                _say(f"backend {status.name}: unavailable: {status.reason}")
        _say("this machine can run none of the requested models")
        return 2
    name = args.name or socket.gethostname()
    transports = [HttpTransport(server, token) for _ in range(args.concurrency)]
    for transport in transports:
        registered = transport.register(name, capabilities)
    _say(f"worker {name} registered for pool {registered.pool}: {', '.join(f'{m}/{t}' for m, t in capabilities)}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = []
    for index, transport in enumerate(transports):
        worker = Worker(
            transport.worker_id,
            transport,
            backends,
            catalog,
            lease_seconds=registered.lease_seconds,
            heartbeat_seconds=registered.heartbeat_seconds,
            capabilities=capabilities,
            batch_wait_seconds=settings.batch_wait_ms / 1000,
        )
        thread = threading.Thread(target=worker.run_forever, args=(stop,), name=f"worker-{index}", daemon=True)
        thread.start()
        threads.append(thread)
    stop.wait()
    _say("stopping: finishing running tasks")
    for thread in threads:
        thread.join(60)
    return 0


def cmd_worker_token_create(args: argparse.Namespace) -> int:
    store = _store(_settings(args))
    plaintext, token = store.workers.create_token(args.name or "", args.account)
    pool = f"private pool of account {args.account}" if args.account else "the public pool"
    _say(f"worker token {token.token_id} for {pool}; it is shown once, store it now:")
    print(plaintext)
    return 0


def cmd_worker_token_list(args: argparse.Namespace) -> int:
    for t in _store(_settings(args)).workers.list_tokens():
        state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
        print(f"{t.token_id}  {t.prefix}…  pool={t.pool}  name={t.name!r}  {state}")
    return 0


def cmd_worker_token_revoke(args: argparse.Namespace) -> int:
    _store(_settings(args)).workers.revoke_token(args.token_id)
    _say(f"worker token {args.token_id} revoked")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genmill", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_data(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--data-dir", dest="data_dir", default=None, help="data folder (env GENMILL_DATA_DIR)")
        return p

    serve = with_data(sub.add_parser("serve", help="run the API server with in-process workers"))
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=None, help="in-process worker threads")
    serve.add_argument("--no-workers", action="store_true", help="API only: run no model work here")
    serve.add_argument(
        "--processes",
        type=int,
        default=None,
        help="API processes on the port (env GENMILL_PROCESSES; default one per core on PostgreSQL, 1 on SQLite)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="the least severe lines logged, genmill's and uvicorn's (default info: a line per request and per task "
        "transition)",
    )
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = with_data(keys.add_parser("create", help="create an account and key (or a key for --account)"))
    create.add_argument("--name", default="")
    create.add_argument("--credits", type=int, default=0)
    create.add_argument("--max-concurrency", dest="max_concurrency", type=int, default=5)
    create.add_argument("--account", default=None, help="add the key to this existing account")
    create.set_defaults(func=cmd_keys_create)
    with_data(keys.add_parser("list", help="list keys (never their secrets)")).set_defaults(func=cmd_keys_list)
    revoke = with_data(keys.add_parser("revoke", help="revoke a key by id"))
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_keys_revoke)

    accounts = sub.add_parser("accounts", help="accounts").add_subparsers(dest="accounts_command", required=True)
    with_data(accounts.add_parser("list")).set_defaults(func=cmd_accounts_list)
    topup = with_data(accounts.add_parser("topup", help="add credits (1 USD = 10,000,000 credits)"))
    topup.add_argument("account")
    topup.add_argument("credits", type=int)
    topup.set_defaults(func=cmd_accounts_topup)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    with_data(db.add_parser("upgrade", help="apply migrations")).set_defaults(func=cmd_db_upgrade)

    worker = sub.add_parser("worker", help="run a remote worker that pulls tasks from a genmill server")
    worker.add_argument("--server", default=None, help="the genmill API (env GENMILL_SERVER_URL)")
    worker.add_argument(
        "--token", default=None, help="a worker token from `genmill workers token create` (env GENMILL_WORKER_TOKEN)"
    )
    worker.add_argument("--models", default="", help="comma-separated models or model/task_type to offer")
    worker.add_argument("--concurrency", type=int, default=1, help="tasks run at once")
    worker.add_argument(
        "--device",
        default="",
        help="run the models on this device: cpu, cuda:N (env GENMILL_DEVICE; one worker per GPU on a multi-GPU host)",
    )
    worker.add_argument("--name", default="", help="shown in logs (default: the host name)")
    worker.set_defaults(func=cmd_worker)

    workers_cmd = sub.add_parser("workers", help="remote worker tokens").add_subparsers(
        dest="workers_command", required=True
    )
    token = workers_cmd.add_parser("token", help="worker tokens").add_subparsers(dest="token_command", required=True)
    token_create = with_data(token.add_parser("create", help="create a worker token (last line of stdout)"))
    token_create.add_argument("--account", default=None, help="bind to this account's private pool")
    token_create.add_argument("--name", default="")
    token_create.set_defaults(func=cmd_worker_token_create)
    with_data(token.add_parser("list")).set_defaults(func=cmd_worker_token_list)
    token_revoke = with_data(token.add_parser("revoke"))
    token_revoke.add_argument("token_id")
    token_revoke.set_defaults(func=cmd_worker_token_revoke)

    models = sub.add_parser("models", help="list catalog entries and whether they run here")
    models_dir_help = "weights folder (env GENMILL_MODELS_DIR, default ./genmill-models)"
    models.add_argument("--models-dir", dest="models_dir", default=argparse.SUPPRESS, help=models_dir_help)
    models.set_defaults(func=cmd_models)
    pull = models.add_subparsers(dest="models_command").add_parser(
        "pull", help="download weight folders from Hugging Face (docs/weights.md)"
    )
    pull.add_argument("targets", nargs="+", metavar="TARGET", help="entry, model, family (flux, wan, ...) or folder")
    pull.add_argument("--models-dir", dest="models_dir", default=argparse.SUPPRESS, help=models_dir_help)
    pull.add_argument("--token", default=None, help="Hugging Face token for gated repositories (env HF_TOKEN)")
    pull.add_argument("--dry-run", dest="dry_run", action="store_true", help="print what would be fetched")
    pull.set_defaults(func=cmd_models_pull)
    add_mcp_command(sub)
    from genmill.cli_client import add_client_commands  # run, task: the SDK from a terminal

    add_client_commands(sub)
    add_admin_commands(sub, with_data, lambda args: _store(_settings(args)))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_third_party()  # before any model library is imported
    try:
        configure_logging(log_format_from_env())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GenmillError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
