"""The OpenAI-compatible API: `POST /v1/chat/completions` (plain and streamed), `POST /v1/images/generations`,
`GET /v1/models` and `GET /v1/models/{model}`.

Clients written for OpenAI (the `openai` SDK, PiAPI's `piapi-cli llm`) call these with `Authorization: Bearer
<genmill key>` (`X-API-Key` works too) and read OpenAI's shapes back, errors included: `{"error": {"message",
"type", "param", "code"}}` rather than the PiAPI envelope. Every call is a task run by `genmill.engine.chat`;
this module only maps HTTP onto it: the body in, the answer or its server-sent `chat.completion.chunk` events
out (then `data: [DONE]`), and a client that leaves mid-stream handed back to the engine to settle.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Request, Security
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from genmill.api.deps import API_KEY, ServicesDep, authenticate
from genmill.api.openapi import ERROR_DESCRIPTIONS, ErrorEnvelope
from genmill.backends.base import ServedBy
from genmill.domain.records import Account
from genmill.engine.chat import ChatRun
from genmill.engine.inline import invalid
from genmill.errors import BackendError, GenmillError, InputRejected

router = APIRouter(prefix="/v1", tags=["openai"])

_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object; `type` follows the status as OpenAI's own answers do."""
    kind, default_code = _TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": kind, "param": param, "code": code or default_code}}


def error_payload(exc: BaseException) -> tuple[dict[str, Any], int]:
    """A genmill error as OpenAI's error object and its status: a backend's failure is a 502 (the model's server
    failed), an input the model cannot read a 400, anything unexpected a 500 that reveals nothing."""
    if isinstance(exc, InputRejected):
        return error_body(400, exc.message, _param(exc.message)), 400
    if isinstance(exc, BackendError):
        return error_body(502, exc.message, code="upstream_error"), 502
    if not isinstance(exc, GenmillError):
        return error_body(500, "the server failed to answer"), 500
    param = exc.detail.get("param") if isinstance(exc.detail, dict) else None
    code = "model_not_found" if exc.status_code == 404 and param == "model" else None
    return error_body(exc.status_code, exc.message, param, code), exc.status_code


def error_response(exc: BaseException) -> JSONResponse:
    """`error_payload` as a response, with `Retry-After` where waiting helps."""
    body, status = error_payload(exc)
    retry_after = exc.retry_after if isinstance(exc, GenmillError) else None
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return JSONResponse(body, status_code=status, headers=headers)


def _param(message: str) -> str | None:
    head, sep, _ = message.partition(": ")
    return head if sep and " " not in head else None


BEARER = HTTPBearer(
    scheme_name="BearerKey",
    description="An account's API key as OpenAI's clients send it: `Authorization: Bearer <key>`.",
    auto_error=False,  # a missing key is OpenAI's 401 error object, not FastAPI's
)


def chosen_key(bearer: HTTPAuthorizationCredentials | None, x_api_key: str | None) -> str | None:
    """PiAPI's `X-API-Key` when sent, else the bearer token OpenAI's clients send."""
    if x_api_key and x_api_key.strip():
        return x_api_key
    return bearer.credentials if bearer is not None else None


async def _account(
    services: ServicesDep, bearer: HTTPAuthorizationCredentials | None, x_api_key: str | None, *, create: bool
) -> Account:
    key, account = await authenticate(chosen_key(bearer, x_api_key), services)
    (services.quotas.creates if create else services.quotas.reads).check(key)
    return account


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
ApiKeyDep = Annotated[str | None, Security(API_KEY)]


class OpenAIErrorObject(BaseModel):
    message: str = Field(..., description="What went wrong, naming the parameter or rule.")
    type: str = Field(..., examples=["invalid_request_error"])
    param: str | None = Field(None, description="The request parameter at fault, e.g. `messages[0].role`.")
    code: str | None = Field(None, examples=["model_not_found"])


class OpenAIError(BaseModel):
    """Every error of the OpenAI-compatible routes, in OpenAI's shape (not the PiAPI envelope)."""

    error: OpenAIErrorObject


_DESCRIPTIONS = {
    **ERROR_DESCRIPTIONS,
    401: "Missing or invalid API key (Authorization: Bearer <key>, or X-API-Key)",
    402: "Not enough available credits for the call's cap; nothing was created and the model was not called",
    404: "No such chat model here (`code`: model_not_found), or it is not served (the message says why)",
    502: "The model's server failed or could not be reached; the call's credits were released",
}


