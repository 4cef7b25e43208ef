"""Network faults from a misbehaving index on 127.0.0.1: each ends in success after retries or in a
clear error (exit 1 or 3), never a traceback, a hang past --timeout, or a partial install."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from safepip.cli import main
from tests.faultserver import (
    HTTPSIndexServer,
    drip,
    make_self_signed_cert,
    redirect,
    reply,
    reset_mid_body,
    stall,
    status_then_serve,
    truncated_body,
)
from tests.kit import Index, IndexFile, IndexServer

LIB = "lib-1.0-py3-none-any.whl"
Installer = Callable[..., "Run"]


@pytest.fixture
def index() -> Index:
    idx = Index(pep658=True)  # metadata from .metadata files: the wheel path sees only downloads
    idx.wheel("app", "1.0", requires=["lib"])
    # Big enough that a fraction of it is many TCP segments.
    idx.wheel("lib", "1.0", files={"lib/__init__.py": b"# padding\n" * 20_000})
    return idx


@pytest.fixture
def lib(index: Index) -> IndexFile:
    found = index.find(LIB)
    assert found is not None
    return found


class Run:
    def __init__(self, code: int, out: str, err: str, seconds: float, target: Path) -> None:
        self.code, self.out, self.err, self.seconds, self.target = code, out, err, seconds, target

    @property
    def installed(self) -> set[str]:
        if not self.target.exists():
            return set()
        return {p.name for p in self.target.iterdir()}


@pytest.fixture
def install(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> Iterator[Installer]:
    counter = iter(range(100))

    def run(index_url: str, *extra: str, dry_run: bool = False) -> Run:
        target = tmp_path / f"target{next(counter)}"
        start = time.monotonic()
        # --verify-files: the dry run downloads and verifies every file, as an install would.
        where = ["--dry-run", "--verify-files"] if dry_run else ["--target", str(target)]
        # A cache of its own: pip computes its default cache directory once per process, so
        # in-process runs would otherwise share the first test's verified files.
        cache = ["--cache-dir", str(tmp_path / "cache")]
        argv = ["install", "--python", sys.executable, *where, *cache, "-i", index_url, *extra]
        code = main([*argv, "app"])
        seconds = time.monotonic() - start
        out, err = capfd.readouterr()
        return Run(code, out, err, seconds, target)

    yield run


def _assert_clean_failure(run: Run, code: int, *words: str) -> None:
    assert run.code == code, run.err
    assert "Traceback" not in run.err
    assert run.err.startswith("error: ") and "hint:" in run.err
    for word in words:
        assert word in run.err, run.err
    assert run.installed == set(), "a failed run installed something"


def _assert_installed(run: Run) -> None:
    assert run.code == 0, run.err
    assert {"app", "lib"} <= run.installed


def _assert_verified(run: Run) -> None:
    """A --dry-run succeeded: every file was downloaded and verified, nothing installed."""
    assert run.code == 0, run.err
    assert "Would install app-1.0 lib-1.0" in run.out


def test_reset_mid_body_once_is_retried(
    server: IndexServer, lib: IndexFile, install: Installer
) -> None:
    server.hooks["/files/" + LIB] = reset_mid_body(lib.data, times=1)
    _assert_installed(install(server.simple_url, "--retries", "2"))
    assert server.downloads(LIB) == 2


def test_reset_mid_body_every_time_fails_clearly(
    server: IndexServer, lib: IndexFile, install: Installer
) -> None:
    server.hooks["/files/" + LIB] = reset_mid_body(lib.data, times=None)
    run = install(server.simple_url, "--retries", "2")
    _assert_clean_failure(run, 1, LIB)
    assert server.downloads(LIB) == 3  # the first try and two retries


def test_truncated_body_with_content_length_lie_is_retried(
    server: IndexServer, lib: IndexFile, install: Installer
) -> None:
    server.hooks["/files/" + LIB] = truncated_body(lib.data, times=1)
    _assert_verified(install(server.simple_url, "--retries", "1", dry_run=True))


def test_truncated_body_every_time_fails_clearly(
    server: IndexServer, lib: IndexFile, install: Installer
) -> None:
    server.hooks["/files/" + LIB] = truncated_body(lib.data, times=None)
    run = install(server.simple_url, "--retries", "1")
    _assert_clean_failure(run, 1, LIB)


def test_stalled_body_gives_up_after_timeout(
    server: IndexServer, lib: IndexFile, install: Installer
) -> None:
    server.hooks["/files/" + LIB] = stall(lib.data)
    run = install(server.simple_url, "--timeout", "1", "--retries", "1")
    _assert_clean_failure(run, 1, LIB)
    assert run.seconds < 10


def test_slow_loris_body_gives_up_after_timeout(
    server: IndexServer, lib: IndexFile, install: Installer
) -> None:
    server.hooks["/files/" + LIB] = drip(lib.data, interval=0.1)
    run = install(server.simple_url, "--timeout", "1", "--retries", "1")
    _assert_clean_failure(run, 1, LIB)
    assert run.seconds < 10


def test_slow_loris_index_page_gives_up_after_timeout(
    index: Index, server: IndexServer, install: Installer
) -> None:
    page = index.json_page("lib", server.url)
    server.hooks["/simple/lib/"] = drip(
        page, interval=0.1, ctype="application/vnd.pypi.simple.v1+json"
    )
    run = install(server.simple_url, "--timeout", "1", "--retries", "0")
    _assert_clean_failure(run, 1, "/simple/lib/")
    assert run.seconds < 10


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_then_success_are_retried(
    server: IndexServer, install: Installer, status: int
) -> None:
    server.hooks["/files/" + LIB] = status_then_serve(status, times=2)
    server.hooks["/simple/app/"] = status_then_serve(status, times=2)
    _assert_verified(install(server.simple_url, "--retries", "3", dry_run=True))


def test_server_errors_beyond_retries_fail_clearly(server: IndexServer, install: Installer) -> None:
    server.hooks["/files/" + LIB] = status_then_serve(503, times=None)
    run = install(server.simple_url, "--retries", "1")
    _assert_clean_failure(run, 1, "503")


def test_429_retry_after_is_honoured(server: IndexServer, install: Installer) -> None:
    server.hooks["/simple/lib/"] = status_then_serve(429, times=1, headers={"Retry-After": "1"})
    run = install(server.simple_url, "--retries", "2", dry_run=True)
    _assert_verified(run)
    assert run.seconds >= 1.0
    assert sum(1 for _, p, _h in server.requests if p == "/simple/lib/") == 2


def test_429_asking_for_hours_is_bounded_by_timeout(
    server: IndexServer, install: Installer
) -> None:
    server.hooks["/simple/lib/"] = status_then_serve(
        429, times=None, headers={"Retry-After": "86400"}
    )
    run = install(server.simple_url, "--timeout", "1", "--retries", "2")
    _assert_clean_failure(run, 1, "429")
    assert run.seconds < 15


@pytest.mark.parametrize("value", ["soon", "-5", "Wed, 21 Oct 2999 07:28:00 GMT"])
def test_429_with_odd_retry_after_never_tracebacks(
    server: IndexServer, install: Installer, value: str
) -> None:
    server.hooks["/simple/lib/"] = status_then_serve(429, times=1, headers={"Retry-After": value})
    run = install(server.simple_url, "--timeout", "1", "--retries", "1")
    assert "Traceback" not in run.err
    assert run.seconds < 15
    if run.code == 0:
        _assert_installed(run)  # retried at once or after at most --timeout
    else:
        _assert_clean_failure(run, 1)


def test_cross_host_redirect_does_not_forward_credentials(
    index: Index, server: IndexServer, lib: IndexFile, install: Installer
) -> None:
    with IndexServer(index) as other:
        other_url = other.url.replace("127.0.0.1", "localhost")
        server.hooks["/files/" + LIB] = redirect(other_url + "/files/" + LIB)
        secret_url = server.simple_url.replace("http://", "http://alice:s3cret-canary@")
        run = install(secret_url)
        _assert_installed(run)
        assert any(p == "/files/" + LIB for _, p, _h in other.requests)
        assert all("Authorization" not in h for _, _p, h in other.requests)
        # ... while the index itself did get them.
        assert any("Authorization" in h for _, _p, h in server.requests)
    assert "s3cret-canary" not in run.out + run.err


def test_redirect_loop_fails_clearly(server: IndexServer, install: Installer) -> None:
    server.hooks["/files/" + LIB] = redirect(server.url + "/files/" + LIB)
    run = install(server.simple_url)
    _assert_clean_failure(run, 1, LIB)


def test_page_redirect_loop_fails_clearly(server: IndexServer, install: Installer) -> None:
    server.hooks["/simple/app/"] = redirect(server.url + "/simple/app/")
    run = install(server.simple_url)
    _assert_clean_failure(run, 1, "/simple/app/")


def test_wrong_content_type_for_index_page(server: IndexServer, install: Installer) -> None:
    server.hooks["/simple/app/"] = reply(b"\x00\x01binary", "application/octet-stream")
    run = install(server.simple_url)
    _assert_clean_failure(run, 1, "content type")


def test_html_error_page_where_a_wheel_should_be(server: IndexServer, install: Installer) -> None:
    page = b"<html><body><h1>Service temporarily unavailable</h1></body></html>"
    server.hooks["/files/" + LIB] = reply(page, "text/html")
    run = install(server.simple_url)
    _assert_clean_failure(run, 1, LIB, "size-mismatch")


def test_html_error_page_where_an_unhashed_wheel_should_be(
    index: Index, tmp_path: Path, install: Installer
) -> None:
    """A find-links page without hashes: the bytes are checked as a wheel and refused."""
    with IndexServer(index) as srv:
        links = tmp_path / "links.html"
        links.write_text(
            "".join(
                f'<a href="{srv.url}/files/{f.filename}">{f.filename}</a>\n'
                for files in index.projects.values()
                for f in files
            )
        )
        srv.hooks["/files/" + LIB] = reply(b"<html>oops</html>", "text/html")
        run = install(srv.simple_url, "--no-index", "-f", str(links))
    assert run.code in (1, 3), run.err
    _assert_clean_failure(run, run.code, LIB)


def test_https_with_untrusted_certificate(index: Index, tmp_path: Path, install: Installer) -> None:
    cert, key = make_self_signed_cert(tmp_path)
    with HTTPSIndexServer(index, cert, key) as srv:
        run = install(srv.simple_url, "--retries", "0")
        _assert_clean_failure(run, 1, "TLS")
        # The same server with its certificate trusted: the failure was the certificate.
        _assert_installed(install(srv.simple_url, "--retries", "0", "--cert", str(cert)))
