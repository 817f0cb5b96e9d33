"""The composition root: `create_app(settings)` builds every piece and wires constructors together.

Nothing is created at import time. Tests pass their own store, blob store or backends; `genmill serve` passes
only settings.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI

from genmill import __version__
from genmill.api import account, admin, files, legacy, models, openai, ops, price, tasks, webhooks, workers
from genmill.api.boundary import BoundaryCheck
from genmill.api.dashboard import routes as dashboard
from genmill.api.deps import Services
from genmill.api.envelope import ok
from genmill.api.errors import install_error_handlers
from genmill.api.keycache import KeyCache
from genmill.api.limits import BodySizeLimit
from genmill.api.openapi import install_openapi
from genmill.api.request_ids import RequestIds
from genmill.api.streams import TaskFeeds
from genmill.backends.base import Backend
from genmill.bus import EventBus
from genmill.catalog import build_catalog
from genmill.domain.catalog import Catalog
from genmill.domain.quotas import Rate
from genmill.domain.records import PUBLIC_POOL, EventRef
from genmill.engine import Accounts, LocalTransport, ServedEntries, TaskEngine, WorkerGate
from genmill.engine.admin import Administration
from genmill.engine.chat import ChatEngine, ChatModel
from genmill.engine.images import ImageEngine, ImageModel
from genmill.engine.inline import InlineTasks
from genmill.engine.inputs import InputResolver
from genmill.engine.metrics import ServerMetrics
from genmill.engine.quotas import Quotas, QuotaSettings
from genmill.engine.readiness import ReadinessCheck
from genmill.logs import quiet_third_party
from genmill.models.llm.catalog import prompt_token_bound
from genmill.net.fetch import GuardedFetcher
from genmill.settings import Settings
from genmill.storage import build_blob_store
from genmill.storage.blobstore import BlobStore
from genmill.storage.files import FileService
from genmill.store import Store
from genmill.store.migrate import upgrade
from genmill.store.notify import PgListener
from genmill.webhooks.dispatcher import WebhookDispatcher
from genmill.worker.backendset import BackendSet
from genmill.worker.pool import Reaper, WorkerPool, worker_id
from genmill.worker.runtime import Worker

log = logging.getLogger("genmill")


class Runtime:
    """Everything `create_app` built, kept together so tests and the CLI can reach the parts."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        blobs: BlobStore | None = None,
        backends: list[Backend] | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.settings = settings
        if store is None:
            url = settings.resolved_database_url()
            upgrade(url)
            store = Store.from_url(
                url, max_staged_per_account=settings.max_staged_per_account, group_commit=settings.group_commit
            )
        self.store = store
        self.blobs = blobs if blobs is not None else build_blob_store(settings)
        self.catalog = (
            catalog
            if catalog is not None
            else build_catalog(
                echo_price_credits=settings.echo_price_credits,
                llm_prices=settings.llm_prices,
                llm_max_tokens=settings.llm_max_tokens,
            )
        )
        enabled = {b.strip() for b in settings.backends.split(",") if b.strip()} or None
        self.backend_sets = [
            BackendSet(
                found,
                self.catalog,
                enabled=enabled,
                stand_ins=settings.stand_in_policy(),
                memory_budgets=settings.memory_budgets(),
                memory_margin_bytes=settings.gpu_memory_margin_mb * 1024 * 1024,
            )
            for found in (self._discover(settings) if backends is None else [backends])
        ]
        """One set of backends (own models, own cache) per device of GENMILL_DEVICE; workers take turns."""
        self.backends = self.backend_sets[0]
        self.files = FileService(self.blobs, self.store.blobs, settings.base_url())
        self.fetcher = GuardedFetcher(
            max_bytes=settings.max_input_bytes,
            allow_private=settings.allow_private_urls,
            timeout=settings.fetch_timeout,
        )
        self.inputs = InputResolver(self.files, self.fetcher, max_bytes=settings.max_input_bytes)
        self.bus = EventBus()
        worker_slots = settings.workers * len(self.backend_sets)
        self.metrics = ServerMetrics(
            self.store,
            self.backend_sets,
            worker_seen_seconds=settings.worker_seen_seconds,
            in_process_slots=worker_slots,
        )
        self.store.set_publisher(self.publish)
        self.admin = Administration(
            self.store,
            self.backend_sets,
            worker_slots=worker_slots,
            worker_seen_seconds=settings.worker_seen_seconds,
        )
        self.readiness = ReadinessCheck(
            self.store, self.backend_sets, worker_slots=worker_slots, worker_seen_seconds=settings.worker_seen_seconds
        )
        self.listener = (
            PgListener(self.store.engine.url.render_as_string(hide_password=False), self.bus.publish)
            if self.store.engine.dialect.name == "postgresql"
            else None
        )
        self.wakeup = self.bus.workers
        self.keys = KeyCache(settings.auth_cache_seconds)
        policy = settings.queue_policy()
        unknown = policy.unknown_names(self.catalog)
        if unknown:
            raise ValueError(
                f"GENMILL_QUEUE_MODELS / GENMILL_MAX_PENDING_SECONDS: no catalog entry for {', '.join(unknown)}"
            )
        self.quotas = Quotas(quota_settings(settings))
        self.serving = ServedEntries(
            self.store.workers,
            self.backends,
            runs_workers=settings.workers > 0,
            worker_seen_seconds=settings.worker_seen_seconds,
            served_recently_seconds=settings.served_recently_seconds,
            policy=policy,
            waits=self.store.waits,
        )
        self.tasks = TaskEngine(
            self.store,
            self.files,
            self.catalog,
            self.serving,
            max_attempts=settings.max_attempts,
            private_price_factor=settings.private_pool_price_factor,
            webhook_wakeup=self.bus.webhooks,
            quotas=self.quotas,
            max_inline_bytes=settings.max_upload_bytes,
        )
        self.feeds = TaskFeeds(self.tasks, self.bus)
        self.accounts = Accounts(self.store)
        self.gate = WorkerGate(
            self.store,
            self.files,
            self.catalog,
            self.inputs,
            lease_seconds=settings.lease_seconds,
            heartbeat_seconds=settings.heartbeat_seconds,
        )
        self.webhooks = WebhookDispatcher(
            self.store.webhooks,
            GuardedFetcher(
                max_bytes=1024 * 1024, allow_private=settings.allow_private_urls, timeout=settings.webhook_timeout
            ),
            self.bus.webhooks,
            concurrency=settings.webhook_concurrency,
            per_account=settings.webhook_account_concurrency,
            retry_scale=settings.webhook_retry_scale,
            on_attempt=self.metrics.webhook_attempt,
        )
        self.inline = InlineTasks(
            self.store,
            self.files,
            self.catalog,
            quotas=self.quotas,
            lease_seconds=settings.lease_seconds,
            heartbeat_seconds=settings.heartbeat_seconds,
            process_id=f"{socket.gethostname()}:{os.getpid()}",
        )
        chat_models, image_models, unavailable = self._chat_backends(settings)
        self.chat = ChatEngine(
            self.inline,
            {backend.model: backend for backend in chat_models},
            max_tokens=settings.llm_max_tokens,
            prompt_bound=lambda inputs: prompt_token_bound(inputs.messages),
            unavailable=unavailable,
        )
        self.images = ImageEngine(self.inline, {backend.model: backend for backend in image_models}, unavailable)
        self.workers = [self.make_worker(i) for i in range(settings.workers * len(self.backend_sets))]
        self.pool = WorkerPool(
            self.workers,
            Reaper(
                self.store,
                self.files,
                retain_events=timedelta(days=settings.event_retention_days),
                expire_waits=self.serving.expire_waits,
                remember_workers=max(
                    timedelta(days=settings.event_retention_days),
                    timedelta(seconds=settings.served_recently_seconds),
                ),
            ),
            self.wakeup,
            reaper_seconds=settings.reaper_seconds,
        )

    def publish(self, events: list[EventRef]) -> None:
        """Committed events of this process: counted and logged (`ServerMetrics.observe`), then fanned out."""
        self.metrics.observe(events)
        self.bus.publish(events)

    def _discover(self, settings: Settings) -> list[list[Backend]]:
        """The backends of each device in GENMILL_DEVICE. An API-only replica runs no model: it does not even
        import the model libraries (hundreds of MB). Upstream providers come last, so an entry this machine can run
        itself is never forwarded."""
        if settings.workers == 0:
            return [[]]
        from genmill.backends.registry import configured_backends

        return [configured_backends(settings, self.catalog, device) for device in settings.devices()]

    def _chat_backends(self, settings: Settings) -> tuple[list[ChatModel], list[ImageModel], dict[str, str]]:
        """GENMILL_LLM_MODELS' chat models, answered in this process (an API-only replica too: they are HTTP
        clients, or a local model loaded on first use); each one left out is logged with its reason."""
        if not settings.llm_models.strip():
            return [], [], {}
        from genmill.backends.registry import chat_backends

        chats, images, refused = chat_backends(settings, self.catalog)
        for name, reason in refused.items():
            log.warning("chat or image model %s: UNAVAILABLE: %s", name, reason)
        return list(chats), list(images), refused

    def make_worker(self, index: int) -> Worker:
        """Worker slot `index`; with several devices, slots alternate between them (GENMILL_WORKERS per device)."""
        transport = LocalTransport(self.gate, self.wakeup)
        return Worker(
            worker_id(index),
            transport,
            self.backend_sets[index % len(self.backend_sets)],
            self.catalog,
            lease_seconds=self.settings.lease_seconds,
            heartbeat_seconds=self.settings.heartbeat_seconds,
            batch_wait_seconds=self.settings.batch_wait_ms / 1000,
        )

    def services(self) -> Services:
        return Services(
            tasks=self.tasks,
            accounts=self.accounts,
            gate=self.gate,
            files=self.files,
            catalog=self.catalog,
            backends=self.backends,
            max_upload_bytes=self.settings.max_upload_bytes,
            bus=self.bus,
            keys=self.keys,
            quotas=self.quotas,
            feeds=self.feeds,
            chat=self.chat,
            images=self.images,
        )

    def log_backends(self) -> None:
        for status in self.backends.statuses:
            if status.available:
                log.info("backend %s: available (%d catalog entries)", status.name, len(status.entries))
            else:
                log.warning("backend %s: UNAVAILABLE: %s", status.name, status.reason)


