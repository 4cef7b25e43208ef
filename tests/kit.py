"""The hermetic test kit: real wheels and sdists built in memory, and real Simple API indexes
(PEP 691 JSON and PEP 503 HTML) served from 127.0.0.1."""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import io
import json
import os
import ssl
import sys
import tarfile
import threading
import urllib.parse
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def metadata_text(
    name: str,
    version: str,
    requires: Sequence[str] = (),
    requires_python: str | None = None,
    extras: Sequence[str] = (),
    summary: str = "",
) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if summary:
        lines.append(f"Summary: {summary}")
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Provides-Extra: {e}" for e in extras]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n\n"


def make_wheel(
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    requires_python: str | None = None,
    extras: Sequence[str] = (),
    tag: str = "py3-none-any",
    files: Mapping[str, bytes] | None = None,
    entry_points: str | None = None,
    metadata_override: str | None = None,
    record_override: str | None = None,
) -> tuple[str, bytes]:
    """A valid wheel (unless told otherwise) with RECORD hashes computed; returns (filename, bytes)."""
    dist = name.replace("-", "_")
    dist_info = f"{dist}-{version}.dist-info"
    module = canonicalize_name(name).replace("-", "_")
    contents: dict[str, bytes] = dict(
        files
        if files is not None
        else {f"{module}/__init__.py": f"__version__ = {version!r}\n".encode()}
    )
    contents[f"{dist_info}/METADATA"] = (
        metadata_override or metadata_text(name, version, requires, requires_python, extras)
    ).encode()
    contents[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: safepip-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    ).encode()
    if entry_points:
        contents[f"{dist_info}/entry_points.txt"] = entry_points.encode()
    record_lines = [f"{path},{_record_hash(data)},{len(data)}" for path, data in contents.items()]
    record_lines.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = (
        record_override if record_override is not None else "\n".join(record_lines) + "\n"
    ).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in contents.items():
            zf.writestr(path, data)
    return f"{dist}-{version}-{tag}.whl", buf.getvalue()


def make_sdist(
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    setup_py: str | None = None,
    pyproject: str | None = None,
    extra_files: Mapping[str, bytes] | None = None,
) -> tuple[str, bytes]:
    """A setuptools sdist; ``setup_py`` replaces the default (hostile fixtures use it)."""
    dist = name.replace("-", "_")
    base = f"{dist}-{version}"
    module = canonicalize_name(name).replace("-", "_")
    members: dict[str, bytes] = {
        "PKG-INFO": metadata_text(name, version, requires).encode(),
        "pyproject.toml": (
            pyproject
            or '[build-system]\nrequires = ["setuptools>=40.8.0"]\nbuild-backend = "setuptools.build_meta"\n'
        ).encode(),
        "setup.py": (
            setup_py
            or (
                "from setuptools import setup\n"
                f"setup(name={name!r}, version={version!r}, packages=[{module!r}], "
                f"install_requires={list(requires)!r})\n"
            )
        ).encode(),
        f"{module}/__init__.py": f"__version__ = {version!r}\n".encode(),
    }
    members.update(extra_files or {})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for path, data in members.items():
            info = tarfile.TarInfo(f"{base}/{path}")
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return f"{base}.tar.gz", buf.getvalue()


@dataclass
class IndexFile:
    filename: str
    data: bytes
    requires_python: str | None = None
    yanked: str | bool = False
    upload_time: datetime.datetime | None = None
    metadata: bytes | None = None  # the wheel's METADATA, served as PEP 658 when enabled

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _wheel_metadata(data: bytes) -> bytes | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for n in zf.namelist():
                if n.count("/") == 1 and n.endswith(".dist-info/METADATA"):
                    return zf.read(n)
    except zipfile.BadZipFile:
        return None
    return None


