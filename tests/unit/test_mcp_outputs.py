"""What `get_task_outputs` finds in a task's output, and the task ids the MCP server refuses to put in a path."""

from __future__ import annotations

import pytest

from genmill.mcp_server.connection import GenmillAPIError, _path_segment
from genmill.mcp_server.outputs import output_files


def test_every_url_in_an_output_is_found_once_with_its_field_and_kind() -> None:
    output = {
        "image_url": "http://h/files/a.png",
        "image_urls": ["http://h/files/a.png", "https://h/files/b.webp"],
        "songs": [{"audio_url": "http://h/files/s.mp3", "title": "not a url"}],
        "video_url": "http://h/files/v.mp4?sig=1",
        "model_file": "http://h/files/m.glb",
        "seed": 3,
    }
    found = [(f.field, f.kind, f.mime_type, f.name) for f in output_files(output)]
    assert found == [
        ("image_url", "image", "image/png", "a.png"),
        ("image_urls[1]", "image", "image/webp", "b.webp"),
        ("songs[0].audio_url", "audio", "audio/mpeg", "s.mp3"),
        ("video_url", "video", "video/mp4", "v.mp4"),
        ("model_file", "file", "model/gltf-binary", "m.glb"),
    ]


def test_an_output_without_urls_has_no_files() -> None:
    assert output_files({"text": "hello", "urls": []}) == []
    assert output_files(None) == []


@pytest.mark.parametrize("task_id", ["", "a/b", "../x", "a?b", "..", "a%2Fb"])
def test_a_task_id_that_would_leave_its_path_segment_is_refused(task_id: str) -> None:
    with pytest.raises(GenmillAPIError, match="task_id"):
        _path_segment(task_id)
