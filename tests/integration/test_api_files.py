"""Uploads, file serving, expiry, the 3-hour rule for generated inputs, and request size limits."""

from __future__ import annotations

import base64
from datetime import timedelta

import sqlalchemy as sa
from tests.integration.conftest import Api
from tests.support import png_bytes

from genmill.domain.timefmt import utcnow
from genmill.store.tables import blobs


def upload(api: Api, name: str, data: bytes | str) -> tuple[int, dict]:  # type: ignore[type-arg]
    payload = data if isinstance(data, str) else base64.b64encode(data).decode()
    r = api.client.post("/api/ephemeral_resource", headers=api.h(), json={"file_name": name, "file_data": payload})
    return r.status_code, r.json()


def test_upload_then_use_it_as_an_input(api: Api) -> None:
    code, body = upload(api, "cat.png", png_bytes(10, 6))
    assert code == 200 and body["code"] == 200
    url = body["data"]["url"]
    assert url.startswith("http://testserver/files/uploads/") and url.endswith("-cat.png")
    served = api.client.get(url.removeprefix("http://testserver"))
    assert served.status_code == 200 and served.content == png_bytes(10, 6)
    task = api.client.post(
        "/api/v1/task",
        headers=api.h(),
        json={"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": url, "scale": 2}},
    ).json()["data"]
    assert api.run_worker()
    done = api.client.get(f"/api/v1/task/{task['task_id']}", headers=api.h()).json()["data"]
    assert done["status"] == "completed", done["error"]


def test_upload_rules(api: Api) -> None:
    ok_png = png_bytes(4, 4)
    assert upload(api, "x.png", "data:image/png;base64," + base64.b64encode(ok_png).decode())[0] == 200
    code, body = upload(api, "x.png", "%%%not-base64%%%")
    assert code == 400 and body["message"].startswith("Invalid request parameters")
    code, body = upload(api, "x.exe", ok_png)
    assert code == 400 and "file_name" in body["message"]
    code, body = upload(api, "../../etc/passwd.png", ok_png)
    assert code == 200 and "etc" not in body["data"]["url"] and body["data"]["url"].endswith("-passwd.png")
    code, body = upload(api, "a" * 130 + ".png", ok_png)
    assert code == 400 and "128" in body["message"]
    code, body = upload(api, "clip.mp3", ok_png)
    assert code == 400 and "image/png" in body["message"]
    code, body = upload(api, "big.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * (10 * 1024 * 1024))
    assert code in (400, 413) and "10" in body["message"]


def generated_image(api: Api) -> tuple[str, str]:
    """Run an upscale to completion; returns its task id and output URL."""
    body = {
        "model": "Qubico/image-toolkit",
        "task_type": "upscale",
        "input": {"image": base64.b64encode(png_bytes(4, 4)).decode(), "scale": 2},
    }
    task_id = api.client.post("/api/v1/task", headers=api.h(), json=body).json()["data"]["task_id"]
    assert api.run_worker()
    task = api.client.get(f"/api/v1/task/{task_id}", headers=api.h()).json()["data"]
    return task_id, task["output"]["image_url"]


def test_expired_files_answer_410_and_the_task_says_so(api: Api) -> None:
    task_id, url = generated_image(api)
    path = url.removeprefix("http://testserver")
    assert api.client.get(path).status_code == 200
    deleted = api.runtime.files.reap(now=utcnow() + timedelta(days=3, minutes=1))
    assert sorted(key.split("/")[0] for key in deleted) == ["outputs", "uploads"]  # the inline input is an upload
    r = api.client.get(path)
    assert r.status_code == 410 and r.json()["code"] == 410
    again = api.client.get(f"/api/v1/task/{task_id}", headers=api.h()).json()["data"]
    assert again["status"] == "completed" and again["detail"]["outputs_deleted"] is True
    assert api.client.get("/files/outputs/nothing/here.png").status_code == 404


def test_generated_images_are_inputs_for_three_hours_only(api: Api) -> None:
    _, url = generated_image(api)
    body = {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": url, "scale": 2}}
    assert api.client.post("/api/v1/task", headers=api.h(), json=body).status_code == 200
    with api.runtime.store.engine.begin() as conn:
        conn.execute(sa.update(blobs).values(created_at=utcnow() - timedelta(hours=3, minutes=1)))
    r = api.client.post("/api/v1/task", headers=api.h(), json=body)
    assert r.status_code == 400 and "input.image" in r.json()["message"] and "3 hours" in r.json()["message"]


def test_request_bodies_are_capped(api: Api) -> None:
    r = api.client.post(
        "/api/v1/task",
        headers={**api.h(), "content-type": "application/json"},
        content=b"x" * (21 * 1024 * 1024),
    )
    assert r.status_code == 413 and r.json()["code"] == 413


def stored_file(api: Api, data: bytes, ext: str, content_type: str) -> str:
    """A file in the blob store and index as it may have been stored before the output rule (any content type);
    returns its path under /files/."""
    blob = api.runtime.files.save(
        data, kind="output", ext=ext, content_type=content_type, retention=timedelta(days=1), account_id=None
    )
    return "/files/" + blob.key


def test_files_are_served_with_nosniff_and_a_sandboxing_csp(api: Api) -> None:
    code, body = upload(api, "cat.png", png_bytes(4, 4))
    assert code == 200
    served = api.client.get(body["data"]["url"].removeprefix("http://testserver"))
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    csp = [part.strip() for part in served.headers["content-security-policy"].split(";")]
    assert "default-src 'none'" in csp and "sandbox" in csp
    assert served.headers["content-disposition"] == "inline"


def test_files_not_on_the_inline_allow_list_are_attachments(api: Api) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
    for data, ext, content_type in [
        (svg, "svg", "image/svg+xml"),
        (b"<script>alert(1)</script>", "html", "text/html"),
        (b"<x/>", "xml", "application/xml"),
        (b"alert(1)", "js", "application/javascript"),
        (b"\x00\x01", "bin", "application/octet-stream"),
        (b"glTF", "glb", "model/gltf-binary"),
    ]:
        served = api.client.get(stored_file(api, data, ext, content_type))
        assert served.status_code == 200 and served.content == data, content_type
        assert served.headers["content-disposition"].startswith("attachment; filename="), content_type
        assert served.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in served.headers["content-security-policy"]


def test_a_stored_content_type_with_crlf_or_a_path_is_served_as_an_octet_stream_attachment(api: Api) -> None:
    for content_type in ("image/png\r\nSet-Cookie: stolen=1", "image/../text/html"):
        served = api.client.get(stored_file(api, b"<script>alert(1)</script>", "png", content_type))
        assert served.status_code == 200 and served.content == b"<script>alert(1)</script>"
        assert served.headers["content-type"] == "application/octet-stream"
        assert served.headers["content-disposition"].startswith("attachment")
        assert "set-cookie" not in served.headers
