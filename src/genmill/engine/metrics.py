"""What `/metrics` says, in Prometheus' text format.

Two kinds of numbers (docs/operations.md lists each metric):
- counted as the server's processes commit them: task transitions by model and status, the dispatch
  (created → claimed) and run (claimed → ended) latency histograms, credits consumed by tasks ended, webhook
  delivery attempts by outcome, and model loads and unloads of the in-process workers. With several replicas,
  sum them across replicas; they restart from zero with the replica.
- from the database at each scrape, the same whichever replica answers: tasks by model and status, queue depth,
  workers seen, credits consumed in all, webhook deliveries by state. Do not sum these across replicas.

One process (`genmill serve`, `--processes 1`) keeps its counts in its own registry. Under `--processes N` a
scrape reaches one process at random, so each process writes its counts to files in PROMETHEUS_MULTIPROC_DIR
(prometheus-client's multiprocess mode, set up by `genmill.processes` before the fork) and the answering process
sums every process's files, those of processes that died and were restarted included, so a counter never goes
back and a restart counts nothing twice. The database gauges are added once by the answering process. The model
cache's counts live in its own dicts, so in that mode they are copied into multiprocess counters (`ModelCacheSync`)
after each committed transition and at each scrape.

The per-process counts come from the store's publisher (`observe`), called after each transaction commits, so a
transition rolled back is never counted and one from another replica (PostgreSQL NOTIFY) is not counted twice. It
also writes the one log line per task transition (`genmill.tasks`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from genmill.domain.records import EventRef, Task
from genmill.domain.states import TaskStatus
from genmill.store import Store
from genmill.worker.backendset import BackendSet

log = logging.getLogger("genmill.tasks")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
ENDED = {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}


class DatabaseNumbers(Collector):
    """The gauges read from the database at each scrape; `genmill_database_up` 0 when it cannot be read."""

    def __init__(self, store: Store, *, worker_seen_seconds: float, in_process_slots: int) -> None:
        self.store = store
        self.worker_seen = timedelta(seconds=worker_seen_seconds)
        self.in_process_slots = in_process_slots

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("genmill_database_up", "1 when the database answered this scrape")
        try:
            families = list(self._read())
        except Exception:  # unreachable, locked, or no schema: the scrape still answers, saying so
            log.warning("metrics: the database could not be read", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> Iterator[Metric]:
        ops = self.store.ops
        tasks = GaugeMetricFamily(
            "genmill_tasks", "Tasks in the database by model and status", labels=["model", "status"]
        )
        for (model, status), count in sorted(ops.tasks_by_status().items()):
            tasks.add_metric([model, status], count)
        queue = GaugeMetricFamily(
            "genmill_queue_depth",
            "Tasks waiting: pending for a worker or staged behind their account's concurrency",
            labels=["model", "task_type", "pool", "status"],
        )
        for q in ops.queue_depth():
            queue.add_metric([q.model, q.task_type, q.pool, q.status], q.count)
        workers = GaugeMetricFamily(
            "genmill_workers",
            "Workers: remote ones seen lately per pool, and this process's threads",
            labels=["kind", "pool"],
        )
        pools: dict[str, int] = {}
        for worker in ops.workers_seen(self.worker_seen):
            pools[worker.pool] = pools.get(worker.pool, 0) + 1
        for pool, count in sorted(pools.items()):
            workers.add_metric(["remote", pool], count)
        workers.add_metric(["in_process", "public"], self.in_process_slots)
        consumed = CounterMetricFamily(
            "genmill_ledger_credits_consumed", "Credits consumed by tasks, all time, from the ledger"
        )
        consumed.add_metric([], ops.credits_consumed())
        deliveries = GaugeMetricFamily("genmill_webhook_deliveries", "Webhook deliveries by state", labels=["state"])
        for state, count in sorted(ops.deliveries_by_state().items()):
            deliveries.add_metric([state], count)
        yield from (tasks, queue, workers, consumed, deliveries)


class ModelCacheNumbers(Collector):
    """Loads, unloads and memory held of this process's model caches (every load is a cold start someone waited
    for)."""

    def __init__(self, backend_sets: list[BackendSet]) -> None:
        self.backend_sets = backend_sets

    def collect(self) -> Iterator[Metric]:
        loads = CounterMetricFamily("genmill_model_loads", "Model loads in this process", labels=["backend"])
        unloads = CounterMetricFamily(
            "genmill_model_unloads",
            "Models unloaded (evicted for memory, or after running out of it)",
            labels=["backend"],
        )
        load_counts: dict[str, int] = {}
        unload_counts: dict[str, int] = {}
        for backends in self.backend_sets:
            for name, count in backends.cache.load_counts.items():
                load_counts[name] = load_counts.get(name, 0) + count
            for name, count in backends.cache.unload_counts.items():
                unload_counts[name] = unload_counts.get(name, 0) + count
        for name, count in sorted(load_counts.items()):
            loads.add_metric([name], count)
        for name, count in sorted(unload_counts.items()):
            unloads.add_metric([name], count)
        memory = GaugeMetricFamily(
            "genmill_model_memory_bytes", "Bytes this process's loaded models hold, per device", labels=["device"]
        )
        held: dict[str, int] = {}
        for backends in self.backend_sets:
            for device, nbytes in backends.cache.used_by_device().items():
                held[device] = held.get(device, 0) + nbytes
        for device, nbytes in sorted(held.items()):
            memory.add_metric([device], nbytes)
        yield from (loads, unloads, memory)


class Sharing:
    """Whether this process is one of `genmill serve --processes N` (N > 1), set by `share_across_processes`
    before the app is built. Only then is the scrape summed over the multiprocess files: one process keeps its
    own registry, even where PROMETHEUS_MULTIPROC_DIR happens to be set in its environment."""

    across_processes = False


SHARING = Sharing()


def share_across_processes() -> None:
    """In each served process under `--processes N`, before its first metric: keep metric values in
    PROMETHEUS_MULTIPROC_DIR's files (set by the supervisor), even if prometheus-client was imported before the
    directory was set (it picks its value class at import)."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # untyped upstream
    SHARING.across_processes = True