@dataclass
class Index:
    """A Simple API index held in memory. Add files, then serve it with :class:`IndexServer`."""

    projects: dict[str, list[IndexFile]] = field(default_factory=dict)
    pep658: bool = False
    project_status: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    # PEP 740 provenance objects by filename, served at /provenance/<filename> (api 1.3)
    provenance: dict[str, bytes] = field(default_factory=dict)
    # PEP 708 metadata per project: the project page URLs it tracks, and its alternate locations
    tracks: dict[str, list[str]] = field(default_factory=dict)
    alternate_locations: dict[str, list[str]] = field(default_factory=dict)

    def add(
        self,
        filename_and_data: tuple[str, bytes],
        *,
        project: str | None = None,
        requires_python: str | None = None,
        yanked: str | bool = False,
        upload_time: datetime.datetime | None = None,
    ) -> IndexFile:
        filename, data = filename_and_data
        if project is None:
            project = filename.split("-", 1)[0]
        entry = IndexFile(
            filename=filename,
            data=data,
            requires_python=requires_python,
            yanked=yanked,
            upload_time=upload_time or datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
            metadata=_wheel_metadata(data) if filename.endswith(".whl") else None,
        )
        self.projects.setdefault(canonicalize_name(project), []).append(entry)
        return entry

    def wheel(self, name: str, version: str, **kwargs: object) -> IndexFile:
        """Build and add a wheel; keyword arguments go to :func:`make_wheel` or :meth:`add`."""
        add_keys = {"requires_python", "yanked", "upload_time"}
        add_kwargs = {k: v for k, v in kwargs.items() if k in add_keys and k != "requires_python"}
        wheel_kwargs = {
            k: v for k, v in kwargs.items() if k not in add_keys or k == "requires_python"
        }
        return self.add(
            make_wheel(name, version, **wheel_kwargs),  # type: ignore[arg-type]
            project=name,
            requires_python=kwargs.get("requires_python"),  # type: ignore[arg-type]
            **add_kwargs,  # type: ignore[arg-type]
        )

    def sdist(self, name: str, version: str, **kwargs: object) -> IndexFile:
        return self.add(make_sdist(name, version, **kwargs), project=name)  # type: ignore[arg-type]

    def find(self, filename: str) -> IndexFile | None:
        for files in self.projects.values():
            for f in files:
                if f.filename == filename:
                    return f
        return None

    def write_find_links(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for files in self.projects.values():
            for f in files:
                (directory / f.filename).write_bytes(f.data)
        return directory

    # rendering

    def json_page(self, project: str, base: str) -> bytes:
        files = []
        for f in self.projects.get(project, []):
            entry: dict[str, object] = {
                "filename": f.filename,
                "url": f"{base}/files/{f.filename}",
                "hashes": {"sha256": f.sha256},
                "size": len(f.data),
                "upload-time": f.upload_time.isoformat().replace("+00:00", "Z")
                if f.upload_time
                else None,
                "yanked": f.yanked,
            }
            if f.requires_python:
                entry["requires-python"] = f.requires_python
            if self.pep658 and f.metadata is not None:
                entry["core-metadata"] = {"sha256": hashlib.sha256(f.metadata).hexdigest()}
            if f.filename in self.provenance:
                entry["provenance"] = f"{base}/provenance/{f.filename}"
            files.append(entry)
        doc: dict[str, object] = {
            "meta": {"api-version": "1.3" if self.provenance else "1.1"},
            "name": project,
            "files": files,
            "versions": [],
        }
        if project in self.project_status:
            status, reason = self.project_status[project]
            doc["project-status"] = {"status": status, **({"reason": reason} if reason else {})}
        if project in self.tracks:
            doc["meta"] = {**doc["meta"], "tracks": self.tracks[project]}  # type: ignore[dict-item]
        if project in self.alternate_locations:
            doc["alternate-locations"] = self.alternate_locations[project]
        return json.dumps(doc).encode()

    def html_page(self, project: str, base: str) -> bytes:
        rows = []
        for f in self.projects.get(project, []):
            attrs = ""
            if f.requires_python:
                attrs += f' data-requires-python="{html.escape(f.requires_python)}"'
            if f.yanked:
                reason = f.yanked if isinstance(f.yanked, str) else ""
                attrs += f' data-yanked="{html.escape(reason)}"'
            if self.pep658 and f.metadata is not None:
                attrs += f' data-core-metadata="sha256={hashlib.sha256(f.metadata).hexdigest()}"'
            if f.filename in self.provenance:
                attrs += f' data-provenance="{base}/provenance/{f.filename}"'
            rows.append(
                f'<a href="{base}/files/{f.filename}#sha256={f.sha256}"{attrs}>{f.filename}</a><br/>'
            )
        meta = "".join(
            f'<meta name="pypi:{key}" content="{html.escape(url)}">'
            for key, urls in (
                ("tracks", self.tracks.get(project, [])),
                ("alternate-locations", self.alternate_locations.get(project, [])),
            )
            for url in urls
        )
        return (
            '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1">'
            f"{meta}</head><body>{''.join(rows)}</body></html>"
        ).encode()


class _QuietHTTPServer(ThreadingHTTPServer):
    """A client hanging up early (as safepip does on a fault) is not worth a traceback. The
    backlog is a real server's, not socketserver's 5: parallel connections are not dropped."""

    request_queue_size = 1024

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class IndexServer:
    """Serves an :class:`Index` on 127.0.0.1 in a thread.

    ``format`` is "json", "html" or "negotiate" (PEP 691 content negotiation). ``hooks`` may
    replace the response for a path (fault injection). Every request is logged in ``requests``."""

    def __init__(
        self,
        index: Index,
        *,
        format: str = "negotiate",
        range_requests: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.index = index
        self.format = format
        self.range_requests = range_requests
        self.requests: list[tuple[str, str, Mapping[str, str]]] = []
        self.hooks: dict[str, Callable[[BaseHTTPRequestHandler], bool]] = {}
        self.tampered: dict[str, bytes] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(("GET", self.path, dict(self.headers)))
                path = urllib.parse.urlsplit(self.path).path
                hook = server.hooks.get(path)
                if hook is not None and hook(self):
                    return
                server._serve(self, path)

        self.httpd = _QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if ssl_context is not None:  # HTTPS: the handshake runs in each request's own thread
            self.scheme = "https"
            self.httpd.socket = ssl_context.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    @property
    def simple_url(self) -> str:
        return self.url + "/simple/"

    def __enter__(self) -> IndexServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def downloads(self, filename: str) -> int:
        """How many full (non-range) GETs a file received."""
        return sum(
            1
            for method, path, headers in self.requests
            if path.endswith("/files/" + filename) and "Range" not in headers
        )

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(body)

    def _serve(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "simple":
            project = canonicalize_name(urllib.parse.unquote(parts[1]))
            if project not in self.index.projects:
                self._send(handler, 404, b"not found", "text/plain")
                return
            use_json = self.format == "json" or (
                self.format == "negotiate"
                and "application/vnd.pypi.simple.v1+json" in handler.headers.get("Accept", "")
            )
            if use_json:
                body = self.index.json_page(project, self.url)
                self._send(handler, 200, body, "application/vnd.pypi.simple.v1+json")
            else:
                self._send(handler, 200, self.index.html_page(project, self.url), "text/html")
            return
        if len(parts) == 2 and parts[0] == "provenance":
            body = self.index.provenance.get(urllib.parse.unquote(parts[1]))
            if body is None:
                self._send(handler, 404, b"not found", "text/plain")
            else:
                self._send(handler, 200, body, "application/json")
            return
        if len(parts) == 2 and parts[0] == "files":
            filename = urllib.parse.unquote(parts[1])
            metadata_request = filename.endswith(".metadata")
            f = self.index.find(filename.removesuffix(".metadata"))
            if f is None:
                self._send(handler, 404, b"not found", "text/plain")
                return
            if metadata_request:
                if f.metadata is None or not self.index.pep658:
                    self._send(handler, 404, b"not found", "text/plain")
                else:
                    self._send(handler, 200, f.metadata, "application/octet-stream")
                return
            data = self.tampered.get(filename, f.data)
            rng = handler.headers.get("Range")
            if rng and self.range_requests and rng.startswith("bytes="):
                start_s, _, end_s = rng[6:].partition("-")
                size = len(data)
                if start_s == "":
                    start, end = max(0, size - int(end_s)), size - 1
                else:
                    start = int(start_s)
                    end = min(int(end_s), size - 1) if end_s else size - 1
                self._send(
                    handler,
                    206,
                    data[start : end + 1],
                    "application/octet-stream",
                    {"Content-Range": f"bytes {start}-{end}/{size}", "Accept-Ranges": "bytes"},
                )
                return
            self._send(handler, 200, data, "application/octet-stream")
            return
        self._send(handler, 404, b"not found", "text/plain")


def isolated_environ(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment with no inherited pip configuration, an empty HOME and no proxies."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "SAFEPIP_", "VIRTUAL_ENV", "CONDA_", "XDG_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env.update(
        {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    env.update(extra or {})
    return env


def tree_digest(root: Path, ignore: Iterable[str] = ("__pycache__",)) -> str:
    """A digest of every path, mode and file content under ``root``."""
    skip = set(ignore)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in sorted(filenames):
            p = Path(dirpath, name)
            h.update(str(p.relative_to(root)).encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            else:
                h.update(p.read_bytes())
    return h.hexdigest()
