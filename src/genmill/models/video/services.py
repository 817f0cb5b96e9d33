"""Open stand-ins on Wan for PiAPI's resold video services: Kling, Hailuo and Luma Dream Machine.

Served only where the operator enables them (GENMILL_STAND_INS=kling-wan, hailuo-wan, luma-wan or all), and every
task says before anyone pays that Wan runs, not the service named, with what it does not honour.
Kling's effects, virtual try-on and lip sync have no open equivalent here: they are served only through an
upstream provider (GENMILL_UPSTREAM_MODELS).
"""

from __future__ import annotations

from genmill.models.video import hailuo_catalog, kling_catalog, luma_catalog

KLING_BACKEND, HAILUO_BACKEND, LUMA_BACKEND = "kling-wan", "hailuo-wan", "luma-wan"

UPSTREAM_REASON = (
    "Kling's {what} is not served locally: there is no open model for it here; forward it to an upstream "
    "provider (GENMILL_UPSTREAM_MODELS=kling with GENMILL_UPSTREAM_URL and GENMILL_UPSTREAM_API_KEY)"
)
UPSTREAM_ONLY: dict[str, str] = {
    f"{kling_catalog.MODEL}/effects": UPSTREAM_REASON.format(what="effects (squish, expansion)"),
    f"{kling_catalog.MODEL}/ai_try_on": UPSTREAM_REASON.format(what="virtual try-on"),
    f"{kling_catalog.MODEL}/lip_sync": UPSTREAM_REASON.format(what="lip sync"),
}
"""Entries nothing local runs, with the reason `genmill models` and a refused task give."""

_WAN_FOLDERS = "wan2.1-t2v-14b/ (or wan2.2-t2v-a14b/ or wan2.1-t2v-1.3b/) and wan2.1-i2v-14b/ (or wan2.2-i2v-a14b/)"
VIDEO_SERVICE_WEIGHTS: dict[str, str] = {
    kling_catalog.MODEL: f"{_WAN_FOLDERS}, wan2.1-flf2v-14b/ for image_tail_url (a stand-in: Wan, with "
    f"GENMILL_STAND_INS={KLING_BACKEND})",
    kling_catalog.TURBO_MODEL: f"{_WAN_FOLDERS} (a stand-in: Wan, with GENMILL_STAND_INS={KLING_BACKEND})",
    hailuo_catalog.MODEL: f"{_WAN_FOLDERS} (a stand-in: Wan, with GENMILL_STAND_INS={HAILUO_BACKEND})",
    luma_catalog.MODEL: f"{_WAN_FOLDERS}, wan2.1-flf2v-14b/ for an end frame (a stand-in: Wan, with "
    f"GENMILL_STAND_INS={LUMA_BACKEND})",
}
"""What to put under the models folder for each service's Wan stand-in (`why_not_served`)."""
