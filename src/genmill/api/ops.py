"""Operations routes beside `/healthz`: `/readyz`, `/metrics`, and the interactive docs served offline.

`/docs` (Swagger UI) and `/redoc` load their scripts and styles from `/docs-assets/`, files shipped in the
`fastapi-offline` package (Swagger UI and ReDoc, MIT and Apache-2.0 licensed), so they work on a server with no
Internet access; FastAPI's defaults fetch them from a CDN and show a blank page offline.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from genmill.engine.metrics import ServerMetrics
from genmill.engine.readiness import ReadinessCheck
from genmill.errors import GenmillError

ASSETS = "/docs-assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))

router = APIRouter(tags=["ops"])


class NotReady(GenmillError):
    """A 503 whose detail is the readiness checks."""

    status_code = 503


class ReadyOut(BaseModel):
    ready: bool
    database: bool = Field(..., description="The database answered a query.")
    migrations: str = Field(..., description="'at head (NNNN)', or the revision the database is at.")
    public_workers: int = Field(..., description="In-process worker threads plus remote public workers seen lately.")
    reasons: list[str] = Field(..., description="Why the replica is not ready; empty when it is.")


@router.get(
    "/readyz",
    summary="Readiness: database, migrations at head, a worker for the public pool",
    description=(
        "200 with the checks when this replica can take tasks; otherwise 503 in the error envelope, its `detail`"
        " the same checks and `reasons` saying what is missing. `/healthz` is the liveness check."
    ),
)
async def readyz(request: Request) -> ReadyOut:
    check: ReadinessCheck = request.app.state.readiness
    result = await run_in_threadpool(check.check)
    body = ReadyOut(
        ready=result.ready,
        database=result.database,
        migrations=result.migrations,
        public_workers=result.public_workers,
        reasons=result.reasons,
    )
    if not result.ready:
        raise NotReady("not ready: " + "; ".join(result.reasons), detail=body.model_dump())
    return body


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    server_metrics: ServerMetrics = request.app.state.metrics
    text = await run_in_threadpool(server_metrics.exposition)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


def install_docs(app: FastAPI) -> None:
    """Serve `/docs` and `/redoc` from the package's own assets (create the app with docs_url=None, redoc_url=None)."""
    app.mount(ASSETS, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger_ui, include_in_schema=False, methods=["GET"])
    app.add_api_route("/redoc", redoc, include_in_schema=False, methods=["GET"])
