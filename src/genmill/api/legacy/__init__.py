"""PiAPI's legacy (pre-Unified) endpoints, each mapped onto the unified task by `genmill.domain.legacy`."""

from __future__ import annotations

from genmill.api.legacy import faceswap, midjourney, video

ROUTERS = (faceswap.router, midjourney.router, video.router)

__all__ = ["ROUTERS"]
