"""Getting bytes: core metadata (PEP 658, HTTP range reads into wheels, or whole files) and
whole files, downloaded in parallel into a content-addressed cache while they are hashed."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import struct
import tempfile
import threading
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from pathlib import Path

import requests

from safepip.errors import FetchError, HashMismatch, InvalidIndexPage
from safepip.models import FileLink, Hashes
from safepip.net import (
    BodyError,
    BodyTooLarge,
    body_retries,
    describe_network_error,
    iter_body,
    read_body,
    redact_url,
    release_unread,
    with_body_retries,
)

__all__ = [
    "MAX_METADATA_BYTES",
    "ZIP_ERRORS",
    "FileStore",
    "MetadataFetcher",
    "check_hashes",
    "hash_file",
    "read_wheel_metadata",
]

MAX_METADATA_BYTES = 16 * 1024 * 1024
# What zipfile raises on a damaged or hostile archive besides BadZipFile.
ZIP_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,  # unsupported compression or zip version
    RuntimeError,  # encrypted members
    zlib.error,
    EOFError,
    OSError,
    ValueError,  # includes UnicodeDecodeError of member names
    struct.error,
)
_BLOCK = 64 * 1024
_SUPPORTED_ALGORITHMS = ("sha256", "sha384", "sha512", "sha224", "sha1", "md5")
_STRONG = frozenset({"sha256", "sha384", "sha512"})


def hash_file(path: Path, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    hashers = {a: hashlib.new(a) for a in {"sha256", *algorithms} if a in _SUPPORTED_ALGORITHMS}
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def check_hashes(
    filename: str, actual: dict[str, str], listed: Hashes, expected: Hashes, source: str
) -> None:
    """Every digest the index listed must match; of the user's ``--hash`` digests, one must."""
    for algo, digest in listed.pairs:
        if algo in actual and actual[algo] != digest:
            raise HashMismatch(
                f"{filename} from {source} does not match the {algo} the index lists",
                context=(f"expected {algo}:{digest}", f"got      {algo}:{actual[algo]}"),
                hint="the file changed after it was listed; do not install it",
            )
    if expected:
        usable = [a for a in expected.algorithms if a in actual]
        if not usable:
            raise HashMismatch(
                f"{filename}: none of the hash algorithms given ({', '.join(sorted(expected.algorithms))}) "
                "can be checked",
                hint="give a sha256 hash with --hash=sha256:...",
            )
        if not any(actual[a] in expected.allowed(a) for a in usable):
            raise HashMismatch(
                f"{filename} does not match any hash given for it",
                context=(
                    *(f"expected {a}:{d}" for a, d in expected.pairs),
                    f"got      sha256:{actual['sha256']}",
                ),
                hint="the file is not the one the hashes pin; regenerate the hashes only if you "
                "trust the new file",
            )


def read_wheel_metadata(zf: zipfile.ZipFile, filename: str) -> bytes:
    """The ``METADATA`` file of the one top-level ``.dist-info`` directory of a wheel."""
    candidates = [
        n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
    ]
    if len(candidates) != 1:
        raise InvalidIndexPage(
            f"{filename} has {len(candidates)} .dist-info/METADATA files; a wheel has exactly one",
            hint="the index serves a broken distribution; pin another version of it",
            reference="invalid-wheel",
        )
    info = zf.getinfo(candidates[0])
    if info.file_size > MAX_METADATA_BYTES:
        raise InvalidIndexPage(
            f"{filename}: METADATA is too large",
            hint="the index serves a broken distribution; pin another version of it",
            reference="invalid-wheel",
        )
    try:
        with zf.open(info) as member:
            data = member.read(MAX_METADATA_BYTES + 1)
    except ZIP_ERRORS as exc:
        raise InvalidIndexPage(
            f"{filename}: METADATA cannot be read: {exc}",
            hint="the index serves a damaged wheel; check the index",
            reference="invalid-wheel",
        ) from None
    if len(data) > MAX_METADATA_BYTES:
        raise InvalidIndexPage(
            f"{filename}: METADATA is too large",
            hint="the index serves a broken distribution; pin another version of it",
            reference="invalid-wheel",
        )
    return data


