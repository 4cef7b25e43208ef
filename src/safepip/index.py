"""The Simple Repository API client (PEP 503 HTML, PEP 691 JSON) and find-links locations.

It fetches and parses pages; it decides nothing about which index may serve what."""

from __future__ import annotations

import datetime
import hashlib
import html
import html.parser
import json
import os
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from safepip.errors import IndexUnavailable, InvalidIndexPage
from safepip.models import FileLink, Hashes, IndexSource, ProjectPage
from safepip.net import (
    BodyError,
    BodyTooLarge,
    body_retries,
    describe_network_error,
    read_body,
    redact_url,
    release_unread,
    with_body_retries,
)

__all__ = ["IndexClient", "PageCache", "parse_html_page", "parse_json_page", "project_of_filename"]

ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
)
MAX_PAGE_BYTES = 64 * 1024 * 1024
_HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[0-9a-fA-F]*")


def join_url(base: str, url: str) -> str:
    """``urllib.parse.urljoin(base, url)``, without its cost for the absolute http(s) URLs an
    index usually lists (thousands on a large project's page). URLs urljoin would change (an
    empty query or fragment dropped, tabs and newlines taken out, IPv6 brackets checked, path
    parameters) still go through it."""
    if (
        url.startswith(("https://", "http://"))
        and not url.endswith("#")
        and "?" not in url
        and ";" not in url
        and "[" not in url
        and "]" not in url
        and "\t" not in url
        and "\r" not in url
        and "\n" not in url
    ):
        return url
    return urllib.parse.urljoin(base, url)


def project_of_filename(filename: str) -> NormalizedName | None:
    """The project a distribution filename belongs to, or None when it is no distribution."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[0]
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)[0]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None


_SHA256_LOWER = re.compile(r"[0-9a-f]{64}")


def _clean_hashes(raw: dict[Any, Any], where: str, filename: str | None = None) -> Hashes:
    """The digests of ``raw`` an index gives for a file (named ``filename`` in errors), the
    algorithms we know only, each checked to be hex of the right length."""
    if len(raw) == 1:
        # What nearly every file on a page carries: one lower-case sha256, kept as it is.
        digest = raw.get("sha256")
        if isinstance(digest, str) and _SHA256_LOWER.fullmatch(digest) is not None:
            return Hashes((("sha256", digest),))
    if filename is not None:
        where = f"{where} ({filename})"
    out: dict[str, str] = {}
    for algo, digest in raw.items():
        if not isinstance(algo, str) or not isinstance(digest, str):
            raise InvalidIndexPage(f"hash entry of the wrong type in {where}")
        algo = algo.lower()
        expected = _HASH_LENGTHS.get(algo)
        if expected is None:
            continue  # an algorithm we do not know says nothing; others may still verify
        if len(digest) != expected or _HEX.fullmatch(digest) is None:
            raise InvalidIndexPage(f"malformed {algo} hash {digest[:80]!r} in {where}")
        out[algo] = digest.lower()
    return Hashes(tuple(sorted(out.items())))  # what Hashes.from_mapping gives, built directly


def _parse_time(value: object) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def _metadata_field(value: object, where: str) -> Hashes | None:
    if value is None or value is False:
        return None
    if value is True:
        return Hashes()
    if isinstance(value, dict):
        return _clean_hashes(value, where)
    return None


def _provenance_url(value: object, page_url: str) -> str | None:
    """PEP 740: the provenance object's URL, relative to the page like every other link."""
    if not isinstance(value, str) or not value.strip():
        return None
    return join_url(page_url, value.strip())


def _fragment_hashes(url: str, where: str) -> tuple[str, Hashes]:
    base, _, fragment = url.partition("#")
    found: dict[str, str] = {}
    for part in fragment.split("&"):
        algo, eq, digest = part.partition("=")
        if eq and algo.lower() in _HASH_LENGTHS:
            found[algo] = digest
    return base, _clean_hashes(found, where)


