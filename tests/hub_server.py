"""A loopback Hugging Face Hub for the `genmill models pull` tests: tiny repositories served through the endpoints
huggingface_hub 2.4 calls, so the real client runs end to end with HF_ENDPOINT pointing here.

    GET  /api/models/{repo}/revision/{rev}        model info: id, sha, siblings
    GET  /api/models/{repo}/tree/{rev}            the recursive file listing (type, path, size, oid)
    HEAD /{repo}/resolve/{rev}/{path}             ETag, X-Repo-Commit, Content-Length
    GET  /{repo}/resolve/{rev}/{path}             the bytes, honouring `Range: bytes=N-` with a 206

No Xet header is ever sent, so the client downloads over plain HTTP. A repository can be gated (every request is
refused with 401 and `X-Error-Code: GatedRepo`, as the Hub answers without an accepted licence, unless the
request carries the accepted token). A file can be broken (listed, but answered 404) or cut: its first GET sends
the headers of the whole file, some bytes, then drops the connection. Every request is recorded for the tests.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<kind>revision|tree)/(?P<rev>[^/?]+)")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class Hub:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    gated: dict[str, str] = field(default_factory=dict)
    """Gated repository -> the token that has accepted its licence."""
    cuts: dict[tuple[str, str], int] = field(default_factory=dict)
    """(repo, path) -> bytes sent before the first GET of that file is cut off."""
    broken: set[tuple[str, str]] = field(default_factory=set)
    """(repo, path) listed in the tree but answered 404 when fetched, to fail a download part-way."""
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_folder(self, repo: str, folder: Path) -> None:
        """Serve every file under `folder` as repository `repo`."""
        self.repos[repo] = {
            path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }

    def commit(self, repo: str) -> str:
        digest = hashlib.sha1()
        for path, data in sorted(self.repos[repo].items()):
            digest.update(path.encode() + hashlib.sha256(data).digest())
        return digest.hexdigest()

    def requested(self, repo: str, path: str, method: str = "GET") -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == f"/{repo}/resolve/{self.commit(repo)}/{path}"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read `Hub.seen` instead."""

    def do_GET(self) -> None:
        self.answer(body=True)

    def do_HEAD(self) -> None:
        self.answer(body=False)

    def answer(self, *, body: bool) -> None:
        hub = self.server.hub
        path = unquote(urlsplit(self.path).path)
        with hub.lock:
            hub.seen.append(Seen(self.command, path, self.headers.get("Range"), self.headers.get("Authorization")))
        match = API.match(path) or RESOLVE.match(path)
        repo = match["repo"] if match else ""
        if repo not in hub.repos:
            self.send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, body=body)
            return
        if repo in hub.gated and self.headers.get("Authorization") != f"Bearer {hub.gated[repo]}":
            message = f"Access to model {repo} is restricted. You must have access to it and be authenticated."
            self.send(
                401,
                json.dumps({"error": message}).encode(),
                {"X-Error-Code": "GatedRepo", "X-Error-Message": message},
                body=body,
            )
            return
        files, commit = hub.repos[repo], hub.commit(repo)
        if match and match.re is API and match["kind"] == "revision":
            info = {"id": repo, "sha": commit, "private": False, "siblings": [{"rfilename": name} for name in files]}
            self.send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body=body)
        elif match and match.re is API:
            tree = [
                {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for name, data in files.items()
            ]
            self.send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, body=body)
        elif match and match["path"] in files and (repo, match["path"]) not in hub.broken:
            self.resolve(repo, commit, match["path"], files[match["path"]], body=body)
        else:
            self.send(404, b'{"error": "Entry not found"}', {"X-Error-Code": "EntryNotFound"}, body=body)

    def resolve(self, repo: str, commit: str, name: str, data: bytes, *, body: bool) -> None:
        headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Repo-Commit": commit}
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if wanted and body:
            start = int(wanted[1])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self.send(206, data[start:], headers, body=body)
            return
        cut = self.server.hub.cuts.pop((repo, name), None) if body else None
        if cut is None:
            self.send(200, data, headers, body=body)
            return
        self.send_response(200)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data[:cut])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(2)

    def send(self, status: int, payload: bytes, headers: dict[str, str], *, body: bool) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: Hub) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.hub = hub


@contextmanager
def serve_hub(hub: Hub) -> Iterator[Hub]:
    """Run `hub` on a random loopback port for the duration of the block; `hub.url` is its HF_ENDPOINT."""
    server = HubServer(hub)
    thread = threading.Thread(target=server.serve_forever, name="hub-server", daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
