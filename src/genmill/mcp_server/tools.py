"""The MCP tools: genmill's catalog, tasks, outputs and credits as an agent sees them.

Each tool is a thin translation of one or two API calls (through `GenmillConnection`), shaped for a model to read:
the catalog with each entry's input JSON schema and list price so an agent can build a valid input without
documentation; tasks as genmill answers them; outputs as MCP image content when small enough to show inline and as
resource links otherwise. A genmill refusal (bad input, unknown task, wrong key, too few credits) comes back as an
MCP tool error whose text is genmill's own message, which names the field and the rule.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ContentBlock, ImageContent, ResourceLink, TextContent
from pydantic import Field

from genmill.mcp_server.connection import GenmillAPIError, GenmillConnection
from genmill.mcp_server.outputs import OutputFile, output_files

CREDITS_PER_USD = 10_000_000
MAX_WAIT_SECONDS = 600.0
DEFAULT_MAX_INLINE_BYTES = 1_000_000
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})

INSTRUCTIONS = """\
Runs generative-AI tasks (images, video, audio, 3D, text) on a genmill server.
1. list_models: find the model and task_type, read its input_schema and price (credits; 10,000,000 = 1 USD).
2. create_task with an input that follows that schema. Media inputs take an http(s) URL, a data: URI or base64.
3. wait_for_task (bounded; call again if it is still running), then get_task_outputs for the images, audio,
   video or files. account_credits tells what is left to spend; cancel_task stops a task still waiting."""

T = TypeVar("T")


async def _calling(call: Callable[[], Awaitable[T]]) -> T:
    """Run one API call, turning genmill's refusal into a tool error with its message (no traceback)."""
    try:
        return await call()
    except GenmillAPIError as exc:
        raise ToolError(exc.message) from None


def build_server(
    connection: GenmillConnection, *, max_inline_bytes: int = DEFAULT_MAX_INLINE_BYTES, poll_seconds: float = 0.5
) -> MCPServer:
    """The MCP server whose tools act on `connection`'s genmill with its key."""
    server: MCPServer = MCPServer("genmill", instructions=INSTRUCTIONS)

    @server.tool()
    async def list_models(
        model: Annotated[str, Field(description="only this model (e.g. Qubico/image-toolkit); empty for all")] = "",
        task_type: Annotated[str, Field(description="only this task_type; empty for all")] = "",
        include_input_schemas: Annotated[bool, Field(description="include each entry's input JSON schema")] = True,
        only_available: Annotated[bool, Field(description="leave out entries this server does not run")] = False,
    ) -> dict[str, Any]:
        """List the (model, task_type) pairs this genmill knows: whether it runs each, with which model, its list
        price in credits (10,000,000 credits = 1 USD; null when it depends on the input) and its input schema."""
        entries = await _calling(connection.models)
        chosen = [
            _model_summary(entry, include_input_schemas)
            for entry in entries
            if (not model or entry.get("model") == model)
            and (not task_type or entry.get("task_type") == task_type)
            and (entry.get("available") or not only_available)
        ]
        if not chosen and (model or task_type):
            known = sorted({str(e.get("model")) for e in entries})
            raise ToolError(f"no catalog entry matches model={model!r} task_type={task_type!r}; models: {known}")
        return {"models": chosen, "credits_per_usd": CREDITS_PER_USD}

    @server.tool()
    async def create_task(
        model: Annotated[str, Field(description="the model, as list_models names it")],
        task_type: Annotated[str, Field(description="the task type, as list_models names it")],
        input: Annotated[dict[str, Any], Field(description="the input, following the entry's input_schema")],
    ) -> dict[str, Any]:
        """Create a task; its price is reserved from the account's credits now. Answers the task (task_id,
        status, the input with defaults filled in, and meta.usage with the credits reserved)."""
        return await _calling(lambda: connection.create_task(model, task_type, input))

    @server.tool()
    async def get_task(task_id: Annotated[str, Field(description="a task_id from create_task")]) -> dict[str, Any]:
        """The task as it stands now: status (pending, processing, completed, failed, cancelled, staged), its
        output once completed, its error once failed, logs and progress in detail."""
        return await _calling(lambda: connection.task(task_id))

    @server.tool()
    async def wait_for_task(
        task_id: Annotated[str, Field(description="a task_id from create_task")],
        ctx: Context,
        timeout_seconds: Annotated[
            float, Field(ge=0, le=MAX_WAIT_SECONDS, description="give up waiting after this long (at most 600)")
        ] = 120.0,
    ) -> dict[str, Any]:
        """Wait until the task completes, fails or is cancelled, or until the timeout (the task keeps running
        then: call again). Reports progress while waiting. Answers the task and whether it finished."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            task = await _calling(lambda: connection.task(task_id))
            status = str(task.get("status", ""))
            fraction = 1.0 if status in TERMINAL_STATUSES else _progress_of(task)
            await ctx.report_progress(fraction * 100, 100, message=_progress_message(task))
            if status in TERMINAL_STATUSES:
                return {"finished": True, "task": task}
            if time.monotonic() >= deadline:
                return {"finished": False, "task": task, "hint": "still running: call wait_for_task again"}
            await anyio.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))

    @server.tool()
    async def cancel_task(task_id: Annotated[str, Field(description="a task_id from create_task")]) -> dict[str, Any]:
        """Cancel a task that has not started running (pending or staged); its reserved credits are released.
        A task already running or finished cannot be cancelled and the error says so."""
        return await _calling(lambda: connection.cancel_task(task_id))

    @server.tool()
    async def get_task_outputs(
        task_id: Annotated[str, Field(description="a task_id of a completed task")],
        max_inline_bytes: Annotated[
            int, Field(ge=0, le=20_000_000, description="images up to this size come back inline")
        ] = max_inline_bytes,
    ) -> list[ContentBlock]:
        """The files a completed task produced: images no larger than max_inline_bytes as image content, every
        other file (and larger images) as a link to download, plus the task's text output as JSON."""
        task = await _calling(lambda: connection.task(task_id))
        status = task.get("status")
        if status != "completed":
            error = (task.get("error") or {}).get("message") if isinstance(task.get("error"), dict) else None
            reason = f": {error}" if error else ""
            raise ToolError(f"task {task_id} is {status}{reason}; outputs exist once it has completed")
        output = task.get("output")
        blocks: list[ContentBlock] = [TextContent(type="text", text=json.dumps({"output": output}, indent=2))]
        for file in output_files(output):
            blocks.append(await _file_block(connection, file, task_id, max_inline_bytes))
        return blocks

    @server.tool()
    async def account_credits() -> dict[str, Any]:
        """The account behind this server's key: credits available, reserved by running tasks, and their worth
        in USD (10,000,000 credits = 1 USD)."""
        info = await _calling(connection.account)
        pack = dict(info.get("credit_pack_info") or {})
        return {
            "account_id": info.get("account_id"),
            "account_name": info.get("account_name"),
            "credits": pack,
            "available_usd": info.get("equivalent_in_usd"),
        }

    return server


