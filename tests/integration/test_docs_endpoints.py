"""Every HTTP endpoint genmill serves is documented: its path appears in docs/ (api.md for the client API,
workers.md for the worker protocol, and the pages of the other surfaces), so a route cannot ship unexplained."""

from __future__ import annotations

from pathlib import Path

from fastapi.routing import APIRoute

from genmill.app import create_app
from genmill.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"
FRAMEWORK_PAGES = {"/docs/oauth2-redirect"}
"""FastAPI's own helper page for Swagger UI's OAuth flow (genmill uses API keys), not an endpoint of genmill's."""


def test_every_route_is_documented(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, public_url="http://testserver"), run_workers=False)
    documented = "\n".join(page.read_text() for page in sorted(DOCS.glob("*.md")))
    paths = {route.path for route in app.routes if isinstance(route, APIRoute) or hasattr(route, "path")}
    missing = sorted(
        path for path in paths - FRAMEWORK_PAGES if f"`{path}" not in documented and path not in documented
    )
    assert not missing, f"routes not named anywhere in docs/: {missing}"
