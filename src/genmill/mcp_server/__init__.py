"""`genmill mcp`: a Model Context Protocol server that lets an agent run genmill tasks (docs/mcp.md).

It is a client of a genmill server's HTTP API, holding the operator's key in its own environment so the agent
never sees it. This module only registers the command; the `mcp` SDK (the `mcp` extra) is imported when the
command runs, so the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_HTTP_PORT = 8765


def add_mcp_command(sub: Any) -> None:
    """Add `genmill mcp` to the CLI's subcommands."""
    mcp = sub.add_parser("mcp", help="run an MCP server (stdio or streamable HTTP) for a genmill server")
    mcp.add_argument("--transport", choices=("stdio", "http"), default="stdio", help="default: stdio")
    mcp.add_argument("--url", default=None, help=f"the genmill server (env GENMILL_URL, default {DEFAULT_URL})")
    mcp.add_argument("--key", default=None, help="its API key (env GENMILL_API_KEY; prefer the env: argv is public)")
    mcp.add_argument("--host", default="127.0.0.1", help="http transport: the address to listen on")
    mcp.add_argument(
        "--port", type=int, default=DEFAULT_HTTP_PORT, help=f"http transport (default {DEFAULT_HTTP_PORT})"
    )
    mcp.add_argument(
        "--max-inline-bytes",
        dest="max_inline_bytes",
        type=int,
        default=1_000_000,
        help="images up to this size are returned inline; larger ones and other media as links",
    )
    mcp.set_defaults(func=cmd_mcp)


def cmd_mcp(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("GENMILL_API_KEY", "")
    if not key:
        print("error: no API key: set GENMILL_API_KEY (or pass --key)", file=sys.stderr)
        return 2
    url = args.url or os.environ.get("GENMILL_URL") or DEFAULT_URL
    try:
        from genmill.mcp_server.run import run_server
    except ImportError as exc:
        print(f"error: genmill mcp needs the mcp extra (pip install 'genmill[mcp]'): {exc}", file=sys.stderr)
        return 2
    run_server(
        url=url,
        key=key,
        transport=args.transport,
        host=args.host,
        port=args.port,
        max_inline_bytes=args.max_inline_bytes,
    )
    return 0
