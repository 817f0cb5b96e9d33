"""A tiny but valid GLB (a tetrahedron), and a test backend that answers `Qubico/trellis` text-to-3d with it, so the
dashboard's 3D viewer can be shown a real binary glTF without model weights."""

from __future__ import annotations

import json
import struct
from typing import Any

from genmill.backends.base import Availability, Backend, RunContext
from genmill.domain.catalog import CatalogEntry, TaskInput

VERTICES = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
TRIANGLES = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]


def _pad(data: bytes, filler: bytes) -> bytes:
    return data + filler * (-len(data) % 4)


def tetrahedron_glb() -> bytes:
    """glTF 2.0 binary: one mesh of four triangles (float32 positions, uint16 indices) in one buffer."""
    positions = b"".join(struct.pack("<3f", *v) for v in VERTICES)
    indices = _pad(b"".join(struct.pack("<3H", *t) for t in TRIANGLES), b"\0")
    binary = positions + indices
    gltf: dict[str, Any] = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(positions), "target": 34962},
            {"buffer": 0, "byteOffset": len(positions), "byteLength": 2 * 3 * len(TRIANGLES), "target": 34963},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 1]},
            {"bufferView": 1, "componentType": 5123, "count": 3 * len(TRIANGLES), "type": "SCALAR"},
        ],
    }
    chunk_json = _pad(json.dumps(gltf, separators=(",", ":")).encode(), b" ")
    chunks = struct.pack("<I4s", len(chunk_json), b"JSON") + chunk_json + struct.pack("<I4s", len(binary), b"BIN\0")
    body = chunks + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


class TetrahedronMesh(Backend):
    """Answers any text-to-3d prompt with the same tetrahedron (the GLB shape of the real model's output)."""

    name = "test-tetrahedron"
    entries = (("Qubico/trellis", "text-to-3d"),)

    def availability(self) -> Availability:
        return Availability(True)

    def load(self) -> None:
        pass

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        ctx.log("a tetrahedron")
        return {"model_file": ctx.save_output(tetrahedron_glb(), ext="glb", content_type="model/gltf-binary")}
