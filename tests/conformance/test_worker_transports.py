"""One worker-behaviour suite, run through both transports: the in-process `LocalTransport` and the HTTP worker
protocol (`HttpTransport` against the real app on a loopback port).

Both reach the same `WorkerGate`, so a worker behaves the same wherever it runs: claims and batches, heartbeats
that renew, a lost or foreign lease refused as a `Conflict`, completion billed once, failure releasing the
credits, only the task's own input references readable, outputs stored with the task's account and retention;
an operation on an earlier task claimed with that task (its origin), whose output's files it may read as well.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn
from PIL import Image
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.catalog import build_catalog
from genmill.domain.catalog import Catalog, CatalogEntry
from genmill.domain.records import PUBLIC_POOL, Account, Claim, Task
from genmill.domain.states import TaskStatus
from genmill.engine.local import LocalTransport
from genmill.errors import Conflict, GenmillError
from genmill.models.echo.backend import EchoBackend
from genmill.models.schema import usage_per_unit
from genmill.settings import Settings
from genmill.store.tables import blobs
from genmill.worker.backendset import BackendSet
from genmill.worker.http_transport import HttpTransport
from genmill.worker.runtime import Worker
from genmill.worker.transport import WorkerTransport

UPSCALE = ("Qubico/image-toolkit", "upscale")
REMOVE_BACKGROUND = ("Qubico/image-toolkit", "background-remove")
ECHO = ("genmill/echo", "echo")
ECHO_DERIVE = ("genmill/echo", "echo-derive")
LEASE_SECONDS = 30.0
TRANSPORTS = ["in-process", "http"]


@dataclass
class Seat:
    """A worker as the suite drives it: its transport, its id, its pool and what it said it can run."""

    transport: WorkerTransport
    worker_id: str
    pool: str
    capabilities: list[tuple[str, str]]

    def claim(self) -> Claim | None:
        return self.transport.claim(self.worker_id, self.capabilities, LEASE_SECONDS)


@dataclass
class Deployment:
    """A server with one in-process backend (public pool), reachable in-process and over HTTP."""

    kind: str
    url: str
    runtime: Runtime
    account: Account
    closing: list[HttpTransport] = field(default_factory=list)
    local_workers: int = 0

    def worker(self, pool: str = PUBLIC_POOL, capabilities: tuple[tuple[str, str], ...] = (UPSCALE,)) -> Seat:
        """A worker of `pool` over this suite's transport."""
        if self.kind == "in-process":
            transport = LocalTransport(self.runtime.gate, self.runtime.wakeup, pool=pool)
            self.local_workers += 1
            return Seat(transport, f"local-conformance-{self.local_workers}", pool, list(capabilities))
        return self.remote_worker(pool, capabilities)

    def remote_worker(self, pool: str = PUBLIC_POOL, capabilities: tuple[tuple[str, str], ...] = (UPSCALE,)) -> Seat:
        """A registered HTTP worker of `pool` (which also makes the pool serve its capabilities)."""
        token, _ = self.runtime.store.workers.create_token("conformance", None if pool == PUBLIC_POOL else pool)
        transport = HttpTransport(self.url, token, claim_wait=0)
        self.closing.append(transport)
        transport.register("conformance", list(capabilities))
        return Seat(transport, transport.worker_id, pool, list(capabilities))

    def create(self, scale: int = 2, *, account: Account | None = None, private: bool = False) -> Task:
        image = base64.b64encode(png_bytes(6, 4)).decode()
        config = {"service_mode": "private"} if private else None
        task, _ = self.runtime.tasks.create_task(
            account or self.account, *UPSCALE, {"image": image, "scale": scale}, config
        )
        return task

    def create_echo(self, entry: tuple[str, str] = ECHO, **inputs: object) -> Task:
        task, _ = self.runtime.tasks.create_task(self.account, *entry, dict(inputs), None)
        return task

    def stored(self, task_id: str) -> Task:
        return self.runtime.store.tasks.get_any(task_id)

    def entry(self) -> CatalogEntry:
        entry = self.runtime.catalog.get(*UPSCALE)
        assert entry is not None
        return entry


def usage_billed_catalog() -> Catalog:
    """The catalog, with the image upscale billed by usage as per-frame entries are: one credit for each of the
    `frames` its output reports, at most the frozen price; an output that reports none costs the frozen price."""
    usage = usage_per_unit("frames", lambda frames: frames, 10**9)
    return Catalog(
        dataclasses.replace(entry, usage_price=usage) if entry.key == UPSCALE else entry for entry in build_catalog()
    )