def parse_json_page(
    body: bytes, page_url: str, name: NormalizedName, index_url: str
) -> ProjectPage:
    """Parse a PEP 691 project page."""
    where = redact_url(page_url)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidIndexPage(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise InvalidIndexPage(f"{where} is not a PEP 691 project page (no 'files' list)")
    links = []
    sha256_only = _SHA256_LOWER.fullmatch
    for entry in data["files"]:
        if not isinstance(entry, dict):
            raise InvalidIndexPage(f"{where} lists a file that is not an object")
        get = entry.get
        filename, url = get("filename"), get("url")
        if not isinstance(filename, str) or not isinstance(url, str):
            raise InvalidIndexPage(f"{where} lists a file without filename or url")
        hashes_raw = get("hashes", {})
        if not isinstance(hashes_raw, dict):
            raise InvalidIndexPage(f"{where}: hashes of {filename} is not an object")
        digest = hashes_raw.get("sha256") if len(hashes_raw) == 1 else None
        if isinstance(digest, str) and sha256_only(digest) is not None:
            hashes = Hashes((("sha256", digest),))  # what nearly every file carries
        else:
            hashes = _clean_hashes(hashes_raw, where, filename)
        yanked = get("yanked", False)
        size = get("size")
        rp = get("requires-python")
        uploaded = get("upload-time")
        metadata = get("core-metadata", get("dist-info-metadata"))
        provenance = get("provenance")
        links.append(
            FileLink(
                filename=filename,
                url=join_url(page_url, url),
                index_url=index_url,
                hashes=hashes,
                requires_python=rp if isinstance(rp, str) and rp.strip() else None,
                yanked=bool(yanked),
                yank_reason=yanked if isinstance(yanked, str) and yanked else None,
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                upload_time=None if uploaded is None else _parse_time(uploaded),
                metadata_hashes=None if metadata is None else _metadata_field(metadata, where),
                provenance_url=None
                if provenance is None
                else _provenance_url(provenance, page_url),
            )
        )
    status = data.get("project-status")
    status_name = status.get("status") if isinstance(status, dict) else None
    status_reason = status.get("reason") if isinstance(status, dict) else None
    meta = data.get("meta", {})  # a malformed "meta" (not a table) names no tracks
    tracks = meta.get("tracks", data.get("tracks", [])) if isinstance(meta, dict) else []
    alternates = data.get("alternate-locations", [])
    return ProjectPage(
        name=name,
        index_url=index_url,
        files=tuple(links),
        status=status_name if isinstance(status_name, str) else None,
        status_reason=status_reason if isinstance(status_reason, str) else None,
        tracks=tuple(t for t in tracks if isinstance(t, str)) if isinstance(tracks, list) else (),
        alternate_locations=tuple(a for a in alternates if isinstance(a, str))
        if isinstance(alternates, list)
        else (),
    )


class _AnchorParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[dict[str, str | None]] = []
        self.meta: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "meta":
            d = dict(attrs)
            key, content = d.get("name"), d.get("content")
            if key and content is not None:
                self.meta.setdefault(key, []).append(content)


def parse_html_page(
    body: bytes,
    page_url: str,
    name: NormalizedName | None,
    index_url: str,
    encoding: str = "utf-8",
) -> ProjectPage:
    """Parse a PEP 503 page. With ``name`` None, keep every distribution file (a find-links page)."""
    where = redact_url(page_url)
    parser = _AnchorParser()
    try:
        parser.feed(body.decode(encoding, errors="replace"))
        parser.close()
    except (ValueError, AssertionError, RecursionError) as exc:
        raise InvalidIndexPage(f"{where} is not parseable HTML: {exc}") from None
    base = urllib.parse.urljoin(page_url, parser.base) if parser.base else page_url
    links = []
    for anchor in parser.anchors:
        href = anchor.get("href")
        if not href:
            continue
        url, hashes = _fragment_hashes(join_url(base, href), where)
        filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        owner = project_of_filename(filename)
        if owner is None or (name is not None and owner != name):
            continue
        yanked_attr = anchor.get("data-yanked")
        meta_attr = anchor.get("data-core-metadata", anchor.get("data-dist-info-metadata"))
        metadata_hashes: Hashes | None = None
        if meta_attr is not None:
            metadata_hashes = Hashes()
            if meta_attr and meta_attr != "true":
                _, metadata_hashes = _fragment_hashes("#" + meta_attr, where)
        rp = anchor.get("data-requires-python")
        provenance = anchor.get("data-provenance")
        links.append(
            FileLink(
                filename=filename,
                url=url,
                index_url=index_url,
                hashes=hashes,
                requires_python=html.unescape(rp) if rp else None,
                yanked=yanked_attr is not None,
                yank_reason=yanked_attr or None,
                metadata_hashes=metadata_hashes,
                provenance_url=_provenance_url(provenance, base),
            )
        )
    status = parser.meta.get("pypi:project-status", [None])[0]
    reason = parser.meta.get("pypi:project-status-reason", [None])[0]
    return ProjectPage(
        name=name or canonicalize_name(""),
        index_url=index_url,
        files=tuple(links),
        status=status,
        status_reason=reason,
        tracks=tuple(parser.meta.get("pypi:tracks", [])),
        alternate_locations=tuple(parser.meta.get("pypi:alternate-locations", [])),
    )


@dataclass(frozen=True, slots=True)
class _CachedResponse:
    body: bytes
    content_type: str
    url: str


class PageCache:
    """An on-disk HTTP cache for index pages, honouring max-age and revalidating with ETags.

    Entries are written to a temporary file and renamed, so concurrent runs never read a
    half-written entry."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def _path(self, url: str) -> Path | None:
        if self.directory is None:
            return None
        key = hashlib.sha256(url.encode()).hexdigest()
        return self.directory / key[:2] / key

    def load(self, url: str) -> tuple[dict[str, Any], bytes] | None:
        path = self._path(url)
        if path is None:
            return None
        try:
            raw = path.read_bytes()
            header_len = int.from_bytes(raw[:4], "big")
            meta = json.loads(raw[4 : 4 + header_len])
            if not isinstance(meta, dict):
                return None
            return meta, raw[4 + header_len :]
        except (OSError, ValueError):
            return None

    def store(self, url: str, meta: dict[str, Any], body: bytes) -> None:
        path = self._path(url)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            header = json.dumps(meta).encode()
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            with tmp.open("wb") as f:  # the body written as it is, not copied into a whole
                f.write(len(header).to_bytes(4, "big") + header)
                f.write(body)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written is only slower


def _max_age(cache_control: str) -> int:
    for part in cache_control.split(","):
        key, _, value = part.strip().partition("=")
        if key.lower() in ("no-store", "no-cache"):
            return 0
        if key.lower() == "max-age" and value.isdigit():
            return int(value)
    return 0


class IndexClient:
    """Fetches project pages from every configured source, in parallel, once per run."""

    def __init__(
        self,
        session: requests.Session,
        sources: Sequence[IndexSource],
        *,
        cache: PageCache | None = None,
        timeout: float = 15.0,
        workers: int = 24,
        refresh: bool = False,
    ) -> None:
        self.session = session
        self.sources = tuple(sources)
        self.cache = cache or PageCache(None)
        self.timeout = timeout
        self.refresh = refresh
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="safepip-index")
        self._lock = threading.Lock()
        self._pages: dict[tuple[str, NormalizedName], Future[ProjectPage]] = {}
        self._find_links: dict[str, Future[ProjectPage]] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def prefetch(self, names: Iterable[NormalizedName]) -> None:
        for name in names:
            for source in self.sources:
                self._page_future(source, name)

    def project_pages(self, name: NormalizedName) -> list[ProjectPage]:
        """The page of every source for ``name``, in configuration order."""
        futures = [self._page_future(source, name) for source in self.sources]
        return [f.result() for f in futures]

    def prefetch_from(self, name: NormalizedName, sources: Iterable[IndexSource]) -> None:
        """Start fetching ``name`` from these sources only."""
        for source in sources:
            self._page_future(source, name)

    def pages_from(
        self, name: NormalizedName, sources: Sequence[IndexSource]
    ) -> list[ProjectPage | IndexUnavailable]:
        """The page of each of ``sources`` for ``name``, or why that source could not be reached."""
        futures = [self._page_future(source, name) for source in sources]
        return [_page_or_unreachable(fut) for fut in futures]

    def _page_future(self, source: IndexSource, name: NormalizedName) -> Future[ProjectPage]:
        key = (source.url, name)
        with self._lock:
            fut = self._pages.get(key)
            if fut is None:
                fut = self._pool.submit(self._fetch_page, source, name)
                self._pages[key] = fut
            return fut

    def _fetch_page(self, source: IndexSource, name: NormalizedName) -> ProjectPage:
        if source.kind == "find-links":
            whole = self._find_links_page(source)
            return ProjectPage(
                name=name,
                index_url=source.url,
                files=tuple(f for f in whole.files if project_of_filename(f.filename) == name),
            )
        page_url = source.url.rstrip("/") + "/" + name + "/"
        response = self._get_page(page_url)
        if response is None:
            return ProjectPage(name=name, index_url=source.url, files=())
        content_type = response.content_type.split(";")[0].strip().lower()
        if content_type == "application/vnd.pypi.simple.v1+json":
            return parse_json_page(response.body, response.url, name, source.url)
        if content_type in ("text/html", "application/vnd.pypi.simple.v1+html", ""):
            return parse_html_page(response.body, response.url, name, source.url)
        raise InvalidIndexPage(
            f"{redact_url(page_url)} answered with content type {content_type!r}",
            hint="check that the URL is a Simple API index (it usually ends in /simple/)",
        )

    def _find_links_page(self, source: IndexSource) -> ProjectPage:
        with self._lock:
            fut = self._find_links.get(source.url)
            if fut is None:
                fut = Future()
                self._find_links[source.url] = fut
                owner = True
            else:
                owner = False
        if owner:
            try:
                fut.set_result(self._read_find_links(source))
            except BaseException as exc:
                fut.set_exception(exc)
        return fut.result()

    def _read_find_links(self, source: IndexSource) -> ProjectPage:
        url = source.url
        parts = urllib.parse.urlsplit(url)
        path = urllib.request.url2pathname(parts.path) if parts.scheme == "file" else None
        if parts.scheme in ("", "file") and path is None:
            path = url
        if path is not None and os.path.isdir(path):
            links = []
            for entry in sorted(os.listdir(path)):
                if project_of_filename(entry) is None:
                    continue
                full = os.path.join(path, entry)
                links.append(
                    FileLink(
                        filename=entry,
                        url=Path(full).resolve().as_uri(),
                        index_url=source.url,
                    )
                )
            return ProjectPage(name=canonicalize_name(""), index_url=url, files=tuple(links))
        if path is not None and not parts.scheme:
            url = Path(path).resolve().as_uri()
        response = self._get_page(url)
        if response is None:
            return ProjectPage(name=canonicalize_name(""), index_url=source.url, files=())
        return parse_html_page(response.body, response.url, None, source.url)

    def _get_page(self, url: str) -> _CachedResponse | None:
        """GET a page (``None`` on 404), through the on-disk cache."""
        if url.startswith("file:"):
            return self._read_file_page(url)
        cached = None if self.refresh else self.cache.load(url)
        headers = {"Accept": ACCEPT}
        if cached is not None:
            meta, body = cached
            if time.time() - float(meta.get("fetched", 0)) < float(meta.get("max_age", 0)):
                return _CachedResponse(body, str(meta.get("content_type", "")), str(meta["url"]))
            if meta.get("etag"):
                headers["If-None-Match"] = str(meta["etag"])
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = str(meta["last_modified"])
        try:
            return with_body_retries(
                self.session, url, lambda: self._request_page(url, headers, cached)
            )
        except BodyError as exc:
            raise IndexUnavailable(
                f"cannot read {redact_url(url)} after {1 + body_retries(self.session, url)} "
                f"attempt(s): {describe_network_error(exc)}",
                hint="check the network and try again; --retries and --timeout tune this",
            ) from None
        except requests.RequestException as exc:
            raise IndexUnavailable(
                f"cannot reach {redact_url(url)}: {describe_network_error(exc)}",
                hint="check the network, proxy and `cert` settings, or the index URL",
            ) from None

    def _request_page(
        self, url: str, headers: dict[str, str], cached: tuple[dict[str, Any], bytes] | None
    ) -> _CachedResponse | None:
        with self.session.get(url, headers=headers, timeout=self.timeout, stream=True) as resp:
            if resp.status_code != 200:
                release_unread(resp, self.timeout)
            if resp.status_code == 304 and cached is not None:
                meta, body = cached
                meta["fetched"] = time.time()
                meta["max_age"] = _max_age(resp.headers.get("Cache-Control", ""))
                self.cache.store(url, meta, body)
                return _CachedResponse(body, str(meta.get("content_type", "")), str(meta["url"]))
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise IndexUnavailable(
                    f"{redact_url(url)} answered HTTP {resp.status_code}",
                    hint="check the index URL and its credentials, or try again later",
                )
            try:
                body = read_body(resp, MAX_PAGE_BYTES, self.timeout)
            except BodyTooLarge:
                raise InvalidIndexPage(
                    f"{redact_url(url)} is larger than {MAX_PAGE_BYTES // (1024 * 1024)} MiB; "
                    "refusing to read it",
                    hint="an index page this large is not a Simple API page; check the index URL",
                    reference="page-too-large",
                ) from None
            content_type = resp.headers.get("Content-Type", "")
            final_url = resp.url
            meta = {
                "url": final_url,
                "content_type": content_type,
                "etag": resp.headers.get("ETag"),
                "last_modified": resp.headers.get("Last-Modified"),
                "fetched": time.time(),
                "max_age": _max_age(resp.headers.get("Cache-Control", "")),
            }
            self.cache.store(url, meta, body)
            return _CachedResponse(body, content_type, final_url)

    def _read_file_page(self, url: str) -> _CachedResponse | None:
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        if path.is_dir():
            for candidate in ("index.json", "index.html"):
                if (path / candidate).is_file():
                    path = path / candidate
                    break
            else:
                return None
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_PAGE_BYTES:
            raise InvalidIndexPage(f"{url} is larger than {MAX_PAGE_BYTES} bytes")
        ctype = "application/vnd.pypi.simple.v1+json" if path.suffix == ".json" else "text/html"
        return _CachedResponse(path.read_bytes(), ctype, path.as_uri())


def _page_or_unreachable(fut: Future[ProjectPage]) -> ProjectPage | IndexUnavailable:
    try:
        return fut.result()
    except IndexUnavailable as exc:
        return exc
