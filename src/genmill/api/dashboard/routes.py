"""Serve the dashboard's files with a strict Content Security Policy.

The dashboard is a small vanilla-JS application of static files in `static/`: nothing is rendered on the server
with user data, so there is no template to escape; the scripts build the page with DOM text nodes only. Every
answer carries a CSP that allows scripts and styles from this origin alone (no inline script, no eval), so a task
output or a model's text that slipped markup into the page still could not run anything. Two narrow allowances
serve the vendored 3D viewer: `'wasm-unsafe-eval'` lets it compile its WebAssembly mesh decoder (it does not allow
JavaScript's eval), and one inline style is allowed by its hash. Task outputs are shown
by their URLs (`/files/...` is served with its own sandboxing CSP and nosniff, api/files.py).
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from genmill.errors import NotFound

router = APIRouter(include_in_schema=False)

STATIC = resources.files("genmill.api.dashboard") / "static"

CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "txt": "text/plain; charset=utf-8",
}


MODEL_VIEWER_STYLE = "'sha256-PXtZZkJMMyc18o/DN1ZEFOJ2qEGq95IQbVaJFMOXOb0='"
"""The one inline <style> the vendored 3D viewer (model-viewer.min.js) writes, allowed by its hash alone."""


def csp(output_origin: str) -> str:
    """Scripts, styles and API calls from this origin only; images, audio, video and 3D models also from where the
    outputs are served (GENMILL_PUBLIC_URL may name another host than the one the browser used)."""
    media = f"'self' blob: data: {output_origin}".strip()
    return (
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; "
        f"style-src 'self' {MODEL_VIEWER_STYLE}; "
        f"img-src {media}; media-src {media}; connect-src 'self' blob: {output_origin}".strip()
        + "; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    )


def _output_origin(request: Request) -> str:
    files = request.app.state.services.files
    parts = urlsplit(str(getattr(files, "base_url", "") or ""))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _asset(request: Request, name: str) -> Response:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext not in CONTENT_TYPES or "/" in name or name.startswith("."):
        raise NotFound(f"no dashboard file {name!r}")
    file = STATIC / name
    if not file.is_file():
        raise NotFound(f"no dashboard file {name!r}")
    headers = {
        "Content-Security-Policy": csp(_output_origin(request)),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return Response(file.read_bytes(), media_type=CONTENT_TYPES[ext], headers=headers)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/dashboard")
def dashboard_no_slash() -> RedirectResponse:
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/dashboard/")
def index(request: Request) -> Response:
    return _asset(request, "index.html")


@router.get("/dashboard/{name}")
def asset(name: str, request: Request) -> Response:
    return _asset(request, name)