class _RangeFile(io.RawIOBase):
    """A read-only file over HTTP range requests, fetching aligned blocks on demand."""

    def __init__(
        self, session: requests.Session, url: str, size: int, tail: bytes, timeout: float
    ) -> None:
        super().__init__()
        self._session = session
        self._url = url
        self._size = size
        self._timeout = timeout
        self._pos = 0
        self._blocks: dict[int, bytes] = {}
        self._requests = 0
        tail_start = size - len(tail)
        self._extra: list[tuple[int, bytes]] = [(tail_start, tail)]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = self._size + offset
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), max(0, self._size - self._pos))
        if want == 0:
            return 0
        data = self._read_range(self._pos, self._pos + want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _read_range(self, start: int, end: int) -> bytes:
        for extra_start, extra in self._extra:
            if extra_start <= start and end <= extra_start + len(extra):
                return extra[start - extra_start : end - extra_start]
        fetch_start = start - start % _BLOCK
        fetch_end = min(self._size, end + (-end) % _BLOCK)
        if self._requests > 64:
            raise FetchError(f"too many range requests for {redact_url(self._url)}")
        self._requests += 1
        wanted = fetch_end - fetch_start
        with self._session.get(
            self._url,
            headers={
                "Range": f"bytes={fetch_start}-{fetch_end - 1}",
                "Accept-Encoding": "identity",
            },
            timeout=self._timeout,
            stream=True,
        ) as resp:
            if resp.status_code != 206:
                raise _RangeUnsupported()
            try:
                content = read_body(resp, wanted, self._timeout)
            except (BodyTooLarge, BodyError):
                raise _RangeUnsupported() from None
        if len(content) != wanted:
            raise _RangeUnsupported()
        self._extra.append((fetch_start, content))
        return content[start - fetch_start : end - fetch_start]


class _RangeUnsupported(Exception):
    pass


class FileStore:
    """Verified files, stored by sha256 under the cache directory (or a private temporary one)."""

    def __init__(self, directory: Path | None) -> None:
        if directory is None:
            self._tmp: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
                prefix="safepip-files-"
            )
            directory = Path(self._tmp.name)
        else:
            self._tmp = None
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def path_for(self, sha256: str, filename: str) -> Path:
        return self.directory / sha256[:2] / sha256 / filename

    def lookup(self, sha256: str | None, filename: str) -> Path | None:
        if not sha256:
            return None
        path = self.path_for(sha256, filename)
        return path if path.is_file() else None

    def add(self, tmp_path: Path, sha256: str, filename: str) -> Path:
        final = self.path_for(sha256, filename)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_path, final)
        return final

    def temp_file(self) -> tuple[int, Path]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".partial-", dir=self.directory)
        return fd, Path(name)


