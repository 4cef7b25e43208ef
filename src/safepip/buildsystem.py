"""The static ``[build-system] requires`` of a source distribution, read from its archive
without unpacking it to disk or running any of its code."""

from __future__ import annotations

import sys
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

from packaging.requirements import InvalidRequirement, Requirement

from safepip.errors import PolicyRefusal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["DEFAULT_BUILD_REQUIRES", "static_build_requires", "tree_build_requires"]

# What pip assumes for a project without a [build-system] table (PEP 517's legacy fallback).
DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0",)
MAX_PYPROJECT_BYTES = 1024 * 1024


def _refuse(filename: str, why: str) -> PolicyRefusal:
    return PolicyRefusal(
        f"{filename}: {why}",
        hint="the source distribution is malformed; pick a version with a wheel",
        reference="invalid-sdist",
    )


def _is_pyproject(name: str) -> bool:
    """Whether an archive member is the project's own pyproject.toml (in its top directory)."""
    return name.count("/") == 1 and name.endswith("/pyproject.toml")


def _check_pyproject(filename: str, *, regular: bool, size: int) -> None:
    """Refuse an sdist whose pyproject.toml is no regular file or is too large to read."""
    if not regular:
        raise _refuse(filename, "pyproject.toml is not a regular file")
    if size > MAX_PYPROJECT_BYTES:
        raise _refuse(filename, "pyproject.toml is too large")


def _read_member_tar(path: Path, filename: str) -> bytes | None:
    if filename.endswith((".tar.gz", ".tgz")):
        try:
            return _scan_tar_gz(path, filename)
        except (_Undecided, OSError, EOFError, zlib.error):
            pass  # tarfile reads it, and says what is wrong with it
    return _read_member_tarfile(path, filename)


def _read_member_tarfile(path: Path, filename: str) -> bytes | None:
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                if _is_pyproject(member.name):
                    _check_pyproject(filename, regular=member.isfile(), size=member.size)
                    handle = tf.extractfile(member)
                    return handle.read() if handle is not None else None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _refuse(filename, f"not a readable archive ({exc})") from None
    return None


# The quick scan of a gzip-compressed tar: the same answer as the tarfile walk above, found by
# reading only each member's header from the decompressed stream (inflated in bounded chunks,
# with the GIL released) and skipping its data unparsed. tarfile spends about 70 microseconds
# on each member it walks past; a large sdist has its pyproject.toml after thousands of them.
# Anything but plain headers, pax path and size records and GNU long names is left to tarfile.

_BLOCK = 512
_READ = 256 * 1024  # compressed bytes read at a time
_INFLATE = 1024 * 1024  # decompressed bytes made at a time, however well the data compresses
_REGULAR = (b"0", b"\0", b"7")  # tarfile's regular files (GNU sparse ones are left to it)
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, directories, FIFOs


class _Undecided(Exception):
    """The archive uses something the quick scan does not read."""


