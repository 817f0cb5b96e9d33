"""The rules of `genmill serve --processes`: defaults per database, SQLite's refusal, and the shared port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from genmill.cli import main
from genmill.processes import cores, default_processes, listening_sockets, processes_problem


def test_postgresql_defaults_to_one_process_per_core_and_sqlite_to_one() -> None:
    assert default_processes("postgresql") == cores()
    assert default_processes("sqlite") == 1


def test_sqlite_refuses_more_than_one_process_and_says_why() -> None:
    assert processes_problem(1, "sqlite") is None
    assert processes_problem(4, "postgresql") is None
    problem = processes_problem(2, "sqlite")
    assert problem is not None and "--processes 2 needs PostgreSQL" in problem
    assert processes_problem(0, "postgresql") == "--processes must be at least 1"


def test_genmill_serve_refuses_processes_on_sqlite_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GENMILL_DATABASE_URL", raising=False)
    assert main(["serve", "--data-dir", str(tmp_path), "--processes", "2"]) == 2
    assert "needs PostgreSQL" in capsys.readouterr().err
    assert not (tmp_path / "genmill.db").exists()  # nothing was started or migrated


def test_the_sockets_share_one_port_and_each_accepts_connections() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1 and ports != {0}
        port = ports.pop()
        accepted = set()
        for sock in sockets:
            sock.settimeout(0.05)
        for _ in range(300):  # the kernel picks a socket by the client's port: every one gets some
            with socket.create_connection(("127.0.0.1", port)):
                for index, sock in enumerate(sockets):
                    try:
                        sock.accept()[0].close()
                        accepted.add(index)
                        break
                    except TimeoutError:
                        continue
            if len(accepted) == len(sockets):
                break
        assert accepted == {0, 1, 2}
    finally:
        for sock in sockets:
            sock.close()


def test_a_port_another_server_listens_on_is_refused_not_shared() -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # even one that would allow sharing
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError):
            listening_sockets("127.0.0.1", other.getsockname()[1], 2)