class MetadataFetcher:
    """Core metadata for a wheel without downloading all of it, when the index allows."""

    def __init__(
        self,
        session: requests.Session,
        store: FileStore,
        *,
        timeout: float = 15.0,
        on_download: Callable[[FileLink, Path, dict[str, str]], None] | None = None,
        workers: int = 24,
    ) -> None:
        self.session = session
        self.store = store
        self.timeout = timeout
        self._on_download = on_download
        self._lock = threading.Lock()
        self._futures: dict[str, Future[bytes]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self.downloaded: dict[str, tuple[Path, dict[str, str]]] = {}

    def metadata(self, link: FileLink) -> bytes:
        """The core metadata of ``link``; fetched once per run, however many ask for it."""
        with self._lock:
            fut = self._futures.get(link.url)
            owner = fut is None
            if fut is None:
                fut = self._futures[link.url] = Future()
        if owner:
            self._fill(fut, link)
        return fut.result()

    def prefetch(self, link: FileLink, then: Callable[[bytes], None] | None = None) -> None:
        """Start fetching the metadata of ``link`` in the background (errors surface only when
        it is asked for); ``then`` runs with it once it arrives."""
        with self._lock:
            if link.url in self._futures:
                return
            fut: Future[bytes] = Future()
            self._futures[link.url] = fut
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="safepip-meta")
            pool = self._pool

        def work() -> None:
            self._fill(fut, link)
            if then is not None and fut.exception() is None:
                then(fut.result())

        try:
            pool.submit(work)
        except RuntimeError:  # closed: the run is over
            fut.cancel()

    def cancel_prefetches(self) -> None:
        """Drop background fetches not yet finished; asking for one later fetches it anew."""
        with self._lock:
            pool, self._pool = self._pool, None
            for url, fut in list(self._futures.items()):
                if not fut.done():
                    fut.cancel()
                    del self._futures[url]
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _fill(self, fut: Future[bytes], link: FileLink) -> None:
        try:
            data = self._metadata_uncached(link)
        except BaseException as exc:
            with contextlib.suppress(InvalidStateError):
                fut.set_exception(exc)
            return
        with contextlib.suppress(InvalidStateError):
            fut.set_result(data)

    def _metadata_uncached(self, link: FileLink) -> bytes:
        if link.url.startswith("file:"):
            path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(link.url).path))
            return self._from_zip_path(path, link.filename)
        cached = self.store.lookup(link.sha256, link.filename)
        if cached is not None:
            return self._from_zip_path(cached, link.filename)
        if link.metadata_hashes is not None:
            return self._pep658(link)
        try:
            return self._by_range(link)
        except _RangeUnsupported:
            return self._by_download(link)

    def _from_zip_path(self, path: Path, filename: str) -> bytes:
        try:
            with zipfile.ZipFile(path) as zf:
                return read_wheel_metadata(zf, filename)
        except ZIP_ERRORS as exc:
            raise InvalidIndexPage(
                f"{filename} is not a readable wheel: {exc}",
                hint="the index serves something else under a wheel's name; check the index",
                reference="invalid-wheel",
            ) from None

    def _pep658(self, link: FileLink) -> bytes:
        url = link.url.split("#", 1)[0] + ".metadata"
        try:
            data = with_body_retries(self.session, url, lambda: self._get_metadata_file(url))
        except BodyTooLarge:
            raise FetchError(
                f"metadata {redact_url(url)} is larger than {MAX_METADATA_BYTES} bytes",
                hint="the index serves a broken distribution; pin another version of it",
                reference="metadata-too-large",
            ) from None
        except requests.RequestException as exc:
            raise FetchError(
                f"cannot fetch metadata {redact_url(url)}: {describe_network_error(exc)}",
                hint="check the network and try again; --retries and --timeout tune this",
            ) from None
        if link.metadata_hashes:
            actual = {
                a: hashlib.new(a, data).hexdigest()
                for a in link.metadata_hashes.algorithms
                if a in _SUPPORTED_ALGORITHMS
            }
            check_hashes(
                link.filename + ".metadata", actual, link.metadata_hashes, Hashes(), redact_url(url)
            )
        return data

    def _get_metadata_file(self, url: str) -> bytes:
        with self.session.get(url, timeout=self.timeout, stream=True) as resp:
            if resp.status_code != 200:
                release_unread(resp, self.timeout)
                raise FetchError(f"metadata {redact_url(url)} answered HTTP {resp.status_code}")
            return read_body(resp, MAX_METADATA_BYTES, self.timeout)

    def _by_range(self, link: FileLink) -> bytes:
        try:
            resp = self.session.get(
                link.url,
                headers={"Range": f"bytes=-{_BLOCK}", "Accept-Encoding": "identity"},
                timeout=self.timeout,
                stream=True,
            )
        except requests.RequestException as exc:
            raise FetchError(f"cannot reach {redact_url(link.url)}: {type(exc).__name__}") from None
        with resp:
            if resp.status_code != 206:
                raise _RangeUnsupported()
            content_range = resp.headers.get("Content-Range", "")
            try:
                size = int(content_range.rsplit("/", 1)[1])
            except (IndexError, ValueError):
                raise _RangeUnsupported() from None
            try:
                tail = read_body(resp, _BLOCK, self.timeout)
            except (BodyTooLarge, BodyError):
                raise _RangeUnsupported() from None
        if len(tail) > size:
            raise _RangeUnsupported()
        rf = _RangeFile(self.session, link.url, size, tail, self.timeout)
        try:
            with zipfile.ZipFile(io.BufferedReader(rf, buffer_size=_BLOCK)) as zf:
                return read_wheel_metadata(zf, link.filename)
        except requests.RequestException as exc:
            raise FetchError(f"cannot read {redact_url(link.url)}: {type(exc).__name__}") from None
        except ZIP_ERRORS as exc:
            raise InvalidIndexPage(
                f"{link.filename} is not a readable wheel: {exc}",
                hint="the index serves something else under a wheel's name; check the index",
                reference="invalid-wheel",
            ) from None

    def _by_download(self, link: FileLink) -> bytes:
        path, _ = download(self.session, link, self.store, Hashes(), self.timeout)
        return self._from_zip_path(path, link.filename)


