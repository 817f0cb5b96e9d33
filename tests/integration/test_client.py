"""`genmill.client.Client` against real genmill servers on 127.0.0.1: one serving the Pillow test backends, and
(where marked `server`) also one that forwards every task to such a server as its upstream provider."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from tests.integration.client_servers import MODEL, Server
from tests.integration.client_transports import Fault, Recording
from tests.receiver import run_receiver
from tests.support import png_bytes

from genmill.client import (
    AuthenticationError,
    BadRequest,
    Client,
    Conflict,
    ConnectionFailed,
    NotFound,
    Task,
    TaskFailed,
    TaskStatus,
    WaitTimeout,
    WebhookVerificationError,
    verify_webhook,
)


def release_after(server: Server, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, server.upscaler.gate.set)
    timer.start()
    return timer


def test_run_uploads_the_photo_waits_and_downloads_the_image(server: Server, photo: Path, tmp_path: Path) -> None:
    seen: list[TaskStatus] = []
    with Client(server.url, server.key) as client:
        task = client.run(
            MODEL,
            "upscale",
            {"image": photo, "scale": 2},
            output_dir=tmp_path / "out",
            on_update=lambda t: seen.append(t.status),
        )
        account = client.account()
    assert task.status is TaskStatus.COMPLETED and task.error.code == 0
    assert task.input["image"].startswith(f"{server.url}/files/uploads/")  # the Path travelled as an upload
    assert len(task.files) == 1 and task.files[0].parent == tmp_path / "out"
    assert Image.open(io.BytesIO(task.files[0].read_bytes())).size == (16, 12)
    assert seen[-1] is TaskStatus.COMPLETED and TaskStatus.PROCESSING in seen
    assert account.used_credits == task.meta["usage"]["consume"] > 0 and account.frozen_credits == 0


@pytest.mark.parametrize("use_events", [True, False])
def test_wait_follows_the_event_stream_or_polls(server: Server, photo: Path, use_events: bool) -> None:
    transport = Recording()
    server.upscaler.gate.clear()
    seen: list[Task] = []
    with Client(server.url, server.key, transport=transport, use_events=use_events) as client:
        created = client.create(MODEL, "upscale", {"image": client.upload(photo), "scale": 2})
        timer = release_after(server, 1.5)
        done = client.wait(created.task_id, timeout=60, on_update=seen.append)
        timer.join()
    assert done.status is TaskStatus.COMPLETED and done.output["image_url"].startswith(server.url)
    assert [t.status for t in seen][-1] is TaskStatus.COMPLETED
    streams = [p for p in transport.paths() if p.endswith("/events")]
    polls = [p for p in transport.paths() if p == f"/api/v1/task/{created.task_id}"]
    if use_events:
        assert streams and len(polls) == 1  # one GET to see it exists, then the stream told everything
        assert [t.status for t in seen][:2] == [TaskStatus.PENDING, TaskStatus.PROCESSING]
    else:
        assert not streams and len(polls) >= 3


def test_wait_polls_where_the_server_has_no_event_stream(plain: Server, photo: Path) -> None:
    transport = Recording(lambda request, _: Fault.NO_EVENTS if request.url.path.endswith("/events") else None)
    plain.upscaler.gate.clear()
    with Client(plain.url, plain.key, transport=transport) as client:
        created = client.create(MODEL, "upscale", {"image": client.upload(photo)})
        timer = release_after(plain, 1.0)
        done = client.wait(created.task_id, timeout=60)
        timer.join()
    assert done.status is TaskStatus.COMPLETED
    assert len([p for p in transport.paths() if p.endswith("/events")]) == 1
    assert len([p for p in transport.paths() if p == f"/api/v1/task/{created.task_id}"]) >= 2


@pytest.mark.parametrize("use_events", [True, False])
def test_wait_gives_up_at_its_timeout_with_the_last_task_seen(plain: Server, photo: Path, use_events: bool) -> None:
    plain.upscaler.gate.clear()
    with Client(plain.url, plain.key, use_events=use_events) as client:
        created = client.create(MODEL, "upscale", {"image": photo})
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as caught:
            client.wait(created.task_id, timeout=1.0)
    assert 0.9 <= time.monotonic() - started < 10
    assert caught.value.task.task_id == created.task_id and not caught.value.task.is_terminal


def test_a_failed_task_is_returned_by_wait_and_raised_by_run(server: Server, photo: Path) -> None:
    with Client(server.url, server.key) as client:
        created = client.create(MODEL, "background-remove", {"image": photo})
        failed = client.wait(created.task_id, timeout=60)
        with pytest.raises(TaskFailed) as caught:
            client.run(MODEL, "background-remove", {"image": photo}, timeout=60)
    assert failed.status is TaskStatus.FAILED
    assert "the segmentation model rejected the image" in failed.error.message
    assert caught.value.task.status is TaskStatus.FAILED and failed.error.code == caught.value.task.error.code > 0
    assert "rejected the image" in str(caught.value)


def test_cancel_answers_the_cancelled_task_and_a_second_cancel_is_refused(plain: Server, photo: Path) -> None:
    plain.upscaler.gate.clear()  # the only worker is held by a first task, so the second stays pending
    with Client(plain.url, plain.key) as client:
        image = client.upload(photo)
        client.create(MODEL, "upscale", {"image": image})
        pending = client.create(MODEL, "upscale", {"image": image})
        cancelled = client.cancel(pending.task_id)
        with pytest.raises(BadRequest) as again:
            client.cancel(pending.task_id)
        assert client.get(pending.task_id).status is TaskStatus.CANCELLED
    assert cancelled.status is TaskStatus.CANCELLED and cancelled.task_id == pending.task_id
    assert again.value.status == 400 and again.value.code == 400 and "cancel" in again.value.message


def test_history_iterates_every_page_newest_first(plain: Server, photo: Path) -> None:
    transport = Recording()
    with Client(plain.url, plain.key, transport=transport) as client:
        image = client.upload(photo)
        created = [client.create(MODEL, "upscale", {"image": image}).task_id for _ in range(5)]
        listed = [t.task_id for t in client.history(page_size=2)]
        first_three = [t.task_id for t in client.history(page_size=2, limit=3)]
        failed_only = list(client.history(status="failed"))
    assert listed == created[::-1]
    assert first_three == created[::-1][:3]
    assert failed_only == []
    pages = [r.url.params["page"] for r in transport.requests if r.url.path == "/api/open/tasks/histories"]
    assert pages[:3] == ["1", "2", "3"]


def test_upload_takes_a_path_or_bytes(plain: Server, photo: Path) -> None:
    with Client(plain.url, plain.key) as client:
        from_path = client.upload(photo)
        from_bytes = client.upload(png_bytes(3, 3))
        with pytest.raises(ValueError, match="file_name"):
            client.upload(b"not a media file")
        downloaded = client.download(from_bytes, photo.parent / "again")
    assert from_path.startswith(f"{plain.url}/files/uploads/") and from_path.endswith("photo.png")
    assert from_bytes.endswith(".png") and Image.open(io.BytesIO(downloaded.read_bytes())).size == (3, 3)


def test_refusals_carry_the_http_status_piapis_code_and_the_message(plain: Server, photo: Path) -> None:
    with Client(plain.url, "gm_not-a-key") as stranger, pytest.raises(AuthenticationError) as unauthorised:
        stranger.account()
    assert unauthorised.value.status == 401 == unauthorised.value.code
    with Client(plain.url, plain.key) as client:
        with pytest.raises(BadRequest) as bad:
            client.create(MODEL, "upscale", {"image": photo, "scale": 11})
        with pytest.raises(BadRequest) as nul:
            client.create(MODEL, "upscale", {"image": photo, "note": "a\u0000b"})
        with pytest.raises(NotFound) as missing:
            client.get("00000000-0000-0000-0000-000000000000")
        client.create(MODEL, "upscale", {"image": photo}, idempotency_key="same-key")
        with pytest.raises(Conflict) as reused:
            client.create(MODEL, "upscale", {"image": photo, "scale": 4}, idempotency_key="same-key")
    assert bad.value.status == 400 and bad.value.message.startswith("input.scale: ")
    assert nul.value.field == "input.note" and "NUL" in nul.value.message  # genmill's `detail` names the field
    assert missing.value.status == 404
    assert reused.value.status == 409


def test_reads_retry_connection_errors_and_5xx(plain: Server) -> None:
    transport = Recording(lambda _, index: (Fault.REFUSE, Fault.ANSWER_503, Fault.LOSE_ANSWER, None)[min(index, 3)])
    with Client(plain.url, plain.key, transport=transport) as client:
        account = client.account()
    assert account.account_id == plain.account_id and len(transport.requests) == 4


def test_reads_give_up_after_their_retries(plain: Server) -> None:
    transport = Recording(lambda *_: Fault.REFUSE)
    with Client(plain.url, plain.key, transport=transport, max_retries=2) as client, pytest.raises(ConnectionFailed):
        client.account()
    assert len(transport.requests) == 3


def test_a_create_is_retried_only_with_an_idempotency_key(plain: Server, photo: Path) -> None:
    def lose_first_create(request: httpx.Request, index: int) -> Fault | None:
        creates = [r for r in transport.requests[:index] if r.url.path == "/api/v1/task"]
        return Fault.LOSE_ANSWER if request.url.path == "/api/v1/task" and not creates else None

    transport = Recording(lose_first_create)
    with Client(plain.url, plain.key, transport=transport) as client:
        image = client.upload(photo)
        with pytest.raises(ConnectionFailed):
            client.create(MODEL, "upscale", {"image": image})  # no key: the lost answer is not retried
        assert len([p for p in transport.paths("POST") if p == "/api/v1/task"]) == 1
        transport.requests.clear()
        task = client.create(MODEL, "upscale", {"image": image}, retry=True)  # the first answer is lost again
        creates = [r for r in transport.requests if r.url.path == "/api/v1/task"]
        assert len(creates) == 2 and creates[0].headers["idempotency-key"] == creates[1].headers["idempotency-key"]
        client.wait(task.task_id, timeout=60)
        tasks = list(client.history())
    assert len(tasks) == 2  # the create without a key, and one (not two) from the retried create
    assert task.task_id in {t.task_id for t in tasks}


def test_verify_webhook_accepts_real_deliveries_and_refuses_forgeries(plain: Server, photo: Path) -> None:
    with run_receiver() as receiver, Client(plain.url, plain.key) as client:
        signed = client.create(MODEL, "upscale", {"image": photo}, webhook=receiver.url, webhook_secret="s3cret")
        client.wait(signed.task_id, timeout=60)
        deliveries = receiver.wait_until(lambda got: len(got) >= 3 and got[-1].json["data"]["status"] == "completed")
        receiver.requests.clear()
        unsigned = client.create(MODEL, "upscale", {"image": photo}, webhook=receiver.url)
        client.wait(unsigned.task_id, timeout=60)
        account_signed = receiver.wait_for(1)[0]
        account_secret = httpx.get(f"{plain.url}/account/webhook_secret", headers={"X-API-Key": plain.key}).json()
    statuses = [verify_webhook(d.body, d.headers, "s3cret").task.status for d in deliveries]
    assert statuses == [TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED]
    event = verify_webhook(deliveries[-1].body, deliveries[-1].headers, "s3cret", require_signature=True)
    assert event.webhook_id == deliveries[-1].headers["webhook-id"] and event.task.task_id == signed.task_id
    piapi_headers = {k: v for k, v in deliveries[0].headers.items() if not k.startswith("webhook-")}
    assert verify_webhook(deliveries[0].body, piapi_headers, "s3cret").task.task_id == signed.task_id

    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(deliveries[0].body.replace(b"pending", b"complete"), deliveries[0].headers, "s3cret")
    with pytest.raises(WebhookVerificationError):
        verify_webhook(deliveries[0].body, deliveries[0].headers, "guess")
    with pytest.raises(WebhookVerificationError, match="x-webhook-secret"):
        verify_webhook(deliveries[0].body, piapi_headers, "guess")
    with pytest.raises(WebhookVerificationError, match="webhook-timestamp"):
        verify_webhook(deliveries[0].body, deliveries[0].headers, "s3cret", now=time.time() + 3600)
    with pytest.raises(WebhookVerificationError, match="no webhook-signature"):
        verify_webhook(deliveries[0].body, piapi_headers, "s3cret", require_signature=True)

    whsec = account_secret["data"]["signing_secret"]
    assert verify_webhook(account_signed.body, account_signed.headers, whsec).task.task_id == unsigned.task_id