def quota_settings(settings: Settings) -> QuotaSettings:
    """The limits on use, from GENMILL_RATE_LIMIT_*, GENMILL_FREE_TASKS_*, GENMILL_MAX_TASK_INPUT_BYTES and
    GENMILL_MAX_STREAMS_PER_ACCOUNT."""
    return QuotaSettings(
        creates=Rate(settings.rate_limit_creates_per_second, settings.rate_limit_creates_burst),
        reads=Rate(settings.rate_limit_reads_per_second, settings.rate_limit_reads_burst),
        free_tasks=Rate(settings.free_tasks_per_second, settings.free_tasks_burst),
        max_task_input_bytes=settings.max_task_input_bytes,
        max_streams_per_account=settings.max_streams_per_account,
    )


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    run_workers: bool = True,
    process_index: int = 0,
    **parts: Any,
) -> FastAPI:
    """The API. `run_workers`: this process runs the in-process workers, the reaper and the webhook dispatcher
    (with `genmill serve --processes N`, process 0 only); `process_index` is what `/healthz` says answered."""
    quiet_third_party()
    settings = settings or (runtime.settings if runtime else Settings())
    rt = runtime or Runtime(settings, **parts)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        rt.log_backends()
        if rt.listener is not None:
            rt.listener.start()
        if run_workers:
            rt.pool.start()
            rt.webhooks.start()
        try:
            yield
        finally:
            if run_workers:
                rt.pool.stop()
                rt.webhooks.stop()
            if rt.listener is not None:
                rt.listener.stop()

    app = FastAPI(
        title="genmill",
        version=__version__,
        description="A self-hostable server for generative-AI tasks that speaks the PiAPI/Qubico Unified API.",
        lifespan=lifespan,
        docs_url=None,  # served from the package's own assets by ops.install_docs, never from a CDN
        redoc_url=None,
    )
    app.state.services = rt.services()
    app.state.runtime = rt
    app.state.admin = rt.admin
    app.state.readiness = rt.readiness
    app.state.metrics = rt.metrics
    install_error_handlers(app)
    install_openapi(app)
    routers = (tasks.router, webhooks.router, account.router, files.router, models.router, workers.router)
    for router in (*routers, openai.router, admin.router, ops.router):
        app.include_router(router)
    for router in legacy.ROUTERS:
        app.include_router(router)
    ops.install_docs(app)
    app.include_router(price.router)
    app.include_router(dashboard.router)

    @app.get("/healthz", tags=["ops"], summary="Liveness and backend availability")
    def healthz() -> dict[str, Any]:
        return ok({"version": __version__, "served": len(rt.serving.entries(PUBLIC_POOL)), "process": process_index})

    # Inside the body cap (added last, so outermost): the check never buffers more than the cap allows.
    app.add_middleware(BoundaryCheck, raw_body_paths=[("/api/v1/workers/tasks/", "/outputs")])
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
        overrides={("/api/v1/workers/tasks/", "/outputs"): workers.MAX_OUTPUT_BYTES},
    )
    app.add_middleware(RequestIds)  # outermost: every answer, a refused one too, carries its X-Request-ID
    return app