def download(
    session: requests.Session,
    link: FileLink,
    store: FileStore,
    expected: Hashes,
    timeout: float,
    max_bytes: int = 8 * 1024 * 1024 * 1024,
) -> tuple[Path, dict[str, str]]:
    """Fetch ``link`` into the store, hashing while it streams, and check every known hash.

    A file already in the store under its listed sha256 is re-hashed, not re-downloaded."""
    algorithms = sorted((link.hashes.algorithms | expected.algorithms) & set(_SUPPORTED_ALGORITHMS))
    cached = store.lookup(link.sha256, link.filename)
    if cached is not None:
        actual = hash_file(cached, algorithms)
        if actual["sha256"] == link.sha256:
            check_hashes(link.filename, actual, link.hashes, expected, redact_url(link.index_url))
            return cached, actual
    if link.url.startswith("file:"):
        src = Path(urllib.request.url2pathname(urllib.parse.urlsplit(link.url).path))
        fd, tmp = store.temp_file()
        try:
            with os.fdopen(fd, "wb") as out, src.open("rb") as f:
                shutil.copyfileobj(f, out, 1024 * 1024)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise FetchError(f"cannot read {link.url}: {exc.strerror}") from None
        return _finish(store, tmp, link, expected, algorithms)
    try:
        return with_body_retries(
            session,
            link.url,
            lambda: _download_once(session, link, store, expected, algorithms, timeout, max_bytes),
        )
    except BodyError as exc:
        raise FetchError(
            f"download of {link.filename} from {redact_url(link.index_url)} failed "
            f"after {1 + body_retries(session, link.url)} attempt(s): {describe_network_error(exc)}",
            hint="check the network and try again; --retries and --timeout tune this",
        ) from None


def _download_once(
    session: requests.Session,
    link: FileLink,
    store: FileStore,
    expected: Hashes,
    algorithms: Sequence[str],
    timeout: float,
    max_bytes: int,
) -> tuple[Path, dict[str, str]]:
    """One attempt at ``download``; a transient network failure propagates to be retried."""
    fd, tmp = store.temp_file()
    hashers = {a: hashlib.new(a) for a in {"sha256", *algorithms}}
    total = 0
    try:
        with (
            os.fdopen(fd, "wb") as out,
            session.get(
                link.url, stream=True, timeout=timeout, headers={"Accept-Encoding": "identity"}
            ) as resp,
        ):
            if resp.status_code != 200:
                raise FetchError(
                    f"{redact_url(link.url)} answered HTTP {resp.status_code}",
                    hint="try again later, or check the index and its credentials",
                )
            for chunk in iter_body(resp, timeout):
                total += len(chunk)
                if total > max_bytes or (link.size is not None and total > link.size):
                    raise FetchError(
                        f"{link.filename} is larger than the index said ({link.size} bytes)",
                        hint="the file served is not the one listed; do not install it",
                        reference="size-mismatch",
                    )
                out.write(chunk)
                for h in hashers.values():
                    h.update(chunk)
        if link.size is not None and total != link.size:
            raise FetchError(
                f"{link.filename} is {total} bytes; the index said {link.size}",
                hint="the file served is not the one listed; do not install it",
                reference="size-mismatch",
            )
    except BodyError:
        tmp.unlink(missing_ok=True)
        raise
    except requests.RequestException as exc:
        tmp.unlink(missing_ok=True)
        raise FetchError(
            f"download of {link.filename} from {redact_url(link.index_url)} failed: "
            f"{describe_network_error(exc)}",
            hint="check the network and try again; --retries and --timeout tune this",
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    actual = {a: h.hexdigest() for a, h in hashers.items()}
    try:
        check_hashes(link.filename, actual, link.hashes, expected, redact_url(link.index_url))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return store.add(tmp, actual["sha256"], link.filename), actual


def _finish(
    store: FileStore, tmp: Path, link: FileLink, expected: Hashes, algorithms: Sequence[str]
) -> tuple[Path, dict[str, str]]:
    actual = hash_file(tmp, algorithms)
    try:
        check_hashes(link.filename, actual, link.hashes, expected, redact_url(link.index_url))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return store.add(tmp, actual["sha256"], link.filename), actual


def download_all(
    session: requests.Session,
    items: Sequence[tuple[FileLink, Hashes]],
    store: FileStore,
    timeout: float,
    workers: int = 16,
    on_done: Callable[[FileLink, Path], None] | None = None,
) -> list[tuple[Path, dict[str, str]]]:
    """Download every file in parallel; the first failure cancels the rest and is raised.
    ``on_done`` is called with each file's link and path as soon as it is in and its hashes
    match, from the thread that fetched it."""
    if not items:
        return []

    def one(item: tuple[FileLink, Hashes]) -> tuple[Path, dict[str, str]]:
        result = download(session, item[0], store, item[1], timeout)
        if on_done is not None:
            on_done(item[0], result[0])
        return result

    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [pool.submit(one, item) for item in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