def multiprocess_values() -> bool:
    """Whether this process's metrics are summed with the other processes' at each scrape."""
    return SHARING.across_processes and bool(getattr(values.ValueClass, "_multiprocess", False))


class ModelCacheSync:
    """Under `--processes N`: the model caches' loads, unloads and memory as multiprocess metrics, so a scrape of
    any process reports those of process 0's workers. The caches count in plain dicts; `sync` adds what each
    count grew by since the last call (a lock: worker threads commit concurrently). The memory gauge is summed
    over live processes, so a dead process's models stop counting when the supervisor marks it dead."""

    def __init__(self, backend_sets: list[BackendSet], registry: CollectorRegistry) -> None:
        self.backend_sets = backend_sets
        self.loads = Counter("genmill_model_loads", "Model loads", ["backend"], registry=registry)
        self.unloads = Counter(
            "genmill_model_unloads",
            "Models unloaded (evicted for memory, or after running out of it)",
            ["backend"],
            registry=registry,
        )
        self.memory = Gauge(
            "genmill_model_memory_bytes",
            "Bytes the loaded models hold, per device",
            ["device"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.lock = threading.Lock()
        self.counted_loads: dict[str, int] = {}
        self.counted_unloads: dict[str, int] = {}
        self.devices: set[str] = set()

    def sync(self) -> None:
        with self.lock:
            self._add(self.loads, self.counted_loads, [b.cache.load_counts for b in self.backend_sets])
            self._add(self.unloads, self.counted_unloads, [b.cache.unload_counts for b in self.backend_sets])
            held: dict[str, int] = dict.fromkeys(self.devices, 0)
            for backends in self.backend_sets:
                for device, nbytes in backends.cache.used_by_device().items():
                    held[device] = held.get(device, 0) + nbytes
            for device, nbytes in held.items():
                self.memory.labels(device).set(nbytes)
            self.devices = set(held)

    @staticmethod
    def _add(counter: Counter, counted: dict[str, int], sources: list[dict[str, int]]) -> None:
        totals: dict[str, int] = {}
        for source in sources:
            for name, count in list(source.items()):
                totals[name] = totals.get(name, 0) + count
        for name, total in totals.items():
            grown = total - counted.get(name, 0)
            if grown > 0:
                counter.labels(name).inc(grown)
                counted[name] = total


class ServerMetrics:
    """The in-process counters and the scrape's answer; `shared` (multiprocess mode, see the module docstring) is
    set by `share_across_processes` before this process created its first metric."""

    def __init__(
        self, store: Store, backend_sets: list[BackendSet], *, worker_seen_seconds: float, in_process_slots: int
    ) -> None:
        self.store = store
        self.registry = CollectorRegistry()
        self.transitions = Counter(
            "genmill_task_transitions",
            "Task status changes committed by this server",
            ["model", "status"],
            registry=self.registry,
        )
        self.dispatch_seconds = Histogram(
            "genmill_task_dispatch_seconds",
            "From a task's creation to a worker claiming it (tasks claimed through this server)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "genmill_task_run_seconds",
            "From a worker claiming a task to its end (tasks ended through this server)",
            ["model", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.credits_consumed = Counter(
            "genmill_credits_consumed",
            "Credits consumed by tasks that completed through this server",
            ["model"],
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "genmill_webhook_attempts",
            "Webhook delivery attempts made by this server, by outcome: delivered, pending (to be retried),"
            " failed (a 4xx), gone (410), exhausted",
            ["outcome"],
            registry=self.registry,
        )
        self.database = DatabaseNumbers(
            store, worker_seen_seconds=worker_seen_seconds, in_process_slots=in_process_slots
        )
        self.shared = multiprocess_values()
        self.model_sync: ModelCacheSync | None = None
        if self.shared:
            self.model_sync = ModelCacheSync(backend_sets, self.registry)
        else:
            self.registry.register(self.database)
            self.registry.register(ModelCacheNumbers(backend_sets))

    def exposition(self) -> bytes:
        """The scrape's answer: this process's registry, or under `--processes N` every process's counts summed
        from their files plus the database gauges, read once."""
        if self.model_sync is None:
            return generate_latest(self.registry)
        self.model_sync.sync()
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape)  # type: ignore[no-untyped-call]  # prometheus-client leaves it untyped
        scrape.register(self.database)
        return generate_latest(scrape)

    def webhook_attempt(self, outcome: str) -> None:
        self.webhook_attempts.labels(outcome).inc()

    def observe(self, events: Iterable[EventRef]) -> None:
        """Count the status changes of committed events and log one line per task transition. The events of
        this process carry their task as committed; any that does not is read, all in one query. Never raises: a
        metric must not fail the task whose commit it follows."""
        changes = [event for event in events if event.kind == "status"]
        if not changes:
            return
        try:
            if self.model_sync is not None:
                self.model_sync.sync()
            tasks = {event.task_id: event.task for event in changes if event.task is not None}
            unread = [event.task_id for event in changes if event.task is None]
            if unread:
                tasks |= self.store.ops.tasks_by_id(unread)
            for event in changes:
                if event.task_id in tasks:
                    self._observe(event, tasks[event.task_id])
        except Exception:
            log.warning("could not count %d task transitions", len(changes), exc_info=True)

    def _observe(self, event: EventRef, task: Task) -> None:
        status = TaskStatus(event.status)
        self.transitions.labels(task.model, status.value).inc()
        log.info(
            "task %s %s %s -> %s",
            task.task_id,
            task.model,
            task.task_type,
            status.value,
            extra={
                "task_id": task.task_id,
                "model": task.model,
                "task_type": task.task_type,
                "status": status.value,
                "account_id": task.account_id,
                "attempt": task.attempts,
            },
        )
        if status is TaskStatus.PROCESSING and task.started_at is not None:
            self.dispatch_seconds.labels(task.model).observe((task.started_at - task.created_at).total_seconds())
        if status in ENDED and task.started_at is not None and task.ended_at is not None:
            self.run_seconds.labels(task.model, status.value).observe((task.ended_at - task.started_at).total_seconds())
        if status is TaskStatus.COMPLETED and task.consumed_credits:
            self.credits_consumed.labels(task.model).inc(task.consumed_credits)