@pytest.fixture(params=TRANSPORTS)
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    settings = Settings(data_dir=tmp_path, public_url=url, workers=1, lease_seconds=LEASE_SECONDS)
    runtime = Runtime(settings, backends=[PillowUpscale(), EchoBackend()], catalog=usage_billed_catalog())
    app = create_app(settings, runtime=runtime, run_workers=False)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    account = runtime.store.accounts.create_account("conformance", credits=10**9)
    deployment = Deployment(str(request.param), url, runtime, account)
    yield deployment
    for transport in deployment.closing:
        transport.close()
    server.should_exit = True
    thread.join(10)
    runtime.store.close()


def claimed(seat: Seat) -> Claim:
    claim = seat.claim()
    assert claim is not None
    return claim


def stale(claim: Claim) -> Claim:
    return dataclasses.replace(claim, lease_id="not-the-current-lease")


def test_claims_lease_pending_tasks_oldest_first_each_once(deployment: Deployment) -> None:
    first, second = deployment.create(), deployment.create()
    seat = deployment.worker()
    one, two = claimed(seat), claimed(seat)
    assert [one.task.task_id, two.task.task_id] == [first.task_id, second.task_id]
    assert seat.claim() is None
    stored = deployment.stored(one.task.task_id)
    assert stored.status is TaskStatus.PROCESSING and stored.lease_id == one.lease_id and stored.attempts == 1
    assert one.task.input == first.input


def test_a_worker_claims_only_entries_it_can_run(deployment: Deployment) -> None:
    deployment.create()
    other = deployment.worker(capabilities=(REMOVE_BACKGROUND,))
    assert other.claim() is None
    assert deployment.worker().claim() is not None


def test_claim_more_gathers_pending_tasks_whose_inputs_match(deployment: Deployment) -> None:
    tasks = [deployment.create(scale) for scale in (2, 2, 3, 2)]
    seat = deployment.worker()
    first = claimed(seat)
    assert first.task.task_id == tasks[0].task_id
    more = seat.transport.claim_more(seat.worker_id, first, {"scale": 2}, 5, LEASE_SECONDS)
    assert [c.task.task_id for c in more] == [tasks[1].task_id, tasks[3].task_id]
    assert all(deployment.stored(c.task.task_id).lease_id == c.lease_id for c in more)
    assert claimed(seat).task.task_id == tasks[2].task_id  # the odd one out was left pending


def test_claim_more_refuses_an_entry_the_worker_did_not_say_it_runs(deployment: Deployment) -> None:
    deployment.create()
    seat = deployment.worker()
    first = claimed(seat)
    foreign_entry = dataclasses.replace(first.task, model=REMOVE_BACKGROUND[0], task_type=REMOVE_BACKGROUND[1])
    with pytest.raises(GenmillError, match="did not register"):
        seat.transport.claim_more(seat.worker_id, dataclasses.replace(first, task=foreign_entry), {}, 2, LEASE_SECONDS)


def test_a_heartbeat_renews_the_lease_and_records_logs_and_progress(deployment: Deployment) -> None:
    deployment.create()
    seat = deployment.worker()
    claim = claimed(seat)
    before = deployment.stored(claim.task.task_id).lease_expires_at
    assert before is not None
    time.sleep(0.01)
    seat.transport.heartbeat(claim, LEASE_SECONDS, ["step 1"], {"progress": 0.5})
    after = deployment.stored(claim.task.task_id)
    assert after.lease_expires_at is not None and after.lease_expires_at > before
    assert "step 1" in after.logs and after.detail == {"progress": 0.5}


def test_a_heartbeat_on_a_lost_lease_is_a_conflict(deployment: Deployment) -> None:
    deployment.create()
    seat = deployment.worker()
    claim = claimed(seat)
    with pytest.raises(Conflict):
        seat.transport.heartbeat(stale(claim), LEASE_SECONDS, [], None)
    seat.transport.complete(claim, {"image_url": "x"}, [], None)
    with pytest.raises(Conflict):
        seat.transport.heartbeat(claim, LEASE_SECONDS, [], None)