class _Inflated:
    """A gzip stream's decompressed bytes, read forward only."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._inflater = zlib.decompressobj(wbits=31)
        self._buffer = b""
        self._pos = 0

    def _more(self) -> bool:
        inflater = self._inflater
        if inflater.eof:
            return False
        data = inflater.unconsumed_tail or self._handle.read(_READ)
        if not data:
            raise _Undecided  # cut short
        out = inflater.decompress(data, _INFLATE)
        rest = self._buffer[self._pos :]
        self._buffer = rest + out if rest else out
        self._pos = 0
        return True

    def read(self, size: int) -> bytes:
        while len(self._buffer) - self._pos < size and self._more():
            pass
        chunk = self._buffer[self._pos : self._pos + size]
        if len(chunk) < size:
            raise _Undecided
        self._pos += size
        return chunk

    def skip(self, size: int) -> None:
        while size > 0:
            available = len(self._buffer) - self._pos
            if available == 0 and not self._more():
                raise _Undecided
            step = min(size, available)
            self._pos += step
            size -= step


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode(tarfile.ENCODING, "surrogateescape")


def _number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):
        raise _Undecided  # base-256
    try:
        return int(field.split(b"\0", 1)[0].decode("ascii").strip() or "0", 8)
    except (UnicodeDecodeError, ValueError):
        raise _Undecided from None


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _pax_records(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space]) if space > pos else 0
            record = data[pos : pos + length]
            if length <= 0 or len(record) < length or not record.endswith(b"\n"):
                raise _Undecided
            key, equals, value = record[space - pos + 1 : -1].partition(b"=")
            if not equals:
                raise _Undecided
            records[key.decode("utf-8")] = value.decode("utf-8")
        except (UnicodeDecodeError, ValueError):
            raise _Undecided from None
        pos += length
    if any(key.startswith("GNU.sparse") or key == "hdrcharset" for key in records):
        raise _Undecided
    return records


def _scan_tar_gz(path: Path, filename: str) -> bytes | None:
    with open(path, "rb") as handle:
        stream = _Inflated(handle)
        long_name: str | None = None
        pax: dict[str, str] = {}
        first = True
        while True:
            header = stream.read(_BLOCK)
            if not any(header):
                if first or long_name is not None or pax:
                    raise _Undecided
                return None  # the end of the archive
            first = False
            if _number(header[148:156]) != 256 + sum(header[:148]) + sum(header[156:]):
                raise _Undecided
            kind, size = header[156:157], _number(header[124:136])
            if kind in (b"L", b"x", b"g", b"K"):
                data = stream.read(_padded(size))[:size]
                if kind == b"L" and long_name is None and not pax:
                    long_name = _text(data)
                elif kind == b"x" and long_name is None and not pax:
                    pax = _pax_records(data)
                elif kind == b"g" and not {"path", "size"} & _pax_records(data).keys():
                    pass
                elif kind != b"K":
                    raise _Undecided
                continue
            if kind not in _REGULAR and kind not in _NO_DATA:
                raise _Undecided
            name, prefix = _text(header[0:100]), _text(header[345:500])
            if kind == b"\0" and name.endswith("/"):
                kind = b"5"
            if kind == b"5":
                name = name.rstrip("/")
            if prefix:
                name = f"{prefix}/{name}"
            if long_name is not None:
                name = long_name
            if "path" in pax:
                name = pax["path"].rstrip("/")
            if "size" in pax:
                size = int(pax["size"]) if pax["size"].isdigit() else -1
                if size < 0:
                    raise _Undecided
            long_name, pax = None, {}
            if _is_pyproject(name):
                _check_pyproject(filename, regular=kind in _REGULAR, size=size)
                return stream.read(size)
            if kind in _REGULAR:
                stream.skip(_padded(size))


def _read_member_zip(path: Path, filename: str) -> bytes | None:
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if _is_pyproject(info.filename):
                    _check_pyproject(filename, regular=True, size=info.file_size)
                    with zf.open(info) as member:
                        return member.read(MAX_PYPROJECT_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _refuse(filename, f"not a readable archive ({exc})") from None
    return None


def static_build_requires(path: Path, filename: str) -> tuple[str, ...]:
    """The requirements ``[build-system] requires`` lists in the sdist's own pyproject.toml
    (pip's default when there is none). Build hooks may add more; those are not known here."""
    reader = _read_member_zip if filename.endswith(".zip") else _read_member_tar
    return _requires_of(reader(path, filename), filename)


def tree_build_requires(tree: Path) -> tuple[str, ...]:
    """The same, for a source tree (a project directory or a git checkout)."""
    pyproject = tree / "pyproject.toml"
    if pyproject.is_symlink() or not pyproject.is_file():
        return DEFAULT_BUILD_REQUIRES
    if pyproject.stat().st_size > MAX_PYPROJECT_BYTES:
        raise _refuse(str(tree), "pyproject.toml is too large")
    return _requires_of(pyproject.read_bytes(), str(tree))


def _requires_of(raw: bytes | None, filename: str) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_BUILD_REQUIRES
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _refuse(filename, f"pyproject.toml is not valid TOML ({exc})") from None
    table = data.get("build-system")
    if table is None:
        return DEFAULT_BUILD_REQUIRES
    requires = table.get("requires") if isinstance(table, dict) else None
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise _refuse(filename, "[build-system] requires is missing or not a list of strings")
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise _refuse(filename, f"invalid build requirement {text!r} ({exc})") from None
        if req.url:
            raise _refuse(filename, f"build requirement {text!r} is a direct URL")
    return tuple(requires)