async def _file_block(
    connection: GenmillConnection, file: OutputFile, task_id: str, max_inline_bytes: int
) -> ContentBlock:
    """An image small enough as image content (what the server served, not what the URL suggests), else a link."""
    if file.kind == "image" and max_inline_bytes > 0:
        try:
            fetched = await connection.download(file.url, max_inline_bytes)
        except GenmillAPIError as exc:
            raise ToolError(exc.message) from None
        if fetched.complete and fetched.content_type.startswith("image/"):
            data = base64.b64encode(fetched.data).decode()
            return ImageContent(type="image", data=data, mime_type=fetched.content_type)
    return ResourceLink(
        type="resource_link",
        uri=file.url,
        name=file.name,
        mime_type=file.mime_type,
        description=f"{file.field} of task {task_id}",
    )


def _model_summary(entry: dict[str, Any], include_schema: bool) -> dict[str, Any]:
    price = entry.get("list_price_credits")
    summary = {
        "model": entry.get("model"),
        "task_type": entry.get("task_type"),
        "description": entry.get("description", ""),
        "available": entry.get("available"),
        "serving_now": entry.get("serving_now"),
        "served_by": entry.get("served_by"),
        "reason": entry.get("reason") or None,
        "list_price_credits": price,
        "list_price_usd": price / CREDITS_PER_USD if isinstance(price, int) else None,
    }
    if include_schema:
        summary["input_schema"] = entry.get("input_schema")
    return summary


def _progress_of(task: dict[str, Any]) -> float:
    detail = task.get("detail")
    value = detail.get("progress") if isinstance(detail, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0


def _progress_message(task: dict[str, Any]) -> str:
    detail = task.get("detail")
    note = detail.get("note") if isinstance(detail, dict) else None
    status = str(task.get("status", ""))
    return f"{status}: {note}" if note else status