def test_completing_bills_once(deployment: Deployment) -> None:
    task = deployment.create()
    seat = deployment.worker()
    claim = claimed(seat)
    seat.transport.complete(claim, {"image_url": "x"}, ["done"], None)
    with pytest.raises(Conflict):
        seat.transport.complete(claim, {"image_url": "x"}, [], None)
    done = deployment.stored(task.task_id)
    assert done.status is TaskStatus.COMPLETED and done.output == {"image_url": "x"} and "done" in done.logs
    assert done.consumed_credits == task.price > 0 and done.frozen_credits == 0
    balances = deployment.runtime.store.accounts.get(deployment.account.account_id).balances
    assert balances.used == task.price and balances.frozen == 0 and balances.available == 10**9 - task.price


def test_completing_consumes_what_the_output_used_and_releases_the_rest(deployment: Deployment) -> None:
    task = deployment.create()
    seat = deployment.worker()
    seat.transport.complete(claimed(seat), {"image_url": "x", "frames": 3}, [], None)
    done = deployment.stored(task.task_id)
    assert task.price > 3 and done.consumed_credits == 3 and done.frozen_credits == 0
    store = deployment.runtime.store.accounts
    balances = store.get(deployment.account.account_id).balances
    assert (balances.used, balances.frozen, balances.available) == (3, 0, 10**9 - 3)
    assert store.ledger_balances(deployment.account.account_id) == balances


def test_a_batchs_results_are_completed_together_and_a_lost_lease_refused_alone(deployment: Deployment) -> None:
    first, second, third = (deployment.create() for _ in range(3))
    seat = deployment.worker()
    claims = [claimed(seat), claimed(seat), claimed(seat)]
    assert [c.task.task_id for c in claims] == [first.task_id, second.task_id, third.task_id]
    stale = dataclasses.replace(claims[1], lease_id="not-the-lease")
    outcomes = seat.transport.complete_many(
        [
            (claims[0], {"image_url": "a"}, ["one"], None),
            (stale, {"image_url": "b"}, [], None),
            (claims[2], {"image_url": "c", "frames": 2}, [], {"step": 1}),
        ]
    )
    assert outcomes[0] is None and outcomes[2] is None and isinstance(outcomes[1], Conflict)
    done = deployment.stored(first.task_id)
    assert done.status is TaskStatus.COMPLETED and done.output == {"image_url": "a"} and "one" in done.logs
    assert done.consumed_credits == first.price
    metered = deployment.stored(third.task_id)
    assert metered.status is TaskStatus.COMPLETED and metered.consumed_credits == 2 and metered.detail == {"step": 1}
    assert deployment.stored(second.task_id).status is TaskStatus.PROCESSING
    store = deployment.runtime.store.accounts
    balances = store.get(deployment.account.account_id).balances
    assert (balances.used, balances.frozen) == (first.price + 2, second.price)
    assert store.ledger_balances(deployment.account.account_id) == balances


def test_failing_releases_the_credits(deployment: Deployment) -> None:
    task = deployment.create()
    seat = deployment.worker()
    claim = claimed(seat)
    error = {"code": 10000, "message": "broke", "raw_message": "it broke", "detail": None}
    seat.transport.fail(claim, error, [], None)
    with pytest.raises(Conflict):
        seat.transport.fail(claim, error, [], None)
    failed = deployment.stored(task.task_id)
    assert failed.status is TaskStatus.FAILED and failed.error is not None and failed.error["message"] == "broke"
    assert failed.consumed_credits == 0 and failed.frozen_credits == 0
    balances = deployment.runtime.store.accounts.get(deployment.account.account_id).balances
    assert balances.used == 0 and balances.frozen == 0 and balances.available == 10**9


def test_a_worker_reads_only_references_in_its_tasks_input(deployment: Deployment) -> None:
    deployment.create()
    seat = deployment.worker()
    claim = claimed(seat)
    own = seat.transport.read_input(claim, claim.task.input["image"], "image")
    assert own.content_type == "image/png" and Image.open(io.BytesIO(own.data)).size == (6, 4)
    with pytest.raises(GenmillError, match="only read references that appear in its task"):
        seat.transport.read_input(claim, "https://example.com/other.png", "image")
    with pytest.raises(Conflict):
        seat.transport.read_input(stale(claim), claim.task.input["image"], "image")


def test_outputs_are_stored_for_the_tasks_account_with_its_retention(deployment: Deployment) -> None:
    task = deployment.create()
    seat = deployment.worker()
    claim = claimed(seat)
    data = png_bytes(12, 8)
    url = seat.transport.save_output(claim, deployment.entry(), data, "png", "image/png")
    files = deployment.runtime.files
    key = files.key_from_url(url)
    assert key is not None
    stored = files.open(key)
    assert stored.data == data and stored.blob.content_type == "image/png" and stored.blob.kind == "output"
    assert stored.blob.account_id == task.account_id and stored.blob.task_id == task.task_id
    assert stored.blob.expires_at - stored.blob.created_at == deployment.entry().retention