def openai_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for codes answered with OpenAI's error object (413 is the body limit's, in the envelope)."""
    return {
        code: {"model": ErrorEnvelope if code == 413 else OpenAIError, "description": _DESCRIPTIONS[code]}
        for code in codes
    }


@router.get(
    "/models",
    summary="The chat models this server answers, in OpenAI's list shape",
    responses=openai_errors(400, 401, 429, 503),
)
async def list_models(services: ServicesDep, bearer: BearerDep, x_api_key: ApiKeyDep) -> JSONResponse:
    try:
        await _account(services, bearer, x_api_key, create=False)
    except GenmillError as exc:
        return error_response(exc)
    data = [_model_object(name, served) for name, served in sorted(services.chat.listed() + services.images.listed())]
    return JSONResponse({"object": "list", "data": data})


@router.get(
    "/models/{model}",
    summary="One model this server answers, in OpenAI's shape",
    responses=openai_errors(400, 401, 404, 429, 503),
)
async def get_model(model: str, services: ServicesDep, bearer: BearerDep, x_api_key: ApiKeyDep) -> JSONResponse:
    try:
        await _account(services, bearer, x_api_key, create=False)
    except GenmillError as exc:
        return error_response(exc)
    for name, served in services.chat.listed() + services.images.listed():
        if name == model:
            return JSONResponse(_model_object(name, served))
    body = error_body(
        404, f"model: {model!r} is not answered here (GET /v1/models lists them)", "model", "model_not_found"
    )
    return JSONResponse(body, status_code=404)


def _model_object(name: str, served: ServedBy) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "genmill",
        "served_by": {"model": served.model, "stand_in": served.stand_in, "limits": list(served.limits)},
    }


@router.post(
    "/chat/completions",
    summary="A chat completion, or its stream of chat.completion.chunk events",
    response_model=None,
    responses=openai_errors(400, 401, 402, 404, 413, 429, 502, 503),
)
async def chat_completions(
    request: Request, services: ServicesDep, bearer: BearerDep, x_api_key: ApiKeyDep
) -> JSONResponse | StreamingResponse:
    try:
        account = await _account(services, bearer, x_api_key, create=True)
        body = await _json_object(request)
        run = await run_in_threadpool(services.chat.start, account, body)
    except Exception as exc:
        return error_response(exc)
    if not body.get("stream"):
        try:
            return JSONResponse(await run_in_threadpool(run.completion))
        except Exception as exc:
            return error_response(exc)
    chunks = run.chunks()
    try:  # the first chunk before any header: a model that cannot answer is still an HTTP error
        first = await run_in_threadpool(next, chunks, None)
    except Exception as exc:
        return error_response(exc)
    return ChatStream(run, chunks, first)


@router.post(
    "/images/generations",
    summary="Images from a prompt, in OpenAI's Images API shape",
    responses=openai_errors(400, 401, 402, 404, 413, 429, 502, 503),
)
async def image_generations(
    request: Request, services: ServicesDep, bearer: BearerDep, x_api_key: ApiKeyDep
) -> JSONResponse:
    try:
        account = await _account(services, bearer, x_api_key, create=True)
        body = await _json_object(request)
        return JSONResponse(await run_in_threadpool(services.images.generate, account, body))
    except Exception as exc:
        return error_response(exc)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise invalid("the body is not valid JSON", None) from None
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object", None)
    return body


def _event(value: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(value, separators=(',', ':'))}\n\n".encode()


class ChatStream(StreamingResponse):
    """Server-sent chunks of one chat run. However the response ends (done, failed, the client gone), the run is
    closed afterwards so the engine settles it once: a client that left stops the generation and pays for what
    was generated."""

    def __init__(self, run: ChatRun, chunks: Iterator[dict[str, Any]], first: dict[str, Any] | None) -> None:
        self.run = run
        super().__init__(
            self._events(chunks, first),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _events(self, chunks: Iterator[dict[str, Any]], first: dict[str, Any] | None) -> AsyncIterator[bytes]:
        chunk = first
        while chunk is not None:
            yield _event(chunk)
            try:
                chunk = await run_in_threadpool(next, chunks, None)
            except Exception as exc:  # the task failed mid-answer (credits released): say so, then end
                yield _event(error_payload(exc)[0])
                return
        yield b"data: [DONE]\n\n"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.run.close)
