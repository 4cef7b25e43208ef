"""Misbehaving HTTP on 127.0.0.1: hooks for :class:`tests.kit.IndexServer` that reset, truncate,
stall, trickle, fail, redirect or lie, and an HTTPS variant with a certificate nobody trusts."""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.kit import Index, IndexServer

Hook = Callable[[BaseHTTPRequestHandler], bool]

__all__ = [
    "HTTPSIndexServer",
    "Hook",
    "drip",
    "make_self_signed_cert",
    "redirect",
    "reply",
    "reset_mid_body",
    "stall",
    "status_then_serve",
    "truncated_body",
]

# Every misbehaving reply ends by itself within this bound, so server threads never outlive a test.
MAX_MISBEHAVIOUR_SECONDS = 20.0


class _Budget:
    """Misbehave for the first ``times`` requests (``None``: always), then serve normally."""

    def __init__(self, times: int | None) -> None:
        self.times = times
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.times is not None and self.used >= self.times:
                return False
            self.used += 1
            return True


def _headers(
    handler: BaseHTTPRequestHandler,
    status: int,
    length: int | None,
    ctype: str = "application/octet-stream",
    extra: Mapping[str, str] | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    if length is not None:
        handler.send_header("Content-Length", str(length))
    for key, value in (extra or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.flush()


def _abort_with_reset(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection with a TCP RST instead of a clean FIN."""
    sock = handler.connection
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.close_connection = True
    sock.close()


def reset_mid_body(data: bytes, *, times: int | None = 1, fraction: float = 0.5) -> Hook:
    """Announce the whole body, send part of it, then reset the connection."""
    budget = _Budget(times)

    def hook(handler: BaseHTTPRequestHandler) -> bool:
        if not budget.take():
            return False
        _headers(handler, 200, len(data))
        handler.wfile.write(data[: int(len(data) * fraction)])
        handler.wfile.flush()
        _abort_with_reset(handler)
        return True

    return hook


def truncated_body(data: bytes, *, times: int | None = 1, fraction: float = 0.5) -> Hook:
    """Content-Length promises the whole body; a part arrives and the connection closes cleanly."""
    budget = _Budget(times)

    def hook(handler: BaseHTTPRequestHandler) -> bool:
        if not budget.take():
            return False
        _headers(handler, 200, len(data))
        handler.wfile.write(data[: int(len(data) * fraction)])
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)
        return True

    return hook


def stall(data: bytes, *, times: int | None = None, sent: int = 10) -> Hook:
    """Send headers and a few bytes, then nothing (until the client gives up or the bound)."""
    budget = _Budget(times)

    def hook(handler: BaseHTTPRequestHandler) -> bool:
        if not budget.take():
            return False
        _headers(handler, 200, len(data))
        handler.wfile.write(data[:sent])
        handler.wfile.flush()
        handler.connection.settimeout(MAX_MISBEHAVIOUR_SECONDS)
        try:
            handler.connection.recv(1)  # returns when the client closes, or times out
        except OSError:
            pass
        handler.close_connection = True
        return True

    return hook


def drip(
    data: bytes,
    *,
    times: int | None = None,
    interval: float = 0.2,
    ctype: str = "application/octet-stream",
) -> Hook:
    """Slow-loris: one byte every ``interval`` seconds, never quite stalling a read timeout."""
    budget = _Budget(times)

    def hook(handler: BaseHTTPRequestHandler) -> bool:
        if not budget.take():
            return False
        _headers(handler, 200, len(data), ctype)
        deadline = time.monotonic() + MAX_MISBEHAVIOUR_SECONDS
        try:
            for i in range(len(data)):
                if time.monotonic() > deadline:
                    break
                handler.wfile.write(data[i : i + 1])
                handler.wfile.flush()
                time.sleep(interval)
        except OSError:
            pass  # the client gave up, as it should
        handler.close_connection = True
        return True

    return hook


def status_then_serve(
    status: int, *, times: int | None = 1, headers: Mapping[str, str] | None = None
) -> Hook:
    """Answer ``status`` for the first ``times`` requests, then serve normally."""
    budget = _Budget(times)

    def hook(handler: BaseHTTPRequestHandler) -> bool:
        if not budget.take():
            return False
        body = f"error {status}".encode()
        _headers(handler, status, len(body), "text/plain", headers)
        handler.wfile.write(body)
        return True

    return hook


def redirect(location: str | Callable[[], str], *, status: int = 302) -> Hook:
    """Redirect every request to ``location`` (a callable is asked each time)."""

    def hook(handler: BaseHTTPRequestHandler) -> bool:
        target = location() if callable(location) else location
        _headers(handler, status, 0, "text/plain", {"Location": target})
        return True

    return hook


def reply(body: bytes, ctype: str, *, status: int = 200, times: int | None = None) -> Hook:
    """Answer with ``body`` and ``ctype`` (an HTML error page, a wrong content type, ...)."""
    budget = _Budget(times)

    def hook(handler: BaseHTTPRequestHandler) -> bool:
        if not budget.take():
            return False
        _headers(handler, status, len(body), ctype)
        handler.wfile.write(body)
        return True

    return hook


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself: valid, but trusted by nobody."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class HTTPSIndexServer(IndexServer):
    """:class:`IndexServer` over TLS with the given certificate."""

    def __init__(self, index: Index, cert: Path, key: Path, **kwargs: object) -> None:
        super().__init__(index, **kwargs)  # type: ignore[arg-type]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"https://{host}:{port}"
