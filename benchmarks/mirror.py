"""A local PEP 691/503 mirror of downloaded wheels, served from 127.0.0.1 with added latency."""

from __future__ import annotations

import datetime
import hashlib
import html
import json
import socket
import threading
import time
import urllib.parse
import zipfile
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename

__all__ = ["Mirror", "MirrorFile", "load_files"]

_JSON = "application/vnd.pypi.simple.v1+json"


class _BackloggedServer(ThreadingHTTPServer):
    """socketserver listens with a backlog of 5: a burst of parallel connections (safepip's and
    uv's) overflows it, and the kernel drops SYNs that are retried a second later, which no real
    index does."""

    request_queue_size = 1024


@dataclass(frozen=True)
class MirrorFile:
    path: Path
    project: NormalizedName
    sha256: str
    size: int
    upload_time: str
    requires_python: str | None
    metadata: bytes

    @property
    def filename(self) -> str:
        return self.path.name


def _wheel_metadata(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.count("/") == 1]
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        return zf.read(meta)


def load_files(directories: list[Path]) -> dict[NormalizedName, list[MirrorFile]]:
    """Every wheel under ``directories``, with what an index lists about it."""
    projects: dict[NormalizedName, list[MirrorFile]] = {}
    seen: set[str] = set()
    for directory in directories:
        for path in sorted(directory.glob("*.whl")):
            if path.name in seen:
                continue
            seen.add(path.name)
            data = path.read_bytes()
            metadata = _wheel_metadata(path)
            headers = BytesHeaderParser().parsebytes(metadata)
            mtime = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
            project = parse_wheel_filename(path.name)[0]
            projects.setdefault(project, []).append(
                MirrorFile(
                    path=path,
                    project=project,
                    sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data),
                    upload_time=mtime.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    requires_python=headers.get("Requires-Python"),
                    metadata=metadata,
                )
            )
    return projects


class Mirror:
    """Serves ``projects`` as a Simple API index; every request waits ``latency`` seconds first.

    ``pep658`` turns the ``.metadata`` files (and their listing) on or off."""

    def __init__(
        self,
        projects: dict[NormalizedName, list[MirrorFile]],
        *,
        latency: float,
        pep658: bool,
    ) -> None:
        self.projects = projects
        self.latency = latency
        self.pep658 = pep658
        self.files = {f.filename: f for fs in projects.values() for f in fs}
        self.requests = 0
        self._count_lock = threading.Lock()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: without this, Nagle's algorithm
                # and delayed ACKs add ~40 ms to every response, which no real index does.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                mirror._handle(self, head=False)

            def do_HEAD(self) -> None:
                mirror._handle(self, head=True)

        self.httpd = _BackloggedServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def simple_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/simple/"  # where it was bound

    def __enter__(self) -> Mirror:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # pages

    def _file_entry(self, f: MirrorFile) -> dict[str, object]:
        entry: dict[str, object] = {
            "filename": f.filename,
            "url": f"../../files/{urllib.parse.quote(f.filename)}",
            "hashes": {"sha256": f.sha256},
            "requires-python": f.requires_python,
            "size": f.size,
            "upload-time": f.upload_time,
            "yanked": False,
        }
        meta: object = {"sha256": hashlib.sha256(f.metadata).hexdigest()} if self.pep658 else False
        entry["core-metadata"] = meta
        entry["data-dist-info-metadata"] = meta
        return entry

    def json_page(self, project: NormalizedName) -> bytes:
        files = self.projects[project]
        return json.dumps(
            {
                "meta": {"api-version": "1.1"},
                "name": project,
                "files": [self._file_entry(f) for f in files],
                "versions": sorted({str(parse_wheel_filename(f.filename)[1]) for f in files}),
            }
        ).encode()

    def html_page(self, project: NormalizedName) -> bytes:
        rows = []
        for f in self.projects[project]:
            attrs = f'href="../../files/{urllib.parse.quote(f.filename)}#sha256={f.sha256}"'
            if f.requires_python:
                attrs += f' data-requires-python="{html.escape(f.requires_python)}"'
            if self.pep658:
                digest = hashlib.sha256(f.metadata).hexdigest()
                attrs += f' data-core-metadata="sha256={digest}"'
                attrs += f' data-dist-info-metadata="sha256={digest}"'
            rows.append(f"<a {attrs}>{html.escape(f.filename)}</a><br/>")
        body = "<!DOCTYPE html><html><body>\n" + "\n".join(rows) + "\n</body></html>\n"
        return body.encode()

    def root_page(self) -> bytes:
        rows = [f'<a href="{p}/">{p}</a>' for p in sorted(self.projects)]
        return ("<!DOCTYPE html><html><body>\n" + "\n".join(rows) + "\n</body></html>").encode()

    # serving

    def _handle(self, handler: BaseHTTPRequestHandler, *, head: bool) -> None:
        with self._count_lock:
            self.requests += 1
        time.sleep(self.latency)
        path = urllib.parse.unquote(urllib.parse.urlsplit(handler.path).path)
        parts = [p for p in path.split("/") if p]
        if parts == ["simple"]:
            self._send(handler, 200, self.root_page(), "text/html", head=head)
            return
        if len(parts) == 2 and parts[0] == "simple":
            project = canonicalize_name(parts[1])
            if project not in self.projects:
                self._send(handler, 404, b"not found", "text/plain", head=head)
                return
            cache = {"Cache-Control": "max-age=600, public"}
            if _JSON in handler.headers.get("Accept", ""):
                body, ctype = self.json_page(project), _JSON
            else:
                body, ctype = self.html_page(project), "text/html"
            self._send(handler, 200, body, ctype, cache, head=head)
            return
        if len(parts) == 2 and parts[0] == "files":
            self._serve_file(handler, parts[1], head=head)
            return
        self._send(handler, 404, b"not found", "text/plain", head=head)

    def _serve_file(self, handler: BaseHTTPRequestHandler, filename: str, *, head: bool) -> None:
        if filename.endswith(".metadata"):
            f = self.files.get(filename.removesuffix(".metadata"))
            if f is None or not self.pep658:
                self._send(handler, 404, b"not found", "text/plain", head=head)
            else:
                self._send(handler, 200, f.metadata, "application/octet-stream", head=head)
            return
        f = self.files.get(filename)
        if f is None:
            self._send(handler, 404, b"not found", "text/plain", head=head)
            return
        data = f.path.read_bytes()
        size = len(data)
        ranges = {"Accept-Ranges": "bytes", "Cache-Control": "max-age=365000000, immutable"}
        rng = handler.headers.get("Range", "")
        if rng.startswith("bytes=") and "," not in rng:
            start_s, _, end_s = rng[6:].partition("-")
            if start_s == "":
                start, end = max(0, size - int(end_s)), size - 1
            else:
                start, end = int(start_s), min(int(end_s), size - 1) if end_s else size - 1
            ranges["Content-Range"] = f"bytes {start}-{end}/{size}"
            self._send(
                handler, 206, data[start : end + 1], "application/octet-stream", ranges, head=head
            )
            return
        self._send(handler, 200, data, "application/octet-stream", ranges, head=head)

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str,
        extra: dict[str, str] | None = None,
        *,
        head: bool,
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            if not head:
                handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