def test_outputs_must_be_media_and_need_the_lease(deployment: Deployment) -> None:
    deployment.create()
    seat = deployment.worker()
    claim = claimed(seat)
    with pytest.raises(GenmillError, match="content_type"):
        seat.transport.save_output(claim, deployment.entry(), b"<script>", "html", "text/html")
    with pytest.raises(Conflict):
        seat.transport.save_output(stale(claim), deployment.entry(), png_bytes(2, 2), "png", "image/png")


@pytest.mark.parametrize(
    ("ext", "content_type", "data"),
    [
        ("svg", "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("html", "text/html", b"<script>alert(1)</script>"),
        ("html", "image/../text/html", b"<script>alert(1)</script>"),
        ("png", "image/png\r\nContent-Disposition: inline", b"\x89PNG"),
        ("png", "image/png; charset=utf-8", b"\x89PNG"),
    ],
)
def test_active_or_malformed_output_types_are_refused_before_anything_is_stored(
    deployment: Deployment, ext: str, content_type: str, data: bytes
) -> None:
    task = deployment.create()
    seat = deployment.worker()
    claim = claimed(seat)
    with pytest.raises(GenmillError, match="content_type"):
        seat.transport.save_output(claim, deployment.entry(), data, ext, content_type)
    with deployment.runtime.store.engine.connect() as conn:
        count = sa.select(sa.func.count()).select_from(blobs).where(blobs.c.task_id == task.task_id)
        assert conn.execute(count).scalar_one() == 0
    stored = deployment.stored(task.task_id)
    assert stored.status is TaskStatus.PROCESSING and stored.lease_id == claim.lease_id  # the lease is intact


def test_a_declared_content_type_is_stored_in_lower_case(deployment: Deployment) -> None:
    deployment.create()
    seat = deployment.worker()
    url = seat.transport.save_output(claimed(seat), deployment.entry(), png_bytes(2, 2), "png", "Image/PNG")
    key = deployment.runtime.files.key_from_url(url)
    assert key is not None and deployment.runtime.files.open(key).blob.content_type == "image/png"


def test_another_pools_worker_cannot_use_a_lease(deployment: Deployment) -> None:
    task = deployment.create()
    seat = deployment.worker()
    claim = claimed(seat)
    other = deployment.runtime.store.accounts.create_account("other", credits=10**9)
    foreign = deployment.worker(pool=other.account_id)
    with pytest.raises(Conflict):
        foreign.transport.heartbeat(claim, LEASE_SECONDS, [], None)
    with pytest.raises(Conflict):
        foreign.transport.read_input(claim, claim.task.input["image"], "image")
    with pytest.raises(Conflict):
        foreign.transport.save_output(claim, deployment.entry(), png_bytes(2, 2), "png", "image/png")
    with pytest.raises(Conflict):
        foreign.transport.fail(claim, {"code": 10000, "message": "x", "raw_message": "x", "detail": None}, [], None)
    with pytest.raises(Conflict):
        foreign.transport.complete(claim, {"image_url": "x"}, [], None)
    seat.transport.complete(claim, {"image_url": "x"}, [], None)
    assert deployment.stored(task.task_id).status is TaskStatus.COMPLETED


def test_private_tasks_go_only_to_their_accounts_pool(deployment: Deployment) -> None:
    owner = deployment.account.account_id
    deployment.remote_worker(pool=owner)  # the private pool serves the entry, so the task may be created
    task = deployment.create(private=True)
    assert task.price == 0 and task.frozen_credits == 0
    assert deployment.worker().claim() is None  # the public pool never sees it
    other = deployment.runtime.store.accounts.create_account("other", credits=10**9)
    assert deployment.worker(pool=other.account_id).claim() is None
    assert claimed(deployment.worker(pool=owner)).task.task_id == task.task_id


def test_a_worker_runs_a_task_to_completion(deployment: Deployment) -> None:
    task = deployment.create()
    seat = deployment.worker()
    catalog = build_catalog()
    worker = Worker(
        seat.worker_id,
        seat.transport,
        BackendSet([PillowUpscale()], catalog),
        catalog,
        lease_seconds=LEASE_SECONDS,
        heartbeat_seconds=10,
        capabilities=seat.capabilities,
    )
    assert worker.run_once()
    done = deployment.stored(task.task_id)
    assert done.status is TaskStatus.COMPLETED and done.output is not None
    assert any("resizing 6x4 by 2" in line for line in done.logs)
    key = deployment.runtime.files.key_from_url(done.output["image_url"])
    assert key is not None
    assert Image.open(io.BytesIO(deployment.runtime.files.open(key).data)).size == (12, 8)


def completed_origin(deployment: Deployment, seat: Seat) -> tuple[Task, str]:
    """An echo task completed by `seat` with an output that names a file it stored; returns it and the file's URL."""
    origin = deployment.create_echo(payload={"n": 1})
    claim = claimed(seat)
    assert claim.task.task_id == origin.task_id and claim.origin is None  # not a derived operation
    url = seat.transport.save_output(claim, deployment.entry(), png_bytes(3, 2), "png", "image/png")
    seat.transport.complete(claim, {"echo": {"n": 1}, "image_url": url}, [], None)
    return deployment.stored(origin.task_id), url


def test_a_derived_task_is_claimed_with_its_origin(deployment: Deployment) -> None:
    seat = deployment.worker(capabilities=(ECHO, ECHO_DERIVE))
    origin, url = completed_origin(deployment, seat)
    derived = deployment.create_echo(ECHO_DERIVE, origin_task_id=origin.task_id)
    claim = claimed(seat)
    assert claim.task.task_id == derived.task_id and claim.origin is not None
    seen = claim.origin
    assert (seen.task_id, seen.model, seen.task_type) == (origin.task_id, *ECHO)
    assert seen.output == {"echo": {"n": 1}, "image_url": url} and seen.input == origin.input
    assert seen.created_at == origin.created_at and seen.detail == origin.detail


def test_claim_more_carries_each_derived_tasks_origin(deployment: Deployment) -> None:
    seat = deployment.worker(capabilities=(ECHO, ECHO_DERIVE))
    first_origin, _ = completed_origin(deployment, seat)
    second_origin, _ = completed_origin(deployment, seat)
    deployment.create_echo(ECHO_DERIVE, origin_task_id=first_origin.task_id)
    deployment.create_echo(ECHO_DERIVE, origin_task_id=second_origin.task_id)
    first = claimed(seat)
    [more] = seat.transport.claim_more(seat.worker_id, first, {}, 4, LEASE_SECONDS)
    assert first.origin is not None and first.origin.task_id == first_origin.task_id
    assert more.origin is not None and more.origin.task_id == second_origin.task_id


def test_a_derived_task_reads_its_origins_output_files_and_nothing_else(deployment: Deployment) -> None:
    seat = deployment.worker(capabilities=(ECHO, ECHO_DERIVE))
    origin, url = completed_origin(deployment, seat)
    _, unrelated = completed_origin(deployment, seat)  # a file of the same account, named by another task only
    deployment.create_echo(ECHO_DERIVE, origin_task_id=origin.task_id)
    claim = claimed(seat)
    found = seat.transport.read_input(claim, url, "origin.output.image_url")
    assert found.content_type == "image/png" and Image.open(io.BytesIO(found.data)).size == (3, 2)
    with pytest.raises(GenmillError, match="or in its origin task's output"):
        seat.transport.read_input(claim, unrelated, "origin.output.image_url")
    with pytest.raises(Conflict):
        seat.transport.read_input(stale(claim), url, "origin.output.image_url")


def test_a_worker_runs_a_derived_task_on_what_it_sees_of_the_origin(deployment: Deployment) -> None:
    seat = deployment.worker(capabilities=(ECHO, ECHO_DERIVE))
    origin, url = completed_origin(deployment, seat)
    derived = deployment.create_echo(ECHO_DERIVE, origin_task_id=origin.task_id, read_files=True)
    catalog = build_catalog()
    worker = Worker(
        seat.worker_id,
        seat.transport,
        BackendSet([EchoBackend()], catalog),
        catalog,
        lease_seconds=LEASE_SECONDS,
        heartbeat_seconds=10,
        capabilities=seat.capabilities,
    )
    assert worker.run_once()
    done = deployment.stored(derived.task_id)
    assert done.status is TaskStatus.COMPLETED and done.output is not None, done.error
    seen = done.output["origin"]
    assert seen["task_id"] == origin.task_id and seen["output"]["image_url"] == url
    assert seen["files"] == [{"path": "image_url", "bytes": len(png_bytes(3, 2)), "content_type": "image/png"}]
