"""The task page follows a running task's progress as the worker reports it, and shows whatever a task holds as
text: markup in an input or an output never becomes an element, let alone runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.browser.dashboard import LiveServer, shot, sign_in

pytestmark = pytest.mark.browser

MARKUP = '<img src="/nowhere.png" onerror="window.injected = true"><script>window.injected = true</script>'


def run_echo(page: Any, server: LiveServer, payload: Any, sleep_ms: int) -> None:
    sign_in(page, server.url, server.key)
    page.click("nav a[href='#/playground']")
    page.select_option("#entry-select", label="genmill/echo · echo")
    page.fill("#field-payload", json.dumps(payload))
    page.fill("#field-sleep_ms", str(sleep_ms))
    page.wait_for_selector("#price[data-credits='0']")  # echo is free, and the quote says so
    page.click("#run-task")


def test_the_progress_bar_moves_while_the_task_runs(page: Any, server: LiveServer, artifacts: Path) -> None:
    run_echo(page, server, {"hello": "world"}, sleep_ms=4000)
    page.wait_for_selector("#task-detail [data-status=processing]")
    seen: list[float] = []
    for _ in range(2):  # two different fractions between 0 and 1, each from a later event than the last
        page.wait_for_function(
            "seen => { const p = document.querySelector('#task-detail progress.task-progress');"
            " return p && p.hasAttribute('value') && p.value > 0 && p.value < 1 && !seen.includes(p.value); }",
            arg=seen,
        )
        seen.append(page.eval_on_selector("#task-detail progress.task-progress", "p => p.value"))
    assert seen[1] > seen[0]
    shot(page, artifacts, "11-echo-progress")
    page.wait_for_selector("#task-detail [data-status=completed]")
    assert json.loads(page.inner_text("#task-detail pre.json"))["echo"] == {"hello": "world"}


def test_markup_in_a_task_is_shown_as_text(page: Any, server: LiveServer, artifacts: Path) -> None:
    run_echo(page, server, MARKUP, sleep_ms=0)
    page.wait_for_selector("#task-detail [data-status=completed]")
    assert json.dumps(MARKUP) in page.inner_text("#task-detail")  # shown as text, in the output's JSON
    assert page.query_selector_all("#task-detail img, #task-detail script") == []
    assert page.evaluate("window.injected === undefined")
    task_id = page.url.rsplit("/", 1)[-1]
    page.click("a[href='#/tasks']")
    card = page.wait_for_selector(f"#task-list [data-task-id='{task_id}']")
    assert card.query_selector_all("img, script") == []
    assert page.evaluate("window.injected === undefined")
    shot(page, artifacts, "12-markup-as-text")
