"""Each sandbox backend run directly: the network stays shut unless a job is allowed it, and the
driver's limits hold inside."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from safepip import sandbox
from safepip.build import DRIVER, _driver_limits

BACKENDS = {b.name: b for b in sandbox.backends() if b.name != "sandbox-exec"}

CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).sendall(b"hello")
    print("connected")
except OSError as exc:
    print("blocked", exc)
"""


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, list[bytes]]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.settimeout(0.1)
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.settimeout(2)
            got.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock, got
    stop.set()
    thread.join(timeout=5)
    sock.close()


def _job(tmp_path: Path, argv: tuple[str, ...], *, network: bool = False) -> sandbox.Job:
    work = tmp_path / "work"
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    return sandbox.Job(
        argv=argv,
        cwd=work,
        writable=work,
        readable=(Path(sys.base_prefix), Path(sys.executable), DRIVER),
        env={"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work / "tmp")},
        log=tmp_path / "log",
        network=network,
    )


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_network_only_with_an_explicit_allowance(
    name: str, tmp_path: Path, listener: tuple[socket.socket, list[bytes]]
) -> None:
    sock, got = listener
    port = str(sock.getsockname()[1])
    argv = (sys.executable, "-I", "-S", "-c", CONNECT, port)
    backend = BACKENDS[name]
    assert sandbox.self_test(backend) is None
    shut = sandbox.run(backend, _job(tmp_path / "a", argv), sandbox.Limits(timeout=30))
    assert shut.returncode == 0 and "blocked" in (tmp_path / "a" / "log").read_text()
    assert got == []
    allowed = sandbox.run(
        backend, _job(tmp_path / "b", argv, network=True), sandbox.Limits(timeout=30)
    )
    assert allowed.returncode == 0, (tmp_path / "b" / "log").read_text()
    assert "connected" in (tmp_path / "b" / "log").read_text()
    assert got == [b"hello"]


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_memory_cap_holds_inside(name: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "backend").mkdir(parents=True)
    (work / "backend" / "greedy.py").write_text(
        "def get_requires_for_build_wheel(config_settings=None):\n"
        "    blob = bytearray(768 * 1024 * 1024)\n"
        "    return [str(len(blob))]\n"
    )
    limits = sandbox.Limits(timeout=60, memory_bytes=256 << 20)
    request = work / "request.json"
    request.write_text(
        json.dumps(
            {
                "hook": "get_requires_for_build_wheel",
                "args": [],
                "backend": "greedy",
                "backend_path": ["backend"],
                "source": str(work),
                "result": str(work / "result.json"),
                "limits": _driver_limits(limits),
            }
        )
    )
    job = _job(tmp_path, (sys.executable, "-I", "-S", "-B", str(DRIVER), str(request)))
    done = sandbox.run(BACKENDS[name], job, limits)
    result = json.loads((work / "result.json").read_text())
    assert done.returncode == 1
    assert result["error"].startswith("MemoryError"), result


# Landlock cannot give a build a private /dev/shm (no mount namespace), and sharing the user's
# would expose other processes' shared memory: POSIX semaphores stay unavailable there.
@pytest.mark.parametrize("name", ["bwrap", "userns"])
def test_multiprocessing_works_in_namespace_backends(name: str, tmp_path: Path) -> None:
    code = "import multiprocessing as m\nwith m.Pool(2) as p: print(sum(p.map(abs, range(10))))"
    done = sandbox.run(
        BACKENDS[name], _job(tmp_path, (sys.executable, "-I", "-S", "-c", code)), sandbox.Limits()
    )
    assert done.returncode == 0, (tmp_path / "log").read_text()
    assert (tmp_path / "log").read_text().strip() == "45"
