"""Run the MCP server on a transport: stdio for a local agent, streamable HTTP for several or remote ones.

The connection to genmill lives exactly as long as the server, inside the same event loop.
"""

from __future__ import annotations

import logging
import sys

import anyio

from genmill.mcp_server.connection import ClientGenmillConnection
from genmill.mcp_server.tools import build_server

log = logging.getLogger("genmill.mcp")


def run_server(*, url: str, key: str, transport: str, host: str, port: int, max_inline_bytes: int) -> None:
    async def main() -> None:
        connection = ClientGenmillConnection(url, key)
        server = build_server(connection, max_inline_bytes=max_inline_bytes)
        try:
            if transport == "stdio":
                await server.run_stdio_async()
            else:
                if host not in {"127.0.0.1", "localhost", "::1"}:
                    log.warning("MCP over HTTP on %s: anyone who reaches it acts with this server's key", host)
                print(f"genmill MCP server on http://{host}:{port}/mcp for {url}", file=sys.stderr)
                await server.run_streamable_http_async(host=host, port=port)
        finally:
            await connection.aclose()

    anyio.run(main)
