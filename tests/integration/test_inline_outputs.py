"""Files the API process's own calls store (engine/inline.py) pass the same content-type check as workers'
outputs: a type that could carry script is refused before anything is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from genmill.app import Runtime
from genmill.domain.records import Account
from genmill.errors import InvalidRequest
from genmill.settings import Settings
from genmill.store.tables import blobs


def stored_files(runtime: Runtime, task_id: str) -> int:
    with runtime.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(blobs.c.task_id == task_id)).scalar_one())


def test_an_inline_call_cannot_store_a_page_but_stores_an_image(tmp_path: Path) -> None:
    runtime = Runtime(Settings(data_dir=tmp_path, public_url="http://testserver", workers=0))
    try:
        account: Account = runtime.store.accounts.create_account("one", credits=10**9)
        entry = runtime.catalog.get("gpt-image-1", "image_generation")
        assert entry is not None
        claim = runtime.inline.open(
            account, entry, entry.input_model.model_validate({"model": "gpt-image-1", "prompt": "a fox"})
        )
        with pytest.raises(InvalidRequest, match="text/html"):
            runtime.inline.save_output(claim.task, b"<script>alert(1)</script>", ext="html", content_type="text/html")
        assert stored_files(runtime, claim.task.task_id) == 0
        url = runtime.inline.save_output(claim.task, b"\x89PNG\r\n\x1a\n", ext="png", content_type="image/png")
        assert url.startswith("http://testserver/files/") and stored_files(runtime, claim.task.task_id) == 1
    finally:
        runtime.store.close()
